//! The container lifecycle through the CLI: create, start, state, kill, delete, run (in the
//! foreground and detached), list, ps, pause and resume, and the small commands.

mod common;

use std::fs;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const SHORT: Duration = Duration::from_secs(10);

#[test]
fn create_start_kill_delete() {
    let env = Env::new("lifecycle");
    let id = env.created(|s| s["process"]["args"] = json!(["sleep", "30"]));

    let st = env.state(&id);
    assert_eq!(st["id"], id.as_str());
    assert_eq!(st["status"], "created", "{st:#}");
    let pid = st["pid"].as_i64().unwrap_or(0) as i32;
    assert!(pid > 0, "created container has no pid: {st:#}");
    assert!(
        pid_alive(pid),
        "init {pid} of a created container is not alive"
    );
    assert_eq!(
        st["ociVersion"].as_str().map(|v| v.starts_with("1.")),
        Some(true)
    );
    let bundle = env.dir().join("bundles").join(&id);
    assert_eq!(st["bundle"], bundle.to_str().unwrap(), "{st:#}");
    assert_eq!(st["rootfs"], rootfs().to_str().unwrap(), "{st:#}");
    assert!(
        st["created"].as_str().is_some_and(|c| c.ends_with('Z')),
        "{st:#}"
    );
    assert!(st["owner"].is_string(), "{st:#}");
    // A created container's init has not exec'd the process yet.
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        !cmdline.starts_with(b"sleep\0"),
        "init already exec'd before start"
    );
    // The state dir is the runtime's, under our root.
    assert!(env.root.join(&id).is_dir());

    env.runc(&["start", &id]).ok();
    let st = env.state(&id);
    assert_eq!(st["status"], "running", "{st:#}");
    assert_eq!(st["pid"], pid, "the pid changed at start: {st:#}");
    assert!(wait_until(SHORT, || fs::read(format!(
        "/proc/{pid}/cmdline"
    ))
    .is_ok_and(|c| c.starts_with(b"sleep\0"))));

    let ps: Vec<i32> =
        serde_json::from_str(&env.runc(&["ps", "--format", "json", &id]).ok().stdout).unwrap();
    assert!(
        ps.contains(&pid),
        "ps --format json: {ps:?} lacks init {pid}"
    );

    env.runc(&["kill", &id, "KILL"]).ok();
    env.wait_status(&id, "stopped", SHORT);
    assert!(
        wait_until(SHORT, || !pid_alive(pid)),
        "init {pid} survived SIGKILL"
    );

    env.runc(&["delete", &id]).ok();
    env.runc(&["state", &id])
        .fails_with("container does not exist");
    env.assert_clean(&id);
}

#[test]
fn kill_takes_signal_names_and_numbers() {
    let env = Env::new("kill-signals");
    // A trap makes the init (pid 1 of its namespace) die of the signals it handles. The
    // shell runs its traps once the foreground sleep ends: a signal that comes while it is
    // between fork and wait is not lost, as it can be with `sleep 30 & wait` in busybox sh.
    let script = "trap 'exit 42' USR1; trap 'exit 43' HUP; while :; do sleep 0.2; done";
    for (sig, want) in [("USR1", 42), ("SIGUSR1", 42), ("1", 43), ("SIGHUP", 43)] {
        let id = env.new_id();
        let b = env.bundle(&id, |s| s["process"]["args"] = json!(["sh", "-c", script]));
        let run = env.spawn(&["run", "-b", b.to_str().unwrap(), &id]);
        env.wait_status(&id, "running", SHORT);
        // The traps must be set before the signal comes: the kernel says when the shell
        // catches both (SigCgt bits 0 for HUP and 9 for USR1).
        let pid = env.state(&id)["pid"].as_i64().unwrap() as i32;
        let caught = || {
            let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            u64::from_str_radix(status_field(&status, "SigCgt"), 16).unwrap_or(0)
        };
        assert!(
            wait_until(SHORT, || caught() & 0x201 == 0x201),
            "the shell never caught HUP and USR1: SigCgt {:x}",
            caught()
        );
        if sig == "USR1" {
            env.runc(&["kill", &id, "SIGFOO"]).fails_with("SIGFOO");
            assert_eq!(env.status(&id), "running");
        }
        env.runc(&["kill", &id, sig]).ok();
        let mut run = run;
        let (st, out) = run.finish(SHORT);
        assert!(
            st.is_some(),
            "kill {sig}: run did not end; the init {pid} is {:?} (SigPnd/ShdPnd: {})",
            proc_state(pid),
            fs::read_to_string(format!("/proc/{pid}/status"))
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("Pnd") || l.contains("SigCgt"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert_eq!(out.code, want, "kill {sig}: {}", out.describe());
    }
}

#[test]
fn run_passes_output_and_exit_code_through() {
    let env = Env::new("run-exit");
    let id = env.new_id();
    let b = env.bundle(&id, |s| {
        s["process"]["args"] = json!(["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"])
    });
    let out = env.runc(&["run", "-b", b.to_str().unwrap(), &id]);
    assert_eq!(out.code, 3, "{}", out.describe());
    assert_eq!(out.stdout, "to-stdout\n");
    assert!(out.stderr.contains("to-stderr"), "{}", out.describe());
    // run deletes the container once it has exited.
    env.runc(&["state", &id])
        .fails_with("container does not exist");
    env.assert_clean(&id);

    let out = env.run_ok(&["true"]);
    assert_eq!(out.stdout, "");
}

#[test]
fn run_killed_by_signal_exits_128_plus_signal() {
    let env = Env::new("run-signal");
    let id = env.new_id();
    let b = env.bundle(&id, |s| s["process"]["args"] = json!(["sleep", "30"]));
    let run = env.spawn(&["run", "-b", b.to_str().unwrap(), &id]);
    env.wait_status(&id, "running", SHORT);
    env.runc(&["kill", &id, "9"]).ok();
    let out = run.wait(SHORT);
    assert_eq!(out.code, 128 + 9, "{}", out.describe());
    env.runc(&["state", &id])
        .fails_with("container does not exist");
    env.assert_clean(&id);
}

#[test]
fn run_keep_leaves_a_stopped_container() {
    let env = Env::new("run-keep");
    let id = env.new_id();
    let b = env.bundle(&id, |s| {
        s["process"]["args"] = json!(["sh", "-c", "exit 5"])
    });
    let out = env.runc(&["run", "--keep", "-b", b.to_str().unwrap(), &id]);
    assert_eq!(out.code, 5, "{}", out.describe());
    assert_eq!(env.status(&id), "stopped");
    env.runc(&["delete", &id]).ok();
    env.assert_clean(&id);
}

#[test]
fn run_detached_returns_with_a_running_container() {
    let env = Env::new("run-detach");
    let id = env.new_id();
    let b = env.bundle(&id, |s| s["process"]["args"] = json!(["sleep", "30"]));
    let out = env
        .spawn(&["run", "-d", "-b", b.to_str().unwrap(), &id])
        .wait(SHORT);
    assert_eq!(out.code, 0, "{}", out.describe());
    let st = env.state(&id);
    assert_eq!(st["status"], "running", "{st:#}");
    let pid = st["pid"].as_i64().unwrap() as i32;
    assert!(pid_alive(pid));
    env.runc(&["delete", &id]).fails_with(&format!(
        "cannot delete container {id} that is not stopped: running"
    ));
    assert_eq!(
        env.status(&id),
        "running",
        "a refused delete must leave it running"
    );
    env.runc(&["delete", "--force", &id]).ok();
    assert!(wait_until(SHORT, || !pid_alive(pid)));
    env.assert_clean(&id);
}

#[test]
fn zombie_init_counts_as_stopped() {
    // The init of a detached container exits at once while a subreaper that never waits
    // holds it as a zombie: `state` must say stopped (not running), and delete must work.
    let env = Env::new("zombie");
    let id = env.new_id();
    // Long enough that `run -d` has exited (and the holder has the init) before it ends.
    let b = env.bundle(&id, |s| s["process"]["args"] = json!(["sleep", "0.3"]));
    let pid_file = env.dir().join("init.pid");
    let holder_out = env.dir().join("holder.out");
    // perl: system() waits for its own child only; then it holds the orphaned init, unreaped,
    // until we close its stdin.
    let mut holder = std::process::Command::new("perl");
    holder
        .args([
            "-e",
            r#"$| = 1; my $rc = system(@ARGV) >> 8; print "rc=$rc\n"; <STDIN>; 1 while wait() != -1"#,
            "--",
            RUNC,
            "--root",
        ])
        .arg(&env.root)
        .args(["run", "-d", "--pid-file"])
        .arg(&pid_file)
        .arg("-b")
        .arg(&b)
        .arg(&id)
        .stdin(std::process::Stdio::piped())
        .stdout(fs::File::create(&holder_out).unwrap())
        .stderr(std::process::Stdio::null());
    // SAFETY: prctl with integer arguments, between fork and exec; the flag survives exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut holder, || {
            if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut holder = holder.spawn().expect("spawn perl as a subreaper");
    let read_out = || fs::read_to_string(&holder_out).unwrap_or_default();
    assert!(
        wait_until(SHORT, || read_out().contains('\n')),
        "run -d did not return"
    );
    assert_eq!(read_out().trim(), "rc=0");
    let pid: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        wait_until(SHORT, || proc_state(pid) == Some('Z')),
        "init {pid} should be a zombie of the holder, is {:?}",
        proc_state(pid)
    );
    let st = env.state(&id);
    assert_eq!(st["status"], "stopped", "a zombie init: {st:#}");
    let out = env.runc(&["list"]).ok();
    assert!(out.stdout.contains("stopped"), "{}", out.stdout);
    env.runc(&["start", &id])
        .fails_with("cannot start a container that has stopped");
    env.runc(&["kill", &id, "KILL"])
        .fails_with("container not running");
    env.runc(&["delete", &id]).ok();
    drop(holder.stdin.take());
    assert!(
        wait_child(&mut holder, SHORT).is_some(),
        "the holder did not exit"
    );
    assert_eq!(proc_state(pid), None, "the holder did not reap {pid}");
    env.assert_clean(&id);
}

#[test]
fn list_table_json_and_quiet() {
    let env = Env::new("list");
    assert_eq!(env.runc(&["list", "-q"]).ok().stdout, "");
    let a = env.created(|s| s["process"]["args"] = json!(["sleep", "30"]));
    let b = env.started(&["sleep", "30"]);
    let pid_a = env.state(&a)["pid"].as_i64().unwrap();
    let pid_b = env.state(&b)["pid"].as_i64().unwrap();

    let out = env.runc(&["list"]).ok();
    let lines = out.lines();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"],
        "{}",
        out.stdout
    );
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    let row = |id: &str| -> Vec<String> {
        lines
            .iter()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("no row for {id}:\n{}", out.stdout))
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    let ra = row(&a);
    assert_eq!(ra[1], pid_a.to_string());
    assert_eq!(ra[2], "created");
    assert_eq!(ra[3], env.dir().join("bundles").join(&a).to_str().unwrap());
    assert_eq!(ra[5], "root");
    let rb = row(&b);
    assert_eq!(rb[1], pid_b.to_string());
    assert_eq!(rb[2], "running");
    // Columns line up: every row's PID starts where the header's does.
    let col = lines[0].find("PID").unwrap();
    for l in &lines[1..] {
        assert!(
            l[col..].starts_with(|c: char| c.is_ascii_digit()),
            "misaligned: {l:?}"
        );
    }

    let json: Value = serde_json::from_str(&env.runc(&["list", "--format", "json"]).ok().stdout)
        .expect("list --format json prints JSON");
    let arr = json.as_array().expect("an array");
    assert_eq!(arr.len(), 2, "{json:#}");
    let find = |id: &str| arr.iter().find(|c| c["id"] == id).cloned().unwrap();
    assert_eq!(find(&a)["status"], "created");
    assert_eq!(find(&a)["pid"], pid_a);
    assert_eq!(find(&b)["status"], "running");
    assert_eq!(
        find(&b)["bundle"],
        env.dir().join("bundles").join(&b).to_str().unwrap()
    );

    let mut quiet = env
        .runc(&["list", "-q"])
        .ok()
        .lines()
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>();
    quiet.sort();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(quiet, want);

    env.runc(&["kill", &b, "KILL"]).ok();
    env.wait_status(&b, "stopped", SHORT);
    let out = env.runc(&["list"]).ok();
    let rb: Vec<&str> = out
        .lines()
        .into_iter()
        .find(|l| l.starts_with(&format!("{b} ")))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(rb[1..3], ["0", "stopped"], "{}", out.stdout);
}

#[test]
fn pid_file_holds_the_init_pid() {
    let env = Env::new("pid-file");
    let id = env.new_id();
    let b = env.bundle(&id, |s| s["process"]["args"] = json!(["sleep", "30"]));
    let pid_file = env.dir().join("init.pid");
    env.runc(&[
        "create",
        "--pid-file",
        pid_file.to_str().unwrap(),
        "-b",
        b.to_str().unwrap(),
        &id,
    ])
    .ok();
    let text = fs::read_to_string(&pid_file).expect("pid file written");
    let pid: i64 = text
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("pid file says {text:?}"));
    assert_eq!(env.state(&id)["pid"], pid);
    // runc writes the bare number, no newline.
    assert_eq!(text, pid.to_string());
}

#[test]
fn kill_all_reaches_every_process() {
    // Without a pid namespace, killing the init leaves its children running: only --all
    // reaches them.
    let env = Env::new("kill-all");
    let id = env.new_id();
    let b = env.bundle(&id, |s| {
        s["process"]["args"] = json!(["sh", "-c", "sleep 31 & sleep 32 & wait"]);
        s["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != "pid");
    });
    env.create(&id, &b).ok();
    env.runc(&["start", &id]).ok();
    let mut pids: Vec<i32> = Vec::new();
    assert!(
        wait_until(SHORT, || {
            pids = serde_json::from_str(&env.runc(&["ps", "--format", "json", &id]).ok().stdout)
                .unwrap();
            pids.len() >= 3
        }),
        "want the init and two sleeps, ps says {pids:?}"
    );
    env.runc(&["kill", "--all", &id, "KILL"]).ok();
    for &p in &pids {
        assert!(
            wait_until(SHORT, || !pid_alive(p)),
            "pid {p} survived kill --all"
        );
    }
    env.wait_status(&id, "stopped", SHORT);
    env.runc(&["delete", &id]).ok();
    env.assert_clean(&id);
}

#[test]
fn pause_and_resume() {
    let env = Env::new("pause");
    let id = env.started(&["sleep", "30"]);
    let freezer = || freezer_state(&id);
    assert_eq!(freezer(), "THAWED");

    env.runc(&["pause", &id]).ok();
    assert_eq!(env.status(&id), "paused");
    assert_eq!(freezer(), "FROZEN");
    let out = env.runc(&["list"]).ok();
    assert!(out.stdout.contains("paused"), "{}", out.stdout);
    env.runc(&["pause", &id]).fails_with("");

    env.runc(&["resume", &id]).ok();
    assert_eq!(env.status(&id), "running");
    assert_eq!(freezer(), "THAWED");
    env.runc(&["resume", &id]).fails_with("not paused");

    // A paused container can still be deleted with --force.
    env.runc(&["pause", &id]).ok();
    let pid = env.state(&id)["pid"].as_i64().unwrap() as i32;
    env.runc(&["delete", "--force", &id]).ok();
    assert!(
        wait_until(SHORT, || !pid_alive(pid)),
        "paused init {pid} survived delete --force"
    );
    env.assert_clean(&id);
}

#[test]
fn log_file_gets_json_errors() {
    let env = Env::new("log-json");
    let log = env.dir().join("runc.log");
    let out = env.runc(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "state",
        "nope",
    ]);
    out.fails_with("container does not exist");
    let text = fs::read_to_string(&log).expect("log file written");
    let last: Value = serde_json::from_str(text.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {text}"));
    assert_eq!(last["level"], "error", "{text}");
    assert_eq!(last["msg"], "container does not exist", "{text}");
}

#[test]
fn spec_writes_the_default_config() {
    let env = Env::new("spec");
    let dir = env.dir().join("specdir");
    fs::create_dir(&dir).unwrap();
    env.runc(&["spec", "-b", dir.to_str().unwrap()]).ok();
    let written: Value =
        serde_json::from_str(&fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(written, warden_runtime::spec::default_spec(None));
    env.runc(&["spec", "-b", dir.to_str().unwrap()])
        .fails_with("exists");

    let features: Value = serde_json::from_str(&env.runc(&["features"]).ok().stdout).unwrap();
    assert!(features["ociVersionMax"]
        .as_str()
        .is_some_and(|v| v.starts_with("1.")));
    assert!(
        features["hooks"].as_array().is_some_and(|h| h.len() == 6),
        "{features:#}"
    );
}

#[test]
fn exec_runs_in_the_container_and_passes_its_exit_code() {
    let env = Env::new("exec");
    let id = env.created(|s| {
        s["hostname"] = "exec-box".into();
        s["process"]["args"] = serde_json::json!(["sleep", "30"]);
    });
    env.runc(&["start", &id]).ok();
    let init = env.state(&id)["pid"].as_i64().unwrap();
    let out = env
        .runc(&[
            "exec",
            &id,
            "sh",
            "-c",
            "hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo",
        ])
        .ok();
    assert_eq!(out.lines(), ["exec-box", "sleep 30 "], "{}", out.describe());
    let out = env.runc(&["exec", &id, "sh", "-c", "echo err >&2; exit 7"]);
    assert_eq!(out.code, 7, "{}", out.describe());
    assert_eq!(out.stderr.trim(), "err");
    // A detached exec joins the container's cgroup (seen from the host).
    let pid_file = env.dir().join("exec.pid");
    env.runc(&[
        "exec",
        "-d",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
        "sleep",
        "30",
    ])
    .ok();
    let exec_pid: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let procs = cgroup_procs("memory", &id);
    assert!(procs.contains(&exec_pid), "{exec_pid} not in {procs:?}");
    assert!(pid_alive(init as i32));

    env.runc(&["kill", &id, "KILL"]).ok();
    env.wait_status(&id, "stopped", SHORT);
    env.runc(&["exec", &id, "true"])
        .fails_with("cannot exec in a stopped container");
    env.runc(&["delete", &id]).ok();
    env.assert_clean(&id);
}

#[test]
fn features_tell_what_is_supported() {
    let env = Env::new("features");
    let ours: Value = serde_json::from_str(&env.runc(&["features"]).ok().stdout).unwrap();
    // runc 1.1.5's own list of capabilities, the same shape.
    let runc = std::process::Command::new("runc")
        .arg("features")
        .output()
        .expect("run `runc features`");
    assert!(runc.status.success());
    let theirs: Value = serde_json::from_slice(&runc.stdout).unwrap();
    assert_eq!(
        ours["linux"]["capabilities"], theirs["linux"]["capabilities"],
        "capabilities: ours against runc's"
    );
    let mount_options = ours["mountOptions"].as_array().unwrap();
    for o in [
        "nosymfollow",
        "symfollow",
        "rbind",
        "rslave",
        "rro",
        "rnoatime",
        "idmap",
        "ridmap",
    ] {
        assert!(mount_options.contains(&json!(o)), "{o}: {mount_options:?}");
    }
    // Not implemented, so not claimed (runtime-spec features.md's fields).
    for key in ["intelRdt", "netDevices"] {
        assert_eq!(ours["linux"][key]["enabled"], json!(false), "{key}");
    }
    // Idmapped bind mounts are implemented (mount_attrs.rs).
    assert_eq!(
        ours["linux"]["mountExtensions"]["idmap"]["enabled"],
        json!(true)
    );
    assert!(ours["linux"]["memoryPolicy"]["modes"]
        .as_array()
        .unwrap()
        .contains(&json!("MPOL_BIND")));
    let time = ours["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .contains(&json!("time"));
    assert_eq!(time, std::path::Path::new("/proc/self/ns/time").exists());
}
