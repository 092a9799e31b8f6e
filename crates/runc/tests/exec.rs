//! runc's `exec` contract beyond running a command: capability names as runc takes them,
//! paused containers, and which cgroups the process joins (`--cgroup`).

mod common;

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use common::*;

const SHORT: Duration = Duration::from_secs(10);

fn unified_host() -> bool {
    hierarchy() == Hierarchy::V2
}

/// `/proc/<pid>/cgroup`, as `(hierarchy, path)` pairs keyed by the controllers field.
fn cgroups_of(pid: i32) -> Vec<(String, String)> {
    fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let _n = f.next()?;
            Some((f.next()?.to_string(), f.next()?.to_string()))
        })
        .collect()
}

/// `exec -d FLAGS ID sh -c 'sleep 30; : MARKER'` and the pid of that shell.
fn exec_marked(env: &Env, flags: &[&str], id: &str, marker: &str) -> i32 {
    let script = format!("sleep 30; : {marker}");
    let mut args = vec!["exec", "-d"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[id, "sh", "-c", &script]);
    env.runc(&args).ok();
    pid_of(marker)
}

/// The pid of the process whose command line contains `marker`.
fn pid_of(marker: &str) -> i32 {
    let mut found = Vec::new();
    assert!(
        wait_until(SHORT, || {
            found = procs_with(marker);
            !found.is_empty()
        }),
        "no process with {marker:?}"
    );
    found[0].0
}

#[test]
fn exec_cap_takes_runcs_names() {
    let env = Env::new("exec-cap");
    let id = env.started(&["sleep", "30"]);
    let out = env
        .runc(&[
            "exec",
            "--cap",
            "CAP_SYS_ADMIN",
            "--cap",
            "NET_ADMIN",
            &id,
            "cat",
            "/proc/self/status",
        ])
        .ok();
    let eff = u64::from_str_radix(status_field(&out.stdout, "CapEff"), 16).unwrap();
    assert_ne!(eff & (1 << 21), 0, "CAP_SYS_ADMIN: {}", out.stdout);
    assert_ne!(eff & (1 << 12), 0, "NET_ADMIN: {}", out.stdout);
    env.runc(&["exec", "--cap", "CAP_NOT_A_CAP", &id, "true"])
        .fails_with("unknown capability \"CAP_NOT_A_CAP\"");
    env.runc(&["delete", "--force", &id]).ok();
    env.assert_clean(&id);
}

#[test]
fn exec_into_a_paused_container_is_refused_unless_ignore_paused() {
    let env = Env::new("exec-paused");
    let id = env.started(&["sleep", "30"]);
    env.runc(&["pause", &id]).ok();
    env.runc(&["exec", &id, "true"])
        .fails_with("cannot exec in a paused container (use --ignore-paused to override)");
    // With --ignore-paused the process joins the frozen cgroup: it runs once resumed.
    env.runc(&[
        "exec",
        "-d",
        "--ignore-paused",
        &id,
        "sh",
        "-c",
        "echo thawed > /dev/shm/mark",
    ])
    .ok();
    env.runc(&["resume", &id]).ok();
    assert!(
        wait_until(SHORT, || env
            .runc(&["exec", &id, "cat", "/dev/shm/mark"])
            .stdout
            .contains("thawed")),
        "the process exec'd while paused never ran"
    );
    env.runc(&["delete", "--force", &id]).ok();
    env.assert_clean(&id);
}

#[test]
fn exec_joins_the_containers_cgroup_in_every_hierarchy() {
    // The init's /proc/<pid>/cgroup, every line (v1 controllers, name=systemd where the host
    // has it, and the unified hierarchy), is what an exec'd process gets.
    let env = Env::new("exec-cgroups");
    let id = env.started(&["sleep", "30"]);
    let init = env.state(&id)["pid"].as_i64().unwrap() as i32;
    let marker = format!("{id}-exec");
    let pid = exec_marked(&env, &[], &id, &marker);
    let theirs = cgroups_of(init);
    assert!(
        theirs.iter().any(|(c, _)| c.is_empty()),
        "no unified line for the init: {theirs:?}"
    );
    // A v1 hierarchy the host has no mount of (one another program mounted in a namespace
    // of its own, and that outlived it) cannot be joined by any runtime: left out.
    let mounted: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(" - cgroup "))
        .filter_map(|(_, rest)| rest.split(' ').nth(1).map(str::to_string))
        .collect();
    let joinable = |c: &str| {
        c.is_empty()
            || mounted
                .iter()
                .any(|opts| c.split(',').all(|part| opts.split(',').any(|o| o == part)))
    };
    for (c, path) in theirs.iter().filter(|(c, _)| joinable(c)) {
        assert!(path.ends_with(&id), "init in {c}:{path}");
    }
    assert_eq!(
        cgroups_of(pid),
        theirs,
        "the exec'd process against the init"
    );
    env.runc(&["delete", "--force", &id]).ok();
    env.assert_clean(&id);
}

#[test]
fn exec_cgroup_puts_the_process_in_a_sub_cgroup() {
    let env = Env::new("exec-subcg");
    let id = env.started(&["sleep", "30"]);
    let init = env.state(&id)["pid"].as_i64().unwrap() as i32;
    env.runc(&["exec", "--cgroup", "nosuch", &id, "true"])
        .fails_with("no such sub-cgroup");
    env.runc(&["exec", "--cgroup", "../escape", &id, "true"])
        .fails_with("must stay below the container's cgroup");

    // The controller the sub-cgroup is made in: on v1 only that hierarchy's line moves.
    let (flag, controller) = if unified_host() {
        ("sub".to_string(), String::new())
    } else {
        ("memory:sub".to_string(), "memory".to_string())
    };
    let dir: PathBuf = if unified_host() {
        cgroup_v2_dir(&id)
    } else {
        cgroup_dir("memory", &id)
    };
    fs::create_dir(dir.join("sub")).unwrap();
    let marker = format!("{id}-sub");
    let pid = exec_marked(&env, &["--cgroup", &flag], &id, &marker);
    for ((c, path), (_, init_path)) in cgroups_of(pid).iter().zip(cgroups_of(init).iter()) {
        if *c == controller {
            assert_eq!(*path, format!("{init_path}/sub"), "{c}");
        } else {
            assert_eq!(path, init_path, "{c}: only {controller:?} moves");
        }
    }
    if unified_host() {
        env.runc(&["exec", "--cgroup", "memory:sub", &id, "true"])
            .fails_with("only be named on cgroup v1");
    }
    env.runc(&["delete", "--force", &id]).ok();
    env.assert_clean(&id);
}

#[test]
fn exec_cpu_affinity_final_is_the_processs() {
    // runc 1.1 has no execCPUAffinity (runc 1.3 sets it, as here). Needs two CPUs.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        eprintln!("skipped: one CPU");
        return;
    }
    let env = Env::new("exec-affinity");
    let id = env.started(&["sleep", "30"]);
    let pf = env.dir().join("affinity-process.json");
    fs::write(
        &pf,
        serde_json::json!({
            "args": ["sh", "-c", "sleep 30; : affinity-exec-marker"],
            "cwd": "/", "user": {"uid": 0, "gid": 0},
            "execCPUAffinity": {"initial": "0", "final": "1"}
        })
        .to_string(),
    )
    .unwrap();
    env.runc(&["exec", "-d", "--process", pf.to_str().unwrap(), &id])
        .ok();
    let pid = pid_of("affinity-exec-marker");
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert_eq!(status_field(&status, "Cpus_allowed_list"), "1");
    // The init keeps every CPU.
    let init = env.state(&id)["pid"].as_i64().unwrap();
    let status = fs::read_to_string(format!("/proc/{init}/status")).unwrap();
    assert_ne!(status_field(&status, "Cpus_allowed_list"), "1");
}

/// Makes the command's process join a new session keyring holding a `user` key described
/// `secret`, as a daemon or an engine calling the runtime may have.
fn with_secret_keyring(cmd: &mut std::process::Command, secret: &str) {
    use std::os::unix::process::CommandExt;
    let ring = std::ffi::CString::new(format!("{secret}-ring")).unwrap();
    let desc = std::ffi::CString::new(secret).unwrap();
    // SAFETY: only syscalls between fork and exec, on memory made before the fork.
    unsafe {
        cmd.pre_exec(move || {
            const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
            const KEY_SPEC_SESSION_KEYRING: libc::c_long = -3;
            if libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, ring.as_ptr()) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let payload = b"x";
            let r = libc::syscall(
                libc::SYS_add_key,
                c"user".as_ptr(),
                desc.as_ptr(),
                payload.as_ptr(),
                payload.len(),
                KEY_SPEC_SESSION_KEYRING,
            );
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// An exec'd process gets a session keyring of its own, as runc's does: the keys in the
/// caller's session keyring (a daemon's, an engine's, a shell's) are not the container's.
/// A static probe in the container searches its session keyring for the caller's key (the
/// container's /proc/keys is masked, so listing it proves nothing). runc first.
#[test]
fn exec_does_not_get_the_callers_session_keyring() {
    let env = Env::new("exec-keys");
    let secret = format!("warden-secret-{}", std::process::id());
    let dir = host_dir(&env, "probe", &[]);
    let probe = dir.join("key_probe");
    let cc = std::process::Command::new("gcc")
        .args(["-static", "-O", "-o"])
        .arg(&probe)
        // The daemon's tests use the same probe for jobs.
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../daemon/tests/fixtures/key_probe.c"
        ))
        .output()
        .expect("gcc (scripts/deps.sh installs it)");
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    // The check can fail: a process with that keyring finds the key.
    let mut own = std::process::Command::new(&probe);
    own.arg(&secret);
    with_secret_keyring(&mut own, &secret);
    let found = String::from_utf8_lossy(&own.output().unwrap().stdout).to_string();
    assert!(
        found.starts_with("found"),
        "the caller does not find its key: {found}"
    );

    let id = env.new_id();
    let b = env.bundle(&id, |s| {
        s["process"]["args"] = serde_json::json!(["sleep", "60"]);
        s["mounts"].as_array_mut().unwrap().push(serde_json::json!({
            "destination": "/mnt", "type": "bind", "source": dir, "options": ["rbind", "ro"]
        }));
    });
    let bs = b.to_str().unwrap();
    let probe_args = ["exec", id.as_str(), "/mnt/key_probe", secret.as_str()];

    let root = env.dir().join("runc-root");
    let runc = |args: &[&str]| {
        let mut cmd = std::process::Command::new("runc");
        cmd.arg("--root").arg(&root).args(args);
        cmd.stdin(std::process::Stdio::null());
        cmd
    };
    // The container's stdio: not pipes, which output() would wait on until it exits.
    let run = runc(&["run", "-d", "-b", bs, &id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(run.success(), "runc run -d failed");
    let mut exec = runc(&probe_args);
    with_secret_keyring(&mut exec, &secret);
    let out = exec.output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        said.starts_with("search:"),
        "runc's exec: {said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    runc(&["delete", "--force", &id]).output().unwrap();

    env.runc(&["run", "-d", "-b", bs, &id]).ok();
    let out = env
        .spawn_with(&probe_args, |c| with_secret_keyring(c, &secret))
        .wait(CMD_TIMEOUT)
        .ok();
    assert!(
        out.stdout.starts_with("search:"),
        "the exec'd process has the caller's key: {}",
        out.describe()
    );
    env.runc(&["delete", "--force", &id]).ok();
    env.assert_clean(&id);
}
