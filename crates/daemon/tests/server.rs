//! The real wardend over a real unix socket: requests, framing edge cases, many connections.

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::{error, Daemon};
use warden_protocol::{
    DestroyRequest, EchoRequest, EchoResponse, InfoRequest, LimitCpuRequest, ListRequest,
    ListResponse, Message, PingRequest, PingResponse, Request, Response, RunRequest, StreamRequest,
    WardenMessage,
};

fn echo(message: &str) -> EchoRequest {
    EchoRequest {
        message: message.into(),
    }
}

fn echoed(message: &str) -> Response {
    EchoResponse {
        message: message.into(),
    }
    .into()
}

#[test]
fn ping_echo_list() {
    let d = Daemon::start();
    let mut c = d.connect();
    assert_eq!(c.call(PingRequest {}), PingResponse {}.into());
    assert_eq!(c.call(echo("hello, warden")), echoed("hello, warden"));
    assert_eq!(c.call(echo("")), echoed(""));
    assert_eq!(c.call(echo("ünïcødé ✓")), echoed("ünïcødé ✓"));
    assert_eq!(
        c.call(ListRequest {}),
        ListResponse { handles: vec![] }.into()
    );
}

#[test]
fn spec_ping_vector_gets_a_ping_response() {
    let d = Daemon::start();
    let mut c = d.connect();
    let ping = b"\x34\x0d\x0a\x08\x5b\x12\x00\x0d\x0a";
    c.send_raw(ping);
    // PingResponse has the same type and an empty payload: the same 9 bytes.
    assert_eq!(c.read_raw(ping.len()), ping);
    // An empty list goes out as no field at all.
    c.send_raw(&Request::from(ListRequest {}).to_frame());
    assert_eq!(c.read_raw(9), b"4\r\n\x08\x5c\x12\x00\r\n");
}

#[test]
fn container_requests_for_an_unknown_handle_keep_the_connection() {
    let d = Daemon::start();
    let mut c = d.connect();
    let cases: Vec<(Request, &str)> = vec![
        (
            DestroyRequest { handle: "h".into() }.into(),
            "DestroyRequest",
        ),
        (InfoRequest { handle: "h".into() }.into(), "InfoRequest"),
        (
            RunRequest {
                handle: "h".into(),
                script: "true".into(),
                ..Default::default()
            }
            .into(),
            "RunRequest",
        ),
        (
            StreamRequest {
                handle: "h".into(),
                job_id: 1,
            }
            .into(),
            "StreamRequest",
        ),
        (
            LimitCpuRequest {
                handle: "h".into(),
                limit_in_shares: Some(10),
            }
            .into(),
            "LimitCpuRequest",
        ),
    ];
    for (request, _name) in cases {
        assert_eq!(c.call(request), error("unknown handle"));
    }
    assert_eq!(c.call(PingRequest {}), PingResponse {}.into());
}

#[test]
fn three_frames_in_one_write_are_answered_in_order() {
    let d = Daemon::start();
    let mut c = d.connect();
    let mut bytes = Request::from(echo("one")).to_frame();
    bytes.extend(Request::from(PingRequest {}).to_frame());
    bytes.extend(Request::from(echo("three")).to_frame());
    c.send_raw(&bytes);
    assert_eq!(c.read(), echoed("one"));
    assert_eq!(c.read(), PingResponse {}.into());
    assert_eq!(c.read(), echoed("three"));
    // Interleaved with an error in the middle.
    let mut bytes = Request::from(echo("a")).to_frame();
    bytes.extend(b"4\r\n\x08\x07\x12\x00\r\n");
    bytes.extend(Request::from(echo("b")).to_frame());
    c.send_raw(&bytes);
    assert_eq!(c.read(), echoed("a"));
    assert_eq!(c.read(), error("Unknown request type: 7"));
    assert_eq!(c.read(), echoed("b"));
}

#[test]
fn many_pipelined_requests_keep_their_order() {
    let d = Daemon::start();
    let mut c = d.connect();
    let mut bytes = Vec::new();
    for i in 0..2000 {
        bytes.extend(Request::from(echo(&format!("message {i}"))).to_frame());
    }
    let mut w = c.stream().try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&bytes).unwrap());
    for i in 0..2000 {
        assert_eq!(c.read(), echoed(&format!("message {i}")));
    }
    writer.join().unwrap();
}

#[test]
fn a_frame_split_byte_by_byte() {
    let d = Daemon::start();
    let mut c = d.connect();
    let mut bytes = Request::from(echo("split me")).to_frame();
    bytes.extend(Request::from(PingRequest {}).to_frame());
    for b in &bytes {
        c.send_raw(std::slice::from_ref(b));
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(c.read(), echoed("split me"));
    assert_eq!(c.read(), PingResponse {}.into());
}

#[test]
fn garbage_gets_an_error_then_the_connection_closes() {
    let d = Daemon::start();
    let mut c = d.connect();
    c.send_raw(b"GET / HTTP/1.1\r\n\r\n");
    match c.read() {
        Response::Error(e) => {
            let m = e.message.unwrap();
            assert!(m.contains("malformed frame length line"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    assert!(c.at_eof());
    // The daemon is fine.
    assert_eq!(d.connect().call(PingRequest {}), PingResponse {}.into());
}

#[test]
fn a_length_bigger_than_the_data_then_eof_closes() {
    let d = Daemon::start();
    let mut c = d.connect();
    c.send_raw(b"100\r\n\x08\x5b\x12\x00");
    c.stream().shutdown(std::net::Shutdown::Write).unwrap();
    assert!(c.at_eof(), "no reply to a frame cut short");
    assert_eq!(d.connect().call(PingRequest {}), PingResponse {}.into());
    assert!(
        d.log_text().contains("connection closed mid-frame"),
        "{}",
        d.log_text()
    );
}

#[test]
fn a_length_over_max_payload_is_refused_from_the_length_line() {
    let d = Daemon::start_with("max_payload: 1024", "");
    let mut c = d.connect();
    // Exactly the limit is fine.
    let big = "x".repeat(1024 - 8);
    let request = Request::from(echo(&big));
    assert_eq!(request.encode_to_vec().len(), 1024);
    assert_eq!(c.call(request), echoed(&big));
    // One more byte is not; the daemon answers without waiting for the payload.
    c.send_raw(b"1025\r\n");
    assert_eq!(
        c.read(),
        error("frame payload of 1025 bytes exceeds the maximum of 1024 bytes")
    );
    assert!(c.at_eof());
    // A huge length, with data still coming.
    let mut c = d.connect();
    c.send_raw(b"99999999999\r\n");
    c.send_raw(&[b'x'; 4096]);
    assert_eq!(
        c.read(),
        error("frame payload of 99999999999 bytes exceeds the maximum of 1024 bytes")
    );
    assert!(c.at_eof());
}

#[test]
fn an_unknown_type_is_an_error_and_the_connection_stays_usable() {
    let d = Daemon::start();
    let mut c = d.connect();
    for t in [7, 1, 99, 1000] {
        let envelope = Message {
            r#type: t,
            payload: vec![],
        };
        c.writer.write_message(&envelope).unwrap();
        assert_eq!(c.read(), error(&format!("Unknown request type: {t}")));
    }
    assert_eq!(c.call(PingRequest {}), PingResponse {}.into());
}

#[test]
fn a_missing_required_field_is_an_error_and_the_connection_stays_usable() {
    let d = Daemon::start();
    let mut c = d.connect();
    // EchoRequest without its required message.
    let envelope = Message {
        r#type: 93,
        payload: vec![],
    };
    c.writer.write_message(&envelope).unwrap();
    assert_eq!(
        c.read(),
        error("missing required field warden.EchoRequest.message")
    );
    // An envelope without its payload.
    c.writer.write_frame(&[0x08, 0x5b]).unwrap();
    assert_eq!(
        c.read(),
        error("missing required field warden.Message.payload")
    );
    // Bytes that are not protobuf at all.
    c.writer.write_frame(&[0xff, 0xff, 0xff]).unwrap();
    match c.read() {
        Response::Error(e) => assert!(e.message.unwrap().starts_with("malformed warden.Message")),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.call(echo("still here")), echoed("still here"));
    // A decoded request's bytes survive a round trip.
    let bytes = echo("x").to_bytes();
    assert_eq!(EchoRequest::decode_checked(&bytes).unwrap(), echo("x"));
}

#[test]
fn a_client_that_disconnects_mid_frame() {
    let d = Daemon::start();
    for partial in [&b"1"[..], b"10\r", b"10\r\n", b"10\r\n\x08\x5b\x12"] {
        let mut c = d.connect();
        c.send_raw(partial);
        drop(c);
    }
    // One that disconnects while its reply is pending in a pipeline.
    let mut c = d.connect();
    let mut bytes = Vec::new();
    for _ in 0..100 {
        bytes.extend(Request::from(echo(&"y".repeat(1000))).to_frame());
    }
    c.send_raw(&bytes);
    drop(c);
    let mut c = d.connect();
    assert_eq!(c.call(PingRequest {}), PingResponse {}.into());
}

#[test]
fn a_thousand_idle_connections_and_pings_still_answered() {
    // This process holds the client ends: make room for them as wardend does for its own.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    let d = Daemon::start();
    let rss_before = d.rss_kib();
    let idle: Vec<UnixStream> = (0..1000)
        .map(|i| UnixStream::connect(&d.socket).unwrap_or_else(|e| panic!("connection {i}: {e}")))
        .collect();
    // Some of them half-way through a frame.
    for s in idle.iter().step_by(10) {
        (&*s).write_all(b"20\r\n\x08").unwrap();
    }
    let mut c = d.connect();
    for i in 0..200 {
        assert_eq!(c.call(echo(&i.to_string())), echoed(&i.to_string()));
    }
    // Every idle connection is live: a ping on the last one is answered.
    let mut last = common::Client::connect(&d.socket);
    assert_eq!(last.call(PingRequest {}), PingResponse {}.into());
    let rss = d.rss_kib();
    eprintln!("RSS: {rss_before} KiB before, {rss} KiB with 1002 connections");
    assert!(
        rss < 64 * 1024,
        "RSS {rss} KiB with a thousand idle connections"
    );
    drop(idle);
    assert_eq!(c.call(PingRequest {}), PingResponse {}.into());
}

#[test]
fn concurrent_clients() {
    let d = Daemon::start();
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let socket = d.socket.clone();
            std::thread::spawn(move || {
                let mut c = common::Client::connect(&socket);
                for i in 0..200 {
                    let m = format!("{t}-{i}");
                    assert_eq!(c.call(echo(&m)), echoed(&m));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}
