//! Device rules on cgroup v2: the OCI `linux.resources.devices` list compiled into an eBPF
//! program of type `BPF_PROG_TYPE_CGROUP_DEVICE` and attached to the container's cgroup
//! (`BPF_CGROUP_DEVICE`, with `BPF_F_ALLOW_MULTI` as runc does), since v2 has no devices
//! controller. The kernel runs it on every open and mknod of a device node by a task of the
//! cgroup or below it; it returns 1 to allow, 0 to refuse (the caller sees EPERM).
//!
//! # Semantics (those of the v1 driver, which writes `a` to `devices.deny` and then each rule)
//! - Nothing is allowed unless a rule allows it (the deny-all that OCI configs start with is
//!   then a no-op, and a config without one is not allowed everything).
//! - The last rule that matches a device decides, separately for each access bit the kernel
//!   asks for (`r`, `w`, `m`; an `O_RDWR` open asks for `rw` at once): the request is allowed
//!   only when every bit it asks for is allowed. So `allow c 1:3 rwm` then `deny c 1:3 w`
//!   refuses a read-write open of 1:3 and allows a read-only one, and `allow c 1:3 r` then
//!   `allow c 1:3 w` allows a read-write one. For a request of a single bit (and for the
//!   rule lists runc's devicefilter takes) this is "the last rule whose type, numbers and
//!   access match wins".
//! - Type `a` means every device and every access, whatever the numbers and access given
//!   (what `a` in v1's `devices.allow`/`devices.deny` means); `c` and `u` are char devices,
//!   `b` block ones; `p` (a fifo) has no rule and is refused. A missing or -1 major or minor is
//!   `*`. A missing or empty access is `rwm`.
//!
//! # The program
//! It loads the context (`struct bpf_cgroup_dev_ctx`: `access_type` at 0, major at 4, minor
//! at 8). The kernel fills `access_type` as `access << 16 | type`: the `BPF_DEVCG_ACC_*` bits
//! in the high 16 bits, `BPF_DEVCG_DEV_BLOCK` 1 / `BPF_DEVCG_DEV_CHAR` 2 in the low 16 (the
//! test against the real kernel in tests/cgroups_v2.rs fails with the halves swapped). It
//! keeps the requested bits not decided yet in r3 and walks the rules from the last to the
//! first: a matching allow rule clears its bits from r3 and returns 1 once r3 is empty; a
//! matching deny rule returns 0 if any of its bits is still in r3. Past the first rule, 0.
//! Every jump goes forward, to the end of its rule's block.
//!
//! # Why no crate
//! The program is a few instructions per rule from a fixed set of nine opcodes, and the
//! kernel interface is two `bpf()` calls. `aya` loads compiled ELF objects; `libbpf-sys`
//! builds and links the C libbpf (with libelf and zlib) for the same two calls. A small
//! encoder here, with its encodings checked against the kernel's `bpf_insn` layout in the
//! tests and the programs checked by the real verifier (the tests below and the cgroup v2
//! lane), is less to trust.
//!
//! # Lifetime
//! The program fd is closed once the program is attached: the attachment holds the program,
//! and removing the cgroup (`destroy`) detaches and frees it. A second [`attach`] to the same
//! cgroup (an `update` with device rules) replaces ours: the new program is attached, then
//! the earlier ones named `warden_dev` on that cgroup are detached (as runc replaces its
//! own), so an update can widen the rules as well as narrow them; programs others attached
//! stay.
//!
//! Kernels before 5.11 charge the program to `RLIMIT_MEMLOCK`, and a low limit there makes the
//! load fail with EPERM; runc raises the limit first. Not done here: the container's init
//! would inherit the raised limit. The kernels tested (6.1, 6.18) charge the memory cgroup.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::{Error, Result};

const FIELD: &str = "linux.resources.devices";

// From include/uapi/linux/bpf.h.
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_PROG_QUERY: libc::c_long = 16;
/// The name our programs carry, by which a later `attach` finds the one it replaces.
const PROG_NAME: &[u8] = b"warden_dev";
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// `BPF_DEVCG_ACC_*`: the access bits, in the high half of `access_type`.
pub(crate) const ACC_MKNOD: u32 = 1;
pub(crate) const ACC_READ: u32 = 2;
pub(crate) const ACC_WRITE: u32 = 4;
/// `BPF_DEVCG_DEV_*`: the device type, in the low half of `access_type`.
pub(crate) const DEV_BLOCK: u32 = 1;
pub(crate) const DEV_CHAR: u32 = 2;

/// One device rule, checked and in the program's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rule {
    pub allow: bool,
    /// `DEV_BLOCK` or `DEV_CHAR`; None for type `a`.
    pub typ: Option<u32>,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// `ACC_*` bits, never 0.
    pub access: u32,
}

fn invalid(reason: String) -> Error {
    Error::InvalidResource {
        field: FIELD.into(),
        reason,
    }
}

impl Rule {
    pub(crate) fn from_oci(r: &LinuxDeviceCgroup) -> Result<Rule> {
        let typ = match r.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => {
                return Ok(Rule {
                    allow: r.allow(),
                    typ: None,
                    major: None,
                    minor: None,
                    access: ACC_READ | ACC_WRITE | ACC_MKNOD,
                })
            }
            LinuxDeviceType::B => DEV_BLOCK,
            LinuxDeviceType::C | LinuxDeviceType::U => DEV_CHAR,
            LinuxDeviceType::P => return Err(invalid("type p (fifo) has no device rule".into())),
        };
        let num = |n: Option<i64>| match n {
            None | Some(-1) => Ok(None),
            Some(n) => u32::try_from(n)
                .map(Some)
                .map_err(|_| invalid(format!("bad device number {n}"))),
        };
        let access = match r.access().as_deref() {
            None | Some("") => "rwm",
            Some(a) => a,
        };
        let mut bits = 0;
        for c in access.chars() {
            bits |= match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                _ => {
                    return Err(invalid(format!(
                        "bad access {access:?} (want a subset of rwm)"
                    )))
                }
            };
        }
        Ok(Rule {
            allow: r.allow(),
            typ: Some(typ),
            major: num(r.major())?,
            minor: num(r.minor())?,
            access: bits,
        })
    }
}

/// Checks every rule; the first bad one fails the lot.
pub(crate) fn rules(list: &[LinuxDeviceCgroup]) -> Result<Vec<Rule>> {
    list.iter().map(Rule::from_oci).collect()
}

/// One eBPF instruction, laid out as the kernel's `struct bpf_insn`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    code: u8,
    /// `dst_reg:4, src_reg:4`: bitfields, whose order follows the byte order.
    regs: u8,
    off: i16,
    imm: i32,
}

// Opcodes: class | op | source (include/uapi/linux/bpf_common.h and bpf.h).
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W: dst = *(u32 *)(src + off)
const ALU_MOV_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X: dst = (u32)src
const ALU_MOV_K: u8 = 0xb4; // BPF_ALU | BPF_MOV | BPF_K: dst = (u32)imm
const ALU_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K: dst &= imm (32 bits)
const ALU_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K: dst >>= imm (32 bits)
const JMP_JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K: if dst != imm goto pc + 1 + off
const JMP_JSET_K: u8 = 0x45; // BPF_JMP | BPF_JSET | BPF_K: if dst & imm goto pc + 1 + off
const JMP_JA: u8 = 0x05; // BPF_JMP | BPF_JA: goto pc + 1 + off
const JMP_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT: return r0

// Registers: r0 the result, r1 the context on entry; r2 the device type, r3 the access bits
// not decided yet, r4 the major, r5 the minor.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

impl Insn {
    fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        #[cfg(target_endian = "little")]
        let regs = (src << 4) | (dst & 0xf);
        #[cfg(target_endian = "big")]
        let regs = (dst << 4) | (src & 0xf);
        Insn {
            code,
            regs,
            off,
            imm,
        }
    }

    #[cfg(test)]
    fn dst(&self) -> u8 {
        #[cfg(target_endian = "little")]
        return self.regs & 0xf;
        #[cfg(target_endian = "big")]
        return self.regs >> 4;
    }

    #[cfg(test)]
    fn src(&self) -> u8 {
        #[cfg(target_endian = "little")]
        return self.regs >> 4;
        #[cfg(target_endian = "big")]
        return self.regs & 0xf;
    }
}

/// An instruction of a rule's block; `ToEnd` jumps are resolved to the block's end.
#[derive(Debug, Clone, Copy)]
enum Op {
    Insn(Insn),
    ToEnd(u8, u8, i32), // code, dst, imm
}

/// A number as a jump's immediate. A 64-bit compare sign-extends the immediate while the
/// registers hold zero-extended 32-bit values, so only numbers up to i32::MAX compare right;
/// real ones do (the kernel's majors have 12 bits, its minors 20).
fn imm(n: u32) -> Result<i32> {
    i32::try_from(n).map_err(|_| invalid(format!("device number {n} is out of range")))
}

fn block(rule: &Rule) -> Result<Vec<Insn>> {
    let mut ops = Vec::new();
    if let Some(t) = rule.typ {
        ops.push(Op::ToEnd(JMP_JNE_K, R2, imm(t)?));
    }
    if let Some(m) = rule.major {
        ops.push(Op::ToEnd(JMP_JNE_K, R4, imm(m)?));
    }
    if let Some(m) = rule.minor {
        ops.push(Op::ToEnd(JMP_JNE_K, R5, imm(m)?));
    }
    let access = rule.access as i32;
    if rule.allow {
        // r3 &= ~access; if r3 != 0 goto end; return 1
        ops.push(Op::Insn(Insn::new(ALU_AND_K, R3, 0, 0, !access)));
        ops.push(Op::ToEnd(JMP_JNE_K, R3, 0));
        ops.push(Op::Insn(Insn::new(ALU_MOV_K, R0, 0, 0, 1)));
        ops.push(Op::Insn(Insn::new(JMP_EXIT, 0, 0, 0, 0)));
    } else {
        // if r3 & access goto +1; goto end; return 0
        ops.push(Op::Insn(Insn::new(JMP_JSET_K, R3, 0, 1, access)));
        ops.push(Op::ToEnd(JMP_JA, 0, 0));
        ops.push(Op::Insn(Insn::new(ALU_MOV_K, R0, 0, 0, 0)));
        ops.push(Op::Insn(Insn::new(JMP_EXIT, 0, 0, 0, 0)));
    }
    let len = ops.len();
    Ok(ops
        .into_iter()
        .enumerate()
        .map(|(i, op)| match op {
            Op::Insn(insn) => insn,
            // A block is a few instructions: the offset always fits.
            Op::ToEnd(code, dst, imm) => Insn::new(code, dst, 0, (len - i - 1) as i16, imm),
        })
        .collect())
}

/// The program for a rule list, in the order the config (and the runtime's defaults) give it.
pub(crate) fn program(rules: &[Rule]) -> Result<Vec<Insn>> {
    let mut p = vec![
        Insn::new(LDX_MEM_W, R2, R1, 0, 0),     // r2 = ctx->access_type
        Insn::new(ALU_MOV_X, R3, R2, 0, 0),     // r3 = r2
        Insn::new(ALU_RSH_K, R3, 0, 0, 16),     // r3 >>= 16: the access bits
        Insn::new(ALU_AND_K, R2, 0, 0, 0xffff), // r2 &= 0xffff: the device type
        Insn::new(LDX_MEM_W, R4, R1, 4, 0),     // r4 = ctx->major
        Insn::new(LDX_MEM_W, R5, R1, 8, 0),     // r5 = ctx->minor
    ];
    for r in rules.iter().rev() {
        p.extend(block(r)?);
    }
    p.push(Insn::new(ALU_MOV_K, R0, 0, 0, 0));
    p.push(Insn::new(JMP_EXIT, 0, 0, 0, 0));
    Ok(p)
}

/// `union bpf_attr` for BPF_PROG_LOAD, up to `prog_name` (Linux 4.15).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// `union bpf_attr` for BPF_PROG_ATTACH, without `replace_bpf_fd` (Linux 5.6).
#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

/// `union bpf_attr` for BPF_PROG_QUERY (Linux 4.15).
#[repr(C)]
#[derive(Default)]
struct ProgQueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

/// `union bpf_attr` for BPF_PROG_GET_FD_BY_ID.
#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// `union bpf_attr` for BPF_OBJ_GET_INFO_BY_FD.
#[repr(C)]
#[derive(Default)]
struct InfoByFdAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The head of `struct bpf_prog_info`, up to `name` (at byte 64).
#[repr(C)]
struct ProgInfoHead {
    before_name: [u8; 64],
    name: [u8; 16],
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: attr is a live, fully initialised bpf_attr prefix of the given size; the kernel
    // reads at most that many bytes (and zero-fills nothing of ours).
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// The license the program declares. It calls no helper at all, so no GPL-only helper is
/// needed and the license has no effect on what the verifier allows; "Apache" is the
/// project's own license (Apache-2.0, and what runc declares for the same kind of program).
const LICENSE: &std::ffi::CStr = c"Apache";

/// Loads the program; on a refusal, loads it again with the verifier's log to tell why.
pub(crate) fn load(prog: &[Insn]) -> io::Result<OwnedFd> {
    let mut name = [0u8; 16];
    name[..PROG_NAME.len()].copy_from_slice(PROG_NAME);
    let attr = |log: &mut [u8]| ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        log_level: u32::from(!log.is_empty()),
        log_size: log.len() as u32,
        log_buf: if log.is_empty() {
            0
        } else {
            log.as_mut_ptr() as u64
        },
        prog_name: name,
        ..Default::default()
    };
    let fd = match bpf(BPF_PROG_LOAD, &mut attr(&mut [])) {
        Ok(fd) => fd,
        Err(e)
            if e.raw_os_error() == Some(libc::EINVAL) || e.raw_os_error() == Some(libc::EACCES) =>
        {
            let mut log = vec![0u8; 64 * 1024];
            let again = bpf(BPF_PROG_LOAD, &mut attr(&mut log));
            let text = String::from_utf8_lossy(&log);
            let text = text.trim_end_matches('\0').trim();
            match again {
                Ok(fd) => fd,
                Err(_) if text.is_empty() => return Err(e),
                Err(_) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("{e}; the verifier says: {text}"),
                    ))
                }
            }
        }
        Err(e) => return Err(e),
    };
    // SAFETY: a successful BPF_PROG_LOAD returns a new fd (O_CLOEXEC) that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Compiles the rules, loads the program and attaches it to the cgroup directory `dir`. The
/// program fd is closed before this returns; the cgroup keeps the program.
pub(crate) fn attach(dir: &Path, rules: &[Rule]) -> Result<()> {
    let prog = program(rules)?;
    let fail = |what: &str, e: io::Error| Error::Write {
        path: dir.to_path_buf(),
        value: format!("eBPF device filter ({what})"),
        source: e,
    };
    let prog_fd = load(&prog).map_err(|e| fail("BPF_PROG_LOAD", e))?;
    let c = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| invalid(format!("{} has a NUL byte", dir.display())))?;
    // SAFETY: a plain open of a NUL-terminated path; the fd is owned below.
    let dfd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_DIRECTORY | libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if dfd < 0 {
        return Err(fail("open", io::Error::last_os_error()));
    }
    // SAFETY: just opened, owned here.
    let dfd = unsafe { OwnedFd::from_raw_fd(dfd) };
    let mut a = ProgAttachAttr {
        target_fd: dfd.as_raw_fd() as u32,
        attach_bpf_fd: prog_fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    let earlier = ours_attached(&dfd).map_err(|e| fail("BPF_PROG_QUERY", e))?;
    bpf(BPF_PROG_ATTACH, &mut a).map_err(|e| fail("BPF_PROG_ATTACH", e))?;
    // The new rules replace ours from an earlier apply (an `update`): both attached, a
    // device would need both to allow it, and an update could never widen the rules. Only
    // once the new program is in, so the cgroup is never without one.
    for old in earlier {
        let mut d = ProgAttachAttr {
            target_fd: dfd.as_raw_fd() as u32,
            attach_bpf_fd: old.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            attach_flags: 0,
        };
        bpf(BPF_PROG_DETACH, &mut d).map_err(|e| fail("BPF_PROG_DETACH", e))?;
    }
    Ok(())
}

/// Fds of the device programs attached to the cgroup `dfd` itself that are ours (by name);
/// programs someone else attached are left alone.
fn ours_attached(dfd: &OwnedFd) -> io::Result<Vec<OwnedFd>> {
    let mut ids = [0u32; 64];
    let mut q = ProgQueryAttr {
        target_fd: dfd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    bpf(BPF_PROG_QUERY, &mut q)?;
    let mut out = Vec::new();
    for &id in &ids[..(q.prog_cnt as usize).min(ids.len())] {
        let mut g = GetFdByIdAttr {
            prog_id: id,
            ..Default::default()
        };
        let Ok(fd) = bpf(BPF_PROG_GET_FD_BY_ID, &mut g) else {
            continue; // gone meanwhile
        };
        // SAFETY: a successful BPF_PROG_GET_FD_BY_ID returns a new fd that we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let mut info = ProgInfoHead {
            before_name: [0; 64],
            name: [0; 16],
        };
        let mut i = InfoByFdAttr {
            bpf_fd: fd.as_raw_fd() as u32,
            info_len: std::mem::size_of::<ProgInfoHead>() as u32,
            info: &mut info as *mut ProgInfoHead as u64,
        };
        bpf(BPF_OBJ_GET_INFO_BY_FD, &mut i)?;
        let name = info.name.split(|b| *b == 0).next().unwrap_or_default();
        if name == PROG_NAME {
            out.push(fd);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    use super::*;

    fn oci(
        allow: bool,
        t: LinuxDeviceType,
        ma: Option<i64>,
        mi: Option<i64>,
        a: &str,
    ) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(t)
            .access(a.to_string());
        if let Some(m) = ma {
            b = b.major(m);
        }
        if let Some(m) = mi {
            b = b.minor(m);
        }
        b.build().unwrap()
    }

    fn rule(allow: bool, t: Option<u32>, ma: Option<u32>, mi: Option<u32>, access: u32) -> Rule {
        Rule {
            allow,
            typ: t,
            major: ma,
            minor: mi,
            access,
        }
    }

    #[test]
    fn insn_has_the_kernels_layout() {
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        // r4 = *(u32 *)(r1 + 8): the bytes the kernel's bpf_insn has on this machine.
        let i = Insn::new(LDX_MEM_W, R4, R1, 8, 0);
        // SAFETY: Insn is repr(C), 8 bytes, no padding.
        let bytes: [u8; 8] = unsafe { std::mem::transmute(i) };
        #[cfg(target_endian = "little")]
        assert_eq!(bytes, [0x61, 0x14, 8, 0, 0, 0, 0, 0]);
        assert_eq!((i.dst(), i.src()), (R4, R1));
        let j = Insn::new(JMP_JNE_K, R5, 0, -2, 0x7fff_ffff);
        let bytes: [u8; 8] = unsafe { std::mem::transmute(j) };
        #[cfg(target_endian = "little")]
        assert_eq!(bytes, [0x55, 0x05, 0xfe, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 64);
        assert_eq!(std::mem::size_of::<ProgAttachAttr>(), 16);
    }

    #[test]
    fn oci_rules_convert() {
        use LinuxDeviceType::*;
        let r = |o| Rule::from_oci(&o).unwrap();
        assert_eq!(
            r(oci(true, C, Some(1), Some(3), "rwm")),
            rule(true, Some(DEV_CHAR), Some(1), Some(3), 7)
        );
        assert_eq!(
            r(oci(false, B, None, Some(-1), "m")),
            rule(false, Some(DEV_BLOCK), None, None, ACC_MKNOD)
        );
        assert_eq!(
            r(oci(true, U, Some(136), None, "w")),
            rule(true, Some(DEV_CHAR), Some(136), None, ACC_WRITE)
        );
        assert_eq!(
            r(oci(true, C, Some(5), Some(1), "")),
            rule(true, Some(DEV_CHAR), Some(5), Some(1), 7)
        );
        // `a` is everything, whatever else it says (as in v1's devices.allow).
        assert_eq!(
            r(oci(false, A, Some(1), None, "r")),
            rule(false, None, None, None, 7)
        );
        let no_type = LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .build()
            .unwrap();
        assert_eq!(r(no_type), rule(false, None, None, None, 7));
        assert!(Rule::from_oci(&oci(true, P, Some(1), Some(1), "r")).is_err());
        assert!(Rule::from_oci(&oci(true, C, Some(1), Some(1), "rx")).is_err());
        assert!(Rule::from_oci(&oci(true, C, Some(-2), Some(1), "r")).is_err());
        assert!(Rule::from_oci(&oci(true, C, Some(1 << 33), Some(1), "r")).is_err());
        assert!(program(&[rule(true, Some(DEV_CHAR), Some(u32::MAX), None, 7)]).is_err());
    }

    /// The program as (code, dst, src, off, imm), for comparing.
    fn shape(p: &[Insn]) -> Vec<(u8, u8, u8, i16, i32)> {
        p.iter()
            .map(|i| (i.code, i.dst(), i.src(), i.off, i.imm))
            .collect()
    }

    const PROLOGUE: [(u8, u8, u8, i16, i32); 6] = [
        (LDX_MEM_W, R2, R1, 0, 0),
        (ALU_MOV_X, R3, R2, 0, 0),
        (ALU_RSH_K, R3, 0, 0, 16),
        (ALU_AND_K, R2, 0, 0, 0xffff),
        (LDX_MEM_W, R4, R1, 4, 0),
        (LDX_MEM_W, R5, R1, 8, 0),
    ];
    const DENY: [(u8, u8, u8, i16, i32); 2] = [(ALU_MOV_K, R0, 0, 0, 0), (JMP_EXIT, 0, 0, 0, 0)];

    #[test]
    fn no_rules_denies_everything() {
        let want: Vec<_> = PROLOGUE.iter().chain(&DENY).copied().collect();
        assert_eq!(shape(&program(&[]).unwrap()), want);
    }

    #[test]
    fn rules_are_emitted_last_first_with_jumps_to_their_block_end() {
        let rules = [
            // The usual deny-all, then an allow of char 1:3 rw, then a deny of block *:5 m.
            rule(false, None, None, None, 7),
            rule(true, Some(DEV_CHAR), Some(1), Some(3), ACC_READ | ACC_WRITE),
            rule(false, Some(DEV_BLOCK), None, Some(5), ACC_MKNOD),
        ];
        let mut want: Vec<_> = PROLOGUE.to_vec();
        // Last rule first: deny b *:5 m (no major check).
        want.extend([
            (JMP_JNE_K, R2, 0, 5, DEV_BLOCK as i32),
            (JMP_JNE_K, R5, 0, 4, 5),
            (JMP_JSET_K, R3, 0, 1, ACC_MKNOD as i32),
            (JMP_JA, 0, 0, 2, 0),
            (ALU_MOV_K, R0, 0, 0, 0),
            (JMP_EXIT, 0, 0, 0, 0),
        ]);
        // Then allow c 1:3 rw.
        want.extend([
            (JMP_JNE_K, R2, 0, 6, DEV_CHAR as i32),
            (JMP_JNE_K, R4, 0, 5, 1),
            (JMP_JNE_K, R5, 0, 4, 3),
            (ALU_AND_K, R3, 0, 0, !((ACC_READ | ACC_WRITE) as i32)),
            (JMP_JNE_K, R3, 0, 2, 0),
            (ALU_MOV_K, R0, 0, 0, 1),
            (JMP_EXIT, 0, 0, 0, 0),
        ]);
        // Then the deny-all, with nothing to compare.
        want.extend([
            (JMP_JSET_K, R3, 0, 1, 7),
            (JMP_JA, 0, 0, 2, 0),
            (ALU_MOV_K, R0, 0, 0, 0),
            (JMP_EXIT, 0, 0, 0, 0),
        ]);
        want.extend(DENY);
        assert_eq!(shape(&program(&rules).unwrap()), want);
    }

    #[test]
    fn every_jump_lands_inside_the_program_and_forward() {
        let rules: Vec<Rule> = [true, false]
            .into_iter()
            .flat_map(|allow| {
                [
                    rule(allow, None, None, None, 7),
                    rule(allow, Some(DEV_CHAR), None, None, 1),
                    rule(allow, Some(DEV_BLOCK), Some(8), None, 2),
                    rule(allow, Some(DEV_CHAR), Some(1), Some(9), 6),
                ]
            })
            .collect();
        let p = program(&rules).unwrap();
        let last = p.last().unwrap();
        assert_eq!(
            (last.code, i32::from(p[p.len() - 2].code)),
            (JMP_EXIT, i32::from(ALU_MOV_K))
        );
        for (pc, i) in p.iter().enumerate() {
            if matches!(i.code, JMP_JNE_K | JMP_JSET_K | JMP_JA) {
                assert!(i.off >= 0, "backward jump at {pc}");
                let to = pc + 1 + i.off as usize;
                assert!(to < p.len(), "jump at {pc} leaves the program");
            }
        }
    }

    /// The kernel's verifier accepts the programs the runtime makes (root only: loading a
    /// cgroup device program needs CAP_SYS_ADMIN or CAP_BPF).
    #[test]
    fn the_kernel_loads_the_programs() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let lists = [
            vec![],
            vec![rule(false, None, None, None, 7)],
            vec![
                rule(false, None, None, None, 7),
                rule(true, Some(DEV_CHAR), None, None, ACC_MKNOD),
                rule(true, Some(DEV_CHAR), Some(136), None, 7),
                rule(false, Some(DEV_CHAR), Some(1), Some(3), ACC_WRITE),
                rule(true, None, None, None, 7),
            ],
        ];
        for rules in lists {
            let fd = load(&program(&rules).unwrap()).unwrap();
            drop(fd);
        }
    }
}
