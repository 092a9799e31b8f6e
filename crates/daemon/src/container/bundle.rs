//! The OCI bundle of a container: `<dir>/config.json`, runc's default spec folded over a few
//! rules (guardian's bundler does the same): our init as the process, the overlay as the
//! root, the hostname, the network namespace made beforehand, the cgroup, /dev/fuse, bind
//! mounts, the seccomp profile and the pids limit.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::Error;

/// Where the init binary is bound inside every container.
pub const INIT_PATH: &str = "/.warden/init";

pub struct BindMount {
    pub src: PathBuf,
    pub dst: PathBuf,
    pub read_only: bool,
}

pub struct BundleSpec<'a> {
    pub id: &'a str,
    pub rootfs: &'a Path,
    pub netns: &'a Path,
    pub cgroups_path: String,
    pub init: &'a Path,
    pub bind_mounts: &'a [BindMount],
    /// `linux.seccomp`, for the init and every job.
    pub seccomp: Option<&'a Value>,
    /// pids.max of the container's cgroup.
    pub pids_limit: Option<u64>,
    /// The containers' user namespace; `None`: container root is the host's.
    pub userns: Option<crate::config::UserNamespace>,
}

/// The config.json document.
pub fn config(b: &BundleSpec) -> Value {
    // The runtime's default reads the host's cgroup layout from /proc/self/mountinfo, whose
    // size grows with every live container's mounts (5 ms a create at 1,000 containers):
    // made once for the daemon's life, as the layout is.
    static DEFAULT: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    let mut spec = DEFAULT
        .get_or_init(|| warden_runtime::spec::default_spec(None))
        .clone();
    spec["ociVersion"] = json!("1.2.0");
    spec["root"] = json!({"path": b.rootfs, "readonly": false});
    spec["hostname"] = json!(b.id);
    let process = &mut spec["process"];
    process["terminal"] = json!(false);
    process["args"] = json!([INIT_PATH]);
    process["cwd"] = json!("/");
    process["noNewPrivileges"] = json!(true);
    // What a privileged job (root) may do: Docker's default set. Unprivileged jobs run as
    // the container's user with no capabilities at all.
    let caps = json!([
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE"
    ]);
    process["capabilities"] = json!({
        "bounding": caps, "effective": caps, "permitted": caps, "inheritable": [], "ambient": []
    });
    let linux = &mut spec["linux"];
    linux["cgroupsPath"] = json!(b.cgroups_path);
    if let Some(profile) = b.seccomp {
        linux["seccomp"] = profile.clone();
    }
    if let Some(limit) = b.pids_limit {
        linux["resources"]["pids"] = json!({ "limit": limit });
    }
    linux["namespaces"] = json!([
        {"type": "pid"},
        {"type": "ipc"},
        {"type": "uts"},
        {"type": "mount"},
        {"type": "cgroup"},
        {"type": "network", "path": b.netns},
    ]);
    if let Some(ns) = &b.userns {
        // Its own user namespace owns every namespace the container makes; the network
        // namespace, made beforehand by the daemon, stays the host's (so the container's
        // root cannot change its interfaces, addresses or routes).
        linux["namespaces"]
            .as_array_mut()
            .expect("set above")
            .push(json!({"type": "user"}));
        let maps = super::userns::mappings(ns);
        linux["uidMappings"] = json!(maps);
        linux["gidMappings"] = json!(maps);
    }
    // The original's device whitelist has fuse beside the runtime's defaults, so a job can
    // mount a FUSE filesystem where it may mount at all; opening the device is harmless.
    let fuse = json!({
        "path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
        "fileMode": 0o666, "uid": 0, "gid": 0
    });
    if b.userns.is_none() {
        linux["devices"] = json!([fuse]);
    } else {
        // No mknod in a user namespace: the runtime would bind the host's /dev/fuse, whose
        // mode is the host's (0600 on some). The daemon's own node (mode 0666, made at
        // start next to the init) is bound instead, and the device cgroup allows it.
        let mut rules = linux["resources"]["devices"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        rules.push(json!({"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rwm"}));
        linux["resources"]["devices"] = json!(rules);
    }
    let mounts = spec["mounts"]
        .as_array_mut()
        .expect("the default spec has mounts");
    if b.userns.is_some() {
        mounts.push(json!({
            "destination": "/dev/fuse", "type": "bind", "source": super::userns::fuse_node(b.init),
            "options": ["bind", "nosuid", "noexec"]
        }));
    }
    mounts.push(json!({
        "destination": INIT_PATH, "type": "bind", "source": b.init,
        "options": ["bind", "ro", "nosuid", "nodev"]
    }));
    for m in b.bind_mounts {
        mounts.push(json!({
            "destination": m.dst, "type": "bind", "source": m.src,
            "options": ["rbind", if m.read_only { "ro" } else { "rw" }]
        }));
    }
    spec
}

pub fn write(dir: &Path, config: &Value) -> Result<(), Error> {
    let path = dir.join("config.json");
    let text = serde_json::to_vec_pretty(config).expect("a JSON value serializes");
    std::fs::write(&path, text).map_err(|e| Error::io("write", &path, e))
}
