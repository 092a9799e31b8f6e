//! Jobs: the keeper process that runs a job in a container and owns its output, and the daemon
//! side that links and streams it (the roles of the original `iomux-spawn`, `iomux-link` and
//! `wsh`, SPEC 3.5 and 5).
//!
//! # Why a keeper
//!
//! The runtime runs a process inside an existing container ([`warden_runtime::Container::exec`]:
//! setns into its namespaces, join its cgroup, set user, capabilities and rlimits, exec) only from
//! a single-threaded process, because it clones without exec. wardend is multithreaded (tokio), so
//! for every job it starts a **keeper**: its own binary re-executed as
//! `<exe> __warden_keeper` with the job dir on its stdin ([`keeper::KEEPER_ARG`]; a
//! [`crate::helper`], started one job ahead; wardend's `main` dispatches to
//! [`keeper::main_if_keeper`] before anything else runs). The keeper detaches (new session, every
//! inherited fd closed), runs the job as its child, owns the job's stdio, and keeps running when
//! the daemon dies or restarts. All the daemon ever needs from a job is in its directory, so a
//! restarted daemon loses neither output nor status.
//!
//! # The job dir `<container dir>/jobs/<job id>/`
//!
//! | file         | written by | when / what |
//! |--------------|------------|-------------|
//! | `job.json`   | daemon     | before the keeper starts: the [`JobSpec`] (JSON) |
//! | `keeper.pid` | keeper     | first thing: `"<pid> <start time>\n"` of the keeper (start time: field 22 of `/proc/<pid>/stat`) |
//! | `stdout`, `stderr` | keeper | created empty before the job starts, then the job's output appended as it comes (raw bytes) |
//! | `job.pid`    | keeper     | once the job runs: `"<pid> <start time>\n"` of the job (a host pid; the job leads its own session and process group) |
//! | `status`     | keeper     | last, atomically (`.status.tmp` + rename): `{"exit_status": u32, "error": null \| "..."}` |
//!
//! Every pid file and `status` is written to a temp name and renamed, so a reader sees a whole
//! file or none. A pid counts only while its start time matches, so a reused pid is never
//! mistaken for (or signalled as) a keeper or a job.
//!
//! # The keeper protocol
//!
//! 1. The daemon creates the job dir, writes `job.json` and hands the job dir to a keeper
//!    started with stdin a pipe (closed once the dir is written), stdout a pipe (the *report*
//!    pipe) and stderr `/dev/null`.
//! 2. The keeper moves the report pipe off fd 1, calls `setsid`, closes every other inherited fd,
//!    writes `keeper.pid`, reads `job.json`, creates `stdout`/`stderr`, makes three pipes and puts
//!    their job ends on its fds 0/1/2 (the exec'd process inherits fds 0-2 and nothing else),
//!    then calls `Container::exec` with `[shell]` as the process.
//! 3. It reports on the report pipe exactly one line and closes it:
//!    `started <job pid> <steps>` (where the start's time went, [`warden_runtime::steps`]'s
//!    text: `detach=0.012 ... total=1.234`, milliseconds) or `error <message>` (then it also
//!    writes a `status` of 255 with that error, and exits 1). A keeper that exits without a
//!    line is an error too.
//! 4. It writes the script to the job's stdin (non-blocking, interleaved with reading the
//!    output, so a big script cannot deadlock against a chatty job) and closes it; it copies the
//!    job's stdout and stderr to the files until both reach EOF. Past `output_limit` bytes in
//!    total it writes only what fits, SIGKILLs the job's process group and records 255 with
//!    [`OUTPUT_LIMIT_ERROR`]. With `discard_output` it reads and drops everything (no limit).
//! 5. It reaps the job and writes `status`: the exit code, or 255 when the job was killed by a
//!    signal, went over the limit, or on an internal error (SPEC 3.5). Then it exits.
//!
//! A keeper that dies without writing `status` (SIGKILL, OOM killer) is noticed by the daemon side
//! ([`wait`], [`recover`]), which then writes status 255 with [`KEEPER_DIED_ERROR`].
//!
//! # The daemon side
//!
//! [`spawn`] starts a keeper and returns a [`Job`] once the job runs. [`wait`], [`link`] and
//! [`stream`] only read the job dir, so any number of them may follow one job at once, a late
//! attacher first gets everything written so far, and they work the same on a job adopted by
//! [`recover`] after a restart. [`kill`] signals a job's process group; [`remove`] deletes the
//! job dir. Who may link a job once (SPEC 3.5's "a second link → `no such job`") is the
//! registry's business, not this module's.
//!
//! Output is bytes: the files hold exactly what the job wrote, and [`link`]/[`stream`] hand out
//! `Vec<u8>`, which is what the protocol messages carry (`LinkResponse.stdout`,
//! `StreamResponse.data` are declared `string` on the wire but are `Vec<u8>` in
//! `warden-protocol`). Where a Rust `String` is needed, convert at that edge with
//! `String::from_utf8_lossy` (a stream chunk may end inside a multi-byte character).

pub mod client;
pub mod keeper;
pub mod syslog;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use oci_spec::runtime::PosixRlimitType;
use serde::{Deserialize, Serialize};

pub use client::{
    is_finished, kill, link, read_spec, read_status, recover, recover_all, remove, spawn, stream,
    wait, Job, JobError, Linked, Recovered, Spawned, StreamItem,
};

/// The default `job_output_limit`: 10 MiB of stdout and stderr together.
pub const DEFAULT_OUTPUT_LIMIT: u64 = 10 * 1024 * 1024;
/// The error of a job that wrote more than its output limit (SPEC 3.5, 4).
pub const OUTPUT_LIMIT_ERROR: &str = "command exceeded maximum output";
/// The error of a job whose keeper died before writing the job's status.
pub const KEEPER_DIED_ERROR: &str = "job keeper died";
/// The biggest piece of output [`stream`] sends at once (SPEC 3.5: ≤ 64 KiB).
pub const CHUNK: usize = 64 * 1024;

/// File names inside a job dir (see the module docs).
pub const SPEC_FILE: &str = "job.json";
pub const KEEPER_PID_FILE: &str = "keeper.pid";
pub const JOB_PID_FILE: &str = "job.pid";
pub const STDOUT_FILE: &str = "stdout";
pub const STDERR_FILE: &str = "stderr";
pub const STATUS_FILE: &str = "status";

/// Everything the keeper needs to run one job; written to `job.json` by [`spawn`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The runtime's state root the container lives under (`warden-runc --root`).
    pub runtime_root: PathBuf,
    /// The container's runtime id: `Container::load(runtime_root, container_id)`.
    pub container_id: String,
    /// Written to the shell's stdin, which is then closed.
    pub script: String,
    /// The unprivileged user (`vcap`); ignored when `privileged` (the job then runs as 0:0).
    pub uid: u32,
    pub gid: u32,
    /// true: root with the capabilities the container's config gives its process;
    /// false: `uid`/`gid` with no capabilities at all.
    pub privileged: bool,
    /// The job's resource limits, already resolved (config `container_rlimits` merged with the
    /// request's `rlimits`, plus SPEC 5's defaults where the caller wants them), as
    /// `(name, value)`: a name of [`Rlimit::from_name`] (`"nofile"`, `"as"`, ...) and the value
    /// for both the soft and the hard limit (`u64::MAX`: unlimited). An unknown name fails the
    /// spawn. Limits not listed are inherited from the keeper (the daemon's).
    pub rlimits: Vec<(String, u64)>,
    /// The whole environment (`NAME=value`); see [`job_env`].
    pub env: Vec<String>,
    /// The working directory (the user's home); created if missing.
    pub cwd: String,
    /// The shell inside the container, e.g. `/bin/bash` (see [`shell_for`]).
    pub shell: String,
    /// Read the output and drop it: no files grow and the limit never triggers.
    pub discard_output: bool,
    /// `job_output_limit` in bytes (stdout + stderr); see [`DEFAULT_OUTPUT_LIMIT`].
    pub output_limit: u64,
    /// `log_tag`: every line of output also goes to syslog (absent in the job.json of a job
    /// started before log_tag was kept: no syslog).
    #[serde(default)]
    pub log: Option<syslog::LogTarget>,
}

/// One resource limit, typed. `u64::MAX` is unlimited (RLIM_INFINITY).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    #[serde(rename = "type")]
    pub kind: PosixRlimitType,
    pub soft: u64,
    pub hard: u64,
}

impl Rlimit {
    pub fn new(kind: PosixRlimitType, soft: u64, hard: u64) -> Rlimit {
        Rlimit { kind, soft, hard }
    }

    /// The limit named `name` (`nofile`, `NOFILE` or `RLIMIT_NOFILE`, as in `container_rlimits`
    /// and the protocol's `ResourceLimits` fields; `as_` is `as`), or None for an unknown name.
    pub fn from_name(name: &str, soft: u64, hard: u64) -> Option<Rlimit> {
        let upper = name.trim_end_matches('_').to_ascii_uppercase();
        let full = if upper.starts_with("RLIMIT_") {
            upper
        } else {
            format!("RLIMIT_{upper}")
        };
        let kind = serde_json::from_value(serde_json::Value::String(full)).ok()?;
        Some(Rlimit { kind, soft, hard })
    }
}

/// How a job ended (the `status` file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    /// The shell's exit code; 255 when it was killed by a signal, went over the output limit,
    /// or on an internal error.
    pub exit_status: u32,
    /// Why, when it was not the shell's own exit: [`OUTPUT_LIMIT_ERROR`],
    /// [`KEEPER_DIED_ERROR`], or what failed.
    pub error: Option<String>,
}

impl JobStatus {
    pub fn exited(code: u32) -> JobStatus {
        JobStatus {
            exit_status: code,
            error: None,
        }
    }

    pub fn failed(error: impl Into<String>) -> JobStatus {
        JobStatus {
            exit_status: 255,
            error: Some(error.into()),
        }
    }
}

/// The job's environment as wsh gives it (SPEC 3.5): `LANG` (the daemon's, else
/// `en_US.UTF-8`), `PATH`, `HOME`, `USER`.
pub fn job_env(user: &str, home: &str) -> Vec<String> {
    let lang = std::env::var("LANG")
        .ok()
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| "en_US.UTF-8".to_string());
    vec![
        format!("LANG={lang}"),
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        format!("HOME={home}"),
        format!("USER={user}"),
    ]
}

/// `/bin/bash` if the container's root filesystem has it, else `/bin/sh`.
pub fn shell_for(rootfs: &Path) -> &'static str {
    if std::fs::symlink_metadata(rootfs.join("bin/bash")).is_ok() {
        "/bin/bash"
    } else {
        "/bin/sh"
    }
}

/// A process as the job dir records it: its pid and its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcId {
    pub pid: i32,
    pub start_time: u64,
}

impl ProcId {
    /// The process `pid` as it is now, if it exists.
    pub fn of(pid: i32) -> Option<ProcId> {
        let s = warden_runtime::proc::stat(pid)?;
        Some(ProcId {
            pid,
            start_time: s.start_time,
        })
    }

    /// Still this process, and not a zombie.
    pub fn is_alive(&self) -> bool {
        warden_runtime::proc::is_alive(self.pid, self.start_time)
    }

    /// Still this process, zombie or not: its pid (and so its process group id) is not reused.
    pub fn is_same(&self) -> bool {
        warden_runtime::proc::stat(self.pid).is_some_and(|s| s.start_time == self.start_time)
    }

    pub fn read(path: &Path) -> Option<ProcId> {
        let text = std::fs::read_to_string(path).ok()?;
        let mut f = text.split_ascii_whitespace();
        Some(ProcId {
            pid: f.next()?.parse().ok()?,
            start_time: f.next()?.parse().ok()?,
        })
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        write_atomic(
            path,
            format!("{} {}\n", self.pid, self.start_time).as_bytes(),
        )
    }
}

/// Writes `data` to `path` through a temp file in the same dir, then renamed over, so a reader
/// sees the whole file or none. Not fsync'd: what these files are for (a daemon that died or
/// restarted finding its jobs) needs only the page cache, which outlives every process; after
/// a host crash no container and no job is left to find. An fsync cost 0.6 ms a file on the
/// 2-core VM's disk, three per job.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp.{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    drop(f);
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Writes a job's `status` file.
pub fn write_status(dir: &Path, status: &JobStatus) -> std::io::Result<()> {
    let data = serde_json::to_vec(status).expect("a status serializes");
    write_atomic(&dir.join(STATUS_FILE), &data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rlimit_names() {
        let r = Rlimit::from_name("nofile", 1, 2).unwrap();
        assert_eq!(r.kind, PosixRlimitType::RlimitNofile);
        assert_eq!(
            Rlimit::from_name("RLIMIT_AS", 1, 1).unwrap().kind,
            PosixRlimitType::RlimitAs
        );
        assert_eq!(
            Rlimit::from_name("Sigpending", 1, 1).unwrap().kind,
            PosixRlimitType::RlimitSigpending
        );
        assert!(Rlimit::from_name("bogus", 1, 1).is_none());
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, r#"{"type":"RLIMIT_NOFILE","soft":1,"hard":2}"#);
    }

    #[test]
    fn status_roundtrip_and_pid_files() {
        let d = tempfile::tempdir().unwrap();
        write_status(d.path(), &JobStatus::failed(OUTPUT_LIMIT_ERROR)).unwrap();
        let text = std::fs::read_to_string(d.path().join(STATUS_FILE)).unwrap();
        assert_eq!(
            text,
            r#"{"exit_status":255,"error":"command exceeded maximum output"}"#
        );
        let me = ProcId::of(std::process::id() as i32).unwrap();
        let p = d.path().join(KEEPER_PID_FILE);
        me.write(&p).unwrap();
        assert_eq!(ProcId::read(&p), Some(me));
        assert!(me.is_alive() && me.is_same());
        let other = ProcId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!other.is_alive() && !other.is_same());
        // Only the two files: no temp file left.
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 2);
    }

    #[test]
    fn env_and_shell() {
        let env = job_env("vcap", "/home/vcap");
        assert!(env[0].starts_with("LANG="));
        assert!(env.contains(&"HOME=/home/vcap".to_string()));
        assert!(env.contains(&"USER=vcap".to_string()));
        let d = tempfile::tempdir().unwrap();
        assert_eq!(shell_for(d.path()), "/bin/sh");
        std::fs::create_dir(d.path().join("bin")).unwrap();
        std::os::unix::fs::symlink("/usr/bin/bash", d.path().join("bin/bash")).unwrap();
        assert_eq!(shell_for(d.path()), "/bin/bash");
    }
}
