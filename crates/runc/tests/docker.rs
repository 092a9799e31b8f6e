//! Docker driving warden-runc as an OCI runtime, each scenario first with runc (Docker's
//! default, so a failure that is the host's shows up there too) and then with warden-runc:
//! run --rm, exit codes, detached run + exec + logs, `update` of memory, CPU and pids limits,
//! stop, a memory limit, a pids limit, a terminal.
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
use std::time::{Duration, Instant};

use common::engine::{self, Client, HostDirs, Out};

/// The real client: /usr/local/bin/docker on some hosts is a client-only stand-in.
const DOCKER: &str = "/usr/bin/docker";
/// Debian installs dockerd in /usr/sbin; other layouts in /usr/bin.
const DOCKERDS: &[&str] = &["/usr/bin/dockerd", "/usr/sbin/dockerd"];
const IMAGE: &str = "wtest:busybox";
const CMD_TIMEOUT: Duration = Duration::from_secs(60);

/// A dockerd of this test's own, and everything it makes.
struct Docker {
    dir: tempfile::TempDir,
    dockerd: Option<Child>,
    /// Its `--cgroup-parent`, in every hierarchy.
    cgroup_parent: String,
    /// The dirs its containerd makes outside our temp dir (the shims' socket dirs, the opt
    /// plugin's /opt/containerd, which dockerd's containerd config does not move), removed at
    /// the end (if empty) unless they were there before.
    host_dirs: HostDirs,
    client: Client,
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
        let host_dirs = HostDirs::record(&[
            "/run/containerd",
            "/run/containerd/s",
            "/opt/containerd",
            "/opt/containerd/bin",
            "/opt/containerd/lib",
        ]);
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
        let client = Client::new("docker", d.join("out"), CMD_TIMEOUT);
        let mut docker = Docker {
            dir,
            dockerd: None,
            cgroup_parent,
            host_dirs,
            client,
        };
        let mut child = child;
        engine::wait_daemon_up(
            "dockerd",
            &mut child,
            || {
                let out = docker.run(&["version", "--format", "{{.Server.Version}}"]);
                (out.code == 0).then_some(()).ok_or_else(|| out.describe())
            },
            || docker.log(),
        );
        docker.dockerd = Some(child);
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
        self.client.run(self.cmd(args), args)
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
        if let Some(mut child) = self.dockerd.take() {
            if let Ok(None) = child.try_wait() {
                let ids = self.run(&["ps", "-aq"]).out.stdout;
                let ids: Vec<&str> = ids.split_whitespace().collect();
                if !ids.is_empty() {
                    let mut args = vec!["rm", "-f"];
                    args.extend(ids);
                    let _ = self.run(&args);
                }
            }
            engine::stop_daemon("dockerd", &mut child);
        }
        // Its containerd and shims name our dirs on their command lines.
        engine::sweep(self.dir.path(), &self.cgroup_parent);
        self.host_dirs.remove_made();
    }
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
    // docker update reaches the runtime's `update` (containerd's shim sends the resources
    // on stdin, `update --resources -`): memory, CPU and pids limits of the running
    // container change, as the container's own cgroup files, the host's and Docker's own
    // record of them show.
    docker
        .run(&[
            "update",
            "--memory",
            "96m",
            "--memory-swap",
            "192m",
            "--cpus",
            "0.5",
            "--pids-limit",
            "40",
            &name,
        ])
        .ok();
    let want = [
        ("memory", "memory.limit_in_bytes", (96u64 << 20).to_string()),
        (
            "memory",
            "memory.memsw.limit_in_bytes",
            (192u64 << 20).to_string(),
        ),
        ("cpu", "cpu.cfs_period_us", "100000".to_string()),
        ("cpu", "cpu.cfs_quota_us", "50000".to_string()),
        ("pids", "pids.max", "40".to_string()),
    ];
    // The container's cgroup files, read inside it and on the host.
    let check = |want: &[(&str, &str, String)]| {
        let files: Vec<String> = want
            .iter()
            .map(|(c, f, _)| format!("/sys/fs/cgroup/{c}/{f}"))
            .collect();
        let mut args = vec!["exec", &name, "cat"];
        args.extend(files.iter().map(String::as_str));
        let out = docker.run(&args).ok();
        let inside: Vec<&str> = want.iter().map(|w| w.2.as_str()).collect();
        assert_eq!(
            out.text().lines().collect::<Vec<_>>(),
            inside,
            "{}",
            at(&out.describe())
        );
        for (c, f, v) in want {
            let host = Path::new("/sys/fs/cgroup")
                .join(c)
                .join(&docker.cgroup_parent)
                .join(&id)
                .join(f);
            let got =
                fs::read_to_string(&host).unwrap_or_else(|e| format!("{}: {e}", host.display()));
            assert_eq!(
                got.trim(),
                v,
                "{}",
                at(&format!("host file {}", host.display()))
            );
        }
    };
    check(&want);
    let out = docker.run(&[
        "inspect",
        "--format",
        "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}}",
        &name,
    ]);
    assert_eq!(
        out.text(),
        format!("{} {} 500000000 40", 96u64 << 20, 192u64 << 20),
        "{}",
        at(&out.describe())
    );
    if rt == "warden" {
        // The state keeps the limits in force, so a later `update` or `events` sees them.
        let root = docker.runtime_root(&id).expect("state dir");
        let state: serde_json::Value =
            serde_json::from_slice(&fs::read(root.join(&id).join("state.json")).unwrap()).unwrap();
        let r = &state["resources"];
        assert_eq!(r["memory"]["limit"], 96 << 20, "{}", at(&r.to_string()));
        assert_eq!(r["cpu"]["quota"], 50000, "{}", at(&r.to_string()));
        assert_eq!(r["pids"]["limit"], 40, "{}", at(&r.to_string()));
    }
    // Another update, of other limits: Docker sends the whole resources document again, so
    // the earlier ones stay.
    docker
        .run(&[
            "update",
            "--cpu-shares",
            "512",
            "--cpuset-cpus",
            "0",
            "--memory-reservation",
            "32m",
            "--cpus",
            "1",
            &name,
        ])
        .ok();
    check(&[
        ("cpu", "cpu.shares", "512".to_string()),
        ("cpu", "cpu.cfs_quota_us", "100000".to_string()),
        ("cpuset", "cpuset.cpus", "0".to_string()),
        (
            "memory",
            "memory.soft_limit_in_bytes",
            (32u64 << 20).to_string(),
        ),
        ("memory", "memory.limit_in_bytes", (96u64 << 20).to_string()),
        ("pids", "pids.max", "40".to_string()),
    ]);
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
