//! OCI hooks: each kind runs at its point of the lifecycle, in order, with the container's
//! state on stdin; a failing or slow createRuntime hook fails create and leaves nothing.

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const SHORT: Duration = Duration::from_secs(10);
const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A hook that appends `<kind> <its stdin>` as one line to `log`.
fn logging_hook(kind: &str, log: &Path) -> Value {
    let script = format!(
        "printf '%s ' {kind} >> {0}; cat >> {0}; echo >> {0}",
        log.display()
    );
    json!({"path": "/bin/sh", "args": ["sh", "-c", script], "env": [PATH]})
}

fn read_log(log: &Path) -> Vec<(String, Value)> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let (kind, json) = l.split_once(' ').unwrap_or((l, ""));
            let v = serde_json::from_str(json)
                .unwrap_or_else(|e| panic!("{kind} hook got bad state JSON ({e}): {json:?}"));
            (kind.to_string(), v)
        })
        .collect()
}

#[test]
fn every_hook_runs_in_order_with_the_state() {
    let env = Env::new("hooks");
    let id = env.new_id();
    // The startContainer hook runs inside the container, where the host dir is /mnt.
    let logdir = host_dir(&env, "hooklog", &[]);
    let log = logdir.join("hooks.log");
    let inside = Path::new("/mnt/hooks.log");
    let bundle = env.bundle(&id, |s| {
        s["process"]["args"] = json!(["sleep", "30"]);
        s["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/mnt", "type": "bind", "source": logdir, "options": ["rbind", "rw"]
        }));
        s["hooks"] = json!({
            "prestart": [logging_hook("prestart", &log)],
            "createRuntime": [logging_hook("createRuntime", &log)],
            "createContainer": [logging_hook("createContainer", &log)],
            "startContainer": [logging_hook("startContainer", inside)],
            "poststart": [logging_hook("poststart", &log)],
            "poststop": [logging_hook("poststop", &log)],
        });
    });
    env.create(&id, &bundle).ok();
    let pid = env.state(&id)["pid"].as_i64().unwrap();
    let kinds =
        |entries: &[(String, Value)]| entries.iter().map(|e| e.0.clone()).collect::<Vec<_>>();
    let after_create = read_log(&log);
    assert_eq!(
        kinds(&after_create),
        ["prestart", "createRuntime", "createContainer"]
    );

    env.runc(&["start", &id]).ok();
    let after_start = read_log(&log);
    assert_eq!(
        kinds(&after_start),
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart"
        ]
    );

    env.runc(&["kill", &id, "KILL"]).ok();
    env.wait_status(&id, "stopped", SHORT);
    env.runc(&["delete", &id]).ok();
    let all = read_log(&log);
    assert_eq!(
        kinds(&all),
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop"
        ]
    );

    let want_status = [
        ("prestart", "creating"),
        ("createRuntime", "creating"),
        ("createContainer", "creating"),
        ("startContainer", "created"),
        ("poststart", "running"),
        ("poststop", "stopped"),
    ];
    for ((kind, st), (want_kind, want)) in all.iter().zip(want_status) {
        assert_eq!(kind, want_kind);
        assert_eq!(st["id"], id.as_str(), "{kind}: {st}");
        assert_eq!(st["status"], want, "{kind}: {st}");
        assert_eq!(st["bundle"], bundle.to_str().unwrap(), "{kind}: {st}");
        assert!(st["ociVersion"].is_string(), "{kind}: {st}");
        if kind != "poststop" {
            assert_eq!(st["pid"], pid, "{kind}: {st}");
        }
    }
    env.assert_clean(&id);
}

#[test]
fn failing_create_runtime_hook_fails_create_and_leaves_nothing() {
    let env = Env::new("hook-fail");
    let id = env.new_id();
    let bundle = env.bundle(&id, |s| {
        s["process"]["args"] = json!(["sh", "-c", format!("sleep 30; : {id}")]);
        s["hooks"] = json!({"createRuntime": [{
            "path": "/bin/sh", "args": ["sh", "-c", "echo hook-said-no >&2; exit 7"], "env": [PATH]
        }]});
    });
    let err = env.create(&id, &bundle).fails_with("exit status 7");
    assert!(
        err.contains("hook-said-no"),
        "the hook's output belongs in the error: {err}"
    );
    env.assert_clean(&id);
    env.runc(&["state", &id])
        .fails_with("container does not exist");
}

/// CLOCK_BOOTTIME in seconds, as /proc/uptime has it (what a shell can read too).
fn uptime() -> f64 {
    let text = fs::read_to_string("/proc/uptime").unwrap();
    text.split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn hook_that_outlives_its_timeout_fails() {
    let env = Env::new("hook-timeout");
    let id = env.new_id();
    // The hook notes when it began (shell builtins only: no exec in between), then runs a
    // child that would take 5 s.
    let began = env.dir().join("hook-began");
    let script = format!(
        "read up rest < /proc/uptime; echo $up > {}; sh -c 'sleep 5; : {id}-inner'; : {id}",
        began.display()
    );
    let bundle = env.bundle(&id, |s| {
        s["process"]["args"] = json!(["sleep", "30"]);
        s["hooks"] = json!({"createRuntime": [{
            "path": "/bin/sh", "args": ["sh", "-c", script], "env": [PATH], "timeout": 1
        }]});
    });
    let t = Instant::now();
    let out = env.create(&id, &bundle);
    let took = t.elapsed();
    let ended = uptime();
    out.fails_with("timed out");
    // The hook's own child (the inner shell, named by the id) went with it.
    assert!(
        wait_until(Duration::from_secs(2), || procs_with(&id).is_empty()),
        "the timed-out hook left processes behind: {:?}",
        procs_with(&id)
    );
    // Timed from the hook's start, not from create's: the rest of create (starting the
    // runtime, the cgroup, the init) is no part of the timeout, and takes seconds on a busy
    // emulated guest (the cgroup v2 lane) where it takes milliseconds here.
    let began: f64 = fs::read_to_string(&began)
        .expect("the hook ran")
        .trim()
        .parse()
        .unwrap();
    let after_hook = ended - began;
    assert!(
        after_hook < 3.0,
        "create ended {after_hook:.2}s after its hook began, with a 1s hook timeout (the hook \
         would end on its own after 5s); create took {took:?}"
    );
    assert!(
        took >= Duration::from_millis(900),
        "create failed after only {took:?}"
    );
    env.assert_clean(&id);
}

#[test]
fn failing_poststart_and_poststop_hooks_are_warnings_and_the_rest_still_run() {
    // The runtime spec: a failing poststart or poststop hook is logged as a warning; the
    // hooks after it run and the container keeps running (or is still deleted).
    let env = Env::new("hook-post");
    let log = env.dir().join("hooks.log");
    let failing = json!({"path": "/bin/sh", "args": ["sh", "-c", "echo broken >&2; exit 3"]});
    let id = env.created(|s| {
        s["process"]["args"] = json!(["sleep", "30"]);
        s["hooks"] = json!({
            "poststart": [failing, logging_hook("poststart", &log)],
            "poststop": [failing, logging_hook("poststop", &log)],
        });
    });
    let start = env.runc(&["start", &id]).ok();
    assert!(
        start.stderr.contains("level=warning") && start.stderr.contains("broken"),
        "the failing poststart hook is a warning: {}",
        start.describe()
    );
    assert_eq!(env.status(&id), "running");
    let delete = env.runc(&["delete", "--force", &id]).ok();
    assert!(
        delete.stderr.contains("level=warning") && delete.stderr.contains("broken"),
        "the failing poststop hook is a warning: {}",
        delete.describe()
    );
    let kinds: Vec<String> = read_log(&log).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        kinds,
        ["poststart", "poststop"],
        "the hooks after the failing ones ran"
    );
    env.assert_clean(&id);
}
