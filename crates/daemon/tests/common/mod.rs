//! Runs the real `wardend` on a socket in a temp dir, and talks to it.

#![allow(dead_code)] // each test file uses part of this

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use warden_protocol::{FrameReader, FrameWriter, Request, Response};

pub const WARDEND: &str = env!("CARGO_BIN_EXE_wardend");

/// A wardend child; killed (and its log shown, if the test failed) when dropped.
pub struct Daemon {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub log: PathBuf,
}

/// A config with no health check and info logs, plus `extra` YAML (which may add keys to the
/// `server:` section given in `server_extra`).
pub fn config_text(server_extra: &str, extra: &str) -> String {
    let mut s = String::from("server:\n  container_grace_time: 5\n");
    for line in server_extra.lines() {
        s.push_str("  ");
        s.push_str(line);
        s.push('\n');
    }
    s.push_str("health_check_server:\n  port: 0\nlogging:\n  level: debug\n");
    s.push_str(extra);
    s
}

impl Daemon {
    /// Starts wardend with the default test config.
    pub fn start() -> Daemon {
        Self::start_with("", "")
    }

    /// Starts wardend with `config_text(server_extra, extra)` and waits until it answers.
    pub fn start_with(server_extra: &str, extra: &str) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("wardend-test")
            .tempdir()
            .unwrap();
        let socket = dir.path().join("w.sock");
        let d = Self::spawn_in(dir, socket, &config_text(server_extra, extra), &[]);
        d.wait_ready();
        d
    }

    /// Spawns wardend in `dir` with `config`, without waiting.
    pub fn spawn_in(
        dir: tempfile::TempDir,
        socket: PathBuf,
        config: &str,
        args: &[&str],
    ) -> Daemon {
        let config_path = dir.path().join("wardend.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = dir.path().join(format!("wardend-{}.log", unique()));
        let child = Command::new(WARDEND)
            .arg("--config")
            .arg(&config_path)
            .arg("--socket")
            .arg(&socket)
            .arg("--depot")
            .arg(dir.path().join("depot"))
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Daemon {
            child: Some(child),
            dir,
            socket,
            log,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// Waits until the socket accepts a connection; panics if the daemon exits first.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            // Safe to poll: try_wait needs &mut, so check through /proc instead.
            let alive = Path::new(&format!("/proc/{}/stat", self.pid())).exists()
                && !std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
                    .unwrap_or_default()
                    .contains(") Z ");
            assert!(
                alive,
                "wardend exited before listening:\n{}",
                self.log_text()
            );
            assert!(
                Instant::now() < deadline,
                "wardend not ready:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn connect(&self) -> Client {
        Client::connect(&self.socket)
    }

    /// Sends `signal` and waits (bounded) for the exit.
    pub fn signal_and_wait(&mut self, signal: i32) -> ExitStatus {
        unsafe { libc::kill(self.pid(), signal) };
        self.wait(Duration::from_secs(20))
    }

    /// Waits for the exit, at most `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "wardend did not exit:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// VmRSS of the daemon, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- wardend log ---\n{}", self.log_text());
        }
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A blocking protocol client with timeouts, so a broken server fails a test instead of
/// hanging it.
pub struct Client {
    pub reader: FrameReader<UnixStream>,
    pub writer: FrameWriter<UnixStream>,
}

impl Client {
    pub fn connect(path: &Path) -> Client {
        let s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        Client {
            writer: FrameWriter::new(s.try_clone().unwrap()),
            reader: FrameReader::new(s),
        }
    }

    pub fn call(&mut self, request: impl Into<Request>) -> Response {
        self.writer.write_request(&request.into()).unwrap();
        self.read()
    }

    pub fn read(&mut self) -> Response {
        self.reader
            .read_response()
            .expect("a response")
            .expect("a response, not EOF")
    }

    /// Writes raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.get_mut().write_all(bytes).unwrap();
    }

    /// Reads exactly `n` raw bytes.
    pub fn read_raw(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        self.reader.get_mut().read_exact(&mut buf).unwrap();
        buf
    }

    /// Whether the server closed the connection: the next read gets EOF (or a reset).
    pub fn at_eof(&mut self) -> bool {
        let mut buf = [0u8; 64];
        match self.reader.get_mut().read(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }

    pub fn stream(&self) -> &UnixStream {
        self.reader.get_ref()
    }
}

/// `Response::error(message)` shorthand for asserting.
pub fn error(message: &str) -> Response {
    Response::error(message)
}
