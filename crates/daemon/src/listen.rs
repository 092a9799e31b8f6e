//! The daemon's files on the host: its unix socket and its pidfile.
//!
//! [`bind_unix`] removes a stale socket (a socket file nobody answers on: connecting gets
//! ECONNREFUSED), refuses to start when another daemon answers on the path, binds, and sets the
//! configured permissions. The returned [`SocketFile`] and [`Pidfile`] remove their file when
//! dropped, but only if it is still the one this process made (same inode, same pid), so a
//! daemon shutting down never removes a newer daemon's files.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why the socket or the pidfile could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("another wardend is already listening on {0}")]
    InUse(PathBuf),
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error("cannot remove the stale socket {path}: {source}")]
    RemoveStale {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot listen on {path}: {source}")]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot set the permissions of {path} to {mode:04o}: {source}")]
    Chmod {
        path: PathBuf,
        mode: u32,
        #[source]
        source: io::Error,
    },
    #[error("cannot write the pidfile {path}: {source}")]
    Pidfile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The bound socket's file; removed on drop if it is still ours.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    /// dev, inode and ctime: an inode number alone is reused at once on tmpfs.
    ino: (u64, u64, i64, i64),
}

impl SocketFile {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the file now (if still ours); dropping does the same.
    pub fn remove(&mut self) {
        if let Ok(meta) = fs::symlink_metadata(&self.path) {
            if identity(&meta) == self.ino {
                let _ = fs::remove_file(&self.path);
            }
        }
        self.ino = (0, 0, 0, 0);
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if self.ino != (0, 0, 0, 0) {
            self.remove();
        }
    }
}

fn identity(meta: &fs::Metadata) -> (u64, u64, i64, i64) {
    (meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec())
}

/// Clears the way for a socket at `path`: nothing there, or a stale socket removed.
fn clear_stale(path: &Path) -> Result<(), ListenError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ListenError::Bind {
                path: path.to_owned(),
                source,
            })
        }
    };
    if !meta.file_type().is_socket() {
        return Err(ListenError::NotASocket(path.to_owned()));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(ListenError::InUse(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            fs::remove_file(path).or_else(|source| {
                if source.kind() == io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(ListenError::RemoveStale {
                        path: path.to_owned(),
                        source,
                    })
                }
            })?;
            tracing::info!(path = %path.display(), "removed a stale socket");
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ListenError::Bind {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Binds the daemon's socket at `path` with permissions `mode` (see the module docs). Needs a
/// tokio runtime (the listener registers with it).
pub fn bind_unix(
    path: &Path,
    mode: u32,
) -> Result<(tokio::net::UnixListener, SocketFile), ListenError> {
    clear_stale(path)?;
    let listener = tokio::net::UnixListener::bind(path).map_err(|source| {
        if source.kind() == io::ErrorKind::AddrInUse {
            // Lost a race with another daemon starting at the same time.
            ListenError::InUse(path.to_owned())
        } else {
            ListenError::Bind {
                path: path.to_owned(),
                source,
            }
        }
    })?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|source| {
        let _ = fs::remove_file(path);
        ListenError::Chmod {
            path: path.to_owned(),
            mode,
            source,
        }
    })?;
    // After the chmod, which changes the ctime.
    let meta = fs::symlink_metadata(path).map_err(|source| ListenError::Bind {
        path: path.to_owned(),
        source,
    })?;
    let file = SocketFile {
        path: path.to_owned(),
        ino: identity(&meta),
    };
    Ok((listener, file))
}

/// The pidfile; removed on drop if it still holds this process's pid.
#[derive(Debug)]
pub struct Pidfile {
    path: PathBuf,
    armed: bool,
}

impl Pidfile {
    /// Writes this process's pid to `path` (through a temp file renamed into place).
    pub fn create(path: &Path) -> Result<Pidfile, ListenError> {
        let err = |source| ListenError::Pidfile {
            path: path.to_owned(),
            source,
        };
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(format!(".tmp{}", std::process::id()));
        let tmp = PathBuf::from(tmp_name);
        let write = || -> io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            writeln!(f, "{}", std::process::id())?;
            f.sync_all()?;
            fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            err(e)
        })?;
        Ok(Pidfile {
            path: path.to_owned(),
            armed: true,
        })
    }

    /// Removes the file now (if it still holds our pid); dropping does the same.
    pub fn remove(&mut self) {
        if !self.armed {
            return;
        }
        self.armed = false;
        let ours = fs::read_to_string(&self.path)
            .map(|s| s.trim() == std::process::id().to_string())
            .unwrap_or(false);
        if ours {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stale_socket_is_replaced_and_a_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.sock");
        // A socket file nobody listens on.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let (listener, mut file) = bind_unix(&path, 0o700).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700);
        let err = bind_unix(&path, 0o700).unwrap_err();
        assert!(matches!(err, ListenError::InUse(_)), "{err}");
        assert!(err.to_string().contains(&*path.to_string_lossy()));
        drop(listener);
        file.remove();
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn a_regular_file_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.sock");
        fs::write(&path, "data").unwrap();
        let err = bind_unix(&path, 0o755).unwrap_err();
        assert!(matches!(err, ListenError::NotASocket(_)), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "data");
    }

    #[tokio::test]
    async fn a_replaced_socket_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.sock");
        let (l1, f1) = bind_unix(&path, 0o755).unwrap();
        drop(l1);
        fs::remove_file(&path).unwrap();
        let (_l2, _f2) = bind_unix(&path, 0o755).unwrap();
        drop(f1);
        assert!(path.exists(), "the second daemon's socket must stay");
    }

    #[test]
    fn pidfile_written_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.pid");
        let p = Pidfile::create(&path).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        drop(p);
        assert!(!path.exists());
        let p = Pidfile::create(&path).unwrap();
        fs::write(&path, "1\n").unwrap();
        drop(p);
        assert!(path.exists(), "another process's pidfile must stay");
    }
}
