//! OCI hooks: each runs as a program with the container's state JSON on its stdin, its own
//! args (args[0] is argv[0]) and env, and an optional timeout in seconds after which it is
//! killed. A hook that fails or times out fails the step it belongs to; its output is kept
//! (up to a bound) and put in the error so the user sees why. Poststart and poststop hooks
//! come after the point of no return: the spec has a failing one logged as a warning and the
//! hooks after it run all the same ([`run_all`]).

use std::io::{Read, Seek, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hook, Hooks};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Prestart => "prestart",
            Kind::CreateRuntime => "createRuntime",
            Kind::CreateContainer => "createContainer",
            Kind::StartContainer => "startContainer",
            Kind::Poststart => "poststart",
            Kind::Poststop => "poststop",
        }
    }

    #[allow(deprecated)] // prestart is deprecated in the spec, still used by Docker and podman
    pub fn of(self, hooks: &Hooks) -> &[Hook] {
        let list = match self {
            Kind::Prestart => hooks.prestart(),
            Kind::CreateRuntime => hooks.create_runtime(),
            Kind::CreateContainer => hooks.create_container(),
            Kind::StartContainer => hooks.start_container(),
            Kind::Poststart => hooks.poststart(),
            Kind::Poststop => hooks.poststop(),
        };
        list.as_deref().unwrap_or(&[])
    }
}

/// True if `hooks` has any hook of one of `kinds`.
pub fn any(hooks: Option<&Hooks>, kinds: &[Kind]) -> bool {
    hooks.is_some_and(|h| kinds.iter().any(|k| !k.of(h).is_empty()))
}

/// Runs every hook of `kind` in order, stopping at the first failure.
pub fn run(hooks: Option<&Hooks>, kind: Kind, state: &serde_json::Value) -> Result<()> {
    let Some(hooks) = hooks else { return Ok(()) };
    let input = serde_json::to_vec(state).expect("state serializes");
    for hook in kind.of(hooks) {
        run_one(hook, &input).map_err(|msg| Error::Hook {
            kind: kind.name(),
            path: hook.path().clone(),
            msg,
        })?;
    }
    Ok(())
}

/// Runs every hook of `kind`, a failing one included, and returns the failures, in order
/// (poststart, poststop).
pub fn run_all(hooks: Option<&Hooks>, kind: Kind, state: &serde_json::Value) -> Vec<Error> {
    let Some(hooks) = hooks else {
        return Vec::new();
    };
    let input = serde_json::to_vec(state).expect("state serializes");
    kind.of(hooks)
        .iter()
        .filter_map(|hook| {
            run_one(hook, &input).err().map(|msg| Error::Hook {
                kind: kind.name(),
                path: hook.path().clone(),
                msg,
            })
        })
        .collect()
}

const OUTPUT_LIMIT: u64 = 4096;

fn run_one(hook: &Hook, input: &[u8]) -> std::result::Result<(), String> {
    let mut cmd = Command::new(hook.path());
    if let Some(args) = hook.args() {
        if let Some((argv0, rest)) = args.split_first() {
            cmd.arg0(argv0).args(rest);
        }
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    // Output goes to an anonymous file, not a pipe: a chatty hook cannot block on a full pipe
    // while we wait for it, and we need no reader thread.
    let mut output_file = output_file().map_err(|e| format!("memfd: {e}"))?;
    let dup = || output_file.try_clone().map_err(|e| format!("dup: {e}"));
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::from(dup()?))
        .stderr(Stdio::from(dup()?));
    // Its own process group, so a timeout kills what the hook started too (a shell's
    // `sleep`), not only the hook: nothing of a timed-out hook outlives the step.
    cmd.process_group(0);
    let mut child = cmd.spawn().map_err(|e| format!("start: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine: ignore EPIPE.
        let _ = stdin.write_all(input);
    }
    let deadline = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let mut pause = Duration::from_micros(200);
    let status = loop {
        match child.try_wait().map_err(|e| format!("wait: {e}"))? {
            Some(status) => break status,
            None => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    // SAFETY: kill(2) of the process group the hook leads.
                    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                    let _ = child.wait();
                    return Err(format!(
                        "timed out after {}s",
                        hook.timeout().unwrap_or_default()
                    ));
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(10));
            }
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut output = String::new();
    if output_file.rewind().is_ok() {
        let _ = (&mut output_file)
            .take(OUTPUT_LIMIT)
            .read_to_string(&mut output);
    }
    let how = match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "failed".into(),
    };
    let output = output.trim();
    if output.is_empty() {
        Err(how)
    } else {
        Err(format!("{how}, output: {output}"))
    }
}

fn output_file() -> std::io::Result<std::fs::File> {
    let fd = nix::sys::memfd::memfd_create(c"warden-hook", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map_err(std::io::Error::from)?;
    Ok(std::fs::File::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::HookBuilder;

    fn hook(script: &str, timeout: Option<i64>) -> Hook {
        let mut b = HookBuilder::default()
            .path("/bin/sh")
            .args(vec!["sh".to_string(), "-c".to_string(), script.to_string()])
            .env(vec!["HOOKVAR=hv".to_string()]);
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        b.build().unwrap()
    }

    #[test]
    fn hook_reads_state_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let h = hook(
            &format!("cat > {0}; echo \" $HOOKVAR\" >> {0}", out.display()),
            None,
        );
        let hooks = oci_spec::runtime::HooksBuilder::default()
            .poststart(vec![h])
            .build()
            .unwrap();
        run(
            Some(&hooks),
            Kind::Poststart,
            &serde_json::json!({"id": "c1"}),
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(out).unwrap(),
            "{\"id\":\"c1\"} hv\n"
        );
        assert!(any(Some(&hooks), &[Kind::Poststart]));
        assert!(!any(Some(&hooks), &[Kind::Poststop]));
    }

    #[test]
    fn failing_hook_reports_status_and_output() {
        let hooks = oci_spec::runtime::HooksBuilder::default()
            .poststop(vec![hook("echo boom >&2; exit 3", None)])
            .build()
            .unwrap();
        let e = run(Some(&hooks), Kind::Poststop, &serde_json::json!({}))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "poststop hook /bin/sh: exit status 3, output: boom");
    }

    #[test]
    fn slow_hook_times_out() {
        let hooks = oci_spec::runtime::HooksBuilder::default()
            .create_runtime(vec![hook("sleep 5", Some(1))])
            .build()
            .unwrap();
        let t = Instant::now();
        let e = run(Some(&hooks), Kind::CreateRuntime, &serde_json::json!({}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("timed out after 1s"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(4));
    }
}
