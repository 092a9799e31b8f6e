//! `linux.seccomp`: the config's profile compiled into a BPF program by libseccomp, and
//! loaded into the calling process.
//!
//! `compile` does all the work that can fail on a bad profile (it runs in the runtime's own
//! process, before anything of the container exists, so a bad profile fails `create` or
//! `exec` with a message naming the syscall, action or operator). `Filter::load` is one
//! seccomp(2) call with the finished program, made by the container's process right before
//! it execs: it allocates nothing and runs no libseccomp code.
//!
//! As runc: a syscall name libseccomp does not know on this architecture is skipped (an
//! older libseccomp, or a name of another architecture); a rule whose action is the default
//! action is skipped (libseccomp refuses those); the filter never sets no_new_privs itself
//! (the process's `noNewPrivileges` decides, and without it the load needs CAP_SYS_ADMIN,
//! so the caller loads it before dropping capabilities).
//!
//! `SCMP_ACT_NOTIFY` (seccomp user notification): the filter is loaded with
//! SECCOMP_FILTER_FLAG_NEW_LISTENER, which gives the loading process a listener fd. The
//! container's process tells the runtime its number with a plain write(2) on the sync
//! channel, the runtime copies it with pidfd_getfd(2) and sends it (SCM_RIGHTS) with the
//! runtime spec's container process state to the unix socket at `listenerPath`, then lets
//! the process go on (`forward`). As runc: notify cannot be the default action nor apply to
//! `write` (the runtime's own write after the load would wait for an agent that has no fd
//! yet), and a profile with notify rules needs `listenerPath`.

use std::io::{Read, Seek};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};

use crate::error::{Error, Result};

/// Actions a profile may use (runc's names).
pub const ACTIONS: &[&str] = &[
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
];

/// Argument comparisons a profile may use.
pub const OPERATORS: &[&str] = &[
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
];

/// Architectures a profile may list (those libseccomp 2.5 knows; the others of the runtime
/// spec are refused by name).
pub const ARCHS: &[&str] = &[
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
];

/// Filter flags the runtime knows (`supported_flags` says which this kernel takes).
pub const KNOWN_FLAGS: &[&str] = &[
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
];

/// The kernel's limit on a filter program (BPF_MAXINSNS).
const MAX_INSTRUCTIONS: usize = 4096;
/// Linux syscalls have at most six arguments.
const MAX_ARGS: usize = 6;
/// How long the runtime waits on a seccomp agent's socket (a full accept backlog, a full
/// socket buffer) before it gives up.
const LISTENER_TIMEOUT: Duration = Duration::from_secs(10);
/// The runtime spec's name of the listener fd in the container process state.
pub const SECCOMP_FD_NAME: &str = "seccompFd";

/// A compiled filter, ready to load.
pub struct Filter {
    program: Vec<libc::sock_filter>,
    /// SECCOMP_FILTER_FLAG_* for seccomp(2).
    flags: libc::c_ulong,
    /// Where the listener fd goes: set when the profile has SCMP_ACT_NOTIFY rules.
    listener: Option<Listener>,
}

/// `listenerPath` and `listenerMetadata` of a profile with notify rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub path: PathBuf,
    pub metadata: Option<String>,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("instructions", &self.program.len())
            .field("flags", &self.flags)
            .field("listener", &self.listener)
            .finish()
    }
}

impl Filter {
    /// The number of BPF instructions.
    pub fn len(&self) -> usize {
        self.program.len()
    }

    pub fn is_empty(&self) -> bool {
        self.program.is_empty()
    }

    /// The seccomp agent's socket, when the filter has notify rules.
    pub fn listener(&self) -> Option<&Listener> {
        self.listener.as_ref()
    }

    /// Installs the filter on the calling thread (our processes are single-threaded when they
    /// load it). Needs no_new_privs or CAP_SYS_ADMIN; survives exec. A filter with notify
    /// rules returns its listener fd (close-on-exec).
    pub fn load(&self) -> Result<Option<OwnedFd>> {
        let prog = libc::sock_fprog {
            len: self.program.len() as libc::c_ushort,
            filter: self.program.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` points at `self.program`, alive for the call; the kernel copies it.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if r >= 0 {
            if self.flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER == 0 {
                return Ok(None);
            }
            // SAFETY: with NEW_LISTENER the kernel returns a new fd that nothing else owns.
            return Ok(Some(unsafe { OwnedFd::from_raw_fd(r as i32) }));
        }
        let errno = nix::errno::Errno::last();
        if errno == nix::errno::Errno::ENOSYS && self.flags == 0 {
            // Kernels before 3.17 have no seccomp(2), only the prctl.
            // SAFETY: as above.
            let r = unsafe {
                libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const libc::sock_fprog,
                )
            };
            if r == 0 {
                return Ok(None);
            }
            return Err(Error::sys(
                "prctl(PR_SET_SECCOMP)",
                nix::errno::Errno::last(),
            ));
        }
        Err(Error::sys("seccomp(SECCOMP_SET_MODE_FILTER)", errno))
    }
}

/// Compiles the profile. Errors name the syscall, action, operator, architecture or flag.
pub fn compile(profile: &LinuxSeccomp) -> Result<Filter> {
    if profile.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err(err(
            "defaultAction: SCMP_ACT_NOTIFY cannot be the default action (the runtime's own \
             write(2) after loading the filter would wait on the agent), as with runc",
        ));
    }
    let default = action(profile.default_action(), profile.default_errno_ret())
        .map_err(|e| err(format!("defaultAction: {e}")))?;
    let syscalls = profile.syscalls().as_deref().unwrap_or_default();
    let listener = listener(profile, syscalls)?;
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| err(format!("init: {e}")))?;
    // The process's noNewPrivileges decides, never the filter.
    ctx.set_ctl_nnp(false)
        .map_err(|e| err(format!("unset no_new_privs: {e}")))?;

    for arch in profile.architectures().iter().flatten() {
        let scmp = scmp_arch(*arch)?;
        ctx.add_arch(scmp).map_err(|e| {
            err(format!(
                "architecture {}: not supported by libseccomp {}: {e}",
                name(arch),
                library_version()
            ))
        })?;
    }

    let mut flags: libc::c_ulong = 0;
    if listener.is_some() {
        flags |= libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
    }
    for flag in profile.flags().iter().flatten() {
        flags |= match flag {
            // runc too: our processes are single-threaded when they load the filter.
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 0,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv if listener.is_none() => {
                // The kernel refuses it without a listener.
                return Err(err(
                    "flag SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV needs SCMP_ACT_NOTIFY rules",
                ));
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
            }
        };
    }
    if listener.is_some() && !kernel_takes_flag(libc::SECCOMP_FILTER_FLAG_NEW_LISTENER) {
        return Err(err(
            "SCMP_ACT_NOTIFY: this kernel has no seccomp user notification (Linux >= 5.0)",
        ));
    }
    if let Some(f) = [
        libc::SECCOMP_FILTER_FLAG_LOG,
        libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
        libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
    ]
    .into_iter()
    .find(|f| flags & f != 0 && !kernel_takes_flag(*f))
    {
        return Err(err(format!(
            "flag {} is not supported by this kernel",
            flag_name(f)
        )));
    }

    if syscalls.len() > 32 {
        // A binary tree instead of a linear list of syscalls (libseccomp >= 2.5).
        if let Err(e) = ctx.set_ctl_optimize(2) {
            tracing::debug!("seccomp binary tree optimization not available: {e}");
        }
    }
    for rule in syscalls {
        add_rule(&mut ctx, rule, default)?;
    }

    let program = export(&ctx)?;
    if program.len() > MAX_INSTRUCTIONS {
        return Err(err(format!(
            "the filter has {} instructions, more than the kernel's limit of {MAX_INSTRUCTIONS}",
            program.len()
        )));
    }
    Ok(Filter {
        program,
        flags,
        listener,
    })
}

/// `compile`, or the program a file holds for the same profile: compiling a Docker-sized
/// profile costs libseccomp milliseconds, reading the program back microseconds. The file
/// (written here after a compile, atomically) holds its key, the profile's JSON with this
/// runtime's and libseccomp's versions, so a changed profile or an upgraded runtime compiles
/// again; an unreadable or foreign file is ignored. A file that cannot be written costs only
/// the next compile.
pub fn compile_cached(profile: &LinuxSeccomp, file: Option<&Path>) -> Result<Filter> {
    let Some(file) = file else {
        return compile(profile);
    };
    let key = cache_key(profile);
    if let Some(program) = std::fs::read(file)
        .ok()
        .and_then(|bytes| decode(&bytes, &key))
    {
        let syscalls = profile.syscalls().as_deref().unwrap_or_default();
        let (flags, program) = program;
        return Ok(Filter {
            program,
            flags,
            listener: listener(profile, syscalls)?,
        });
    }
    let filter = compile(profile)?;
    filter.save(profile, file);
    Ok(filter)
}

impl Filter {
    /// Writes the program to `file` for [`compile_cached`] (best effort, atomically).
    pub fn save(&self, profile: &LinuxSeccomp, file: &Path) {
        let tmp = file.with_extension(format!("tmp.{}", std::process::id()));
        if std::fs::write(&tmp, encode(self, &cache_key(profile))).is_err()
            || std::fs::rename(&tmp, file).is_err()
        {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

/// A cache file's name in a dir of them: the key's FNV-1a hash (the file still holds the
/// whole key, so a collision only costs a compile).
pub fn cache_name(profile: &LinuxSeccomp) -> String {
    let hash = cache_key(profile)
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("{hash:016x}.bpf")
}

const CACHE_MAGIC: &[u8; 8] = b"wseccmp1";

fn cache_key(profile: &LinuxSeccomp) -> String {
    format!(
        "{} {} {}",
        env!("CARGO_PKG_VERSION"),
        library_version(),
        serde_json::to_string(profile).unwrap_or_default()
    )
}

/// magic, key length (u32 LE), key, flags (c_ulong LE), the instructions.
fn encode(filter: &Filter, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + key.len() + filter.program.len() * 8);
    out.extend_from_slice(CACHE_MAGIC);
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(&filter.flags.to_le_bytes());
    for i in &filter.program {
        out.extend_from_slice(&i.code.to_ne_bytes());
        out.push(i.jt);
        out.push(i.jf);
        out.extend_from_slice(&i.k.to_ne_bytes());
    }
    out
}

fn decode(bytes: &[u8], key: &str) -> Option<(libc::c_ulong, Vec<libc::sock_filter>)> {
    let rest = bytes.strip_prefix(CACHE_MAGIC)?;
    let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let rest = &rest[4..];
    if rest.get(..len)? != key.as_bytes() {
        return None;
    }
    let rest = &rest[len..];
    const W: usize = std::mem::size_of::<libc::c_ulong>();
    let flags = libc::c_ulong::from_le_bytes(rest.get(..W)?.try_into().ok()?);
    let insns = &rest[W..];
    if insns.is_empty() || insns.len() % 8 != 0 || insns.len() / 8 > MAX_INSTRUCTIONS {
        return None;
    }
    let program = insns
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    Some((flags, program))
}

/// The listener of a profile with notify rules; errors for what runc refuses too.
fn listener(profile: &LinuxSeccomp, syscalls: &[LinuxSyscall]) -> Result<Option<Listener>> {
    let notify: Vec<&LinuxSyscall> = syscalls
        .iter()
        .filter(|r| r.action() == LinuxSeccompAction::ScmpActNotify)
        .collect();
    if notify.is_empty() {
        // runc too: listenerPath is ignored without notify rules.
        return Ok(None);
    }
    if notify
        .iter()
        .any(|r| r.names().iter().any(|n| n == "write"))
    {
        return Err(err(
            "syscall \"write\": SCMP_ACT_NOTIFY cannot be used for write (the runtime's own \
             write(2) after loading the filter would wait on the agent), as with runc",
        ));
    }
    let path = profile
        .listener_path()
        .clone()
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| {
            err(format!(
                "SCMP_ACT_NOTIFY (syscall {:?}) needs linux.seccomp.listenerPath, the unix \
                 socket of the seccomp agent",
                notify[0].names().first().map(String::as_str).unwrap_or("")
            ))
        })?;
    Ok(Some(Listener {
        path,
        metadata: profile.listener_metadata().clone(),
    }))
}

/// Copies fd number `fd` of process `pid` into ours (pidfd_getfd(2), Linux >= 5.6): how the
/// runtime takes a listener fd from the container's process, as runc does.
pub fn take_fd(pid: i32, fd: i32) -> Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if pidfd < 0 {
        return Err(Error::sys(
            format!("pidfd_open({pid})"),
            nix::errno::Errno::last(),
        ));
    }
    // SAFETY: a fresh fd nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    // SAFETY: pidfd_getfd takes a pidfd, an fd number of that process and flags.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if r < 0 {
        return Err(Error::sys(
            format!("pidfd_getfd(pid {pid}, fd {fd})"),
            nix::errno::Errno::last(),
        ));
    }
    // SAFETY: a new fd (close-on-exec) nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

/// The runtime's half of a notify filter's load: process `pid` (our child) reported its
/// listener fd number `fd`; copy it and hand it to the agent with the container process
/// state (`state`: the container's state document).
pub fn forward(filter: Option<&Filter>, pid: i32, fd: i32, state: serde_json::Value) -> Result<()> {
    let listener = filter.and_then(Filter::listener).ok_or_else(|| {
        Error::Sync("a seccomp listener fd from a process whose filter has no notify rules".into())
    })?;
    let copy = take_fd(pid, fd)?;
    send_to_listener(
        listener,
        std::os::fd::AsFd::as_fd(&copy),
        &process_state(listener, pid, state),
    )
}

/// The runtime spec's container process state: `pid` is the process the filter is on, as
/// the runtime sees it; `state` the container's state document.
pub fn process_state(listener: &Listener, pid: i32, state: serde_json::Value) -> serde_json::Value {
    let mut v = serde_json::json!({
        "ociVersion": state["ociVersion"].clone(),
        "fds": [SECCOMP_FD_NAME],
        "pid": pid,
        "state": state,
    });
    if let Some(m) = listener.metadata.as_deref().filter(|m| !m.is_empty()) {
        v["metadata"] = m.into();
    }
    v
}

/// Sends the listener fd and `process_state` to the agent's socket: one connection, one
/// message, then closed (runtime spec). Bounded by `LISTENER_TIMEOUT`; errors name the path.
pub fn send_to_listener(
    listener: &Listener,
    fd: BorrowedFd<'_>,
    process_state: &serde_json::Value,
) -> Result<()> {
    use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, UnixAddr};
    let path = &listener.path;
    let fail = |what: &str, e: nix::errno::Errno| {
        err(format!(
            "listenerPath {}: {what}: {}",
            path.display(),
            e.desc()
        ))
    };
    let sock = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| fail("socket", e))?;
    let timeout = nix::sys::time::TimeVal::new(LISTENER_TIMEOUT.as_secs() as i64, 0);
    socket::setsockopt(&sock, sockopt::SendTimeout, &timeout)
        .map_err(|e| fail("set send timeout", e))?;
    let addr = UnixAddr::new(path.as_path()).map_err(|e| fail("socket address", e))?;
    socket::connect(sock.as_raw_fd(), &addr).map_err(|e| match e {
        nix::errno::Errno::EAGAIN | nix::errno::Errno::EINPROGRESS => fail(
            &format!(
                "connect: no agent accepted within {}s",
                LISTENER_TIMEOUT.as_secs()
            ),
            e,
        ),
        e => fail("connect to the seccomp agent", e),
    })?;
    let data = serde_json::to_vec(process_state).expect("state serializes");
    send_with_fd(sock.as_raw_fd(), fd, &data).map_err(|e| fail("send the listener fd", e))
}

/// All of `data` with `fd` attached to the first sendmsg (runtime spec).
fn send_with_fd(
    sock: std::os::fd::RawFd,
    fd: BorrowedFd<'_>,
    data: &[u8],
) -> std::result::Result<(), nix::errno::Errno> {
    use nix::sys::socket::{self, ControlMessage, MsgFlags};
    let fds = [fd.as_raw_fd()];
    let mut sent = 0;
    while sent < data.len() {
        let cmsg = [ControlMessage::ScmRights(&fds)];
        let cmsgs: &[ControlMessage] = if sent == 0 { &cmsg } else { &[] };
        match socket::sendmsg::<()>(
            sock,
            &[std::io::IoSlice::new(&data[sent..])],
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(n) => sent += n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The libseccomp version this runtime runs with, "major.minor.micro".
pub fn library_version() -> String {
    libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_else(|_| "unknown".into())
}

/// The flags of `KNOWN_FLAGS` a profile may use on this kernel
/// (SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV with notify rules only).
pub fn supported_flags() -> Vec<&'static str> {
    let mut out = vec!["SECCOMP_FILTER_FLAG_TSYNC"];
    for f in [
        libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
        libc::SECCOMP_FILTER_FLAG_LOG,
        libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
    ] {
        if kernel_takes_flag(f) {
            out.push(flag_name(f));
        }
    }
    out
}

fn add_rule(ctx: &mut ScmpFilterContext, rule: &LinuxSyscall, default: ScmpAction) -> Result<()> {
    let names = rule.names();
    let what = || match names.as_slice() {
        [one] => format!("syscall {one:?}"),
        _ => format!("syscalls {names:?}"),
    };
    let act =
        action(rule.action(), rule.errno_ret()).map_err(|e| err(format!("{}: {e}", what())))?;
    let conditions: Vec<ScmpArgCompare> = rule
        .args()
        .iter()
        .flatten()
        .map(condition)
        .collect::<std::result::Result<_, String>>()
        .map_err(|e| err(format!("{}: {e}", what())))?;
    if act == default {
        return Ok(());
    }
    // libseccomp compares each argument at most once per rule: a rule with two conditions
    // on one argument becomes one rule per condition (runc does the same).
    let mut seen = [0usize; MAX_ARGS];
    for a in rule.args().iter().flatten() {
        seen[a.index()] += 1;
    }
    let groups: Vec<&[ScmpArgCompare]> = if seen.iter().any(|n| *n > 1) {
        conditions.chunks(1).collect()
    } else {
        vec![&conditions[..]]
    };
    for name in names {
        if name.is_empty() {
            return Err(err(format!("{}: an empty name is not a syscall", what())));
        }
        let Ok(nr) = ScmpSyscall::from_name(name) else {
            tracing::debug!("seccomp: syscall {name:?} is unknown on this architecture, skipped");
            continue;
        };
        for conds in &groups {
            ctx.add_rule_conditional(act, nr, conds).map_err(|e| {
                err(format!(
                    "syscall {name:?}: add rule {}: {e}",
                    name_of_action(rule)
                ))
            })?;
        }
    }
    Ok(())
}

fn name_of_action(rule: &LinuxSyscall) -> String {
    let mut s = name(&rule.action());
    if let Some(n) = rule.errno_ret() {
        s.push_str(&format!(" (errnoRet {n})"));
    }
    s
}

fn action(
    act: LinuxSeccompAction,
    errno_ret: Option<u32>,
) -> std::result::Result<ScmpAction, String> {
    let ret = |default: i32| -> std::result::Result<i32, String> {
        match errno_ret {
            None => Ok(default),
            Some(n) if n <= u16::MAX as u32 => Ok(n as i32),
            Some(n) => Err(format!(
                "{}: errnoRet {n} is out of range (0..=65535)",
                name(&act)
            )),
        }
    };
    Ok(match act {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(ret(libc::EPERM)?),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(ret(libc::EPERM)? as u16),
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
    })
}

fn condition(a: &LinuxSeccompArg) -> std::result::Result<ScmpArgCompare, String> {
    if a.index() >= MAX_ARGS {
        return Err(format!(
            "argument index {} with {} is out of range (0..={})",
            a.index(),
            name(&a.op()),
            MAX_ARGS - 1
        ));
    }
    let op = match a.op() {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        // The runtime spec (and runc): `value` is the mask, `valueTwo` what the masked
        // argument must equal.
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            return Ok(ScmpArgCompare::new(
                a.index() as u32,
                ScmpCompareOp::MaskedEqual(a.value()),
                a.value_two().unwrap_or(0),
            ))
        }
    };
    Ok(ScmpArgCompare::new(a.index() as u32, op, a.value()))
}

fn scmp_arch(arch: Arch) -> Result<ScmpArch> {
    Ok(match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        other => {
            return Err(err(format!(
                "architecture {} is not supported",
                name(&other)
            )))
        }
    })
}

/// libseccomp writes the program to an fd: a memfd, read back into memory.
fn export(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>> {
    // SAFETY: memfd_create with a NUL-terminated name; the fd is ours.
    let fd = unsafe { libc::memfd_create(c"warden-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(Error::sys("memfd_create", nix::errno::Errno::last()));
    }
    // SAFETY: a fresh fd nothing else owns.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    ctx.export_bpf(&file)
        .map_err(|e| err(format!("generate the BPF program: {e}")))?;
    let mut bytes = Vec::new();
    file.rewind()
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(|e| Error::io("read", "seccomp memfd", e))?;
    const INSN: usize = std::mem::size_of::<libc::sock_filter>();
    if bytes.len() % INSN != 0 || bytes.is_empty() {
        return Err(err(format!(
            "libseccomp exported {} bytes, not whole BPF instructions",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(INSN)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

/// Whether the kernel knows a filter flag: with a null program it fails with EFAULT when it
/// does, EINVAL when it does not (libseccomp probes the same way).
fn kernel_takes_flag(flag: libc::c_ulong) -> bool {
    // The kernel takes WAIT_KILLABLE_RECV only along with NEW_LISTENER.
    let flags = if flag == libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV {
        flag | libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
    } else {
        flag
    };
    // SAFETY: a null program is never dereferenced: the kernel checks the flags first.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            std::ptr::null::<libc::sock_fprog>(),
        )
    };
    r < 0 && nix::errno::Errno::last() == nix::errno::Errno::EFAULT
}

fn flag_name(flag: libc::c_ulong) -> &'static str {
    match flag {
        libc::SECCOMP_FILTER_FLAG_LOG => "SECCOMP_FILTER_FLAG_LOG",
        libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW => "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV => "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
        _ => "SECCOMP_FILTER_FLAG_?",
    }
}

/// The profile's spelling of an enum value (SCMP_ACT_ERRNO...).
fn name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "?".into(),
    }
}

fn err(msg: impl Into<String>) -> Error {
    Error::Seccomp(msg.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(v: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_cached_program_is_the_compiled_one_and_a_stale_or_broken_file_is_ignored() {
        let allow_read = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]
        }));
        let allow_more = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["read", "write", "openat"], "action": "SCMP_ACT_ALLOW"},
                         {"names": ["mkdir"], "action": "SCMP_ACT_LOG"}]
        }));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(cache_name(&allow_read));
        let fresh = compile(&allow_read).unwrap();
        let first = compile_cached(&allow_read, Some(&file)).unwrap();
        assert!(file.exists(), "a compile leaves the program in the file");
        let cached = compile_cached(&allow_read, Some(&file)).unwrap();
        let insns = |f: &Filter| {
            f.program
                .iter()
                .map(|i| (i.code, i.jt, i.jf, i.k))
                .collect::<Vec<_>>()
        };
        assert_eq!(insns(&cached), insns(&fresh));
        assert_eq!(insns(&first), insns(&fresh));
        assert_eq!(cached.flags, fresh.flags);
        // Another profile under the same file name: its key differs, so it is compiled.
        assert_ne!(cache_name(&allow_read), cache_name(&allow_more));
        let other = compile_cached(&allow_more, Some(&file)).unwrap();
        assert_eq!(insns(&other), insns(&compile(&allow_more).unwrap()));
        assert_ne!(insns(&other), insns(&fresh));
        // A truncated or foreign file: compiled again, and the file made right.
        let bytes = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes[..bytes.len() - 3]).unwrap();
        assert_eq!(
            insns(&compile_cached(&allow_more, Some(&file)).unwrap()),
            insns(&other)
        );
        assert_eq!(std::fs::read(&file).unwrap(), bytes);
        std::fs::write(&file, b"garbage").unwrap();
        assert_eq!(
            insns(&compile_cached(&allow_more, Some(&file)).unwrap()),
            insns(&other)
        );
    }

    #[test]
    fn compiles_a_profile() {
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "flags": ["SECCOMP_FILTER_FLAG_TSYNC"],
            "syscalls": [
                {"names": ["read", "write", "no_such_syscall_xyz"], "action": "SCMP_ACT_ALLOW"},
                // The default action: skipped, not an error.
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0x7e020000u64, "valueTwo": 0,
                           "op": "SCMP_CMP_MASKED_EQ"}]},
                // Two conditions on one argument: one rule each.
                {"names": ["kill"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"},
                          {"index": 1, "value": 15, "op": "SCMP_CMP_EQ"}]},
                {"names": ["uname"], "action": "SCMP_ACT_LOG"},
                {"names": ["ptrace"], "action": "SCMP_ACT_KILL_PROCESS"},
                {"names": ["reboot"], "action": "SCMP_ACT_TRAP"},
                {"names": ["acct"], "action": "SCMP_ACT_TRACE", "errnoRet": 1},
                {"names": ["swapon"], "action": "SCMP_ACT_KILL"}
            ]
        })))
        .unwrap();
        assert!(f.len() > 10, "{f:?}");
    }

    #[test]
    fn bad_profiles_say_what_is_wrong() {
        let cases = [
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                    {"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}),
                "SCMP_ACT_NOTIFY (syscall \"read\") needs linux.seccomp.listenerPath",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "",
                    "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
                "SCMP_ACT_NOTIFY (syscall \"mkdir\") needs linux.seccomp.listenerPath",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY",
                    "listenerPath": "/run/agent.sock"}),
                "defaultAction: SCMP_ACT_NOTIFY cannot be the default action",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                    "listenerPath": "/run/agent.sock", "syscalls": [
                    {"names": ["mkdir", "write"], "action": "SCMP_ACT_NOTIFY"}]}),
                "syscall \"write\": SCMP_ACT_NOTIFY cannot be used for write",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                    {"names": ["read"], "action": "SCMP_ACT_ERRNO",
                     "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
                "syscall \"read\": argument index 6 with SCMP_CMP_EQ is out of range (0..=5)",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                    {"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]}),
                "errnoRet 70000 is out of range",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                    {"names": [""], "action": "SCMP_ACT_ERRNO"}]}),
                "an empty name is not a syscall",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                    "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}),
                "flag SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV needs SCMP_ACT_NOTIFY rules",
            ),
        ];
        for (p, want) in cases {
            let e = compile(&profile(p.clone())).unwrap_err().to_string();
            assert!(e.starts_with("seccomp: "), "{e}");
            assert!(e.contains(want), "{p}: {e:?} should contain {want:?}");
        }
    }

    #[test]
    fn notify_rules_ask_for_a_listener() {
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/agent.sock",
            "listenerMetadata": "MKDIR=fake",
            "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"},
                {"names": ["read", "close"], "action": "SCMP_ACT_NOTIFY"}
            ]
        })))
        .unwrap();
        let want = Listener {
            path: "/run/agent.sock".into(),
            metadata: Some("MKDIR=fake".into()),
        };
        assert_eq!(f.listener(), Some(&want));
        assert_ne!(f.flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER, 0);
        assert_ne!(f.flags & libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, 0);

        // Without notify rules the listener is ignored (runc too) and no fd is asked for.
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/agent.sock",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]
        })))
        .unwrap();
        assert_eq!(f.listener(), None);
        assert_eq!(f.flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER, 0);

        let state = serde_json::json!({"ociVersion": "1.2.1", "id": "c1", "status": "creating",
            "pid": 42, "bundle": "/b"});
        let ps = process_state(&want, 42, state.clone());
        assert_eq!(
            ps,
            serde_json::json!({"ociVersion": "1.2.1", "fds": ["seccompFd"], "pid": 42,
                "metadata": "MKDIR=fake", "state": state})
        );
        let bare = Listener {
            metadata: None,
            ..want
        };
        assert!(process_state(&bare, 7, state).get("metadata").is_none());
    }

    #[test]
    fn an_absent_listener_is_an_error_naming_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nobody.sock");
        let l = Listener {
            path: path.clone(),
            metadata: None,
        };
        let null = std::fs::File::open("/dev/null").unwrap();
        let e = send_to_listener(&l, std::os::fd::AsFd::as_fd(&null), &serde_json::json!({}))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "seccomp: listenerPath {}: connect to the seccomp agent: No such file or directory",
                path.display()
            )
        );
    }

    #[test]
    fn features_lists_match_the_spec_names() {
        for a in ACTIONS {
            let act: LinuxSeccompAction = serde_json::from_value((*a).into()).unwrap();
            assert!(action(act, None).is_ok(), "{a}");
        }
        for o in OPERATORS {
            let _: LinuxSeccompOperator = serde_json::from_value((*o).into()).unwrap();
        }
        for a in ARCHS {
            let arch: Arch = serde_json::from_value((*a).into()).unwrap();
            scmp_arch(arch).unwrap();
        }
        for f in KNOWN_FLAGS {
            let _: LinuxSeccompFilterFlag = serde_json::from_value((*f).into()).unwrap();
        }
        assert!(supported_flags().contains(&"SECCOMP_FILTER_FLAG_TSYNC"));
        assert!(library_version().starts_with("2."));
    }
}
