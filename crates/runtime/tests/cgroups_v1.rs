//! The cgroup v1 driver on the real kernel. Needs root and a v1 (or hybrid) host; skips
//! otherwise. Every test works in its own `/warden-test-<pid>-<n>` cgroup at the top of each
//! hierarchy and removes it (and kills its helper processes) when it ends, pass or fail.

// In a module so that `cargo test cgroups` picks these tests by name.
mod cgroups_v1 {
    use std::collections::BTreeMap;
    use std::io::{BufRead, BufReader, Write};
    use std::path::{Path, PathBuf};
    use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder,
        LinuxDeviceType, LinuxHugepageLimitBuilder, LinuxMemoryBuilder, LinuxPidsBuilder,
        LinuxResources, LinuxResourcesBuilder, LinuxThrottleDeviceBuilder,
    };
    use warden_runtime::cgroups::{self, CgroupVersion, Error, FreezerState, Hierarchies, Manager};

    static N: AtomicUsize = AtomicUsize::new(0);

    fn unique() -> String {
        format!(
            "warden-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// None (and a note) when this host cannot run these tests.
    fn host() -> Option<Hierarchies> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return None;
        }
        let h = Hierarchies::from_system().ok()?;
        if h.version().ok()? != CgroupVersion::V1 {
            eprintln!("skipped: not a cgroup v1 host");
            return None;
        }
        Some(h)
    }

    /// A test's cgroup: destroyed, with the top directory the test made in every hierarchy and
    /// the helper processes, when dropped.
    struct Cg {
        m: Box<dyn Manager>,
        top: String,
        mounts: Vec<PathBuf>,
        children: Vec<Child>,
    }

    impl Cg {
        /// The cgroup `/<top><sub>` (sub empty or starting with '/').
        fn new(h: &Hierarchies, sub: &str) -> Cg {
            let top = unique();
            let m = h
                .manager(Some(&format!("/{top}{sub}")), "c")
                .expect("manager");
            Cg {
                m,
                top,
                mounts: h.mounts().iter().map(|m| m.mount_point.clone()).collect(),
                children: vec![],
            }
        }

        fn path(&self, controller: &str) -> PathBuf {
            self.m.paths()[controller].clone()
        }

        fn read(&self, controller: &str, file: &str) -> String {
            let p = self.path(controller).join(file);
            std::fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
                .trim()
                .to_string()
        }

        /// Starts `sh -c script` with piped stdin/stdout, and puts it in the cgroup.
        fn spawn_in(&mut self, script: &str) -> (i32, ChildStdin, BufReader<ChildStdout>) {
            let mut c = Command::new("/bin/sh")
                .arg("-c")
                .arg(script)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn sh");
            let pid = c.id() as i32;
            let stdin = c.stdin.take().unwrap();
            let stdout = BufReader::new(c.stdout.take().unwrap());
            self.children.push(c);
            self.m.add_task(pid).expect("add_task");
            (pid, stdin, stdout)
        }

        fn take_child(&mut self, pid: i32) -> Child {
            let i = self
                .children
                .iter()
                .position(|c| c.id() as i32 == pid)
                .unwrap();
            self.children.remove(i)
        }
    }

    impl Drop for Cg {
        fn drop(&mut self) {
            for c in &mut self.children {
                let _ = c.kill();
            }
            let _ = self.m.thaw();
            if let Err(e) = self.m.destroy() {
                eprintln!("cleanup: {e}");
            }
            for c in &mut self.children {
                let _ = c.wait();
            }
            for m in &self.mounts {
                rm_tree(&m.join(&self.top));
            }
        }
    }

    /// rmdir of a cgroup tree, deepest first; what is not there is fine.
    fn rm_tree(dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    rm_tree(&e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }

    fn line(r: &mut BufReader<ChildStdout>) -> String {
        let mut s = String::new();
        r.read_line(&mut s).unwrap();
        s.trim().to_string()
    }

    fn go(stdin: &mut ChildStdin) {
        stdin.write_all(b"go\n").unwrap();
        stdin.flush().unwrap();
    }

    fn mem(limit: i64, swap: i64) -> LinuxResources {
        LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(limit)
                    .swap(swap)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    fn rule(
        allow: bool,
        t: LinuxDeviceType,
        major: i64,
        minor: i64,
        access: &str,
    ) -> LinuxDeviceCgroup {
        LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(t)
            .major(major)
            .minor(minor)
            .access(access.to_string())
            .build()
            .unwrap()
    }

    /// The major:minor of a real block device, for throttle rules.
    fn some_block_device() -> Option<(i64, i64)> {
        let mut names: Vec<_> = std::fs::read_dir("/sys/block")
            .ok()?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort_by_key(|n| n.starts_with("loop"));
        let dev = std::fs::read_to_string(format!("/sys/block/{}/dev", names.first()?)).ok()?;
        let (a, b) = dev.trim().split_once(':')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    }

    const M: i64 = 1 << 20;

    #[test]
    fn this_host_is_v1_with_a_hybrid_unified_dir() {
        let Some(h) = host() else { return };
        assert_eq!(cgroups::detect().unwrap(), CgroupVersion::V1);
        let cg = Cg::new(&h, "");
        let paths = cg.m.paths();
        for c in [
            "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "pids",
        ] {
            assert!(paths.contains_key(c), "{c} missing from {paths:?}");
            assert!(paths[c].ends_with(&cg.top));
        }
        if h.unified_mount().is_some() {
            assert!(paths[""].ends_with(&cg.top));
        }
    }

    #[test]
    fn limits_reach_the_kernel() {
        let Some(h) = host() else { return };
        let cg = Cg::new(&h, "/inner/leaf");
        cg.m.create().unwrap();
        // The cpuset parents the manager made got cpus and mems, and so did the leaf.
        let root_cpus = std::fs::read_to_string(
            h.mounts()
                .iter()
                .find(|m| m.controllers().contains(&"cpuset".to_string()))
                .unwrap()
                .mount_point
                .join("cpuset.cpus"),
        )
        .unwrap();
        assert_eq!(cg.read("cpuset", "../cpuset.cpus"), root_cpus.trim());
        assert_eq!(cg.read("cpuset", "cpuset.cpus"), root_cpus.trim());
        assert!(!cg.read("cpuset", "cpuset.mems").is_empty());

        let mut block_io = LinuxBlockIoBuilder::default();
        let dev = some_block_device();
        if let Some((ma, mi)) = dev {
            block_io =
                block_io.throttle_read_bps_device(vec![LinuxThrottleDeviceBuilder::default()
                    .major(ma)
                    .minor(mi)
                    .rate(1_048_576u64)
                    .build()
                    .unwrap()]);
        }
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(64 * M)
                    .reservation(32 * M)
                    .swap(128 * M)
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
                    .cpus("0")
                    .mems("0")
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(32i64).build().unwrap())
            .block_io(block_io.build().unwrap())
            .devices(vec![
                rule(true, LinuxDeviceType::C, 1, 3, "rwm"),
                rule(true, LinuxDeviceType::C, 1, 5, "r"),
                rule(false, LinuxDeviceType::C, 1, 5, "r"),
            ])
            .build()
            .unwrap();
        cg.m.apply(&r).unwrap();

        assert_eq!(
            cg.read("memory", "memory.limit_in_bytes"),
            (64 * M).to_string()
        );
        let has_memsw = cg
            .path("memory")
            .join("memory.memsw.limit_in_bytes")
            .exists();
        if has_memsw {
            assert_eq!(
                cg.read("memory", "memory.memsw.limit_in_bytes"),
                (128 * M).to_string()
            );
        }
        assert_eq!(
            cg.read("memory", "memory.soft_limit_in_bytes"),
            (32 * M).to_string()
        );
        assert_eq!(cg.read("memory", "memory.swappiness"), "10");
        assert!(cg
            .read("memory", "memory.oom_control")
            .contains("oom_kill_disable 1"));
        assert_eq!(cg.read("cpu", "cpu.shares"), "512");
        assert_eq!(cg.read("cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(cg.read("cpu", "cpu.cfs_period_us"), "100000");
        assert_eq!(cg.read("cpuset", "cpuset.cpus"), "0");
        assert_eq!(cg.read("cpuset", "cpuset.mems"), "0");
        assert_eq!(cg.read("pids", "pids.max"), "32");
        if let Some((ma, mi)) = dev {
            assert_eq!(
                cg.read("blkio", "blkio.throttle.read_bps_device"),
                format!("{ma}:{mi} 1048576")
            );
        }
        // Deny all, then the rules in order: 1:5 r was allowed then denied again.
        assert_eq!(cg.read("devices", "devices.list"), "c 1:3 rwm");

        // Raising both: memsw must go first or the kernel refuses the limit.
        cg.m.apply(&mem(256 * M, 512 * M)).unwrap();
        assert_eq!(
            cg.read("memory", "memory.limit_in_bytes"),
            (256 * M).to_string()
        );
        if has_memsw {
            assert_eq!(
                cg.read("memory", "memory.memsw.limit_in_bytes"),
                (512 * M).to_string()
            );
        }
        // Lowering both: the limit must go first.
        cg.m.apply(&mem(32 * M, 48 * M)).unwrap();
        assert_eq!(
            cg.read("memory", "memory.limit_in_bytes"),
            (32 * M).to_string()
        );
        if has_memsw {
            assert_eq!(
                cg.read("memory", "memory.memsw.limit_in_bytes"),
                (48 * M).to_string()
            );
        }
        // Unlimited memory, swap unset: both unlimited.
        let r = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(-1i64).build().unwrap())
            .pids(LinuxPidsBuilder::default().limit(-1i64).build().unwrap())
            .build()
            .unwrap();
        cg.m.apply(&r).unwrap();
        let unlimited: u64 = cg.read("memory", "memory.limit_in_bytes").parse().unwrap();
        assert!(unlimited > 1 << 60, "{unlimited}");
        if has_memsw {
            assert_eq!(
                cg.read("memory", "memory.memsw.limit_in_bytes"),
                unlimited.to_string()
            );
        }
        assert_eq!(cg.read("pids", "pids.max"), "max");
    }

    #[test]
    fn refused_limits_name_what_is_wrong() {
        let Some(h) = host() else { return };
        let cg = Cg::new(&h, "");
        cg.m.create().unwrap();
        // The kernel clamps shares to 2..=262144 silently; we do not.
        let r = LinuxResourcesBuilder::default()
            .cpu(LinuxCpuBuilder::default().shares(1u64).build().unwrap())
            .build()
            .unwrap();
        let e = cg.m.apply(&r).unwrap_err();
        assert!(e.to_string().contains("cpu.shares"), "{e}");
        // A memory+swap below the memory limit.
        let e = cg.m.apply(&mem(64 * M, 32 * M)).unwrap_err();
        assert!(matches!(e, Error::InvalidResource { .. }), "{e}");
        // A kernel refusal names the file, the value and the errno.
        let r = LinuxResourcesBuilder::default()
            .cpu(LinuxCpuBuilder::default().cpus("999").build().unwrap())
            .build()
            .unwrap();
        let e = cg.m.apply(&r).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("cpuset.cpus") && msg.contains("\"999\""),
            "{msg}"
        );
        assert!(e.errno().is_some(), "{msg}");
        // unified is v2 only; hugetlb is not a v1 hierarchy on this host.
        let r = LinuxResourcesBuilder::default()
            .unified(std::collections::HashMap::from([(
                "memory.high".to_string(),
                "1M".to_string(),
            )]))
            .build()
            .unwrap();
        assert!(cg.m.apply(&r).unwrap_err().to_string().contains("unified"));
        if !h
            .mounts()
            .iter()
            .any(|m| m.controllers().contains(&"hugetlb".to_string()))
        {
            let r = LinuxResourcesBuilder::default()
                .hugepage_limits(vec![LinuxHugepageLimitBuilder::default()
                    .page_size("2MB")
                    .limit(2 * M)
                    .build()
                    .unwrap()])
                .build()
                .unwrap();
            let e = cg.m.apply(&r).unwrap_err();
            assert!(
                matches!(&e, Error::NotMounted { controller, .. } if controller == "hugetlb"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_task_joins_freezes_thaws_is_counted_and_is_killed_by_destroy() {
        let Some(h) = host() else { return };
        let mut cg = Cg::new(&h, "");
        cg.m.create().unwrap();
        let (pid, mut stdin, mut out) = cg.spawn_in(
            "read x; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo ready; exec sleep 1000",
        );
        assert_eq!(cg.m.procs().unwrap(), vec![pid]);
        let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        for c in ["memory", "freezer", "pids", "name=systemd"] {
            assert!(
                own.lines()
                    .any(|l| l.contains(&format!(":{c}:/{}", cg.top))),
                "{c}: {own}"
            );
        }
        if h.unified_mount().is_some() {
            assert!(own.lines().any(|l| l == format!("0::/{}", cg.top)), "{own}");
        }
        // Work inside the cgroup so its counters move.
        go(&mut stdin);
        assert_eq!(line(&mut out), "ready");
        let s = cg.m.stats().unwrap();
        assert!(s.cpu.usage.total > 0, "{s:?}");
        assert!(!s.cpu.usage.per_cpu.is_empty());
        assert!(s.memory.usage.usage > 0, "{s:?}");
        assert!(s.memory.usage.limit > 0);
        assert!(!s.memory.stats.is_empty());
        assert_eq!(s.pids.current, 1);

        cg.m.freeze().unwrap();
        assert_eq!(cg.m.freezer_state().unwrap(), FreezerState::Frozen);
        assert_eq!(cg.read("freezer", "freezer.state"), "FROZEN");
        cg.m.thaw().unwrap();
        assert_eq!(cg.m.freezer_state().unwrap(), FreezerState::Thawed);
        assert!(!cg.m.is_frozen().unwrap());

        let paths: BTreeMap<String, PathBuf> = cg.m.paths();
        cg.m.destroy().unwrap();
        for p in paths.values() {
            assert!(!p.exists(), "{} left", p.display());
        }
        let status = cg.take_child(pid).wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }

    #[test]
    fn destroy_kills_frozen_members_too() {
        let Some(h) = host() else { return };
        let mut cg = Cg::new(&h, "/c");
        cg.m.create().unwrap();
        let (pid, _stdin, _out) = cg.spawn_in("exec sleep 1000");
        let (pid2, _stdin2, _out2) = cg.spawn_in("exec sleep 1000");
        cg.m.freeze().unwrap();
        // Rebuilt from saved paths, as a later `warden-runc delete` would.
        let again = cgroups::from_paths(&cg.m.paths()).unwrap();
        assert!(again.is_frozen().unwrap());
        assert_eq!(again.procs().unwrap(), {
            let mut v = vec![pid, pid2];
            v.sort();
            v
        });
        again.destroy().unwrap();
        for p in cg.m.paths().values() {
            assert!(!p.exists(), "{} left", p.display());
            assert!(p.parent().unwrap().exists(), "the parent stays");
        }
        for p in [pid, pid2] {
            let st = cg.take_child(p).wait().unwrap();
            assert!(!st.success());
        }
    }

    #[test]
    fn a_pids_limit_makes_fork_fail() {
        let Some(h) = host() else { return };
        let mut cg = Cg::new(&h, "");
        cg.m.create().unwrap();
        let (_pid, mut stdin, mut out) =
            cg.spawn_in("read x; exec 2>&1; /bin/true; echo forked; exec sleep 1000");
        let r = LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(1i64).build().unwrap())
            .build()
            .unwrap();
        cg.m.apply(&r).unwrap();
        go(&mut stdin);
        // dash reports the failed fork and gives up on the script.
        let l = line(&mut out);
        assert!(l.contains("fork"), "{l:?}");
        assert_ne!(l, "forked");
        assert_eq!(cg.m.stats().unwrap().pids.limit, 1);
    }

    #[test]
    fn device_rules_are_enforced() {
        let Some(h) = host() else { return };
        let mut cg = Cg::new(&h, "");
        cg.m.create().unwrap();
        let (_pid, mut stdin, mut out) = cg.spawn_in(
            "read x; (exec 3</dev/zero) 2>/dev/null && echo zero-ok || echo zero-denied; \
         echo hi >/dev/null && echo null-ok; exec sleep 1000",
        );
        let r = LinuxResourcesBuilder::default()
            .devices(vec![rule(true, LinuxDeviceType::C, 1, 3, "rwm")])
            .build()
            .unwrap();
        cg.m.apply(&r).unwrap();
        go(&mut stdin);
        assert_eq!(line(&mut out), "zero-denied");
        assert_eq!(line(&mut out), "null-ok");
    }

    #[test]
    fn destroy_of_what_is_gone_is_fine() {
        let Some(h) = host() else { return };
        let cg = Cg::new(&h, "");
        cg.m.destroy().unwrap();
        cg.m.create().unwrap();
        cg.m.destroy().unwrap();
        cg.m.destroy().unwrap();
        assert!(cg.m.stats().is_err());
    }
}
