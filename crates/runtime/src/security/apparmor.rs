//! AppArmor: the profile of `process.apparmorProfile`, taken on at the process's execve
//! (`exec <profile>` written to the task's `attr/apparmor/exec`, or the older `attr/exec`),
//! as runc does. Where the host has no AppArmor enabled, a profile is ignored (runc too); where
//! it has, a profile the kernel does not know fails the start, naming it.

use std::io::Write;

use crate::error::{Error, Result};

const ENABLED: &str = "/sys/module/apparmor/parameters/enabled";

/// Whether the host's kernel enforces AppArmor.
pub fn enabled() -> bool {
    std::fs::read_to_string(ENABLED).is_ok_and(|v| v.trim() == "Y")
}

/// Makes the calling thread's next execve take on `profile`. Must run while /proc is the
/// container's own (after the pivot), before the capabilities are dropped.
pub fn apply_on_exec(profile: &str) -> Result<()> {
    if profile.is_empty() || !enabled() {
        return Ok(());
    }
    if profile.contains(['\n', '\0']) {
        return Err(Error::Config(format!(
            "process.apparmorProfile {profile:?}: a profile name is one line"
        )));
    }
    // The LSM-specific file first (kernel 5.8+, also where several LSMs are stacked).
    let mut last = None;
    for path in [
        "/proc/thread-self/attr/apparmor/exec",
        "/proc/thread-self/attr/exec",
    ] {
        let file = std::fs::OpenOptions::new().write(true).open(path);
        let mut file = match file {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                last = Some(e);
                continue;
            }
            Err(e) => return Err(profile_error(profile, path, e)),
        };
        // One write: the kernel parses the whole command from it.
        return file
            .write_all(format!("exec {profile}").as_bytes())
            .map_err(|e| profile_error(profile, path, e));
    }
    Err(profile_error(
        profile,
        "/proc/thread-self/attr/exec",
        last.unwrap_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound)),
    ))
}

fn profile_error(profile: &str, path: &str, e: std::io::Error) -> Error {
    let hint = if e.raw_os_error() == Some(libc::ENOENT) {
        " (is the profile loaded? apparmor_parser -r FILE)"
    } else {
        ""
    };
    Error::Init(format!(
        "apply AppArmor profile {profile:?} ({path}): {e}{hint}"
    ))
}
