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
    // Most configs decode as they are: one pass straight into the Spec (about half the work
    // of the checked path below, which makes a JSON tree, decodes parts of it on their own
    // and clones them). A config that does not, or has a version this runtime does not take,
    // goes the checked path, whose errors name the field; only the version is looked at
    // first, so that a config without ociVersion is refused rather than given the default.
    #[derive(serde::Deserialize)]
    struct Version<'a> {
        #[serde(rename = "ociVersion", borrow)]
        version: Option<std::borrow::Cow<'a, str>>,
    }
    let version = serde_json::from_slice::<Version>(data)
        .ok()
        .and_then(|v| v.version);
    if version.is_some_and(|v| check_version(&v).is_ok()) {
        if let Ok(spec) = serde_json::from_slice::<Spec>(data) {
            validate(&spec)?;
            return Ok(spec);
        }
    }
    parse_checked(data)
}

/// [`parse`] the slow way, for the errors: each part decoded on its own, so that what fails
/// is named.
fn parse_checked(data: &[u8]) -> std::result::Result<Spec, String> {
    // Check the version before the full parse, so a config for an unsupported spec version
    // is reported as that, not as whatever field it fails to decode.
    let raw: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| format!("invalid JSON: {e}"))?;
    let version = raw
        .get("ociVersion")
        .and_then(|v| v.as_str())
        .ok_or("ociVersion is missing")?;
    check_version(version)?;
    let mut raw = raw;
    // serde's message for a bad seccomp action or operator does not say where it is.
    if let Some(profile) = raw.get("linux").and_then(|l| l.get("seccomp")) {
        serde_json::from_value::<oci_spec::runtime::LinuxSeccomp>(profile.clone())
            .map_err(|e| format!("invalid config: linux.seccomp: {e}"))?;
    }
    check_linux_fields(&raw)?;
    if let Some(p) = raw.get_mut("process") {
        prepare_process(p).map_err(|e| format!("invalid config: {e}"))?;
    }
    let spec: Spec = serde_json::from_value(raw).map_err(|e| format!("invalid config: {e}"))?;
    validate(&spec)?;
    Ok(spec)
}

/// Decodes each newer `linux` field on its own first, so that a bad value (an unknown
/// personality domain, memory policy mode...) is reported with the field's name, not as
/// serde's bare "unknown variant".
fn check_linux_fields(raw: &serde_json::Value) -> std::result::Result<(), String> {
    use oci_spec::runtime::{LinuxIntelRdt, LinuxMemoryPolicy, LinuxNetDevice, LinuxPersonality};
    use std::collections::HashMap;
    let Some(linux) = raw.get("linux") else {
        return Ok(());
    };
    fn field<T: serde::de::DeserializeOwned>(
        linux: &serde_json::Value,
        key: &str,
    ) -> std::result::Result<(), String> {
        match linux.get(key) {
            Some(v) if !v.is_null() => serde_json::from_value::<T>(v.clone())
                .map(|_| ())
                .map_err(|e| format!("invalid config: linux.{key}: {e}")),
            _ => Ok(()),
        }
    }
    field::<LinuxPersonality>(linux, "personality")?;
    field::<LinuxMemoryPolicy>(linux, "memoryPolicy")?;
    field::<LinuxIntelRdt>(linux, "intelRdt")?;
    field::<HashMap<String, LinuxNetDevice>>(linux, "netDevices")?;
    field::<HashMap<String, oci_spec::runtime::LinuxTimeOffset>>(linux, "timeOffsets")?;
    Ok(())
}

/// Readies a raw `process` object for oci-spec: the scheduler's flags in the runtime spec's
/// names (`SCHED_FLAG_RESET_ON_FORK`...) become oci-spec 0.10's spelling of them, and the
/// scheduler, I/O priority and CPU affinity are decoded on their own first, so an error
/// names the field.
fn prepare_process(p: &mut serde_json::Value) -> std::result::Result<(), String> {
    use crate::process::attrs::SCHED_FLAGS;
    if let Some(flags) = p
        .get_mut("scheduler")
        .and_then(|s| s.get_mut("flags"))
        .and_then(|f| f.as_array_mut())
    {
        for f in flags.iter_mut() {
            let name = f.as_str().unwrap_or_default().to_string();
            let (_, flag, _) = SCHED_FLAGS
                .iter()
                .find(|(n, v, _)| *n == name || serde_json::to_value(v).ok().as_ref() == Some(&*f))
                .ok_or_else(|| format!("process.scheduler.flags: unknown flag {f}"))?;
            *f = serde_json::to_value(flag).expect("flags serialize");
        }
    }
    fn field<T: serde::de::DeserializeOwned>(
        p: &serde_json::Value,
        key: &str,
    ) -> std::result::Result<(), String> {
        match p.get(key) {
            Some(v) if !v.is_null() => serde_json::from_value::<T>(v.clone())
                .map(|_| ())
                .map_err(|e| format!("process.{key}: {e}")),
            _ => Ok(()),
        }
    }
    field::<oci_spec::runtime::Scheduler>(p, "scheduler")?;
    field::<oci_spec::runtime::LinuxIOPriority>(p, "ioPriority")?;
    field::<oci_spec::runtime::ExecCPUAffinity>(p, "execCPUAffinity")?;
    Ok(())
}

/// The `process` of a config.json that create already parsed and checked (the base of an
/// `exec`): only that member is decoded, the rest (the seccomp profile, mounts...) is skipped
/// unread, which makes it about a tenth of [`parse`]'s work.
pub fn parse_config_process(
    data: &[u8],
) -> std::result::Result<Option<oci_spec::runtime::Process>, String> {
    #[derive(serde::Deserialize)]
    struct OnlyProcess {
        #[serde(default)]
        process: Option<serde_json::Value>,
    }
    let only: OnlyProcess =
        serde_json::from_slice(data).map_err(|e| format!("invalid JSON: {e}"))?;
    let Some(mut raw) = only.process.filter(|p| !p.is_null()) else {
        return Ok(None);
    };
    prepare_process(&mut raw).map_err(|e| format!("invalid config: {e}"))?;
    serde_json::from_value(raw)
        .map(Some)
        .map_err(|e| format!("invalid config: process: {e}"))
}

/// Parses and checks a process document (`exec --process FILE`) as the config's own.
pub fn parse_process(data: &[u8]) -> std::result::Result<oci_spec::runtime::Process, String> {
    let mut raw: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| format!("invalid JSON: {e}"))?;
    prepare_process(&mut raw)?;
    let p: oci_spec::runtime::Process =
        serde_json::from_value(raw).map_err(|e| format!("invalid process: {e}"))?;
    validate_process(&p)?;
    Ok(p)
}

/// What of a process can be checked without the kernel: the scheduler, the I/O priority.
pub fn validate_process(p: &oci_spec::runtime::Process) -> std::result::Result<(), String> {
    if let Some(s) = p.scheduler() {
        crate::process::attrs::sched_attr(s)?;
    }
    if let Some(io) = p.io_priority() {
        crate::process::attrs::ioprio_value(io)?;
    }
    if let Some(a) = p.exec_cpu_affinity() {
        if let Some(c) = a.initial() {
            crate::process::attrs::cpu_set(c, "process.execCPUAffinity.initial")?;
        }
        if let Some(c) = a.cpu_affinity_final() {
            crate::process::attrs::cpu_set(c, "process.execCPUAffinity.final")?;
        }
    }
    Ok(())
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
    validate_process(process)?;
    if let Some(linux) = spec.linux() {
        validate_linux_extras(linux)?;
    }
    for m in spec.mounts().iter().flatten() {
        crate::rootfs::idmap::requested(m, spec)?;
        // crun's `idmap=uids=...;gids=...` would otherwise be filesystem data, dropped on
        // a bind mount.
        if let Some(o) = m
            .options()
            .iter()
            .flatten()
            .find(|o| o.starts_with("idmap=") || o.starts_with("ridmap="))
        {
            return Err(format!(
                "mounts: {}: option {o:?} (crun's mapping syntax) is not supported: give the \
                 mount uidMappings and gidMappings",
                m.destination().display()
            ));
        }
        if !m.destination().is_absolute() {
            return Err(format!(
                "mount destination {:?} is not an absolute path",
                m.destination()
            ));
        }
    }
    Ok(())
}

/// What of `linux.resources` is checked before any cgroup is touched (at create and
/// update): `memory.useHierarchy: false`, which no kernel since 5.13 can give (the memory
/// cgroup is always hierarchical) and which would otherwise be dropped.
pub fn check_resources(r: &oci_spec::runtime::LinuxResources) -> std::result::Result<(), String> {
    if r.memory().as_ref().and_then(|m| m.use_hierarchy()) == Some(false) {
        return Err(
            "linux.resources.memory.useHierarchy: false is not possible: the memory \
             cgroup is always hierarchical"
                .into(),
        );
    }
    Ok(())
}

/// Where the kernel has time namespaces (5.6 and later, CONFIG_TIME_NS).
pub fn kernel_has_time_namespaces() -> bool {
    std::path::Path::new("/proc/self/ns/time").exists()
}

/// Where the host has Intel RDT's resctrl filesystem mounted.
pub fn host_has_resctrl() -> bool {
    std::path::Path::new("/sys/fs/resctrl/schemata").exists()
}

/// The newer `linux` fields: personality, memory policy, time offsets, and the ones this
/// runtime refuses by name rather than drop (intelRdt, netDevices).
fn validate_linux_extras(linux: &oci_spec::runtime::Linux) -> std::result::Result<(), String> {
    if let Some(p) = linux.personality() {
        crate::process::attrs::personality_value(p)?;
    }
    if let Some(p) = linux.memory_policy() {
        crate::process::attrs::mempolicy(p)?;
    }
    if let Some(r) = linux.resources() {
        check_resources(r)?;
    }
    if linux.intel_rdt().is_some() {
        return Err(if host_has_resctrl() {
            "linux.intelRdt: Intel RDT (resctrl) is not supported by this runtime".into()
        } else {
            "linux.intelRdt: Intel RDT is not available: the host has no resctrl filesystem \
             mounted at /sys/fs/resctrl"
                .into()
        });
    }
    if let Some(devs) = linux.net_devices().as_ref().filter(|d| !d.is_empty()) {
        let mut names: Vec<&String> = devs.keys().collect();
        names.sort();
        return Err(format!(
            "linux.netDevices: moving host network devices ({}) into the container is not \
             supported by this runtime",
            names
                .iter()
                .map(|n| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let time_ns = linux
        .namespaces()
        .iter()
        .flatten()
        .find(|ns| ns.typ() == LinuxNamespaceType::Time);
    if time_ns.is_some() && !kernel_has_time_namespaces() {
        return Err(
            "linux.namespaces: this kernel has no time namespaces (it needs 5.6 or later with \
             CONFIG_TIME_NS)"
                .into(),
        );
    }
    if let Some(offsets) = linux.time_offsets().as_ref().filter(|o| !o.is_empty()) {
        match time_ns {
            None => {
                return Err("linux.timeOffsets: time offsets need a new time namespace \
                     (linux.namespaces has no \"time\")"
                    .into())
            }
            Some(ns) if ns.path().is_some() => {
                return Err(
                    "linux.timeOffsets: the offsets of a time namespace joined by path cannot \
                     be changed"
                        .into(),
                )
            }
            Some(_) => {}
        }
        let mut keys: Vec<&String> = offsets.keys().collect();
        keys.sort();
        for k in keys {
            if k != "monotonic" && k != "boottime" {
                return Err(format!(
                    "linux.timeOffsets: unknown clock {k:?} (only monotonic and boottime have \
                     offsets)"
                ));
            }
            if offsets[k].nanosecs().unwrap_or(0) >= 1_000_000_000 {
                return Err(format!(
                    "linux.timeOffsets.{k}.nanosecs: {} is not below 1000000000",
                    offsets[k].nanosecs().unwrap_or(0)
                ));
            }
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
    fn the_config_process_alone_is_the_full_parse_s() {
        let data = spec_with(|v| {
            v["process"]["args"] = serde_json::json!(["/bin/sh", "-c", "true"]);
            v["process"]["scheduler"] = serde_json::json!({"policy": "SCHED_OTHER",
                "flags": ["SCHED_FLAG_RESET_ON_FORK"]});
            v["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW"});
        });
        let full = parse(&data).unwrap().process().clone();
        assert_eq!(parse_config_process(&data).unwrap(), full);
        // The one-pass decode and the checked one agree.
        assert_eq!(parse(&data).unwrap(), parse_checked(&data).unwrap());
        let rootless = serde_json::to_vec(&default_spec(Some((1000, 1000)))).unwrap();
        assert_eq!(parse(&rootless).unwrap(), parse_checked(&rootless).unwrap());
        let none = spec_with(|v| {
            v.as_object_mut().unwrap().remove("process");
        });
        assert_eq!(parse_config_process(&none).unwrap(), None);
        let bad = spec_with(|v| v["process"]["scheduler"]["flags"] = serde_json::json!(["X"]));
        let e = parse_config_process(&bad).unwrap_err();
        assert!(e.contains("process.scheduler.flags: unknown flag"), "{e}");
        assert!(parse_config_process(b"{not json").is_err());
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
    fn scheduler_flags_take_the_runtime_specs_names() {
        let names: Vec<&str> = crate::process::attrs::SCHED_FLAGS
            .iter()
            .map(|(n, _, _)| *n)
            .filter(|n| !n.contains("UTIL_CLAMP"))
            .collect();
        let spec = parse(&spec_with(|v| {
            v["process"]["scheduler"] = serde_json::json!({"policy": "SCHED_OTHER", "flags": names})
        }))
        .unwrap();
        let s = spec
            .process()
            .as_ref()
            .unwrap()
            .scheduler()
            .clone()
            .unwrap();
        assert_eq!(crate::process::attrs::sched_attr(&s).unwrap().flags, 0x1f);
        // exec's process documents the same way.
        let p = parse_process(
            br#"{"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0},
                 "scheduler": {"policy": "SCHED_BATCH", "flags": ["SCHED_FLAG_RESET_ON_FORK"]}}"#,
        )
        .unwrap();
        assert_eq!(
            crate::process::attrs::sched_attr(p.scheduler().as_ref().unwrap())
                .unwrap()
                .flags,
            1
        );
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
