//! podman driving warden-runc as its OCI runtime: run, exit codes, detached run, exec,
//! update, stop, rm, checkpoint and restore. podman gets its own storage (vfs: no mounts) and run root in a temp dir, an image made
//! from the busybox rootfs with `podman import` (no registry), and no network. Skipped, with
//! a message, where podman is not installed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

struct Podman {
    dir: tempfile::TempDir,
    runtime: PathBuf,
    /// podman's cgroupfs parent dirs that we must remove (those it makes for us).
    new_parents: Vec<PathBuf>,
}

/// Where podman's cgroupfs manager puts containers: `<hierarchy>/libpod_parent`.
fn libpod_parents() -> Vec<PathBuf> {
    common::cgroup_roots()
        .into_iter()
        .map(|r| r.join("libpod_parent"))
        .collect()
}

impl Podman {
    fn new() -> Option<Podman> {
        if Command::new("podman").arg("--version").output().is_err() {
            eprintln!("podman is not installed: skipping");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("warden-podman")
            .tempdir()
            .unwrap();
        let p = Podman {
            dir,
            runtime: PathBuf::from(env!("CARGO_BIN_EXE_warden-runc")),
            new_parents: libpod_parents()
                .into_iter()
                .filter(|d| !d.exists())
                .collect(),
        };
        // An image of the busybox rootfs.
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(common::rootfs())
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = p
            .cmd(&["import", "-", "localhost/warden-busybox"])
            .stdin(tar.stdout.take().unwrap())
            .output()
            .unwrap();
        assert!(tar.wait().unwrap().success(), "tar of the rootfs failed");
        assert!(out.status.success(), "podman import: {}", text(&out.stderr));
        Some(p)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let d = self.dir.path();
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(d.join("storage"))
            .arg("--runroot")
            .arg(d.join("run"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "none",
            ])
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .arg("--runtime")
            .arg(&self.runtime)
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// `podman run` with what this host needs: no network, and rlimits no higher than root's
    /// hard limits (root lacks CAP_SYS_RESOURCE here).
    fn container(&self, extra: &[&str], argv: &[&str]) -> Output {
        let mut args = vec![
            "run",
            "--network",
            "none",
            "--ulimit",
            "nofile=20000:20000",
            "--ulimit",
            "nproc=32768:32768",
        ];
        args.extend_from_slice(extra);
        args.push("localhost/warden-busybox");
        args.extend_from_slice(argv);
        self.run(&args)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "--all", "--force", "--time", "0"]);
        let _ = self.run(&["rmi", "--all", "--force"]);
        // vfs storage has no mounts; anything podman mounted under its run root goes too.
        let root = self.dir.path().display().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.starts_with(&root))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = nix::mount::umount2(Path::new(p), nix::mount::MntFlags::MNT_DETACH);
        }
        // podman leaves `libpod_parent/conmon` (conmon's cgroup) behind: both go, if empty.
        for d in &self.new_parents {
            for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
                if e.path().is_dir() {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
            let _ = std::fs::remove_dir(d);
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim().to_string()
}

#[test]
fn podman_runs_containers_through_warden_runc() {
    let Some(p) = Podman::new() else { return };

    let out = p.container(&["--rm"], &["sh", "-c", "echo hi from podman; id -u"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi from podman\n0");

    // podman passes its default seccomp profile (defaultAction ERRNO, a long allow list
    // with argument rules): the container runs under it, and so does an exec.
    let seccomp = ["grep", "^Seccomp:", "/proc/self/status"];
    let out = p.container(&["--rm"], &seccomp);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Seccomp:\t2");

    // --network none: podman asks for a new network namespace, whose lo must be up (runc
    // brings it up; podman does not).
    let out = p.container(
        &["--rm"],
        &["sh", "-c", "ls /sys/class/net; ip link show lo"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lo = text(&out.stdout);
    assert!(
        lo.starts_with("lo\n") && lo.contains("<LOOPBACK,UP,LOWER_UP>"),
        "{lo}"
    );

    // Limits as podman sets them, read from the container's own cgroup on either hierarchy.
    let out = p.container(
        &[
            "--rm",
            "--memory",
            "64m",
            "--pids-limit",
            "50",
            "--cpus",
            "0.5",
        ],
        &[
            "sh",
            "-c",
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max \
             /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us \
             2>/dev/null || cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max \
             /sys/fs/cgroup/cpu.max",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let want = match common::hierarchy() {
        common::Hierarchy::V1 => format!("{}\n50\n50000\n100000", 64u64 << 20),
        common::Hierarchy::V2 => format!("{}\n50\n50000 100000", 64u64 << 20),
    };
    assert_eq!(text(&out.stdout), want);

    let out = p.container(&["--rm"], &["sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));

    let out = p.container(&["-d", "--name", "wr-detached"], &["sleep", "100"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = p.run(&[
        "exec",
        "wr-detached",
        "sh",
        "-c",
        "echo exec-ok; cat /proc/1/cmdline",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "exec-ok\nsleep\u{0}100\u{0}");
    let mut exec = vec!["exec", "wr-detached"];
    exec.extend_from_slice(&seccomp);
    let out = p.run(&exec);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Seccomp:\t2");
    let out = p.run(&["inspect", "--format", "{{.State.Status}}", "wr-detached"]);
    assert_eq!(text(&out.stdout), "running", "{}", text(&out.stderr));
    // podman update reaches the runtime's `update`: the running container's limits change.
    let out = p.run(&[
        "update",
        "--memory",
        "96m",
        "--memory-swap",
        "192m",
        "--cpu-shares",
        "512",
        "wr-detached",
    ]);
    assert!(out.status.success(), "podman update: {}", text(&out.stderr));
    let out = p.run(&[
        "exec",
        "wr-detached",
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.shares \
         2>/dev/null || cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.weight",
    ]);
    // cpu.weight on v2: runc's mapping of 512 shares.
    let cpu = if common::hierarchy() == common::Hierarchy::V2 {
        20
    } else {
        512
    };
    assert_eq!(
        text(&out.stdout),
        format!("{}\n{cpu}", 96u64 << 20),
        "{}",
        text(&out.stderr)
    );
    let out = p.run(&["stop", "--time", "1", "wr-detached"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = p.run(&["inspect", "--format", "{{.State.Status}}", "wr-detached"]);
    assert_eq!(text(&out.stdout), "exited");
    let out = p.run(&["rm", "wr-detached"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// The numbers a counting container has printed, from `podman logs`.
fn logged_numbers(p: &Podman, name: &str) -> Vec<u64> {
    let out = p.run(&["logs", name]);
    text(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// `podman container checkpoint` and `restore` (podman runs `checkpoint --image-path
/// --work-path`, and conmon `restore --bundle --image-path --work-path --detach --pid-file`):
/// a counter goes on from where it stopped. Where CRIU cannot work, the checkpoint fails with
/// CRIU's reason and the container runs on.
#[test]
fn podman_checkpoints_and_restores_through_warden_runc() {
    let Some(p) = Podman::new() else { return };
    let name = "wr-ckpt";
    let counter = "i=0; while :; do i=$((i+1)); echo $i; sleep 0.1; done";
    let out = p.container(
        &["-d", "--name", name, "--log-driver", "k8s-file"],
        &["sh", "-c", counter],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        common::wait_until(std::time::Duration::from_secs(20), || {
            logged_numbers(&p, name).len() >= 3
        }),
        "the counter does not count"
    );
    let out = p.run(&["container", "checkpoint", name]);
    if let Some(reason) = common::criu_unusable() {
        let err = text(&out.stderr);
        assert!(!out.status.success(), "checkpoint worked where CRIU cannot");
        assert!(err.contains(common::criu_message(&reason)), "{err}");
        let out = p.run(&["inspect", "--format", "{{.State.Status}}", name]);
        assert_eq!(text(&out.stdout), "running", "{}", text(&out.stderr));
        eprintln!("CRIU cannot work here ({reason}): checked that podman's checkpoint fails so");
        return;
    }
    assert!(
        out.status.success(),
        "podman checkpoint: {}",
        text(&out.stderr)
    );
    let out = p.run(&["inspect", "--format", "{{.State.Status}}", name]);
    assert_eq!(text(&out.stdout), "exited", "{}", text(&out.stderr));
    let before = logged_numbers(&p, name);
    let out = p.run(&["container", "restore", name]);
    assert!(
        out.status.success(),
        "podman restore: {}",
        text(&out.stderr)
    );
    let out = p.run(&["inspect", "--format", "{{.State.Status}}", name]);
    assert_eq!(text(&out.stdout), "running", "{}", text(&out.stderr));
    assert!(
        common::wait_until(std::time::Duration::from_secs(20), || {
            logged_numbers(&p, name).len() >= before.len() + 3
        }),
        "the restored counter does not count: {:?}",
        logged_numbers(&p, name)
    );
    // One run of numbers, 1 to n: restored, not restarted (that would begin at 1 again).
    let all = logged_numbers(&p, name);
    assert_eq!(all, (1..=*all.last().unwrap()).collect::<Vec<_>>());
    let out = p.run(&["stop", "--time", "1", name]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = p.run(&["rm", name]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}
