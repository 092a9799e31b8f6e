#!/usr/bin/python3
"""Independent test vectors for warden-protocol, made with Google's Python protobuf runtime.

Run by tests/python_vectors.rs with Debian's /usr/bin/python3 (python3-protobuf) after
`protoc --python_out=GEN_DIR proto/warden.proto`:

    vectors.py GEN_DIR encode   print what Python encodes, one item a line:
                                  vector NAME HEX            a fixture, encoded
                                  partial NAME FIELD HEX     a fixture with one required FIELD cleared
                                  required FIELD             every required field in warden.proto
                                  message NAME               every message type in warden.proto
                                  enum ENUM VALUE NUMBER     every enum value in warden.proto
    vectors.py GEN_DIR check    read "NAME HEX" lines (the Rust encodings of the same fixtures)
                                on stdin; decode each, compare it with the fixture, and check that
                                Python encodes the fixture to the same bytes. Exit 1 on any failure.

The fixtures below mirror tests/common/mod.rs value for value. The encode mode also fails when
some field of warden.proto is set in no fixture, or some message type has none.
"""

import sys

if len(sys.argv) != 3 or sys.argv[2] not in ("encode", "check"):
    sys.exit("usage: vectors.py GEN_DIR encode|check")
sys.path.insert(0, sys.argv[1])

import warden_pb2 as pb  # noqa: E402
from google.protobuf.descriptor import FieldDescriptor  # noqa: E402

U64_MAX = 2**64 - 1
U32_MAX = 2**32 - 1
I32_MIN = -(2**31)
I32_MAX = 2**31 - 1

Mount = pb.CreateRequest.BindMount
Info = pb.InfoResponse


def bind_mount_ro():
    return Mount(src_path="/src", dst_path="/dst", mode=Mount.RO)


def bind_mount_rw():
    return Mount(src_path="/a b", dst_path="/ü", mode=Mount.RW)


MEMORY_FIELDS = (
    "cache rss mapped_file pgpgin pgpgout swap pgfault pgmajfault inactive_anon active_anon "
    "inactive_file active_file unevictable hierarchical_memory_limit hierarchical_memsw_limit "
    "total_cache total_rss total_mapped_file total_pgpgin total_pgpgout total_swap total_pgfault "
    "total_pgmajfault total_inactive_anon total_active_anon total_inactive_file total_active_file "
    "total_unevictable"
).split()


def memory_stat_full():
    values = {name: i + 1 for i, name in enumerate(MEMORY_FIELDS)}
    values["hierarchical_memory_limit"] = 9223372036854771712
    values["hierarchical_memsw_limit"] = U64_MAX
    return Info.MemoryStat(**values)


def cpu_stat_full():
    return Info.CpuStat(usage=123456789012, user=4200, system=0)


def disk_stat_full():
    return Info.DiskStat(bytes_used=1 << 30, inodes_used=321)


def bandwidth_stat_full():
    return Info.BandwidthStat(in_rate=1000, in_burst=2000, out_rate=3000, out_burst=4000)


def info_full():
    return Info(
        state="active",
        events=["out of memory", "command exceeded maximum output"],
        host_ip="10.254.0.1",
        container_ip="10.254.0.2",
        container_path="/tmp/warden/containers/h1",
        memory_stat=memory_stat_full(),
        cpu_stat=cpu_stat_full(),
        disk_stat=disk_stat_full(),
        bandwidth_stat=bandwidth_stat_full(),
        job_ids=[1, 2, U64_MAX],
    )


def info_small():
    return Info(state="stopped", events=["out of memory"])


def rlimits_full():
    return pb.ResourceLimits(**{
        "as": 4294967296, "core": 0, "cpu": 2, "data": 3, "fsize": 5, "locks": 6, "memlock": 7,
        "msgqueue": 8, "nice": 9, "nofile": 8192, "nproc": 512, "rss": 12, "rtprio": 13,
        "sigpending": 14, "stack": 8388608,
    })


def rlimits_small():
    return pb.ResourceLimits(nofile=1024)


LIMIT_DISK = dict(
    block_limit=10, block=11, block_soft=12, block_hard=13,
    inode_limit=20, inode=21, inode_soft=22, inode_hard=23,
    byte_limit=30, byte=31, byte_soft=32, byte_hard=1 << 40,
)


def fixtures():
    error_payload = pb.ErrorResponse(message="unknown handle").SerializeToString()
    return [
        ("Message/ping", pb.Message(type=pb.Message.Ping, payload=b"")),
        ("Message/error", pb.Message(type=pb.Message.Error, payload=error_payload)),
        ("ErrorResponse/full", pb.ErrorResponse(
            message="unknown handle", backtrace=["a.rb:1", "b.rb:2"], data='{"k":1}')),
        ("ErrorResponse/empty", pb.ErrorResponse()),
        ("CreateRequest.BindMount/ro", bind_mount_ro()),
        ("CreateRequest.BindMount/rw", bind_mount_rw()),
        ("CreateRequest/spec", pb.CreateRequest(
            bind_mounts=[bind_mount_ro()], grace_time=30, handle="abc")),
        ("CreateRequest/full", pb.CreateRequest(
            bind_mounts=[bind_mount_ro(), bind_mount_rw()], grace_time=U32_MAX, handle="h-1",
            network="10.254.0.8", rootfs="/var/rootfs")),
        ("CreateRequest/grace_zero", pb.CreateRequest(grace_time=0)),
        ("CreateRequest/empty", pb.CreateRequest()),
        ("CreateResponse/full", pb.CreateResponse(handle="abc")),
        ("CreateResponse/empty_handle", pb.CreateResponse(handle="")),
        ("StopRequest/minimal", pb.StopRequest(handle="h")),
        ("StopRequest/background_false", pb.StopRequest(handle="h", background=False)),
        ("StopRequest/explicit_defaults", pb.StopRequest(handle="h", background=False, kill=False)),
        ("StopRequest/full", pb.StopRequest(handle="h", background=True, kill=True)),
        ("StopResponse/empty", pb.StopResponse()),
        ("DestroyRequest/full", pb.DestroyRequest(handle="h1")),
        ("DestroyResponse/empty", pb.DestroyResponse()),
        ("InfoRequest/full", pb.InfoRequest(handle="h1")),
        ("InfoResponse/full", info_full()),
        ("InfoResponse/job_ids", Info(job_ids=[1, 2])),
        ("InfoResponse/empty", Info()),
        ("InfoResponse.MemoryStat/full", memory_stat_full()),
        ("InfoResponse.MemoryStat/partial", Info.MemoryStat(cache=7)),
        ("InfoResponse.CpuStat/full", cpu_stat_full()),
        ("InfoResponse.DiskStat/full", disk_stat_full()),
        ("InfoResponse.BandwidthStat/full", bandwidth_stat_full()),
        ("ResourceLimits/full", rlimits_full()),
        ("ResourceLimits/empty", pb.ResourceLimits()),
        ("SpawnRequest/full", pb.SpawnRequest(
            handle="h1", script="echo hi\nexit 3\n", privileged=True, rlimits=rlimits_full(),
            discard_output=True, log_tag="tag")),
        ("SpawnRequest/minimal", pb.SpawnRequest(handle="h1", script="true")),
        ("SpawnRequest/explicit_defaults", pb.SpawnRequest(
            handle="h1", script="true", privileged=False, discard_output=False)),
        ("SpawnResponse/full", pb.SpawnResponse(job_id=7)),
        ("SpawnResponse/zero", pb.SpawnResponse(job_id=0)),
        ("LinkRequest/full", pb.LinkRequest(handle="h1", job_id=U32_MAX)),
        ("LinkResponse/full", pb.LinkResponse(
            exit_status=255, stdout="out\n", stderr="érr\n", info=info_full())),
        ("LinkResponse/empty", pb.LinkResponse()),
        ("RunRequest/full", pb.RunRequest(
            handle="h1", script="echo hi\nexit 3\n", privileged=True, rlimits=rlimits_small(),
            discard_output=True, log_tag="tag")),
        ("RunRequest/minimal", pb.RunRequest(handle="h1", script="")),
        ("RunResponse/full", pb.RunResponse(
            exit_status=0, stdout="", stderr="warning\n", info=info_small())),
        ("RunResponse/empty", pb.RunResponse()),
        ("StreamRequest/full", pb.StreamRequest(handle="h1", job_id=3)),
        ("StreamResponse/chunk", pb.StreamResponse(name="stdout", data="hello\n")),
        ("StreamResponse/final", pb.StreamResponse(exit_status=0, info=info_small())),
        ("StreamResponse/full", pb.StreamResponse(
            name="stderr", data="ünïcode\r\n", exit_status=255, info=info_full())),
        ("NetInRequest/full", pb.NetInRequest(handle="h1", container_port=8080, host_port=61001)),
        ("NetInRequest/minimal", pb.NetInRequest(handle="h1")),
        ("NetInResponse/full", pb.NetInResponse(host_port=61001, container_port=8080)),
        ("NetOutRequest/full", pb.NetOutRequest(
            handle="h1", network="10.0.0.0/8", port=80, port_range="1000:2000",
            protocol=pb.NetOutRequest.ICMP, icmp_type=-1, icmp_code=I32_MIN, log=True)),
        ("NetOutRequest/udp", pb.NetOutRequest(handle="h1", port=53, protocol=pb.NetOutRequest.UDP)),
        ("NetOutRequest/tcp_explicit", pb.NetOutRequest(
            handle="h1", protocol=pb.NetOutRequest.TCP, icmp_type=0)),
        ("NetOutRequest/all", pb.NetOutRequest(
            handle="h1", network="0.0.0.0/0", protocol=pb.NetOutRequest.ALL, icmp_code=I32_MAX,
            log=False)),
        ("NetOutRequest/minimal", pb.NetOutRequest(handle="h1")),
        ("NetOutResponse/empty", pb.NetOutResponse()),
        ("CopyInRequest/full", pb.CopyInRequest(
            handle="h1", src_path="/host/a", dst_path="/container/b")),
        ("CopyInResponse/empty", pb.CopyInResponse()),
        ("CopyOutRequest/full", pb.CopyOutRequest(
            handle="h1", src_path="/container/b", dst_path="/host/a", owner="vcap:vcap")),
        ("CopyOutRequest/minimal", pb.CopyOutRequest(handle="h1", src_path="/x", dst_path="/y")),
        ("CopyOutResponse/empty", pb.CopyOutResponse()),
        ("LimitMemoryRequest/full", pb.LimitMemoryRequest(handle="h1", limit_in_bytes=1 << 30)),
        ("LimitMemoryRequest/query", pb.LimitMemoryRequest(handle="h1")),
        ("LimitMemoryResponse/full", pb.LimitMemoryResponse(limit_in_bytes=1 << 30)),
        ("LimitMemoryResponse/empty", pb.LimitMemoryResponse()),
        ("LimitDiskRequest/full", pb.LimitDiskRequest(handle="h1", **LIMIT_DISK)),
        ("LimitDiskRequest/query", pb.LimitDiskRequest(handle="h1")),
        ("LimitDiskResponse/full", pb.LimitDiskResponse(**LIMIT_DISK)),
        ("LimitDiskResponse/empty", pb.LimitDiskResponse()),
        ("LimitBandwidthRequest/full", pb.LimitBandwidthRequest(
            handle="h1", rate=1000000, burst=65536)),
        ("LimitBandwidthResponse/full", pb.LimitBandwidthResponse(rate=1000000, burst=65536)),
        ("LimitCpuRequest/full", pb.LimitCpuRequest(handle="h1", limit_in_shares=512)),
        ("LimitCpuRequest/query", pb.LimitCpuRequest(handle="h1")),
        ("LimitCpuResponse/full", pb.LimitCpuResponse(limit_in_shares=512)),
        ("LimitCpuResponse/empty", pb.LimitCpuResponse()),
        ("PingRequest/empty", pb.PingRequest()),
        ("PingResponse/empty", pb.PingResponse()),
        ("ListRequest/empty", pb.ListRequest()),
        ("ListResponse/full", pb.ListResponse(handles=["a", "b", "c"])),
        ("ListResponse/empty", pb.ListResponse()),
        ("EchoRequest/full", pb.EchoRequest(message="hello ✓")),
        ("EchoRequest/empty_message", pb.EchoRequest(message="")),
        ("EchoResponse/full", pb.EchoResponse(message="hello ✓")),
    ]


def all_message_descriptors():
    def walk(desc):
        yield desc
        for nested in desc.nested_types:
            yield from walk(nested)
    for desc in pb.DESCRIPTOR.message_types_by_name.values():
        yield from walk(desc)


def all_enum_descriptors():
    yield from pb.DESCRIPTOR.enum_types_by_name.values()
    for desc in all_message_descriptors():
        yield from desc.enum_types


def is_message(field):
    return field.type == FieldDescriptor.TYPE_MESSAGE


def is_repeated(field):
    return field.label == FieldDescriptor.LABEL_REPEATED


def set_fields(msg, acc):
    """Adds the full name of every field set in msg, at any depth, to acc."""
    for field, value in msg.ListFields():
        acc.add(field.full_name)
        if is_message(field):
            for sub in (value if is_repeated(field) else [value]):
                set_fields(sub, acc)


def with_one_required_cleared(msg):
    """Yields (field full name, copy of msg with that one required field cleared), for every
    required field set in msg or in the messages inside it."""
    def paths(m, prefix):
        for field, value in m.ListFields():
            if field.label == FieldDescriptor.LABEL_REQUIRED:
                yield prefix, field
            if is_message(field):
                subs = list(enumerate(value)) if is_repeated(field) else [(None, value)]
                for index, sub in subs:
                    yield from paths(sub, prefix + [(field.name, index)])

    for prefix, field in list(paths(msg, [])):
        copy = type(msg)()
        copy.CopyFrom(msg)
        target = copy
        for name, index in prefix:
            target = getattr(target, name)
            if index is not None:
                target = target[index]
        target.ClearField(field.name)
        yield field.full_name, copy


def encode():
    fixtures_ = fixtures()
    names = [name for name, _ in fixtures_]
    if len(names) != len(set(names)):
        sys.exit("duplicate fixture names")
    covered_fields, covered_messages = set(), set()
    for name, msg in fixtures_:
        if name.split("/")[0] != msg.DESCRIPTOR.full_name[len("warden."):]:
            sys.exit(f"fixture {name} holds a {msg.DESCRIPTOR.full_name}")
        print("vector", name, msg.SerializeToString().hex())
        covered_messages.add(msg.DESCRIPTOR.full_name)
        set_fields(msg, covered_fields)
        for field, partial in with_one_required_cleared(msg):
            if partial.IsInitialized():
                sys.exit(f"{name}: clearing {field} left it initialized")
            print("partial", name, field, partial.SerializePartialToString().hex())

    problems = []
    for desc in all_message_descriptors():
        print("message", desc.full_name)
        if desc.full_name not in covered_messages:
            problems.append(f"no fixture of type {desc.full_name}")
        for field in desc.fields:
            if field.label == FieldDescriptor.LABEL_REQUIRED:
                print("required", field.full_name)
            if field.full_name not in covered_fields:
                problems.append(f"field {field.full_name} is set in no fixture")
    for enum in all_enum_descriptors():
        for value in enum.values:
            print("enum", enum.full_name, value.name, value.number)
    if problems:
        sys.exit("incomplete fixtures:\n  " + "\n  ".join(problems))


def check():
    expected = dict(fixtures())
    failures, seen = [], set()
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        name, hex_ = (line.split() + [""])[:2]
        seen.add(name)
        if name not in expected:
            failures.append(f"{name}: no such fixture in vectors.py")
            continue
        want = expected[name]
        data = bytes.fromhex(hex_)
        got = type(want)()
        try:
            got.ParseFromString(data)
        except Exception as e:  # noqa: BLE001 - report any parse failure
            failures.append(f"{name}: Python cannot parse Rust's bytes {hex_}: {e}")
            continue
        if not got.IsInitialized():
            failures.append(f"{name}: missing required fields {got.FindInitializationErrors()}")
        if got != want:
            failures.append(f"{name}: Rust's bytes decode to\n{got}\nexpected\n{want}")
        ours = want.SerializeToString().hex()
        if ours != hex_:
            failures.append(f"{name}: Rust encodes {hex_}, Python encodes {ours}")
    for name in expected:
        if name not in seen:
            failures.append(f"{name}: Rust sent no vector")
    if failures:
        sys.exit("\n".join(failures))
    print(f"ok {len(seen)}")


if sys.argv[2] == "encode":
    encode()
else:
    check()
