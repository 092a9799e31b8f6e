//! Containers through the real socket: create, run `/bin/true`, destroy, one after another
//! (p50/p99 of each step and of the three together); net_in and net_out on one container
//! (each a packet-filter change); containers created per second with 1 and 8 concurrent
//! clients; and host memory per idle container (daemon, keepers and init, outside the
//! container's own processes).
//!
//!     cargo bench -p warden-daemon --bench containers
//!
//! Needs root and the busybox rootfs (`scripts/mkrootfs.sh`; `WARDEN_TEST_ROOTFS` to use
//! another). It starts its own wardend (the bench profile's build) with a depot, socket,
//! cgroup parent and /24 pool of its own, and destroys everything it made. Environment:
//! `BENCH_N` (sequential iterations, default 100), `BENCH_IDLE` (idle containers for the
//! memory figure, default 20), `BENCH_DISK=0` to leave out the disk quota rows, `BENCH_USER`
//! (a `user:` key of the daemon's config, e.g. `container_root_is_host_root: true` to
//! measure without the user namespace), `BENCH_SERVER` (a `server:` key, e.g.
//! `container_seccomp_profile: unconfined` to measure without the seccomp profile),
//! `BENCH_SCALE` (off by default: e.g. 1000 adds the scale rows below), `BENCH_TMPFS=0` to
//! leave out the sequential rows measured again with the depot on a tmpfs (what of them is
//! the depot's filesystem).
//!
//! The scale rows (`BENCH_SCALE=n`): with 10 live containers and then with `n` (each with a
//! net_in mapping and a net_out rule, idle otherwise; the daemon's pools sized for them),
//! `BENCH_N` times a container made, given a net_in, asked for its info and destroyed: the
//! p50 of each at both levels side by side with their ratio and the goal (within 20%), the
//! daemon's steps of create and destroy the same way, and host memory per idle container
//! at `n`.
//!
//! The disk quota rows: two more daemons, each on a btrfs of its own (a loop device over a
//! sparse file; mkfs.btrfs from btrfs-progs), one with quotas off (the layer a plain dir),
//! one with the btrfs backend (the layer a subvolume), interleaved: create, create then
//! limit_disk, destroy.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use warden_client::Client;
use warden_protocol::{
    CreateRequest, DestroyRequest, InfoRequest, LimitBandwidthRequest, LimitCpuRequest,
    LimitDiskRequest, LimitMemoryRequest, LinkRequest, NetInRequest, NetOutRequest, RunRequest,
    SpawnRequest,
};

struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
    socket: PathBuf,
    cgroup_parent: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(mut c) = Client::connect(&self.socket) {
            for h in c.list().map(|l| l.handles).unwrap_or_default() {
                let _ = c.destroy(DestroyRequest { handle: h });
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for e in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(e.path().join(&self.cgroup_parent));
        }
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &nft_table(&self.cgroup_parent)])
            .stderr(Stdio::null())
            .status();
    }
}

/// The bench daemon's nftables table, named after its cgroup parent.
fn nft_table(cgroup_parent: &str) -> String {
    cgroup_parent.replace('-', "_")
}

/// `BENCH_SERVER` as a line of the config's `server:` section.
fn server_extra() -> String {
    std::env::var("BENCH_SERVER")
        .map(|v| format!("  {v}\n"))
        .unwrap_or_default()
}

fn start(scale: usize) -> Daemon {
    let extra = server_extra();
    if scale == 0 {
        return start_on(None, "", &extra, "10.236.0.0/22");
    }
    // Room for `scale` live containers and the ones measured beside them: a /30 and a uid
    // each (a pool of its own, below the tests' 10.240.0.0/12).
    let room = scale + 64;
    let prefix = 30 - room.next_power_of_two().trailing_zeros() as usize;
    assert!(
        prefix >= 16,
        "BENCH_SCALE={scale}: at most 16,320 containers"
    );
    let user = std::env::var("BENCH_USER").map_or_else(
        |_| format!("pool_size: {room}"),
        |u| format!("pool_size: {room}\n  {u}"),
    );
    start_with(None, "", &extra, &format!("10.232.0.0/{prefix}"), &user)
}

/// A daemon with its depot at `depot` (else in its temp dir), `extra` YAML lines in `server:`.
fn start_on(depot: Option<&Path>, tag: &str, extra: &str, pool: &str) -> Daemon {
    let user = std::env::var("BENCH_USER").unwrap_or_else(|_| "pool_size: 64".into());
    start_with(depot, tag, extra, pool, &user)
}

/// [`start_on`] with `user` as the `user:` section's lines.
fn start_with(depot: Option<&Path>, tag: &str, extra: &str, pool: &str, user: &str) -> Daemon {
    let dir = tempfile::Builder::new()
        .prefix("wardend-bench")
        .tempdir()
        .unwrap();
    // Container root is an unprivileged host uid: it must reach its rootfs in the depot.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let socket = dir.path().join("w.sock");
    let rootfs =
        std::env::var("WARDEN_TEST_ROOTFS").unwrap_or_else(|_| "/var/cache/warden/rootfs".into());
    let cgroup_parent = format!("warden-bench-{}{tag}", std::process::id());
    let nft = nft_table(&cgroup_parent);
    let config = dir.path().join("wardend.yml");
    std::fs::write(
        &config,
        format!(
            "server:\n  container_grace_time: null\n  container_rootfs_path: {rootfs}\n  cgroup_parent: {cgroup_parent}\n{extra}\
             health_check_server:\n  port: 0\nlogging:\n  level: info\n\
             network:\n  pool_network: {pool}\n  interface_prefix: b-\n  release_delay: 0\n  nftables_table: {nft}\n  allow_host_access: true\n\
             user:\n  {user}\n"
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_wardend"))
        .arg("--config")
        .arg(&config)
        .arg("--socket")
        .arg(&socket)
        .arg("--depot")
        .arg(depot.map_or_else(|| dir.path().join("depot"), Path::to_path_buf))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("wardend.log")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Client::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "wardend did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    Daemon {
        child,
        dir,
        socket,
        cgroup_parent,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// MB/s of `bytes` sent out of the container to the host (timed by the host, first byte to
/// last) and into it from the host (timed by the container from its first byte read to its
/// last, with /proc/uptime).
fn throughput(c: &mut Client, h: &str, bytes: usize) -> (f64, f64) {
    use std::io::{Read, Write};
    let info = c.info(InfoRequest { handle: h.into() }).unwrap();
    let (host_ip, ip) = (info.host_ip.unwrap(), info.container_ip.unwrap());
    let listener = std::net::TcpListener::bind((host_ip.as_str(), 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let job = c
        .spawn(SpawnRequest {
            handle: h.into(),
            script: format!("head -c {bytes} /dev/zero | nc -w 30 {host_ip} {port}"),
            ..Default::default()
        })
        .unwrap()
        .job_id;
    let (mut s, _) = listener.accept().unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = s.read(&mut buf).unwrap();
    let (first, t) = (got, Instant::now());
    while got < bytes {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the container stopped at {got} bytes");
        got += n;
    }
    let out = (got - first) as f64 / t.elapsed().as_secs_f64() / 1e6;
    drop(s);
    c.link(LinkRequest {
        handle: h.into(),
        job_id: job,
    })
    .unwrap();
    let job = c
        .spawn(SpawnRequest {
            handle: h.into(),
            script: "nc -l -p 7100 | { head -c 1 >/dev/null; cat /proc/uptime; wc -c; \
                     cat /proc/uptime; }"
                .into(),
            ..Default::default()
        })
        .unwrap()
        .job_id;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = loop {
        match std::net::TcpStream::connect((ip.as_str(), 7100)) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("connect to the container: {e}"),
        }
    };
    let chunk = vec![0u8; 1 << 16];
    let mut sent = 0;
    while sent < bytes {
        let n = chunk.len().min(bytes - sent);
        s.write_all(&chunk[..n]).unwrap();
        sent += n;
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let l = c
        .link(LinkRequest {
            handle: h.into(),
            job_id: job,
        })
        .unwrap();
    let text = String::from_utf8_lossy(&l.stdout.unwrap_or_default()).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    let secs = |l: &str| -> f64 { l.split_whitespace().next().unwrap().parse().unwrap() };
    let rest: f64 = lines[1].trim().parse().unwrap();
    let into = rest / (secs(lines[2]) - secs(lines[0])).max(0.01) / 1e6;
    (out, into)
}

/// A few containers made and destroyed: the page cache, the first cgroup parents.
fn warm_up(c: &mut Client) {
    for _ in 0..3 {
        let h = c.create(CreateRequest::default()).unwrap().handle;
        c.destroy(DestroyRequest { handle: h }).unwrap();
    }
}

/// create, run `/bin/true` and destroy, `n` times one after another: their rows.
fn sequential(c: &mut Client, n: usize) {
    let (mut create, mut run, mut destroy, mut total) = (vec![], vec![], vec![], vec![]);
    for _ in 0..n {
        let t0 = Instant::now();
        let h = c.create(CreateRequest::default()).unwrap().handle;
        let t1 = Instant::now();
        let r = c
            .run(RunRequest {
                handle: h.clone(),
                script: "/bin/true".into(),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(r.exit_status, Some(0));
        let t2 = Instant::now();
        c.destroy(DestroyRequest { handle: h }).unwrap();
        let t3 = Instant::now();
        create.push(t1 - t0);
        run.push(t2 - t1);
        destroy.push(t3 - t2);
        total.push(t3 - t0);
    }
    row("create", create);
    row("run /bin/true", run);
    row("destroy", destroy);
    row("create + run + destroy", total);
}

/// A tmpfs mounted on a temp dir of its own; unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn new() -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("wardend-bench-tmpfs")
            .tempdir()
            .unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "mode=755,size=2g", "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(ok.success(), "mount tmpfs on {}", dir.path().display());
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

/// The sequential rows again on a daemon whose depot is on a tmpfs: how much of them is the
/// depot's filesystem (its inode allocation, writes and unlinks) and not the rest.
fn on_tmpfs(extra: &str, n: usize) {
    let fs = Tmpfs::new();
    let d = start_on(
        Some(&fs.0.path().join("depot")),
        "-tmpfs",
        extra,
        "10.236.4.0/22",
    );
    let mut c = Client::connect(&d.socket).unwrap();
    warm_up(&mut c);
    println!("the same, the depot on a tmpfs (BENCH_TMPFS=0 leaves this out)");
    sequential(&mut c, n);
    drop(c);
    drop(d);
}

/// Create's, run's and destroy's steps, as the daemon timed them (the `steps` field of its
/// "container created", "job started", "job linked" and "container destroyed" log lines),
/// the init step's own, as the create helper timed them (`init_steps`), and the keeper's
/// (`keeper_steps`), over the last `n` of each.
fn breakdown(log: &Path, n: usize) {
    for (what, runs) in step_times(log, n) {
        if runs.is_empty() {
            println!("{what}: no step timings in the daemon's log");
            continue;
        }
        println!("  {what}");
        for (name, v) in runs {
            row(&format!("    {name}"), v);
        }
    }
}

/// Each step's name and times, in the daemon's order.
type StepTimes = Vec<(String, Vec<Duration>)>;

/// For create, run and destroy: each step's times over the last `n` of the daemon's log lines
/// (a step missing from any of those lines is left out).
fn step_times(log: &Path, n: usize) -> Vec<(&'static str, StepTimes)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    [
        (
            "create, by step (the daemon's own timing)",
            "container created",
            "steps",
        ),
        (
            "create's init step, by the create helper's own timing",
            "container created",
            "init_steps",
        ),
        (
            "run's spawn, by step (the daemon's own timing)",
            "job started",
            "steps",
        ),
        (
            "run's keeper step, by the keeper's own timing",
            "job started",
            "keeper_steps",
        ),
        (
            "run's link, by step (the daemon's own timing)",
            "job linked",
            "steps",
        ),
        (
            "destroy, by step (the daemon's own timing)",
            "container destroyed",
            "steps",
        ),
    ]
    .into_iter()
    .map(|(what, line, field)| {
        let runs: Vec<Vec<(String, f64)>> = text
            .lines()
            .filter(|l| l.contains(line))
            .filter_map(|l| warden_daemon::steps::parse_field(l, field))
            .collect();
        let runs = &runs[runs.len().saturating_sub(n)..];
        let steps = runs.first().map_or_else(Vec::new, |first| {
            first
                .iter()
                .enumerate()
                .filter_map(|(i, (name, _))| {
                    let v: Vec<Duration> = runs
                        .iter()
                        .filter_map(|r| r.get(i).filter(|s| &s.0 == name))
                        .map(|s| Duration::from_secs_f64(s.1 / 1e3))
                        .collect();
                    (v.len() == runs.len()).then(|| (name.clone(), v))
                })
                .collect()
        });
        (what, steps)
    })
    .collect()
}

fn row(name: &str, mut v: Vec<Duration>) {
    v.sort();
    println!(
        "{name:<26} {:>9.2} {:>9.2} {:>9.2}",
        ms(pct(&v, 0.5)),
        ms(pct(&v, 0.99)),
        ms(v[v.len() - 1])
    );
}

/// Proportional set size of `pid` in KiB (its share of pages it shares with others).
fn pss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn init_pids(depot: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(depot).into_iter().flatten().flatten() {
        let id = e.file_name().to_string_lossy().to_string();
        let state = e.path().join("run").join(&id).join("state.json");
        if let Ok(data) = std::fs::read(state) {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&data) {
                if let Some(p) = v["pid"].as_i64() {
                    out.push(p as i32);
                }
            }
        }
    }
    out
}

/// The daemon's PSS in KiB once its client connections are closed and it has settled.
fn settled_pss(d: &Daemon) -> u64 {
    std::thread::sleep(Duration::from_millis(200));
    pss_kib(d.child.id() as i32)
}

/// Host memory per idle container in KiB, `added` containers after the daemon's PSS was
/// `before` KiB: its growth over each of them plus the mean PSS of the inits (every live
/// container's; an idle container has no jobs, so no keeper). Prints the figures it used.
fn idle_memory(d: &Daemon, before: u64, added: usize) -> f64 {
    std::thread::sleep(Duration::from_millis(500));
    let after = pss_kib(d.child.id() as i32);
    let inits = init_pids(&d.dir.path().join("depot"));
    let per_init =
        inits.iter().map(|p| pss_kib(*p)).sum::<u64>() as f64 / inits.len().max(1) as f64;
    println!(
        "daemon PSS {before} -> {after} KiB over {added} containers; inits {} x {per_init:.0} KiB",
        inits.len()
    );
    let per = after.saturating_sub(before) as f64 / added.max(1) as f64 + per_init;
    println!("host memory per idle container (daemon growth + init): {per:.0} KiB");
    per
}

/// The live containers the scale rows start with.
const SMALL: usize = 10;

/// A net_in mapping of a pool port to the container's 8080.
fn add_net_in(c: &mut Client, h: &str) {
    c.net_in(NetInRequest {
        handle: h.into(),
        host_port: None,
        container_port: Some(8080),
    })
    .unwrap();
}

/// A net_out rule: tcp to `network` port 443.
fn add_net_out(c: &mut Client, h: &str, network: &str) {
    c.net_out(NetOutRequest {
        handle: h.into(),
        network: Some(network.into()),
        port: Some(443),
        ..Default::default()
    })
    .unwrap();
}

/// A live container as the scale rows keep them: one net_in mapping and one net_out rule
/// each, so the packet filter's table grows with them as it would in use.
fn live_container(c: &mut Client, i: usize) -> String {
    let h = c.create(CreateRequest::default()).unwrap().handle;
    add_net_in(c, &h);
    add_net_out(c, &h, &format!("10.98.{}.0/24", i % 256));
    h
}

/// One level of the scale rows: `samples` times beside the live containers, a container
/// made, given a net_in, asked for its info, destroyed; and the daemon's own step timings.
struct Level {
    ops: [(&'static str, Vec<Duration>); 4],
    steps: Vec<(&'static str, StepTimes)>,
}

fn level(d: &Daemon, c: &mut Client, samples: usize) -> Level {
    let (mut create, mut destroy, mut net_in, mut info) = (vec![], vec![], vec![], vec![]);
    for _ in 0..samples {
        let t0 = Instant::now();
        let h = c.create(CreateRequest::default()).unwrap().handle;
        let t1 = Instant::now();
        add_net_in(c, &h);
        let t2 = Instant::now();
        c.info(InfoRequest { handle: h.clone() }).unwrap();
        let t3 = Instant::now();
        c.destroy(DestroyRequest { handle: h }).unwrap();
        create.push(t1 - t0);
        net_in.push(t2 - t1);
        info.push(t3 - t2);
        destroy.push(t3.elapsed());
    }
    Level {
        ops: [
            ("create", create),
            ("destroy", destroy),
            ("net_in", net_in),
            ("info", info),
        ],
        steps: step_times(&d.dir.path().join("wardend.log"), samples),
    }
}

/// `BENCH_SCALE=n`: create, destroy, net_in and info p50 with [`SMALL`] live containers and
/// with `n` (each live one with a net_in and a net_out, idle otherwise), side by side with
/// the goal (within 20%), the daemon's steps of create and destroy the same way, and host
/// memory per idle container at `n`. The live containers are destroyed at the end (and by
/// the daemon's drop if the bench fails on the way).
fn scale(d: &Daemon, c: &mut Client, n: usize, samples: usize) {
    let mut live: Vec<String> = (0..SMALL).map(|i| live_container(c, i)).collect();
    let small = level(d, c, samples);
    let before = settled_pss(d);
    let t = Instant::now();
    while live.len() < n {
        live.push(live_container(c, live.len()));
    }
    println!();
    println!(
        "scale: {} containers made in {:.1} s (each with a net_in and a net_out)",
        n - SMALL,
        t.elapsed().as_secs_f64()
    );
    let memory = idle_memory(d, before, n - SMALL);
    let big = level(d, c, samples);
    let p50 = |v: &[Duration]| {
        let mut v = v.to_vec();
        v.sort();
        ms(pct(&v, 0.5))
    };
    let line = |name: &str, a: &[Duration], b: &[Duration], goal: &str| {
        let (a, b) = (p50(a), p50(b));
        // A step that takes no measurable time at either level has no ratio worth printing.
        let ratio = if a < 0.005 {
            "-".to_string()
        } else {
            format!("{:.2}", b / a)
        };
        println!("{name:<26} {a:>9.2} {b:>9.2} {ratio:>8} {goal}");
    };
    println!();
    println!("scale, p50 ms over {samples} each, with {SMALL} and with {n} live containers");
    println!("{:<26} {:>9} {:>9} {:>8} goal", "step", SMALL, n, "ratio");
    for ((name, a), (_, b)) in small.ops.iter().zip(&big.ops) {
        let met = if p50(b) <= p50(a) * 1.2 {
            "met"
        } else {
            "NOT met"
        };
        line(name, a, b, &format!("<= 1.20 ({met})"));
    }
    for ((what, a), (_, b)) in small.steps.iter().zip(&big.steps) {
        println!("  {what}");
        for (name, va) in a {
            if let Some((_, vb)) = b.iter().find(|(m, _)| m == name) {
                line(&format!("    {name}"), va, vb, "");
            }
        }
    }
    println!(
        "{:<26} {memory:>19.0} KiB  < 200 ({})",
        format!("memory per idle, at {n}"),
        if memory < 200.0 { "met" } else { "NOT met" }
    );
    let t = Instant::now();
    for h in live {
        c.destroy(DestroyRequest { handle: h }).unwrap();
    }
    println!(
        "scale: {n} containers destroyed in {:.1} s",
        t.elapsed().as_secs_f64()
    );
}

/// A btrfs on a loop device over a sparse file, mounted in a temp dir; gone when dropped.
struct Btrfs {
    dir: tempfile::TempDir,
    device: String,
}

impl Btrfs {
    fn new() -> Btrfs {
        let dir = tempfile::Builder::new()
            .prefix("wardend-bench-btrfs")
            .tempdir()
            .unwrap();
        let image = dir.path().join("image");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(4 << 30)
            .unwrap();
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&image)
            .output()
            .unwrap();
        assert!(out.status.success(), "losetup: {out:?}");
        let fs = Btrfs {
            device: String::from_utf8(out.stdout).unwrap().trim().to_string(),
            dir,
        };
        std::fs::create_dir(fs.mount()).unwrap();
        let ok = |c: &mut Command| assert!(c.status().unwrap().success(), "{c:?}");
        ok(Command::new("mkfs.btrfs")
            .args(["-q", "-f", &fs.device])
            .stdout(Stdio::null()));
        ok(Command::new("mount").arg(&fs.device).arg(fs.mount()));
        fs
    }

    fn mount(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }
}

impl Drop for Btrfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.mount()).status();
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
    }
}

/// create / create + limit_disk / destroy on btrfs depots, without and with quotas.
/// limit_memory, limit_cpu and limit_bandwidth (each setting a new value, so every call
/// writes), and info, N of each on one container; the goal is under 1 ms p50 each.
fn limit_rows(c: &mut Client, n: usize) {
    let h = c.create(CreateRequest::default()).unwrap().handle;
    let (mut mem, mut cpu, mut bw, mut info) = (vec![], vec![], vec![], vec![]);
    for i in 0..n as u64 {
        let t = Instant::now();
        c.limit_memory(LimitMemoryRequest {
            handle: h.clone(),
            limit_in_bytes: Some((64 + i % 2) << 20),
        })
        .unwrap();
        mem.push(t.elapsed());
        let t = Instant::now();
        c.limit_cpu(LimitCpuRequest {
            handle: h.clone(),
            limit_in_shares: Some(512 + i % 2),
        })
        .unwrap();
        cpu.push(t.elapsed());
        let t = Instant::now();
        c.limit_bandwidth(LimitBandwidthRequest {
            handle: h.clone(),
            rate: (10 + i % 2) << 20,
            burst: 256 << 10,
        })
        .unwrap();
        bw.push(t.elapsed());
        let t = Instant::now();
        c.info(InfoRequest { handle: h.clone() }).unwrap();
        info.push(t.elapsed());
    }
    row("limit_memory", mem);
    row("limit_cpu", cpu);
    row("limit_bandwidth", bw);
    row("info", info);
    c.destroy(DestroyRequest { handle: h }).unwrap();
}

fn disk_rows(n: usize) {
    let (plain_fs, quota_fs) = (Btrfs::new(), Btrfs::new());
    let plain = start_on(
        Some(&plain_fs.mount()),
        "-p",
        "  quota:\n    disk_quota_enabled: false\n",
        "10.236.4.0/22",
    );
    let quota = start_on(
        Some(&quota_fs.mount()),
        "-q",
        "  quota:\n    disk_quota_backend: btrfs\n",
        "10.236.8.0/22",
    );
    let mut pc = Client::connect(&plain.socket).unwrap();
    let mut qc = Client::connect(&quota.socket).unwrap();
    for _ in 0..3 {
        for c in [&mut pc, &mut qc] {
            let h = c.create(CreateRequest::default()).unwrap().handle;
            c.destroy(DestroyRequest { handle: h }).unwrap();
        }
    }
    let (mut p_create, mut p_destroy) = (vec![], vec![]);
    let (mut q_create, mut q_limit, mut q_both, mut q_destroy) = (vec![], vec![], vec![], vec![]);
    for _ in 0..n {
        let t0 = Instant::now();
        let h = pc.create(CreateRequest::default()).unwrap().handle;
        let t1 = Instant::now();
        pc.destroy(DestroyRequest { handle: h }).unwrap();
        let t2 = Instant::now();
        p_create.push(t1 - t0);
        p_destroy.push(t2 - t1);

        let t0 = Instant::now();
        let h = qc.create(CreateRequest::default()).unwrap().handle;
        let t1 = Instant::now();
        let r = qc
            .call(LimitDiskRequest {
                handle: h.clone(),
                byte_limit: Some(64 << 20),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(r.byte_limit, Some(64 << 20));
        let t2 = Instant::now();
        qc.destroy(DestroyRequest { handle: h }).unwrap();
        let t3 = Instant::now();
        q_create.push(t1 - t0);
        q_limit.push(t2 - t1);
        q_both.push(t2 - t0);
        q_destroy.push(t3 - t2);
    }
    println!();
    println!("disk quotas on btrfs depots, N={n} interleaved, times in ms");
    println!("{:<26} {:>9} {:>9} {:>9}", "step", "p50", "p99", "max");
    row("create, quotas off", p_create);
    row("create, btrfs quota", q_create);
    row("limit_disk", q_limit);
    row("create + limit_disk", q_both);
    row("destroy, quotas off", p_destroy);
    row("destroy, btrfs quota", q_destroy);
    drop((pc, qc));
    drop((plain, quota));
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` / `cargo bench -- --list`: nothing to list
    }
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let idle: usize = std::env::var("BENCH_IDLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let scale_n: usize = std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        scale_n == 0 || scale_n > SMALL,
        "BENCH_SCALE must be over {SMALL}"
    );
    let d = start(scale_n);
    let mut c = Client::connect(&d.socket).unwrap();

    warm_up(&mut c);

    println!("wardend containers, N={n} sequential, times in ms");
    println!("{:<26} {:>9} {:>9} {:>9}", "step", "p50", "p99", "max");
    sequential(&mut c, n);
    breakdown(&d.dir.path().join("wardend.log"), n);
    if std::env::var("BENCH_TMPFS").as_deref() != Ok("0") {
        on_tmpfs(&server_extra(), n);
    }

    // net_in (a pool port each, so a new mapping each time) and net_out (a rule each, at the
    // top of the container's chain), N of each on one container.
    let h = c.create(CreateRequest::default()).unwrap().handle;
    let (mut net_in, mut net_out) = (vec![], vec![]);
    for i in 0..n {
        let t = Instant::now();
        add_net_in(&mut c, &h);
        net_in.push(t.elapsed());
        let t = Instant::now();
        add_net_out(&mut c, &h, &format!("10.99.{}.0/24", i % 256));
        net_out.push(t.elapsed());
    }
    row("net_in", net_in);
    row("net_out", net_out);
    c.destroy(DestroyRequest { handle: h }).unwrap();
    limit_rows(&mut c, n);

    // Throughput over the veth, TCP between the host and a container's busybox nc, without a
    // limit and under limit_bandwidth (rate 10 MiB/s, burst 256 KiB).
    println!();
    println!(
        "{:<26} {:>12} {:>12}",
        "throughput (MB/s)", "out of", "into"
    );
    let h = c.create(CreateRequest::default()).unwrap().handle;
    let (out, into) = throughput(&mut c, &h, 256 << 20);
    println!("{:<26} {:>12.1} {:>12.1}", "no limit", out, into);
    let rate = 10u64 << 20;
    c.limit_bandwidth(LimitBandwidthRequest {
        handle: h.clone(),
        rate,
        burst: 256 << 10,
    })
    .unwrap();
    let (out, into) = throughput(&mut c, &h, 30 << 20);
    println!(
        "{:<26} {:>12.1} {:>12.1}",
        format!("limit {:.1} MB/s", rate as f64 / 1e6),
        out,
        into
    );
    c.destroy(DestroyRequest { handle: h }).unwrap();

    println!();
    println!(
        "{:<26} {:>12} {:>12}",
        "creates/s", "containers", "per second"
    );
    for clients in [1usize, 8] {
        let per = 40usize.div_ceil(clients);
        let t = Instant::now();
        let handles: Vec<Vec<String>> = std::thread::scope(|s| {
            let socket = &d.socket;
            let workers: Vec<_> = (0..clients)
                .map(|_| {
                    s.spawn(move || {
                        let mut c = Client::connect(socket).unwrap();
                        (0..per)
                            .map(|_| c.create(CreateRequest::default()).unwrap().handle)
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let elapsed = t.elapsed();
        let count: usize = handles.iter().map(Vec::len).sum();
        println!(
            "{:<26} {:>12} {:>12.1}",
            format!("{clients} client(s)"),
            count,
            count as f64 / elapsed.as_secs_f64()
        );
        for h in handles.into_iter().flatten() {
            c.destroy(DestroyRequest { handle: h }).unwrap();
        }
    }

    // Memory: idle containers (no jobs, so no keepers), daemon growth plus each init.
    drop(c);
    let before = settled_pss(&d);
    let mut c = Client::connect(&d.socket).unwrap();
    let hs: Vec<String> = (0..idle)
        .map(|_| c.create(CreateRequest::default()).unwrap().handle)
        .collect();
    println!();
    println!("idle containers: {idle}");
    idle_memory(&d, before, idle);
    for h in hs {
        c.destroy(DestroyRequest { handle: h }).unwrap();
    }
    if scale_n > 0 {
        scale(&d, &mut c, scale_n, n);
    }
    drop(c);
    drop(d);
    if std::env::var("BENCH_DISK").as_deref() != Ok("0") {
        disk_rows(n);
    }
}
