//! Resolving a container path inside the rootfs the way the container will see it: symlinks
//! are followed relative to the rootfs, and `..` never climbs above it. A mount target such
//! as `/etc/x -> /../../host/etc` therefore lands inside the rootfs, not on the host.

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

const MAX_SYMLINKS: usize = 255;

/// `root` joined with `unsafe_path`, with every symlink on the way resolved within `root`.
/// Components that do not exist yet are appended as they are.
pub fn secure_join(root: &Path, unsafe_path: &Path) -> Result<PathBuf> {
    if let Some(joined) = join_without_symlinks(root, unsafe_path) {
        return Ok(joined);
    }
    let mut pending: Vec<std::ffi::OsString> = components(unsafe_path);
    pending.reverse();
    let mut resolved = PathBuf::new(); // relative to root
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = root.join(&resolved).join(&part);
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Error::Config(format!(
                        "too many levels of symbolic links resolving {} in {}",
                        unsafe_path.display(),
                        root.display()
                    )));
                }
                let target = std::fs::read_link(&candidate)
                    .map_err(|e| Error::io("readlink", &candidate, e))?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                let mut more = components(&target);
                more.reverse();
                pending.extend(more);
            }
            _ => resolved.push(part),
        }
    }
    Ok(root.join(resolved))
}

/// [`secure_join`]'s answer for the usual mount target, one whose every component exists and
/// none is a symlink or `..`: the kernel says so in one lookup (openat2 with
/// `RESOLVE_NO_SYMLINKS`, which fails on any symlink on the way, the last one too), instead
/// of an lstat per component, each walking the whole path from `/` (a tenth of a create
/// helper's time went there). None: not such a path, resolve it step by step.
fn join_without_symlinks(root: &Path, unsafe_path: &Path) -> Option<PathBuf> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    let parts = components(unsafe_path);
    if parts.iter().any(|p| p == "..") {
        return None;
    }
    let mut rel = PathBuf::new();
    for p in &parts {
        rel.push(p);
    }
    if rel.as_os_str().is_empty() {
        return Some(root.join(rel));
    }
    let root_fd = open_dir_path(root).ok()?;
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_BENEATH);
    openat2(&root_fd, &rel, how).ok()?;
    Some(root.join(rel))
}

/// Opens `path` (as the container sees it) inside `root` as an `O_PATH` fd, with the kernel
/// resolving every component within `root` (openat2 `RESOLVE_IN_ROOT`): whatever a symlink in
/// the rootfs says, or however it is swapped meanwhile, the fd is of something inside it.
/// Mounting onto `/proc/self/fd/<fd>` then mounts exactly there (runc does the same).
pub fn open_in_root(root: &Path, path: &Path) -> Result<std::os::fd::OwnedFd> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    let root_fd =
        open_dir_path(root).map_err(|e| Error::sys(format!("open {}", root.display()), e))?;
    let rel = path.strip_prefix("/").unwrap_or(path);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    loop {
        match openat2(&root_fd, rel, how) {
            Ok(fd) => return Ok(fd),
            // The kernel asks for a retry when a rename raced with the lookup.
            Err(nix::errno::Errno::EAGAIN) => continue,
            Err(e) => {
                return Err(Error::sys(
                    format!("open {} in {}", path.display(), root.display()),
                    e,
                ))
            }
        }
    }
}

/// `dir` as an `O_PATH` fd, the base of an openat2.
fn open_dir_path(dir: &Path) -> nix::Result<std::os::fd::OwnedFd> {
    use nix::fcntl::{open, OFlag};
    open(
        dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
}

/// The normal components of a path (`.` and root dropped, `..` kept).
fn components(p: &Path) -> Vec<std::ffi::OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_stay_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        symlink("/a", root.join("abs")).unwrap();
        symlink("../../../../etc", root.join("a/up")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        assert_eq!(
            secure_join(root, Path::new("/abs/b")).unwrap(),
            root.join("a/b")
        );
        assert_eq!(
            secure_join(root, Path::new("/a/up/x")).unwrap(),
            root.join("etc/x")
        );
        assert_eq!(
            secure_join(root, Path::new("/../../x")).unwrap(),
            root.join("x")
        );
        assert_eq!(
            secure_join(root, Path::new("/new/dir")).unwrap(),
            root.join("new/dir")
        );
        assert!(secure_join(root, Path::new("/loop")).is_err());
        // Without a symlink or `..` on the way (the one-lookup path), the same answers.
        assert_eq!(
            secure_join(root, Path::new("/a/b")).unwrap(),
            root.join("a/b")
        );
        assert_eq!(
            secure_join(root, Path::new("a/./b/")).unwrap(),
            root.join("a/b")
        );
        assert_eq!(secure_join(root, Path::new("/")).unwrap(), root.join(""));
        assert_eq!(
            join_without_symlinks(root, Path::new("/a/b")),
            Some(root.join("a/b"))
        );
        for slow in ["/abs/b", "/a/up", "/loop", "/a/../a/b", "/new/dir"] {
            assert_eq!(join_without_symlinks(root, Path::new(slow)), None, "{slow}");
        }
    }
}
