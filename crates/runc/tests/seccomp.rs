//! linux.seccomp: the profile's rules, as the container's process meets them in the real
//! kernel; exec'd processes get the same profile; a bad profile fails `create`.

mod common;

use common::*;
use serde_json::{json, Value};

/// A writable /tmp (the shared rootfs is read-only).
fn tmpfs_tmp(s: &mut Value) {
    s["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
}

fn args(s: &mut Value, argv: &[&str]) {
    s["process"]["args"] = json!(argv);
}

/// defaultAction ALLOW, `rules` as the syscalls.
fn allow_but(s: &mut Value, rules: Value) {
    s["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": rules
    });
}

const MKDIR_SCRIPT: &str = "mkdir /tmp/x && echo made; echo data > /tmp/f && cat /tmp/f; ls /tmp";

#[test]
fn errno_rule_denies_one_syscall_and_leaves_the_others() {
    let env = Env::new("seccomp-errno");
    let out = env.run_container(&[], |s| {
        tmpfs_tmp(s);
        args(s, &["sh", "-c", MKDIR_SCRIPT]);
        allow_but(
            s,
            json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]),
        );
    });
    assert_eq!(out.code, 0, "{}", out.describe());
    assert!(
        out.stderr
            .contains("can't create directory '/tmp/x': Operation not permitted"),
        "{}",
        out.describe()
    );
    assert_eq!(out.lines(), ["data", "f"], "{}", out.describe());

    // The same container without the profile makes the directory.
    let out = env
        .run_container(&[], |s| {
            tmpfs_tmp(s);
            args(s, &["sh", "-c", MKDIR_SCRIPT]);
        })
        .ok();
    assert_eq!(
        out.lines(),
        ["made", "data", "f", "x"],
        "{}",
        out.describe()
    );
}

#[test]
fn errno_ret_sets_the_errno() {
    let env = Env::new("seccomp-errnoret");
    let out = env.run_container(&[], |s| {
        tmpfs_tmp(s);
        args(s, &["mkdir", "/tmp/x"]);
        allow_but(
            s,
            json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]),
        );
    });
    assert_eq!(out.code, 1, "{}", out.describe());
    assert!(
        out.stderr.contains("Function not implemented"),
        "{}",
        out.describe()
    );
}

#[test]
fn argument_rules_match_values_and_masks() {
    let env = Env::new("seccomp-args");
    let script = "touch /tmp/f; \
        chmod 755 /tmp/f && echo chmod-755-ok; \
        chmod 4755 /tmp/f || echo chmod-4755-denied; \
        linux64 true && echo linux64-ok; \
        linux32 true || echo linux32-denied; \
        stat -c %a /tmp/f";
    let out = env.run_container(&[], |s| {
        tmpfs_tmp(s);
        args(s, &["sh", "-c", script]);
        allow_but(
            s,
            json!([
                // The setuid bit of chmod's mode (arg 1): SCMP_CMP_MASKED_EQ.
                {"names": ["chmod"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 1, "value": 0o4000, "valueTwo": 0o4000,
                           "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["fchmodat"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 2, "value": 0o4000, "valueTwo": 0o4000,
                           "op": "SCMP_CMP_MASKED_EQ"}]},
                // personality(PER_LINUX32) only: SCMP_CMP_EQ.
                {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}
            ]),
        );
    });
    assert_eq!(
        out.lines(),
        [
            "chmod-755-ok",
            "chmod-4755-denied",
            "linux64-ok",
            "linux32-denied",
            "755"
        ],
        "{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("Operation not permitted"),
        "{}",
        out.describe()
    );
}

#[test]
fn default_errno_with_an_allow_list() {
    let env = Env::new("seccomp-allowlist");
    let allowed = [
        "execve",
        "brk",
        "arch_prctl",
        "set_tid_address",
        "set_robust_list",
        "rseq",
        "prlimit64",
        "mprotect",
        "mmap",
        "munmap",
        "getrandom",
        "readlink",
        "uname",
        "prctl",
        "getuid",
        "geteuid",
        "getgid",
        "getegid",
        "getpid",
        "getppid",
        "newfstatat",
        "fstat",
        "rt_sigaction",
        "rt_sigprocmask",
        "rt_sigreturn",
        "write",
        "exit",
        "exit_group",
    ];
    let out = env.run_container(&[], |s| {
        // chdir is not on the list: `cd` fails, with the default errno.
        args(s, &["sh", "-c", "echo ok; cd / || echo cd-denied"]);
        s["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": allowed, "action": "SCMP_ACT_ALLOW"}]
        });
    });
    assert_eq!(out.code, 0, "{}", out.describe());
    assert_eq!(out.lines(), ["ok", "cd-denied"], "{}", out.describe());
    assert!(
        out.stderr.contains("Operation not permitted"),
        "{}",
        out.describe()
    );
}

fn seccomp_status(out: &Out) -> (String, String) {
    (
        status_field(&out.stdout, "Seccomp").to_string(),
        status_field(&out.stdout, "NoNewPrivs").to_string(),
    )
}

#[test]
fn proc_status_shows_the_filter() {
    let env = Env::new("seccomp-status");
    let cat = ["cat", "/proc/self/status"];
    let deny_mkdir = json!([{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]);

    let out = env.run_ok(&cat);
    assert_eq!(seccomp_status(&out), ("0".into(), "1".into()));

    let out = env
        .run_container(&[], |s| {
            args(s, &cat);
            allow_but(s, deny_mkdir.clone());
        })
        .ok();
    assert_eq!(seccomp_status(&out), ("2".into(), "1".into()));

    // Without noNewPrivileges, as a user with no capabilities: the filter is loaded while
    // the init still has CAP_SYS_ADMIN, before it becomes that user.
    let out = env
        .run_container(&[], |s| {
            args(s, &cat);
            s["process"]["noNewPrivileges"] = false.into();
            s["process"]["user"] = json!({"uid": 1000, "gid": 1000});
            set_caps(s, &[]);
            allow_but(s, deny_mkdir.clone());
        })
        .ok();
    assert_eq!(seccomp_status(&out), ("2".into(), "0".into()));
    assert_eq!(status_field(&out.stdout, "CapEff"), cap_mask(&[]));
}

#[test]
fn exec_gets_the_containers_profile() {
    let env = Env::new("seccomp-exec");
    let id = env.created(|s| {
        tmpfs_tmp(s);
        args(s, &["sleep", "30"]);
        allow_but(
            s,
            json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]),
        );
    });
    env.runc(&["start", &id]).ok();

    let out = env.runc(&["exec", &id, "mkdir", "/tmp/x"]);
    assert_eq!(out.code, 1, "{}", out.describe());
    assert!(
        out.stderr.contains("Function not implemented"),
        "{}",
        out.describe()
    );
    let out = env.runc(&["exec", &id, "cat", "/proc/self/status"]).ok();
    assert_eq!(seccomp_status(&out), ("2".into(), "1".into()));

    // A --process file without noNewPrivileges (podman's exec), as a user: the same
    // profile, loaded before the capabilities go.
    let process = env.dir().join("process.json");
    std::fs::write(
        &process,
        json!({
            "user": {"uid": 1000, "gid": 1000},
            "args": ["sh", "-c", "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; mkdir /tmp/y"],
            "env": ["PATH=/bin"],
            "cwd": "/",
            "noNewPrivileges": false
        })
        .to_string(),
    )
    .unwrap();
    let out = env.runc(&["exec", "--process", process.to_str().unwrap(), &id]);
    assert_eq!(out.code, 1, "{}", out.describe());
    assert_eq!(
        seccomp_status(&out),
        ("2".into(), "0".into()),
        "{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("Function not implemented"),
        "{}",
        out.describe()
    );
    env.runc(&["delete", "--force", &id]).ok();
    env.assert_clean(&id);
}

#[test]
fn bad_profiles_fail_create_and_leave_nothing() {
    let env = Env::new("seccomp-bad");
    let cases = [
        (
            json!({"defaultAction": "SCMP_ACT_BOGUS"}),
            "linux.seccomp: unknown variant `SCMP_ACT_BOGUS`",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_BOGUS"}]}]}),
            "linux.seccomp: unknown variant `SCMP_CMP_BOGUS`",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
            "seccomp: syscall \"mkdir\": argument index 7 with SCMP_CMP_EQ is out of range",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
            "seccomp: syscall \"mkdir\": SCMP_ACT_NOTIFY: seccomp notify is not supported",
        ),
    ];
    for (profile, want) in cases {
        let id = env.new_id();
        let b = env.bundle(&id, |s| s["linux"]["seccomp"] = profile.clone());
        env.create(&id, &b).fails_with(want);
        env.assert_clean(&id);
    }
}

#[test]
fn features_report_seccomp() {
    let env = Env::new("seccomp-features");
    let f: Value = serde_json::from_str(&env.runc(&["features"]).ok().stdout).unwrap();
    let sc = &f["linux"]["seccomp"];
    assert_eq!(sc["enabled"], true, "{f:#}");
    for (key, want) in [
        ("actions", "SCMP_ACT_ERRNO"),
        ("operators", "SCMP_CMP_MASKED_EQ"),
        ("archs", "SCMP_ARCH_X86_64"),
        ("knownFlags", "SECCOMP_FILTER_FLAG_LOG"),
        ("supportedFlags", "SECCOMP_FILTER_FLAG_TSYNC"),
    ] {
        assert!(
            sc[key].as_array().unwrap().iter().any(|v| v == want),
            "{key} should list {want}: {f:#}"
        );
    }
    assert!(
        !sc["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "SCMP_ACT_NOTIFY"),
        "{f:#}"
    );
    assert!(f["annotations"]["io.github.seccomp.libseccomp.version"].is_string());
}
