//! The parent/init sync channel: a SOCK_SEQPACKET socketpair carrying one JSON message per
//! packet. The whole conversation of a create is:
//!
//! ```text
//!   parent (warden-runc create)                 init (cloned child)
//!   clone(flags) ─────────────────────────────► waits
//!   [write uid/gid maps] [join cgroup] [limits]
//!   Continue{pid} ────────────────────────────► join namespaces, mount the rootfs
//!                 ◄──────────────────────────── CreateRuntimeHooks   (only if there are any)
//!   run prestart + createRuntime hooks
//!   HooksDone ────────────────────────────────► createContainer hooks, pivot_root, masked and
//!                                               read-only paths, hostname, rlimits, user, caps
//!                 ◄──────────────────────────── Ready
//!   write state.json, exit                      block opening exec.fifo until `start`
//! ```
//!
//! At any point the init may send `Error(message)` instead and exit: the parent reports that
//! message and undoes the create. If the socket closes without a message, the init died. The
//! init may also send `Warning(message)` at any point (something the config asks for that it
//! skipped, as runc does); the parent logs it and reads on.
//!
//! A seccomp filter with notify rules (see `security::seccomp`), once loaded by the init or
//! an exec'd process, adds to the conversation wherever the load happens:
//!
//! ```text
//!                 ◄──────────────────────────── SeccompFd{fd}   (write(2): the fd's number)
//!   pidfd_getfd, send it to listenerPath
//!   SeccompFdDone ────────────────────────────► (read(2)) closes its fd, goes on
//! ```

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Message {
    /// Parent → init: its environment is ready; `pid` is the init's pid as the runtime sees it.
    Continue { pid: i32 },
    /// Init → parent: mounts are done, run the prestart and createRuntime hooks now.
    CreateRuntimeHooks,
    /// Parent → init.
    HooksDone,
    /// Init → parent: the master of the container's terminal travels with this message.
    Console,
    /// Init → parent: everything is set up; the init now waits on the exec fifo.
    Ready,
    /// Either way: what failed.
    Error(String),
    /// Init → parent: what was skipped; logged by `recv`, never returned.
    Warning(String),
    /// Process → parent: its seccomp filter is loaded; `fd` is the number of its listener
    /// fd, which the parent copies (pidfd_getfd) and hands to the seccomp agent.
    SeccompFd { fd: i32 },
    /// Parent → process: the agent has the listener fd.
    SeccompFdDone,
}

impl Message {
    fn name(&self) -> &'static str {
        match self {
            Message::Continue { .. } => "Continue",
            Message::CreateRuntimeHooks => "CreateRuntimeHooks",
            Message::HooksDone => "HooksDone",
            Message::Console => "Console",
            Message::Ready => "Ready",
            Message::Error(_) => "Error",
            Message::Warning(_) => "Warning",
            Message::SeccompFd { .. } => "SeccompFd",
            Message::SeccompFdDone => "SeccompFdDone",
        }
    }
}

pub struct Channel {
    fd: OwnedFd,
    /// An fd that arrived with the last message (SCM_RIGHTS), until taken.
    received_fd: std::cell::Cell<Option<OwnedFd>>,
}

/// A connected pair: (parent end, init end). Both are close-on-exec.
pub fn pair() -> Result<(Channel, Channel)> {
    let (a, b) = socket::socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| Error::sys("socketpair", e))?;
    let new = |fd| Channel {
        fd,
        received_fd: std::cell::Cell::new(None),
    };
    Ok((new(a), new(b)))
}

const MAX_MESSAGE: usize = 64 * 1024;

impl Channel {
    pub fn send(&self, msg: &Message) -> Result<()> {
        let data = serde_json::to_vec(msg).expect("message serializes");
        socket::send(self.fd.as_raw_fd(), &data, MsgFlags::MSG_NOSIGNAL)
            .map_err(|e| Error::Sync(format!("send {}: {e}", msg.name())))?;
        Ok(())
    }

    /// Sends with a plain write(2), for a process under a seccomp filter: the one syscall a
    /// notify rule may not take (see `security::seccomp`).
    pub fn write_plain(&self, msg: &Message) -> Result<()> {
        let data = serde_json::to_vec(msg).expect("message serializes");
        nix::unistd::write(&self.fd, &data)
            .map_err(|e| Error::Sync(format!("write {}: {e}", msg.name())))?;
        Ok(())
    }

    /// Waits for `want` with a plain read(2) (see `write_plain`).
    pub fn read_plain(&self, want: &'static str) -> Result<Message> {
        let mut buf = [0u8; 256];
        let n = loop {
            match nix::unistd::read(&self.fd, &mut buf) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::Sync(format!("read: {e}"))),
                Ok(0) => return Err(Error::Sync("channel closed".into())),
                Ok(n) => break n,
            }
        };
        match serde_json::from_slice::<Message>(&buf[..n]) {
            Ok(m) if m.name() == want => Ok(m),
            Ok(m) => Err(Error::Sync(format!("expected {want}, got {}", m.name()))),
            Err(e) => Err(Error::Sync(format!("bad message: {e}"))),
        }
    }

    /// Sends a message with an fd attached.
    pub fn send_with_fd(&self, msg: &Message, fd: std::os::fd::BorrowedFd<'_>) -> Result<()> {
        let data = serde_json::to_vec(msg).expect("message serializes");
        crate::console::send_fd(self.fd.as_raw_fd(), fd, &data)
    }

    /// The fd that came with the last message received, if any.
    pub fn take_fd(&self) -> Option<OwnedFd> {
        self.received_fd.take()
    }

    /// The next message, or an error if the peer closed the channel. Warnings on the way
    /// are logged here.
    pub fn recv(&self) -> Result<Message> {
        loop {
            match self.recv_any()? {
                Message::Warning(w) => tracing::warn!("{w}"),
                m => return Ok(m),
            }
        }
    }

    fn recv_any(&self) -> Result<Message> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        loop {
            let mut space = nix::cmsg_space!([RawFd; 1]);
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let (n, fds) = match socket::recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(msg) => {
                    let fds: Vec<RawFd> = msg
                        .cmsgs()
                        .into_iter()
                        .flatten()
                        .filter_map(|c| match c {
                            socket::ControlMessageOwned::ScmRights(fds) => Some(fds),
                            _ => None,
                        })
                        .flatten()
                        .collect();
                    (msg.bytes, fds)
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::Sync(format!("recv: {e}"))),
            };
            for fd in fds {
                // SAFETY: the kernel just gave us this fd; nobody else owns it.
                self.received_fd
                    .set(Some(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }));
            }
            if n == 0 {
                return Err(Error::Sync("channel closed".into()));
            }
            return serde_json::from_slice(&buf[..n])
                .map_err(|e| Error::Sync(format!("bad message: {e}")));
        }
    }

    /// Waits for one specific message. An `Error` from the peer becomes `Error::Init`; any
    /// other message names what was expected and what came.
    pub fn expect(&self, want: &'static str) -> Result<Message> {
        let msg = self.recv()?;
        match msg {
            Message::Error(e) => Err(Error::Init(e)),
            m if m.name() == want => Ok(m),
            m => Err(Error::Sync(format!("expected {want}, got {}", m.name()))),
        }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_expectations() {
        let (a, b) = pair().unwrap();
        a.send(&Message::Continue { pid: 7 }).unwrap();
        assert_eq!(b.expect("Continue").unwrap(), Message::Continue { pid: 7 });
        b.send(&Message::Warning("skipped".into())).unwrap();
        b.send(&Message::Ready).unwrap();
        let e = a.expect("HooksDone").unwrap_err().to_string();
        assert!(e.contains("expected HooksDone, got Ready"), "{e}");
        b.send(&Message::Error("mount /proc: EPERM".into()))
            .unwrap();
        assert_eq!(
            a.expect("Ready").unwrap_err().to_string(),
            "mount /proc: EPERM"
        );
        let null = std::fs::File::open("/dev/null").unwrap();
        b.send_with_fd(&Message::Console, std::os::fd::AsFd::as_fd(&null))
            .unwrap();
        assert_eq!(a.expect("Console").unwrap(), Message::Console);
        let fd = a.take_fd().expect("fd came along");
        let target = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        assert_eq!(target, std::path::PathBuf::from("/dev/null"));
        drop(b);
        assert!(a.recv().unwrap_err().to_string().contains("channel closed"));

        // The plain write(2)/read(2) pair a process under a notify filter uses.
        let (a, b) = pair().unwrap();
        b.write_plain(&Message::SeccompFd { fd: 9 }).unwrap();
        assert_eq!(a.expect("SeccompFd").unwrap(), Message::SeccompFd { fd: 9 });
        a.send(&Message::HooksDone).unwrap();
        let e = b.read_plain("SeccompFdDone").unwrap_err().to_string();
        assert!(e.contains("expected SeccompFdDone, got HooksDone"), "{e}");
        a.send(&Message::SeccompFdDone).unwrap();
        assert_eq!(
            b.read_plain("SeccompFdDone").unwrap(),
            Message::SeccompFdDone
        );
        drop(a);
        assert!(b
            .read_plain("SeccompFdDone")
            .unwrap_err()
            .to_string()
            .contains("channel closed"));
    }
}
