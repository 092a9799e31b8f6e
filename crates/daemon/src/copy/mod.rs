//! copy_in / copy_out: files between the host and a container, safe against symlinks that point
//! outside it (SPEC 3.7).
//!
//! The original ran `rsync -r -p --links SRC DST` through wsh, so rsync inside the container saw
//! the container's root. Here the daemon copies itself, and every container-side lookup goes
//! through `openat2(2)` with `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS` on an `O_PATH` fd of the
//! container's root directory, so `..`, absolute symlinks (`/tmp/evil -> /etc`) and relative ones
//! (`../../../../etc/shadow`) resolve as the container sees them: inside its root. Below the top
//! level, both trees are walked one name at a time relative to directory fds, never following a
//! symlink (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, `O_NOFOLLOW`), files are created with
//! `O_CREAT | O_EXCL` under a temporary name and renamed into place, and regular files are read
//! through the very inode that was checked to be one. A process in the container that swaps
//! symlinks while a copy runs can make the copy fail or land elsewhere inside the container, but
//! never read or write outside it.
//!
//! # What rsync does, and so what this does
//!
//! With one source:
//! - A source ending in `/` (or `/.`) stands for the directory's contents; otherwise the item
//!   itself (a symlink is copied as a symlink, not followed).
//! - If DST is an existing directory (symlinks followed, inside the container), the item goes
//!   into it under its own name (contents: go into DST itself, and DST gets the source
//!   directory's mode).
//! - If DST exists and is not a directory: a single non-directory replaces it; a directory is an
//!   error.
//! - If DST does not exist: when more than one item is sent (a directory with anything in it) or
//!   DST ends in `/`, DST is created as a directory (only the last component: a missing parent
//!   is an error) and the items go into it; otherwise the single item (a file, a symlink, or an
//!   empty directory, rsync's quirk) is created under DST's name.
//! - Modes are kept (rsync `-p`), symlinks are copied as symlinks, hard links become separate
//!   files, timestamps are not kept (no `-t`). Devices, fifos and sockets inside a tree are
//!   skipped with a warning (rsync without `-D`); given as the source itself they are an error.
//! - A non-directory where a directory goes is replaced; an empty directory where a file goes is
//!   removed; a non-empty one is an error (no `--force`). Extra files at the destination stay.
//!
//! Ownership: copy_in chowns everything it creates to the container user, as rsync running as
//! that user would have created it, and gives an existing directory the source's mode only if
//! that user owns it. copy_out creates files owned by the daemon (root), or chowns what it
//! created to `owner`; it never changes pre-existing host directories, and it drops
//! setuid/setgid bits from files, so container content cannot become a setuid binary on the
//! host.
//!
//! The functions block; call them from `spawn_blocking`. They are thread-safe: no chdir, no
//! umask (every mode is set with fchmod), no shared state.

mod at;
mod tree;

use std::ffi::OsStr;
use std::fmt;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::fstat;

pub use tree::MAX_DEPTH;

use at::Kind;
use tree::{Ctx, Node, Stats};

/// Which request an error came from; shown as the message's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::In => "copy_in",
            Direction::Out => "copy_out",
        })
    }
}

/// Why a copy failed. Container paths are shown as the container sees them.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("{dir}: source {path} does not exist")]
    SourceNotFound { dir: Direction, path: PathBuf },
    #[error("{dir}: no such file in the container: {path}")]
    NotInContainer { dir: Direction, path: PathBuf },
    #[error("{dir}: {path} is not a directory (a trailing / copies a directory's contents)")]
    SourceNotDirectory { dir: Direction, path: PathBuf },
    #[error("{dir}: {path} is a {what}; only regular files, directories and symlinks are copied")]
    Special {
        dir: Direction,
        path: PathBuf,
        what: &'static str,
    },
    #[error("{dir}: cannot create {path}: its parent directory {parent} does not exist")]
    MissingParent {
        dir: Direction,
        path: PathBuf,
        parent: PathBuf,
    },
    #[error("{dir}: destination {path} is not a directory, and more than one file is copied")]
    DestinationNotDirectory { dir: Direction, path: PathBuf },
    #[error("{dir}: cannot overwrite non-directory {path} with a directory")]
    OverwriteNonDirectory { dir: Direction, path: PathBuf },
    #[error("{dir}: cannot replace non-empty directory {path} with a file")]
    DirectoryInTheWay { dir: Direction, path: PathBuf },
    #[error("{dir}: {path}: directory tree deeper than {max} levels")]
    TooDeep {
        dir: Direction,
        path: PathBuf,
        max: usize,
    },
    #[error("{dir}: invalid path {path}")]
    BadPath { dir: Direction, path: PathBuf },
    #[error("{dir}: {path}: {op} failed: {source}")]
    Io {
        dir: Direction,
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid owner {spec:?}: {reason}")]
    Owner { spec: String, reason: String },
}

/// Where paths are resolved: the host as it is, or a container's root.
enum Fs {
    Host,
    Container(OwnedFd),
}

impl Fs {
    fn open(&self, path: &[u8], flags: OFlag) -> nix::Result<OwnedFd> {
        match self {
            Fs::Host => at::open_host(path, flags),
            Fs::Container(root) => at::open_in_root(root, path, flags),
        }
    }
}

/// Copies `src_host` (a host path) to `dst_in_container` (a path as the container sees it;
/// relative paths are taken from its `/`) under `container_root`, rsync style (see the module
/// docs). Everything created is owned by `owner` (uid, gid; `u32::MAX` leaves one alone).
///
/// Pass the request's paths as they came (`Path::new(&req.src_path)`): a trailing `/` matters.
pub fn copy_in(
    container_root: &Path,
    src_host: &Path,
    dst_in_container: &Path,
    owner: (u32, u32),
) -> Result<(), CopyError> {
    let dir = Direction::In;
    let root = open_root(dir, container_root)?;
    let mut ctx = Ctx {
        dir,
        owner: Some(owner),
        chmod_existing_owned_by: (owner.0 != u32::MAX).then_some(owner.0),
        strip_setid: false,
        stats: Stats::default(),
    };
    transfer(
        &mut ctx,
        &Fs::Host,
        src_host,
        &Fs::Container(root),
        dst_in_container,
    )
}

/// Copies `src_in_container` (as the container sees it) out of `container_root` to the host path
/// `dst_host`, rsync style (see the module docs). With `owner`, everything created is chowned to
/// it (see [`resolve_owner`]); without, it stays owned by the daemon. setuid/setgid bits are
/// dropped from files.
pub fn copy_out(
    container_root: &Path,
    src_in_container: &Path,
    dst_host: &Path,
    owner: Option<(u32, u32)>,
) -> Result<(), CopyError> {
    let dir = Direction::Out;
    let root = open_root(dir, container_root)?;
    let mut ctx = Ctx {
        dir,
        owner,
        chmod_existing_owned_by: None,
        strip_setid: true,
        stats: Stats::default(),
    };
    transfer(
        &mut ctx,
        &Fs::Container(root),
        src_in_container,
        &Fs::Host,
        dst_host,
    )
}

/// Parses a copy_out `owner` as chown(1) does, resolving names through the host's user and group
/// databases (numbers are accepted where no such name exists): `user:group`, `user` (group
/// unchanged), `user:` (the user's login group), `:group` (user unchanged). An id left unchanged
/// is `u32::MAX`, which chown(2) ignores.
pub fn resolve_owner(spec: &str) -> Result<(u32, u32), CopyError> {
    let err = |reason: String| CopyError::Owner {
        spec: spec.to_string(),
        reason,
    };
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() && group.is_none_or(str::is_empty) {
        return Err(err("no user or group given".into()));
    }
    let mut login_gid = None;
    let uid = if user.is_empty() {
        u32::MAX
    } else {
        match nix::unistd::User::from_name(user) {
            Ok(Some(u)) => {
                login_gid = Some(u.gid.as_raw());
                u.uid.as_raw()
            }
            Ok(None) | Err(_) => match user.parse::<u32>() {
                Ok(n) if n != u32::MAX => n,
                _ => return Err(err(format!("no such user {user:?}"))),
            },
        }
    };
    let gid = match group {
        None => u32::MAX,
        Some("") => match login_gid {
            Some(g) => g,
            None => return Err(err(format!("{user:?} has no login group"))),
        },
        Some(g) => match nix::unistd::Group::from_name(g) {
            Ok(Some(grp)) => grp.gid.as_raw(),
            Ok(None) | Err(_) => match g.parse::<u32>() {
                Ok(n) if n != u32::MAX => n,
                _ => return Err(err(format!("no such group {g:?}"))),
            },
        },
    };
    Ok((uid, gid))
}

fn open_root(dir: Direction, container_root: &Path) -> Result<OwnedFd, CopyError> {
    at::open_host(
        container_root.as_os_str().as_bytes(),
        OFlag::O_PATH | OFlag::O_DIRECTORY,
    )
    .map_err(|e| CopyError::Io {
        dir,
        op: "open the container's root",
        path: container_root.to_path_buf(),
        source: e.into(),
    })
}

/// rsync's decision (main.c `get_local_name`) for one source, then the walk.
fn transfer(
    ctx: &mut Ctx,
    src_fs: &Fs,
    src: &Path,
    dst_fs: &Fs,
    dst: &Path,
) -> Result<(), CopyError> {
    let dir = ctx.dir;
    let io = |op: &'static str, path: &Path, e: Errno| CopyError::Io {
        dir,
        op,
        path: path.to_path_buf(),
        source: e.into(),
    };
    let sb = src.as_os_str().as_bytes();
    let db = dst.as_os_str().as_bytes();
    let contents = names_contents(sb);

    // The source: its contents follow symlinks (the path ends in `/`), the item itself does not.
    let flags = if contents {
        OFlag::O_PATH | OFlag::O_DIRECTORY
    } else {
        OFlag::O_PATH | OFlag::O_NOFOLLOW
    };
    let fd = src_fs.open(sb, flags).map_err(|e| match e {
        Errno::ENOTDIR if contents => CopyError::SourceNotDirectory {
            dir,
            path: src.to_path_buf(),
        },
        Errno::ENOENT | Errno::ENOTDIR if matches!(src_fs, Fs::Host) => CopyError::SourceNotFound {
            dir,
            path: src.to_path_buf(),
        },
        Errno::ENOENT | Errno::ENOTDIR => CopyError::NotInContainer {
            dir,
            path: src.to_path_buf(),
        },
        e => io("open", src, e),
    })?;
    let st = fstat(&fd).map_err(|e| io("stat", src, e))?;
    let node = Node {
        fd,
        st,
        path: src.to_path_buf(),
    };
    let src_is_dir = at::kind(&st) == Kind::Dir;
    // rsync's `file_total > 1`: a directory with anything in it.
    let many = src_is_dir && at::has_entries(&node.fd).map_err(|e| io("read directory", src, e))?;
    let src_name = (!contents).then(|| OsStr::from_bytes(last_name(sb)));

    let opened = match dst_fs.open(db, OFlag::O_PATH) {
        // fs.protected_symlinks (1 on systemd hosts): a symlink someone else owns in a sticky
        // world-writable dir (the container's /tmp) may not be followed, even by root. It is
        // then a non-directory like any other, which the copy replaces.
        Err(Errno::EACCES) => dst_fs
            .open(db, OFlag::O_PATH | OFlag::O_NOFOLLOW)
            .map_err(|_| Errno::EACCES),
        r => r,
    };
    let result = match opened {
        Ok(fd) => {
            let dst_st = fstat(&fd).map_err(|e| io("stat", dst, e))?;
            if at::kind(&dst_st) == Kind::Dir {
                let dst_dir = at::reopen_dir(&fd).map_err(|e| io("open directory", dst, e))?;
                match src_name {
                    None => {
                        ctx.copy_contents(&node, &dst_dir, dst, 1)?;
                        ctx.set_dir_mode(&dst_dir, false, st.st_mode, dst)
                    }
                    Some(name) => ctx.copy_node(&node, &dst_dir, name, &dst.join(name), 0),
                }
            } else if many {
                Err(CopyError::DestinationNotDirectory {
                    dir,
                    path: dst.to_path_buf(),
                })
            } else if src_is_dir {
                Err(CopyError::OverwriteNonDirectory {
                    dir,
                    path: dst.to_path_buf(),
                })
            } else {
                let (parent, name) = open_parent(dir, dst_fs, dst)?;
                ctx.copy_node(&node, &parent, name, dst, 0)
            }
        }
        Err(Errno::ENOENT) => {
            let (parent, name) = open_parent(dir, dst_fs, dst)?;
            if many || db.ends_with(b"/") {
                let (dst_dir, created) = ctx.make_dir(&parent, name, dst, false)?;
                match src_name {
                    None => {
                        ctx.copy_contents(&node, &dst_dir, dst, 1)?;
                        ctx.set_dir_mode(&dst_dir, created, st.st_mode, dst)
                    }
                    Some(src_name) => {
                        ctx.copy_node(&node, &dst_dir, src_name, &dst.join(src_name), 0)?;
                        // rsync's mkdir(ACCESSPERMS) under the usual umask 022.
                        ctx.set_dir_mode(&dst_dir, created, 0o755, dst)
                    }
                }
            } else {
                ctx.copy_node(&node, &parent, name, dst, 0)
            }
        }
        Err(e) => Err(io("stat destination", dst, e)),
    };
    let s = ctx.stats;
    match &result {
        Ok(()) => tracing::debug!(
            direction = %dir, src = %src.display(), dst = %dst.display(),
            files = s.files, dirs = s.dirs, symlinks = s.symlinks, skipped = s.skipped, bytes = s.bytes,
            "copied"
        ),
        Err(e) => tracing::debug!(direction = %dir, error = %e, "copy failed"),
    }
    result
}

/// Opens DST's parent directory (following symlinks, inside the container on that side) and
/// returns it with DST's last component.
fn open_parent<'a>(
    dir: Direction,
    fs: &Fs,
    dst: &'a Path,
) -> Result<(OwnedFd, &'a OsStr), CopyError> {
    let db = dst.as_os_str().as_bytes();
    let name = last_name(db);
    if name.is_empty() || name == b"." || name == b".." {
        return Err(CopyError::BadPath {
            dir,
            path: dst.to_path_buf(),
        });
    }
    let parent = parent_of(db, matches!(fs, Fs::Container(_)));
    let fd = fs
        .open(parent, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
        .map_err(|e| match e {
            Errno::ENOENT => CopyError::MissingParent {
                dir,
                path: dst.to_path_buf(),
                parent: PathBuf::from(OsStr::from_bytes(parent)),
            },
            e => CopyError::Io {
                dir,
                op: "open the parent directory",
                path: PathBuf::from(OsStr::from_bytes(parent)),
                source: e.into(),
            },
        })?;
    Ok((fd, OsStr::from_bytes(name)))
}

/// Whether a source path names a directory's contents rather than the item itself: it ends in
/// `/`, or its last component is `.` or `..`.
fn names_contents(p: &[u8]) -> bool {
    p.ends_with(b"/") || p == b"." || p == b".." || p.ends_with(b"/.") || p.ends_with(b"/..")
}

/// The last component, trailing slashes ignored (empty for `/` or an empty path).
fn last_name(p: &[u8]) -> &[u8] {
    let t = trim_slashes(p);
    match t.iter().rposition(|&c| c == b'/') {
        Some(i) => &t[i + 1..],
        None => t,
    }
}

/// Everything before the last component: `/` for `/x`, `.` (host) or `/` (container) for `x`.
fn parent_of(p: &[u8], in_container: bool) -> &[u8] {
    let t = trim_slashes(p);
    match t.iter().rposition(|&c| c == b'/') {
        Some(0) => b"/",
        Some(i) => &t[..i],
        None if in_container => b"/",
        None => b".",
    }
}

fn trim_slashes(p: &[u8]) -> &[u8] {
    let mut end = p.len();
    while end > 1 && p[end - 1] == b'/' {
        end -= 1;
    }
    &p[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_or_item() {
        for p in ["a/", "/a/b/", "/", ".", "..", "a/.", "a/.."] {
            assert!(names_contents(p.as_bytes()), "{p}");
        }
        for p in ["a", "/a/b", "a/.b", "a/b.."] {
            assert!(!names_contents(p.as_bytes()), "{p}");
        }
    }

    #[test]
    fn names_and_parents() {
        assert_eq!(last_name(b"/a/b"), b"b");
        assert_eq!(last_name(b"/a/b//"), b"b");
        assert_eq!(last_name(b"b"), b"b");
        assert_eq!(last_name(b"/"), b"");
        assert_eq!(parent_of(b"/a/b", true), b"/a");
        assert_eq!(parent_of(b"/a/b/", false), b"/a");
        assert_eq!(parent_of(b"/a", false), b"/");
        assert_eq!(parent_of(b"a", false), b".");
        assert_eq!(parent_of(b"a", true), b"/");
        assert_eq!(parent_of(b"x/a", true), b"x");
    }

    #[test]
    fn owners() {
        assert_eq!(resolve_owner("0:0").unwrap(), (0, 0));
        assert_eq!(resolve_owner("root:root").unwrap(), (0, 0));
        assert_eq!(resolve_owner("root").unwrap(), (0, u32::MAX));
        assert_eq!(resolve_owner("root:").unwrap(), (0, 0));
        assert_eq!(resolve_owner(":0").unwrap(), (u32::MAX, 0));
        assert_eq!(resolve_owner("1234:5678").unwrap(), (1234, 5678));
        assert!(resolve_owner("no-such-user-xyz:0").is_err());
        assert!(resolve_owner("0:no-such-group-xyz").is_err());
        assert!(resolve_owner("").is_err());
        assert!(resolve_owner(":").is_err());
    }
}
