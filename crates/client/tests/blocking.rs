//! The blocking client against a fake server on a real unix socket.

mod common;

use common::FakeServer;
use warden_client::*;

#[test]
fn simple_calls() {
    let server = FakeServer::start();
    let mut client = Client::connect(&server.path).unwrap();
    assert_eq!(client.socket_path(), server.path);
    client.ping().unwrap();
    assert_eq!(client.echo("héllo").unwrap().message, "héllo");
    assert_eq!(client.list().unwrap().handles, ["abc", "def"]);
    let created = client
        .create(CreateRequest {
            handle: Some("mine".into()),
            grace_time: Some(5),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(created.handle, "mine");
    assert_eq!(
        server.last(),
        Request::Create(CreateRequest {
            handle: Some("mine".into()),
            grace_time: Some(5),
            ..Default::default()
        })
    );
    let info = client
        .info(InfoRequest {
            handle: "mine".into(),
        })
        .unwrap();
    assert_eq!(info.memory_stat.unwrap().rss, Some(4096));
    let ports = client
        .net_in(NetInRequest {
            handle: "mine".into(),
            host_port: Some(8080),
            ..Default::default()
        })
        .unwrap();
    assert_eq!((ports.host_port, ports.container_port), (8080, 8080));
    let bw = client
        .limit_bandwidth(LimitBandwidthRequest {
            handle: "mine".into(),
            rate: 100000,
            burst: 1000,
        })
        .unwrap();
    assert_eq!((bw.rate, bw.burst), (100000, 1000));
    let run = client
        .run(RunRequest {
            handle: "mine".into(),
            script: "echo ran".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!((run.exit_status(), run.stdout()), (5, &b"ran\n"[..]));
    assert_eq!(server.requests().len(), 8);
}

#[test]
fn server_errors_are_typed_and_keep_the_connection() {
    let server = FakeServer::start();
    let mut client = Client::connect(&server.path).unwrap();
    let err = client
        .destroy(DestroyRequest {
            handle: "missing".into(),
        })
        .unwrap_err();
    assert!(matches!(
        &err,
        Error::Server { request: "DestroyRequest", message } if message == "unknown handle"
    ));
    assert_eq!(err.to_string(), "unknown handle");
    assert_eq!(err.server_message(), Some("unknown handle"));
    assert!(err.connection_usable());
    // The same connection goes on.
    client.ping().unwrap();
    assert_eq!(client.echo("still here").unwrap().message, "still here");
}

#[test]
fn stream_yields_chunks_then_the_exit_status() {
    let server = FakeServer::start();
    let mut client = Client::connect(&server.path).unwrap();
    let stream = client
        .stream(StreamRequest {
            handle: "abc".into(),
            job_id: 7,
        })
        .unwrap();
    assert_eq!(stream.job_id(), 7);
    let chunks: Vec<StreamResponse> = stream.map(Result::unwrap).collect();
    let seen: Vec<(&str, &[u8])> = chunks.iter().map(|c| (c.name(), c.data())).collect();
    assert_eq!(
        seen,
        [
            ("stdout", &b"hello\n"[..]),
            ("stderr", b"oops\n"),
            ("stdout", b"bye\n"),
            ("", b""),
        ]
    );
    assert_eq!(chunks[3].exit_status, Some(3));
    assert_eq!(chunks[3].info.as_ref().unwrap().state(), "active");
    // After the final chunk the connection is free again.
    client.ping().unwrap();
}

#[test]
fn run_streaming_spawns_then_streams() {
    let server = FakeServer::start();
    let mut client = Client::connect(&server.path).unwrap();
    let mut output = Vec::new();
    let last = client
        .run_streaming(SpawnRequest {
            handle: "abc".into(),
            script: "echo hello".into(),
            ..Default::default()
        })
        .unwrap()
        .for_each_output(|name, data| {
            output.push(format!("{name}:{}", String::from_utf8_lossy(data)))
        })
        .unwrap();
    assert_eq!(last.exit_status, Some(3));
    assert_eq!(output, ["stdout:hello\n", "stderr:oops\n", "stdout:bye\n"]);
    let requests = server.requests();
    assert!(matches!(&requests[0], Request::Spawn(s) if s.script == "echo hello"));
    assert_eq!(
        requests[1],
        Request::Stream(StreamRequest {
            handle: "abc".into(),
            job_id: 7
        })
    );
}

#[test]
fn a_stream_error_ends_the_iterator_and_keeps_the_connection() {
    let server = FakeServer::start();
    let mut client = Client::connect(&server.path).unwrap();
    let results: Vec<_> = client
        .stream(StreamRequest {
            handle: "abc".into(),
            job_id: 99,
        })
        .unwrap()
        .collect();
    assert_eq!(results.len(), 1);
    assert_eq!(
        results[0].as_ref().unwrap_err().server_message(),
        Some("no such job")
    );
    client.ping().unwrap();
}

#[test]
fn an_abandoned_stream_makes_the_connection_refuse_requests() {
    let server = FakeServer::start();
    let mut client = Client::connect(&server.path).unwrap();
    let mut stream = client
        .stream(StreamRequest {
            handle: "abc".into(),
            job_id: 7,
        })
        .unwrap();
    stream.next().unwrap().unwrap();
    drop(stream);
    let err = client.ping().unwrap_err();
    assert!(matches!(err, Error::StreamAbandoned { .. }), "{err}");
    assert!(err.to_string().contains(&server.path.display().to_string()));
}

#[test]
fn connection_failures_name_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nobody-here.sock");
    let err = Client::connect(&path).unwrap_err();
    assert!(matches!(err, Error::Connect { .. }));
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(!err.connection_usable());
}

#[test]
fn a_hangup_is_reported_with_the_request_and_path() {
    let server = FakeServer::start();
    let mut client = Client::connect(&server.path).unwrap();
    let err = client
        .stop(StopRequest {
            handle: "hangup".into(),
            ..Default::default()
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Closed {
                request: "StopRequest",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains(&server.path.display().to_string()));
}

#[test]
fn untyped_requests_and_unexpected_responses() {
    let server = FakeServer::start();
    let mut client = Client::connect(&server.path).unwrap();
    let response = client.request(&Request::Ping(PingRequest {})).unwrap();
    assert_eq!(response, Response::Ping(PingResponse {}));
    // A request parsed from the command-line syntax goes through the same path.
    let words = [
        "limit_memory",
        "--handle",
        "abc",
        "--limit_in_bytes",
        "1024",
    ]
    .map(String::from);
    let request = args::parse_command(&words).unwrap();
    let Response::LimitMemory(limit) = client.request(&request).unwrap() else {
        panic!("wrong response")
    };
    assert_eq!(limit.limit_in_bytes, Some(1024));
}
