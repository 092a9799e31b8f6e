//! linux.resources as the host's cgroup files show them (v1's, or v2's on a cgroup v2 host),
//! and limits that bite: a memory limit that kills, a pids limit that stops a fork bomb.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use serde_json::json;

#[test]
fn cgroup_files_hold_the_configured_limits() {
    let env = Env::new("cgroup-files");
    let id = env.created(|s| {
        s["process"]["args"] = json!(["sleep", "30"]);
        let r = &mut s["linux"]["resources"];
        r["memory"] = json!({"limit": 64 * 1024 * 1024, "reservation": 32 * 1024 * 1024});
        r["cpu"] =
            json!({"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"});
        r["pids"] = json!({"limit": 32});
    });
    let pid = env.state(&id)["pid"].as_i64().unwrap() as i32;
    let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    match hierarchy() {
        Hierarchy::V1 => {
            assert_eq!(
                cgroup_file("memory", &id, "memory.limit_in_bytes"),
                (64u64 << 20).to_string()
            );
            assert_eq!(
                cgroup_file("memory", &id, "memory.soft_limit_in_bytes"),
                (32u64 << 20).to_string()
            );
            assert_eq!(cgroup_file("cpu", &id, "cpu.shares"), "512");
            assert_eq!(cgroup_file("cpu", &id, "cpu.cfs_quota_us"), "50000");
            assert_eq!(cgroup_file("cpu", &id, "cpu.cfs_period_us"), "100000");
            assert_eq!(cgroup_file("cpuset", &id, "cpuset.cpus"), "0");
            assert_eq!(cgroup_file("cpuset", &id, "cpuset.mems"), "0");
            assert_eq!(cgroup_file("pids", &id, "pids.max"), "32");
            // Deny all, then runc's default allow list: /dev/null is in, arbitrary devices
            // are not.
            let devices = cgroup_file("devices", &id, "devices.list");
            assert!(
                devices.lines().any(|l| l == "c 1:3 rwm"),
                "devices.list:\n{devices}"
            );
            assert!(
                !devices.lines().any(|l| l == "a *:* rwm"),
                "devices.list:\n{devices}"
            );
            // The init is in the container's cgroup in every hierarchy.
            for c in CONTROLLERS {
                let procs = cgroup_procs(c, &id);
                assert!(
                    procs.contains(&pid),
                    "{c}: init {pid} not in cgroup.procs ({procs:?})"
                );
            }
            assert!(
                own.lines()
                    .any(|l| l.ends_with(&format!(":memory:/{CGROUP_PARENT}/{id}"))),
                "/proc/{pid}/cgroup:\n{own}"
            );
        }
        Hierarchy::V2 => {
            // runc's translations: the reservation is memory.low, the shares a weight, quota
            // and period one cpu.max. No swap was asked for: memory.swap.max is left as it
            // is. Device rules are no file on v2 (devices_cgroup_denies_what_is_not_allowed
            // tests them).
            let f = |name| cgroup_v2_file(&id, name);
            assert_eq!(f("memory.max"), (64u64 << 20).to_string());
            assert_eq!(f("memory.low"), (32u64 << 20).to_string());
            assert_eq!(f("cpu.weight"), cpu_weight_of_shares(512).to_string());
            assert_eq!(f("cpu.weight"), "20");
            assert_eq!(f("cpu.max"), "50000 100000");
            assert_eq!(f("cpuset.cpus"), "0");
            assert_eq!(f("cpuset.mems"), "0");
            assert_eq!(f("pids.max"), "32");
            let procs = cgroup_procs("", &id);
            assert!(
                procs.contains(&pid),
                "init {pid} not in cgroup.procs ({procs:?})"
            );
            assert!(
                own.lines()
                    .any(|l| l == format!("0::/{CGROUP_PARENT}/{id}")),
                "/proc/{pid}/cgroup:\n{own}"
            );
        }
    }

    env.runc(&["delete", &id]).ok();
    env.assert_clean(&id);
}

#[test]
fn cgroup_namespace_hides_the_host_path() {
    let env = Env::new("cgroupns");
    let out = env
        .run_container(&[], |s| {
            // runc's template has it on v2 hosts only.
            let ns = s["linux"]["namespaces"].as_array_mut().unwrap();
            if !ns.iter().any(|n| n["type"] == "cgroup") {
                ns.push(json!({"type": "cgroup"}));
            }
            s["process"]["args"] = json!(["cat", "/proc/self/cgroup"]);
        })
        .ok();
    for l in out.stdout.lines() {
        let path = l.splitn(3, ':').nth(2).unwrap_or_default();
        assert!(
            !path.contains(CGROUP_PARENT),
            "host cgroup path visible: {l}\n{}",
            out.stdout
        );
    }
}

#[test]
fn memory_limit_kills_a_process_that_exceeds_it() {
    let env = Env::new("oom");
    let id = env.new_id();
    let b = env.bundle(&id, |s| {
        // dd's 64 MiB block buffer is touched by the read from /dev/zero: it cannot fit in
        // 16 MiB.
        s["process"]["args"] = json!(["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]);
        s["linux"]["resources"]["memory"] =
            json!({"limit": 16 * 1024 * 1024, "swap": 16 * 1024 * 1024});
    });
    let out = env.runc(&["run", "--keep", "-b", b.to_str().unwrap(), &id]);
    assert_eq!(
        out.code,
        137,
        "want SIGKILL from the OOM killer:\n{}",
        out.describe()
    );
    match hierarchy() {
        Hierarchy::V1 => {
            let oom = cgroup_file("memory", &id, "memory.oom_control");
            let kills = keyed(&oom, "oom_kill").unwrap_or(0);
            assert!(kills >= 1, "memory.oom_control:\n{oom}");
            assert_eq!(
                cgroup_file("memory", &id, "memory.limit_in_bytes"),
                (16u64 << 20).to_string()
            );
        }
        Hierarchy::V2 => {
            let events = cgroup_v2_file(&id, "memory.events");
            let kills = keyed(&events, "oom_kill").unwrap_or(0);
            assert!(kills >= 1, "memory.events:\n{events}");
            assert_eq!(cgroup_v2_file(&id, "memory.max"), (16u64 << 20).to_string());
            // memory+swap 16 MiB over a 16 MiB limit: no swap at all.
            assert_eq!(cgroup_v2_file(&id, "memory.swap.max"), "0");
        }
    }
    env.runc(&["delete", &id]).ok();
    env.assert_clean(&id);

    // The same with room to spare succeeds, so the limit (not something else) killed it.
    let out = env.run_container(&[], |s| {
        s["process"]["args"] = json!(["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]);
        s["linux"]["resources"]["memory"] = json!({"limit": 256 * 1024 * 1024});
    });
    assert_eq!(out.code, 0, "{}", out.describe());
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    let env = Env::new("pids");
    let id = env.new_id();
    // busybox sh gives up ("can't fork") at the first fork that fails.
    let script = "i=0; while [ $i -lt 64 ]; do sleep 30 & i=$((i+1)); echo started $i; done; echo all-started";
    let b = env.bundle(&id, |s| {
        s["process"]["args"] = json!(["sh", "-c", script]);
        s["linux"]["resources"]["pids"] = json!({"limit": 16});
    });
    let out = env.runc(&["run", "--keep", "-b", b.to_str().unwrap(), &id]);
    assert!(
        !out.stdout.contains("all-started"),
        "the fork bomb was not stopped:\n{}",
        out.describe()
    );
    assert_ne!(out.code, 0, "{}", out.describe());
    assert!(out.stderr.contains("can't fork"), "{}", out.describe());
    let started = out
        .lines()
        .iter()
        .filter(|l| l.starts_with("started "))
        .count();
    // The shell itself is one of the 16.
    assert!(
        (1..=15).contains(&started),
        "{started} sleeps started under pids.max 16:\n{}",
        out.describe()
    );
    // pids.max and pids.events ("max <forks refused>") have the same names on v1 and v2.
    let pids_file = |name| match hierarchy() {
        Hierarchy::V1 => cgroup_file("pids", &id, name),
        Hierarchy::V2 => cgroup_v2_file(&id, name),
    };
    assert_eq!(pids_file("pids.max"), "16");
    let events = pids_file("pids.events");
    let hits = keyed(&events, "max").unwrap_or(0);
    assert!(hits >= 1, "pids.events: {events}");
    env.runc(&["delete", &id]).ok();
    env.assert_clean(&id);
}

#[test]
fn cpu_quota_throttles() {
    // 10ms per 100ms: a busy loop of at least a second of wall time (it runs until the
    // second after next starts; until the next one alone could be a few ms) gets throttled
    // periods.
    let env = Env::new("cpu-quota");
    let id = env.new_id();
    let b = env.bundle(&id, |s| {
        s["process"]["args"] = json!([
            "sh",
            "-c",
            "end=$(($(date +%s) + 2)); while [ $(date +%s) -lt $end ]; do :; done"
        ]);
        s["linux"]["resources"]["cpu"] = json!({"quota": 10000, "period": 100000});
    });
    let out = env.runc(&["run", "--keep", "-b", b.to_str().unwrap(), &id]);
    assert_eq!(out.code, 0, "{}", out.describe());
    // cpu.stat's nr_throttled has the same name on v1 and v2.
    let stat = match hierarchy() {
        Hierarchy::V1 => cgroup_file("cpu", &id, "cpu.stat"),
        Hierarchy::V2 => {
            assert_eq!(cgroup_v2_file(&id, "cpu.max"), "10000 100000");
            cgroup_v2_file(&id, "cpu.stat")
        }
    };
    let throttled = keyed(&stat, "nr_throttled").unwrap_or(0);
    assert!(throttled >= 1, "cpu.stat:\n{stat}");
    env.runc(&["delete", &id]).ok();
    env.assert_clean(&id);
}

#[test]
fn devices_cgroup_denies_what_is_not_allowed() {
    // CAP_MKNOD so only the device rules can refuse (mknod of any char device is in runc's
    // default list, opening it is not). /dev/kmsg (c 1:11) is in every kernel, and opening it
    // write-only needs no privilege, here as in the cgroup v2 guest (whose root may not be on
    // a block device at all); this process can, so only the rules can stop the container.
    fs::OpenOptions::new()
        .write(true)
        .open("/dev/kmsg")
        .expect("open /dev/kmsg write-only outside the container");
    let env = Env::new("devices-cgroup");
    let script = "mknod /dev/mynull c 1 3 && echo x > /dev/mynull && echo null-ok; \
                  mknod /dev/mykmsg c 1 11 && echo mknod-ok; \
                  if true > /dev/mykmsg; then echo kmsg-ok; else echo kmsg-refused; fi";
    let run = |extra_rule: Option<serde_json::Value>| {
        env.run_container(&[], |s| {
            set_caps(s, &["CAP_MKNOD", "CAP_KILL"]);
            s["process"]["args"] = json!(["sh", "-c", script]);
            if let Some(r) = extra_rule {
                let d = &mut s["linux"]["resources"]["devices"];
                assert!(d.is_array(), "the default spec has device rules: {d}");
                d.as_array_mut().unwrap().push(r);
            }
        })
        .ok()
    };
    // Deny all, then runc's default allow list: 1:3 is in it, 1:11 is not.
    let out = run(None);
    assert_eq!(
        out.lines(),
        ["null-ok", "mknod-ok", "kmsg-refused"],
        "{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("Operation not permitted"),
        "{}",
        out.describe()
    );
    // The same with a rule that allows writing to 1:11: the rules were what refused it.
    let out = run(Some(
        json!({"allow": true, "type": "c", "major": 1, "minor": 11, "access": "w"}),
    ));
    assert_eq!(
        out.lines(),
        ["null-ok", "mknod-ok", "kmsg-ok"],
        "{}",
        out.describe()
    );
}

/// Removes `/warden-test/<name>` in every hierarchy when dropped (the nested test's parent).
struct ParentCgroup(String);

impl Drop for ParentCgroup {
    fn drop(&mut self) {
        for root in cgroup_roots() {
            let _ = fs::remove_dir(root.join(CGROUP_PARENT).join(&self.0));
        }
    }
}

#[test]
fn a_cgroup_under_a_parent_someone_else_made_goes_and_the_parent_stays() {
    // Delegation as systemd and kubelet do it: the parent exists (here without any
    // controller enabled below it on v2), the container's cgroup is made under it, limits
    // work there, and delete removes the container's cgroup only.
    let env = Env::new("cgroup-nested");
    let id = env.new_id();
    let parent = ParentCgroup(format!("{id}-parent"));
    let made: Vec<std::path::PathBuf> = match hierarchy() {
        Hierarchy::V1 => ["memory", "pids"]
            .iter()
            .map(|c| cgroup_dir(c, &parent.0))
            .collect(),
        Hierarchy::V2 => vec![cgroup_v2_dir(&parent.0)],
    };
    for d in &made {
        fs::create_dir_all(d).unwrap();
    }
    let b = env.bundle(&id, |s| {
        s["process"]["args"] = json!(["sleep", "30"]);
        s["linux"]["cgroupsPath"] = json!(format!("/{CGROUP_PARENT}/{}/{id}", parent.0));
        s["linux"]["resources"]["memory"] = json!({"limit": 48 << 20});
        s["linux"]["resources"]["pids"] = json!({"limit": 20});
    });
    env.create(&id, &b).ok();
    let nested = format!("{}/{id}", parent.0);
    match hierarchy() {
        Hierarchy::V1 => {
            assert_eq!(
                cgroup_file("memory", &nested, "memory.limit_in_bytes"),
                (48u64 << 20).to_string()
            );
            assert_eq!(cgroup_file("pids", &nested, "pids.max"), "20");
        }
        Hierarchy::V2 => {
            assert_eq!(
                cgroup_v2_file(&nested, "memory.max"),
                (48u64 << 20).to_string()
            );
            assert_eq!(cgroup_v2_file(&nested, "pids.max"), "20");
            // Only the parents had controllers enabled for their children: the container's
            // own cgroup has none enabled below it.
            assert_eq!(cgroup_v2_file(&nested, "cgroup.subtree_control"), "");
        }
    }
    env.runc(&["start", &id]).ok();
    env.runc(&["delete", "--force", &id]).ok();
    for d in &made {
        assert!(d.is_dir(), "delete removed the parent {}", d.display());
        assert!(
            !d.join(&id).exists(),
            "delete left {}",
            d.join(&id).display()
        );
    }
    for root in cgroup_roots() {
        let d = root.join(CGROUP_PARENT).join(&nested);
        assert!(!d.exists(), "delete left {}", d.display());
    }
    env.assert_clean(&id);
}

#[test]
fn hugepage_limits_are_written_or_refused_where_the_host_has_no_hugetlb() {
    let env = Env::new("hugetlb");
    let id = env.new_id();
    let b = env.bundle(&id, |s| {
        s["process"]["args"] = json!(["sleep", "30"]);
        s["linux"]["resources"]["hugepageLimits"] = json!([{"pageSize": "2MB", "limit": 4 << 20}]);
    });
    let has_hugetlb = match hierarchy() {
        Hierarchy::V1 => std::path::Path::new("/sys/fs/cgroup/hugetlb").is_dir(),
        Hierarchy::V2 => fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .unwrap_or_default()
            .split_whitespace()
            .any(|c| c == "hugetlb"),
    };
    if !has_hugetlb {
        // This development host binds no hugetlb hierarchy: a clear error, nothing left.
        let err = env.create(&id, &b).fails_with("hugetlb");
        assert!(err.contains("linux.resources.hugepageLimits"), "{err}");
        env.assert_clean(&id);
        return;
    }
    env.create(&id, &b).ok();
    let limit = match hierarchy() {
        Hierarchy::V1 => cgroup_file("hugetlb", &id, "hugetlb.2MB.limit_in_bytes"),
        Hierarchy::V2 => cgroup_v2_file(&id, "hugetlb.2MB.max"),
    };
    assert_eq!(limit, (4u64 << 20).to_string());
    let out = env.runc(&["events", "--stats", &id]).ok();
    let ev: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert!(ev["data"]["hugetlb"]["2MB"].is_object(), "{}", out.stdout);
    env.runc(&["delete", "--force", &id]).ok();
    env.assert_clean(&id);
}

/// A loop device over a sparse file of `size` bytes in `dir`, detached when dropped: a real
/// block device for block I/O limits (the cgroup v2 guest's root is 9p, with no disk).
struct LoopDevice {
    path: String,
    major: u64,
    minor: u64,
}

impl LoopDevice {
    fn new(dir: &Path, size: u64) -> LoopDevice {
        // The guest loads no module by itself: /dev/loop-control appears with the module.
        if !Path::new("/dev/loop-control").exists() {
            let _ = std::process::Command::new("modprobe").arg("loop").status();
        }
        let file = dir.join("loop.img");
        fs::File::create(&file).unwrap().set_len(size).unwrap();
        let out = std::process::Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&file)
            .output()
            .expect("run losetup (Debian's mount package)");
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let meta = fs::metadata(&path).unwrap();
        use std::os::unix::fs::MetadataExt;
        let rdev = meta.rdev();
        LoopDevice {
            path,
            major: libc::major(rdev) as u64,
            minor: libc::minor(rdev) as u64,
        }
    }

    /// The device at /dev/disk in the container, readable and writable by its rules.
    fn add_to(&self, s: &mut serde_json::Value) {
        let (major, minor) = (self.major, self.minor);
        s["linux"]["devices"] = json!([{
            "path": "/dev/disk", "type": "b", "major": major, "minor": minor, "fileMode": 0o660
        }]);
        s["linux"]["resources"]["devices"]
            .as_array_mut()
            .unwrap()
            .push(
                json!({"allow": true, "type": "b", "major": major, "minor": minor, "access": "rw"}),
            );
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup")
            .args(["--detach", &self.path])
            .status();
    }
}

#[test]
fn block_io_throttle_slows_direct_writes_to_a_real_device() {
    // 4 MiB of direct writes under a 1 MiB/s throttle cannot take less than about 3 s (the
    // throttle lets a slice's worth through at once); unthrottled they take milliseconds.
    const RATE: u64 = 1 << 20;
    let env = Env::new("blkio-throttle");
    let disk = LoopDevice::new(env.dir(), 64 << 20);
    let id = env.new_id();
    let b = env.bundle(&id, |s| {
        disk.add_to(s);
        s["process"]["args"] = json!([
            "dd",
            "if=/dev/zero",
            "of=/dev/disk",
            "bs=64k",
            "count=64",
            "oflag=direct"
        ]);
        s["linux"]["resources"]["blockIO"] = json!({
            "weight": 300,
            "throttleWriteBpsDevice": [{"major": disk.major, "minor": disk.minor, "rate": RATE}],
            "throttleReadIOPSDevice": [{"major": disk.major, "minor": disk.minor, "rate": 1000}],
        });
    });
    let start = std::time::Instant::now();
    let out = env.runc(&["run", "--keep", "-b", b.to_str().unwrap(), &id]);
    let took = start.elapsed();
    assert_eq!(out.code, 0, "{}", out.describe());
    assert!(
        took >= std::time::Duration::from_millis(2500),
        "4 MiB at {RATE} B/s took only {took:?}:\n{}",
        out.describe()
    );
    let dev = format!("{}:{}", disk.major, disk.minor);
    match hierarchy() {
        Hierarchy::V1 => {
            assert_eq!(
                cgroup_file("blkio", &id, "blkio.throttle.write_bps_device"),
                format!("{dev} {RATE}")
            );
            assert_eq!(
                cgroup_file("blkio", &id, "blkio.throttle.read_iops_device"),
                format!("{dev} 1000")
            );
            let served = cgroup_file("blkio", &id, "blkio.throttle.io_service_bytes");
            let written = served
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{dev} Write ")))
                .and_then(|v| v.parse::<u64>().ok());
            assert_eq!(written, Some(4 << 20), "{served}");
        }
        Hierarchy::V2 => {
            assert_eq!(
                cgroup_v2_file(&id, "io.max"),
                format!("{dev} rbps=max wbps={RATE} riops=1000 wiops=max")
            );
            // Debian's kernel has the iocost controller: the weight on its 1..10000 scale.
            assert_eq!(
                cgroup_v2_file(&id, "io.weight"),
                format!("default {}", 1 + (300 - 10) * 9999 / 990)
            );
            let stat = cgroup_v2_file(&id, "io.stat");
            let written = stat
                .lines()
                .find(|l| l.starts_with(&format!("{dev} ")))
                .and_then(|l| l.split(' ').find_map(|kv| kv.strip_prefix("wbytes=")))
                .and_then(|v| v.parse::<u64>().ok());
            assert_eq!(written, Some(4 << 20), "io.stat:\n{stat}");
        }
    }
    env.runc(&["delete", &id]).ok();
    env.assert_clean(&id);
}

#[test]
fn memory_high_reclaims_without_killing_on_v2_and_is_refused_on_v1() {
    // 96 MiB read through the page cache of a real device, under a memory.high of 16 MiB:
    // on v2 the kernel reclaims the cache past the limit (memory.events' `high` counts it)
    // and nothing is killed. v1 has no unified resources: create names them.
    let env = Env::new("memory-high");
    let disk = LoopDevice::new(env.dir(), 96 << 20);
    let id = env.new_id();
    let b = env.bundle(&id, |s| {
        disk.add_to(s);
        s["process"]["args"] = json!(["dd", "if=/dev/disk", "of=/dev/null", "bs=1M"]);
        s["linux"]["resources"]["unified"] = json!({"memory.high": (16u64 << 20).to_string()});
    });
    if hierarchy() == Hierarchy::V1 {
        let err = env.create(&id, &b).fails_with("linux.resources.unified");
        assert!(err.contains("memory.high"), "{err}");
        env.assert_clean(&id);
        return;
    }
    let out = env.runc(&["run", "--keep", "-b", b.to_str().unwrap(), &id]);
    assert_eq!(out.code, 0, "{}", out.describe());
    assert_eq!(
        cgroup_v2_file(&id, "memory.high"),
        (16u64 << 20).to_string()
    );
    let events = cgroup_v2_file(&id, "memory.events");
    assert!(
        keyed(&events, "high").unwrap_or(0) >= 1,
        "memory.events:\n{events}"
    );
    assert_eq!(
        keyed(&events, "oom_kill"),
        Some(0),
        "memory.events:\n{events}"
    );
    let current: u64 = cgroup_v2_file(&id, "memory.current").parse().unwrap();
    assert!(
        current < 48 << 20,
        "memory.current {current} under memory.high 16 MiB"
    );
    env.runc(&["delete", &id]).ok();
    env.assert_clean(&id);
}
