//! Reading and writing cgroup files, making and removing cgroup directories.
//!
//! Writes never create a file on a cgroup filesystem (a missing file means a missing
//! controller or an old kernel, and should say ENOENT). A plain directory tree stands in for
//! the kernel in unit tests; see the module docs of `cgroups`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;

use super::{Error, Result};

/// True when `path` (or, if it does not exist, its nearest existing ancestor) is on cgroupfs.
pub(crate) fn is_cgroupfs(path: &Path) -> bool {
    let mut p = Some(path);
    while let Some(cur) = p {
        match nix::sys::statfs::statfs(cur) {
            Ok(st) => {
                let t = st.filesystem_type();
                return t == nix::sys::statfs::CGROUP_SUPER_MAGIC
                    || t == nix::sys::statfs::CGROUP2_SUPER_MAGIC;
            }
            Err(Errno::ENOENT) => p = cur.parent(),
            Err(_) => return true,
        }
    }
    true
}

/// Writes `value` to `path` in one write(2).
pub(crate) fn write(path: &Path, value: &str) -> Result<()> {
    tracing::trace!(path = %path.display(), value, "cgroup write");
    let open = || OpenOptions::new().write(true).truncate(true).open(path);
    let res = match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound && stands_in(path) => OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path),
        r => r,
    }
    .and_then(|mut f| f.write_all(value.as_bytes()));
    res.map_err(|source| Error::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

/// A plain directory standing in for a cgroup in tests: its parent exists and is not cgroupfs.
fn stands_in(path: &Path) -> bool {
    path.parent().is_some_and(|d| d.is_dir() && !is_cgroupfs(d))
}

pub(crate) fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Like [`read`], but a missing file is `None`.
pub(crate) fn read_opt(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// A number, or `max` (as u64::MAX). Surrounding whitespace is ignored.
pub(crate) fn parse_u64_or_max(s: &str) -> Option<u64> {
    let s = s.trim();
    if s == "max" {
        return Some(u64::MAX);
    }
    s.parse().ok()
}

/// The number in a single-value file; a missing file is `None`.
pub(crate) fn read_u64_opt(path: &Path) -> Result<Option<u64>> {
    match read_opt(path)? {
        None => Ok(None),
        Some(s) => match parse_u64_or_max(&s) {
            Some(v) => Ok(Some(v)),
            None => Err(Error::Parse {
                path: path.to_path_buf(),
                content: s,
            }),
        },
    }
}

/// The number in a single-value file; a missing file is 0.
pub(crate) fn read_u64_or_zero(path: &Path) -> Result<u64> {
    Ok(read_u64_opt(path)?.unwrap_or(0))
}

/// "key value" lines (memory.stat, cpu.stat, memory.events...). Lines that do not parse are
/// skipped.
pub(crate) fn parse_flat_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let k = it.next()?;
            let v = parse_u64_or_max(it.next()?)?;
            Some((k.to_string(), v))
        })
        .collect()
}

/// A flat-keyed file; a missing file is empty.
pub(crate) fn read_flat_keyed(path: &Path) -> Result<BTreeMap<String, u64>> {
    Ok(read_opt(path)?
        .map(|s| parse_flat_keyed(&s))
        .unwrap_or_default())
}

/// The pids in one cgroup's `cgroup.procs`.
pub(crate) fn read_pids(dir: &Path) -> Result<Vec<i32>> {
    let path = dir.join("cgroup.procs");
    let text = read(&path)?;
    text.split_whitespace()
        .map(|t| {
            t.parse().map_err(|_| Error::Parse {
                path: path.clone(),
                content: t.to_string(),
            })
        })
        .collect()
}

/// The cgroups under `dir`, `dir` included, parents before children. Directories that vanish
/// while walking are skipped.
pub(crate) fn subtree(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let entries = match fs::read_dir(&out[i]) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                i += 1;
                continue;
            }
            Err(source) => {
                return Err(Error::Read {
                    path: out[i].clone(),
                    source,
                })
            }
        };
        let mut children: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        children.sort();
        out.extend(children);
        i += 1;
    }
    Ok(out)
}

/// Every pid in `dir` and its descendants. A missing `dir` is an error; descendants that
/// vanish while walking are not.
pub(crate) fn subtree_pids(dir: &Path) -> Result<BTreeSet<i32>> {
    let mut out = BTreeSet::new();
    out.extend(read_pids(dir)?);
    for d in subtree(dir)?.into_iter().skip(1) {
        match read_pids(&d) {
            Ok(p) => out.extend(p),
            Err(e) if e.errno() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// mkdir -p. Returns the directories it made, outermost first.
pub(crate) fn mkdir_p(path: &Path) -> Result<Vec<PathBuf>> {
    // The usual case first: the parent is there and the cgroup is new, one mkdir.
    match fs::create_dir(path) {
        Ok(()) => {
            stand_in(path);
            return Ok(vec![path.to_path_buf()]);
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(Vec::new()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(Error::Create {
                path: path.to_path_buf(),
                source,
            })
        }
    }
    let mut missing = Vec::new();
    let mut cur = Some(path);
    while let Some(p) = cur {
        if p.exists() {
            break;
        }
        missing.push(p.to_path_buf());
        cur = p.parent();
    }
    missing.reverse();
    let mut made = Vec::new();
    for d in missing {
        match fs::create_dir(&d) {
            Ok(()) => {
                stand_in(&d);
                made.push(d);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                // Take back what this call made before failing.
                for m in made.iter().rev() {
                    let _ = remove_dir(m);
                }
                return Err(Error::Create { path: d, source });
            }
        }
    }
    Ok(made)
}

/// A cgroup dir made outside a cgroupfs (the tests' stand-in trees) gets the kernel's
/// `cgroup.procs`.
fn stand_in(dir: &Path) {
    if !is_cgroupfs(dir) {
        let _ = fs::write(dir.join("cgroup.procs"), "");
    }
}

/// rmdir; on a plain directory (tests) the files in it go first. A missing directory is fine.
fn remove_dir(dir: &Path) -> io::Result<()> {
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) && !is_cgroupfs(dir) => {
            for entry in fs::read_dir(dir)?.flatten() {
                if entry.file_type().is_ok_and(|t| !t.is_dir()) {
                    fs::remove_file(entry.path())?;
                }
            }
            fs::remove_dir(dir)
        }
        Err(e) => Err(e),
    }
}

/// Removes `dir` and the cgroups under it, deepest first.
fn remove_tree(dir: &Path) -> std::result::Result<(), (PathBuf, io::Error)> {
    let all = subtree(dir).map_err(|e| match e {
        Error::Read { path, source } => (path, source),
        other => (dir.to_path_buf(), io::Error::other(other.to_string())),
    })?;
    for d in all.iter().rev() {
        remove_dir(d).map_err(|e| (d.clone(), e))?;
    }
    Ok(())
}

pub(crate) const REMOVE_TRIES: u32 = 50;

/// Removes each of `dirs` (and what is under it). While one is busy, calls `evict` (which
/// kills what keeps it busy) and tries again, [`REMOVE_TRIES`] times over about a second. An
/// error from `evict` (it refused to kill) ends the attempt.
pub(crate) fn remove_all(dirs: &[&Path], mut evict: impl FnMut() -> Result<()>) -> Result<()> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    for attempt in 1..=REMOVE_TRIES {
        let mut busy = None;
        for d in dirs {
            match remove_tree(d) {
                Ok(()) => {}
                Err((path, e)) if e.raw_os_error() == Some(libc::EBUSY) => busy = Some(path),
                Err((path, source)) => return Err(Error::Remove { path, source }),
            }
        }
        let Some(path) = busy else {
            return Ok(());
        };
        if attempt == REMOVE_TRIES {
            let pids = subtree_pids(&path)
                .map(|p| p.into_iter().collect())
                .unwrap_or_default();
            return Err(Error::Busy {
                path,
                tries: REMOVE_TRIES,
                waited: start.elapsed(),
                pids,
            });
        }
        evict()?;
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(25));
    }
    unreachable!("the last attempt returns")
}

/// SIGKILLs every pid in `pids`; ones already gone are fine.
pub(crate) fn kill_all(pids: impl IntoIterator<Item = i32>) {
    for pid in pids {
        if pid > 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Refuses to empty or remove a cgroup that holds the calling process.
pub(crate) fn check_not_ours(dir: &Path, pids: &BTreeSet<i32>, op: &'static str) -> Result<()> {
    let me = std::process::id() as i32;
    if pids.contains(&me) {
        return Err(Error::Refused {
            path: dir.to_path_buf(),
            op,
            reason: format!("it holds the calling process {me}"),
        });
    }
    Ok(())
}

/// The root of the hierarchy `dir` is in: the highest ancestor reachable through directories
/// that hold a `cgroup.procs`. `dir` itself need not exist.
pub(crate) fn find_root(dir: &Path) -> PathBuf {
    let mut cur = dir.to_path_buf();
    while let Some(parent) = cur.parent() {
        if !parent.join("cgroup.procs").exists() {
            break;
        }
        cur = parent.to_path_buf();
    }
    cur
}

/// Refuses to remove a hierarchy's root or anything outside it.
pub(crate) fn check_below_root(dir: &Path, root: &Path) -> Result<()> {
    if dir == root || !dir.starts_with(root) {
        return Err(Error::Refused {
            path: dir.to_path_buf(),
            op: "remove",
            reason: format!("it is not below the hierarchy root {}", root.display()),
        });
    }
    Ok(())
}

/// Polls `check` until it returns true, backing off from 100µs to 10ms, up to `limit`.
/// Returns whether it did.
pub(crate) fn wait_until(limit: Duration, mut check: impl FnMut() -> Result<bool>) -> Result<bool> {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_micros(100);
    loop {
        if check()? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_keyed_parses_numbers_and_max() {
        let m = parse_flat_keyed("cache 12\nrss 34\nbogus\nmax max\nbad x\n");
        assert_eq!(m["cache"], 12);
        assert_eq!(m["rss"], 34);
        assert_eq!(m["max"], u64::MAX);
        assert!(!m.contains_key("bogus") && !m.contains_key("bad"));
    }

    #[test]
    fn writes_create_files_only_off_cgroupfs() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("memory.max");
        write(&f, "123").unwrap();
        write(&f, "4").unwrap();
        assert_eq!(fs::read_to_string(&f).unwrap(), "4");
        // The parent must exist: no directories appear by writing.
        let e = write(&t.path().join("gone/memory.max"), "1").unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENOENT));
        assert!(e.to_string().contains("gone/memory.max"), "{e}");
        assert!(e.to_string().contains("\"1\""), "{e}");
    }

    #[test]
    fn mkdir_and_remove_tree_on_a_plain_dir() {
        let t = tempfile::tempdir().unwrap();
        let leaf = t.path().join("a/b/c");
        let made = mkdir_p(&leaf).unwrap();
        assert_eq!(made.len(), 3);
        assert!(leaf.join("cgroup.procs").exists());
        fs::create_dir(leaf.join("sub")).unwrap();
        fs::write(leaf.join("sub/memory.max"), "1").unwrap();
        remove_all(&[&t.path().join("a/b")], || Ok(())).unwrap();
        assert!(!t.path().join("a/b").exists());
        assert!(t.path().join("a").exists());
        // Already gone is fine.
        remove_all(&[&t.path().join("a/b")], || Ok(())).unwrap();
    }

    #[test]
    fn find_root_stops_where_cgroup_procs_ends() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("memory");
        mkdir_p(&root.join("x/y")).unwrap();
        // mkdir_p gave every new dir a cgroup.procs; the tempdir itself has none.
        assert_eq!(find_root(&root.join("x/y")), root);
        assert_eq!(find_root(&root.join("x/y/not-yet")), root);
        assert!(check_below_root(&root, &root).is_err());
        assert!(check_below_root(&root.join("x"), &root).is_ok());
    }

    #[test]
    fn never_kills_the_caller() {
        let me = std::process::id() as i32;
        let e = check_not_ours(Path::new("/x"), &BTreeSet::from([1, me]), "kill").unwrap_err();
        assert!(matches!(e, Error::Refused { .. }), "{e}");
        assert!(check_not_ours(Path::new("/x"), &BTreeSet::from([1]), "kill").is_ok());
        // An eviction that refuses ends the removal at once.
        let t = tempfile::tempdir().unwrap();
        let calls = std::cell::Cell::new(0);
        let r = remove_all(&[t.path()], || {
            calls.set(calls.get() + 1);
            Ok(())
        });
        assert!(r.is_ok() && calls.get() == 0);
    }

    #[test]
    fn subtree_pids_are_recursive() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("c");
        mkdir_p(&d.join("sub")).unwrap();
        fs::write(d.join("cgroup.procs"), "3\n1\n").unwrap();
        fs::write(d.join("sub/cgroup.procs"), "2\n").unwrap();
        let p: Vec<i32> = subtree_pids(&d).unwrap().into_iter().collect();
        assert_eq!(p, vec![1, 2, 3]);
        assert!(subtree_pids(&t.path().join("nope")).is_err());
    }
}
