//! The frame codec: splits, batches, limits, garbage, truncation; blocking and tokio.

mod common;

use std::io::{self, Read};

use bytes::BytesMut;
use common::{all_requests, all_responses};
use tokio_util::codec::{Decoder, Encoder};
use warden_protocol::frame::{encode_frame, frame, MAX_LENGTH_LINE};
use warden_protocol::*;

/// Several frames of assorted sizes, including an empty payload.
fn sample_payloads() -> Vec<Vec<u8>> {
    let mut payloads: Vec<Vec<u8>> = all_requests().iter().map(|r| r.encode_to_vec()).collect();
    payloads.push(vec![]);
    payloads.push(b"\r\n\r\n".to_vec());
    payloads.push(vec![0xab; 300]);
    payloads
}

fn stream_of(payloads: &[Vec<u8>]) -> Vec<u8> {
    payloads.iter().flat_map(|p| frame(p)).collect()
}

/// Feeds `chunks` to a fresh codec one after another, then signals EOF.
fn decode_chunks(codec: &mut FrameCodec, chunks: &[&[u8]]) -> Result<Vec<Vec<u8>>, Error> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(p) = codec.decode(&mut buf)? {
            out.push(p.to_vec());
        }
    }
    while let Some(p) = codec.decode_eof(&mut buf)? {
        out.push(p.to_vec());
    }
    Ok(out)
}

fn decode_all(bytes: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
    decode_chunks(&mut FrameCodec::new(), &[bytes])
}

#[test]
fn encodes_length_crlf_payload_crlf() {
    assert_eq!(frame(b"abc"), b"3\r\nabc\r\n");
    assert_eq!(frame(b""), b"0\r\n\r\n");
    let mut buf = BytesMut::new();
    FrameCodec::new().encode(&b"hello"[..], &mut buf).unwrap();
    FrameCodec::new().encode(b"x".to_vec(), &mut buf).unwrap();
    FrameCodec::new()
        .encode(bytes::Bytes::from_static(b""), &mut buf)
        .unwrap();
    assert_eq!(&buf[..], b"5\r\nhello\r\n1\r\nx\r\n0\r\n\r\n");
    let mut v = Vec::new();
    encode_frame(&[7; 12], &mut v);
    assert_eq!(&v[..4], b"12\r\n");
    assert_eq!(v.len(), 4 + 12 + 2);
}

#[test]
fn many_frames_in_one_buffer() {
    let payloads = sample_payloads();
    assert_eq!(decode_all(&stream_of(&payloads)).unwrap(), payloads);
}

#[test]
fn split_at_every_byte() {
    let payloads = sample_payloads();
    let stream = stream_of(&payloads);
    // two chunks, cut at every position
    for cut in 0..=stream.len() {
        let got = decode_chunks(&mut FrameCodec::new(), &[&stream[..cut], &stream[cut..]]);
        assert_eq!(got.unwrap(), payloads, "cut at {cut}");
    }
    // one byte at a time
    let chunks: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(
        decode_chunks(&mut FrameCodec::new(), &chunks).unwrap(),
        payloads
    );
    // odd-sized chunks
    for size in [2, 3, 7, 13, 64] {
        let chunks: Vec<&[u8]> = stream.chunks(size).collect();
        assert_eq!(
            decode_chunks(&mut FrameCodec::new(), &chunks).unwrap(),
            payloads,
            "chunks of {size}"
        );
    }
}

#[test]
fn trailer_is_skipped_unchecked() {
    assert_eq!(
        decode_all(b"3\r\nabcXY2\r\nde??").unwrap(),
        vec![b"abc".to_vec(), b"de".to_vec()]
    );
}

#[test]
fn tolerant_length_lines_like_ruby_integer() {
    assert_eq!(
        decode_all(b" 3 \r\nabc\r\n+2\r\nde\r\n1_0\r\n0123456789\r\n\t0\x0b\r\n\r\n").unwrap(),
        vec![
            b"abc".to_vec(),
            b"de".to_vec(),
            b"0123456789".to_vec(),
            vec![]
        ]
    );
}

#[test]
fn clean_eof_at_a_boundary() {
    assert_eq!(decode_all(b"").unwrap(), Vec::<Vec<u8>>::new());
    assert_eq!(decode_all(b"1\r\na\r\n").unwrap(), vec![b"a".to_vec()]);
}

#[test]
fn eof_mid_frame_is_an_error() {
    for (bytes, buffered, expected) in [
        (&b"1"[..], 1, None),
        (b"12\r", 3, None),
        (b"5\r\n", 0, Some(7)),
        (b"5\r\nab", 2, Some(7)),
        (b"5\r\nabcde", 5, Some(7)),
        (b"5\r\nabcde\r", 6, Some(7)),
        (b"1\r\na\r\n2", 1, None),
    ] {
        match decode_all(bytes) {
            Err(Error::ConnectionClosedMidFrame {
                buffered: b,
                expected: e,
            }) => assert_eq!((b, e), (buffered, expected), "{bytes:?}"),
            other => panic!("{bytes:?}: {other:?}"),
        }
    }
    let err = decode_all(b"5\r\nab").unwrap_err();
    assert!(
        err.to_string().starts_with("connection closed mid-frame"),
        "{err}"
    );
    assert!(err.is_fatal());
}

#[test]
fn over_the_limit_is_refused_before_allocating() {
    let mut codec = FrameCodec::new();
    assert_eq!(codec.max_payload(), DEFAULT_MAX_PAYLOAD);
    assert_eq!(DEFAULT_MAX_PAYLOAD, 16 * 1024 * 1024);
    let mut buf = BytesMut::from(&b"16777217\r\n"[..]);
    match codec.decode(&mut buf) {
        Err(Error::FrameTooLarge { length, max }) => {
            assert_eq!((length, max), (16_777_217, DEFAULT_MAX_PAYLOAD))
        }
        other => panic!("{other:?}"),
    }
    assert!(buf.capacity() < 1024, "{}", buf.capacity());

    // Exactly the limit is fine; space is reserved as data arrives, not up front.
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::from(&b"16777216\r\n"[..]);
    assert!(codec.decode(&mut buf).unwrap().is_none());
    assert!(buf.capacity() <= 128 * 1024, "{}", buf.capacity());

    // The largest length line, all digits: no overflow, just too large.
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::from(&b"99999999999999999999\r\n"[..]);
    let err = codec.decode(&mut buf).unwrap_err();
    assert_eq!(
        err.to_string(),
        "frame payload of 99999999999999999999 bytes exceeds the maximum of 16777216 bytes"
    );

    // A configured limit.
    let small = || FrameCodec::with_max_payload(4);
    assert_eq!(
        decode_chunks(&mut small(), &[b"4\r\nabcd\r\n"]).unwrap(),
        vec![b"abcd".to_vec()]
    );
    assert!(matches!(
        decode_chunks(&mut small(), &[b"5\r\nabcde\r\n"]),
        Err(Error::FrameTooLarge { length: 5, max: 4 })
    ));
}

#[test]
fn garbage_length_lines() {
    for bytes in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"abc",
        b"-5\r\n",
        b"0x10\r\n",
        b"1 2\r\n",
        b"\x00",
        b"12;",
    ] {
        match decode_all(bytes) {
            Err(Error::MalformedLength { reason, .. }) => {
                assert_eq!(reason, "not a decimal number", "{bytes:?}")
            }
            other => panic!("{bytes:?}: {other:?}"),
        }
    }
    for (bytes, reason) in [
        (&b"\r\n"[..], "empty"),
        (b"  \r\n", "empty"),
        (b"007\r\n", "leading zero"),
    ] {
        match decode_all(bytes) {
            Err(Error::MalformedLength { reason: r, .. }) => assert_eq!(r, reason, "{bytes:?}"),
            other => panic!("{bytes:?}: {other:?}"),
        }
    }
    let err = decode_all(b"GET / HTTP/1.1\r\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed frame length line \"GET / HTTP/1.1\": not a decimal number"
    );
    assert!(err.is_fatal());
}

#[test]
fn garbage_is_reported_without_waiting_for_crlf() {
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::from(&b"12"[..]);
    assert!(codec.decode(&mut buf).unwrap().is_none());
    buf.extend_from_slice(b"x");
    assert!(matches!(
        codec.decode(&mut buf),
        Err(Error::MalformedLength { .. })
    ));
}

#[test]
fn length_line_is_bounded() {
    // 20 bytes then CRLF is the longest accepted line.
    let line = format!("{:>20}\r\n0\r\n\r\n", "4");
    assert_eq!(line.find('\r'), Some(MAX_LENGTH_LINE));
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::from(line.as_bytes());
    assert!(codec.decode(&mut buf).unwrap().is_none()); // waiting for 4 bytes + trailer
    buf.extend_from_slice(b"abcd\r\n");
    assert_eq!(&codec.decode(&mut buf).unwrap().unwrap()[..], b"0\r\n\r");

    // 21 digits, with or without CRLF.
    for bytes in [
        &b"000000000000000000001\r\n"[..],
        &[b' '; 22][..],
        &[b'1'; 4096],
    ] {
        match decode_all(bytes) {
            Err(Error::LengthLineTooLong {
                max: MAX_LENGTH_LINE,
            }) => {}
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
        }
    }
    // Without a CRLF, the error comes as soon as 22 bytes are there, however they arrive.
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::new();
    for i in 0..MAX_LENGTH_LINE + 1 {
        buf.extend_from_slice(b"1");
        assert!(codec.decode(&mut buf).unwrap().is_none(), "{i}");
    }
    buf.extend_from_slice(b"1");
    assert!(codec.decode(&mut buf).is_err());
}

// --- blocking -----------------------------------------------------------------------------

/// A reader that returns at most `step` bytes per read, with an `Interrupted` before each.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
    interrupt: bool,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.interrupt = !self.interrupt;
        if self.interrupt {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[test]
fn blocking_reader_over_trickling_stream() {
    let payloads = sample_payloads();
    let stream = stream_of(&payloads);
    for step in [1, 2, 5, 4096] {
        let mut reader = FrameReader::new(Trickle {
            data: &stream,
            step,
            interrupt: false,
        });
        for p in &payloads {
            assert_eq!(&reader.read_frame().unwrap().unwrap()[..], &p[..]);
        }
        assert!(reader.read_frame().unwrap().is_none());
        assert!(reader.read_frame().unwrap().is_none());
    }
}

#[test]
fn blocking_reader_large_payload() {
    let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let stream = [frame(&payload), frame(b"next")].concat();
    let mut reader = FrameReader::new(Trickle {
        data: &stream,
        step: 100_000,
        interrupt: false,
    });
    assert_eq!(&reader.read_frame().unwrap().unwrap()[..], &payload[..]);
    assert_eq!(&reader.read_frame().unwrap().unwrap()[..], b"next");
    assert!(reader.read_frame().unwrap().is_none());

    let mut reader = FrameReader::with_max_payload(&stream[..], 1_000_000);
    assert!(matches!(
        reader.read_frame(),
        Err(Error::FrameTooLarge {
            length: 3_000_000,
            ..
        })
    ));
}

#[test]
fn blocking_reader_errors() {
    let mut reader = FrameReader::new(&b"5\r\nab"[..]);
    assert!(matches!(
        reader.read_frame(),
        Err(Error::ConnectionClosedMidFrame { .. })
    ));

    struct Broken;
    impl Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset"))
        }
    }
    let err = FrameReader::new(Broken).read_frame().unwrap_err();
    assert!(matches!(err, Error::Io(ref e) if e.kind() == io::ErrorKind::ConnectionReset));
    assert!(err.is_fatal());
}

#[test]
fn blocking_reader_bad_payload_keeps_the_stream() {
    let unknown = Message {
        r#type: 99,
        payload: vec![],
    };
    let stream = [
        frame(&WardenMessage::to_bytes(&unknown)),
        frame(b"\xff\xff"),
        frame(
            &Message {
                r#type: Type::Stop as i32,
                payload: vec![],
            }
            .to_bytes(),
        ),
        Request::from(PingRequest {}).to_frame(),
    ]
    .concat();
    let mut reader = FrameReader::new(&stream[..]);
    let err = reader.read_request().unwrap_err();
    assert_eq!(err.to_string(), "Unknown request type: 99");
    assert!(!err.is_fatal());
    let err = reader.read_request().unwrap_err();
    assert!(
        matches!(
            err,
            Error::Decode {
                message: "warden.Message",
                ..
            }
        ),
        "{err:?}"
    );
    let err = reader.read_request().unwrap_err();
    assert_eq!(
        err.to_string(),
        "missing required field warden.StopRequest.handle"
    );
    assert_eq!(reader.read_request().unwrap(), Some(PingRequest {}.into()));
    assert_eq!(reader.read_request().unwrap(), None);
}

#[test]
fn blocking_writer_and_reader_talk() {
    let mut writer = FrameWriter::new(Vec::new());
    for r in all_requests() {
        writer.write_request(&r).unwrap();
    }
    for r in all_responses() {
        writer.write_response(&r).unwrap();
    }
    writer
        .write_message(&Request::from(PingRequest {}).to_envelope())
        .unwrap();
    writer.write_frame(b"raw").unwrap();
    let bytes = writer.into_inner();
    let mut reader = FrameReader::new(&bytes[..]);
    for r in all_requests() {
        assert_eq!(reader.read_request().unwrap().unwrap(), r);
    }
    for r in all_responses() {
        assert_eq!(reader.read_response().unwrap().unwrap(), r);
    }
    assert_eq!(reader.read_message().unwrap().unwrap().r#type(), Type::Ping);
    assert_eq!(&reader.read_frame().unwrap().unwrap()[..], b"raw");
    assert!(reader.buffered().is_empty());
    assert!(reader.read_frame().unwrap().is_none());
}

// --- tokio --------------------------------------------------------------------------------

#[tokio::test]
async fn tokio_client_and_server_codecs() {
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::AsyncWriteExt;
    use tokio_util::codec::{Framed, FramedRead, FramedWrite};

    let (client_io, server_io) = tokio::io::duplex(64);
    let server = tokio::spawn(async move {
        let mut framed = Framed::new(server_io, ServerCodec::new());
        let mut seen = Vec::new();
        while let Some(item) = framed.next().await {
            let response = match item.expect("framing error") {
                Ok(Request::Echo(e)) => Response::from(EchoResponse { message: e.message }),
                Ok(Request::Ping(_)) => PingResponse {}.into(),
                Ok(other) => Response::error(format!("Unknown request: {}", other.type_name())),
                Err(e) => Response::error(e.to_string()),
            };
            seen.push(response.type_name());
            framed.send(response).await.unwrap();
        }
        seen
    });

    let (read_half, mut write_half) = tokio::io::split(client_io);
    let mut responses = FramedRead::new(read_half, ClientCodec::new());
    {
        let mut requests = FramedWrite::new(&mut write_half, ClientCodec::new());
        requests.send(Request::from(PingRequest {})).await.unwrap();
        requests
            .send(&Request::from(EchoRequest {
                message: "x".repeat(1000),
            }))
            .await
            .unwrap();
    }
    assert_eq!(
        responses.next().await.unwrap().unwrap(),
        PingResponse {}.into()
    );
    assert_eq!(
        responses.next().await.unwrap().unwrap(),
        EchoResponse {
            message: "x".repeat(1000)
        }
        .into()
    );
    // A frame with a bad payload gets an ErrorResponse and the connection goes on; written a
    // byte at a time to exercise reassembly.
    let bad = frame(
        &Message {
            r#type: 77,
            payload: vec![],
        }
        .to_bytes(),
    );
    for b in bad {
        write_half.write_all(&[b]).await.unwrap();
    }
    match responses.next().await.unwrap().unwrap() {
        Response::Error(e) => assert_eq!(e.message(), "Unknown request type: 77"),
        other => panic!("{other:?}"),
    }
    write_half
        .write_all(&Request::from(StopRequest::default()).to_frame())
        .await
        .unwrap();
    match responses.next().await.unwrap().unwrap() {
        Response::Error(e) => assert_eq!(e.message(), "Unknown request: StopRequest"),
        other => panic!("{other:?}"),
    }
    write_half.shutdown().await.unwrap();
    assert!(responses.next().await.is_none());
    assert_eq!(
        server.await.unwrap(),
        [
            "PingResponse",
            "EchoResponse",
            "ErrorResponse",
            "ErrorResponse"
        ]
    );
}

#[tokio::test]
async fn tokio_stream_ends_with_error_mid_frame() {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    use tokio_util::codec::FramedRead;

    let (mut client, server) = tokio::io::duplex(64);
    client
        .write_all(&Request::from(PingRequest {}).to_frame())
        .await
        .unwrap();
    client.write_all(b"10\r\nabc").await.unwrap();
    drop(client);
    let mut framed = FramedRead::new(server, ServerCodec::new());
    assert!(matches!(
        framed.next().await,
        Some(Ok(Ok(Request::Ping(_))))
    ));
    match framed.next().await {
        Some(Err(Error::ConnectionClosedMidFrame {
            buffered: 3,
            expected: Some(12),
        })) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn tokio_garbage_ends_the_stream() {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    use tokio_util::codec::FramedRead;

    let (mut client, server) = tokio::io::duplex(64);
    client.write_all(b"hello").await.unwrap();
    let mut framed = FramedRead::new(server, ServerCodec::with_max_payload(10));
    assert!(matches!(
        framed.next().await,
        Some(Err(Error::MalformedLength { .. }))
    ));
    let (mut client, server) = tokio::io::duplex(64);
    client.write_all(b"11\r\n").await.unwrap();
    let mut framed = FramedRead::new(server, ClientCodec::with_max_payload(10));
    assert!(matches!(
        framed.next().await,
        Some(Err(Error::FrameTooLarge {
            length: 11,
            max: 10
        }))
    ));
}
