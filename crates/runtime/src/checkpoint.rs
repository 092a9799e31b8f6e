//! Checkpoint and restore through CRIU, as runc does them: CRIU's RPC protocol (`criu swrk`,
//! protobuf over a socketpair) through the `rust-criu` crate.
//!
//! - **checkpoint** dumps the container's process tree into an image dir (CRIU freezes it
//!   through the container's freezer cgroup), with every mount that comes from outside the
//!   container's mount namespace named external (bind mounts, the cgroup mount, masked files,
//!   devices bound from the host in a user namespace) and a network namespace given by path
//!   kept external; `descriptors.json` in the image dir records what the init's fds 0-2 were
//!   at create. Unless `leave_running`, CRIU kills the tree and the container is deleted.
//! - **restore** makes a new container from a bundle and an image dir: its state dir and
//!   cgroup, then CRIU restores the tree with the rootfs (bound at `<state>/criu-root`) as its
//!   root, the external mounts bound from the host again, the recorded pipes replaced by the
//!   restoring caller's fds 0-2 (so a new conmon, shell or test reads the process's output),
//!   a network namespace given by path passed in, and the tree placed in the new cgroup
//!   (CRIU runs in it, and the image's cgroup paths are rewritten to the new container's,
//!   as runc does: see [`CriuConfig`]). The restored init is the caller's child
//!   (`rst_sibling`), and the container is `running` for every later command.
//!
//! A failure leaves nothing: a checkpoint that fails removes what it wrote into the image dir
//! (the whole dir if it made it) and leaves the container running; a restore that fails takes
//! back its state dir, mount, cgroup and processes. CRIU's reason (the `Error` lines of its
//! log, or what it printed before it had one) is in the error.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::fcntl::{self, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::signal::{self, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use rust_criu::rust_criu_protobuf::rpc::Criu_notify;
use rust_criu::{CgMode, Criu, CriuError};

use crate::cgroups::{self, Manager};
use crate::container::Container;
use crate::error::{Error, IoContext, Result, SysContext};
use crate::namespaces::{self, Plan};
use crate::spec::Bundle;
use crate::state::{self, State, Status};

/// What the init's stdio was at create (readlinks of /proc/<pid>/fd/0..2), in the image
/// dir: runc's name and format (a JSON array of strings).
pub const DESCRIPTORS_FILE: &str = "descriptors.json";
/// CRIU's logs, in the work dir.
pub const DUMP_LOG: &str = "dump.log";
pub const RESTORE_LOG: &str = "restore.log";
/// The CRIU config a restore writes (its cgroup roots), in the container's state dir.
const CRIU_RESTORE_CONFIG: &str = "criu-restore.conf";
/// runc's floor: the RPC's VERSION request came with CRIU 3.0.
const MIN_CRIU_VERSION: u32 = 30000;

/// runc's `--manage-cgroups-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupsMode {
    Soft,
    Full,
    Strict,
    Ignore,
}

impl std::str::FromStr for CgroupsMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "soft" => Ok(CgroupsMode::Soft),
            "full" => Ok(CgroupsMode::Full),
            "strict" => Ok(CgroupsMode::Strict),
            "ignore" => Ok(CgroupsMode::Ignore),
            _ => Err(format!(
                "invalid manage cgroups mode {s:?} (want soft, full, strict or ignore)"
            )),
        }
    }
}

impl CgroupsMode {
    fn criu(self) -> CgMode {
        match self {
            CgroupsMode::Soft => CgMode::SOFT,
            CgroupsMode::Full => CgMode::FULL,
            CgroupsMode::Strict => CgMode::STRICT,
            CgroupsMode::Ignore => CgMode::IGNORE,
        }
    }
}

/// What checkpoint and restore share.
#[derive(Debug, Clone, Default)]
pub struct CriuOptions {
    /// The CRIU binary (default: `criu` on PATH).
    pub criu: Option<PathBuf>,
    pub image_path: PathBuf,
    /// Where CRIU writes its log (default: the image dir).
    pub work_path: Option<PathBuf>,
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    pub auto_dedup: bool,
    pub manage_cgroups_mode: Option<CgroupsMode>,
}

#[derive(Debug, Clone, Default)]
pub struct CheckpointOptions {
    pub criu: CriuOptions,
    pub leave_running: bool,
}

#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    pub criu: CriuOptions,
    pub id: String,
    pub bundle: PathBuf,
    /// The state root.
    pub root: PathBuf,
    pub pid_file: Option<PathBuf>,
    /// Where the master of the restored terminal goes (a container with `process.terminal`).
    pub console_socket: Option<PathBuf>,
    /// The caller will not stay attached: a terminal then needs a console socket.
    pub detach: bool,
    /// runc's `--systemd-cgroup`: where systemd manages the host, the restored container's
    /// cgroup is a transient scope as at create (`cgroups::systemd`).
    pub systemd_cgroup: bool,
}

/// A restored container: its state and its init, the caller's child.
pub struct Restored {
    pub state: State,
    pub init: Pid,
    /// The terminal's master, when the container has one and no console socket took it.
    pub console: Option<OwnedFd>,
}

fn new_criu(opts: &CriuOptions) -> Result<Criu> {
    let path = opts
        .criu
        .as_ref()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| "criu".into());
    let mut criu = Criu::new_with_criu_path(path.clone())
        .map_err(|e| Error::Criu(format!("CRIU {path}: {e}")))?;
    let (version, said) = with_captured_stderr(|| criu.get_criu_version());
    match version {
        Ok(v) if v >= MIN_CRIU_VERSION => Ok(criu),
        Ok(v) => Err(Error::Criu(format!(
            "CRIU {path} is version {}.{}.{}, at least 3.0.0 is needed",
            v / 10000,
            v / 100 % 100,
            v % 100
        ))),
        Err(CriuError::Spawn { path, source }) => {
            Err(Error::Criu(format!("cannot run CRIU {path}: {source}")))
        }
        Err(e) => Err(Error::Criu(format!(
            "CRIU {path} does not answer its version: {e}{}",
            reasons(&said)
        ))),
    }
}

/// Runs `f` with fd 2 going to a memfd, and returns what was written there: rust-criu's
/// `criu swrk` inherits our stderr, and what CRIU prints before it opens its log (a kernel
/// it cannot work with) belongs in our error, not loose on our stderr.
fn with_captured_stderr<T>(f: impl FnOnce() -> T) -> (T, String) {
    // SAFETY: memfd_create with a constant name; the fd is ours.
    let mem = unsafe { libc::memfd_create(c"criu-stderr".as_ptr(), libc::MFD_CLOEXEC) };
    if mem < 0 {
        return (f(), String::new());
    }
    // SAFETY: fresh fds we own.
    let mem = unsafe { OwnedFd::from_raw_fd(mem) };
    let saved = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3) };
    if saved < 0 {
        return (f(), String::new());
    }
    let saved = unsafe { OwnedFd::from_raw_fd(saved) };
    unsafe { libc::dup2(mem.as_raw_fd(), 2) };
    let out = f();
    unsafe { libc::dup2(saved.as_raw_fd(), 2) };
    let mut file = std::fs::File::from(mem);
    let mut text = String::new();
    let _ = std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0));
    let _ = std::io::Read::read_to_string(&mut file, &mut text);
    (out, text)
}

/// CRIU's own reasons in `log`: its `Error (file:line): ...` lines (the last few), else its
/// last non-empty lines; "" when it said nothing.
fn reasons(log: &str) -> String {
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Error (") || l.starts_with("Error"))
        .map(str::trim)
        .collect();
    let picked: Vec<&str> = if errors.is_empty() {
        let lines: Vec<&str> = log
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        lines[lines.len().saturating_sub(3)..].to_vec()
    } else {
        errors[errors.len().saturating_sub(6)..].to_vec()
    };
    if picked.is_empty() {
        String::new()
    } else {
        format!(": CRIU says: {}", picked.join("; "))
    }
}

/// What CRIU printed and logged about a failed request, as one error.
fn criu_failed(what: &str, e: CriuError, log: &Path, said: &str) -> Error {
    let logged = std::fs::read_to_string(log).unwrap_or_default();
    let why = if logged.trim().is_empty() {
        reasons(said)
    } else {
        reasons(&logged)
    };
    Error::Criu(format!("{what}: {e}{why}"))
}

/// A directory fd that `criu swrk` inherits (no close-on-exec).
fn inheritable_dir(path: &Path) -> Result<OwnedFd> {
    fcntl::open(path, OFlag::O_DIRECTORY | OFlag::O_RDONLY, Mode::empty())
        .sys(format!("open {}", path.display()))
}

/// Makes `path` (mode 0700, as runc) if missing; true if it was made here.
fn make_dir(path: &Path) -> Result<bool> {
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => Ok(false),
        Err(e) => Err(Error::io("mkdir", path, e)),
    }
}

fn dir_entries(path: &Path) -> std::collections::BTreeSet<std::ffi::OsString> {
    std::fs::read_dir(path)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default()
}

/// Takes back what a failed checkpoint wrote: the dir if it was made here, else the entries
/// that were not there before.
struct ImageDirUndo {
    path: PathBuf,
    made: bool,
    before: std::collections::BTreeSet<std::ffi::OsString>,
    armed: bool,
}

impl Drop for ImageDirUndo {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if self.made {
            let _ = std::fs::remove_dir_all(&self.path);
            return;
        }
        for name in dir_entries(&self.path) {
            if !self.before.contains(&name) {
                let p = self.path.join(&name);
                let _ = std::fs::remove_file(&p).or_else(|_| std::fs::remove_dir_all(&p));
            }
        }
    }
}

/// The mounts CRIU must treat as external, as (mount point in the container, name in the
/// image): what the container's mount namespace got from the host's.
fn external_mounts(
    spec: &Spec,
    cgroup_paths: &BTreeMap<String, PathBuf>,
    in_user_ns: bool,
) -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    for m in spec.mounts().as_deref().unwrap_or_default() {
        let dest = m.destination().clone();
        if is_bind(m) {
            out.push((dest.clone(), dest));
        } else if m.typ().as_deref() == Some("cgroup") {
            for (point, _) in cgroup_binds(&dest, cgroup_paths) {
                out.push((point.clone(), point));
            }
        }
    }
    if in_user_ns {
        for p in device_paths(spec) {
            out.push((p.clone(), p));
        }
    }
    out
}

fn is_bind(m: &oci_spec::runtime::Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .iter()
            .flatten()
            .any(|o| o == "bind" || o == "rbind")
}

/// The bind mounts a `cgroup` mount at `dest` is made of (see rootfs::mounts): on v2 the
/// container's cgroup dir at `dest`; on v1 one per hierarchy at `dest/<hierarchy>`. As
/// (mount point, host dir).
fn cgroup_binds(dest: &Path, cgroup_paths: &BTreeMap<String, PathBuf>) -> Vec<(PathBuf, PathBuf)> {
    if cgroup_paths.len() == 1 {
        if let Some(p) = cgroup_paths.get("") {
            return vec![(dest.to_path_buf(), p.clone())];
        }
    }
    let mut out: Vec<(PathBuf, PathBuf)> = Vec::new();
    for path in cgroup_paths.values() {
        let Ok(rel) = path.strip_prefix("/sys/fs/cgroup") else {
            continue;
        };
        let Some(hier) = rel.components().next() else {
            continue;
        };
        let point = dest.join(hier.as_os_str());
        if !out.iter().any(|(p, _)| *p == point) {
            out.push((point, path.clone()));
        }
    }
    out
}

/// The devices a container in a user namespace gets bound from the host (rootfs::devices).
fn device_paths(spec: &Spec) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = [
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/random",
        "/dev/urandom",
        "/dev/tty",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    for d in spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().as_deref())
        .unwrap_or_default()
    {
        if !out.contains(d.path()) {
            out.push(d.path().clone());
        }
    }
    out
}

fn masked_paths(spec: &Spec) -> Vec<String> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.masked_paths().clone())
        .unwrap_or_default()
}

/// Namespaces CRIU must leave to their owner: those the config joins by path (network,
/// pid), as (type, path). runc's keys: `extRootNetNS`, `extRootPidNS`.
fn external_namespaces(spec: &Spec) -> Vec<(LinuxNamespaceType, PathBuf)> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|ns| {
            matches!(
                ns.typ(),
                LinuxNamespaceType::Network | LinuxNamespaceType::Pid
            )
        })
        .filter_map(|ns| ns.path().clone().map(|p| (ns.typ(), p)))
        .collect()
}

fn ns_key(t: LinuxNamespaceType) -> String {
    rust_criu::criu_ns_to_key(namespaces::proc_name(t))
}

fn ns_criu_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Pid => "pid",
        _ => "",
    }
}

fn set_common(criu: &mut Criu, o: &CriuOptions) {
    criu.set_log_level(4);
    criu.set_manage_cgroups(true);
    criu.set_tcp_established(o.tcp_established);
    criu.set_ext_unix_sk(o.ext_unix_sk);
    criu.set_shell_job(o.shell_job);
    criu.set_file_locks(o.file_locks);
    if o.auto_dedup {
        criu.set_auto_dedup(true);
    }
    if let Some(m) = o.manage_cgroups_mode {
        criu.cgroups_mode(m.criu());
    }
}

fn load_spec(path: &Path) -> Result<Spec> {
    let data = std::fs::read(path).ctx("read", path)?;
    crate::spec::parse(&data).map_err(|msg| Error::Spec {
        path: path.to_path_buf(),
        msg,
    })
}

/// The readlinks of a process's fds 0-2 ("pipe:[123]", "/dev/null"...).
pub fn stdio_links(pid: i32) -> Vec<String> {
    (0..3)
        .map(|fd| {
            std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect()
}

impl Container {
    /// runc's `checkpoint`: dumps the container into `opts.criu.image_path`. Unless
    /// `leave_running`, the container is gone afterwards (CRIU kills it, and its state and
    /// cgroup are removed, as runc's checkpoint does).
    pub fn checkpoint(self, opts: &CheckpointOptions) -> Result<()> {
        let status = self.status();
        if matches!(status, Status::Created | Status::Stopped | Status::Creating) {
            return Err(Error::State(format!(
                "Container cannot be checkpointed in {status} state"
            )));
        }
        if self.state.host_mounts.is_some() {
            return Err(Error::Config(
                "checkpoint needs a container with a mount namespace of its own".into(),
            ));
        }
        let spec = load_spec(&self.state.config_path)?;
        let plan = Plan::from_spec(&spec)?;
        let mut criu = new_criu(&opts.criu)?;

        let image = &opts.criu.image_path;
        let before = dir_entries(image);
        let made = make_dir(image)?;
        let mut undo = ImageDirUndo {
            path: image.clone(),
            made,
            before,
            armed: true,
        };
        let work = opts.criu.work_path.clone().unwrap_or_else(|| image.clone());
        make_dir(&work)?;
        let image_fd = inheritable_dir(image)?;
        let work_fd = inheritable_dir(&work)?;

        set_common(&mut criu, &opts.criu);
        criu.set_images_dir_fd(image_fd.as_raw_fd());
        criu.set_work_dir_fd(work_fd.as_raw_fd());
        criu.set_log_file(DUMP_LOG.into());
        criu.set_pid(self.state.pid);
        criu.set_root(self.state.rootfs.to_string_lossy().into_owned());
        criu.set_leave_running(opts.leave_running);
        criu.set_orphan_pts_master(true);
        // Freeze through the cgroup freezer rather than ptrace each task.
        let freezer = self
            .state
            .cgroup_paths
            .get("freezer")
            .or_else(|| self.state.cgroup_paths.get(""));
        if let Some(f) = freezer {
            criu.set_freeze_cgroup(f.to_string_lossy().into_owned());
        }
        for (point, name) in external_mounts(
            &spec,
            &self.state.cgroup_paths,
            plan.has(LinuxNamespaceType::User),
        ) {
            criu.set_external_mount(
                point.to_string_lossy().into_owned(),
                name.to_string_lossy().into_owned(),
            );
        }
        // Masked files are /dev/null bound over them: external, named /dev/null (runc's way).
        for p in masked_paths(&spec) {
            let seen = format!("/proc/{}/root{p}", self.state.pid);
            if std::fs::metadata(&seen).is_ok_and(|m| !m.is_dir()) {
                criu.set_external_mount(p, "/dev/null".into());
            }
        }
        for (t, path) in external_namespaces(&spec) {
            use std::os::unix::fs::MetadataExt;
            let ino = std::fs::metadata(&path).ctx("stat", &path)?.ino();
            criu.add_external(format!("{}[{ino}]:{}", ns_criu_name(t), ns_key(t)));
        }

        let (result, said) = with_captured_stderr(|| criu.dump());
        drop(image_fd);
        drop(work_fd);
        if let Err(e) = result {
            return Err(criu_failed(
                &format!("checkpoint of {}", self.state.id),
                e,
                &work.join(DUMP_LOG),
                &said,
            ));
        }
        let fds = if self.state.external_descriptors.is_empty() {
            stdio_links(self.state.pid)
        } else {
            self.state.external_descriptors.clone()
        };
        let path = image.join(DESCRIPTORS_FILE);
        std::fs::write(&path, serde_json::to_vec(&fds).expect("strings serialize"))
            .ctx("write", &path)?;
        undo.armed = false;
        if !opts.leave_running {
            self.delete(true)?;
        }
        Ok(())
    }
}

/// The restored init's pid, from CRIU's `post-restore` notification (the callback is a plain
/// fn, so it lands here; warden-runc restores one container per process).
static RESTORED_PID: AtomicI32 = AtomicI32::new(0);

fn on_notify(script: &str, notify: &Criu_notify, _fd: Option<RawFd>) -> i32 {
    if script == "post-restore" {
        RESTORED_PID.store(notify.pid(), Ordering::SeqCst);
    }
    0
}

/// Everything a failed restore must take back, in reverse order.
struct RestoreUndo {
    dir: Option<PathBuf>,
    criu_root: Option<PathBuf>,
    cgroup: Option<Box<dyn Manager>>,
    /// The systemd scope started for the container.
    systemd_unit: Option<String>,
    child: Option<Pid>,
}

impl RestoreUndo {
    fn unmount_root(&mut self) -> bool {
        let Some(r) = self.criu_root.take() else {
            return true;
        };
        let _ = umount2(&r, MntFlags::MNT_DETACH);
        match std::fs::remove_dir(&r) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => {
                // Never remove_dir_all through a rootfs still bound there.
                tracing::warn!("restore: remove {}: {e}", r.display());
                false
            }
        }
    }
}

impl Drop for RestoreUndo {
    fn drop(&mut self) {
        if let Some(pid) = self.child.take() {
            let _ = signal::kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
        let unmounted = self.unmount_root();
        if let Some(unit) = self.systemd_unit.take() {
            if let Err(e) = cgroups::systemd::Bus::connect().and_then(|b| b.stop(&unit)) {
                tracing::warn!("undo restore: stop unit {unit}: {e}");
            }
        }
        if let Some(cg) = self.cgroup.take() {
            if let Err(e) = cg.destroy() {
                tracing::warn!("undo restore: {e}");
            }
        }
        if let Some(dir) = self.dir.take() {
            if unmounted {
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!("undo restore: remove {}: {e}", dir.display());
                }
            }
        }
    }
}

/// Puts the calling process into a cgroup for as long as it lives, then back where it was.
struct InCgroup {
    home: Option<Box<dyn Manager>>,
}

impl InCgroup {
    /// Where the calling process is now, in the hierarchies of `cg`: it goes back there on
    /// drop.
    fn leaving_home(cg: &dyn Manager) -> Result<InCgroup> {
        let keys = cg.paths();
        let own = cgroups::own_paths()?
            .into_iter()
            .filter(|(k, _)| keys.contains_key(k))
            .collect::<BTreeMap<_, _>>();
        let home = cgroups::from_paths(&own)?;
        Ok(InCgroup { home: Some(home) })
    }

    fn enter(cg: &dyn Manager) -> Result<InCgroup> {
        let guard = InCgroup::leaving_home(cg)?;
        cg.add_task(std::process::id() as i32)?;
        Ok(guard)
    }
}

/// The config file CRIU reads for one restore, through `CRIU_CONFIG_FILE` (swrk reads it as
/// the command line does, and rust-criu has no RPC field for this): a `cgroup-root` per
/// hierarchy the container has, so CRIU rewrites the cgroup paths of the image (those of the
/// checkpointed container) to the new container's, as runc does with the RPC's `cg_root`.
/// Without it a container restored under another `cgroupsPath` would land in the old cgroup
/// (made again by CRIU) while its state named the new one. A `CRIU_CONFIG_FILE` of the
/// caller's is kept: its text comes first. The variable is put back on drop.
struct CriuConfig {
    previous: Option<std::ffi::OsString>,
}

const CRIU_CONFIG_ENV: &str = "CRIU_CONFIG_FILE";

impl CriuConfig {
    /// Must be called while the calling process is in the container's cgroup.
    fn cgroup_roots(path: &Path, cg: &dyn Manager) -> Result<CriuConfig> {
        let own = std::fs::read_to_string("/proc/self/cgroup").ctx("read", "/proc/self/cgroup")?;
        let keys = cg.paths();
        let lines = cgroups::parse_proc_cgroup(&own)
            .into_iter()
            .filter(|l| {
                if l.controllers.is_empty() {
                    keys.contains_key("")
                } else {
                    l.controllers.iter().any(|c| keys.contains_key(c))
                }
            })
            .collect::<Vec<_>>();
        let previous = std::env::var_os(CRIU_CONFIG_ENV);
        let mut text = match &previous {
            Some(p) => std::fs::read_to_string(p).ctx("read the CRIU config", Path::new(p))?,
            None => String::new(),
        };
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&cgroup_root_options(&lines)?);
        std::fs::write(path, text).ctx("write", path)?;
        // SAFETY: restore runs in a single-threaded process (see `restore`).
        std::env::set_var(CRIU_CONFIG_ENV, path);
        Ok(CriuConfig { previous })
    }
}

impl Drop for CriuConfig {
    fn drop(&mut self) {
        match self.previous.take() {
            Some(p) => std::env::set_var(CRIU_CONFIG_ENV, p),
            None => std::env::remove_var(CRIU_CONFIG_ENV),
        }
    }
}

/// CRIU's `cgroup-root [controller:]path` options for the given /proc/self/cgroup lines: the
/// cgroup2 line's path is the root for every controller not named, each v1 controller gets
/// its hierarchy's path (runc names them one by one too: `cpu` and `cpuacct` of a shared
/// hierarchy each).
fn cgroup_root_options(lines: &[cgroups::ProcCgroup]) -> Result<String> {
    let mut out = String::new();
    for l in lines {
        if l.path.is_empty() || l.path.contains(|c: char| c.is_whitespace() || c == '"') {
            return Err(Error::Config(format!(
                "restore: cgroup path {:?} cannot be passed to CRIU (empty, blank or quote)",
                l.path
            )));
        }
        if l.controllers.is_empty() {
            out.push_str(&format!("cgroup-root {}\n", l.path));
        }
        for c in &l.controllers {
            out.push_str(&format!("cgroup-root {c}:{}\n", l.path));
        }
    }
    Ok(out)
}

impl Drop for InCgroup {
    fn drop(&mut self) {
        if let Some(home) = self.home.take() {
            if let Err(e) = home.add_task(std::process::id() as i32) {
                tracing::warn!("restore: move back to our own cgroup: {e}");
            }
        }
    }
}

/// runc's `restore`: a new container `opts.id` from `opts.bundle`, its processes restored by
/// CRIU from `opts.criu.image_path`.
///
/// Must be called from a single-threaded process (CRIU's notifications land in a static).
pub fn restore(opts: &RestoreOptions) -> Result<Restored> {
    state::validate_id(&opts.id)?;
    let dir = State::dir(&opts.root, &opts.id);
    if dir.exists() {
        return Err(Error::Exists(opts.id.clone()));
    }
    let bundle = Bundle::load(&opts.bundle)?;
    let spec = &bundle.spec;
    let plan = Plan::from_spec(spec)?;
    if !plan.has(LinuxNamespaceType::Mount) {
        return Err(Error::Config(
            "restore needs a container with a mount namespace of its own".into(),
        ));
    }
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
    let image = &opts.criu.image_path;
    if !image.join("inventory.img").is_file() {
        return Err(Error::Config(format!(
            "{} holds no checkpoint (no inventory.img)",
            image.display()
        )));
    }
    let descriptors: Vec<String> = match std::fs::read(image.join(DESCRIPTORS_FILE)) {
        Ok(d) => serde_json::from_slice(&d).map_err(|e| Error::Spec {
            path: image.join(DESCRIPTORS_FILE),
            msg: format!("not a list of descriptors: {e}"),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io("read", image.join(DESCRIPTORS_FILE), e)),
    };
    let mut criu = new_criu(&opts.criu)?;

    state::ensure_root(&opts.root)?;
    match std::fs::DirBuilder::new().mode(0o711).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::Exists(opts.id.clone()))
        }
        Err(e) => return Err(Error::io("mkdir", dir, e)),
    }
    let mut undo = RestoreUndo {
        dir: Some(dir.clone()),
        criu_root: None,
        cgroup: None,
        systemd_unit: None,
        child: None,
    };

    let linux = spec.linux().as_ref();
    let cgroups_path = linux.and_then(|l| l.cgroups_path().as_ref());
    let cgroups_path = cgroups_path.map(|p| p.to_string_lossy());
    let systemd =
        crate::container::systemd_plan(opts.systemd_cgroup, &opts.id, cgroups_path.as_deref())?;
    let cg = match &systemd {
        Some((_, path)) => cgroups::new_manager(Some(path), &opts.id)?,
        None => cgroups::new_manager(cgroups_path.as_deref(), &opts.id)?,
    };
    if !cg.procs().unwrap_or_default().is_empty() {
        return Err(Error::Config(
            "restore needs a cgroup of its own: the container's cgroup has processes".into(),
        ));
    }
    let resources = crate::container::resources_with_default_devices(spec);
    // A systemd scope is started with CRIU's parent (this process) in it, just before CRIU
    // runs; the cgroup is made and its limits written then.
    if systemd.is_none() {
        cg.create()?;
    }
    let cgroup_paths = cg.paths();
    let cg = &**undo.cgroup.insert(cg);
    if systemd.is_none() {
        cg.apply(&resources)?;
    }

    // CRIU pivots into its root: the rootfs, bound on a mount point of its own.
    let criu_root = dir.join("criu-root");
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(&criu_root)
        .ctx("mkdir", &criu_root)?;
    undo.criu_root = Some(criu_root.clone());
    mount(
        Some(&bundle.rootfs),
        &criu_root,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .sys(format!(
        "bind {} onto {}",
        bundle.rootfs.display(),
        criu_root.display()
    ))?;

    let work = opts.criu.work_path.clone().unwrap_or_else(|| image.clone());
    make_dir(&work)?;
    let image_fd = inheritable_dir(image)?;
    let work_fd = inheritable_dir(&work)?;
    set_common(&mut criu, &opts.criu);
    criu.set_images_dir_fd(image_fd.as_raw_fd());
    criu.set_work_dir_fd(work_fd.as_raw_fd());
    criu.set_log_file(RESTORE_LOG.into());
    criu.set_root(criu_root.to_string_lossy().into_owned());
    criu.set_rst_sibling(true);
    criu.set_notify_scripts(true);
    criu.set_notify_cb(on_notify);
    criu.set_orphan_pts_master(terminal);

    for m in spec.mounts().as_deref().unwrap_or_default() {
        if is_bind(m) {
            let src = m.source().clone().unwrap_or_default();
            let src = if src.is_absolute() {
                src
            } else {
                bundle.dir.join(src)
            };
            criu.set_external_mount(
                m.destination().to_string_lossy().into_owned(),
                src.to_string_lossy().into_owned(),
            );
        } else if m.typ().as_deref() == Some("cgroup") {
            for (point, host) in cgroup_binds(m.destination(), &cgroup_paths) {
                criu.set_external_mount(
                    point.to_string_lossy().into_owned(),
                    host.to_string_lossy().into_owned(),
                );
            }
        }
    }
    if !masked_paths(spec).is_empty() {
        criu.set_external_mount("/dev/null".into(), "/dev/null".into());
    }
    if plan.has(LinuxNamespaceType::User) {
        for p in device_paths(spec) {
            let p = p.to_string_lossy().into_owned();
            criu.set_external_mount(p.clone(), p);
        }
    }
    // fds CRIU inherits: the namespaces joined by path, and our stdio for the pipes the
    // init had (fd i of ours takes the place of what its fd i was).
    let mut inherited: Vec<OwnedFd> = Vec::new();
    for (t, path) in external_namespaces(spec) {
        let fd = fcntl::open(&path, OFlag::O_RDONLY, Mode::empty())
            .sys(format!("open {}", path.display()))?;
        criu.add_inherit_fd(fd.as_raw_fd(), ns_key(t))
            .map_err(|e| Error::Criu(e.to_string()))?;
        inherited.push(fd);
    }
    for (i, what) in descriptors.iter().enumerate().take(3) {
        if !what.starts_with("pipe:") {
            continue;
        }
        // SAFETY: dup of one of our stdio fds; the copy has no close-on-exec.
        let fd = unsafe { libc::dup(i as i32) };
        if fd < 0 {
            return Err(Error::sys(
                format!("dup fd {i} for {what}"),
                nix::errno::Errno::last(),
            ));
        }
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        criu.add_inherit_fd(fd.as_raw_fd(), what.clone())
            .map_err(|e| Error::Criu(e.to_string()))?;
        inherited.push(fd);
    }

    RESTORED_PID.store(0, Ordering::SeqCst);
    let (result, said) = {
        // CRIU restores the tree into the cgroup it runs in (runc puts it there too).
        let _in_cgroup = match &systemd {
            None => InCgroup::enter(cg)?,
            Some((unit, path)) => {
                // The bus connection (libdbus) starts no thread: CRIU may still be forked.
                let guard = InCgroup::leaving_home(cg)?;
                let me = std::process::id() as i32;
                let (props, resources) = cgroups::systemd::properties(&resources, cg.version())?;
                cgroups::systemd::Bus::connect()?.start(unit, &opts.id, me, props)?;
                undo.systemd_unit = Some(unit.unit.clone());
                crate::container::check_in_unit(me, cg.version(), path)?;
                // The hierarchies systemd did not make (v1 controllers it does not use).
                cg.create()?;
                cg.apply(&resources)?;
                cg.add_task(me)?;
                guard
            }
        };
        let _config = CriuConfig::cgroup_roots(&dir.join(CRIU_RESTORE_CONFIG), cg)?;
        with_captured_stderr(|| criu.restore())
    };
    let pid = RESTORED_PID.load(Ordering::SeqCst);
    if pid > 0 {
        undo.child = Some(Pid::from_raw(pid));
    }
    drop(inherited);
    drop(image_fd);
    drop(work_fd);
    if let Err(e) = result {
        return Err(criu_failed(
            &format!("restore of {}", opts.id),
            e,
            &work.join(RESTORE_LOG),
            &said,
        ));
    }
    if pid <= 0 {
        return Err(Error::Criu(format!(
            "restore of {}: CRIU did not say which process it restored",
            opts.id
        )));
    }
    let console = criu.take_orphan_pts_master_fd();
    // The restored tree has a mount namespace of its own now.
    if !undo.unmount_root() {
        return Err(Error::State(format!(
            "restore of {}: cannot remove {}",
            opts.id,
            criu_root.display()
        )));
    }
    let start_time = crate::proc::stat(pid)
        .map(|s| s.start_time)
        .ok_or_else(|| Error::Init(format!("restored init {pid} exited at once")))?;
    let st = State {
        id: opts.id.clone(),
        pid,
        start_time,
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: state::rfc3339_now(),
        owner: crate::container::owner_name(),
        annotations: spec
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        cgroup_paths,
        cgroup_shared: false,
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
        seccomp: linux.and_then(|l| l.seccomp().clone()),
        external_descriptors: stdio_links(pid),
        personality: linux.and_then(|l| l.personality().clone()),
        shared_keyring: false,
    };
    st.save(&opts.root)?;
    let mut console = console;
    if let (Some(path), Some(master)) = (&opts.console_socket, &console) {
        crate::console::send_to_socket(path, std::os::fd::AsFd::as_fd(master))?;
        console = None;
    }
    if let Some(pid_file) = &opts.pid_file {
        crate::container::write_pid_file(pid_file, pid)?;
    }
    undo.dir = None;
    undo.cgroup = None;
    undo.systemd_unit = None;
    undo.child = None;
    Ok(Restored {
        state: st,
        init: Pid::from_raw(pid),
        console,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criu_reasons_are_its_error_lines() {
        let log = "(00.001) Version: 3.17.1\n\
                   (00.002) Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds\n\
                   (00.002) Error (criu/kerndat.c:1615): kerndat_vdso_fill_symtable failed\n";
        assert_eq!(
            reasons(log),
            ": CRIU says: (00.002) Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area \
             bounds; (00.002) Error (criu/kerndat.c:1615): kerndat_vdso_fill_symtable failed"
        );
        assert_eq!(reasons("a\nb\n\nc\nd\n"), ": CRIU says: b; c; d");
        assert_eq!(reasons(""), "");
    }

    #[test]
    fn cgroup_mounts_are_binds_per_hierarchy() {
        let v2 = BTreeMap::from([(String::new(), PathBuf::from("/sys/fs/cgroup/w/c1"))]);
        assert_eq!(
            cgroup_binds(Path::new("/sys/fs/cgroup"), &v2),
            vec![(
                PathBuf::from("/sys/fs/cgroup"),
                PathBuf::from("/sys/fs/cgroup/w/c1")
            )]
        );
        let v1 = BTreeMap::from([
            (
                "cpu".into(),
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/w/c1"),
            ),
            (
                "cpuacct".into(),
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/w/c1"),
            ),
            ("memory".into(), PathBuf::from("/sys/fs/cgroup/memory/w/c1")),
        ]);
        assert_eq!(
            cgroup_binds(Path::new("/sys/fs/cgroup"), &v1),
            vec![
                (
                    PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"),
                    PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/w/c1")
                ),
                (
                    PathBuf::from("/sys/fs/cgroup/memory"),
                    PathBuf::from("/sys/fs/cgroup/memory/w/c1")
                ),
            ]
        );
    }

    #[test]
    fn cgroup_roots_name_each_hierarchy_of_the_container() {
        let lines = cgroups::parse_proc_cgroup("0::/w/c2\n");
        assert_eq!(cgroup_root_options(&lines).unwrap(), "cgroup-root /w/c2\n");
        let lines = cgroups::parse_proc_cgroup("4:cpu,cpuacct:/w/c2\n7:memory:/w/c2\n");
        assert_eq!(
            cgroup_root_options(&lines).unwrap(),
            "cgroup-root cpu:/w/c2\ncgroup-root cpuacct:/w/c2\ncgroup-root memory:/w/c2\n"
        );
        let lines = cgroups::parse_proc_cgroup("0::/w/a b\n");
        assert!(cgroup_root_options(&lines).is_err());
    }

    #[test]
    fn namespace_keys_are_runcs() {
        assert_eq!(ns_key(LinuxNamespaceType::Network), "extRootNetNS");
        assert_eq!(ns_key(LinuxNamespaceType::Pid), "extRootPidNS");
    }
}
