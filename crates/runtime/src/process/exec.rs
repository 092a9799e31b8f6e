//! `exec`: a new process in a running container. The parent enters the container's pid
//! namespace and forks; the child joins the cgroup (the parent writes it in), the other
//! namespaces (see `join_namespaces`), then sets up the process exactly as the init does
//! and execs. The channel is close-on-exec, so its EOF tells the parent the exec happened;
//! an `Error` message tells it why not.
//!
//! Into a frozen cgroup (`exec --ignore-paused` of a paused container) the child joins last:
//! it sends `Ready` right before its exec, the parent moves it into the cgroup and answers
//! `Continue`, and returns without waiting for the exec, which happens once the container is
//! resumed. Joined first, it would freeze half set up and the parent wait for it forever.

use std::convert::Infallible;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use nix::sched::CloneFlags;
use nix::sys::signal::{self, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::Process;

use super::channel::{self, Channel, Message};
use super::init;
use crate::error::{Error, Result, SysContext};
use crate::steps::Steps;

/// A namespace of the container's init to join.
struct Target {
    flag: CloneFlags,
    name: &'static str,
    file: File,
}

/// Opens the init's namespaces that differ from ours, user first and mount last.
fn open_namespaces(init_pid: i32, names: &[String]) -> Result<(Vec<Target>, Option<File>)> {
    const ORDER: [(&str, CloneFlags); 8] = [
        // Time first: a time namespace warden-runc made is owned by the host's user
        // namespace, which we leave by joining the container's.
        ("time", CloneFlags::from_bits_retain(libc::CLONE_NEWTIME)),
        ("user", CloneFlags::CLONE_NEWUSER),
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("cgroup", CloneFlags::CLONE_NEWCGROUP),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ];
    let mut targets = Vec::new();
    let mut pid_ns = None;
    for (name, flag) in ORDER {
        if !names.iter().any(|n| n == name) {
            continue;
        }
        let path = format!("/proc/{init_pid}/ns/{name}");
        let file = File::open(&path).map_err(|e| Error::io("open", &path, e))?;
        let theirs = file.metadata().map_err(|e| Error::io("stat", &path, e))?;
        let ours = std::fs::metadata(format!("/proc/self/ns/{name}")).ok();
        if ours.is_some_and(|o| o.ino() == theirs.ino() && o.dev() == theirs.dev()) {
            continue; // already there (joining our own user namespace would fail)
        }
        if name == "pid" {
            pid_ns = Some(file);
        } else {
            targets.push(Target { flag, name, file });
        }
    }
    Ok((targets, pid_ns))
}

pub struct ExecArgs<'a> {
    pub init_pid: i32,
    pub namespaces: &'a [String],
    pub cgroup: &'a dyn crate::cgroups::Manager,
    pub process: &'a Process,
    pub preserve_fds: i32,
    /// The container's compiled `linux.seccomp`.
    pub seccomp: Option<&'a crate::security::seccomp::Filter>,
    /// The container's `linux.personality`.
    pub personality: Option<&'a oci_spec::runtime::LinuxPersonality>,
    /// The name of a new session keyring for the process (the container's id), joined before
    /// the namespaces, as host root; None keeps the caller's (`--no-new-keyring`).
    pub new_keyring: Option<&'a str>,
    /// The cgroup is frozen: join it last and do not wait for the exec (see the module doc).
    pub join_last: bool,
    /// The container's state document, for a seccomp agent (notify rules).
    pub state: serde_json::Value,
}

/// The started process: its pid (our child) and its terminal's master if it has one.
pub struct Spawned {
    pub pid: Pid,
    pub console: Option<OwnedFd>,
    /// Where the start's time went: the namespaces opened, the fork, the cgroup joined and
    /// the child's own setup up to its exec (which includes the seccomp filter's load).
    pub steps: Steps,
}

/// Starts the process. Must be called from a single-threaded process (see `process`).
pub fn spawn(a: &ExecArgs) -> Result<Spawned> {
    let mut steps = Steps::new();
    let (targets, pid_ns) = open_namespaces(a.init_pid, a.namespaces)?;
    steps.mark("namespaces");
    let in_user_ns = a.namespaces.iter().any(|n| n == "user");
    let (parent_ch, child_ch) = channel::pair()?;
    if let Some(ns) = &pid_ns {
        nix::sched::setns(ns.as_fd(), CloneFlags::CLONE_NEWPID).sys("setns pid")?;
    }
    // SAFETY: single-threaded caller (documented); the child ends in exec or _exit.
    let pid = unsafe { super::clone_fork(CloneFlags::empty())? };
    if pid.as_raw() == 0 {
        drop(parent_ch);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            child(a, &targets, in_user_ns, &child_ch)
        }));
        let msg = match result {
            Ok(Ok(never)) => match never {},
            Ok(Err(e)) => e.to_string(),
            Err(_) => "exec child panicked".to_string(),
        };
        let _ = child_ch.send(&Message::Error(msg));
        // SAFETY: _exit is always safe.
        unsafe { libc::_exit(1) }
    }
    drop(child_ch);
    steps.mark("fork");
    let initial = a
        .process
        .exec_cpu_affinity()
        .as_ref()
        .and_then(|c| c.initial().as_deref())
        .filter(|c| !c.is_empty());
    let undo = |e: Error| {
        let _ = signal::kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
        e
    };
    if let Some(cpus) = initial {
        // Where the child runs until it joins the cgroup.
        super::attrs::set_affinity(pid.as_raw(), cpus, "process.execCPUAffinity.initial")
            .map_err(undo)?;
    }
    // Into the cgroup (unless it is to be last), then let the child go on.
    let go_on = |join: bool| -> Result<()> {
        if join {
            a.cgroup
                .add_task(pid.as_raw())
                .map_err(|e| undo(e.into()))?;
        }
        parent_ch
            .send(&Message::Continue { pid: pid.as_raw() })
            .map_err(undo)
    };
    go_on(!a.join_last)?;
    steps.mark("cgroup");
    let mut console = None;
    loop {
        match parent_ch.recv() {
            Ok(Message::Console) => console = parent_ch.take_fd(),
            Ok(Message::SeccompFd { fd }) => {
                crate::security::seccomp::forward(a.seccomp, pid.as_raw(), fd, a.state.clone())
                    .map_err(undo)?;
                parent_ch.send(&Message::SeccompFdDone).map_err(undo)?;
            }
            Ok(Message::Ready) if a.join_last => {
                go_on(true)?;
                break;
            }
            Ok(Message::Error(e)) => {
                let _ = waitpid(pid, None);
                return Err(Error::Init(e));
            }
            Ok(other) => return Err(undo(Error::Sync(format!("unexpected {other:?}")))),
            // EOF: the channel closed on exec.
            Err(_) => break,
        }
    }
    steps.mark("child");
    Ok(Spawned {
        pid,
        console,
        steps,
    })
}

fn final_cpus(p: &Process) -> Option<&str> {
    p.exec_cpu_affinity()
        .as_ref()
        .and_then(|c| c.cpu_affinity_final().as_deref())
        .filter(|c| !c.is_empty())
}

/// Joins `targets`. The user namespace goes last unless a namespace refuses us before it: a
/// namespace the container shares with the host (a network namespace made beforehand, say)
/// belongs to the host's user namespace, where only our own privileges count; one the
/// container made belongs to its user namespace, which a privileged caller may join from
/// outside and an unprivileged (rootless) one only once inside. So: every other namespace
/// first, those refused with EPERM again after the user namespace (runc does the same).
fn join_namespaces(targets: &[Target]) -> Result<()> {
    let user = targets.iter().find(|t| t.flag == CloneFlags::CLONE_NEWUSER);
    let mut deferred = Vec::new();
    for t in targets
        .iter()
        .filter(|t| t.flag != CloneFlags::CLONE_NEWUSER)
    {
        match nix::sched::setns(t.file.as_fd(), t.flag) {
            Ok(()) => {}
            Err(nix::errno::Errno::EPERM) if user.is_some() => deferred.push(t),
            Err(e) => return Err(Error::sys(format!("setns {}", t.name), e)),
        }
    }
    if let Some(u) = user {
        nix::sched::setns(u.file.as_fd(), u.flag).sys("setns user")?;
    }
    for t in deferred {
        nix::sched::setns(t.file.as_fd(), t.flag).sys(format!("setns {}", t.name))?;
    }
    Ok(())
}

fn child(a: &ExecArgs, targets: &[Target], in_user_ns: bool, ch: &Channel) -> Result<Infallible> {
    crate::security::set_not_dumpable()?;
    ch.expect("Continue")?;
    let process = a.process;
    // Before the user namespace: in it, raising a hard limit needs CAP_SYS_RESOURCE over the
    // host's namespace, which the container's root does not have.
    crate::security::rlimits::apply(process.rlimits().as_deref().unwrap_or(&[]))?;
    // The caller's session keyring (a daemon's, an engine's) is not the container's: a new
    // one, made before the user namespace so that host root, not the container's root uid,
    // is charged for it (the per-uid key quota).
    if let Some(name) = a.new_keyring {
        init::join_session_keyring(name)?;
    }
    join_namespaces(targets)?;
    if !a.namespaces.iter().any(|n| n == "mnt") {
        // No mount namespace to join: the container's root is the init's chroot.
        let root = format!("/proc/{}/root", a.init_pid);
        std::env::set_current_dir(&root).map_err(|e| Error::io("chdir", &root, e))?;
        nix::unistd::chroot(".").sys("chroot into the container's root")?;
        std::env::set_current_dir("/").map_err(|e| Error::io("chdir", "/", e))?;
    }
    if let Some(cpus) = final_cpus(process) {
        // In the cgroup now (whose cpuset reset our affinity when we joined it).
        super::attrs::set_affinity(0, cpus, "process.execCPUAffinity.final")?;
    }
    nix::unistd::setsid().sys("setsid")?;
    if process.terminal().unwrap_or(false) {
        init::send_terminal(process, ch)?;
    }
    let (exe, env) = init::resolve_process(process)?;
    super::attrs::apply_process(process)?;
    init::drop_privileges(process, in_user_ns, a.seccomp, ch)?;
    if let Some(p) = a.personality {
        super::attrs::set_personality(p)?;
    }
    init::prepare_exec(3 + a.preserve_fds)?;
    // Into a frozen cgroup, a notify filter is loaded before the join: the parent must still
    // be there to hand its listener fd to the agent.
    let notify_early = a.join_last && a.seccomp.is_some_and(|f| f.listener().is_some());
    if notify_early {
        init::load_seccomp_last(process, a.seccomp, ch)?;
    }
    if a.join_last {
        ch.send(&Message::Ready)?;
        ch.expect("Continue")?;
    }
    if !notify_early {
        init::load_seccomp_last(process, a.seccomp, ch)?;
    }
    init::exec(&exe, process.args().as_deref().unwrap_or_default(), &env)
}
