//! proto2 semantics on top of prost: decoding that fails on a missing `required` field.
//!
//! prost decodes an absent required field as its default value, so after prost has decoded a
//! message we scan the same bytes once more and check that every required field number
//! occurred, recursing into the embedded messages that have required fields of their own
//! (`CreateRequest.bind_mounts`). The list of required fields lives next to each message
//! (see the `warden_message!` macro in `messages.rs`).
//!
//! Each occurrence of an embedded message is checked on its own. That is exact for repeated
//! embedded fields (the only kind with required fields inside in this protocol); a singular
//! embedded message split over several occurrences, which protobuf merges, would need the
//! occurrences merged first.

use crate::Error;

/// A function that checks the required fields of one embedded message's bytes.
pub type NestedCheck = fn(&[u8]) -> Result<(), Error>;

/// A message of the Warden protocol: a prost message plus what proto2 needs and prost lacks.
///
/// Always decode with [`WardenMessage::decode_checked`] (or the typed [`crate::Request`] /
/// [`crate::Response`] layer, which calls it); prost's own `decode` does not notice a missing
/// required field. Encoding is prost's `encode_to_vec`, which writes fields in ascending field
/// number, required fields always, optional fields only when `Some`, and repeated scalars
/// unpacked, exactly as the original Ruby (beefcake) encoder.
pub trait WardenMessage:
    prost::Message + Default + Clone + PartialEq + std::fmt::Debug + Sized
{
    /// Full protobuf name, e.g. `warden.StopRequest` or `warden.CreateRequest.BindMount`.
    const FULL_NAME: &'static str;
    /// The required fields: field number and full field name (`warden.StopRequest.handle`).
    const REQUIRED: &'static [(u32, &'static str)];
    /// Embedded-message fields whose own required fields must be checked, by field number.
    const NESTED: &'static [(u32, NestedCheck)];

    /// Decodes `buf`, then checks that every required field (here and in embedded messages)
    /// was present on the wire.
    fn decode_checked(buf: &[u8]) -> Result<Self, Error> {
        let msg = <Self as prost::Message>::decode(buf).map_err(|source| Error::Decode {
            message: Self::FULL_NAME,
            source,
        })?;
        check_required::<Self>(buf)?;
        Ok(msg)
    }

    /// Encodes the message (prost's `encode_to_vec`, under a name that does not need the
    /// `prost::Message` trait in scope).
    fn to_bytes(&self) -> Vec<u8> {
        prost::Message::encode_to_vec(self)
    }
}

/// Checks the required fields of an encoded `M`, recursing into embedded messages listed in
/// `M::NESTED`. Unknown fields are skipped, as proto2 parsers do.
pub fn check_required<M: WardenMessage>(buf: &[u8]) -> Result<(), Error> {
    let malformed = |reason| Error::Malformed {
        message: M::FULL_NAME,
        reason,
    };
    // At most 64 required fields per message: a bit set is enough (the largest has 3).
    let mut seen: u64 = 0;
    let mut rest = buf;
    while !rest.is_empty() {
        let key = read_varint(&mut rest).ok_or_else(|| malformed("truncated field key"))?;
        let tag = u32::try_from(key >> 3).map_err(|_| malformed("field number out of range"))?;
        let wire_type = (key & 7) as u8;
        if let Some(i) = M::REQUIRED.iter().position(|&(t, _)| t == tag) {
            seen |= 1 << i;
        }
        match wire_type {
            WIRE_LEN => {
                let value = take_len(&mut rest).ok_or_else(|| malformed("truncated field"))?;
                if let Some((_, check)) = M::NESTED.iter().find(|&&(t, _)| t == tag) {
                    check(value)?;
                }
            }
            _ => skip_value(wire_type, tag, &mut rest).map_err(malformed)?,
        }
    }
    for (i, &(_, field)) in M::REQUIRED.iter().enumerate() {
        if seen & (1 << i) == 0 {
            return Err(Error::MissingField { field });
        }
    }
    Ok(())
}

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_START_GROUP: u8 = 3;
const WIRE_END_GROUP: u8 = 4;
const WIRE_FIXED32: u8 = 5;

fn read_varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..10 {
        let (&byte, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn take(buf: &mut &[u8], n: usize) -> Option<()> {
    if buf.len() < n {
        return None;
    }
    *buf = &buf[n..];
    Some(())
}

fn take_len<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(read_varint(buf)?).ok()?;
    if buf.len() < len {
        return None;
    }
    let (value, rest) = buf.split_at(len);
    *buf = rest;
    Some(value)
}

/// Skips one field value of `wire_type` (not length-delimited ones, handled by the caller).
/// Groups (only possible as unknown fields) are skipped with their nested groups, iteratively.
fn skip_value(wire_type: u8, tag: u32, buf: &mut &[u8]) -> Result<(), &'static str> {
    match wire_type {
        WIRE_VARINT => read_varint(buf).map(drop).ok_or("truncated varint"),
        WIRE_FIXED64 => take(buf, 8).ok_or("truncated fixed64"),
        WIRE_FIXED32 => take(buf, 4).ok_or("truncated fixed32"),
        WIRE_LEN => take_len(buf).map(drop).ok_or("truncated field"),
        WIRE_START_GROUP => {
            let mut open = vec![tag];
            while let Some(&group) = open.last() {
                let key = read_varint(buf).ok_or("truncated group")?;
                let inner_tag = u32::try_from(key >> 3).map_err(|_| "field number out of range")?;
                match (key & 7) as u8 {
                    WIRE_START_GROUP => open.push(inner_tag),
                    WIRE_END_GROUP if inner_tag == group => {
                        open.pop();
                    }
                    WIRE_END_GROUP => return Err("mismatched end group"),
                    other => skip_value(other, inner_tag, buf)?,
                }
            }
            Ok(())
        }
        WIRE_END_GROUP => Err("unexpected end group"),
        _ => Err("invalid wire type"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        let mut b: &[u8] = &[0xac, 0x02, 0x01];
        assert_eq!(read_varint(&mut b), Some(300));
        assert_eq!(b, &[0x01]);
        let mut b: &[u8] = &[0xff; 11];
        assert_eq!(read_varint(&mut b), None);
        let mut b: &[u8] = &[0x80];
        assert_eq!(read_varint(&mut b), None);
    }

    #[test]
    fn skips_nested_groups() {
        // After the start-group key of field 7: group 8 { field 1 = 5 }, fixed32 field 2,
        // end of group 7, then field 1 = 1 of the enclosing message.
        let bytes = [0x43, 0x08, 0x05, 0x44, 0x15, 0, 0, 0, 0, 0x3c, 0x08, 0x01];
        let mut b: &[u8] = &bytes;
        skip_value(WIRE_START_GROUP, 7, &mut b).unwrap();
        assert_eq!(b, &[0x08, 0x01]);
        let mut b: &[u8] = &bytes[..4];
        assert_eq!(
            skip_value(WIRE_START_GROUP, 7, &mut b),
            Err("truncated group")
        );
        let mut b: &[u8] = &[0x44];
        assert_eq!(
            skip_value(WIRE_START_GROUP, 7, &mut b),
            Err("mismatched end group")
        );
    }
}
