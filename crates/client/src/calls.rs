//! The list of typed calls, shared by the blocking and the async client.

/// Invokes `$m!` with every request that gets exactly one response and takes its request
/// message as is (`ping`, `list`, `echo` and `stream` have calls of their own).
macro_rules! for_each_call {
    ($m:ident) => {
        $m! {
            create(CreateRequest) -> CreateResponse, "Creates a container; the response has its handle.";
            stop(StopRequest) -> StopResponse, "Stops a container's processes (`background`: answer at once; `kill`: SIGKILL at once).";
            destroy(DestroyRequest) -> DestroyResponse, "Destroys a container.";
            info(InfoRequest) -> InfoResponse, "A container's state, addresses, jobs and statistics.";
            spawn(SpawnRequest) -> SpawnResponse, "Starts a script in a container; the response has its job id.";
            link(LinkRequest) -> LinkResponse, "Waits for a job to end; the response has its exit status and all its output.";
            run(RunRequest) -> RunResponse, "Spawns and links in one request: waits for the job, then returns its status and output.";
            net_in(NetInRequest) -> NetInResponse, "Forwards a host port to a container port.";
            net_out(NetOutRequest) -> NetOutResponse, "Allows traffic from a container to a network, port or port range.";
            copy_in(CopyInRequest) -> CopyInResponse, "Copies files from the host into a container.";
            copy_out(CopyOutRequest) -> CopyOutResponse, "Copies files from a container to the host.";
            limit_memory(LimitMemoryRequest) -> LimitMemoryResponse, "Sets (or, without a limit, reads) a container's memory limit.";
            limit_disk(LimitDiskRequest) -> LimitDiskResponse, "Sets (or reads) a container's disk quota.";
            limit_bandwidth(LimitBandwidthRequest) -> LimitBandwidthResponse, "Limits a container's network bandwidth.";
            limit_cpu(LimitCpuRequest) -> LimitCpuResponse, "Sets (or reads) a container's cpu shares.";
        }
    };
}

pub(crate) use for_each_call;

/// The request to spawn what a [`RunRequest`](warden_protocol::RunRequest) would run (the two
/// messages have the same fields): what the command line's `run` sends before streaming.
pub fn spawn_request_for(run: warden_protocol::RunRequest) -> warden_protocol::SpawnRequest {
    warden_protocol::SpawnRequest {
        handle: run.handle,
        script: run.script,
        privileged: run.privileged,
        rlimits: run.rlimits,
        discard_output: run.discard_output,
        log_tag: run.log_tag,
    }
}

/// Interprets one frame's payload as the answer to `request` (a message name for errors):
/// an ErrorResponse becomes [`crate::Error::Server`].
pub(crate) fn interpret(
    path: &std::path::Path,
    request: &'static str,
    payload: &[u8],
) -> crate::Result<warden_protocol::Response> {
    use warden_protocol::Response;
    match Response::decode(payload) {
        Ok(Response::Error(e)) => Err(crate::Error::Server {
            request,
            message: e.message.unwrap_or_default(),
        }),
        Ok(response) => Ok(response),
        Err(source) => Err(crate::Error::Protocol {
            path: path.to_path_buf(),
            request,
            source,
        }),
    }
}

/// Takes the typed response out of `response`.
pub(crate) fn expect<M: warden_protocol::ResponseMessage>(
    path: &std::path::Path,
    request: &'static str,
    response: warden_protocol::Response,
) -> crate::Result<M> {
    M::from_response(response).map_err(|other| crate::Error::UnexpectedResponse {
        path: path.to_path_buf(),
        request,
        got: other.type_name(),
    })
}
