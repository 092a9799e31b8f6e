//! The seccomp profile every container gets (`server.container_seccomp_profile`), read and
//! compiled once when the daemon starts, so that a profile that does not parse or compile
//! stops the daemon with the key named, and no container ever runs without the filter asked
//! for.
//!
//! The built-in one (`seccomp.json`) is an allow list in the spirit of Docker's default:
//! ordinary syscalls are allowed; the kernel's administrative and high-risk surfaces (new
//! namespaces through unshare, setns or clone flags, mount and the new mount API, keyctl,
//! bpf, userfaultfd, perf_event_open, io_uring, kexec and modules, clocks, swap, reboot,
//! open_by_handle_at) fail with EPERM; a syscall it does not name fails with ENOSYS, so a
//! program probing a newer syscall (clone3) falls back to the old one.

use std::path::Path;

use serde_json::Value;

use crate::config::SeccompProfile;

const BUILT_IN: &str = include_str!("seccomp.json");

/// The `linux.seccomp` object for every container's bundle, or `None` when unconfined. The
/// compiled program goes into `cache` (a dir emptied here), where every create takes it
/// instead of compiling the profile again.
pub fn load(choice: &SeccompProfile, cache: &Path) -> Result<Option<Value>, String> {
    let _ = std::fs::remove_dir_all(cache);
    std::fs::create_dir_all(cache).map_err(|e| format!("{}: {e}", cache.display()))?;
    let (text, what) = match choice {
        SeccompProfile::Unconfined => return Ok(None),
        SeccompProfile::Default => (BUILT_IN.to_string(), "the built-in profile".to_string()),
        SeccompProfile::File(p) => (
            std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
            p.display().to_string(),
        ),
    };
    let value: Value = serde_json::from_str(&text).map_err(|e| format!("{what}: {e}"))?;
    let profile: oci_spec::runtime::LinuxSeccomp =
        serde_json::from_value(value.clone()).map_err(|e| format!("{what}: {e}"))?;
    let file = cache.join(warden_runtime::security::seccomp::cache_name(&profile));
    warden_runtime::security::seccomp::compile_cached(&profile, Some(&file))
        .map_err(|e| format!("{what}: {e}"))?;
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache dir that lives as long as the test process (leaked on purpose: tiny, in /tmp).
    fn cache() -> std::path::PathBuf {
        tempfile::tempdir().unwrap().keep()
    }

    fn rule_action(profile: &Value, name: &str) -> Option<(String, Option<u64>)> {
        profile["syscalls"].as_array()?.iter().find_map(|r| {
            r["names"].as_array()?.iter().any(|n| n == name).then(|| {
                (
                    r["action"].as_str().unwrap().to_string(),
                    r["errnoRet"].as_u64(),
                )
            })
        })
    }

    #[test]
    fn the_built_in_profile_compiles_and_denies_the_dangerous_syscalls() {
        let p = load(&SeccompProfile::Default, &cache()).unwrap().unwrap();
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(p["defaultErrnoRet"], 38, "unknown syscalls: ENOSYS");
        for name in [
            "unshare",
            "setns",
            "mount",
            "umount2",
            "keyctl",
            "add_key",
            "request_key",
            "bpf",
            "userfaultfd",
            "perf_event_open",
            "kexec_load",
            "init_module",
            "open_by_handle_at",
            "io_uring_setup",
            "pivot_root",
            "reboot",
            "swapon",
        ] {
            assert_eq!(
                rule_action(&p, name),
                Some(("SCMP_ACT_ERRNO".to_string(), Some(1))),
                "{name} fails with EPERM"
            );
        }
        for name in ["read", "execve", "socket", "ptrace", "wait4", "prctl"] {
            assert_eq!(
                rule_action(&p, name).map(|(a, _)| a).as_deref(),
                Some("SCMP_ACT_ALLOW"),
                "{name}"
            );
        }
        // clone only without namespace flags; clone3 (its flags are out of reach) is ENOSYS.
        assert_eq!(rule_action(&p, "clone3"), None);
        let clone = p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["names"] == serde_json::json!(["clone"]))
            .unwrap();
        assert_eq!(clone["args"][0]["value"], 0x7E02_0000u64);
    }

    #[test]
    fn a_bad_profile_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.json");
        std::fs::write(&f, "{not json").unwrap();
        let e = load(&SeccompProfile::File(f.clone()), &dir.path().join("c")).unwrap_err();
        assert!(e.starts_with(&f.display().to_string()), "{e}");
        std::fs::write(
            &f,
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_BOGUS"}]}"#,
        )
        .unwrap();
        assert!(load(&SeccompProfile::File(f.clone()), &dir.path().join("c")).is_err());
        let missing = dir.path().join("missing.json");
        let e = load(
            &SeccompProfile::File(missing.clone()),
            &dir.path().join("c"),
        )
        .unwrap_err();
        assert!(e.contains("missing.json"), "{e}");
        assert_eq!(
            load(&SeccompProfile::Unconfined, &dir.path().join("c")).unwrap(),
            None
        );
    }
}
