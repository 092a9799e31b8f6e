//! The server with handlers of our own, in process: the hooks, stream replies, a request that
//! waits, and shutdown with requests in flight. This is also how a container manager plugs in.

mod common;

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::Client;
use warden_daemon::server::{serve, ServerOptions, ShutdownReport};
use warden_daemon::{ConnectionContext, Handler, Reply, RequestContext};
use warden_protocol::{EchoRequest, EchoResponse, PingRequest, PingResponse, Request, Response};

/// Echo, except `sleep:N` (answered after N ms) and `stream:N` (N responses).
#[derive(Default)]
struct TestHandler {
    events: Mutex<Vec<String>>,
}

impl TestHandler {
    fn log(&self, event: String) {
        self.events.lock().unwrap().push(event);
    }
}

fn echoed(message: &str) -> Response {
    EchoResponse {
        message: message.into(),
    }
    .into()
}

impl Handler for TestHandler {
    async fn on_connect(&self, conn: &ConnectionContext) {
        assert_eq!(conn.peer_pid(), Some(std::process::id() as i32));
        self.log(format!("connect {}", conn.id()));
    }

    async fn handle(&self, ctx: &RequestContext<'_>, request: Request) -> Reply {
        let Request::Echo(EchoRequest { message }) = request else {
            return Reply::Single(PingResponse {}.into());
        };
        self.log(format!("request {} on {}", ctx.id(), ctx.conn().id()));
        if let Some(ms) = message.strip_prefix("sleep:") {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
        }
        if let Some(n) = message.strip_prefix("stream:") {
            let n: usize = n.parse().unwrap();
            let (tx, reply) = Reply::channel(4);
            tokio::spawn(async move {
                for i in 0..n {
                    if tx.send(echoed(&format!("part {i}"))).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            });
            return reply;
        }
        Reply::Single(echoed(&message))
    }

    async fn on_disconnect(&self, conn: &ConnectionContext) {
        self.log(format!("disconnect {}", conn.id()));
    }

    async fn on_shutdown(&self) {
        self.log("shutdown".into());
    }
}

struct Running {
    _dir: tempfile::TempDir,
    socket: std::path::PathBuf,
    handler: Arc<TestHandler>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<ShutdownReport>>,
}

impl Running {
    fn start(shutdown_timeout: Duration) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("t.sock");
        let handler = Arc::new(TestHandler::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let h = handler.clone();
        let path = socket.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::UnixListener::bind(&path).unwrap();
                ready_tx.send(()).unwrap();
                let options = ServerOptions {
                    shutdown_timeout,
                    ..Default::default()
                };
                serve(listener, Shared(h), options, async {
                    let _ = stopped.await;
                })
                .await
            })
        });
        ready.recv().unwrap();
        Running {
            _dir: dir,
            socket,
            handler,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn connect(&self) -> Client {
        Client::connect(&self.socket)
    }

    fn shutdown(&mut self) -> ShutdownReport {
        let _ = self.stop.take().unwrap().send(());
        self.thread.take().unwrap().join().unwrap()
    }

    fn events(&self) -> Vec<String> {
        self.handler.events.lock().unwrap().clone()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The handler behind an Arc, so the test can read its log.
struct Shared(Arc<TestHandler>);

impl Handler for Shared {
    async fn on_connect(&self, conn: &ConnectionContext) {
        self.0.on_connect(conn).await
    }
    async fn handle(&self, ctx: &RequestContext<'_>, request: Request) -> Reply {
        self.0.handle(ctx, request).await
    }
    async fn on_disconnect(&self, conn: &ConnectionContext) {
        self.0.on_disconnect(conn).await
    }
    async fn on_shutdown(&self) {
        self.0.on_shutdown().await
    }
}

fn echo(m: &str) -> Request {
    EchoRequest { message: m.into() }.into()
}

fn wait_for(what: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !what() {
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn hooks_see_each_connection_once_with_its_id() {
    let mut s = Running::start(Duration::from_secs(5));
    let mut a = s.connect();
    let mut b = s.connect();
    assert_eq!(a.call(echo("x")), echoed("x"));
    assert_eq!(b.call(echo("y")), echoed("y"));
    drop(a);
    drop(b);
    wait_for(|| {
        s.events()
            .iter()
            .filter(|e| e.starts_with("disconnect"))
            .count()
            == 2
    });
    let report = s.shutdown();
    assert_eq!(report.connections, 2);
    assert!(!report.timed_out);
    let events = s.events();
    assert!(events.contains(&"connect 1".to_string()), "{events:?}");
    assert!(events.contains(&"connect 2".to_string()), "{events:?}");
    assert!(events.contains(&"disconnect 1".to_string()), "{events:?}");
    assert!(events.contains(&"disconnect 2".to_string()), "{events:?}");
    assert_eq!(events.last().unwrap(), "shutdown");
    let requests: Vec<_> = events.iter().filter(|e| e.starts_with("request")).collect();
    assert_eq!(requests.len(), 2);
    assert_ne!(requests[0].split(' ').nth(1), requests[1].split(' ').nth(1));
}

#[test]
fn a_stream_reply_then_the_next_request() {
    let s = Running::start(Duration::from_secs(5));
    let mut c = s.connect();
    let mut bytes = echo("stream:20").to_frame();
    bytes.extend(echo("after").to_frame());
    c.send_raw(&bytes);
    for i in 0..20 {
        assert_eq!(c.read(), echoed(&format!("part {i}")));
    }
    assert_eq!(c.read(), echoed("after"));
}

#[test]
fn replies_before_a_waiting_request_are_not_held_back() {
    let s = Running::start(Duration::from_secs(5));
    let mut c = s.connect();
    let mut bytes = echo("fast").to_frame();
    bytes.extend(echo("sleep:500").to_frame());
    bytes.extend(Request::from(PingRequest {}).to_frame());
    let t = Instant::now();
    c.send_raw(&bytes);
    assert_eq!(c.read(), echoed("fast"));
    assert!(
        t.elapsed() < Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(c.read(), echoed("sleep:500"));
    assert!(t.elapsed() >= Duration::from_millis(500));
    assert_eq!(c.read(), PingResponse {}.into());
}

#[test]
fn connections_are_served_concurrently() {
    let s = Running::start(Duration::from_secs(5));
    let mut slow = s.connect();
    slow.send_raw(&echo("sleep:1000").to_frame());
    let mut fast = s.connect();
    let t = Instant::now();
    assert_eq!(fast.call(echo("quick")), echoed("quick"));
    assert!(t.elapsed() < Duration::from_millis(500));
    assert_eq!(slow.read(), echoed("sleep:1000"));
}

#[test]
fn shutdown_lets_an_in_flight_request_finish() {
    let mut s = Running::start(Duration::from_secs(5));
    let mut c = s.connect();
    let mut idle = s.connect();
    assert_eq!(idle.call(echo("i")), echoed("i"));
    // A slow request, then one queued behind it that is not served once shutdown began.
    let mut bytes = echo("sleep:300").to_frame();
    bytes.extend(echo("queued").to_frame());
    c.send_raw(&bytes);
    wait_for(|| {
        s.events()
            .iter()
            .any(|e| e.starts_with("request") && e.ends_with("on 1"))
    });
    let report = s.shutdown();
    assert!(!report.timed_out);
    assert_eq!(c.read(), echoed("sleep:300"));
    assert!(c.at_eof());
    assert!(idle.at_eof());
}

#[test]
fn shutdown_gives_up_after_its_timeout() {
    let mut s = Running::start(Duration::from_millis(200));
    let mut c = s.connect();
    c.send_raw(&echo("sleep:20000").to_frame());
    wait_for(|| s.events().iter().any(|e| e.starts_with("request")));
    let t = Instant::now();
    let report = s.shutdown();
    assert!(report.timed_out);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}
