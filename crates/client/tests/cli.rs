//! The real `warden` binary against a fake server on a real unix socket: the requests it
//! sends (decoded by the server), what it prints, and its exit codes.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::FakeServer;
use warden_protocol::*;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn finish(output: Output) -> Run {
    Run {
        code: output.status.code().expect("exited by a signal"),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// Runs `warden --socket <server> ARGS` with stdin closed and HOME in a temp dir.
fn warden(server: &FakeServer, args: &[&str]) -> Run {
    let home = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("--socket")
        .arg(&server.path)
        .args(args)
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    finish(output)
}

/// Runs the shell with `input` on stdin (not a tty, so rustyline reads plain lines).
fn shell(server: &FakeServer, home: Option<&std::path::Path>, input: &str) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_warden"));
    command
        .arg("--socket")
        .arg(&server.path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match home {
        Some(home) => command.env("HOME", home),
        None => command.env_remove("HOME"),
    };
    let mut child = command.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    finish(child.wait_with_output().unwrap())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn ping_list_echo() {
    let server = FakeServer::start();
    let run = warden(&server, &["ping"]);
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (0, "pong\n", "")
    );
    assert_eq!(warden(&server, &["--", "list"]).stdout, "abc\ndef\n");
    assert_eq!(
        warden(&server, &["echo", "--message", "hi there"]).stdout,
        "hi there\n"
    );
    assert_eq!(
        server.requests(),
        [
            Request::Ping(PingRequest {}),
            Request::List(ListRequest {}),
            Request::Echo(EchoRequest {
                message: "hi there".into()
            })
        ]
    );
}

#[test]
fn nested_repeated_fields_give_the_original_bytes() {
    let server = FakeServer::start();
    let run = warden(
        &server,
        &[
            "--",
            "create",
            "--bind_mounts[0].src_path",
            "/src",
            "--bind_mounts[0].dst_path",
            "/dst",
            "--bind_mounts[0].mode",
            "RO",
            "--grace_time",
            "30",
            "--handle",
            "abc",
        ],
    );
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "abc\n"),
        "{}",
        run.stderr
    );
    let request = server.last();
    assert_eq!(
        request,
        Request::Create(CreateRequest {
            bind_mounts: vec![BindMount {
                src_path: "/src".into(),
                dst_path: "/dst".into(),
                mode: Mode::Ro as i32,
            }],
            grace_time: Some(30),
            handle: Some("abc".into()),
            ..Default::default()
        })
    );
    // The frame of SPEC §1, produced by the original Ruby client.
    assert_eq!(
        hex(&request.to_frame()),
        "32370d0a080b12170a0e0a042f73726312042f6473741800101e1a036162630d0a"
    );
}

#[test]
fn bare_flags_and_nested_messages_without_the_double_dash() {
    let server = FakeServer::start();
    let run = warden(&server, &["stop", "--kill", "--handle", "h"]);
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "ok\n"),
        "{}",
        run.stderr
    );
    assert_eq!(
        server.last(),
        Request::Stop(StopRequest {
            handle: "h".into(),
            background: None,
            kill: Some(true),
        })
    );
    assert_eq!(hex(&server.last().encode_payload()), "0a0168a00101");

    let run = warden(
        &server,
        &[
            "spawn",
            "--handle",
            "abc",
            "--script",
            "echo hi",
            "--rlimits.nofile",
            "1234",
            "--discard_output",
        ],
    );
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "job_id: 7\n"),
        "{}",
        run.stderr
    );
    assert_eq!(
        server.last(),
        Request::Spawn(SpawnRequest {
            handle: "abc".into(),
            script: "echo hi".into(),
            rlimits: Some(ResourceLimits {
                nofile: Some(1234),
                ..Default::default()
            }),
            discard_output: Some(true),
            ..Default::default()
        })
    );

    let run = warden(
        &server,
        &[
            "net_out",
            "--handle",
            "abc",
            "--protocol",
            "udp",
            "--port_range",
            "1000:2000",
        ],
    );
    assert_eq!(run.stdout, "ok\n");
    let Request::NetOut(net_out) = server.last() else {
        panic!("not a net_out")
    };
    assert_eq!(net_out.protocol(), Protocol::Udp);
    assert_eq!(net_out.port_range.as_deref(), Some("1000:2000"));
}

#[test]
fn server_errors_go_to_stderr_with_exit_1() {
    let server = FakeServer::start();
    let run = warden(&server, &["destroy", "--handle", "missing"]);
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (1, "", "error: unknown handle\n")
    );
    let run = warden(&server, &["stream", "--handle", "abc", "--job_id", "8"]);
    assert_eq!((run.code, run.stderr.as_str()), (1, "error: no such job\n"));
}

#[test]
fn argument_errors_exit_1_before_connecting() {
    let server = FakeServer::start();
    let run = warden(&server, &["create", "--grace_time", "abc"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        "error: invalid value \"abc\" for --grace_time of command create: expected an unsigned 32-bit number (uint32)\n"
    );
    let run = warden(&server, &["create", "--bogus", "1"]);
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (
            1,
            "error: unknown field --bogus for command create (try `help create`)\n"
        )
    );
    let run = warden(&server, &["stop"]);
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (
            1,
            "error: missing required field --handle for command stop\n"
        )
    );
    let run = warden(&server, &["nosuch"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.starts_with("error: unknown command \"nosuch\""));
    assert!(server.requests().is_empty());
}

#[test]
fn connection_failure_names_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.sock");
    let output = Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("--socket")
        .arg(&path)
        .arg("ping")
        .output()
        .unwrap();
    let run = finish(output);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.starts_with(&format!(
            "error: cannot connect to wardend at {}: ",
            path.display()
        )),
        "{}",
        run.stderr
    );
    // The io error is shown once, not repeated from the source chain.
    assert_eq!(
        run.stderr.matches("No such file").count(),
        1,
        "{}",
        run.stderr
    );
}

#[test]
fn run_spawns_then_streams_and_passes_the_exit_status() {
    let server = FakeServer::start();
    let run = warden(
        &server,
        &["run", "--handle", "abc", "--script", "echo hello"],
    );
    assert_eq!(run.code, 3);
    assert_eq!(run.stdout, "hello\nbye\n");
    assert_eq!(run.stderr, "oops\n");
    assert_eq!(
        server.requests(),
        [
            Request::Spawn(SpawnRequest {
                handle: "abc".into(),
                script: "echo hello".into(),
                ..Default::default()
            }),
            Request::Stream(StreamRequest {
                handle: "abc".into(),
                job_id: 7
            }),
        ]
    );
}

#[test]
fn stream_and_link_pass_the_exit_status() {
    let server = FakeServer::start();
    let run = warden(&server, &["stream", "--handle", "abc", "--job_id", "7"]);
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (3, "hello\nbye\n", "oops\n")
    );
    let run = warden(&server, &["link", "--handle", "abc", "--job_id", "7"]);
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (42, "linked out\n", "linked err\n")
    );
}

#[test]
fn info_prints_key_value_lines_with_nested_stats() {
    let server = FakeServer::start();
    let run = warden(&server, &["info", "--handle", "abc"]);
    assert_eq!(run.code, 0);
    assert_eq!(
        run.stdout,
        "state: active\n\
         events: out of memory\n\
         host_ip: 10.254.0.1\n\
         container_ip: 10.254.0.2\n\
         container_path: /tmp/warden/containers/abc\n\
         memory_stat.cache: 10\n\
         memory_stat.rss: 4096\n\
         cpu_stat.usage: 123456\n\
         job_ids: 1, 2\n"
    );
    let run = warden(&server, &["limit_memory", "--handle", "abc"]);
    assert_eq!(run.stdout, "limit_in_bytes: 9223372036854771712\n");
}

#[test]
fn json_output() {
    let server = FakeServer::start();
    let run = warden(&server, &["--json", "create", "--handle", "x"]);
    assert_eq!(run.stdout, "{\"handle\":\"x\"}\n");
    assert_eq!(warden(&server, &["--json", "ping"]).stdout, "{}\n");
    assert_eq!(
        warden(&server, &["--json", "list"]).stdout,
        "{\"handles\":[\"abc\",\"def\"]}\n"
    );

    let run = warden(&server, &["--json", "info", "--handle", "abc"]);
    let info: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(info["memory_stat"]["rss"], 4096);
    assert_eq!(info["job_ids"], serde_json::json!([1, 2]));

    let run = warden(
        &server,
        &["--json", "--", "run", "--handle", "abc", "--script", "x"],
    );
    assert_eq!(run.code, 3);
    let lines: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{}", run.stdout);
    assert_eq!(
        lines[0],
        serde_json::json!({"name": "stdout", "data": "hello\n"})
    );
    assert_eq!(
        lines[1],
        serde_json::json!({"name": "stderr", "data": "oops\n"})
    );
    assert_eq!(lines[3]["exit_status"], 3);
    assert_eq!(lines[3]["info"]["state"], "active");
    assert_eq!(run.stderr, "");

    let run = warden(
        &server,
        &["--json", "link", "--handle", "abc", "--job_id", "7"],
    );
    assert_eq!(run.code, 42);
    let link: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(link["stdout"], "linked out\n");

    let run = warden(&server, &["--json", "destroy", "--handle", "missing"]);
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (1, "error: unknown handle\n")
    );
}

#[test]
fn help_without_a_server() {
    let server = FakeServer::start();
    let run = warden(&server, &["help", "create"]);
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains("--bind_mounts[N].src_path"));
    assert!(warden(&server, &["help"])
        .stdout
        .contains("limit_bandwidth"));
    assert!(server.requests().is_empty());
}

#[test]
fn the_shell_reads_commands_from_stdin() {
    let server = FakeServer::start();
    let home = tempfile::tempdir().unwrap();
    let run = shell(
        &server,
        Some(home.path()),
        "ping\n\
         echo --message 'from the shell'\n\
         destroy --handle missing\n\
         \n\
         help stop\n\
         create --bind_mounts[0].src_path /a --bind_mounts[0].dst_path /b --bind_mounts[0].mode rw\n\
         run --handle abc --script 'echo hello'\n\
         list\n\
         exit\n\
         ping\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("pong\n"), "{}", run.stdout);
    assert!(run.stdout.contains("from the shell\n"));
    assert!(run.stdout.contains("--kill"));
    assert!(run.stdout.contains("generated\n"));
    assert!(run.stdout.contains("hello\nbye\n"));
    assert!(run.stdout.contains("abc\ndef\n"));
    assert!(
        run.stderr.contains("error: unknown handle\n"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("oops\n"));
    assert!(run.stderr.contains("exit status: 3\n"));
    // One connection served all commands; nothing after `exit` was sent.
    let requests = server.requests();
    assert_eq!(requests.len(), 7, "{requests:?}");
    assert!(matches!(&requests[3], Request::Create(c) if c.bind_mounts[0].mode() == Mode::Rw));
    assert_eq!(requests[6], Request::List(ListRequest {}));
    let history = std::fs::read_to_string(home.path().join(".warden_history")).unwrap();
    assert!(
        history.contains("echo --message 'from the shell'"),
        "{history}"
    );
}

#[test]
fn the_shell_works_without_home_and_survives_argument_errors() {
    let server = FakeServer::start();
    let run = shell(
        &server,
        None,
        "create --grace_time abc\necho 'unclosed\nstop --handle hangup\nping\n",
    );
    assert_eq!(run.code, 0);
    assert!(run.stderr.contains("--grace_time"));
    assert!(run.stderr.contains("unterminated ' quote"));
    // The server hung up on `stop`; the shell reconnects for `ping`.
    assert!(
        run.stderr
            .contains("closed the connection before answering StopRequest"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("pong\n"));
    assert_eq!(
        server.requests(),
        [
            Request::Stop(StopRequest {
                handle: "hangup".into(),
                ..Default::default()
            }),
            Request::Ping(PingRequest {})
        ]
    );
}
