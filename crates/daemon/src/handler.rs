//! What the server asks of whoever answers requests: the [`Handler`] trait.
//!
//! The server ([`crate::server`]) owns sockets, framing, ordering and shutdown, and knows
//! nothing of containers. For each connection it calls [`Handler::on_connect`] once, then
//! [`Handler::handle`] for each request, strictly one at a time and in order, then
//! [`Handler::on_disconnect`] once, whatever ended the connection. Connections run
//! concurrently, so a handler is shared (`&self`) and keeps its own locks.

use std::future::Future;
use std::time::Instant;

use tokio::sync::mpsc;
use warden_protocol::{Request, Response};

/// One client connection, as the handler sees it.
#[derive(Debug, Clone)]
pub struct ConnectionContext {
    id: u64,
    peer_pid: Option<i32>,
    peer_uid: Option<u32>,
    connected_at: Instant,
}

impl ConnectionContext {
    /// A context; the server makes these (public so handlers can be tested without a socket).
    pub fn new(id: u64, peer_pid: Option<i32>, peer_uid: Option<u32>) -> Self {
        ConnectionContext {
            id,
            peer_pid,
            peer_uid,
            connected_at: Instant::now(),
        }
    }

    /// Unique for the daemon's lifetime (counts from 1). The key to track which containers a
    /// connection references (SPEC 3.1, 3.3).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The client's pid (SO_PEERCRED), when the kernel gave it.
    pub fn peer_pid(&self) -> Option<i32> {
        self.peer_pid
    }

    /// The client's uid (SO_PEERCRED).
    pub fn peer_uid(&self) -> Option<u32> {
        self.peer_uid
    }

    /// When the connection was accepted.
    pub fn connected_at(&self) -> Instant {
        self.connected_at
    }
}

/// One request on a connection.
#[derive(Debug, Clone, Copy)]
pub struct RequestContext<'a> {
    conn: &'a ConnectionContext,
    id: u64,
}

impl<'a> RequestContext<'a> {
    /// A context for request `id` on `conn`.
    pub fn new(conn: &'a ConnectionContext, id: u64) -> Self {
        RequestContext { conn, id }
    }

    /// The connection the request came on.
    pub fn conn(&self) -> &'a ConnectionContext {
        self.conn
    }

    /// Unique for the daemon's lifetime (counts from 1); it is also in the request's log span.
    pub fn id(&self) -> u64 {
        self.id
    }
}

/// What a request is answered with.
// Moved once per request; boxing the Response (InfoResponse is inline) would cost an
// allocation per request instead.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Reply {
    /// One response (an `ErrorResponse` for any failure).
    Single(Response),
    /// Several responses (stream): each is written and flushed as it arrives, in order, until
    /// every sender is dropped. When the client goes away the server drops the receiver, so
    /// the producer's `send` fails and it can stop (a job must survive that: SPEC 3.5).
    /// The next request on the connection is read only once the stream has ended.
    Stream(mpsc::Receiver<Response>),
}

impl From<Response> for Reply {
    fn from(response: Response) -> Self {
        Reply::Single(response)
    }
}

impl Reply {
    /// A reply of one `ErrorResponse` with `message`.
    pub fn error(message: impl Into<String>) -> Self {
        Reply::Single(Response::error(message))
    }

    /// A stream reply and the sender to feed it; `capacity` responses may wait unsent.
    pub fn channel(capacity: usize) -> (mpsc::Sender<Response>, Reply) {
        let (tx, rx) = mpsc::channel(capacity);
        (tx, Reply::Stream(rx))
    }
}

/// Answers requests. Implemented by [`crate::dispatch::Dispatcher`]; a container manager
/// plugs in behind it (or implements this directly).
///
/// The server always drives `handle` to completion, even when the client has gone away
/// meanwhile, so a handler never sees a request cancelled half-way, with two exceptions at
/// shutdown: link, run and stream, which wait on a job, are dropped at once (the job goes
/// on; the next daemon answers for it), and a shutdown whose bounded wait expires abandons
/// handlers still running.
pub trait Handler: Send + Sync + 'static {
    /// A connection was accepted (before its first request is read).
    fn on_connect(&self, conn: &ConnectionContext) -> impl Future<Output = ()> + Send {
        let _ = conn;
        async {}
    }

    /// Answers one request. Decoding failures never get here: the server answers them.
    fn handle(
        &self,
        ctx: &RequestContext<'_>,
        request: Request,
    ) -> impl Future<Output = Reply> + Send;

    /// The connection is closed (after the last request's reply was written or abandoned).
    fn on_disconnect(&self, conn: &ConnectionContext) -> impl Future<Output = ()> + Send {
        let _ = conn;
        async {}
    }

    /// The daemon stops: every connection has closed or the bounded wait has expired.
    fn on_shutdown(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}
