//! Loading and checking a bundle's config.json, and the default spec `warden-runc spec`
//! writes. Pure: no syscalls beyond reading files, so its tests run without root.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Error, Result};

pub const CONFIG_FILE: &str = "config.json";

/// A loaded, checked bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub spec: Spec,
    /// The root filesystem, absolute (a relative `root.path` is relative to the bundle).
    pub rootfs: PathBuf,
}

impl Bundle {
    pub fn load(dir: &Path) -> Result<Bundle> {
        let dir = std::path::absolute(dir).map_err(|e| Error::io("resolve", dir, e))?;
        let config_path = dir.join(CONFIG_FILE);
        let data = match std::fs::read(&config_path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::SpecNotFound(config_path))
            }
            Err(e) => return Err(Error::io("read", config_path, e)),
        };
        let spec = parse(&data).map_err(|msg| Error::Spec {
            path: config_path.clone(),
            msg,
        })?;
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| Error::Config("root must be specified".into()))?;
        let rootfs = dir.join(root.path());
        match std::fs::metadata(&rootfs) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::Config(format!(
                    "rootfs ({}) is not a directory",
                    rootfs.display()
                )))
            }
            Err(_) => {
                return Err(Error::Config(format!(
                    "rootfs ({}) does not exist",
                    rootfs.display()
                )))
            }
        }
        Ok(Bundle {
            dir,
            config_path,
            spec,
            rootfs,
        })
    }
}

/// Parses and checks a config.json. The error is a sentence naming what is wrong.
pub fn parse(data: &[u8]) -> std::result::Result<Spec, String> {
    // Check the version before the full parse, so a config for an unsupported spec version
    // is reported as that, not as whatever field it fails to decode.
    let raw: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| format!("invalid JSON: {e}"))?;
    let version = raw
        .get("ociVersion")
        .and_then(|v| v.as_str())
        .ok_or("ociVersion is missing")?;
    check_version(version)?;
    // serde's message for a bad seccomp action or operator does not say where it is.
    if let Some(profile) = raw.get("linux").and_then(|l| l.get("seccomp")) {
        serde_json::from_value::<oci_spec::runtime::LinuxSeccomp>(profile.clone())
            .map_err(|e| format!("invalid config: linux.seccomp: {e}"))?;
    }
    let spec: Spec = serde_json::from_value(raw).map_err(|e| format!("invalid config: {e}"))?;
    validate(&spec)?;
    Ok(spec)
}

/// We implement runtime-spec 1.0.0 to 1.3.0 and accept any 1.x: minor versions only add
/// fields, and unknown fields are ignored.
pub fn check_version(version: &str) -> std::result::Result<(), String> {
    let core = version.split(['-', '+']).next().unwrap_or("");
    let mut parts = core.split('.');
    let major = parts.next().and_then(|p| p.parse::<u64>().ok());
    let rest_ok = parts.all(|p| p.parse::<u64>().is_ok());
    match major {
        Some(1) if rest_ok => Ok(()),
        _ => Err(format!(
            "unsupported spec version {version:?}: this runtime implements 1.x"
        )),
    }
}

fn validate(spec: &Spec) -> std::result::Result<(), String> {
    let process = spec.process().as_ref().ok_or("process must be specified")?;
    match process.args() {
        Some(args) if !args.is_empty() => {}
        _ => return Err("process.args must not be empty".into()),
    }
    if !process.cwd().is_absolute() {
        return Err(format!(
            "process.cwd {:?} is not an absolute path",
            process.cwd()
        ));
    }
    if let Some(linux) = spec.linux() {
        let mut seen = Vec::new();
        let mut has_user = false;
        for ns in linux.namespaces().iter().flatten() {
            if seen.contains(&ns.typ()) {
                return Err(format!("namespace {} is listed twice", ns.typ()));
            }
            seen.push(ns.typ());
            has_user |= ns.typ() == LinuxNamespaceType::User;
            if let Some(p) = ns.path() {
                if !p.is_absolute() {
                    return Err(format!("namespace {} path {p:?} is not absolute", ns.typ()));
                }
            }
        }
        let has_maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
            || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
        if has_maps && !has_user {
            return Err("uid/gid mappings are given but there is no user namespace".into());
        }
        let new_user = linux
            .namespaces()
            .iter()
            .flatten()
            .any(|ns| ns.typ() == LinuxNamespaceType::User && ns.path().is_none());
        if new_user && !has_maps {
            return Err("a new user namespace needs uidMappings and gidMappings".into());
        }
        let has = |t| seen.contains(&t);
        if spec.hostname().as_ref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts)
        {
            return Err("unable to set hostname without a private UTS namespace".into());
        }
        if spec.domainname().as_ref().is_some_and(|h| !h.is_empty())
            && !has(LinuxNamespaceType::Uts)
        {
            return Err("unable to set domainname without a private UTS namespace".into());
        }
    }
    if let Some(linux) = spec.linux() {
        let new_ns = |t: LinuxNamespaceType| {
            linux
                .namespaces()
                .iter()
                .flatten()
                .any(|ns| ns.typ() == t && ns.path().is_none())
        };
        let joined_ns = |t: LinuxNamespaceType| {
            linux
                .namespaces()
                .iter()
                .flatten()
                .any(|ns| ns.typ() == t && ns.path().is_some())
        };
        for key in linux.sysctl().iter().flatten().map(|(k, _)| k) {
            check_sysctl(key, &new_ns, &joined_ns)?;
        }
        // SELinux is not implemented: a label asked for on a host that enforces it must not
        // be dropped silently. Without the LSM on the host there is nothing to apply (runc
        // does the same).
        if linux.mount_label().as_ref().is_some_and(|l| !l.is_empty())
            && std::path::Path::new("/sys/fs/selinux/enforce").exists()
        {
            return Err("linux.mountLabel: SELinux is not supported by this runtime".into());
        }
    }
    if let Some(p) = spec.process() {
        if p.selinux_label().as_ref().is_some_and(|l| !l.is_empty())
            && std::path::Path::new("/sys/fs/selinux/enforce").exists()
        {
            return Err("process.selinuxLabel: SELinux is not supported by this runtime".into());
        }
    }
    for m in spec.mounts().iter().flatten() {
        if !m.destination().is_absolute() {
            return Err(format!(
                "mount destination {:?} is not an absolute path",
                m.destination()
            ));
        }
    }
    Ok(())
}

/// A sysctl may only be set where it belongs to a namespace of the container's own (runc's
/// rule): writing any other would change the host.
fn check_sysctl(
    key: &str,
    new_ns: &dyn Fn(LinuxNamespaceType) -> bool,
    joined_ns: &dyn Fn(LinuxNamespaceType) -> bool,
) -> std::result::Result<(), String> {
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let own = |t| new_ns(t) || joined_ns(t);
    let ok = if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        own(LinuxNamespaceType::Ipc)
    } else if key.starts_with("net.") {
        own(LinuxNamespaceType::Network)
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        own(LinuxNamespaceType::Uts)
    } else {
        return Err(format!(
            "sysctl {key:?} is not namespaced: setting it would change the host"
        ));
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "sysctl {key:?} is not allowed: the container does not have its own namespace for it"
        ))
    }
}

/// The config.json `spec` writes: runc's default template, a busybox-friendly shell
/// container, with the same namespaces and capability sets (ambient listed, inheritable not)
/// as runc 1.1's, because tools and test suites build on it: a cgroup namespace only on a
/// cgroup v2 host, as runc's. With `rootless`, a user namespace mapping the caller's uid and
/// gid to root.
pub fn default_spec(rootless: Option<(u32, u32)>) -> serde_json::Value {
    let mut spec = serde_json::json!({
        "ociVersion": crate::state::OCI_VERSION,
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "ambient": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "warden",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    });
    if matches!(
        crate::cgroups::detect(),
        Ok(crate::cgroups::CgroupVersion::V2)
    ) {
        spec["linux"]["namespaces"]
            .as_array_mut()
            .expect("listed above")
            .push(serde_json::json!({"type": "cgroup"}));
    }
    if let Some((uid, gid)) = rootless {
        let linux = &mut spec["linux"];
        linux["uidMappings"] = serde_json::json!([{"containerID": 0, "hostID": uid, "size": 1}]);
        linux["gidMappings"] = serde_json::json!([{"containerID": 0, "hostID": gid, "size": 1}]);
        linux["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|ns| ns["type"] != "network");
        linux["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": "user"}));
        linux.as_object_mut().unwrap().remove("resources");
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with(f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut v = default_spec(None);
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn default_spec_parses() {
        parse(&spec_with(|_| {})).unwrap();
        parse(&serde_json::to_vec(&default_spec(Some((1000, 1000)))).unwrap()).unwrap();
    }

    #[test]
    fn versions() {
        for good in [
            "1.0.0",
            "1.0.2-dev",
            "1.1.0",
            "1.2.1",
            "1.3.0",
            "1.9.0",
            "1.0.0-rc5",
        ] {
            check_version(good).unwrap();
        }
        for bad in ["0.6.0", "2.0.0", "", "x", "1.a"] {
            assert!(check_version(bad).is_err(), "{bad}");
        }
        let e = parse(&spec_with(|v| v["ociVersion"] = "2.0.0".into())).unwrap_err();
        assert!(e.contains("unsupported spec version \"2.0.0\""), "{e}");
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"{not json".to_vec(), "invalid JSON"),
            (
                spec_with(|v| {
                    v.as_object_mut().unwrap().remove("ociVersion");
                }),
                "ociVersion is missing",
            ),
            (
                spec_with(|v| {
                    v.as_object_mut().unwrap().remove("process");
                }),
                "process must be specified",
            ),
            (
                spec_with(|v| v["process"]["args"] = serde_json::json!([])),
                "process.args must not be empty",
            ),
            (
                spec_with(|v| v["process"]["cwd"] = "rel".into()),
                "not an absolute path",
            ),
            (
                spec_with(|v| v["process"]["capabilities"]["bounding"][0] = "CAP_BOGUS".into()),
                "CAP_BOGUS",
            ),
            (
                spec_with(|v| v["linux"]["namespaces"][1] = serde_json::json!({"type": "pid"})),
                "listed twice",
            ),
            (
                spec_with(|v| v["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}])),
                "private UTS namespace",
            ),
            (
                spec_with(|v| v["linux"]["namespaces"][0] = serde_json::json!({"type": "user"})),
                "uidMappings",
            ),
            (
                spec_with(|v| {
                    v["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_BOGUS"})
                }),
                "linux.seccomp: unknown variant `SCMP_ACT_BOGUS`",
            ),
        ];
        for (data, want) in cases {
            let e = parse(&data).unwrap_err();
            assert!(e.contains(want), "{e:?} should mention {want:?}");
        }
    }

    #[test]
    fn bundle_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Bundle::load(dir.path()),
            Err(Error::SpecNotFound(_))
        ));
        std::fs::write(dir.path().join(CONFIG_FILE), spec_with(|_| {})).unwrap();
        let e = Bundle::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("rootfs") && e.contains("does not exist"), "{e}");
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        let b = Bundle::load(dir.path()).unwrap();
        assert_eq!(b.rootfs, dir.path().join("rootfs"));
    }
}
