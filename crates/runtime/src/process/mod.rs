//! The process model of create: the parent clones the init with the new namespaces, sets up
//! what must be set up from outside (id maps, cgroup), and talks to it over `channel`. The
//! init runs `init::run` and never returns into the caller's code.
//!
//! The caller must be single-threaded: after clone(2) the child runs ordinary Rust code
//! (allocation, formatting), which is only safe when no other thread held a lock at the
//! moment of the clone. `warden-runc` is single-threaded; `wardend` creates containers by
//! running `warden-runc`, never by calling `create` from its tokio threads.

pub mod attrs;
pub mod channel;
pub mod exec;
pub mod init;

use nix::sched::CloneFlags;
use nix::unistd::Pid;

use crate::error::{Error, Result};

/// clone(2) with fork semantics (a copy of the caller's stack) plus namespace flags.
/// Returns `Pid(0)` in the child.
///
/// # Safety
/// The caller must be single-threaded, and the child must end in exec or `_exit`.
pub unsafe fn clone_fork(flags: CloneFlags) -> Result<Pid> {
    // x86_64 and aarch64 both take (flags, stack, parent_tid, child_tid, tls); a null
    // stack means the child continues on a copy-on-write copy of ours, like fork(2).
    let ret = libc::syscall(
        libc::SYS_clone,
        (flags.bits() | libc::SIGCHLD) as libc::c_ulong,
        0usize,
        0usize,
        0usize,
        0usize,
    );
    if ret < 0 {
        return Err(Error::sys(
            format!("clone({flags:?})"),
            nix::errno::Errno::last(),
        ));
    }
    Ok(Pid::from_raw(ret as i32))
}

/// Writes the init's uid and gid maps (the parent does this: the child cannot map ids it
/// does not own).
pub fn write_id_maps(pid: Pid, spec: &oci_spec::runtime::Spec) -> Result<()> {
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    let fmt = |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        maps.iter()
            .flatten()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    for (file, text) in [
        ("uid_map", fmt(linux.uid_mappings())),
        ("gid_map", fmt(linux.gid_mappings())),
    ] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, text.as_bytes()).map_err(|e| Error::io("write", path, e))?;
    }
    Ok(())
}
