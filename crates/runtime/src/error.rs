//! The runtime's error type. Variants name the container, path or syscall that failed, so
//! that a message reaching a user (through `warden-runc` or `wardend`) says what was wrong.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The wording of runc's libcontainer errors is kept where callers (containerd, podman)
    /// match on it.
    #[error("container with given ID already exists")]
    Exists(String),
    #[error("invalid container ID format: {0:?}")]
    InvalidId(String),
    #[error("container does not exist")]
    NotExist(String),
    #[error("{0}")]
    State(String),

    #[error("JSON specification file {0} not found")]
    SpecNotFound(PathBuf),
    #[error("{path}: {msg}")]
    Spec { path: PathBuf, msg: String },
    #[error("invalid configuration: {0}")]
    Config(String),

    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{call}: {errno}")]
    Sys {
        call: String,
        #[source]
        errno: nix::Error,
    },
    #[error("sync with container init: {0}")]
    Sync(String),
    /// An error the container's init reported before it could exec the user's process.
    #[error("{0}")]
    Init(String),
    /// A `linux.seccomp` profile that cannot be compiled.
    #[error("seccomp: {0}")]
    Seccomp(String),
    #[error("{kind} hook {path}: {msg}")]
    Hook {
        kind: &'static str,
        path: PathBuf,
        msg: String,
    },
    /// Checkpoint or restore: CRIU could not be run, or failed (with its own reason).
    #[error("{0}")]
    Criu(String),
    #[error(transparent)]
    Cgroups(#[from] crate::cgroups::Error),
}

impl Error {
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub fn sys(call: impl Into<String>, errno: nix::Error) -> Self {
        Error::Sys {
            call: call.into(),
            errno,
        }
    }
}

/// Adds the path and operation to an `io::Result`.
pub trait IoContext<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e))
    }
}

/// Adds the syscall name to a `nix::Result`.
pub trait SysContext<T> {
    fn sys(self, call: impl Into<String>) -> Result<T>;
}

impl<T> SysContext<T> for nix::Result<T> {
    fn sys(self, call: impl Into<String>) -> Result<T> {
        self.map_err(|e| Error::sys(call, e))
    }
}
