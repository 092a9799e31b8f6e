//! process.apparmorProfile and `exec --apparmor`: on a host that enforces AppArmor (the v2
//! lane's Debian kernel) a profile the test loads confines the container's process and an
//! exec'd one, and a profile the kernel does not know fails create naming it. On a host
//! without AppArmor (this development host) a profile is ignored, as runc ignores it.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::json;

fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|v| v.trim() == "Y")
}

/// A profile loaded into the kernel for the test's life: everything allowed but reading
/// /etc/hostname (inside the container, as the container sees its paths).
struct Profile {
    name: String,
    file: std::path::PathBuf,
}

impl Profile {
    fn load(env: &Env) -> Profile {
        let name = format!("warden-test-{}", env.new_id());
        let file = env.dir().join("profile");
        std::fs::write(
            &file,
            format!(
                "profile {name} flags=(attach_disconnected,mediate_deleted) {{\n  file,\n  \
                 capability,\n  network,\n  signal,\n  ptrace,\n  mount,\n  umount,\n  \
                 pivot_root,\n  deny /etc/hostname r,\n}}\n"
            ),
        )
        .unwrap();
        let out = Command::new("apparmor_parser")
            .arg("-r")
            .arg(&file)
            .output()
            .expect("run apparmor_parser (package apparmor)");
        assert!(
            out.status.success(),
            "apparmor_parser -r: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Profile { name, file }
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        let _ = Command::new("apparmor_parser")
            .arg("-R")
            .arg(&self.file)
            .output();
    }
}

const SHOW: &str = "cat /proc/self/attr/current 2>/dev/null || echo no-attr; \
                    cat /etc/hostname >/dev/null 2>&1 && echo read || echo denied";

#[test]
fn apparmor_profile_confines_the_process_and_exec() {
    let env = Env::new("apparmor");
    if !apparmor_enabled() {
        // Nothing to apply: the container runs, unconfined, as with runc.
        let out = env
            .run_container(&[], |s| {
                s["process"]["apparmorProfile"] = json!("warden-test-not-loaded");
                s["process"]["args"] = json!(["sh", "-c", SHOW]);
            })
            .ok();
        assert_eq!(out.lines().last(), Some(&"read"), "{}", out.describe());
        eprintln!("no AppArmor on this host: only checked that a profile is ignored");
        return;
    }
    assert!(
        Path::new("/sys/kernel/security/apparmor/profiles").exists(),
        "AppArmor is enabled but securityfs shows no profiles"
    );
    let p = Profile::load(&env);

    // The container's process, confined.
    let out = env
        .run_container(&[], |s| {
            s["process"]["apparmorProfile"] = json!(p.name);
            s["process"]["args"] = json!(["sh", "-c", SHOW]);
        })
        .ok();
    assert_eq!(
        out.lines(),
        [format!("{} (enforce)", p.name).as_str(), "denied"],
        "{}",
        out.describe()
    );

    // An unconfined container, and a process exec'd into it with the profile.
    let id = env.started(&["sleep", "30"]);
    let out = env.runc(&["exec", &id, "sh", "-c", SHOW]).ok();
    assert_eq!(out.lines(), ["unconfined", "read"], "{}", out.describe());
    let out = env
        .runc(&["exec", "--apparmor", &p.name, &id, "sh", "-c", SHOW])
        .ok();
    assert_eq!(
        out.lines(),
        [format!("{} (enforce)", p.name).as_str(), "denied"],
        "{}",
        out.describe()
    );
    env.runc(&["delete", "-f", &id]).ok();

    // A profile the kernel does not know: create fails, naming it, and leaves nothing.
    let id = env.new_id();
    let bundle = env.bundle(&id, |s| {
        s["process"]["apparmorProfile"] = json!("warden-test-never-loaded");
    });
    let err = env
        .create(&id, &bundle)
        .fails_with("AppArmor profile \"warden-test-never-loaded\"");
    assert!(err.contains("apparmor_parser"), "{err}");
    env.assert_clean(&id);
}
