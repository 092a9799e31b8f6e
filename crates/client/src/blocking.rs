//! The blocking client: one unix-socket connection, one request at a time.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use warden_protocol::*;

use crate::calls::{expect, for_each_call, interpret, spawn_request_for};
use crate::{Error, Result};

/// A blocking connection to wardend.
///
/// ```no_run
/// use warden_client::{Client, CreateRequest, StreamRequest};
///
/// let mut client = Client::connect("/tmp/warden.sock")?;
/// client.ping()?;
/// let handle = client.create(CreateRequest::default())?.handle;
/// for chunk in client.run_streaming(warden_client::SpawnRequest {
///     handle: handle.clone(),
///     script: "echo hi".into(),
///     ..Default::default()
/// })? {
///     let chunk = chunk?;
///     if let Some(status) = chunk.exit_status {
///         println!("exited with {status}");
///     }
/// }
/// # Ok::<(), warden_client::Error>(())
/// ```
#[derive(Debug)]
pub struct Client {
    path: PathBuf,
    reader: FrameReader<UnixStream>,
    writer: FrameWriter<UnixStream>,
    abandoned_stream: bool,
}

macro_rules! blocking_calls {
    ($($name:ident($req:ident) -> $resp:ident, $doc:literal;)*) => {
        impl Client {
            $(
                #[doc = $doc]
                pub fn $name(&mut self, request: $req) -> Result<$resp> {
                    self.call(request)
                }
            )*
        }
    };
}

for_each_call!(blocking_calls);

impl Client {
    /// Connects to the server's unix socket at `path`.
    pub fn connect(path: impl AsRef<Path>) -> Result<Client> {
        let path = path.as_ref().to_path_buf();
        let stream = UnixStream::connect(&path).map_err(|source| Error::Connect {
            path: path.clone(),
            source,
        })?;
        let writer = stream.try_clone().map_err(|source| Error::Connect {
            path: path.clone(),
            source,
        })?;
        Ok(Client {
            path,
            reader: FrameReader::new(stream),
            writer: FrameWriter::new(writer),
            abandoned_stream: false,
        })
    }

    /// The socket this client is connected to.
    pub fn socket_path(&self) -> &Path {
        &self.path
    }

    /// Sets how long a read may wait for the server (`None`: forever, the default). A timed
    /// out read is an [`Error::Protocol`] with an I/O error, after which the connection is out
    /// of step.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.reader
            .get_ref()
            .set_read_timeout(timeout)
            .map_err(|source| Error::Protocol {
                path: self.path.clone(),
                request: "set_read_timeout",
                source: source.into(),
            })
    }

    /// Sends any request and reads one response; an ErrorResponse is [`Error::Server`].
    pub fn request(&mut self, request: &Request) -> Result<Response> {
        self.send(request)?;
        self.receive(request.type_name())
    }

    /// Sends a typed request and reads its typed response.
    pub fn call<R: RequestMessage>(&mut self, request: R) -> Result<R::Response> {
        let request: Request = request.into();
        let name = request.type_name();
        let response = self.request(&request)?;
        expect(&self.path, name, response)
    }

    /// Checks that the server answers.
    pub fn ping(&mut self) -> Result<PingResponse> {
        self.call(PingRequest {})
    }

    /// The handles of all containers.
    pub fn list(&mut self) -> Result<ListResponse> {
        self.call(ListRequest {})
    }

    /// Has the server send `message` back.
    pub fn echo(&mut self, message: impl Into<String>) -> Result<EchoResponse> {
        self.call(EchoRequest {
            message: message.into(),
        })
    }

    /// Streams a job's output: an iterator of chunks (`name` "stdout"/"stderr" and `data`),
    /// the last of which carries `exit_status` (and `info`). Read it to its end before the
    /// next request: a stream dropped early leaves the connection unusable
    /// ([`Error::StreamAbandoned`]).
    pub fn stream(&mut self, request: StreamRequest) -> Result<JobStream<'_>> {
        let job_id = request.job_id;
        self.send(&request.into())?;
        Ok(JobStream {
            client: self,
            job_id,
            done: false,
        })
    }

    /// What the original REPL's `run` does: spawns the script, then streams its output as it
    /// comes (where a [`RunRequest`] returns it all at the end).
    pub fn run_streaming(&mut self, request: SpawnRequest) -> Result<JobStream<'_>> {
        let handle = request.handle.clone();
        let job_id = self.spawn(request)?.job_id;
        self.stream(StreamRequest { handle, job_id })
    }

    /// Like [`Client::run_streaming`], taking a [`RunRequest`].
    pub fn run_streaming_request(&mut self, request: RunRequest) -> Result<JobStream<'_>> {
        self.run_streaming(spawn_request_for(request))
    }

    fn send(&mut self, request: &Request) -> Result<()> {
        if self.abandoned_stream {
            return Err(Error::StreamAbandoned {
                path: self.path.clone(),
            });
        }
        self.writer
            .write_request(request)
            .map_err(|source| Error::Protocol {
                path: self.path.clone(),
                request: request.type_name(),
                source,
            })
    }

    fn receive(&mut self, request: &'static str) -> Result<Response> {
        match self.reader.read_frame() {
            Ok(Some(payload)) => interpret(&self.path, request, &payload),
            Ok(None) => Err(Error::Closed {
                path: self.path.clone(),
                request,
            }),
            Err(source) => Err(Error::Protocol {
                path: self.path.clone(),
                request,
                source,
            }),
        }
    }
}

/// A job's output as it comes, from [`Client::stream`] or [`Client::run_streaming`].
///
/// Yields each [`StreamResponse`]; the last one has `exit_status` set, after which the
/// iterator ends. An error (the server's, or the connection's) is yielded once, then it ends.
#[derive(Debug)]
pub struct JobStream<'a> {
    client: &'a mut Client,
    job_id: u32,
    done: bool,
}

impl JobStream<'_> {
    /// The job being streamed.
    pub fn job_id(&self) -> u32 {
        self.job_id
    }

    /// Reads the stream to its end, handing each output chunk to `output` (its name and
    /// data), and returns the final response (with `exit_status`).
    pub fn for_each_output(
        mut self,
        mut output: impl FnMut(&str, &[u8]),
    ) -> Result<StreamResponse> {
        loop {
            match self.next() {
                Some(Ok(chunk)) if chunk.exit_status.is_some() => return Ok(chunk),
                Some(Ok(chunk)) => output(chunk.name(), chunk.data()),
                Some(Err(e)) => return Err(e),
                None => {
                    return Err(Error::Closed {
                        path: self.client.path.clone(),
                        request: "StreamRequest",
                    })
                }
            }
        }
    }
}

impl Iterator for JobStream<'_> {
    type Item = Result<StreamResponse>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let result = self.client.receive("StreamRequest").and_then(|response| {
            expect::<StreamResponse>(&self.client.path, "StreamRequest", response)
        });
        match &result {
            Ok(chunk) if chunk.exit_status.is_none() => {}
            _ => self.done = true,
        }
        Some(result)
    }
}

impl Drop for JobStream<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.client.abandoned_stream = true;
        }
    }
}
