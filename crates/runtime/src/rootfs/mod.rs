//! The container's root filesystem, set up by the init inside its new mount namespace:
//!
//! 1. [`prepare`] (before pivot_root): the propagation of `/` (rootfsPropagation, else
//!    rslave, so nothing we mount leaks to the host), the rootfs bound onto itself, every
//!    entry of `mounts` in order, and /dev's devices and symlinks.
//! 2. [`pivot`]: pivot_root into the rootfs and detach the old root (or, with `--no-pivot`,
//!    move the rootfs onto `/` and chroot).
//! 3. [`finalize`] (after): readonlyPaths, maskedPaths, a read-only `/`, and last
//!    rootfsPropagation on `/`.

pub mod devices;
pub mod idmap;
pub mod mounts;
pub mod path;
pub mod seed;

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;
use oci_spec::runtime::Spec;

use crate::error::{Error, Result, SysContext};
use mounts::{propagation_flag, Context};

/// What the rootfs steps need besides the spec.
#[derive(Debug, Clone)]
pub struct RootfsOptions {
    pub rootfs: PathBuf,
    pub bundle: PathBuf,
    pub no_pivot: bool,
    pub in_user_ns: bool,
    pub new_net_ns: bool,
    pub cgroup_paths: BTreeMap<String, PathBuf>,
    /// The container has a mount namespace of its own. Without one (the spec allows it: the
    /// runtime's is inherited) the host's propagation is left alone, the rootfs is entered
    /// with chroot, and what the container mounts is the host's until `delete` unmounts it
    /// (see [`unmount_new`]).
    pub own_mount_ns: bool,
}

/// Everything before pivot_root. Must run in the container's own mount namespace.
/// `detached` holds the copies of mounts the runtime made ([`idmap::detached_mounts`],
/// [`seed::bind_sources`]); `rootfs_tree` the rootfs's, with a seed ([`seed`]).
pub fn prepare(
    spec: &Spec,
    opts: &RootfsOptions,
    detached: &BTreeMap<usize, std::os::fd::OwnedFd>,
    rootfs_tree: Option<&std::os::fd::OwnedFd>,
) -> Result<()> {
    let linux = spec.linux().as_ref();
    let propagation = match linux.and_then(|l| l.rootfs_propagation().as_deref()) {
        None | Some("") => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        Some(p) => propagation_flag(p)
            .ok_or_else(|| Error::Config(format!("unknown rootfsPropagation {p:?}")))?,
    };
    // An unbindable tree cannot have the rootfs bound onto itself: until `finalize` makes
    // `/` unbindable, it is private (an unbindable mount is private too).
    let propagation = if propagation.contains(MsFlags::MS_UNBINDABLE) {
        MsFlags::MS_PRIVATE | (propagation & MsFlags::MS_REC)
    } else {
        propagation
    };
    if opts.own_mount_ns {
        mount(None::<&str>, "/", None::<&str>, propagation, None::<&str>)
            .sys(format!("set propagation {propagation:?} on /"))?;
        // pivot_root needs the new root's parent mount not to be shared.
        if propagation.contains(MsFlags::MS_SHARED) {
            make_parent_private(&opts.rootfs)?;
        }
    }
    if let Some(tree) = rootfs_tree {
        // Made from a seed: the rootfs is the runtime's copy, put where root.path says.
        let at = open(
            &opts.rootfs,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            Error::Init(format!(
                "the rootfs {} is not a directory in the mount namespace seed: {e}",
                opts.rootfs.display()
            ))
        })?;
        idmap::attach(tree, at.as_fd()).map_err(|e| {
            Error::Init(format!("attach the rootfs {}: {e}", opts.rootfs.display()))
        })?;
    } else {
        // The rootfs becomes a mount point of its own (pivot_root needs one).
        mount(
            Some(&opts.rootfs),
            &opts.rootfs,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .sys(format!("bind {} onto itself", opts.rootfs.display()))?;
    }
    if !opts.own_mount_ns {
        // In the host's namespace: our bind (and the copies under it) must not be a peer
        // of the host's mounts, or every mount below would propagate back into them.
        mount(
            None::<&str>,
            &opts.rootfs,
            None::<&str>,
            MsFlags::MS_PRIVATE | MsFlags::MS_REC,
            None::<&str>,
        )
        .sys(format!("make {} private", opts.rootfs.display()))?;
    }

    let ctx = Context {
        rootfs: &opts.rootfs,
        in_user_ns: opts.in_user_ns,
        new_net_ns: opts.new_net_ns,
        cgroup_paths: &opts.cgroup_paths,
        detached,
    };
    // Bind sources given relative to the bundle (runc allows this) resolve there.
    std::env::set_current_dir(&opts.bundle).map_err(|e| Error::io("chdir", &opts.bundle, e))?;
    let all_mounts = spec.mounts().as_deref().unwrap_or_default();
    for (i, m) in all_mounts.iter().enumerate() {
        mounts::mount_entry(i, m, &ctx)?;
    }

    let dev_is_bound = all_mounts.iter().any(|m| {
        m.destination() == Path::new("/dev")
            && (m.typ().as_deref() == Some("bind")
                || m.options()
                    .iter()
                    .flatten()
                    .any(|o| o == "bind" || o == "rbind"))
    });
    if !dev_is_bound {
        let extra = linux
            .and_then(|l| l.devices().as_deref())
            .unwrap_or_default();
        devices::create(&opts.rootfs, extra, opts.in_user_ns)?;
        devices::symlinks(&opts.rootfs)?;
    }
    Ok(())
}

/// Makes the mount that holds `path` private (pivot_root refuses a shared parent).
fn make_parent_private(path: &Path) -> Result<()> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("read", "/proc/self/mountinfo", e))?;
    let mut best: Option<PathBuf> = None;
    for line in mountinfo.lines() {
        let Some(point) = line.split(' ').nth(4) else {
            continue;
        };
        let point = PathBuf::from(unescape(point));
        if path.starts_with(&point)
            && best
                .as_ref()
                .is_none_or(|b| point.as_os_str().len() > b.as_os_str().len())
        {
            best = Some(point);
        }
    }
    let parent = best.unwrap_or_else(|| PathBuf::from("/"));
    mount(
        None::<&str>,
        &parent,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .sys(format!("make {} private", parent.display()))
}

/// Makes the rootfs `/`.
pub fn pivot(opts: &RootfsOptions) -> Result<()> {
    let root = &opts.rootfs;
    if !opts.own_mount_ns {
        // pivot_root or a move would change the host's root: chroot, as runc does.
        std::env::set_current_dir(root).map_err(|e| Error::io("chdir", root, e))?;
        nix::unistd::chroot(".").sys("chroot .")?;
        return std::env::set_current_dir("/").map_err(|e| Error::io("chdir", "/", e));
    }
    if opts.no_pivot {
        std::env::set_current_dir(root).map_err(|e| Error::io("chdir", root, e))?;
        mount(
            Some(root),
            "/",
            None::<&str>,
            MsFlags::MS_MOVE,
            None::<&str>,
        )
        .sys(format!("move {} to /", root.display()))?;
        nix::unistd::chroot(".").sys("chroot .")?;
        return std::env::set_current_dir("/").map_err(|e| Error::io("chdir", "/", e));
    }
    let dir = OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    let old_root = open("/", dir, Mode::empty()).sys("open /")?;
    let new_root = open(root, dir, Mode::empty()).sys(format!("open {}", root.display()))?;
    nix::unistd::fchdir(new_root.as_fd()).sys(format!("chdir {}", root.display()))?;
    // pivot_root(".", "."): the old root ends up stacked under the new one at "/", where it
    // can be detached without a directory for it in the container.
    nix::unistd::pivot_root(".", ".").sys(format!("pivot_root {}", root.display()))?;
    nix::unistd::fchdir(old_root.as_fd()).sys("chdir old root")?;
    // Keep the unmount from propagating to the host.
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .sys("make old root rslave")?;
    umount2(".", MntFlags::MNT_DETACH).sys("detach old root")?;
    std::env::set_current_dir("/").map_err(|e| Error::io("chdir", "/", e))
}

/// After pivot_root: stdio fds that are the host's /dev/null (a caller's `< /dev/null`,
/// conmon's stdin) become the container's own /dev/null, as runc does: a file on a mount the
/// container's namespace does not have is one CRIU cannot checkpoint (`Can't lookup mount=N
/// for fd=0 path=/dev/null`). Without a /dev/null in the container nothing changes.
pub fn reopen_dev_null() -> Result<()> {
    let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    else {
        return Ok(());
    };
    // SAFETY: fstat into a zeroed stat of our own; fds 0-2 may be closed (fstat fails).
    let stat = |fd: i32| unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        (libc::fstat(fd, &mut st) == 0).then_some(st)
    };
    let Some(want) = stat(std::os::fd::AsRawFd::as_raw_fd(&null)) else {
        return Ok(());
    };
    if want.st_mode & libc::S_IFMT != libc::S_IFCHR {
        return Ok(());
    }
    for fd in 0..3 {
        let Some(st) = stat(fd) else { continue };
        // By device number alone, as runc: in a user namespace the container's /dev/null is
        // the host's node bound in, the same inode on a mount of the container's.
        if st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == want.st_rdev {
            // SAFETY: dup3 of our own fd onto a stdio fd.
            if unsafe { libc::dup3(std::os::fd::AsRawFd::as_raw_fd(&null), fd, 0) } < 0 {
                return Err(Error::sys(
                    format!("reopen /dev/null as fd {fd}"),
                    nix::errno::Errno::last(),
                ));
            }
        }
    }
    Ok(())
}

/// After pivot_root: paths made read-only or masked, the root itself read-only, then
/// rootfsPropagation on the new `/` (before the pivot the parent had to be private, so `/` is
/// not shared with the host even when `rshared` is asked for: it gets a peer group of its
/// own).
pub fn finalize(spec: &Spec, _opts: &RootfsOptions) -> Result<()> {
    let linux = spec.linux().as_ref();
    // Before readonlyPaths makes /proc/sys read-only. Only namespaced keys get here
    // (spec::validate).
    for (key, value) in linux
        .and_then(|l| l.sysctl().as_ref())
        .into_iter()
        .flatten()
    {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        std::fs::write(&path, value)
            .map_err(|e| Error::Init(format!("sysctl {key}={value:?}: write {path}: {e}")))?;
    }
    for p in linux
        .and_then(|l| l.readonly_paths().as_deref())
        .unwrap_or_default()
    {
        readonly_path(Path::new(p))?;
    }
    for p in linux
        .and_then(|l| l.masked_paths().as_deref())
        .unwrap_or_default()
    {
        mask_path(Path::new(p))?;
    }
    if spec
        .root()
        .as_ref()
        .is_some_and(|r| r.readonly().unwrap_or(false))
    {
        let flags = MsFlags::MS_RDONLY | mounts::current_flags(Path::new("/"));
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags,
            None::<&str>,
        )
        .sys("remount / read-only")?;
    }
    // Last: readonlyPaths bind mounts cannot be made from an unbindable tree.
    if let Some(p) = linux
        .and_then(|l| l.rootfs_propagation().as_deref())
        .filter(|p| !p.is_empty())
    {
        let flag = propagation_flag(p)
            .ok_or_else(|| Error::Config(format!("unknown rootfsPropagation {p:?}")))?;
        mount(None::<&str>, "/", None::<&str>, flag, None::<&str>)
            .sys(format!("set rootfsPropagation {p} on /"))?;
    }
    Ok(())
}

fn readonly_path(p: &Path) -> Result<()> {
    match mount(
        Some(p),
        p,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    ) {
        Ok(()) => {}
        Err(nix::errno::Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(Error::sys(format!("bind readonly path {}", p.display()), e)),
    }
    let flags =
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | mounts::current_flags(p);
    mount(None::<&str>, p, None::<&str>, flags, None::<&str>)
        .sys(format!("remount readonly path {} read-only", p.display()))
}

fn mask_path(p: &Path) -> Result<()> {
    let meta = match std::fs::metadata(p) {
        Ok(m) => m,
        Err(_) => return Ok(()),
    };
    let r = if meta.is_dir() {
        mount(
            Some("tmpfs"),
            p,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
    } else {
        mount(
            Some("/dev/null"),
            p,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    };
    match r {
        // Gone, or a path through a file (runc tolerates both).
        Ok(()) | Err(nix::errno::Errno::ENOENT) | Err(nix::errno::Errno::ENOTDIR) => Ok(()),
        Err(e) => Err(Error::sys(format!("mask {}", p.display()), e)),
    }
}

/// The ids of the mounts at or below `rootfs` in our mount namespace.
pub fn mounts_under(rootfs: &Path) -> Result<std::collections::BTreeSet<u64>> {
    Ok(mountinfo_under(rootfs)?
        .into_iter()
        .map(|(id, _)| id)
        .collect())
}

fn mountinfo_under(rootfs: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("read", "/proc/self/mountinfo", e))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.split(' ');
        let (Some(id), Some(point)) = (f.next(), f.nth(3)) else {
            continue;
        };
        let Ok(id) = id.parse::<u64>() else { continue };
        let point = PathBuf::from(unescape(point));
        if point.starts_with(rootfs) {
            out.push((id, point));
        }
    }
    Ok(out)
}

/// Unmounts what was mounted at or below `rootfs` since `before` was taken (a container
/// without a mount namespace of its own mounts into the host's), deepest first, and leaves
/// the mounts that were there already. Errors are logged: the rest is still tried.
pub fn unmount_new(rootfs: &Path, before: &std::collections::BTreeSet<u64>) {
    let Ok(now) = mountinfo_under(rootfs) else {
        return;
    };
    // mountinfo lists mounts in the order they were made: undo them newest first.
    for (_, point) in now.iter().rev().filter(|(id, _)| !before.contains(id)) {
        if let Err(e) = umount2(point, MntFlags::MNT_DETACH) {
            tracing::warn!("unmount {}: {e}", point.display());
        }
    }
}

/// A mountinfo field with its octal escapes (`\\040` for a space...) decoded.
pub(crate) fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let code = b.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (b[i], code) {
            (b'\\', Some(c)) => {
                out.push(c);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(super::unescape("/a\\040b\\011c"), "/a b\tc");
        assert_eq!(super::unescape("/plain"), "/plain");
        assert_eq!(super::unescape("/x\\"), "/x\\");
    }
}
