//! Messages as generic values, read and written through the [`crate::schema`] table.
//!
//! [`Fields`] is a message as an ordered list of (field, value). It encodes to protobuf
//! (ascending field number, as the original encoder writes) so the command line can build any
//! request from `--field value` pairs, and it decodes any response so the command line can print
//! it as `key: value` lines or as JSON (through its [`serde::Serialize`] impl, which keeps the
//! table's field order) without a printer per message.

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

use crate::schema::{FieldSchema, Kind, Label, MessageSchema};

/// One field's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A `string` field.
    Str(String),
    /// A bytes field (job output).
    Bytes(Vec<u8>),
    /// A `bool` field.
    Bool(bool),
    /// A `uint32` or `uint64` field.
    Uint(u64),
    /// An `int32` field.
    Int(i32),
    /// An enum field: its number, and its name when the number is known.
    Enum(i32, Option<&'static str>),
    /// An embedded message.
    Message(Fields),
    /// The values of a repeated field, in order.
    List(Vec<Value>),
}

/// A message: its schema and the fields that are set, in ascending field number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    /// What message this is.
    pub schema: &'static MessageSchema,
    /// The fields present. A repeated field appears once, holding a [`Value::List`].
    pub values: Vec<(&'static FieldSchema, Value)>,
}

/// Why bytes could not be read as the message the table describes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read {message}: {reason}")]
pub struct DecodeError {
    /// The message's full name.
    pub message: &'static str,
    /// What was wrong.
    pub reason: String,
}

impl Fields {
    /// A message with no field set.
    pub fn new(schema: &'static MessageSchema) -> Self {
        Fields {
            schema,
            values: Vec::new(),
        }
    }

    /// The value of the field called `name`, if set.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values
            .iter()
            .find(|(f, _)| f.name == name)
            .map(|(_, v)| v)
    }

    /// Encodes the message as protobuf, fields in ascending number, repeated scalars unpacked.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut values: Vec<_> = self.values.iter().collect();
        values.sort_by_key(|(f, _)| f.tag);
        for (field, value) in values {
            match value {
                Value::List(items) => {
                    for item in items {
                        encode_field(field.tag, item, &mut out);
                    }
                }
                other => encode_field(field.tag, other, &mut out),
            }
        }
        out
    }

    /// Reads `bytes` as a `schema` message. Fields the table does not know are skipped.
    pub fn decode(schema: &'static MessageSchema, bytes: &[u8]) -> Result<Self, DecodeError> {
        let fail = |reason: String| DecodeError {
            message: schema.name,
            reason,
        };
        let mut fields = Fields::new(schema);
        let mut input = bytes;
        while !input.is_empty() {
            let key = read_varint(&mut input).map_err(fail)?;
            let tag = u32::try_from(key >> 3).map_err(|_| fail("field number too large".into()))?;
            let wire_type = (key & 7) as u8;
            let Some(field) = schema.field_by_tag(tag) else {
                skip_field(wire_type, &mut input).map_err(fail)?;
                continue;
            };
            let values = read_values(field, wire_type, &mut input).map_err(fail)?;
            for value in values {
                fields.insert(field, value);
            }
        }
        Ok(fields)
    }

    /// Sets `field` to `value`, appending to the list of a repeated field and keeping the
    /// fields in ascending number.
    pub(crate) fn insert(&mut self, field: &'static FieldSchema, value: Value) {
        let existing = self.values.iter_mut().find(|(f, _)| f.tag == field.tag);
        match (existing, field.label) {
            (Some((_, Value::List(items))), Label::Repeated) => items.push(value),
            (Some((_, slot)), _) => *slot = value,
            (None, label) => {
                let value = if label == Label::Repeated {
                    Value::List(vec![value])
                } else {
                    value
                };
                let at = self
                    .values
                    .iter()
                    .position(|(f, _)| f.tag > field.tag)
                    .unwrap_or(self.values.len());
                self.values.insert(at, (field, value));
            }
        }
    }

    /// The message as `key: value` lines: nested messages as `outer.inner: v`, repeated
    /// scalars joined with `, `, repeated messages as `name[i].field: v`.
    pub fn to_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        self.push_lines("", &mut lines);
        lines
    }

    fn push_lines(&self, prefix: &str, lines: &mut Vec<String>) {
        for (field, value) in &self.values {
            let name = format!("{prefix}{}", field.name);
            match value {
                Value::Message(inner) => inner.push_lines(&format!("{name}."), lines),
                Value::List(items) if items.iter().any(|v| matches!(v, Value::Message(_))) => {
                    for (i, item) in items.iter().enumerate() {
                        if let Value::Message(inner) = item {
                            inner.push_lines(&format!("{name}[{i}]."), lines);
                        }
                    }
                }
                Value::List(items) => {
                    let shown: Vec<String> = items.iter().map(Value::to_text).collect();
                    lines.push(format!("{name}: {}", shown.join(", ")));
                }
                other => lines.push(format!("{name}: {}", other.to_text())),
            }
        }
    }
}

impl Value {
    /// A scalar as text (bytes read as UTF-8 with replacement characters).
    pub fn to_text(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            Value::Bool(b) => b.to_string(),
            Value::Uint(n) => n.to_string(),
            Value::Int(n) => n.to_string(),
            Value::Enum(_, Some(name)) => (*name).to_string(),
            Value::Enum(n, None) => n.to_string(),
            Value::Message(m) => m.to_lines().join("; "),
            Value::List(items) => items
                .iter()
                .map(Value::to_text)
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

impl Serialize for Fields {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.values.len()))?;
        for (field, value) in &self.values {
            map.serialize_entry(field.name, value)?;
        }
        map.end()
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Str(s) => serializer.serialize_str(s),
            Value::Bytes(b) => serializer.serialize_str(&String::from_utf8_lossy(b)),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Uint(n) => serializer.serialize_u64(*n),
            Value::Int(n) => serializer.serialize_i32(*n),
            Value::Enum(_, Some(name)) => serializer.serialize_str(name),
            Value::Enum(n, None) => serializer.serialize_i32(*n),
            Value::Message(m) => m.serialize(serializer),
            Value::List(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
        }
    }
}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LENGTH_DELIMITED: u8 = 2;
const FIXED32: u8 = 5;

fn encode_field(tag: u32, value: &Value, out: &mut Vec<u8>) {
    let key = |wire_type: u8| (u64::from(tag) << 3) | u64::from(wire_type);
    match value {
        Value::Str(s) => encode_bytes(key(LENGTH_DELIMITED), s.as_bytes(), out),
        Value::Bytes(b) => encode_bytes(key(LENGTH_DELIMITED), b, out),
        Value::Message(m) => encode_bytes(key(LENGTH_DELIMITED), &m.encode(), out),
        Value::Bool(b) => {
            write_varint(key(VARINT), out);
            write_varint(u64::from(*b), out);
        }
        Value::Uint(n) => {
            write_varint(key(VARINT), out);
            write_varint(*n, out);
        }
        // Negative int32 and enum values are sign-extended to 64 bits: ten bytes.
        Value::Int(n) | Value::Enum(n, _) => {
            write_varint(key(VARINT), out);
            write_varint(i64::from(*n) as u64, out);
        }
        Value::List(items) => {
            for item in items {
                encode_field(tag, item, out);
            }
        }
    }
}

fn encode_bytes(key: u64, bytes: &[u8], out: &mut Vec<u8>) {
    write_varint(key, out);
    write_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn write_varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn read_varint(input: &mut &[u8]) -> Result<u64, String> {
    let mut n = 0u64;
    for i in 0..10 {
        let Some((&byte, rest)) = input.split_first() else {
            return Err("truncated varint".into());
        };
        *input = rest;
        n |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(n);
        }
    }
    Err("varint longer than 10 bytes".into())
}

fn take<'a>(input: &mut &'a [u8], len: usize) -> Result<&'a [u8], String> {
    if input.len() < len {
        return Err(format!(
            "{len} bytes announced, {} left in the message",
            input.len()
        ));
    }
    let (head, rest) = input.split_at(len);
    *input = rest;
    Ok(head)
}

fn read_length_delimited<'a>(input: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let len = read_varint(input)?;
    let len = usize::try_from(len).map_err(|_| "length too large".to_string())?;
    take(input, len)
}

fn skip_field(wire_type: u8, input: &mut &[u8]) -> Result<(), String> {
    match wire_type {
        VARINT => read_varint(input).map(drop),
        FIXED64 => take(input, 8).map(drop),
        LENGTH_DELIMITED => read_length_delimited(input).map(drop),
        FIXED32 => take(input, 4).map(drop),
        other => Err(format!("unsupported wire type {other}")),
    }
}

/// Reads one occurrence of `field`: one value, or several for a packed repeated scalar.
fn read_values(
    field: &'static FieldSchema,
    wire_type: u8,
    input: &mut &[u8],
) -> Result<Vec<Value>, String> {
    let mismatch = || {
        format!(
            "field {} has wire type {wire_type}, not that of a {}",
            field.name,
            field.kind.describe()
        )
    };
    match field.kind {
        Kind::String | Kind::Bytes | Kind::Message(_) => {
            if wire_type != LENGTH_DELIMITED {
                return Err(mismatch());
            }
            let bytes = read_length_delimited(input)?;
            let value = match field.kind {
                Kind::String => Value::Str(
                    String::from_utf8(bytes.to_vec())
                        .map_err(|_| format!("field {} is not valid UTF-8", field.name))?,
                ),
                Kind::Bytes => Value::Bytes(bytes.to_vec()),
                Kind::Message(inner) => {
                    Value::Message(Fields::decode(inner, bytes).map_err(|e| e.to_string())?)
                }
                _ => unreachable!("matched above"),
            };
            Ok(vec![value])
        }
        _ if wire_type == VARINT => Ok(vec![scalar(field, read_varint(input)?)]),
        _ if wire_type == LENGTH_DELIMITED && field.label == Label::Repeated => {
            let mut packed = read_length_delimited(input)?;
            let mut values = Vec::new();
            while !packed.is_empty() {
                values.push(scalar(field, read_varint(&mut packed)?));
            }
            Ok(values)
        }
        _ => Err(mismatch()),
    }
}

fn scalar(field: &FieldSchema, n: u64) -> Value {
    match field.kind {
        Kind::Bool => Value::Bool(n != 0),
        Kind::U32 => Value::Uint(u64::from(n as u32)),
        Kind::I32 => Value::Int(n as i32),
        Kind::Enum(names) => {
            let number = n as i32;
            let name = names.iter().find(|(_, v)| *v == number).map(|(n, _)| *n);
            Value::Enum(number, name)
        }
        _ => Value::Uint(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{self, COMMANDS, ERROR_RESPONSE};
    use warden_protocol::{Message, Request, Response, Type};

    /// Every field of `schema` set (repeated ones twice), nested messages filled too; numbers
    /// differ per field so a swapped field number shows.
    fn full(schema: &'static MessageSchema) -> Fields {
        let mut fields = Fields::new(schema);
        for field in schema.fields {
            let one = |i: u64| match field.kind {
                Kind::String => Value::Str(format!("{}-{i}", field.name)),
                Kind::Bytes => Value::Bytes(vec![0xff, b'o', i as u8]),
                Kind::Bool => Value::Bool(true),
                Kind::U32 => Value::Uint(u64::from(field.tag) * 1000 + i),
                Kind::U64 => Value::Uint(u64::MAX - u64::from(field.tag) - i),
                Kind::I32 => Value::Int(-(field.tag as i32) - i as i32),
                Kind::Enum(names) => {
                    let (name, number) = names[names.len() - 1];
                    Value::Enum(number, Some(name))
                }
                Kind::Message(inner) => Value::Message(full(inner)),
            };
            fields.insert(field, one(0));
            if field.label == Label::Repeated {
                fields.insert(field, one(1));
            }
        }
        fields
    }

    /// The table agrees with the protocol crate's prost messages: every field, encoded through
    /// the table, is read back by prost and re-encoded to the same bytes (a wrong number would be
    /// dropped as unknown, a wrong kind would not decode), and the table reads prost's bytes back
    /// to the same values.
    #[test]
    fn the_table_matches_the_protocol_messages() {
        let mut checked = 0;
        for command in COMMANDS {
            let request = full(command.request);
            let envelope = Message {
                r#type: command.ty as i32,
                payload: request.encode(),
            };
            let typed = Request::decode_envelope(&envelope)
                .unwrap_or_else(|e| panic!("{}: {e}", command.request.name));
            assert_eq!(typed.type_name(), &command.request.name["warden.".len()..]);
            assert_eq!(
                typed.encode_payload(),
                envelope.payload,
                "{}",
                command.request.name
            );
            assert_eq!(
                Fields::decode(command.request, &typed.encode_payload()).unwrap(),
                request
            );

            for (schema, ty) in [
                (command.response, command.ty),
                (&ERROR_RESPONSE, Type::Error),
            ] {
                let response = full(schema);
                let envelope = Message {
                    r#type: ty as i32,
                    payload: response.encode(),
                };
                let typed = Response::decode_envelope(&envelope)
                    .unwrap_or_else(|e| panic!("{}: {e}", schema.name));
                assert_eq!(typed.encode_payload(), envelope.payload, "{}", schema.name);
                assert_eq!(
                    Fields::decode(schema, &typed.encode_payload()).unwrap(),
                    response
                );
            }
            checked += 1;
        }
        assert_eq!(checked, 19);
        assert_eq!(schema::command_names().count(), 19);
    }

    #[test]
    fn every_request_type_has_one_command() {
        for ty in Type::ALL.iter().filter(|t| **t != Type::Error) {
            let command = schema::command_for_type(*ty).unwrap();
            let snake: String = ty
                .request_name()
                .unwrap()
                .trim_end_matches("Request")
                .chars()
                .enumerate()
                .flat_map(|(i, c)| {
                    let lower = c.to_ascii_lowercase();
                    if c.is_ascii_uppercase() && i > 0 {
                        vec!['_', lower]
                    } else {
                        vec![lower]
                    }
                })
                .collect();
            assert_eq!(command.name, snake);
        }
    }

    #[test]
    fn renders_lines_and_json_in_table_order() {
        let info = Response::Info(warden_protocol::InfoResponse {
            state: Some("active".into()),
            events: vec!["out of memory".into(), "x".into()],
            memory_stat: Some(warden_protocol::MemoryStat {
                rss: Some(12),
                ..Default::default()
            }),
            job_ids: vec![1, 2],
            ..Default::default()
        });
        let fields = Fields::decode(&schema::INFO_RESPONSE, &info.encode_payload()).unwrap();
        assert_eq!(
            fields.to_lines(),
            [
                "state: active",
                "events: out of memory, x",
                "memory_stat.rss: 12",
                "job_ids: 1, 2"
            ]
        );
        assert_eq!(
            serde_json::to_string(&fields).unwrap(),
            r#"{"state":"active","events":["out of memory","x"],"memory_stat":{"rss":12},"job_ids":[1,2]}"#
        );
    }

    #[test]
    fn decoding_skips_unknown_fields_and_reports_bad_bytes() {
        // Field 15 (unknown to EchoResponse) before the message.
        let bytes = [0x78, 0x01, 0x0a, 0x01, b'm'];
        let fields = Fields::decode(&schema::ECHO_RESPONSE, &bytes).unwrap();
        assert_eq!(fields.get("message"), Some(&Value::Str("m".into())));
        let err = Fields::decode(&schema::ECHO_RESPONSE, &[0x0a, 0x05, b'm']).unwrap_err();
        assert_eq!(err.message, "warden.EchoResponse");
        // Packed repeated scalars are accepted too.
        let packed =
            Fields::decode(&schema::INFO_RESPONSE, &[0xe2, 0x02, 0x02, 0x01, 0x02]).unwrap();
        assert_eq!(
            packed.get("job_ids"),
            Some(&Value::List(vec![Value::Uint(1), Value::Uint(2)]))
        );
    }
}
