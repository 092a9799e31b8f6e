//! Request round trips over wardend's unix socket: ping, and echo with a 1 KiB message, from 1,
//! 16 and 256 concurrent clients, each sending its next request once the previous reply is in.
//!
//!     cargo bench -p warden-daemon --bench rtt
//!
//! It starts its own wardend (the bench profile's build) on a socket in a temp dir, with logs
//! at `info`, and prints requests/s and the p50/p99 round trip per case. Environment:
//! `RTT_SECS` (seconds per case, default 3), `RTT_CLIENT_THREADS` (the load generator's
//! runtime threads; default 1), `WARDEND_ARGS` (extra wardend arguments, e.g.
//! `--worker-threads 1`), `WARDEND` (another wardend binary).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use warden_protocol::{EchoRequest, EchoResponse, PingRequest, PingResponse, Request, Response};

struct Daemon {
    child: Child,
    _dir: tempfile::TempDir,
    socket: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_daemon() -> Daemon {
    let dir = tempfile::Builder::new()
        .prefix("wardend-bench")
        .tempdir()
        .unwrap();
    let socket = dir.path().join("w.sock");
    let config = dir.path().join("wardend.yml");
    std::fs::write(
        &config,
        "health_check_server:\n  port: 0\nlogging:\n  level: info\n",
    )
    .unwrap();
    let binary = std::env::var_os("WARDEND")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_wardend")));
    let extra: Vec<String> = std::env::var("WARDEND_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect();
    let child = Command::new(&binary)
        .arg("--config")
        .arg(&config)
        .arg("--socket")
        .arg(&socket)
        .arg("--depot")
        .arg(dir.path().join("depot"))
        .args(&extra)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("wardend.log")).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "wardend did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    Daemon {
        child,
        _dir: dir,
        socket,
    }
}

struct Case {
    name: &'static str,
    request: Vec<u8>,
    response: Vec<u8>,
}

fn cases() -> Vec<Case> {
    let message = "x".repeat(1024);
    let frame = |r: Response| r.to_frame();
    vec![
        Case {
            name: "ping",
            request: Request::from(PingRequest {}).to_frame(),
            response: frame(PingResponse {}.into()),
        },
        Case {
            name: "echo 1 KiB",
            request: Request::from(EchoRequest {
                message: message.clone(),
            })
            .to_frame(),
            response: frame(EchoResponse { message }.into()),
        },
    ]
}

/// One client: round trips until `end`, returning each one's duration in ns.
async fn client(
    socket: PathBuf,
    request: Vec<u8>,
    response: Vec<u8>,
    start: Instant,
    end: Instant,
) -> Vec<u32> {
    let mut s = UnixStream::connect(&socket).await.unwrap();
    let mut buf = vec![0u8; response.len()];
    let mut samples = Vec::with_capacity(1 << 16);
    loop {
        let t0 = Instant::now();
        if t0 >= end {
            break;
        }
        s.write_all(&request).await.unwrap();
        s.read_exact(&mut buf).await.unwrap();
        let t1 = Instant::now();
        assert!(buf == response, "unexpected reply");
        if t0 >= start {
            samples.push(u32::try_from((t1 - t0).as_nanos()).unwrap_or(u32::MAX));
        }
    }
    samples
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn run_case(
    rt: &tokio::runtime::Runtime,
    socket: &Path,
    case: &Case,
    clients: usize,
    secs: f64,
) -> (usize, f64, f64, f64) {
    let warmup = Duration::from_millis(300);
    let measure = Duration::from_secs_f64(secs);
    let t = Instant::now() + Duration::from_millis(50);
    let (start, end) = (t + warmup, t + warmup + measure);
    let samples: Vec<u32> = rt.block_on(async {
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                tokio::spawn(client(
                    socket.to_owned(),
                    case.request.clone(),
                    case.response.clone(),
                    start,
                    end,
                ))
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let mut sorted = samples;
    sorted.sort_unstable();
    let n = sorted.len();
    (
        n,
        n as f64 / measure.as_secs_f64(),
        percentile(&sorted, 0.50),
        percentile(&sorted, 0.99),
    )
}

fn main() {
    let secs: f64 = std::env::var("RTT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let threads: usize = std::env::var("RTT_CLIENT_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
    .unwrap();
    let daemon = start_daemon();
    println!(
        "wardend request round trips over a unix socket ({secs} s per case, {} CPUs, client runtime threads {threads}, wardend args {:?})",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::env::var("WARDEND_ARGS").unwrap_or_default(),
    );
    println!();
    println!(
        "| {:<10} | {:>7} | {:>10} | {:>12} | {:>8} | {:>8} |",
        "request", "clients", "requests", "requests/s", "p50 µs", "p99 µs"
    );
    println!(
        "|{:-<12}|{:->9}|{:->12}|{:->14}|{:->10}|{:->10}|",
        "", "", "", "", "", ""
    );
    for case in cases() {
        for clients in [1, 16, 256] {
            let (n, rate, p50, p99) = run_case(&rt, &daemon.socket, &case, clients, secs);
            println!(
                "| {:<10} | {:>7} | {:>10} | {:>12.0} | {:>8.1} | {:>8.1} |",
                case.name, clients, n, rate, p50, p99
            );
        }
    }
}
