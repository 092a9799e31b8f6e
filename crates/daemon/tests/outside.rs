//! A container reaching past the host, on a host that starts with forwarding off, as every
//! fresh Debian host does: wardend turns `net.ipv4.ip_forward` on, its table still fences the
//! container off until net_out opens the way, and what leaves is masqueraded to the host's
//! address, so that an outside that has no route back to the pool still answers.
//!
//! "The outside" is a network namespace this test makes, joined to the host by a veth pair with
//! a /30 of 198.18.0.0/15 (the benchmarking range, routed nowhere); no packet goes anywhere
//! else. This file holds one test, so that nothing else of the suite runs while it turns
//! forwarding off (cargo runs test binaries one after another); the value it found is put
//! back when it ends, pass or fail.

mod wardend;

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use warden_protocol::{DestroyRequest, InfoRequest, NetOutRequest};
use wardend::*;

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Puts back the forwarding value the test found.
struct Forwarding(String);

impl Forwarding {
    fn turn_off() -> Forwarding {
        let was = std::fs::read_to_string(IP_FORWARD).unwrap();
        std::fs::write(IP_FORWARD, "0").unwrap();
        Forwarding(was.trim().to_string())
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        let _ = std::fs::write(IP_FORWARD, &self.0);
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The outside: a named netns with one veth to the host; removed when dropped.
struct Outside {
    netns: String,
    host_if: String,
    host_ip: Ipv4Addr,
    ip: Ipv4Addr,
}

impl Outside {
    fn new() -> Outside {
        let pid = std::process::id();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let tag = format!("{:06x}", (pid ^ nanos) & 0xff_ffff);
        // A /30 of 198.18.0.0/15 of the test's own.
        let k = (pid.wrapping_mul(2654435761) ^ nanos) % (1 << 15);
        let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + 4 * k;
        let o = Outside {
            netns: format!("wout-{tag}"),
            host_if: format!("wo{tag}a"),
            host_ip: Ipv4Addr::from(base + 1),
            ip: Ipv4Addr::from(base + 2),
        };
        let peer = format!("wo{tag}b");
        ip(&["netns", "add", &o.netns]);
        ip(&[
            "link", "add", &o.host_if, "type", "veth", "peer", "name", &peer, "netns", &o.netns,
        ]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", o.host_ip),
            "dev",
            &o.host_if,
        ]);
        ip(&["link", "set", &o.host_if, "up"]);
        let inside = |args: &[&str]| {
            let mut a = vec!["-n", o.netns.as_str()];
            a.extend_from_slice(args);
            ip(&a);
        };
        inside(&["addr", "add", &format!("{}/30", o.ip), "dev", &peer]);
        inside(&["link", "set", &peer, "up"]);
        inside(&["link", "set", "lo", "up"]);
        o
    }

    /// A TCP listener on the outside's address: (peer, what it sent) of each connection.
    fn listen(&self, port: u16) -> mpsc::Receiver<(SocketAddr, String)> {
        let ns = std::fs::File::open(format!("/run/netns/{}", self.netns)).unwrap();
        let addr = SocketAddr::from((self.ip, port));
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready) = mpsc::channel();
        std::thread::spawn(move || {
            // This thread alone enters the outside.
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let listener = TcpListener::bind(addr).unwrap();
            ready_tx.send(()).unwrap();
            for s in listener.incoming() {
                let Ok(mut s) = s else { continue };
                let peer = s.peer_addr().unwrap();
                let mut got = String::new();
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = s.read_to_string(&mut got);
                if tx.send((peer, got)).is_err() {
                    return;
                }
            }
        });
        ready.recv().unwrap();
        rx
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

#[test]
fn a_container_reaches_the_outside_through_forwarding_and_masquerade() {
    let forwarding = Forwarding::turn_off();
    let outside = Outside::new();
    let w = Wardend::start("", "");
    let mut c = w.client();
    let h = create(&mut c);
    assert_eq!(
        std::fs::read_to_string(IP_FORWARD).unwrap().trim(),
        "1",
        "wardend did not turn forwarding on:\n{}",
        w.log_text()
    );
    assert!(w.log_text().contains("turned on IPv4 forwarding"));

    let port = 7000 + (std::process::id() % 1000) as u16;
    let got = outside.listen(port);
    let send = |c: &mut warden_client::Client, what: &str| {
        run(
            c,
            &h,
            &format!("echo {what} | nc -w 2 {} {port}", outside.ip),
        )
    };

    // Forwarding on is not an open door: without net_out the table rejects it.
    let (code, _, _) = send(&mut c, "fenced");
    assert_ne!(code, 0);
    assert!(got.recv_timeout(Duration::from_millis(300)).is_err());

    c.net_out(NetOutRequest {
        handle: h.clone(),
        network: Some(outside.ip.to_string()),
        port: Some(u32::from(port)),
        ..Default::default()
    })
    .unwrap();
    let (code, _, err) = send(&mut c, "hello-outside");
    assert_eq!(code, 0, "{err}\n{}", w.log_text());
    let (peer, text) = got.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(text, "hello-outside\n");
    // Masqueraded: the outside saw the host's address, not the container's.
    let container_ip = c
        .info(InfoRequest { handle: h.clone() })
        .unwrap()
        .container_ip
        .unwrap();
    assert_eq!(
        peer.ip(),
        std::net::IpAddr::V4(outside.host_ip),
        "not {container_ip}"
    );

    c.destroy(DestroyRequest { handle: h }).unwrap();
    w.assert_clean();
    drop(w);
    drop(forwarding);
}
