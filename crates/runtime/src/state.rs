//! A container's persisted state: `<root>/<id>/state.json`, written atomically (temp file +
//! rename) so a concurrent reader sees the old or the new file, never half of one.
//!
//! The status is not stored but derived each time from the facts (runc does the same): the
//! init is gone, or its pid now belongs to another process, → stopped; the exec fifo still
//! exists → created; the freezer says frozen → paused; else running.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

pub const STATE_FILE: &str = "state.json";
pub const EXEC_FIFO: &str = "exec.fifo";
/// The OCI runtime-spec version our `state` output reports.
pub const OCI_VERSION: &str = "1.2.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }

    /// `start` only runs a container whose init waits on the exec fifo. The messages are
    /// runc's.
    pub fn check_start(self) -> Result<()> {
        match self {
            Status::Created => Ok(()),
            Status::Stopped => Err(Error::State(
                "cannot start a container that has stopped".into(),
            )),
            Status::Running => Err(Error::State(
                "cannot start an already running container".into(),
            )),
            other => Err(Error::State(format!(
                "cannot start a container in the {} state",
                other.as_str()
            ))),
        }
    }

    pub fn check_kill(self) -> Result<()> {
        match self {
            Status::Stopped => Err(Error::State("container not running".into())),
            _ => Ok(()),
        }
    }

    pub fn check_delete(self, id: &str, force: bool) -> Result<()> {
        match self {
            Status::Stopped | Status::Created => Ok(()),
            _ if force => Ok(()),
            other => Err(Error::State(format!(
                "cannot delete container {id} that is not stopped: {}",
                other.as_str()
            ))),
        }
    }

    pub fn check_pause(self) -> Result<()> {
        match self {
            Status::Running | Status::Created => Ok(()),
            Status::Paused => Err(Error::State("container already paused".into())),
            _ => Err(Error::State("container not running".into())),
        }
    }

    pub fn check_resume(self) -> Result<()> {
        match self {
            Status::Paused => Ok(()),
            _ => Err(Error::State("container not paused".into())),
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A hook as the state keeps it, for the hooks that run after `create` has exited
/// (poststart in `start`, poststop in `delete`).
pub type Hooks = oci_spec::runtime::Hooks;

/// Everything a later command needs to act on a container that an earlier one created.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub id: String,
    /// The init's pid in the runtime's pid namespace.
    pub pid: i32,
    /// The init's start time (clock ticks since boot, /proc/<pid>/stat field 22).
    pub start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339, UTC, nanoseconds: what `runc list --format json` prints.
    pub created: String,
    pub owner: String,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// Where the container's cgroups are, per controller ("" for the v2 unified hierarchy).
    #[serde(default)]
    pub cgroup_paths: BTreeMap<String, PathBuf>,
    /// The cgroup had other processes when the container joined it: delete leaves it (and
    /// them) alone, removing only what is empty.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cgroup_shared: bool,
    /// `--systemd-cgroup` on a systemd host: the transient unit systemd made the cgroup as
    /// (`update` sets its properties, `delete` stops it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd_unit: Option<String>,
    /// Set when the container has no mount namespace of its own: it mounts into the host's,
    /// and delete unmounts what it added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_mounts: Option<HostMounts>,
    /// The limits in force: the config's `linux.resources` with every `update` folded in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<oci_spec::runtime::LinuxResources>,
    #[serde(default)]
    pub hooks: Option<Hooks>,
    /// Namespaces the container has, as paths that `exec` can join (/proc/<pid>/ns/<type>).
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub config_path: PathBuf,
    /// The config's `linux.seccomp`, which every `exec`'d process gets too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
    /// What the init's fds 0-2 were once it was set up (readlinks of /proc/<pid>/fd/N:
    /// `pipe:[123]`, `/dev/null`...): a checkpoint records them, and a restore puts its own
    /// stdio in place of those pipes (runc's externalDescriptors).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_descriptors: Vec<String>,
    /// The config's `linux.personality`, which every `exec`'d process gets too (as runc's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personality: Option<oci_spec::runtime::LinuxPersonality>,
    /// Created with runc's `--no-new-keyring`: the container shares its creator's session
    /// keyring on purpose, and its `exec`s share their caller's. Otherwise (the default, and
    /// every state written before this field) each exec'd process gets a session keyring of
    /// its own, named after the container, as runc's do.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared_keyring: bool,
}

/// The mounts a container without its own mount namespace found under its rootfs, so that
/// what it mounts into the host's namespace can be taken back and those left.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostMounts {
    /// The rootfs as the kernel names it (symlinks resolved).
    pub rootfs: PathBuf,
    /// Ids of the mounts at or below it before the create.
    pub before: std::collections::BTreeSet<u64>,
}

impl HostMounts {
    pub fn take_back(&self) {
        crate::rootfs::unmount_new(&self.rootfs, &self.before);
    }
}

impl State {
    pub fn dir(root: &Path, id: &str) -> PathBuf {
        root.join(id)
    }

    pub fn load(root: &Path, id: &str) -> Result<State> {
        validate_id(id)?;
        let path = Self::dir(root, id).join(STATE_FILE);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotExist(id.to_string()))
            }
            Err(e) => return Err(Error::io("read", path, e)),
        };
        serde_json::from_slice(&data).map_err(|e| Error::Spec {
            path,
            msg: format!("corrupt state: {e}"),
        })
    }

    /// Writes the state atomically: a temp file in the same dir, renamed over (not fsync'd:
    /// no container outlives a host crash).
    pub fn save(&self, root: &Path) -> Result<()> {
        let dir = Self::dir(root, &self.id);
        let tmp = dir.join(".state.json.tmp");
        let data = serde_json::to_vec(self).expect("state serializes");
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .ctx("create", &tmp)?;
        f.write_all(&data).ctx("write", &tmp)?;
        fs::rename(&tmp, dir.join(STATE_FILE)).ctx("rename", &tmp)
    }

    pub fn exec_fifo(&self, root: &Path) -> PathBuf {
        Self::dir(root, &self.id).join(EXEC_FIFO)
    }

    /// The OCI state document: what `state` prints and what hooks read on stdin.
    pub fn oci(&self, status: Status) -> serde_json::Value {
        let mut v = serde_json::json!({
            "ociVersion": OCI_VERSION,
            "id": self.id,
            "status": status.as_str(),
            "bundle": self.bundle,
        });
        if status != Status::Stopped {
            v["pid"] = self.pid.into();
        } else {
            v["pid"] = 0.into();
        }
        if !self.annotations.is_empty() {
            v["annotations"] = serde_json::to_value(&self.annotations).unwrap();
        }
        v
    }
}

/// Makes the state root (mode 0711, like runc's) if it is missing.
pub fn ensure_root(root: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(root)
        .ctx("mkdir", root)
}

/// runc's rule: letters, digits, `_ + - .`, and not `.` or `..`; so an id is always one
/// safe path component.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 1024
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId(id.to_string()))
    }
}

/// Now as RFC 3339 in UTC with nanoseconds, e.g. `2026-11-24T06:20:31.123456789Z`.
pub fn rfc3339_now() -> String {
    rfc3339(SystemTime::now())
}

pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, dd) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day); Howard Hinnant's
/// well-known algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ids() {
        for good in ["a", "abc-123_x.y+z", "A1"] {
            validate_id(good).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "a b", "ü", "../x", "a\0b"] {
            assert!(
                matches!(validate_id(bad), Err(Error::InvalidId(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let t = UNIX_EPOCH + Duration::new(1_795_508_431, 5);
        assert_eq!(rfc3339(t), "2026-11-24T08:20:31.000000005Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&rfc3339(leap)[..10], "2000-02-29");
    }

    #[test]
    fn state_checks_use_runc_wording() {
        assert_eq!(
            Status::Running
                .check_delete("c1", false)
                .unwrap_err()
                .to_string(),
            "cannot delete container c1 that is not stopped: running"
        );
        Status::Running.check_delete("c1", true).unwrap();
        assert_eq!(
            Status::Stopped.check_start().unwrap_err().to_string(),
            "cannot start a container that has stopped"
        );
        assert_eq!(
            Status::Stopped.check_kill().unwrap_err().to_string(),
            "container not running"
        );
    }

    #[test]
    fn save_and_load_round_trip() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("c1")).unwrap();
        let s = State {
            id: "c1".into(),
            pid: 42,
            start_time: 7,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: rfc3339_now(),
            owner: String::new(),
            annotations: HashMap::from([("k".into(), "v".into())]),
            cgroup_paths: BTreeMap::new(),
            systemd_unit: None,
            cgroup_shared: true,
            host_mounts: None,
            resources: None,
            hooks: None,
            namespaces: vec![],
            config_path: "/b/config.json".into(),
            seccomp: None,
            external_descriptors: vec![],
            personality: None,
            shared_keyring: false,
        };
        s.save(root.path()).unwrap();
        let back = State::load(root.path(), "c1").unwrap();
        assert_eq!(back.pid, 42);
        assert!(back.cgroup_shared);
        assert_eq!(back.oci(Status::Running)["annotations"]["k"], "v");
        assert!(matches!(
            State::load(root.path(), "nope"),
            Err(Error::NotExist(_))
        ));
    }
}
