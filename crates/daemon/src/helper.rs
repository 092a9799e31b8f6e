//! wardend's helper processes, started one request ahead. The create helper and the job
//! keeper are wardend itself, re-executed in a single-threaded mode (`__warden_create`,
//! `__warden_keeper`: the runtime library clones without exec, which a threaded daemon
//! cannot do). The exec is most of a helper's start: wardend is an 11.6 MB binary, and its
//! exec, loader and runtime start took 1.3 ms of every create and of every job on the 2-core
//! VM (0.7 ms for `/bin/true`). So a helper takes its arguments on stdin, not on its command
//! line, and each [`Helper`] keeps one process started and waiting for them: a request hands
//! its arguments to that spare, and the next spare is started beside the request, on the
//! core the request does not use.
//!
//! A spare holds nothing but its process: it has read no file, joined nothing, and exits as
//! soon as its stdin closes with no arguments, which is what happens when the daemon goes
//! (killed or not: the kernel closes the pipe) or drops it. The first spare is started by the
//! first request, so a daemon that never makes a container starts no helper.
//!
//! The arguments on stdin: each one followed by a NUL byte, then end of file.

use std::ffi::{OsStr, OsString};
use std::io::Read as _;
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt as _;
use tokio::process::{Child, Command};

/// One kind of helper (`mode` is its first argument, e.g. `__warden_keeper`) and its spare.
#[derive(Debug)]
pub struct Helper {
    exe: PathBuf,
    mode: &'static str,
    spare: Mutex<Option<Child>>,
    /// A spare is being started: concurrent requests start one spare, not one each (the
    /// rest would be started and dropped, an exec each for nothing on a busy host).
    refilling: AtomicBool,
}

impl Helper {
    /// `exe` is wardend (`std::env::current_exe()`, or `/proc/self/exe`), whose `main`
    /// dispatches `mode` to the helper's code before anything else runs.
    pub fn new(exe: &Path, mode: &'static str) -> Arc<Helper> {
        Arc::new(Helper {
            exe: exe.to_path_buf(),
            mode,
            spare: Mutex::new(None),
            refilling: AtomicBool::new(false),
        })
    }

    pub fn exe(&self) -> &Path {
        &self.exe
    }

    /// A helper running with `args`: the spare if there is one (else one started now),
    /// with stdout piped to the caller (the helper's report), stdin closed once the
    /// arguments are written and stderr /dev/null. Starts the next spare in the background.
    pub async fn start(self: &Arc<Self>, args: &[&OsStr]) -> std::io::Result<Child> {
        let spare = self.spare.lock().unwrap_or_else(|p| p.into_inner()).take();
        if !self.refilling.swap(true, Ordering::AcqRel) {
            // On a blocking thread: a start holds its thread until the kernel has loaded
            // the binary (1 to 2 ms here), which on a worker would hold up the requests
            // queued there, this one included.
            let this = self.clone();
            tokio::task::spawn_blocking(move || {
                this.refill();
                this.refilling.store(false, Ordering::Release);
            });
        }
        let input = encode(args);
        if let Some(mut child) = spare {
            // A spare that died meanwhile (killed from outside) refuses the arguments: a
            // new helper takes them.
            if hand(&mut child, &input).await.is_ok() {
                return Ok(child);
            }
            let _ = child.start_kill();
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
        }
        let mut child = self.launch()?;
        hand(&mut child, &input).await?;
        Ok(child)
    }

    /// Starts a spare if there is none (not under the lock, which a request takes).
    fn refill(&self) {
        let slot = || self.spare.lock().unwrap_or_else(|p| p.into_inner());
        if slot().is_some() {
            return;
        }
        match self.launch() {
            Ok(child) => {
                slot().get_or_insert(child);
            }
            Err(e) => tracing::warn!(
                exe = %self.exe.display(),
                "cannot start a spare {} helper: {e}", self.mode
            ),
        }
    }

    fn launch(&self) -> std::io::Result<Child> {
        Command::new(&self.exe)
            .arg(self.mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
    }
}

/// Writes the arguments to the helper's stdin and closes it.
async fn hand(child: &mut Child, input: &[u8]) -> std::io::Result<()> {
    let mut stdin = child.stdin.take().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the helper has no stdin")
    })?;
    stdin.write_all(input).await?;
    stdin.shutdown().await
}

fn encode(args: &[&OsStr]) -> Vec<u8> {
    let mut out = Vec::new();
    for a in args {
        out.extend_from_slice(a.as_bytes());
        out.push(0);
    }
    out
}

/// In the helper: its arguments, read from stdin to its end. None when stdin closed with
/// none (a spare the daemon never used: the helper should exit at once, doing nothing).
/// An argument cannot hold a NUL (a path or an id never does).
pub fn read_args() -> Option<Vec<OsString>> {
    let mut data = Vec::new();
    std::io::stdin().lock().read_to_end(&mut data).ok()?;
    decode(data)
}

fn decode(mut data: Vec<u8>) -> Option<Vec<OsString>> {
    if data.is_empty() {
        return None;
    }
    if data.last() == Some(&0) {
        data.pop();
    }
    Some(
        data.split(|&b| b == 0)
            .map(|a| OsString::from_vec(a.to_vec()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_round_trip_including_empty_ones() {
        let args = [OsStr::new("/a b"), OsStr::new(""), OsStr::new("x\ny")];
        let data = encode(&args);
        assert_eq!(data, b"/a b\0\0x\ny\0");
        let back = decode(data).expect("arguments");
        assert_eq!(
            back,
            args.iter().map(|a| a.to_os_string()).collect::<Vec<_>>()
        );
        assert_eq!(
            decode(encode(&[OsStr::new("")])),
            Some(vec![OsString::new()])
        );
    }

    #[test]
    fn no_input_is_no_arguments() {
        assert_eq!(decode(Vec::new()), None);
    }
}
