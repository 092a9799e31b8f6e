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
//! message and undoes the create. If the socket closes without a message, the init died.

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
    /// Init → parent: everything is set up; the init now waits on the exec fifo.
    Ready,
    /// Either way: what failed.
    Error(String),
}

impl Message {
    fn name(&self) -> &'static str {
        match self {
            Message::Continue { .. } => "Continue",
            Message::CreateRuntimeHooks => "CreateRuntimeHooks",
            Message::HooksDone => "HooksDone",
            Message::Ready => "Ready",
            Message::Error(_) => "Error",
        }
    }
}

pub struct Channel {
    fd: OwnedFd,
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
    Ok((Channel { fd: a }, Channel { fd: b }))
}

const MAX_MESSAGE: usize = 64 * 1024;

impl Channel {
    pub fn send(&self, msg: &Message) -> Result<()> {
        let data = serde_json::to_vec(msg).expect("message serializes");
        socket::send(self.fd.as_raw_fd(), &data, MsgFlags::MSG_NOSIGNAL)
            .map_err(|e| Error::Sync(format!("send {}: {e}", msg.name())))?;
        Ok(())
    }

    /// The next message, or an error if the peer closed the channel.
    pub fn recv(&self) -> Result<Message> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        loop {
            match socket::recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(0) => return Err(Error::Sync("channel closed".into())),
                Ok(n) => {
                    return serde_json::from_slice(&buf[..n])
                        .map_err(|e| Error::Sync(format!("bad message: {e}")))
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::Sync(format!("recv: {e}"))),
            }
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
        b.send(&Message::Ready).unwrap();
        let e = a.expect("HooksDone").unwrap_err().to_string();
        assert!(e.contains("expected HooksDone, got Ready"), "{e}");
        b.send(&Message::Error("mount /proc: EPERM".into()))
            .unwrap();
        assert_eq!(
            a.expect("Ready").unwrap_err().to_string(),
            "mount /proc: EPERM"
        );
        drop(b);
        assert!(a.recv().unwrap_err().to_string().contains("channel closed"));
    }
}
