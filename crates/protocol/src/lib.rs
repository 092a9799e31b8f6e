//! warden-protocol: Warden's wire protocol.
//!
//! - [`messages`]: every request and response of the protocol as prost structs with proto2
//!   semantics, byte-compatible with the original Ruby encoder (all re-exported here).
//! - [`WardenMessage`]: decoding that fails on a missing required field
//!   (`missing required field warden.StopRequest.handle`).
//! - [`Request`] / [`Response`]: one variant per message, to and from the envelope
//!   [`Message`].
//! - [`frame`]: `<len>\r\n<payload>\r\n` framing, blocking ([`FrameReader`], [`FrameWriter`])
//!   and as a tokio-util codec ([`FrameCodec`]); [`codec`]: typed codecs for either end.
//!
//! ```
//! use warden_protocol::{Request, Response, StopRequest, Type};
//!
//! let request = Request::from(StopRequest { handle: "h".into(), ..Default::default() });
//! let wire = request.to_frame();
//! assert_eq!(wire, b"7\r\n\x08\x0c\x12\x03\x0a\x01h\r\n");
//! let decoded = Request::decode(&wire[3..wire.len() - 2]).unwrap();
//! assert_eq!(decoded.message_type(), Type::Stop);
//! assert_eq!(decoded.type_name(), "StopRequest");
//! assert_eq!(Response::error("unknown handle").type_name(), "ErrorResponse");
//! ```
//!
//! See docs/protocol.md for the framing, the type table and the limits.

pub mod codec;
mod envelope;
mod error;
pub mod frame;
pub mod messages;
mod wire;

pub use codec::{ClientCodec, ServerCodec};
pub use envelope::{Request, RequestMessage, Response, ResponseMessage};
pub use error::Error;
pub use frame::{FrameCodec, FrameReader, FrameWriter, DEFAULT_MAX_PAYLOAD};
pub use messages::*;
pub use wire::{check_required, NestedCheck, WardenMessage};
