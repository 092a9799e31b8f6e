//! A real wardend with real containers: its own depot, socket, cgroup parent, interface
//! prefix and /24 network pool per test, and a check that nothing it made is left on the
//! host when the test ends (containers destroyed or not).

#![allow(dead_code)] // each test file uses part of this

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use warden_client::Client;

pub const WARDEND: &str = env!("CARGO_BIN_EXE_wardend");
/// Test interfaces are `t-<id>-N`, never the production `w-`.
pub const PREFIX: &str = "t-";

/// The busybox rootfs (scripts/mkrootfs.sh), read-only.
pub fn rootfs() -> PathBuf {
    PathBuf::from(
        std::env::var("WARDEN_TEST_ROOTFS").unwrap_or_else(|_| "/var/cache/warden/rootfs".into()),
    )
}

static SEQ: AtomicU32 = AtomicU32::new(0);

pub struct Wardend {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub depot: PathBuf,
    pub cgroup_parent: String,
    pub pool: String,
    pub nft_table: String,
    config: PathBuf,
    log: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Wardend {
    /// Starts a daemon; `extra_server` and `extra` are YAML lines added to `server:` and at
    /// the top level.
    pub fn start(extra_server: &str, extra: &str) -> Wardend {
        Self::start_pool(extra_server, extra, 24)
    }

    /// As `start`, with a network pool of this prefix length (24: 64 containers; 30: one; 22:
    /// 256).
    pub fn start_pool(extra_server: &str, extra: &str, prefix_len: u8) -> Wardend {
        Self::start_with(extra_server, "", extra, prefix_len)
    }

    /// As `start`, with YAML lines added to `network:` too.
    pub fn start_net(extra_network: &str) -> Wardend {
        Self::start_with("", extra_network, "", 24)
    }

    pub fn start_with(
        extra_server: &str,
        extra_network: &str,
        extra: &str,
        prefix_len: u8,
    ) -> Wardend {
        Self::start_full(extra_server, extra_network, extra, prefix_len, None, None)
    }

    /// As `start`, with the depot at `depot` (a test-made filesystem, see [`LoopFs`]).
    pub fn start_on(depot: &Path, extra_server: &str, extra: &str) -> Wardend {
        Self::start_full(extra_server, "", extra, 24, Some(depot.to_path_buf()), None)
    }

    /// As `start`, with `container_rootfs_path` at `base` instead of [`rootfs`].
    pub fn start_on_base(base: &Path, extra_server: &str, extra: &str) -> Wardend {
        Self::start_full(extra_server, "", extra, 24, None, Some(base.to_path_buf()))
    }

    fn start_full(
        extra_server: &str,
        extra_network: &str,
        extra: &str,
        prefix_len: u8,
        depot: Option<PathBuf>,
        base: Option<PathBuf>,
    ) -> Wardend {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let dir = tempfile::Builder::new()
            .prefix("wardend-e2e")
            .tempdir()
            .unwrap();
        // Container root is an unprivileged host uid: it must reach its rootfs in the depot.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let depot = depot.unwrap_or_else(|| dir.path().join("depot"));
        let cgroup_parent = format!("warden-e2e-{pid}-{n}");
        let nft_table = format!("warden_e2e_{pid}_{n}");
        // A /24 of 10.240.0.0/12 per test, from the pid and a counter, past the default pool
        // (10.254.0.0/22, of daemons run with the default config) and any pool an nftables
        // table on the host masquerades (another test's daemon, running or left over):
        // wardend refuses to start on a pool another wardend's table covers.
        let taken = pools_in_use();
        // A pool wider than a /24 starts on its own boundary and takes every /24 it covers.
        let block = 1u32 << 24u8.saturating_sub(prefix_len);
        let mut k = (pid.wrapping_mul(7) + n * 131) % 4096;
        let pool = loop {
            let (b, c) = (240 + k / 256, k % 256 / block * block);
            let candidate = format!("10.{b}.{c}.0");
            let default_pool = b == 254 && c < 4;
            let free = (c..c + block).all(|c| !taken.contains(&format!("10.{b}.{c}.0")));
            if !default_pool && free {
                break format!("{candidate}/{prefix_len}");
            }
            k = (k + 1) % 4096;
        };
        let socket = dir.path().join("w.sock");
        let config = dir.path().join("wardend.yml");
        let mut text = format!(
            "server:\n  container_grace_time: null\n  container_rootfs_path: {}\n  cgroup_parent: {cgroup_parent}\n",
            base.unwrap_or_else(rootfs).display()
        );
        for l in extra_server.lines() {
            text += &format!("  {l}\n");
        }
        text += &format!(
            "health_check_server:\n  port: 0\nlogging:\n  level: debug\nnetwork:\n  pool_network: {pool}\n  interface_prefix: {PREFIX}\n  release_delay: 0\n  nftables_table: {nft_table}\n"
        );
        // `{pool}` in the network lines stands for this daemon's pool.
        for l in extra_network.lines() {
            text += &format!("  {}\n", l.replace("{pool}", &pool));
        }
        text += extra;
        std::fs::write(&config, text).unwrap();
        let log = dir.path().join("wardend.log");
        let mut w = Wardend {
            child: None,
            socket,
            depot,
            cgroup_parent,
            pool,
            nft_table,
            config,
            log,
            dir,
            env: Vec::new(),
        };
        w.spawn();
        w
    }

    /// (Re)starts the daemon process on the same config and depot.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(WARDEND)
            .arg("--config")
            .arg(&self.config)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--depot")
            .arg(&self.depot)
            .env_remove("RUST_LOG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let pid = child.id();
        self.child = Some(child);
        // Generous: under the v2 lane's emulated CPUs on a busy machine a restart's exec
        // alone has taken 30 s.
        let deadline = Instant::now() + Duration::from_secs(120);
        while Client::connect(&self.socket).is_err() {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            assert!(
                !stat.is_empty() && !stat.contains(") Z "),
                "wardend exited:\n{}",
                self.log_text()
            );
            assert!(
                Instant::now() < deadline,
                "wardend not ready:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.socket).unwrap()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// SIGKILL, as a crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the exit; returns its code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        c.wait().ok()?.code()
    }

    /// What of this daemon's is still on the host: depot dirs, mounts, cgroups, interfaces.
    pub fn leftovers(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&self.depot) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if !name.starts_with('.') {
                    out.push(format!("depot dir {name}"));
                }
            }
        }
        let depot = self.depot.display().to_string();
        for line in std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
        {
            if let Some(mp) = line.split(' ').nth(4) {
                if mp.starts_with(&depot) {
                    out.push(format!("mount {mp}"));
                }
            }
        }
        for ctrl in [
            "memory", "cpu", "cpuacct", "pids", "devices", "freezer", "cpuset", "blkio",
        ] {
            let parent = Path::new("/sys/fs/cgroup")
                .join(ctrl)
                .join(&self.cgroup_parent);
            if let Ok(entries) = std::fs::read_dir(&parent) {
                for e in entries.flatten() {
                    if e.path().is_dir() {
                        out.push(format!("cgroup {}", e.path().display()));
                    }
                }
            }
        }
        out.extend(
            self.interfaces()
                .into_iter()
                .map(|i| format!("interface {i}")),
        );
        out
    }

    /// This daemon's interfaces on the host: `t-<id>-N` of a container id it logged.
    pub fn interfaces(&self) -> Vec<String> {
        let ids = self.ids_seen();
        let mut out = Vec::new();
        for e in std::fs::read_dir("/sys/class/net").unwrap().flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(rest) = name.strip_prefix(PREFIX) {
                let id = rest.split('-').next().unwrap_or_default();
                if ids.iter().any(|s| s == id) {
                    out.push(name);
                }
            }
        }
        out
    }

    fn ids_seen(&self) -> Vec<String> {
        // Ids appear in the log of every create.
        let log = self.log_text();
        log.split("id=")
            .skip(1)
            .filter_map(|s| s.get(..11))
            .map(str::to_string)
            .collect()
    }

    /// Nothing is left. The kernel deletes a released veth a few milliseconds after destroy
    /// returns, so interfaces get a short while to go.
    #[track_caller]
    pub fn assert_clean(&self) {
        let deadline = Instant::now() + Duration::from_secs(3);
        while !self.interfaces().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let left = self.leftovers();
        assert!(
            left.is_empty(),
            "left on the host: {left:#?}\n{}",
            self.log_text()
        );
    }
}

impl Drop for Wardend {
    fn drop(&mut self) {
        // A failing test says whether the daemon was still running, and if not, how it
        // ended (a signal's number names a killer to look for; its log may say nothing).
        if std::thread::panicking() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                eprintln!("--- wardend (pid {}) had ended: {status}", self.pid());
            }
        }
        // Destroy whatever the test left, then stop the daemon, then remove the cgroup
        // parents it made.
        if self.child.is_some() {
            if let Ok(mut c) = Client::connect(&self.socket) {
                for h in c.list().map(|l| l.handles).unwrap_or_default() {
                    let _ = c.destroy(warden_protocol::DestroyRequest { handle: h });
                }
            }
        }
        self.kill9();
        for ctrl in [
            "memory",
            "cpu",
            "cpuacct",
            "pids",
            "devices",
            "freezer",
            "cpuset",
            "blkio",
            "systemd",
            "unified",
            "net_cls",
            "perf_event",
            "hugetlb",
            "net_prio",
            "rdma",
            "misc",
        ] {
            let parent = Path::new("/sys/fs/cgroup")
                .join(ctrl)
                .join(&self.cgroup_parent);
            let _ = std::fs::remove_dir(parent);
        }
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &self.nft_table])
            .stderr(Stdio::null())
            .status();
        if std::thread::panicking() {
            eprintln!("--- wardend log\n{}", self.log_text());
        }
    }
}

/// `handle` of a new container.
pub fn create(c: &mut Client) -> String {
    c.create(Default::default()).unwrap().handle
}

/// Waits (at most 20 s) until a TCP socket in container `h` listens on `port`: its
/// /proc/net/tcp has the port in state 0A (a job's nc may take a while to start on a loaded
/// machine or an emulated guest, and a connection before that fails for the wrong reason).
pub fn wait_listening(c: &mut Client, h: &str, port: u16) {
    let pat = format!(":{port:04X} [0-9A-F]*:0000 0A");
    let probe = format!(
        "i=0; while [ $i -lt 200 ]; do cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | \
         grep -q '{pat}' && exit 0; sleep 0.1; i=$((i+1)); done; exit 1"
    );
    let (code, _, err) = run(c, h, &probe);
    assert_eq!(code, 0, "nothing listens on port {port} in {h}: {err}");
}

/// Runs `script` in `handle`; (exit, stdout, stderr).
pub fn run(c: &mut Client, handle: &str, script: &str) -> (u32, String, String) {
    run_as(c, handle, script, false)
}

pub fn run_as(
    c: &mut Client,
    handle: &str,
    script: &str,
    privileged: bool,
) -> (u32, String, String) {
    let r = c
        .run(warden_protocol::RunRequest {
            handle: handle.into(),
            script: script.into(),
            privileged: Some(privileged),
            ..Default::default()
        })
        .unwrap();
    (
        r.exit_status.unwrap_or(u32::MAX),
        String::from_utf8_lossy(&r.stdout.unwrap_or_default()).into(),
        String::from_utf8_lossy(&r.stderr.unwrap_or_default()).into(),
    )
}

/// The server's message of a failed call.
pub fn server_error<T: std::fmt::Debug>(r: Result<T, warden_client::Error>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e
            .server_message()
            .map(str::to_string)
            .unwrap_or_else(|| e.to_string()),
    }
}

/// Fills /dev/shm (tmpfs, charged to the container) past its memory limit, then waits until
/// the container has recorded the OOM and stopped.
pub fn fill_memory_until_oom(c: &mut Client, handle: &str) {
    let r = c
        .run(warden_protocol::RunRequest {
            handle: handle.into(),
            script: "dd if=/dev/zero of=/dev/shm/fill bs=1M count=64".into(),
            privileged: Some(true),
            ..Default::default()
        })
        .unwrap();
    assert_ne!(r.exit_status, Some(0));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let i = c
            .info(warden_protocol::InfoRequest {
                handle: handle.into(),
            })
            .unwrap();
        if i.events.contains(&"out of memory".to_string()) && i.state.as_deref() == Some("stopped")
        {
            break;
        }
        assert!(Instant::now() < deadline, "no OOM seen: {i:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The /24s (as `a.b.c.0`) of the pools that the host's nftables tables masquerade.
fn pools_in_use() -> Vec<String> {
    let out = Command::new("nft")
        .args(["list", "ruleset", "ip"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines()
        .filter(|l| l.contains("masquerade"))
        .filter_map(|l| l.trim().strip_prefix("ip saddr ")?.split(['/', ' ']).next())
        .filter_map(|a| a.parse::<std::net::Ipv4Addr>().ok())
        .map(|a| {
            let o = a.octets();
            format!("{}.{}.{}.0", o[0], o[1], o[2])
        })
        .collect()
}

/// A filesystem of its own on a loop device over a sparse file, mounted in a temp dir; the
/// mount and the loop device go when it is dropped (declare it before the Wardend using it,
/// so the daemon and its containers go first).
pub struct LoopFs {
    pub dir: tempfile::TempDir,
    pub device: PathBuf,
    pub mount: PathBuf,
}

impl LoopFs {
    /// `fstype`: `btrfs` or `xfs` (mounted with `prjquota`); `ext4`. The mount's parents are
    /// searchable by others (container root may need to reach it).
    pub fn new(fstype: &str, size_mb: u64) -> LoopFs {
        Self::try_new(fstype, size_mb).unwrap_or_else(|e| panic!("{e}"))
    }

    /// As `new`; an error says which step failed.
    pub fn try_new(fstype: &str, size_mb: u64) -> Result<LoopFs, String> {
        // Where they are modules (Debian's kernel in the lane), nothing loads them before.
        for m in ["loop", fstype] {
            let _ = Command::new("modprobe")
                .arg(m)
                .stderr(Stdio::null())
                .status();
        }
        let dir = tempfile::Builder::new()
            .prefix("wardend-loopfs")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let image = dir.path().join("image");
        let f = std::fs::File::create(&image).unwrap();
        f.set_len(size_mb << 20).unwrap();
        drop(f);
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&image)
            .output()
            .unwrap();
        if !out.status.success() {
            return Err(format!("losetup: {out:?}"));
        }
        let device = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).unwrap();
        // From here on Drop cleans up, whatever fails.
        let fs = LoopFs { dir, device, mount };
        let mkfs = format!("mkfs.{fstype}");
        let mut cmd = Command::new(&mkfs);
        match fstype {
            "btrfs" | "xfs" => cmd.arg("-q").arg("-f"),
            _ => cmd.arg("-q").arg("-F"),
        };
        let out = cmd
            .arg(&fs.device)
            .output()
            .map_err(|e| format!("{mkfs}: {e}"))?;
        if !out.status.success() {
            return Err(format!("{mkfs}: {out:?}"));
        }
        let mut cmd = Command::new("mount");
        if fstype == "xfs" {
            cmd.args(["-o", "prjquota"]);
        }
        let out = cmd.arg(&fs.device).arg(&fs.mount).output().unwrap();
        if !out.status.success() {
            return Err(format!("mount {fstype}: {out:?}"));
        }
        Ok(fs)
    }

    /// A dir on the filesystem for the daemon's depot.
    pub fn depot(&self) -> PathBuf {
        let d = self.mount.join("depot");
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        for _ in 0..50 {
            let ok = Command::new("umount")
                .arg(&self.mount)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok || !mounted(&self.mount) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if mounted(&self.mount) {
            let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        }
        let _ = Command::new("losetup").arg("-d").arg(&self.device).status();
    }
}

fn mounted(p: &Path) -> bool {
    let p = p.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(p.as_str()))
}

/// Builds `tests/fixtures/<name>.c` (static, so that it runs on the busybox rootfs) into
/// `<the daemon's dir>/bin/` and creates a container with that dir bound read-only at
/// `/mnt/bin`: the container's handle.
pub fn create_with_fixture(w: &Wardend, c: &mut Client, name: &str) -> String {
    let bin = w.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let src = format!("{}/tests/fixtures/{name}.c", env!("CARGO_MANIFEST_DIR"));
    let cc = Command::new("gcc")
        .args(["-static", "-O", "-o"])
        .arg(bin.join(name))
        .arg(&src)
        .output()
        .expect("run gcc (scripts/deps.sh installs gcc and libc6-dev)");
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    c.create(warden_protocol::CreateRequest {
        bind_mounts: vec![warden_protocol::BindMount {
            src_path: bin.display().to_string(),
            dst_path: "/mnt/bin".into(),
            mode: warden_protocol::Mode::Ro as i32,
        }],
        ..Default::default()
    })
    .unwrap()
    .handle
}
