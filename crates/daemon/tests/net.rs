//! Per-container networking on the real kernel (needs root): the netns file, the veth pair,
//! addresses, routes, traffic between the host and the namespace, teardown and failed setups.
//!
//! Every test uses its own interface prefix and its own random /30 from 10.253.0.0/16, so tests
//! (and other test binaries) can run side by side; only interfaces named with that prefix are
//! ever touched, and a guard removes them even when a test fails. The only traffic is TCP
//! between the host and a namespace the test made.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use warden_daemon::net::{self, netns, NetError, NetSpec};

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}

fn random() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

/// `n` characters of `0-9a-v`, like container ids.
fn random_word(n: usize) -> String {
    let mut v = random();
    (0..n)
        .map(|_| {
            let c = b"0123456789abcdefghijklmnopqrstuv"[(v & 31) as usize] as char;
            v >>= 5;
            c
        })
        .collect()
}

/// A random /30 of 10.253.0.0/16.
fn random_network() -> warden_daemon::pool::Network {
    let i = (random() % (1 << 14)) as u32;
    warden_daemon::pool::Network::containing(Ipv4Addr::from(
        u32::from(Ipv4Addr::new(10, 253, 0, 0)) + 4 * i,
    ))
}

/// One test container's network: a temp dir for the netns file, a unique prefix and /30.
/// Dropping it removes whatever is left, without the code under test.
struct Fixture {
    _dir: tempfile::TempDir,
    netns: PathBuf,
    spec: NetSpec,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with_mtu(1500)
    }

    fn with_mtu(mtu: u32) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let netns = dir.path().join("netns");
        // "n" + 4 + "-" prefix, 6-char id: "nxxxx-yyyyyy-0", 14 bytes.
        let prefix = format!("n{}-", random_word(4));
        let spec = NetSpec::new(&random_word(6), &prefix, random_network(), mtu);
        Fixture {
            _dir: dir,
            netns,
            spec,
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let host_if = self.spec.host_iface();
        if iface_exists(&host_if) {
            let _ = Command::new("ip").args(["link", "del", &host_if]).status();
        }
        let _ = nix::mount::umount2(&self.netns, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(&self.netns);
    }
}

fn iface_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

fn sys(name: &str, attr: &str) -> String {
    std::fs::read_to_string(Path::new("/sys/class/net").join(name).join(attr))
        .unwrap()
        .trim()
        .to_string()
}

fn is_mounted(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = path.to_str().unwrap();
    info.lines().any(|l| l.split(' ').nth(4) == Some(p))
}

/// `ip ARGS` on the host, or inside the namespace of `netns` (through nsenter).
fn ip(netns: Option<&Path>, args: &[&str]) -> String {
    let out = match netns {
        Some(ns) => Command::new("nsenter")
            .arg(format!("--net={}", ns.display()))
            .arg("ip")
            .args(args)
            .output(),
        None => Command::new("ip").args(args).output(),
    }
    .unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn assert_gone(f: &Fixture) {
    assert!(!iface_exists(&f.spec.host_iface()), "host iface left");
    assert!(!iface_exists(&f.spec.container_iface()));
    assert!(!is_mounted(&f.netns), "netns mount left");
    assert!(!f.netns.exists(), "netns file left");
}

/// Listens on the container ip inside the namespace, connects from the host, and checks a
/// round trip both ways.
fn tcp_round_trip(f: &Fixture) {
    let cip = f.spec.container_ip;
    let listener = netns::run_in(&f.netns, move || TcpListener::bind((cip, 0)))
        .unwrap()
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        s.write_all(b"pong").unwrap();
        (buf, peer)
    });
    let mut c =
        TcpStream::connect_timeout(&SocketAddr::from((cip, port)), Duration::from_secs(2)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    c.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong");
    let (got, peer) = server.join().unwrap();
    assert_eq!(&got, b"ping");
    // The host reached it from its own end of the pair.
    assert_eq!(peer.ip(), std::net::IpAddr::V4(f.spec.host_ip));
}

#[tokio::test]
async fn setup_configures_both_ends_and_teardown_removes_everything() {
    require_root!();
    let f = Fixture::with_mtu(1454);
    let (host_if, cont_if) = (f.spec.host_iface(), f.spec.container_iface());
    net::setup(&f.netns, &f.spec).await.unwrap();

    // The namespace file is a mount of a netns.
    assert!(is_mounted(&f.netns));
    let fs = nix::sys::statfs::statfs(&f.netns).unwrap();
    assert!(fs.filesystem_type() == nix::sys::statfs::NSFS_MAGIC);
    let ino = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    assert_ne!(ino(&f.netns), ino(Path::new("/proc/self/ns/net")));

    // Host side: up, MTU, host_ip/30.
    assert!(iface_exists(&host_if));
    let flags = u32::from_str_radix(sys(&host_if, "flags").trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "{host_if} is not up");
    assert_eq!(sys(&host_if, "mtu"), "1454");
    let addr = ip(None, &["-o", "-4", "addr", "show", "dev", &host_if]);
    assert!(
        addr.contains(&format!("inet {}/30", f.spec.host_ip)),
        "{addr}"
    );
    // The container side is not in the host's namespace.
    assert!(!iface_exists(&cont_if));

    // Inside: container_ip/30, up, MTU, default route via host_ip, lo up.
    let ns = Some(f.netns.as_path());
    let addr = ip(ns, &["-o", "-4", "addr", "show", "dev", &cont_if]);
    assert!(
        addr.contains(&format!("inet {}/30", f.spec.container_ip)),
        "{addr}"
    );
    let link = ip(ns, &["-o", "link", "show", "dev", &cont_if]);
    assert!(link.contains(",UP") && link.contains("mtu 1454"), "{link}");
    let routes = ip(ns, &["-4", "route", "show", "default"]);
    assert!(
        routes.contains(&format!("default via {} dev {cont_if}", f.spec.host_ip)),
        "{routes}"
    );
    let lo = ip(ns, &["-o", "link", "show", "dev", "lo"]);
    assert!(lo.contains(",UP"), "{lo}");
    let links = ip(ns, &["-o", "link", "show"]);
    assert_eq!(links.lines().count(), 2, "only lo and {cont_if}: {links}");

    tcp_round_trip(&f);

    net::teardown(&f.netns, &f.spec).await.unwrap();
    assert_gone(&f);
    // Again: everything is already gone, which is fine.
    net::teardown(&f.netns, &f.spec).await.unwrap();
}

#[tokio::test]
async fn a_name_too_long_is_refused_before_anything_is_made() {
    require_root!();
    let mut f = Fixture::new();
    f.spec.id = "0123456789a".into(); // 11 chars: with "nxxxx-", 18 bytes.
    let e = net::setup(&f.netns, &f.spec).await.unwrap_err();
    assert!(matches!(e, NetError::Invalid(_)), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains(&f.spec.host_iface()) && msg.contains("over Linux's 15"),
        "{msg}"
    );
    assert!(!f.netns.exists());
    // The default prefix with an 11-char id just fits.
    let ok = NetSpec::new("0123456789a", net::DEFAULT_PREFIX, random_network(), 1500);
    assert_eq!(ok.host_iface().len(), 15);
    ok.validate().unwrap();
}

#[tokio::test]
async fn a_step_failing_late_undoes_the_earlier_ones() {
    require_root!();
    let mut f = Fixture::new();
    // /32 addresses: the gateway is not on-link, so the default route (the last step) fails
    // after the namespace, the pair and the addresses were made.
    f.spec.prefix_len = 32;
    let e = net::setup(&f.netns, &f.spec).await.unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("add default route via") && msg.contains(&f.spec.container_iface()),
        "{msg}"
    );
    assert_gone(&f);
}

#[tokio::test]
async fn a_taken_name_fails_and_leaves_the_owner_alone() {
    require_root!();
    let a = Fixture::new();
    net::setup(&a.netns, &a.spec).await.unwrap();
    // Same names, another namespace file and network.
    let mut b = Fixture::new();
    b.spec.prefix = a.spec.prefix.clone();
    b.spec.id = a.spec.id.clone();
    let e = net::setup(&b.netns, &b.spec).await.unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EEXIST), "{e}");
    assert!(e.to_string().contains("create veth pair"), "{e}");
    assert!(!b.netns.exists() && !is_mounted(&b.netns));
    // a's pair is untouched and still carries traffic.
    let addr = ip(
        None,
        &["-o", "-4", "addr", "show", "dev", &a.spec.host_iface()],
    );
    assert!(addr.contains(&a.spec.host_ip.to_string()), "{addr}");
    tcp_round_trip(&a);
    net::teardown(&a.netns, &a.spec).await.unwrap();
    assert_gone(&a);
}

#[tokio::test]
async fn an_existing_netns_file_is_refused_and_kept() {
    require_root!();
    let f = Fixture::new();
    std::fs::write(&f.netns, b"not ours").unwrap();
    let e = net::setup(&f.netns, &f.spec).await.unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EEXIST), "{e}");
    assert!(
        e.to_string().contains("create the network namespace"),
        "{e}"
    );
    assert_eq!(std::fs::read(&f.netns).unwrap(), b"not ours");
    assert!(!iface_exists(&f.spec.host_iface()));
}

#[tokio::test]
async fn teardown_of_nothing_is_fine() {
    require_root!();
    let f = Fixture::new();
    net::teardown(&f.netns, &f.spec).await.unwrap();
    assert_gone(&f);
}

/// Sequential and concurrent setup+teardown leak nothing. Prints the mean times (run with
/// --nocapture).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_and_concurrent_setup_and_teardown_leak_nothing() {
    require_root!();
    const N: u32 = 20;
    let (mut setup, mut teardown) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..N {
        let f = Fixture::new();
        let t = Instant::now();
        net::setup(&f.netns, &f.spec).await.unwrap();
        setup += t.elapsed();
        let t = Instant::now();
        net::teardown(&f.netns, &f.spec).await.unwrap();
        teardown += t.elapsed();
        assert_gone(&f);
    }
    eprintln!(
        "net: sequential, mean of {N}: setup {:?}, teardown {:?}",
        setup / N,
        teardown / N
    );

    // Eight at once.
    let fixtures: Vec<Fixture> = (0..8).map(|_| Fixture::new()).collect();
    let t = Instant::now();
    let results = join_all(fixtures.iter().map(|f| net::setup(&f.netns, &f.spec))).await;
    let setup_all = t.elapsed();
    for r in results {
        r.unwrap();
    }
    for f in &fixtures {
        assert!(iface_exists(&f.spec.host_iface()));
    }
    tcp_round_trip(&fixtures[3]);
    let t = Instant::now();
    let results = join_all(fixtures.iter().map(|f| net::teardown(&f.netns, &f.spec))).await;
    let teardown_all = t.elapsed();
    for r in results {
        r.unwrap();
    }
    for f in &fixtures {
        assert_gone(f);
    }
    // Figures only: performance claims live in the benches, not in test assertions.
    eprintln!("net: 8 concurrent: setup {setup_all:?}, teardown {teardown_all:?}");
}

/// Runs the futures concurrently on the current task, results in order.
async fn join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    // tokio has no join_all and a JoinSet needs 'static futures: poll them all together.
    let mut pending: Vec<_> = futs.map(|f| Some(Box::pin(f))).collect();
    let mut results: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all_done = true;
        for (i, slot) in pending.iter_mut().enumerate() {
            if let Some(fut) = slot {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        results[i] = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all_done = false,
                }
            }
        }
        if all_done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    results.into_iter().map(Option::unwrap).collect()
}
