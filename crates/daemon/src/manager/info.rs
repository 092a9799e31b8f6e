//! The info request: a container's state, events, addresses, jobs and cgroup stats (or its
//! obituary once a destroy has begun).

use warden_protocol::messages::DiskStat;
use warden_protocol::{BandwidthStat, InfoResponse};

use super::{blocking, Container, Manager};
use crate::container::{stats, Error, State};
use crate::jobs;
use crate::net::bandwidth;

/// bandwidth_stat's value where a direction has no limit (SPEC 3.9).
const NO_LIMIT: u64 = 0xffff_ffff;

impl Manager {
    pub(super) async fn info(&self, c: &Container) -> Result<InfoResponse, Error> {
        let inner = c.inner.lock().await;
        if inner.state == State::Destroyed {
            if let Some(o) = &inner.obituary {
                return Ok(o.clone());
            }
        }
        let mut job_ids = Vec::new();
        for (id, dir) in &inner.jobs {
            if !jobs::is_finished(dir) {
                job_ids.push(u64::from(*id));
            }
        }
        let mut info = InfoResponse {
            state: Some(inner.state.as_str().into()),
            events: inner.events.clone(),
            host_ip: Some(c.network.host_ip().to_string()),
            container_ip: Some(c.network.container_ip().to_string()),
            container_path: Some(c.dir.display().to_string()),
            job_ids,
            ..Default::default()
        };
        let shaped = inner.limit_bandwidth.is_some();
        drop(inner);
        info.bandwidth_stat = Some(self.bandwidth_stat(c, shaped).await);
        let root = c.runtime_root();
        let id = c.id.clone();
        let (mem, cpu) =
            blocking(move || Ok((stats::memory(&root, &id), stats::cpu(&root, &id)))).await?;
        info.memory_stat = mem;
        info.cpu_stat = cpu;
        info.disk_stat = self.disk_stat(c).await;
        Ok(info)
    }

    /// The limits in force, read from the kernel's qdiscs once limit_bandwidth has set them
    /// (no netlink round trip for the containers that never had one).
    async fn bandwidth_stat(&self, c: &Container, shaped: bool) -> BandwidthStat {
        let limits = if shaped {
            bandwidth::read(&c.netns(), &self.net_spec(c))
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(handle = %c.handle, "cannot read the bandwidth limits: {e}");
                    bandwidth::Limits::default()
                })
        } else {
            bandwidth::Limits::default()
        };
        BandwidthStat {
            in_rate: Some(limits.into.map_or(NO_LIMIT, |l| l.rate)),
            in_burst: Some(limits.into.map_or(NO_LIMIT, |l| l.burst)),
            out_rate: Some(limits.out.map_or(NO_LIMIT, |l| l.rate)),
            out_burst: Some(limits.out.map_or(NO_LIMIT, |l| l.burst)),
        }
    }

    /// bytes and inodes used by the container's layer, as its quota backend counts them;
    /// None when quotas are off (SPEC 3.9) or the container has none.
    async fn disk_stat(&self, c: &Container) -> Option<DiskStat> {
        let (disks, kind, layer, uid) = (self.disks.clone(), c.disk_quota, c.layer(), c.uid);
        let r = blocking(move || match disks.backend_for(kind) {
            Some(b) => b.get(&layer, uid).map(Some),
            None => Ok(None),
        })
        .await;
        match r {
            Ok(u) => u.map(|(_, usage)| DiskStat {
                bytes_used: Some(usage.bytes),
                inodes_used: usage.inodes,
            }),
            Err(e) => {
                tracing::warn!(handle = %c.handle, "Failed getting disk usage: {e}");
                None
            }
        }
    }
}
