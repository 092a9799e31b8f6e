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

use std::io::{Read, Seek};
use std::os::fd::{FromRawFd, OwnedFd};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};

use crate::error::{Error, Result};

/// Actions a profile may use (runc's names; SCMP_ACT_NOTIFY is refused).
pub const ACTIONS: &[&str] = &[
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
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

/// A compiled filter, ready to load.
pub struct Filter {
    program: Vec<libc::sock_filter>,
    /// SECCOMP_FILTER_FLAG_* for seccomp(2).
    flags: libc::c_ulong,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("instructions", &self.program.len())
            .field("flags", &self.flags)
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

    /// Installs the filter on the calling thread (our processes are single-threaded when they
    /// load it). Needs no_new_privs or CAP_SYS_ADMIN; survives exec.
    pub fn load(&self) -> Result<()> {
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
        if r == 0 {
            return Ok(());
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
                return Ok(());
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
    let default = action(profile.default_action(), profile.default_errno_ret())
        .map_err(|e| err(format!("defaultAction: {e}")))?;
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
    for flag in profile.flags().iter().flatten() {
        flags |= match flag {
            // runc too: our processes are single-threaded when they load the filter.
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 0,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                return Err(err(
                    "flag SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV applies to seccomp notify, \
                     which is not supported",
                ))
            }
        };
    }
    if let Some(f) = [
        libc::SECCOMP_FILTER_FLAG_LOG,
        libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
    ]
    .into_iter()
    .find(|f| flags & f != 0 && !kernel_takes_flag(*f))
    {
        return Err(err(format!(
            "flag {} is not supported by this kernel",
            flag_name(f)
        )));
    }

    let syscalls = profile.syscalls().as_deref().unwrap_or_default();
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
    Ok(Filter { program, flags })
}

/// The libseccomp version this runtime runs with, "major.minor.micro".
pub fn library_version() -> String {
    libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_else(|_| "unknown".into())
}

/// The flags of `KNOWN_FLAGS` a profile may use on this kernel.
pub fn supported_flags() -> Vec<&'static str> {
    let mut out = vec!["SECCOMP_FILTER_FLAG_TSYNC"];
    for f in [
        libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
        libc::SECCOMP_FILTER_FLAG_LOG,
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
        LinuxSeccompAction::ScmpActNotify => {
            return Err("SCMP_ACT_NOTIFY: seccomp notify is not supported".into())
        }
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
    // SAFETY: a null program is never dereferenced: the kernel checks the flags first.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flag,
            std::ptr::null::<libc::sock_fprog>(),
        )
    };
    r < 0 && nix::errno::Errno::last() == nix::errno::Errno::EFAULT
}

fn flag_name(flag: libc::c_ulong) -> &'static str {
    match flag {
        libc::SECCOMP_FILTER_FLAG_LOG => "SECCOMP_FILTER_FLAG_LOG",
        libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW => "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
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
                "syscall \"read\": SCMP_ACT_NOTIFY: seccomp notify is not supported",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY"}),
                "defaultAction: SCMP_ACT_NOTIFY: seccomp notify is not supported",
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
                "seccomp notify, which is not supported",
            ),
        ];
        for (p, want) in cases {
            let e = compile(&profile(p.clone())).unwrap_err().to_string();
            assert!(e.starts_with("seccomp: "), "{e}");
            assert!(e.contains(want), "{p}: {e:?} should contain {want:?}");
        }
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
