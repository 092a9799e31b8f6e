//! Thin fd-relative primitives. Every path the container controls is resolved either by
//! `openat2(RESOLVE_IN_ROOT)` on the container root or one component at a time below a directory
//! fd with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, so the kernel, not a string check, keeps each
//! lookup inside the container even while a process in it swaps symlinks around.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag, AT_FDCWD};
use nix::sys::stat::{fstat, FileStat, Mode, SFlag};
use nix::unistd::{Gid, Uid};

/// How often a lookup in the root is retried when the kernel answers EAGAIN (a rename or mount
/// raced with a `..` walk).
const EAGAIN_RETRIES: usize = 64;

/// The kind of a file, from its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    File,
    Dir,
    Symlink,
    /// A device, fifo or socket, named for messages.
    Special(&'static str),
}

pub(super) fn kind(st: &FileStat) -> Kind {
    match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFREG => Kind::File,
        SFlag::S_IFDIR => Kind::Dir,
        SFlag::S_IFLNK => Kind::Symlink,
        SFlag::S_IFIFO => Kind::Special("fifo"),
        SFlag::S_IFSOCK => Kind::Special("socket"),
        SFlag::S_IFCHR => Kind::Special("character device"),
        SFlag::S_IFBLK => Kind::Special("block device"),
        _ => Kind::Special("file of unknown type"),
    }
}

/// Opens `path` as the process whose root is `root` would: absolute paths, `..` and symlinks
/// (absolute or relative) all stay below `root`; magic links (`/proc/*/fd/*`) are refused.
pub(super) fn open_in_root(root: &OwnedFd, path: &[u8], flags: OFlag) -> nix::Result<OwnedFd> {
    let path = if path.is_empty() {
        b"/".as_slice()
    } else {
        path
    };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    retry_eagain(|| openat2(root, OsStr::from_bytes(path), how))
}

/// Opens a host path the ordinary way (the operator's paths are trusted).
pub(super) fn open_host(path: &[u8], flags: OFlag) -> nix::Result<OwnedFd> {
    openat(
        AT_FDCWD,
        OsStr::from_bytes(path),
        flags | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Opens the single component `name` in `dir`, never following a symlink and never leaving
/// `dir` (`name` must not be `..`; `openat2` refuses it anyway). With `O_PATH | O_NOFOLLOW` a
/// symlink itself is opened.
pub(super) fn open_child(
    dir: &OwnedFd,
    name: &OsStr,
    flags: OFlag,
    mode: Mode,
) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .mode(mode)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    retry_eagain(|| openat2(dir, name, how))
}

fn retry_eagain(mut f: impl FnMut() -> nix::Result<OwnedFd>) -> nix::Result<OwnedFd> {
    let mut last = Errno::EAGAIN;
    for _ in 0..EAGAIN_RETRIES {
        match f() {
            Err(Errno::EAGAIN) => last = Errno::EAGAIN,
            Err(Errno::EINTR) => last = Errno::EINTR,
            other => return other,
        }
    }
    Err(last)
}

/// A readable fd for the directory an `O_PATH` fd names.
pub(super) fn reopen_dir(fd: &OwnedFd) -> nix::Result<OwnedFd> {
    openat(
        fd,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// A readable file for the regular file an `O_PATH` fd names. Reopening through
/// `/proc/self/fd` opens exactly the inode already checked to be a regular file, so a fifo or a
/// device swapped in under the same name is never opened.
pub(super) fn reopen_file(fd: &OwnedFd) -> nix::Result<File> {
    let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let file = openat(
        AT_FDCWD,
        proc_path.as_str(),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
        Mode::empty(),
    )?;
    let st = fstat(&file)?;
    if kind(&st) != Kind::File {
        return Err(Errno::EINVAL);
    }
    Ok(File::from(file))
}

/// The names in a directory (an `O_PATH` fd is fine), without `.` and `..`, sorted.
pub(super) fn read_names(dir: &OwnedFd) -> nix::Result<Vec<OsString>> {
    let d = nix::dir::Dir::from_fd(reopen_dir(dir)?)?;
    let mut names = Vec::new();
    for entry in d {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    names.sort();
    Ok(names)
}

/// Whether a directory has any entry besides `.` and `..`.
pub(super) fn has_entries(dir: &OwnedFd) -> nix::Result<bool> {
    let d = nix::dir::Dir::from_fd(reopen_dir(dir)?)?;
    for entry in d {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `(uid, gid)` as chown(2) takes them: `u32::MAX` (-1) leaves that id alone.
pub(super) fn ids(owner: (u32, u32)) -> (Option<Uid>, Option<Gid>) {
    let uid = (owner.0 != u32::MAX).then(|| Uid::from_raw(owner.0));
    let gid = (owner.1 != u32::MAX).then(|| Gid::from_raw(owner.1));
    (uid, gid)
}

/// Changes the owner of whatever `fd` names, symlinks included (`fd` may be `O_PATH`).
pub(super) fn chown_fd(fd: impl AsFd, owner: (u32, u32)) -> nix::Result<()> {
    let (uid, gid) = ids(owner);
    nix::unistd::fchownat(
        fd,
        "",
        uid,
        gid,
        AtFlags::AT_EMPTY_PATH | AtFlags::AT_SYMLINK_NOFOLLOW,
    )
}

/// A fresh temporary name next to `name`, rsync style: `.name.XXXXXXXX`, short enough for NAME_MAX.
pub(super) fn temp_name(name: &OsStr) -> OsString {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let salt = (u64::from(nanos) ^ (u64::from(std::process::id()) << 32))
        .wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let bytes = name.as_bytes();
    let keep = &bytes[..bytes.len().min(200)];
    let mut out = Vec::with_capacity(keep.len() + 18);
    out.push(b'.');
    out.extend_from_slice(keep);
    out.extend_from_slice(format!(".{:08x}", salt as u32).as_bytes());
    OsString::from_vec(out)
}
