//! The client's error type.

use std::path::PathBuf;

/// What went wrong talking to wardend. Every variant but [`Error::Server`] names the socket.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The socket could not be connected to (absent, refused, no permission...).
    #[error("cannot connect to wardend at {}: {source}", path.display())]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// The server answered the request with an ErrorResponse. The connection stays usable.
    #[error("{message}")]
    Server {
        /// The request that failed, e.g. `"DestroyRequest"`.
        request: &'static str,
        /// The server's message (`unknown handle`), empty if it sent none.
        message: String,
    },

    /// Writing the request or reading the response failed: an I/O error, a malformed frame,
    /// or a response that does not decode.
    #[error("{request} to wardend at {}: {source}", path.display())]
    Protocol {
        /// The socket path.
        path: PathBuf,
        /// The request being made.
        request: &'static str,
        /// What the protocol layer reported.
        #[source]
        source: warden_protocol::Error,
    },

    /// The server closed the connection before it had answered.
    #[error("wardend at {} closed the connection before answering {request}", path.display())]
    Closed {
        /// The socket path.
        path: PathBuf,
        /// The request being made.
        request: &'static str,
    },

    /// The server answered with a response of another type than the request's.
    #[error("wardend at {} answered {request} with {got}", path.display())]
    UnexpectedResponse {
        /// The socket path.
        path: PathBuf,
        /// The request being made.
        request: &'static str,
        /// The response's message name.
        got: &'static str,
    },

    /// A stream of job output was dropped before its end, so the connection still has the
    /// rest of it to deliver and cannot carry another request.
    #[error(
        "the connection to wardend at {} is unusable: a stream of job output was abandoned before its end",
        path.display()
    )]
    StreamAbandoned {
        /// The socket path.
        path: PathBuf,
    },
}

impl Error {
    /// The server's message, when this is an ErrorResponse.
    pub fn server_message(&self) -> Option<&str> {
        match self {
            Error::Server { message, .. } => Some(message),
            _ => None,
        }
    }

    /// Whether the connection can carry further requests after this error (true only for
    /// an ErrorResponse, or a response that did not decode while the framing stayed intact).
    pub fn connection_usable(&self) -> bool {
        match self {
            Error::Server { .. } => true,
            Error::Protocol { source, .. } => !source.is_fatal(),
            _ => false,
        }
    }
}

/// The result of a client call.
pub type Result<T, E = Error> = std::result::Result<T, E>;
