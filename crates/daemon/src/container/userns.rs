//! The containers' user namespace (`user.namespace_*`): one range of host ids shared by every
//! container, container id `i` being host id `start + i` (uids and gids alike), so container
//! root is an unprivileged host user and each container's `vcap` (its pool uid inside) a
//! host uid of its own.
//!
//! The base rootfs belongs to the host's root, which the namespace does not map. Two ways to
//! show it to the container as its own, chosen by `user.namespace_rootfs`:
//!
//! - an **idmapped** copy of its mount ([`warden_runtime::rootfs::idmap`]) as the overlay's
//!   lower layer: no file is copied, nothing is kept between creates but one user namespace
//!   fd per range. Needs Linux 5.19 (idmapped overlay layers) and a filesystem that can be
//!   idmapped (ext4, xfs, btrfs; tmpfs only since 6.3; not 9p or NFS);
//! - else one **chowned copy** of the base per base and range, `<depot>/.rootfs/<key>`, made by
//!   the first create that needs it (`cp -a`, then every id shifted) and shared by every
//!   container after it.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use oci_spec::runtime::{LinuxIdMapping, LinuxIdMappingBuilder};
use warden_runtime::rootfs::idmap;

use super::Error;
use crate::config::UserNamespace;

/// The namespace's one mapping, for uids and gids alike.
pub fn mappings(ns: &UserNamespace) -> Vec<LinuxIdMapping> {
    vec![LinuxIdMappingBuilder::default()
        .container_id(0u32)
        .host_id(ns.start)
        .size(ns.size)
        .build()
        .expect("all fields set")]
}

/// A user namespace with the range's maps, made once per range and kept (by its fd alone)
/// for the daemon's life: the idmapped mounts are made with it.
fn namespace_fd(ns: &UserNamespace) -> Result<std::os::fd::RawFd, Error> {
    static FDS: OnceLock<Mutex<HashMap<(u32, u32), OwnedFd>>> = OnceLock::new();
    let mut fds = FDS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(fd) = fds.get(&(ns.start, ns.size)) {
        return Ok(std::os::fd::AsRawFd::as_raw_fd(fd));
    }
    let maps = mappings(ns);
    let fd = idmap::user_namespace(&maps, &maps).map_err(|e| Error::Sys(e.to_string()))?;
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    fds.insert((ns.start, ns.size), fd);
    Ok(raw)
}

/// The bases the kernel will not idmap (or not take idmapped under an overlay): a create
/// on one of them goes straight to the chowned copy instead of asking the kernel again.
fn refusals() -> std::sync::MutexGuard<'static, HashSet<PathBuf>> {
    static REFUSED: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    REFUSED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Whether the kernel refused to idmap `base` for an earlier create.
pub fn refused(base: &Path) -> bool {
    refusals().contains(base)
}

/// Remembers `base` as refused when `errno` is an answer that will not change while the
/// daemon runs (the filesystem or the kernel cannot: EINVAL, ENOSYS, EOPNOTSUPP; no
/// privilege: EPERM), not a passing one (out of fds or memory).
pub fn refuse_if_lasting(base: &Path, errno: nix::errno::Errno) {
    use nix::errno::Errno;
    if matches!(
        errno,
        Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP | Errno::EPERM
    ) {
        refusals().insert(base.to_path_buf());
    }
}

/// Makes the range's user namespace now (at daemon start) rather than in the first create.
pub fn prepare(ns: &UserNamespace) -> Result<(), Error> {
    namespace_fd(ns).map(drop)
}

/// Where the idmapped base is mounted while the overlay is made (`<dir>/lower`).
pub fn lower_dir(container_dir: &Path) -> PathBuf {
    container_dir.join("lower")
}

/// Mounts an idmapped copy of `base`'s mount at `<dir>/lower` and returns that path.
pub fn mount_idmapped_lower(
    dir: &Path,
    base: &Path,
    ns: &UserNamespace,
    seed: Option<&super::runtime::MountSeed>,
) -> Result<PathBuf, Error> {
    let raw = namespace_fd(ns)?;
    let clone = move |base: &Path| {
        // SAFETY: the fd is held in FDS for the daemon's life.
        let userns = unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) };
        idmap::clone_idmapped(base, userns, idmap::Depth::Mount)
    };
    // In the seed when it shows the base: a copy walks every mount beside the base on its
    // mount, and the host's `/` holds every container's (2 ms a create at 1,000).
    let cloned = match seed {
        Some(seed) => {
            let b = base.to_path_buf();
            seed.run(move || clone(&b)).unwrap_or_else(|| clone(base))
        }
        None => clone(base),
    };
    let tree = cloned.map_err(|e| {
        if let warden_runtime::Error::Sys { errno, .. } = &e {
            refuse_if_lasting(base, *errno);
        }
        Error::Sys(e.to_string())
    })?;
    let lower = lower_dir(dir);
    std::fs::create_dir(&lower).map_err(|e| Error::io("mkdir", &lower, e))?;
    let target = std::fs::File::open(&lower).map_err(|e| Error::io("open", &lower, e))?;
    idmap::attach(&tree, target.as_fd())
        .map_err(|e| Error::Sys(format!("{e} (to {})", lower.display())))?;
    Ok(lower)
}

/// Detaches `<dir>/lower` (the overlay keeps its own reference) and removes the dir; fine if
/// neither is there.
pub fn unmount_lower(dir: &Path) {
    let lower = lower_dir(dir);
    let _ = nix::mount::umount2(&lower, nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir(&lower);
}

/// The chowned copy of `base` for `ns`, made now if it is not there yet.
pub fn chowned_copy(base: &Path, depot: &Path, ns: &UserNamespace) -> Result<PathBuf, Error> {
    static MAKING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = MAKING.lock().unwrap_or_else(|e| e.into_inner());
    let root = depot.join(".rootfs");
    let copy = root.join(copy_name(base, ns));
    if copy.is_dir() {
        return Ok(copy);
    }
    std::fs::create_dir_all(&root).map_err(|e| Error::io("mkdir", &root, e))?;
    let tmp = root.join(format!(".tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let t = std::time::Instant::now();
    let made = (|| {
        let out = std::process::Command::new("cp")
            .arg("-a")
            .arg("--")
            .arg(base)
            .arg(&tmp)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| Error::io("run cp -a for", base, e))?;
        if !out.status.success() {
            return Err(Error::Sys(format!(
                "cp -a {} {}: {}",
                base.display(),
                tmp.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        shift_ids(&tmp, ns)?;
        std::fs::rename(&tmp, &copy).map_err(|e| Error::io("rename", &tmp, e))
    })();
    if let Err(e) = made {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    tracing::info!(
        base = %base.display(),
        copy = %copy.display(),
        elapsed = ?t.elapsed(),
        "made the chowned copy of the base rootfs for the user namespace"
    );
    Ok(copy)
}

/// `<last component>-<hash of the path>-<start>`: one per base and range, and nothing an
/// overlay option cannot hold.
fn copy_name(base: &Path, ns: &UserNamespace) -> String {
    // FNV-1a: stable across runs (a std hasher is seeded per process).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in base.as_os_str().as_encoded_bytes() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    let last: String = base
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{last}-{h:016x}-{}-{}", ns.start, ns.size)
}

/// Shifts every file's owner and group into the range (an id the range cannot hold becomes
/// the range's last), keeping setuid and setgid bits, which a chown clears.
fn shift_ids(dir: &Path, ns: &UserNamespace) -> Result<(), Error> {
    use nix::unistd::{fchownat, FchownatFlags, Gid, Uid};
    use std::os::unix::fs::PermissionsExt;
    let shift = |id: u32| {
        if id < ns.size {
            ns.start + id
        } else {
            ns.last()
        }
    };
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).map_err(|e| Error::io("stat", &p, e))?;
        fchownat(
            nix::fcntl::AT_FDCWD,
            &p,
            Some(Uid::from_raw(shift(meta.uid()))),
            Some(Gid::from_raw(shift(meta.gid()))),
            FchownatFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| Error::Sys(format!("chown {}: {e}", p.display())))?;
        if meta.file_type().is_symlink() {
            continue;
        }
        if meta.mode() & 0o6000 != 0 {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
                .map_err(|e| Error::io("chmod", &p, e))?;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&p).map_err(|e| Error::io("read dir", &p, e))? {
                stack.push(entry.map_err(|e| Error::io("read dir", &p, e))?.path());
            }
        }
    }
    Ok(())
}

/// The host uid of container uid `uid` in the container's user namespace, read from its
/// init's `uid_map` (so it is right for containers a previous daemon made, whatever today's
/// config says); `uid` itself when the container has no user namespace.
pub fn host_uid(runtime_root: &Path, id: &str, uid: u32) -> u32 {
    let Some(c) = super::runtime::load(runtime_root, id) else {
        return uid;
    };
    let map = std::fs::read_to_string(format!("/proc/{}/uid_map", c.state.pid)).unwrap_or_default();
    map_id(&map, uid).unwrap_or(uid)
}

/// `id` through the lines of a `uid_map` (`inside outside count`).
fn map_id(map: &str, id: u32) -> Option<u32> {
    map.lines().find_map(|l| {
        let f: Vec<u64> = l
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        let [inside, outside, count] = f[..] else {
            return None;
        };
        let id = u64::from(id);
        (id >= inside && id < inside + count).then(|| (outside + id - inside) as u32)
    })
}

/// The daemon's own /dev/fuse node (see the bundle), next to the init binary.
pub fn fuse_node(init: &Path) -> PathBuf {
    init.with_file_name("fuse")
}

/// Makes the node of [`fuse_node`] (c 10:229, mode 0666), replacing any file there.
pub fn make_fuse_node(init: &Path) -> Result<(), Error> {
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    let node = fuse_node(init);
    let _ = std::fs::remove_file(&node);
    mknod(
        &node,
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        makedev(10, 229),
    )
    .map_err(|e| Error::Sys(format!("mknod {}: {e}", node.display())))?;
    std::fs::set_permissions(&node, std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .map_err(|e| Error::io("chmod", &node, e))
}

/// With a user namespace, container root (an unprivileged host uid) must be able to reach
/// the containers' dirs under the depot and the base rootfs: every dir above them must be
/// searchable by others. Checked at start, naming the key and the dir.
pub fn check_reachable(key: &str, path: &Path) -> Result<(), String> {
    let mut p = Some(path);
    while let Some(dir) = p {
        if let Ok(meta) = std::fs::metadata(dir) {
            if meta.mode() & 0o001 == 0 {
                return Err(format!(
                    "config key {key}: {}: container root (a host uid of user.namespace_start_uid's range) cannot reach it: {} has mode {:o} (needs o+x)",
                    path.display(),
                    dir.display(),
                    meta.mode() & 0o7777
                ));
            }
        }
        p = dir.parent();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_through_a_map() {
        assert_eq!(
            map_id("         0 2000000000      65536\n", 0),
            Some(2000000000)
        );
        assert_eq!(map_id("0 2000000000 65536\n", 10003), Some(2000010003));
        assert_eq!(map_id("0 2000000000 65536\n", 65536), None);
        assert_eq!(map_id("0 0 4294967295\n", 10003), Some(10003));
    }

    #[test]
    fn only_lasting_refusals_are_remembered() {
        use nix::errno::Errno;
        let passing = Path::new("/nonexistent/userns-test/passing");
        for errno in [Errno::ENOMEM, Errno::EMFILE, Errno::ENOENT, Errno::EBUSY] {
            refuse_if_lasting(passing, errno);
        }
        assert!(!refused(passing));
        for (i, errno) in [
            Errno::EINVAL,
            Errno::ENOSYS,
            Errno::EOPNOTSUPP,
            Errno::EPERM,
        ]
        .into_iter()
        .enumerate()
        {
            let base = PathBuf::from(format!("/nonexistent/userns-test/lasting-{i}"));
            assert!(!refused(&base));
            refuse_if_lasting(&base, errno);
            assert!(refused(&base), "{errno}");
        }
    }

    #[test]
    fn copy_names_fit_an_overlay_option() {
        let ns = UserNamespace {
            start: 100000,
            size: 65536,
            rootfs: crate::config::NamespaceRootfs::Copy,
        };
        let n = copy_name(Path::new("/var/cache/warden/root,fs:x"), &ns);
        assert!(
            n.starts_with("root_fs_x-") && n.ends_with("-100000-65536"),
            "{n}"
        );
        assert_ne!(n, copy_name(Path::new("/var/cache/warden/root_fs_x"), &ns));
    }
}
