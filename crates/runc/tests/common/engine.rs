//! What the tests that start an engine daemon of their own (docker.rs: dockerd; containerd.rs:
//! containerd) share: its client's commands, run with their output in files and a timeout,
//! and the sweep of what the daemon and its shims leave on the host.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// What an engine's client (`docker`, `ctr`) said: the command's result, and which client.
pub struct Out {
    pub program: &'static str,
    pub out: super::Out,
}

impl std::ops::Deref for Out {
    type Target = super::Out;

    fn deref(&self) -> &super::Out {
        &self.out
    }
}

impl Out {
    #[track_caller]
    pub fn ok(self) -> Out {
        assert_eq!(self.code, 0, "{}", self.describe());
        self
    }

    /// stdout, trimmed, with a terminal's CRLFs made LFs.
    pub fn text(&self) -> String {
        self.stdout.trim().replace("\r\n", "\n")
    }

    pub fn describe(&self) -> String {
        format!(
            "`{} {}`: {}",
            self.program,
            self.args.join(" "),
            self.out.describe()
        )
    }
}

/// Runs client commands with stdout and stderr in numbered files of `dir` rather than pipes
/// (a daemon or shim the command starts inherits nothing of ours then), each at most
/// `timeout`.
pub struct Client {
    pub program: &'static str,
    pub dir: PathBuf,
    pub timeout: Duration,
    n: AtomicU32,
}

impl Client {
    pub fn new(program: &'static str, dir: PathBuf, timeout: Duration) -> Client {
        Client {
            program,
            dir,
            timeout,
            n: AtomicU32::new(0),
        }
    }

    /// Runs `cmd` (the client with `args`, as the caller built it).
    pub fn run(&self, mut cmd: Command, args: &[&str]) -> Out {
        let n = self.n.fetch_add(1, Ordering::Relaxed);
        fs::create_dir_all(&self.dir).unwrap();
        let (so, se) = (
            self.dir.join(format!("{n}.out")),
            self.dir.join(format!("{n}.err")),
        );
        let mut child = cmd
            .stdout(fs::File::create(&so).unwrap())
            .stderr(fs::File::create(&se).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.program));
        let st = super::wait_child(&mut child, self.timeout);
        let mut out = super::Out {
            args: args.iter().map(|s| s.to_string()).collect(),
            code: st.map(super::exit_code).unwrap_or(-1),
            stdout: fs::read_to_string(&so).unwrap_or_default(),
            stderr: fs::read_to_string(&se).unwrap_or_default(),
        };
        if st.is_none() {
            out.stderr += &format!("\n(killed after {:?})", self.timeout);
        }
        Out {
            program: self.program,
            out,
        }
    }
}

/// Waits (at most 60 s) until `up` holds for the daemon `child` started as `name`; panics
/// with `log` if it exits first or never comes up.
pub fn wait_daemon_up(
    name: &str,
    child: &mut Child,
    mut up: impl FnMut() -> Result<(), String>,
    log: impl Fn() -> String,
) {
    let mut last = String::new();
    let mut exited = false;
    let ok = super::wait_until(Duration::from_secs(60), || {
        if let Ok(Some(st)) = child.try_wait() {
            last = format!("{name} exited: {st}");
            exited = true;
            return true;
        }
        up().map_err(|e| last = e).is_ok()
    });
    assert!(
        ok && !exited,
        "{name} did not come up: {last}\n--- {name} log\n{}",
        log()
    );
}

/// SIGTERM to the daemon we started, and a wait (30 s, then SIGKILL).
pub fn stop_daemon(name: &str, child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        // SAFETY: kill(2) on the daemon we started.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        if super::wait_child(child, Duration::from_secs(30)).is_none() {
            eprintln!("{name} did not stop on SIGTERM within 30s: killed");
        }
    }
    let _ = child.wait();
}

/// Dirs a daemon makes on the host outside the test's temp dir, and whether each was there
/// before the test: those it made are removed at the end, if empty.
pub struct HostDirs(Vec<(PathBuf, bool)>);

impl HostDirs {
    /// Parents before children.
    pub fn record(paths: &[&str]) -> HostDirs {
        HostDirs(
            paths
                .iter()
                .map(|p| (PathBuf::from(p), Path::new(p).exists()))
                .collect(),
        )
    }

    pub fn remove_made(&self) {
        for (p, existed) in self.0.iter().rev() {
            if !existed {
                let _ = fs::remove_dir(p);
            }
        }
    }
}

/// What a daemon started from `dir` left: processes naming `dir` on their command lines
/// (its shims, its containerd) killed, mounts under it unmounted, and the cgroup dir
/// `cgroup_parent` removed in every hierarchy.
pub fn sweep(dir: &Path, cgroup_parent: &str) {
    let marker = dir.display().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = super::procs_with(&marker);
        if left.is_empty() || Instant::now() > deadline {
            break;
        }
        for (pid, _) in left {
            // SAFETY: kill(2) on a process started from our dirs.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut points: Vec<String> = super::host_mount_points()
        .into_iter()
        .filter(|p| p.starts_with(&marker))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
    for root in super::cgroup_roots() {
        remove_tree(&root.join(cgroup_parent));
    }
}

/// rmdir a cgroup dir and every dir below it, deepest first (each must be empty of tasks).
fn remove_tree(d: &Path) {
    if !d.is_dir() {
        return;
    }
    for e in fs::read_dir(d).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&e.path());
        }
    }
    let _ = fs::remove_dir(d);
}
