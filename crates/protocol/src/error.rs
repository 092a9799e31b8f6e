//! The crate's one error type.

/// Everything that can go wrong reading or decoding Warden's wire protocol.
///
/// Framing errors ([`Error::MalformedLength`], [`Error::LengthLineTooLong`],
/// [`Error::FrameTooLarge`], [`Error::ConnectionClosedMidFrame`], [`Error::Io`]) leave the byte
/// stream out of step: close the connection. Message errors ([`Error::Decode`],
/// [`Error::MissingField`], [`Error::Malformed`], [`Error::UnknownRequestType`],
/// [`Error::UnknownResponseType`]) concern one frame's payload only; the next frame can still be
/// read, and a server answers them with an `ErrorResponse` as the original does.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// prost rejected the bytes of `message` (bad wire type, truncated field, invalid UTF-8 in a
    /// string...).
    #[error("malformed {message}: {source}")]
    Decode {
        /// Full protobuf name of the message being decoded, e.g. `warden.StopRequest`.
        message: &'static str,
        #[source]
        source: prost::DecodeError,
    },

    /// A proto2 `required` field was absent from the encoded message.
    #[error("missing required field {field}")]
    MissingField {
        /// Full protobuf name of the field, e.g. `warden.StopRequest.handle`.
        field: &'static str,
    },

    /// The required-field scan found bytes that are not protobuf wire format (prost accepts
    /// everything this rejects, so this only shows on a bug or a hand-made payload).
    #[error("malformed {message}: {reason}")]
    Malformed {
        /// Full protobuf name of the message being scanned.
        message: &'static str,
        /// What was wrong.
        reason: &'static str,
    },

    /// The envelope's `type` names no request (`Error` = 1, or a number outside the `Type` enum).
    #[error("Unknown request type: {0}")]
    UnknownRequestType(i32),

    /// The envelope's `type` is outside the `Type` enum.
    #[error("Unknown response type: {0}")]
    UnknownResponseType(i32),

    /// The line before the first `\r\n` of a frame is not a decimal length.
    #[error("malformed frame length line {line:?}: {reason}")]
    MalformedLength {
        /// The line as received (lossily decoded as UTF-8).
        line: String,
        /// What was wrong.
        reason: &'static str,
    },

    /// No `\r\n` within the first `max` bytes of a frame.
    #[error("frame length line longer than {max} bytes without \\r\\n")]
    LengthLineTooLong {
        /// The longest length line accepted, in bytes.
        max: usize,
    },

    /// A frame announced more payload than the reader accepts.
    /// Detected from the length line, before anything is allocated for the payload.
    #[error("frame payload of {length} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge {
        /// The announced payload length.
        length: u128,
        /// The codec's limit.
        max: usize,
    },

    /// The peer closed the connection after part of a frame.
    #[error(
        "connection closed mid-frame: {buffered} bytes of an incomplete frame were received{}",
        match expected { Some(n) => format!(", {n} expected"), None => String::new() }
    )]
    ConnectionClosedMidFrame {
        /// Bytes of the incomplete frame received (after the length line when it was complete).
        buffered: usize,
        /// Payload plus trailer bytes the length line announced, when it had been read.
        expected: Option<usize>,
    },

    /// Reading from or writing to the connection failed.
    #[error("I/O error on the warden connection: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Whether the byte stream is out of step after this error, so the connection must be
    /// closed. `false` means only the current frame's payload was bad.
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            Error::Decode { .. }
                | Error::MissingField { .. }
                | Error::Malformed { .. }
                | Error::UnknownRequestType(_)
                | Error::UnknownResponseType(_)
        )
    }
}
