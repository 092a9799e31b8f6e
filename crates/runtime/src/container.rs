//! The container lifecycle: create, start, kill, delete, pause, resume, and what `state`,
//! `list` and `ps` report. Each operation is a short function over `State`; the status rules
//! live on `Status`.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{self, OFlag};
use nix::sched::CloneFlags;
use nix::sys::signal::{self, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::{
    LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxNamespaceType,
    LinuxResources, Spec,
};

use crate::cgroups::{self, Manager};
use crate::error::{Error, IoContext, Result, SysContext};
use crate::hooks::{self, Kind};
use crate::namespaces::{self, Plan};
use crate::process::{self, channel, init::InitArgs};
use crate::spec::Bundle;
use crate::state::{self, State, Status};
use crate::steps::Steps;

#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    /// The state root, e.g. /run/warden-runc.
    pub root: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    /// With `no_new_keyring`: the caller already joined a session keyring of the container's
    /// own (wardend, which makes them as host root against the per-uid key quota), so the
    /// init keeps it and the container's execs still get keyrings of their own.
    pub keyring_joined: bool,
    /// Extra fds (3, 4, ...) the container inherits.
    pub preserve_fds: i32,
    /// Where the master of the container's terminal goes (when `process.terminal`); without
    /// it, the caller gets the master in `Created::console`.
    pub console_socket: Option<PathBuf>,
    /// The caller will not stay attached (`create`, `run -d`): a terminal then needs a
    /// console socket.
    pub detach: bool,
    /// A dir of compiled seccomp programs shared by many creates with the same profile (see
    /// `seccomp::compile_cached`); wardend gives one, warden-runc none.
    pub seccomp_cache: Option<PathBuf>,
    /// The host's cgroup mounts as [`cgroups::cgroup_mountinfo`] gave them, read once by a
    /// caller that creates many containers (wardend); without it, /proc/self/mountinfo is
    /// read, whose size grows with every mount on the host.
    pub cgroup_mountinfo: Option<String>,
    /// runc's `--systemd-cgroup`: `cgroupsPath` is `slice:prefix:name` and, where systemd
    /// manages the host, systemd makes the cgroup as a transient scope (`cgroups::systemd`).
    pub systemd_cgroup: bool,
    /// A mount namespace (an nsfs file) to make the container's from, instead of a copy of
    /// the caller's (see `rootfs::seed`): wardend's holds none of its containers' mounts.
    pub mount_seed: Option<PathBuf>,
    /// Dirs the seed shows as the caller's namespace does (plain dirs of the caller's, on a
    /// mount the seed keeps): a bind source below one is bound in the seed by path rather
    /// than copied from the caller's namespace first. A copy (`open_tree`) walks every mount
    /// beside the source on its mount, and `/` holds every container's.
    pub mount_seed_shares: Vec<PathBuf>,
}

/// The compiled seccomp program in a container's state dir, for its execs.
const SECCOMP_PROGRAM: &str = "seccomp.bpf";

/// What `exec` runs and how.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    pub process: oci_spec::runtime::Process,
    pub console_socket: Option<PathBuf>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: i32,
    pub ignore_paused: bool,
    /// Where under the container's cgroup the process goes (runc's `exec --cgroup`).
    pub sub_cgroup: SubCgroup,
}

/// An existing sub-cgroup of the container's for an exec'd process: `all` in every
/// hierarchy, or per controller (cgroup v1), relative to the container's cgroup. Empty: the
/// container's own.
#[derive(Debug, Clone, Default)]
pub struct SubCgroup {
    pub all: Option<PathBuf>,
    pub per_controller: BTreeMap<String, PathBuf>,
}

impl SubCgroup {
    fn is_empty(&self) -> bool {
        self.all.is_none() && self.per_controller.is_empty()
    }

    /// The cgroup dirs of the container's `paths` with the sub-cgroups in them; each must
    /// exist and stay below the container's.
    fn resolve(&self, paths: &BTreeMap<String, PathBuf>) -> Result<BTreeMap<String, PathBuf>> {
        let v2 = paths.keys().all(|k| k.is_empty());
        for c in self.per_controller.keys() {
            if v2 {
                return Err(Error::Config(format!(
                    "exec --cgroup {c}:...: a controller can only be named on cgroup v1 \
                     (this host has the unified hierarchy; give a path alone)"
                )));
            }
            if !paths.contains_key(c) {
                return Err(Error::Config(format!(
                    "exec --cgroup {c}:...: the container has no {c} cgroup"
                )));
            }
        }
        let mut out = BTreeMap::new();
        for (key, dir) in paths {
            let sub = self.per_controller.get(key).or(self.all.as_ref());
            let Some(sub) = sub else {
                out.insert(key.clone(), dir.clone());
                continue;
            };
            let rel = sub.strip_prefix("/").unwrap_or(sub);
            if rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                return Err(Error::Config(format!(
                    "exec --cgroup {}: the path must stay below the container's cgroup",
                    sub.display()
                )));
            }
            let target = dir.join(rel);
            if !target.is_dir() {
                let name = if key.is_empty() { "unified" } else { key };
                return Err(Error::Config(format!(
                    "exec --cgroup {}: no such sub-cgroup {} ({name})",
                    sub.display(),
                    target.display()
                )));
            }
            out.insert(key.clone(), target);
        }
        Ok(out)
    }
}

/// A created container: its state, and the init's pid (our child until we exit).
pub struct Created {
    pub state: State,
    pub init: Pid,
    /// The terminal's master, when the container has one and no console socket took it.
    pub console: Option<OwnedFd>,
    /// Where the create's time went: the bundle and its spec (`spec`), the seccomp program
    /// (compiled or found in the cache), the mounts made before the clone (idmapped ones,
    /// the seed's: `mounts`), the state dir, the cgroups, the clone with the namespaces
    /// entered (`clone`), the init's own setup until it is ready (`init_setup`: rootfs,
    /// mounts, security, hooks), and the state saved.
    pub steps: Steps,
}

/// Everything a failed create must take back, in reverse order of acquisition.
struct Undo {
    dir: Option<PathBuf>,
    cgroup: Option<Box<dyn Manager>>,
    /// The cgroup had processes before the create: released, not destroyed.
    cgroup_shared: bool,
    child: Option<Pid>,
    /// Without a mount namespace: what the init mounted into the host's.
    host_mounts: Option<state::HostMounts>,
    /// The systemd unit started for the container.
    systemd_unit: Option<String>,
}

impl Undo {
    fn disarm(&mut self) {
        self.dir = None;
        self.cgroup = None;
        self.systemd_unit = None;
        self.child = None;
        self.host_mounts = None;
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        if let Some(pid) = self.child.take() {
            let _ = signal::kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
        if let Some(m) = self.host_mounts.take() {
            m.take_back();
        }
        if let Some(unit) = self.systemd_unit.take() {
            if let Err(e) = cgroups::systemd::Bus::connect().and_then(|b| b.stop(&unit)) {
                tracing::warn!("undo create: {e}");
            }
        }
        if let Some(cg) = self.cgroup.take() {
            if self.cgroup_shared {
                release_shared_cgroup(&cg.paths());
            } else if let Err(e) = cg.destroy() {
                tracing::warn!("undo create: {e}");
            }
        }
        if let Some(dir) = self.dir.take() {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!("undo create: remove {}: {e}", dir.display());
            }
        }
    }
}

/// Creates a container and leaves its init waiting for `start`. On any failure everything
/// already made (state dir, fifo, cgroup, process) is taken back before returning.
///
/// Must be called from a single-threaded process (see `process`).
pub fn create(opts: &CreateOptions) -> Result<Created> {
    let mut steps = Steps::new();
    state::validate_id(&opts.id)?;
    let bundle = Bundle::load(&opts.bundle)?;
    let spec = &bundle.spec;
    let plan = Plan::from_spec(spec)?;
    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    if terminal && opts.detach && opts.console_socket.is_none() {
        return Err(Error::Config(
            "cannot allocate tty if runc will detach without setting console socket".into(),
        ));
    }
    if !terminal && opts.console_socket.is_some() {
        return Err(Error::Config(
            "cannot use console socket if runc will not detach or allocate tty".into(),
        ));
    }
    steps.mark("spec");
    // Compiled here, before anything of the container exists; the init loads it.
    let seccomp_profile = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
    let seccomp = seccomp_profile
        .as_ref()
        .map(|p| {
            let cached = opts
                .seccomp_cache
                .as_ref()
                .map(|d| d.join(crate::security::seccomp::cache_name(p)));
            crate::security::seccomp::compile_cached(p, cached.as_deref())
        })
        .transpose()?;
    steps.mark("seccomp");

    // Idmapped mounts are made here, in the host's user namespace (the init, in a user
    // namespace of its own, could not idmap a host filesystem) and before anything of the
    // container exists; the init attaches them.
    let mut detached = crate::rootfs::idmap::detached_mounts(spec, &bundle.dir)?;
    // With a seed, the init's namespace is a copy of the seed's: what it takes from ours by
    // path is copied here first (see `rootfs::seed`). A mount namespace given by path is
    // the container's as it is.
    let new_mount_ns = plan.clone_flags.contains(CloneFlags::CLONE_NEWNS);
    let seed = match &opts.mount_seed {
        Some(path) if new_mount_ns => Some(crate::rootfs::seed::open_seed(path)?),
        _ => None,
    };
    let rootfs_tree = match seed {
        Some(_) => {
            crate::rootfs::seed::bind_sources(
                spec,
                &bundle.dir,
                &opts.mount_seed_shares,
                &mut detached,
            )?;
            Some(crate::rootfs::seed::rootfs(&bundle.rootfs)?)
        }
        None => None,
    };
    steps.mark("mounts");

    state::ensure_root(&opts.root)?;
    let dir = State::dir(&opts.root, &opts.id);
    match std::fs::DirBuilder::new().mode(0o711).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::Exists(opts.id.clone()))
        }
        Err(e) => return Err(Error::io("mkdir", dir, e)),
    }
    if let (Some(filter), Some(profile)) = (&seccomp, &seccomp_profile) {
        filter.save(profile, &dir.join(SECCOMP_PROGRAM));
    }
    let mut undo = Undo {
        dir: Some(dir.clone()),
        cgroup: None,
        cgroup_shared: false,
        child: None,
        host_mounts: None,
        systemd_unit: None,
    };

    let fifo_path = dir.join(state::EXEC_FIFO);
    nix::unistd::mkfifo(&fifo_path, Mode::from_bits_truncate(0o622))
        .sys(format!("mkfifo {}", fifo_path.display()))?;
    // mkfifo honours our umask: the init, possibly no longer root, must be able to open it.
    std::fs::set_permissions(
        &fifo_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o622),
    )
    .ctx("chmod", &fifo_path)?;
    let fifo: OwnedFd = fcntl::open(&fifo_path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .sys(format!("open {}", fifo_path.display()))?;
    steps.mark("state_dir");

    let linux = spec.linux().as_ref();
    let cgroups_path = linux.and_then(|l| l.cgroups_path().as_ref());
    let cgroups_path = cgroups_path.map(|p| p.to_string_lossy());
    let systemd = systemd_plan(opts.systemd_cgroup, &opts.id, cgroups_path.as_deref())?;
    let mi = opts.cgroup_mountinfo.as_deref();
    let cg = match &systemd {
        Some((_, path)) => cgroups::new_manager_with(mi, Some(path), &opts.id)?,
        None => cgroups::new_manager_with(mi, cgroups_path.as_deref(), &opts.id)?,
    };
    // Joining a cgroup that already has processes is allowed (runc warns too), but then it
    // is not ours alone: neither a failed create nor a delete may remove it, killing its
    // other members (see `release_shared_cgroup`).
    let others = cg.procs().unwrap_or_default().len();
    if others > 0 {
        tracing::warn!("container's cgroup is not empty: {others} process(es) found");
        undo.cgroup_shared = true;
    }
    let resources = resources_with_default_devices(spec);
    // A systemd unit is started once the init exists (its pid goes in the unit); the
    // cgroup is made and its limits written then.
    if systemd.is_none() {
        cg.create()?;
    }
    let cgroup_paths = cg.paths();
    let cg = &**undo.cgroup.insert(cg);
    if systemd.is_none() {
        cg.apply(&resources)?;
    }
    steps.mark("cgroups");

    let annotations = spec.annotations().clone().unwrap_or_default();
    let mut st = State {
        id: opts.id.clone(),
        pid: 0,
        start_time: 0,
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: state::rfc3339_now(),
        owner: owner_name(),
        annotations: annotations.into_iter().collect(),
        cgroup_paths: cgroup_paths.clone(),
        cgroup_shared: undo.cgroup_shared,
        systemd_unit: systemd.as_ref().map(|(u, _)| u.unit.clone()),
        host_mounts: None,
        resources: linux.and_then(|l| l.resources().clone()),
        hooks: spec.hooks().clone(),
        namespaces: plan
            .types
            .iter()
            .map(|t| namespaces::proc_name(*t).to_string())
            .collect(),
        config_path: bundle.config_path.clone(),
        seccomp: seccomp_profile,
        external_descriptors: Vec::new(),
        personality: linux.and_then(|l| l.personality().clone()),
        shared_keyring: opts.no_new_keyring && !opts.keyring_joined,
    };

    let (parent_ch, child_ch) = channel::pair()?;
    if !plan.has(LinuxNamespaceType::Mount) {
        let rootfs = std::fs::canonicalize(&bundle.rootfs).ctx("resolve", &bundle.rootfs)?;
        let before = crate::rootfs::mounts_under(&rootfs)?;
        let m = state::HostMounts { rootfs, before };
        st.host_mounts = Some(m.clone());
        undo.host_mounts = Some(m);
    }
    plan.enter_pid_namespace()?;
    let runtime_time_ns = plan.enter_time_namespace()?;
    // A new cgroup namespace is made by the init itself once it is in its cgroup (see
    // `Plan::clone_flags_for_init`), so that the namespace is rooted there.
    let own_ns = match plan.enter_for_init() {
        Ok(o) => o,
        Err(e) => {
            let _ = plan.leave_time_namespace(runtime_time_ns);
            return Err(e);
        }
    };
    // The seed last: the init is cloned from it, and the parent goes back right after.
    let in_seed = match seed.as_ref().map(crate::rootfs::seed::enter).transpose() {
        Ok(s) => s,
        Err(e) => {
            let _ = Plan::leave_for_init(own_ns);
            let _ = plan.leave_time_namespace(runtime_time_ns);
            return Err(e);
        }
    };
    // SAFETY: warden-runc is single-threaded (documented requirement of `create`), and
    // the child ends in exec or _exit inside `process::init::run`.
    let cloned = unsafe { process::clone_fork(plan.clone_flags_for_init()) };
    let left = match &cloned {
        Ok(pid) if pid.as_raw() == 0 => Ok(()),
        _ => in_seed.map_or(Ok(()), crate::rootfs::seed::Entered::leave),
    };
    let pid = match cloned {
        Ok(pid) => pid,
        Err(e) => {
            let _ = Plan::leave_for_init(own_ns);
            let _ = plan.leave_time_namespace(runtime_time_ns);
            return Err(e);
        }
    };
    if pid.as_raw() == 0 {
        drop(parent_ch);
        process::init::run(InitArgs {
            id: &opts.id,
            spec,
            rootfs: &bundle.rootfs,
            bundle: &bundle.dir,
            plan: &plan,
            channel: child_ch,
            fifo_fd: fifo.as_raw_fd(),
            no_pivot: opts.no_pivot,
            no_new_keyring: opts.no_new_keyring,
            preserve_fds: opts.preserve_fds,
            cgroup_paths: &cgroup_paths,
            hook_state: st.oci(Status::Creating),
            seccomp: seccomp.as_ref(),
            detached: &detached,
            rootfs_tree: rootfs_tree.as_ref(),
        });
    }
    drop(detached);
    drop(rootfs_tree);
    undo.child = Some(pid);
    left?;
    plan.leave_time_namespace(runtime_time_ns)?;
    drop(child_ch);
    drop(fifo);
    st.pid = pid.as_raw();
    Plan::leave_for_init(own_ns)?;

    if plan.new_user {
        process::write_id_maps(pid, spec)?;
    }
    if let Some((unit, path)) = &systemd {
        // The D-Bus calls come after the clone and the last setns (see cgroups::systemd).
        let (props, resources) = cgroups::systemd::properties(&resources, cg.version())?;
        let bus = cgroups::systemd::Bus::connect()?;
        bus.start(unit, &opts.id, pid.as_raw(), props)?;
        undo.systemd_unit = Some(unit.unit.clone());
        check_in_unit(pid.as_raw(), cg.version(), path)?;
        // The hierarchies systemd did not make (v1 controllers it does not use).
        cg.create()?;
        cg.apply(&resources)?;
    }
    cg.add_task(pid.as_raw())?;
    parent_ch.send(&channel::Message::Continue { pid: pid.as_raw() })?;
    steps.mark("clone");

    let mut console = None;
    loop {
        match parent_ch.recv() {
            Ok(channel::Message::Console) => {
                let master = parent_ch
                    .take_fd()
                    .ok_or_else(|| Error::Sync("Console message without an fd".into()))?;
                match &opts.console_socket {
                    Some(path) => crate::console::send_to_socket(path, master.as_fd())?,
                    None => console = Some(master),
                }
            }
            Ok(channel::Message::CreateRuntimeHooks) => {
                let s = st.oci(Status::Creating);
                hooks::run(spec.hooks().as_ref(), Kind::Prestart, &s)?;
                hooks::run(spec.hooks().as_ref(), Kind::CreateRuntime, &s)?;
                parent_ch.send(&channel::Message::HooksDone)?;
            }
            Ok(channel::Message::SeccompFd { fd }) => {
                crate::security::seccomp::forward(
                    seccomp.as_ref(),
                    pid.as_raw(),
                    fd,
                    st.oci(Status::Creating),
                )?;
                parent_ch.send(&channel::Message::SeccompFdDone)?;
            }
            Ok(channel::Message::Ready) => {
                steps.mark("init_setup");
                break;
            }
            Ok(channel::Message::Error(e)) => return Err(Error::Init(e)),
            Ok(other) => return Err(Error::Sync(format!("unexpected message {other:?}"))),
            Err(_) => {
                return Err(Error::Init(
                    "container init exited before it was ready".into(),
                ))
            }
        }
    }

    st.start_time = crate::proc::stat(pid.as_raw())
        .map(|s| s.start_time)
        .ok_or_else(|| Error::Init("container init exited before it was ready".into()))?;
    // Without a terminal these are what the process will have: the caller's.
    st.external_descriptors = crate::checkpoint::stdio_links(pid.as_raw());
    st.save(&opts.root)?;
    if let Some(pid_file) = &opts.pid_file {
        write_pid_file(pid_file, pid.as_raw())?;
    }
    undo.disarm();
    steps.mark("state");
    Ok(Created {
        state: st,
        init: pid,
        console,
        steps,
    })
}

/// With `--systemd-cgroup` on a host systemd manages: the unit and its cgroup path (from the
/// root of each hierarchy). Without systemd the `slice:prefix:name` path is mapped to a
/// cgroupfs path instead (`None`), as without the flag.
pub(crate) fn systemd_plan(
    systemd_cgroup: bool,
    id: &str,
    cgroups_path: Option<&str>,
) -> Result<Option<(cgroups::SystemdUnit, String)>> {
    if !systemd_cgroup {
        return Ok(None);
    }
    let unit = cgroups::SystemdUnit::parse(cgroups_path, id)?;
    if !cgroups::systemd::booted() {
        tracing::warn!(
            "--systemd-cgroup: systemd does not manage this host (no /run/systemd/system); \
             {} is made through cgroupfs, unknown to systemd",
            unit.cgroup_path()
        );
        return Ok(None);
    }
    let path = cgroups::systemd::unit_cgroup(&unit, cgroups::detect()?)?;
    Ok(Some((unit, path)))
}

/// After the unit's start: the init must be where the paths say (systemd's root is read from
/// /proc/1/cgroup, which a pid namespace not systemd's would get wrong).
pub(crate) fn check_in_unit(pid: i32, version: cgroups::CgroupVersion, want: &str) -> Result<()> {
    let file = format!("/proc/{pid}/cgroup");
    let text = std::fs::read_to_string(&file).ctx("read", &file)?;
    let got = cgroups::parse_proc_cgroup(&text)
        .into_iter()
        .find(|l| match version {
            cgroups::CgroupVersion::V2 => l.hierarchy_id == 0,
            cgroups::CgroupVersion::V1 => l.controllers.iter().any(|c| c == "name=systemd"),
        })
        .map(|l| l.path);
    if got.as_deref() != Some(want) {
        return Err(Error::Config(format!(
            "--systemd-cgroup: systemd put the container's init in {got:?}, not {want} \
             (is warden-runc in systemd's pid namespace?)"
        )));
    }
    Ok(())
}

/// Folds `update` into `base`: objects key by key, anything else replaced; nulls (fields
/// the update does not set) change nothing.
fn merge_json(base: &mut serde_json::Value, update: serde_json::Value) {
    match (base, update) {
        (serde_json::Value::Object(b), serde_json::Value::Object(u)) => {
            for (k, v) in u {
                if v.is_null() {
                    continue;
                }
                merge_json(b.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, u) => *b = u,
    }
}

/// Lets go of a cgroup the container shared with processes that were there before it:
/// removes each of its dirs that is empty now (the ones the create made), and leaves the
/// others, and their processes, alone.
fn release_shared_cgroup(paths: &BTreeMap<String, PathBuf>) {
    let mut dirs: Vec<&PathBuf> = paths.values().collect();
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        match std::fs::remove_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::debug!("shared cgroup {} kept: {e}", d.display()),
        }
    }
}

/// The device rules the cgroup gets: the config's, then the devices every container needs
/// (runc's default allow list), then the devices the config creates (but a fifo, which the
/// device cgroup does not govern).
pub(crate) fn resources_with_default_devices(spec: &Spec) -> LinuxResources {
    let linux = spec.linux().as_ref();
    let mut res = linux
        .and_then(|l| l.resources().clone())
        .unwrap_or_default();
    let mut rules: Vec<LinuxDeviceCgroup> = res.devices().clone().unwrap_or_default();
    let rule = |typ, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(typ)
            .access(access.to_string());
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        b.build().expect("device rule builds")
    };
    use LinuxDeviceType::{B, C};
    rules.extend([
        rule(C, None, None, "m"),
        rule(B, None, None, "m"),
        rule(C, Some(1), Some(3), "rwm"), // null
        rule(C, Some(1), Some(5), "rwm"), // zero
        rule(C, Some(1), Some(7), "rwm"), // full
        rule(C, Some(1), Some(8), "rwm"), // random
        rule(C, Some(1), Some(9), "rwm"), // urandom
        rule(C, Some(5), Some(0), "rwm"), // tty
        rule(C, Some(5), Some(1), "rwm"), // console
        rule(C, Some(5), Some(2), "rwm"), // ptmx
        rule(C, Some(136), None, "rwm"),  // pts/*
    ]);
    for d in linux
        .and_then(|l| l.devices().as_ref())
        .into_iter()
        .flatten()
        .filter(|d| d.typ() != LinuxDeviceType::P)
    {
        rules.push(rule(d.typ(), Some(d.major()), Some(d.minor()), "rwm"));
    }
    res.set_devices(Some(rules));
    res
}

pub(crate) fn owner_name() -> String {
    let uid = nix::unistd::geteuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

pub(crate) fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, pid.to_string()).ctx("write", &tmp)?;
    std::fs::rename(&tmp, path).ctx("rename", path)
}

/// A container some earlier command created.
pub struct Container {
    pub root: PathBuf,
    pub state: State,
}

impl Container {
    pub fn load(root: &Path, id: &str) -> Result<Container> {
        Ok(Container {
            root: root.to_path_buf(),
            state: State::load(root, id)?,
        })
    }

    fn cgroup(&self) -> Result<Box<dyn Manager>> {
        Ok(cgroups::from_paths(&self.state.cgroup_paths)?)
    }

    /// The cgroup's usage counters and limits (runc's `events --stats`).
    pub fn stats(&self) -> Result<crate::cgroups::Stats> {
        if self.status() == Status::Stopped {
            return Err(Error::State("container is stopped".into()));
        }
        Ok(self.cgroup()?.stats()?)
    }

    pub fn init_alive(&self) -> bool {
        self.state.pid > 0 && crate::proc::is_alive(self.state.pid, self.state.start_time)
    }

    pub fn status(&self) -> Status {
        if !self.init_alive() {
            return Status::Stopped;
        }
        if self.state.exec_fifo(&self.root).exists() {
            return Status::Created;
        }
        match self.cgroup().and_then(|cg| Ok(cg.is_frozen()?)) {
            Ok(true) => Status::Paused,
            _ => Status::Running,
        }
    }

    /// The OCI state document.
    pub fn oci_state(&self) -> serde_json::Value {
        self.state.oci(self.status())
    }

    /// Lets the init exec the user's process: opens the exec fifo the init is blocked on and
    /// reads its byte. Returns once the init has gone ahead (or fails if it died).
    pub fn start(&self) -> Result<()> {
        self.status().check_start()?;
        let fifo = self.state.exec_fifo(&self.root);
        let fd = fcntl::open(
            &fifo,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .sys(format!("open {}", fifo.display()))?;
        // Two `start`s racing: only the one that removes the fifo goes on.
        std::fs::remove_file(&fifo).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Error::State("cannot start an already running container".into())
            }
            _ => Error::io("remove", &fifo, e),
        })?;
        // The init writes one byte when it goes ahead, then keeps the fifo open until it
        // execs the process (close-on-exec): EOF after the byte means the process runs.
        let mut byte = [0u8; 1];
        let mut went_ahead = false;
        loop {
            let mut fds = [nix::poll::PollFd::new(
                std::os::fd::AsFd::as_fd(&fd),
                nix::poll::PollFlags::POLLIN,
            )];
            match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16)) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => {}
                Ok(_) => match nix::unistd::read(&fd, &mut byte) {
                    Ok(1) => went_ahead = true,
                    Ok(0) if went_ahead => break,
                    Ok(_) | Err(nix::errno::Errno::EAGAIN) => {}
                    Err(e) => return Err(Error::sys("read exec fifo", e)),
                },
                Err(e) => return Err(Error::sys("poll exec fifo", e)),
            }
            // A process that went ahead may have run and exited already: only an init that
            // died before writing its byte failed to start.
            if !went_ahead && !self.init_alive() {
                if let Ok(1) = nix::unistd::read(&fd, &mut byte) {
                    break;
                }
                return Err(Error::Init(
                    "container init exited before it could be started".into(),
                ));
            }
        }
        let running = self.state.oci(Status::Running);
        // The runtime spec: a failing poststart hook is a warning; the container runs.
        for e in hooks::run_all(self.state.hooks.as_ref(), Kind::Poststart, &running) {
            tracing::warn!("{e}");
        }
        Ok(())
    }

    /// Sends `sig` to the init, or with `all` to every process in the container's cgroup.
    pub fn kill(&self, sig: Signal, all: bool) -> Result<()> {
        let status = self.status();
        status.check_kill()?;
        if all {
            let cg = self.cgroup()?;
            for pid in cg.procs()? {
                let _ = signal::kill(Pid::from_raw(pid), sig);
            }
            if status == Status::Paused && sig == Signal::SIGKILL {
                // A frozen process cannot die; let it.
                cg.thaw()?;
            }
            return Ok(());
        }
        signal::kill(Pid::from_raw(self.state.pid), sig)
            .sys(format!("kill {} {sig}", self.state.pid))
    }

    /// Removes a stopped container (or, with `force`, kills a running one first): its
    /// cgroup, its state, then the poststop hooks.
    pub fn delete(self, force: bool) -> Result<()> {
        let status = self.status();
        status.check_delete(&self.state.id, force)?;
        if status != Status::Stopped {
            let cg = self.cgroup()?;
            let _ = signal::kill(Pid::from_raw(self.state.pid), Signal::SIGKILL);
            // In a cgroup shared with processes from before the container, only the init
            // (and with it the rest of its pid namespace) is the container's to kill.
            if !self.state.cgroup_shared {
                for pid in cg.procs().unwrap_or_default() {
                    let _ = signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
            if status == Status::Paused {
                cg.thaw()?;
            }
            self.wait_init_gone(Duration::from_secs(10))?;
        }
        self.destroy()
    }

    fn wait_init_gone(&self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        let mut pause = Duration::from_micros(100);
        while self.init_alive() {
            if Instant::now() >= deadline {
                return Err(Error::State(format!(
                    "container init {} did not die within {limit:?}",
                    self.state.pid
                )));
            }
            // Reap it if it is our child (`run`); otherwise its parent or subreaper will.
            let _ = waitpid(
                Pid::from_raw(self.state.pid),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(5));
        }
        Ok(())
    }

    fn destroy(self) -> Result<()> {
        if let Some(m) = &self.state.host_mounts {
            m.take_back();
        }
        if let Some(unit) = &self.state.systemd_unit {
            if cgroups::systemd::booted() {
                cgroups::systemd::Bus::connect()?.stop(unit)?;
            } else {
                // systemd is gone (and its units with it): only the cgroupfs part is left.
                tracing::warn!("systemd no longer manages this host; not stopping unit {unit}");
            }
        }
        if self.state.cgroup_shared {
            release_shared_cgroup(&self.state.cgroup_paths);
        } else {
            self.cgroup()?.destroy()?;
        }
        let dir = State::dir(&self.root, &self.state.id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", dir, e)),
        }
        let stopped = self.state.oci(Status::Stopped);
        for e in hooks::run_all(self.state.hooks.as_ref(), Kind::Poststop, &stopped) {
            tracing::warn!("{e}");
        }
        Ok(())
    }

    /// Writes new limits into the container's cgroup (runc's `update`); what `resources`
    /// leaves out stays as it is. The state keeps the limits in force (the config's, with
    /// every update folded in).
    pub fn update(&mut self, resources: &LinuxResources) -> Result<()> {
        if self.status() == Status::Stopped {
            return Err(Error::State("cannot update a stopped container".into()));
        }
        let cgroup = self.cgroup()?;
        let adjusted;
        let to_write = match &self.state.systemd_unit {
            Some(unit) => {
                let props;
                (props, adjusted) = cgroups::systemd::properties(resources, cgroup.version())?;
                cgroups::systemd::Bus::connect()?.set_properties(unit, props)?;
                &adjusted
            }
            None => resources,
        };
        if let Err(e) = cgroup.apply(to_write) {
            // The limits are written one file at a time, so those before the failing one are
            // in force now. Put back what the state records for the sections this update
            // named, as runc does, so that the cgroup and the state agree again.
            if let Some(back) = self.limits_before(resources) {
                if let Err(b) = cgroup.apply(&back) {
                    tracing::warn!(
                        "setting back the limits after a failed update failed ({b}): the \
                         cgroup may not hold what the state says"
                    );
                }
            }
            return Err(e.into());
        }
        let mut merged = serde_json::to_value(self.state.resources.clone().unwrap_or_default())
            .expect("resources serialize");
        merge_json(
            &mut merged,
            serde_json::to_value(resources).expect("resources serialize"),
        );
        self.state.resources = Some(serde_json::from_value(merged).map_err(|e| {
            Error::State(format!("the updated resources do not make a document: {e}"))
        })?);
        self.state.save(&self.root)
    }

    /// The limits the state records for the sections (`memory`, `cpu`...) `update` names:
    /// what a failed update puts back. None when the state records none of them.
    fn limits_before(&self, update: &LinuxResources) -> Option<LinuxResources> {
        let serde_json::Value::Object(named) = serde_json::to_value(update).ok()? else {
            return None;
        };
        let serde_json::Value::Object(mut old) =
            serde_json::to_value(self.state.resources.as_ref()?).ok()?
        else {
            return None;
        };
        old.retain(|k, v| !v.is_null() && named.get(k).is_some_and(|n| !n.is_null()));
        if old.is_empty() {
            return None;
        }
        serde_json::from_value(serde_json::Value::Object(old)).ok()
    }

    pub fn pause(&self) -> Result<()> {
        self.status().check_pause()?;
        Ok(self.cgroup()?.freeze()?)
    }

    pub fn resume(&self) -> Result<()> {
        self.status().check_resume()?;
        Ok(self.cgroup()?.thaw()?)
    }

    /// Runs another process in the container (runc's `exec`). The process is our child;
    /// its terminal master goes to the console socket or is returned.
    pub fn exec(&self, opts: &ExecOptions) -> Result<process::exec::Spawned> {
        match self.status() {
            Status::Stopped => {
                return Err(Error::State("cannot exec in a stopped container".into()))
            }
            Status::Paused if !opts.ignore_paused => {
                return Err(Error::State(
                    "cannot exec in a paused container (use --ignore-paused to override)".into(),
                ))
            }
            _ => {}
        }
        let terminal = opts.process.terminal().unwrap_or(false);
        if terminal && opts.detach && opts.console_socket.is_none() {
            return Err(Error::Config(
                "cannot allocate tty if runc will detach without setting console socket".into(),
            ));
        }
        if !terminal && opts.console_socket.is_some() {
            return Err(Error::Config(
                "cannot use console socket if runc will not detach or allocate tty".into(),
            ));
        }
        // The container's profile applies to every process in it, as with runc; compiled
        // once, by create, which left the program in the state dir.
        let mut steps = Steps::new();
        let seccomp = self
            .state
            .seccomp
            .as_ref()
            .map(|p| {
                let file = State::dir(&self.root, &self.state.id).join(SECCOMP_PROGRAM);
                crate::security::seccomp::compile_cached(p, Some(&file))
            })
            .transpose()?;
        steps.mark("seccomp");
        let paused = self.status() == Status::Paused;
        let cg = self.cgroup()?;
        let cg = if opts.sub_cgroup.is_empty() {
            cg
        } else {
            crate::cgroups::from_paths(&opts.sub_cgroup.resolve(&cg.paths())?)?
        };
        steps.mark("cgroup_paths");
        let mut spawned = process::exec::spawn(&process::exec::ExecArgs {
            init_pid: self.state.pid,
            namespaces: &self.state.namespaces,
            cgroup: cg.as_ref(),
            process: &opts.process,
            preserve_fds: opts.preserve_fds,
            seccomp: seccomp.as_ref(),
            personality: self.state.personality.as_ref(),
            new_keyring: (!self.state.shared_keyring).then_some(self.state.id.as_str()),
            join_last: paused,
            state: self.oci_state(),
        })?;
        if let (Some(path), Some(master)) = (&opts.console_socket, &spawned.console) {
            crate::console::send_to_socket(path, master.as_fd())?;
            spawned.console = None;
        }
        if let Some(pid_file) = &opts.pid_file {
            write_pid_file(pid_file, spawned.pid.as_raw())?;
        }
        steps.append(&spawned.steps);
        spawned.steps = steps;
        Ok(spawned)
    }

    /// The process of the container's config.json, the base `exec` starts from.
    pub fn config_process(&self) -> Result<oci_spec::runtime::Process> {
        let data = std::fs::read(&self.state.config_path).ctx("read", &self.state.config_path)?;
        let process = crate::spec::parse_config_process(&data).map_err(|msg| Error::Spec {
            path: self.state.config_path.clone(),
            msg,
        })?;
        Ok(process.unwrap_or_default())
    }

    /// The pids in the container's cgroup.
    pub fn pids(&self) -> Result<Vec<i32>> {
        Ok(self.cgroup()?.procs()?)
    }
}

/// Every container under `root`, sorted by id. Entries whose state cannot be read are
/// skipped with a warning (runc does the same).
pub fn list(root: &Path) -> Result<Vec<Container>> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(Error::io("read", root, e)),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(id) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !entry.path().is_dir() {
            continue;
        }
        match Container::load(root, &id) {
            Ok(c) => out.push(c),
            Err(e) => tracing::warn!("skipping {id}: {e}"),
        }
    }
    out.sort_by(|a, b| a.state.id.cmp(&b.state.id));
    Ok(out)
}

/// Cgroup paths as the state keeps them, for callers that only need to display them.
pub fn cgroup_paths(c: &Container) -> &BTreeMap<String, PathBuf> {
    &c.state.cgroup_paths
}

#[cfg(test)]
mod tests {
    use super::merge_json;
    use serde_json::json;

    #[test]
    fn updates_fold_into_the_resources() {
        let mut base = json!({"memory": {"limit": 1, "swap": 2}, "pids": {"limit": 5}});
        merge_json(
            &mut base,
            json!({"memory": {"limit": 3, "swap": null}, "cpu": {"shares": 7}, "devices": [1]}),
        );
        assert_eq!(
            base,
            json!({"memory": {"limit": 3, "swap": 2}, "pids": {"limit": 5},
                   "cpu": {"shares": 7}, "devices": [1]})
        );
    }
}
