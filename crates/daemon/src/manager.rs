//! The container manager: answers every container request (SPEC 3) and owns the containers'
//! life from create to destroy, grace timers, and recovery after a daemon restart.
//!
//! Create is a sequence of steps (pool entries, dir, overlay, /etc, network namespace and
//! veth, bundle, init); a failure at any step tears down with [`Manager::teardown`], the
//! same routine destroy uses, which tolerates every part being already gone. So a failed
//! create leaves nothing behind, and a destroy can always be retried.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::Mutex;
use warden_protocol::{
    CopyInRequest, CopyInResponse, CopyOutRequest, CopyOutResponse, CreateRequest, CreateResponse,
    DestroyResponse, InfoResponse, LimitCpuResponse, LimitMemoryResponse, LinkResponse,
    NetInRequest, NetInResponse, NetOutRequest, NetOutResponse, Request, ResourceLimits, Response,
    RunResponse, SpawnRequest, SpawnResponse, StopRequest, StopResponse, StreamResponse,
};

use crate::config::Config;
use crate::container::bundle::{self, BindMount, BundleSpec};
use crate::container::snapshot::Snapshot;
use crate::container::{id, limits, rootfs, runtime, stats, Error, State};
use crate::dispatch::Dispatcher;
use crate::handler::{ConnectionContext, Handler, Reply, RequestContext};
use crate::jobs;
use crate::net;
use crate::pool::{Network, NetworkPool, PortPool, UidPool};
use crate::registry::{Registry, RegistryError};

/// The container event of an OOM (SPEC 4).
const OUT_OF_MEMORY: &str = "out of memory";

/// How long stop lets jobs end after SIGTERM before it sends SIGKILL (SPEC 3.4).
const STOP_GRACE: Duration = Duration::from_secs(10);

/// One container.
pub struct Container {
    pub id: String,
    pub handle: String,
    pub dir: PathBuf,
    pub network: Network,
    pub uid: u32,
    pub grace_time: Option<Duration>,
    pub base_rootfs: PathBuf,
    inner: Mutex<Inner>,
    grace: StdMutex<Grace>,
    /// Held for a whole destroy, so two destroys (a client's, a grace timer's) never run at
    /// once: the second finds the container destroyed.
    destroying: Mutex<()>,
}

struct Inner {
    state: State,
    events: Vec<String>,
    /// Jobs not yet linked, by id.
    jobs: BTreeMap<u32, PathBuf>,
    /// The info kept when a destroy begins (SPEC 3.4's obituary), for linkers.
    obituary: Option<InfoResponse>,
    limit_memory: Option<u64>,
    limit_cpu: Option<u64>,
    /// Host ports from the port pool, net_in mappings, net_out entries (SPEC 3.6).
    ports: Vec<u16>,
    net_in: Vec<(u16, u16)>,
    net_out: Vec<net::firewall::NetOut>,
    /// The ports went back to the pool (only once, like the uid and network).
    ports_released: bool,
    /// Whether the OOM notifier runs (it is started once, by the first memory limit).
    oom_armed: bool,
    /// The uid and the network went back to their pools (a retried teardown must not give
    /// them back twice: by then another container may hold them).
    uid_released: bool,
    network_released: bool,
}

#[derive(Default)]
struct Grace {
    /// Connections referencing the container.
    refs: HashSet<u64>,
    /// Bumped on every arm and cancel: a timer fires only if it is still the latest.
    epoch: u64,
}

impl Container {
    /// The runtime's state root for this container.
    fn runtime_root(&self) -> PathBuf {
        self.dir.join("run")
    }

    fn netns(&self) -> PathBuf {
        self.dir.join("netns")
    }

    fn jobs_dir(&self) -> PathBuf {
        self.dir.join("jobs")
    }

    fn snapshot(&self, inner: &Inner) -> Snapshot {
        Snapshot {
            id: self.id.clone(),
            handle: self.handle.clone(),
            state: inner.state,
            events: inner.events.clone(),
            grace_time: self.grace_time.map(|d| d.as_secs()),
            network: self.network.address(),
            uid: self.uid,
            rootfs: self.base_rootfs.clone(),
            jobs: inner.jobs.keys().copied().collect(),
            limit_memory: inner.limit_memory,
            limit_cpu: inner.limit_cpu,
            ports: inner.ports.clone(),
            net_in: inner.net_in.clone(),
            net_out: inner.net_out.clone(),
        }
    }

    fn save(&self, inner: &Inner) {
        if inner.state == State::Destroyed {
            return;
        }
        if let Err(e) = self.snapshot(inner).save(&self.dir) {
            tracing::warn!(handle = %self.handle, "cannot write the snapshot: {e}");
        }
    }
}

/// The daemon's handler: ping/echo/list through [`Dispatcher`], everything else here.
pub struct Manager {
    config: Config,
    /// The executable re-executed for the create helper and job keepers (wardend itself).
    exe: PathBuf,
    /// The static init bound into every container.
    init: PathBuf,
    registry: Arc<Registry<Container>>,
    dispatcher: Dispatcher<Container>,
    networks: NetworkPool,
    uids: UidPool,
    ports: PortPool,
    next_job: AtomicU32,
    /// Containers (by handle) each connection references.
    conns: StdMutex<HashMap<u64, HashSet<String>>>,
    /// Whether the daemon's nftables table is in place (done before the first container).
    firewall: Mutex<bool>,
    /// Every container's `linux.seccomp` (`server.container_seccomp_profile`), compiled
    /// once at start; `None` when unconfined.
    seccomp: Option<serde_json::Value>,
    /// Lets timers and background stops reach the manager.
    this: std::sync::Weak<Manager>,
}

/// The bytes of warden-init, built by build.rs.
const INIT_BINARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/warden-init"));

impl Manager {
    /// A manager over the depot of `config`: writes the init binary there and takes back
    /// every container a previous daemon left (see [`Manager::recover`]).
    pub async fn start(config: Config, exe: PathBuf) -> anyhow::Result<Arc<Manager>> {
        let depot = config.server.container_depot_path.clone();
        std::fs::create_dir_all(&depot)
            .map_err(|e| anyhow::anyhow!("cannot create the depot {}: {e}", depot.display()))?;
        let bin = depot.join(".bin");
        std::fs::create_dir_all(&bin)?;
        if config.user.namespace.is_some() {
            crate::container::userns::check_reachable("server.container_depot_path", &depot)
                .map_err(anyhow::Error::msg)?;
        }
        let init = bin.join("warden-init");
        write_executable(&init, INIT_BINARY)?;
        if config.user.namespace.is_some() {
            crate::container::userns::make_fuse_node(&init)?;
        }
        let seccomp = crate::container::seccomp::load(&config.server.seccomp_profile)
            .map_err(|e| anyhow::anyhow!("config key server.container_seccomp_profile: {e}"))?;
        let registry = Arc::new(Registry::new());
        let manager = Arc::new_cyclic(|this| Manager {
            networks: NetworkPool::from_config(&config.network),
            uids: UidPool::from_config(&config.user),
            ports: PortPool::from_config(&config.port),
            dispatcher: Dispatcher::new(registry.clone()),
            registry,
            config,
            exe,
            init,
            next_job: AtomicU32::new(1),
            conns: StdMutex::new(HashMap::new()),
            firewall: Mutex::new(false),
            seccomp,
            this: this.clone(),
        });
        manager.recover().await?;
        Ok(manager)
    }

    pub fn registry(&self) -> &Arc<Registry<Container>> {
        &self.registry
    }

    fn container(&self, handle: &str, conn: &ConnectionContext) -> Result<Arc<Container>, Error> {
        let c = self
            .registry
            .get(handle)
            .map_err(|e| Error::Request(e.to_string()))?;
        self.reference(conn.id(), &c);
        Ok(c)
    }

    // -----------------------------------------------------------------------------------
    // create

    async fn create(&self, req: CreateRequest, conn: &ConnectionContext) -> Result<String, Error> {
        let id = id::next();
        let handle = req.handle.clone().unwrap_or_else(|| id.clone());
        if self.registry.get(&handle).is_ok() {
            return Err(Error::Request(
                RegistryError::AlreadyExists(handle).to_string(),
            ));
        }
        let base = match &req.rootfs {
            Some(p) => {
                let p = PathBuf::from(p);
                if !p.is_dir() {
                    return Err(Error::Request(format!("rootfs {} not found", p.display())));
                }
                p
            }
            None => self.config.server.container_rootfs_path.clone(),
        };
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
            inner: Mutex::new(Inner {
                state: State::Born,
                events: Vec::new(),
                jobs: BTreeMap::new(),
                obituary: None,
                limit_memory: None,
                limit_cpu: None,
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
        tracing::info!(handle = %handle, id = %container.id, "creating container");
        if let Err(e) = std::fs::create_dir(&container.dir) {
            self.networks.release(network);
            self.uids.release(uid);
            return Err(Error::io("mkdir", &container.dir, e));
        }
        if let Err(e) = self.build(&container, &binds).await {
            tracing::warn!(handle = %handle, "create failed, tearing down: {e}");
            if let Err(t) = self.teardown(&container).await {
                tracing::error!(handle = %handle, "teardown after a failed create: {t}");
            }
            return Err(e);
        }
        let mut inner = container.inner.lock().await;
        inner.state = State::Active;
        container.save(&inner);
        drop(inner);
        if let Err(e) = self.registry.insert(&handle, container.clone()) {
            // Another create took the handle meanwhile.
            let _ = self.teardown(&container).await;
            return Err(Error::Request(e.to_string()));
        }
        self.reference(conn.id(), &container);
        tracing::info!(handle = %handle, id = %container.id, "container created");
        Ok(handle)
    }

    /// Sets up the host's network once, before the daemon's first container has a network
    /// (a daemon that never runs a container leaves the host alone): the daemon's packet
    /// filter, then IPv4 forwarding (net::host), so the filter is in place before anything
    /// is forwarded.
    async fn ensure_firewall(&self) -> Result<(), Error> {
        let mut done = self.firewall.lock().await;
        if !*done {
            let net = self.config.network.clone();
            blocking(move || {
                net::firewall::install(&net.nftables_table, &net)
                    .map_err(|e| Error::Network(e.to_string()))?;
                if net::host::enable_forwarding().map_err(|e| Error::Network(e.to_string()))? {
                    tracing::info!("turned on IPv4 forwarding (net.ipv4.ip_forward was 0)");
                }
                Ok(())
            })
            .await?;
            *done = true;
        }
        Ok(())
    }

    /// The steps of create after the dir exists.
    async fn build(&self, c: &Container, binds: &[BindMount]) -> Result<(), Error> {
        self.ensure_firewall().await?;
        for sub in ["jobs", "run"] {
            let p = c.dir.join(sub);
            std::fs::create_dir(&p).map_err(|e| Error::io("mkdir", &p, e))?;
        }
        // The snapshot first, so that a daemon dying half-way finds (and tears down) it.
        c.snapshot(&*c.inner.lock().await).save(&c.dir)?;
        let (dir, base) = (c.dir.clone(), c.base_rootfs.clone());
        let identity_net = c.network;
        let (uid, id, dns) = (c.uid, c.id.clone(), self.config.network.dns_servers.clone());
        let (userns, depot) = (
            self.config.user.namespace,
            self.config.server.container_depot_path.clone(),
        );
        blocking(move || {
            rootfs::mount_overlay(&dir, &base, userns.as_ref().map(|ns| (ns, depot.as_path())))?;
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
            )
        })
        .await?;
        fail_point("identity")?;
        net::setup(&c.netns(), &self.net_spec(c))
            .await
            .map_err(|e| Error::Network(e.to_string()))?;
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
        fail_point("bundle")?;
        runtime::create(&self.exe, &c.runtime_root(), &c.id, &c.dir).await?;
        fail_point("init")?;
        Ok(())
    }

    fn net_spec(&self, c: &Container) -> net::NetSpec {
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
    async fn teardown(&self, c: &Container) -> Result<(), Error> {
        let mut errors = Vec::new();
        let t = std::time::Instant::now();
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
        let (root, id) = (c.runtime_root(), c.id.clone());
        let processes_gone = match blocking(move || runtime::delete(&root, &id)).await {
            Ok(()) => true,
            Err(e) => {
                errors.push(e.to_string());
                false
            }
        };
        tracing::debug!(handle = %c.handle, elapsed = ?t.elapsed(), "teardown: processes and cgroups gone");
        // The processes are gone, so unmounting the netns lets the kernel free it and the
        // veth pair; the network returns to the pool once the host's end is gone.
        let net_ok = match net::release(&c.netns()) {
            Ok(()) => true,
            Err(e) => {
                errors.push(e.to_string());
                false
            }
        };
        let dir = c.dir.clone();
        let fs = blocking(move || {
            rootfs::unmount_overlay(&dir)?;
            remove_dir_all_retry(&dir)
        })
        .await;
        if let Err(e) = &fs {
            errors.push(e.to_string());
        }
        tracing::debug!(handle = %c.handle, elapsed = ?t.elapsed(), "teardown: network, overlay and dir gone");
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

    async fn stop(&self, c: &Arc<Container>, kill: bool) -> Result<(), Error> {
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
        let inner = c.inner.lock().await;
        c.save(&inner);
        Ok(())
    }

    async fn destroy(&self, c: &Arc<Container>) -> Result<(), Error> {
        let _one_at_a_time = c.destroying.lock().await;
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
        let t = std::time::Instant::now();
        let _ = self.stop(c, true).await;
        tracing::debug!(handle = %c.handle, elapsed = ?t.elapsed(), "destroy: stopped");
        self.teardown(c).await?;
        c.inner.lock().await.state = State::Destroyed;
        self.registry.remove_if_same(&c.handle, c);
        tracing::info!(handle = %c.handle, id = %c.id, "container destroyed");
        Ok(())
    }

    // -----------------------------------------------------------------------------------
    // info

    async fn info(&self, c: &Container) -> Result<InfoResponse, Error> {
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
        drop(inner);
        let root = c.runtime_root();
        let id = c.id.clone();
        let (mem, cpu) =
            blocking(move || Ok((stats::memory(&root, &id), stats::cpu(&root, &id)))).await?;
        info.memory_stat = mem;
        info.cpu_stat = cpu;
        Ok(info)
    }

    // -----------------------------------------------------------------------------------
    // jobs

    async fn spawn(&self, c: &Arc<Container>, req: SpawnRequest) -> Result<u32, Error> {
        // The job is in the container's list (and snapshot) before its keeper starts, so a
        // daemon dying meanwhile still finds it; the lock is not held while the keeper
        // starts, so other requests on the container go on.
        let mut inner = c.inner.lock().await;
        inner.state.check(&[State::Active])?;
        let job_id = self.next_job.fetch_add(1, Ordering::SeqCst);
        let dir = c.jobs_dir().join(job_id.to_string());
        inner.jobs.insert(job_id, dir.clone());
        c.save(&inner);
        drop(inner);
        let privileged = req.privileged.unwrap_or(false);
        let spec = jobs::JobSpec {
            runtime_root: c.runtime_root(),
            container_id: c.id.clone(),
            script: req.script,
            uid: if privileged { 0 } else { c.uid },
            gid: if privileged { 0 } else { c.uid },
            privileged,
            rlimits: self.rlimits(req.rlimits.as_ref()),
            env: self.job_env(privileged),
            cwd: if privileged {
                "/root".into()
            } else {
                format!("/home/{}", rootfs::USER)
            },
            shell: rootfs::job_shell(&c.dir).into(),
            discard_output: req.discard_output.unwrap_or(false),
            output_limit: self.config.server.job_output_limit,
        };
        let started = jobs::spawn(&self.exe, &dir, &spec).await;
        let mut inner = c.inner.lock().await;
        if let Err(e) = started {
            inner.jobs.remove(&job_id);
            c.save(&inner);
            // The protocol's message is exactly this (SPEC 4); the cause goes to the log.
            tracing::warn!(handle = %c.handle, job_id, "cannot start the job: {e}");
            return Err(Error::Request("iomux-spawn failed".into()));
        }
        if inner.state != State::Active {
            // Stopped (or destroyed) while the keeper started: the job must not outlive that.
            jobs::kill(&dir, Signal::SIGKILL);
        }
        drop(inner);
        // Rewrite the snapshot when the job ends, so a restart knows it finished.
        if let Some(this) = self.this.upgrade() {
            let c = c.clone();
            tokio::spawn(async move {
                let dir = c.inner.lock().await.jobs.get(&job_id).cloned();
                if let Some(dir) = dir {
                    let _ = jobs::wait(&dir).await;
                }
                let inner = c.inner.lock().await;
                c.save(&inner);
                drop(this);
            });
        }
        Ok(job_id)
    }

    fn job_env(&self, privileged: bool) -> Vec<String> {
        let lang = std::env::var("LANG").unwrap_or_else(|_| "en_US.UTF-8".into());
        let (user, home) = if privileged {
            ("root".to_string(), "/root".to_string())
        } else {
            (rootfs::USER.to_string(), format!("/home/{}", rootfs::USER))
        };
        vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            format!("LANG={lang}"),
            format!("HOME={home}"),
            format!("USER={user}"),
        ]
    }

    /// The job's rlimits: SPEC 5's wsh defaults, then the config's container_rlimits, then
    /// the request's.
    fn rlimits(&self, req: Option<&ResourceLimits>) -> Vec<(String, u64)> {
        let mut out: BTreeMap<&'static str, u64> = BTreeMap::from([
            ("core", 0),
            ("memlock", 65536),
            ("msgqueue", 819200),
            ("nice", 0),
            ("nofile", 1024),
            ("nproc", 1024),
            ("rtprio", 0),
            ("sigpending", 1024),
            ("stack", 8 << 20),
        ]);
        // The config's and the request's limits have the same fields (`as` is `as_` in one
        // and a raw identifier in the other).
        macro_rules! named {
            ($r:expr, $as:ident) => {
                [
                    ("as", $r.$as),
                    ("core", $r.core),
                    ("cpu", $r.cpu),
                    ("data", $r.data),
                    ("fsize", $r.fsize),
                    ("locks", $r.locks),
                    ("memlock", $r.memlock),
                    ("msgqueue", $r.msgqueue),
                    ("nice", $r.nice),
                    ("nofile", $r.nofile),
                    ("nproc", $r.nproc),
                    ("rss", $r.rss),
                    ("rtprio", $r.rtprio),
                    ("sigpending", $r.sigpending),
                    ("stack", $r.stack),
                ]
            };
        }
        let config = named!(self.config.server.container_rlimits, as_);
        let request = req.map(|r| named!(r, r#as));
        for (k, v) in config.into_iter().chain(request.into_iter().flatten()) {
            if let Some(v) = v {
                out.insert(k, v);
            }
        }
        out.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    fn job_dir(inner: &Inner, job_id: u32) -> Result<PathBuf, Error> {
        inner
            .jobs
            .get(&job_id)
            .cloned()
            .ok_or_else(|| Error::Request("no such job".into()))
    }

    async fn link(&self, c: &Arc<Container>, job_id: u32) -> Result<LinkResponse, Error> {
        let dir = Self::job_dir(&*c.inner.lock().await, job_id)?;
        let result = jobs::link(&dir)
            .await
            .map_err(|e| Error::Runtime(e.to_string()))?;
        let mut inner = c.inner.lock().await;
        // Only the first linker removes the job; the others still get its result.
        if inner.jobs.remove(&job_id).is_some() {
            // The container's events are the protocol's (SPEC 4): only the output limit.
            if result.error.as_deref() == Some(jobs::OUTPUT_LIMIT_ERROR) {
                inner.events.push(jobs::OUTPUT_LIMIT_ERROR.to_string());
            }
            c.save(&inner);
            jobs::remove(&dir);
        }
        drop(inner);
        let info = self.info(c).await.ok();
        Ok(LinkResponse {
            exit_status: Some(result.exit_status),
            stdout: Some(result.stdout),
            stderr: Some(result.stderr),
            info,
        })
    }

    async fn stream(&self, c: &Arc<Container>, job_id: u32) -> Result<Reply, Error> {
        let dir = Self::job_dir(&*c.inner.lock().await, job_id)?;
        let (tx, reply) = Reply::channel(16);
        let this = self
            .this
            .upgrade()
            .expect("the manager is alive while it serves");
        let c = c.clone();
        tokio::spawn(async move {
            let mut chunks = jobs::stream(&dir);
            loop {
                // A client that went away leaves the job alone (SPEC 3.5): stop following it
                // at once, even while it writes nothing.
                let item = tokio::select! {
                    item = chunks.recv() => item,
                    _ = tx.closed() => return,
                };
                let Some(item) = item else { break };
                match item {
                    jobs::StreamItem::Chunk { name, data } => {
                        let r = StreamResponse {
                            name: Some(name.into()),
                            data: Some(data),
                            ..Default::default()
                        };
                        if tx.send(r.into()).await.is_err() {
                            // The client went away: the job is kept (SPEC 3.5).
                            return;
                        }
                    }
                    jobs::StreamItem::Exit { exit_status, .. } => {
                        if tx.is_closed() {
                            return;
                        }
                        let mut inner = c.inner.lock().await;
                        if inner.jobs.remove(&job_id).is_some() {
                            c.save(&inner);
                            jobs::remove(&dir);
                        }
                        drop(inner);
                        let info = this.info(&c).await.ok();
                        let r = StreamResponse {
                            exit_status: Some(exit_status),
                            info,
                            ..Default::default()
                        };
                        let _ = tx.send(r.into()).await;
                        return;
                    }
                    jobs::StreamItem::Error(e) => {
                        let _ = tx.send(Response::error(e)).await;
                        return;
                    }
                }
            }
        });
        Ok(reply)
    }

    // -----------------------------------------------------------------------------------
    // copy

    async fn copy_in(&self, c: &Arc<Container>, req: CopyInRequest) -> Result<(), Error> {
        c.inner.lock().await.state.check(&[State::Active])?;
        let root = rootfs::rootfs_dir(&c.dir);
        let uid = crate::container::userns::host_uid(&c.runtime_root(), &c.id, c.uid);
        blocking(move || {
            crate::copy::copy_in(
                &root,
                Path::new(&req.src_path),
                Path::new(&req.dst_path),
                (uid, uid),
            )
            .map_err(|e| Error::Request(e.to_string()))
        })
        .await
    }

    async fn copy_out(&self, c: &Arc<Container>, req: CopyOutRequest) -> Result<(), Error> {
        c.inner
            .lock()
            .await
            .state
            .check(&[State::Active, State::Stopped])?;
        let root = rootfs::rootfs_dir(&c.dir);
        blocking(move || {
            let owner = match &req.owner {
                Some(o) => {
                    Some(crate::copy::resolve_owner(o).map_err(|e| Error::Request(e.to_string()))?)
                }
                None => None,
            };
            crate::copy::copy_out(
                &root,
                Path::new(&req.src_path),
                Path::new(&req.dst_path),
                owner,
            )
            .map_err(|e| Error::Request(e.to_string()))
        })
        .await
    }

    // -----------------------------------------------------------------------------------
    // limits (SPEC 3.8)

    async fn limit_memory(&self, c: &Arc<Container>, limit: Option<u64>) -> Result<u64, Error> {
        c.inner
            .lock()
            .await
            .state
            .check(&[State::Active, State::Stopped])?;
        let (root, id) = (c.runtime_root(), c.id.clone());
        let value = blocking(move || limits::set_memory(&root, &id, limit)).await?;
        if limit.is_some() {
            let mut inner = c.inner.lock().await;
            inner.limit_memory = limit;
            c.save(&inner);
            drop(inner);
            self.arm_oom(c).await;
        }
        Ok(value)
    }

    async fn limit_cpu(&self, c: &Arc<Container>, shares: Option<u64>) -> Result<u64, Error> {
        c.inner
            .lock()
            .await
            .state
            .check(&[State::Active, State::Stopped])?;
        let (root, id) = (c.runtime_root(), c.id.clone());
        let last = c.inner.lock().await.limit_cpu;
        let value = blocking(move || limits::set_cpu_shares(&root, &id, shares, last)).await?;
        if shares.is_some() {
            let mut inner = c.inner.lock().await;
            inner.limit_cpu = shares;
            c.save(&inner);
        }
        Ok(value)
    }

    // -----------------------------------------------------------------------------------
    // net_in / net_out (SPEC 3.6)

    async fn net_in(&self, c: &Arc<Container>, req: NetInRequest) -> Result<NetInResponse, Error> {
        let mut inner = c.inner.lock().await;
        inner.state.check(&[State::Active])?;
        let port = |p: u32, what: &str| {
            u16::try_from(p)
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| Error::Request(format!("Invalid {what}: {p}")))
        };
        let container_port = req
            .container_port
            .map(|p| port(p, "container port"))
            .transpose()?;
        let (host_port, from_pool) = match req.host_port {
            // An explicit port is used as is; one inside the pool that is free is taken out
            // of it, so the pool never hands it to another container.
            Some(p) => {
                let p = port(p, "host port")?;
                (p, self.ports.remove(p))
            }
            None => (
                self.ports
                    .acquire()
                    .map_err(|e| Error::Request(e.to_string()))?,
                true,
            ),
        };
        let container_port = container_port.unwrap_or(host_port);
        let (table, ip) = (
            self.config.network.nftables_table.clone(),
            c.network.container_ip(),
        );
        let added = blocking(move || {
            net::firewall::net_in(&table, host_port, ip, container_port)
                .map_err(|e| Error::Network(e.to_string()))
        })
        .await;
        if let Err(e) = added {
            if from_pool {
                self.ports.release(host_port);
            }
            return Err(e);
        }
        if from_pool {
            inner.ports.push(host_port);
        }
        inner.net_in.push((host_port, container_port));
        c.save(&inner);
        Ok(NetInResponse {
            host_port: host_port.into(),
            container_port: container_port.into(),
        })
    }

    async fn net_out(&self, c: &Arc<Container>, req: NetOutRequest) -> Result<(), Error> {
        let mut inner = c.inner.lock().await;
        inner.state.check(&[State::Active])?;
        let rule = net::firewall::NetOut::from_request(&req).map_err(Error::Request)?;
        let (table, id, ip, r) = (
            self.config.network.nftables_table.clone(),
            c.id.clone(),
            c.network.container_ip(),
            rule.clone(),
        );
        blocking(move || {
            net::firewall::net_out(&table, &id, ip, &r).map_err(|e| Error::Network(e.to_string()))
        })
        .await?;
        inner.net_out.push(rule);
        c.save(&inner);
        Ok(())
    }

    /// Starts the container's OOM notifier once: on an OOM the container gets the event
    /// `out of memory` and, if active, is stopped (SPEC 3.8).
    async fn arm_oom(&self, c: &Arc<Container>) {
        {
            let mut inner = c.inner.lock().await;
            if inner.oom_armed {
                return;
            }
            inner.oom_armed = true;
        }
        let notifier = match limits::oom_notifier(&c.runtime_root(), &c.id) {
            Ok(Some(n)) => n,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(handle = %c.handle, "cannot watch for OOM: {e}");
                c.inner.lock().await.oom_armed = false;
                return;
            }
        };
        let Some(this) = self.this.upgrade() else {
            return;
        };
        let c = c.clone();
        tokio::spawn(async move {
            // SAFETY: the AsyncFd owns the notifier, whose fd stays open and the same until
            // the notifier is dropped.
            let registered = unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(
                    notifier,
                    tokio::io::Interest::READABLE,
                )
            };
            let Ok(mut fd) = registered else {
                return;
            };
            loop {
                let Ok(mut ready) = fd.readable_mut().await else {
                    return;
                };
                match ready.get_inner_mut().check() {
                    limits::Oom::Happened => break,
                    limits::Oom::Gone => return,
                    limits::Oom::Nothing => ready.clear_ready(),
                }
            }
            tracing::info!(handle = %c.handle, "out of memory");
            let active = {
                let mut inner = c.inner.lock().await;
                inner.events.push(OUT_OF_MEMORY.to_string());
                c.save(&inner);
                inner.state == State::Active
            };
            if active {
                if let Err(e) = this.stop(&c, false).await {
                    tracing::warn!(handle = %c.handle, "stop after OOM: {e}");
                }
            }
        });
    }

    // -----------------------------------------------------------------------------------
    // grace time (SPEC 3.1, 3.3)

    fn reference(&self, conn: u64, c: &Arc<Container>) {
        self.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(conn)
            .or_default()
            .insert(c.handle.clone());
        let mut g = c.grace.lock().unwrap_or_else(|e| e.into_inner());
        if g.refs.insert(conn) {
            g.epoch += 1; // cancels a pending timer
        }
    }

    fn release_reference(&self, conn: u64, c: &Arc<Container>) {
        let mut g = c.grace.lock().unwrap_or_else(|e| e.into_inner());
        g.refs.remove(&conn);
        if g.refs.is_empty() {
            drop(g);
            self.arm_grace(c);
        }
    }

    /// Starts the container's grace timer (a no-op without a grace time).
    fn arm_grace(&self, c: &Arc<Container>) {
        let Some(after) = c.grace_time else { return };
        let epoch = {
            let mut g = c.grace.lock().unwrap_or_else(|e| e.into_inner());
            g.epoch += 1;
            g.epoch
        };
        let Some(this) = self.this.upgrade() else {
            return;
        };
        let c = c.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let fire = {
                let g = c.grace.lock().unwrap_or_else(|e| e.into_inner());
                g.epoch == epoch && g.refs.is_empty()
            };
            if fire {
                tracing::info!(handle = %c.handle, "grace time expired: destroying");
                if let Err(e) = this.destroy(&c).await {
                    tracing::warn!(handle = %c.handle, "grace-time destroy: {e}");
                }
            }
        });
    }

    // -----------------------------------------------------------------------------------
    // recovery (SPEC 3.11)

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
        for dir in dirs {
            match self.recover_one(&dir).await {
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
        self.next_job.fetch_max(max_job + 1, Ordering::SeqCst);
        Ok(())
    }

    async fn recover_one(&self, dir: &Path) -> Result<(Arc<Container>, u32), Error> {
        let snap = Snapshot::load(dir)?;
        let id = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
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
            inner: Mutex::new(Inner {
                state: snap.state,
                events: snap.events,
                jobs: jobs_map,
                obituary: None,
                limit_memory: snap.limit_memory,
                limit_cpu: snap.limit_cpu,
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
        if let Err(e) = blocking(move || {
            rootfs::unmount_overlay(&d)?;
            remove_dir_all_retry(&d)
        })
        .await
        {
            tracing::warn!(dir = %dir.display(), "{e}");
        }
    }

    // -----------------------------------------------------------------------------------
    // dispatch

    async fn answer(&self, ctx: &RequestContext<'_>, request: Request) -> Result<Reply, Error> {
        let conn = ctx.conn();
        Ok(match request {
            r @ (Request::Ping(_) | Request::Echo(_) | Request::List(_)) => {
                Reply::Single(self.dispatcher.answer(r))
            }
            Request::Create(req) => {
                let handle = self.create(req, conn).await?;
                Reply::Single(CreateResponse { handle }.into())
            }
            Request::Stop(req) => {
                let c = self.container(&req.handle, conn)?;
                self.stop_request(c, req).await?;
                Reply::Single(StopResponse {}.into())
            }
            Request::Destroy(req) => {
                let c = self.container(&req.handle, conn)?;
                self.destroy(&c).await?;
                Reply::Single(DestroyResponse {}.into())
            }
            Request::Info(req) => {
                let c = self.container(&req.handle, conn)?;
                Reply::Single(self.info(&c).await?.into())
            }
            Request::Spawn(req) => {
                let c = self.container(&req.handle, conn)?;
                let job_id = self.spawn(&c, req).await?;
                Reply::Single(SpawnResponse { job_id }.into())
            }
            Request::Link(req) => {
                let c = self.container(&req.handle, conn)?;
                Reply::Single(self.link(&c, req.job_id).await?.into())
            }
            Request::Run(req) => {
                let c = self.container(&req.handle, conn)?;
                let spawn = SpawnRequest {
                    handle: req.handle,
                    script: req.script,
                    privileged: req.privileged,
                    rlimits: req.rlimits,
                    discard_output: req.discard_output,
                    log_tag: req.log_tag,
                };
                let job_id = self.spawn(&c, spawn).await?;
                let l = self.link(&c, job_id).await?;
                Reply::Single(
                    RunResponse {
                        exit_status: l.exit_status,
                        stdout: l.stdout,
                        stderr: l.stderr,
                        info: l.info,
                    }
                    .into(),
                )
            }
            Request::Stream(req) => {
                let c = self.container(&req.handle, conn)?;
                self.stream(&c, req.job_id).await?
            }
            Request::CopyIn(req) => {
                let c = self.container(&req.handle, conn)?;
                self.copy_in(&c, req).await?;
                Reply::Single(CopyInResponse {}.into())
            }
            Request::CopyOut(req) => {
                let c = self.container(&req.handle, conn)?;
                self.copy_out(&c, req).await?;
                Reply::Single(CopyOutResponse {}.into())
            }
            Request::LimitMemory(req) => {
                let c = self.container(&req.handle, conn)?;
                let limit_in_bytes = self.limit_memory(&c, req.limit_in_bytes).await?;
                Reply::Single(
                    LimitMemoryResponse {
                        limit_in_bytes: Some(limit_in_bytes),
                    }
                    .into(),
                )
            }
            Request::LimitCpu(req) => {
                let c = self.container(&req.handle, conn)?;
                let limit_in_shares = self.limit_cpu(&c, req.limit_in_shares).await?;
                Reply::Single(
                    LimitCpuResponse {
                        limit_in_shares: Some(limit_in_shares),
                    }
                    .into(),
                )
            }
            Request::NetIn(req) => {
                let c = self.container(&req.handle, conn)?;
                Reply::Single(self.net_in(&c, req).await?.into())
            }
            Request::NetOut(req) => {
                let c = self.container(&req.handle, conn)?;
                self.net_out(&c, req).await?;
                Reply::Single(NetOutResponse {}.into())
            }
            other => {
                let handle = other.container_handle().unwrap_or_default().to_string();
                let c = self.container(&handle, conn)?;
                let allowed: &[State] = match other {
                    Request::NetIn(_) | Request::NetOut(_) => &[State::Active],
                    _ => &[State::Active, State::Stopped],
                };
                c.inner.lock().await.state.check(allowed)?;
                Reply::error(format!("{} is not supported yet", other.type_name()))
            }
        })
    }

    async fn stop_request(&self, c: Arc<Container>, req: StopRequest) -> Result<(), Error> {
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

impl Handler for Manager {
    async fn on_connect(&self, conn: &ConnectionContext) {
        // SPEC 3.1: a new connection references every container (cancelling their timers).
        for (_, c) in self.registry.all() {
            self.reference(conn.id(), &c);
        }
    }

    async fn handle(&self, ctx: &RequestContext<'_>, request: Request) -> Reply {
        match self.answer(ctx, request).await {
            Ok(reply) => reply,
            Err(e) => Reply::error(e.to_string()),
        }
    }

    async fn on_shutdown(&self) {
        // Containers outlive the daemon; the cgroup parent goes only when none is left
        // (rmdir refuses a cgroup that has children).
        if self.registry.is_empty() {
            let parent = &self.config.server.cgroup_parent;
            for e in std::fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
            {
                let _ = std::fs::remove_dir(e.path().join(parent));
            }
        }
    }

    async fn on_disconnect(&self, conn: &ConnectionContext) {
        let handles = self
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&conn.id())
            .unwrap_or_default();
        for h in handles {
            if let Ok(c) = self.registry.get(&h) {
                self.release_reference(conn.id(), &c);
            }
        }
    }
}

/// Runs blocking work (syscalls, file trees) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Runtime(format!("blocking task failed: {e}")))?
}

fn write_executable(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::read(path).is_ok_and(|d| d == data) {
        return Ok(());
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&tmp, path)
}

/// rm -rf, retried a few times (a just-killed process may still hold a mount busy). Refused
/// while anything is still mounted below `dir`: rm would go down into it (a bind mount's
/// source on the host, say).
fn remove_dir_all_retry(dir: &Path) -> Result<(), Error> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if let Some(m) = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .find(|p| p.starts_with(dir))
    {
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
