//! Usage counters, the same shape on v1 and v2 (close to what `runc events --stats` prints).
//! Times are nanoseconds, sizes bytes. An unlimited limit is `u64::MAX` on v2 and the kernel's
//! own huge number (9223372036854771712 on 4 KiB pages) on v1.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub cpu: CpuStats,
    pub memory: MemoryStats,
    pub pids: PidsStats,
    pub blkio: BlkioStats,
    /// By page size as the kernel names it (`2MB`, `1GB`).
    pub hugetlb: BTreeMap<String, HugetlbStats>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuStats {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuUsage {
    pub total: u64,
    /// Per CPU, v1 only (cgroup2 has no per-CPU counter).
    pub per_cpu: Vec<u64>,
    pub user: u64,
    pub kernel: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Throttling {
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_time: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryEntry {
    pub usage: u64,
    /// Peak usage (v1 max_usage_in_bytes, v2 memory.peak where the kernel has it).
    pub max_usage: u64,
    pub limit: u64,
    /// v1: times the limit was hit (failcnt); v2: the `max` count of memory.events.
    pub failcnt: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryStats {
    pub usage: MemoryEntry,
    /// Memory plus swap, as v1's memsw counts it (v2 adds memory.swap.* to memory.*, as runc
    /// does, so the meaning is the same on both).
    pub swap: MemoryEntry,
    /// v1 kernel memory (kmem); zero on v2.
    pub kernel: MemoryEntry,
    /// Page cache (v1 `cache`, v2 `file` of memory.stat).
    pub cache: u64,
    /// Tasks killed by the OOM killer in this cgroup.
    pub oom_kills: u64,
    /// memory.stat as the kernel gives it (keys differ between v1 and v2).
    pub stats: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidsStats {
    pub current: u64,
    /// 0 when unlimited.
    pub limit: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlkioStats {
    /// Bytes per device and operation (`Read`, `Write`, `Discard` on v2...).
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    /// Operations per device and operation.
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

impl BlkioStats {
    /// Bytes of operation `op` over every device.
    pub fn total_bytes(&self, op: &str) -> u64 {
        self.io_service_bytes_recursive
            .iter()
            .filter(|e| e.op == op)
            .map(|e| e.value)
            .sum()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HugetlbStats {
    pub usage: u64,
    pub max_usage: u64,
    pub failcnt: u64,
}

fn dev(s: &str) -> Option<(u64, u64)> {
    let (ma, mi) = s.split_once(':')?;
    Some((ma.parse().ok()?, mi.parse().ok()?))
}

/// v1 blkio files: `8:0 Read 4096` lines and a `Total` line (skipped).
pub(crate) fn parse_blkio_v1(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() != 3 {
                return None;
            }
            let (major, minor) = dev(f[0])?;
            Some(BlkioEntry {
                major,
                minor,
                op: f[1].to_string(),
                value: f[2].parse().ok()?,
            })
        })
        .collect()
}

/// v2 io.stat: `8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=5 dios=6` lines, split into
/// (bytes, operations) entries named like v1's.
pub(crate) fn parse_io_stat(text: &str) -> (Vec<BlkioEntry>, Vec<BlkioEntry>) {
    let mut bytes = Vec::new();
    let mut ios = Vec::new();
    for l in text.lines() {
        let mut f = l.split_whitespace();
        let Some((major, minor)) = f.next().and_then(dev) else {
            continue;
        };
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(value) = v.parse() else {
                continue;
            };
            let (list, op) = match k {
                "rbytes" => (&mut bytes, "Read"),
                "wbytes" => (&mut bytes, "Write"),
                "dbytes" => (&mut bytes, "Discard"),
                "rios" => (&mut ios, "Read"),
                "wios" => (&mut ios, "Write"),
                "dios" => (&mut ios, "Discard"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.into(),
                value,
            });
        }
    }
    (bytes, ios)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blkio_v1_lines() {
        let e = parse_blkio_v1("254:0 Read 4096\n254:0 Write 8192\n254:0 Sync 1\nTotal 12288\n");
        assert_eq!(e.len(), 3);
        assert_eq!(
            e[0],
            BlkioEntry {
                major: 254,
                minor: 0,
                op: "Read".into(),
                value: 4096
            }
        );
        let s = BlkioStats {
            io_service_bytes_recursive: e,
            ..Default::default()
        };
        assert_eq!(s.total_bytes("Write"), 8192);
    }

    #[test]
    fn io_stat_lines() {
        let (b, o) =
            parse_io_stat("8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n7:1 rbytes=5\n");
        assert_eq!(b.len(), 4);
        assert_eq!(o.len(), 3);
        assert_eq!(b[1].op, "Write");
        assert_eq!(b[1].value, 20);
        assert_eq!((b[3].major, b[3].minor, b[3].value), (7, 1, 5));
    }

    #[test]
    fn stats_serialize() {
        let s = Stats::default();
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["pids"]["current"], 0);
        assert_eq!(serde_json::from_value::<Stats>(v).unwrap(), s);
    }
}
