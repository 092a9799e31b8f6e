//! The job machinery end to end: real containers made by our `warden-runc` (on the busybox
//! rootfs, process `sleep 1000`), jobs run in them by real keepers (the `wardend` binary under
//! test, `wardend __warden_keeper`, given the job dir on stdin), followed through their job dirs.
//!
//! Needs root, the busybox rootfs (`WARDEN_TEST_ROOTFS`, default /var/cache/warden/rootfs, made
//! by scripts/mkrootfs.sh; used read-only) and `warden-runc` built into the same target dir
//! (`cargo build -p warden-runc`). Run as
//! `tini -s -g -- cargo test -p warden-daemon --test jobs`.
//!
//! Every test makes its own containers (ids `jobs-<test>-<pid>-<n>`, cgroups
//! `/warden-test/<id>`, state root and job dirs in a temp dir) and takes them back on drop,
//! pass or fail.

use std::collections::BTreeSet;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use warden_daemon::helper::Helper;
use warden_daemon::jobs::{
    self, JobSpec, JobStatus, Recovered, StreamItem, KEEPER_DIED_ERROR, OUTPUT_LIMIT_ERROR,
};
use warden_daemon::steps::Steps;

/// The keeper executable: wardend, whose main dispatches `__warden_keeper`.
const KEEPER: &str = env!("CARGO_BIN_EXE_wardend");
const CGROUP_PARENT: &str = "warden-test";
const TIMEOUT: Duration = Duration::from_secs(30);

/// A keeper helper, one per call: a helper's spare belongs to the tokio runtime that started
/// it, and each test has a runtime of its own.
fn keeper() -> Arc<Helper> {
    Helper::new(Path::new(KEEPER), jobs::keeper::KEEPER_ARG)
}

// ---------------------------------------------------------------------------------------
// Harness

fn runc() -> PathBuf {
    // <target>/debug/deps/jobs-<hash> → <target>/debug/warden-runc
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().unwrap().parent().unwrap().join("warden-runc");
    assert!(
        p.is_file(),
        "{} is missing: build it first (cargo build -p warden-runc, same CARGO_TARGET_DIR)",
        p.display()
    );
    p
}

fn rootfs() -> PathBuf {
    let p = std::env::var_os("WARDEN_TEST_ROOTFS")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/warden/rootfs"));
    assert!(
        p.join("bin/busybox").is_file(),
        "{} has no bin/busybox: run scripts/mkrootfs.sh (or set WARDEN_TEST_ROOTFS)",
        p.display()
    );
    p
}

fn cgroup_roots() -> Vec<PathBuf> {
    std::fs::read_dir("/sys/fs/cgroup")
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

/// The cgroup parents that existed before the first test of this process (never removed),
/// and how many tests are running (the last one out removes the others, if empty).
static PARENTS: Mutex<(usize, Option<BTreeSet<PathBuf>>)> = Mutex::new((0, None));
static COUNTER: AtomicU32 = AtomicU32::new(0);

fn parent_dirs() -> Vec<PathBuf> {
    cgroup_roots()
        .into_iter()
        .map(|r| r.join(CGROUP_PARENT))
        .collect()
}

/// One running container and a temp dir for its state root, bundle and job dirs. Dropped, it
/// is deleted (`warden-runc delete --force`) and whatever is left of it taken back by hand.
struct Ctr {
    tmp: Option<tempfile::TempDir>,
    root: PathBuf,
    id: String,
}

impl Ctr {
    fn new(test: &str) -> Ctr {
        {
            let mut p = PARENTS.lock().unwrap_or_else(|e| e.into_inner());
            if p.1.is_none() {
                p.1 = Some(parent_dirs().into_iter().filter(|d| d.exists()).collect());
            }
            p.0 += 1;
        }
        let tmp = tempfile::Builder::new()
            .prefix(&format!("warden-jobs-{test}-"))
            .tempdir()
            .unwrap();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!("jobs-{}-{}-{n}", test.replace('_', "-"), std::process::id());
        let c = Ctr {
            root: tmp.path().join("state"),
            tmp: Some(tmp),
            id,
        };
        let bundle = c.dir().join("bundle");
        std::fs::create_dir_all(&bundle).unwrap();
        let mut spec = warden_runtime::spec::default_spec(None);
        spec["process"]["terminal"] = false.into();
        spec["process"]["args"] = serde_json::json!(["sleep", "1000"]);
        spec["root"] = serde_json::json!({"path": rootfs(), "readonly": true});
        spec["linux"]["cgroupsPath"] = format!("/{CGROUP_PARENT}/{}", c.id).into();
        std::fs::write(
            bundle.join("config.json"),
            serde_json::to_vec_pretty(&spec).unwrap(),
        )
        .unwrap();
        c.runc(&["create", "-b", bundle.to_str().unwrap(), &c.id]);
        c.runc(&["start", &c.id]);
        c
    }

    fn dir(&self) -> &Path {
        self.tmp.as_ref().unwrap().path()
    }

    /// Runs `warden-runc --root <root> ARGS`, output to files (the init inherits them);
    /// panics unless it succeeds.
    #[track_caller]
    fn runc(&self, args: &[&str]) {
        let (ok, out) = self.try_runc(args);
        assert!(ok, "warden-runc {args:?} failed: {out}");
    }

    fn try_runc(&self, args: &[&str]) -> (bool, String) {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let log = self.dir().join(format!("runc-{n}.log"));
        let status = Command::new(runc())
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .status()
            .expect("run warden-runc");
        (
            status.success(),
            std::fs::read_to_string(&log).unwrap_or_default(),
        )
    }

    fn job_dir(&self, n: u32) -> PathBuf {
        self.dir().join("jobs").join(n.to_string())
    }

    /// A privileged job running `script` with /bin/sh in `/`.
    fn spec(&self, script: &str) -> JobSpec {
        JobSpec {
            runtime_root: self.root.clone(),
            container_id: self.id.clone(),
            script: script.to_string(),
            uid: 0,
            gid: 0,
            privileged: true,
            rlimits: vec![],
            env: jobs::job_env("root", "/root"),
            cwd: "/".into(),
            shell: jobs::shell_for(&rootfs()).to_string(),
            discard_output: false,
            output_limit: jobs::DEFAULT_OUTPUT_LIMIT,
            log: None,
        }
    }

    /// The pids in the container's cgroup.
    fn pids(&self) -> Vec<i32> {
        warden_runtime::Container::load(&self.root, &self.id)
            .unwrap()
            .pids()
            .unwrap()
    }

    fn init_pid(&self) -> i32 {
        warden_runtime::Container::load(&self.root, &self.id)
            .unwrap()
            .state
            .pid
    }
}

impl Drop for Ctr {
    fn drop(&mut self) {
        if self.root.join(&self.id).exists() {
            let (ok, out) = self.try_runc(&["delete", "--force", &self.id]);
            if !ok {
                eprintln!("delete --force {}: {out}", self.id);
            }
        }
        for d in cgroup_roots() {
            let d = d.join(CGROUP_PARENT).join(&self.id);
            for _ in 0..50 {
                if !d.exists() {
                    break;
                }
                let _ = std::fs::write(d.join("freezer.state"), "THAWED");
                if let Ok(procs) = std::fs::read_to_string(d.join("cgroup.procs")) {
                    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                        // SAFETY: kill(2) with a pid from our own container's cgroup.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
                if std::fs::remove_dir(&d).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.tmp.take();
        let mut p = PARENTS.lock().unwrap_or_else(|e| e.into_inner());
        p.0 -= 1;
        if p.0 == 0 {
            let pre = p.1.clone().unwrap_or_default();
            for d in parent_dirs() {
                if !pre.contains(&d) {
                    let _ = std::fs::remove_dir(&d); // only if empty
                }
            }
        }
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn spawn(dir: &Path, spec: &JobSpec) -> jobs::Job {
    let mut steps = Steps::new();
    let s = jobs::spawn(&keeper(), dir, spec, &mut steps)
        .await
        .unwrap_or_else(|e| panic!("spawn in {}: {e}", dir.display()));
    // Both sides say where the start's time went, down to the child's exec.
    let ours = warden_daemon::steps::parse(&format!(" steps=\"{steps}\"")).unwrap();
    let names: Vec<&str> = ours.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["dir", "job_json", "keeper", "total"], "{steps}");
    let theirs = warden_daemon::steps::parse(&format!(" steps=\"{}\"", s.keeper_steps))
        .unwrap_or_else(|| panic!("keeper steps {:?}", s.keeper_steps));
    for want in [
        "detach",
        "container",
        "fork",
        "cgroup",
        "child",
        "job_pid",
        "total",
    ] {
        assert!(
            theirs.iter().any(|(n, _)| n == want),
            "{want} in {:?}",
            s.keeper_steps
        );
    }
    s.job
}

async fn link(dir: &Path) -> jobs::Linked {
    tokio::time::timeout(TIMEOUT, jobs::link(dir, &mut Steps::new()))
        .await
        .expect("link timed out")
        .expect("link")
}

async fn run(c: &Ctr, n: u32, spec: &JobSpec) -> jobs::Linked {
    let dir = c.job_dir(n);
    spawn(&dir, spec).await;
    link(&dir).await
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Everything a stream delivers, in order (timing out after TIMEOUT).
async fn collect(mut rx: tokio::sync::mpsc::Receiver<StreamItem>) -> Vec<StreamItem> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while let Ok(Some(item)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        out.push(item);
    }
    out
}

/// (stdout, stderr, the exit) of a stream's items; checks the exit comes last and once, and
/// chunks are at most 64 KiB.
fn assemble(items: &[StreamItem]) -> (Vec<u8>, Vec<u8>, (u32, Option<String>)) {
    let (mut out, mut err, mut exit) = (Vec::new(), Vec::new(), None);
    for (i, item) in items.iter().enumerate() {
        match item {
            StreamItem::Chunk { name, data } => {
                assert!(exit.is_none(), "chunk after the exit");
                assert!(!data.is_empty() && data.len() <= jobs::CHUNK);
                match *name {
                    "stdout" => out.extend_from_slice(data),
                    "stderr" => err.extend_from_slice(data),
                    other => panic!("stream name {other:?}"),
                }
            }
            StreamItem::Exit { exit_status, error } => {
                assert_eq!(i, items.len() - 1, "the exit is the last item");
                exit = Some((*exit_status, error.clone()));
            }
            StreamItem::Error(e) => panic!("stream error: {e}"),
        }
    }
    (out, err, exit.expect("the stream ended with an exit"))
}

fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

fn file_has(path: &Path, needle: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|s| s.contains(needle))
}

// ---------------------------------------------------------------------------------------
// Tests

#[test]
fn stdout_and_stderr_apart_and_exit_status() {
    let c = Ctr::new("basic");
    rt().block_on(async {
        let r = run(&c, 1, &c.spec("echo hi; echo oops >&2")).await;
        assert_eq!(text(&r.stdout), "hi\n");
        assert_eq!(text(&r.stderr), "oops\n");
        assert_eq!((r.exit_status, r.error), (0, None));

        let r = run(&c, 2, &c.spec("echo before; exit 123")).await;
        assert_eq!(text(&r.stdout), "before\n");
        assert_eq!((r.exit_status, r.error), (123, None));

        // The job dir: everything the module docs promise, no temp files.
        let d = c.job_dir(2);
        let mut names: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "job.json",
                "job.pid",
                "keeper.pid",
                "status",
                "stderr",
                "stdout"
            ]
        );
        assert_eq!(jobs::read_status(&d), Some(JobStatus::exited(123)));
        assert!(jobs::is_finished(&d));
        jobs::remove(&d);
        assert!(!d.exists());
        jobs::remove(&d); // gone already: fine
    });
}

#[test]
fn signalled_jobs_are_255() {
    let c = Ctr::new("signal");
    rt().block_on(async {
        let r = run(&c, 1, &c.spec("echo x; kill -9 $$; echo never")).await;
        assert_eq!(text(&r.stdout), "x\n");
        assert_eq!((r.exit_status, r.error), (255, None));

        // kill(): the job's whole process group, here a shell and its sleep.
        let d = c.job_dir(2);
        let job = spawn(&d, &c.spec("sleep 1000 & echo ready; wait")).await;
        assert!(wait_until(TIMEOUT, || file_has(&d.join("stdout"), "ready")));
        assert!(!jobs::is_finished(&d));
        assert!(job.kill(Signal::SIGTERM));
        let r = link(&d).await;
        assert_eq!(r.exit_status, 255);
        assert_eq!(c.pids(), vec![c.init_pid()], "the job's sleep is gone too");
        // Over: nothing left to signal.
        assert!(!jobs::kill(&d, Signal::SIGKILL));
    });
}

#[test]
fn unprivileged_and_privileged_users() {
    let c = Ctr::new("users");
    rt().block_on(async {
        let script = "id -u; id -g; grep -E '^Cap(Eff|Bnd)' /proc/self/status; pwd; echo $USER";
        let mut spec = c.spec(script);
        spec.privileged = false;
        spec.uid = 10001;
        spec.gid = 10002;
        spec.cwd = "/tmp".into();
        spec.env = jobs::job_env("vcap", "/tmp");
        let r = run(&c, 1, &spec).await;
        assert_eq!(
            text(&r.stdout),
            "10001\n10002\nCapEff:\t0000000000000000\nCapBnd:\t0000000000000000\n/tmp\nvcap\n",
            "stderr: {}",
            text(&r.stderr)
        );
        assert_eq!(r.exit_status, 0);

        // Privileged: root with the container's capabilities (the default spec's
        // AUDIT_WRITE, KILL, NET_BIND_SERVICE), even if a uid is given.
        let mut spec = c.spec(script);
        spec.uid = 10001;
        let r = run(&c, 2, &spec).await;
        let caps = format!("{:016x}", (1u64 << 29) | (1 << 5) | (1 << 10));
        assert_eq!(
            text(&r.stdout),
            format!("0\n0\nCapEff:\t{caps}\nCapBnd:\t{caps}\n/\nroot\n"),
            "stderr: {}",
            text(&r.stderr)
        );
    });
}

#[test]
fn rlimits_and_environment() {
    let c = Ctr::new("rlimits");
    rt().block_on(async {
        let mut spec = c.spec("ulimit -n; ulimit -c; echo $LANG; echo $HOME");
        spec.rlimits = vec![("nofile".into(), 1234), ("core".into(), 0)];
        let r = run(&c, 1, &spec).await;
        let lang = std::env::var("LANG")
            .ok()
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| "en_US.UTF-8".into());
        assert_eq!(text(&r.stdout), format!("1234\n0\n{lang}\n/root\n"));

        // A name the keeper does not know: the spawn fails, the dir is gone.
        let mut spec = c.spec("true");
        spec.rlimits = vec![("bogus".into(), 1)];
        let d = c.job_dir(2);
        let e = jobs::spawn(&keeper(), &d, &spec, &mut Steps::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown rlimit \"bogus\""), "{e}");
        assert!(!d.exists());
    });
}

#[test]
fn output_over_the_limit_kills_the_job() {
    let c = Ctr::new("limit");
    rt().block_on(async {
        let mut spec = c.spec("echo start >&2; sleep 0.2; while true; do echo 0123456789; done");
        spec.output_limit = 1000;
        let r = run(&c, 1, &spec).await;
        assert_eq!(r.exit_status, 255);
        assert_eq!(r.error.as_deref(), Some(OUTPUT_LIMIT_ERROR));
        assert_eq!(text(&r.stderr), "start\n");
        assert_eq!(r.stdout.len() + r.stderr.len(), 1000, "cut at the limit");
        assert!(text(&r.stdout).starts_with("0123456789\n0123456789\n"));
        assert_eq!(c.pids(), vec![c.init_pid()], "the job was killed");

        // Exactly at the limit is fine.
        let mut spec = c.spec("printf 12345");
        spec.output_limit = 5;
        let r = run(&c, 2, &spec).await;
        assert_eq!((r.exit_status, text(&r.stdout)), (0, "12345".into()));
    });
}

#[test]
fn discarded_output() {
    let c = Ctr::new("discard");
    rt().block_on(async {
        let mut spec = c.spec("echo hi; echo err >&2; head -c 300000 /dev/zero");
        spec.discard_output = true;
        spec.output_limit = 10; // never triggers
        let r = run(&c, 1, &spec).await;
        assert_eq!((r.exit_status, r.error), (0, None));
        assert!(r.stdout.is_empty() && r.stderr.is_empty());
        let items = collect(jobs::stream(&c.job_dir(1))).await;
        assert_eq!(
            items,
            vec![StreamItem::Exit {
                exit_status: 0,
                error: None
            }]
        );
    });
}

#[test]
fn big_script_and_big_output_do_not_deadlock() {
    let c = Ctr::new("big");
    rt().block_on(async {
        // 300 KB of script, each line printing: both pipes are far over their buffer size.
        let mut script = String::new();
        for i in 0..10000 {
            script.push_str(&format!("echo line-{i:05}-xxxxxxxxxxxxxxxx; # padding\n"));
        }
        script.push_str("echo done >&2\n");
        let r = run(&c, 1, &c.spec(&script)).await;
        assert_eq!(r.exit_status, 0, "stderr: {}", text(&r.stderr));
        let out = text(&r.stdout);
        assert_eq!(out.lines().count(), 10000);
        assert!(out.ends_with("line-09999-xxxxxxxxxxxxxxxx\n"));
        assert_eq!(text(&r.stderr), "done\n");
    });
}

#[test]
fn concurrent_and_late_streams_get_everything() {
    let c = Ctr::new("streams");
    rt().block_on(async {
        let script =
            "i=0; while [ $i -lt 300 ]; do echo out $i; echo err $i >&2; i=$((i+1)); done; \
                      head -c 200000 /dev/zero | tr '\\0' a; sleep 0.3; echo tail; exit 3";
        let d = c.job_dir(1);
        spawn(&d, &c.spec(script)).await;
        let (a, b) = (jobs::stream(&d), jobs::stream(&d));
        let late = async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            collect(jobs::stream(&d)).await
        };
        let (mut s1, mut s2) = (Steps::new(), Steps::new());
        let links = async { tokio::join!(jobs::link(&d, &mut s1), jobs::link(&d, &mut s2)) };
        let (a, b, late, (l1, l2)) = tokio::join!(collect(a), collect(b), late, links);
        let (l1, l2) = (l1.unwrap(), l2.unwrap());
        assert_eq!(l1, l2, "two links of one job agree");
        assert_eq!(l1.exit_status, 3);
        assert!(text(&l1.stdout).ends_with("tail\n"));
        assert_eq!(
            l1.stdout.len(),
            (0..300).map(|i| format!("out {i}\n").len()).sum::<usize>() + 200000 + 5
        );
        for items in [&a, &b, &late] {
            let (out, err, exit) = assemble(items);
            assert_eq!(out, l1.stdout);
            assert_eq!(err, l1.stderr);
            assert_eq!(exit, (3, None));
        }
        assert!(a.len() > 3, "the 200 KB came in pieces");

        // A stream of a job that is over: all of stdout, then all of stderr, then the exit.
        let items = collect(jobs::stream(&d)).await;
        let (out, err, _) = assemble(&items);
        assert_eq!((out, err), (l1.stdout.clone(), l1.stderr.clone()));
        let names: Vec<&str> = items
            .iter()
            .filter_map(|i| match i {
                StreamItem::Chunk { name, .. } => Some(*name),
                _ => None,
            })
            .collect();
        let first_err = names.iter().position(|n| *n == "stderr").unwrap();
        assert!(names[first_err..].iter().all(|n| *n == "stderr"));
    });
}

#[test]
fn a_stream_delivers_output_as_it_is_written() {
    let c = Ctr::new("live");
    rt().block_on(async {
        let d = c.job_dir(1);
        spawn(&d, &c.spec("echo first; sleep 3; echo second")).await;
        let t0 = Instant::now();
        let mut rx = jobs::stream(&d);
        let first = tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .expect("a chunk before the job ends")
            .unwrap();
        assert_eq!(
            first,
            StreamItem::Chunk {
                name: "stdout",
                data: b"first\n".to_vec()
            }
        );
        assert!(t0.elapsed() < Duration::from_secs(2));
        assert!(!jobs::is_finished(&d));
        let rest = collect(rx).await;
        assert_eq!(
            rest,
            vec![
                StreamItem::Chunk {
                    name: "stdout",
                    data: b"second\n".to_vec()
                },
                StreamItem::Exit {
                    exit_status: 0,
                    error: None
                }
            ]
        );
        // A stream dropped midway leaves the job alone.
        let d = c.job_dir(2);
        spawn(&d, &c.spec("echo a; sleep 0.5; echo b")).await;
        let mut rx = jobs::stream(&d);
        assert!(matches!(rx.recv().await, Some(StreamItem::Chunk { .. })));
        drop(rx);
        let r = link(&d).await;
        assert_eq!((text(&r.stdout), r.exit_status), ("a\nb\n".into(), 0));
    });
}

/// Stands in for a daemon in `recovery_after_the_daemon_is_killed`: spawns the job described by
/// `WARDEN_JOBS_HELPER` (`<job dir>\n<spec file>`), says so, then waits to be SIGKILLed.
#[test]
#[ignore = "run by recovery_after_the_daemon_is_killed as a stand-in daemon"]
fn daemon_helper() {
    let Ok(arg) = std::env::var("WARDEN_JOBS_HELPER") else {
        return;
    };
    let (dir, spec) = arg.split_once('\n').unwrap();
    let spec: JobSpec = serde_json::from_slice(&std::fs::read(spec).unwrap()).unwrap();
    let job = rt().block_on(spawn(Path::new(dir), &spec));
    println!("HELPER spawned {}", job.keeper.pid);
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn recovery_after_the_daemon_is_killed() {
    let c = Ctr::new("recover");
    let d = c.job_dir(1);
    let spec = c.spec(
        "echo start; echo e1 >&2; sleep 1.5; i=0; while [ $i -lt 1000 ]; do echo out $i; i=$((i+1)); done; \
         echo e2 >&2; exit 7",
    );
    let spec_file = c.dir().join("spec.json");
    std::fs::write(&spec_file, serde_json::to_vec(&spec).unwrap()).unwrap();
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "daemon_helper", "--ignored", "--nocapture"])
        .arg("--test-threads=1")
        .env(
            "WARDEN_JOBS_HELPER",
            format!("{}\n{}", d.display(), spec_file.display()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(helper.stdout.take().unwrap()).lines();
    let keeper: i32 = loop {
        let line = lines.next().expect("the helper spawned the job").unwrap();
        // libtest prints "test daemon_helper ... " first, on the same line.
        if let Some((_, pid)) = line.split_once("HELPER spawned ") {
            break pid.trim().parse().unwrap();
        }
    };
    // kill -9 the "daemon".
    helper.kill().unwrap();
    helper.wait().unwrap();

    // The keeper lives on, in its own session.
    // SAFETY: getsid with a plain pid.
    assert_eq!(unsafe { libc::getsid(keeper) }, keeper);
    rt().block_on(async {
        let job = match jobs::recover(&d).unwrap() {
            Recovered::Running(j) => j,
            other => panic!("recovered {other:?}"),
        };
        assert_eq!(job.keeper.pid, keeper);
        assert!(!jobs::is_finished(&d));
        let (r, items) = tokio::join!(link(&d), collect(job.stream()));
        let mut want = String::from("start\n");
        for i in 0..1000 {
            want.push_str(&format!("out {i}\n"));
        }
        assert_eq!(text(&r.stdout), want);
        assert_eq!(text(&r.stderr), "e1\ne2\n");
        assert_eq!((r.exit_status, r.error.clone()), (7, None));
        let (out, err, exit) = assemble(&items);
        assert_eq!((out, err, exit), (r.stdout, r.stderr, (7, None)));
        // A finished job recovers as finished, output kept.
        assert_eq!(
            jobs::recover(&d).unwrap(),
            Recovered::Finished(JobStatus::exited(7))
        );
        let all = jobs::recover_all(d.parent().unwrap());
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0, 1);
    });
}

#[test]
fn a_keeper_that_dies_is_noticed() {
    let c = Ctr::new("died");
    rt().block_on(async {
        let d = c.job_dir(1);
        let job = spawn(&d, &c.spec("echo hi; sleep 1000")).await;
        assert!(wait_until(TIMEOUT, || file_has(&d.join("stdout"), "hi")));
        let waiter = tokio::spawn({
            let d = d.clone();
            async move { jobs::wait(&d).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiter.is_finished());
        // SAFETY: kill(2) with the pid of the keeper we just started.
        assert_eq!(unsafe { libc::kill(job.keeper.pid, libc::SIGKILL) }, 0);
        let st = tokio::time::timeout(TIMEOUT, waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(st, JobStatus::failed(KEEPER_DIED_ERROR));
        assert!(jobs::is_finished(&d));
        let r = link(&d).await;
        assert_eq!((text(&r.stdout), r.exit_status), ("hi\n".into(), 255));
        assert_eq!(
            jobs::recover(&d).unwrap(),
            Recovered::Finished(JobStatus::failed(KEEPER_DIED_ERROR))
        );
        // Its orphaned job is still ours to kill.
        assert!(jobs::kill(&c.job_dir(1), Signal::SIGKILL));
        let init = c.init_pid();
        assert!(wait_until(TIMEOUT, || c.pids() == vec![init]));

        // A dir with neither a status nor a live keeper (a daemon restart found it): 255.
        let d = c.job_dir(2);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("job.json"), "{}").unwrap();
        std::fs::write(d.join("keeper.pid"), "999999999 1\n").unwrap();
        assert_eq!(
            jobs::recover(&d).unwrap(),
            Recovered::Finished(JobStatus::failed(KEEPER_DIED_ERROR))
        );
        // Not a job dir at all.
        assert!(jobs::recover(&c.job_dir(3)).is_err());
    });
}

#[test]
fn a_job_in_a_container_that_is_gone_fails_clearly() {
    let c = Ctr::new("gone");
    rt().block_on(async {
        let mut spec = c.spec("echo hi");
        spec.container_id = format!("{}-nonexistent", c.id);
        let d = c.job_dir(1);
        let e = jobs::spawn(&keeper(), &d, &spec, &mut Steps::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("container does not exist"), "{e}");
        assert!(!d.exists(), "a failed spawn leaves no job dir");

        // The container's init is dead: the container is stopped.
        // SAFETY: kill(2) with our own container's init pid.
        assert_eq!(unsafe { libc::kill(c.init_pid(), libc::SIGKILL) }, 0);
        let init = c.init_pid();
        assert!(wait_until(TIMEOUT, || {
            std::fs::read_to_string(format!("/proc/{init}/stat"))
                .map(|s| s.contains(") Z") || s.contains(") X"))
                .unwrap_or(true)
        }));
        let e = jobs::spawn(&keeper(), &d, &c.spec("echo hi"), &mut Steps::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot exec in a stopped container"), "{e}");

        // The container deleted.
        c.runc(&["delete", "--force", &c.id]);
        let e = jobs::spawn(&keeper(), &d, &c.spec("echo hi"), &mut Steps::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("container does not exist"), "{e}");
    });
}

#[test]
fn a_missing_shell_fails_the_spawn() {
    let c = Ctr::new("noshell");
    rt().block_on(async {
        let mut spec = c.spec("echo hi");
        spec.shell = "/bin/no-such-shell".into();
        let e = jobs::spawn(&keeper(), &c.job_dir(1), &spec, &mut Steps::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("no-such-shell"), "{e}");
    });
}
