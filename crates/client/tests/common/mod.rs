//! A fake wardend on a real unix socket in a temp dir: it records every request it decodes
//! and answers with canned responses.
#![allow(dead_code)]

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;

use warden_protocol::*;

/// The fake server. Dropping it leaves its thread blocked in accept; the temp dir goes away.
pub struct FakeServer {
    pub path: PathBuf,
    received: Arc<Mutex<Vec<Request>>>,
    _dir: tempfile::TempDir,
}

impl FakeServer {
    pub fn start() -> FakeServer {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warden.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let log = log.clone();
                thread::spawn(move || serve(stream, log));
            }
        });
        FakeServer {
            path,
            received,
            _dir: dir,
        }
    }

    /// Every request received so far, in order, across connections.
    pub fn requests(&self) -> Vec<Request> {
        self.received.lock().unwrap().clone()
    }

    /// The last request received.
    pub fn last(&self) -> Request {
        self.requests().pop().expect("no request received")
    }
}

fn serve(stream: UnixStream, log: Arc<Mutex<Vec<Request>>>) {
    let mut reader = FrameReader::new(stream.try_clone().unwrap());
    let mut writer = FrameWriter::new(stream);
    while let Ok(Some(payload)) = reader.read_frame() {
        let request = match Request::decode(&payload) {
            Ok(request) => request,
            Err(e) => {
                writer
                    .write_response(&Response::error(e.to_string()))
                    .unwrap();
                continue;
            }
        };
        log.lock().unwrap().push(request.clone());
        let responses = answer(&request);
        if responses.is_empty() {
            // Hang up without answering.
            return;
        }
        for response in responses {
            if writer.write_response(&response).is_err() {
                return;
            }
        }
    }
}

pub fn info() -> InfoResponse {
    InfoResponse {
        state: Some("active".into()),
        events: vec!["out of memory".into()],
        host_ip: Some("10.254.0.1".into()),
        container_ip: Some("10.254.0.2".into()),
        container_path: Some("/tmp/warden/containers/abc".into()),
        memory_stat: Some(MemoryStat {
            rss: Some(4096),
            cache: Some(10),
            ..Default::default()
        }),
        cpu_stat: Some(CpuStat {
            usage: Some(123456),
            ..Default::default()
        }),
        job_ids: vec![1, 2],
        ..Default::default()
    }
}

fn chunk(name: &str, data: &str) -> Response {
    Response::Stream(StreamResponse {
        name: Some(name.into()),
        data: Some(data.as_bytes().to_vec()),
        ..Default::default()
    })
}

/// The canned answers. Handle "missing" is unknown; handle "hangup" closes the connection.
fn answer(request: &Request) -> Vec<Response> {
    if request.container_handle() == Some("missing") {
        return vec![Response::error("unknown handle")];
    }
    if request.container_handle() == Some("hangup") {
        return vec![];
    }
    match request {
        Request::Ping(_) => vec![PingResponse {}.into()],
        Request::Echo(r) => vec![EchoResponse {
            message: r.message.clone(),
        }
        .into()],
        Request::List(_) => vec![ListResponse {
            handles: vec!["abc".into(), "def".into()],
        }
        .into()],
        Request::Create(r) => vec![CreateResponse {
            handle: r.handle.clone().unwrap_or_else(|| "generated".into()),
        }
        .into()],
        Request::Stop(_) => vec![StopResponse {}.into()],
        Request::Destroy(_) => vec![DestroyResponse {}.into()],
        Request::Info(_) => vec![info().into()],
        Request::Spawn(_) => vec![SpawnResponse { job_id: 7 }.into()],
        Request::Stream(r) if r.job_id != 7 => vec![Response::error("no such job")],
        Request::Stream(_) => vec![
            chunk("stdout", "hello\n"),
            chunk("stderr", "oops\n"),
            chunk("stdout", "bye\n"),
            StreamResponse {
                exit_status: Some(3),
                info: Some(info()),
                ..Default::default()
            }
            .into(),
        ],
        Request::Link(r) if r.job_id != 7 => vec![Response::error("no such job")],
        Request::Link(_) => vec![LinkResponse {
            exit_status: Some(42),
            stdout: Some(b"linked out\n".to_vec()),
            stderr: Some(b"linked err\n".to_vec()),
            info: Some(info()),
        }
        .into()],
        Request::Run(_) => vec![RunResponse {
            exit_status: Some(5),
            stdout: Some(b"ran\n".to_vec()),
            stderr: Some(vec![]),
            info: None,
        }
        .into()],
        Request::NetIn(r) => vec![NetInResponse {
            host_port: r.host_port.unwrap_or(61001),
            container_port: r.container_port.or(r.host_port).unwrap_or(61001),
        }
        .into()],
        Request::NetOut(_) => vec![NetOutResponse {}.into()],
        Request::CopyIn(_) => vec![CopyInResponse {}.into()],
        Request::CopyOut(_) => vec![CopyOutResponse {}.into()],
        Request::LimitMemory(r) => vec![LimitMemoryResponse {
            limit_in_bytes: Some(r.limit_in_bytes.unwrap_or(9223372036854771712)),
        }
        .into()],
        Request::LimitDisk(r) => vec![LimitDiskResponse {
            byte_limit: r.byte_limit,
            block_limit: r.block_limit,
            ..Default::default()
        }
        .into()],
        Request::LimitBandwidth(r) => vec![LimitBandwidthResponse {
            rate: r.rate,
            burst: r.burst,
        }
        .into()],
        Request::LimitCpu(r) => vec![LimitCpuResponse {
            limit_in_shares: r.limit_in_shares,
        }
        .into()],
    }
}
