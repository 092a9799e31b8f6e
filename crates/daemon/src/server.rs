//! The unix-socket server: accept loop, one task per connection, framing, ordered replies and
//! shutdown. It holds no container logic: every decoded request goes to a [`Handler`].
//!
//! Per connection: frames are decoded with the protocol's [`ServerCodec`]; a request is handed
//! to the handler only after the previous one's reply was produced, so replies go out in
//! request order and later frames wait in the socket (or in the read buffer when they arrived
//! in the same read). Replies are buffered and written when no complete frame is left to
//! answer, when the buffer grows past [`FLUSH_AT`], or as soon as a handler has to wait, so a
//! pipelining client gets its replies in few writes and a slow request never holds back the
//! replies before it.
//!
//! A payload that does not decode (unknown type, missing required field) is answered with an
//! `ErrorResponse` carrying the decoder's message and the connection goes on. A framing error
//! (garbage length line, a length over `max_payload`) is answered with an `ErrorResponse`, then
//! the connection is closed; a frame cut short by the client's EOF just closes it.
//!
//! Shutdown: stop accepting; idle connections close at once; a connection inside a request
//! finishes it, writes the reply, then closes (frames queued behind it are not served). After
//! `shutdown_timeout` whatever still runs is abandoned.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::Decoder;
use tracing::Instrument;
use warden_protocol::frame::encode_frame;
use warden_protocol::{Error as ProtocolError, Response, ServerCodec};

use crate::handler::{ConnectionContext, Handler, Reply, RequestContext};

/// Write buffered replies once they reach this many bytes, even if more requests are queued.
pub const FLUSH_AT: usize = 64 * 1024;

/// Read this much at a time (the buffer grows further for a large frame).
const READ_CHUNK: usize = 8 * 1024;

/// Drop a read buffer that grew past this once it is empty again (bounded memory per
/// connection after a large frame).
const KEEP_BUFFER: usize = 64 * 1024;

/// After a framing error, how long to keep reading (and discarding) the client's bytes so the
/// ErrorResponse is not lost to a connection reset.
const LINGER: Duration = Duration::from_millis(200);

/// How the server behaves; see docs/daemon.md.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The largest frame payload accepted (`server.max_payload`).
    pub max_payload: usize,
    /// How long in-flight requests may take to finish at shutdown (`server.shutdown_timeout`).
    pub shutdown_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_payload: warden_protocol::DEFAULT_MAX_PAYLOAD,
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

/// How a shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections accepted over the server's life.
    pub connections: u64,
    /// Whether some connections were still busy when the bounded wait expired.
    pub timed_out: bool,
}

struct Shared<H> {
    handler: H,
    options: ServerOptions,
    next_request: AtomicU64,
    /// Set when the shutdown begins: the per-request check, without a lock.
    shutting_down: AtomicBool,
    /// Each open connection's shutdown signal, dropped (which wakes the connection) when the
    /// shutdown begins. A oneshot per connection costs no lock per request, unlike a shared
    /// token or Notify would.
    closers: Mutex<HashMap<u64, oneshot::Sender<()>>>,
}

/// Serves `listener` with `handler` until `shutdown` completes, then drains (see the module
/// docs) and calls [`Handler::on_shutdown`].
pub async fn serve<H: Handler>(
    listener: UnixListener,
    handler: H,
    options: ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> ShutdownReport {
    let shared = Arc::new(Shared {
        handler,
        options,
        next_request: AtomicU64::new(1),
        shutting_down: AtomicBool::new(false),
        closers: Mutex::new(HashMap::new()),
    });
    // Every connection task holds a clone of `alive`; recv() returns None once all are gone.
    let (alive, mut all_done) = mpsc::channel::<()>(1);
    let mut next_conn = 1u64;
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let id = next_conn;
                next_conn += 1;
                let cred = stream.peer_cred().ok();
                let ctx = ConnectionContext::new(
                    id,
                    cred.as_ref().and_then(|c| c.pid()),
                    cred.as_ref().map(|c| c.uid()),
                );
                let (closer, closed) = oneshot::channel();
                lock(&shared.closers).insert(id, closer);
                let shared = shared.clone();
                let alive = alive.clone();
                tokio::spawn(async move {
                    connection(stream, ctx, closed, &shared).await;
                    lock(&shared.closers).remove(&id);
                    drop(alive);
                });
            }
            Err(e) => {
                // EMFILE/ENFILE/ENOMEM: back off instead of spinning; others are transient
                // (ECONNABORTED) and also harmless to retry.
                tracing::warn!(error = %e, "accept failed");
                if is_resource_exhaustion(&e) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    drop(listener);
    let connections = next_conn - 1;
    tracing::info!(
        connections,
        "shutting down: no longer accepting connections"
    );
    shared.shutting_down.store(true, Ordering::SeqCst);
    drop(std::mem::take(&mut *lock(&shared.closers)));
    drop(alive);
    let timeout = shared.options.shutdown_timeout;
    let timed_out = tokio::time::timeout(timeout, all_done.recv())
        .await
        .is_err();
    if timed_out {
        tracing::warn!(
            ?timeout,
            "requests still running when the shutdown timeout expired; abandoning them"
        );
    }
    shared.handler.on_shutdown().await;
    ShutdownReport {
        connections,
        timed_out,
    }
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

/// What became of a request.
enum Handled {
    Done,
    /// Given up at shutdown (it waited on a job).
    Abandoned,
}

/// Why a connection ended.
#[derive(Debug)]
enum End {
    /// The client closed between frames.
    Closed,
    /// The daemon is shutting down.
    Shutdown,
    /// A framing error, or the client vanished mid-frame.
    Framing(ProtocolError),
    /// Reading or writing failed (the client went away).
    Io(io::Error),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn connection<H: Handler>(
    stream: UnixStream,
    ctx: ConnectionContext,
    closed: oneshot::Receiver<()>,
    shared: &Shared<H>,
) {
    let span = tracing::info_span!("conn", conn = ctx.id());
    async {
        tracing::debug!(pid = ctx.peer_pid(), uid = ctx.peer_uid(), "connected");
        shared.handler.on_connect(&ctx).await;
        let mut conn = Conn {
            stream,
            codec: ServerCodec::with_max_payload(shared.options.max_payload),
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
        };
        let end = conn.run(&ctx, shared, closed).await;
        match &end {
            End::Closed | End::Shutdown => tracing::debug!(?end, "disconnected"),
            End::Framing(e) => tracing::info!(error = %e, "closing the connection"),
            End::Io(e) => tracing::debug!(error = %e, "connection lost"),
        }
        shared.handler.on_disconnect(&ctx).await;
    }
    .instrument(span)
    .await
}

struct Conn {
    stream: UnixStream,
    codec: ServerCodec,
    rbuf: BytesMut,
    wbuf: BytesMut,
}

impl Conn {
    async fn run<H: Handler>(
        &mut self,
        ctx: &ConnectionContext,
        shared: &Shared<H>,
        mut closed: oneshot::Receiver<()>,
    ) -> End {
        let mut eof = false;
        loop {
            let item = if eof {
                self.codec.decode_eof(&mut self.rbuf)
            } else {
                self.codec.decode(&mut self.rbuf)
            };
            match item {
                Ok(Some(Ok(request))) => {
                    match self.request(ctx, shared, request, &mut closed).await {
                        Ok(Handled::Done) => {}
                        Ok(Handled::Abandoned) => return End::Shutdown,
                        Err(e) => return End::Io(e),
                    }
                    if shared.shutting_down.load(Ordering::Relaxed) {
                        return match self.flush().await {
                            Ok(()) => End::Shutdown,
                            Err(e) => End::Io(e),
                        };
                    }
                }
                Ok(Some(Err(e))) => {
                    tracing::debug!(error = %e, "undecodable request");
                    self.push(&Response::error(e.to_string()));
                }
                Ok(None) => {
                    if let Err(e) = self.flush().await {
                        return End::Io(e);
                    }
                    if eof {
                        return End::Closed;
                    }
                    if self.rbuf.is_empty() && self.rbuf.capacity() > KEEP_BUFFER {
                        self.rbuf = BytesMut::new();
                    }
                    match self.read(&mut closed).await {
                        Ok(Some(0)) => eof = true,
                        Ok(Some(_)) => {}
                        Ok(None) => return End::Shutdown,
                        Err(e) => return End::Io(e),
                    }
                }
                Err(e) => return self.framing_error(e).await,
            }
        }
    }

    /// Waits for bytes (or shutdown: `None`) and appends what arrived to the read buffer.
    async fn read(&mut self, closed: &mut oneshot::Receiver<()>) -> io::Result<Option<usize>> {
        loop {
            tokio::select! {
                biased;
                _ = &mut *closed => return Ok(None),
                ready = self.stream.readable() => ready?,
            }
            // The buffer is only allocated once there is something to read: an idle
            // connection costs no buffer.
            self.rbuf.reserve(READ_CHUNK);
            match self.stream.try_read_buf(&mut self.rbuf) {
                Ok(n) => return Ok(Some(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs one request to completion and buffers (or, for a stream, writes) its reply. A
    /// request that waits on a job (link, run, stream) is abandoned at shutdown instead: its
    /// job goes on under its keeper, and the next daemon answers for it (SPEC 3.11's drain
    /// closes such connections at once too).
    async fn request<H: Handler>(
        &mut self,
        ctx: &ConnectionContext,
        shared: &Shared<H>,
        request: warden_protocol::Request,
        closed: &mut oneshot::Receiver<()>,
    ) -> io::Result<Handled> {
        use warden_protocol::Request as R;
        let waits_on_a_job = matches!(request, R::Link(_) | R::Run(_) | R::Stream(_));
        let id = shared.next_request.fetch_add(1, Ordering::Relaxed);
        let type_name = request.type_name();
        let span = tracing::debug_span!("request", req = id, ty = type_name);
        let rctx = RequestContext::new(ctx, id);
        let reply = {
            let mut handling = pin!(shared
                .handler
                .handle(&rctx, request)
                .instrument(span.clone()));
            // Most requests complete at once; only when the handler has to wait are the
            // replies before it written out meanwhile.
            match std::future::poll_fn(|cx| Poll::Ready(handling.as_mut().poll(cx))).await {
                Poll::Ready(reply) => reply,
                Poll::Pending => {
                    let flushed = self.flush().await;
                    let reply = if waits_on_a_job {
                        tokio::select! {
                            reply = &mut handling => reply,
                            _ = &mut *closed => {
                                tracing::debug!(parent: &span, "abandoned at shutdown");
                                return Ok(Handled::Abandoned);
                            }
                        }
                    } else {
                        handling.await
                    };
                    if let Err(e) = flushed {
                        drop(reply);
                        return Err(e);
                    }
                    reply
                }
            }
        };
        match reply {
            Reply::Single(response) => {
                if response.is_error() {
                    tracing::debug!(parent: &span, reply = response.type_name(), "reply");
                } else {
                    tracing::trace!(parent: &span, reply = response.type_name(), "reply");
                }
                self.push(&response);
                if self.wbuf.len() >= FLUSH_AT {
                    self.flush().await?;
                }
                Ok(Handled::Done)
            }
            Reply::Stream(mut responses) => {
                self.flush().await?;
                let mut count = 0usize;
                // Watch the socket meanwhile: a client that hangs up must be noticed even while
                // the stream has nothing to write (the producer then sees its receiver gone and
                // stops, SPEC 3.5). Bytes it pipelines are kept for the requests after, up to a
                // bound; past that only a failed write tells.
                let mut watch = true;
                loop {
                    let next = if watch {
                        tokio::select! {
                            r = responses.recv() => r,
                            _ = &mut *closed => return Ok(Handled::Abandoned),
                            ready = self.stream.readable() => {
                                if ready.is_ok() {
                                    self.rbuf.reserve(READ_CHUNK);
                                    match self.stream.try_read_buf(&mut self.rbuf) {
                                        Ok(0) => {
                                            tracing::debug!(parent: &span, "client left mid-stream");
                                            return Err(io::ErrorKind::UnexpectedEof.into());
                                        }
                                        Ok(_) => watch = self.rbuf.len() < READ_CHUNK * 16,
                                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                                        Err(e) => return Err(e),
                                    }
                                }
                                continue;
                            }
                        }
                    } else {
                        tokio::select! {
                            r = responses.recv() => r,
                            _ = &mut *closed => return Ok(Handled::Abandoned),
                        }
                    };
                    let Some(response) = next else { break };
                    count += 1;
                    self.push(&response);
                    // Write what is ready in one go, then wait for more.
                    while self.wbuf.len() < FLUSH_AT {
                        match responses.try_recv() {
                            Ok(r) => {
                                count += 1;
                                self.push(&r);
                            }
                            Err(_) => break,
                        }
                    }
                    self.flush().await?;
                }
                tracing::debug!(parent: &span, responses = count, "stream ended");
                Ok(Handled::Done)
            }
        }
    }

    fn push(&mut self, response: &Response) {
        encode_frame(&response.encode_to_vec(), &mut self.wbuf);
    }

    async fn flush(&mut self) -> io::Result<()> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
            if self.wbuf.capacity() > KEEP_BUFFER {
                self.wbuf = BytesMut::new();
            }
        }
        Ok(())
    }

    /// Answers a framing error (unless the client already hung up mid-frame), then closes.
    async fn framing_error(&mut self, e: ProtocolError) -> End {
        if matches!(
            e,
            ProtocolError::ConnectionClosedMidFrame { .. } | ProtocolError::Io(_)
        ) {
            let _ = self.flush().await;
            return End::Framing(e);
        }
        self.push(&Response::error(e.to_string()));
        if self.flush().await.is_ok() {
            let _ = self.stream.shutdown().await;
            // Read what the client still sends for a moment: closing with unread bytes would
            // reset the connection and could destroy the ErrorResponse before it is read.
            let _ = tokio::time::timeout(LINGER, async {
                let mut discarded = 0usize;
                while discarded < 1 << 20 {
                    self.rbuf.clear();
                    self.rbuf.reserve(READ_CHUNK);
                    if self.stream.readable().await.is_err() {
                        break;
                    }
                    match self.stream.try_read_buf(&mut self.rbuf) {
                        Ok(0) => break,
                        Ok(n) => discarded += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(_) => break,
                    }
                }
            })
            .await;
        }
        End::Framing(e)
    }
}
