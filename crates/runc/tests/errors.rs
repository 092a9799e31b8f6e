//! Bad input and wrong-state commands: each fails with runc's message and leaves nothing
//! behind (no state dir, no cgroup, no process, no mount).

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::json;

const SHORT: Duration = Duration::from_secs(10);

/// A process whose command line carries the id, so a leftover one can be found.
fn marked(s: &mut serde_json::Value, id: &str) {
    s["process"]["args"] = json!(["sh", "-c", format!("sleep 30; : {id}")]);
}

/// `create` must fail with `want` on stderr and leave nothing behind.
#[track_caller]
fn create_fails_cleanly(env: &Env, id: &str, bundle: &Path, want: &str) -> String {
    let err = env.create(id, bundle).fails_with(want);
    env.assert_clean(id);
    env.runc(&["state", id])
        .fails_with("container does not exist");
    let listed = env.runc(&["list", "-q"]).ok().stdout;
    assert!(!listed.contains(id), "list shows the failed {id}: {listed}");
    err
}

fn config_path(bundle: &Path) -> String {
    bundle.join("config.json").display().to_string()
}

#[test]
fn missing_config_json() {
    let env = Env::new("no-config");
    let id = env.new_id();
    let b = env.empty_bundle(&id);
    create_fails_cleanly(
        &env,
        &id,
        &b,
        &format!("JSON specification file {} not found", config_path(&b)),
    );
}

#[test]
fn malformed_config_json() {
    let env = Env::new("bad-json");
    let id = env.new_id();
    let b = env.bundle_raw(&id, b"{\"ociVersion\": \"1.2.0\", \"process\": ");
    let err = create_fails_cleanly(&env, &id, &b, &config_path(&b));
    assert!(err.to_lowercase().contains("json"), "{err}");
}

#[test]
fn unsupported_oci_version() {
    let env = Env::new("bad-version");
    let id = env.new_id();
    let b = env.bundle(&id, |s| s["ociVersion"] = "2.0.0".into());
    create_fails_cleanly(
        &env,
        &id,
        &b,
        &format!("{}: unsupported spec version \"2.0.0\"", config_path(&b)),
    );
}

#[test]
fn rootfs_that_does_not_exist() {
    let env = Env::new("no-rootfs");
    let id = env.new_id();
    let missing = env.dir().join("no-such-rootfs");
    let b = env.bundle(&id, |s| s["root"]["path"] = json!(missing));
    create_fails_cleanly(
        &env,
        &id,
        &b,
        &format!(
            "invalid configuration: rootfs ({}) does not exist",
            missing.display()
        ),
    );
}

#[test]
fn bind_mount_source_missing() {
    let env = Env::new("bind-missing");
    let id = env.new_id();
    let missing = env.dir().join("missing-bind-source");
    let b = env.bundle(&id, |s| {
        marked(s, &id);
        s["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/mnt", "type": "bind", "source": missing, "options": ["rbind", "ro"]
        }));
    });
    create_fails_cleanly(&env, &id, &b, &missing.display().to_string());
    assert!(
        !missing.exists(),
        "the runtime created the missing bind source"
    );
}

#[test]
fn unknown_capability() {
    let env = Env::new("bad-cap");
    let id = env.new_id();
    let b = env.bundle(&id, |s| {
        marked(s, &id);
        s["process"]["capabilities"]["bounding"]
            .as_array_mut()
            .unwrap()
            .push("CAP_NO_SUCH_THING".into());
    });
    create_fails_cleanly(&env, &id, &b, "CAP_NO_SUCH_THING");
}

#[test]
fn program_not_found() {
    let env = Env::new("no-program");
    let id = env.new_id();
    let b = env.bundle(&id, |s| {
        s["process"]["args"] = json!(["/no/such/program", &id])
    });
    create_fails_cleanly(&env, &id, &b, "/no/such/program");
}

#[test]
fn unknown_mount_type_fails_in_init() {
    let env = Env::new("bad-mount");
    let id = env.new_id();
    let b = env.bundle(&id, |s| {
        marked(s, &id);
        s["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/mnt", "type": "no-such-fs", "source": "none"
        }));
    });
    create_fails_cleanly(&env, &id, &b, "/mnt");
}

#[test]
fn id_that_exists_already() {
    let env = Env::new("dup-id");
    let id = env.created(|s| s["process"]["args"] = json!(["sleep", "30"]));
    let st = env.state(&id);
    let pid = st["pid"].as_i64().unwrap() as i32;
    let other = env.dir().join("other-bundle");
    fs::create_dir(&other).unwrap();
    fs::copy(
        env.dir().join("bundles").join(&id).join("config.json"),
        other.join("config.json"),
    )
    .unwrap();
    env.create(&id, &other)
        .fails_with("container with given ID already exists");
    env.runc(&["run", "-b", other.to_str().unwrap(), &id])
        .fails_with("container with given ID already exists");
    // The first container is untouched: same state, same init, same cgroups.
    let again = env.state(&id);
    assert_eq!(again["status"], "created", "{again:#}");
    assert_eq!(again["pid"], pid);
    assert_eq!(again["bundle"], st["bundle"]);
    assert!(pid_alive(pid));
    for (c, d) in container_cgroup_dirs(&id) {
        assert!(d.is_dir(), "the failed create removed {c} cgroup of {id}");
    }
    env.runc(&["start", &id]).ok();
    assert_eq!(env.status(&id), "running");
}

#[test]
fn id_with_a_slash_or_dots() {
    let env = Env::new("bad-id");
    let id = env.new_id();
    let b = env.bundle(&id, |s| marked(s, &id));
    let bad = format!("{id}/x");
    env.create(&bad, &b)
        .fails_with(&format!("invalid container ID format: \"{bad}\""));
    for bad in ["..", "."] {
        env.create(bad, &b)
            .fails_with(&format!("invalid container ID format: \"{bad}\""));
    }
    env.runc(&["state", &bad])
        .fails_with("invalid container ID format");
    env.assert_clean(&id);
    // The state root holds nothing, not even a dir for the would-be parent.
    let entries: Vec<_> = fs::read_dir(&env.root)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(entries.is_empty(), "state root has {entries:?}");
}

#[test]
fn start_twice() {
    let env = Env::new("start-twice");
    let id = env.started(&["sleep", "30"]);
    env.runc(&["start", &id])
        .fails_with("cannot start an already running container");
    assert_eq!(env.status(&id), "running");
}

#[test]
fn start_a_stopped_container() {
    let env = Env::new("start-stopped");
    let id = env.started(&["true"]);
    env.wait_status(&id, "stopped", SHORT);
    env.runc(&["start", &id])
        .fails_with("cannot start a container that has stopped");
}

#[test]
fn delete_running_without_force() {
    let env = Env::new("delete-running");
    let id = env.started(&["sleep", "30"]);
    let pid = env.state(&id)["pid"].as_i64().unwrap() as i32;
    env.runc(&["delete", &id]).fails_with(&format!(
        "cannot delete container {id} that is not stopped: running"
    ));
    assert_eq!(env.status(&id), "running");
    assert!(pid_alive(pid));
    assert!(env.root.join(&id).is_dir());
    let memory = match hierarchy() {
        Hierarchy::V1 => cgroup_dir("memory", &id),
        Hierarchy::V2 => cgroup_v2_dir(&id),
    };
    assert!(memory.is_dir(), "{} is gone", memory.display());
}

#[test]
fn delete_a_created_container_kills_its_init() {
    // runc deletes a created (never started) container without --force.
    let env = Env::new("delete-created");
    let id = env.new_id();
    let b = env.bundle(&id, |s| marked(s, &id));
    env.create(&id, &b).ok();
    let pid = env.state(&id)["pid"].as_i64().unwrap() as i32;
    env.runc(&["delete", &id]).ok();
    assert!(
        wait_until(SHORT, || !pid_alive(pid)),
        "init {pid} survived delete"
    );
    env.assert_clean(&id);
}

#[test]
fn kill_a_stopped_container() {
    let env = Env::new("kill-stopped");
    let id = env.started(&["true"]);
    env.wait_status(&id, "stopped", SHORT);
    env.runc(&["kill", &id, "KILL"])
        .fails_with("container not running");
    env.runc(&["delete", &id]).ok();
    env.assert_clean(&id);
}

#[test]
fn commands_on_a_container_that_does_not_exist() {
    let env = Env::new("no-such");
    let id = env.new_id();
    for cmd in [
        vec!["state", &id],
        vec!["start", &id],
        vec!["kill", &id, "KILL"],
        vec!["delete", &id],
        vec!["pause", &id],
        vec!["resume", &id],
        vec!["ps", &id],
    ] {
        env.runc(&cmd).fails_with("container does not exist");
    }
    // runc: delete --force of a missing container succeeds.
    env.runc(&["delete", "--force", &id]).ok();
}

#[test]
fn bind_mount_option_we_do_not_implement_is_refused() {
    // `rro` (recursive read-only) dropped silently would leave the mount writable.
    let env = Env::new("bind-rro");
    let id = env.new_id();
    let src = env.dir().join("rro-src");
    fs::create_dir_all(&src).unwrap();
    let b = env.bundle(&id, |s| {
        marked(s, &id);
        s["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/mnt", "type": "bind", "source": src, "options": ["rbind", "rro"]
        }));
    });
    create_fails_cleanly(
        &env,
        &id,
        &b,
        "mount /mnt: option \"rro\" is not supported on bind mounts",
    );
}

#[test]
fn device_path_outside_dev_is_refused() {
    let env = Env::new("dev-escape");
    let id = env.new_id();
    let b = env.bundle(&id, |s| {
        marked(s, &id);
        s["linux"]["devices"] = json!([{
            "path": "/dev/../etc/passwd", "type": "c", "major": 1, "minor": 3
        }]);
    });
    create_fails_cleanly(&env, &id, &b, "device /dev/../etc/passwd is not under /dev");
}
