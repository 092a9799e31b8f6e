//! `process.rlimits`: setrlimit(2) for each, naming the limit that failed.

use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

use crate::error::{Error, Result};

/// The resource number of an OCI rlimit type.
pub fn resource(t: PosixRlimitType) -> libc::c_int {
    use PosixRlimitType::*;
    (match t {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }) as libc::c_int
}

/// Sets one limit; `u64::MAX` is RLIM_INFINITY.
pub fn set(t: PosixRlimitType, soft: u64, hard: u64) -> Result<()> {
    if soft > hard {
        return Err(Error::Config(format!(
            "rlimit {t}: soft limit {soft} is above the hard limit {hard}"
        )));
    }
    let lim = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: lim is a valid rlimit; a pid of 0 means the calling process.
    let r = unsafe { libc::prlimit(0, resource(t) as _, &lim, std::ptr::null_mut()) };
    if r != 0 {
        let errno = nix::errno::Errno::last();
        let hint = if errno == nix::errno::Errno::EPERM {
            " (raising a hard limit needs CAP_SYS_RESOURCE)"
        } else {
            ""
        };
        return Err(Error::Init(format!(
            "setrlimit {t} soft={soft} hard={hard}: {errno}{hint}"
        )));
    }
    Ok(())
}

pub fn apply(rlimits: &[PosixRlimit]) -> Result<()> {
    for r in rlimits {
        set(r.typ(), r.soft(), r.hard())?;
    }
    Ok(())
}
