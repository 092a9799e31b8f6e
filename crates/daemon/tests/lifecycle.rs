//! wardend's life: the socket file, the pidfile, signals, a second daemon, config errors and
//! the health check.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::process::Command;
use std::time::Duration;

use common::{config_text, Daemon, WARDEND};
use warden_protocol::{PingRequest, PingResponse};

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("wardend-test")
        .tempdir()
        .unwrap()
}

#[test]
fn sigterm_exits_0_and_removes_socket_and_pidfile() {
    let dir = tempdir();
    let socket = dir.path().join("w.sock");
    let pidfile = dir.path().join("wardend.pid");
    let config = config_text(&format!("pidfile: {}", pidfile.display()), "");
    let mut d = Daemon::spawn_in(dir, socket.clone(), &config, &[]);
    d.wait_ready();
    // The socket is bound first (a second daemon must fail on it before touching the
    // pidfile), the pidfile a moment later.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !pidfile.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap().trim(),
        d.pid().to_string()
    );
    // An idle client is disconnected by the shutdown.
    let mut idle = d.connect();
    assert_eq!(idle.call(PingRequest {}), PingResponse {}.into());
    let status = d.signal_and_wait(libc::SIGTERM);
    assert_eq!(status.code(), Some(0), "{}", d.log_text());
    assert!(!socket.exists(), "socket left behind");
    assert!(!pidfile.exists(), "pidfile left behind");
    assert!(idle.at_eof());
}

#[test]
fn sigint_exits_0_too() {
    let mut d = Daemon::start();
    let status = d.signal_and_wait(libc::SIGINT);
    assert_eq!(status.code(), Some(0), "{}", d.log_text());
    assert!(!d.socket.exists());
}

#[test]
fn shutdown_answers_requests_already_received() {
    let mut d = Daemon::start();
    let mut c = d.connect();
    assert_eq!(c.call(PingRequest {}), PingResponse {}.into());
    // Requests already sent before the signal are answered or the connection is closed;
    // never a partial frame.
    let frame = warden_protocol::Request::from(PingRequest {}).to_frame();
    c.send_raw(&frame);
    let status = d.signal_and_wait(libc::SIGTERM);
    assert_eq!(status.code(), Some(0));
    let mut rest = Vec::new();
    let _ = c.stream().try_clone().unwrap().read_to_end(&mut rest);
    assert!(rest.is_empty() || rest == frame, "{rest:?}");
}

#[test]
fn a_stale_socket_is_removed() {
    let dir = tempdir();
    let socket = dir.path().join("w.sock");
    // A socket file from a daemon that died: nobody accepts on it.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(std::fs::symlink_metadata(&socket)
        .unwrap()
        .file_type()
        .is_socket());
    let d = Daemon::spawn_in(dir, socket, &config_text("", ""), &[]);
    d.wait_ready();
    assert_eq!(d.connect().call(PingRequest {}), PingResponse {}.into());
    assert!(
        d.log_text().contains("removed a stale socket"),
        "{}",
        d.log_text()
    );
}

#[test]
fn a_second_daemon_on_the_same_socket_is_refused() {
    let first = Daemon::start();
    let out = Command::new(WARDEND)
        .arg("--config")
        .arg(first.dir.path().join("wardend.yml"))
        .arg("--socket")
        .arg(&first.socket)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "another wardend is already listening on {}",
            first.socket.display()
        )),
        "{stderr}"
    );
    // The first one still serves, on its socket.
    assert_eq!(first.connect().call(PingRequest {}), PingResponse {}.into());
}

#[test]
fn a_regular_file_at_the_socket_path_is_kept() {
    let dir = tempdir();
    let socket = dir.path().join("w.sock");
    std::fs::write(&socket, "not a socket").unwrap();
    let out = Command::new(WARDEND)
        .args(["--socket".as_ref(), socket.as_os_str()])
        .args(["--config".as_ref(), dir.path().join("none.yml").as_os_str()])
        .output()
        .unwrap();
    // The config file does not exist: that is reported first.
    assert_eq!(out.status.code(), Some(2));
    std::fs::write(dir.path().join("c.yml"), config_text("", "")).unwrap();
    let out = Command::new(WARDEND)
        .args(["--socket".as_ref(), socket.as_os_str()])
        .args(["--config".as_ref(), dir.path().join("c.yml").as_os_str()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("exists and is not a socket"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&socket).unwrap(), "not a socket");
}

#[test]
fn socket_permissions_come_from_the_config() {
    for (value, mode) in [("0700", 0o700), ("0777", 0o777), ("0o660", 0o660)] {
        let d = Daemon::start_with(&format!("unix_domain_permissions: {value}"), "");
        let got = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o7777;
        assert_eq!(got, mode, "{value}");
    }
}

fn config_error(yaml: &str) -> String {
    let dir = tempdir();
    let path = dir.path().join("bad.yml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(WARDEND)
        .arg("--config")
        .arg(&path)
        .arg("--socket")
        .arg(dir.path().join("w.sock"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(!dir.path().join("w.sock").exists());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn config_errors_exit_non_zero_naming_the_key() {
    let e = config_error("server:\n  unix_domain_pth: /tmp/x.sock\n");
    assert!(e.contains("server: unknown field `unix_domain_pth`"), "{e}");
    let e = config_error("network:\n  pool_network: 10.254.0.0/40\n");
    assert!(e.contains("network.pool_network: 10.254.0.0/40"), "{e}");
    let e = config_error("network:\n  allow_networks: [nonsense]\n");
    assert!(e.contains("network.allow_networks[0]: nonsense"), "{e}");
    let e = config_error("server:\n  unix_domain_permissions: 0999\n");
    assert!(e.contains("server.unix_domain_permissions: 0999"), "{e}");
    let e = config_error("port:\n  pool_size: 5\n");
    assert!(e.contains("port.pool_size: 5"), "{e}");
    let e = config_error("server: [1, 2]\n");
    assert!(e.contains("server"), "{e}");
    let e = config_error("server:\n  container_grace_time: soon\n");
    assert!(e.contains("server.container_grace_time"), "{e}");
}

#[test]
fn check_config_prints_the_defaults_without_a_file() {
    let out = Command::new(WARDEND)
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\"/tmp/warden.sock\""), "{text}");
    assert!(text.contains("10.254.0.0"), "{text}");
}

#[test]
fn health_check_answers_200() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempdir();
    let socket = dir.path().join("w.sock");
    let config = format!("health_check_server:\n  port: {port}\nlogging:\n  level: info\n");
    let d = Daemon::spawn_in(dir, socket, &config, &[]);
    d.wait_ready();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    assert_eq!(out, b"HTTP/1.1 200 OK\r\n");
}

#[test]
fn logs_go_to_logging_file_with_request_spans_at_debug() {
    let dir = tempdir();
    let socket = dir.path().join("w.sock");
    let log = dir.path().join("wardend.log");
    let config = format!(
        "health_check_server:\n  port: 0\nlogging:\n  level: debug1\n  file: {}\nserver:\n  container_klass: Warden::Container::Linux\n",
        log.display()
    );
    let mut d = Daemon::spawn_in(dir, socket, &config, &[]);
    d.wait_ready();
    let mut c = d.connect();
    let create = warden_protocol::CreateRequest::default();
    assert!(c.call(create).is_error());
    assert_eq!(d.signal_and_wait(libc::SIGTERM).code(), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("wardend listening"), "{text}");
    // An error reply is logged at debug in the request's span: conn id, request id, type.
    let line = text
        .lines()
        .find(|l| l.contains("reply") && l.contains("CreateRequest"))
        .unwrap_or_else(|| panic!("no reply line in:\n{text}"));
    assert!(line.contains("conn{conn="), "{line}");
    assert!(line.contains("request{req="), "{line}");
    assert!(!text.contains('\x1b'), "no colour codes in a log file");
}

#[test]
fn rust_log_overrides_the_configured_level() {
    let dir = tempdir();
    let socket = dir.path().join("w.sock");
    let config_path = dir.path().join("c.yml");
    std::fs::write(
        &config_path,
        "health_check_server:\n  port: 0\nlogging:\n  level: off\n",
    )
    .unwrap();
    let child = Command::new(WARDEND)
        .arg("--config")
        .arg(&config_path)
        .arg("--socket")
        .arg(&socket)
        .env("RUST_LOG", "trace")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "wardend did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut c = common::Client::connect(&socket);
    assert_eq!(c.call(PingRequest {}), PingResponse {}.into());
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("PingRequest") && text.contains("reply"),
        "{text}"
    );
}
