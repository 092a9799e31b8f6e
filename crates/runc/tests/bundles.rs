//! Bundles the runtime-spec allows and runc runs, beyond the harness's default: runc's own
//! `spec` template, and configs that runc or crun accept and a stricter reading refused. Each
//! sits next to the bad input that must stay an error.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use serde_json::{json, Value};

/// runc's `spec` written into `dir` (runc comes from scripts/deps.sh), with the root pointed
/// at the test rootfs, no terminal, and `args`: nothing else of the template changes.
fn runc_template(dir: &Path, args: &[&str]) -> Value {
    let out = Command::new("runc")
        .arg("spec")
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run `runc spec` (scripts/deps.sh installs runc)");
    assert!(
        out.status.success(),
        "runc spec: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.join("config.json");
    let mut spec: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    spec["root"]["path"] = json!(rootfs());
    spec["process"]["terminal"] = json!(false);
    spec["process"]["args"] = json!(args);
    fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    spec
}

#[test]
fn runcs_own_spec_template_runs_as_with_runc() {
    let env = Env::new("runc-template");
    let id = env.new_id();
    let b = env.empty_bundle(&id);
    let spec = runc_template(&b, &["cat", "/proc/self/status"]);
    // The template lists ambient capabilities and no inheritable ones: the kernel cannot
    // raise them (EPERM), and runc carries on without them.
    assert!(spec["process"]["capabilities"]["ambient"].is_array());
    assert!(spec["process"]["capabilities"]["inheritable"].is_null());

    let ours = env.runc(&["run", "-b", b.to_str().unwrap(), &id]).ok();
    assert!(
        ours.stderr.contains(
            "ambient capabilities CAP_AUDIT_WRITE, CAP_KILL, CAP_NET_BIND_SERVICE skipped"
        ),
        "the skipped ambient capabilities are logged:\n{}",
        ours.describe()
    );
    env.assert_clean(&id);

    let runc_root = env.dir().join("runc-root");
    let runc_id = format!("{id}-runc");
    let theirs = Command::new("runc")
        .arg("--root")
        .arg(&runc_root)
        .args(["run", "-b", b.to_str().unwrap(), &runc_id])
        .stdin(Stdio::null())
        .output()
        .expect("run runc");
    assert!(
        theirs.status.success(),
        "runc itself fails the template: {}",
        String::from_utf8_lossy(&theirs.stderr)
    );
    let theirs = String::from_utf8_lossy(&theirs.stdout).into_owned();
    let want = cap_mask(&["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    for k in [
        "CapEff",
        "CapPrm",
        "CapBnd",
        "CapInh",
        "CapAmb",
        "NoNewPrivs",
    ] {
        assert_eq!(
            status_field(&ours.stdout, k),
            status_field(&theirs, k),
            "{k}: warden-runc against runc"
        );
    }
    assert_eq!(status_field(&ours.stdout, "CapEff"), want);
    assert_eq!(status_field(&ours.stdout, "CapAmb"), "0000000000000000");
}

#[test]
fn spec_prints_runcs_template() {
    let env = Env::new("spec-template");
    let ours_dir = env.dir().join("ours");
    let runc_dir = env.dir().join("runc");
    fs::create_dir_all(&ours_dir).unwrap();
    fs::create_dir_all(&runc_dir).unwrap();
    env.runc(&["spec", "-b", ours_dir.to_str().unwrap()]).ok();
    let runc = runc_template(&runc_dir, &["sh"]);
    let ours: Value =
        serde_json::from_slice(&fs::read(ours_dir.join("config.json")).unwrap()).unwrap();
    // Namespaces and capabilities are what tools reading the template build on; the
    // version and hostname name the runtime.
    assert_eq!(
        ours["linux"]["namespaces"], runc["linux"]["namespaces"],
        "namespaces"
    );
    assert_eq!(
        ours["process"]["capabilities"], runc["process"]["capabilities"],
        "capabilities"
    );
    assert_eq!(ours["mounts"], runc["mounts"], "mounts");
    assert_eq!(
        ours["linux"]["maskedPaths"], runc["linux"]["maskedPaths"],
        "maskedPaths"
    );
    assert_eq!(
        ours["linux"]["readonlyPaths"], runc["linux"]["readonlyPaths"],
        "readonlyPaths"
    );
}

#[test]
fn bind_mount_with_filesystem_data_options_is_bound() {
    // The kernel ignores data on MS_BIND; runc and crun accept such a bind. The mount
    // attributes beside it still take effect (mount_attrs.rs: the recursive ones).
    let env = Env::new("bind-data");
    let src = env.dir().join("bind-data-src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("hello"), "from the host\n").unwrap();
    let out = env
        .run_container(&[], |s| {
            s["mounts"].as_array_mut().unwrap().push(json!({
                "destination": "/mnt", "type": "bind", "source": src,
                "options": ["bind", "nosuid", "strictatime", "mode=755", "size=1k", "ro"]
            }));
            s["process"]["args"] = json!([
                "sh",
                "-c",
                "cat /mnt/hello; grep ' /mnt ' /proc/self/mountinfo"
            ]);
        })
        .ok();
    let lines = out.lines();
    assert_eq!(lines.first(), Some(&"from the host"), "{}", out.describe());
    let info = parse_mountinfo(&out.stdout);
    let m = info
        .iter()
        .find(|m| m.mount_point == "/mnt")
        .unwrap_or_else(|| panic!("/mnt not mounted:\n{}", out.describe()));
    assert!(m.is_ro(), "{m:?}");
    assert!(m.options.iter().any(|o| o == "nosuid"), "{m:?}");
}

#[test]
fn fifo_in_linux_devices_is_made_without_a_device_rule() {
    // Type `p` is a fifo: mknod makes it, and the device cgroup has nothing to allow. (An
    // explicit `p` rule in resources.devices stays an error.)
    let env = Env::new("dev-fifo");
    let out = env
        .run_container(&[], |s| {
            s["linux"]["devices"] =
                json!([{"path": "/dev/myfifo", "type": "p", "fileMode": 0o640}]);
            s["process"]["args"] = json!(["sh", "-c", "stat -c '%F %a' /dev/myfifo"]);
        })
        .ok();
    assert_eq!(out.lines(), ["fifo 640"], "{}", out.describe());
}

#[test]
fn unbindable_root_propagation_is_applied_after_the_root_is_bound() {
    // `/` can only be made unbindable once the rootfs is bound onto itself; crun does it
    // in that order, runc fails the bind with EINVAL.
    let env = Env::new("propagation-unbindable");
    for p in ["unbindable", "runbindable"] {
        let out = env
            .run_container(&[], |s| {
                s["linux"]["rootfsPropagation"] = json!(p);
                s["process"]["args"] = json!(["cat", "/proc/self/mountinfo"]);
            })
            .ok();
        let root = out
            .stdout
            .lines()
            .find(|l| l.split(' ').nth(4) == Some("/"))
            .unwrap_or_else(|| panic!("no / in {}", out.stdout));
        assert!(root.contains(" unbindable "), "{p}: {root}");
    }
}

/// A host process (`sleep 60`) put into `/warden-test/<id>` before the container exists: in
/// the pids hierarchy on v1, the unified one on v2. Killed and its dir removed on drop.
struct Occupied {
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl Occupied {
    fn new(id: &str) -> Occupied {
        let dir = match hierarchy() {
            Hierarchy::V2 => cgroup_v2_dir(id),
            Hierarchy::V1 => cgroup_dir("pids", id),
        };
        fs::create_dir_all(&dir).unwrap();
        let child = Command::new("sleep")
            .arg("60")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        fs::write(dir.join("cgroup.procs"), child.id().to_string()).unwrap();
        Occupied { child, dir }
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Occupied {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir(&self.dir);
    }
}

#[test]
fn a_cgroup_with_processes_is_joined_with_a_warning_and_never_taken_from_them() {
    let env = Env::new("cgroup-occupied");

    // A create that fails leaves the cgroup and its process alone.
    let id = env.new_id();
    let mut other = Occupied::new(&id);
    let b = env.bundle(&id, |s| s["process"]["args"] = json!(["/no/such/program"]));
    let out = env.create(&id, &b);
    out.clone().fails_with("no/such/program");
    assert!(
        out.stderr
            .contains("container's cgroup is not empty: 1 process(es) found"),
        "{}",
        out.describe()
    );
    assert!(
        other.alive(),
        "a failed create killed a process it did not start"
    );
    assert!(
        other.dir.is_dir(),
        "a failed create removed a cgroup it shared"
    );
    drop(other);
    env.assert_clean(&id);

    // A container that runs and is deleted: the same.
    let id = env.new_id();
    let mut other = Occupied::new(&id);
    let b = env.bundle(&id, |s| s["process"]["args"] = json!(["sleep", "30"]));
    let out = env.create(&id, &b).ok();
    assert!(
        out.stderr.contains("container's cgroup is not empty"),
        "{}",
        out.describe()
    );
    env.runc(&["start", &id]).ok();
    env.runc(&["delete", "--force", &id]).ok();
    assert!(
        other.alive(),
        "delete killed a process the container did not start"
    );
    assert!(other.dir.is_dir(), "delete removed a cgroup it shared");
    drop(other);
    env.assert_clean(&id);
}

#[test]
fn unified_resources_fail_create_on_cgroup_v1_and_are_written_on_v2() {
    let env = Env::new("unified-res");
    let id = env.new_id();
    let b = env.bundle(&id, |s| {
        s["process"]["args"] = json!(["sleep", "30"]);
        s["linux"]["resources"]["unified"] = json!({"memory.max": "33554432"});
    });
    if hierarchy() == Hierarchy::V2 {
        env.create(&id, &b).ok();
        assert_eq!(cgroup_v2_file(&id, "memory.max"), "33554432");
        env.runc(&["delete", "--force", &id]).ok();
    } else {
        let err = env.create(&id, &b).fails_with("linux.resources.unified");
        assert!(err.contains("memory.max"), "{err}");
    }
    env.assert_clean(&id);
}

/// Accepts one connection on `listener` and takes the fd it carries (the terminal's master).
fn receive_master(listener: &std::os::unix::net::UnixListener) -> std::os::fd::OwnedFd {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::{AsRawFd, FromRawFd, RawFd};
    let (stream, _) = listener.accept().expect("accept on the console socket");
    let mut buf = [0u8; 4096];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .expect("recvmsg on the console socket");
    for c in msg.cmsgs().into_iter().flatten() {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the kernel just gave us this fd.
            return unsafe { std::os::fd::OwnedFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("the console socket got no fd");
}

#[test]
fn a_terminal_container_has_its_terminal_on_dev_console() {
    let env = Env::new("dev-console");
    let id = env.new_id();
    let sock = env.dir().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let b = env.bundle(&id, |s| {
        s["process"]["terminal"] = json!(true);
        s["process"]["args"] = json!([
            "sh",
            "-c",
            "echo via-console > /dev/console; grep -c ' /dev/console ' /proc/self/mountinfo"
        ]);
    });
    let create = env.spawn(&[
        "create",
        "--console-socket",
        sock.to_str().unwrap(),
        "-b",
        b.to_str().unwrap(),
        &id,
    ]);
    let master = receive_master(&listener);
    create.wait(CMD_TIMEOUT).ok();
    env.runc(&["start", &id]).ok();
    // Everything the container writes to its terminal, until it closes (EIO on the master).
    let mut got = Vec::new();
    let mut f = fs::File::from(master);
    let mut buf = [0u8; 4096];
    loop {
        match std::io::Read::read(&mut f, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&got).replace('\r', "");
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        ["via-console", "1"],
        "what reached the terminal"
    );
    env.wait_status(&id, "stopped", CMD_TIMEOUT);
    env.runc(&["delete", &id]).ok();
    env.assert_clean(&id);
}

fn without_mount_ns(s: &mut Value, args: &[&str]) {
    s["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|ns| ns["type"] != "mount");
    s["process"]["args"] = json!(args);
}

/// The host's mount points at or below `root`.
fn mounts_under(root: &Path) -> Vec<String> {
    host_mount_points()
        .into_iter()
        .filter(|m| Path::new(m).starts_with(root))
        .collect()
}

#[test]
fn a_config_without_a_mount_namespace_runs_and_leaves_nothing_mounted() {
    // The spec: a namespace not listed is the runtime's. The container's mounts land in the
    // host's namespace (runc leaves proc, sys, dev... mounted there after delete): delete
    // must take back exactly what it added.
    let env = Env::new("no-mountns");
    // A copy of the rootfs of its own: its mounts are the host's, and the other tests watch
    // the shared rootfs for mounts appearing on the host.
    let own_root = env.dir().join("rootfs");
    let cp = Command::new("cp")
        .arg("-a")
        .arg(rootfs())
        .arg(&own_root)
        .status()
        .unwrap();
    assert!(cp.success(), "cp -a the rootfs");
    let root = fs::canonicalize(&own_root).unwrap();
    let without_mount_ns = |s: &mut Value, args: &[&str]| {
        without_mount_ns(s, args);
        s["root"]["path"] = json!(root);
    };
    let id = env.new_id();
    let b = env.bundle(&id, |s| without_mount_ns(s, &["sleep", "30"]));
    env.create(&id, &b).ok();
    env.runc(&["start", &id]).ok();
    let mounted = mounts_under(&root);
    assert!(
        mounted.iter().any(|m| m.ends_with("/proc")),
        "the container's mounts are the host's: {mounted:?}"
    );
    // An exec'd process sees the container's root, not the host's.
    let out = env
        .runc(&[
            "exec",
            &id,
            "sh",
            "-c",
            "ls /bin/busybox && cat /proc/1/comm",
        ])
        .ok();
    assert_eq!(out.lines(), ["/bin/busybox", "sleep"], "{}", out.describe());
    env.runc(&["delete", "--force", &id]).ok();
    let left = mounts_under(&root);
    assert!(left.is_empty(), "mounts left on the host: {left:?}");
    env.assert_clean(&id);

    // A create that fails after mounting takes them back too.
    let id = env.new_id();
    let b = env.bundle(&id, |s| without_mount_ns(s, &["/no/such/program"]));
    env.create(&id, &b).fails_with("no/such/program");
    let left = mounts_under(&root);
    assert!(left.is_empty(), "a failed create left mounts: {left:?}");
    env.assert_clean(&id);
}
