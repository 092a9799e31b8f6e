//! The cgroup v2 driver: one directory in the unified hierarchy.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxRdma, LinuxResources};

use super::devices_bpf;
use super::files::{self, read_u64_or_zero};
use super::stats::{self, HugetlbStats, MemoryEntry};
use super::v1::{check_page_size, hugetlb_sizes};
use super::{CgroupVersion, Error, FreezerState, Manager, Result, Stats};

const FREEZE_WAIT: Duration = Duration::from_secs(5);

/// runc's cpu.shares (2..=262144) → cpu.weight (1..=10000): `1 + ((shares − 2) × 9999) / 262142`.
/// 0 (unset) stays 0; out-of-range shares are clamped first.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let s = shares.clamp(2, 262_144);
    1 + ((s - 2) * 9999) / 262_142
}

/// runc's blkio weight (10..=1000) → io.weight (1..=10000): `1 + ((w − 10) × 9999) / 990`.
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    if weight == 0 {
        return 0;
    }
    let w = u64::from(weight.clamp(10, 1000));
    1 + ((w - 10) * 9999) / 990
}

/// The memory.swap.max value for OCI's memory limit and swap (memory+swap): None to leave it,
/// `max`, or swap − limit. 0 is unset; -1 unlimited. Unlimited memory with no swap given makes
/// swap unlimited too (what v1 does).
pub(crate) fn swap_to_v2(limit: Option<i64>, swap: Option<i64>) -> Result<Option<String>> {
    let limit = limit.filter(|&l| l != 0);
    let swap = swap.filter(|&s| s != 0);
    let invalid = |reason: String| Error::InvalidResource {
        field: "linux.resources.memory.swap".into(),
        reason,
    };
    match (limit, swap) {
        (Some(-1), None) | (_, Some(-1)) => Ok(Some("max".into())),
        (_, None) => Ok(None),
        (None | Some(-1), Some(_)) => Err(invalid("a swap limit needs a memory limit".into())),
        (Some(l), Some(_)) if l < 0 => Err(invalid(format!("bad memory limit {l}"))),
        (Some(l), Some(s)) if s < l => Err(invalid(format!(
            "memory+swap {s} is below the memory limit {l}"
        ))),
        (Some(l), Some(s)) => Ok(Some((s - l).to_string())),
    }
}

fn max_or(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

/// An rdma.max line: `mlx4_0 hca_handle=2 hca_object=2000` (`max` for what is unset).
pub(crate) fn rdma_line(dev: &str, l: &LinuxRdma) -> String {
    let v = |n: Option<u32>| n.map_or("max".to_string(), |n| n.to_string());
    format!(
        "{dev} hca_handle={} hca_object={}",
        v(l.hca_handles()),
        v(l.hca_objects())
    )
}

/// One planned write: the controller that must be enabled for the file to exist (None for
/// files every cgroup has), the OCI field it comes from, the file and the value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct W {
    controller: Option<String>,
    field: String,
    file: String,
    value: String,
}

fn w(controller: &str, field: &str, file: impl Into<String>, value: impl Into<String>) -> W {
    W {
        controller: Some(controller.to_string()),
        field: field.to_string(),
        file: file.into(),
        value: value.into(),
    }
}

/// A container's cgroup in the unified hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Manager {
    path: PathBuf,
    /// The hierarchy's root, when known; found by walking up otherwise.
    root: Option<PathBuf>,
}

impl V2Manager {
    pub(crate) fn new(path: PathBuf, root: PathBuf) -> Self {
        V2Manager {
            path,
            root: Some(root),
        }
    }

    /// From the `""` entry of [`Manager::paths`].
    pub fn from_path(path: PathBuf) -> Self {
        V2Manager { path, root: None }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn root(&self) -> PathBuf {
        self.root
            .clone()
            .unwrap_or_else(|| files::find_root(&self.path))
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Enables in each cgroup from the root down to the leaf's parent every controller it has
    /// available and has not enabled yet. One write of all first; if the kernel refuses it
    /// (one controller cannot be enabled here), one write each, skipping the refused ones.
    fn enable_controllers(&self, root: &Path) -> Result<()> {
        let Some(parent) = self.path.parent() else {
            return Ok(());
        };
        let Ok(rel) = parent.strip_prefix(root) else {
            return Ok(());
        };
        let mut dir = root.to_path_buf();
        let mut dirs = vec![dir.clone()];
        for c in rel.components() {
            dir = dir.join(c);
            dirs.push(dir.clone());
        }
        for d in dirs {
            let avail = files::read_opt(&d.join("cgroup.controllers"))?.unwrap_or_default();
            let enabled = files::read_opt(&d.join("cgroup.subtree_control"))?.unwrap_or_default();
            let enabled: BTreeSet<&str> = enabled.split_whitespace().collect();
            let missing: Vec<String> = avail
                .split_whitespace()
                .filter(|c| !enabled.contains(c))
                .map(|c| format!("+{c}"))
                .collect();
            if missing.is_empty() {
                continue;
            }
            let f = d.join("cgroup.subtree_control");
            if files::write(&f, &missing.join(" ")).is_ok() {
                continue;
            }
            for c in &missing {
                if let Err(e) = files::write(&f, c) {
                    tracing::debug!("cannot enable a controller: {e}");
                }
            }
        }
        Ok(())
    }

    fn plan_memory(&self, m: &LinuxMemory, out: &mut Vec<W>) -> Result<()> {
        const F: &str = "linux.resources.memory";
        if m.kernel().is_some() || m.kernel_tcp().is_some() {
            tracing::debug!("ignoring kernel memory limits: cgroup v2 has none");
        }
        if m.swappiness().is_some() {
            tracing::warn!("ignoring memory swappiness: cgroup v2 has no per-cgroup swappiness");
        }
        if m.disable_oom_killer() == Some(true) {
            tracing::warn!("ignoring disableOOMKiller: cgroup v2 cannot disable the OOM killer");
        }
        if let Some(v) = swap_to_v2(m.limit(), m.swap())? {
            let f = self.file("memory.swap.max");
            if f.exists() {
                out.push(w("memory", F, "memory.swap.max", v));
            } else if v != "max" {
                return Err(Error::Unsupported {
                    what: format!("{F}.swap"),
                    version: CgroupVersion::V2,
                    reason: format!(
                        "{} is missing: the kernel does not account swap",
                        f.display()
                    ),
                });
            }
        }
        if let Some(l) = m.limit().filter(|&l| l != 0) {
            out.push(w("memory", F, "memory.max", max_or(l)));
        }
        if let Some(r) = m.reservation().filter(|&r| r != 0) {
            out.push(w("memory", F, "memory.low", max_or(r)));
        }
        Ok(())
    }

    fn plan_cpu(&self, c: &LinuxCpu, out: &mut Vec<W>) -> Result<()> {
        const F: &str = "linux.resources.cpu";
        if c.realtime_period().is_some_and(|p| p != 0)
            || c.realtime_runtime().is_some_and(|r| r != 0)
        {
            return Err(Error::Unsupported {
                what: format!("{F}.realtimePeriod/realtimeRuntime"),
                version: CgroupVersion::V2,
                reason: "cgroup v2 has no realtime group scheduling".into(),
            });
        }
        if let Some(s) = c.shares().filter(|&s| s != 0) {
            out.push(w("cpu", F, "cpu.weight", shares_to_weight(s).to_string()));
        }
        if let Some(i) = c.idle() {
            out.push(w("cpu", F, "cpu.idle", i.to_string()));
        }
        let quota = c.quota().filter(|&q| q != 0);
        let period = c.period().filter(|&p| p != 0);
        if quota.is_some() || period.is_some() {
            let q = match quota {
                Some(q) => max_or(q),
                // Only a period: keep the quota there is.
                None => files::read_opt(&self.file("cpu.max"))?
                    .and_then(|s| s.split_whitespace().next().map(str::to_string))
                    .unwrap_or_else(|| "max".into()),
            };
            let v = match period {
                Some(p) => format!("{q} {p}"),
                None => q,
            };
            out.push(w("cpu", F, "cpu.max", v));
        }
        if let Some(b) = c.burst() {
            out.push(w("cpu", F, "cpu.max.burst", b.to_string()));
        }
        if let Some(cpus) = c.cpus() {
            out.push(w("cpuset", F, "cpuset.cpus", cpus.clone()));
        }
        if let Some(mems) = c.mems() {
            out.push(w("cpuset", F, "cpuset.mems", mems.clone()));
        }
        Ok(())
    }

    fn plan_io(&self, b: &LinuxBlockIo, out: &mut Vec<W>) {
        const F: &str = "linux.resources.blockIO";
        // BFQ takes blkio's own scale; io.weight (the iocost controller's) the 1..10000 one.
        // A weight of 0 means "not set", as in runc. Without either file (neither BFQ nor
        // iocost on the host, or no io controller here) a weight cannot be applied: skipped
        // with a warning, as on v1; throttles (io.max) are not.
        let bfq = self.file("io.bfq.weight").exists();
        let iow = self.file("io.weight").exists();
        let skip = |what: &str| {
            tracing::warn!(
                "ignoring linux.resources.blockIO {what}: the host cannot apply it ({} has \
                 neither io.bfq.weight nor io.weight)",
                self.path.display()
            );
        };
        if let Some(wt) = b.weight().filter(|&w| w != 0) {
            if bfq {
                out.push(w("io", F, "io.bfq.weight", wt.to_string()));
            } else if iow {
                let v = format!("default {}", blkio_weight_to_io_weight(wt));
                out.push(w("io", F, "io.weight", v));
            } else {
                skip("weight");
            }
        }
        if b.leaf_weight().is_some_and(|w| w != 0) {
            tracing::warn!("ignoring blockIO leafWeight: cgroup v2 has none");
        }
        for d in b.weight_device().iter().flatten() {
            if let Some(wt) = d.weight().filter(|&w| w != 0) {
                let dev = format!("{}:{}", d.major(), d.minor());
                if bfq {
                    out.push(w("io", F, "io.bfq.weight", format!("{dev} {wt}")));
                } else if iow {
                    let v = format!("{dev} {}", blkio_weight_to_io_weight(wt));
                    out.push(w("io", F, "io.weight", v));
                } else {
                    skip("weightDevice weight");
                }
            }
        }
        let throttles = [
            ("rbps", b.throttle_read_bps_device()),
            ("wbps", b.throttle_write_bps_device()),
            ("riops", b.throttle_read_iops_device()),
            ("wiops", b.throttle_write_iops_device()),
        ];
        for (key, list) in throttles {
            for t in list.iter().flatten() {
                let rate = match t.rate() {
                    0 => "max".to_string(),
                    r => r.to_string(),
                };
                let v = format!("{}:{} {key}={rate}", t.major(), t.minor());
                out.push(w("io", F, "io.max", v));
            }
        }
    }

    /// Every write `apply` does, in order.
    fn plan(&self, r: &LinuxResources) -> Result<Vec<W>> {
        let mut out = Vec::new();
        if let Some(n) = r.network() {
            if n.class_id().is_some() || n.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
                return Err(Error::Unsupported {
                    what: "linux.resources.network".into(),
                    version: CgroupVersion::V2,
                    reason: "net_cls and net_prio are cgroup v1 controllers".into(),
                });
            }
        }
        if let Some(c) = r.cpu() {
            self.plan_cpu(c, &mut out)?;
        }
        if let Some(m) = r.memory() {
            self.plan_memory(m, &mut out)?;
        }
        if let Some(p) = r.pids() {
            let v = if p.limit() > 0 {
                p.limit().to_string()
            } else {
                "max".into()
            };
            out.push(w("pids", "linux.resources.pids", "pids.max", v));
        }
        if let Some(b) = r.block_io() {
            self.plan_io(b, &mut out);
        }
        for h in r.hugepage_limits().iter().flatten() {
            check_page_size(h.page_size())?;
            out.push(w(
                "hugetlb",
                "linux.resources.hugepageLimits",
                format!("hugetlb.{}.max", h.page_size()),
                max_or(h.limit()),
            ));
        }
        if let Some(rdma) = r.rdma() {
            let mut devs: Vec<_> = rdma.iter().collect();
            devs.sort_by_key(|(k, _)| *k);
            for (dev, l) in devs {
                out.push(w(
                    "rdma",
                    "linux.resources.rdma",
                    "rdma.max",
                    rdma_line(dev, l),
                ));
            }
        }
        // Last, so that they win over the same file set above.
        if let Some(u) = r.unified() {
            let mut keys: Vec<(&String, &String)> = u.iter().collect();
            keys.sort();
            for (k, v) in keys {
                if k.is_empty() || k.contains('/') || k == "." || k == ".." {
                    return Err(Error::InvalidResource {
                        field: "linux.resources.unified".into(),
                        reason: format!("{k:?} is not a cgroup file name"),
                    });
                }
                let prefix = k.split('.').next().unwrap_or_default();
                // cgroup.* and the pressure files exist without any controller.
                let controller =
                    (prefix != "cgroup" && !k.ends_with(".pressure")).then(|| prefix.to_string());
                out.push(W {
                    controller,
                    field: format!("linux.resources.unified[{k:?}]"),
                    file: k.clone(),
                    value: v.clone(),
                });
            }
        }
        Ok(out)
    }

    fn wait_frozen(&self, want: bool) -> Result<bool> {
        let events = self.file("cgroup.events");
        files::wait_until(FREEZE_WAIT, || {
            Ok(files::read_flat_keyed(&events)?.get("frozen").copied() == Some(want as u64))
        })
    }
}

impl Manager for V2Manager {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V2
    }

    fn create(&self) -> Result<()> {
        let root = self.root();
        files::check_below_root(&self.path, &root)?;
        let made = files::mkdir_p(&self.path)?;
        if let Err(e) = self.enable_controllers(&root) {
            if let Some(outer) = made.first() {
                let _ = files::remove_all(&[outer], || Ok(()));
            }
            return Err(e);
        }
        Ok(())
    }

    fn add_task(&self, pid: i32) -> Result<()> {
        files::write(&self.file("cgroup.procs"), &pid.to_string())
    }

    fn apply(&self, r: &LinuxResources) -> Result<()> {
        let plan = self.plan(r)?;
        // Checked (and compiled) before anything is written, like the other fields.
        let devices = match r.devices() {
            Some(list) => {
                let rules = devices_bpf::rules(list)?;
                devices_bpf::program(&rules)?;
                Some(rules)
            }
            None => None,
        };
        // Say which controller is missing rather than "no such file" later, and before
        // writing anything.
        if let Some(avail) = files::read_opt(&self.file("cgroup.controllers"))? {
            let avail: BTreeSet<&str> = avail.split_whitespace().collect();
            for wr in &plan {
                if let Some(c) = wr.controller.as_deref().filter(|c| !avail.contains(c)) {
                    return Err(Error::Unsupported {
                        what: format!("{} ({})", wr.field, wr.file),
                        version: CgroupVersion::V2,
                        reason: format!(
                            "the {c} controller is not enabled for {} (it has: {})",
                            self.path.display(),
                            avail.iter().copied().collect::<Vec<_>>().join(" ")
                        ),
                    });
                }
            }
        }
        // v2 has no devices controller: the rules become an eBPF program on the cgroup, first,
        // so that no limit is in place without them. Not in a tree that stands in for the
        // kernel (the unit tests'): there is no cgroup to attach to.
        if let Some(rules) = devices {
            if files::is_cgroupfs(&self.path) {
                devices_bpf::attach(&self.path, &rules)?;
            } else {
                tracing::debug!(
                    cgroup = %self.path.display(),
                    "not a cgroup filesystem: device filter not attached"
                );
            }
        }
        for wr in plan {
            files::write(&self.file(&wr.file), &wr.value)?;
        }
        Ok(())
    }

    fn procs(&self) -> Result<Vec<i32>> {
        Ok(files::subtree_pids(&self.path)?.into_iter().collect())
    }

    fn freeze(&self) -> Result<()> {
        let f = self.file("cgroup.freeze");
        if !f.exists() && files::is_cgroupfs(&self.path) {
            return Err(Error::Unsupported {
                what: "freeze".into(),
                version: CgroupVersion::V2,
                reason: format!("{} is missing (kernel older than 5.2)", f.display()),
            });
        }
        files::write(&f, "1")?;
        if self.wait_frozen(true)? {
            return Ok(());
        }
        let got = self.freezer_state().unwrap_or(FreezerState::Freezing);
        let _ = files::write(&f, "0");
        Err(Error::FreezeTimeout {
            path: self.file("cgroup.events"),
            want: FreezerState::Frozen,
            got,
            waited: FREEZE_WAIT,
        })
    }

    fn thaw(&self) -> Result<()> {
        let f = self.file("cgroup.freeze");
        if !f.exists() && files::is_cgroupfs(&self.path) {
            return Ok(());
        }
        files::write(&f, "0")?;
        if self.wait_frozen(false)? {
            return Ok(());
        }
        Err(Error::FreezeTimeout {
            path: self.file("cgroup.events"),
            want: FreezerState::Thawed,
            got: self.freezer_state().unwrap_or(FreezerState::Frozen),
            waited: FREEZE_WAIT,
        })
    }

    fn freezer_state(&self) -> Result<FreezerState> {
        if !self.path.is_dir() {
            return Err(Error::Read {
                path: self.path.clone(),
                source: io::Error::from_raw_os_error(libc::ENOENT),
            });
        }
        let asked = files::read_opt(&self.file("cgroup.freeze"))?;
        let events = self.file("cgroup.events");
        let frozen = files::read_flat_keyed(&events)?.get("frozen").copied() == Some(1);
        Ok(match (frozen, asked.as_deref().map(str::trim)) {
            (true, _) => FreezerState::Frozen,
            (false, Some("1")) => FreezerState::Freezing,
            _ => FreezerState::Thawed,
        })
    }

    fn stats(&self) -> Result<Stats> {
        let d = &self.path;
        if !d.is_dir() {
            return Err(Error::Read {
                path: d.clone(),
                source: io::Error::from_raw_os_error(libc::ENOENT),
            });
        }
        let mut s = Stats::default();
        let get = |m: &BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);

        let cpu = files::read_flat_keyed(&d.join("cpu.stat"))?;
        s.cpu.usage.total = get(&cpu, "usage_usec").saturating_mul(1000);
        s.cpu.usage.user = get(&cpu, "user_usec").saturating_mul(1000);
        s.cpu.usage.kernel = get(&cpu, "system_usec").saturating_mul(1000);
        s.cpu.throttling.periods = get(&cpu, "nr_periods");
        s.cpu.throttling.throttled_periods = get(&cpu, "nr_throttled");
        s.cpu.throttling.throttled_time = get(&cpu, "throttled_usec").saturating_mul(1000);

        let u = |name: &str| read_u64_or_zero(&d.join(name));
        let events = files::read_flat_keyed(&d.join("memory.events"))?;
        let mem = MemoryEntry {
            usage: u("memory.current")?,
            max_usage: u("memory.peak")?,
            limit: files::read_u64_opt(&d.join("memory.max"))?.unwrap_or(u64::MAX),
            failcnt: get(&events, "max"),
        };
        let swap_limit = files::read_u64_opt(&d.join("memory.swap.max"))?.unwrap_or(u64::MAX);
        s.memory.swap = MemoryEntry {
            usage: u("memory.swap.current")?.saturating_add(mem.usage),
            max_usage: u("memory.swap.peak")?.saturating_add(mem.max_usage),
            limit: swap_limit.saturating_add(mem.limit),
            failcnt: get(
                &files::read_flat_keyed(&d.join("memory.swap.events"))?,
                "max",
            ),
        };
        s.memory.usage = mem;
        s.memory.stats = files::read_flat_keyed(&d.join("memory.stat"))?;
        s.memory.cache = get(&s.memory.stats, "file");
        s.memory.oom_kills = get(&events, "oom_kill");

        s.pids.current = u("pids.current")?;
        s.pids.limit = match files::read_u64_opt(&d.join("pids.max"))? {
            Some(u64::MAX) | None => 0,
            Some(v) => v,
        };

        if let Some(t) = files::read_opt(&d.join("io.stat"))? {
            let (bytes, ios) = stats::parse_io_stat(&t);
            s.blkio.io_service_bytes_recursive = bytes;
            s.blkio.io_serviced_recursive = ios;
        }

        for size in hugetlb_sizes(d, ".max")? {
            let ev = files::read_flat_keyed(&d.join(format!("hugetlb.{size}.events")))?;
            s.hugetlb.insert(
                size.clone(),
                HugetlbStats {
                    usage: u(&format!("hugetlb.{size}.current"))?,
                    max_usage: 0,
                    failcnt: get(&ev, "max"),
                },
            );
        }
        Ok(s)
    }

    fn destroy(&self) -> Result<()> {
        files::check_below_root(&self.path, &self.root())?;
        files::remove_all(&[&self.path], || {
            let pids = match files::subtree_pids(&self.path) {
                Ok(p) => p,
                Err(e) if e.errno() == Some(libc::ENOENT) => BTreeSet::new(),
                Err(e) => return Err(e),
            };
            files::check_not_ours(&self.path, &pids, "kill its members")?;
            let kill = self.file("cgroup.kill");
            if !kill.exists() || files::write(&kill, "1").is_err() {
                files::kill_all(pids);
            }
            // SIGKILL reaches frozen tasks on v2, but leave nothing frozen behind.
            let freeze = self.file("cgroup.freeze");
            if files::read_opt(&freeze)
                .ok()
                .flatten()
                .is_some_and(|s| s.trim() == "1")
            {
                let _ = files::write(&freeze, "0");
            }
            Ok(())
        })
    }

    fn paths(&self) -> BTreeMap<String, PathBuf> {
        BTreeMap::from([(String::new(), self.path.clone())])
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::fs;

    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxHugepageLimitBuilder,
        LinuxMemoryBuilder, LinuxPidsBuilder, LinuxRdmaBuilder, LinuxResourcesBuilder,
        LinuxThrottleDeviceBuilder, LinuxWeightDeviceBuilder,
    };

    use super::*;
    use crate::cgroups::Hierarchies;

    /// A fake cgroup2 root with every controller available.
    fn host() -> (tempfile::TempDir, Hierarchies) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("cg");
        files::mkdir_p(&root).unwrap();
        fs::write(
            root.join("cgroup.controllers"),
            "cpuset cpu io memory hugetlb pids rdma\n",
        )
        .unwrap();
        fs::write(root.join("cgroup.subtree_control"), "cpu\n").unwrap();
        (t, Hierarchies::unified(&root))
    }

    fn read(p: &Path) -> String {
        fs::read_to_string(p).unwrap()
    }

    #[test]
    fn shares_convert_like_runc() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1), 1);
        assert_eq!(shares_to_weight(1 << 40), 10_000);
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
    }

    #[test]
    fn swap_is_memory_plus_swap() {
        let s = |l, sw| swap_to_v2(l, sw);
        assert_eq!(s(Some(100), Some(300)).unwrap().as_deref(), Some("200"));
        assert_eq!(s(Some(100), Some(100)).unwrap().as_deref(), Some("0"));
        assert_eq!(s(Some(100), Some(-1)).unwrap().as_deref(), Some("max"));
        assert_eq!(s(Some(-1), None).unwrap().as_deref(), Some("max"));
        assert_eq!(s(Some(100), None).unwrap(), None);
        assert_eq!(s(None, None).unwrap(), None);
        assert_eq!(s(Some(0), Some(0)).unwrap(), None);
        assert!(s(Some(100), Some(50)).is_err());
        assert!(s(None, Some(50)).is_err());
        assert!(s(Some(-1), Some(50)).is_err());
    }

    #[test]
    fn create_enables_controllers_in_parents_only() {
        let (t, h) = host();
        let m = h.v2_manager(Some("/c1"), "c1").unwrap();
        m.create().unwrap();
        let root = t.path().join("cg");
        let sc = read(&root.join("cgroup.subtree_control"));
        assert_eq!(sc, "+cpuset +io +memory +hugetlb +pids +rdma");
        assert!(!root.join("c1/cgroup.subtree_control").exists());
        assert_eq!(
            Manager::paths(&m),
            BTreeMap::from([(String::new(), root.join("c1"))])
        );
    }

    #[test]
    fn apply_writes_v2_files() {
        let (t, h) = host();
        let m = h.v2_manager(Some("/c1"), "c1").unwrap();
        m.create().unwrap();
        let d = t.path().join("cg/c1");
        fs::write(d.join("memory.swap.max"), "max").unwrap();
        fs::write(d.join("cpu.max"), "30000 100000\n").unwrap();
        fs::write(d.join("io.weight"), "default 100\n").unwrap();
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(64i64 << 20)
                    .swap(96i64 << 20)
                    .reservation(16i64 << 20)
                    .build()
                    .unwrap(),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(1024u64)
                    .period(50_000u64)
                    .cpus("0-1")
                    .mems("0")
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(-1i64).build().unwrap())
            .block_io(
                LinuxBlockIoBuilder::default()
                    .weight(500u16)
                    .weight_device(vec![LinuxWeightDeviceBuilder::default()
                        .major(8i64)
                        .minor(0i64)
                        .weight(10u16)
                        .build()
                        .unwrap()])
                    .throttle_write_iops_device(vec![LinuxThrottleDeviceBuilder::default()
                        .major(8i64)
                        .minor(0i64)
                        .rate(100u64)
                        .build()
                        .unwrap()])
                    .build()
                    .unwrap(),
            )
            .hugepage_limits(vec![LinuxHugepageLimitBuilder::default()
                .page_size("2MB")
                .limit(4i64 << 21)
                .build()
                .unwrap()])
            .rdma(HashMap::from([(
                "mlx5_0".to_string(),
                LinuxRdmaBuilder::default()
                    .hca_handles(3u32)
                    .build()
                    .unwrap(),
            )]))
            .devices(vec![LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .build()
                .unwrap()])
            .unified(HashMap::from([
                ("memory.high".to_string(), "50M".to_string()),
                ("pids.max".to_string(), "7".to_string()),
            ]))
            .build()
            .unwrap();
        m.apply(&r).unwrap();
        assert_eq!(read(&d.join("memory.max")), (64 << 20).to_string());
        assert_eq!(read(&d.join("memory.swap.max")), (32 << 20).to_string());
        assert_eq!(read(&d.join("memory.low")), (16 << 20).to_string());
        assert_eq!(read(&d.join("cpu.weight")), "39");
        // Only a period: the quota there was is kept.
        assert_eq!(read(&d.join("cpu.max")), "30000 50000");
        assert_eq!(read(&d.join("cpuset.cpus")), "0-1");
        assert_eq!(read(&d.join("cpuset.mems")), "0");
        // unified comes last and wins.
        assert_eq!(read(&d.join("pids.max")), "7");
        assert_eq!(read(&d.join("memory.high")), "50M");
        // A plain file keeps the last of several io.weight lines.
        assert_eq!(read(&d.join("io.weight")), "8:0 1");
        assert_eq!(read(&d.join("io.max")), "8:0 wiops=100");
        assert_eq!(read(&d.join("hugetlb.2MB.max")), (4 << 21).to_string());
        assert_eq!(
            read(&d.join("rdma.max")),
            "mlx5_0 hca_handle=3 hca_object=max"
        );
        // Device rules become an eBPF program (not attached in a tree that is no cgroupfs),
        // never v1 files.
        assert!(!d.join("devices.deny").exists());
    }

    #[test]
    fn quota_and_bfq_forms() {
        let (t, h) = host();
        let m = h.v2_manager(Some("/c1"), "c1").unwrap();
        m.create().unwrap();
        let d = t.path().join("cg/c1");
        fs::write(d.join("io.bfq.weight"), "default 100").unwrap();
        let r = LinuxResourcesBuilder::default()
            .cpu(LinuxCpuBuilder::default().quota(-1i64).build().unwrap())
            .block_io(
                LinuxBlockIoBuilder::default()
                    .weight(300u16)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        m.apply(&r).unwrap();
        assert_eq!(read(&d.join("cpu.max")), "max");
        assert_eq!(read(&d.join("io.bfq.weight")), "300");
        let r = LinuxResourcesBuilder::default()
            .cpu(
                LinuxCpuBuilder::default()
                    .quota(25_000i64)
                    .period(100_000u64)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        m.apply(&r).unwrap();
        assert_eq!(read(&d.join("cpu.max")), "25000 100000");
    }

    #[test]
    fn weights_without_a_weight_file_are_skipped_and_zero_is_not_set() {
        let (t, h) = host();
        let m = h.v2_manager(Some("/c1"), "c1").unwrap();
        m.create().unwrap();
        let d = t.path().join("cg/c1");
        let dev = |weight: u16| {
            LinuxWeightDeviceBuilder::default()
                .major(8i64)
                .minor(0i64)
                .weight(weight)
                .build()
                .unwrap()
        };
        let throttle = LinuxThrottleDeviceBuilder::default()
            .major(8i64)
            .minor(0i64)
            .rate(100u64)
            .build()
            .unwrap();
        // Neither io.bfq.weight nor io.weight: the weights go, the throttle stays.
        let r = LinuxResourcesBuilder::default()
            .block_io(
                LinuxBlockIoBuilder::default()
                    .weight(500u16)
                    .weight_device(vec![dev(10)])
                    .throttle_write_iops_device(vec![throttle])
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        m.apply(&r).unwrap();
        assert!(!d.join("io.weight").exists());
        assert!(!d.join("io.bfq.weight").exists());
        assert_eq!(read(&d.join("io.max")), "8:0 wiops=100");
        // A weight of 0 (Docker's default) writes nothing even where io.weight exists.
        fs::write(d.join("io.weight"), "default 100").unwrap();
        let r = LinuxResourcesBuilder::default()
            .block_io(
                LinuxBlockIoBuilder::default()
                    .weight(0u16)
                    .leaf_weight(0u16)
                    .weight_device(vec![dev(0)])
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        m.apply(&r).unwrap();
        assert_eq!(read(&d.join("io.weight")), "default 100");
    }

    #[test]
    fn apply_names_a_controller_that_is_not_enabled() {
        let (t, h) = host();
        let m = h.v2_manager(Some("/c1"), "c1").unwrap();
        m.create().unwrap();
        let d = t.path().join("cg/c1");
        // What the kernel would show on this host: nothing but hugetlb.
        fs::write(d.join("cgroup.controllers"), "hugetlb\n").unwrap();
        let r = LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(10i64).build().unwrap())
            .build()
            .unwrap();
        let e = m.apply(&r).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("pids controller is not enabled"), "{msg}");
        assert!(msg.contains("pids.max"), "{msg}");
        assert!(!d.join("pids.max").exists());
        // Realtime and net_cls have no v2 form.
        let r = LinuxResourcesBuilder::default()
            .cpu(
                LinuxCpuBuilder::default()
                    .realtime_runtime(5i64)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        assert!(matches!(m.apply(&r), Err(Error::Unsupported { .. })));
        let r = LinuxResourcesBuilder::default()
            .unified(HashMap::from([("../x".to_string(), "1".to_string())]))
            .build()
            .unwrap();
        assert!(matches!(m.apply(&r), Err(Error::InvalidResource { .. })));
    }

    #[test]
    fn freeze_state_and_stats_from_files() {
        let (t, h) = host();
        let m = h.v2_manager(Some("/c1"), "c1").unwrap();
        m.create().unwrap();
        let d = t.path().join("cg/c1");
        fs::write(d.join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
        m.freeze().unwrap();
        assert_eq!(read(&d.join("cgroup.freeze")), "1");
        assert!(m.is_frozen().unwrap());
        fs::write(d.join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        assert_eq!(m.freezer_state().unwrap(), FreezerState::Freezing);
        m.thaw().unwrap();
        assert_eq!(m.freezer_state().unwrap(), FreezerState::Thawed);

        let wr = |n: &str, s: &str| fs::write(d.join(n), s).unwrap();
        wr("cpu.stat", "usage_usec 10\nuser_usec 6\nsystem_usec 4\nnr_periods 3\nnr_throttled 1\nthrottled_usec 2\n");
        wr("memory.current", "1000\n");
        wr("memory.max", "max\n");
        wr("memory.swap.current", "24\n");
        wr("memory.swap.max", "0\n");
        wr("memory.events", "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n");
        wr("memory.stat", "anon 10\nfile 20\n");
        wr("pids.current", "3\n");
        wr("pids.max", "64\n");
        wr(
            "io.stat",
            "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0\n",
        );
        wr("hugetlb.2MB.max", "max\n");
        wr("hugetlb.2MB.current", "0\n");
        wr("hugetlb.2MB.rsvd.max", "max\n");
        let s = m.stats().unwrap();
        assert_eq!(s.cpu.usage.total, 10_000);
        assert_eq!(s.cpu.usage.kernel, 4_000);
        assert_eq!(s.cpu.throttling.throttled_time, 2_000);
        assert_eq!(s.memory.usage.usage, 1000);
        assert_eq!(s.memory.usage.limit, u64::MAX);
        assert_eq!(s.memory.usage.failcnt, 5);
        assert_eq!(s.memory.swap.usage, 1024);
        assert_eq!(s.memory.cache, 20);
        assert_eq!(s.memory.oom_kills, 1);
        assert_eq!(s.pids.current, 3);
        assert_eq!(s.pids.limit, 64);
        assert_eq!(s.blkio.total_bytes("Write"), 2);
        assert_eq!(s.hugetlb.keys().collect::<Vec<_>>(), ["2MB"]);
    }

    #[test]
    fn round_trip_and_destroy() {
        let (t, h) = host();
        let m = h.v2_manager(Some("/a/c1"), "c1").unwrap();
        m.create().unwrap();
        let again = crate::cgroups::from_paths(&Manager::paths(&m)).unwrap();
        assert_eq!(again.version(), CgroupVersion::V2);
        fs::create_dir(t.path().join("cg/a/c1/nested")).unwrap();
        fs::write(t.path().join("cg/a/c1/nested/cgroup.procs"), "").unwrap();
        assert!(again.procs().unwrap().is_empty());
        again.destroy().unwrap();
        assert!(!t.path().join("cg/a/c1").exists());
        assert!(t.path().join("cg/a").exists());
        again.destroy().unwrap();
        assert!(again.stats().is_err());
        // The root itself is never removed.
        let root =
            crate::cgroups::from_paths(&BTreeMap::from([(String::new(), t.path().join("cg"))]))
                .unwrap();
        assert!(matches!(root.destroy(), Err(Error::Refused { .. })));
    }
}
