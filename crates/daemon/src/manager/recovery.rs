//! Recovery (SPEC 3.11): taking back the containers a previous daemon left in the depot, and
//! tearing down those that cannot be taken back; and taking back live containers whose dir
//! is no longer in the depot under its id (the depot moved, a dir was renamed), wherever the
//! host's mount table shows it now.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use tokio::sync::Mutex;

use super::lifecycle::{remove_dir_all_retry, remove_layer};
use super::{blocking, Container, Grace, Inner, Manager};
use crate::container::snapshot::Snapshot;
use crate::container::{disk, id, rootfs, runtime, Error, State};
use crate::jobs;
use crate::net;
use crate::pool::Network;

impl Manager {
    /// Takes back every container in the depot: a container whose snapshot is readable and
    /// whose init is alive is registered again with its network and uid taken out of the
    /// pools, its jobs recovered and its grace timer started; anything else is torn down.
    ///
    /// The packet filter comes first: if it cannot be installed the daemon does not start,
    /// rather than tear down containers it could not fence.
    pub async fn recover(&self) -> Result<(), Error> {
        let depot = self.config.server.container_depot_path.clone();
        let Ok(entries) = std::fs::read_dir(&depot) else {
            return Ok(());
        };
        // Only dirs named like our container ids are ours: anything else in the depot (a
        // mistaken depot path, an operator's file) is left alone.
        let mut dirs = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if id::is_valid(&name) && entry.path().is_dir() {
                dirs.push(entry.path());
            } else if !name.starts_with('.') {
                tracing::warn!(entry = %name, "not a container dir: left alone");
            }
        }
        if !dirs.is_empty() {
            self.ensure_firewall().await?;
        }
        let mut max_job = 0;
        let mut seen = HashSet::new();
        for dir in dirs {
            let id = dir
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            seen.insert(id.clone());
            match self.recover_one(&dir, &id).await {
                Ok((c, jobs_max)) => {
                    max_job = max_job.max(jobs_max);
                    tracing::info!(handle = %c.handle, id = %c.id, "container recovered");
                    self.arm_grace(&c);
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), "cannot recover, destroying: {e}");
                    self.destroy_unrecoverable(&dir).await;
                }
            }
        }
        for dir in self.moved_container_dirs(&depot, &seen) {
            let Ok(snap) = Snapshot::load(&dir) else {
                continue;
            };
            if !seen.insert(snap.id.clone()) {
                continue;
            }
            match self.recover_one(&dir, &snap.id).await {
                Ok((c, jobs_max)) => {
                    max_job = max_job.max(jobs_max);
                    tracing::warn!(handle = %c.handle, id = %c.id, dir = %dir.display(),
                        "container recovered from outside the depot (moved or renamed)");
                    self.arm_grace(&c);
                }
                Err(e) => {
                    // Not ours to tear down (it is not in the depot), but what it holds must
                    // never go to another container.
                    tracing::error!(dir = %dir.display(),
                        "a live container outside the depot cannot be recovered: {e}; its \
                         network and uid stay out of the pools");
                    self.networks.remove(Network::containing(snap.network));
                    self.uids.remove(snap.uid);
                }
            }
        }
        self.next_job.fetch_max(max_job + 1, Ordering::SeqCst);
        Ok(())
    }

    /// The dirs of live containers of this daemon that are not in the depot under their id:
    /// each container's netns file is a mount, at `<its dir>/netns` wherever the dir has
    /// gone since (a rename moves the mounts with it). `seen`: the ids the depot scan
    /// handled.
    fn moved_container_dirs(&self, depot: &Path, seen: &HashSet<String>) -> Vec<PathBuf> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut dirs = Vec::new();
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            if right.split(' ').next() != Some("nsfs") {
                continue;
            }
            let Some(point) = left.split(' ').nth(4) else {
                continue;
            };
            let point = PathBuf::from(unescape_mount_field(point));
            if point.file_name().is_none_or(|n| n != "netns") {
                continue;
            }
            let Some(dir) = point.parent() else { continue };
            let name = dir.file_name().map(|n| n.to_string_lossy().to_string());
            if dir.parent() == Some(depot) && name.as_ref().is_some_and(|n| seen.contains(n)) {
                continue;
            }
            let Ok(snap) = Snapshot::load(dir) else {
                continue;
            };
            // Ours, not another daemon's on the same host: its cgroups are under our parent
            // (`<cgroup_parent>/<id>` in every hierarchy) and its host interface has our
            // prefix.
            let host_if = net::host_iface(&self.config.network.interface_prefix, &snap.id);
            let under_us = Path::new(&self.config.server.cgroup_parent).join(&snap.id);
            let ours = runtime::load(&dir.join("run"), &snap.id).is_some_and(|c| {
                c.init_alive()
                    && !c.state.cgroup_paths.is_empty()
                    && c.state
                        .cgroup_paths
                        .values()
                        .all(|p| p.ends_with(&under_us))
            });
            if ours && Path::new("/sys/class/net").join(&host_if).exists() {
                dirs.push(dir.to_path_buf());
            }
        }
        dirs
    }

    /// Takes back the container in `dir`, whose snapshot must be of container `id`.
    async fn recover_one(&self, dir: &Path, id: &str) -> Result<(Arc<Container>, u32), Error> {
        let snap = Snapshot::load(dir)?;
        let id = id.to_string();
        if snap.id != id {
            return Err(Error::Invalid(format!(
                "snapshot id {} does not match the dir",
                snap.id
            )));
        }
        if snap.state == State::Born {
            return Err(Error::Invalid("its create never finished".into()));
        }
        if !runtime::is_running(&dir.join("run"), &id) {
            return Err(Error::Runtime("its init is not running".into()));
        }
        // A network or uid outside today's pools (the config changed) is the container's
        // alone: it is kept, as the original does. One inside that is taken is a conflict.
        let network = Network::containing(snap.network);
        let in_pool = self.networks.pool().contains(network.address());
        if in_pool && !self.networks.remove(network) {
            return Err(Error::Invalid(format!("network {network} is not free")));
        }
        let user = &self.config.user;
        let uid_in_pool = snap.uid >= user.pool_start_uid
            && u64::from(snap.uid) < u64::from(user.pool_start_uid) + u64::from(user.pool_size);
        if uid_in_pool && !self.uids.remove(snap.uid) {
            if in_pool {
                self.networks.release(network);
            }
            return Err(Error::Invalid(format!("uid {} is not free", snap.uid)));
        }
        let mut jobs_map = BTreeMap::new();
        let mut max_job = 0;
        for job in snap.jobs {
            let jd = dir.join("jobs").join(job.to_string());
            if jobs::recover(&jd).is_ok() {
                jobs_map.insert(job, jd);
                max_job = max_job.max(job);
            }
        }
        let c = Arc::new(Container {
            id,
            handle: snap.handle.clone(),
            dir: dir.to_path_buf(),
            network,
            uid: snap.uid,
            grace_time: snap.grace_time.map(Duration::from_secs),
            base_rootfs: snap.rootfs,
            disk_quota: snap.disk_quota,
            inner: Mutex::new(Inner {
                state: snap.state,
                events: snap.events,
                jobs: jobs_map,
                linking: BTreeMap::new(),
                obituary: None,
                limit_memory: snap.limit_memory,
                limit_cpu: snap.limit_cpu,
                limit_bandwidth: snap.limit_bandwidth,
                limit_disk: snap.limit_disk,
                ports: snap.ports.clone(),
                net_in: snap.net_in.clone(),
                net_out: snap.net_out.clone(),
                ports_released: false,
                oom_armed: false,
                uid_released: false,
                network_released: false,
            }),
            grace: StdMutex::new(Grace::default()),
            destroying: Mutex::new(()),
        });
        // A container made by a daemon from before IPv6 was turned off on the host's ends
        // (see `net::setup`) gets it turned off now.
        let host_if = net::host_iface(&self.config.network.interface_prefix, &c.id);
        if let Err(e) = net::disable_ipv6(&host_if) {
            tracing::warn!(handle = %c.handle, "cannot disable IPv6 on {host_if}: {e}");
        }
        // Its net_in/net_out back into the (just installed) table, its ports out of the pool.
        let (table, cid, ip) = (
            self.config.network.nftables_table.clone(),
            c.id.clone(),
            c.network.container_ip(),
        );
        let (net_in, net_out) = (snap.net_in.clone(), snap.net_out.clone());
        if let Err(e) = blocking(move || {
            net::firewall::restore(&table, &cid, ip, &net_in, &net_out)
                .map_err(|e| Error::Network(e.to_string()))
        })
        .await
        {
            if in_pool {
                self.networks.release(network);
            }
            self.uids.release(c.uid);
            return Err(e);
        }
        for p in &snap.ports {
            if !self.ports.remove(*p) {
                tracing::warn!(handle = %c.handle, port = p, "port not free in the pool (or outside it)");
            }
        }
        if let Err(e) = self.registry.insert(&c.handle, c.clone()) {
            self.networks.release(network);
            self.uids.release(c.uid);
            return Err(Error::Invalid(e.to_string()));
        }
        c.save(&*c.inner.lock().await);
        // The kernel keeps the quota while the filesystem stays mounted; put the snapshot's
        // limits back all the same, in case it did not (a remount without its quota state).
        if let Some(limits) = snap.limit_disk {
            let (disks, kind, layer, uid) = (self.disks.clone(), c.disk_quota, c.layer(), c.uid);
            let r = blocking(move || match disks.backend_for(kind) {
                Some(b) => b.set(&layer, uid, &limits),
                None => Ok(()),
            })
            .await;
            if let Err(e) = r {
                tracing::warn!(handle = %c.handle, "cannot put the disk limit back: {e}");
            }
        }
        if snap.limit_memory.is_some() {
            self.arm_oom(&c).await;
        }
        Ok((c, max_job))
    }

    /// Tears down what is left of a container that cannot be recovered.
    async fn destroy_unrecoverable(&self, dir: &Path) {
        let id = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let snap = Snapshot::load(dir).ok();
        let root = dir.join("run");
        let (r, i) = (root.clone(), id.clone());
        let _ = blocking(move || runtime::delete(&r, &i)).await;
        let spec = net::NetSpec {
            id: id.clone(),
            prefix: self.config.network.interface_prefix.clone(),
            host_ip: snap
                .as_ref()
                .map(|s| Network::containing(s.network).host_ip())
                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
            container_ip: snap
                .as_ref()
                .map(|s| Network::containing(s.network).container_ip())
                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
            prefix_len: Network::PREFIX_LEN,
            mtu: self.config.network.mtu,
        };
        if let Some(s) = &snap {
            let (table, cid, ip, net_in) = (
                self.config.network.nftables_table.clone(),
                id.clone(),
                Network::containing(s.network).container_ip(),
                s.net_in.clone(),
            );
            let _ = blocking(move || {
                net::firewall::remove_container(&table, &cid, ip, &net_in)
                    .map_err(|e| Error::Network(e.to_string()))
            })
            .await;
        }
        // Not in the pools (recovery did not take it), so only the veth must go.
        if let Err(e) = net::teardown(&dir.join("netns"), &spec).await {
            tracing::warn!(dir = %dir.display(), "network teardown: {e}");
        }
        let d = dir.to_path_buf();
        let disks = self.disks.clone();
        let (kind, uid) = (
            snap.as_ref().and_then(|s| s.disk_quota),
            snap.as_ref().map(|s| s.uid).unwrap_or(0),
        );
        if let Err(e) = blocking(move || {
            rootfs::unmount_overlay(&d)?;
            let quota = remove_layer(disks.backend_for(kind), &disk::layer_dir(&d), uid);
            remove_dir_all_retry(&d)?;
            quota
        })
        .await
        {
            tracing::warn!(dir = %dir.display(), "{e}");
        }
    }
}

/// A mountinfo path field: spaces, tabs, newlines and backslashes are octal escapes.
fn unescape_mount_field(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
