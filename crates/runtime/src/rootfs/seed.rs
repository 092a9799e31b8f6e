//! A container's mount namespace made from a seed instead of the caller's.
//!
//! A new mount namespace starts as a copy of its creator's, and the kernel's copy (and the
//! init's rslave and old-root detach after it) walks every mount there is. A daemon that
//! mounts every container's rootfs on the host makes that copy grow with each container:
//! measured on kernel 6.18, 0.13 ms beside 20 mounts and 1.1 ms beside 1,000, and about
//! three times that in a whole create. With a seed (`CreateOptions::mount_seed`: a small
//! mount namespace the caller made once, wardend's holds none of the containers' mounts), the
//! runtime enters the seed for the clone only, so the init's namespace is a copy of the seed,
//! and everything the init would have taken from the caller's namespace by path is taken
//! there first as a detached copy ([`super::idmap::clone_slave`]), before the clone: the
//! rootfs ([`rootfs`], attached by the init where `root.path` names it, which must be a
//! directory in the seed too) and the source of every bind mount ([`bind_sources`]), so a
//! bind sees the caller's mounts, not the seed's. What the init still reaches by path in
//! the seed is the kernel's: /dev (the device nodes a user namespace binds), /proc, /sys
//! and the cgroup hierarchies. Namespaces given by path are opened before (see `Plan`).
//!
//! [`make`] makes such a seed: a private copy of the caller's namespace with every mount
//! detached but `/`, /proc, /sys, /dev (with what is under them) and the mounts that hold
//! the paths it is asked to keep (a depot), none of what is under those. Private, so that
//! nothing mounted later reaches it and it grows no more; small, so that it pins nothing an
//! operator would unmount on the host (a copy of a mount keeps its filesystem alive).

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::fcntl::{open, OFlag};
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use oci_spec::runtime::Spec;

use super::idmap;
use super::mounts::Options;
use super::unescape;
use crate::error::{Error, Result, SysContext};

/// The detached copy of the rootfs (and the mounts under it), for the init to attach.
pub fn rootfs(path: &Path) -> Result<OwnedFd> {
    idmap::clone_slave(path, true)
        .map_err(|e| Error::Init(format!("the rootfs {}: {e}", path.display())))
}

/// Adds to `detached` a copy of the source of every bind mount of the spec that has none
/// yet (the idmapped ones have theirs), keyed by the entry's index: the whole tree for
/// `rbind`, the one mount for `bind`. A source relative to the bundle resolves there. One
/// below a dir of `shares` (the seed shows it as ours) is left to the init to bind there.
pub fn bind_sources(
    spec: &Spec,
    bundle: &Path,
    shares: &[std::path::PathBuf],
    detached: &mut BTreeMap<usize, OwnedFd>,
) -> Result<()> {
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let opts = Options::parse(m.options().as_deref().unwrap_or_default());
        if detached.contains_key(&i) || !(m.typ().as_deref() == Some("bind") || opts.is_bind()) {
            continue;
        }
        let source = super::mounts::bind_source(m, bundle)?;
        if shares.iter().any(|d| source.starts_with(d)) {
            continue;
        }
        let recursive = opts.flags.contains(nix::mount::MsFlags::MS_REC);
        let tree = idmap::clone_slave(&source, recursive)
            .map_err(|e| Error::Init(format!("mount {}: {e}", m.destination().display())))?;
        detached.insert(i, tree);
    }
    Ok(())
}

/// The caller's own mount namespace and working directory while it is in the seed.
pub struct Entered {
    own: OwnedFd,
    cwd: OwnedFd,
}

/// Opens the seed given by path (an nsfs file: `/proc/<pid>/ns/mnt`, a bind of one, or a
/// `/proc/<pid>/fd/<n>` that refers to one).
pub fn open_seed(path: &Path) -> Result<OwnedFd> {
    File::open(path)
        .map(OwnedFd::from)
        .map_err(|e| Error::io("open the mount namespace seed", path, e))
}

/// Enters the seed; must be single-threaded (setns of a mount namespace refuses a process
/// whose threads share its filesystem context).
pub fn enter(seed: &OwnedFd) -> Result<Entered> {
    let own = File::open("/proc/self/ns/mnt")
        .map(OwnedFd::from)
        .map_err(|e| Error::io("open", "/proc/self/ns/mnt", e))?;
    let cwd = open(
        ".",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .sys("open the working directory")?;
    nix::sched::setns(seed.as_fd(), CloneFlags::CLONE_NEWNS)
        .sys("setns into the mount namespace seed")?;
    Ok(Entered { own, cwd })
}

impl Entered {
    /// Back into the caller's namespace and working directory (setns changes both).
    pub fn leave(self) -> Result<()> {
        nix::sched::setns(self.own.as_fd(), CloneFlags::CLONE_NEWNS)
            .sys("setns back into the runtime's mount namespace")?;
        nix::unistd::fchdir(self.cwd.as_fd()).sys("chdir back")
    }
}

/// Makes a seed (see the module's text) on the calling thread, which is left in it: call it
/// on a thread of its own, which from then on works in the seed only (wardend's stays, to
/// make copies there). Returns the namespace's fd and how many mounts it kept.
pub fn make(keep: &[&Path]) -> Result<(OwnedFd, usize)> {
    nix::sched::unshare(CloneFlags::CLONE_NEWNS).sys("unshare(CLONE_NEWNS)")?;
    // First, before any unmount: a copy of a shared mount is its peer, and unmounting it
    // would unmount the host's.
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .sys("make the seed's mounts private")?;
    let path = "/proc/thread-self/mountinfo";
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
    let points: Vec<std::path::PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| std::path::PathBuf::from(unescape(p)))
        .collect();
    let (kept, mut gone): (Vec<_>, Vec<_>) = points.into_iter().partition(|p| kept(p, keep));
    // Deepest first, so that each goes by itself (a detached mount takes its children).
    gone.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for p in &gone {
        match nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH) {
            // Gone with one of the same path, or under a mount over it.
            Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(Error::sys(format!("detach {} in the seed", p.display()), e)),
        }
    }
    let fd = File::open("/proc/thread-self/ns/mnt")
        .map(OwnedFd::from)
        .map_err(|e| Error::io("open", "/proc/thread-self/ns/mnt", e))?;
    Ok((fd, kept.len()))
}

/// Whether the seed keeps the mount at `point`: `/`, what is at or under /proc, /sys and
/// /dev, and each mount that holds one of `keep` (at it or above it).
fn kept(point: &Path, keep: &[&Path]) -> bool {
    point == Path::new("/")
        || ["/proc", "/sys", "/dev"]
            .iter()
            .any(|k| point.starts_with(k))
        || keep.iter().any(|k| k.starts_with(point))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_keeps_the_kernels_mounts_and_what_holds_the_depot() {
        let depot = Path::new("/var/lib/warden/depot");
        let keep = |p: &str| kept(Path::new(p), &[depot]);
        for p in [
            "/",
            "/proc",
            "/proc/sys/fs/binfmt_misc",
            "/sys/fs/cgroup/memory",
            "/dev/pts",
            "/var",
            "/var/lib/warden/depot",
        ] {
            assert!(keep(p), "{p}");
        }
        for p in [
            "/var/lib/warden/depot/abc/rootfs",
            "/var/lib/warden/depot/abc/netns",
            "/tmp",
            "/var/lib/other",
            "/devices",
            "/home",
        ] {
            assert!(!keep(p), "{p}");
        }
    }
}
