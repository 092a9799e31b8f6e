//! Idmapped mounts (Linux 5.12+, `mount_setattr(2)` with `MOUNT_ATTR_IDMAP`): a copy of a
//! mount whose files appear with their owners shifted through a user namespace's id maps, so
//! a container whose root is host uid 100000 sees a base rootfs owned by host root as its own,
//! without a chowned copy of it.
//!
//! Three steps, each usable on its own: [`user_namespace`] makes a user namespace with given
//! maps (held only by the returned fd: no process stays in it), [`clone_idmapped`] makes a
//! detached, idmapped copy of the mount at a path, [`attach`] puts a detached mount at a path.
//! Safe to call from a multithreaded process (wardend): the one child forked in between runs
//! nothing but read(2) and _exit(2).

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::unistd::Pid;
use oci_spec::runtime::LinuxIdMapping;

use crate::error::{Error, Result};

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x04;

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

/// A detached copy of the mount at `path` (that directory and what is below it on the same
/// mount, not the mounts under it) whose ids are mapped through `userns`: a file of host uid
/// `h` appears as the uid the namespace's map takes `h` to. Fails where the filesystem
/// cannot be idmapped (EINVAL on tmpfs before 6.3, 9p, NFS...).
pub fn clone_idmapped(path: &Path, userns: BorrowedFd) -> Result<OwnedFd> {
    let c = cpath(path)?;
    // SAFETY: open_tree reads the NUL-terminated path; returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(Error::sys(
            format!("open_tree {}", path.display()),
            nix::errno::Errno::last(),
        ));
    }
    // SAFETY: a fresh fd that we own.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    let empty = c"";
    // SAFETY: mount_setattr reads `attr` (of the size given) and the empty path.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(Error::sys(
            format!("mount_setattr(MOUNT_ATTR_IDMAP) on {}", path.display()),
            nix::errno::Errno::last(),
        ));
    }
    Ok(tree)
}

/// Mounts the detached mount `tree` at `target`.
pub fn attach(tree: impl AsFd, target: &Path) -> Result<()> {
    let c = cpath(target)?;
    let empty = c"";
    // SAFETY: move_mount reads the two NUL-terminated paths.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_fd().as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            c.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(Error::sys(
            format!("move_mount to {}", target.display()),
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}
