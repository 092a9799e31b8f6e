//! Containers: what one is (its dir in the depot, its network, its user, its jobs), how it is
//! built and torn down, and what is kept on disk so a restarted daemon finds it again.
//!
//! - [`id`]: container ids (SPEC 3.2).
//! - [`rootfs`]: the overlay over the base rootfs and the files written into it.
//! - [`bundle`]: the OCI config.json the runtime starts.
//! - [`disk`]: disk quotas on the writable layer (XFS project quotas, btrfs qgroups).
//! - [`limits`]: limit_memory, limit_cpu and the OOM notifier.
//! - [`runtime`]: the create helper (our runtime library, single-threaded) and delete/kill.
//! - [`userns`]: the containers' user namespace and how their rootfs is owned in it.
//! - [`snapshot`]: `snapshot.json`, rewritten atomically on every change.

pub mod bundle;
pub mod disk;
pub mod id;
pub mod limits;
pub mod rootfs;
pub mod runtime;
pub mod seccomp;
pub mod snapshot;
pub mod stats;
pub mod userns;

use std::path::PathBuf;

/// What went wrong building, using or tearing down a container. The Display text is what a
/// client sees in the ErrorResponse.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request that cannot be honoured as asked; the message is the protocol's.
    #[error("{0}")]
    Request(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Sys(String),
    #[error("{0}")]
    Runtime(String),
    #[error("{0}")]
    Network(String),
}

impl Error {
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Container states (SPEC 3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Born,
    Active,
    Stopped,
    Destroyed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Born => "born",
            State::Active => "active",
            State::Stopped => "stopped",
            State::Destroyed => "destroyed",
        }
    }

    /// The original's wrong-state error, if `self` is not one of `allowed`.
    pub fn check(self, allowed: &[State]) -> Result<(), Error> {
        if allowed.contains(&self) {
            return Ok(());
        }
        let names: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
        Err(Error::Request(format!(
            "Container state must be one of '{}', current state is '{}'",
            names.join(", "),
            self.as_str()
        )))
    }
}
