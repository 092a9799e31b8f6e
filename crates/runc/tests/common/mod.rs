//! The harness the warden-runc integration tests share: a busybox rootfs, bundles made from
//! `warden-runc spec`'s default, unique container ids, a per-test state root, and a guard that
//! takes back everything a test made (containers, state, cgroups, processes, mounts) even when
//! the test panics, and fails the test if the runtime left anything behind.
//!
//! Every test runs as root against the real kernel. Tests may run in parallel: each has its
//! own state root and its own container ids, and only ever touches what it created.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod engine;

/// The binary under test.
pub const RUNC: &str = env!("CARGO_BIN_EXE_warden-runc");

/// Every container's cgroupsPath is `/warden-test/<id>`.
pub const CGROUP_PARENT: &str = "warden-test";

/// The v1 hierarchies a cgroup v1 host mounts under /sys/fs/cgroup.
pub const CONTROLLERS: &[&str] = &[
    "memory", "cpu", "cpuacct", "cpuset", "pids", "freezer", "devices", "blkio",
];

/// How long one runtime command may take before the test gives up on it.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// The root filesystem

/// The busybox rootfs every bundle points at (read-only: tests must never change it).
/// `WARDEN_TEST_ROOTFS` (scripts/test.sh sets it), else built once into
/// `<workspace>/target/test-rootfs` by scripts/mkrootfs.sh under a file lock.
pub fn rootfs() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        if let Some(p) = std::env::var_os("WARDEN_TEST_ROOTFS").filter(|p| !p.is_empty()) {
            let p = PathBuf::from(p);
            assert!(
                p.join("bin/busybox").is_file(),
                "WARDEN_TEST_ROOTFS={} has no bin/busybox",
                p.display()
            );
            return p;
        }
        let ws = workspace();
        let target = ws.join("target");
        fs::create_dir_all(&target).unwrap();
        let dir = target.join("test-rootfs");
        let lock = fs::File::create(target.join("test-rootfs.lock")).unwrap();
        // SAFETY: flock on an fd we own; released when `lock` is dropped.
        assert_eq!(
            unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) },
            0
        );
        let out = Command::new(ws.join("scripts/mkrootfs.sh"))
            .arg(&dir)
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/mkrootfs.sh");
        assert!(
            out.status.success(),
            "scripts/mkrootfs.sh {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        drop(lock);
        dir
    })
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// What the rootfs looks like: every entry's path, type, size, mode and mtime. Taken once
/// per test process and compared when each test ends, so a runtime that writes into a
/// read-only root (a mount point, a cwd, a device node) is caught.
fn rootfs_fingerprint() -> BTreeMap<PathBuf, (u32, u64, i64)> {
    fn walk(dir: &Path, base: &Path, out: &mut BTreeMap<PathBuf, (u32, u64, i64)>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(m) = fs::symlink_metadata(&p) else {
                continue;
            };
            let rel = p.strip_prefix(base).unwrap().to_path_buf();
            let len = if m.is_dir() { 0 } else { m.len() };
            out.insert(rel, (m.mode(), len, m.mtime()));
            if m.is_dir() {
                walk(&p, base, out);
            }
        }
    }
    let root = rootfs();
    let mut out = BTreeMap::new();
    if let Ok(m) = fs::metadata(root) {
        out.insert(PathBuf::from("."), (m.mode(), 0, m.mtime()));
    }
    walk(root, root, &mut out);
    out
}

fn rootfs_baseline() -> &'static BTreeMap<PathBuf, (u32, u64, i64)> {
    static BASE: OnceLock<BTreeMap<PathBuf, (u32, u64, i64)>> = OnceLock::new();
    BASE.get_or_init(rootfs_fingerprint)
}

// ---------------------------------------------------------------------------------------
// Command results

/// A finished command: its exit code (128 + n when killed by signal n) and its output.
#[derive(Debug, Clone)]
pub struct Out {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Panics (with everything the command said) unless it exited 0.
    #[track_caller]
    pub fn ok(self) -> Out {
        assert_eq!(
            self.code,
            0,
            "`warden-runc {}` failed:\n{}",
            self.args.join(" "),
            self.describe()
        );
        self
    }

    /// Panics unless the command failed with exit code 1 and `want` on stderr (the message
    /// of runc's logrus line `level=error msg="..."`, whose quotes are escaped); returns
    /// stderr, unescaped.
    #[track_caller]
    pub fn fails_with(mut self, want: &str) -> String {
        self.stderr = self.stderr.replace("\\\"", "\"").replace("\\\\", "\\");
        assert_eq!(
            self.code,
            1,
            "`warden-runc {}` should fail with {want:?}:\n{}",
            self.args.join(" "),
            self.describe()
        );
        assert!(
            self.stderr.contains(want),
            "`warden-runc {}`: stderr should contain {want:?}:\n{}",
            self.args.join(" "),
            self.describe()
        );
        self.stderr
    }

    pub fn describe(&self) -> String {
        format!(
            "exit code {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

pub fn exit_code(st: ExitStatus) -> i32 {
    st.code()
        .or_else(|| st.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// Waits for `child` at most `timeout`; on timeout kills it and returns None.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return Some(st);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Polls `cond` until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------
// Host facts: processes, cgroups, mounts

/// Live processes (not zombies, not this test process) whose command line contains
/// `marker`, as (pid, command line).
pub fn procs_with(marker: &str) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmd) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(marker) && !proc_is_zombie(pid) {
            out.push((pid, cmd.trim_end().to_string()));
        }
    }
    out
}

/// The one-letter state of a process (R, S, Z...), None if it is gone.
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

fn proc_is_zombie(pid: i32) -> bool {
    matches!(proc_state(pid), Some('Z' | 'X') | None)
}

pub fn pid_alive(pid: i32) -> bool {
    !proc_is_zombie(pid)
}

/// The cgroup hierarchy the host runs containers in: v2 when the unified hierarchy is mounted
/// at /sys/fs/cgroup itself (it has a cgroup.controllers file there), v1 otherwise (a hybrid
/// host's empty cgroup2 at /sys/fs/cgroup/unified does not count: the runtime uses the v1
/// controllers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hierarchy {
    V1,
    V2,
}

pub fn hierarchy() -> Hierarchy {
    static H: OnceLock<Hierarchy> = OnceLock::new();
    *H.get_or_init(|| {
        if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            Hierarchy::V2
        } else {
            Hierarchy::V1
        }
    })
}

pub fn cgroup_v2() -> bool {
    hierarchy() == Hierarchy::V2
}

/// runc's cpu.shares → cpu.weight: `1 + ((shares - 2) * 9999) / 262142`.
pub fn cpu_weight_of_shares(shares: u64) -> u64 {
    1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142
}

/// v1: /sys/fs/cgroup/<controller>/warden-test/<id>. Panics on a v2 host (where a
/// controller has no directory of its own: see [`cgroup_v2_dir`]).
#[track_caller]
pub fn cgroup_dir(controller: &str, id: &str) -> PathBuf {
    assert_eq!(
        hierarchy(),
        Hierarchy::V1,
        "cgroup_dir({controller:?}) is a v1 path; this host runs cgroup v2"
    );
    Path::new("/sys/fs/cgroup")
        .join(controller)
        .join(CGROUP_PARENT)
        .join(id)
}

/// v1: reads a file of the container's cgroup in `controller`'s hierarchy, trimmed.
#[track_caller]
pub fn cgroup_file(controller: &str, id: &str, file: &str) -> String {
    read_trimmed(&cgroup_dir(controller, id).join(file))
}

/// v2: /sys/fs/cgroup/warden-test/<id>. Panics on a v1 host.
#[track_caller]
pub fn cgroup_v2_dir(id: &str) -> PathBuf {
    assert_eq!(
        hierarchy(),
        Hierarchy::V2,
        "cgroup_v2_dir is a v2 path; this host runs cgroup v1"
    );
    Path::new("/sys/fs/cgroup").join(CGROUP_PARENT).join(id)
}

/// v2: reads a file of the container's cgroup, trimmed.
#[track_caller]
pub fn cgroup_v2_file(id: &str, file: &str) -> String {
    read_trimmed(&cgroup_v2_dir(id).join(file))
}

#[track_caller]
fn read_trimmed(p: &Path) -> String {
    fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

/// The value of a `key value` line of a flat-keyed cgroup file's text (memory.events,
/// cpu.stat, memory.oom_control, pids.events), if there is one.
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// The dirs the container's cgroup should have on this host: one per v1 controller, or the
/// one of the unified hierarchy.
#[track_caller]
pub fn container_cgroup_dirs(id: &str) -> Vec<(String, PathBuf)> {
    match hierarchy() {
        Hierarchy::V1 => CONTROLLERS
            .iter()
            .map(|c| (c.to_string(), cgroup_dir(c, id)))
            .collect(),
        Hierarchy::V2 => vec![("unified".to_string(), cgroup_v2_dir(id))],
    }
}

/// The processes in the container's cgroup: the cgroup.procs of `controller`'s hierarchy
/// on v1, of the unified hierarchy on v2 (where `controller` does not matter).
#[track_caller]
pub fn cgroup_procs(controller: &str, id: &str) -> Vec<i32> {
    let text = match hierarchy() {
        Hierarchy::V1 => cgroup_file(controller, id, "cgroup.procs"),
        Hierarchy::V2 => cgroup_v2_file(id, "cgroup.procs"),
    };
    text.lines()
        .map(|l| {
            l.trim()
                .parse()
                .unwrap_or_else(|e| panic!("cgroup.procs line {l:?}: {e}"))
        })
        .collect()
}

/// The container's freezer state as v1's freezer.state names it: THAWED, FREEZING or
/// FROZEN. On v2, from cgroup.freeze (asked) and cgroup.events' `frozen` (done): FROZEN
/// when both are 1, THAWED when both are 0, FREEZING while the freeze is asked but not done,
/// and a description of the two otherwise (a thaw not done).
#[track_caller]
pub fn freezer_state(id: &str) -> String {
    match hierarchy() {
        Hierarchy::V1 => cgroup_file("freezer", id, "freezer.state"),
        Hierarchy::V2 => {
            let asked = cgroup_v2_file(id, "cgroup.freeze");
            let events = cgroup_v2_file(id, "cgroup.events");
            let frozen = keyed(&events, "frozen");
            match (asked.as_str(), frozen) {
                ("1", Some(1)) => "FROZEN".into(),
                ("0", Some(0)) => "THAWED".into(),
                ("1", Some(0)) => "FREEZING".into(),
                _ => format!("cgroup.freeze {asked}, cgroup.events:\n{events}"),
            }
        }
    }
}

/// The roots of the hierarchies mounted under /sys/fs/cgroup: on v1 each controller's (and
/// name=systemd's, unified's), on v2 /sys/fs/cgroup itself.
pub fn cgroup_roots() -> Vec<PathBuf> {
    if cgroup_v2() {
        return vec![PathBuf::from("/sys/fs/cgroup")];
    }
    let mut roots: Vec<PathBuf> = fs::read_dir("/sys/fs/cgroup")
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    roots.sort();
    roots
}

/// The container's cgroup dirs that exist on the host, in any hierarchy.
pub fn cgroup_dirs_left(id: &str) -> Vec<PathBuf> {
    cgroup_roots()
        .into_iter()
        .map(|r| r.join(CGROUP_PARENT).join(id))
        .filter(|p| p.exists())
        .collect()
}

/// Mount points of this (the host's) mount namespace.
pub fn host_mount_points() -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(unescape_mountinfo))
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as octal.
pub fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// One line of /proc/<pid>/mountinfo.
#[derive(Debug, Clone)]
pub struct MountInfo {
    pub mount_point: String,
    pub options: Vec<String>,
    pub fstype: String,
    pub source: String,
    pub super_options: Vec<String>,
}

impl MountInfo {
    pub fn is_ro(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
    }
}

pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            Some(MountInfo {
                mount_point: unescape_mountinfo(f.get(4)?),
                options: f.get(5)?.split(',').map(String::from).collect(),
                fstype: r.first()?.to_string(),
                source: r.get(1).copied().unwrap_or_default().to_string(),
                super_options: r
                    .get(2)
                    .copied()
                    .unwrap_or_default()
                    .split(',')
                    .map(String::from)
                    .collect(),
            })
        })
        .collect()
}

/// The value of a `Key:` line of a /proc/<pid>/status text.
#[track_caller]
pub fn status_field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {key}: in\n{status}"))
        .trim()
}

/// Capability numbers (linux/capability.h) of the names the tests use.
pub fn cap_number(name: &str) -> u32 {
    match name {
        "CAP_CHOWN" => 0,
        "CAP_DAC_OVERRIDE" => 1,
        "CAP_FOWNER" => 3,
        "CAP_KILL" => 5,
        "CAP_SETGID" => 6,
        "CAP_SETUID" => 7,
        "CAP_NET_BIND_SERVICE" => 10,
        "CAP_NET_RAW" => 13,
        "CAP_SYS_CHROOT" => 18,
        "CAP_SYS_ADMIN" => 21,
        "CAP_MKNOD" => 27,
        "CAP_AUDIT_WRITE" => 29,
        other => panic!("cap_number: add {other}"),
    }
}

/// The hex mask /proc/<pid>/status shows for a set of capabilities.
pub fn cap_mask(names: &[&str]) -> String {
    let mask = names.iter().fold(0u64, |m, n| m | (1u64 << cap_number(n)));
    format!("{mask:016x}")
}

/// Sets process.capabilities' bounding, effective and permitted sets to `caps`, and
/// inheritable and ambient to nothing.
pub fn set_caps(spec: &mut Value, caps: &[&str]) {
    let list: Vec<Value> = caps.iter().map(|c| Value::from(*c)).collect();
    spec["process"]["capabilities"] = serde_json::json!({
        "bounding": list, "effective": list, "permitted": list,
        "inheritable": [], "ambient": []
    });
}

// ---------------------------------------------------------------------------------------
// CRIU

/// Why CRIU cannot work on this machine (`criu check`'s first error), or None if it can.
/// With `WARDEN_REQUIRE_CRIU=1` (the v2 lane, where it must work) a CRIU that cannot work
/// panics here instead, so a test cannot pass there by checking only that it fails.
pub fn criu_unusable() -> Option<String> {
    let out = match std::process::Command::new("criu")
        .arg("check")
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) => o,
        Err(e) => return Some(format!("criu cannot be run: {e}")),
    };
    if out.status.success() {
        return None;
    }
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    let first = text
        .lines()
        .find(|l| l.contains("Error ("))
        .unwrap_or(text.trim())
        .to_string();
    if std::env::var("WARDEN_REQUIRE_CRIU").as_deref() == Ok("1") {
        panic!("WARDEN_REQUIRE_CRIU=1 but `criu check` fails here:\n{text}");
    }
    Some(first)
}

/// The message part of a CRIU error line: `Error (criu/vdso.c:381): vdso: ...` → `vdso: ...`.
pub fn criu_message(line: &str) -> &str {
    line.split_once("): ")
        .map(|(_, m)| m)
        .unwrap_or(line)
        .trim()
}

// ---------------------------------------------------------------------------------------
// Cgroup parents: /sys/fs/cgroup/<c>/warden-test is made by the runtime when the first
// container asks for it. It is removed (rmdir: only if empty) when the last test of this
// process that could use it is over, and only if it was not there before this process's
// first test.

struct Parents {
    active: usize,
    /// The parent dirs that existed before our first test; never removed.
    preexisting: Option<BTreeSet<PathBuf>>,
}

static PARENTS: Mutex<Parents> = Mutex::new(Parents {
    active: 0,
    preexisting: None,
});

fn parent_dirs() -> Vec<PathBuf> {
    cgroup_roots()
        .into_iter()
        .map(|r| r.join(CGROUP_PARENT))
        .collect()
}

fn enter_test() {
    let mut p = PARENTS.lock().unwrap_or_else(|e| e.into_inner());
    if p.preexisting.is_none() {
        p.preexisting = Some(parent_dirs().into_iter().filter(|d| d.exists()).collect());
    }
    p.active += 1;
}

fn leave_test() {
    let mut p = PARENTS.lock().unwrap_or_else(|e| e.into_inner());
    p.active -= 1;
    if p.active > 0 {
        return;
    }
    let pre = p.preexisting.clone().unwrap_or_default();
    for d in parent_dirs() {
        if !pre.contains(&d) {
            // EBUSY/ENOTEMPTY: someone else's containers are still in there; leave it.
            let _ = fs::remove_dir(&d);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The per-test environment

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// One test's world: its own state root and bundles in a temp dir, the ids it made, and on
/// drop the cleanup and the leak checks.
pub struct Env {
    pub name: String,
    dir: Option<tempfile::TempDir>,
    /// The state root every command of this test gets as `--root`.
    pub root: PathBuf,
    ids: Mutex<Vec<String>>,
    mounts_before: BTreeSet<String>,
}

impl Env {
    pub fn new(name: &str) -> Env {
        let _ = rootfs_baseline();
        enter_test();
        let dir = tempfile::Builder::new()
            .prefix(&format!("warden-runc-test-{name}-"))
            .tempdir()
            .expect("tempdir");
        let root = dir.path().join("root");
        let mut env = Env {
            name: name.replace('_', "-"),
            root,
            dir: Some(dir),
            ids: Mutex::new(Vec::new()),
            mounts_before: BTreeSet::new(),
        };
        env.mounts_before = env.watched_mounts();
        env
    }

    /// The test's temp dir (bundles, logs, hook output).
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    /// A fresh, unique container id `t-<test>-<pid>-<n>`, registered for cleanup.
    pub fn new_id(&self) -> String {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!("t-{}-{}-{n:03}", self.name, std::process::id());
        self.ids.lock().unwrap().push(id.clone());
        id
    }

    /// Writes a bundle for `id` and returns its dir. The config is the default spec with
    /// terminal off, the shared rootfs read-only, cgroupsPath `/warden-test/<id>`, no
    /// ambient capabilities (runc's template asks for ambient ones it lists nowhere else, so
    /// every run would warn; tests/bundles.rs runs the template as it is), then `edit`.
    pub fn bundle(&self, id: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
        let mut spec = warden_runtime::spec::default_spec(None);
        spec["process"]["capabilities"]
            .as_object_mut()
            .unwrap()
            .remove("ambient");
        spec["process"]["terminal"] = false.into();
        spec["root"] = serde_json::json!({"path": rootfs(), "readonly": true});
        spec["linux"]["cgroupsPath"] = format!("/{CGROUP_PARENT}/{id}").into();
        edit(&mut spec);
        self.bundle_raw(id, &serde_json::to_vec_pretty(&spec).unwrap())
    }

    /// A bundle dir for `id` whose config.json has exactly `config`.
    pub fn bundle_raw(&self, id: &str, config: &[u8]) -> PathBuf {
        let b = self.empty_bundle(id);
        fs::write(b.join("config.json"), config).unwrap();
        b
    }

    /// A bundle dir for `id` with no config.json.
    pub fn empty_bundle(&self, id: &str) -> PathBuf {
        let b = self.dir().join("bundles").join(id);
        fs::create_dir_all(&b).unwrap();
        b
    }

    fn out_paths(&self) -> (PathBuf, PathBuf) {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let d = self.dir().join("out");
        fs::create_dir_all(&d).unwrap();
        (d.join(format!("{n}.stdout")), d.join(format!("{n}.stderr")))
    }

    /// Starts `warden-runc --root <root> ARGS` with stdout and stderr going to files (never
    /// pipes: a container's init inherits them and may outlive the command).
    pub fn spawn(&self, args: &[&str]) -> Running {
        self.spawn_with(args, |_| {})
    }

    /// `spawn`, with `setup` changing the command first (e.g. a pre_exec).
    pub fn spawn_with(&self, args: &[&str], setup: impl FnOnce(&mut Command)) -> Running {
        let (so, se) = self.out_paths();
        let mut full = vec!["--root".to_string(), self.root.display().to_string()];
        full.extend(args.iter().map(|s| s.to_string()));
        let mut cmd = Command::new(RUNC);
        cmd.args(&full)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&so).unwrap())
            .stderr(fs::File::create(&se).unwrap());
        setup(&mut cmd);
        let child = cmd.spawn().expect("spawn warden-runc");
        Running {
            child,
            args: full,
            stdout: so,
            stderr: se,
            done: false,
        }
    }

    /// Runs `warden-runc --root <root> ARGS` to completion (at most CMD_TIMEOUT).
    pub fn runc(&self, args: &[&str]) -> Out {
        self.spawn(args).wait(CMD_TIMEOUT)
    }

    pub fn create(&self, id: &str, bundle: &Path) -> Out {
        self.runc(&["create", "-b", bundle.to_str().unwrap(), id])
    }

    /// Creates a container from the default spec edited by `edit`; panics if create fails.
    pub fn created(&self, edit: impl FnOnce(&mut Value)) -> String {
        let id = self.new_id();
        let b = self.bundle(&id, edit);
        self.create(&id, &b).ok();
        id
    }

    /// Creates and starts a container running `args`.
    pub fn started(&self, args: &[&str]) -> String {
        let id = self.created(|s| s["process"]["args"] = serde_json::json!(args));
        self.runc(&["start", &id]).ok();
        id
    }

    /// `run`s (foreground) a container with the default spec edited by `edit`, plus
    /// `flags` before the id. Returns what the container printed and its exit code.
    pub fn run_container(&self, flags: &[&str], edit: impl FnOnce(&mut Value)) -> Out {
        let id = self.new_id();
        let b = self.bundle(&id, edit);
        let mut args = vec!["run", "-b", b.to_str().unwrap()];
        args.extend_from_slice(flags);
        args.push(&id);
        self.runc(&args)
    }

    /// `run`s `argv` in a default container; panics unless it exits 0.
    pub fn run_ok(&self, argv: &[&str]) -> Out {
        self.run_container(&[], |s| s["process"]["args"] = serde_json::json!(argv))
            .ok()
    }

    /// The container's `state` document; panics if `state` fails.
    #[track_caller]
    pub fn state(&self, id: &str) -> Value {
        let out = self.runc(&["state", id]).ok();
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("state {id}: bad JSON ({e}):\n{}", out.stdout))
    }

    #[track_caller]
    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Polls `state` until the status is `want` (a container that does not exist yet, as
    /// while a `run` in the background is creating it, counts as not there yet); panics
    /// after `timeout`.
    #[track_caller]
    pub fn wait_status(&self, id: &str, want: &str, timeout: Duration) {
        let mut last = String::new();
        let ok = wait_until(timeout, || {
            let out = self.runc(&["state", id]);
            last = if out.code == 0 {
                serde_json::from_str::<Value>(&out.stdout)
                    .ok()
                    .and_then(|v| v["status"].as_str().map(String::from))
                    .unwrap_or_else(|| format!("bad state JSON: {}", out.stdout))
            } else if out.stderr.contains("container does not exist") {
                "(does not exist)".to_string()
            } else {
                format!("state failed: {}", out.describe())
            };
            last == want
        });
        assert!(
            ok,
            "{id}: status still {last:?} after {timeout:?}, want {want:?}"
        );
    }

    fn watched_mounts(&self) -> BTreeSet<String> {
        let ids = self.ids.lock().unwrap().clone();
        let dir = self.dir().display().to_string();
        let rootfs = rootfs().display().to_string();
        host_mount_points()
            .into_iter()
            .filter(|m| {
                m.starts_with(&dir) || m.starts_with(&rootfs) || ids.iter().any(|id| m.contains(id))
            })
            .collect()
    }

    /// Everything a container `id` might have left on the host: its state dir, cgroup dirs,
    /// processes (by the id in their command line) and mounts. Empty when clean.
    pub fn leftovers(&self, id: &str) -> Vec<String> {
        let mut out = Vec::new();
        let state_dir = self.root.join(id);
        if state_dir.exists() {
            out.push(format!("state dir {}", state_dir.display()));
        }
        for d in cgroup_dirs_left(id) {
            out.push(format!("cgroup {}", d.display()));
        }
        for (pid, cmd) in procs_with(id) {
            out.push(format!("process {pid}: {cmd}"));
        }
        for m in host_mount_points() {
            if m.contains(id) {
                out.push(format!("mount {m}"));
            }
        }
        out
    }

    /// Asserts `leftovers(id)` is empty, and that no mount appeared under the rootfs or this
    /// test's dir.
    #[track_caller]
    pub fn assert_clean(&self, id: &str) {
        let mut left = self.leftovers(id);
        let now = self.watched_mounts();
        left.extend(
            now.difference(&self.mounts_before)
                .map(|m| format!("new host mount {m}")),
        );
        assert!(
            left.is_empty(),
            "{id} left behind:\n  {}",
            left.join("\n  ")
        );
    }
}

/// A `warden-runc` command still running. Dropped unfinished (a test that panicked before
/// waiting), it is killed.
pub struct Running {
    pub child: Child,
    pub args: Vec<String>,
    stdout: PathBuf,
    stderr: PathBuf,
    done: bool,
}

impl Running {
    /// Waits at most `timeout`; panics if the command is still running then.
    #[track_caller]
    pub fn wait(mut self, timeout: Duration) -> Out {
        let (st, out) = self.finish(timeout);
        assert!(
            st.is_some(),
            "`warden-runc {}` did not finish within {timeout:?}:\n{}",
            self.args.join(" "),
            out.describe()
        );
        out
    }

    /// Waits at most `timeout` (then kills it); returns how it ended and what it said.
    pub fn finish(&mut self, timeout: Duration) -> (Option<ExitStatus>, Out) {
        let st = wait_child(&mut self.child, timeout);
        self.done = true;
        let out = Out {
            args: self.args.clone(),
            code: st.map(exit_code).unwrap_or(-1),
            stdout: fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr: fs::read_to_string(&self.stderr).unwrap_or_default(),
        };
        (st, out)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let mut problems = Vec::new();
        let mut ids = self.ids.lock().unwrap().clone();
        // Containers the test made under ids it did not get from new_id (there should be
        // none, but the root is ours, so whatever is in it is ours too).
        if let Ok(entries) = fs::read_dir(&self.root) {
            for e in entries.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        for id in &ids {
            if !self.root.join(id).exists() {
                continue;
            }
            let (st, out) = self
                .spawn(&["delete", "--force", id])
                .finish(Duration::from_secs(20));
            if !st.is_some_and(|st| st.success()) {
                problems.push(format!(
                    "delete --force {id}: {st:?}: {}",
                    out.stderr.trim()
                ));
            }
        }
        // What delete --force should have taken back: check, and take it back by hand.
        for id in &ids {
            let left = self.leftovers(id);
            if left.is_empty() {
                continue;
            }
            problems.push(format!("{id} left behind: {}", left.join("; ")));
            for (pid, _) in procs_with(id) {
                // SAFETY: kill(2) with a pid we just found.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            for d in cgroup_dirs_left(id) {
                remove_cgroup(&d);
            }
            for m in host_mount_points() {
                if m.contains(id.as_str()) {
                    let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
                }
            }
            let _ = fs::remove_dir_all(self.root.join(id));
        }
        let now = self.watched_mounts();
        for m in now.difference(&self.mounts_before) {
            problems.push(format!("new host mount {m}"));
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        let base = rootfs_baseline();
        let cur = rootfs_fingerprint();
        if &cur != base {
            let added: Vec<_> = cur.keys().filter(|k| !base.contains_key(*k)).collect();
            let removed: Vec<_> = base.keys().filter(|k| !cur.contains_key(*k)).collect();
            let changed: Vec<_> = cur
                .iter()
                .filter(|(k, v)| base.get(*k).is_some_and(|b| b != *v))
                .map(|(k, _)| k)
                .collect();
            problems.push(format!(
                "the shared rootfs {} was modified: added {added:?}, removed {removed:?}, changed {changed:?}",
                rootfs().display()
            ));
        }
        self.dir.take();
        leave_test();
        if !problems.is_empty() {
            let msg = format!(
                "test {} left things behind:\n  {}",
                self.name,
                problems.join("\n  ")
            );
            if std::thread::panicking() {
                eprintln!("{msg}");
            } else {
                panic!("{msg}");
            }
        }
    }
}

/// Kills what is in a cgroup dir and removes it, a bounded number of tries.
fn remove_cgroup(d: &Path) {
    let freezer = d.join("freezer.state");
    if freezer.exists() {
        let _ = fs::write(&freezer, "THAWED");
    }
    // v2: thaw, and kill the whole subtree at once where the kernel can (5.14+).
    if d.join("cgroup.freeze").exists() {
        let _ = fs::write(d.join("cgroup.freeze"), "0");
    }
    if d.join("cgroup.kill").exists() {
        let _ = fs::write(d.join("cgroup.kill"), "1");
    }
    for _ in 0..50 {
        if let Ok(procs) = fs::read_to_string(d.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // SAFETY: kill(2) with a pid from the cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if fs::remove_dir(d).is_ok() || !d.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A host directory with one file, for bind mounts.
pub fn host_dir(env: &Env, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let d = env.dir().join(name);
    fs::create_dir_all(&d).unwrap();
    for (f, text) in files {
        fs::write(d.join(f), text).unwrap();
    }
    d
}

/// Runs the bundle with crun 1.8.1 (as `<id>-crun`, for a test to compare with) where that is
/// possible: crun installed and a cgroup v1 host (crun refuses this host's hybrid layout
/// unless the empty cgroup2 mount is out of its sight, as bench/lifecycle.sh does). Returns
/// its stdout, None where it cannot run; panics if crun fails the bundle. crun 1.8 refuses
/// any ociVersion after 1.0.2.
pub fn crun(env: &Env, bundle: &Path, id: &str) -> Option<String> {
    if !Path::new("/usr/bin/crun").exists() || cgroup_v2() {
        return None;
    }
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg("umount /sys/fs/cgroup/unified 2>/dev/null; exec \"$0\" \"$@\"")
        .arg("crun")
        .arg("--root")
        .arg(env.dir().join("crun-root"))
        .args(["run", "-b", bundle.to_str().unwrap(), &format!("{id}-crun")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "crun fails the bundle: {out:?}");
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}
