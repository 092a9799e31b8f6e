//! Framing: `<decimal payload length>\r\n<payload>\r\n`, in both directions.
//!
//! [`FrameCodec`] is the one parser, a `tokio_util::codec` decoder/encoder; [`FrameReader`] and
//! [`FrameWriter`] run the same parser over blocking `std::io` streams.
//!
//! Reading follows the original server: take the line up to the first `\r\n`, read it as an
//! integer, wait for the payload and two more bytes, and skip those two without looking at
//! them. Like Ruby's `Integer()`, the length line may carry surrounding whitespace, a leading
//! `+` and single underscores between digits. Unlike it, we refuse a leading zero (`"012"`,
//! which Ruby reads as octal 10) and a sign `-`, rather than guess. The line is bounded
//! ([`MAX_LENGTH_LINE`] bytes) and a byte that cannot be part of a length fails at once, so
//! garbage is reported without waiting for a `\r\n` that may never come. A payload longer than
//! the limit ([`DEFAULT_MAX_PAYLOAD`] unless configured) fails from the length line alone,
//! before anything is allocated for it; buffers grow only as bytes arrive.
//!
//! End of stream at a frame boundary is a clean end; anywhere else it is
//! [`Error::ConnectionClosedMidFrame`]. After any framing error the stream is out of step:
//! close it.

use std::io::{self, Read, Write};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::messages::Message;
use crate::wire::WardenMessage;
use crate::{Error, Request, Response};

/// The default largest payload a reader accepts: 16 MiB (the daemon's default job output limit
/// is 10 MiB, which a RunResponse can carry whole).
pub const DEFAULT_MAX_PAYLOAD: usize = 16 * 1024 * 1024;

/// The longest length line accepted, `\r\n` excluded.
pub const MAX_LENGTH_LINE: usize = 20;

/// How much buffer space to reserve at once while a payload arrives.
const READ_CHUNK: usize = 64 * 1024;

/// Appends one frame carrying `payload` to `dst`.
pub fn encode_frame(payload: &[u8], dst: &mut impl BufMut) {
    dst.put_slice(payload.len().to_string().as_bytes());
    dst.put_slice(b"\r\n");
    dst.put_slice(payload);
    dst.put_slice(b"\r\n");
}

/// One frame carrying `payload`, as bytes.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 24);
    encode_frame(payload, &mut out);
    out
}

/// Ruby's `String#strip` whitespace (and `Integer()`'s): space, \t, \n, \v, \f, \r.
fn is_ruby_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Bytes that may appear somewhere in a length line we accept.
fn may_appear_in_length(b: u8) -> bool {
    b.is_ascii_digit() || is_ruby_space(b) || b == b'+' || b == b'_'
}

fn malformed(line: &[u8], reason: &'static str) -> Error {
    Error::MalformedLength {
        line: String::from_utf8_lossy(line).into_owned(),
        reason,
    }
}

/// Parses a length line (without its `\r\n`).
fn parse_length(line: &[u8]) -> Result<u128, Error> {
    let start = line.iter().position(|&b| !is_ruby_space(b));
    let end = line.iter().rposition(|&b| !is_ruby_space(b));
    let (Some(start), Some(end)) = (start, end) else {
        return Err(malformed(line, "empty"));
    };
    let mut digits = &line[start..=end];
    if let Some(rest) = digits.strip_prefix(b"+") {
        digits = rest;
    }
    if !digits.first().is_some_and(u8::is_ascii_digit) {
        return Err(malformed(line, "not a decimal number"));
    }
    let mut value: u128 = 0;
    let mut count = 0usize;
    let mut after_underscore = false;
    for &b in digits {
        match b {
            b'0'..=b'9' => {
                // At most MAX_LENGTH_LINE digits: far below u128::MAX.
                value = value * 10 + u128::from(b - b'0');
                count += 1;
                after_underscore = false;
            }
            b'_' if !after_underscore => after_underscore = true,
            _ => return Err(malformed(line, "not a decimal number")),
        }
    }
    if after_underscore {
        return Err(malformed(line, "not a decimal number"));
    }
    if digits[0] == b'0' && count > 1 {
        return Err(malformed(line, "leading zero"));
    }
    Ok(value)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for a length line.
    Head,
    /// The length line was read; waiting for this many payload bytes plus the 2-byte trailer.
    Body(usize),
}

/// The frame parser and writer, as a `tokio_util::codec` [`Decoder`] (items are payloads) and
/// [`Encoder`] (of payload bytes). See the module documentation for what it accepts.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max_payload: usize,
    state: State,
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameCodec {
    /// A codec accepting payloads up to [`DEFAULT_MAX_PAYLOAD`].
    pub fn new() -> Self {
        Self::with_max_payload(DEFAULT_MAX_PAYLOAD)
    }

    /// A codec accepting payloads up to `max_payload` bytes.
    pub fn with_max_payload(max_payload: usize) -> Self {
        FrameCodec {
            max_payload,
            state: State::Head,
        }
    }

    /// The largest payload accepted.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Whether part of a frame has been consumed or is buffered in `buf`.
    pub fn is_mid_frame(&self, buf: &[u8]) -> bool {
        self.state != State::Head || !buf.is_empty()
    }

    /// Bytes still missing from the frame in progress (at least 1 while waiting for a head).
    fn missing(&self, buf: &[u8]) -> usize {
        match self.state {
            State::Head => 1,
            State::Body(len) => (len + 2).saturating_sub(buf.len()).max(1),
        }
    }

    /// Reads a length line from the front of `buf`, if a whole one is there.
    fn decode_head(&self, buf: &mut BytesMut) -> Result<Option<usize>, Error> {
        let window = &buf[..buf.len().min(MAX_LENGTH_LINE + 2)];
        match window.windows(2).position(|w| w == b"\r\n") {
            Some(end) => {
                let length = parse_length(&window[..end])?;
                if length > self.max_payload as u128 {
                    return Err(Error::FrameTooLarge {
                        length,
                        max: self.max_payload,
                    });
                }
                buf.advance(end + 2);
                // length <= max_payload, a usize.
                Ok(Some(length as usize))
            }
            None => {
                if !window.iter().all(|&b| may_appear_in_length(b)) {
                    return Err(malformed(window, "not a decimal number"));
                }
                if window.len() >= MAX_LENGTH_LINE + 2 {
                    return Err(Error::LengthLineTooLong {
                        max: MAX_LENGTH_LINE,
                    });
                }
                Ok(None)
            }
        }
    }

    fn decode_frame(&mut self, buf: &mut BytesMut) -> Result<Option<BytesMut>, Error> {
        if self.state == State::Head {
            match self.decode_head(buf)? {
                Some(len) => self.state = State::Body(len),
                None => return Ok(None),
            }
        }
        let State::Body(len) = self.state else {
            unreachable!("state is Body after a head was read")
        };
        if buf.len() < len + 2 {
            // Grow with the data, not with the announced length.
            buf.reserve((len + 2 - buf.len()).min(READ_CHUNK));
            return Ok(None);
        }
        let payload = buf.split_to(len);
        buf.advance(2); // the trailer, never checked (as the original server)
        self.state = State::Head;
        Ok(Some(payload))
    }

    fn decode_frame_eof(&mut self, buf: &mut BytesMut) -> Result<Option<BytesMut>, Error> {
        if let Some(payload) = self.decode_frame(buf)? {
            return Ok(Some(payload));
        }
        if !self.is_mid_frame(buf) {
            return Ok(None);
        }
        let expected = match self.state {
            State::Head => None,
            State::Body(len) => Some(len + 2),
        };
        Err(Error::ConnectionClosedMidFrame {
            buffered: buf.len(),
            expected,
        })
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, Error> {
        self.decode_frame(src)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, Error> {
        self.decode_frame_eof(src)
    }
}

impl Encoder<&[u8]> for FrameCodec {
    type Error = Error;

    fn encode(&mut self, payload: &[u8], dst: &mut BytesMut) -> Result<(), Error> {
        dst.reserve(payload.len() + 24);
        encode_frame(payload, dst);
        Ok(())
    }
}

impl Encoder<Vec<u8>> for FrameCodec {
    type Error = Error;

    fn encode(&mut self, payload: Vec<u8>, dst: &mut BytesMut) -> Result<(), Error> {
        self.encode(&payload[..], dst)
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = Error;

    fn encode(&mut self, payload: Bytes, dst: &mut BytesMut) -> Result<(), Error> {
        self.encode(&payload[..], dst)
    }
}

/// Reads frames from a blocking stream. It buffers: bytes read past one frame are kept for the
/// next call, so keep using the same reader for the whole connection.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    codec: FrameCodec,
}

impl<R: Read> FrameReader<R> {
    /// A reader accepting payloads up to [`DEFAULT_MAX_PAYLOAD`].
    pub fn new(inner: R) -> Self {
        Self::with_max_payload(inner, DEFAULT_MAX_PAYLOAD)
    }

    /// A reader accepting payloads up to `max_payload` bytes.
    pub fn with_max_payload(inner: R, max_payload: usize) -> Self {
        FrameReader {
            inner,
            buf: BytesMut::new(),
            codec: FrameCodec::with_max_payload(max_payload),
        }
    }

    /// The next frame's payload; `None` when the stream ends cleanly between frames.
    pub fn read_frame(&mut self) -> Result<Option<BytesMut>, Error> {
        loop {
            if let Some(payload) = self.codec.decode_frame(&mut self.buf)? {
                return Ok(Some(payload));
            }
            let want = self.codec.missing(&self.buf).clamp(8 * 1024, READ_CHUNK);
            let start = self.buf.len();
            self.buf.resize(start + want, 0);
            let n = loop {
                match self.inner.read(&mut self.buf[start..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.buf.truncate(start);
                        return Err(e.into());
                    }
                }
            };
            self.buf.truncate(start + n);
            if n == 0 {
                return self.codec.decode_frame_eof(&mut self.buf);
            }
        }
    }

    /// The next envelope; `None` at a clean end of stream.
    pub fn read_message(&mut self) -> Result<Option<Message>, Error> {
        match self.read_frame()? {
            Some(payload) => Message::decode_checked(&payload).map(Some),
            None => Ok(None),
        }
    }

    /// The next request; `None` at a clean end of stream. A bad payload is an error that is not
    /// [fatal](Error::is_fatal): the following frame can still be read.
    pub fn read_request(&mut self) -> Result<Option<Request>, Error> {
        match self.read_frame()? {
            Some(payload) => Request::decode(&payload).map(Some),
            None => Ok(None),
        }
    }

    /// The next response; `None` at a clean end of stream.
    pub fn read_response(&mut self) -> Result<Option<Response>, Error> {
        match self.read_frame()? {
            Some(payload) => Response::decode(&payload).map(Some),
            None => Ok(None),
        }
    }

    /// Bytes read from the stream but not yet returned as a frame.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The underlying stream (reading from it directly loses the reader's place).
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The underlying stream; bytes still [buffered](Self::buffered) are dropped.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

/// Writes frames to a blocking stream: each frame in one `write_all`, then a flush.
#[derive(Debug)]
pub struct FrameWriter<W> {
    inner: W,
}

impl<W: Write> FrameWriter<W> {
    /// A writer over `inner`.
    pub fn new(inner: W) -> Self {
        FrameWriter { inner }
    }

    /// Writes one frame carrying `payload`.
    pub fn write_frame(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.inner.write_all(&frame(payload))?;
        self.inner.flush()?;
        Ok(())
    }

    /// Writes one envelope.
    pub fn write_message(&mut self, message: &Message) -> Result<(), Error> {
        self.write_frame(&message.to_bytes())
    }

    /// Writes one request.
    pub fn write_request(&mut self, request: &Request) -> Result<(), Error> {
        self.write_frame(&request.encode_to_vec())
    }

    /// Writes one response.
    pub fn write_response(&mut self, response: &Response) -> Result<(), Error> {
        self.write_frame(&response.encode_to_vec())
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The underlying stream.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// The underlying stream.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_length_accepts_what_ruby_integer_accepts() {
        for (line, n) in [
            ("0", 0u128),
            ("27", 27),
            (" 27", 27),
            ("27 ", 27),
            ("\t27\x0b\x0c", 27),
            ("+27", 27),
            ("1_000", 1000),
            ("16777216", 16_777_216),
            ("99999999999999999999", 99_999_999_999_999_999_999),
        ] {
            assert_eq!(parse_length(line.as_bytes()).unwrap(), n, "{line:?}");
        }
    }

    #[test]
    fn parse_length_refuses_the_rest() {
        for (line, reason) in [
            ("", "empty"),
            ("  ", "empty"),
            ("-1", "not a decimal number"),
            ("+", "not a decimal number"),
            ("++1", "not a decimal number"),
            ("0x10", "not a decimal number"),
            ("1 2", "not a decimal number"),
            ("_1", "not a decimal number"),
            ("1_", "not a decimal number"),
            ("1__0", "not a decimal number"),
            ("12a", "not a decimal number"),
            ("012", "leading zero"),
            ("00", "leading zero"),
        ] {
            match parse_length(line.as_bytes()) {
                Err(Error::MalformedLength { line: l, reason: r }) => {
                    assert_eq!((l.as_str(), r), (line, reason));
                }
                other => panic!("{line:?}: {other:?}"),
            }
        }
    }
}
