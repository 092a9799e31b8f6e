//! The container's init, from clone to exec: one readable function in the order the OCI
//! runtime spec and runc agree on. Any error is sent to the parent as a message (it names
//! what failed) before the init exits; the parent then undoes the create.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::signal::{self, SigSet, SigmaskHow};
use nix::unistd;
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use super::channel::{Channel, Message};
use crate::error::{Error, Result, SysContext};
use crate::hooks::{self, Kind};
use crate::namespaces::Plan;
use crate::security::seccomp::Filter;

/// What the init needs; it lives in the parent's memory, which the clone copied.
pub struct InitArgs<'a> {
    pub id: &'a str,
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    pub plan: &'a Plan,
    pub channel: Channel,
    /// An O_PATH fd of the exec fifo; reopened for writing through /proc/self/fd.
    pub fifo_fd: RawFd,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: i32,
    /// The container's cgroup dirs per controller, for a `cgroup` mount.
    pub cgroup_paths: &'a BTreeMap<String, PathBuf>,
    /// The OCI state document for hooks, without the pid (which the parent sends).
    pub hook_state: serde_json::Value,
    /// The compiled `linux.seccomp`, loaded by `drop_privileges` or right before the exec.
    pub seccomp: Option<&'a Filter>,
    /// The idmapped copies of `mounts` entries the runtime made, by index; fds the clone
    /// copied (close-on-exec).
    pub detached: &'a BTreeMap<usize, std::os::fd::OwnedFd>,
    /// The rootfs's copy, when the mount namespace is made from a seed (`rootfs::seed`).
    pub rootfs_tree: Option<&'a std::os::fd::OwnedFd>,
}

/// Runs the init; never returns.
pub fn run(args: InitArgs) -> ! {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| init(&args)));
    let msg = match result {
        Ok(Ok(never)) => match never {},
        Ok(Err(e)) => e.to_string(),
        Err(_) => "container init panicked".to_string(),
    };
    let _ = args.channel.send(&Message::Error(msg));
    // SAFETY: _exit is always safe; it skips the parent's atexit handlers and buffers.
    unsafe { libc::_exit(1) }
}

fn init(a: &InitArgs) -> Result<Infallible> {
    crate::security::set_not_dumpable()?;
    let Message::Continue { pid } = a.channel.expect("Continue")? else {
        unreachable!("expect returns the message asked for")
    };
    let mut state = a.hook_state.clone();
    state["pid"] = pid.into();

    a.plan.join_all()?;
    a.plan.unshare_cgroup()?;
    if a.plan.new_user {
        // The parent has written our id maps: become the namespace's root.
        unistd::setresgid(0.into(), 0.into(), 0.into()).sys("setresgid(0)")?;
        unistd::setresuid(0.into(), 0.into(), 0.into()).sys("setresuid(0)")?;
    }
    let in_user_ns = a.plan.has(LinuxNamespaceType::User);
    if a.plan.clone_flags.contains(CloneFlags::CLONE_NEWNET) {
        crate::namespaces::bring_up_loopback()?;
    }

    let opts = crate::rootfs::RootfsOptions {
        rootfs: a.rootfs.to_path_buf(),
        bundle: a.bundle.to_path_buf(),
        no_pivot: a.no_pivot,
        in_user_ns,
        new_net_ns: a.plan.clone_flags.contains(CloneFlags::CLONE_NEWNET),
        cgroup_paths: a.cgroup_paths.clone(),
        own_mount_ns: a.plan.has(LinuxNamespaceType::Mount),
    };
    crate::rootfs::prepare(a.spec, &opts, a.detached, a.rootfs_tree)?;

    let spec_hooks = a.spec.hooks().as_ref();
    if hooks::any(spec_hooks, &[Kind::Prestart, Kind::CreateRuntime]) {
        a.channel.send(&Message::CreateRuntimeHooks)?;
        a.channel.expect("HooksDone")?;
    }
    state["status"] = "creating".into();
    hooks::run(spec_hooks, Kind::CreateContainer, &state)?;

    crate::rootfs::pivot(&opts)?;
    crate::rootfs::reopen_dev_null()?;
    crate::rootfs::finalize(a.spec, &opts)?;

    if let Some(h) = a.spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        unistd::sethostname(h).sys(format!("sethostname {h:?}"))?;
    }
    if let Some(d) = a.spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        set_domainname(d)?;
    }
    if !a.no_new_keyring {
        join_session_keyring(a.id)?;
    }

    let process = a
        .spec
        .process()
        .as_ref()
        .expect("validated: process is set");
    if let Some(adj) = process.oom_score_adj() {
        crate::security::set_oom_score_adj(adj)?;
    }
    crate::security::rlimits::apply(process.rlimits().as_deref().unwrap_or(&[]))?;
    // Our own session, as runc's init: the container must not share the caller's.
    unistd::setsid().sys("setsid")?;
    if process.terminal().unwrap_or(false) {
        send_terminal(process, &a.channel)?;
        crate::console::bind_console()?;
    }
    let (exe, env) = resolve_process(process)?;
    // As late as they can be (a SCHED_IDLE init set up at the idle priority would crawl on
    // a busy host) while the init still has the capabilities they may need.
    super::attrs::apply_process(process)?;
    if let Some(linux) = a.spec.linux() {
        if let Some(p) = linux.memory_policy() {
            super::attrs::set_memory_policy(p)?;
        }
        if let Some(p) = linux.personality() {
            super::attrs::set_personality(p)?;
        }
    }
    drop_privileges(process, in_user_ns, a.seccomp, &a.channel)?;
    prepare_exec(3 + a.preserve_fds)?;
    // A notify filter is loaded while `create` still listens: it must hand the listener fd
    // to the agent (runc loads it here too). It then also covers the exec fifo and the
    // startContainer hooks.
    let notify_now = a
        .seccomp
        .filter(|f| f.listener().is_some() && process.no_new_privileges().unwrap_or(false));
    if let Some(filter) = notify_now {
        load_seccomp(filter, &a.channel)?;
    }

    a.channel.send(&Message::Ready)?;
    // Held open (close-on-exec) until the exec, so `start` sees EOF only once the
    // startContainer hooks have run and the process is executed.
    let _started = wait_for_start(a.fifo_fd)?;

    state["status"] = "created".into();
    hooks::run(spec_hooks, Kind::StartContainer, &state)?;

    if notify_now.is_none() {
        load_seccomp_last(process, a.seccomp, &a.channel)?;
    }
    exec(&exe, process.args().as_deref().unwrap_or_default(), &env)
}

/// Makes the cwd (creating it if missing, as runc does) the current dir, resolves the
/// program on the container's PATH, and completes the environment (HOME).
pub fn resolve_process(process: &Process) -> Result<(PathBuf, Vec<String>)> {
    let cwd = process.cwd();
    std::fs::create_dir_all(cwd).map_err(|e| Error::io("mkdir cwd", cwd, e))?;
    unistd::chdir(cwd).sys(format!("chdir {}", cwd.display()))?;
    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    let args = process.args().as_deref().unwrap_or_default();
    let name = args
        .first()
        .ok_or_else(|| Error::Config("process.args must not be empty".into()))?;
    let exe = find_executable(name, &env)?;
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", home_of(process.user().uid())));
    }
    Ok((exe, env))
}

/// Becomes the process's user with exactly its capabilities: the AppArmor profile is set
/// for the exec first (as runc does, while the process still has every capability), the
/// bounding set is cut (that needs CAP_SETPCAP), the ids change with the capabilities kept,
/// then the other sets are set, then no_new_privs.
///
/// Without no_new_privs, loading a seccomp filter needs CAP_SYS_ADMIN: then it is loaded
/// here, first (as runc does). With it, `load_seccomp_last` loads it right before exec.
pub fn drop_privileges(
    process: &Process,
    in_user_ns: bool,
    seccomp: Option<&Filter>,
    channel: &Channel,
) -> Result<()> {
    if let Some(profile) = process.apparmor_profile() {
        crate::security::apparmor::apply_on_exec(profile)?;
    }
    if let Some(filter) = seccomp.filter(|_| !process.no_new_privileges().unwrap_or(false)) {
        load_seccomp(filter, channel)?;
    }
    let caps = process.capabilities().as_ref();
    crate::security::caps::drop_bounding(caps)?;
    crate::security::user::set_keep_caps(true)?;
    crate::security::user::apply(process.user(), in_user_ns)?;
    crate::security::user::set_keep_caps(false)?;
    if let Some(warning) = crate::security::caps::apply(caps)? {
        channel.send(&Message::Warning(warning))?;
    }
    if process.no_new_privileges().unwrap_or(false) {
        crate::security::set_no_new_privs()?;
    }
    Ok(())
}

/// Loads the seccomp filter of a process with no_new_privs (`drop_privileges` loaded it
/// otherwise): the last step before exec, so the profile need not allow the runtime's own
/// setup syscalls.
pub fn load_seccomp_last(
    process: &Process,
    seccomp: Option<&Filter>,
    channel: &Channel,
) -> Result<()> {
    match seccomp {
        Some(filter) if process.no_new_privileges().unwrap_or(false) => {
            load_seccomp(filter, channel)
        }
        _ => Ok(()),
    }
}

/// Loads `filter`. A notify filter's listener fd goes to the runtime, which hands it to the
/// seccomp agent: its number with write(2), the answer with read(2), then close(2), the
/// only syscalls made under the filter before we go on (runc makes the same ones; a notify
/// rule for `write` is refused at compile time, one for `read` or `close` waits for an
/// agent that by then has the fd).
fn load_seccomp(filter: &Filter, channel: &Channel) -> Result<()> {
    let Some(fd) = filter.load()? else {
        return Ok(());
    };
    channel.write_plain(&Message::SeccompFd {
        fd: std::os::fd::AsRawFd::as_raw_fd(&fd),
    })?;
    channel.read_plain("SeccompFdDone")?;
    drop(fd);
    Ok(())
}

/// Gives the process the signal state it expects (no signal ignored, whatever the caller
/// ignored; nothing blocked) and marks every fd from `first_closed`
/// up close-on-exec.
pub fn prepare_exec(first_closed: i32) -> Result<()> {
    close_fds_on_exec(first_closed)?;
    reset_signals()?;
    signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .sys("sigprocmask")?;
    Ok(())
}

/// Every signal goes back to its default: an ignored signal survives exec, and
/// the container's process must not inherit what the runtime's caller ignored (`nohup`
/// ignores SIGHUP, a CI runner may ignore more; Rust's runtime ignores SIGPIPE). A shell
/// started with a signal ignored cannot even trap it. Caught signals are reset by exec.
fn reset_signals() -> Result<()> {
    // The kernel's own struct (glibc's sigaction refuses the two real-time signals it keeps
    // for itself, which a caller may have ignored all the same).
    #[repr(C)]
    struct KernelSigaction {
        handler: libc::uintptr_t,
        flags: libc::c_ulong,
        restorer: libc::uintptr_t,
        mask: u64,
    }
    // SIG_DFL for every signal: what was ignored is no more, and a caught signal would be
    // reset by the exec anyway.
    let dfl = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for n in (1..=64).filter(|&n| n != libc::SIGKILL && n != libc::SIGSTOP) {
        // SAFETY: rt_sigaction with a struct of the kernel's layout; SIG_DFL installs no
        // handler code, and the old action is not asked for.
        let r = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                n,
                &dfl,
                std::ptr::null_mut::<KernelSigaction>(),
                std::mem::size_of::<u64>(),
            )
        };
        if r != 0 {
            return Err(Error::sys(
                format!("reset signal {n} to its default"),
                nix::errno::Errno::last(),
            ));
        }
    }
    Ok(())
}

pub fn exec(exe: &Path, args: &[String], env: &[String]) -> Result<Infallible> {
    let argv: Vec<CString> = args.iter().map(|s| cstring(s)).collect::<Result<_>>()?;
    let envp: Vec<CString> = env.iter().map(|s| cstring(s)).collect::<Result<_>>()?;
    let exe_c = CString::new(exe.as_os_str().as_bytes()).expect("path has no NUL");
    let err = unistd::execve(&exe_c, &argv, &envp).unwrap_err();
    Err(Error::sys(format!("exec {}", exe.display()), err))
}

/// Makes a pty our terminal and sends its master to the runtime.
pub fn send_terminal(process: &Process, channel: &Channel) -> Result<()> {
    let size = process.console_size().map(|b| crate::console::Size {
        rows: b.height() as u16,
        cols: b.width() as u16,
    });
    let user = process.user();
    let master = crate::console::setup_in_init(size, user.uid(), user.gid())?;
    channel.send_with_fd(&Message::Console, std::os::fd::AsFd::as_fd(&master))
}

/// Blocks until `start` opens the fifo's read end, then tells it we are going ahead.
/// Returns the write end, which the exec closes.
fn wait_for_start(fifo_fd: RawFd) -> Result<std::os::fd::OwnedFd> {
    let path = format!("/proc/self/fd/{fifo_fd}");
    let fd = nix::fcntl::open(
        path.as_str(),
        nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .sys(format!("open exec fifo {path}"))?;
    unistd::write(&fd, b"0").sys("write exec fifo")?;
    unistd::close(fifo_fd).sys("close exec fifo")?;
    Ok(fd)
}

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::Config(format!("{s:?} contains a NUL byte")))
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Resolves args[0] as execvp would, but with the container's PATH (runc does the same, and
/// so reports a missing program at create, not after start).
pub fn find_executable(name: &str, env: &[String]) -> Result<PathBuf> {
    let is_exec = |p: &Path| {
        nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok()
            && std::fs::metadata(p).is_ok_and(|m| m.is_file())
    };
    if name.contains('/') {
        // runc's (Go's exec.LookPath) wording: engines map it to the exit code they report,
        // Docker "no such file or directory" to 127 and "permission denied" to 126.
        let p = PathBuf::from(name);
        return match std::fs::metadata(&p) {
            Err(e) => {
                let why = e
                    .raw_os_error()
                    .map(|n| nix::errno::Errno::from_raw(n).desc().to_lowercase())
                    .unwrap_or_else(|| e.to_string());
                Err(Error::Init(format!("exec: {name:?}: stat {name}: {why}")))
            }
            Ok(_) if is_exec(&p) => Ok(p),
            Ok(_) => Err(Error::Init(format!("exec: {name:?}: permission denied"))),
        };
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(name);
        if is_exec(&candidate) {
            return Ok(candidate);
        }
    }
    Err(Error::Init(format!(
        "exec: {name:?}: executable file not found in $PATH"
    )))
}

/// The home directory of `uid` from the container's /etc/passwd, else "/".
fn home_of(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let f: Vec<&str> = line.split(':').collect();
                (f.len() >= 6 && f[2].parse() == Ok(uid)).then(|| f[5].to_string())
            })
        })
        .unwrap_or_else(|| "/".to_string())
}

fn set_domainname(name: &str) -> Result<()> {
    // SAFETY: the pointer and length describe a valid byte slice.
    let r = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    if r != 0 {
        return Err(Error::sys(
            format!("setdomainname {name:?}"),
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

/// A new session keyring named after the container, so it does not see the host's keys.
/// The kernel charges it to the caller's uid (`kernel.keys.maxkeys`, 200 keys per uid by
/// default): a caller that runs many containers whose root is one host uid calls this itself,
/// as host root, and creates them with `no_new_keyring` (the init inherits the keyring).
pub fn join_session_keyring(id: &str) -> Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    let name = cstring(id)?;
    // SAFETY: keyctl reads the NUL-terminated name only.
    let r = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    if r < 0 {
        let errno = nix::errno::Errno::last();
        // Kernels without keyrings, and seccomp'd hosts, are fine: runc ignores these too.
        if !matches!(errno, nix::errno::Errno::ENOSYS | nix::errno::Errno::EACCES) {
            return Err(Error::sys("keyctl(JOIN_SESSION_KEYRING)", errno));
        }
    }
    Ok(())
}

/// Marks every fd from `first` up close-on-exec, so the container inherits only its stdio
/// and the fds it was asked to keep.
fn close_fds_on_exec(first: i32) -> Result<()> {
    // One syscall (Linux 5.11). Listing /proc/self/fd instead took 0.1 to 0.3 ms of every
    // job's exec on the 2-core VM: procfs makes a dentry for each fd, and the process's
    // exit then prunes them.
    // SAFETY: close_range only changes the flags of this process's fds in the range.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r == 0 {
        return Ok(());
    }
    // Older kernels (ENOSYS, or EINVAL for the flag), or a seccomp'd caller: one by one.
    let dir =
        std::fs::read_dir("/proc/self/fd").map_err(|e| Error::io("read", "/proc/self/fd", e))?;
    let fds: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd >= first)
        .collect();
    for fd in fds {
        // The fd of the directory listing itself is gone by now: ignore EBADF.
        let _ = nix::fcntl::fcntl(
            // SAFETY: we only change the flags of an fd number, never take ownership.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_executables_on_the_container_path() {
        let env = vec!["PATH=/nonexistent:/bin".to_string()];
        assert_eq!(
            find_executable("sh", &env).unwrap(),
            PathBuf::from("/bin/sh")
        );
        let e = find_executable("no-such-program", &env)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "exec: \"no-such-program\": executable file not found in $PATH"
        );
        assert!(find_executable("/bin/sh", &[]).is_ok());
        let e = |name| find_executable(name, &[]).unwrap_err().to_string();
        assert_eq!(e("/etc/passwd"), "exec: \"/etc/passwd\": permission denied");
        assert_eq!(e("/"), "exec: \"/\": permission denied");
        assert_eq!(
            e("/no/such"),
            "exec: \"/no/such\": stat /no/such: no such file or directory"
        );
        assert_eq!(
            e("/etc/passwd/x"),
            "exec: \"/etc/passwd/x\": stat /etc/passwd/x: not a directory"
        );
    }
}
