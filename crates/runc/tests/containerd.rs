//! containerd driving warden-runc through both of its runc shims: the runc shim v2
//! (`io.containerd.runc.v2`, what Docker, nerdctl and the CRI use; the runtime binary is the
//! task option BinaryName, `ctr run --runc-binary`) and the legacy `io.containerd.runtime.v1.linux`
//! (containerd-shim; the binary is containerd's config, `runtime = ...`). For each: the task's
//! metrics (`ctr task metrics`), its processes (`ctr task ps`) and an OOM event (`ctr events`)
//! for a container that allocates past its memory limit. Each scenario runs first with runc,
//! then with warden-runc, under the same containerd.
//!
//! Which path this exercises: containerd 1.6 calls `runc events` in neither. The v2 shim
//! reads the pid from the runtime's `--pid-file` after `create`, loads that process's cgroups
//! from /proc/<pid>/cgroup, and reads their files itself for the metrics (`memory.stat`,
//! `memory.usage_in_bytes`, `cpuacct.usage`, `pids.current`...; on v2 `memory.current`,
//! `cpu.stat`...) and watches them for OOM (v1: an eventfd on `memory.oom_control`; v2:
//! `memory.events`). With the legacy runtime containerd itself does both, from the same
//! pid's cgroups (its task's `Stats`, and its cgroups monitor's OOM eventfd). So what must
//! hold of warden-runc is that its init is in the cgroups the config names, in every
//! hierarchy, with the config's limits. `ps` does call the runtime (`runc ps --format json`).
//! Each runtime is run through a small wrapper that logs its arguments, and the test checks
//! which commands the shim called (no `events` among them: if a later containerd starts
//! calling it, docs/runtime.md must say so). `warden-runc events` itself is tested in
//! tests/events.rs.
//!
//! The test starts a containerd of its own: its root, state, sockets and plugin dirs in a temp
//! dir (the CRI plugin off), runtime roots (`--runc-root`, the v1 runtime's `runtime_root`)
//! and fifos (`--fifo-dir`) there too, cgroups under a parent of its own; the rootfs is the
//! test busybox tree, read-only (`--rootfs --read-only`, no image or snapshotter). Everything
//! is stopped and removed when the test ends, pass or fail. Skipped, with a message, where
//! containerd or ctr is not installed.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::engine::{self, Client, HostDirs, Out};
use serde_json::Value;

const CONTAINERD: &str = "/usr/bin/containerd";
const CTR: &str = "/usr/bin/ctr";
const NAMESPACE: &str = "wtest";
const CMD_TIMEOUT: Duration = Duration::from_secs(60);
/// What the containers find programs by: ctr gives a bare rootfs no image config, so no PATH
/// (runc then fails `exec: "sh": executable file not found in $PATH`).
const PATH_ENV: &str = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";

/// A containerd of this test's own, and everything it makes.
struct Containerd {
    dir: tempfile::TempDir,
    containerd: Option<Child>,
    /// `ctr events`, streaming into `events.log`.
    events: Option<Child>,
    /// The containers' cgroup parent, in every hierarchy.
    cgroup_parent: String,
    /// The shims' socket dirs (fixed by containerd 1.6), removed at the end (if empty) unless
    /// they were there before.
    host_dirs: HostDirs,
    client: Client,
}

impl Containerd {
    fn start() -> Option<Containerd> {
        for p in [CONTAINERD, CTR] {
            if !Path::new(p).exists() {
                eprintln!("{p} is not installed: skipping");
                return None;
            }
        }
        let host_dirs = HostDirs::record(&["/run/containerd", "/run/containerd/s"]);
        let dir = tempfile::Builder::new()
            .prefix("warden-containerd-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        // The opt plugin would make /opt/containerd otherwise.
        let config = format!(
            "version = 2\n\
             root = \"{root}\"\n\
             state = \"{state}\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{sock}\"\n\
             [ttrpc]\n  address = \"{sock}.ttrpc\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{opt}\"\n\
             [plugins.\"io.containerd.runtime.v1.linux\"]\n  runtime = \"{v1}\"\n  \
             runtime_root = \"{v1root}\"\n",
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = d.join("containerd.sock").display(),
            opt = d.join("opt").display(),
            v1 = d.join("bin/v1").display(),
            v1root = d.join("runc-root-v1").display(),
        );
        fs::write(d.join("config.toml"), config).unwrap();
        // The legacy runtime's binary is containerd's config, not a task option: a wrapper
        // that runs what `v1-runtime` names (`<name> <binary>`), so one containerd serves both
        // runtimes.
        fs::create_dir_all(d.join("bin")).unwrap();
        let v1 = d.join("bin/v1");
        fs::write(
            &v1,
            format!(
                "#!/bin/sh\nread -r name binary < '{}'\n\
                 echo \"$*\" >> \"{}/calls-$name.log\"\nexec \"$binary\" \"$@\"\n",
                d.join("v1-runtime").display(),
                d.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&v1, fs::Permissions::from_mode(0o755)).unwrap();
        let log = fs::File::create(d.join("containerd.log")).unwrap();
        let child = Command::new(CONTAINERD)
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {CONTAINERD}: {e}"));
        let mut c = Containerd {
            client: Client::new("ctr", d.join("out"), CMD_TIMEOUT),
            dir,
            containerd: None,
            events: None,
            cgroup_parent: format!("warden-containerd-{}", std::process::id()),
            host_dirs,
        };
        let mut child = child;
        engine::wait_daemon_up(
            "containerd",
            &mut child,
            || {
                let out = c.ctr(&["version"]);
                (out.code == 0).then_some(()).ok_or_else(|| out.describe())
            },
            || c.log(),
        );
        c.containerd = Some(child);
        let events = fs::File::create(c.dir.path().join("events.log")).unwrap();
        c.events = Some(
            c.cmd(&["events"])
                .stdout(events.try_clone().unwrap())
                .stderr(events)
                .spawn()
                .unwrap(),
        );
        Some(c)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log(&self) -> String {
        fs::read_to_string(self.path("containerd.log")).unwrap_or_default()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(CTR);
        c.arg("--address")
            .arg(self.path("containerd.sock"))
            .args(["--namespace", NAMESPACE])
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// `ctr ARGS`, at most CMD_TIMEOUT; output through files, not pipes (a shim inherits
    /// nothing of ours then).
    fn ctr(&self, args: &[&str]) -> Out {
        self.client.run(self.cmd(args), args)
    }

    /// A runtime binary for the shim: a wrapper that appends its arguments to
    /// `calls-<name>.log`, then executes `binary`.
    fn wrapper(&self, name: &str, binary: &str) -> PathBuf {
        let bin = self.path("bin");
        fs::create_dir_all(&bin).unwrap();
        let w = bin.join(name);
        fs::write(
            &w,
            format!(
                "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{binary}' \"$@\"\n",
                self.calls_log(name).display()
            ),
        )
        .unwrap();
        fs::set_permissions(&w, fs::Permissions::from_mode(0o755)).unwrap();
        w
    }

    fn calls_log(&self, name: &str) -> PathBuf {
        self.path(&format!("calls-{name}.log"))
    }

    /// The runtime commands the shim ran with wrapper `name` (`create`, `start`, `ps`...).
    fn calls(&self, name: &str) -> Vec<String> {
        let text = fs::read_to_string(self.calls_log(name)).unwrap_or_default();
        let globals_with_value = ["--root", "--log", "--log-format", "--criu"];
        text.lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                while let Some(w) = words.next() {
                    if globals_with_value.contains(&w) {
                        words.next();
                    } else if !w.starts_with('-') {
                        return Some(w.to_string());
                    }
                }
                None
            })
            .collect()
    }

    /// Points the legacy runtime's wrapper at `binary`, its calls logged as `name`'s.
    fn set_v1_runtime(&self, name: &str, binary: &Path) {
        fs::write(
            self.path("v1-runtime"),
            format!("{name} {}\n", binary.display()),
        )
        .unwrap();
    }

    /// `ctr run -d` of `id` on the read-only test rootfs, through `shim`.
    fn run(&self, shim: &Shim, id: &str, extra: &[&str], argv: &[&str]) -> Out {
        let cgroup = format!("/{}/{id}", self.cgroup_parent);
        let runc_root = self.path("runc-root");
        let fifo = self.path("fifo");
        let log_uri = format!("file://{}", self.path(&format!("{id}.log")).display());
        let mut args: Vec<&str> = vec![
            "run",
            "-d",
            "--rootfs",
            "--read-only",
            "--env",
            PATH_ENV,
            "--fifo-dir",
            fifo.to_str().unwrap(),
            "--log-uri",
            &log_uri,
            "--cgroup",
            &cgroup,
        ];
        match shim {
            Shim::V2(runtime) => args.extend([
                "--runc-binary",
                runtime.to_str().unwrap(),
                "--runc-root",
                runc_root.to_str().unwrap(),
            ]),
            Shim::V1 => args.extend(["--runtime", "io.containerd.runtime.v1.linux"]),
        }
        args.extend_from_slice(extra);
        let rootfs = common::rootfs().to_str().unwrap();
        args.extend([rootfs, id]);
        args.extend_from_slice(argv);
        self.ctr(&args)
    }

    /// The events `ctr events` printed so far, as (topic, payload): its lines are
    /// `<date> <time> <zone> <zone name> <namespace> <topic> <json>`.
    fn events(&self) -> Vec<(String, Value)> {
        let text = fs::read_to_string(self.path("events.log")).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let words: Vec<&str> = l.splitn(7, ' ').collect();
                let topic = words.get(5)?.to_string();
                let payload = serde_json::from_str(words.get(6)?).ok()?;
                Some((topic, payload))
            })
            .collect()
    }

    fn has_event(&self, topic: &str, id: &str) -> bool {
        self.events()
            .iter()
            .any(|(t, p)| t == topic && p["container_id"] == id)
    }

    /// The task's status as `ctr task ls` gives it (`RUNNING`, `STOPPED`...).
    fn task_status(&self, id: &str) -> String {
        let out = self.ctr(&["task", "ls"]);
        out.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap_or("none")
            .to_string()
    }

    /// The container's cgroup dirs still there, in any hierarchy.
    fn cgroups_left(&self, id: &str) -> Vec<PathBuf> {
        common::cgroup_roots()
            .into_iter()
            .map(|r| r.join(&self.cgroup_parent).join(id))
            .filter(|p| p.exists())
            .collect()
    }

    /// Kills the task (if it runs), then deletes it and the container.
    fn remove(&self, id: &str) {
        if self.task_status(id) == "RUNNING" {
            let _ = self.ctr(&["task", "kill", "--signal", "SIGKILL", id]);
            common::wait_until(Duration::from_secs(20), || {
                self.task_status(id) != "RUNNING"
            });
        }
        let _ = self.ctr(&["task", "delete", id]);
        let _ = self.ctr(&["container", "delete", id]);
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Some(mut child) = self.containerd.take() {
            if let Ok(None) = child.try_wait() {
                let ids = self.ctr(&["container", "ls", "-q"]).out.stdout;
                for id in ids.split_whitespace() {
                    self.remove(id);
                }
            }
            engine::stop_daemon("containerd", &mut child);
        }
        if let Some(mut ev) = self.events.take() {
            let _ = ev.kill();
            let _ = ev.wait();
        }
        // Its shims name our dirs (the socket's address) on their command lines.
        engine::sweep(self.dir.path(), &self.cgroup_parent);
        self.host_dirs.remove_made();
    }
}

/// Which of containerd's runtimes runs a task.
enum Shim<'a> {
    /// `io.containerd.runc.v2` (containerd-shim-runc-v2) with this runtime binary, the task
    /// option BinaryName (`ctr run --runc-binary`).
    V2(&'a Path),
    /// The legacy `io.containerd.runtime.v1.linux` (containerd-shim), deprecated since
    /// containerd 1.4: the binary its config names (`set_v1_runtime`).
    V1,
}

/// The figures of `ctr task metrics --format json` the test checks, from either cgroup
/// version's message: (memory limit, memory usage, pids, CPU time used).
fn metrics_figures(m: &Value) -> (Option<u64>, Option<u64>, Option<u64>, Option<u64>) {
    if m["memory"]["usage_limit"].is_u64() {
        // cgroup v2's io.containerd.cgroups.v2.Metrics.
        (
            m["memory"]["usage_limit"].as_u64(),
            m["memory"]["usage"].as_u64(),
            m["pids"]["current"].as_u64(),
            m["cpu"]["usage_usec"].as_u64(),
        )
    } else {
        (
            m["memory"]["usage"]["limit"].as_u64(),
            m["memory"]["usage"]["usage"].as_u64(),
            m["pids"]["current"].as_u64(),
            m["cpu"]["usage"]["total"].as_u64(),
        )
    }
}

#[test]
fn containerd_shim_reads_metrics_and_oom_of_warden_runc_containers() {
    let hidden = unmounted_hierarchies();
    if !hidden.is_empty() {
        // containerd 1.6's cgroups library then fails to load any task's cgroups ("cannot
        // find cgroup mount destination"), runc's as well: no metrics, no OOM watch.
        eprintln!(
            "v1 hierarchies {hidden:?} exist (in /proc/self/cgroup) but are not mounted here \
             (another mount namespace made them, e.g. a systemd in a test): containerd cannot \
             load cgroups on this host now; skipping"
        );
        return;
    }
    let Some(c) = Containerd::start() else {
        return;
    };
    for (name, binary) in [("runc", "runc"), ("warden", common::RUNC)] {
        let binary = if binary == "runc" {
            match which("runc") {
                Some(p) => p,
                None => {
                    eprintln!("runc is not installed: warden-runc alone");
                    continue;
                }
            }
        } else {
            PathBuf::from(binary)
        };
        scenario(
            &c,
            name,
            &Shim::V2(&c.wrapper(name, binary.to_str().unwrap())),
        );
        // The legacy runtime knows cgroup v1 only (`cgroups: cgroup mountpoint does not
        // exist` from ctr run on a unified host, runc's container as well).
        if common::hierarchy() == common::Hierarchy::V2 {
            eprintln!("[{name}] io.containerd.runtime.v1.linux needs cgroup v1: not run");
            continue;
        }
        let v1 = format!("v1-{name}");
        c.set_v1_runtime(&v1, &binary);
        scenario(&c, &v1, &Shim::V1);
    }
}

/// The v1 hierarchies this process is in (/proc/self/cgroup) that no cgroup mount of this
/// mount namespace shows, by their controllers (`hugetlb`, `net_cls,net_prio`...).
fn unmounted_hierarchies() -> Vec<String> {
    let mounted: Vec<Vec<String>> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (_, post) = l.split_once(" - ")?;
            let mut f = post.split(' ');
            (f.next()? == "cgroup").then(|| {
                f.nth(1)
                    .unwrap_or("")
                    .split(',')
                    .map(str::to_string)
                    .collect()
            })
        })
        .collect();
    fs::read_to_string("/proc/self/cgroup")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (id, controllers) = (f.next()?, f.next()?);
            if id == "0" || controllers.is_empty() {
                return None;
            }
            let seen = controllers
                .split(',')
                .any(|c| mounted.iter().any(|m| m.iter().any(|o| o == c)));
            (!seen).then(|| controllers.to_string())
        })
        .collect()
}

fn which(prog: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(prog))
        .find(|p| p.is_file())
}

fn scenario(c: &Containerd, name: &str, shim: &Shim) {
    let at = |what: &str| format!("[{name}] {what}");
    // The task and container deleted, and with them the container's cgroups.
    let done = |id: &str| {
        c.remove(id);
        let left = c.cgroups_left(id);
        assert!(
            left.is_empty(),
            "{}",
            at(&format!("cgroups left: {left:?}"))
        );
    };

    // Metrics: the shim reads the cgroups of the pid the runtime wrote, so the limit it
    // reports is the one the runtime set on the container's own cgroup.
    let id = format!("{name}-metrics");
    let limit: u64 = 64 << 20;
    c.run(
        shim,
        &id,
        &["--memory-limit", &limit.to_string()],
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 1000",
        ],
    )
    .ok();
    let mut last = Value::Null;
    let ok = common::wait_until(Duration::from_secs(20), || {
        let out = c.ctr(&["task", "metrics", "--format", "json", &id]);
        last = serde_json::from_str(&out.stdout).unwrap_or(Value::String(out.describe()));
        // The busy loop has run once the CPU time passes a few ms.
        metrics_figures(&last).3.is_some_and(|t| t > 0)
    });
    assert!(ok, "{}", at(&format!("no CPU time in the metrics: {last}")));
    let (mlimit, usage, pids, _) = metrics_figures(&last);
    assert_eq!(mlimit, Some(limit), "{}", at(&last.to_string()));
    assert!(usage.is_some_and(|u| u > 0), "{}", at(&last.to_string()));
    assert!(pids.is_some_and(|p| p >= 1), "{}", at(&last.to_string()));
    // ps goes through the runtime (`ps --format json`): the init is there.
    let pid = c
        .ctr(&["task", "ls"])
        .ok()
        .stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id.as_str()))
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_default();
    let out = c.ctr(&["task", "ps", &id]).ok();
    assert!(
        !pid.is_empty()
            && out
                .stdout
                .lines()
                .any(|l| l.split_whitespace().next() == Some(pid.as_str())),
        "{}",
        at(&format!("init pid {pid:?} not listed: {}", out.describe()))
    );
    done(&id);

    // OOM: dd's 64 MiB buffer cannot fit in 16 MiB (no swap here), the OOM killer takes dd,
    // and the shim's watch on the container's memory cgroup publishes /tasks/oom.
    let id = format!("{name}-oom");
    c.run(
        shim,
        &id,
        &["--memory-limit", &(16u64 << 20).to_string()],
        &[
            "sh",
            "-c",
            "sleep 1; dd if=/dev/zero of=/dev/null bs=64M count=1; echo dd: $?; sleep 1",
        ],
    )
    .ok();
    let ok = common::wait_until(Duration::from_secs(30), || c.has_event("/tasks/oom", &id));
    let output = fs::read_to_string(c.path(&format!("{id}.log"))).unwrap_or_default();
    assert!(
        ok,
        "{}",
        at(&format!(
            "no /tasks/oom event for {id}; events: {:?}\n--- container output\n{output}",
            c.events()
        ))
    );
    let exited = common::wait_until(Duration::from_secs(30), || c.has_event("/tasks/exit", &id));
    assert!(exited, "{}", at("no /tasks/exit event"));
    let output = fs::read_to_string(c.path(&format!("{id}.log"))).unwrap_or_default();
    assert!(
        output.contains("dd: 137"),
        "{}",
        at(&format!("dd was not killed: {output}"))
    );
    done(&id);

    // What the shim called the runtime for: never `events`.
    let calls = c.calls(name);
    for want in ["create", "start", "ps", "kill", "delete"] {
        assert!(
            calls.iter().any(|c| c == want),
            "{}",
            at(&format!("the shim never ran `{want}`: {calls:?}"))
        );
    }
    assert!(
        !calls.iter().any(|c| c == "events"),
        "{}",
        at(&format!(
            "the shim now runs `events` (docs/runtime.md says it reads cgroups itself): {calls:?}"
        ))
    );
}
