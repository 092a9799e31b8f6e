//! `events`: one stats line (`--stats`) in runc's JSON shape, the stream at `--interval`
//! with an `oom` line when the OOM killer strikes, and its end when the container stops.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn events(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event {l:?}: {e}")))
        .collect()
}

#[test]
fn events_stats_prints_runcs_shape() {
    let env = Env::new("events-stats");
    let id = env.created(|s| {
        s["process"]["args"] = json!([
            "sh",
            "-c",
            "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 30"
        ]);
        s["linux"]["resources"]["memory"] = json!({"limit": 64 << 20});
        s["linux"]["resources"]["pids"] = json!({"limit": 50});
    });
    env.runc(&["start", &id]).ok();
    std::thread::sleep(Duration::from_millis(300));
    let out = env.runc(&["events", "--stats", &id]).ok();
    let ev = events(&out.stdout);
    assert_eq!(ev.len(), 1, "{}", out.stdout);
    let e = &ev[0];
    assert_eq!(e["type"], "stats");
    assert_eq!(e["id"], id.as_str());
    let d = &e["data"];
    assert_eq!(d["memory"]["usage"]["limit"], 64 << 20, "{d}");
    assert!(d["memory"]["usage"]["usage"].as_u64().unwrap() > 0, "{d}");
    assert_eq!(d["pids"]["limit"], 50, "{d}");
    assert!(d["pids"]["current"].as_u64().unwrap() >= 1, "{d}");
    assert!(d["cpu"]["usage"]["total"].as_u64().unwrap() > 0, "{d}");
    for k in ["throttling", "usage"] {
        assert!(d["cpu"][k].is_object(), "cpu.{k}: {d}");
    }
    assert!(d["blkio"]["ioServiceBytesRecursive"].is_array(), "{d}");
    assert!(d["hugetlb"].is_object(), "{d}");
    // Only lo in the container's new network namespace, and lo is left out.
    assert_eq!(d["network_interfaces"], json!([]), "{d}");

    let bad = env.runc(&["events", "--interval", "soon", &id]);
    assert!(
        bad.code != 0 && bad.stderr.contains("want a duration such as 5s"),
        "{}",
        bad.describe()
    );
    env.runc(&["kill", &id, "KILL"]).ok();
    env.wait_status(&id, "stopped", CMD_TIMEOUT);
    env.runc(&["events", "--stats", &id])
        .fails_with("container is stopped");
    env.runc(&["delete", &id]).ok();
    env.runc(&["events", "--stats", &id])
        .fails_with("container does not exist");
    env.assert_clean(&id);
}

#[test]
fn events_stream_reports_an_oom_kill_and_ends_with_the_container() {
    let env = Env::new("events-oom");
    // dd's 64 MiB buffer cannot fit in 16 MiB: the OOM killer takes dd; the shell goes on,
    // then exits, and the stream ends with it.
    let id = env.created(|s| {
        s["process"]["args"] = json!([
            "sh",
            "-c",
            "sleep 1; dd if=/dev/zero of=/dev/null bs=64M count=1; sleep 1"
        ]);
        s["linux"]["resources"]["memory"] = json!({"limit": 16 << 20, "swap": 16 << 20});
    });
    let stream = env.spawn(&["events", "--interval", "300ms", &id]);
    env.runc(&["start", &id]).ok();
    let out = stream.wait(Duration::from_secs(20)).ok();
    let ev = events(&out.stdout);
    let stats = ev.iter().filter(|e| e["type"] == "stats").count();
    let ooms: Vec<&Value> = ev.iter().filter(|e| e["type"] == "oom").collect();
    assert!(
        stats >= 3,
        "a stats line every 300ms for about 2s: {}",
        out.stdout
    );
    assert_eq!(ooms.len(), 1, "{}", out.stdout);
    assert_eq!(ooms[0]["id"], id.as_str());
    env.runc(&["delete", &id]).ok();
    env.assert_clean(&id);
}
