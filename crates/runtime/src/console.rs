//! Terminals for containers whose `process.terminal` is true. The init opens a pty inside
//! the container (its own devpts), makes the slave its controlling terminal and stdio, and
//! hands the master to the runtime over the sync channel. The runtime then passes the master
//! on to `--console-socket` (containerd's and podman's way), or, for a foreground `run`,
//! keeps it and copies between it and its own stdio.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::pty;
use nix::sys::socket::{self, ControlMessage, MsgFlags};

use crate::error::{Error, Result, SysContext};

/// Window size, as in the spec's `process.consoleSize`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Size {
    pub rows: u16,
    pub cols: u16,
}

/// Init side: opens a pty in the container's /dev/pts, makes its slave our stdio and
/// controlling terminal (we must already lead a session), and returns the master.
pub fn setup_in_init(size: Option<Size>, uid: u32, gid: u32) -> Result<OwnedFd> {
    let master = pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .sys("open /dev/ptmx")?;
    pty::grantpt(&master).sys("grantpt")?;
    pty::unlockpt(&master).sys("unlockpt")?;
    let name = pty::ptsname_r(&master).sys("ptsname")?;
    if let Some(size) = size {
        set_size(master.as_fd(), size)?;
    }
    let slave: OwnedFd = nix::fcntl::open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY,
        nix::sys::stat::Mode::empty(),
    )
    .sys(format!("open {name}"))?;
    nix::unistd::fchown(&slave, Some(uid.into()), Some(gid.into())).sys(format!("chown {name}"))?;
    for target in 0..=2 {
        // SAFETY: dup2 onto the standard fds; we own `slave` and keep it open until after.
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
            return Err(Error::sys(
                format!("dup2 {name} to fd {target}"),
                nix::errno::Errno::last(),
            ));
        }
    }
    // SAFETY: TIOCSCTTY takes an int argument.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
        return Err(Error::sys("ioctl(TIOCSCTTY)", nix::errno::Errno::last()));
    }
    // SAFETY: the PtyMaster's fd is valid and we take it over.
    let raw = std::os::fd::IntoRawFd::into_raw_fd(master);
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Init side, after [`setup_in_init`]: binds the terminal (our stdin) onto `/dev/console`,
/// creating the file if the container's /dev lacks it, as runc does, so programs that write to
/// the console reach the container's terminal and not nowhere.
pub fn bind_console() -> Result<()> {
    let slave = std::fs::read_link("/proc/self/fd/0")
        .map_err(|e| Error::io("readlink", "/proc/self/fd/0", e))?;
    let console = Path::new("/dev/console");
    match std::fs::symlink_metadata(console) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(console)
                .map(drop)
                .map_err(|e| Error::io("create", console, e))?;
        }
        Err(e) => return Err(Error::io("stat", console, e)),
    }
    nix::mount::mount(
        Some(&slave),
        console,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .sys(format!("bind {} onto /dev/console", slave.display()))
}

pub fn set_size(fd: BorrowedFd<'_>, size: Size) -> Result<()> {
    let ws = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(Error::sys("ioctl(TIOCSWINSZ)", nix::errno::Errno::last()));
    }
    Ok(())
}

/// The window size of a terminal, if `fd` is one.
pub fn get_size(fd: BorrowedFd<'_>) -> Option<Size> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (r == 0).then_some(Size {
        rows: ws.ws_row,
        cols: ws.ws_col,
    })
}

/// Sends `fd` over a unix socket with SCM_RIGHTS; `name` travels as the data (runc sends
/// the terminal's name the same way).
pub fn send_fd(sock: RawFd, fd: BorrowedFd<'_>, name: &[u8]) -> Result<()> {
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    socket::sendmsg::<()>(
        sock,
        &[IoSlice::new(name)],
        &cmsg,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .sys("sendmsg(SCM_RIGHTS)")?;
    Ok(())
}

/// Passes the master to the console socket at `path`.
pub fn send_to_socket(path: &Path, master: BorrowedFd<'_>) -> Result<()> {
    let stream =
        UnixStream::connect(path).map_err(|e| Error::io("connect console socket", path, e))?;
    send_fd(stream.as_raw_fd(), master, b"/dev/ptmx")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_trip_on_a_real_pty() {
        let master = pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY).unwrap();
        pty::grantpt(&master).unwrap();
        pty::unlockpt(&master).unwrap();
        set_size(
            master.as_fd(),
            Size {
                rows: 33,
                cols: 101,
            },
        )
        .unwrap();
        let s = get_size(master.as_fd()).unwrap();
        assert_eq!((s.rows, s.cols), (33, 101));
    }

    #[test]
    fn fd_passes_over_a_console_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let file = std::fs::File::open("/dev/null").unwrap();
        send_to_socket(&path, file.as_fd()).unwrap();
        let (conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = socket::recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )
        .unwrap();
        let got: Vec<RawFd> = msg
            .cmsgs()
            .unwrap()
            .filter_map(|c| match c {
                socket::ControlMessageOwned::ScmRights(fds) => Some(fds),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(got.len(), 1);
        let target = std::fs::read_link(format!("/proc/self/fd/{}", got[0])).unwrap();
        assert_eq!(target, std::path::PathBuf::from("/dev/null"));
        // SAFETY: we received this fd and own it now.
        drop(unsafe { OwnedFd::from_raw_fd(got[0]) });
    }
}
