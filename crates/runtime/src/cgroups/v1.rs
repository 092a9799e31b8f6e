//! The cgroup v1 driver: one directory per hierarchy (co-mounted controllers share one), and
//! on a hybrid host one more in the cgroup2 hierarchy (key `""`), which is only made, joined
//! and removed.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxDeviceType, LinuxMemory, LinuxResources,
};

use super::files::{self, read_u64_or_zero};
use super::stats::{self, HugetlbStats, MemoryEntry};
use super::{CgroupVersion, Error, FreezerState, Manager, Result, Stats};

/// How long freeze and thaw wait for the kernel.
const FREEZE_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Dir {
    path: PathBuf,
    /// The hierarchy's root (mount point), when known; found by walking up otherwise.
    root: Option<PathBuf>,
}

impl Dir {
    fn root(&self) -> PathBuf {
        self.root
            .clone()
            .unwrap_or_else(|| files::find_root(&self.path))
    }
}

/// A container's cgroup on a v1 (or hybrid) host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Manager {
    /// By controller (`cpu`, `name=systemd`...; `""` for the hybrid cgroup2 directory).
    dirs: BTreeMap<String, Dir>,
}

impl V1Manager {
    /// `dirs`: controller → (cgroup directory, root of its hierarchy).
    pub(crate) fn new(dirs: BTreeMap<String, (PathBuf, PathBuf)>) -> Self {
        V1Manager {
            dirs: dirs
                .into_iter()
                .map(|(k, (path, root))| {
                    (
                        k,
                        Dir {
                            path,
                            root: Some(root),
                        },
                    )
                })
                .collect(),
        }
    }

    /// From [`Manager::paths`] of an earlier manager.
    pub fn from_paths(paths: &BTreeMap<String, PathBuf>) -> Self {
        V1Manager {
            dirs: paths
                .iter()
                .map(|(k, p)| {
                    (
                        k.clone(),
                        Dir {
                            path: p.clone(),
                            root: None,
                        },
                    )
                })
                .collect(),
        }
    }

    /// The cgroup directory of `controller`, if that hierarchy is mounted.
    pub fn path(&self, controller: &str) -> Option<&Path> {
        self.dirs.get(controller).map(|d| d.path.as_path())
    }

    fn need(&self, controller: &str, needed_for: &str) -> Result<&Path> {
        self.path(controller).ok_or_else(|| Error::NotMounted {
            controller: controller.to_string(),
            needed_for: needed_for.to_string(),
        })
    }

    /// Each directory once (co-mounted controllers share one).
    fn distinct(&self) -> Vec<&Dir> {
        let mut seen = BTreeSet::new();
        self.dirs
            .values()
            .filter(|d| seen.insert(d.path.clone()))
            .collect()
    }

    /// Every pid in every hierarchy's directory and below. Directories that do not exist are
    /// skipped unless none does.
    fn all_pids(&self) -> Result<BTreeSet<i32>> {
        let mut out = BTreeSet::new();
        let mut first_err = None;
        let mut any = false;
        for d in self.distinct() {
            match files::subtree_pids(&d.path) {
                Ok(p) => {
                    any = true;
                    out.extend(p);
                }
                Err(e) if e.errno() == Some(libc::ENOENT) => {
                    first_err.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        match (any, first_err) {
            (false, Some(e)) => Err(e),
            _ => Ok(out),
        }
    }

    /// Controllers the resources need, with the field that needs each; checked before anything
    /// is written so a missing hierarchy fails the whole apply.
    fn check_mounted(&self, r: &LinuxResources) -> Result<()> {
        let mut need: Vec<(&str, &str)> = Vec::new();
        if r.devices().is_some() {
            need.push(("devices", "linux.resources.devices"));
        }
        if let Some(m) = r.memory() {
            if m.limit().is_some()
                || m.reservation().is_some()
                || m.swap().is_some()
                || m.kernel_tcp().is_some()
                || m.swappiness().is_some()
                || m.disable_oom_killer().is_some()
            {
                need.push(("memory", "linux.resources.memory"));
            }
        }
        if let Some(c) = r.cpu() {
            if c.shares().is_some()
                || c.quota().is_some()
                || c.period().is_some()
                || c.burst().is_some()
                || c.realtime_period().is_some()
                || c.realtime_runtime().is_some()
                || c.idle().is_some()
            {
                need.push(("cpu", "linux.resources.cpu"));
            }
            if c.cpus().is_some() || c.mems().is_some() {
                need.push(("cpuset", "linux.resources.cpu.cpus/mems"));
            }
        }
        if r.pids().is_some() {
            need.push(("pids", "linux.resources.pids"));
        }
        if r.block_io().is_some() {
            need.push(("blkio", "linux.resources.blockIO"));
        }
        if r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()) {
            need.push(("hugetlb", "linux.resources.hugepageLimits"));
        }
        if let Some(n) = r.network() {
            if n.class_id().is_some() {
                need.push(("net_cls", "linux.resources.network.classID"));
            }
            if n.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
                need.push(("net_prio", "linux.resources.network.priorities"));
            }
        }
        if r.rdma().as_ref().is_some_and(|m| !m.is_empty()) {
            need.push(("rdma", "linux.resources.rdma"));
        }
        for (c, why) in need {
            self.need(c, why)?;
        }
        Ok(())
    }

    fn apply_memory(&self, m: &LinuxMemory) -> Result<()> {
        if m.kernel().is_some() {
            tracing::debug!("ignoring linux.resources.memory.kernel: the kernel has no kmem limit");
        }
        let Ok(dir) = self.need("memory", "linux.resources.memory") else {
            return Ok(());
        };
        let limit_file = dir.join("memory.limit_in_bytes");
        let memsw = dir.join("memory.memsw.limit_in_bytes");
        let current = files::read_u64_opt(&limit_file)?.unwrap_or(u64::MAX);
        let has_memsw = memsw.exists();
        for (file, value) in memory_writes(m.limit(), m.swap(), current, has_memsw)? {
            files::write(&dir.join(file), &value)?;
        }
        if let Some(r) = m.reservation().filter(|&r| r != 0) {
            files::write(&dir.join("memory.soft_limit_in_bytes"), &r.to_string())?;
        }
        if let Some(t) = m.kernel_tcp().filter(|&t| t != 0) {
            files::write(&dir.join("memory.kmem.tcp.limit_in_bytes"), &t.to_string())?;
        }
        if let Some(s) = m.swappiness() {
            if s > 100 {
                return Err(Error::InvalidResource {
                    field: "linux.resources.memory.swappiness".into(),
                    reason: format!("{s} is above 100"),
                });
            }
            files::write(&dir.join("memory.swappiness"), &s.to_string())?;
        }
        if let Some(d) = m.disable_oom_killer() {
            files::write(&dir.join("memory.oom_control"), if d { "1" } else { "0" })?;
        }
        Ok(())
    }

    /// Everything of `linux.resources.cpu` but cpus and mems (see `apply`).
    fn apply_cpu(&self, c: &LinuxCpu) -> Result<()> {
        let Ok(dir) = self.need("cpu", "") else {
            return Ok(());
        };
        if let Some(shares) = c.shares().filter(|&s| s != 0) {
            let f = dir.join("cpu.shares");
            files::write(&f, &shares.to_string())?;
            // The kernel clamps to 2..=262144 without an error; say so rather than run with a
            // value nobody asked for.
            let got = files::read_u64_opt(&f)?;
            if got.is_some_and(|g| g != shares) {
                return Err(Error::InvalidResource {
                    field: "linux.resources.cpu.shares".into(),
                    reason: format!(
                        "the kernel set {} instead of {shares} (allowed: 2 to 262144)",
                        got.unwrap_or_default()
                    ),
                });
            }
        }
        let period = c.period().filter(|&p| p != 0);
        let quota = c.quota().filter(|&q| q != 0).map(|q| q.max(-1));
        let quota_file = dir.join("cpu.cfs_quota_us");
        let mut quota_done = false;
        if let Some(p) = period {
            let pf = dir.join("cpu.cfs_period_us");
            match files::write(&pf, &p.to_string()) {
                // A shorter period can break the current quota's hierarchy constraints; the
                // new quota first may fix that.
                Err(e) if e.errno() == Some(libc::EINVAL) && quota.is_some() => {
                    files::write(&quota_file, &quota.unwrap_or(-1).to_string())?;
                    files::write(&pf, &p.to_string())?;
                    quota_done = true;
                }
                r => r?,
            }
        }
        if let (Some(q), false) = (quota, quota_done) {
            files::write(&quota_file, &q.to_string())?;
        }
        if let Some(b) = c.burst() {
            files::write(&dir.join("cpu.cfs_burst_us"), &b.to_string())?;
        }
        if let Some(p) = c.realtime_period().filter(|&p| p != 0) {
            files::write(&dir.join("cpu.rt_period_us"), &p.to_string())?;
        }
        if let Some(r) = c.realtime_runtime().filter(|&r| r != 0) {
            files::write(&dir.join("cpu.rt_runtime_us"), &r.to_string())?;
        }
        if let Some(i) = c.idle() {
            files::write(&dir.join("cpu.idle"), &i.to_string())?;
        }
        Ok(())
    }

    fn apply_blkio(&self, b: &LinuxBlockIo) -> Result<()> {
        let dir = self.need("blkio", "linux.resources.blockIO")?;
        // A weight of 0 means "not set" (Docker always sends `"weight": 0`), as in runc.
        // Weights are a scheduler's: CFQ had blkio.weight, BFQ has blkio.bfq.weight, and
        // the mq-deadline/kyber/none schedulers have neither. A weight the host has no file
        // for cannot be applied and is skipped with a warning, as Docker does with
        // --blkio-weight on such a host; throttles work with any scheduler and stay errors.
        let weight_file = ["blkio.weight", "blkio.bfq.weight"]
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.exists());
        let skip = |what: &str, files: &str| {
            tracing::warn!(
                "ignoring linux.resources.blockIO {what}: the host cannot apply it ({} has {files}: \
                 no CFQ or BFQ I/O scheduler)",
                dir.display()
            );
        };
        let nonzero = |w: Option<u16>| w.filter(|&w| w != 0);
        if let Some(w) = nonzero(b.weight()) {
            match &weight_file {
                Some(f) => files::write(f, &w.to_string())?,
                None => skip("weight", "neither blkio.weight nor blkio.bfq.weight"),
            }
        }
        let leaf_file = dir.join("blkio.leaf_weight");
        if let Some(w) = nonzero(b.leaf_weight()) {
            if leaf_file.exists() {
                files::write(&leaf_file, &w.to_string())?;
            } else {
                skip("leafWeight", "no blkio.leaf_weight");
            }
        }
        for d in b.weight_device().iter().flatten() {
            let dev = format!("{}:{}", d.major(), d.minor());
            if let Some(w) = nonzero(d.weight()) {
                match &weight_file {
                    Some(f) => {
                        let f = f.with_file_name(format!(
                            "{}_device",
                            f.file_name().unwrap_or_default().to_string_lossy()
                        ));
                        files::write(&f, &format!("{dev} {w}"))?;
                    }
                    None => skip(
                        "weightDevice weight",
                        "neither blkio.weight_device nor blkio.bfq.weight_device",
                    ),
                }
            }
            if let Some(w) = nonzero(d.leaf_weight()) {
                let f = dir.join("blkio.leaf_weight_device");
                if f.exists() {
                    files::write(&f, &format!("{dev} {w}"))?;
                } else {
                    skip("weightDevice leafWeight", "no blkio.leaf_weight_device");
                }
            }
        }
        let throttles = [
            (
                "blkio.throttle.read_bps_device",
                b.throttle_read_bps_device(),
            ),
            (
                "blkio.throttle.write_bps_device",
                b.throttle_write_bps_device(),
            ),
            (
                "blkio.throttle.read_iops_device",
                b.throttle_read_iops_device(),
            ),
            (
                "blkio.throttle.write_iops_device",
                b.throttle_write_iops_device(),
            ),
        ];
        for (file, list) in throttles {
            for t in list.iter().flatten() {
                files::write(
                    &dir.join(file),
                    &format!("{}:{} {}", t.major(), t.minor(), t.rate()),
                )?;
            }
        }
        Ok(())
    }

    fn apply_devices(&self, rules: &[LinuxDeviceCgroup]) -> Result<()> {
        let dir = self.need("devices", "linux.resources.devices")?;
        // Validate every rule before the deny-all, so a bad rule leaves the old ones in force.
        let lines = rules
            .iter()
            .map(|r| Ok((r.allow(), device_rule(r)?)))
            .collect::<Result<Vec<_>>>()?;
        files::write(&dir.join("devices.deny"), "a")?;
        for (allow, line) in lines {
            let f = if allow {
                "devices.allow"
            } else {
                "devices.deny"
            };
            files::write(&dir.join(f), &line)?;
        }
        Ok(())
    }

    fn freezer(&self) -> Result<PathBuf> {
        Ok(self.need("freezer", "freeze/thaw")?.join("freezer.state"))
    }

    fn set_freezer(&self, want: FreezerState) -> Result<()> {
        let f = self.freezer()?;
        let value = want.to_string();
        files::write(&f, &value)?;
        let mut checks = 0u32;
        let mut got = FreezerState::Thawed;
        let done = files::wait_until(FREEZE_WAIT, || {
            got = parse_freezer_state(&f, &files::read(&f)?)?;
            checks += 1;
            // Tasks forking while the freeze goes on can escape it; asking again catches them.
            if got != want && checks == 20 {
                checks = 0;
                files::write(&f, &value)?;
            }
            Ok(got == want)
        })?;
        if done {
            return Ok(());
        }
        if want == FreezerState::Frozen {
            // Do not leave it half frozen.
            let _ = files::write(&f, "THAWED");
        }
        Err(Error::FreezeTimeout {
            path: f,
            want,
            got,
            waited: FREEZE_WAIT,
        })
    }

    fn memory_entry(dir: &Path, prefix: &str) -> Result<MemoryEntry> {
        let f = |name: &str| read_u64_or_zero(&dir.join(format!("{prefix}{name}")));
        Ok(MemoryEntry {
            usage: f("usage_in_bytes")?,
            max_usage: f("max_usage_in_bytes")?,
            limit: f("limit_in_bytes")?,
            failcnt: f("failcnt")?,
        })
    }

    fn cpu_stats(&self, s: &mut Stats) -> Result<()> {
        if let Some(d) = self.path("cpuacct") {
            let u = &mut s.cpu.usage;
            u.total = read_u64_or_zero(&d.join("cpuacct.usage"))?;
            if let Some(t) = files::read_opt(&d.join("cpuacct.usage_percpu"))? {
                u.per_cpu = t
                    .split_whitespace()
                    .filter_map(|v| v.parse().ok())
                    .collect();
            }
            match (
                files::read_u64_opt(&d.join("cpuacct.usage_user"))?,
                files::read_u64_opt(&d.join("cpuacct.usage_sys"))?,
            ) {
                (Some(user), Some(sys)) => (u.user, u.kernel) = (user, sys),
                _ => {
                    // Older kernels: cpuacct.stat in clock ticks.
                    let st = files::read_flat_keyed(&d.join("cpuacct.stat"))?;
                    let tick = ns_per_tick();
                    u.user = st.get("user").copied().unwrap_or(0).saturating_mul(tick);
                    u.kernel = st.get("system").copied().unwrap_or(0).saturating_mul(tick);
                }
            }
        }
        if let Some(d) = self.path("cpu") {
            let st = files::read_flat_keyed(&d.join("cpu.stat"))?;
            let t = &mut s.cpu.throttling;
            t.periods = st.get("nr_periods").copied().unwrap_or(0);
            t.throttled_periods = st.get("nr_throttled").copied().unwrap_or(0);
            t.throttled_time = st.get("throttled_time").copied().unwrap_or(0);
        }
        Ok(())
    }

    fn memory_stats(&self, s: &mut Stats) -> Result<()> {
        let Some(d) = self.path("memory") else {
            return Ok(());
        };
        let m = &mut s.memory;
        m.usage = Self::memory_entry(d, "memory.")?;
        m.swap = Self::memory_entry(d, "memory.memsw.")?;
        m.kernel = Self::memory_entry(d, "memory.kmem.")?;
        m.stats = files::read_flat_keyed(&d.join("memory.stat"))?;
        m.cache = m.stats.get("cache").copied().unwrap_or(0);
        m.oom_kills = files::read_flat_keyed(&d.join("memory.oom_control"))?
            .get("oom_kill")
            .copied()
            .unwrap_or(0);
        Ok(())
    }

    fn other_stats(&self, s: &mut Stats) -> Result<()> {
        if let Some(d) = self.path("pids") {
            s.pids.current = read_u64_or_zero(&d.join("pids.current"))?;
            s.pids.limit = match files::read_u64_opt(&d.join("pids.max"))? {
                Some(u64::MAX) | None => 0,
                Some(v) => v,
            };
        }
        if let Some(d) = self.path("blkio") {
            let pick = |names: &[&str]| -> Result<Vec<stats::BlkioEntry>> {
                for n in names {
                    if let Some(t) = files::read_opt(&d.join(n))? {
                        return Ok(stats::parse_blkio_v1(&t));
                    }
                }
                Ok(vec![])
            };
            s.blkio.io_service_bytes_recursive = pick(&[
                "blkio.throttle.io_service_bytes_recursive",
                "blkio.io_service_bytes_recursive",
                "blkio.bfq.io_service_bytes_recursive",
            ])?;
            s.blkio.io_serviced_recursive = pick(&[
                "blkio.throttle.io_serviced_recursive",
                "blkio.io_serviced_recursive",
                "blkio.bfq.io_serviced_recursive",
            ])?;
        }
        if let Some(d) = self.path("hugetlb") {
            for size in hugetlb_sizes(d, ".limit_in_bytes")? {
                let f = |n: &str| read_u64_or_zero(&d.join(format!("hugetlb.{size}.{n}")));
                s.hugetlb.insert(
                    size.clone(),
                    HugetlbStats {
                        usage: f("usage_in_bytes")?,
                        max_usage: f("max_usage_in_bytes")?,
                        failcnt: f("failcnt")?,
                    },
                );
            }
        }
        Ok(())
    }
}

/// The page sizes of the hugetlb files in `dir` that end with `suffix`.
pub(crate) fn hugetlb_sizes(dir: &Path, suffix: &str) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut out: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let size = n.strip_prefix("hugetlb.")?.strip_suffix(suffix)?;
            (!size.contains('.')).then(|| size.to_string())
        })
        .collect();
    out.sort();
    Ok(out)
}

/// A page size as the kernel names it in file names (`2MB`, `1GB`).
pub(crate) fn check_page_size(size: &str) -> Result<()> {
    if size.is_empty() || !size.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Error::InvalidResource {
            field: "linux.resources.hugepageLimits.pageSize".into(),
            reason: format!("{size:?} is not a page size like 2MB"),
        });
    }
    Ok(())
}

fn ns_per_tick() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => 1_000_000_000 / t as u64,
        _ => 10_000_000,
    }
}

fn parse_freezer_state(path: &Path, s: &str) -> Result<FreezerState> {
    match s.trim() {
        "THAWED" => Ok(FreezerState::Thawed),
        "FREEZING" => Ok(FreezerState::Freezing),
        "FROZEN" => Ok(FreezerState::Frozen),
        other => Err(Error::Parse {
            path: path.to_path_buf(),
            content: other.to_string(),
        }),
    }
}

/// The memory.limit_in_bytes and memory.memsw.limit_in_bytes writes for a memory limit and an
/// OCI swap limit (which is memory+swap, like memsw), in an order the kernel accepts: it
/// requires limit <= memsw after every write, so memsw goes first when it grows beyond the
/// current limit and last otherwise. `current_limit` is what memory.limit_in_bytes holds now.
/// 0 means unset (runc's reading); -1 unlimited. An unlimited memory with no swap given makes
/// swap unlimited too.
pub(crate) fn memory_writes(
    limit: Option<i64>,
    swap: Option<i64>,
    current_limit: u64,
    has_memsw: bool,
) -> Result<Vec<(&'static str, String)>> {
    let limit = limit.filter(|&l| l != 0);
    let mut swap = swap.filter(|&s| s != 0);
    if limit == Some(-1) && swap.is_none() {
        swap = Some(-1);
    }
    for (field, v) in [("limit", limit), ("swap", swap)] {
        if v.is_some_and(|v| v < -1) {
            return Err(Error::InvalidResource {
                field: format!("linux.resources.memory.{field}"),
                reason: format!("{} is negative", v.unwrap_or_default()),
            });
        }
    }
    if let (Some(l), Some(s)) = (limit, swap) {
        if l != -1 && s != -1 && s < l {
            return Err(Error::InvalidResource {
                field: "linux.resources.memory.swap".into(),
                reason: format!("memory+swap {s} is below the memory limit {l}"),
            });
        }
    }
    let limit_w = limit.map(|l| ("memory.limit_in_bytes", l.to_string()));
    let swap_w = match swap {
        Some(s) if has_memsw => Some(("memory.memsw.limit_in_bytes", s.to_string())),
        Some(-1) | None => None,
        Some(s) => {
            return Err(Error::Unsupported {
                what: format!("linux.resources.memory.swap ({s})"),
                version: CgroupVersion::V1,
                reason: "memory.memsw.limit_in_bytes is missing: the kernel does not account \
                         swap (swapaccount=0)"
                    .into(),
            })
        }
    };
    let memsw_first = match swap {
        Some(-1) => true,
        Some(s) => s as u64 > current_limit,
        None => false,
    };
    let mut out = Vec::new();
    if memsw_first {
        out.extend(swap_w.clone());
        out.extend(limit_w);
    } else {
        out.extend(limit_w);
        out.extend(swap_w);
    }
    Ok(out)
}

/// One v1 device rule line: `c 1:3 rwm`, `b *:* m`, `a`.
pub(crate) fn device_rule(r: &LinuxDeviceCgroup) -> Result<String> {
    let invalid = |reason: String| Error::InvalidResource {
        field: "linux.resources.devices".into(),
        reason,
    };
    let typ = match r.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => return Ok("a".into()),
        LinuxDeviceType::B => "b",
        LinuxDeviceType::C | LinuxDeviceType::U => "c",
        LinuxDeviceType::P => return Err(invalid("type p (fifo) has no device rule".into())),
    };
    let num = |n: Option<i64>| match n {
        None | Some(-1) => Ok("*".to_string()),
        Some(n) if n >= 0 => Ok(n.to_string()),
        Some(n) => Err(invalid(format!("bad device number {n}"))),
    };
    let access = match r.access().as_deref() {
        None | Some("") => "rwm",
        Some(a) => a,
    };
    if !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(invalid(format!(
            "bad access {access:?} (want a subset of rwm)"
        )));
    }
    Ok(format!(
        "{typ} {}:{} {access}",
        num(r.major())?,
        num(r.minor())?
    ))
}

/// Gives each cpuset directory from below `root` down to `leaf` the parent's cpus and mems
/// where they are empty: a new cpuset starts with none, and then no task can join it.
fn init_cpuset(root: &Path, leaf: &Path) -> Result<()> {
    let Ok(rel) = leaf.strip_prefix(root) else {
        return Ok(());
    };
    let mut parent = root.to_path_buf();
    for c in rel.components() {
        let dir = parent.join(c);
        for f in ["cpuset.cpus", "cpuset.mems"] {
            let own = files::read_opt(&dir.join(f))?.unwrap_or_default();
            if own.trim().is_empty() {
                let from = files::read(&parent.join(f))?;
                files::write(&dir.join(f), from.trim())?;
            }
        }
        parent = dir;
    }
    Ok(())
}

impl Manager for V1Manager {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V1
    }

    fn create(&self) -> Result<()> {
        let mut made = Vec::new();
        let res = (|| {
            for d in self.distinct() {
                files::check_below_root(&d.path, &d.root())?;
                if let Some(outer) = files::mkdir_p(&d.path)?.into_iter().next() {
                    made.push(outer);
                }
            }
            if let Some(d) = self.dirs.get("cpuset") {
                init_cpuset(&d.root(), &d.path)?;
            }
            Ok(())
        })();
        if res.is_err() {
            let dirs: Vec<&Path> = made.iter().map(PathBuf::as_path).collect();
            if let Err(e) = files::remove_all(&dirs, || Ok(())) {
                tracing::warn!("undo cgroup create: {e}");
            }
        }
        res
    }

    fn add_task(&self, pid: i32) -> Result<()> {
        for d in self.distinct() {
            files::write(&d.path.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    fn apply(&self, r: &LinuxResources) -> Result<()> {
        if let Some(u) = r.unified().as_ref().filter(|u| !u.is_empty()) {
            let mut keys: Vec<&String> = u.keys().collect();
            keys.sort();
            return Err(Error::Unsupported {
                what: "linux.resources.unified".into(),
                version: CgroupVersion::V1,
                reason: format!("{keys:?} are cgroup v2 files"),
            });
        }
        self.check_mounted(r)?;
        if let Some(c) = r.cpu() {
            // cpuset first: the rest does not depend on it, but joining does.
            if c.cpus().is_some() || c.mems().is_some() {
                let set = self.need("cpuset", "linux.resources.cpu.cpus/mems")?;
                if let Some(cpus) = c.cpus().as_deref() {
                    files::write(&set.join("cpuset.cpus"), cpus)?;
                }
                if let Some(mems) = c.mems().as_deref() {
                    files::write(&set.join("cpuset.mems"), mems)?;
                }
            }
        }
        if let Some(rules) = r.devices() {
            self.apply_devices(rules)?;
        }
        if let Some(m) = r.memory() {
            self.apply_memory(m)?;
        }
        if let Some(c) = r.cpu() {
            self.apply_cpu(c)?;
        }
        if let Some(p) = r.pids() {
            let dir = self.need("pids", "linux.resources.pids")?;
            let v = if p.limit() > 0 {
                p.limit().to_string()
            } else {
                "max".into()
            };
            files::write(&dir.join("pids.max"), &v)?;
        }
        if let Some(b) = r.block_io() {
            self.apply_blkio(b)?;
        }
        for h in r.hugepage_limits().iter().flatten() {
            let dir = self.need("hugetlb", "linux.resources.hugepageLimits")?;
            check_page_size(h.page_size())?;
            files::write(
                &dir.join(format!("hugetlb.{}.limit_in_bytes", h.page_size())),
                &h.limit().to_string(),
            )?;
        }
        if let Some(n) = r.network() {
            if let Some(id) = n.class_id() {
                let dir = self.need("net_cls", "linux.resources.network.classID")?;
                files::write(&dir.join("net_cls.classid"), &id.to_string())?;
            }
            for p in n.priorities().iter().flatten() {
                let dir = self.need("net_prio", "linux.resources.network.priorities")?;
                files::write(
                    &dir.join("net_prio.ifpriomap"),
                    &format!("{} {}", p.name(), p.priority()),
                )?;
            }
        }
        if let Some(rdma) = r.rdma() {
            let mut devs: Vec<_> = rdma.iter().collect();
            devs.sort_by_key(|(k, _)| *k);
            for (dev, l) in devs {
                let dir = self.need("rdma", "linux.resources.rdma")?;
                files::write(&dir.join("rdma.max"), &super::v2::rdma_line(dev, l))?;
            }
        }
        Ok(())
    }

    fn procs(&self) -> Result<Vec<i32>> {
        Ok(self.all_pids()?.into_iter().collect())
    }

    fn freeze(&self) -> Result<()> {
        self.set_freezer(FreezerState::Frozen)
    }

    fn thaw(&self) -> Result<()> {
        self.set_freezer(FreezerState::Thawed)
    }

    /// Without a freezer hierarchy nothing can be frozen: `Thawed`.
    fn freezer_state(&self) -> Result<FreezerState> {
        let Some(d) = self.path("freezer") else {
            return Ok(FreezerState::Thawed);
        };
        let f = d.join("freezer.state");
        parse_freezer_state(&f, &files::read(&f)?)
    }

    fn stats(&self) -> Result<Stats> {
        if !self.distinct().iter().any(|d| d.path.is_dir()) {
            let path = self
                .distinct()
                .first()
                .map(|d| d.path.clone())
                .unwrap_or_default();
            return Err(Error::Read {
                path,
                source: io::Error::from_raw_os_error(libc::ENOENT),
            });
        }
        let mut s = Stats::default();
        self.cpu_stats(&mut s)?;
        self.memory_stats(&mut s)?;
        self.other_stats(&mut s)?;
        Ok(s)
    }

    fn destroy(&self) -> Result<()> {
        // Directories already gone are fine (systemd may have removed a unit's, and with it
        // the parents that tell where the hierarchy's root is).
        let dirs: Vec<&Dir> = self
            .distinct()
            .into_iter()
            .filter(|d| d.path.exists())
            .collect();
        for d in &dirs {
            files::check_below_root(&d.path, &d.root())?;
        }
        let paths: Vec<&Path> = dirs.iter().map(|d| d.path.as_path()).collect();
        files::remove_all(&paths, || {
            let pids = self.all_pids().unwrap_or_default();
            let where_ = paths.first().copied().unwrap_or(Path::new("/"));
            files::check_not_ours(where_, &pids, "kill its members")?;
            files::kill_all(pids);
            // A frozen task does not act on SIGKILL until thawed.
            if let Some(d) = self.path("freezer") {
                let f = d.join("freezer.state");
                if files::read_opt(&f)
                    .ok()
                    .flatten()
                    .is_some_and(|s| s.trim() != "THAWED")
                {
                    // It may be gone by now; the next try tells.
                    let _ = files::write(&f, "THAWED");
                }
            }
            Ok(())
        })
    }

    fn paths(&self) -> BTreeMap<String, PathBuf> {
        self.dirs
            .iter()
            .map(|(k, d)| (k.clone(), d.path.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::fs;

    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxHugepageLimitBuilder,
        LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder, LinuxThrottleDeviceBuilder,
    };

    use super::*;
    use crate::cgroups::Hierarchies;

    const GROUPS: &[&str] = &[
        "cpu,cpuacct",
        "cpuset",
        "memory",
        "devices",
        "freezer",
        "blkio",
        "pids",
        "name=systemd",
    ];

    /// A fake v1 host under a tempdir: roots with their files, cpuset with cpus and mems.
    fn host() -> (tempfile::TempDir, Hierarchies) {
        let t = tempfile::tempdir().unwrap();
        for g in GROUPS {
            let d = t.path().join(g.strip_prefix("name=").unwrap_or(g));
            files::mkdir_p(&d).unwrap();
        }
        fs::write(t.path().join("cpuset/cpuset.cpus"), "0-3\n").unwrap();
        fs::write(t.path().join("cpuset/cpuset.mems"), "0\n").unwrap();
        let h = Hierarchies::v1_under(t.path(), GROUPS);
        (t, h)
    }

    fn read(p: &Path) -> String {
        fs::read_to_string(p).unwrap()
    }

    #[test]
    fn memsw_goes_first_when_raising_and_last_when_lowering() {
        const M: i64 = 1 << 20;
        let w = memory_writes(Some(256 * M), Some(512 * M), 64 * M as u64, true).unwrap();
        assert_eq!(
            w,
            vec![
                ("memory.memsw.limit_in_bytes", (512 * M).to_string()),
                ("memory.limit_in_bytes", (256 * M).to_string()),
            ]
        );
        let w = memory_writes(Some(32 * M), Some(48 * M), 64 * M as u64, true).unwrap();
        assert_eq!(w[0].0, "memory.limit_in_bytes");
        assert_eq!(w[1].0, "memory.memsw.limit_in_bytes");
        // From unlimited down: limit first.
        let w = memory_writes(Some(64 * M), Some(128 * M), u64::MAX, true).unwrap();
        assert_eq!(w[0].0, "memory.limit_in_bytes");
        // Unlimited memory, swap unset: both unlimited, memsw first.
        let w = memory_writes(Some(-1), None, 64 * M as u64, true).unwrap();
        assert_eq!(
            w,
            vec![
                ("memory.memsw.limit_in_bytes", "-1".to_string()),
                ("memory.limit_in_bytes", "-1".to_string()),
            ]
        );
        // 0 is unset.
        assert!(memory_writes(Some(0), Some(0), 0, true).unwrap().is_empty());
        assert_eq!(memory_writes(Some(M), None, 0, true).unwrap().len(), 1);
    }

    #[test]
    fn memory_swap_checks() {
        let e = memory_writes(Some(100), Some(50), 0, true).unwrap_err();
        assert!(e.to_string().contains("below the memory limit"), "{e}");
        let e = memory_writes(Some(100), Some(200), 0, false).unwrap_err();
        assert!(matches!(e, Error::Unsupported { .. }), "{e}");
        // Unlimited swap without swap accounting is what the kernel does anyway.
        assert_eq!(
            memory_writes(Some(100), Some(-1), 0, false).unwrap().len(),
            1
        );
        assert!(memory_writes(Some(-5), None, 0, true).is_err());
    }

    #[test]
    fn device_rules() {
        let rule = |t: LinuxDeviceType, ma: Option<i64>, mi: Option<i64>, a: &str| {
            let mut b = LinuxDeviceCgroupBuilder::default()
                .typ(t)
                .access(a.to_string());
            if let Some(m) = ma {
                b = b.major(m);
            }
            if let Some(m) = mi {
                b = b.minor(m);
            }
            b.build().unwrap()
        };
        use LinuxDeviceType::*;
        assert_eq!(
            device_rule(&rule(C, Some(1), Some(3), "rwm")).unwrap(),
            "c 1:3 rwm"
        );
        assert_eq!(device_rule(&rule(B, None, None, "m")).unwrap(), "b *:* m");
        assert_eq!(
            device_rule(&rule(U, Some(136), None, "rw")).unwrap(),
            "c 136:* rw"
        );
        assert_eq!(
            device_rule(&rule(C, Some(5), Some(1), "")).unwrap(),
            "c 5:1 rwm"
        );
        assert_eq!(device_rule(&rule(A, None, None, "rwm")).unwrap(), "a");
        assert!(device_rule(&rule(P, Some(1), Some(1), "r")).is_err());
        assert!(device_rule(&rule(C, Some(1), Some(1), "rx")).is_err());
    }

    #[test]
    fn create_initialises_cpusets_down_the_path() {
        let (t, h) = host();
        let m = h.v1_manager(Some("/outer/inner/c1"), "c1").unwrap();
        m.create().unwrap();
        for d in ["outer", "outer/inner", "outer/inner/c1"] {
            assert_eq!(
                read(&t.path().join("cpuset").join(d).join("cpuset.cpus")),
                "0-3"
            );
            assert_eq!(
                read(&t.path().join("cpuset").join(d).join("cpuset.mems")),
                "0"
            );
        }
        // cpu and cpuacct share one directory.
        assert_eq!(m.path("cpu"), m.path("cpuacct"));
        assert!(t.path().join("cpu,cpuacct/outer/inner/c1").is_dir());
        assert!(t.path().join("systemd/outer/inner/c1").is_dir());
        // A cpuset someone already set is kept.
        fs::write(t.path().join("cpuset/outer/cpuset.cpus"), "1").unwrap();
        fs::write(t.path().join("cpuset/outer/inner/cpuset.cpus"), "").unwrap();
        m.create().unwrap();
        assert_eq!(read(&t.path().join("cpuset/outer/cpuset.cpus")), "1");
        assert_eq!(read(&t.path().join("cpuset/outer/inner/cpuset.cpus")), "1");
    }

    #[test]
    fn create_takes_back_what_it_made_on_failure() {
        let (t, h) = host();
        // No cpus in the root cpuset to copy from.
        fs::remove_file(t.path().join("cpuset/cpuset.cpus")).unwrap();
        let m = h.v1_manager(Some("/new/c1"), "c1").unwrap();
        let e = m.create().unwrap_err();
        assert!(e.to_string().contains("cpuset.cpus"), "{e}");
        assert!(!t.path().join("memory/new").exists());
        assert!(t.path().join("memory").exists());
    }

    #[test]
    fn apply_writes_every_file() {
        let (t, h) = host();
        let m = h.v1_manager(Some("/c1"), "c1").unwrap();
        m.create().unwrap();
        let mem = t.path().join("memory/c1");
        fs::write(mem.join("memory.limit_in_bytes"), "9223372036854771712").unwrap();
        fs::write(
            mem.join("memory.memsw.limit_in_bytes"),
            "9223372036854771712",
        )
        .unwrap();
        let blk = t.path().join("blkio/c1");
        fs::write(blk.join("blkio.weight"), "500").unwrap();
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(64i64 << 20)
                    .reservation(32i64 << 20)
                    .swap(128i64 << 20)
                    .kernel(1i64 << 20)
                    .swappiness(10u64)
                    .disable_oom_killer(true)
                    .build()
                    .unwrap(),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(512u64)
                    .quota(50_000i64)
                    .period(100_000u64)
                    .realtime_period(1_000_000u64)
                    .realtime_runtime(10_000i64)
                    .cpus("1")
                    .mems("0")
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(0i64).build().unwrap())
            .block_io(
                LinuxBlockIoBuilder::default()
                    .weight(300u16)
                    .throttle_read_bps_device(vec![LinuxThrottleDeviceBuilder::default()
                        .major(254i64)
                        .minor(0i64)
                        .rate(1_048_576u64)
                        .build()
                        .unwrap()])
                    .build()
                    .unwrap(),
            )
            .devices(vec![LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(LinuxDeviceType::C)
                .major(1i64)
                .minor(3i64)
                .access("rwm")
                .build()
                .unwrap()])
            .build()
            .unwrap();
        m.apply(&r).unwrap();
        assert_eq!(
            read(&mem.join("memory.limit_in_bytes")),
            (64 << 20).to_string()
        );
        assert_eq!(
            read(&mem.join("memory.memsw.limit_in_bytes")),
            (128 << 20).to_string()
        );
        assert_eq!(
            read(&mem.join("memory.soft_limit_in_bytes")),
            (32 << 20).to_string()
        );
        assert_eq!(read(&mem.join("memory.swappiness")), "10");
        assert_eq!(read(&mem.join("memory.oom_control")), "1");
        assert!(!mem.join("memory.kmem.limit_in_bytes").exists());
        let cpu = t.path().join("cpu,cpuacct/c1");
        assert_eq!(read(&cpu.join("cpu.shares")), "512");
        assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "50000");
        assert_eq!(read(&cpu.join("cpu.cfs_period_us")), "100000");
        assert_eq!(read(&cpu.join("cpu.rt_period_us")), "1000000");
        assert_eq!(read(&cpu.join("cpu.rt_runtime_us")), "10000");
        assert_eq!(read(&t.path().join("cpuset/c1/cpuset.cpus")), "1");
        assert_eq!(read(&t.path().join("pids/c1/pids.max")), "max");
        assert_eq!(read(&blk.join("blkio.weight")), "300");
        assert_eq!(
            read(&blk.join("blkio.throttle.read_bps_device")),
            "254:0 1048576"
        );
        // The last write wins in a plain file: the one rule after the deny-all.
        assert_eq!(
            read(&t.path().join("devices/c1/devices.allow")),
            "c 1:3 rwm"
        );
        assert_eq!(read(&t.path().join("devices/c1/devices.deny")), "a");
    }

    #[test]
    fn apply_refuses_what_v1_cannot_do() {
        let (_t, h) = host();
        let m = h.v1_manager(Some("/c1"), "c1").unwrap();
        m.create().unwrap();
        let r = LinuxResourcesBuilder::default()
            .unified(HashMap::from([(
                "memory.high".to_string(),
                "1M".to_string(),
            )]))
            .build()
            .unwrap();
        let e = m.apply(&r).unwrap_err();
        assert!(e.to_string().contains("linux.resources.unified"), "{e}");
        assert!(e.to_string().contains("memory.high"), "{e}");
        // No hugetlb hierarchy in this host: nothing is written, the error names it.
        let r = LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(5i64).build().unwrap())
            .hugepage_limits(vec![LinuxHugepageLimitBuilder::default()
                .page_size("2MB")
                .limit(1i64 << 21)
                .build()
                .unwrap()])
            .build()
            .unwrap();
        let e = m.apply(&r).unwrap_err();
        assert!(
            matches!(&e, Error::NotMounted { controller, .. } if controller == "hugetlb"),
            "{e}"
        );
        assert!(!m.path("pids").unwrap().join("pids.max").exists());
    }

    #[test]
    fn zero_shares_is_unset() {
        // (The kernel's silent clamp of shares is checked on the real kernel, in
        // tests/cgroups_v1.rs.)
        let (_t, h) = host();
        let m = h.v1_manager(Some("/c1"), "c1").unwrap();
        m.create().unwrap();
        let r = LinuxResourcesBuilder::default()
            .cpu(LinuxCpuBuilder::default().shares(0u64).build().unwrap())
            .build()
            .unwrap();
        m.apply(&r).unwrap();
        assert!(!m.path("cpu").unwrap().join("cpu.shares").exists());
    }

    #[test]
    fn paths_round_trip_and_destroy() {
        let (t, h) = host();
        let h = h.with_unified(t.path().join("unified"));
        files::mkdir_p(&t.path().join("unified")).unwrap();
        let m = h.v1_manager(Some("/p/c1"), "c1").unwrap();
        m.create().unwrap();
        let paths = Manager::paths(&m);
        assert_eq!(paths[""], t.path().join("unified/p/c1"));
        assert_eq!(paths["name=systemd"], t.path().join("systemd/p/c1"));
        let again = crate::cgroups::from_paths(&paths).unwrap();
        assert_eq!(again.version(), CgroupVersion::V1);
        assert_eq!(again.paths(), paths);
        fs::write(t.path().join("pids/p/c1/cgroup.procs"), "").unwrap();
        assert_eq!(again.procs().unwrap(), Vec::<i32>::new());
        fs::write(t.path().join("freezer/p/c1/freezer.state"), "THAWED\n").unwrap();
        assert_eq!(again.freezer_state().unwrap(), FreezerState::Thawed);
        again.destroy().unwrap();
        for p in paths.values() {
            assert!(!p.exists(), "{}", p.display());
            assert!(p.parent().unwrap().exists(), "the parent stays");
        }
        // Gone already: fine.
        again.destroy().unwrap();
    }

    #[test]
    fn destroy_never_removes_a_root() {
        let (t, _h) = host();
        let paths = BTreeMap::from([("memory".to_string(), t.path().join("memory"))]);
        let m = crate::cgroups::from_paths(&paths).unwrap();
        let e = m.destroy().unwrap_err();
        assert!(matches!(e, Error::Refused { .. }), "{e}");
        assert!(t.path().join("memory").exists());
    }

    #[test]
    fn freeze_waits_for_the_state() {
        let (t, h) = host();
        let m = h.v1_manager(Some("/c1"), "c1").unwrap();
        m.create().unwrap();
        // The fake kernel reaches any state at once.
        m.freeze().unwrap();
        assert_eq!(read(&t.path().join("freezer/c1/freezer.state")), "FROZEN");
        assert!(m.is_frozen().unwrap());
        m.thaw().unwrap();
        assert_eq!(m.freezer_state().unwrap(), FreezerState::Thawed);
    }

    #[test]
    fn stats_from_files() {
        let (t, h) = host();
        let m = h.v1_manager(Some("/c1"), "c1").unwrap();
        m.create().unwrap();
        let w = |rel: &str, s: &str| fs::write(t.path().join(rel), s).unwrap();
        w("cpu,cpuacct/c1/cpuacct.usage", "3000\n");
        w("cpu,cpuacct/c1/cpuacct.usage_percpu", "1000 2000 \n");
        w("cpu,cpuacct/c1/cpuacct.stat", "user 2\nsystem 1\n");
        w(
            "cpu,cpuacct/c1/cpu.stat",
            "nr_periods 5\nnr_throttled 2\nthrottled_time 77\n",
        );
        w("memory/c1/memory.usage_in_bytes", "4096\n");
        w("memory/c1/memory.limit_in_bytes", "8192\n");
        w("memory/c1/memory.failcnt", "3\n");
        w("memory/c1/memory.stat", "cache 100\nrss 200\n");
        w(
            "memory/c1/memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n",
        );
        w("pids/c1/pids.current", "2\n");
        w("pids/c1/pids.max", "max\n");
        w(
            "blkio/c1/blkio.throttle.io_service_bytes_recursive",
            "254:0 Read 10\n254:0 Write 20\nTotal 30\n",
        );
        let s = m.stats().unwrap();
        assert_eq!(s.cpu.usage.total, 3000);
        assert_eq!(s.cpu.usage.per_cpu, vec![1000, 2000]);
        assert_eq!(s.cpu.usage.user, 2 * ns_per_tick());
        assert_eq!(s.cpu.throttling.throttled_periods, 2);
        assert_eq!(s.cpu.throttling.throttled_time, 77);
        assert_eq!(s.memory.usage.usage, 4096);
        assert_eq!(s.memory.usage.limit, 8192);
        assert_eq!(s.memory.usage.failcnt, 3);
        assert_eq!(s.memory.cache, 100);
        assert_eq!(s.memory.stats["rss"], 200);
        assert_eq!(s.memory.oom_kills, 4);
        assert_eq!(s.pids.current, 2);
        assert_eq!(s.pids.limit, 0);
        assert_eq!(s.blkio.total_bytes("Write"), 20);
        m.destroy().unwrap();
        assert!(m.stats().is_err());
    }
}
