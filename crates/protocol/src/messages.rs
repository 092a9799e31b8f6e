//! The messages of SPEC §2, as hand-written prost structs (no protoc at build time).
//!
//! Conventions, chosen so that encoding is byte-identical to the original Ruby (beefcake):
//! - `required` fields are plain values (`String`, `u32`...): always encoded, and
//!   [`WardenMessage::decode_checked`] fails when one is absent on the wire.
//! - `optional` fields are `Option<T>`: encoded only when `Some`, so a field with a default
//!   (`StopRequest.background`, default false) set explicitly to its default is still written.
//!   prost generates an accessor of the same name returning the value or the default
//!   (`req.background()` → `bool`, `req.handle()` → `&str`).
//! - repeated scalars are unpacked (`packed = "false"`); decoding accepts both forms.
//! - enum fields are `i32` with a typed accessor and setter (`bind_mount.mode()` → [`Mode`],
//!   `set_mode`), as prost does: an unknown number is kept, and the accessor falls back to the
//!   enum's default.
//! - job output (`StreamResponse.data`, `LinkResponse`/`RunResponse` `stdout`/`stderr`) is
//!   declared `string` in the protocol but carries whatever bytes a job wrote; the Ruby server
//!   sends them unchecked, so these fields are `Vec<u8>` here (same wire encoding) instead of
//!   failing on output that is not UTF-8.
//!
//! Nested protobuf types are flattened into this module: `warden.CreateRequest.BindMount` is
//! [`BindMount`], its enum is [`Mode`], `warden.InfoResponse.MemoryStat` is [`MemoryStat`] (and
//! so on), `warden.NetOutRequest.Protocol` is [`Protocol`].

use crate::wire::{check_required, NestedCheck, WardenMessage};

/// Implements [`WardenMessage`]: full protobuf name, required fields (number => name) and the
/// embedded-message fields whose own required fields need checking (number => type).
macro_rules! warden_message {
    ($ty:ident = $full:literal $(, required: [$($rtag:literal => $rname:ident),* $(,)?])? $(, nested: [$($ntag:literal => $nty:ty),* $(,)?])? $(,)?) => {
        impl WardenMessage for $ty {
            const FULL_NAME: &'static str = $full;
            const REQUIRED: &'static [(u32, &'static str)] =
                &[$($(($rtag, concat!($full, ".", stringify!($rname)))),*)?];
            const NESTED: &'static [(u32, NestedCheck)] =
                &[$($(($ntag, check_required::<$nty> as NestedCheck)),*)?];
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Envelope and error

/// The message type carried in the envelope; a request and its response share one type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Type {
    Error = 1,
    Create = 11,
    Stop = 12,
    Destroy = 13,
    Info = 14,
    Spawn = 21,
    Link = 22,
    Run = 23,
    Stream = 24,
    NetIn = 31,
    NetOut = 32,
    CopyIn = 41,
    CopyOut = 42,
    LimitMemory = 51,
    LimitDisk = 52,
    LimitBandwidth = 53,
    LimitCpu = 54,
    Ping = 91,
    List = 92,
    Echo = 93,
}

/// The envelope every frame carries: `warden.Message`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Message {
    /// A [`Type`] number; read it with `r#type()`, which maps unknown numbers to `Error`, or
    /// use [`crate::Request::decode_envelope`] / [`crate::Response::decode_envelope`].
    #[prost(enumeration = "Type", required, tag = "1")]
    pub r#type: i32,
    /// The encoded request or response.
    #[prost(bytes = "vec", required, tag = "2")]
    pub payload: Vec<u8>,
}
warden_message!(Message = "warden.Message", required: [1 => type, 2 => payload]);

/// Type 1: a failed request. The server sets only `message`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ErrorResponse {
    #[prost(string, optional, tag = "2")]
    pub message: Option<String>,
    #[prost(string, repeated, tag = "3")]
    pub backtrace: Vec<String>,
    #[prost(string, optional, tag = "4")]
    pub data: Option<String>,
}
warden_message!(ErrorResponse = "warden.ErrorResponse");

// ---------------------------------------------------------------------------------------------
// create / stop / destroy / info

/// `warden.CreateRequest.BindMount.Mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Mode {
    Ro = 0,
    Rw = 1,
}

/// `warden.CreateRequest.BindMount`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct BindMount {
    #[prost(string, required, tag = "1")]
    pub src_path: String,
    #[prost(string, required, tag = "2")]
    pub dst_path: String,
    /// A [`Mode`]; use `mode()` / `set_mode()`.
    #[prost(enumeration = "Mode", required, tag = "3")]
    pub mode: i32,
}
warden_message!(BindMount = "warden.CreateRequest.BindMount",
    required: [1 => src_path, 2 => dst_path, 3 => mode]);

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct CreateRequest {
    #[prost(message, repeated, tag = "1")]
    pub bind_mounts: Vec<BindMount>,
    #[prost(uint32, optional, tag = "2")]
    pub grace_time: Option<u32>,
    #[prost(string, optional, tag = "3")]
    pub handle: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub network: Option<String>,
    #[prost(string, optional, tag = "5")]
    pub rootfs: Option<String>,
}
warden_message!(CreateRequest = "warden.CreateRequest", nested: [1 => BindMount]);

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct CreateResponse {
    #[prost(string, required, tag = "1")]
    pub handle: String,
}
warden_message!(CreateResponse = "warden.CreateResponse", required: [1 => handle]);

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct StopRequest {
    #[prost(string, required, tag = "1")]
    pub handle: String,
    #[prost(bool, optional, tag = "10", default = "false")]
    pub background: Option<bool>,
    #[prost(bool, optional, tag = "20", default = "false")]
    pub kill: Option<bool>,
}
warden_message!(StopRequest = "warden.StopRequest", required: [1 => handle]);

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct StopResponse {}
warden_message!(StopResponse = "warden.StopResponse");

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct DestroyRequest {
    #[prost(string, required, tag = "1")]
    pub handle: String,
}
warden_message!(DestroyRequest = "warden.DestroyRequest", required: [1 => handle]);

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct DestroyResponse {}
warden_message!(DestroyResponse = "warden.DestroyResponse");

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct InfoRequest {
    #[prost(string, required, tag = "1")]
    pub handle: String,
}
warden_message!(InfoRequest = "warden.InfoRequest", required: [1 => handle]);

/// `warden.InfoResponse.MemoryStat`: the cgroup's memory.stat.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct MemoryStat {
    #[prost(uint64, optional, tag = "1")]
    pub cache: Option<u64>,
    #[prost(uint64, optional, tag = "2")]
    pub rss: Option<u64>,
    #[prost(uint64, optional, tag = "3")]
    pub mapped_file: Option<u64>,
    #[prost(uint64, optional, tag = "4")]
    pub pgpgin: Option<u64>,
    #[prost(uint64, optional, tag = "5")]
    pub pgpgout: Option<u64>,
    #[prost(uint64, optional, tag = "6")]
    pub swap: Option<u64>,
    #[prost(uint64, optional, tag = "7")]
    pub pgfault: Option<u64>,
    #[prost(uint64, optional, tag = "8")]
    pub pgmajfault: Option<u64>,
    #[prost(uint64, optional, tag = "9")]
    pub inactive_anon: Option<u64>,
    #[prost(uint64, optional, tag = "10")]
    pub active_anon: Option<u64>,
    #[prost(uint64, optional, tag = "11")]
    pub inactive_file: Option<u64>,
    #[prost(uint64, optional, tag = "12")]
    pub active_file: Option<u64>,
    #[prost(uint64, optional, tag = "13")]
    pub unevictable: Option<u64>,
    #[prost(uint64, optional, tag = "14")]
    pub hierarchical_memory_limit: Option<u64>,
    #[prost(uint64, optional, tag = "15")]
    pub hierarchical_memsw_limit: Option<u64>,
    #[prost(uint64, optional, tag = "16")]
    pub total_cache: Option<u64>,
    #[prost(uint64, optional, tag = "17")]
    pub total_rss: Option<u64>,
    #[prost(uint64, optional, tag = "18")]
    pub total_mapped_file: Option<u64>,
    #[prost(uint64, optional, tag = "19")]
    pub total_pgpgin: Option<u64>,
    #[prost(uint64, optional, tag = "20")]
    pub total_pgpgout: Option<u64>,
    #[prost(uint64, optional, tag = "21")]
    pub total_swap: Option<u64>,
    #[prost(uint64, optional, tag = "22")]
    pub total_pgfault: Option<u64>,
    #[prost(uint64, optional, tag = "23")]
    pub total_pgmajfault: Option<u64>,
    #[prost(uint64, optional, tag = "24")]
    pub total_inactive_anon: Option<u64>,
    #[prost(uint64, optional, tag = "25")]
    pub total_active_anon: Option<u64>,
    #[prost(uint64, optional, tag = "26")]
    pub total_inactive_file: Option<u64>,
    #[prost(uint64, optional, tag = "27")]
    pub total_active_file: Option<u64>,
    #[prost(uint64, optional, tag = "28")]
    pub total_unevictable: Option<u64>,
}
warden_message!(MemoryStat = "warden.InfoResponse.MemoryStat");

/// `warden.InfoResponse.CpuStat`: `usage` in ns, `user`/`system` in USER_HZ.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct CpuStat {
    #[prost(uint64, optional, tag = "1")]
    pub usage: Option<u64>,
    #[prost(uint64, optional, tag = "2")]
    pub user: Option<u64>,
    #[prost(uint64, optional, tag = "3")]
    pub system: Option<u64>,
}
warden_message!(CpuStat = "warden.InfoResponse.CpuStat");

/// `warden.InfoResponse.DiskStat`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct DiskStat {
    #[prost(uint64, optional, tag = "1")]
    pub bytes_used: Option<u64>,
    #[prost(uint64, optional, tag = "2")]
    pub inodes_used: Option<u64>,
}
warden_message!(DiskStat = "warden.InfoResponse.DiskStat");

/// `warden.InfoResponse.BandwidthStat`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct BandwidthStat {
    #[prost(uint64, optional, tag = "1")]
    pub in_rate: Option<u64>,
    #[prost(uint64, optional, tag = "2")]
    pub in_burst: Option<u64>,
    #[prost(uint64, optional, tag = "3")]
    pub out_rate: Option<u64>,
    #[prost(uint64, optional, tag = "4")]
    pub out_burst: Option<u64>,
}
warden_message!(BandwidthStat = "warden.InfoResponse.BandwidthStat");

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct InfoResponse {
    #[prost(string, optional, tag = "10")]
    pub state: Option<String>,
    #[prost(string, repeated, tag = "20")]
    pub events: Vec<String>,
    #[prost(string, optional, tag = "30")]
    pub host_ip: Option<String>,
    #[prost(string, optional, tag = "31")]
    pub container_ip: Option<String>,
    #[prost(string, optional, tag = "32")]
    pub container_path: Option<String>,
    #[prost(message, optional, tag = "40")]
    pub memory_stat: Option<MemoryStat>,
    #[prost(message, optional, tag = "41")]
    pub cpu_stat: Option<CpuStat>,
    #[prost(message, optional, tag = "42")]
    pub disk_stat: Option<DiskStat>,
    #[prost(message, optional, tag = "43")]
    pub bandwidth_stat: Option<BandwidthStat>,
    #[prost(uint64, repeated, packed = "false", tag = "44")]
    pub job_ids: Vec<u64>,
}
warden_message!(InfoResponse = "warden.InfoResponse");

// ---------------------------------------------------------------------------------------------
// jobs: spawn / link / run / stream

/// `warden.ResourceLimits`: rlimits for a job (`as` is `r#as` in Rust).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ResourceLimits {
    #[prost(uint64, optional, tag = "1")]
    pub r#as: Option<u64>,
    #[prost(uint64, optional, tag = "2")]
    pub core: Option<u64>,
    #[prost(uint64, optional, tag = "3")]
    pub cpu: Option<u64>,
    #[prost(uint64, optional, tag = "4")]
    pub data: Option<u64>,
    #[prost(uint64, optional, tag = "5")]
    pub fsize: Option<u64>,
    #[prost(uint64, optional, tag = "6")]
    pub locks: Option<u64>,
    #[prost(uint64, optional, tag = "7")]
    pub memlock: Option<u64>,
    #[prost(uint64, optional, tag = "8")]
    pub msgqueue: Option<u64>,
    #[prost(uint64, optional, tag = "9")]
    pub nice: Option<u64>,
    #[prost(uint64, optional, tag = "10")]
    pub nofile: Option<u64>,
    #[prost(uint64, optional, tag = "11")]
    pub nproc: Option<u64>,
    #[prost(uint64, optional, tag = "12")]
    pub rss: Option<u64>,
    #[prost(uint64, optional, tag = "13")]
    pub rtprio: Option<u64>,
    #[prost(uint64, optional, tag = "14")]
    pub sigpending: Option<u64>,
    #[prost(uint64, optional, tag = "15")]
    pub stack: Option<u64>,
}
warden_message!(ResourceLimits = "warden.ResourceLimits");

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SpawnRequest {
    #[prost(string, required, tag = "1")]
    pub handle: String,
    #[prost(string, required, tag = "2")]
    pub script: String,
    #[prost(bool, optional, tag = "3", default = "false")]
    pub privileged: Option<bool>,
    #[prost(message, optional, tag = "4")]
    pub rlimits: Option<ResourceLimits>,
    #[prost(bool, optional, tag = "5", default = "false")]
    pub discard_output: Option<bool>,
    #[prost(string, optional, tag = "6")]
    pub log_tag: Option<String>,
}
warden_message!(SpawnRequest = "warden.SpawnRequest", required: [1 => handle, 2 => script]);

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SpawnResponse {
    #[prost(uint32, required, tag = "1")]
    pub job_id: u32,
}
warden_message!(SpawnResponse = "warden.SpawnResponse", required: [1 => job_id]);

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LinkRequest {
    #[prost(string, required, tag = "1")]
    pub handle: String,
    #[prost(uint32, required, tag = "2")]
    pub job_id: u32,
}
warden_message!(LinkRequest = "warden.LinkRequest", required: [1 => handle, 2 => job_id]);

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LinkResponse {
    #[prost(uint32, optional, tag = "1")]
    pub exit_status: Option<u32>,
    /// The job's stdout (wire type `string`; see the module docs).
    #[prost(bytes = "vec", optional, tag = "2")]
    pub stdout: Option<Vec<u8>>,
    /// The job's stderr (wire type `string`; see the module docs).
    #[prost(bytes = "vec", optional, tag = "3")]
    pub stderr: Option<Vec<u8>>,
    #[prost(message, optional, tag = "4")]
    pub info: Option<InfoResponse>,
}
warden_message!(LinkResponse = "warden.LinkResponse");

/// Same fields as [`SpawnRequest`].
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct RunRequest {
    #[prost(string, required, tag = "1")]
    pub handle: String,
    #[prost(string, required, tag = "2")]
    pub script: String,
    #[prost(bool, optional, tag = "3", default = "false")]
    pub privileged: Option<bool>,
    #[prost(message, optional, tag = "4")]
    pub rlimits: Option<ResourceLimits>,
    #[prost(bool, optional, tag = "5", default = "false")]
    pub discard_output: Option<bool>,
    #[prost(string, optional, tag = "6")]
    pub log_tag: Option<String>,
}
warden_message!(RunRequest = "warden.RunRequest", required: [1 => handle, 2 => script]);

/// Same fields as [`LinkResponse`].
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct RunResponse {
    #[prost(uint32, optional, tag = "1")]
    pub exit_status: Option<u32>,
    /// The job's stdout (wire type `string`; see the module docs).
    #[prost(bytes = "vec", optional, tag = "2")]
    pub stdout: Option<Vec<u8>>,
    /// The job's stderr (wire type `string`; see the module docs).
    #[prost(bytes = "vec", optional, tag = "3")]
    pub stderr: Option<Vec<u8>>,
    #[prost(message, optional, tag = "4")]
    pub info: Option<InfoResponse>,
}
warden_message!(RunResponse = "warden.RunResponse");

/// Same fields as [`LinkRequest`].
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct StreamRequest {
    #[prost(string, required, tag = "1")]
    pub handle: String,
    #[prost(uint32, required, tag = "2")]
    pub job_id: u32,
}
warden_message!(StreamRequest = "warden.StreamRequest", required: [1 => handle, 2 => job_id]);

/// One chunk of a job's output (`name` = "stdout" or "stderr", `data`), or the final message
/// (`exit_status`, `info`, no name or data).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct StreamResponse {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// A chunk of output (wire type `string`; see the module docs).
    #[prost(bytes = "vec", optional, tag = "2")]
    pub data: Option<Vec<u8>>,
    #[prost(uint32, optional, tag = "3")]
    pub exit_status: Option<u32>,
    #[prost(message, optional, tag = "4")]
    pub info: Option<InfoResponse>,
}
warden_message!(StreamResponse = "warden.StreamResponse");

// ---------------------------------------------------------------------------------------------
// networking

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct NetInRequest {
    #[prost(string, required, tag = "1")]
    pub handle: String,
    #[prost(uint32, optional, tag = "2")]
    pub container_port: Option<u32>,
    #[prost(uint32, optional, tag = "3")]
    pub host_port: Option<u32>,
}
warden_message!(NetInRequest = "warden.NetInRequest", required: [1 => handle]);

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct NetInResponse {
    #[prost(uint32, required, tag = "1")]
    pub host_port: u32,
    #[prost(uint32, required, tag = "2")]
    pub container_port: u32,
}
warden_message!(NetInResponse = "warden.NetInResponse",
    required: [1 => host_port, 2 => container_port]);

/// `warden.NetOutRequest.Protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Protocol {
    Tcp = 0,
    Udp = 1,
    Icmp = 2,
    All = 3,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct NetOutRequest {
    #[prost(string, required, tag = "1")]
    pub handle: String,
    #[prost(string, optional, tag = "2")]
    pub network: Option<String>,
    #[prost(uint32, optional, tag = "3")]
    pub port: Option<u32>,
    /// `"min:max"`.
    #[prost(string, optional, tag = "4")]
    pub port_range: Option<String>,
    /// A [`Protocol`]; use `protocol()` / `set_protocol()`.
    #[prost(enumeration = "Protocol", optional, tag = "5")]
    pub protocol: Option<i32>,
    #[prost(int32, optional, tag = "6")]
    pub icmp_type: Option<i32>,
    #[prost(int32, optional, tag = "7")]
    pub icmp_code: Option<i32>,
    #[prost(bool, optional, tag = "8")]
    pub log: Option<bool>,
}
warden_message!(NetOutRequest = "warden.NetOutRequest", required: [1 => handle]);

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct NetOutResponse {}
warden_message!(NetOutResponse = "warden.NetOutResponse");

// ---------------------------------------------------------------------------------------------
// copy in / out

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct CopyInRequest {
    #[prost(string, required, tag = "1")]
    pub handle: String,
    #[prost(string, required, tag = "2")]
    pub src_path: String,
    #[prost(string, required, tag = "3")]
    pub dst_path: String,
}
warden_message!(CopyInRequest = "warden.CopyInRequest",
    required: [1 => handle, 2 => src_path, 3 => dst_path]);

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct CopyInResponse {}
warden_message!(CopyInResponse = "warden.CopyInResponse");

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct CopyOutRequest {
    #[prost(string, required, tag = "1")]
    pub handle: String,
    #[prost(string, required, tag = "2")]
    pub src_path: String,
    #[prost(string, required, tag = "3")]
    pub dst_path: String,
    /// `"user:group"`.
    #[prost(string, optional, tag = "4")]
    pub owner: Option<String>,
}
warden_message!(CopyOutRequest = "warden.CopyOutRequest",
    required: [1 => handle, 2 => src_path, 3 => dst_path]);

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct CopyOutResponse {}
warden_message!(CopyOutResponse = "warden.CopyOutResponse");

// ---------------------------------------------------------------------------------------------
// limits

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LimitMemoryRequest {
    #[prost(string, required, tag = "1")]
    pub handle: String,
    #[prost(uint64, optional, tag = "2")]
    pub limit_in_bytes: Option<u64>,
}
warden_message!(LimitMemoryRequest = "warden.LimitMemoryRequest", required: [1 => handle]);

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LimitMemoryResponse {
    #[prost(uint64, optional, tag = "1")]
    pub limit_in_bytes: Option<u64>,
}
warden_message!(LimitMemoryResponse = "warden.LimitMemoryResponse");

/// `X_limit` and `X` are aliases of `X_hard`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LimitDiskRequest {
    #[prost(string, required, tag = "1")]
    pub handle: String,
    #[prost(uint64, optional, tag = "10")]
    pub block_limit: Option<u64>,
    #[prost(uint64, optional, tag = "11")]
    pub block: Option<u64>,
    #[prost(uint64, optional, tag = "12")]
    pub block_soft: Option<u64>,
    #[prost(uint64, optional, tag = "13")]
    pub block_hard: Option<u64>,
    #[prost(uint64, optional, tag = "20")]
    pub inode_limit: Option<u64>,
    #[prost(uint64, optional, tag = "21")]
    pub inode: Option<u64>,
    #[prost(uint64, optional, tag = "22")]
    pub inode_soft: Option<u64>,
    #[prost(uint64, optional, tag = "23")]
    pub inode_hard: Option<u64>,
    #[prost(uint64, optional, tag = "30")]
    pub byte_limit: Option<u64>,
    #[prost(uint64, optional, tag = "31")]
    pub byte: Option<u64>,
    #[prost(uint64, optional, tag = "32")]
    pub byte_soft: Option<u64>,
    #[prost(uint64, optional, tag = "33")]
    pub byte_hard: Option<u64>,
}
warden_message!(LimitDiskRequest = "warden.LimitDiskRequest", required: [1 => handle]);

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LimitDiskResponse {
    #[prost(uint64, optional, tag = "10")]
    pub block_limit: Option<u64>,
    #[prost(uint64, optional, tag = "11")]
    pub block: Option<u64>,
    #[prost(uint64, optional, tag = "12")]
    pub block_soft: Option<u64>,
    #[prost(uint64, optional, tag = "13")]
    pub block_hard: Option<u64>,
    #[prost(uint64, optional, tag = "20")]
    pub inode_limit: Option<u64>,
    #[prost(uint64, optional, tag = "21")]
    pub inode: Option<u64>,
    #[prost(uint64, optional, tag = "22")]
    pub inode_soft: Option<u64>,
    #[prost(uint64, optional, tag = "23")]
    pub inode_hard: Option<u64>,
    #[prost(uint64, optional, tag = "30")]
    pub byte_limit: Option<u64>,
    #[prost(uint64, optional, tag = "31")]
    pub byte: Option<u64>,
    #[prost(uint64, optional, tag = "32")]
    pub byte_soft: Option<u64>,
    #[prost(uint64, optional, tag = "33")]
    pub byte_hard: Option<u64>,
}
warden_message!(LimitDiskResponse = "warden.LimitDiskResponse");

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LimitBandwidthRequest {
    #[prost(string, required, tag = "1")]
    pub handle: String,
    /// Bytes per second.
    #[prost(uint64, required, tag = "2")]
    pub rate: u64,
    /// Bytes.
    #[prost(uint64, required, tag = "3")]
    pub burst: u64,
}
warden_message!(LimitBandwidthRequest = "warden.LimitBandwidthRequest",
    required: [1 => handle, 2 => rate, 3 => burst]);

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LimitBandwidthResponse {
    #[prost(uint64, required, tag = "1")]
    pub rate: u64,
    #[prost(uint64, required, tag = "2")]
    pub burst: u64,
}
warden_message!(LimitBandwidthResponse = "warden.LimitBandwidthResponse",
    required: [1 => rate, 2 => burst]);

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LimitCpuRequest {
    #[prost(string, required, tag = "1")]
    pub handle: String,
    #[prost(uint64, optional, tag = "2")]
    pub limit_in_shares: Option<u64>,
}
warden_message!(LimitCpuRequest = "warden.LimitCpuRequest", required: [1 => handle]);

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LimitCpuResponse {
    #[prost(uint64, optional, tag = "1")]
    pub limit_in_shares: Option<u64>,
}
warden_message!(LimitCpuResponse = "warden.LimitCpuResponse");

// ---------------------------------------------------------------------------------------------
// ping / list / echo

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PingRequest {}
warden_message!(PingRequest = "warden.PingRequest");

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PingResponse {}
warden_message!(PingResponse = "warden.PingResponse");

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ListRequest {}
warden_message!(ListRequest = "warden.ListRequest");

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ListResponse {
    #[prost(string, repeated, tag = "1")]
    pub handles: Vec<String>,
}
warden_message!(ListResponse = "warden.ListResponse");

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct EchoRequest {
    #[prost(string, required, tag = "1")]
    pub message: String,
}
warden_message!(EchoRequest = "warden.EchoRequest", required: [1 => message]);

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct EchoResponse {
    #[prost(string, required, tag = "1")]
    pub message: String,
}
warden_message!(EchoResponse = "warden.EchoResponse", required: [1 => message]);
