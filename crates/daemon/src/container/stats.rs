//! info's memory and CPU figures (SPEC 3.9) from the container's cgroup, in the original's
//! shape (cgroup v1's names and units) on both hierarchies. On v2 the same meanings come from
//! other files: memory.stat's `file`/`anon`/`file_mapped` for v1's `cache`/`rss`/
//! `mapped_file`, memory.max and memory.swap.max for the hierarchical limits, cpu.stat's
//! microseconds for cpuacct's nanoseconds and clock ticks.

use std::path::Path;

use warden_protocol::{CpuStat, MemoryStat};

use super::runtime::cgroup_dir;

/// The clock ticks of v1's cpuacct.stat (USER_HZ, 100 on every Linux architecture we run on).
const USER_HZ: u64 = 100;

/// The memory figures, or None where the container has no memory cgroup.
pub fn memory(root: &Path, id: &str) -> Option<MemoryStat> {
    if let Some(dir) = cgroup_dir(root, id, "memory") {
        return Some(v1_memory(&read(&dir, "memory.stat")));
    }
    let dir = cgroup_dir(root, id, "")?;
    Some(v2_memory(
        &read(&dir, "memory.stat"),
        &read(&dir, "memory.max"),
        &read(&dir, "memory.swap.max"),
        &read(&dir, "memory.swap.current"),
    ))
}

/// The CPU figures, or None where the container has no cpuacct (v1) or cgroup2 dir.
pub fn cpu(root: &Path, id: &str) -> Option<CpuStat> {
    if let Some(dir) = cgroup_dir(root, id, "cpuacct") {
        return Some(v1_cpu(
            &read(&dir, "cpuacct.usage"),
            &read(&dir, "cpuacct.stat"),
        ));
    }
    let dir = cgroup_dir(root, id, "")?;
    Some(v2_cpu(&read(&dir, "cpu.stat")))
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_default()
}

/// `key value` lines, values that parse.
fn pairs(text: &str) -> impl Iterator<Item = (&str, u64)> {
    text.lines().filter_map(|l| {
        let mut f = l.split_whitespace();
        Some((f.next()?, f.next()?.parse().ok()?))
    })
}

/// v1's memory.stat (unknown keys ignored).
fn v1_memory(stat: &str) -> MemoryStat {
    let mut m = MemoryStat::default();
    for (k, v) in pairs(stat) {
        let slot = match k {
            "cache" => &mut m.cache,
            "rss" => &mut m.rss,
            "mapped_file" => &mut m.mapped_file,
            "pgpgin" => &mut m.pgpgin,
            "pgpgout" => &mut m.pgpgout,
            "swap" => &mut m.swap,
            "pgfault" => &mut m.pgfault,
            "pgmajfault" => &mut m.pgmajfault,
            "inactive_anon" => &mut m.inactive_anon,
            "active_anon" => &mut m.active_anon,
            "inactive_file" => &mut m.inactive_file,
            "active_file" => &mut m.active_file,
            "unevictable" => &mut m.unevictable,
            "hierarchical_memory_limit" => &mut m.hierarchical_memory_limit,
            "hierarchical_memsw_limit" => &mut m.hierarchical_memsw_limit,
            "total_cache" => &mut m.total_cache,
            "total_rss" => &mut m.total_rss,
            "total_mapped_file" => &mut m.total_mapped_file,
            "total_pgpgin" => &mut m.total_pgpgin,
            "total_pgpgout" => &mut m.total_pgpgout,
            "total_swap" => &mut m.total_swap,
            "total_pgfault" => &mut m.total_pgfault,
            "total_pgmajfault" => &mut m.total_pgmajfault,
            "total_inactive_anon" => &mut m.total_inactive_anon,
            "total_active_anon" => &mut m.total_active_anon,
            "total_inactive_file" => &mut m.total_inactive_file,
            "total_active_file" => &mut m.total_active_file,
            "total_unevictable" => &mut m.total_unevictable,
            _ => continue,
        };
        *slot = Some(v);
    }
    m
}

/// A limit file of v2: `max` is no limit, which v1 spells as its own huge number; we say
/// u64::MAX, as the runtime's stats do.
fn v2_limit(text: &str) -> Option<u64> {
    match text.trim() {
        "" => None,
        "max" => Some(u64::MAX),
        v => v.parse().ok(),
    }
}

/// v2's files in v1's names. v2 counts are hierarchical already, so `total_*` are the same
/// figures; pgpgin/pgpgout have no v2 counterpart and stay unset. The memsw limit is memory
/// plus swap, as v1 counts it.
fn v2_memory(stat: &str, max: &str, swap_max: &str, swap_current: &str) -> MemoryStat {
    let mut m = MemoryStat::default();
    for (k, v) in pairs(stat) {
        let (slot, total) = match k {
            "file" => (&mut m.cache, &mut m.total_cache),
            "anon" => (&mut m.rss, &mut m.total_rss),
            "file_mapped" => (&mut m.mapped_file, &mut m.total_mapped_file),
            "pgfault" => (&mut m.pgfault, &mut m.total_pgfault),
            "pgmajfault" => (&mut m.pgmajfault, &mut m.total_pgmajfault),
            "inactive_anon" => (&mut m.inactive_anon, &mut m.total_inactive_anon),
            "active_anon" => (&mut m.active_anon, &mut m.total_active_anon),
            "inactive_file" => (&mut m.inactive_file, &mut m.total_inactive_file),
            "active_file" => (&mut m.active_file, &mut m.total_active_file),
            "unevictable" => (&mut m.unevictable, &mut m.total_unevictable),
            _ => continue,
        };
        *slot = Some(v);
        *total = Some(v);
    }
    let swap = swap_current.trim().parse().ok();
    m.swap = swap;
    m.total_swap = swap;
    let limit = v2_limit(max);
    m.hierarchical_memory_limit = limit;
    m.hierarchical_memsw_limit = match (limit, v2_limit(swap_max)) {
        (Some(l), Some(s)) => Some(l.saturating_add(s)),
        _ => None,
    };
    m
}

/// v1's cpuacct: usage in nanoseconds, user and system in clock ticks.
fn v1_cpu(usage: &str, stat: &str) -> CpuStat {
    let field = |name: &str| pairs(stat).find_map(|(k, v)| (k == name).then_some(v));
    CpuStat {
        usage: usage.trim().parse().ok(),
        user: field("user"),
        system: field("system"),
    }
}

/// v2's cpu.stat counts microseconds: into v1's units.
fn v2_cpu(stat: &str) -> CpuStat {
    let field = |name: &str| pairs(stat).find_map(|(k, v)| (k == name).then_some(v));
    let ticks = |usec: u64| usec / (1_000_000 / USER_HZ);
    CpuStat {
        usage: field("usage_usec").map(|u| u.saturating_mul(1000)),
        user: field("user_usec").map(ticks),
        system: field("system_usec").map(ticks),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_files_are_read_as_they_are() {
        let m = v1_memory("cache 4096\nrss 8192\nhierarchical_memory_limit 9223372036854771712\nbogus x\nnew_key 1\n");
        assert_eq!((m.cache, m.rss), (Some(4096), Some(8192)));
        assert_eq!(m.hierarchical_memory_limit, Some(9223372036854771712));
        let c = v1_cpu("123456789\n", "user 12\nsystem 34\n");
        assert_eq!(
            (c.usage, c.user, c.system),
            (Some(123456789), Some(12), Some(34))
        );
    }

    #[test]
    fn v2_files_get_v1_names_and_units() {
        let m = v2_memory(
            "anon 8192\nfile 4096\nfile_mapped 1024\npgfault 7\nactive_file 5\n",
            "67108864\n",
            "0\n",
            "512\n",
        );
        assert_eq!((m.rss, m.total_rss), (Some(8192), Some(8192)));
        assert_eq!((m.cache, m.mapped_file), (Some(4096), Some(1024)));
        assert_eq!((m.pgfault, m.total_pgfault), (Some(7), Some(7)));
        assert_eq!((m.swap, m.pgpgin), (Some(512), None));
        assert_eq!(m.hierarchical_memory_limit, Some(64 << 20));
        assert_eq!(
            m.hierarchical_memsw_limit,
            Some(64 << 20),
            "memory plus swap"
        );
        let unlimited = v2_memory("", "max\n", "max\n", "");
        assert_eq!(unlimited.hierarchical_memory_limit, Some(u64::MAX));
        assert_eq!(unlimited.hierarchical_memsw_limit, Some(u64::MAX));
        let c = v2_cpu("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n");
        assert_eq!(
            (c.usage, c.user, c.system),
            (Some(2_500_000_000), Some(200), Some(50))
        );
    }
}
