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

#[test]
fn bad_values_of_the_newer_fields_are_refused_naming_them() {
    let env = Env::new("bad-newer-fields");
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|s| s["linux"]["personality"] = json!({"domain": "LINUX64"})),
            "linux.personality: unknown variant `LINUX64`",
        ),
        (
            Box::new(|s| {
                s["linux"]["personality"] = json!({"domain": "LINUX", "flags": ["BOGUS"]})
            }),
            "linux.personality.flags: unknown flag \"BOGUS\"",
        ),
        (
            Box::new(|s| s["process"]["scheduler"] = json!({"policy": "SCHED_BOGUS"})),
            "process.scheduler: unknown variant `SCHED_BOGUS`",
        ),
        (
            Box::new(|s| s["process"]["scheduler"] = json!({"policy": "SCHED_OTHER", "nice": 20})),
            "process.scheduler.nice: 20 is outside -20..19",
        ),
        (
            Box::new(|s| {
                s["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "priority": 5})
            }),
            "process.scheduler.priority: only SCHED_FIFO and SCHED_RR take a priority",
        ),
        (
            Box::new(|s| s["process"]["scheduler"] = json!({"policy": "SCHED_RR"})),
            "process.scheduler.priority: SCHED_RR needs a priority in 1..99",
        ),
        (
            Box::new(|s| {
                s["process"]["scheduler"] = json!({"policy": "SCHED_OTHER", "runtime": 1000})
            }),
            "process.scheduler: runtime, deadline and period are for SCHED_DEADLINE only",
        ),
        (
            Box::new(|s| {
                s["process"]["scheduler"] =
                    json!({"policy": "SCHED_DEADLINE", "runtime": 2_000_000, "deadline": 1_000_000})
            }),
            "process.scheduler.deadline: 1000000 is less than the runtime 2000000",
        ),
        (
            Box::new(|s| {
                s["process"]["scheduler"] =
                    json!({"policy": "SCHED_OTHER", "flags": ["SCHED_FLAG_BOGUS"]})
            }),
            "process.scheduler.flags: unknown flag \"SCHED_FLAG_BOGUS\"",
        ),
        (
            Box::new(|s| {
                s["process"]["scheduler"] =
                    json!({"policy": "SCHED_OTHER", "flags": ["SCHED_FLAG_UTIL_CLAMP_MAX"]})
            }),
            "process.scheduler.flags: SCHED_FLAG_UTIL_CLAMP_MAX needs a clamp value",
        ),
        (
            Box::new(|s| {
                s["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 8})
            }),
            "process.ioPriority.priority: 8 is outside 0..7",
        ),
        (
            Box::new(|s| {
                s["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_X", "priority": 0})
            }),
            "process.ioPriority: unknown variant `IOPRIO_CLASS_X`",
        ),
        (
            Box::new(|s| {
                s["process"]["execCPUAffinity"] = json!({"final": "0-x"})
            }),
            "process.execCPUAffinity",
        ),
        (
            Box::new(|s| s["linux"]["memoryPolicy"] = json!({"mode": "MPOL_BOGUS"})),
            "linux.memoryPolicy: unknown variant `MPOL_BOGUS`",
        ),
        (
            Box::new(|s| s["linux"]["memoryPolicy"] = json!({"mode": "MPOL_BIND"})),
            "linux.memoryPolicy.nodes: MPOL_BIND needs nodes",
        ),
        (
            Box::new(|s| {
                s["linux"]["memoryPolicy"] = json!({"mode": "MPOL_BIND", "nodes": "1-0"})
            }),
            "linux.memoryPolicy.nodes: \"1-0\" is not a list of NUMA nodes",
        ),
        (
            Box::new(|s| {
                s["linux"]["timeOffsets"] = json!({"monotonic": {"secs": 10}});
            }),
            "linux.timeOffsets: time offsets need a new time namespace",
        ),
        (
            Box::new(|s| {
                s["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "time"}));
                s["linux"]["timeOffsets"] = json!({"realtime": {"secs": 10}});
            }),
            "linux.timeOffsets: unknown clock \"realtime\"",
        ),
        (
            Box::new(|s| {
                s["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "time"}));
                s["linux"]["timeOffsets"] = json!({"boottime": {"secs": 1, "nanosecs": 1_000_000_000u32}});
            }),
            "linux.timeOffsets.boottime.nanosecs: 1000000000 is not below 1000000000",
        ),
        (
            Box::new(|s| {
                s["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "time", "path": "/proc/1/ns/time"}));
                s["linux"]["timeOffsets"] = json!({"boottime": {"secs": 1}});
            }),
            "linux.timeOffsets: the offsets of a time namespace joined by path cannot be changed",
        ),
        (
            Box::new(|s| s["linux"]["resources"]["memory"] = json!({"useHierarchy": false})),
            "linux.resources.memory.useHierarchy: false is not possible",
        ),
        (
            Box::new(|s| s["linux"]["netDevices"] = json!({"eth9": {"name": "eth0"}})),
            "linux.netDevices: moving host network devices (eth9) into the container is not supported",
        ),
    ];
    for (edit, want) in cases {
        let id = env.new_id();
        let b = env.bundle(&id, |s| {
            marked(s, &id);
            edit(s);
        });
        // The config check refuses each before anything exists: one command per case
        // (`create_fails_cleanly`'s state and list add nothing here and slow the v2 lane).
        env.create(&id, &b).fails_with(want);
        env.assert_clean(&id);
    }
}

#[test]
fn intel_rdt_is_refused_naming_the_field() {
    let env = Env::new("intel-rdt");
    let id = env.new_id();
    let b = env.bundle(&id, |s| {
        marked(s, &id);
        s["linux"]["intelRdt"] = json!({"closID": "warden", "l3CacheSchema": "L3:0=f"});
    });
    let resctrl = std::path::Path::new("/sys/fs/resctrl/schemata").exists();
    if !resctrl {
        // runc 1.1.5 refuses the same bundle on a host without resctrl.
        let runc = std::process::Command::new("runc")
            .arg("--root")
            .arg(env.dir().join("runc-root"))
            .args(["run", "-b", b.to_str().unwrap(), &format!("{id}-runc")])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run runc");
        assert!(!runc.status.success());
        let err = String::from_utf8_lossy(&runc.stderr);
        assert!(err.contains("Intel RDT/CAT is not enabled"), "runc: {err}");
    }
    let want = if resctrl {
        "linux.intelRdt: Intel RDT (resctrl) is not supported by this runtime"
    } else {
        "linux.intelRdt: Intel RDT is not available: the host has no resctrl filesystem mounted at /sys/fs/resctrl"
    };
    create_fails_cleanly(&env, &id, &b, want);
}

#[test]
fn exec_with_a_bad_process_scheduler_is_refused_and_changes_nothing() {
    let env = Env::new("exec-bad-sched");
    let id = env.started(&["sleep", "30"]);
    let pf = env.dir().join("bad-process.json");
    for (field, want) in [
        (
            json!({"scheduler": {"policy": "SCHED_IDLE", "nice": -21}}),
            "process.scheduler.nice: -21 is outside -20..19",
        ),
        (
            json!({"ioPriority": {"class": "IOPRIO_CLASS_IDLE", "priority": -1}}),
            "process.ioPriority.priority: -1 is outside 0..7",
        ),
    ] {
        let mut p = json!({"args": ["sh", "-c", "sleep 30; : bad-sched-exec"], "cwd": "/",
                           "user": {"uid": 0, "gid": 0}});
        for (k, v) in field.as_object().unwrap() {
            p[k] = v.clone();
        }
        fs::write(&pf, p.to_string()).unwrap();
        env.runc(&["exec", "-d", "--process", pf.to_str().unwrap(), &id])
            .fails_with(want);
        assert!(procs_with("bad-sched-exec").is_empty());
    }
    assert_eq!(env.status(&id), "running");
}

#[test]
fn time_offsets_the_kernel_refuses_fail_create_cleanly() {
    if !std::path::Path::new("/proc/self/ns/time").exists() {
        eprintln!("skipped: no time namespaces in this kernel");
        return;
    }
    // A monotonic clock sent below zero: the kernel refuses the offset (ERANGE).
    let env = Env::new("timens-range");
    let id = env.new_id();
    let b = env.bundle(&id, |s| {
        marked(s, &id);
        s["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "time"}));
        s["linux"]["timeOffsets"] = json!({"monotonic": {"secs": -1_000_000_000i64}});
    });
    create_fails_cleanly(
        &env,
        &id,
        &b,
        "linux.timeOffsets: write /proc/self/timens_offsets (monotonic -1000000000 0)",
    );
}
