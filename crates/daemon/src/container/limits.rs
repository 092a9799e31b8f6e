//! limit_memory and limit_cpu (SPEC 3.8) through the runtime's cgroup driver, and the OOM
//! notifier: an eventfd registered on the memory cgroup's `memory.oom_control` (cgroup v1),
//! or an inotify watch on `memory.events` (cgroup v2), that wakes when the container hits its
//! limit, or when the cgroup is removed.

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
/// `last` is the value set before, if any (the snapshot's), for cgroup v2: there the kernel
/// keeps a weight (1..=10000) that many share values map to, so the answer is the shares asked
/// for (or set last) when they are what the weight stands for, else the smallest shares that
/// map to the weight (someone else wrote it).
pub fn set_cpu_shares(
    root: &Path,
    id: &str,
    shares: Option<u64>,
    last: Option<u64>,
) -> Result<u64, Error> {
    let fail = |e: String| Error::Request(format!("Failed setting cpu shares: {e}"));
    let m = manager(root, id).map_err(fail)?;
    // The kernel's range; the runtime refuses a value the kernel would change, the original
    // answered with what the kernel made of it (1 -> 2).
    let shares = shares.map(|s| s.clamp(2, 262_144));
    if let Some(shares) = shares {
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
    let stats_err = |e: String| Error::Request(format!("Failed getting cpu stats: {e}"));
    let paths = m.paths();
    let (dir, file) = match (paths.get("cpu"), paths.get("")) {
        (Some(d), _) => (d, "cpu.shares"),
        (None, Some(d)) => (d, "cpu.weight"),
        (None, None) => return Err(stats_err("no cpu cgroup".into())),
    };
    let value: u64 = std::fs::read_to_string(dir.join(file))
        .map_err(|e| stats_err(e.to_string()))?
        .trim()
        .parse()
        .map_err(|e: std::num::ParseIntError| stats_err(e.to_string()))?;
    if file == "cpu.shares" {
        return Ok(value);
    }
    let asked = shares.or(last.map(|s| s.clamp(2, 262_144)));
    Ok(match asked {
        Some(s) if cgroups::shares_to_weight(s) == value => s,
        _ => weight_to_shares(value),
    })
}

/// The smallest cpu.shares that the runtime's mapping turns into `weight`.
fn weight_to_shares(weight: u64) -> u64 {
    let w = weight.clamp(1, 10_000);
    2 + ((w - 1) * 262_142).div_ceil(9_999)
}

/// An armed OOM notifier: its fd becomes readable when the cgroup may have run out of memory
/// or was removed; [`OomNotifier::check`] tells which.
pub struct OomNotifier {
    fd: OwnedFd,
    cgroup: PathBuf,
    kind: Kind,
}

enum Kind {
    /// cgroup v1: an eventfd registered on memory.oom_control, signalled on each OOM (and when
    /// the cgroup goes away).
    V1,
    /// cgroup v2: an inotify watch on memory.events, which the kernel touches whenever one
    /// of its counters moves; an OOM is `oom` or `oom_kill` past what was seen last.
    V2 { seen: u64 },
}

/// What a wake-up of the notifier meant.
#[derive(Debug, PartialEq, Eq)]
pub enum Oom {
    /// The container ran out of memory.
    Happened,
    /// Its cgroup is gone (destroy): no OOM will come.
    Gone,
    /// Something else moved (v2: another counter of memory.events); keep waiting.
    Nothing,
}

impl AsRawFd for OomNotifier {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

impl OomNotifier {
    /// Drains the fd (non-blocking) and says what happened.
    pub fn check(&mut self) -> Oom {
        let mut buf = [0u8; 4096];
        let mut woke = false;
        loop {
            // SAFETY: reads at most buf.len() bytes into buf from our own non-blocking fd.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            woke = true;
        }
        if !self.cgroup.exists() {
            return Oom::Gone;
        }
        match &mut self.kind {
            Kind::V1 if woke => Oom::Happened,
            Kind::V1 => Oom::Nothing,
            Kind::V2 { seen } => {
                let now = v2_ooms(&self.cgroup);
                if now > *seen {
                    *seen = now;
                    Oom::Happened
                } else {
                    Oom::Nothing
                }
            }
        }
    }
}

/// `oom` plus `oom_kill` of v2's memory.events: either growing means an OOM (the limit was
/// hit with nothing left to reclaim, or the killer ran).
fn v2_ooms(dir: &Path) -> u64 {
    let text = std::fs::read_to_string(dir.join("memory.events")).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(k, _)| *k == "oom" || *k == "oom_kill")
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .sum()
}

/// Arms an OOM notifier on the container's memory cgroup: v1's memory.oom_control, else v2's
/// memory.events. None where the host has neither for it.
pub fn oom_notifier(root: &Path, id: &str) -> Result<Option<OomNotifier>, Error> {
    if let Some(dir) = super::runtime::cgroup_dir(root, id, "memory") {
        return v1_notifier(dir);
    }
    match super::runtime::cgroup_dir(root, id, "") {
        Some(dir) => v2_notifier(dir),
        None => Ok(None),
    }
}

fn v1_notifier(dir: PathBuf) -> Result<Option<OomNotifier>, Error> {
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
    let fd = unsafe { OwnedFd::from_raw_fd(efd) };
    let ctl = dir.join("cgroup.event_control");
    std::fs::write(&ctl, format!("{} {}", fd.as_raw_fd(), oom.as_raw_fd()))
        .map_err(|e| Error::io("write", &ctl, e))?;
    Ok(Some(OomNotifier {
        fd,
        cgroup: dir,
        kind: Kind::V1,
    }))
}

fn v2_notifier(dir: PathBuf) -> Result<Option<OomNotifier>, Error> {
    let events = dir.join("memory.events");
    if !events.exists() {
        return Ok(None);
    }
    // SAFETY: inotify_init1 with flags only; the result is a new fd we own, or -1.
    let ifd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
    if ifd < 0 {
        return Err(Error::Sys(format!(
            "inotify_init1: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: ifd is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(ifd) };
    let path = std::ffi::CString::new(events.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::Sys(format!("{} has a NUL byte", events.display())))?;
    // SAFETY: a valid inotify fd and a NUL-terminated path.
    if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), libc::IN_MODIFY) } < 0 {
        return Err(Error::io("watch", &events, std::io::Error::last_os_error()));
    }
    // Counted after the watch is in place, so an OOM in between is not lost.
    let seen = v2_ooms(&dir);
    Ok(Some(OomNotifier {
        fd,
        cgroup: dir,
        kind: Kind::V2 { seen },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_weight_maps_back_to_the_smallest_shares_that_give_it() {
        for shares in [2, 3, 81, 100, 1024, 262_144] {
            let w = cgroups::shares_to_weight(shares);
            let back = weight_to_shares(w);
            assert_eq!(cgroups::shares_to_weight(back), w, "{shares}");
            assert!(back <= shares, "{shares} -> {w} -> {back}");
            assert!(back == 2 || cgroups::shares_to_weight(back - 1) < w);
        }
    }
}
