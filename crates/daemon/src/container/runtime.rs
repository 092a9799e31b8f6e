//! Starting a container's init with our runtime library, which must run single-threaded
//! (it clones without exec): the daemon re-executes its own binary as `wardend
//! __warden_create` (a [`crate::helper`], started ahead), which reads `<runtime root> <id>
//! <bundle> <seccomp cache> <cgroup mounts> <mount seed> <seed's shared dir>` on its stdin
//! before any thread starts (the cache is the dir of compiled seccomp programs the daemon
//! made at start, the mounts the host's cgroup lines of mountinfo, read at start, the seed
//! the mount namespace the container's is made from and the dir of the daemon's files it
//! shows as the host does, see [`MountSeed`]; both empty without a seed), then creates and
//! starts the container and prints `{"pid": N}` or `{"error": "..."}` on a
//! descriptor that the init does not inherit. The init's stdio is /dev/null.
//!
//! Kill, delete and state need no clone and run in the daemon (on blocking threads).

use std::io::Write;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use warden_runtime::steps::Steps;
use warden_runtime::{Container, CreateOptions};

use super::Error;

pub const CREATE_ARG: &str = "__warden_create";

/// wardend's main calls this first: in create mode it does the work and returns the exit code.
pub fn main_if_create() -> Option<i32> {
    if std::env::args_os().nth(1).as_deref() != Some(std::ffi::OsStr::new(CREATE_ARG)) {
        return None;
    }
    let Some(args) = crate::helper::read_args() else {
        // A spare the daemon never used.
        return Some(0);
    };
    let args: Vec<String> = args
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let [root, id, bundle, seccomp_cache, cgroup_mounts, mount_seed, seed_shares] = &args[..]
    else {
        eprintln!(
            "usage: wardend {CREATE_ARG}, with ROOT ID BUNDLE SECCOMP_CACHE CGROUP_MOUNTS \
             MOUNT_SEED SEED_SHARED_DIR on stdin, each ended by a NUL"
        );
        return Some(2);
    };
    // The result goes to a private copy of stdout; 0-2 become /dev/null for the init.
    let result_fd =
        match nix::fcntl::fcntl(std::io::stdout(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10)) {
            Ok(fd) => fd,
            Err(e) => {
                eprintln!("dup stdout: {e}");
                return Some(1);
            }
        };
    // SAFETY: F_DUPFD_CLOEXEC returned a fresh descriptor that we own.
    let mut out = unsafe { std::fs::File::from_raw_fd(result_fd) };
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let null = null.into_raw_fd();
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors, which we own.
            unsafe { libc::dup2(null, fd) };
        }
        // SAFETY: `null` is ours and no longer needed.
        unsafe { libc::close(null) };
    }
    let result = create_and_start(
        Path::new(root),
        id,
        Path::new(bundle),
        Path::new(seccomp_cache),
        cgroup_mounts,
        (!mount_seed.is_empty()).then(|| PathBuf::from(mount_seed)),
        (!seed_shares.is_empty()).then(|| PathBuf::from(seed_shares)),
    );
    let (doc, code) = match result {
        Ok((pid, steps)) => (
            serde_json::json!({ "pid": pid, "steps": steps.to_string() }),
            0,
        ),
        Err(e) => (serde_json::json!({ "error": e }), 1),
    };
    let _ = writeln!(out, "{doc}");
    Some(code)
}

fn create_and_start(
    root: &Path,
    id: &str,
    bundle: &Path,
    seccomp_cache: &Path,
    cgroup_mounts: &str,
    mount_seed: Option<PathBuf>,
    seed_shares: Option<PathBuf>,
) -> Result<(i32, Steps), String> {
    let mut steps = Steps::new();
    // The container's own session keyring, made here as host root, not by the init: every
    // container's root is the same host uid (the user namespace's first id), and the kernel
    // counts keys per uid (kernel.keys.maxkeys, 200 by default), so keyrings made by the
    // inits stopped creates at about 200 live containers (EDQUOT). Root's quota is
    // kernel.keys.root_maxkeys (a million by default); the init inherits the keyring.
    warden_runtime::process::init::join_session_keyring(id).map_err(|e| e.to_string())?;
    steps.mark("keyring");
    let created = warden_runtime::create(&CreateOptions {
        id: id.to_string(),
        bundle: bundle.to_path_buf(),
        root: root.to_path_buf(),
        detach: true,
        seccomp_cache: Some(seccomp_cache.to_path_buf()),
        no_new_keyring: true,
        keyring_joined: true,
        cgroup_mountinfo: Some(cgroup_mounts.to_string()),
        mount_seed,
        mount_seed_shares: seed_shares.into_iter().collect(),
        ..Default::default()
    })
    .map_err(|e| e.to_string())?;
    steps.append(&created.steps);
    let container = Container {
        root: root.to_path_buf(),
        state: created.state,
    };
    if let Err(e) = container.start() {
        let msg = e.to_string();
        let _ = container.delete(true);
        return Err(msg);
    }
    steps.mark("start");
    Ok((created.init.as_raw(), steps))
}

/// A container the create helper made and started.
pub struct Started {
    pub pid: i32,
    /// The helper's own timing of its steps (`Steps`' text: `keyring=0.020 spec=0.310 ...`).
    pub steps: String,
}

/// Runs the create helper; returns the init's pid and the helper's timing.
pub async fn create(
    helper: &std::sync::Arc<crate::helper::Helper>,
    root: &Path,
    id: &str,
    bundle: &Path,
    seccomp_cache: &Path,
    cgroup_mounts: &str,
    mount_seed: Option<&MountSeed>,
) -> Result<Started, Error> {
    let args = [
        root.as_os_str(),
        std::ffi::OsStr::new(id),
        bundle.as_os_str(),
        seccomp_cache.as_os_str(),
        std::ffi::OsStr::new(cgroup_mounts),
        mount_seed
            .map_or(Path::new(""), |s| s.path.as_path())
            .as_os_str(),
        mount_seed
            .map_or(Path::new(""), |s| s.shared.as_path())
            .as_os_str(),
    ];
    let run = |e| Error::io("run container create helper", helper.exe(), e);
    let out = helper
        .start(&args)
        .await
        .map_err(run)?
        .wait_with_output()
        .await
        .map_err(run)?;
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|_| {
        Error::Runtime(format!(
            "container create helper exited with {} and no result",
            out.status
        ))
    })?;
    if let Some(pid) = doc["pid"].as_i64() {
        return Ok(Started {
            pid: pid as i32,
            steps: doc["steps"].as_str().unwrap_or_default().to_string(),
        });
    }
    Err(Error::Runtime(
        doc["error"]
            .as_str()
            .unwrap_or("container create failed")
            .to_string(),
    ))
}

/// The mount namespace every container's is made from (`warden_runtime::rootfs::seed`): a
/// copy of the host's made at start, with none of the containers' mounts in it and none to
/// come (the host's table grows with every container's overlay and netns file, and a copy
/// of it, walked again by each init, cost 1 ms more per create at 1,000 containers). Kept
/// by its fd for the daemon's life; the create helper opens it through `/proc/<pid>/fd`.
pub struct MountSeed {
    _fd: std::os::fd::OwnedFd,
    path: PathBuf,
    /// The daemon's own files the init binds (its binary, the fuse node): plain files in
    /// the depot, which the seed keeps, so bound there by path (see
    /// `CreateOptions::mount_seed_shares`).
    shared: PathBuf,
    /// The default base rootfs, whose mounts the seed keeps too.
    base: PathBuf,
    /// The thread that made the seed, still in it: runs [`MountSeed::run`]'s work.
    worker: std::sync::Mutex<std::sync::mpsc::Sender<Work>>,
}

type Work = Box<dyn FnOnce() + Send>;

impl MountSeed {
    /// Makes the seed on a thread of its own, which stays in it to run [`MountSeed::run`]'s
    /// work, keeping the mounts that hold `depot` and `base` (the default base rootfs);
    /// `shared` is the daemon's dir of files the init binds.
    pub fn make(depot: &Path, shared: &Path, base: &Path) -> Result<MountSeed, String> {
        let resolve = |p: &Path| {
            std::fs::canonicalize(p).map_err(|e| format!("resolve {}: {e}", p.display()))
        };
        let depot = resolve(depot)?;
        // A missing default base fails each create that uses it (naming it), not the seed.
        let base = resolve(base).unwrap_or_default();
        // What the helper does at every create with a seed, tried once here: a kernel
        // without open_tree (5.2) or mount_setattr (5.12) gets no seed rather than no
        // containers.
        warden_runtime::rootfs::idmap::clone_slave(&depot, false).map_err(|e| e.to_string())?;
        let (made_tx, made_rx) = std::sync::mpsc::channel();
        let (work_tx, work_rx) = std::sync::mpsc::channel::<Work>();
        let keep: Vec<PathBuf> = [depot, base.clone()]
            .into_iter()
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        std::thread::Builder::new()
            .name("warden-mntseed".into())
            .spawn(move || {
                let keep: Vec<&Path> = keep.iter().map(PathBuf::as_path).collect();
                let made = warden_runtime::rootfs::seed::make(&keep);
                let ok = made.is_ok();
                let _ = made_tx.send(made);
                if ok {
                    // Until the daemon drops the sender.
                    for work in work_rx {
                        work();
                    }
                }
            })
            .map_err(|e| format!("spawn a thread: {e}"))?;
        let (fd, kept) = made_rx
            .recv()
            .map_err(|_| "the thread panicked".to_string())?
            .map_err(|e| e.to_string())?;
        tracing::debug!("mount namespace seed made with {kept} mounts");
        let path = PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            std::os::fd::AsRawFd::as_raw_fd(&fd)
        ));
        Ok(MountSeed {
            _fd: fd,
            path,
            shared: shared.to_path_buf(),
            base,
            worker: std::sync::Mutex::new(work_tx),
        })
    }

    /// Whether the seed shows `base` as the host does (the default base, whose mounts it
    /// keeps).
    pub fn shows(&self, base: &Path) -> bool {
        !self.base.as_os_str().is_empty()
            && std::fs::canonicalize(base).is_ok_and(|b| b == self.base)
    }

    /// Runs `f` on the seed's thread and returns what it returns: an `open_tree` there walks
    /// the seed's few mounts, not the host's, which hold every container's. Blocking.
    pub fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> Option<R> {
        let (tx, rx) = std::sync::mpsc::channel();
        let work: Work = Box::new(move || {
            let _ = tx.send(f());
        });
        self.worker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(work)
            .ok()?;
        rx.recv().ok()
    }
}

/// Makes the containers' parent cgroup (`server.cgroup_parent`) and, in a cgroup v1
/// cpuset hierarchy, sets its `cgroup.clone_children`: a new cpuset otherwise starts with no
/// cpus and mems, the runtime writes the parent's into it, and the kernel checks each such
/// write against every sibling (`validate_change`, then a rebuild of the scheduling
/// domains): 3 ms of each create with 1,000 live containers. A child of a parent with
/// `clone_children` is born with the parent's.
pub fn prepare_cgroup_parent(cgroup_mounts: &str, parent: &str) -> Result<(), String> {
    let m = warden_runtime::cgroups::new_manager_with(
        Some(cgroup_mounts),
        Some(&format!("/{parent}")),
        "parent",
    )
    .and_then(|m| m.create().map(|()| m))
    .map_err(|e| e.to_string())?;
    if m.version() != warden_runtime::cgroups::CgroupVersion::V1 {
        return Ok(());
    }
    if let Some(dir) = m.paths().get("cpuset") {
        let knob = dir.join("cgroup.clone_children");
        std::fs::write(&knob, "1").map_err(|e| format!("write {}: {e}", knob.display()))?;
    }
    Ok(())
}

/// The runtime's view of a container, if it has one.
pub fn load(root: &Path, id: &str) -> Option<Container> {
    Container::load(root, id).ok()
}

/// Whether the container's init is alive (a zombie counts as dead).
pub fn is_running(root: &Path, id: &str) -> bool {
    load(root, id).is_some_and(|c| c.init_alive())
}

/// The pids in the container's cgroups but its init.
pub fn job_pids(root: &Path, id: &str) -> Vec<i32> {
    let Some(c) = load(root, id) else {
        return vec![];
    };
    let init = c.state.pid;
    c.pids()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| *p != init)
        .collect()
}

/// Sends `sig` to every process of the container but its init.
pub fn signal_jobs(root: &Path, id: &str, sig: Signal) {
    for pid in job_pids(root, id) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

/// Kills everything in the container and removes its runtime state and cgroups. Blocking;
/// fine when the runtime has no such container.
pub fn delete(root: &Path, id: &str) -> Result<(), Error> {
    match Container::load(root, id) {
        Ok(c) => c
            .delete(true)
            .map_err(|e| Error::Runtime(format!("delete container {id}: {e}"))),
        Err(_) => Ok(()),
    }
}

/// The container's cgroup dir of `controller` (from the runtime's state).
pub fn cgroup_dir(root: &Path, id: &str, controller: &str) -> Option<PathBuf> {
    load(root, id).and_then(|c| c.state.cgroup_paths.get(controller).cloned())
}

/// Polls until the container has no process but its init, or `limit` passes.
pub async fn wait_jobs_gone(root: &Path, id: &str, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if job_pids(root, id).is_empty() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
