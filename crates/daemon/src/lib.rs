//! wardend, the Warden daemon: configuration, the unix-socket server and what answers it.
//!
//! - [`config`]: the YAML configuration (SPEC 3.10), typed and validated.
//! - [`server`]: accept loop, connections, framing, ordering, shutdown; no container logic.
//! - [`handler`]: the [`Handler`] trait the server calls, with per-connection context.
//! - [`dispatch`]: the daemon's handler (ping, echo, list; container requests to come).
//! - [`registry`]: containers by handle.
//! - [`listen`]: the socket file (stale socket removal, permissions) and the pidfile.
//! - [`health`]: the TCP health check.
//! - [`helper`]: wardend re-executed as its single-threaded helpers, started one request ahead.
//! - [`logging`]: the tracing subscriber.
//!
//! See docs/daemon.md.

pub mod config;
pub mod container;
pub mod copy;
pub mod dispatch;
pub mod handler;
pub mod health;
pub mod helper;
pub mod jobs;
pub mod listen;
pub mod logging;
pub mod manager;
pub mod net;
pub mod pool;
pub mod registry;
pub mod server;
pub use warden_runtime::steps;

pub use handler::{ConnectionContext, Handler, Reply, RequestContext};
