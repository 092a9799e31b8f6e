//! `update`: new limits for a live container, from runc's flags and from a `--resources`
//! document (containerd sends it on stdin), on either cgroup hierarchy.

mod common;

use std::fs;

use common::*;
use serde_json::json;

fn unified_host() -> bool {
    hierarchy() == Hierarchy::V2
}

/// The container's cgroup file: `v1` (controller, file) on a v1 host, `v2` on a unified one.
fn read(id: &str, v1: (&str, &str), v2: &str) -> String {
    match hierarchy() {
        Hierarchy::V1 => cgroup_file(v1.0, id, v1.1),
        Hierarchy::V2 => cgroup_v2_file(id, v2),
    }
}

#[test]
fn update_changes_the_limits_of_a_running_container() {
    let env = Env::new("update");
    let id = env.created(|s| {
        s["process"]["args"] = json!(["sleep", "30"]);
        s["linux"]["resources"]["memory"] = json!({"limit": 128 << 20});
        s["linux"]["resources"]["pids"] = json!({"limit": 100});
    });
    env.runc(&["start", &id]).ok();
    let memory = || read(&id, ("memory", "memory.limit_in_bytes"), "memory.max");
    let pids = || read(&id, ("pids", "pids.max"), "pids.max");
    assert_eq!(memory(), (128u64 << 20).to_string());

    env.runc(&[
        "update",
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        "--cpu-share",
        "512",
        &id,
    ])
    .ok();
    assert_eq!(memory(), (64u64 << 20).to_string());
    assert_eq!(pids(), "50");
    let cpu = read(&id, ("cpu", "cpu.shares"), "cpu.weight");
    // runc's shares → weight: 1 + ((512 - 2) * 9999) / 262142 = 20.
    assert_eq!(cpu, if unified_host() { "20" } else { "512" });

    // containerd's way: the resources document on stdin. What it leaves out stays.
    let doc = env.dir().join("resources.json");
    fs::write(&doc, json!({"memory": {"limit": 32 << 20}}).to_string()).unwrap();
    let out = env
        .spawn_with(&["update", "--resources", "-", &id], |c| {
            c.stdin(fs::File::open(&doc).unwrap());
        })
        .wait(CMD_TIMEOUT)
        .ok();
    assert!(out.stderr.is_empty(), "{}", out.describe());
    assert_eq!(memory(), (32u64 << 20).to_string());
    assert_eq!(pids(), "50");
    // A flag wins over the document.
    env.runc(&[
        "update",
        "-r",
        doc.to_str().unwrap(),
        "--memory",
        "48m",
        &id,
    ])
    .ok();
    assert_eq!(memory(), (48u64 << 20).to_string());
    // runc's other spelling of the shares flag.
    env.runc(&["update", "--cpu-shares", "1024", &id]).ok();
    // The state keeps the limits in force: the config's with every update folded in.
    let state: serde_json::Value =
        serde_json::from_slice(&fs::read(env.root.join(&id).join("state.json")).unwrap()).unwrap();
    let r = &state["resources"];
    assert_eq!(r["memory"]["limit"], 48 << 20, "{r}");
    assert_eq!(r["pids"]["limit"], 50, "{r}");
    assert_eq!(r["cpu"]["shares"], 1024, "{r}");

    // Bad input names what was wrong and changes nothing.
    env.runc(&["update", "--l3-cache-schema", "L3:0=f", &id])
        .fails_with("Intel RDT");
    env.runc(&["update", "--memory", "12x", &id])
        .fails_with("--memory \"12x\": unknown unit \"x\"");
    fs::write(&doc, "[1, 2]").unwrap();
    env.runc(&["update", "-r", doc.to_str().unwrap(), &id])
        .fails_with("not a linux.resources object");
    assert_eq!(memory(), (48u64 << 20).to_string());
    // runc 1.2's memory.checkBeforeUpdate: a limit below the current usage is refused
    // (without it the kernel would reclaim, or OOM-kill the container); useHierarchy false
    // cannot be given by any kernel since 5.13.
    fs::write(
        &doc,
        json!({"memory": {"limit": 4096, "checkBeforeUpdate": true}}).to_string(),
    )
    .unwrap();
    env.runc(&["update", "-r", doc.to_str().unwrap(), &id])
        .fails_with("linux.resources.memory.checkBeforeUpdate: the new limit 4096 is below the container's current memory usage");
    fs::write(&doc, json!({"memory": {"useHierarchy": false}}).to_string()).unwrap();
    env.runc(&["update", "-r", doc.to_str().unwrap(), &id])
        .fails_with("linux.resources.memory.useHierarchy: false is not possible");
    assert_eq!(memory(), (48u64 << 20).to_string());
    assert_eq!(env.status(&id), "running");

    env.runc(&["kill", &id, "KILL"]).ok();
    env.wait_status(&id, "stopped", CMD_TIMEOUT);
    env.runc(&["update", "--memory", "64m", &id])
        .fails_with("cannot update a stopped container");
    env.runc(&["update", "--memory", "64m", "no-such-container"])
        .fails_with("container does not exist");
    env.runc(&["delete", &id]).ok();
    env.assert_clean(&id);
}

#[test]
fn a_failed_update_puts_back_what_it_had_written() {
    // The limits are written one file at a time, memory before cpu: a period the kernel
    // refuses (below 1 ms) fails the update after the memory limit was written. runc puts
    // back its recorded config then, and so must we: the cgroup keeps the old limit, as the
    // state says.
    let env = Env::new("update-back");
    let id = env.created(|s| {
        s["process"]["args"] = json!(["sleep", "30"]);
        s["linux"]["resources"]["memory"] = json!({"limit": 128 << 20});
    });
    env.runc(&["start", &id]).ok();
    let memory = || read(&id, ("memory", "memory.limit_in_bytes"), "memory.max");
    let err = env
        .runc(&["update", "--memory", "64m", "--cpu-period", "100", &id])
        .fails_with("Invalid argument (os error 22)");
    // The io error is said once, not once by the message and again as its cause.
    assert_eq!(err.matches("(os error 22)").count(), 1, "{err}");
    assert_eq!(memory(), (128u64 << 20).to_string());
    let state: serde_json::Value =
        serde_json::from_slice(&fs::read(env.root.join(&id).join("state.json")).unwrap()).unwrap();
    assert_eq!(state["resources"]["memory"]["limit"], 128 << 20);
    // A good update still works afterwards.
    env.runc(&["update", "--memory", "64m", &id]).ok();
    assert_eq!(memory(), (64u64 << 20).to_string());
    env.runc(&["kill", &id, "KILL"]).ok();
    env.wait_status(&id, "stopped", CMD_TIMEOUT);
    env.runc(&["delete", &id]).ok();
    env.assert_clean(&id);
}
