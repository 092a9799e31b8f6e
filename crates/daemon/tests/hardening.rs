//! What confines a job beyond its user: the container's seccomp profile (the built-in one by
//! default), its pids limit, and the masked and read-only paths, seen from inside real jobs,
//! privileged and not.

mod wardend;

use std::path::Path;
use std::process::{Command, Stdio};

use warden_protocol::DestroyRequest;
use wardend::*;

fn field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
        .unwrap_or_default()
}

/// The job's own pids.max (the container has its own cgroup namespace).
const PIDS_MAX: &str =
    "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max";

#[test]
fn every_job_runs_under_the_default_profile_with_a_pids_limit_and_masked_paths() {
    let w = Wardend::start("", "");
    let mut c = w.client();
    let h = create(&mut c);
    for privileged in [false, true] {
        let who = if privileged {
            "privileged"
        } else {
            "unprivileged"
        };
        let (code, out, _) = run_as(&mut c, &h, "cat /proc/self/status", privileged);
        assert_eq!(code, 0);
        assert_eq!(field(&out, "Seccomp:"), "2", "{who}: a filter is loaded");
        assert_eq!(field(&out, "NoNewPrivs:"), "1", "{who}");

        // A user namespace, where the job would be root with every capability.
        let (code, _, err) = run_as(&mut c, &h, "unshare -U -r id", privileged);
        assert_ne!(code, 0, "{who}: unshare -U worked");
        assert!(err.contains("Operation not permitted"), "{who}: {err}");
        // mount, even for root in the container.
        let (code, _, err) = run_as(&mut c, &h, "mount -t tmpfs none /mnt", privileged);
        assert_ne!(code, 0, "{who}: mount worked");
        assert!(
            err.contains("ermission denied") || err.contains("not permitted"),
            "{who}: {err}"
        );
        // Masked and read-only paths, as runc's defaults.
        let (_, out, err) = run_as(
            &mut c,
            &h,
            "stat -c '%t:%T' /proc/keys /proc/timer_list; ls -A /sys/firmware | wc -l",
            privileged,
        );
        // Files masked with /dev/null (1:3), directories with an empty read-only tmpfs.
        assert_eq!(out, "1:3\n1:3\n0\n", "{who}: masked paths: {err}");
        let (code, _, _) = run_as(&mut c, &h, "echo h > /proc/sysrq-trigger", privileged);
        assert_ne!(code, 0, "{who}: /proc/sysrq-trigger is writable");
        // Ordinary work still runs: pipes, fork, a shell's job control, sockets.
        let (code, out, err) = run_as(
            &mut c,
            &h,
            "echo a | tr a b; (sleep 0.1 &) ; wait; nc -l -p 0 -w 1 127.0.0.1 </dev/null; echo ok",
            privileged,
        );
        assert_eq!(code, 0, "{who}: {err}");
        assert!(out.ends_with("ok\n"), "{who}: {out} {err}");

        let (_, out, _) = run_as(&mut c, &h, PIDS_MAX, privileged);
        assert_eq!(out.trim(), "4096", "{who}: the default pids limit");
    }
    c.destroy(DestroyRequest { handle: h }).unwrap();
    w.assert_clean();
}

#[test]
fn a_fork_bomb_is_contained_by_the_pids_limit() {
    let w = Wardend::start("container_pids_limit: 64", "");
    let mut c = w.client();
    let h = create(&mut c);
    let (_, out, _) = run(&mut c, &h, PIDS_MAX);
    assert_eq!(out.trim(), "64");
    // Far more sleeps than the limit: the shell is refused forks and says so.
    let (_, out, err) = run(
        &mut c,
        &h,
        "i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done; echo spawned",
    );
    assert!(
        err.contains("fork") || err.contains("Resource temporarily unavailable"),
        "no fork was refused: {out} {err}"
    );
    // The host is fine and the container goes away with its processes.
    assert!(Command::new("true").status().unwrap().success());
    c.destroy(DestroyRequest { handle: h }).unwrap();
    w.assert_clean();
}

#[test]
fn unconfined_and_unlimited_when_the_operator_says_so() {
    let w = Wardend::start(
        "container_seccomp_profile: unconfined\ncontainer_pids_limit: null",
        "",
    );
    let mut c = w.client();
    let h = create(&mut c);
    let (_, out, _) = run(&mut c, &h, "cat /proc/self/status");
    assert_eq!(field(&out, "Seccomp:"), "0");
    let (_, out, _) = run(&mut c, &h, PIDS_MAX);
    assert_eq!(out.trim(), "max");
    c.destroy(DestroyRequest { handle: h }).unwrap();
    w.assert_clean();
}

#[test]
fn a_profile_that_does_not_compile_stops_the_daemon_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("profile.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_SOMETIMES"}]}"#,
    )
    .unwrap();
    let config = dir.path().join("wardend.yml");
    std::fs::write(
        &config,
        format!(
            "server:\n  container_seccomp_profile: {}\n  container_depot_path: {}\nhealth_check_server:\n  port: 0\n",
            profile.display(),
            dir.path().join("depot").display()
        ),
    )
    .unwrap();
    let out = Command::new(WARDEND)
        .arg("--config")
        .arg(&config)
        .arg("--socket")
        .arg(dir.path().join("w.sock"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "wardend started: {err}");
    assert!(
        err.contains("server.container_seccomp_profile") && err.contains("profile.json"),
        "{err}"
    );
    assert!(!Path::new(&dir.path().join("w.sock")).exists());
}
