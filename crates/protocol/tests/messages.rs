//! Messages: the SPEC's byte vectors, round trips, proto2 required fields and defaults, and the
//! typed envelope layer.

mod common;

use common::{all_requests, all_responses, fixtures, hex, unhex};
use prost::Message as _;
use warden_protocol::*;

// --- SPEC §1 vectors (from the original Ruby) -------------------------------------------------

#[test]
fn spec_create_request_frame() {
    let request = Request::from(CreateRequest {
        bind_mounts: vec![BindMount {
            src_path: "/src".into(),
            dst_path: "/dst".into(),
            mode: Mode::Ro as i32,
        }],
        grace_time: Some(30),
        handle: Some("abc".into()),
        ..Default::default()
    });
    let want = "32370d0a080b12170a0e0a042f73726312042f6473741800101e1a036162630d0a";
    assert_eq!(hex(&request.to_frame()), want);
    let decoded = FrameReader::new(&unhex(want)[..])
        .read_request()
        .unwrap()
        .unwrap();
    assert_eq!(decoded, request);
}

#[test]
fn spec_ping_frame() {
    let request = Request::from(PingRequest {});
    assert_eq!(hex(&request.to_frame()), "340d0a085b12000d0a");
    // The response shares the type.
    assert_eq!(
        hex(&Response::from(PingResponse {}).to_frame()),
        "340d0a085b12000d0a"
    );
}

#[test]
fn spec_error_frame() {
    let response = Response::error("unknown handle");
    assert_eq!(
        response.to_frame(),
        b"20\r\n\x08\x01\x12\x10\x12\x0eunknown handle\r\n"
    );
    let back = FrameReader::new(&response.to_frame()[..])
        .read_response()
        .unwrap()
        .unwrap();
    match back {
        Response::Error(e) => {
            assert_eq!(e.message(), "unknown handle");
            assert_eq!(e.data, None);
            assert!(e.backtrace.is_empty());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn spec_stop_request_defaults_written_only_when_set() {
    let mut stop = StopRequest {
        handle: "h".into(),
        ..Default::default()
    };
    assert_eq!(hex(&stop.encode_to_vec()), "0a0168");
    stop.background = Some(false);
    assert_eq!(hex(&stop.encode_to_vec()), "0a01685000");

    let decoded = StopRequest::decode_checked(&unhex("0a0168")).unwrap();
    assert_eq!(decoded.background, None);
    assert!(!decoded.background());
    assert!(!decoded.kill());
    let decoded = StopRequest::decode_checked(&unhex("0a01685000")).unwrap();
    assert_eq!(decoded.background, Some(false));
}

#[test]
fn spec_repeated_scalars_unpacked() {
    let info = InfoResponse {
        job_ids: vec![1, 2],
        ..Default::default()
    };
    assert_eq!(hex(&info.encode_to_vec()), "e00201e00202");
    // A packed encoding of the same field still decodes (proto2 parsers accept both).
    let packed = unhex("e2020201 02".replace(' ', "").as_str());
    assert_eq!(InfoResponse::decode_checked(&packed).unwrap(), info);
}

#[test]
fn spec_negative_int32_takes_ten_bytes() {
    let req = NetOutRequest {
        handle: "h".into(),
        icmp_type: Some(-1),
        ..Default::default()
    };
    assert_eq!(hex(&req.encode_to_vec()), "0a016830ffffffffffffffffff01");
    assert_eq!(
        NetOutRequest::decode_checked(&req.encode_to_vec())
            .unwrap()
            .icmp_type(),
        -1
    );
}

#[test]
fn fields_are_written_in_ascending_number() {
    // NetInRequest declares host_port = 3 before container_port = 2 in the SPEC.
    let req = NetInRequest {
        handle: "h".into(),
        container_port: Some(2),
        host_port: Some(3),
    };
    assert_eq!(hex(&req.encode_to_vec()), "0a016810021803");
}

// --- round trips --------------------------------------------------------------------------

#[test]
fn every_fixture_round_trips() {
    for (name, msg) in fixtures() {
        let bytes = msg.encode();
        msg.same_as(&bytes)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn every_request_round_trips_through_envelope_and_frame() {
    let requests = all_requests();
    assert_eq!(requests.len(), Type::ALL.len() - 1, "one per request type");
    for request in requests {
        let ty = request.message_type();
        assert_eq!(Some(request.type_name()), ty.request_name());
        let envelope = request.to_envelope();
        assert_eq!(envelope.r#type, ty as i32);
        assert_eq!(envelope.r#type(), ty);
        assert_eq!(Request::decode_envelope(&envelope).unwrap(), request);
        assert_eq!(Request::decode(&request.encode_to_vec()).unwrap(), request);
        let frame = request.to_frame();
        let mut reader = FrameReader::new(&frame[..]);
        assert_eq!(reader.read_request().unwrap().unwrap(), request);
        assert!(reader.read_request().unwrap().is_none());
    }
}

#[test]
fn every_response_round_trips_through_envelope_and_frame() {
    let responses = all_responses();
    assert_eq!(
        responses.len(),
        Type::ALL.len(),
        "one per type, Error included"
    );
    for response in responses {
        let ty = response.message_type();
        assert_eq!(response.type_name(), ty.response_name());
        assert_eq!(response.is_error(), ty == Type::Error);
        let envelope = response.to_envelope();
        assert_eq!(Response::decode_envelope(&envelope).unwrap(), response);
        assert_eq!(
            Response::decode(&response.encode_to_vec()).unwrap(),
            response
        );
        let frame = response.to_frame();
        assert_eq!(
            FrameReader::new(&frame[..])
                .read_response()
                .unwrap()
                .unwrap(),
            response
        );
    }
}

#[test]
fn job_output_need_not_be_utf8() {
    let chunk = StreamResponse {
        name: Some("stdout".into()),
        data: Some(vec![0xff, 0x00, 0xc3]),
        ..Default::default()
    };
    let back = StreamResponse::decode_checked(&chunk.encode_to_vec()).unwrap();
    assert_eq!(back.data(), &[0xff, 0x00, 0xc3]);
}

#[test]
fn invalid_utf8_in_a_string_field_is_a_named_error() {
    // StopRequest.handle = "\xff"
    let err = StopRequest::decode_checked(&[0x0a, 0x01, 0xff]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Decode {
                message: "warden.StopRequest",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("malformed warden.StopRequest: "),
        "{err}"
    );
    assert!(!err.is_fatal());
}

#[test]
fn unknown_fields_are_skipped() {
    // handle "h", then unknown: varint 15, fixed64 16, fixed32 17, bytes 18, group 19 {varint 1}
    let mut bytes = unhex("0a0168");
    bytes.extend(unhex("7801"));
    bytes.extend(unhex("810100000000000000ff"));
    bytes.extend(unhex("8d0100000000"));
    bytes.extend(unhex("920102aabb"));
    bytes.extend(unhex("9b010801 9c01".replace(' ', "").as_str()));
    let stop = StopRequest::decode_checked(&bytes).unwrap();
    assert_eq!(stop.handle, "h");
    // ...and not written back.
    assert_eq!(hex(&stop.encode_to_vec()), "0a0168");
}

// --- required fields ----------------------------------------------------------------------

#[test]
fn missing_required_field_is_named() {
    let err = StopRequest::decode_checked(&[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "missing required field warden.StopRequest.handle"
    );
    assert!(matches!(
        err,
        Error::MissingField {
            field: "warden.StopRequest.handle"
        }
    ));
    assert!(!err.is_fatal());

    // the second of two required fields
    let err = LinkRequest::decode_checked(&unhex("0a0168")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "missing required field warden.LinkRequest.job_id"
    );
}

#[test]
fn required_field_with_default_value_counts_as_present() {
    // job_id 0 written explicitly: present.
    let link = LinkRequest::decode_checked(&unhex("0a01681000")).unwrap();
    assert_eq!(link.job_id, 0);
    // prost always writes required fields, even at their default.
    assert_eq!(
        hex(&LinkRequest {
            handle: String::new(),
            job_id: 0
        }
        .encode_to_vec()),
        "0a001000"
    );
}

#[test]
fn missing_required_field_inside_an_embedded_message_is_named() {
    // CreateRequest { bind_mounts: [{ src_path: "/s", dst_path: "/d" }] } (no mode)
    let bytes = unhex("0a080a022f7312022f64");
    let err = CreateRequest::decode_checked(&bytes).unwrap_err();
    assert_eq!(
        err.to_string(),
        "missing required field warden.CreateRequest.BindMount.mode"
    );
    // the second bind mount is checked too
    let bytes = unhex(
        "0a0a0a022f7312022f641800 0a080a022f7312022f64"
            .replace(' ', "")
            .as_str(),
    );
    let err = CreateRequest::decode_checked(&bytes).unwrap_err();
    assert!(matches!(
        err,
        Error::MissingField {
            field: "warden.CreateRequest.BindMount.mode"
        }
    ));
}

#[test]
fn every_required_field_of_every_fixture_is_enforced() {
    // Drop each required top-level field from each fixture's encoding in turn.
    let mut checked = 0;
    for (name, msg) in fixtures() {
        let bytes = msg.encode();
        for &(tag, field) in msg.required() {
            let stripped = strip_field(&bytes, tag);
            assert_ne!(stripped, bytes, "{name}: field {tag} was not on the wire");
            let full_name = format!("warden.{}", name.split('/').next().unwrap());
            match common::decode_named(&full_name, &stripped) {
                Some(Err(Error::MissingField { field: f })) => assert_eq!(f, field, "{name}"),
                other => panic!("{name} without {field}: {other:?}"),
            }
            checked += 1;
        }
    }
    assert!(checked > 40, "{checked}");
}

/// Removes every occurrence of field `tag` from a message's top level (test vectors only
/// use varint and length-delimited fields).
fn strip_field(mut bytes: &[u8], tag: u32) -> Vec<u8> {
    fn varint(b: &mut &[u8]) -> u64 {
        let mut v = 0u64;
        for i in 0.. {
            let byte = b[0];
            *b = &b[1..];
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                break;
            }
        }
        v
    }
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let start = bytes;
        let key = varint(&mut bytes);
        match key & 7 {
            0 => {
                varint(&mut bytes);
            }
            2 => {
                let len = varint(&mut bytes) as usize;
                bytes = &bytes[len..];
            }
            other => panic!("wire type {other} in a test vector"),
        }
        if (key >> 3) as u32 != tag {
            out.extend_from_slice(&start[..start.len() - bytes.len()]);
        }
    }
    out
}

#[test]
fn envelope_requires_type_and_payload() {
    let err = Message::decode_checked(&unhex("085b")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "missing required field warden.Message.payload"
    );
    let err = Request::decode(&unhex("1200")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "missing required field warden.Message.type"
    );
}

#[test]
fn a_request_with_a_missing_field_is_named_through_the_envelope() {
    let envelope = Message {
        r#type: Type::Stop as i32,
        payload: vec![],
    };
    let err = Request::decode_envelope(&envelope).unwrap_err();
    assert_eq!(
        err.to_string(),
        "missing required field warden.StopRequest.handle"
    );
}

// --- defaults and enums -------------------------------------------------------------------

#[test]
fn accessors_return_proto_defaults() {
    let spawn = SpawnRequest::default();
    assert!(!spawn.privileged());
    assert!(!spawn.discard_output());
    assert_eq!(spawn.log_tag(), "");
    let net = NetOutRequest::default();
    assert_eq!(net.protocol(), Protocol::Tcp);
    assert_eq!(net.icmp_type(), 0);
    assert!(!net.log());
    let create = CreateRequest::default();
    assert_eq!(create.grace_time(), 0);
    assert_eq!(create.handle(), "");
    let limits = ResourceLimits {
        r#as: Some(5),
        ..Default::default()
    };
    assert_eq!(limits.r#as(), 5);
    assert_eq!(limits.nofile(), 0);
}

#[test]
fn enum_setters_and_unknown_values() {
    let mut mount = BindMount::default();
    assert_eq!(mount.mode(), Mode::Ro);
    mount.set_mode(Mode::Rw);
    assert_eq!(mount.mode, 1);
    // An unknown number is kept on the wire and read back as the default.
    mount.mode = 7;
    let back = BindMount::decode_checked(&mount.encode_to_vec()).unwrap();
    assert_eq!(back.mode, 7);
    assert_eq!(back.mode(), Mode::Ro);

    let mut net = NetOutRequest::default();
    net.set_protocol(Protocol::Tcp);
    assert_eq!(net.protocol, Some(0));
    assert_eq!(hex(&net.encode_to_vec()), "0a002800");
}

#[test]
fn type_numbers_match_the_spec() {
    let spec = [
        (Type::Error, 1, None, "ErrorResponse"),
        (Type::Create, 11, Some("CreateRequest"), "CreateResponse"),
        (Type::Stop, 12, Some("StopRequest"), "StopResponse"),
        (Type::Destroy, 13, Some("DestroyRequest"), "DestroyResponse"),
        (Type::Info, 14, Some("InfoRequest"), "InfoResponse"),
        (Type::Spawn, 21, Some("SpawnRequest"), "SpawnResponse"),
        (Type::Link, 22, Some("LinkRequest"), "LinkResponse"),
        (Type::Run, 23, Some("RunRequest"), "RunResponse"),
        (Type::Stream, 24, Some("StreamRequest"), "StreamResponse"),
        (Type::NetIn, 31, Some("NetInRequest"), "NetInResponse"),
        (Type::NetOut, 32, Some("NetOutRequest"), "NetOutResponse"),
        (Type::CopyIn, 41, Some("CopyInRequest"), "CopyInResponse"),
        (Type::CopyOut, 42, Some("CopyOutRequest"), "CopyOutResponse"),
        (
            Type::LimitMemory,
            51,
            Some("LimitMemoryRequest"),
            "LimitMemoryResponse",
        ),
        (
            Type::LimitDisk,
            52,
            Some("LimitDiskRequest"),
            "LimitDiskResponse",
        ),
        (
            Type::LimitBandwidth,
            53,
            Some("LimitBandwidthRequest"),
            "LimitBandwidthResponse",
        ),
        (
            Type::LimitCpu,
            54,
            Some("LimitCpuRequest"),
            "LimitCpuResponse",
        ),
        (Type::Ping, 91, Some("PingRequest"), "PingResponse"),
        (Type::List, 92, Some("ListRequest"), "ListResponse"),
        (Type::Echo, 93, Some("EchoRequest"), "EchoResponse"),
    ];
    assert_eq!(Type::ALL.len(), spec.len());
    for (i, (ty, number, request, response)) in spec.into_iter().enumerate() {
        assert_eq!(Type::ALL[i], ty);
        assert_eq!(ty as i32, number);
        assert_eq!(Type::try_from(number).unwrap(), ty);
        assert_eq!(ty.request_name(), request);
        assert_eq!(ty.response_name(), response);
    }
    // There is no Capacity message, nor anything else.
    for n in -1..200 {
        assert_eq!(
            Type::try_from(n).is_ok(),
            spec.iter().any(|s| s.1 == n),
            "{n}"
        );
    }
}

#[test]
fn unknown_envelope_types_are_decode_errors() {
    for number in [0, 2, 15, 99, -1, i32::MAX] {
        let envelope = Message {
            r#type: number,
            payload: vec![],
        };
        let bytes = envelope.encode_to_vec();
        let err = Request::decode(&bytes).unwrap_err();
        assert_eq!(err.to_string(), format!("Unknown request type: {number}"));
        assert!(!err.is_fatal());
        let err = Response::decode(&bytes).unwrap_err();
        assert_eq!(err.to_string(), format!("Unknown response type: {number}"));
    }
    // Error is a response type only.
    let err = Request::decode(&Response::error("x").encode_to_vec()).unwrap_err();
    assert_eq!(err.to_string(), "Unknown request type: 1");
}

#[test]
fn typed_request_response_pairs() {
    #[allow(clippy::result_large_err)]
    fn expect<R: RequestMessage>(_: &R, response: Response) -> Result<R::Response, Response> {
        <R::Response as ResponseMessage>::from_response(response)
    }
    let req = CreateRequest::default();
    let ok = expect(&req, CreateResponse { handle: "h".into() }.into()).unwrap();
    assert_eq!(ok.handle, "h");
    let err = expect(&req, Response::error("boom")).unwrap_err();
    assert_eq!(ErrorResponse::from_response(err).unwrap().message(), "boom");
    assert_eq!(<StopRequest as RequestMessage>::TYPE, Type::Stop);
    assert_eq!(<ErrorResponse as ResponseMessage>::TYPE, Type::Error);
    assert_eq!(
        <EchoResponse as WardenMessage>::FULL_NAME,
        "warden.EchoResponse"
    );
}

#[test]
fn container_handle() {
    for request in all_requests() {
        let expected = match request.message_type() {
            Type::Create | Type::Ping | Type::List | Type::Echo => None,
            _ => Some("h1"),
        };
        assert_eq!(
            request.container_handle(),
            expected,
            "{}",
            request.type_name()
        );
    }
}

// --- hostile payloads ---------------------------------------------------------------------

#[test]
fn truncated_payloads_never_panic() {
    for request in all_requests() {
        let bytes = request.encode_to_vec();
        for cut in 0..bytes.len() {
            let _ = Request::decode(&bytes[..cut]);
        }
    }
    for response in all_responses() {
        let bytes = response.encode_to_vec();
        for cut in 0..bytes.len() {
            let _ = Response::decode(&bytes[..cut]);
        }
    }
    for (_, msg) in fixtures() {
        let bytes = msg.encode();
        for cut in 0..bytes.len() {
            let _ = msg.same_as(&bytes[..cut]);
        }
    }
}

#[test]
fn random_payloads_never_panic() {
    // xorshift: deterministic, no dependency.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let len = (next() % 64) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let _ = Request::decode(&bytes);
        let _ = Response::decode(&bytes);
        // and as payloads of every known type
        for &ty in Type::ALL {
            let envelope = Message {
                r#type: ty as i32,
                payload: std::mem::take(&mut bytes),
            };
            let _ = Request::decode_envelope(&envelope);
            let _ = Response::decode_envelope(&envelope);
            bytes = envelope.payload;
        }
    }
}
