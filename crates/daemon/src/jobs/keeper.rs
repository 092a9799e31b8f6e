//! The keeper: one single-threaded process per job, `<wardend> __warden_keeper <job dir>`.
//! It runs the job in its container as its own child, copies the job's output into the job dir
//! and records how the job ended. See the [module docs](super) for the job dir and the protocol.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Write as _;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{self, FcntlArg, OFlag};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{self, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{self, Pid};
use oci_spec::runtime::{
    Capabilities, LinuxCapabilitiesBuilder, PosixRlimitBuilder, Process, UserBuilder,
};
use warden_runtime::steps::Steps;
use warden_runtime::{Container, ExecOptions};

use super::syslog::{Stream, Syslog};
use super::{
    write_status, JobSpec, JobStatus, ProcId, Rlimit, CHUNK, JOB_PID_FILE, KEEPER_PID_FILE,
    OUTPUT_LIMIT_ERROR, SPEC_FILE, STDERR_FILE, STDOUT_FILE,
};

/// The hidden first argument that makes wardend a keeper.
pub const KEEPER_ARG: &str = "__warden_keeper";

/// If this process was started as a keeper (`argv[1] == KEEPER_ARG`), runs it with the job
/// dir it reads on stdin (a [`crate::helper`], started ahead) and returns its exit code;
/// otherwise returns None at once. wardend's `main` calls this first, before any thread
/// (tokio) exists: the keeper must be single-threaded.
pub fn main_if_keeper() -> Option<i32> {
    if std::env::args_os().nth(1).as_deref() != Some(OsStr::new(KEEPER_ARG)) {
        return None;
    }
    let Some(args) = crate::helper::read_args() else {
        // A spare the daemon never used.
        return Some(0);
    };
    let [dir] = &args[..] else {
        eprintln!("usage: wardend {KEEPER_ARG}, with the job dir on stdin, ended by a NUL");
        return Some(2);
    };
    Some(run(Path::new(dir)))
}

/// The keeper's whole life; returns its exit code (0 once the job ran and its status is
/// written, 1 if the job could not be started or the status could not be written).
pub fn run(dir: &Path) -> i32 {
    let mut steps = Steps::new();
    let mut report = detach();
    // Everything after this goes through an open descriptor of the job dir, so a container
    // dir renamed or a depot moved while the job runs (recovery finds it again there) loses
    // neither the job's status nor its pid files.
    let held = match File::open(dir) {
        Ok(f) => f,
        Err(e) => {
            report.send(&format!("error open the job dir {}: {e}", dir.display()));
            return 1;
        }
    };
    let followed = std::path::PathBuf::from(format!("/proc/self/fd/{}", held.as_raw_fd()));
    let dir = followed.as_path();
    steps.mark("detach");
    let started = match start(dir, &mut steps) {
        Ok(s) => s,
        Err(msg) => {
            let msg = one_line(&msg);
            report.send(&format!("error {msg}"));
            let _ = write_status(dir, &JobStatus::failed(msg));
            return 1;
        }
    };
    report.send(&format!("started {} {steps}", started.pid));
    drop(report);
    let status = started.supervise();
    match write_status(dir, &status) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// The pipe to the daemon that gets the one start line.
struct Report(Option<File>);

impl Report {
    fn send(&mut self, line: &str) {
        if let Some(mut f) = self.0.take() {
            // The daemon may be gone (EPIPE; SIGPIPE is ignored): nothing to do about it.
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
    }
}

/// Moves the report pipe (our stdout) out of the way, puts /dev/null on fds 0-2, starts a new
/// session and closes every other inherited fd.
fn detach() -> Report {
    // SAFETY: fd 1 is valid for the whole process (the Rust runtime opens /dev/null on a
    // closed stdio fd); we only borrow it for the dup.
    let stdout = unsafe { std::os::fd::BorrowedFd::borrow_raw(1) };
    let report = fcntl::fcntl(stdout, FcntlArg::F_DUPFD_CLOEXEC(3))
        .ok()
        // SAFETY: F_DUPFD_CLOEXEC returned a new fd that nothing else owns.
        .map(|fd| unsafe { File::from_raw_fd(fd) });
    stdio_to_null();
    // Fails only if we already lead a process group (started by hand from a shell's job
    // control); then we are detached enough.
    let _ = unistd::setsid();
    close_fds_except(report.as_ref().map(|f| f.as_raw_fd()));
    Report(report)
}

fn stdio_to_null() {
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        let _ = unistd::dup2_stdin(&null);
        let _ = unistd::dup2_stdout(&null);
        let _ = unistd::dup2_stderr(&null);
    }
}

fn close_fds_except(keep: Option<RawFd>) {
    // close_range (Linux 5.9) around `keep`: two syscalls instead of a /proc/self/fd listing
    // (0.1 to 0.3 ms on a job's start on the 2-core VM).
    let all = libc::c_uint::MAX;
    let ranges: Vec<(libc::c_uint, libc::c_uint)> = match keep.and_then(|k| u32::try_from(k).ok()) {
        Some(k) if k > 3 => vec![(3, k - 1), (k + 1, all)],
        Some(3) => vec![(4, all)],
        _ => vec![(3, all)],
    };
    let closed = ranges.into_iter().all(|(first, last)| {
        // SAFETY: closes fd numbers this process inherited and nothing in it owns (the
        // report pipe, its one kept fd, is outside the ranges).
        unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) == 0 }
    });
    if closed {
        return;
    }
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<RawFd> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds {
        if fd > 2 && Some(fd) != keep {
            // SAFETY: closing an inherited fd number nothing in this process owns (the
            // listing's own fd is already closed: EBADF is ignored).
            unsafe { libc::close(fd) };
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A job that runs: our ends of its pipes and where its output goes.
struct Started {
    pid: i32,
    spec: JobSpec,
    stdin: Option<OwnedFd>,
    stdout: OwnedFd,
    stderr: OwnedFd,
    out_file: Option<File>,
    err_file: Option<File>,
    syslog: Option<Syslog>,
}

/// Starts the job; `steps` gets where the time went.
fn start(dir: &Path, steps: &mut Steps) -> Result<Started, String> {
    let me = ProcId::of(std::process::id() as i32).ok_or("cannot read /proc/self/stat")?;
    me.write(&dir.join(KEEPER_PID_FILE))
        .map_err(|e| format!("write {}: {e}", dir.join(KEEPER_PID_FILE).display()))?;
    steps.mark("keeper_pid");
    let spec_path = dir.join(SPEC_FILE);
    let data =
        std::fs::read(&spec_path).map_err(|e| format!("read {}: {e}", spec_path.display()))?;
    let spec: JobSpec =
        serde_json::from_slice(&data).map_err(|e| format!("parse {}: {e}", spec_path.display()))?;

    let open = |name: &str| {
        let p = dir.join(name);
        std::os::unix::fs::OpenOptionsExt::mode(File::options().append(true).create(true), 0o600)
            .open(&p)
            .map_err(|e| format!("open {}: {e}", p.display()))
    };
    // Both files exist from the start, so followers find them; with discard_output they stay
    // empty.
    let (out_file, err_file) = (open(STDOUT_FILE)?, open(STDERR_FILE)?);
    let (out_file, err_file) = if spec.discard_output {
        (None, None)
    } else {
        (Some(out_file), Some(err_file))
    };
    steps.mark("spec_files");

    let container = Container::load(&spec.runtime_root, &spec.container_id)
        .map_err(|e| format!("container {}: {e}", spec.container_id))?;
    let process = job_process(&container, &spec)?;
    steps.mark("container");

    let pipe = || unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"));
    let (in_r, in_w) = pipe()?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    // The exec'd process inherits our fds 0-2 (and nothing else): put its pipe ends there for
    // the time of the exec, then /dev/null again so that only the job holds them.
    let dup = (|| {
        unistd::dup2_stdin(&in_r)?;
        unistd::dup2_stdout(&out_w)?;
        unistd::dup2_stderr(&err_w)
    })();
    drop((in_r, out_w, err_w));
    steps.mark("pipes");
    let spawned = dup.map_err(|e| format!("dup2: {e}")).and_then(|()| {
        container
            .exec(&ExecOptions {
                process,
                console_socket: None,
                detach: true,
                pid_file: None,
                preserve_fds: 0,
                ignore_paused: false,
                sub_cgroup: Default::default(),
            })
            .map_err(|e| format!("cannot run the job in container {}: {e}", spec.container_id))
    });
    stdio_to_null();
    let spawned = spawned?;
    steps.append(&spawned.steps);
    let pid = spawned.pid.as_raw();

    let job = match ProcId::of(pid) {
        Some(j) => j,
        None => {
            let _ = waitpid(Pid::from_raw(pid), None);
            return Err(format!("the job (pid {pid}) vanished"));
        }
    };
    if let Err(e) = job.write(&dir.join(JOB_PID_FILE)) {
        let _ = signal::kill(Pid::from_raw(-pid), Signal::SIGKILL);
        let _ = signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        let _ = waitpid(Pid::from_raw(pid), None);
        return Err(format!("write {}: {e}", dir.join(JOB_PID_FILE).display()));
    }
    steps.mark("job_pid");
    for fd in [&in_w, &out_r, &err_r] {
        set_nonblocking(fd).map_err(|e| format!("fcntl O_NONBLOCK: {e}"))?;
    }
    let syslog = spec.log.clone().map(Syslog::new);
    Ok(Started {
        pid,
        spec,
        syslog,
        stdin: Some(in_w),
        stdout: out_r,
        stderr: err_r,
        out_file,
        err_file,
    })
}

fn set_nonblocking(fd: &OwnedFd) -> nix::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl::fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl::fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map(drop)
}

/// The container's own process (config.json) with the job's args, env, cwd, user,
/// capabilities and rlimits; never a terminal.
fn job_process(container: &Container, spec: &JobSpec) -> Result<Process, String> {
    let mut p = container
        .config_process()
        .map_err(|e| format!("container {}: {e}", spec.container_id))?;
    let (uid, gid) = if spec.privileged {
        (0, 0)
    } else {
        (spec.uid, spec.gid)
    };
    let mut user = UserBuilder::default().uid(uid).gid(gid);
    if let Some(umask) = p.user().umask() {
        user = user.umask(umask);
    }
    p.set_user(user.build().map_err(|e| format!("job user: {e}"))?);
    p.set_terminal(Some(false));
    p.set_console_size(None);
    p.set_args(Some(vec![spec.shell.clone()]));
    p.set_command_line(None);
    p.set_env(Some(spec.env.clone()));
    p.set_cwd(spec.cwd.clone().into());
    let rlimits = spec
        .rlimits
        .iter()
        .map(|(name, value)| {
            let r = Rlimit::from_name(name, *value, *value)
                .ok_or_else(|| format!("unknown rlimit {name:?}"))?;
            PosixRlimitBuilder::default()
                .typ(r.kind)
                .soft(r.soft)
                .hard(r.hard)
                .build()
                .map_err(|e| format!("rlimit {name}: {e}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    p.set_rlimits(Some(rlimits));
    if !spec.privileged {
        let none = Capabilities::new();
        let caps = LinuxCapabilitiesBuilder::default()
            .bounding(none.clone())
            .effective(none.clone())
            .permitted(none.clone())
            .inheritable(none.clone())
            .ambient(none)
            .build()
            .map_err(|e| format!("job capabilities: {e}"))?;
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}

/// Where the output goes: the job's files up to the limit, or nowhere.
enum Sink {
    Keep,
    /// Over the limit: the job has been killed.
    Over,
    Failed(String),
}

impl Started {
    /// Feeds the script, copies the output until both streams end (or the limit is passed),
    /// reaps the job and says how it ended.
    fn supervise(mut self) -> JobStatus {
        let script = std::mem::take(&mut self.spec.script).into_bytes();
        let mut written = 0usize;
        if script.is_empty() {
            self.stdin = None;
        }
        let mut open = [true, true];
        let mut total: u64 = 0;
        let mut sink = Sink::Keep;
        let mut buf = vec![0u8; CHUNK];
        'copy: while open[0] || open[1] {
            let mut fds = Vec::with_capacity(3);
            let mut which = Vec::with_capacity(3);
            for (i, fd) in [&self.stdout, &self.stderr].into_iter().enumerate() {
                if open[i] {
                    fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                    which.push(i);
                }
            }
            if let Some(fd) = &self.stdin {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLOUT));
                which.push(2);
            }
            match nix::poll::poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => {
                    sink = Sink::Failed(format!("poll: {e}"));
                    break;
                }
            }
            let ready: Vec<usize> = fds
                .iter()
                .zip(&which)
                .filter(|(f, _)| f.revents().is_some_and(|r| !r.is_empty()))
                .map(|(_, w)| *w)
                .collect();
            drop(fds);
            for w in ready {
                if w == 2 {
                    let Some(fd) = &self.stdin else { continue };
                    match unistd::write(fd, &script[written..]) {
                        Ok(n) => written += n,
                        Err(Errno::EAGAIN | Errno::EINTR) => {}
                        // EPIPE: the job stopped reading its stdin; that is its business.
                        Err(_) => written = script.len(),
                    }
                    if written >= script.len() {
                        self.stdin = None;
                    }
                    continue;
                }
                let fd = if w == 0 { &self.stdout } else { &self.stderr };
                let stream = if w == 0 {
                    Stream::Stdout
                } else {
                    Stream::Stderr
                };
                let n = match unistd::read(fd, &mut buf) {
                    Ok(0) => {
                        open[w] = false;
                        if let Some(log) = &mut self.syslog {
                            log.finish(stream);
                        }
                        continue;
                    }
                    Ok(n) => n,
                    Err(Errno::EAGAIN | Errno::EINTR) => continue,
                    Err(e) => {
                        sink = Sink::Failed(format!("read the job's output: {e}"));
                        break 'copy;
                    }
                };
                // Syslog gets all of it, also with discard_output and up to a kill for the
                // limit.
                if let Some(log) = &mut self.syslog {
                    log.write(stream, &buf[..n]);
                }
                let file = if w == 0 {
                    self.out_file.as_mut()
                } else {
                    self.err_file.as_mut()
                };
                let Some(file) = file else { continue }; // discard_output
                let room = self.spec.output_limit.saturating_sub(total);
                let keep = (n as u64).min(room) as usize;
                if let Err(e) = file.write_all(&buf[..keep]) {
                    let name = if w == 0 { STDOUT_FILE } else { STDERR_FILE };
                    sink = Sink::Failed(format!("write {name}: {e}"));
                    break 'copy;
                }
                total += keep as u64;
                if keep < n {
                    sink = Sink::Over;
                    break 'copy;
                }
            }
        }
        if !matches!(sink, Sink::Keep) {
            // The job's own session and process group (exec's child calls setsid).
            let _ = signal::kill(Pid::from_raw(-self.pid), Signal::SIGKILL);
            let _ = signal::kill(Pid::from_raw(self.pid), Signal::SIGKILL);
        }
        let status = self.reap_after_close();
        match sink {
            Sink::Over => JobStatus::failed(OUTPUT_LIMIT_ERROR),
            Sink::Failed(e) => JobStatus::failed(e),
            Sink::Keep => status,
        }
    }

    /// Closes our ends of the pipes (writers left get EPIPE) and waits for the job.
    fn reap_after_close(self) -> JobStatus {
        let pid = Pid::from_raw(self.pid);
        drop(self.stdin);
        drop(self.stdout);
        drop(self.stderr);
        loop {
            match waitpid(pid, None) {
                Ok(WaitStatus::Exited(_, code)) => return JobStatus::exited(code as u32),
                Ok(WaitStatus::Signaled(..)) => return JobStatus::exited(255),
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => return JobStatus::failed(format!("wait for the job: {e}")),
            }
        }
    }
}
