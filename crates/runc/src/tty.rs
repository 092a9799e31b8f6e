//! A foreground `run` of a container with a terminal: our stdin goes to the pty master, the
//! master's output to our stdout, our terminal is raw meanwhile, and size changes follow.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::termios::{self, SetArg, Termios};

pub struct Proxy {
    master: OwnedFd,
    saved: Option<Termios>,
    output_done: mpsc::Receiver<()>,
}

impl Proxy {
    pub fn start(master: OwnedFd) -> Result<Proxy> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            termios::cfmakeraw(&mut raw);
            termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).context("make stdin raw")?;
        }
        let proxy_in = File::from(master.try_clone()?);
        let proxy_out = File::from(master.try_clone()?);
        std::thread::spawn(move || {
            let mut proxy_in = proxy_in;
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut proxy_in);
        });
        let (tx, output_done) = mpsc::channel();
        std::thread::spawn(move || {
            let mut proxy_out = proxy_out;
            // Ends with EIO once every holder of the slave has closed it.
            let _ = std::io::copy(&mut proxy_out, &mut std::io::stdout().lock());
            let _ = tx.send(());
        });
        let proxy = Proxy {
            master,
            saved,
            output_done,
        };
        proxy.resize();
        Ok(proxy)
    }

    /// Gives the container's terminal the size of ours.
    pub fn resize(&self) {
        if let Some(size) = warden_runtime::console::get_size(std::io::stdin().as_fd()) {
            let _ = warden_runtime::console::set_size(self.master.as_fd(), size);
        }
    }

    /// Waits (briefly) for the last output, then gives our terminal back.
    pub fn finish(self) {
        let _ = self.output_done.recv_timeout(Duration::from_secs(1));
        if let Some(t) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, t);
        }
    }
}
