//! `<container dir>/snapshot.json`: everything a restarted daemon needs to take a container
//! back (SPEC 3.11; the format is ours). Written to a temp file and renamed, so a reader
//! sees the old or the new document, never half of one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Error, State};

pub const FILE: &str = "snapshot.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    pub id: String,
    pub handle: String,
    pub state: State,
    pub events: Vec<String>,
    /// Seconds; None: no grace timer.
    pub grace_time: Option<u64>,
    /// The container's /30 (its network address).
    pub network: std::net::Ipv4Addr,
    pub uid: u32,
    /// The base rootfs of the overlay.
    pub rootfs: PathBuf,
    /// The jobs not yet linked: their ids.
    pub jobs: Vec<u32>,
    /// The limit_memory value (bytes), if one was set: a restart re-arms the OOM notifier.
    #[serde(default)]
    pub limit_memory: Option<u64>,
    /// The limit_cpu value (shares), if one was set.
    #[serde(default)]
    pub limit_cpu: Option<u64>,
    /// The limit_bandwidth (rate, burst), if one was set (the kernel keeps the qdiscs).
    #[serde(default)]
    pub limit_bandwidth: Option<(u64, u64)>,
    /// Host ports taken from the port pool (by net_in).
    #[serde(default)]
    pub ports: Vec<u16>,
    /// net_in mappings: [host port, container port].
    #[serde(default)]
    pub net_in: Vec<(u16, u16)>,
    /// net_out entries, oldest first.
    #[serde(default)]
    pub net_out: Vec<crate::net::firewall::NetOut>,
    /// The disk quota backend its layer (`disk/`) is a unit of; None: no quota.
    #[serde(default)]
    pub disk_quota: Option<super::disk::Kind>,
    /// The last limit_disk limits, put back after a restart.
    #[serde(default)]
    pub limit_disk: Option<super::disk::Limits>,
}

impl Snapshot {
    pub fn save(&self, dir: &Path) -> Result<(), Error> {
        let tmp = dir.join(".snapshot.json.tmp");
        let data = serde_json::to_vec_pretty(self).expect("a snapshot serializes");
        std::fs::write(&tmp, data).map_err(|e| Error::io("write", &tmp, e))?;
        let path = dir.join(FILE);
        std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &path, e))
    }

    pub fn load(dir: &Path) -> Result<Snapshot, Error> {
        let path = dir.join(FILE);
        let data = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        serde_json::from_slice(&data)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
    }
}
