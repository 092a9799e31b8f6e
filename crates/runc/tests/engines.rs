//! What container engines (Docker, podman) put in the bundles they hand to their runtime,
//! and what they expect of the container it makes, on real bundles: the block I/O weight
//! Docker always sets, a new network namespace's loopback.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use serde_json::json;

/// A block device of this host (not a loop device when there is another), as (major, minor).
fn some_block_device() -> (i64, i64) {
    let mut names: Vec<String> = fs::read_dir("/sys/block")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort_by_key(|n| n.starts_with("loop"));
    let name = names.first().expect("no block device in /sys/block");
    let dev = fs::read_to_string(format!("/sys/block/{name}/dev")).unwrap();
    let (a, b) = dev.trim().split_once(':').unwrap();
    (a.parse().unwrap(), b.parse().unwrap())
}

/// The blkio weight file this host's v1 blkio hierarchy has, if any (CFQ's blkio.weight or
/// BFQ's blkio.bfq.weight; neither with the mq-deadline/none schedulers).
fn host_blkio_weight_file() -> Option<&'static str> {
    ["blkio.weight", "blkio.bfq.weight"]
        .into_iter()
        .find(|f| Path::new("/sys/fs/cgroup/blkio").join(f).exists())
}

fn warnings(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("level=warning"))
        .collect()
}

#[test]
fn block_io_weight_of_zero_means_not_set() {
    // Docker's bundles always carry `"blockIO": {"weight": 0}` when --blkio-weight is not
    // given: create must neither fail nor warn over it.
    let env = Env::new("blkio-zero");
    let id = env.new_id();
    let b = env.bundle(&id, |s| {
        s["process"]["args"] = json!(["true"]);
        s["linux"]["resources"]["blockIO"] = json!({
            "weight": 0,
            "leafWeight": 0,
            "weightDevice": [{"major": 8, "minor": 0, "weight": 0, "leafWeight": 0}],
        });
    });
    let out = env.create(&id, &b).ok();
    assert!(warnings(&out.stderr).is_empty(), "{}", out.describe());
    env.runc(&["delete", "--force", &id]).ok();
    env.assert_clean(&id);
}

#[test]
fn block_io_weight_the_host_cannot_apply_is_skipped_with_a_warning() {
    let env = Env::new("blkio-weight");
    let (major, minor) = some_block_device();
    let id = env.new_id();
    let b = env.bundle(&id, |s| {
        s["process"]["args"] = json!(["true"]);
        s["linux"]["resources"]["blockIO"] = json!({
            "weight": 500,
            "leafWeight": 300,
            "weightDevice": [{"major": major, "minor": minor, "weight": 200}],
            "throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": 1048576}],
        });
    });
    let out = env.create(&id, &b).ok();
    match host_blkio_weight_file() {
        Some(f) => assert_eq!(cgroup_file("blkio", &id, f), "500"),
        None => {
            let warned = warnings(&out.stderr);
            assert!(
                warned
                    .iter()
                    .any(|l| l.contains("blockIO weight") && l.contains("blkio.bfq.weight")),
                "no warning about the weight:\n{}",
                out.describe()
            );
            assert!(
                warned.iter().any(|l| l.contains("blockIO weightDevice")),
                "no warning about weightDevice:\n{}",
                out.describe()
            );
        }
    }
    // What the host can apply still is.
    assert_eq!(
        cgroup_file("blkio", &id, "blkio.throttle.read_bps_device"),
        format!("{major}:{minor} 1048576")
    );
    env.runc(&["delete", "--force", &id]).ok();
    env.assert_clean(&id);
}

#[test]
fn block_io_throttle_on_a_device_that_does_not_exist_still_fails_create() {
    // Only weights are best-effort: a throttle the kernel refuses is still an error.
    let env = Env::new("blkio-bad");
    let id = env.new_id();
    let b = env.bundle(&id, |s| {
        s["process"]["args"] = json!(["true"]);
        s["linux"]["resources"]["blockIO"] = json!({
            "weight": 0,
            "throttleReadBpsDevice": [{"major": 4095, "minor": 4095, "rate": 1048576}],
        });
    });
    env.create(&id, &b)
        .fails_with("blkio.throttle.read_bps_device");
    env.assert_clean(&id);
}
