//! warden-client: talk to wardend (or the original Ruby Warden) over its unix socket.
//!
//! - [`Client`]: blocking; [`AsyncClient`]: tokio. Both have one typed call per request
//!   (`create`, `stop`, `destroy`, `info`, `spawn`, `link`, `run`, `stream`, `net_in`,
//!   `net_out`, `copy_in`, `copy_out`, `limit_memory`, `limit_disk`, `limit_bandwidth`,
//!   `limit_cpu`, `ping`, `list`, `echo`), plus `call` for any typed request and `request` for
//!   an untyped one. An ErrorResponse is [`Error::Server`] with the server's message; the
//!   connection stays usable.
//! - `stream` (and `run_streaming`, which is spawn + stream) give the job's output as it comes:
//!   [`JobStream`] (an `Iterator`) and [`AsyncJobStream`] (a `Stream`) of
//!   [`StreamResponse`] chunks, the last carrying the exit status.
//! - [`schema`], [`args`], [`value`]: the table of every message's fields and the original
//!   REPL's `--field value` syntax built on it, used by the `warden` command line.
//!
//! The messages are those of [`warden_protocol`], re-exported here.
//!
//! See docs/client.md.

pub mod args;
mod blocking;
mod calls;
mod error;
mod nonblocking;
pub mod schema;
pub mod value;

pub use blocking::{Client, JobStream};
pub use calls::spawn_request_for;
pub use error::{Error, Result};
pub use nonblocking::{AsyncClient, AsyncJobStream};
pub use warden_protocol::messages::*;
pub use warden_protocol::{Request, RequestMessage, Response, ResponseMessage};

/// The socket wardend listens on unless configured otherwise (SPEC 3.10).
pub const DEFAULT_SOCKET: &str = "/tmp/warden.sock";
