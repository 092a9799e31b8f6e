//! Docker driving warden-runc as an OCI runtime, each scenario first with runc (Docker's
//! default, so a failure that is the host's shows up there too) and then with warden-runc:
//! run --rm, exit codes, detached run + exec + logs, stop, a memory limit, a pids limit, a
//! terminal.
//!
//! The test starts a dockerd of its own: private data root, exec root (where it starts its own
//! containerd), socket, pid file and config, vfs storage (no mounts of layers), no bridge, no
//! iptables, no forwarding, the cgroupfs driver under a cgroup parent of its own, warden-runc
//! registered as the `warden` runtime. The image is the busybox rootfs, imported. Everything is
//! stopped and removed when the test ends, pass or fail. Skipped, with a message, where dockerd
//! is not installed (`docker.io`, scripts/deps.sh).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The real client: /usr/local/bin/docker on some hosts is a client-only stand-in.
const DOCKER: &str = "/usr/bin/docker";
/// Debian installs dockerd in /usr/sbin; other layouts in /usr/bin.
const DOCKERDS: &[&str] = &["/usr/bin/dockerd", "/usr/sbin/dockerd"];
const IMAGE: &str = "wtest:busybox";
const CMD_TIMEOUT: Duration = Duration::from_secs(60);

/// What `docker` said.
struct Out {
    args: Vec<String>,
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    #[track_caller]
    fn ok(self) -> Out {
        assert_eq!(self.code, 0, "{}", self.describe());
        self
    }

    fn text(&self) -> String {
        self.stdout.trim().replace("\r\n", "\n")
    }

    fn describe(&self) -> String {
        format!(
            "`docker {}`: exit code {}\n--- stdout\n{}\n--- stderr\n{}",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }
}

/// A dockerd of this test's own, and everything it makes.
struct Docker {
    dir: tempfile::TempDir,
    dockerd: Option<Child>,
    /// Its `--cgroup-parent`, in every hierarchy.
    cgroup_parent: String,
    /// The containerd shims' socket dirs, removed at the end (if empty) unless they were
    /// there before.
    shim_dirs_before: Vec<(PathBuf, bool)>,
    outs: AtomicU32,
}

impl Docker {
    fn start() -> Option<Docker> {
        let Some(dockerd) = DOCKERDS.iter().find(|p| Path::new(p).exists()) else {
            eprintln!("dockerd is not installed: skipping");
            return None;
        };
        assert!(
            Path::new(DOCKER).exists(),
            "{dockerd} is installed but not {DOCKER}"
        );
        let shim_dirs_before = ["/run/containerd", "/run/containerd/s"]
            .iter()
            .map(|p| (PathBuf::from(p), Path::new(p).exists()))
            .collect();
        let dir = tempfile::Builder::new()
            .prefix("warden-docker-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        // The trust key goes here rather than /etc/docker/key.json (config-file only).
        let config = serde_json::json!({"deprecated-key-path": d.join("key.json")});
        fs::write(d.join("daemon.json"), config.to_string()).unwrap();
        let log = fs::File::create(d.join("dockerd.log")).unwrap();
        let cgroup_parent = format!("warden-docker-{}", std::process::id());
        let child = Command::new(dockerd)
            .arg("--config-file")
            .arg(d.join("daemon.json"))
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", d.join("docker.sock").display()))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--storage-driver=vfs",
                "--exec-opt=native.cgroupdriver=cgroupfs",
            ])
            .arg(format!("--cgroup-parent=/{cgroup_parent}"))
            .arg(format!("--add-runtime=warden={}", common::RUNC))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {dockerd}: {e}"));
        let mut docker = Docker {
            dir,
            dockerd: Some(child),
            cgroup_parent,
            shim_dirs_before,
            outs: AtomicU32::new(0),
        };
        let mut last = String::new();
        let up = common::wait_until(Duration::from_secs(60), || {
            if let Some(Ok(Some(st))) = docker.dockerd.as_mut().map(|c| c.try_wait()) {
                last = format!("dockerd exited: {st}");
                return true;
            }
            let out = docker.run(&["version", "--format", "{{.Server.Version}}"]);
            last = out.describe();
            out.code == 0
        });
        assert!(
            up && !last.starts_with("dockerd exited"),
            "dockerd did not come up: {last}\n--- dockerd.log\n{}",
            docker.log()
        );
        docker.import_image();
        Some(docker)
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    fn import_image(&self) {
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(common::rootfs())
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = self
            .cmd(&["import", "-", IMAGE])
            .stdin(tar.stdout.take().unwrap())
            .output()
            .unwrap();
        assert!(tar.wait().unwrap().success(), "tar of the rootfs failed");
        assert!(
            out.status.success(),
            "docker import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let d = self.dir.path();
        let mut c = Command::new(DOCKER);
        // The client's own config (it may write one) stays in the temp dir too.
        c.env("DOCKER_CONFIG", d.join("client"))
            .arg("-H")
            .arg(format!("unix://{}", d.join("docker.sock").display()))
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// `docker ARGS`, at most CMD_TIMEOUT; output through files, not pipes.
    fn run(&self, args: &[&str]) -> Out {
        let n = self.outs.fetch_add(1, Ordering::Relaxed);
        let outd = self.dir.path().join("out");
        fs::create_dir_all(&outd).unwrap();
        let (so, se) = (outd.join(format!("{n}.out")), outd.join(format!("{n}.err")));
        let mut child = self
            .cmd(args)
            .stdout(fs::File::create(&so).unwrap())
            .stderr(fs::File::create(&se).unwrap())
            .spawn()
            .unwrap();
        let st = common::wait_child(&mut child, CMD_TIMEOUT);
        let mut out = Out {
            args: args.iter().map(|s| s.to_string()).collect(),
            code: st.map(common::exit_code).unwrap_or(-1),
            stdout: fs::read_to_string(&so).unwrap_or_default(),
            stderr: fs::read_to_string(&se).unwrap_or_default(),
        };
        if st.is_none() {
            out.stderr += &format!("\n(killed after {CMD_TIMEOUT:?})");
        }
        out
    }

    /// `docker run --network none [--runtime warden] EXTRA IMAGE ARGV`.
    fn container(&self, runtime: &str, extra: &[&str], argv: &[&str]) -> Out {
        let mut args = vec!["run", "--network", "none", "--runtime", runtime];
        args.extend_from_slice(extra);
        args.push(IMAGE);
        args.extend_from_slice(argv);
        self.run(&args)
    }

    /// The runtime `--root` the shim gave for a container: the `<exec-root>/runtime-*/moby`
    /// dir that holds its state dir (Docker 20.10 uses `runtime-runc` for every runtime).
    fn runtime_root(&self, full_id: &str) -> Option<PathBuf> {
        fs::read_dir(self.dir.path().join("exec"))
            .ok()?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("runtime-"))
            .map(|e| e.path().join("moby"))
            .find(|root| root.join(full_id).is_dir())
    }

    /// `warden-runc state` of a container Docker runs with `--runtime warden`: its status.
    fn warden_status(&self, full_id: &str) -> String {
        let Some(root) = self.runtime_root(full_id) else {
            return format!(
                "no state dir for {full_id} under {}/exec",
                self.dir.path().display()
            );
        };
        let out = Command::new(common::RUNC)
            .arg("--root")
            .arg(&root)
            .args(["state", full_id])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        match serde_json::from_slice::<serde_json::Value>(&out.stdout) {
            Ok(v) => v["status"].as_str().unwrap_or_default().to_string(),
            Err(_) => format!(
                "warden-runc --root {} state {full_id}: {}",
                root.display(),
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        let d = self.dir.path().to_path_buf();
        if let Some(mut child) = self.dockerd.take() {
            if let Ok(None) = child.try_wait() {
                let ids = self.run(&["ps", "-aq"]).stdout;
                let ids: Vec<&str> = ids.split_whitespace().collect();
                if !ids.is_empty() {
                    let mut args = vec!["rm", "-f"];
                    args.extend(ids);
                    let _ = self.run(&args);
                }
                // SAFETY: kill(2) on the dockerd we started.
                unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
                if common::wait_child(&mut child, Duration::from_secs(30)).is_none() {
                    eprintln!("dockerd did not stop on SIGTERM within 30s: killed");
                }
            }
            let _ = child.wait();
        }
        // Its containerd and shims name our dirs on their command lines.
        let marker = d.display().to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = common::procs_with(&marker);
            if left.is_empty() || Instant::now() > deadline {
                break;
            }
            for (pid, _) in left {
                // SAFETY: kill(2) on a process started from our dirs.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut points: Vec<String> = common::host_mount_points()
            .into_iter()
            .filter(|p| p.starts_with(&marker))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        for root in common::cgroup_roots() {
            remove_tree(&root.join(&self.cgroup_parent));
        }
        for (p, existed) in self.shim_dirs_before.iter().rev() {
            if !existed {
                let _ = fs::remove_dir(p);
            }
        }
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

#[test]
fn docker_runs_containers_with_runc_and_with_warden_runc() {
    let Some(docker) = Docker::start() else {
        return;
    };
    for rt in ["runc", "warden"] {
        scenarios(&docker, rt);
    }
}

fn scenarios(docker: &Docker, rt: &str) {
    let at = |what: &str| format!("[{rt}] {what}");

    // run --rm: output, the user, lo up in the new network namespace.
    let out = docker.container(
        rt,
        &["--rm"],
        &["sh", "-c", "echo hi from docker; id -u; ip link show lo"],
    );
    let text = out.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.get(..2),
        Some(&["hi from docker", "0"][..]),
        "{}",
        at(&out.describe())
    );
    assert!(
        lines
            .get(2)
            .is_some_and(|l| l.contains("<LOOPBACK,UP,LOWER_UP>")),
        "{}",
        at(&out.describe())
    );
    let out = docker.container(rt, &["--rm"], &["sh", "-c", "exit 3"]);
    assert_eq!(out.code, 3, "{}", at(&out.describe()));
    // Docker's exit codes for a program that cannot be run (126) or is not there (127),
    // which it reads from the runtime's error message.
    let out = docker.container(rt, &["--rm"], &["/etc/passwd"]);
    assert_eq!(out.code, 126, "{}", at(&out.describe()));
    let out = docker.container(rt, &["--rm"], &["/no/such/program"]);
    assert_eq!(out.code, 127, "{}", at(&out.describe()));

    // -d, exec, logs, stop: a shell that exits 0 on SIGTERM (sh as pid 1 would ignore it).
    let name = format!("d-{rt}");
    let id = docker
        .container(
            rt,
            &["-d", "--name", &name],
            &[
                "sh",
                "-c",
                "trap 'exit 0' TERM; echo started; sleep 1000 & wait",
            ],
        )
        .ok()
        .text();
    let out = docker.run(&[
        "inspect",
        "--format",
        "{{.State.Status}} {{.HostConfig.Runtime}}",
        &name,
    ]);
    assert_eq!(
        out.text(),
        format!("running {rt}"),
        "{}",
        at(&out.describe())
    );
    if rt == "warden" {
        // warden-runc, not runc, has it.
        assert_eq!(docker.warden_status(&id), "running", "{}", at("state"));
    }
    let out = docker
        .run(&[
            "exec",
            &name,
            "sh",
            "-c",
            "echo exec-ok; cat /proc/1/cmdline",
        ])
        .ok();
    assert!(
        out.text().starts_with("exec-ok\nsh\0-c\0"),
        "{}",
        at(&out.describe())
    );
    let out = docker.run(&["exec", &name, "sh", "-c", "exit 4"]);
    assert_eq!(out.code, 4, "{}", at(&out.describe()));
    // docker exec reports 126 for an exec the runtime refuses, whatever the reason; the
    // error must still reach it.
    for bad in ["/etc/passwd", "no-such-program"] {
        let out = docker.run(&["exec", &name, bad]);
        assert_eq!(out.code, 126, "{}", at(&out.describe()));
        assert!(out.stdout.contains(bad), "{}", at(&out.describe()));
    }
    // docker update reaches the runtime's `update` (containerd sends the resources on
    // stdin): the running container's limit changes.
    docker
        .run(&["update", "--memory", "96m", "--memory-swap", "192m", &name])
        .ok();
    let out = docker
        .run(&[
            "exec",
            &name,
            "cat",
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        ])
        .ok();
    assert_eq!(
        out.text(),
        (96u64 << 20).to_string(),
        "{}",
        at(&out.describe())
    );
    let ok = common::wait_until(Duration::from_secs(10), || {
        docker.run(&["logs", &name]).text() == "started"
    });
    assert!(ok, "{}", at(&docker.run(&["logs", &name]).describe()));
    let t = Instant::now();
    docker.run(&["stop", "--time", "10", &name]).ok();
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "{}",
        at(&format!(
            "stop took {:?}: SIGTERM did not reach the container",
            t.elapsed()
        ))
    );
    let out = docker.run(&[
        "inspect",
        "--format",
        "{{.State.Status}} {{.State.ExitCode}}",
        &name,
    ]);
    assert_eq!(out.text(), "exited 0", "{}", at(&out.describe()));
    docker.run(&["rm", &name]).ok();
    // Deleted through the runtime: no state dir left.
    assert_eq!(docker.runtime_root(&id), None, "{}", at("state dir left"));

    // Limits, as the container's own cgroup files show them.
    let out = docker.container(
        rt,
        &["--rm", "--memory", "64m"],
        &["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"],
    );
    assert_eq!(
        out.text(),
        (64u64 << 20).to_string(),
        "{}",
        at(&out.describe())
    );
    let out = docker.container(
        rt,
        &["--rm", "--pids-limit", "50"],
        &["cat", "/sys/fs/cgroup/pids/pids.max"],
    );
    assert_eq!(out.text(), "50", "{}", at(&out.describe()));

    // A terminal.
    let out = docker.container(rt, &["--rm", "-t"], &["tty"]);
    assert!(
        out.text().starts_with("/dev/pts/"),
        "{}",
        at(&out.describe())
    );
    assert_eq!(out.code, 0, "{}", at(&out.describe()));
}
