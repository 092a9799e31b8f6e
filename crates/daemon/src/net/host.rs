//! What the host itself must do for containers' traffic to leave it: forward IPv4.
//!
//! A fresh Debian, Ubuntu or Fedora host boots with `net.ipv4.ip_forward = 0`. Then a packet
//! from a container to another container or past the host is dropped by the kernel before
//! any rule of ours sees it. wardend turns forwarding on (as the original's `net.sh setup` and
//! Docker do) right after its table is in place, so the table is the fence from the first
//! forwarded packet on. It is left on when the daemon stops: the containers outlive it.

use std::path::Path;

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

#[derive(Debug, thiserror::Error)]
#[error("cannot turn on IPv4 forwarding ({path}): {source}")]
pub struct HostError {
    path: &'static str,
    source: std::io::Error,
}

/// Turns IPv4 forwarding on; `true` if it was off. A value that is already 1 is not
/// written, so a host whose /proc/sys is read-only but already forwards is fine.
pub fn enable_forwarding() -> Result<bool, HostError> {
    set_on(Path::new(IP_FORWARD)).map_err(|source| HostError {
        path: IP_FORWARD,
        source,
    })
}

fn set_on(path: &Path) -> std::io::Result<bool> {
    if std::fs::read_to_string(path)?.trim() == "1" {
        return Ok(false);
    }
    std::fs::write(path, "1")?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_only_when_off() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ip_forward");
        std::fs::write(&f, "0\n").unwrap();
        assert!(set_on(&f).unwrap());
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "1");
        assert!(!set_on(&f).unwrap());
        assert!(set_on(&dir.path().join("missing")).is_err());
    }
}
