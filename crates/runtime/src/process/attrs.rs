//! What the kernel keeps per process and an exec keeps too: the execution domain
//! (`linux.personality`), the scheduling policy (`process.scheduler`), the I/O priority
//! (`process.ioPriority`) and the NUMA memory policy (`linux.memoryPolicy`). `spec` checks
//! them (so a bad value fails `create` before anything exists); the init and each exec child
//! apply them to themselves here, while they still have every capability (a real-time
//! policy, a negative nice and the real-time I/O class need CAP_SYS_NICE or CAP_SYS_ADMIN).
//! Every error names the config field.

use oci_spec::runtime::{
    IOPriorityClass, LinuxIOPriority, LinuxMemoryPolicy, LinuxPersonality, LinuxPersonalityDomain,
    LinuxSchedulerFlag, LinuxSchedulerPolicy, MemoryPolicyFlagType, MemoryPolicyModeType,
    Scheduler,
};

use crate::error::{Error, Result};

/// The personality(2) flags of <linux/personality.h>, by name.
pub const PERSONALITY_FLAGS: &[(&str, u64)] = &[
    ("UNAME26", 0x0020000),
    ("ADDR_NO_RANDOMIZE", 0x0040000),
    ("FDPIC_FUNCPTRS", 0x0080000),
    ("MMAP_PAGE_ZERO", 0x0100000),
    ("ADDR_COMPAT_LAYOUT", 0x0200000),
    ("READ_IMPLIES_EXEC", 0x0400000),
    ("ADDR_LIMIT_32BIT", 0x0800000),
    ("SHORT_INODE", 0x1000000),
    ("WHOLE_SECONDS", 0x2000000),
    ("STICKY_TIMEOUTS", 0x4000000),
    ("ADDR_LIMIT_3GB", 0x8000000),
];

/// The personality(2) value of `linux.personality`: PER_LINUX or PER_LINUX32, with flags.
pub fn personality_value(p: &LinuxPersonality) -> std::result::Result<u64, String> {
    let mut v = match p.domain() {
        LinuxPersonalityDomain::PerLinux => 0x0000,
        LinuxPersonalityDomain::PerLinux32 => 0x0008,
    };
    for f in p.flags().iter().flatten() {
        let bit = PERSONALITY_FLAGS
            .iter()
            .find(|(n, _)| n == f)
            .map(|(_, b)| *b)
            .ok_or_else(|| format!("linux.personality.flags: unknown flag {f:?}"))?;
        v |= bit;
    }
    Ok(v)
}

pub fn set_personality(p: &LinuxPersonality) -> Result<()> {
    let v = personality_value(p).map_err(Error::Config)?;
    // SAFETY: personality(2) takes an integer and changes only the calling process.
    let r = unsafe { libc::personality(v as libc::c_ulong) };
    if r == -1 {
        return Err(Error::sys(
            format!("linux.personality: personality({v:#x})"),
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

/// The runtime spec's names of the scheduler flags, with the kernel's bits
/// (<linux/sched.h>). oci-spec 0.10 spells some of them differently (`SCHED_RESET_ON_FORK`,
/// `SCHED_FLAG_D_L_OVERRUN`); `spec::parse` rewrites the spec's names into its spelling.
pub const SCHED_FLAGS: &[(&str, LinuxSchedulerFlag, u64)] = &[
    (
        "SCHED_FLAG_RESET_ON_FORK",
        LinuxSchedulerFlag::SchedResetOnFork,
        0x01,
    ),
    (
        "SCHED_FLAG_RECLAIM",
        LinuxSchedulerFlag::SchedFlagReclaim,
        0x02,
    ),
    (
        "SCHED_FLAG_DL_OVERRUN",
        LinuxSchedulerFlag::SchedFlagDLOverrun,
        0x04,
    ),
    (
        "SCHED_FLAG_KEEP_POLICY",
        LinuxSchedulerFlag::SchedFlagKeepPolicy,
        0x08,
    ),
    (
        "SCHED_FLAG_KEEP_PARAMS",
        LinuxSchedulerFlag::SchedFlagKeepParams,
        0x10,
    ),
    (
        "SCHED_FLAG_UTIL_CLAMP_MIN",
        LinuxSchedulerFlag::SchedFlagUtilClampMin,
        0x20,
    ),
    (
        "SCHED_FLAG_UTIL_CLAMP_MAX",
        LinuxSchedulerFlag::SchedFlagUtilClampMax,
        0x40,
    ),
];

fn policy_number(p: LinuxSchedulerPolicy) -> Option<u32> {
    Some(match p {
        LinuxSchedulerPolicy::SchedOther => 0,
        LinuxSchedulerPolicy::SchedFifo => 1,
        LinuxSchedulerPolicy::SchedRr => 2,
        LinuxSchedulerPolicy::SchedBatch => 3,
        LinuxSchedulerPolicy::SchedIdle => 5,
        LinuxSchedulerPolicy::SchedDeadline => 6,
        // Not a policy of mainline Linux (it was -ck's).
        LinuxSchedulerPolicy::SchedIso => return None,
    })
}

fn policy_name(p: LinuxSchedulerPolicy) -> String {
    serde_json::to_value(p)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_else(|| format!("{p:?}"))
}

/// The kernel's `struct sched_attr` (SCHED_ATTR_SIZE_VER0).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SchedAttr {
    pub size: u32,
    pub policy: u32,
    pub flags: u64,
    pub nice: i32,
    pub priority: u32,
    pub runtime: u64,
    pub deadline: u64,
    pub period: u64,
}

/// Checks `process.scheduler` as runc 1.2 does, and a little more of what sched_setattr(2)
/// would refuse with a bare EINVAL; returns the attributes to set.
pub fn sched_attr(s: &Scheduler) -> std::result::Result<SchedAttr, String> {
    let policy = *s.policy();
    let name = policy_name(policy);
    let number = policy_number(policy).ok_or_else(|| {
        format!("process.scheduler.policy: {name} is not a scheduling policy of Linux")
    })?;
    let nice = s.nice().unwrap_or(0);
    if !(-20..=19).contains(&nice) {
        return Err(format!("process.scheduler.nice: {nice} is outside -20..19"));
    }
    let realtime = matches!(
        policy,
        LinuxSchedulerPolicy::SchedFifo | LinuxSchedulerPolicy::SchedRr
    );
    let priority = s.priority().unwrap_or(0);
    if realtime && !(1..=99).contains(&priority) {
        return Err(format!(
            "process.scheduler.priority: {name} needs a priority in 1..99, not {priority}"
        ));
    }
    if !realtime && priority != 0 {
        return Err(format!(
            "process.scheduler.priority: only SCHED_FIFO and SCHED_RR take a priority, not {name}"
        ));
    }
    let (runtime, deadline, period) = (
        s.runtime().unwrap_or(0),
        s.deadline().unwrap_or(0),
        s.period().unwrap_or(0),
    );
    if policy == LinuxSchedulerPolicy::SchedDeadline {
        // The kernel's __checkparam_dl: runtime of at least 1024 ns, runtime <= deadline <=
        // period (a period of 0 means the deadline).
        if runtime < 1024 {
            return Err(format!(
                "process.scheduler.runtime: SCHED_DEADLINE needs a runtime of at least 1024 ns, not {runtime}"
            ));
        }
        if deadline < runtime {
            return Err(format!(
                "process.scheduler.deadline: {deadline} is less than the runtime {runtime}"
            ));
        }
        if period != 0 && period < deadline {
            return Err(format!(
                "process.scheduler.period: {period} is less than the deadline {deadline}"
            ));
        }
    } else if runtime != 0 || deadline != 0 || period != 0 {
        return Err(format!(
            "process.scheduler: runtime, deadline and period are for SCHED_DEADLINE only, not {name}"
        ));
    }
    let mut flags = 0;
    for f in s.flags().iter().flatten() {
        let (fname, _, bit) = SCHED_FLAGS
            .iter()
            .find(|(_, v, _)| v == f)
            .expect("every oci-spec flag is in the table");
        if *bit & 0x60 != 0 {
            // The clamp values go in sched_attr's util_min/util_max, which the runtime spec
            // has no field for: setting the flag would clamp to 0.
            return Err(format!(
                "process.scheduler.flags: {fname} needs a clamp value, which the runtime spec cannot give"
            ));
        }
        flags |= bit;
    }
    Ok(SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: number,
        flags,
        nice,
        priority: priority as u32,
        runtime,
        deadline,
        period,
    })
}

/// sched_setattr(2) on the calling process.
pub fn set_scheduler(s: &Scheduler) -> Result<()> {
    let attr = sched_attr(s).map_err(Error::Config)?;
    // SAFETY: the kernel reads `attr.size` bytes of a struct we own.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if r != 0 {
        return Err(Error::sys(
            format!(
                "process.scheduler: sched_setattr({}, nice {}, priority {})",
                policy_name(*s.policy()),
                attr.nice,
                attr.priority
            ),
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

/// The ioprio(2) value of `process.ioPriority`: class << 13 | level.
pub fn ioprio_value(p: &LinuxIOPriority) -> std::result::Result<u32, String> {
    let level = p.priority();
    if !(0..=7).contains(&level) {
        return Err(format!(
            "process.ioPriority.priority: {level} is outside 0..7"
        ));
    }
    let class = match p.class() {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    Ok(class << 13 | level as u32)
}

/// ioprio_set(IOPRIO_WHO_PROCESS, 0, ...) on the calling process.
pub fn set_io_priority(p: &LinuxIOPriority) -> Result<()> {
    let v = ioprio_value(p).map_err(Error::Config)?;
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    // SAFETY: ioprio_set takes integers only.
    let r = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, v) };
    if r != 0 {
        return Err(Error::sys(
            format!("process.ioPriority: ioprio_set({v:#x})"),
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

/// A node list ("0-1,3") as set_mempolicy's bitmask.
pub fn node_mask(nodes: &str) -> std::result::Result<Vec<u64>, String> {
    let bad = || format!("linux.memoryPolicy.nodes: {nodes:?} is not a list of NUMA nodes");
    let mut mask: Vec<u64> = Vec::new();
    for part in nodes.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let lo: usize = lo.parse().map_err(|_| bad())?;
        let hi: usize = hi.parse().map_err(|_| bad())?;
        if lo > hi || hi >= 1024 {
            return Err(bad());
        }
        for n in lo..=hi {
            if mask.len() <= n / 64 {
                mask.resize(n / 64 + 1, 0);
            }
            mask[n / 64] |= 1 << (n % 64);
        }
    }
    Ok(mask)
}

/// set_mempolicy(2)'s mode (with its flags) and node mask for `linux.memoryPolicy`.
pub fn mempolicy(p: &LinuxMemoryPolicy) -> std::result::Result<(i32, Vec<u64>), String> {
    let mode = match p.mode() {
        MemoryPolicyModeType::MpolDefault => 0,
        MemoryPolicyModeType::MpolPreferred => 1,
        MemoryPolicyModeType::MpolBind => 2,
        MemoryPolicyModeType::MpolInterleave => 3,
        MemoryPolicyModeType::MpolLocal => 4,
        MemoryPolicyModeType::MpolPreferredMany => 5,
        MemoryPolicyModeType::MpolWeightedInterleave => 6,
    };
    let mut flags = 0;
    for f in p.flags().iter().flatten() {
        flags |= match f {
            MemoryPolicyFlagType::MpolFNumaBalancing => 1 << 13,
            MemoryPolicyFlagType::MpolFRelativeNodes => 1 << 14,
            MemoryPolicyFlagType::MpolFStaticNodes => 1 << 15,
        };
    }
    let mask = node_mask(p.nodes().as_deref().unwrap_or(""))?;
    let empty = mask.iter().all(|w| *w == 0);
    match mode {
        0 | 4 if !empty => {
            return Err(format!(
                "linux.memoryPolicy.nodes: {} takes no nodes",
                p.mode()
            ))
        }
        2 | 3 | 5 | 6 if empty => {
            return Err(format!(
                "linux.memoryPolicy.nodes: {} needs nodes",
                p.mode()
            ))
        }
        _ => {}
    }
    Ok((mode | flags, mask))
}

pub fn set_memory_policy(p: &LinuxMemoryPolicy) -> Result<()> {
    let (mode, mask) = mempolicy(p).map_err(Error::Config)?;
    let maxnode = (mask.len() * 64) as libc::c_ulong;
    let ptr = if mask.is_empty() {
        std::ptr::null()
    } else {
        mask.as_ptr()
    };
    // SAFETY: the kernel reads `maxnode` bits of the mask we own.
    let r = unsafe { libc::syscall(libc::SYS_set_mempolicy, mode, ptr, maxnode) };
    if r != 0 {
        return Err(Error::sys(
            format!(
                "linux.memoryPolicy: set_mempolicy({}, {:?})",
                p.mode(),
                p.nodes().as_deref().unwrap_or("")
            ),
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

/// A CPU list ("0-1,3") as a cpu_set_t.
pub fn cpu_set(cpus: &str, field: &str) -> std::result::Result<libc::cpu_set_t, String> {
    let bad = || format!("{field}: {cpus:?} is not a list of CPUs");
    // SAFETY: cpu_set_t is plain data; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    for part in cpus.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let lo: usize = lo.trim().parse().map_err(|_| bad())?;
        let hi: usize = hi.trim().parse().map_err(|_| bad())?;
        if lo > hi || hi >= max {
            return Err(bad());
        }
        for c in lo..=hi {
            // SAFETY: `c` is below the set's size, checked above.
            unsafe { libc::CPU_SET(c, &mut set) };
        }
    }
    Ok(set)
}

/// sched_setaffinity(2) of `pid` (0: the caller) to `cpus`; errors name `field`.
pub fn set_affinity(pid: i32, cpus: &str, field: &str) -> Result<()> {
    let set = cpu_set(cpus, field).map_err(Error::Config)?;
    // SAFETY: the kernel reads the cpu_set_t we own.
    let r = unsafe { libc::sched_setaffinity(pid, std::mem::size_of_val(&set), &set) };
    if r != 0 {
        return Err(Error::sys(
            format!("{field}: sched_setaffinity({cpus:?})"),
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

/// The process's own attributes (scheduler, I/O priority), for the init and every exec
/// child, before the capabilities are dropped.
pub fn apply_process(process: &oci_spec::runtime::Process) -> Result<()> {
    if let Some(s) = process.scheduler() {
        set_scheduler(s)?;
    }
    if let Some(p) = process.io_priority() {
        set_io_priority(p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_lists() {
        assert_eq!(node_mask("0").unwrap(), vec![1]);
        assert_eq!(node_mask("0-2,5").unwrap(), vec![0b100111]);
        assert_eq!(node_mask("64").unwrap(), vec![0, 1]);
        assert_eq!(node_mask("").unwrap(), Vec::<u64>::new());
        for bad in ["x", "2-1", "0-", "5000"] {
            assert!(node_mask(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn struct_sizes_are_the_kernels() {
        assert_eq!(std::mem::size_of::<SchedAttr>(), 48);
    }
}
