//! Control groups: one [`Manager`] trait, two drivers.
//!
//! - [`V1Manager`] drives the per-controller hierarchies of cgroup v1 (`cpu`, `memory`,
//!   `freezer`... each its own mount, possibly co-mounted like `cpu,cpuacct`). On a hybrid host
//!   (v1 controllers plus a cgroup2 mount such as `/sys/fs/cgroup/unified`) it also makes and
//!   joins the container's cgroup in the cgroup2 hierarchy, as runc does, under the key `""`.
//! - [`V2Manager`] drives the unified cgroup2 hierarchy. It has no devices controller: device
//!   rules become an eBPF program attached to the container's cgroup (`devices_bpf`), with
//!   the v1 driver's semantics (nothing allowed unless a rule allows it; the last matching
//!   rule decides).
//!
//! Which one a host gets is decided by what it mounts ([`detect`], [`Hierarchies::version`]):
//! any v1 hierarchy with a real controller makes the host v1 (a cgroup2 mount next to it is the
//! hybrid layout, not v2); only a host whose controllers all live in cgroup2 is v2. Mount
//! points come from /proc/self/mountinfo, never from a hard-coded `/sys/fs/cgroup/<name>`.
//!
//! # Where a container's cgroup goes (runc's cgroupfs driver)
//! - an absolute `cgroupsPath` is relative to the root of each hierarchy;
//! - a relative one is placed under the calling process's own cgroup in each hierarchy
//!   (/proc/self/cgroup), and may not climb out of it with `..`;
//! - no `cgroupsPath` means the relative path `<container id>`;
//! - runc's systemd syntax `slice:prefix:name` is accepted and mapped to the plain path the
//!   systemd driver would have used (`system.slice:docker:abc` → `/system.slice/docker-abc.scope`,
//!   `a-b.slice:p:n` → `/a.slice/a-b.slice/p-n.scope`, an empty slice means `system.slice`).
//!   Without `--systemd-cgroup` (or with it on a host that systemd does not manage) warden
//!   does not talk to systemd: the cgroup is made with mkdir like any other, so systemd does
//!   not know about the unit. See [`CgroupPath`]. With it, on a systemd host, the unit is a
//!   transient scope systemd makes (see [`systemd`]).
//!
//! # Saved state
//! [`Manager::paths`] gives the container's cgroup directory per controller (`""` for the
//! cgroup2 hierarchy); [`from_paths`] rebuilds the same manager from that map in a later
//! process (another `warden-runc` command, a restarted daemon).
//!
//! # Not done here
//! - v2 device rules given again (an `update` with `linux.resources.devices`) add a second
//!   program next to the first; both must allow, so an update narrows the rules but cannot
//!   widen them (runc replaces the old program). `create` attaches one.
//! - Kernel memory limits (`linux.resources.memory.kernel`) are ignored, as the kernel removed
//!   them (5.16+); they are logged at debug level.
//! - v1 device rules are applied by writing `a` to `devices.deny` and then each rule in order;
//!   runc computes a minimal diff instead so that running processes never see a moment of
//!   deny-all during `update`. Updating device rules of a running container here can make an
//!   open() that races the update fail.
//!
//! # Tests against a directory tree
//! [`Hierarchies`] can describe mounts under any directory, so the drivers run against a
//! tempdir. A directory that is not on a cgroup filesystem (checked with statfs) stands in for
//! the kernel: a file written for the first time is created, a new directory gets an empty
//! `cgroup.procs`, and removing a directory removes the files in it.

mod devices_bpf;
mod files;
mod mounts;
mod path;
mod stats;
pub mod systemd;
mod v1;
mod v2;

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

pub use mounts::{
    cgroup_mountinfo, parse_mountinfo, parse_proc_cgroup, CgroupMount, Hierarchies, MountKind,
    ProcCgroup,
};
pub use path::{expand_slice, CgroupPath, SystemdUnit};
pub use stats::{
    BlkioEntry, BlkioStats, CpuStats, CpuUsage, HugetlbStats, MemoryEntry, MemoryStats, PidsStats,
    Stats, Throttling,
};
pub use v1::V1Manager;
pub use v2::{blkio_weight_to_io_weight, shares_to_weight, V2Manager};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which cgroup layout a host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CgroupVersion {
    /// Per-controller hierarchies (possibly with a cgroup2 mount beside them: hybrid).
    V1,
    /// The unified hierarchy holds the controllers.
    V2,
}

impl fmt::Display for CgroupVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CgroupVersion::V1 => "v1",
            CgroupVersion::V2 => "v2",
        })
    }
}

/// The freezer's view of a cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FreezerState {
    Thawed,
    /// Asked to freeze; some tasks are not frozen yet.
    Freezing,
    Frozen,
}

impl fmt::Display for FreezerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FreezerState::Thawed => "THAWED",
            FreezerState::Freezing => "FREEZING",
            FreezerState::Frozen => "FROZEN",
        })
    }
}

/// Errors of this module. Every variant that touched the filesystem names the path, and a
/// failed write names the value written; the errno is in the `io::Error` source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no cgroup filesystem is mounted (per /proc/self/mountinfo)")]
    NoCgroupFs,
    #[error("cgroup v1 controller {controller} is not mounted (needed for {needed_for})")]
    NotMounted {
        controller: String,
        needed_for: String,
    },
    #[error("invalid cgroups path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
    #[error("invalid {field}: {reason}")]
    InvalidResource { field: String, reason: String },
    #[error("{what} is not supported with cgroup {version}: {reason}")]
    Unsupported {
        what: String,
        version: CgroupVersion,
        reason: String,
    },
    #[error("read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("write {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("create cgroup {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("remove cgroup {path}: {source}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("parse {path}: unexpected content {content:?}")]
    Parse { path: PathBuf, content: String },
    #[error(
        "remove cgroup {path}: still busy after {tries} tries over {waited:?} \
         (pids left: {pids:?})"
    )]
    Busy {
        path: PathBuf,
        tries: u32,
        waited: Duration,
        pids: Vec<i32>,
    },
    #[error("cgroup {path}: refusing to {op}: {reason}")]
    Refused {
        path: PathBuf,
        op: &'static str,
        reason: String,
    },
    #[error("cgroup {path}: freezer did not reach {want} within {waited:?} (it is {got})")]
    FreezeTimeout {
        path: PathBuf,
        want: FreezerState,
        got: FreezerState,
        waited: Duration,
    },
    #[error("systemd: {0}")]
    Systemd(String),
    #[error("saved cgroup paths are not usable: {0}")]
    BadPaths(String),
}

impl Error {
    /// The errno behind the error, when a system call failed.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Read { source, .. }
            | Error::Write { source, .. }
            | Error::Create { source, .. }
            | Error::Remove { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// A container's cgroup, in whichever hierarchies the host has.
///
/// Every method is safe to call from a process other than the one that created the cgroup
/// (after [`from_paths`]).
pub trait Manager: Send + Sync + fmt::Debug {
    fn version(&self) -> CgroupVersion;

    /// Makes the cgroup directories (and missing parents) in every hierarchy. Existing ones are
    /// kept (joining a cgroup that exists is allowed). v1: a cpuset made here gets its parent's
    /// cpus and mems so that tasks can join it. v2: enables every available controller in the
    /// parents' `cgroup.subtree_control`.
    fn create(&self) -> Result<()>;

    /// Moves a process (all its threads) into the cgroup in every hierarchy.
    fn add_task(&self, pid: i32) -> Result<()>;

    /// Writes the limits. Fields that are `None` are left as they are, so this is also
    /// `update`.
    fn apply(&self, resources: &LinuxResources) -> Result<()>;

    /// Every pid in the cgroup and its descendants, sorted.
    fn procs(&self) -> Result<Vec<i32>>;

    /// Freezes every task and waits (bounded) until the kernel says the cgroup is frozen.
    fn freeze(&self) -> Result<()>;

    /// Thaws and waits (bounded) until the kernel says the cgroup is thawed.
    fn thaw(&self) -> Result<()>;

    fn freezer_state(&self) -> Result<FreezerState>;

    fn is_frozen(&self) -> Result<bool> {
        Ok(self.freezer_state()? == FreezerState::Frozen)
    }

    /// Usage counters and limits. Counters of controllers the host lacks are zero.
    fn stats(&self) -> Result<Stats>;

    /// Removes the container's cgroup and its descendants, deepest first, in every hierarchy.
    /// Members that keep a directory busy are killed (SIGKILL, after a thaw) and the removal
    /// retried, about 50 times over about a second, then it gives up with [`Error::Busy`].
    /// Directories already gone are fine. Parents are never removed, nor a hierarchy's root,
    /// nor a cgroup holding the calling process.
    fn destroy(&self) -> Result<()>;

    /// The cgroup directory per controller: `cpu`, `memory`, `name=systemd`...; `""` is the
    /// cgroup2 hierarchy (the only key on v2).
    fn paths(&self) -> BTreeMap<String, PathBuf>;
}

/// The layout of this host, from /proc/self/mountinfo.
pub fn detect() -> Result<CgroupVersion> {
    Hierarchies::from_system()?.version()
}

/// The manager for a container, from the OCI `linux.cgroupsPath` (see the module docs for how
/// the path is read) and the container id, on this host's hierarchies. Nothing is created
/// until [`Manager::create`].
pub fn new_manager(cgroups_path: Option<&str>, container_id: &str) -> Result<Box<dyn Manager>> {
    new_manager_with(None, cgroups_path, container_id)
}

/// As [`new_manager`], the hierarchies from `mountinfo` (see [`cgroup_mountinfo`]) if given.
pub fn new_manager_with(
    mountinfo: Option<&str>,
    cgroups_path: Option<&str>,
    container_id: &str,
) -> Result<Box<dyn Manager>> {
    Hierarchies::from_system_with(mountinfo)?.manager(cgroups_path, container_id)
}

/// The calling process's own cgroup dirs, keyed as [`Manager::paths`] keys a container's
/// (a restore moves itself into the container's cgroup for CRIU, then back here).
pub fn own_paths() -> Result<BTreeMap<String, PathBuf>> {
    Ok(Hierarchies::from_system()?.own_dirs())
}

/// Rebuilds a manager from what [`Manager::paths`] returned. A map with only the `""` key is
/// v2; any other key makes it v1 (with `""` as the hybrid cgroup2 directory).
pub fn from_paths(paths: &BTreeMap<String, PathBuf>) -> Result<Box<dyn Manager>> {
    if paths.is_empty() {
        return Err(Error::BadPaths("no cgroup paths".into()));
    }
    for (k, p) in paths {
        if !p.is_absolute() {
            return Err(Error::BadPaths(format!(
                "path of {k:?} is not absolute: {}",
                p.display()
            )));
        }
    }
    if paths.len() == 1 {
        if let Some(p) = paths.get("") {
            return Ok(Box::new(V2Manager::from_path(p.clone())));
        }
    }
    Ok(Box::new(V1Manager::from_paths(paths)))
}
