//! The container lifecycle requests: create, stop and destroy, and the teardown they share.
//!
//! Create is a sequence of steps (pool entries, dir, the writable layer with its disk quota,
//! overlay, /etc, network namespace and veth, bundle, init); a failure at any step tears down with [`Manager::teardown`], the
//! same routine destroy uses, which tolerates every part being already gone. So a failed
//! create leaves nothing behind, and a destroy can always be retried.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::Mutex;
use warden_protocol::{CreateRequest, StopRequest};

use super::{blocking, Container, Grace, Inner, Manager};
use crate::container::bundle::{self, BindMount, BundleSpec};
use crate::container::{disk, id, rootfs, runtime, Error, State};
use crate::handler::ConnectionContext;
use crate::jobs;
use crate::net;
use crate::pool::Network;
use crate::registry::RegistryError;
use crate::steps::Steps;

/// How long stop lets jobs end after SIGTERM before it sends SIGKILL (SPEC 3.4).
const STOP_GRACE: Duration = Duration::from_secs(10);

impl Manager {
    // -----------------------------------------------------------------------------------
    // create

    pub(super) async fn create(
        &self,
        req: CreateRequest,
        conn: &ConnectionContext,
    ) -> Result<String, Error> {
        let mut steps = Steps::new();
        let id = id::next();
        let handle = req.handle.clone().unwrap_or_else(|| id.clone());
        if self.registry.get(&handle).is_ok() {
            return Err(Error::Request(
                RegistryError::AlreadyExists(handle).to_string(),
            ));
        }
        let base = match &req.rootfs {
            Some(p) => PathBuf::from(p),
            None => self.config.server.container_rootfs_path.clone(),
        };
        // Before anything is taken or made (the default's too: a daemon whose
        // container_rootfs_path is missing fails each create here, not half-way).
        if !base.is_dir() {
            return Err(Error::Request(format!(
                "rootfs {} not found",
                base.display()
            )));
        }
        let mut binds = Vec::new();
        for m in &req.bind_mounts {
            let src = PathBuf::from(&m.src_path);
            if !src.exists() {
                return Err(Error::Request(format!(
                    "Source path for bind mount does not exist: {}",
                    m.src_path
                )));
            }
            let dst = PathBuf::from(&m.dst_path);
            if !dst.is_absolute() {
                return Err(Error::Request(format!(
                    "Destination path for bind mount is not absolute: {}",
                    m.dst_path
                )));
            }
            binds.push(BindMount {
                src,
                dst,
                read_only: m.mode == warden_protocol::Mode::Ro as i32,
            });
        }
        let network = match &req.network {
            Some(n) => {
                let addr = n
                    .parse()
                    .map_err(|_| Error::Request(format!("Could not acquire network: {n}")))?;
                self.networks.acquire_specific(addr)
            }
            None => self.networks.acquire(),
        }
        .map_err(|e| Error::Request(e.to_string()))?;
        let uid = match self.uids.acquire() {
            Ok(u) => u,
            Err(e) => {
                self.networks.release(network);
                return Err(Error::Request(e.to_string()));
            }
        };
        let grace_time = match req.grace_time {
            Some(s) => Some(Duration::from_secs(s.into())),
            None => self.config.server.container_grace_time,
        };
        let container = Arc::new(Container {
            dir: self.config.server.container_depot_path.join(&id),
            id,
            handle: handle.clone(),
            network,
            uid,
            grace_time,
            base_rootfs: base,
            disk_quota: self.disks.backend().map(|b| b.kind()),
            inner: Mutex::new(Inner {
                state: State::Born,
                events: Vec::new(),
                jobs: BTreeMap::new(),
                linking: BTreeMap::new(),
                obituary: None,
                limit_memory: None,
                limit_cpu: None,
                limit_bandwidth: None,
                limit_disk: None,
                ports: Vec::new(),
                net_in: Vec::new(),
                net_out: Vec::new(),
                ports_released: false,
                oom_armed: false,
                uid_released: false,
                network_released: false,
            }),
            grace: StdMutex::new(Grace::default()),
            destroying: Mutex::new(()),
        });
        steps.mark("pools");
        tracing::info!(handle = %handle, id = %container.id, "creating container");
        if let Err(e) = std::fs::create_dir(&container.dir) {
            self.networks.release(network);
            self.uids.release(uid);
            return Err(Error::io("mkdir", &container.dir, e));
        }
        steps.mark("dir");
        let init_steps = match self.build(&container, &binds, &mut steps).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(handle = %handle, "create failed, tearing down: {e}");
                if let Err(t) = self.teardown(&container, &mut Steps::new()).await {
                    tracing::error!(handle = %handle, "teardown after a failed create: {t}");
                }
                return Err(e);
            }
        };
        let mut inner = container.inner.lock().await;
        inner.state = State::Active;
        container.save(&inner);
        drop(inner);
        if let Err(e) = self.registry.insert(&handle, container.clone()) {
            // Another create took the handle meanwhile.
            let _ = self.teardown(&container, &mut Steps::new()).await;
            return Err(Error::Request(e.to_string()));
        }
        self.reference(conn.id(), &container);
        steps.mark("register");
        tracing::info!(handle = %handle, id = %container.id, steps = ?steps.to_string(),
            init_steps = ?init_steps, "container created");
        Ok(handle)
    }

    /// The steps of create after the dir exists; returns the create helper's own timing of
    /// the init step.
    async fn build(
        &self,
        c: &Container,
        binds: &[BindMount],
        steps: &mut Steps,
    ) -> Result<String, Error> {
        self.ensure_firewall().await?;
        steps.mark("firewall");
        for sub in ["jobs", "run"] {
            let p = c.dir.join(sub);
            std::fs::create_dir(&p).map_err(|e| Error::io("mkdir", &p, e))?;
        }
        // The snapshot first, so that a daemon dying half-way finds (and tears down) it.
        c.snapshot(&*c.inner.lock().await).save(&c.dir)?;
        steps.mark("snapshot");
        let (dir, base) = (c.dir.clone(), c.base_rootfs.clone());
        let identity_net = c.network;
        let (uid, id, dns) = (c.uid, c.id.clone(), self.config.network.dns_servers.clone());
        let (disks, layer) = (self.disks.clone(), c.layer());
        let (userns, depot) = (
            self.config.user.namespace,
            self.config.server.container_depot_path.clone(),
        );
        // The default base is idmapped from inside the seed (see `userns`).
        let seed = self.mount_seed.clone().filter(|s| s.shows(&base));
        let mut timed = std::mem::take(steps);
        *steps = blocking(move || {
            // The writable layer, a quota unit of its own when the depot has quotas.
            match disks.backend() {
                Some(b) => b.prepare(&layer, uid)?,
                None => std::fs::create_dir(&layer).map_err(|e| Error::io("mkdir", &layer, e))?,
            }
            timed.mark("layer");
            fail_point("disk")?;
            rootfs::mount_overlay(
                &dir,
                &layer,
                &base,
                userns.as_ref().map(|ns| (ns, depot.as_path())),
                seed.as_deref(),
            )?;
            timed.mark("overlay");
            fail_point("overlay")?;
            rootfs::write_identity(
                &dir,
                &rootfs::Identity {
                    hostname: &id,
                    container_ip: identity_net.container_ip(),
                    host_ip: identity_net.host_ip(),
                    uid,
                    dns_servers: &dns,
                    userns,
                },
            )?;
            timed.mark("identity");
            Ok(timed)
        })
        .await?;
        fail_point("identity")?;
        net::setup(&c.netns(), &self.net_spec(c))
            .await
            .map_err(|e| Error::Network(e.to_string()))?;
        steps.mark("network");
        fail_point("network")?;
        let config = bundle::config(&BundleSpec {
            id: &c.id,
            rootfs: &rootfs::rootfs_dir(&c.dir),
            netns: &c.netns(),
            cgroups_path: format!("/{}/{}", self.config.server.cgroup_parent, c.id),
            init: &self.init,
            bind_mounts: binds,
            seccomp: self.seccomp.as_ref(),
            pids_limit: self.config.server.pids_limit,
            userns: self.config.user.namespace,
        });
        bundle::write(&c.dir, &config)?;
        steps.mark("bundle");
        fail_point("bundle")?;
        self.prepare_cgroup_parent();
        let started = runtime::create(
            &self.create_helper,
            &c.runtime_root(),
            &c.id,
            &c.dir,
            &self.seccomp_cache,
            &self.cgroup_mounts,
            self.mount_seed.as_deref(),
        )
        .await?;
        steps.mark("init");
        fail_point("init")?;
        Ok(started.steps)
    }

    /// The containers' cgroup parent, made and set up once (see
    /// `runtime::prepare_cgroup_parent`); tried again by the next create if it failed, which
    /// the runtime then reports itself.
    fn prepare_cgroup_parent(&self) {
        use std::sync::atomic::Ordering;
        if self.cgroup_parent_ready.load(Ordering::Relaxed) {
            return;
        }
        match runtime::prepare_cgroup_parent(&self.cgroup_mounts, &self.config.server.cgroup_parent)
        {
            Ok(()) => self.cgroup_parent_ready.store(true, Ordering::Relaxed),
            Err(e) => tracing::warn!("config key server.cgroup_parent: {e}"),
        }
    }

    pub(super) fn net_spec(&self, c: &Container) -> net::NetSpec {
        net::NetSpec {
            id: c.id.clone(),
            prefix: self.config.network.interface_prefix.clone(),
            host_ip: c.network.host_ip(),
            container_ip: c.network.container_ip(),
            prefix_len: Network::PREFIX_LEN,
            mtu: self.config.network.mtu,
        }
    }

    /// Removes everything a container owns, whatever is already gone: its processes and
    /// runtime state (cgroups), network, overlay, dir, and pool entries. Errors are
    /// collected; the pool entries are released only once the parts using them are gone.
    async fn teardown(&self, c: &Container, steps: &mut Steps) -> Result<(), Error> {
        let mut errors = Vec::new();
        let net_in = c.inner.lock().await.net_in.clone();
        let (table, id, ip) = (
            self.config.network.nftables_table.clone(),
            c.id.clone(),
            c.network.container_ip(),
        );
        let rules_gone = match blocking(move || {
            net::firewall::remove_container(&table, &id, ip, &net_in)
                .map_err(|e| Error::Network(e.to_string()))
        })
        .await
        {
            Ok(()) => true,
            Err(e) => {
                errors.push(e.to_string());
                false
            }
        };
        steps.mark("rules");
        let (root, id) = (c.runtime_root(), c.id.clone());
        let processes_gone = match blocking(move || runtime::delete(&root, &id)).await {
            Ok(()) => true,
            Err(e) => {
                errors.push(e.to_string());
                false
            }
        };
        steps.mark("runtime");
        // The processes are gone, so unmounting the netns lets the kernel free it and the
        // veth pair; the network returns to the pool once the host's end is gone.
        let net_ok = match net::release(&c.netns()) {
            Ok(()) => true,
            Err(e) => {
                errors.push(e.to_string());
                false
            }
        };
        steps.mark("netns");
        let (dir, layer, uid) = (c.dir.clone(), c.layer(), c.uid);
        let (disks, kind) = (self.disks.clone(), c.disk_quota);
        let mut timed = std::mem::take(steps);
        let fs = blocking(move || {
            let fs = (|| {
                rootfs::unmount_overlay(&dir)?;
                timed.mark("overlay");
                let quota = remove_layer(disks.backend_for(kind), &layer, uid);
                timed.mark("layer");
                remove_dir_all_retry(&dir)?;
                timed.mark("dir");
                quota
            })();
            Ok((fs, timed))
        })
        .await;
        let fs = match fs {
            Ok((fs, timed)) => {
                *steps = timed;
                fs
            }
            Err(e) => Err(e),
        };
        if let Err(e) = &fs {
            errors.push(e.to_string());
        }
        // Give back only what nothing uses any more, and only once.
        let mut inner = c.inner.lock().await;
        if net_ok && processes_gone && !inner.network_released {
            inner.network_released = true;
            self.release_network_when_gone(c.network, self.net_spec(c));
        }
        if rules_gone && !inner.ports_released {
            inner.ports_released = true;
            for p in inner.ports.clone() {
                self.ports.release(p);
            }
        }
        if processes_gone && !inner.uid_released {
            inner.uid_released = true;
            self.uids.release(c.uid);
        }
        drop(inner);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Runtime(format!(
                "destroy {}: {}",
                c.handle,
                errors.join("; ")
            )))
        }
    }

    /// Returns `network` to the pool once its veth has left the host (the kernel deletes it
    /// asynchronously after the netns is released); after 5 s it deletes the veth itself.
    fn release_network_when_gone(&self, network: Network, spec: net::NetSpec) {
        let Some(this) = self.this.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while net::host_iface_exists(&spec) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if net::host_iface_exists(&spec) {
                tracing::warn!(iface = %spec.host_iface(), "veth still there after 5 s: deleting it");
                if let Err(e) = net::teardown(Path::new("/nonexistent"), &spec).await {
                    tracing::error!(iface = %spec.host_iface(), "cannot delete the veth: {e}");
                    return; // the network stays out of the pool rather than clash
                }
            }
            this.networks.release(network);
        });
    }

    // -----------------------------------------------------------------------------------
    // stop / destroy

    pub(super) async fn stop(&self, c: &Arc<Container>, kill: bool) -> Result<(), Error> {
        let mut inner = c.inner.lock().await;
        inner.state.check(&[State::Active, State::Stopped])?;
        if inner.state == State::Stopped {
            return Ok(());
        }
        inner.state = State::Stopped;
        // The original deleted the snapshot while stopping, so a restart in those seconds
        // lost the container; we record the new state at once instead.
        c.save(&inner);
        let jobs: Vec<PathBuf> = inner.jobs.values().cloned().collect();
        drop(inner);
        self.end_jobs(c, kill, jobs).await;
        let inner = c.inner.lock().await;
        c.save(&inner);
        Ok(())
    }

    /// Ends every process of the container but its init (TERM once a second, then KILL;
    /// `kill`: KILL at once) and waits for the keepers of `jobs` to record their statuses.
    async fn end_jobs(&self, c: &Container, kill: bool, jobs: Vec<PathBuf>) {
        let (root, id) = (c.runtime_root(), c.id.clone());
        if !kill {
            // TERM once a second until everything but the init is gone, then KILL.
            let deadline = tokio::time::Instant::now() + STOP_GRACE;
            while tokio::time::Instant::now() < deadline {
                runtime::signal_jobs(&root, &id, Signal::SIGTERM);
                if runtime::wait_jobs_gone(&root, &id, Duration::from_secs(1)).await {
                    break;
                }
            }
        }
        runtime::signal_jobs(&root, &id, Signal::SIGKILL);
        runtime::wait_jobs_gone(&root, &id, Duration::from_secs(5)).await;
        for dir in jobs {
            let _ = tokio::time::timeout(Duration::from_secs(5), jobs::wait(&dir)).await;
        }
    }

    pub(super) async fn destroy(&self, c: &Arc<Container>) -> Result<(), Error> {
        let _one_at_a_time = c.destroying.lock().await;
        let mut steps = Steps::new();
        {
            let mut inner = c.inner.lock().await;
            if inner.state == State::Destroyed {
                return Err(Error::Request(RegistryError::UnknownHandle.to_string()));
            }
            drop(inner);
            let obituary = self.info(c).await.ok();
            inner = c.inner.lock().await;
            inner.obituary = obituary;
        }
        steps.mark("info");
        // As a stop with kill, but not written to the snapshot (twice, 0.2-0.3 ms): the
        // container is going, and a daemon that dies before it is gone takes it back as it
        // was (its init still alive) or tears it down (its init gone).
        let jobs = {
            let mut inner = c.inner.lock().await;
            inner.state = State::Stopped;
            inner.jobs.values().cloned().collect()
        };
        self.end_jobs(c, true, jobs).await;
        steps.mark("stop");
        self.teardown(c, &mut steps).await?;
        c.inner.lock().await.state = State::Destroyed;
        self.registry.remove_if_same(&c.handle, c);
        tracing::info!(handle = %c.handle, id = %c.id, steps = ?steps.to_string(), "container destroyed");
        Ok(())
    }

    pub(super) async fn stop_request(
        &self,
        c: Arc<Container>,
        req: StopRequest,
    ) -> Result<(), Error> {
        let kill = req.kill.unwrap_or(false);
        if req.background.unwrap_or(false) {
            c.inner
                .lock()
                .await
                .state
                .check(&[State::Active, State::Stopped])?;
            let this = self.this.upgrade().expect("alive while serving");
            tokio::spawn(async move {
                if let Err(e) = this.stop(&c, kill).await {
                    tracing::warn!(handle = %c.handle, "background stop: {e}");
                }
            });
            return Ok(());
        }
        self.stop(&c, kill).await
    }
}

/// Removes a container's layer and its quota unit (`backend`: the one it was made with, if
/// the daemon still has it); a btrfs subvolume goes even when quotas are now off.
pub(super) fn remove_layer(
    backend: Option<&dyn disk::QuotaBackend>,
    layer: &Path,
    uid: u32,
) -> Result<(), Error> {
    match backend {
        Some(b) => b.remove(layer, uid),
        None => disk::remove_subvolume(layer),
    }
}

/// rm -rf, retried a few times (a just-killed process may still hold a mount busy). Refused
/// while anything is still mounted below `dir`: rm would go down into it (a bind mount's
/// source on the host, say).
pub(super) fn remove_dir_all_retry(dir: &Path) -> Result<(), Error> {
    if let Some(m) = mount_below(dir) {
        return Err(Error::Runtime(format!(
            "not removing {}: {} is still mounted",
            dir.display(),
            m.display()
        )));
    }
    let mut last = None;
    for attempt in 0..5 {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(20 << attempt));
    }
    Err(Error::io("remove", dir, last.expect("an error was seen")))
}

/// The first mount point at or below `dir`. Found by walking the tree and asking statx
/// whether each entry is a mount's root, not by reading /proc/self/mountinfo, whose size
/// grows with every live container's mounts (5 ms a destroy at 1,000 live containers);
/// kernels before 5.8, whose statx does not tell, get the mountinfo scan.
fn mount_below(dir: &Path) -> Option<PathBuf> {
    let mut dirs = vec![dir.to_path_buf()];
    match is_mount_root(dir) {
        Some(true) => return Some(dir.to_path_buf()),
        Some(false) => {}
        None => return mount_below_per_mountinfo(dir),
    }
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if is_mount_root(&p) == Some(true) {
                return Some(p);
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(p);
            }
        }
    }
    None
}

/// Whether `p` (not followed if a symlink) is the root of a mount; None if the kernel does
/// not say. A path that is gone is no mount.
fn is_mount_root(p: &Path) -> Option<bool> {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
        return Some(false);
    };
    // SAFETY: statx writes into the zeroed struct we pass; the path is NUL-terminated.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            0,
            &mut st,
        )
    };
    let bit = libc::STATX_ATTR_MOUNT_ROOT as u64;
    if r != 0 {
        Some(false)
    } else if st.stx_attributes_mask & bit == 0 {
        None
    } else {
        Some(st.stx_attributes & bit != 0)
    }
}

fn mount_below_per_mountinfo(dir: &Path) -> Option<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .find(|p| p.starts_with(dir))
}

/// Fault injection for the tests of create's rollback: with `WARDEN_TEST_FAIL_CREATE_AT=step`
/// in the daemon's environment, the first create that gets past that step fails right after
/// it (later creates go through, so a test can check that the failed one gave back all it
/// took).
fn fail_point(step: &str) -> Result<(), Error> {
    static FIRED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    match std::env::var("WARDEN_TEST_FAIL_CREATE_AT") {
        Ok(s) if s == step && !FIRED.swap(true, Ordering::SeqCst) => {
            Err(Error::Runtime(format!("injected failure after {step}")))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tmpfs on a dir and a bind mount on a file, deep in the tree, each stop the removal
    /// (as root, which may mount; skipped otherwise).
    #[test]
    fn removal_is_refused_while_anything_below_is_mounted() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        use nix::mount::{mount, umount2, MntFlags, MsFlags};
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("c");
        let (deep, file) = (dir.join("a/b/m"), dir.join("a/netns"));
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(&file, "").unwrap();
        std::fs::write(dir.join("a/b/kept"), "x").unwrap();
        assert_eq!(mount_below(&dir), None);
        mount(
            Some("tmpfs"),
            &deep,
            Some("tmpfs"),
            MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        let refused = remove_dir_all_retry(&dir);
        assert_eq!(mount_below_per_mountinfo(&dir), Some(deep.clone()));
        umount2(&deep, MntFlags::MNT_DETACH).unwrap();
        let e = refused.unwrap_err().to_string();
        assert!(
            e.contains(&format!("{} is still mounted", deep.display())),
            "{e}"
        );
        assert!(dir.join("a/b/kept").exists(), "nothing was removed");
        mount(
            Some("/dev/null"),
            &file,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        let found = mount_below(&dir);
        umount2(&file, MntFlags::MNT_DETACH).unwrap();
        assert_eq!(found, Some(file));
        remove_dir_all_retry(&dir).unwrap();
        assert!(!dir.exists());
    }
}
