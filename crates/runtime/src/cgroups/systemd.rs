//! runc's systemd cgroup driver (`--systemd-cgroup`): the container's cgroup is a transient
//! scope that systemd creates over D-Bus, so that systemd knows the unit, accounts for it and
//! does not fight over the cgroup.
//!
//! What happens, as with runc:
//! - `create`: once the init is cloned, `StartTransientUnit("<prefix>-<name>.scope",
//!   "replace")` in the given slice with `PIDs=[init]`, `Delegate=yes`,
//!   `DefaultDependencies=no`, the accounting switches and the resource properties
//!   ([`properties`]); then the job's `JobRemoved` signal is awaited (30 s) and its result must
//!   be `done`. A unit of that name that already exists (a failed leftover) is reset
//!   (`ResetFailedUnit`) and the start tried once more. After that the same limits are written
//!   through cgroupfs, since systemd has no property for some of them (devices, `unified`...).
//! - `update`: `SetUnitProperties(runtime=true)`, then the cgroupfs writes.
//! - `delete`: `StopUnit("replace")` and its job awaited (a unit already gone is fine), then
//!   `ResetFailedUnit`, then the cgroupfs removal of what is left (v1 hierarchies systemd did
//!   not make).
//!
//! The bus: the system bus (`DBUS_SYSTEM_BUS_ADDRESS`, else /run/dbus/system_bus_socket), as
//! go-systemd tries first for runc. runc then falls back, as root, to systemd's private
//! socket /run/systemd/private; warden does not: systemd sends its messages there with the
//! sender `org.freedesktop.systemd1`, a well-known name where D-Bus has a unique one, and zbus
//! (5.19) panics reading such a header. A host without a bus daemon gets a clear error.
//!
//! Where the cgroup is: systemd's root (pid 1's cgroup without its `/init.scope`, from
//! /proc/1/cgroup: the `name=systemd` line on v1, the cgroup2 one on v2) joined with the
//! expanded slice and the unit, in every hierarchy. It is known before the unit exists, so
//! the init gets its paths before it is cloned; after the start the init's /proc/<pid>/cgroup
//! is checked against it.
//!
//! zbus runs threads of its own: nothing here may run before the init is cloned (the clone
//! of a multi-threaded process is not safe), nor before the last `setns`.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::Duration;

use oci_spec::runtime::LinuxResources;
use zbus::blocking::{Connection, MessageIterator};
use zbus::zvariant::{OwnedObjectPath, Value};

use super::{CgroupVersion, Error, Result, SystemdUnit};

const DEST: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
/// How long a start or stop job may take (runc's limit).
const JOB_TIMEOUT: Duration = Duration::from_secs(30);
/// The kernel's default CFS period, which systemd assumes too.
const DEFAULT_PERIOD: u64 = 100_000;

/// A unit property as StartTransientUnit and SetUnitProperties take it (`(sv)`).
pub type Property = (String, Value<'static>);

/// Whether systemd manages this host (sd_booted(3): /run/systemd/system is a directory).
pub fn booted() -> bool {
    std::fs::symlink_metadata("/run/systemd/system")
        .map(|m| m.is_dir())
        .unwrap_or(false)
}

/// systemd's cgroup root, from pid 1's /proc/1/cgroup text: the `name=systemd` line (v1) or
/// the cgroup2 line (v2), without a trailing `/init.scope` (what systemd itself does).
pub fn root_from_proc1(text: &str, version: CgroupVersion) -> Result<String> {
    let lines = super::parse_proc_cgroup(text);
    let line = match version {
        CgroupVersion::V1 => lines
            .iter()
            .find(|l| l.controllers.iter().any(|c| c == "name=systemd")),
        CgroupVersion::V2 => lines.iter().find(|l| l.hierarchy_id == 0),
    };
    let Some(line) = line else {
        return Err(Error::Systemd(format!(
            "/proc/1/cgroup has no {} line: is pid 1 systemd?",
            match version {
                CgroupVersion::V1 => "name=systemd",
                CgroupVersion::V2 => "cgroup2",
            }
        )));
    };
    let p = line.path.strip_suffix("/init.scope").unwrap_or(&line.path);
    Ok(if p.is_empty() { "/".into() } else { p.into() })
}

/// The unit's cgroup path from the root of each hierarchy, on this host (systemd's root from
/// /proc/1/cgroup).
pub fn unit_cgroup(unit: &SystemdUnit, version: CgroupVersion) -> Result<String> {
    let text = std::fs::read_to_string("/proc/1/cgroup").map_err(|e| Error::Read {
        path: "/proc/1/cgroup".into(),
        source: e,
    })?;
    let root = root_from_proc1(&text, version)?;
    Ok(super::path::clean(&format!(
        "{root}/{}",
        unit.cgroup_path()
    )))
}

fn prop(name: &str, v: impl Into<Value<'static>>) -> Property {
    (name.to_string(), v.into())
}

/// runc's cpuset list (`0-3,7`) → systemd's CPU/node mask (`ay`, little-endian: byte 0 holds
/// CPUs 0-7, bit n%8).
pub fn range_to_bits(list: &str) -> std::result::Result<Vec<u8>, String> {
    let mut bytes: Vec<u8> = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let parse = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| format!("bad number {s:?} in {list:?}"))
        };
        let (a, b) = (parse(a)?, parse(b)?);
        if a > b {
            return Err(format!("bad range {part:?} in {list:?}"));
        }
        if b >= 8192 {
            return Err(format!("{b} is beyond any CPU or node number in {list:?}"));
        }
        if bytes.len() <= b / 8 {
            bytes.resize(b / 8 + 1, 0);
        }
        for i in a..=b {
            bytes[i / 8] |= 1 << (i % 8);
        }
    }
    if bytes.is_empty() {
        return Err(format!("empty CPU/node list {list:?}"));
    }
    Ok(bytes)
}

fn invalid(field: &str, reason: String) -> Error {
    Error::InvalidResource {
        field: field.into(),
        reason,
    }
}

/// The unit properties for `resources` (runc's set: memory, swap, CPU weight or shares,
/// quota and period, tasks, cpuset, block I/O weight, a few `unified` keys), and the
/// resources to write through cgroupfs: the same, but a CPU quota rounded up to what systemd
/// keeps (whole percents of a CPU), so both agree.
pub fn properties(
    resources: &LinuxResources,
    version: CgroupVersion,
) -> Result<(Vec<Property>, LinuxResources)> {
    let mut props = Vec::new();
    let mut out = resources.clone();
    let v2 = version == CgroupVersion::V2;
    if let Some(m) = resources.memory() {
        let limit = m.limit().filter(|&l| l != 0);
        if let Some(l) = limit {
            let v = if l < 0 { u64::MAX } else { l as u64 };
            props.push(prop(if v2 { "MemoryMax" } else { "MemoryLimit" }, v));
        }
        if v2 {
            if let Some(r) = m.reservation().filter(|&r| r > 0) {
                props.push(prop("MemoryLow", r as u64));
            }
            match super::v2::swap_to_v2(m.limit(), m.swap())? {
                Some(s) if s == "max" => props.push(prop("MemorySwapMax", u64::MAX)),
                Some(s) => {
                    let n: u64 = s.parse().map_err(|_| {
                        invalid("linux.resources.memory.swap", format!("bad value {s}"))
                    })?;
                    props.push(prop("MemorySwapMax", n));
                }
                None => {}
            }
        }
    }
    if let Some(cpu) = resources.cpu() {
        if let Some(s) = cpu.shares().filter(|&s| s != 0) {
            if v2 {
                props.push(prop("CPUWeight", super::shares_to_weight(s)));
            } else {
                props.push(prop("CPUShares", s));
            }
        }
        let period = cpu.period().filter(|&p| p != 0);
        let quota = cpu.quota().filter(|&q| q != 0);
        if period.is_some() || quota.is_some() {
            if let Some(p) = period {
                props.push(prop("CPUQuotaPeriodUSec", p));
            }
            let per_sec = match quota {
                Some(q) if q > 0 => {
                    let p = period.unwrap_or(DEFAULT_PERIOD);
                    let mut per_sec = (q as u64).saturating_mul(1_000_000) / p;
                    let rounded = per_sec.div_ceil(10_000) * 10_000;
                    if rounded != per_sec {
                        per_sec = rounded;
                        let mut c = cpu.clone();
                        c.set_quota(Some((per_sec * p / 1_000_000) as i64));
                        out.set_cpu(Some(c));
                    }
                    per_sec
                }
                _ => u64::MAX,
            };
            props.push(prop("CPUQuotaPerSecUSec", per_sec));
        }
        for (list, name, field) in [
            (cpu.cpus(), "AllowedCPUs", "linux.resources.cpu.cpus"),
            (cpu.mems(), "AllowedMemoryNodes", "linux.resources.cpu.mems"),
        ] {
            if let Some(l) = list.as_deref().filter(|l| !l.trim().is_empty()) {
                let bits = range_to_bits(l).map_err(|r| invalid(field, r))?;
                props.push(prop(name, bits));
            }
        }
    }
    if let Some(p) = resources.pids() {
        let limit = p.limit();
        let v = match limit {
            l if l < 0 => u64::MAX,
            0 => 1, // systemd refuses TasksMax=0
            l => l as u64,
        };
        props.push(prop("TasksMax", v));
    }
    if let Some(w) = resources.block_io().as_ref().and_then(|b| b.weight()) {
        if v2 {
            props.push(prop("IOWeight", super::blkio_weight_to_io_weight(w)));
        } else {
            props.push(prop("BlockIOWeight", w as u64));
        }
    }
    if let (true, Some(u)) = (v2, resources.unified()) {
        unified_properties(u, &mut props)?;
    }
    Ok((props, out))
}

/// The `unified` keys systemd has a property for; the others are only written to cgroupfs.
fn unified_properties(
    u: &std::collections::HashMap<String, String>,
    props: &mut Vec<Property>,
) -> Result<()> {
    let sorted: BTreeMap<&String, &String> = u.iter().collect();
    for (k, v) in sorted {
        let v = v.trim();
        let field = format!("linux.resources.unified.{k}");
        let num = |v: &str| -> Result<u64> {
            if v == "max" {
                return Ok(u64::MAX);
            }
            v.parse()
                .map_err(|_| invalid(&field, format!("{v:?} is not a number or max")))
        };
        let name = match k.as_str() {
            "memory.high" => "MemoryHigh",
            "memory.low" => "MemoryLow",
            "memory.min" => "MemoryMin",
            "memory.max" => "MemoryMax",
            "memory.swap.max" => "MemorySwapMax",
            "pids.max" => {
                props.push(prop("TasksMax", num(v)?.max(1)));
                continue;
            }
            "cpu.weight" => {
                props.push(prop("CPUWeight", num(v)?));
                continue;
            }
            "cpuset.cpus" | "cpuset.mems" => {
                let bits = range_to_bits(v).map_err(|r| invalid(&field, r))?;
                let name = if k == "cpuset.cpus" {
                    "AllowedCPUs"
                } else {
                    "AllowedMemoryNodes"
                };
                props.push(prop(name, bits));
                continue;
            }
            _ => continue,
        };
        props.push(prop(name, num(v)?));
    }
    Ok(())
}

/// The properties every container scope gets besides its limits (runc's).
fn base_properties(unit: &SystemdUnit, id: &str, pid: i32) -> Vec<Property> {
    let mut p = vec![prop("Description", format!("warden container {id}"))];
    if unit.is_slice() {
        p.push(prop("Wants", vec![unit.slice.clone()]));
    } else {
        p.push(prop("Slice", unit.slice.clone()));
        p.push(prop("Delegate", true));
        p.push(prop("PIDs", vec![pid as u32]));
    }
    for a in [
        "MemoryAccounting",
        "CPUAccounting",
        "IOAccounting",
        "TasksAccounting",
    ] {
        p.push(prop(a, true));
    }
    p.push(prop("DefaultDependencies", false));
    p
}

/// A connection to systemd's manager.
pub struct Bus {
    conn: Connection,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus").finish_non_exhaustive()
    }
}

fn dbus_err(what: &str, e: zbus::Error) -> Error {
    Error::Systemd(format!("{what}: {e}"))
}

fn error_name(e: &zbus::Error) -> Option<&str> {
    match e {
        zbus::Error::MethodError(name, _, _) => Some(name.as_str()),
        zbus::Error::FDO(fdo) => match &**fdo {
            zbus::fdo::Error::ZBus(inner) => error_name(inner),
            _ => None,
        },
        _ => None,
    }
}

impl Bus {
    /// The system bus (`DBUS_SYSTEM_BUS_ADDRESS`, else /run/dbus/system_bus_socket).
    pub fn connect() -> Result<Bus> {
        Connection::system().map(|conn| Bus { conn }).map_err(|e| {
            Error::Systemd(format!(
                "cannot reach systemd over the system bus (DBUS_SYSTEM_BUS_ADDRESS, else \
                 /run/dbus/system_bus_socket): {e}"
            ))
        })
    }

    fn call<B>(&self, method: &str, body: &B) -> zbus::Result<zbus::message::Message>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        self.conn
            .call_method(Some(DEST), PATH, Some(MANAGER), method, body)
    }

    /// Every JobRemoved signal from now on, read on a thread of its own: `(job, unit,
    /// result)`.
    fn job_removals(&self) -> Result<mpsc::Receiver<(OwnedObjectPath, String, String)>> {
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .interface(MANAGER)
            .and_then(|b| b.member("JobRemoved"))
            .map_err(|e| dbus_err("match JobRemoved", e))?
            .build();
        let it = MessageIterator::for_match_rule(rule, &self.conn, Some(64))
            .map_err(|e| dbus_err("subscribe to JobRemoved", e))?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("systemd-jobs".into())
            .spawn(move || {
                for msg in it {
                    let Ok(msg) = msg else { continue };
                    let body = msg.body();
                    if let Ok((_, job, unit, result)) =
                        body.deserialize::<(u32, OwnedObjectPath, String, String)>()
                    {
                        if tx.send((job, unit, result)).is_err() {
                            return;
                        }
                    }
                }
            })
            .map_err(|e| Error::Systemd(format!("spawn the JobRemoved reader: {e}")))?;
        Ok(rx)
    }

    fn wait_job(
        rx: &mpsc::Receiver<(OwnedObjectPath, String, String)>,
        job: &OwnedObjectPath,
    ) -> Result<String> {
        let deadline = std::time::Instant::now() + JOB_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok((j, _, result)) if &j == job => return Ok(result),
                Ok(_) => {}
                Err(_) => {
                    return Err(Error::Systemd(format!(
                        "job {} did not finish within {JOB_TIMEOUT:?}",
                        job.as_str()
                    )))
                }
            }
        }
    }

    /// Starts the container's transient unit with `pid` in it and waits for the job.
    pub fn start(
        &self,
        unit: &SystemdUnit,
        id: &str,
        pid: i32,
        limits: Vec<Property>,
    ) -> Result<()> {
        let mut props = base_properties(unit, id, pid);
        props.extend(limits);
        let rx = self.job_removals()?;
        let aux: Vec<(String, Vec<Property>)> = Vec::new();
        let mut retried = false;
        let job = loop {
            match self.call("StartTransientUnit", &(&unit.unit, "replace", &props, &aux)) {
                Ok(reply) => {
                    break reply
                        .body()
                        .deserialize::<OwnedObjectPath>()
                        .map_err(|e| dbus_err("StartTransientUnit reply", e))?
                }
                Err(e)
                    if !retried
                        && error_name(&e) == Some("org.freedesktop.systemd1.UnitExists") =>
                {
                    // Perhaps a failed leftover of the same name: let systemd drop it, once.
                    tracing::debug!("unit {} exists; resetting it and trying again", unit.unit);
                    let _ = self.reset_failed(&unit.unit);
                    retried = true;
                }
                Err(e) => {
                    let what = if error_name(&e) == Some("org.freedesktop.systemd1.UnitExists") {
                        format!("start unit {} (it exists and is in use)", unit.unit)
                    } else {
                        format!("start unit {} in {}", unit.unit, unit.slice)
                    };
                    return Err(dbus_err(&what, e));
                }
            }
        };
        let result = Self::wait_job(&rx, &job).inspect_err(|_| {
            let _ = self.reset_failed(&unit.unit);
        })?;
        if result != "done" {
            let _ = self.reset_failed(&unit.unit);
            return Err(Error::Systemd(format!(
                "start unit {}: the job ended {result:?}, not \"done\"",
                unit.unit
            )));
        }
        Ok(())
    }

    /// Changes a running unit's properties (runtime only, as runc does).
    pub fn set_properties(&self, unit: &str, props: &[Property]) -> Result<()> {
        if props.is_empty() {
            return Ok(());
        }
        self.call("SetUnitProperties", &(unit, true, props))
            .map(drop)
            .map_err(|e| dbus_err(&format!("set properties of unit {unit}"), e))
    }

    /// Stops a unit and waits for the job; a unit that is gone already is fine. Then resets
    /// it, in case it failed.
    pub fn stop(&self, unit: &str) -> Result<()> {
        let rx = self.job_removals()?;
        match self.call("StopUnit", &(unit, "replace")) {
            Ok(reply) => {
                let job: OwnedObjectPath = reply
                    .body()
                    .deserialize()
                    .map_err(|e| dbus_err("StopUnit reply", e))?;
                let result = Self::wait_job(&rx, &job)?;
                if result != "done" {
                    tracing::warn!("stop unit {unit}: the job ended {result:?}; continuing");
                }
            }
            Err(e) if error_name(&e) == Some("org.freedesktop.systemd1.NoSuchUnit") => {}
            Err(e) => return Err(dbus_err(&format!("stop unit {unit}"), e)),
        }
        let _ = self.reset_failed(unit);
        Ok(())
    }

    fn reset_failed(&self, unit: &str) -> Result<()> {
        self.call("ResetFailedUnit", &(unit,))
            .map(drop)
            .map_err(|e| dbus_err(&format!("reset unit {unit}"), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
    };

    fn get<'a>(p: &'a [Property], name: &str) -> Option<&'a Value<'static>> {
        p.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    #[test]
    fn cpu_lists_become_masks() {
        assert_eq!(range_to_bits("0").unwrap(), vec![1]);
        assert_eq!(range_to_bits("0-3,7").unwrap(), vec![0x8f]);
        assert_eq!(range_to_bits("9").unwrap(), vec![0, 2]);
        assert_eq!(range_to_bits(" 1 , 8-9 ").unwrap(), vec![2, 3]);
        for bad in ["", "a", "3-1", "1-", "99999"] {
            assert!(range_to_bits(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn systemd_root_is_pid_1_s_cgroup() {
        let v2 = "0::/init.scope\n";
        assert_eq!(root_from_proc1(v2, CgroupVersion::V2).unwrap(), "/");
        let nested = "0::/warden-sd/init.scope\n";
        assert_eq!(
            root_from_proc1(nested, CgroupVersion::V2).unwrap(),
            "/warden-sd"
        );
        let v1 = "9:name=systemd:/x/init.scope\n4:memory:/x/init.scope\n0::/x/init.scope\n";
        assert_eq!(root_from_proc1(v1, CgroupVersion::V1).unwrap(), "/x");
        assert!(root_from_proc1("4:memory:/\n", CgroupVersion::V1).is_err());
    }

    #[test]
    fn limits_become_properties() {
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(64 << 20)
                    .swap(128 << 20)
                    .build()
                    .unwrap(),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(1024u64)
                    .quota(12_345i64)
                    .period(100_000u64)
                    .cpus("0-1")
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(0).build().unwrap())
            .build()
            .unwrap();
        let (p, out) = properties(&r, CgroupVersion::V2).unwrap();
        assert_eq!(get(&p, "MemoryMax"), Some(&Value::U64(64 << 20)));
        assert_eq!(get(&p, "MemorySwapMax"), Some(&Value::U64(64 << 20)));
        assert_eq!(
            get(&p, "CPUWeight"),
            Some(&Value::U64(super::super::shares_to_weight(1024)))
        );
        assert_eq!(get(&p, "CPUQuotaPeriodUSec"), Some(&Value::U64(100_000)));
        // 12.345% of a CPU is kept by systemd as 13%: cgroupfs gets the same.
        assert_eq!(get(&p, "CPUQuotaPerSecUSec"), Some(&Value::U64(130_000)));
        assert_eq!(out.cpu().as_ref().unwrap().quota(), Some(13_000));
        assert_eq!(get(&p, "TasksMax"), Some(&Value::U64(1)));
        assert_eq!(get(&p, "AllowedCPUs"), Some(&Value::from(vec![3u8])));
        let (p, _) = properties(&r, CgroupVersion::V1).unwrap();
        assert_eq!(get(&p, "MemoryLimit"), Some(&Value::U64(64 << 20)));
        assert_eq!(get(&p, "CPUShares"), Some(&Value::U64(1024)));
        assert!(get(&p, "MemorySwapMax").is_none());

        let unlimited = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(-1).build().unwrap())
            .cpu(LinuxCpuBuilder::default().quota(-1i64).build().unwrap())
            .pids(LinuxPidsBuilder::default().limit(-1).build().unwrap())
            .build()
            .unwrap();
        let (p, _) = properties(&unlimited, CgroupVersion::V2).unwrap();
        assert_eq!(get(&p, "MemoryMax"), Some(&Value::U64(u64::MAX)));
        assert_eq!(get(&p, "CPUQuotaPerSecUSec"), Some(&Value::U64(u64::MAX)));
        assert_eq!(get(&p, "TasksMax"), Some(&Value::U64(u64::MAX)));

        let bad = LinuxResourcesBuilder::default()
            .cpu(LinuxCpuBuilder::default().cpus("2-1").build().unwrap())
            .build()
            .unwrap();
        let e = properties(&bad, CgroupVersion::V2).unwrap_err().to_string();
        assert!(
            e.contains("linux.resources.cpu.cpus") && e.contains("2-1"),
            "{e}"
        );
    }
}
