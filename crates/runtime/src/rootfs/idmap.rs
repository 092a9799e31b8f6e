//! Idmapped mounts (Linux 5.12+, `mount_setattr(2)` with `MOUNT_ATTR_IDMAP`): a copy of a
//! mount whose files appear with their owners shifted through a user namespace's id maps, so
//! a container whose root is host uid 100000 sees a base rootfs owned by host root as its own,
//! without a chowned copy of it. The same syscall sets the runtime-spec's recursive mount
//! attributes (`rro`, `rnosuid`...: [`set_recursive`]).
//!
//! Three steps, each usable on its own: [`user_namespace`] makes a user namespace with given
//! maps (held only by the returned fd: no process stays in it), [`clone_idmapped`] makes a
//! detached, idmapped copy of the mount at a path, [`attach`] puts a detached mount at a path.
//! Safe to call from a multithreaded process (wardend): the one child forked in between runs
//! nothing but read(2) and _exit(2).
//!
//! For an OCI bundle, [`detached_mounts`] runs the first two for every entry of `mounts` with
//! `uidMappings`/`gidMappings` or `idmap`/`ridmap`, in the runtime (the host's user namespace:
//! only there may a host filesystem be idmapped), before the init is cloned; the init inherits
//! the fds and attaches each in its place among the other mounts.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Mount, Spec};

use crate::error::{Error, Result};

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x04;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;

// mount_setattr(2)'s attributes (linux/mount.h).
pub const MOUNT_ATTR_RDONLY: u64 = 0x01;
pub const MOUNT_ATTR_NOSUID: u64 = 0x02;
pub const MOUNT_ATTR_NODEV: u64 = 0x04;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x08;
/// The atime setting is a 3-bit field: one of the three values below, never a mix.
pub const MOUNT_ATTR__ATIME: u64 = 0x70;
pub const MOUNT_ATTR_RELATIME: u64 = 0x00;
pub const MOUNT_ATTR_NOATIME: u64 = 0x10;
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
pub const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// A new user namespace with these maps, held by the returned fd alone. Needs the
/// privileges to write such maps (CAP_SETUID and CAP_SETGID over the caller's namespace).
pub fn user_namespace(uid_maps: &[LinuxIdMapping], gid_maps: &[LinuxIdMapping]) -> Result<OwnedFd> {
    let (r, w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::sys("pipe", e))?;
    // SAFETY: clone with fork semantics; the child calls only read(2) and _exit(2), which
    // are async-signal-safe, so it is sound in a multithreaded caller too.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if ret < 0 {
        return Err(Error::sys(
            "clone(CLONE_NEWUSER) for an idmap",
            nix::errno::Errno::last(),
        ));
    }
    if ret == 0 {
        let mut b = 0u8;
        // SAFETY: close our copy of the write end (so the parent's close is the EOF), read
        // into a byte we own, then _exit: nothing else runs in the child.
        unsafe {
            libc::close(w.as_raw_fd());
            libc::read(r.as_raw_fd(), (&mut b as *mut u8).cast(), 1);
            libc::_exit(0);
        }
    }
    drop(r);
    let pid = Pid::from_raw(ret as i32);
    let result = (|| {
        for (file, text) in [
            ("uid_map", map_text(uid_maps)),
            ("gid_map", map_text(gid_maps)),
        ] {
            let path = format!("/proc/{pid}/{file}");
            std::fs::write(&path, text.as_bytes()).map_err(|e| Error::io("write", &path, e))?;
        }
        let path = format!("/proc/{pid}/ns/user");
        File::open(&path)
            .map(OwnedFd::from)
            .map_err(|e| Error::io("open", &path, e))
    })();
    // EOF on the pipe lets the child go; the namespace lives on in our fd.
    drop(w);
    let _ = nix::sys::wait::waitpid(pid, None);
    result
}

fn cpath(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::Config(format!("{} contains a NUL byte", path.display())))
}

/// mount_setattr(2) on the mount `fd` refers to (AT_EMPTY_PATH), plus `at_flags`.
fn setattr(
    fd: BorrowedFd,
    at_flags: libc::c_uint,
    attr: &MountAttr,
) -> std::result::Result<(), Errno> {
    let empty: &CStr = c"";
    // SAFETY: mount_setattr reads `attr` (of the size given) and the empty path.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | at_flags,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// Which mounts a copy takes, and which of them are idmapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// The mount at the path alone (a `bind`).
    Mount,
    /// It and every mount under it, the top one idmapped (`rbind` with `idmap`).
    Tree,
    /// It and every mount under it, each idmapped (`rbind` with `ridmap`).
    TreeIdmapped,
}

/// A detached copy of the mount at `path` (with the mounts under it as `depth` says) whose
/// ids are mapped through `userns`: a file of host uid `h` appears as the uid the
/// namespace's map takes `h` to. The copy and its submounts are slaves of what they copy
/// (as a bind made in a container's rslave namespace is): mounts made under them never
/// propagate back. Fails where the filesystem cannot be idmapped (EINVAL on tmpfs before
/// 6.3, 9p, NFS, proc...).
pub fn clone_idmapped(path: &Path, userns: BorrowedFd, depth: Depth) -> Result<OwnedFd> {
    let tree = clone_slave(path, depth != Depth::Mount)?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    let idmap_flags = if depth == Depth::TreeIdmapped {
        libc::AT_RECURSIVE as libc::c_uint
    } else {
        0
    };
    setattr(tree.as_fd(), idmap_flags, &attr).map_err(|e| {
        Error::sys(
            format!("mount_setattr(MOUNT_ATTR_IDMAP) on {}", path.display()),
            e,
        )
    })?;
    Ok(tree)
}

/// A detached copy of the mount at `path` (`recursive`: with every mount under it), a slave
/// of what it copies: mounts made under it never propagate back, and mounts made under the
/// original later do reach it (as with a bind in a container's rslave namespace). Held by
/// the returned fd only; [`attach`] puts it somewhere.
pub fn clone_slave(path: &Path, recursive: bool) -> Result<OwnedFd> {
    let c = cpath(path)?;
    let recursive = if recursive {
        libc::AT_RECURSIVE as libc::c_uint
    } else {
        0
    };
    // SAFETY: open_tree reads the NUL-terminated path; returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | recursive,
        )
    };
    if fd < 0 {
        return Err(Error::sys(
            format!("open_tree {}", path.display()),
            Errno::last(),
        ));
    }
    // SAFETY: a fresh fd that we own.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let slave = MountAttr {
        attr_set: 0,
        attr_clr: 0,
        propagation: libc::MS_SLAVE,
        userns_fd: 0,
    };
    setattr(tree.as_fd(), libc::AT_RECURSIVE as libc::c_uint, &slave)
        .map_err(|e| Error::sys(format!("make the copy of {} a slave", path.display()), e))?;
    Ok(tree)
}

/// Mounts the detached mount `tree` on the directory or file `target` refers to (an
/// O_PATH fd resolved safely, see `path::open_in_root`).
pub fn attach(tree: impl AsFd, target: BorrowedFd) -> Result<()> {
    let empty: &CStr = c"";
    // SAFETY: move_mount reads the two empty paths; both ends are fds.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_fd().as_raw_fd(),
            empty.as_ptr(),
            target.as_raw_fd(),
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(Error::sys("move_mount", Errno::last()));
    }
    Ok(())
}

/// Sets and clears `MOUNT_ATTR_*` attributes on the mount `target` refers to and on every
/// mount under it (AT_RECURSIVE): the runtime-spec's `rro`, `rnosuid`... options.
pub fn set_recursive(target: BorrowedFd, set: u64, clear: u64) -> std::result::Result<(), Errno> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    setattr(target, libc::AT_RECURSIVE as libc::c_uint, &attr)
}

/// Where a mount's id mapping comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapping {
    /// Its own `uidMappings`/`gidMappings`, or (`idmap` alone) those of the container's new
    /// user namespace: host ids, as in `linux.uidMappings`.
    Maps(Vec<LinuxIdMapping>, Vec<LinuxIdMapping>),
    /// `idmap` alone in a container that joins a user namespace: that namespace.
    Joined(PathBuf),
}

/// What idmapping a `mounts` entry asks for: none, or where its maps come from and how deep
/// it goes. As runc 1.2: `uidMappings`/`gidMappings` (both) make a bind mount idmapped even
/// without `idmap`; `idmap` or `ridmap` alone take the container's user namespace's maps;
/// `ridmap` idmaps the submounts of an `rbind` too. An error (bad input) names the mount.
pub fn requested(m: &Mount, spec: &Spec) -> std::result::Result<Option<(Mapping, Depth)>, String> {
    let opts = super::mounts::Options::parse(m.options().as_deref().unwrap_or_default());
    let dest = m.destination().display();
    let uids = m.uid_mappings().clone().unwrap_or_default();
    let gids = m.gid_mappings().clone().unwrap_or_default();
    if opts.idmap.is_none() && m.uid_mappings().is_none() && m.gid_mappings().is_none() {
        return Ok(None);
    }
    if !(m.typ().as_deref() == Some("bind") || opts.is_bind()) {
        return Err(format!(
            "mounts: {dest}: an idmapped mount (uidMappings/gidMappings, idmap, ridmap) must be \
             a bind mount, not type {:?}",
            m.typ().as_deref().unwrap_or("")
        ));
    }
    let rbind = opts.flags.contains(nix::mount::MsFlags::MS_REC);
    let depth = match (rbind, opts.idmap) {
        (false, _) => Depth::Mount,
        (true, Some(true)) => Depth::TreeIdmapped,
        (true, _) => Depth::Tree,
    };
    if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
        if uids.is_empty() || gids.is_empty() {
            return Err(format!(
                "mounts: {dest}: an idmapped mount needs both uidMappings and gidMappings"
            ));
        }
        for (what, maps) in [("uidMappings", &uids), ("gidMappings", &gids)] {
            for map in maps {
                if map.size() == 0
                    || u64::from(map.container_id()) + u64::from(map.size()) > 1 << 32
                    || u64::from(map.host_id()) + u64::from(map.size()) > 1 << 32
                {
                    return Err(format!(
                        "mounts: {dest}: {what} entry {{containerID {}, hostID {}, size {}}} \
                         is not a valid range",
                        map.container_id(),
                        map.host_id(),
                        map.size()
                    ));
                }
            }
        }
        return Ok(Some((Mapping::Maps(uids, gids), depth)));
    }
    let linux = spec.linux().as_ref();
    let user_ns = linux
        .and_then(|l| l.namespaces().as_ref())
        .and_then(|n| n.iter().find(|n| n.typ() == LinuxNamespaceType::User));
    match user_ns {
        Some(ns) if ns.path().is_some() => Ok(Some((
            Mapping::Joined(ns.path().clone().expect("checked")),
            depth,
        ))),
        Some(_) => {
            let l = linux.expect("a namespace is listed");
            Ok(Some((
                Mapping::Maps(
                    l.uid_mappings().clone().unwrap_or_default(),
                    l.gid_mappings().clone().unwrap_or_default(),
                ),
                depth,
            )))
        }
        None => Err(format!(
            "mounts: {dest}: option {} without uidMappings/gidMappings takes the container's \
             user namespace mappings, and the container has no user namespace",
            if opts.idmap == Some(true) {
                "ridmap"
            } else {
                "idmap"
            }
        )),
    }
}

/// The filesystem type of the mount holding `path`, as /proc/self/mountinfo names it.
fn fs_type(path: &Path) -> Option<String> {
    let file = File::open(path).ok()?;
    let fdinfo = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", file.as_raw_fd())).ok()?;
    let mnt_id = fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))?
        .trim()
        .to_string();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|l| {
        let (fields, rest) = l.split_once(" - ")?;
        (fields.split(' ').next()? == mnt_id).then(|| rest.split(' ').next().map(String::from))?
    })
}

/// Makes, in the runtime, the detached idmapped copy of every entry of `mounts` that asks
/// for one ([`requested`]), keyed by the entry's index. A bind source relative to the
/// bundle resolves there. User namespaces made for the maps are shared by entries with the
/// same maps and closed on return (an idmapped mount keeps its own reference).
pub fn detached_mounts(spec: &Spec, bundle: &Path) -> Result<BTreeMap<usize, OwnedFd>> {
    let mut out = BTreeMap::new();
    let mut namespaces: BTreeMap<(String, String), OwnedFd> = BTreeMap::new();
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let Some((mapping, depth)) = requested(m, spec).map_err(Error::Config)? else {
            continue;
        };
        let dest = m.destination().display();
        let source = super::mounts::bind_source(m, bundle)?;
        let joined;
        let userns = match &mapping {
            Mapping::Maps(uids, gids) => {
                let key = (map_text(uids), map_text(gids));
                if !namespaces.contains_key(&key) {
                    let fd = user_namespace(uids, gids).map_err(|e| {
                        Error::Init(format!(
                            "mount {dest}: a user namespace with its id mappings: {e}"
                        ))
                    })?;
                    namespaces.insert(key.clone(), fd);
                }
                namespaces[&key].as_fd()
            }
            Mapping::Joined(path) => {
                joined = File::open(path).map_err(|e| Error::io("open", path, e))?;
                joined.as_fd()
            }
        };
        let tree = clone_idmapped(&source, userns, depth).map_err(|e| match e {
            Error::Sys {
                errno: Errno::EINVAL,
                call,
            } if call.starts_with("mount_setattr") => {
                let fs = fs_type(&source).unwrap_or_else(|| "unknown".into());
                let under = if depth == Depth::TreeIdmapped {
                    " (or a mount under it)"
                } else {
                    ""
                };
                Error::Init(format!(
                    "mount {dest}: the filesystem of {} ({fs}){under} cannot be idmapped on \
                     this kernel: mount_setattr(MOUNT_ATTR_IDMAP): EINVAL",
                    source.display()
                ))
            }
            other => Error::Init(format!("mount {dest}: {other}")),
        })?;
        out.insert(i, tree);
    }
    Ok(out)
}
