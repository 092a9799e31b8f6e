//! Typed `tokio_util::codec` codecs for the two ends of a connection.
//!
//! Both wrap a [`FrameCodec`]. [`ServerCodec`] yields `Result<Request, Error>` items so that a
//! frame whose payload does not decode (unknown type, missing required field...) reaches the
//! server as a value it answers with an `ErrorResponse`, keeping the connection, as the
//! original does; only framing errors end the stream. [`ClientCodec`] yields responses and
//! treats any error as the end of the connection.

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::frame::{encode_frame, FrameCodec};
use crate::{Error, Request, Response};

/// The server's codec: decodes requests, encodes responses.
#[derive(Debug, Clone, Default)]
pub struct ServerCodec {
    frames: FrameCodec,
}

impl ServerCodec {
    /// A codec accepting payloads up to [`crate::frame::DEFAULT_MAX_PAYLOAD`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A codec accepting payloads up to `max_payload` bytes.
    pub fn with_max_payload(max_payload: usize) -> Self {
        ServerCodec {
            frames: FrameCodec::with_max_payload(max_payload),
        }
    }
}

impl Decoder for ServerCodec {
    /// The request, or why this frame's payload is not one (never [fatal](Error::is_fatal)).
    type Item = Result<Request, Error>;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Error> {
        Ok(self.frames.decode(src)?.map(|p| Request::decode(&p)))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Error> {
        Ok(self.frames.decode_eof(src)?.map(|p| Request::decode(&p)))
    }
}

impl Encoder<&Response> for ServerCodec {
    type Error = Error;

    fn encode(&mut self, response: &Response, dst: &mut BytesMut) -> Result<(), Error> {
        encode_frame(&response.encode_to_vec(), dst);
        Ok(())
    }
}

impl Encoder<Response> for ServerCodec {
    type Error = Error;

    fn encode(&mut self, response: Response, dst: &mut BytesMut) -> Result<(), Error> {
        self.encode(&response, dst)
    }
}

/// The client's codec: encodes requests, decodes responses.
#[derive(Debug, Clone, Default)]
pub struct ClientCodec {
    frames: FrameCodec,
}

impl ClientCodec {
    /// A codec accepting payloads up to [`crate::frame::DEFAULT_MAX_PAYLOAD`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A codec accepting payloads up to `max_payload` bytes.
    pub fn with_max_payload(max_payload: usize) -> Self {
        ClientCodec {
            frames: FrameCodec::with_max_payload(max_payload),
        }
    }
}

impl Decoder for ClientCodec {
    type Item = Response;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Response>, Error> {
        self.frames
            .decode(src)?
            .map(|p| Response::decode(&p))
            .transpose()
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Response>, Error> {
        self.frames
            .decode_eof(src)?
            .map(|p| Response::decode(&p))
            .transpose()
    }
}

impl Encoder<&Request> for ClientCodec {
    type Error = Error;

    fn encode(&mut self, request: &Request, dst: &mut BytesMut) -> Result<(), Error> {
        encode_frame(&request.encode_to_vec(), dst);
        Ok(())
    }
}

impl Encoder<Request> for ClientCodec {
    type Error = Error;

    fn encode(&mut self, request: Request, dst: &mut BytesMut) -> Result<(), Error> {
        self.encode(&request, dst)
    }
}
