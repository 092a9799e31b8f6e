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

/// Whether IFF_UP (0x1) is set in a `/sys/class/net/<if>/flags` text.
fn flags_up(flags: &str) -> bool {
    let f = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16)
        .unwrap_or_else(|e| panic!("flags {flags:?}: {e}"));
    f & 0x1 != 0
}

#[test]
fn a_new_network_namespace_has_its_loopback_up() {
    // runc brings `lo` up in a network namespace it creates; engines count on it (`--network
    // none` containers still talk to themselves over 127.0.0.1).
    let env = Env::new("netns-lo");
    let out = env.run_ok(&[
        "sh",
        "-c",
        "cat /sys/class/net/lo/flags; ls /sys/class/net; \
         (echo over-lo | timeout 5 nc -l -p 5555 &); \
         for i in 1 2 3 4 5 6 7 8 9 10; do nc 127.0.0.1 5555 </dev/null && break; sleep 0.1; done",
    ]);
    let lines = out.lines();
    assert!(flags_up(lines[0]), "{}", out.describe());
    // Only lo: the namespace is new, not the host's.
    assert_eq!(lines.get(1), Some(&"lo"), "{}", out.describe());
    assert_eq!(lines.get(2), Some(&"over-lo"), "{}", out.describe());
}

#[test]
fn a_new_network_namespace_in_a_user_namespace_has_its_loopback_up() {
    let env = Env::new("netns-lo-userns");
    let out = env
        .run_container(&[], |s| {
            s["process"]["args"] = json!(["cat", "/sys/class/net/lo/flags"]);
            let ns = s["linux"]["namespaces"].as_array_mut().unwrap();
            ns.push(json!({"type": "user"}));
            s["linux"]["uidMappings"] =
                json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            s["linux"]["gidMappings"] =
                json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        })
        .ok();
    assert!(flags_up(&out.stdout), "{}", out.describe());
}

#[test]
fn a_joined_network_namespace_is_left_as_it_is() {
    // The runtime only sets up the loopback of a namespace it creates: one given by path
    // belongs to whoever made it (here: a namespace whose lo is down, and stays down).
    let env = Env::new("netns-lo-joined");
    let holder = env.started(&["sleep", "30"]);
    let pid = env.state(&holder)["pid"].as_i64().unwrap();
    let ns = format!("/proc/{pid}/ns/net");
    let down = std::process::Command::new("nsenter")
        .arg(format!("--net={ns}"))
        .args(["ip", "link", "set", "lo", "down"])
        .status()
        .unwrap();
    assert!(
        down.success(),
        "nsenter --net={ns} ip link set lo down: {down}"
    );
    let out = env
        .run_container(&[], |s| {
            s["process"]["args"] = json!(["cat", "/sys/class/net/lo/flags"]);
            for n in s["linux"]["namespaces"].as_array_mut().unwrap() {
                if n["type"] == "network" {
                    n["path"] = json!(ns);
                }
            }
        })
        .ok();
    assert!(!flags_up(&out.stdout), "{}", out.describe());
    env.runc(&["delete", "--force", &holder]).ok();
    env.assert_clean(&holder);
}

#[test]
fn a_program_that_is_not_executable_fails_create_with_permission_denied() {
    // runc's wording, which engines turn into exit codes: Docker reports 126 for "permission
    // denied" (found, cannot be run) and 127 for "no such file or directory".
    let env = Env::new("not-executable");
    let id = env.new_id();
    let b = env.bundle(&id, |s| s["process"]["args"] = json!(["/etc/passwd"]));
    env.create(&id, &b)
        .fails_with(r#"exec: "/etc/passwd": permission denied"#);
    env.assert_clean(&id);
    let id = env.new_id();
    let b = env.bundle(&id, |s| s["process"]["args"] = json!(["/no/such/program"]));
    env.create(&id, &b).fails_with(
        r#"exec: "/no/such/program": stat /no/such/program: no such file or directory"#,
    );
    env.assert_clean(&id);
}
