//! Test fixtures shared by the integration tests: a populated instance of every message.
//!
//! tests/vectors.py defines the same fixtures, value for value, with the Python protobuf
//! runtime; tests/python_vectors.rs checks the two against each other. Change both together.
#![allow(dead_code)]

use std::fmt::Debug;

use warden_protocol::*;

/// A message of any type, for tables of fixtures.
pub trait AnyMessage: Debug {
    fn full_name(&self) -> &'static str;
    fn encode(&self) -> Vec<u8>;
    fn required(&self) -> &'static [(u32, &'static str)];
    /// Decodes `bytes` as this message's type and compares with `self`.
    fn same_as(&self, bytes: &[u8]) -> Result<(), String>;
}

impl<T: WardenMessage + 'static> AnyMessage for T {
    fn full_name(&self) -> &'static str {
        T::FULL_NAME
    }
    fn encode(&self) -> Vec<u8> {
        self.to_bytes()
    }
    fn required(&self) -> &'static [(u32, &'static str)] {
        T::REQUIRED
    }
    fn same_as(&self, bytes: &[u8]) -> Result<(), String> {
        let decoded = T::decode_checked(bytes).map_err(|e| e.to_string())?;
        if &decoded == self {
            Ok(())
        } else {
            Err(format!("decoded {decoded:?}\n   expected {self:?}"))
        }
    }
}

macro_rules! all_types {
    ($mac:ident) => {
        $mac!(
            Message,
            ErrorResponse,
            BindMount,
            CreateRequest,
            CreateResponse,
            StopRequest,
            StopResponse,
            DestroyRequest,
            DestroyResponse,
            InfoRequest,
            MemoryStat,
            CpuStat,
            DiskStat,
            BandwidthStat,
            InfoResponse,
            ResourceLimits,
            SpawnRequest,
            SpawnResponse,
            LinkRequest,
            LinkResponse,
            RunRequest,
            RunResponse,
            StreamRequest,
            StreamResponse,
            NetInRequest,
            NetInResponse,
            NetOutRequest,
            NetOutResponse,
            CopyInRequest,
            CopyInResponse,
            CopyOutRequest,
            CopyOutResponse,
            LimitMemoryRequest,
            LimitMemoryResponse,
            LimitDiskRequest,
            LimitDiskResponse,
            LimitBandwidthRequest,
            LimitBandwidthResponse,
            LimitCpuRequest,
            LimitCpuResponse,
            PingRequest,
            PingResponse,
            ListRequest,
            ListResponse,
            EchoRequest,
            EchoResponse
        )
    };
}

/// The full protobuf name of every message type.
pub fn all_full_names() -> Vec<&'static str> {
    macro_rules! names {
        ($($t:ident),*) => { vec![$(<$t as WardenMessage>::FULL_NAME),*] };
    }
    all_types!(names)
}

/// Every required field of every message, by full name.
pub fn all_required() -> Vec<&'static str> {
    macro_rules! req {
        ($($t:ident),*) => {
            [$(<$t as WardenMessage>::REQUIRED),*].iter().flat_map(|r| r.iter().map(|&(_, n)| n)).collect()
        };
    }
    all_types!(req)
}

/// Decodes `bytes` as the message named `full_name` (checking required fields) and re-encodes
/// it. `None` when no type has that name.
pub fn decode_named(full_name: &str, bytes: &[u8]) -> Option<Result<Vec<u8>, Error>> {
    macro_rules! dispatch {
        ($($t:ident),*) => {
            $(if full_name == <$t as WardenMessage>::FULL_NAME {
                return Some(<$t as WardenMessage>::decode_checked(bytes).map(|m| m.to_bytes()));
            })*
        };
    }
    all_types!(dispatch);
    None
}

fn s(v: &str) -> String {
    v.to_string()
}

fn some(v: &str) -> Option<String> {
    Some(v.to_string())
}

pub fn bind_mount_ro() -> BindMount {
    BindMount {
        src_path: s("/src"),
        dst_path: s("/dst"),
        mode: Mode::Ro as i32,
    }
}

pub fn bind_mount_rw() -> BindMount {
    BindMount {
        src_path: s("/a b"),
        dst_path: s("/ü"),
        mode: Mode::Rw as i32,
    }
}

pub fn memory_stat_full() -> MemoryStat {
    MemoryStat {
        cache: Some(1),
        rss: Some(2),
        mapped_file: Some(3),
        pgpgin: Some(4),
        pgpgout: Some(5),
        swap: Some(6),
        pgfault: Some(7),
        pgmajfault: Some(8),
        inactive_anon: Some(9),
        active_anon: Some(10),
        inactive_file: Some(11),
        active_file: Some(12),
        unevictable: Some(13),
        hierarchical_memory_limit: Some(9_223_372_036_854_771_712),
        hierarchical_memsw_limit: Some(u64::MAX),
        total_cache: Some(16),
        total_rss: Some(17),
        total_mapped_file: Some(18),
        total_pgpgin: Some(19),
        total_pgpgout: Some(20),
        total_swap: Some(21),
        total_pgfault: Some(22),
        total_pgmajfault: Some(23),
        total_inactive_anon: Some(24),
        total_active_anon: Some(25),
        total_inactive_file: Some(26),
        total_active_file: Some(27),
        total_unevictable: Some(28),
    }
}

pub fn cpu_stat_full() -> CpuStat {
    CpuStat {
        usage: Some(123_456_789_012),
        user: Some(4200),
        system: Some(0),
    }
}

pub fn disk_stat_full() -> DiskStat {
    DiskStat {
        bytes_used: Some(1 << 30),
        inodes_used: Some(321),
    }
}

pub fn bandwidth_stat_full() -> BandwidthStat {
    BandwidthStat {
        in_rate: Some(1000),
        in_burst: Some(2000),
        out_rate: Some(3000),
        out_burst: Some(4000),
    }
}

pub fn info_full() -> InfoResponse {
    InfoResponse {
        state: some("active"),
        events: vec![s("out of memory"), s("command exceeded maximum output")],
        host_ip: some("10.254.0.1"),
        container_ip: some("10.254.0.2"),
        container_path: some("/tmp/warden/containers/h1"),
        memory_stat: Some(memory_stat_full()),
        cpu_stat: Some(cpu_stat_full()),
        disk_stat: Some(disk_stat_full()),
        bandwidth_stat: Some(bandwidth_stat_full()),
        job_ids: vec![1, 2, u64::MAX],
    }
}

pub fn info_small() -> InfoResponse {
    InfoResponse {
        state: some("stopped"),
        events: vec![s("out of memory")],
        ..Default::default()
    }
}

pub fn rlimits_full() -> ResourceLimits {
    ResourceLimits {
        r#as: Some(4_294_967_296),
        core: Some(0),
        cpu: Some(2),
        data: Some(3),
        fsize: Some(5),
        locks: Some(6),
        memlock: Some(7),
        msgqueue: Some(8),
        nice: Some(9),
        nofile: Some(8192),
        nproc: Some(512),
        rss: Some(12),
        rtprio: Some(13),
        sigpending: Some(14),
        stack: Some(8_388_608),
    }
}

pub fn rlimits_small() -> ResourceLimits {
    ResourceLimits {
        nofile: Some(1024),
        ..Default::default()
    }
}

macro_rules! limit_disk {
    ($t:ident $(, $f:ident: $v:expr)*) => {
        $t {
            $($f: $v,)*
            block_limit: Some(10),
            block: Some(11),
            block_soft: Some(12),
            block_hard: Some(13),
            inode_limit: Some(20),
            inode: Some(21),
            inode_soft: Some(22),
            inode_hard: Some(23),
            byte_limit: Some(30),
            byte: Some(31),
            byte_soft: Some(32),
            byte_hard: Some(1 << 40),
        }
    };
}

/// Every fixture: (vector name, message). The name is `<message name without "warden.">/<case>`.
pub fn fixtures() -> Vec<(&'static str, Box<dyn AnyMessage>)> {
    let error_payload = ErrorResponse {
        message: some("unknown handle"),
        ..Default::default()
    }
    .to_bytes();
    let spawn_full = SpawnRequest {
        handle: s("h1"),
        script: s("echo hi\nexit 3\n"),
        privileged: Some(true),
        rlimits: Some(rlimits_full()),
        discard_output: Some(true),
        log_tag: some("tag"),
    };
    let run_full = RunRequest {
        handle: s("h1"),
        script: s("echo hi\nexit 3\n"),
        privileged: Some(true),
        rlimits: Some(rlimits_small()),
        discard_output: Some(true),
        log_tag: some("tag"),
    };
    vec![
        (
            "Message/ping",
            Box::new(Message {
                r#type: Type::Ping as i32,
                payload: vec![],
            }),
        ),
        (
            "Message/error",
            Box::new(Message {
                r#type: Type::Error as i32,
                payload: error_payload,
            }),
        ),
        (
            "ErrorResponse/full",
            Box::new(ErrorResponse {
                message: some("unknown handle"),
                backtrace: vec![s("a.rb:1"), s("b.rb:2")],
                data: some("{\"k\":1}"),
            }),
        ),
        ("ErrorResponse/empty", Box::new(ErrorResponse::default())),
        ("CreateRequest.BindMount/ro", Box::new(bind_mount_ro())),
        ("CreateRequest.BindMount/rw", Box::new(bind_mount_rw())),
        (
            "CreateRequest/spec",
            Box::new(CreateRequest {
                bind_mounts: vec![bind_mount_ro()],
                grace_time: Some(30),
                handle: some("abc"),
                ..Default::default()
            }),
        ),
        (
            "CreateRequest/full",
            Box::new(CreateRequest {
                bind_mounts: vec![bind_mount_ro(), bind_mount_rw()],
                grace_time: Some(u32::MAX),
                handle: some("h-1"),
                network: some("10.254.0.8"),
                rootfs: some("/var/rootfs"),
            }),
        ),
        (
            "CreateRequest/grace_zero",
            Box::new(CreateRequest {
                grace_time: Some(0),
                ..Default::default()
            }),
        ),
        ("CreateRequest/empty", Box::new(CreateRequest::default())),
        (
            "CreateResponse/full",
            Box::new(CreateResponse { handle: s("abc") }),
        ),
        (
            "CreateResponse/empty_handle",
            Box::new(CreateResponse { handle: s("") }),
        ),
        (
            "StopRequest/minimal",
            Box::new(StopRequest {
                handle: s("h"),
                ..Default::default()
            }),
        ),
        (
            "StopRequest/background_false",
            Box::new(StopRequest {
                handle: s("h"),
                background: Some(false),
                kill: None,
            }),
        ),
        (
            "StopRequest/explicit_defaults",
            Box::new(StopRequest {
                handle: s("h"),
                background: Some(false),
                kill: Some(false),
            }),
        ),
        (
            "StopRequest/full",
            Box::new(StopRequest {
                handle: s("h"),
                background: Some(true),
                kill: Some(true),
            }),
        ),
        ("StopResponse/empty", Box::new(StopResponse {})),
        (
            "DestroyRequest/full",
            Box::new(DestroyRequest { handle: s("h1") }),
        ),
        ("DestroyResponse/empty", Box::new(DestroyResponse {})),
        (
            "InfoRequest/full",
            Box::new(InfoRequest { handle: s("h1") }),
        ),
        ("InfoResponse/full", Box::new(info_full())),
        (
            "InfoResponse/job_ids",
            Box::new(InfoResponse {
                job_ids: vec![1, 2],
                ..Default::default()
            }),
        ),
        ("InfoResponse/empty", Box::new(InfoResponse::default())),
        ("InfoResponse.MemoryStat/full", Box::new(memory_stat_full())),
        (
            "InfoResponse.MemoryStat/partial",
            Box::new(MemoryStat {
                cache: Some(7),
                ..Default::default()
            }),
        ),
        ("InfoResponse.CpuStat/full", Box::new(cpu_stat_full())),
        ("InfoResponse.DiskStat/full", Box::new(disk_stat_full())),
        (
            "InfoResponse.BandwidthStat/full",
            Box::new(bandwidth_stat_full()),
        ),
        ("ResourceLimits/full", Box::new(rlimits_full())),
        ("ResourceLimits/empty", Box::new(ResourceLimits::default())),
        ("SpawnRequest/full", Box::new(spawn_full)),
        (
            "SpawnRequest/minimal",
            Box::new(SpawnRequest {
                handle: s("h1"),
                script: s("true"),
                ..Default::default()
            }),
        ),
        (
            "SpawnRequest/explicit_defaults",
            Box::new(SpawnRequest {
                handle: s("h1"),
                script: s("true"),
                privileged: Some(false),
                discard_output: Some(false),
                ..Default::default()
            }),
        ),
        ("SpawnResponse/full", Box::new(SpawnResponse { job_id: 7 })),
        ("SpawnResponse/zero", Box::new(SpawnResponse { job_id: 0 })),
        (
            "LinkRequest/full",
            Box::new(LinkRequest {
                handle: s("h1"),
                job_id: u32::MAX,
            }),
        ),
        (
            "LinkResponse/full",
            Box::new(LinkResponse {
                exit_status: Some(255),
                stdout: Some(b"out\n".to_vec()),
                stderr: Some("érr\n".as_bytes().to_vec()),
                info: Some(info_full()),
            }),
        ),
        ("LinkResponse/empty", Box::new(LinkResponse::default())),
        ("RunRequest/full", Box::new(run_full)),
        (
            "RunRequest/minimal",
            Box::new(RunRequest {
                handle: s("h1"),
                script: s(""),
                ..Default::default()
            }),
        ),
        (
            "RunResponse/full",
            Box::new(RunResponse {
                exit_status: Some(0),
                stdout: Some(vec![]),
                stderr: Some(b"warning\n".to_vec()),
                info: Some(info_small()),
            }),
        ),
        ("RunResponse/empty", Box::new(RunResponse::default())),
        (
            "StreamRequest/full",
            Box::new(StreamRequest {
                handle: s("h1"),
                job_id: 3,
            }),
        ),
        (
            "StreamResponse/chunk",
            Box::new(StreamResponse {
                name: some("stdout"),
                data: Some(b"hello\n".to_vec()),
                ..Default::default()
            }),
        ),
        (
            "StreamResponse/final",
            Box::new(StreamResponse {
                exit_status: Some(0),
                info: Some(info_small()),
                ..Default::default()
            }),
        ),
        (
            "StreamResponse/full",
            Box::new(StreamResponse {
                name: some("stderr"),
                data: Some("ünïcode\r\n".as_bytes().to_vec()),
                exit_status: Some(255),
                info: Some(info_full()),
            }),
        ),
        (
            "NetInRequest/full",
            Box::new(NetInRequest {
                handle: s("h1"),
                container_port: Some(8080),
                host_port: Some(61001),
            }),
        ),
        (
            "NetInRequest/minimal",
            Box::new(NetInRequest {
                handle: s("h1"),
                ..Default::default()
            }),
        ),
        (
            "NetInResponse/full",
            Box::new(NetInResponse {
                host_port: 61001,
                container_port: 8080,
            }),
        ),
        (
            "NetOutRequest/full",
            Box::new(NetOutRequest {
                handle: s("h1"),
                network: some("10.0.0.0/8"),
                port: Some(80),
                port_range: some("1000:2000"),
                protocol: Some(Protocol::Icmp as i32),
                icmp_type: Some(-1),
                icmp_code: Some(i32::MIN),
                log: Some(true),
            }),
        ),
        (
            "NetOutRequest/udp",
            Box::new(NetOutRequest {
                handle: s("h1"),
                port: Some(53),
                protocol: Some(Protocol::Udp as i32),
                ..Default::default()
            }),
        ),
        (
            "NetOutRequest/tcp_explicit",
            Box::new(NetOutRequest {
                handle: s("h1"),
                protocol: Some(Protocol::Tcp as i32),
                icmp_type: Some(0),
                ..Default::default()
            }),
        ),
        (
            "NetOutRequest/all",
            Box::new(NetOutRequest {
                handle: s("h1"),
                network: some("0.0.0.0/0"),
                protocol: Some(Protocol::All as i32),
                icmp_code: Some(i32::MAX),
                log: Some(false),
                ..Default::default()
            }),
        ),
        (
            "NetOutRequest/minimal",
            Box::new(NetOutRequest {
                handle: s("h1"),
                ..Default::default()
            }),
        ),
        ("NetOutResponse/empty", Box::new(NetOutResponse {})),
        (
            "CopyInRequest/full",
            Box::new(CopyInRequest {
                handle: s("h1"),
                src_path: s("/host/a"),
                dst_path: s("/container/b"),
            }),
        ),
        ("CopyInResponse/empty", Box::new(CopyInResponse {})),
        (
            "CopyOutRequest/full",
            Box::new(CopyOutRequest {
                handle: s("h1"),
                src_path: s("/container/b"),
                dst_path: s("/host/a"),
                owner: some("vcap:vcap"),
            }),
        ),
        (
            "CopyOutRequest/minimal",
            Box::new(CopyOutRequest {
                handle: s("h1"),
                src_path: s("/x"),
                dst_path: s("/y"),
                owner: None,
            }),
        ),
        ("CopyOutResponse/empty", Box::new(CopyOutResponse {})),
        (
            "LimitMemoryRequest/full",
            Box::new(LimitMemoryRequest {
                handle: s("h1"),
                limit_in_bytes: Some(1 << 30),
            }),
        ),
        (
            "LimitMemoryRequest/query",
            Box::new(LimitMemoryRequest {
                handle: s("h1"),
                limit_in_bytes: None,
            }),
        ),
        (
            "LimitMemoryResponse/full",
            Box::new(LimitMemoryResponse {
                limit_in_bytes: Some(1 << 30),
            }),
        ),
        (
            "LimitMemoryResponse/empty",
            Box::new(LimitMemoryResponse::default()),
        ),
        (
            "LimitDiskRequest/full",
            Box::new(limit_disk!(LimitDiskRequest, handle: s("h1"))),
        ),
        (
            "LimitDiskRequest/query",
            Box::new(LimitDiskRequest {
                handle: s("h1"),
                ..Default::default()
            }),
        ),
        (
            "LimitDiskResponse/full",
            Box::new(limit_disk!(LimitDiskResponse)),
        ),
        (
            "LimitDiskResponse/empty",
            Box::new(LimitDiskResponse::default()),
        ),
        (
            "LimitBandwidthRequest/full",
            Box::new(LimitBandwidthRequest {
                handle: s("h1"),
                rate: 1_000_000,
                burst: 65_536,
            }),
        ),
        (
            "LimitBandwidthResponse/full",
            Box::new(LimitBandwidthResponse {
                rate: 1_000_000,
                burst: 65_536,
            }),
        ),
        (
            "LimitCpuRequest/full",
            Box::new(LimitCpuRequest {
                handle: s("h1"),
                limit_in_shares: Some(512),
            }),
        ),
        (
            "LimitCpuRequest/query",
            Box::new(LimitCpuRequest {
                handle: s("h1"),
                limit_in_shares: None,
            }),
        ),
        (
            "LimitCpuResponse/full",
            Box::new(LimitCpuResponse {
                limit_in_shares: Some(512),
            }),
        ),
        (
            "LimitCpuResponse/empty",
            Box::new(LimitCpuResponse::default()),
        ),
        ("PingRequest/empty", Box::new(PingRequest {})),
        ("PingResponse/empty", Box::new(PingResponse {})),
        ("ListRequest/empty", Box::new(ListRequest {})),
        (
            "ListResponse/full",
            Box::new(ListResponse {
                handles: vec![s("a"), s("b"), s("c")],
            }),
        ),
        ("ListResponse/empty", Box::new(ListResponse::default())),
        (
            "EchoRequest/full",
            Box::new(EchoRequest {
                message: s("hello ✓"),
            }),
        ),
        (
            "EchoRequest/empty_message",
            Box::new(EchoRequest { message: s("") }),
        ),
        (
            "EchoResponse/full",
            Box::new(EchoResponse {
                message: s("hello ✓"),
            }),
        ),
    ]
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length: {s:?}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// One populated value of every request variant.
pub fn all_requests() -> Vec<Request> {
    vec![
        CreateRequest {
            bind_mounts: vec![bind_mount_ro(), bind_mount_rw()],
            grace_time: Some(30),
            handle: some("abc"),
            network: some("10.254.0.8"),
            rootfs: some("/var/rootfs"),
        }
        .into(),
        StopRequest {
            handle: s("h1"),
            background: Some(false),
            kill: Some(true),
        }
        .into(),
        DestroyRequest { handle: s("h1") }.into(),
        InfoRequest { handle: s("h1") }.into(),
        SpawnRequest {
            handle: s("h1"),
            script: s("echo hi"),
            rlimits: Some(rlimits_full()),
            ..Default::default()
        }
        .into(),
        LinkRequest {
            handle: s("h1"),
            job_id: 1,
        }
        .into(),
        RunRequest {
            handle: s("h1"),
            script: s("echo hi"),
            privileged: Some(true),
            ..Default::default()
        }
        .into(),
        StreamRequest {
            handle: s("h1"),
            job_id: 2,
        }
        .into(),
        NetInRequest {
            handle: s("h1"),
            container_port: Some(80),
            host_port: None,
        }
        .into(),
        NetOutRequest {
            handle: s("h1"),
            protocol: Some(Protocol::Icmp as i32),
            icmp_type: Some(-1),
            ..Default::default()
        }
        .into(),
        CopyInRequest {
            handle: s("h1"),
            src_path: s("/a"),
            dst_path: s("/b"),
        }
        .into(),
        CopyOutRequest {
            handle: s("h1"),
            src_path: s("/b"),
            dst_path: s("/a"),
            owner: some("vcap:vcap"),
        }
        .into(),
        LimitMemoryRequest {
            handle: s("h1"),
            limit_in_bytes: Some(1 << 20),
        }
        .into(),
        limit_disk!(LimitDiskRequest, handle: s("h1")).into(),
        LimitBandwidthRequest {
            handle: s("h1"),
            rate: 1,
            burst: 2,
        }
        .into(),
        LimitCpuRequest {
            handle: s("h1"),
            limit_in_shares: Some(10),
        }
        .into(),
        PingRequest {}.into(),
        ListRequest {}.into(),
        EchoRequest { message: s("hi") }.into(),
    ]
}

/// One populated value of every response variant, ErrorResponse first.
pub fn all_responses() -> Vec<Response> {
    vec![
        ErrorResponse {
            message: some("unknown handle"),
            data: some("d"),
            backtrace: vec![s("x"), s("y")],
        }
        .into(),
        CreateResponse { handle: s("abc") }.into(),
        StopResponse {}.into(),
        DestroyResponse {}.into(),
        info_full().into(),
        SpawnResponse { job_id: 9 }.into(),
        LinkResponse {
            exit_status: Some(1),
            stdout: Some(vec![0xff, 0xfe, b'\n']),
            stderr: Some(vec![]),
            info: Some(info_small()),
        }
        .into(),
        RunResponse {
            exit_status: Some(255),
            stdout: Some(b"x".to_vec()),
            stderr: None,
            info: Some(info_full()),
        }
        .into(),
        StreamResponse {
            name: some("stdout"),
            data: Some(vec![0, 1, 2, 0x80]),
            ..Default::default()
        }
        .into(),
        NetInResponse {
            host_port: 61001,
            container_port: 80,
        }
        .into(),
        NetOutResponse {}.into(),
        CopyInResponse {}.into(),
        CopyOutResponse {}.into(),
        LimitMemoryResponse {
            limit_in_bytes: Some(1 << 20),
        }
        .into(),
        limit_disk!(LimitDiskResponse).into(),
        LimitBandwidthResponse { rate: 1, burst: 2 }.into(),
        LimitCpuResponse {
            limit_in_shares: Some(10),
        }
        .into(),
        PingResponse {}.into(),
        ListResponse {
            handles: vec![s("a"), s("b")],
        }
        .into(),
        EchoResponse { message: s("hi") }.into(),
    ]
}
