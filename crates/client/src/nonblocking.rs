//! The async (tokio) client: the same calls as [`crate::Client`], as futures, and job output as
//! a [`futures_util::Stream`].

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{SinkExt, Stream, StreamExt};
use tokio::net::UnixStream;
use tokio_util::codec::Framed;
use warden_protocol::*;

use crate::calls::{expect, for_each_call, interpret, spawn_request_for};
use crate::{Error, Result};

/// An async connection to wardend.
///
/// ```no_run
/// # async fn demo() -> Result<(), warden_client::Error> {
/// use futures_util::StreamExt;
/// use warden_client::{AsyncClient, StreamRequest};
///
/// let mut client = AsyncClient::connect("/tmp/warden.sock").await?;
/// let handles = client.list().await?.handles;
/// let mut output = client.stream(StreamRequest { handle: handles[0].clone(), job_id: 1 }).await?;
/// while let Some(chunk) = output.next().await {
///     let chunk = chunk?;
///     print!("{}", String::from_utf8_lossy(chunk.data()));
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct AsyncClient {
    path: PathBuf,
    framed: Framed<UnixStream, FrameCodec>,
    abandoned_stream: bool,
}

macro_rules! async_calls {
    ($($name:ident($req:ident) -> $resp:ident, $doc:literal;)*) => {
        impl AsyncClient {
            $(
                #[doc = $doc]
                pub async fn $name(&mut self, request: $req) -> Result<$resp> {
                    self.call(request).await
                }
            )*
        }
    };
}

for_each_call!(async_calls);

impl AsyncClient {
    /// Connects to the server's unix socket at `path`.
    pub async fn connect(path: impl AsRef<Path>) -> Result<AsyncClient> {
        let path = path.as_ref().to_path_buf();
        let stream = UnixStream::connect(&path)
            .await
            .map_err(|source| Error::Connect {
                path: path.clone(),
                source,
            })?;
        Ok(AsyncClient {
            path,
            framed: Framed::new(stream, FrameCodec::new()),
            abandoned_stream: false,
        })
    }

    /// The socket this client is connected to.
    pub fn socket_path(&self) -> &Path {
        &self.path
    }

    /// Sends any request and reads one response; an ErrorResponse is [`Error::Server`].
    pub async fn request(&mut self, request: &Request) -> Result<Response> {
        self.send(request).await?;
        self.receive(request.type_name()).await
    }

    /// Sends a typed request and reads its typed response.
    pub async fn call<R: RequestMessage>(&mut self, request: R) -> Result<R::Response> {
        let request: Request = request.into();
        let name = request.type_name();
        let response = self.request(&request).await?;
        expect(&self.path, name, response)
    }

    /// Checks that the server answers.
    pub async fn ping(&mut self) -> Result<PingResponse> {
        self.call(PingRequest {}).await
    }

    /// The handles of all containers.
    pub async fn list(&mut self) -> Result<ListResponse> {
        self.call(ListRequest {}).await
    }

    /// Has the server send `message` back.
    pub async fn echo(&mut self, message: impl Into<String>) -> Result<EchoResponse> {
        self.call(EchoRequest {
            message: message.into(),
        })
        .await
    }

    /// Streams a job's output: a [`Stream`] of chunks, the last of which carries
    /// `exit_status`. Read it to its end before the next request (see
    /// [`Error::StreamAbandoned`]).
    pub async fn stream(&mut self, request: StreamRequest) -> Result<AsyncJobStream<'_>> {
        let job_id = request.job_id;
        self.send(&request.into()).await?;
        Ok(AsyncJobStream {
            client: self,
            job_id,
            done: false,
        })
    }

    /// Spawns the script, then streams its output as it comes (the original REPL's `run`).
    pub async fn run_streaming(&mut self, request: SpawnRequest) -> Result<AsyncJobStream<'_>> {
        let handle = request.handle.clone();
        let job_id = self.spawn(request).await?.job_id;
        self.stream(StreamRequest { handle, job_id }).await
    }

    /// Like [`AsyncClient::run_streaming`], taking a [`RunRequest`].
    pub async fn run_streaming_request(
        &mut self,
        request: RunRequest,
    ) -> Result<AsyncJobStream<'_>> {
        self.run_streaming(spawn_request_for(request)).await
    }

    async fn send(&mut self, request: &Request) -> Result<()> {
        if self.abandoned_stream {
            return Err(Error::StreamAbandoned {
                path: self.path.clone(),
            });
        }
        self.framed
            .send(request.encode_to_vec())
            .await
            .map_err(|source| Error::Protocol {
                path: self.path.clone(),
                request: request.type_name(),
                source,
            })
    }

    async fn receive(&mut self, request: &'static str) -> Result<Response> {
        let frame = self.framed.next().await;
        self.interpret_frame(request, frame)
    }

    fn interpret_frame(
        &self,
        request: &'static str,
        frame: Option<std::result::Result<bytes::BytesMut, warden_protocol::Error>>,
    ) -> Result<Response> {
        match frame {
            Some(Ok(payload)) => interpret(&self.path, request, &payload),
            None => Err(Error::Closed {
                path: self.path.clone(),
                request,
            }),
            Some(Err(source)) => Err(Error::Protocol {
                path: self.path.clone(),
                request,
                source,
            }),
        }
    }
}

/// A job's output as it comes, from [`AsyncClient::stream`] or [`AsyncClient::run_streaming`]:
/// each [`StreamResponse`], the last with `exit_status`; an error is yielded once, then the
/// stream ends.
#[derive(Debug)]
pub struct AsyncJobStream<'a> {
    client: &'a mut AsyncClient,
    job_id: u32,
    done: bool,
}

impl AsyncJobStream<'_> {
    /// The job being streamed.
    pub fn job_id(&self) -> u32 {
        self.job_id
    }
}

impl Stream for AsyncJobStream<'_> {
    type Item = Result<StreamResponse>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let frame = match this.client.framed.poll_next_unpin(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(frame) => frame,
        };
        let result = this
            .client
            .interpret_frame("StreamRequest", frame)
            .and_then(|r| expect::<StreamResponse>(&this.client.path, "StreamRequest", r));
        match &result {
            Ok(chunk) if chunk.exit_status.is_none() => {}
            _ => this.done = true,
        }
        Poll::Ready(Some(result))
    }
}

impl Drop for AsyncJobStream<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.client.abandoned_stream = true;
        }
    }
}
