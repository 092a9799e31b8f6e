//! `events`: a container's usage as runc prints it, once (`--stats`) or every `--interval`,
//! and an `oom` event whenever the OOM killer strikes in its cgroup, until the container
//! stops. One JSON object per line, in the shape go-runc (containerd's client) decodes:
//! `{"type":"stats","id":ID,"data":{cpu, memory, pids, blkio, hugetlb,
//! network_interfaces}}` and `{"type":"oom","id":ID}`.
//!
//! OOM kills are noticed by polling the cgroup's counter (memory.events on v2, oom_control
//! on v1) every 100 ms between stats lines, which bounds how late an `oom` line comes.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{json, Value};
use warden_runtime::cgroups::Stats;
use warden_runtime::{Container, Status};

const OOM_POLL: Duration = Duration::from_millis(100);

/// runc's `types.Stats` JSON of `s`, with the network counters of the init's namespace.
pub fn stats_json(s: &Stats, init_pid: i32) -> Value {
    let entry = |e: &warden_runtime::cgroups::MemoryEntry| json!({"limit": e.limit, "usage": e.usage, "max": e.max_usage, "failcnt": e.failcnt});
    let blkio = |v: &[warden_runtime::cgroups::BlkioEntry]| -> Value {
        v.iter()
            .map(|e| json!({"major": e.major, "minor": e.minor, "op": e.op, "value": e.value}))
            .collect()
    };
    let hugetlb: serde_json::Map<String, Value> = s
        .hugetlb
        .iter()
        .map(|(size, h)| {
            (
                size.clone(),
                json!({"usage": h.usage, "max": h.max_usage, "failcnt": h.failcnt}),
            )
        })
        .collect();
    json!({
        "cpu": {
            "usage": {
                "total": s.cpu.usage.total,
                "percpu": s.cpu.usage.per_cpu,
                "kernel": s.cpu.usage.kernel,
                "user": s.cpu.usage.user,
            },
            "throttling": {
                "periods": s.cpu.throttling.periods,
                "throttled_periods": s.cpu.throttling.throttled_periods,
                "throttled_time": s.cpu.throttling.throttled_time,
            },
        },
        "memory": {
            "cache": s.memory.cache,
            "usage": entry(&s.memory.usage),
            "swap": entry(&s.memory.swap),
            "kernel": entry(&s.memory.kernel),
            "raw": s.memory.stats,
        },
        "pids": {"current": s.pids.current, "limit": s.pids.limit},
        "blkio": {
            "ioServiceBytesRecursive": blkio(&s.blkio.io_service_bytes_recursive),
            "ioServicedRecursive": blkio(&s.blkio.io_serviced_recursive),
        },
        "hugetlb": hugetlb,
        "network_interfaces": network_interfaces(init_pid),
    })
}

/// The counters of every interface but `lo` in the init's network namespace
/// (/proc/<pid>/net/dev).
fn network_interfaces(pid: i32) -> Value {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    parse_net_dev(&text)
}

fn parse_net_dev(text: &str) -> Value {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            if name == "lo" {
                return None;
            }
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|n| n.parse().unwrap_or(0))
                .collect();
            if f.len() < 12 {
                return None;
            }
            Some(json!({
                "name": name,
                "rx_bytes": f[0], "rx_packets": f[1], "rx_errors": f[2], "rx_dropped": f[3],
                "tx_bytes": f[8], "tx_packets": f[9], "tx_errors": f[10], "tx_dropped": f[11],
            }))
        })
        .collect()
}

fn emit(out: &mut impl Write, event: &Value) -> Result<()> {
    writeln!(out, "{event}")?;
    out.flush()?;
    Ok(())
}

/// Runs `events` for `c`: one stats line with `stats_once`, else the stream.
pub fn run(c: &Container, stats_once: bool, interval: Duration) -> Result<()> {
    let id = c.state.id.clone();
    let mut out = std::io::stdout().lock();
    let stats_event =
        |s: &Stats| json!({"type": "stats", "id": id, "data": stats_json(s, c.state.pid)});
    if stats_once {
        return emit(&mut out, &stats_event(&c.stats()?));
    }
    if interval.is_zero() {
        anyhow::bail!("--interval must be more than 0");
    }
    let mut ooms = c.stats()?.memory.oom_kills;
    let mut next = Instant::now();
    loop {
        if c.status() == Status::Stopped {
            return Ok(());
        }
        let Ok(s) = c.stats() else {
            // Gone between the check and the read: the container stopped.
            return Ok(());
        };
        if s.memory.oom_kills > ooms {
            ooms = s.memory.oom_kills;
            emit(&mut out, &json!({"type": "oom", "id": id}))?;
        }
        if Instant::now() >= next {
            emit(&mut out, &stats_event(&s))?;
            next += interval;
        }
        std::thread::sleep(OOM_POLL.min(next.saturating_duration_since(Instant::now())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_counters_without_lo() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0\n  eth0:    1500      10    1    2    0     0          0         0     3000      20    3    4    0     0       0          0\n";
        let v = parse_net_dev(text);
        assert_eq!(
            v,
            json!([{"name": "eth0", "rx_bytes": 1500, "rx_packets": 10, "rx_errors": 1,
                    "rx_dropped": 2, "tx_bytes": 3000, "tx_packets": 20, "tx_errors": 3,
                    "tx_dropped": 4}])
        );
    }
}
