//! What the process is allowed to do once it runs: its capabilities, rlimits, user and
//! groups, no_new_privs, seccomp filter, AppArmor profile and OOM score. Each function changes the calling
//! process only, and names what failed.

pub mod apparmor;
pub mod caps;
pub mod rlimits;
pub mod seccomp;
pub mod user;

use crate::error::{Error, IoContext, Result};

/// Sets the kernel's OOM score adjustment (-1000..=1000) of the calling process.
pub fn set_oom_score_adj(adj: i32) -> Result<()> {
    if !(-1000..=1000).contains(&adj) {
        return Err(Error::Config(format!(
            "process.oomScoreAdj {adj} is outside -1000..1000"
        )));
    }
    std::fs::write("/proc/self/oom_score_adj", adj.to_string())
        .ctx("write", "/proc/self/oom_score_adj")
}

/// prctl(PR_SET_DUMPABLE, 0): the first thing a cloned init or exec child does. It runs the
/// runtime's own image until its execve; while dumpable, a container process sharing its pid
/// namespace could open `/proc/<pid>/exe` and overwrite the runtime binary on the host
/// (CVE-2019-5736) or ptrace it. execve makes the user's process dumpable again as usual.
pub fn set_not_dumpable() -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    let r = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if r != 0 {
        return Err(Error::sys(
            "prctl(PR_SET_DUMPABLE, 0)",
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

/// prctl(PR_SET_NO_NEW_PRIVS): exec can no longer grant privileges (setuid bits, file caps).
pub fn set_no_new_privs() -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if r != 0 {
        return Err(Error::sys(
            "prctl(PR_SET_NO_NEW_PRIVS)",
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}
