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
//! The bus, in go-systemd's order for runc: the system bus (`DBUS_SYSTEM_BUS_ADDRESS`, else
//! /run/dbus/system_bus_socket); without one, as root, systemd's private socket
//! /run/systemd/private, a direct connection with no bus daemon behind it (no `Hello`, no
//! `AddMatch`); neither: an error naming both. On the bus, JobRemoved needs a match rule with
//! the daemon; on the private socket systemd sends its signals to every client, unasked
//! (`bus_foreach_bus`: "send to all direct buses, unconditionally"; `Subscribe` notes that
//! direct connections subscribe by default), which go-systemd relies on too.
//!
//! The library is libdbus (the `dbus` crate), not zbus: systemd sends its messages on the
//! private socket with the sender `org.freedesktop.systemd1`, a well-known name where a bus
//! has a unique one, and zbus 5.19 panics reading such a header even on a p2p connection
//! (6.x rejects the message); libdbus takes any bus name there, as the spec allows.
//!
//! Where the cgroup is: systemd's root (pid 1's cgroup without its `/init.scope`, from
//! /proc/1/cgroup: the `name=systemd` line on v1, the cgroup2 one on v2) joined with the
//! expanded slice and the unit, in every hierarchy. It is known before the unit exists, so
//! the init gets its paths before it is cloned; after the start the init's /proc/<pid>/cgroup
//! is checked against it.
//!
//! libdbus starts no threads, but it is a C library with global state: nothing here runs
//! before the init is cloned, nor before the last `setns`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use dbus::arg::{AppendAll, RefArg, Variant};
use dbus::channel::{BusType, Channel};
use dbus::message::MessageType;
use dbus::Message;
use oci_spec::runtime::LinuxResources;

use super::{CgroupVersion, Error, Result, SystemdUnit};

const DEST: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
/// systemd's own socket, where it talks to root directly when no bus daemon runs.
pub const PRIVATE_SOCKET: &str = "/run/systemd/private";
/// How long a start or stop job may take (runc's limit).
const JOB_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one method call may take (libdbus's default).
const CALL_TIMEOUT: Duration = Duration::from_secs(25);
/// The kernel's default CFS period, which systemd assumes too.
const DEFAULT_PERIOD: u64 = 100_000;

/// A unit property as StartTransientUnit and SetUnitProperties take it (`(sv)`).
pub type Property = (String, Variant<Box<dyn RefArg>>);

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

fn prop(name: &str, v: impl RefArg + 'static) -> Property {
    (name.to_string(), Variant(Box::new(v)))
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

/// How the connection reaches systemd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The system bus: JobRemoved needs an AddMatch with the bus daemon.
    SystemBus,
    /// systemd's private socket, a direct (peer-to-peer) connection: no bus daemon, no
    /// AddMatch; systemd sends its signals to every client there.
    Private,
}

/// A connection to systemd's manager.
pub struct Bus {
    ch: Channel,
    via: Via,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus").field("via", &self.via).finish()
    }
}

fn dbus_err(what: &str, e: dbus::Error) -> Error {
    let text = match (e.name(), e.message()) {
        (Some(n), Some(m)) => format!("{n}: {m}"),
        (Some(n), None) => n.to_string(),
        (None, Some(m)) => m.to_string(),
        (None, None) => "unknown D-Bus error".to_string(),
    };
    Error::Systemd(format!("{what}: {text}"))
}

fn is_error(e: &dbus::Error, name: &str) -> bool {
    e.name() == Some(name)
}

/// A JobRemoved signal's `(job, result)`, if `msg` is one.
fn job_removed(msg: &Message) -> Option<(String, String)> {
    if msg.msg_type() != MessageType::Signal
        || msg.interface().as_deref() != Some(MANAGER)
        || msg.member().as_deref() != Some("JobRemoved")
    {
        return None;
    }
    let (_, job, _, result) = msg.read4::<u32, dbus::Path, String, String>().ok()?;
    Some((job.to_string(), result))
}

impl Bus {
    /// The system bus (`DBUS_SYSTEM_BUS_ADDRESS`, else /run/dbus/system_bus_socket); as root,
    /// without one, systemd's private socket (go-systemd's order, for runc).
    pub fn connect() -> Result<Bus> {
        Self::connect_from(
            || Channel::get_private(BusType::System),
            nix::unistd::geteuid().is_root(),
            &format!("unix:path={PRIVATE_SOCKET}"),
        )
    }

    fn connect_from(
        system: impl FnOnce() -> std::result::Result<Channel, dbus::Error>,
        root: bool,
        private: &str,
    ) -> Result<Bus> {
        let bus_error = match system() {
            Ok(ch) => {
                return Ok(Bus {
                    ch,
                    via: Via::SystemBus,
                })
            }
            Err(e) => e.message().unwrap_or("unknown error").to_string(),
        };
        let what = "cannot reach systemd over the system bus (DBUS_SYSTEM_BUS_ADDRESS, else \
                    /run/dbus/system_bus_socket)";
        if !root {
            return Err(Error::Systemd(format!(
                "{what}: {bus_error}; its private socket {PRIVATE_SOCKET} is for root only"
            )));
        }
        match Channel::open_private(private) {
            Ok(ch) => {
                tracing::debug!("no system bus ({bus_error}); using {private}");
                Ok(Bus {
                    ch,
                    via: Via::Private,
                })
            }
            Err(e) => Err(Error::Systemd(format!(
                "{what}: {bus_error}; nor over its private socket ({private}): {}",
                e.message().unwrap_or("unknown error")
            ))),
        }
    }

    /// How this connection reaches systemd.
    pub fn via(&self) -> Via {
        self.via
    }

    fn call_to(
        &self,
        dest: &str,
        path: &str,
        iface: &str,
        method: &str,
        args: impl AppendAll,
    ) -> std::result::Result<Message, dbus::Error> {
        let mut msg = Message::new_method_call(dest, path, iface, method)
            .map_err(|e| dbus::Error::new_failed(&e))?;
        msg.append_all(args);
        self.ch.send_with_reply_and_block(msg, CALL_TIMEOUT)
    }

    fn call(
        &self,
        method: &str,
        args: impl AppendAll,
    ) -> std::result::Result<Message, dbus::Error> {
        self.call_to(DEST, PATH, MANAGER, method, args)
    }

    /// Has systemd send JobRemoved to this connection from now on: the bus daemon needs a
    /// match rule; on the private socket systemd sends every signal to every client anyway.
    fn watch_jobs(&self) -> Result<()> {
        if self.via == Via::Private {
            return Ok(());
        }
        let rule = format!("type='signal',interface='{MANAGER}',member='JobRemoved'");
        self.call_to(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "AddMatch",
            (rule,),
        )
        .map(drop)
        .map_err(|e| dbus_err("subscribe to JobRemoved", e))
    }

    /// Waits for `job`'s JobRemoved and returns its result. Signals that came in while a call
    /// waited for its reply are queued by libdbus, so none is missed.
    fn wait_job(&self, job: &str) -> Result<String> {
        let deadline = Instant::now() + JOB_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Systemd(format!(
                    "job {job} did not finish within {JOB_TIMEOUT:?}"
                )));
            }
            match self.ch.blocking_pop_message(left) {
                Ok(Some(msg)) => {
                    if let Some((j, result)) = job_removed(&msg) {
                        if j == job {
                            return Ok(result);
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => return Err(dbus_err(&format!("wait for job {job}"), e)),
            }
        }
    }

    fn job_of(reply: &Message, what: &str) -> Result<String> {
        reply
            .read1::<dbus::Path>()
            .map(|p| p.to_string())
            .map_err(|e| Error::Systemd(format!("{what} reply: {e}")))
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
        self.watch_jobs()?;
        let aux: Vec<(String, Vec<Property>)> = Vec::new();
        let mut retried = false;
        let job = loop {
            let args = (unit.unit.as_str(), "replace", &props, &aux);
            match self.call("StartTransientUnit", args) {
                Ok(reply) => break Self::job_of(&reply, "StartTransientUnit")?,
                Err(e) if !retried && is_error(&e, "org.freedesktop.systemd1.UnitExists") => {
                    // Perhaps a failed leftover of the same name: let systemd drop it, once.
                    tracing::debug!("unit {} exists; resetting it and trying again", unit.unit);
                    let _ = self.reset_failed(&unit.unit);
                    retried = true;
                }
                Err(e) => {
                    let what = if is_error(&e, "org.freedesktop.systemd1.UnitExists") {
                        format!("start unit {} (it exists and is in use)", unit.unit)
                    } else {
                        format!("start unit {} in {}", unit.unit, unit.slice)
                    };
                    return Err(dbus_err(&what, e));
                }
            }
        };
        let result = self.wait_job(&job).inspect_err(|_| {
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
    pub fn set_properties(&self, unit: &str, props: Vec<Property>) -> Result<()> {
        if props.is_empty() {
            return Ok(());
        }
        self.call("SetUnitProperties", (unit, true, props))
            .map(drop)
            .map_err(|e| dbus_err(&format!("set properties of unit {unit}"), e))
    }

    /// Stops a unit and waits for the job; a unit that is gone already is fine. Then resets
    /// it, in case it failed.
    pub fn stop(&self, unit: &str) -> Result<()> {
        self.watch_jobs()?;
        match self.call("StopUnit", (unit, "replace")) {
            Ok(reply) => {
                let job = Self::job_of(&reply, "StopUnit")?;
                let result = self.wait_job(&job)?;
                if result != "done" {
                    tracing::warn!("stop unit {unit}: the job ended {result:?}; continuing");
                }
            }
            Err(e) if is_error(&e, "org.freedesktop.systemd1.NoSuchUnit") => {}
            Err(e) => return Err(dbus_err(&format!("stop unit {unit}"), e)),
        }
        let _ = self.reset_failed(unit);
        Ok(())
    }

    fn reset_failed(&self, unit: &str) -> Result<()> {
        self.call("ResetFailedUnit", (unit,))
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

    fn get<'a>(p: &'a [Property], name: &str) -> Option<&'a dyn RefArg> {
        p.iter().find(|(n, _)| n == name).map(|(_, v)| &*v.0)
    }

    fn num(p: &[Property], name: &str) -> Option<u64> {
        get(p, name).map(|v| v.as_u64().expect("a number"))
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
        assert_eq!(num(&p, "MemoryMax"), Some(64 << 20));
        assert_eq!(num(&p, "MemorySwapMax"), Some(64 << 20));
        assert_eq!(
            num(&p, "CPUWeight"),
            Some(super::super::shares_to_weight(1024))
        );
        assert_eq!(num(&p, "CPUQuotaPeriodUSec"), Some(100_000));
        // 12.345% of a CPU is kept by systemd as 13%: cgroupfs gets the same.
        assert_eq!(num(&p, "CPUQuotaPerSecUSec"), Some(130_000));
        assert_eq!(out.cpu().as_ref().unwrap().quota(), Some(13_000));
        assert_eq!(num(&p, "TasksMax"), Some(1));
        assert_eq!(
            get(&p, "AllowedCPUs")
                .and_then(|v| v.as_iter())
                .map(|i| i.filter_map(|b| b.as_u64()).collect::<Vec<_>>()),
            Some(vec![3])
        );
        let (p, _) = properties(&r, CgroupVersion::V1).unwrap();
        assert_eq!(num(&p, "MemoryLimit"), Some(64 << 20));
        assert_eq!(num(&p, "CPUShares"), Some(1024));
        assert!(get(&p, "MemorySwapMax").is_none());

        let unlimited = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(-1).build().unwrap())
            .cpu(LinuxCpuBuilder::default().quota(-1i64).build().unwrap())
            .pids(LinuxPidsBuilder::default().limit(-1).build().unwrap())
            .build()
            .unwrap();
        let (p, _) = properties(&unlimited, CgroupVersion::V2).unwrap();
        assert_eq!(num(&p, "MemoryMax"), Some(u64::MAX));
        assert_eq!(num(&p, "CPUQuotaPerSecUSec"), Some(u64::MAX));
        assert_eq!(num(&p, "TasksMax"), Some(u64::MAX));

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

    #[test]
    fn without_a_bus_the_error_names_both_ways() {
        let no_bus = || Err(dbus::Error::new_failed("no such socket"));
        let e = Bus::connect_from(no_bus, false, "unix:path=/nonexistent/private")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("system bus") && e.contains("no such socket") && e.contains("root only"),
            "{e}"
        );
        let e = Bus::connect_from(no_bus, true, "unix:path=/nonexistent/private")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("system bus")
                && e.contains("no such socket")
                && e.contains("/nonexistent/private"),
            "{e}"
        );
    }
}
