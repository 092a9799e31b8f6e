//! The daemon side of jobs (async, tokio): start a keeper, then follow the job through its
//! job dir. Nothing here keeps state between calls: every function reads the dir, so any
//! number of followers work at once and they all survive a daemon restart.
//! See the [module docs](super).

use std::io::{self, Read as _, Seek as _};
use std::os::fd::{FromRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::sync::mpsc;

use super::{
    write_status, JobSpec, JobStatus, ProcId, CHUNK, JOB_PID_FILE, KEEPER_DIED_ERROR,
    KEEPER_PID_FILE, SPEC_FILE, STATUS_FILE, STDERR_FILE, STDOUT_FILE,
};
use crate::helper::Helper;
use crate::steps::Steps;

/// How long a keeper may take to start its job before [`spawn`] gives up on it.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// [`stream`] polls the output files this often when nothing new came, doubling from the
/// first to the second.
const POLL_MIN: Duration = Duration::from_millis(2);
const POLL_MAX: Duration = Duration::from_millis(20);

/// Why a job could not be started.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// What the keeper said (e.g. `container <id>: container does not exist`), or how it
    /// failed before saying anything.
    #[error("{0}")]
    Start(String),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> JobError + 'a {
    move |source| JobError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A started (or recovered) job: its dir and its processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub dir: PathBuf,
    pub keeper: ProcId,
    /// None only for a recovered job whose keeper had not started it yet.
    pub job: Option<ProcId>,
}

impl Job {
    pub async fn wait(&self) -> JobStatus {
        wait(&self.dir).await
    }

    pub async fn link(&self) -> io::Result<Linked> {
        link(&self.dir, &mut Steps::new()).await
    }

    pub fn stream(&self) -> mpsc::Receiver<StreamItem> {
        stream(&self.dir)
    }

    pub fn kill(&self, sig: Signal) -> bool {
        kill(&self.dir, sig)
    }
}

/// What [`spawn`] returns: the job, and the keeper's own timing of its start (`Steps`' text).
#[derive(Debug)]
pub struct Spawned {
    pub job: Job,
    pub keeper_steps: String,
}

/// Creates the job dir `dir` (its parent too if needed; `dir` itself must not exist), writes
/// `job.json`, starts a keeper on `dir` and returns once the job runs; `steps` gets the
/// daemon's side of it (`dir`, `job_json`, `keeper`). `keeper` is wardend
/// itself in its `__warden_keeper` mode (`Helper::new(<wardend>, KEEPER_ARG)`), whose `main`
/// dispatches to [`keeper::main_if_keeper`](super::keeper::main_if_keeper). On any failure
/// the dir is removed again and the error says why (the container is gone, the shell cannot
/// be executed, ...).
pub async fn spawn(
    keeper: &Arc<Helper>,
    dir: &Path,
    spec: &JobSpec,
    steps: &mut Steps,
) -> Result<Spawned, JobError> {
    // The dir and job.json are a few hundred bytes in the page cache: done on this thread,
    // not through tokio::fs, whose every call is a round trip to the blocking pool (about
    // 0.1 ms each on the 2-core VM).
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(io_err("mkdir", parent))?;
    }
    std::fs::create_dir(dir).map_err(io_err("mkdir", dir))?;
    steps.mark("dir");
    let result = start_keeper(keeper, dir, spec, steps).await;
    if result.is_err() {
        let _ = tokio::fs::remove_dir_all(dir).await;
    }
    result
}

async fn start_keeper(
    keeper: &Arc<Helper>,
    dir: &Path,
    spec: &JobSpec,
    steps: &mut Steps,
) -> Result<Spawned, JobError> {
    let spec_path = dir.join(SPEC_FILE);
    let data = serde_json::to_vec_pretty(spec).expect("a job spec serializes");
    std::fs::write(&spec_path, data).map_err(io_err("write", &spec_path))?;
    steps.mark("job_json");
    let mut child = keeper
        .start(&[dir.as_os_str()])
        .await
        .map_err(io_err("start the job keeper", keeper.exe()))?;
    let report = child.stdout.take().expect("stdout is piped");
    let mut line = String::new();
    let mut report = BufReader::new(report);
    let read = tokio::time::timeout(START_TIMEOUT, report.read_line(&mut line));
    let outcome = match read.await {
        Err(_) => Err(format!(
            "job keeper did not start the job within {START_TIMEOUT:?}"
        )),
        Ok(Err(e)) => Err(format!("read from the job keeper: {e}")),
        Ok(Ok(_)) => {
            let line = line.trim_end();
            if let Some(rest) = line.strip_prefix("started ") {
                let (pid, timed) = rest.split_once(' ').unwrap_or((rest, ""));
                pid.parse::<i32>()
                    .map(|pid| (pid, timed.to_string()))
                    .map_err(|_| format!("job keeper said {line:?}"))
            } else if let Some(msg) = line.strip_prefix("error ") {
                Err(msg.to_string())
            } else if line.is_empty() {
                let st = child.wait().await;
                Err(format!(
                    "job keeper exited before starting the job ({})",
                    st.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string())
                ))
            } else {
                Err(format!("job keeper said {line:?}"))
            }
        }
    };
    let (pid, keeper_steps) = match outcome {
        Ok(started) => started,
        Err(msg) => {
            // A keeper that timed out or talked nonsense: take its job down with it.
            let job = ProcId::read(&dir.join(JOB_PID_FILE));
            let _ = child.start_kill();
            if let Some(j) = job.filter(ProcId::is_same) {
                let _ = signal::kill(Pid::from_raw(-j.pid), Signal::SIGKILL);
            }
            let _ = child.wait().await;
            return Err(JobError::Start(msg));
        }
    };
    let keeper = ProcId::read(&dir.join(KEEPER_PID_FILE))
        .or_else(|| child.id().and_then(|p| ProcId::of(p as i32)));
    // Written before the start line; the pid in the line is the same.
    let job = ProcId::read(&dir.join(JOB_PID_FILE)).filter(|j| j.pid == pid);
    // The keeper is our child until it exits: reap it then (it outlives us if we die first).
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    steps.mark("keeper");
    Ok(Spawned {
        job: Job {
            dir: dir.to_path_buf(),
            keeper: keeper.ok_or_else(|| JobError::Start("the job keeper vanished".into()))?,
            job,
        },
        keeper_steps,
    })
}

/// The job's `status`, if it has one. A status file that cannot be parsed counts as an internal
/// error (255).
pub fn read_status(dir: &Path) -> Option<JobStatus> {
    let data = std::fs::read(dir.join(STATUS_FILE)).ok()?;
    Some(
        serde_json::from_slice(&data)
            .unwrap_or_else(|e| JobStatus::failed(format!("corrupt job status: {e}"))),
    )
}

/// The job's `job.json`.
pub fn read_spec(dir: &Path) -> io::Result<JobSpec> {
    let data = std::fs::read(dir.join(SPEC_FILE))?;
    serde_json::from_slice(&data).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Resolves when the job has ended: its status. A keeper that is gone without having written
/// one gets (and is recorded with) status 255 and [`KEEPER_DIED_ERROR`]. Follows the keeper
/// with a pidfd (polls where pidfds are not available).
pub async fn wait(dir: &Path) -> JobStatus {
    let mut pause = POLL_MIN;
    loop {
        if let Some(st) = read_status(dir) {
            return st;
        }
        match ProcId::read(&dir.join(KEEPER_PID_FILE)) {
            Some(k) if k.is_alive() => {
                if exited(k).await.is_err() {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
            }
            _ => {
                // The keeper may have written the status just before it went.
                if let Some(st) = read_status(dir) {
                    return st;
                }
                let st = JobStatus::failed(KEEPER_DIED_ERROR);
                if dir.is_dir() {
                    let _ = write_status(dir, &st);
                }
                return st;
            }
        }
    }
}

/// Resolves once `p` is no longer alive (at once if it is not now); Err when no pidfd can be
/// had for it (the caller polls instead).
async fn exited(p: ProcId) -> io::Result<()> {
    // SAFETY: pidfd_open with an integer pid and no flags.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, p.pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pidfd_open returned a new fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // Checked after the open: if the pid still has the recorded start time, the pidfd is the
    // keeper's (and not a process that reused its pid).
    if !p.is_alive() {
        return Ok(());
    }
    // SAFETY: the AsyncFd owns the pidfd, which stays open and the same until it is dropped.
    let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }?;
    // A pidfd turns readable when its process exits.
    let _ready = fd.readable().await?;
    Ok(())
}

/// What [`link`] returns: how the job ended and its whole output (bytes, as the job wrote them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linked {
    pub exit_status: u32,
    /// See [`JobStatus::error`]; link adds it to the container's events.
    pub error: Option<String>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Waits for the job to end, then returns its status and its whole output; `steps` gets the
/// wait and the reading of the output.
pub async fn link(dir: &Path, steps: &mut Steps) -> io::Result<Linked> {
    let status = wait(dir).await;
    steps.mark("wait");
    let read = |name: &str| {
        let p = dir.join(name);
        async move {
            // Output of up to a chunk is read on this thread (one open and read of a file
            // the keeper just wrote, in the page cache); more, up to the output limit,
            // through the blocking pool.
            let small = std::fs::metadata(&p).map(|m| m.len() <= CHUNK as u64);
            let data = match small {
                Ok(true) => std::fs::read(&p),
                Ok(false) => tokio::fs::read(&p).await,
                Err(e) => Err(e),
            };
            match data {
                Ok(d) => Ok(d),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(e),
            }
        }
    };
    let linked = Linked {
        exit_status: status.exit_status,
        error: status.error,
        stdout: read(STDOUT_FILE).await?,
        stderr: read(STDERR_FILE).await?,
    };
    steps.mark("output");
    Ok(linked)
}

/// One item of a [`stream`]: a piece of output, then (last) how the job ended, or an error
/// reading the output (also last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamItem {
    /// `name` is `"stdout"` or `"stderr"` (the protocol's `StreamResponse.name`); `data` is at
    /// most [`CHUNK`] bytes, split anywhere (even inside a UTF-8 character).
    Chunk {
        name: &'static str,
        data: Vec<u8>,
    },
    Exit {
        exit_status: u32,
        error: Option<String>,
    },
    Error(String),
}

/// Follows the job's output from the start: every byte written so far, then what comes as it
/// is written, then [`StreamItem::Exit`], after which the channel closes. For a job that had
/// already ended that is all of stdout, then all of stderr, then the exit (SPEC 3.5). Dropping
/// the receiver stops the follower (the job is not touched). Must be called within a tokio
/// runtime.
pub fn stream(dir: &Path) -> mpsc::Receiver<StreamItem> {
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(follow(dir.to_path_buf(), tx));
    rx
}

async fn follow(dir: PathBuf, tx: mpsc::Sender<StreamItem>) {
    let mut files = [
        Follower::new(dir.join(STDOUT_FILE), "stdout"),
        Follower::new(dir.join(STDERR_FILE), "stderr"),
    ];
    let done = wait(&dir);
    tokio::pin!(done);
    let mut status = None;
    let mut pause = POLL_MIN;
    loop {
        // Once the status is known the files are complete: this pass reads the rest.
        let last_pass = status.is_some();
        let mut got = false;
        for f in &mut files {
            // Reads of local files that were just written (page cache): short enough to do
            // on the runtime's thread.
            loop {
                let item = match f.next_chunk() {
                    Ok(Some(data)) => StreamItem::Chunk { name: f.name, data },
                    Ok(None) => break,
                    Err(e) => {
                        let msg = format!("read {}: {e}", f.path.display());
                        let _ = tx.send(StreamItem::Error(msg)).await;
                        return;
                    }
                };
                got = true;
                if tx.send(item).await.is_err() {
                    return;
                }
            }
        }
        if let Some(JobStatus { exit_status, error }) = status.take().filter(|_| last_pass) {
            let _ = tx.send(StreamItem::Exit { exit_status, error }).await;
            return;
        }
        pause = if got {
            POLL_MIN
        } else {
            (pause * 2).min(POLL_MAX)
        };
        tokio::select! {
            biased;
            st = &mut done => status = Some(st),
            _ = tx.closed() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// One output file read from where the last read stopped.
struct Follower {
    path: PathBuf,
    name: &'static str,
    file: Option<std::fs::File>,
    offset: u64,
}

impl Follower {
    fn new(path: PathBuf, name: &'static str) -> Follower {
        Follower {
            path,
            name,
            file: None,
            offset: 0,
        }
    }

    /// Up to CHUNK new bytes, or None if nothing new (or no file yet).
    fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        if self.file.is_none() {
            let mut f = match std::fs::File::open(&self.path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            f.seek(io::SeekFrom::Start(self.offset))?;
            self.file = Some(f);
        }
        let f = self.file.as_mut().expect("just opened");
        let mut buf = vec![0u8; CHUNK];
        let mut n = 0;
        while n < CHUNK {
            match f.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if n == 0 {
            return Ok(None);
        }
        self.offset += n as u64;
        buf.truncate(n);
        Ok(Some(buf))
    }
}

/// What [`recover`] found in a job dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovered {
    /// Its keeper is alive: the job runs (or is finishing); link/stream it as any other.
    Running(Job),
    /// It has a status (possibly the 255 / [`KEEPER_DIED_ERROR`] just recorded for a keeper
    /// that is gone without writing one). Its output files are still there.
    Finished(JobStatus),
}

/// Adopts a job dir after a daemon restart. Err if `dir` is not a job dir (no `job.json`:
/// gone, or left half-made by a spawn that never finished); such a dir should be dropped.
pub fn recover(dir: &Path) -> io::Result<Recovered> {
    std::fs::metadata(dir.join(SPEC_FILE))?;
    if let Some(st) = read_status(dir) {
        return Ok(Recovered::Finished(st));
    }
    if let Some(k) = ProcId::read(&dir.join(KEEPER_PID_FILE)).filter(ProcId::is_alive) {
        return Ok(Recovered::Running(Job {
            dir: dir.to_path_buf(),
            keeper: k,
            job: ProcId::read(&dir.join(JOB_PID_FILE)),
        }));
    }
    if let Some(st) = read_status(dir) {
        return Ok(Recovered::Finished(st));
    }
    let st = JobStatus::failed(KEEPER_DIED_ERROR);
    write_status(dir, &st)?;
    Ok(Recovered::Finished(st))
}

/// Whether the job is over: it has a status, or its keeper is gone (then [`wait`] and
/// [`recover`] record 255 / [`KEEPER_DIED_ERROR`]). Info's `job_ids` lists the others.
pub fn is_finished(dir: &Path) -> bool {
    dir.join(STATUS_FILE).exists()
        || !ProcId::read(&dir.join(KEEPER_PID_FILE)).is_some_and(|k| k.is_alive())
}

/// [`recover`]s every job dir in `jobs_dir` (`<container dir>/jobs`) whose name is a job id,
/// sorted by id, skipping those `recover` rejects. A missing `jobs_dir` has none.
pub fn recover_all(jobs_dir: &Path) -> Vec<(u64, PathBuf, Recovered)> {
    let Ok(entries) = std::fs::read_dir(jobs_dir) else {
        return Vec::new();
    };
    let mut out: Vec<(u64, PathBuf, Recovered)> = entries
        .flatten()
        .filter_map(|e| {
            let id = e.file_name().to_str()?.parse::<u64>().ok()?;
            let dir = e.path();
            let r = recover(&dir).ok()?;
            Some((id, dir, r))
        })
        .collect();
    out.sort_by_key(|(id, _, _)| *id);
    out
}

/// Sends `sig` to the job's process group (its session: the job's shell and what it started)
/// while the job's leader exists (running, or dead but not yet reaped by its keeper). Returns
/// whether a signal was sent. It works for a job whose keeper died, too. Never signals a reused
/// pid: the recorded start time must match.
pub fn kill(dir: &Path, sig: Signal) -> bool {
    let Some(j) = ProcId::read(&dir.join(JOB_PID_FILE)).filter(ProcId::is_same) else {
        return false;
    };
    signal::kill(Pid::from_raw(-j.pid), sig).is_ok()
        || signal::kill(Pid::from_raw(j.pid), sig).is_ok()
}

/// Deletes the job dir (output and all), best effort: a missing dir is fine, another failure
/// is logged. It does not stop the job: kill it first if it may still run.
pub fn remove(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            tracing::warn!("remove job dir {}: {e}", dir.display());
        }
        _ => {}
    }
}
