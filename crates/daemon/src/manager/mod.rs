//! The container manager: answers every container request (SPEC 3) and owns the containers'
//! life from create to destroy, grace timers, and recovery after a daemon restart.
//!
//! This file holds the [`Manager`] (its registry and pools), the [`Container`] record, and
//! the dispatch of requests ([`Manager::answer`]). Each request family is answered in its own
//! file, an `impl Manager` block over the mechanisms in [`crate::container`], [`crate::jobs`],
//! [`crate::net`] and [`crate::copy`]:
//!
//! - `lifecycle`: create (its steps and rollback), stop, destroy, and the teardown they share.
//! - `job_requests`: spawn, link and stream (run is spawn then link).
//! - `info`: info.
//! - `copy_requests`: copy_in and copy_out.
//! - `limit_requests`: limit_memory, limit_cpu, limit_disk, limit_bandwidth, and the OOM
//!   notifier a memory
//!   limit arms.
//! - `net_requests`: net_in, net_out, and the host's packet filter set up before the first
//!   container.
//! - `grace`: the connections' references to containers and the grace timers.
//! - `recovery`: taking back the depot's containers after a daemon restart.

mod copy_requests;
mod grace;
mod info;
mod job_requests;
mod lifecycle;
mod limit_requests;
mod net_requests;
mod recovery;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use tokio::sync::Mutex;
use warden_protocol::{
    CopyInResponse, CopyOutResponse, CreateResponse, DestroyResponse, InfoResponse,
    LimitBandwidthResponse, LimitCpuResponse, LimitMemoryResponse, NetOutResponse, Request,
    RunResponse, SpawnRequest, SpawnResponse, StopResponse,
};

use crate::config::Config;
use crate::container::disk::{self, Disks};
use crate::container::snapshot::Snapshot;
use crate::container::{Error, State};
use crate::dispatch::Dispatcher;
use crate::handler::{ConnectionContext, Handler, Reply, RequestContext};
use crate::helper::Helper;
use crate::net;
use crate::pool::{Network, NetworkPool, PortPool, UidPool};
use crate::registry::Registry;

/// One container.
pub struct Container {
    pub id: String,
    pub handle: String,
    pub dir: PathBuf,
    pub network: Network,
    pub uid: u32,
    pub grace_time: Option<Duration>,
    pub base_rootfs: PathBuf,
    /// The quota backend its layer is a unit of (set at create); None: no disk quota.
    pub disk_quota: Option<disk::Kind>,
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
    /// Links still reading a job's dir, by job id: the last one removes the dir.
    linking: BTreeMap<u32, u32>,
    /// The info kept when a destroy begins (SPEC 3.4's obituary), for linkers.
    obituary: Option<InfoResponse>,
    limit_memory: Option<u64>,
    limit_cpu: Option<u64>,
    /// The last limit_bandwidth (rate, burst); the kernel holds it, info reads it there.
    limit_bandwidth: Option<(u64, u64)>,
    /// The limits of the last limit_disk.
    limit_disk: Option<disk::Limits>,
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

    /// Where the overlay's upper and work dirs live: the quota unit.
    fn layer(&self) -> PathBuf {
        disk::layer_dir(&self.dir)
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
            limit_bandwidth: inner.limit_bandwidth,
            ports: inner.ports.clone(),
            net_in: inner.net_in.clone(),
            net_out: inner.net_out.clone(),
            disk_quota: self.disk_quota,
            limit_disk: inner.limit_disk,
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
    /// wardend re-executed as the create helper and as each job's keeper, one started ahead
    /// (see [`crate::helper`]).
    create_helper: Arc<Helper>,
    keeper: Arc<Helper>,
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
    /// Where that profile's compiled program is, for the create helper (`<depot>/.seccomp`).
    seccomp_cache: PathBuf,
    /// The host's cgroup mounts (their lines of /proc/self/mountinfo), read at start for
    /// the create helper: the whole text grows with every container's mounts.
    cgroup_mounts: String,
    /// The mount namespace the containers' are made from; `None` if it could not be made
    /// (then each is a copy of the host's, as runc's are).
    mount_seed: Option<Arc<crate::container::runtime::MountSeed>>,
    /// Whether the containers' cgroup parent is made and set up (by the first create: a
    /// daemon that makes no container makes no cgroup).
    cgroup_parent_ready: std::sync::atomic::AtomicBool,
    /// The disk quota backend of the depot (chosen at start).
    disks: Arc<Disks>,
    /// Lets timers and background stops reach the manager.
    this: std::sync::Weak<Manager>,
}

/// The bytes of warden-init, built by build.rs. A static, not a const: a const's bytes can be
/// copied into each codegen unit that names it (wardend once held three copies, 2.4 MB).
static INIT_BINARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/warden-init"));

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
        if let Some(ns) = &config.user.namespace {
            crate::container::userns::make_fuse_node(&init)?;
            // The idmapped base's namespace, made here rather than by the first create.
            if ns.rootfs == crate::config::NamespaceRootfs::Auto {
                if let Err(e) = crate::container::userns::prepare(ns) {
                    tracing::warn!("no user namespace for idmapped mounts ({e}): creates will use the chowned copy");
                }
            }
        }
        let seccomp_cache = depot.join(".seccomp");
        let cgroup_mounts = warden_runtime::cgroups::cgroup_mountinfo()
            .map_err(|e| anyhow::anyhow!("the host's cgroup mounts: {e}"))?;
        let mount_seed = crate::container::runtime::MountSeed::make(
            &depot,
            &bin,
            &config.server.container_rootfs_path,
        )
        .map(Arc::new)
        .map_err(|e| tracing::warn!("no mount namespace seed ({e}): each container's mount namespace will be a copy of the host's"))
        .ok();
        let seccomp =
            crate::container::seccomp::load(&config.server.seccomp_profile, &seccomp_cache)
                .map_err(|e| anyhow::anyhow!("config key server.container_seccomp_profile: {e}"))?;
        let (table, pool) = (
            config.network.nftables_table.clone(),
            config.network.pool_network,
        );
        let other = tokio::task::spawn_blocking(move || {
            net::firewall::foreign_overlapping_table(&table, pool)
        })
        .await?;
        if let Some((name, theirs)) = other.map_err(|e| anyhow::anyhow!("{e}"))? {
            anyhow::bail!(
                "config key network.pool_network: {pool} overlaps the pool {theirs} of the \
                 nftables table ip {name}, which another wardend made and whose rules would \
                 reject these containers' traffic: use another pool, set \
                 network.nftables_table: {name} to take that table over, or remove it \
                 (nft delete table ip {name}) if no daemon uses it"
            );
        }
        let disks = Disks::detect(
            &depot,
            config.server.disk_quota_enabled,
            config.server.disk_quota_backend,
        )
        .map_err(|e| anyhow::anyhow!("config key server.quota.disk_quota_backend: {e}"))?;
        match &disks {
            Disks::Unsupported(why) => tracing::warn!("disk quotas: none ({why})"),
            d => tracing::info!("{}", d.describe()),
        }
        let registry = Arc::new(Registry::new());
        let manager = Arc::new_cyclic(|this| Manager {
            networks: NetworkPool::from_config(&config.network),
            uids: UidPool::from_config(&config.user),
            ports: PortPool::from_config(&config.port),
            dispatcher: Dispatcher::new(registry.clone()),
            registry,
            config,
            create_helper: Helper::new(&exe, crate::container::runtime::CREATE_ARG),
            keeper: Helper::new(&exe, crate::jobs::keeper::KEEPER_ARG),
            init,
            next_job: AtomicU32::new(1),
            conns: StdMutex::new(HashMap::new()),
            firewall: Mutex::new(false),
            seccomp,
            seccomp_cache,
            cgroup_mounts,
            mount_seed,
            cgroup_parent_ready: std::sync::atomic::AtomicBool::new(false),
            disks: Arc::new(disks),
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
            Request::LimitBandwidth(req) => {
                let c = self.container(&req.handle, conn)?;
                let (rate, burst) = self.limit_bandwidth(&c, req.rate, req.burst).await?;
                Reply::Single(LimitBandwidthResponse { rate, burst }.into())
            }
            Request::LimitDisk(req) => {
                let c = self.container(&req.handle, conn)?;
                Reply::Single(self.limit_disk(&c, &req).await?.into())
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
        })
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
