//! A small description of every message of the protocol: field names, numbers, kinds and labels.
//!
//! The command line builds requests from it ([`crate::args`]), the shell's `help` and tab
//! completion list its fields, and responses are rendered from it ([`crate::value`]). It
//! mirrors `crates/protocol/src/messages.rs`; a test encodes every field of every message
//! through this table and checks that the protocol crate's prost types read back exactly the
//! same bytes, so a wrong number or kind here cannot go unnoticed.

use warden_protocol::Type;

/// What a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// UTF-8 text.
    String,
    /// Any bytes (job output, declared `string` on the wire).
    Bytes,
    /// `true` / `false`.
    Bool,
    /// An unsigned 32-bit number.
    U32,
    /// An unsigned 64-bit number.
    U64,
    /// A signed 32-bit number.
    I32,
    /// An enum, by value name (`RO`, `TCP`...) and number.
    Enum(&'static [(&'static str, i32)]),
    /// An embedded message.
    Message(&'static MessageSchema),
}

impl Kind {
    /// How the kind is shown in help: `string`, `uint32`, `RO|RW`, a message's name...
    pub fn describe(&self) -> String {
        match self {
            Kind::String | Kind::Bytes => "string".into(),
            Kind::Bool => "bool".into(),
            Kind::U32 => "uint32".into(),
            Kind::U64 => "uint64".into(),
            Kind::I32 => "int32".into(),
            Kind::Enum(values) => values
                .iter()
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
                .join("|"),
            Kind::Message(m) => m.name.to_string(),
        }
    }
}

/// proto2 label of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// Must be present.
    Required,
    /// May be left out.
    Optional,
    /// Any number of values (unpacked on the wire).
    Repeated,
}

/// One field of a message.
#[derive(Debug, PartialEq, Eq)]
pub struct FieldSchema {
    /// The field's name, as in the protocol (`grace_time`).
    pub name: &'static str,
    /// Its field number.
    pub tag: u32,
    /// What it holds.
    pub kind: Kind,
    /// Required, optional or repeated.
    pub label: Label,
}

/// One message: its full protobuf name and its fields in ascending field number.
#[derive(Debug, PartialEq, Eq)]
pub struct MessageSchema {
    /// Full protobuf name (`warden.CreateRequest`).
    pub name: &'static str,
    /// The fields, in ascending field number.
    pub fields: &'static [FieldSchema],
}

impl MessageSchema {
    /// The field called `name`.
    pub fn field(&self, name: &str) -> Option<&'static FieldSchema> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The field numbered `tag`.
    pub fn field_by_tag(&self, tag: u32) -> Option<&'static FieldSchema> {
        self.fields.iter().find(|f| f.tag == tag)
    }
}

/// One command of the command line and shell: a request type and its messages.
#[derive(Debug)]
pub struct CommandSchema {
    /// The command's name: the request's name in snake_case (`limit_memory`).
    pub name: &'static str,
    /// The envelope type.
    pub ty: Type,
    /// One line saying what it does, for `help`.
    pub summary: &'static str,
    /// The request message.
    pub request: &'static MessageSchema,
    /// The response message.
    pub response: &'static MessageSchema,
}

/// The command called `name`.
pub fn command(name: &str) -> Option<&'static CommandSchema> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// The command whose request has envelope type `ty`.
pub fn command_for_type(ty: Type) -> Option<&'static CommandSchema> {
    COMMANDS.iter().find(|c| c.ty == ty)
}

/// The names of all commands, in table order.
pub fn command_names() -> impl Iterator<Item = &'static str> {
    COMMANDS.iter().map(|c| c.name)
}

/// `stringify!(r#as)` is `"r#as"`; the field is called `as`.
const fn unraw(name: &'static str) -> &'static str {
    match name.as_bytes() {
        [b'r', b'#', rest @ ..] => match std::str::from_utf8(rest) {
            Ok(s) => s,
            Err(_) => name,
        },
        _ => name,
    }
}

macro_rules! field {
    ($name:ident = $tag:literal : $kind:expr, $label:ident) => {
        FieldSchema {
            name: unraw(stringify!($name)),
            tag: $tag,
            kind: $kind,
            label: Label::$label,
        }
    };
}

macro_rules! message {
    ($static:ident = $full:literal { $($name:ident = $tag:literal : $kind:expr, $label:ident;)* }) => {
        #[doc = concat!("`", $full, "`.")]
        pub static $static: MessageSchema = MessageSchema {
            name: $full,
            fields: &[$(field!($name = $tag : $kind, $label)),*],
        };
    };
}

use Kind::{Bool, Bytes, Message, String as Str, I32, U32, U64};

const MODE: Kind = Kind::Enum(&[("RO", 0), ("RW", 1)]);
const PROTOCOL: Kind = Kind::Enum(&[("TCP", 0), ("UDP", 1), ("ICMP", 2), ("ALL", 3)]);

message!(ERROR_RESPONSE = "warden.ErrorResponse" {
    message = 2: Str, Optional;
    backtrace = 3: Str, Repeated;
    data = 4: Str, Optional;
});

message!(BIND_MOUNT = "warden.CreateRequest.BindMount" {
    src_path = 1: Str, Required;
    dst_path = 2: Str, Required;
    mode = 3: MODE, Required;
});

message!(CREATE_REQUEST = "warden.CreateRequest" {
    bind_mounts = 1: Message(&BIND_MOUNT), Repeated;
    grace_time = 2: U32, Optional;
    handle = 3: Str, Optional;
    network = 4: Str, Optional;
    rootfs = 5: Str, Optional;
});
message!(CREATE_RESPONSE = "warden.CreateResponse" { handle = 1: Str, Required; });

message!(STOP_REQUEST = "warden.StopRequest" {
    handle = 1: Str, Required;
    background = 10: Bool, Optional;
    kill = 20: Bool, Optional;
});
message!(STOP_RESPONSE = "warden.StopResponse" {});

message!(DESTROY_REQUEST = "warden.DestroyRequest" { handle = 1: Str, Required; });
message!(DESTROY_RESPONSE = "warden.DestroyResponse" {});

message!(INFO_REQUEST = "warden.InfoRequest" { handle = 1: Str, Required; });

message!(MEMORY_STAT = "warden.InfoResponse.MemoryStat" {
    cache = 1: U64, Optional;
    rss = 2: U64, Optional;
    mapped_file = 3: U64, Optional;
    pgpgin = 4: U64, Optional;
    pgpgout = 5: U64, Optional;
    swap = 6: U64, Optional;
    pgfault = 7: U64, Optional;
    pgmajfault = 8: U64, Optional;
    inactive_anon = 9: U64, Optional;
    active_anon = 10: U64, Optional;
    inactive_file = 11: U64, Optional;
    active_file = 12: U64, Optional;
    unevictable = 13: U64, Optional;
    hierarchical_memory_limit = 14: U64, Optional;
    hierarchical_memsw_limit = 15: U64, Optional;
    total_cache = 16: U64, Optional;
    total_rss = 17: U64, Optional;
    total_mapped_file = 18: U64, Optional;
    total_pgpgin = 19: U64, Optional;
    total_pgpgout = 20: U64, Optional;
    total_swap = 21: U64, Optional;
    total_pgfault = 22: U64, Optional;
    total_pgmajfault = 23: U64, Optional;
    total_inactive_anon = 24: U64, Optional;
    total_active_anon = 25: U64, Optional;
    total_inactive_file = 26: U64, Optional;
    total_active_file = 27: U64, Optional;
    total_unevictable = 28: U64, Optional;
});
message!(CPU_STAT = "warden.InfoResponse.CpuStat" {
    usage = 1: U64, Optional;
    user = 2: U64, Optional;
    system = 3: U64, Optional;
});
message!(DISK_STAT = "warden.InfoResponse.DiskStat" {
    bytes_used = 1: U64, Optional;
    inodes_used = 2: U64, Optional;
});
message!(BANDWIDTH_STAT = "warden.InfoResponse.BandwidthStat" {
    in_rate = 1: U64, Optional;
    in_burst = 2: U64, Optional;
    out_rate = 3: U64, Optional;
    out_burst = 4: U64, Optional;
});
message!(INFO_RESPONSE = "warden.InfoResponse" {
    state = 10: Str, Optional;
    events = 20: Str, Repeated;
    host_ip = 30: Str, Optional;
    container_ip = 31: Str, Optional;
    container_path = 32: Str, Optional;
    memory_stat = 40: Message(&MEMORY_STAT), Optional;
    cpu_stat = 41: Message(&CPU_STAT), Optional;
    disk_stat = 42: Message(&DISK_STAT), Optional;
    bandwidth_stat = 43: Message(&BANDWIDTH_STAT), Optional;
    job_ids = 44: U64, Repeated;
});

message!(RESOURCE_LIMITS = "warden.ResourceLimits" {
    r#as = 1: U64, Optional;
    core = 2: U64, Optional;
    cpu = 3: U64, Optional;
    data = 4: U64, Optional;
    fsize = 5: U64, Optional;
    locks = 6: U64, Optional;
    memlock = 7: U64, Optional;
    msgqueue = 8: U64, Optional;
    nice = 9: U64, Optional;
    nofile = 10: U64, Optional;
    nproc = 11: U64, Optional;
    rss = 12: U64, Optional;
    rtprio = 13: U64, Optional;
    sigpending = 14: U64, Optional;
    stack = 15: U64, Optional;
});

message!(SPAWN_REQUEST = "warden.SpawnRequest" {
    handle = 1: Str, Required;
    script = 2: Str, Required;
    privileged = 3: Bool, Optional;
    rlimits = 4: Message(&RESOURCE_LIMITS), Optional;
    discard_output = 5: Bool, Optional;
    log_tag = 6: Str, Optional;
});
message!(SPAWN_RESPONSE = "warden.SpawnResponse" { job_id = 1: U32, Required; });

message!(LINK_REQUEST = "warden.LinkRequest" {
    handle = 1: Str, Required;
    job_id = 2: U32, Required;
});
message!(LINK_RESPONSE = "warden.LinkResponse" {
    exit_status = 1: U32, Optional;
    stdout = 2: Bytes, Optional;
    stderr = 3: Bytes, Optional;
    info = 4: Message(&INFO_RESPONSE), Optional;
});

message!(RUN_REQUEST = "warden.RunRequest" {
    handle = 1: Str, Required;
    script = 2: Str, Required;
    privileged = 3: Bool, Optional;
    rlimits = 4: Message(&RESOURCE_LIMITS), Optional;
    discard_output = 5: Bool, Optional;
    log_tag = 6: Str, Optional;
});
message!(RUN_RESPONSE = "warden.RunResponse" {
    exit_status = 1: U32, Optional;
    stdout = 2: Bytes, Optional;
    stderr = 3: Bytes, Optional;
    info = 4: Message(&INFO_RESPONSE), Optional;
});

message!(STREAM_REQUEST = "warden.StreamRequest" {
    handle = 1: Str, Required;
    job_id = 2: U32, Required;
});
message!(STREAM_RESPONSE = "warden.StreamResponse" {
    name = 1: Str, Optional;
    data = 2: Bytes, Optional;
    exit_status = 3: U32, Optional;
    info = 4: Message(&INFO_RESPONSE), Optional;
});

message!(NET_IN_REQUEST = "warden.NetInRequest" {
    handle = 1: Str, Required;
    container_port = 2: U32, Optional;
    host_port = 3: U32, Optional;
});
message!(NET_IN_RESPONSE = "warden.NetInResponse" {
    host_port = 1: U32, Required;
    container_port = 2: U32, Required;
});

message!(NET_OUT_REQUEST = "warden.NetOutRequest" {
    handle = 1: Str, Required;
    network = 2: Str, Optional;
    port = 3: U32, Optional;
    port_range = 4: Str, Optional;
    protocol = 5: PROTOCOL, Optional;
    icmp_type = 6: I32, Optional;
    icmp_code = 7: I32, Optional;
    log = 8: Bool, Optional;
});
message!(NET_OUT_RESPONSE = "warden.NetOutResponse" {});

message!(COPY_IN_REQUEST = "warden.CopyInRequest" {
    handle = 1: Str, Required;
    src_path = 2: Str, Required;
    dst_path = 3: Str, Required;
});
message!(COPY_IN_RESPONSE = "warden.CopyInResponse" {});

message!(COPY_OUT_REQUEST = "warden.CopyOutRequest" {
    handle = 1: Str, Required;
    src_path = 2: Str, Required;
    dst_path = 3: Str, Required;
    owner = 4: Str, Optional;
});
message!(COPY_OUT_RESPONSE = "warden.CopyOutResponse" {});

message!(LIMIT_MEMORY_REQUEST = "warden.LimitMemoryRequest" {
    handle = 1: Str, Required;
    limit_in_bytes = 2: U64, Optional;
});
message!(LIMIT_MEMORY_RESPONSE = "warden.LimitMemoryResponse" {
    limit_in_bytes = 1: U64, Optional;
});

message!(LIMIT_DISK_REQUEST = "warden.LimitDiskRequest" {
    handle = 1: Str, Required;
    block_limit = 10: U64, Optional;
    block = 11: U64, Optional;
    block_soft = 12: U64, Optional;
    block_hard = 13: U64, Optional;
    inode_limit = 20: U64, Optional;
    inode = 21: U64, Optional;
    inode_soft = 22: U64, Optional;
    inode_hard = 23: U64, Optional;
    byte_limit = 30: U64, Optional;
    byte = 31: U64, Optional;
    byte_soft = 32: U64, Optional;
    byte_hard = 33: U64, Optional;
});
message!(LIMIT_DISK_RESPONSE = "warden.LimitDiskResponse" {
    block_limit = 10: U64, Optional;
    block = 11: U64, Optional;
    block_soft = 12: U64, Optional;
    block_hard = 13: U64, Optional;
    inode_limit = 20: U64, Optional;
    inode = 21: U64, Optional;
    inode_soft = 22: U64, Optional;
    inode_hard = 23: U64, Optional;
    byte_limit = 30: U64, Optional;
    byte = 31: U64, Optional;
    byte_soft = 32: U64, Optional;
    byte_hard = 33: U64, Optional;
});

message!(LIMIT_BANDWIDTH_REQUEST = "warden.LimitBandwidthRequest" {
    handle = 1: Str, Required;
    rate = 2: U64, Required;
    burst = 3: U64, Required;
});
message!(LIMIT_BANDWIDTH_RESPONSE = "warden.LimitBandwidthResponse" {
    rate = 1: U64, Required;
    burst = 2: U64, Required;
});

message!(LIMIT_CPU_REQUEST = "warden.LimitCpuRequest" {
    handle = 1: Str, Required;
    limit_in_shares = 2: U64, Optional;
});
message!(LIMIT_CPU_RESPONSE = "warden.LimitCpuResponse" {
    limit_in_shares = 1: U64, Optional;
});

message!(PING_REQUEST = "warden.PingRequest" {});
message!(PING_RESPONSE = "warden.PingResponse" {});
message!(LIST_REQUEST = "warden.ListRequest" {});
message!(LIST_RESPONSE = "warden.ListResponse" { handles = 1: Str, Repeated; });
message!(ECHO_REQUEST = "warden.EchoRequest" { message = 1: Str, Required; });
message!(ECHO_RESPONSE = "warden.EchoResponse" { message = 1: Str, Required; });

macro_rules! commands {
    ($($name:literal => $ty:ident, $req:ident, $resp:ident, $summary:literal;)*) => {
        /// Every command, in the order of the protocol's type table.
        pub static COMMANDS: &[CommandSchema] = &[$(CommandSchema {
            name: $name,
            ty: Type::$ty,
            summary: $summary,
            request: &$req,
            response: &$resp,
        }),*];
    };
}

commands! {
    "create" => Create, CREATE_REQUEST, CREATE_RESPONSE, "create a container; prints its handle";
    "stop" => Stop, STOP_REQUEST, STOP_RESPONSE, "stop a container's processes";
    "destroy" => Destroy, DESTROY_REQUEST, DESTROY_RESPONSE, "destroy a container";
    "info" => Info, INFO_REQUEST, INFO_RESPONSE, "show a container's state and statistics";
    "spawn" => Spawn, SPAWN_REQUEST, SPAWN_RESPONSE, "start a script in a container; prints its job id";
    "link" => Link, LINK_REQUEST, LINK_RESPONSE, "wait for a job; prints its output, exits with its status";
    "run" => Run, RUN_REQUEST, RUN_RESPONSE, "spawn a script and stream its output; exits with its status";
    "stream" => Stream, STREAM_REQUEST, STREAM_RESPONSE, "stream a job's output as it comes; exits with its status";
    "net_in" => NetIn, NET_IN_REQUEST, NET_IN_RESPONSE, "forward a host port to a container port";
    "net_out" => NetOut, NET_OUT_REQUEST, NET_OUT_RESPONSE, "allow traffic from a container to a network/port";
    "copy_in" => CopyIn, COPY_IN_REQUEST, COPY_IN_RESPONSE, "copy files from the host into a container";
    "copy_out" => CopyOut, COPY_OUT_REQUEST, COPY_OUT_RESPONSE, "copy files from a container to the host";
    "limit_memory" => LimitMemory, LIMIT_MEMORY_REQUEST, LIMIT_MEMORY_RESPONSE, "set or show a container's memory limit";
    "limit_disk" => LimitDisk, LIMIT_DISK_REQUEST, LIMIT_DISK_RESPONSE, "set or show a container's disk quota";
    "limit_bandwidth" => LimitBandwidth, LIMIT_BANDWIDTH_REQUEST, LIMIT_BANDWIDTH_RESPONSE, "limit a container's network bandwidth";
    "limit_cpu" => LimitCpu, LIMIT_CPU_REQUEST, LIMIT_CPU_RESPONSE, "set or show a container's cpu shares";
    "ping" => Ping, PING_REQUEST, PING_RESPONSE, "check that the server answers; prints pong";
    "list" => List, LIST_REQUEST, LIST_RESPONSE, "list container handles";
    "echo" => Echo, ECHO_REQUEST, ECHO_RESPONSE, "have the server echo a message";
}

/// One settable leaf of a request, flattened for help and completion: its path as written on
/// the command line with `[N]` for an index (`bind_mounts[N].mode`), and the field.
#[derive(Debug, Clone)]
pub struct FieldPath {
    /// The path without the leading `--`, `[N]` standing for any index.
    pub path: String,
    /// The leaf field.
    pub field: &'static FieldSchema,
    /// Whether it must be given (the field and every message above it are required; a field
    /// required inside a repeated message counts as required).
    pub required: bool,
}

/// Every leaf field of `message`, depth first, in table order.
pub fn field_paths(message: &'static MessageSchema) -> Vec<FieldPath> {
    let mut out = Vec::new();
    collect_paths(message, "", true, &mut out);
    out
}

fn collect_paths(
    message: &'static MessageSchema,
    prefix: &str,
    required_above: bool,
    out: &mut Vec<FieldPath>,
) {
    for field in message.fields {
        let mut path = format!("{prefix}{}", field.name);
        if field.label == Label::Repeated {
            path.push_str("[N]");
        }
        match field.kind {
            Kind::Message(inner) => {
                let below = required_above && field.label != Label::Optional;
                collect_paths(inner, &format!("{path}."), below, out)
            }
            _ => out.push(FieldPath {
                path,
                field,
                required: required_above && field.label == Label::Required,
            }),
        }
    }
}
