//! The recursive walk: one source node (an `O_PATH` fd) copied under a name in a destination
//! directory fd, the same code for both directions. Below the top level nothing is resolved by
//! path: each child is opened by its single name relative to its parent's fd, without following
//! symlinks, on both sides.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{renameat, OFlag};
use nix::sys::stat::{fchmod, fstat, mkdirat, FileStat, Mode};
use nix::unistd::{symlinkat, unlinkat, UnlinkatFlags};

use super::at::{self, Kind};
use super::{CopyError, Direction};

/// Deepest directory nesting copied (each level holds two fds while it is walked).
pub const MAX_DEPTH: usize = 256;

/// Attempts at finding an unused temporary name.
const TEMP_ATTEMPTS: usize = 100;

/// A source file: an `O_PATH | O_NOFOLLOW` fd, its stat, and its path for messages.
pub(super) struct Node {
    pub fd: OwnedFd,
    pub st: FileStat,
    pub path: PathBuf,
}

/// What a copy does with ownership and modes, and what it counted.
pub(super) struct Ctx {
    pub dir: Direction,
    /// chown(2) ids for everything created (`u32::MAX` keeps one); `None` leaves the creator's.
    pub owner: Option<(u32, u32)>,
    /// Directories that already exist get the source's mode only when owned by this uid (what
    /// rsync running as that user would manage); `None`: never touched.
    pub chmod_existing_owned_by: Option<u32>,
    /// Drop setuid/setgid from regular files (copy_out: container content must not become a
    /// setuid binary on the host).
    pub strip_setid: bool,
    pub stats: Stats,
}

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Stats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub skipped: u64,
    pub bytes: u64,
}

impl Ctx {
    fn io(&self, op: &'static str, path: &Path, errno: Errno) -> CopyError {
        CopyError::Io {
            dir: self.dir,
            op,
            path: path.to_path_buf(),
            source: std::io::Error::from(errno),
        }
    }

    /// Copies `src` to `name` in `parent` (`dst_path` names it in messages).
    pub fn copy_node(
        &mut self,
        src: &Node,
        parent: &OwnedFd,
        name: &OsStr,
        dst_path: &Path,
        depth: usize,
    ) -> Result<(), CopyError> {
        match at::kind(&src.st) {
            Kind::File => self.copy_file(src, parent, name, dst_path),
            Kind::Symlink => self.copy_symlink(src, parent, name, dst_path),
            Kind::Dir => {
                if depth >= MAX_DEPTH {
                    return Err(CopyError::TooDeep {
                        dir: self.dir,
                        path: src.path.clone(),
                        max: MAX_DEPTH,
                    });
                }
                let (dfd, created) = self.make_dir(parent, name, dst_path, true)?;
                self.copy_contents(src, &dfd, dst_path, depth + 1)?;
                self.set_dir_mode(&dfd, created, src.st.st_mode, dst_path)
            }
            Kind::Special(what) if depth == 0 => Err(CopyError::Special {
                dir: self.dir,
                path: src.path.clone(),
                what,
            }),
            Kind::Special(what) => {
                tracing::warn!(direction = %self.dir, path = %src.path.display(), "skipping {what}: only regular files, directories and symlinks are copied");
                self.stats.skipped += 1;
                Ok(())
            }
        }
    }

    /// Copies what is in the directory `src` into the directory `dst`.
    pub fn copy_contents(
        &mut self,
        src: &Node,
        dst: &OwnedFd,
        dst_path: &Path,
        depth: usize,
    ) -> Result<(), CopyError> {
        let names = at::read_names(&src.fd).map_err(|e| self.io("read directory", &src.path, e))?;
        for name in names {
            let path = src.path.join(&name);
            let fd = match at::open_child(&src.fd, &name, OFlag::O_PATH, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => {
                    tracing::warn!(direction = %self.dir, path = %path.display(), "file vanished during the copy");
                    self.stats.skipped += 1;
                    continue;
                }
                Err(e) => return Err(self.io("open", &path, e)),
            };
            let st = fstat(&fd).map_err(|e| self.io("stat", &path, e))?;
            let child = Node { fd, st, path };
            self.copy_node(&child, dst, &name, &dst_path.join(&name), depth)?;
        }
        Ok(())
    }

    /// Makes (or finds) the directory `name` in `parent` and opens it; true if it was created.
    /// A non-directory in the way is removed first if `replace`, as rsync does inside a tree (for
    /// DST itself rsync's plain mkdir fails instead).
    pub fn make_dir(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        dst_path: &Path,
        replace: bool,
    ) -> Result<(OwnedFd, bool), CopyError> {
        check_name(self.dir, name, dst_path)?;
        let mut created = false;
        for attempt in 0..2 {
            match mkdirat(parent, name, Mode::from_bits_truncate(0o700)) {
                Ok(()) => {
                    created = true;
                    break;
                }
                Err(Errno::EEXIST) => {
                    let st = nix::sys::stat::fstatat(
                        parent,
                        name,
                        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                    )
                    .map_err(|e| self.io("stat", dst_path, e))?;
                    if at::kind(&st) == Kind::Dir {
                        break;
                    }
                    if attempt == 1 || !replace {
                        return Err(self.io("mkdir", dst_path, Errno::EEXIST));
                    }
                    unlinkat(parent, name, UnlinkatFlags::NoRemoveDir).map_err(|e| {
                        self.io("remove (to make way for a directory)", dst_path, e)
                    })?;
                }
                Err(e) => return Err(self.io("mkdir", dst_path, e)),
            }
        }
        let dfd = at::open_child(
            parent,
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .map_err(|e| self.io("open directory", dst_path, e))?;
        if created {
            if let Some(owner) = self.owner {
                nix::unistd::fchown(&dfd, at::ids(owner).0, at::ids(owner).1)
                    .map_err(|e| self.io("chown", dst_path, e))?;
            }
            self.stats.dirs += 1;
        }
        Ok((dfd, created))
    }

    /// Gives a directory its final mode: always when created, else per `chmod_existing_owned_by`.
    pub fn set_dir_mode(
        &mut self,
        dfd: &OwnedFd,
        created: bool,
        mode: u32,
        dst_path: &Path,
    ) -> Result<(), CopyError> {
        let apply = created
            || match self.chmod_existing_owned_by {
                Some(uid) => fstat(dfd).map_err(|e| self.io("stat", dst_path, e))?.st_uid == uid,
                None => false,
            };
        if apply {
            fchmod(dfd, Mode::from_bits_truncate(mode & 0o7777))
                .map_err(|e| self.io("chmod", dst_path, e))?;
        }
        Ok(())
    }

    fn copy_file(
        &mut self,
        src: &Node,
        parent: &OwnedFd,
        name: &OsStr,
        dst_path: &Path,
    ) -> Result<(), CopyError> {
        check_name(self.dir, name, dst_path)?;
        let mut input = at::reopen_file(&src.fd).map_err(|e| self.io("open", &src.path, e))?;
        let (tmp, fd) = self.create_temp(name, dst_path, |tmp| {
            at::open_child(
                parent,
                tmp,
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
                Mode::from_bits_truncate(0o600),
            )
        })?;
        let result = (|| {
            let mut out = File::from(fd);
            let n = std::io::copy(&mut input, &mut out).map_err(|e| CopyError::Io {
                dir: self.dir,
                op: "copy data",
                path: dst_path.to_path_buf(),
                source: e,
            })?;
            if let Some(owner) = self.owner {
                let (uid, gid) = at::ids(owner);
                nix::unistd::fchown(&out, uid, gid).map_err(|e| self.io("chown", dst_path, e))?;
            }
            // After the chown, which clears setuid/setgid.
            let mut mode = src.st.st_mode & 0o7777;
            if self.strip_setid {
                mode &= !0o6000;
            }
            fchmod(&out, Mode::from_bits_truncate(mode))
                .map_err(|e| self.io("chmod", dst_path, e))?;
            self.replace(parent, &tmp, name, dst_path)?;
            Ok(n)
        })();
        match result {
            Ok(n) => {
                self.stats.files += 1;
                self.stats.bytes += n;
                Ok(())
            }
            Err(e) => {
                let _ = unlinkat(parent, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
                Err(e)
            }
        }
    }

    fn copy_symlink(
        &mut self,
        src: &Node,
        parent: &OwnedFd,
        name: &OsStr,
        dst_path: &Path,
    ) -> Result<(), CopyError> {
        check_name(self.dir, name, dst_path)?;
        let target =
            nix::fcntl::readlinkat(&src.fd, "").map_err(|e| self.io("readlink", &src.path, e))?;
        let (tmp, fd) = self.create_temp(name, dst_path, |tmp| {
            symlinkat(target.as_os_str(), parent, tmp)?;
            at::open_child(parent, tmp, OFlag::O_PATH, Mode::empty())
        })?;
        let result = (|| {
            if let Some(owner) = self.owner {
                let st = fstat(&fd).map_err(|e| self.io("stat", dst_path, e))?;
                if at::kind(&st) != Kind::Symlink {
                    return Err(self.io("create symlink", dst_path, Errno::EEXIST));
                }
                at::chown_fd(&fd, owner).map_err(|e| self.io("chown", dst_path, e))?;
            }
            self.replace(parent, &tmp, name, dst_path)
        })();
        match result {
            Ok(()) => {
                self.stats.symlinks += 1;
                Ok(())
            }
            Err(e) => {
                let _ = unlinkat(parent, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
                Err(e)
            }
        }
    }

    /// Runs `create` on fresh temporary names next to `name` until one is not taken.
    fn create_temp(
        &self,
        name: &OsStr,
        dst_path: &Path,
        mut create: impl FnMut(&OsStr) -> nix::Result<OwnedFd>,
    ) -> Result<(std::ffi::OsString, OwnedFd), CopyError> {
        for _ in 0..TEMP_ATTEMPTS {
            let tmp = at::temp_name(name);
            match create(&tmp) {
                Ok(fd) => return Ok((tmp, fd)),
                Err(Errno::EEXIST) => continue,
                Err(e) => return Err(self.io("create", dst_path, e)),
            }
        }
        Err(self.io("create", dst_path, Errno::EEXIST))
    }

    /// Renames `tmp` over `name` in `parent`; an empty directory in the way is removed, a
    /// non-empty one is an error (rsync without --force).
    fn replace(
        &self,
        parent: &OwnedFd,
        tmp: &OsStr,
        name: &OsStr,
        dst_path: &Path,
    ) -> Result<(), CopyError> {
        match renameat(parent, tmp, parent, name) {
            Ok(()) => Ok(()),
            Err(Errno::EISDIR | Errno::ENOTEMPTY | Errno::EEXIST) => {
                match unlinkat(parent, name, UnlinkatFlags::RemoveDir) {
                    Ok(()) => {}
                    Err(Errno::ENOTEMPTY | Errno::EEXIST) => {
                        return Err(CopyError::DirectoryInTheWay {
                            dir: self.dir,
                            path: dst_path.to_path_buf(),
                        })
                    }
                    Err(e) => return Err(self.io("remove (to make way for a file)", dst_path, e)),
                }
                renameat(parent, tmp, parent, name).map_err(|e| self.io("rename", dst_path, e))
            }
            Err(e) => Err(self.io("rename", dst_path, e)),
        }
    }
}

/// Names made from the request's last component must be plain names.
fn check_name(dir: Direction, name: &OsStr, path: &Path) -> Result<(), CopyError> {
    let b = std::os::unix::ffi::OsStrExt::as_bytes(name);
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') {
        return Err(CopyError::BadPath {
            dir,
            path: path.to_path_buf(),
        });
    }
    Ok(())
}
