//! `--systemd-cgroup` against a real systemd: Debian's /lib/systemd/systemd started as pid 1
//! of a new pid and mount namespace (as systemd runs in a container: `container=` set, a
//! private /run and, on a v1 host, a private /sys/fs/cgroup tmpfs holding the host's
//! hierarchies, since systemd remounts it read-only), its root cgroup one made for the test,
//! and only a do-nothing target to start. The runtimes run inside those namespaces
//! (`nsenter -m -p`), as on a host systemd manages, and reach it over the system bus: the
//! target pulls in Debian's dbus.socket and dbus.service; or, with a target that does not,
//! over systemd's private socket /run/systemd/private (no bus daemon in the namespace). runc
//! goes first in each scenario.
//!
//! Without systemd installed the systemd tests skip (WARDEN_REQUIRE_SYSTEMD=1 makes them
//! fail instead). The fallback and bad-path tests run on the plain host.

mod common;

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::json;

const SYSTEMD: &str = "/lib/systemd/systemd";

/// Sets up the namespaces' mounts, then becomes systemd. $1: a dir that must stay reachable
/// (the test's, perhaps under /run); $2: the test's unit dir; $3: the log file.
const NS_SETUP: &str = r#"set -e
# Until the test has moved unshare out of the cgroup it shares with us (see Systemd::start).
read -r go
exec < /dev/null
mount --make-rprivate /
mount -t proc proc /proc
keep=$1
case $keep in /run/*) exec 3< "$keep" ;; esac
mount -t tmpfs -o mode=755 tmpfs /run
# -c: mount would otherwise resolve /proc/self/fd/3 to its path, now under the new /run.
case $keep in /run/*) mkdir -p "$keep"; mount -c --bind /proc/self/fd/3 "$keep"; exec 3<&- ;; esac
# systemd logs to /dev/console: here, the test's log.
mount -c --bind "$3" /dev/console
if [ "$(stat -f -c %T /sys/fs/cgroup)" != cgroup2fs ]; then
    mkdir /run/.cg
    mount --rbind /sys/fs/cgroup /run/.cg
    mount -t tmpfs -o mode=755 tmpfs /sys/fs/cgroup
    for d in /run/.cg/*; do
        n=${d##*/}
        if [ -d "$d" ] && [ ! -L "$d" ] && mountpoint -q "$d"; then
            mkdir "/sys/fs/cgroup/$n"
            mount --bind "$d" "/sys/fs/cgroup/$n"
        fi
    done
    umount -l /run/.cg
    rmdir /run/.cg
    # Only the controllers the host mounts: systemd mounts every other one /proc/cgroups
    # lists (hugetlb, net_cls, perf_event here) as a hierarchy of its own, which outlives
    # it and leaves the host with a controller no runtime finds a mount for.
    keep=" $(ls /sys/fs/cgroup | tr '\n,' '  ') "
    while read -r name hier num enabled; do
        case $name in \#*) ;; *) case $keep in *" $name "*) ;; *) enabled=0 ;; esac ;; esac
        printf '%s\t%s\t%s\t%s\n' "$name" "$hier" "$num" "$enabled"
    done < /proc/cgroups > /run/warden-cgroups
    mount --bind /run/warden-cgroups /proc/cgroups
fi
exec env -i container=warden-test SYSTEMD_UNIT_PATH="$2:/lib/systemd/system" \
    /lib/systemd/systemd --system --unit=warden-test.target --log-target=console --log-level=info
"#;

/// A systemd in namespaces of its own; on drop it is killed (and with it everything in its
/// pid namespace) and the cgroup tree it was given is removed.
struct Systemd {
    launcher: Child,
    /// systemd's pid here.
    pid: i32,
    /// Its root cgroup's name, `/<name>` in every hierarchy.
    cgroup: String,
    /// Its mount namespace, held open so the cgroup tree can be removed in it afterwards.
    mnt_ns: Option<fs::File>,
    log: PathBuf,
}

fn require_systemd() -> bool {
    std::env::var("WARDEN_REQUIRE_SYSTEMD").is_ok_and(|v| v == "1")
}

impl Systemd {
    /// None (skip) when systemd is not installed. With the system bus (Debian's dbus).
    fn start(env: &Env) -> Option<Systemd> {
        Self::start_with(env, true)
    }

    /// `bus`: whether the target pulls in the bus daemon; without it systemd is reachable
    /// only over its private socket, /run/systemd/private.
    fn start_with(env: &Env, bus: bool) -> Option<Systemd> {
        if !Path::new(SYSTEMD).exists() {
            assert!(!require_systemd(), "{SYSTEMD} is missing");
            eprintln!("skipped: {SYSTEMD} is not installed");
            return None;
        }
        let units = env.dir().join("units");
        fs::create_dir_all(&units).unwrap();
        let wants = if bus {
            "Wants=dbus.socket dbus.service\nAfter=dbus.socket dbus.service\n"
        } else {
            ""
        };
        fs::write(
            units.join("warden-test.target"),
            format!("[Unit]\nDescription=warden test\nDefaultDependencies=no\n{wants}"),
        )
        .unwrap();
        // (Added by the lead.) This systemd shares the host's filesystems: the boot units that
        // Debian's dbus units pull in through their default dependencies (sysinit.target:
        // systemd-tmpfiles-setup empties the host's /tmp, journald rewrites /var/log/journal,
        // sysctl, sysusers...) must never run. dbus without default dependencies, and
        // sysinit.target and basic.target masked so nothing can start them.
        for unit in ["dbus.service", "dbus.socket"] {
            let d = units.join(format!("{unit}.d"));
            fs::create_dir_all(&d).unwrap();
            fs::write(
                d.join("warden-test.conf"),
                "[Unit]\nDefaultDependencies=no\n",
            )
            .unwrap();
        }
        for masked in [
            "sysinit.target",
            "basic.target",
            "systemd-tmpfiles-setup.service",
        ] {
            std::os::unix::fs::symlink("/dev/null", units.join(masked)).unwrap();
        }
        let cgroup = format!("warden-sd-{}-{}", std::process::id(), env.name);
        if cgroup_v2() {
            // The controllers for systemd's root, as the runtime enables them for its
            // cgroups' parents (a booted guest may have none enabled at the root yet).
            let root = Path::new("/sys/fs/cgroup");
            let all = fs::read_to_string(root.join("cgroup.controllers")).unwrap();
            for c in all.split_whitespace() {
                let _ = fs::write(root.join("cgroup.subtree_control"), format!("+{c}"));
            }
        }
        let mut dirs = Vec::new();
        for root in cgroup_roots() {
            let d = root.join(&cgroup);
            fs::create_dir_all(&d).unwrap();
            for f in ["cpuset.cpus", "cpuset.mems"] {
                if let Ok(v) = fs::read_to_string(root.join(f)) {
                    fs::write(d.join(f), v.trim()).unwrap();
                }
            }
            dirs.push(d.join("cgroup.procs"));
        }
        let log = env.dir().join("systemd.log");
        let log_file = fs::File::create(&log).unwrap();
        let mut cmd = Command::new("unshare");
        cmd.args(["--pid", "--fork", "--mount", "--propagation", "private"])
            .args(["sh", "-c", NS_SETUP, "sh"])
            .arg(env.dir())
            .arg(&units)
            .arg(&log)
            .stdin(Stdio::piped())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file);
        // SAFETY: only writes to files between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                for p in &dirs {
                    fs::write(p, "0")?;
                }
                Ok(())
            });
        }
        let mut launcher = cmd.spawn().expect("spawn unshare");
        // Its child (the shell that becomes systemd, waiting for "go") must exist first, or
        // it would be forked into our cgroup.
        let unshare = launcher.id();
        let children = format!("/proc/{unshare}/task/{unshare}/children");
        assert!(
            wait_until(Duration::from_secs(30), || fs::read_to_string(&children)
                .is_ok_and(|c| !c.trim().is_empty())),
            "unshare did not fork"
        );
        // unshare itself goes back to our cgroup before systemd starts: on v2 a cgroup with
        // a process of its own cannot enable controllers for its children (systemd's slices
        // would get no memory or pids files).
        if cgroup_v2() {
            let own = fs::read_to_string("/proc/self/cgroup").unwrap();
            let own = own
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .expect("a cgroup2 line in /proc/self/cgroup");
            let procs = Path::new("/sys/fs/cgroup")
                .join(own.trim_start_matches('/'))
                .join("cgroup.procs");
            fs::write(&procs, launcher.id().to_string()).unwrap();
        }
        {
            use std::io::Write;
            let mut stdin = launcher.stdin.take().unwrap();
            stdin.write_all(b"go\n").unwrap();
        }
        let mut sd = Systemd {
            pid: 0,
            launcher,
            cgroup,
            mnt_ns: None,
            log,
        };
        assert!(
            wait_until(Duration::from_secs(30), || {
                let children = format!("/proc/{unshare}/task/{unshare}/children");
                let pid = fs::read_to_string(children)
                    .ok()
                    .and_then(|s| s.split_whitespace().next()?.parse().ok());
                match pid {
                    Some(p)
                        if fs::read_to_string(format!("/proc/{p}/comm"))
                            .is_ok_and(|c| c.trim() == "systemd") =>
                    {
                        sd.pid = p;
                        true
                    }
                    _ => false,
                }
            }),
            "systemd did not start:\n{}",
            sd.log_text()
        );
        sd.mnt_ns = Some(fs::File::open(format!("/proc/{}/ns/mnt", sd.pid)).unwrap());
        // Never a systemd in our own (or the root) cgroup: it would manage it.
        let cg = fs::read_to_string(format!("/proc/{}/cgroup", sd.pid)).unwrap();
        let tracking = if cgroup_v2() { "0::" } else { ":name=systemd:" };
        assert!(
            cg.lines()
                .any(|l| l.contains(&format!("{tracking}/{}", sd.cgroup))),
            "systemd is not in the test's cgroup:\n{cg}"
        );
        let mut state = String::new();
        let up = wait_until(Duration::from_secs(120), || {
            state = sd.sh(&["systemctl", "is-system-running"]).stdout;
            matches!(state.trim(), "running" | "degraded")
        });
        if !up {
            let failed = sd.sh(&["systemctl", "list-units", "--failed", "--no-pager"]);
            let jobs = sd.sh(&["systemctl", "list-jobs", "--no-pager"]);
            panic!(
                "systemd is {state:?}:\n{}\n{}\n--- log\n{}",
                failed.stdout,
                jobs.stdout,
                sd.log_text()
            );
        }
        if bus {
            sd.wait_on_bus();
        } else {
            // Only the private socket: no bus daemon, nor its socket, in the namespace.
            assert_eq!(
                sd.sh(&["test", "-S", "/run/systemd/private"]).code,
                0,
                "no /run/systemd/private:\n{}",
                sd.log_text()
            );
            assert_ne!(
                sd.sh(&["test", "-e", "/run/dbus/system_bus_socket"]).code,
                0,
                "a system bus socket exists"
            );
            assert_eq!(sd.show("dbus.service", "ActiveState"), "inactive");
        }
        Some(sd)
    }

    /// Waits for systemd on the system bus (it connects once dbus.service is up).
    fn wait_on_bus(&self) {
        let mut ping = Out {
            args: vec![],
            code: -1,
            stdout: String::new(),
            stderr: String::new(),
        };
        let on_bus = wait_until(Duration::from_secs(60), || {
            ping = self.sh(&[
                "busctl",
                "--system",
                "call",
                "org.freedesktop.systemd1",
                "/org/freedesktop/systemd1",
                "org.freedesktop.DBus.Peer",
                "Ping",
            ]);
            ping.code == 0
        });
        assert!(
            on_bus,
            "systemd is not on the system bus: {}",
            ping.describe()
        );
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `argv` in systemd's pid and mount namespaces (at most CMD_TIMEOUT). Output goes
    /// to files, never pipes: a container's init inherits them and outlives `create`.
    fn sh(&self, argv: &[&str]) -> Out {
        let pid = self.pid.to_string();
        let (so, se) = out_files(&self.log);
        let mut child = Command::new("nsenter")
            .args(["-t", &pid, "-m", "-p", "--"])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&so).unwrap())
            .stderr(fs::File::create(&se).unwrap())
            .spawn()
            .expect("run nsenter");
        let st = wait_child(&mut child, CMD_TIMEOUT);
        if st.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        Out {
            args: argv.iter().map(|s| s.to_string()).collect(),
            code: st.map(exit_code).unwrap_or(-1),
            stdout: fs::read_to_string(&so).unwrap_or_default(),
            stderr: fs::read_to_string(&se).unwrap_or_default(),
        }
    }

    /// `<runtime> --root <root> --systemd-cgroup ARGS` in systemd's namespaces.
    fn runtime(&self, bin: &str, root: &Path, args: &[&str]) -> Out {
        let root = root.display().to_string();
        let mut argv = vec![bin, "--root", &root, "--systemd-cgroup"];
        argv.extend_from_slice(args);
        self.sh(&argv)
    }

    fn show(&self, unit: &str, prop: &str) -> String {
        self.sh(&["systemctl", "show", "-p", prop, "--value", unit])
            .ok()
            .stdout
            .trim()
            .to_string()
    }

    /// The pids in a unit's cgroup, as systemd's ControlGroup names it (systemd's pid
    /// namespace).
    fn unit_pids(&self, unit: &str) -> Vec<i32> {
        let cg = self.show(unit, "ControlGroup");
        assert!(!cg.is_empty(), "{unit} has no ControlGroup");
        let base = if cgroup_v2() {
            "/sys/fs/cgroup"
        } else {
            "/sys/fs/cgroup/systemd"
        };
        let out = self.sh(&["cat", &format!("{base}{cg}/cgroup.procs")]).ok();
        out.stdout
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect()
    }

    /// systemd's root cgroup path (every unit's ControlGroup starts with it).
    fn root(&self) -> String {
        format!("/{}", self.cgroup)
    }
}

impl Drop for Systemd {
    fn drop(&mut self) {
        if self.pid > 0 {
            // pid 1 of its namespace: the kernel kills the rest of it too.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.launcher.kill();
        let _ = wait_child(&mut self.launcher, Duration::from_secs(10));
        // The tree, deepest first, in systemd's mount namespace (which holds the
        // hierarchies systemd mounted itself) and in ours.
        let script = format!(
            "for r in /sys/fs/cgroup /sys/fs/cgroup/*; do \
               [ -d \"$r/{0}\" ] && find \"$r/{0}\" -depth -type d -exec rmdir {{}} + 2>/dev/null; \
             done; for r in /sys/fs/cgroup /sys/fs/cgroup/*; do [ -d \"$r/{0}\" ] && exit 1; done; exit 0",
            self.cgroup
        );
        let ns = self
            .mnt_ns
            .as_ref()
            .map(|f| format!("/proc/{}/fd/{}", std::process::id(), f.as_raw_fd()));
        // Hierarchies this host does not mount (hugetlb, net_cls, perf_event... on ours)
        // systemd mounted itself, with its slices at their root: left behind, they keep the
        // hierarchy alive after the namespace is gone, and later runtimes and containerd
        // meet a controller the host has no mount for. Their empty cgroups go too (rmdir
        // leaves any in use, e.g. by another test's systemd).
        let host: Vec<String> = fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let extra = format!(
            "for d in /sys/fs/cgroup/*; do case \" {} \" in *\" ${{d##*/}} \"*) continue ;; esac; \
               mountpoint -q \"$d\" && find \"$d\" -mindepth 1 -depth -type d -exec rmdir {{}} + 2>/dev/null; \
             done; true",
            host.join(" ")
        );
        if let Some(ns) = &ns {
            let _ = Command::new("nsenter")
                .arg(format!("--mount={ns}"))
                .args(["--", "sh", "-c", &extra])
                .status();
        }
        let gone = wait_until(Duration::from_secs(10), || {
            let mut ok = true;
            if let Some(ns) = &ns {
                ok &= Command::new("nsenter")
                    .arg(format!("--mount={ns}"))
                    .args(["--", "sh", "-c", &script])
                    .status()
                    .is_ok_and(|s| s.success());
            }
            ok &= Command::new("sh")
                .args(["-c", &script])
                .status()
                .is_ok_and(|s| s.success());
            ok
        });
        if !gone {
            eprintln!("warning: cgroup tree /{} is left", self.cgroup);
        }
    }
}

/// Two fresh files next to `near` for a command's stdout and stderr.
fn out_files(near: &Path) -> (PathBuf, PathBuf) {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = near.with_file_name("sh-out");
    fs::create_dir_all(&d).unwrap();
    (d.join(format!("{n}.stdout")), d.join(format!("{n}.stderr")))
}

fn runtimes() -> Vec<(&'static str, &'static str)> {
    let mut v = Vec::new();
    if Command::new("runc")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        v.push(("runc", "/usr/sbin/runc"));
    }
    v.push(("warden-runc", RUNC));
    v
}

/// create → the scope exists with the container's init in it and the limits as properties;
/// update → the properties and cgroupfs change; delete --force → the unit is gone.
#[test]
fn the_container_gets_a_transient_scope() {
    let env = Env::new("sd-scope");
    let Some(sd) = Systemd::start(&env) else {
        return;
    };
    scope_lifecycle(&env, &sd, "sd");
}

/// The same with no bus daemon at all (a node where dbus is not installed): as root, runc
/// (go-systemd) and warden-runc fall back to systemd's private socket, /run/systemd/private,
/// where systemd sends its JobRemoved signals to every client without an AddMatch.
#[test]
fn without_a_bus_daemon_the_scope_is_made_over_the_private_socket() {
    let env = Env::new("sd-private");
    let Some(sd) = Systemd::start_with(&env, false) else {
        return;
    };
    scope_lifecycle(&env, &sd, "sdp");
    // Still no bus: every call went over the private socket.
    assert_ne!(
        sd.sh(&["test", "-e", "/run/dbus/system_bus_socket"]).code,
        0,
        "a system bus appeared"
    );
}

/// create with limits, start, update, delete --force, each runtime in turn (runc first),
/// checking the scope through systemctl and cgroupfs at each step.
fn scope_lifecycle(env: &Env, sd: &Systemd, tag: &str) {
    for (name, bin) in runtimes() {
        let id = format!("t-{tag}-{name}-{}", std::process::id());
        let unit = format!("wtest-{id}.scope");
        let root = env.dir().join(format!("root-{name}"));
        let b = env.bundle(&id, |s| {
            s["process"]["args"] = json!(["sleep", "1000"]);
            s["linux"]["cgroupsPath"] = format!("system.slice:wtest:{id}").into();
            s["linux"]["resources"]["memory"] = json!({"limit": 64 << 20});
            s["linux"]["resources"]["pids"] = json!({"limit": 40});
            s["linux"]["resources"]["cpu"] = json!({"quota": 20000, "period": 100000});
        });
        let b = b.to_str().unwrap();
        sd.runtime(bin, &root, &["create", "-b", b, &id]).ok();
        assert_eq!(sd.show(&unit, "ActiveState"), "active", "{name}");
        assert_eq!(sd.show(&unit, "Slice"), "system.slice", "{name}");
        assert_eq!(sd.show(&unit, "Delegate"), "yes", "{name}");
        assert_eq!(
            sd.show(&unit, "ControlGroup"),
            format!("{}/system.slice/{unit}", sd.root()),
            "{name}"
        );
        assert_eq!(sd.show(&unit, "TasksMax"), "40", "{name}");
        let mem = if cgroup_v2() {
            "MemoryMax"
        } else {
            "MemoryLimit"
        };
        assert_eq!(sd.show(&unit, mem), (64u64 << 20).to_string(), "{name}");
        assert_eq!(sd.show(&unit, "CPUQuotaPerSecUSec"), "200ms", "{name}");
        let state: serde_json::Value =
            serde_json::from_str(&sd.runtime(bin, &root, &["state", &id]).ok().stdout).unwrap();
        let pid = state["pid"].as_i64().unwrap() as i32;
        assert_eq!(
            sd.unit_pids(&unit),
            vec![pid],
            "{name}: the init is in the scope"
        );

        sd.runtime(bin, &root, &["start", &id]).ok();
        sd.runtime(
            bin,
            &root,
            &["update", "--memory", "134217728", "--pids-limit", "50", &id],
        )
        .ok();
        assert_eq!(sd.show(&unit, "TasksMax"), "50", "{name}");
        assert_eq!(sd.show(&unit, mem), "134217728", "{name}");
        // And through cgroupfs (what the kernel enforces).
        let cg = sd.show(&unit, "ControlGroup");
        let (file, pids) = if cgroup_v2() {
            (
                format!("/sys/fs/cgroup{cg}/memory.max"),
                format!("/sys/fs/cgroup{cg}/pids.max"),
            )
        } else {
            (
                format!("/sys/fs/cgroup/memory{cg}/memory.limit_in_bytes"),
                format!("/sys/fs/cgroup/pids{cg}/pids.max"),
            )
        };
        assert_eq!(
            sd.sh(&["cat", &file]).ok().stdout.trim(),
            "134217728",
            "{name}"
        );
        assert_eq!(sd.sh(&["cat", &pids]).ok().stdout.trim(), "50", "{name}");

        sd.runtime(bin, &root, &["delete", "--force", &id]).ok();
        let load = sd.show(&unit, "LoadState");
        assert_eq!(load, "not-found", "{name}: the unit is gone after delete");
        assert_eq!(sd.show(&unit, "ActiveState"), "inactive", "{name}");
        let dir = if cgroup_v2() {
            format!("/sys/fs/cgroup{cg}")
        } else {
            format!("/sys/fs/cgroup/systemd{cg}")
        };
        assert_ne!(
            sd.sh(&["test", "-e", &dir]).code,
            0,
            "{name}: {dir} is left"
        );
        assert!(!root.join(&id).exists(), "{name}: state left");
    }
}

/// A second container for a unit that is in use fails clearly, leaving the first alone and
/// nothing of its own behind: runc's current driver (it resets a failed unit of that name
/// and tries once more, then gives up). Not run with runc: Debian's runc 1.1.5 still ignores
/// UnitExists and puts the second container into the first one's cgroup, with a warning.
#[test]
fn a_unit_in_use_is_refused() {
    let env = Env::new("sd-exists");
    let Some(sd) = Systemd::start(&env) else {
        return;
    };
    let (name, bin) = ("warden-runc", RUNC);
    let id = format!("t-sdx-{name}-{}", std::process::id());
    let unit = format!("wtest-{id}.scope");
    let root = env.dir().join(format!("root-{name}"));
    let path = format!("system.slice:wtest:{id}");
    let b1 = env.bundle(&id, |s| {
        s["process"]["args"] = json!(["sleep", "1000"]);
        s["linux"]["cgroupsPath"] = path.clone().into();
    });
    sd.runtime(bin, &root, &["create", "-b", b1.to_str().unwrap(), &id])
        .ok();
    let id2 = format!("{id}-2");
    let b2 = env.bundle(&id2, |s| {
        s["process"]["args"] = json!(["sleep", "1000"]);
        s["linux"]["cgroupsPath"] = path.clone().into();
    });
    let out = sd.runtime(bin, &root, &["create", "-b", b2.to_str().unwrap(), &id2]);
    assert_ne!(out.code, 0, "{name}: {}", out.describe());
    assert!(
        out.stderr.contains(&unit) && out.stderr.contains("exists"),
        "{name}: {}",
        out.describe()
    );
    assert!(
        !root.join(&id2).exists(),
        "{name}: the failed create left its state"
    );
    assert_eq!(
        sd.show(&unit, "ActiveState"),
        "active",
        "{name}: the first's unit"
    );
    assert_eq!(
        sd.unit_pids(&unit).len(),
        1,
        "{name}: only the first's init"
    );
    sd.runtime(bin, &root, &["delete", "--force", &id]).ok();
    assert_eq!(sd.show(&unit, "LoadState"), "not-found", "{name}");
}

/// `restore --systemd-cgroup`: the restored container is a transient scope again, with its
/// limits and the restored process in it, and counts on from where it was checkpointed;
/// delete stops the scope. runc first, and only where runc's checkpoint works under this
/// systemd: on this development host's 6.18 Debian's CRIU cannot start (checkpoint.rs), and
/// in the v2 lane CRIU cannot seize a process in the test systemd's pid namespace, so today
/// this runs only on a host where both work.
#[test]
fn a_restored_container_is_a_transient_scope_again() {
    if let Some(reason) = criu_unusable() {
        eprintln!("CRIU cannot work here ({reason}): restore --systemd-cgroup not tested");
        return;
    }
    let env = Env::new("sd-restore");
    let Some(sd) = Systemd::start(&env) else {
        return;
    };
    for (name, bin) in runtimes() {
        let id = format!("t-sdr-{name}-{}", std::process::id());
        let unit = format!("wtest-{id}.scope");
        let root = env.dir().join(format!("root-{name}"));
        let img = env.dir().join(format!("img-{name}"));
        let out = host_dir(&env, &format!("count-{name}"), &[]);
        let count = out.join("n");
        let b = env.bundle(&id, |s| {
            s["process"]["args"] = json!([
                "sh",
                "-c",
                "i=0; while :; do i=$((i+1)); echo $i > /mnt/n; sleep 0.1; done"
            ]);
            s["mounts"].as_array_mut().unwrap().push(json!({
                "destination": "/mnt", "type": "bind", "source": out, "options": ["rbind", "rw"]
            }));
            s["linux"]["cgroupsPath"] = format!("system.slice:wtest:{id}").into();
            s["linux"]["resources"]["pids"] = json!({"limit": 40});
        });
        let b = b.to_str().unwrap();
        let n = || -> u64 {
            fs::read_to_string(&count)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(0)
        };
        let slow = Duration::from_secs(120);
        sd.runtime(bin, &root, &["run", "-d", "-b", b, &id]).ok();
        assert!(
            wait_until(slow, || n() >= 3),
            "{name}: the counter does not count"
        );
        let imgs = img.to_str().unwrap();
        let ck = sd.runtime(bin, &root, &["checkpoint", "--image-path", imgs, &id]);
        if ck.code != 0 && name == "runc" {
            // In the v2 lane CRIU cannot seize a container inside this test's systemd pid
            // namespace ("Unseizable non-zombie", runc 1.1.5 and warden-runc alike): the
            // scenario is not sound here, and warden-runc is not judged on it.
            eprintln!(
                "runc's checkpoint fails under this systemd: not tested\n{}\n{}",
                ck.describe(),
                criu_errors(&img.join("dump.log"))
            );
            sd.runtime(bin, &root, &["delete", "--force", &id]).ok();
            return;
        }
        assert_eq!(
            ck.code,
            0,
            "{name}: {}\n--- dump.log\n{}",
            ck.describe(),
            criu_errors(&img.join("dump.log"))
        );
        assert_eq!(
            sd.show(&unit, "LoadState"),
            "not-found",
            "{name}: after checkpoint"
        );
        let at = n();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(n(), at, "{name}: counting after the checkpoint");

        let rs = sd.runtime(
            bin,
            &root,
            &["restore", "-d", "--image-path", imgs, "-b", b, &id],
        );
        assert_eq!(
            rs.code,
            0,
            "{name}: {}\n--- restore.log\n{}",
            rs.describe(),
            criu_errors(&img.join("restore.log"))
        );
        assert_eq!(sd.show(&unit, "ActiveState"), "active", "{name}");
        assert_eq!(sd.show(&unit, "Delegate"), "yes", "{name}");
        assert_eq!(sd.show(&unit, "TasksMax"), "40", "{name}");
        assert_eq!(
            sd.show(&unit, "ControlGroup"),
            format!("{}/system.slice/{unit}", sd.root()),
            "{name}"
        );
        let state: serde_json::Value =
            serde_json::from_str(&sd.runtime(bin, &root, &["state", &id]).ok().stdout).unwrap();
        assert_eq!(state["status"], "running", "{name}");
        let pid = state["pid"].as_i64().unwrap() as i32;
        assert!(
            sd.unit_pids(&unit).contains(&pid),
            "{name}: the restored init {pid} is not in {unit}: {:?}",
            sd.unit_pids(&unit)
        );
        assert!(
            wait_until(slow, || n() > at + 2),
            "{name}: the restored counter"
        );

        sd.runtime(bin, &root, &["delete", "--force", &id]).ok();
        assert_eq!(
            sd.show(&unit, "LoadState"),
            "not-found",
            "{name}: after delete"
        );
        assert!(!root.join(&id).exists(), "{name}: state left");
    }
}

/// The error lines of a CRIU log, then its last lines.
fn criu_errors(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let errors = lines
        .iter()
        .filter(|l| l.contains("Error (") || l.contains("Warn ") || l.contains("SEIZE"));
    let tail = &lines[lines.len().saturating_sub(25)..];
    errors.chain(tail).copied().collect::<Vec<_>>().join("\n")
}

/// Where systemd does not manage the host, `--systemd-cgroup` maps `slice:prefix:name` to
/// the cgroupfs path systemd would have used.
#[test]
fn without_systemd_the_path_is_mapped_to_cgroupfs() {
    if Path::new("/run/systemd/system").is_dir() {
        eprintln!("skipped: systemd manages this host");
        return;
    }
    let env = Env::new("sd-fallback");
    let id = env.new_id();
    let slice = format!("wtest{}.slice", std::process::id());
    let b = env.bundle(&id, |s| {
        s["process"]["args"] = json!(["sleep", "1000"]);
        s["linux"]["cgroupsPath"] = format!("{slice}:wtest:{id}").into();
        s["linux"]["resources"]["pids"] = json!({"limit": 33});
    });
    let out = env
        .runc(&["--systemd-cgroup", "create", "-b", b.to_str().unwrap(), &id])
        .ok();
    assert!(
        out.stderr.contains("systemd does not manage this host"),
        "{}",
        out.describe()
    );
    let rel = format!("{slice}/wtest-{id}.scope");
    let pids = if cgroup_v2() {
        PathBuf::from("/sys/fs/cgroup").join(&rel).join("pids.max")
    } else {
        PathBuf::from("/sys/fs/cgroup/pids")
            .join(&rel)
            .join("pids.max")
    };
    assert_eq!(fs::read_to_string(&pids).unwrap().trim(), "33");
    let pid = env.state(&id)["pid"].as_i64().unwrap() as i32;
    let procs = fs::read_to_string(pids.with_file_name("cgroup.procs")).unwrap();
    assert!(
        procs.split_whitespace().any(|p| p == pid.to_string()),
        "{procs}"
    );
    env.runc(&["delete", "--force", &id]).ok();
    assert!(
        !pids.parent().unwrap().exists(),
        "the scope's cgroup is left"
    );
    for r in cgroup_roots() {
        let _ = fs::remove_dir(r.join(&slice));
    }
}

/// With `--systemd-cgroup` a path that is not `slice:prefix:name` is refused, naming it.
#[test]
fn a_path_not_in_systemd_syntax_is_refused() {
    let env = Env::new("sd-badpath");
    for bad in ["/warden-test/plain", "a:b", "notaslice:p:n", "x.slice:p:"] {
        let id = env.new_id();
        let b = env.bundle(&id, |s| s["linux"]["cgroupsPath"] = bad.into());
        let err = env
            .runc(&["--systemd-cgroup", "create", "-b", b.to_str().unwrap(), &id])
            .fails_with(bad);
        assert!(err.contains("invalid cgroups path"), "{err}");
        env.assert_clean(&id);
    }
}
