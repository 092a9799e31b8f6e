//! Bundles the runtime-spec allows and runc runs, beyond the harness's default: runc's own
//! `spec` template, and configs that runc or crun accept and a stricter reading refused. Each
//! sits next to the bad input that must stay an error.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use serde_json::{json, Value};

/// runc's `spec` written into `dir` (runc comes from scripts/deps.sh), with the root pointed
/// at the test rootfs, no terminal, and `args`: nothing else of the template changes.
fn runc_template(dir: &Path, args: &[&str]) -> Value {
    let out = Command::new("runc")
        .arg("spec")
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run `runc spec` (scripts/deps.sh installs runc)");
    assert!(
        out.status.success(),
        "runc spec: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.join("config.json");
    let mut spec: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    spec["root"]["path"] = json!(rootfs());
    spec["process"]["terminal"] = json!(false);
    spec["process"]["args"] = json!(args);
    fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    spec
}

#[test]
fn runcs_own_spec_template_runs_as_with_runc() {
    let env = Env::new("runc-template");
    let id = env.new_id();
    let b = env.empty_bundle(&id);
    let spec = runc_template(&b, &["cat", "/proc/self/status"]);
    // The template lists ambient capabilities and no inheritable ones: the kernel cannot
    // raise them (EPERM), and runc carries on without them.
    assert!(spec["process"]["capabilities"]["ambient"].is_array());
    assert!(spec["process"]["capabilities"]["inheritable"].is_null());

    let ours = env.runc(&["run", "-b", b.to_str().unwrap(), &id]).ok();
    assert!(
        ours.stderr.contains(
            "ambient capabilities CAP_AUDIT_WRITE, CAP_KILL, CAP_NET_BIND_SERVICE skipped"
        ),
        "the skipped ambient capabilities are logged:\n{}",
        ours.describe()
    );
    env.assert_clean(&id);

    let runc_root = env.dir().join("runc-root");
    let runc_id = format!("{id}-runc");
    let theirs = Command::new("runc")
        .arg("--root")
        .arg(&runc_root)
        .args(["run", "-b", b.to_str().unwrap(), &runc_id])
        .stdin(Stdio::null())
        .output()
        .expect("run runc");
    assert!(
        theirs.status.success(),
        "runc itself fails the template: {}",
        String::from_utf8_lossy(&theirs.stderr)
    );
    let theirs = String::from_utf8_lossy(&theirs.stdout).into_owned();
    let want = cap_mask(&["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    for k in [
        "CapEff",
        "CapPrm",
        "CapBnd",
        "CapInh",
        "CapAmb",
        "NoNewPrivs",
    ] {
        assert_eq!(
            status_field(&ours.stdout, k),
            status_field(&theirs, k),
            "{k}: warden-runc against runc"
        );
    }
    assert_eq!(status_field(&ours.stdout, "CapEff"), want);
    assert_eq!(status_field(&ours.stdout, "CapAmb"), "0000000000000000");
}

#[test]
fn spec_prints_runcs_template() {
    let env = Env::new("spec-template");
    let ours_dir = env.dir().join("ours");
    let runc_dir = env.dir().join("runc");
    fs::create_dir_all(&ours_dir).unwrap();
    fs::create_dir_all(&runc_dir).unwrap();
    env.runc(&["spec", "-b", ours_dir.to_str().unwrap()]).ok();
    let runc = runc_template(&runc_dir, &["sh"]);
    let ours: Value =
        serde_json::from_slice(&fs::read(ours_dir.join("config.json")).unwrap()).unwrap();
    // Namespaces and capabilities are what tools reading the template build on; the
    // version and hostname name the runtime.
    assert_eq!(
        ours["linux"]["namespaces"], runc["linux"]["namespaces"],
        "namespaces"
    );
    assert_eq!(
        ours["process"]["capabilities"], runc["process"]["capabilities"],
        "capabilities"
    );
    assert_eq!(ours["mounts"], runc["mounts"], "mounts");
    assert_eq!(
        ours["linux"]["maskedPaths"], runc["linux"]["maskedPaths"],
        "maskedPaths"
    );
    assert_eq!(
        ours["linux"]["readonlyPaths"], runc["linux"]["readonlyPaths"],
        "readonlyPaths"
    );
}

#[test]
fn bind_mount_with_filesystem_data_options_is_bound() {
    // The kernel ignores data on MS_BIND; runc and crun accept such a bind. The mount
    // attributes beside it still take effect. (errors.rs keeps `rro`, which we do not
    // implement, an error.)
    let env = Env::new("bind-data");
    let src = env.dir().join("bind-data-src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("hello"), "from the host\n").unwrap();
    let out = env
        .run_container(&[], |s| {
            s["mounts"].as_array_mut().unwrap().push(json!({
                "destination": "/mnt", "type": "bind", "source": src,
                "options": ["bind", "nosuid", "strictatime", "mode=755", "size=1k", "ro"]
            }));
            s["process"]["args"] = json!([
                "sh",
                "-c",
                "cat /mnt/hello; grep ' /mnt ' /proc/self/mountinfo"
            ]);
        })
        .ok();
    let lines = out.lines();
    assert_eq!(lines.first(), Some(&"from the host"), "{}", out.describe());
    let info = parse_mountinfo(&out.stdout);
    let m = info
        .iter()
        .find(|m| m.mount_point == "/mnt")
        .unwrap_or_else(|| panic!("/mnt not mounted:\n{}", out.describe()));
    assert!(m.is_ro(), "{m:?}");
    assert!(m.options.iter().any(|o| o == "nosuid"), "{m:?}");
}

#[test]
fn fifo_in_linux_devices_is_made_without_a_device_rule() {
    // Type `p` is a fifo: mknod makes it, and the device cgroup has nothing to allow. (An
    // explicit `p` rule in resources.devices stays an error.)
    let env = Env::new("dev-fifo");
    let out = env
        .run_container(&[], |s| {
            s["linux"]["devices"] =
                json!([{"path": "/dev/myfifo", "type": "p", "fileMode": 0o640}]);
            s["process"]["args"] = json!(["sh", "-c", "stat -c '%F %a' /dev/myfifo"]);
        })
        .ok();
    assert_eq!(out.lines(), ["fifo 640"], "{}", out.describe());
}

#[test]
fn unbindable_root_propagation_is_applied_after_the_root_is_bound() {
    // `/` can only be made unbindable once the rootfs is bound onto itself; crun does it
    // in that order, runc fails the bind with EINVAL.
    let env = Env::new("propagation-unbindable");
    for p in ["unbindable", "runbindable"] {
        let out = env
            .run_container(&[], |s| {
                s["linux"]["rootfsPropagation"] = json!(p);
                s["process"]["args"] = json!(["cat", "/proc/self/mountinfo"]);
            })
            .ok();
        let root = out
            .stdout
            .lines()
            .find(|l| l.split(' ').nth(4) == Some("/"))
            .unwrap_or_else(|| panic!("no / in {}", out.stdout));
        assert!(root.contains(" unbindable "), "{p}: {root}");
    }
}
