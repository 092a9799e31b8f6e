//! limit_memory and limit_cpu (SPEC 3.8) through the runtime's cgroup driver, and the OOM
//! notifier: an eventfd registered on the memory cgroup's `memory.oom_control` (cgroup v1)
//! that fires when the container hits its limit, or when the cgroup is removed.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxCpuBuilder, LinuxMemoryBuilder, LinuxResourcesBuilder};
use warden_runtime::cgroups;

use super::Error;

fn manager(root: &Path, id: &str) -> Result<Box<dyn cgroups::Manager>, String> {
    let c = warden_runtime::Container::load(root, id).map_err(|e| e.to_string())?;
    cgroups::from_paths(&c.state.cgroup_paths).map_err(|e| e.to_string())
}

/// Sets memory (and memory+swap, so the container cannot swap past it) to `limit`, and
/// returns the limit the kernel reports.
pub fn set_memory(root: &Path, id: &str, limit: Option<u64>) -> Result<u64, Error> {
    let fail = |e: String| Error::Request(format!("Failed setting memory limit: {e}"));
    let m = manager(root, id).map_err(fail)?;
    if let Some(limit) = limit {
        let memory = LinuxMemoryBuilder::default()
            .limit(limit as i64)
            .swap(limit as i64)
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let res = LinuxResourcesBuilder::default()
            .memory(memory)
            .build()
            .map_err(|e| fail(e.to_string()))?;
        m.apply(&res).map_err(|e| fail(e.to_string()))?;
    }
    let stats = m
        .stats()
        .map_err(|e| Error::Request(format!("Failed getting memory usage: {e}")))?;
    Ok(stats.memory.usage.limit)
}

/// Sets the cpu shares and returns what the kernel reports (it raises 1 to its minimum, 2).
pub fn set_cpu_shares(root: &Path, id: &str, shares: Option<u64>) -> Result<u64, Error> {
    let fail = |e: String| Error::Request(format!("Failed setting cpu shares: {e}"));
    let m = manager(root, id).map_err(fail)?;
    if let Some(shares) = shares {
        // The kernel's range; the runtime refuses a value the kernel would change, the
        // original answered with what the kernel made of it (1 -> 2).
        let shares = shares.clamp(2, 262_144);
        let cpu = LinuxCpuBuilder::default()
            .shares(shares)
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let res = LinuxResourcesBuilder::default()
            .cpu(cpu)
            .build()
            .map_err(|e| fail(e.to_string()))?;
        m.apply(&res).map_err(|e| fail(e.to_string()))?;
    }
    let dir = m
        .paths()
        .get("cpu")
        .cloned()
        .ok_or_else(|| Error::Request("Failed getting cpu stats: no cpu cgroup".into()))?;
    let text = std::fs::read_to_string(dir.join("cpu.shares"))
        .map_err(|e| Error::Request(format!("Failed getting cpu stats: {e}")))?;
    text.trim()
        .parse()
        .map_err(|e| Error::Request(format!("Failed getting cpu stats: {e}")))
}

/// An armed OOM notifier: readable once the cgroup ran out of memory or was removed.
pub struct OomNotifier {
    pub event: OwnedFd,
    pub cgroup: PathBuf,
}

/// Registers an eventfd for OOM events on the container's memory cgroup (v1). None where the
/// host has no v1 memory cgroup for it.
pub fn oom_notifier(root: &Path, id: &str) -> Result<Option<OomNotifier>, Error> {
    let Some(dir) = super::runtime::cgroup_dir(root, id, "memory") else {
        return Ok(None);
    };
    let control = dir.join("memory.oom_control");
    if !control.exists() {
        return Ok(None);
    }
    let oom = std::fs::File::open(&control).map_err(|e| Error::io("open", &control, e))?;
    // SAFETY: eventfd with flags only; the result is a new fd we own, or -1.
    let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if efd < 0 {
        return Err(Error::Sys(format!(
            "eventfd: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: efd is a fresh descriptor that nothing else owns.
    let event = unsafe { OwnedFd::from_raw_fd(efd) };
    let ctl = dir.join("cgroup.event_control");
    std::fs::write(&ctl, format!("{} {}", event.as_raw_fd(), oom.as_raw_fd()))
        .map_err(|e| Error::io("write", &ctl, e))?;
    Ok(Some(OomNotifier { event, cgroup: dir }))
}
