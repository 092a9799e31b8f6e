//! The cgroup v2 driver on the real kernel, in a directory of the host's cgroup2 hierarchy
//! that the test makes and treats as the hierarchy's root (on a hybrid host that is
//! /sys/fs/cgroup/unified/warden-test-<pid>-<n>), so nothing outside it is written: not even
//! the real root's cgroup.subtree_control. Needs root and a cgroup2 mount; skips otherwise.
//!
//! On a hybrid host the controllers are bound to v1, so only what needs no controller is
//! tested here (create, join, cgroup.procs, freeze via cgroup.freeze, cgroup.kill, cpu.stat,
//! remove); the limit writes are tested against a tempdir in the unit tests.

// In a module so that `cargo test cgroups` picks these tests by name.
mod cgroups_v2 {
    use std::io::{BufRead, BufReader};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use oci_spec::runtime::{
        LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxPidsBuilder,
        LinuxResourcesBuilder,
    };
    use warden_runtime::cgroups::{self, CgroupVersion, Error, FreezerState, Hierarchies, Manager};

    static N: AtomicUsize = AtomicUsize::new(0);

    /// A test-owned directory in the cgroup2 hierarchy, removed (after its helper processes are
    /// killed) when dropped.
    struct Root {
        dir: PathBuf,
        children: Vec<Child>,
    }

    impl Root {
        fn new() -> Option<Root> {
            if !nix::unistd::geteuid().is_root() {
                eprintln!("skipped: needs root");
                return None;
            }
            let h = Hierarchies::from_system().ok()?;
            let Some(m) = h.unified_mount() else {
                eprintln!("skipped: no cgroup2 mount");
                return None;
            };
            let dir = m.mount_point.join(format!(
                "warden-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir(&dir).expect("mkdir test root");
            Some(Root {
                dir,
                children: vec![],
            })
        }

        fn hierarchies(&self) -> Hierarchies {
            Hierarchies::unified(&self.dir)
        }

        fn sleep(&mut self) -> i32 {
            let c = Command::new("/bin/sleep")
                .arg("1000")
                .stdin(Stdio::null())
                .spawn()
                .expect("spawn sleep");
            let pid = c.id() as i32;
            self.children.push(c);
            pid
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

    impl Drop for Root {
        fn drop(&mut self) {
            for c in &mut self.children {
                let _ = c.kill();
                let _ = c.wait();
            }
            rm_tree(&self.dir);
        }
    }

    fn rm_tree(dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    rm_tree(&e.path());
                }
            }
        }
        // Members left by a failed test would keep it busy.
        if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            for p in procs
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        for _ in 0..100 {
            match std::fs::remove_dir(dir) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                _ => break,
            }
        }
    }

    fn events(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("cgroup.events")).unwrap()
    }

    #[test]
    fn join_freeze_thaw_and_destroy_with_a_live_member() {
        let Some(mut root) = Root::new() else { return };
        let m = root.hierarchies().v2_manager(Some("/c"), "c").unwrap();
        assert_eq!(m.version(), CgroupVersion::V2);
        m.create().unwrap();
        let dir = root.dir.join("c");
        assert!(dir.join("cgroup.procs").exists());

        let pid = root.sleep();
        m.add_task(pid).unwrap();
        assert_eq!(m.procs().unwrap(), vec![pid]);
        let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let rel = dir
            .strip_prefix(
                &Hierarchies::from_system()
                    .unwrap()
                    .unified_mount()
                    .unwrap()
                    .mount_point,
            )
            .unwrap()
            .to_path_buf();
        assert!(
            own.lines().any(|l| l == format!("0::/{}", rel.display())),
            "{own}"
        );
        assert!(events(&dir).contains("populated 1"));

        m.freeze().unwrap();
        assert!(events(&dir).contains("frozen 1"));
        assert_eq!(m.freezer_state().unwrap(), FreezerState::Frozen);
        m.thaw().unwrap();
        assert!(events(&dir).contains("frozen 0"));
        assert_eq!(m.freezer_state().unwrap(), FreezerState::Thawed);

        // Stats read what there is (cpu.stat exists without the cpu controller); no memory
        // limit reads as unlimited.
        let s = m.stats().unwrap();
        assert_eq!(s.memory.usage.limit, u64::MAX);

        // Rebuilt from the saved paths: finds the real hierarchy root by itself.
        let again = cgroups::from_paths(&m.paths()).unwrap();
        assert_eq!(again.version(), CgroupVersion::V2);
        again.freeze().unwrap();
        again.destroy().unwrap();
        assert!(!dir.exists());
        assert!(root.dir.exists(), "the parent stays");
        use std::os::unix::process::ExitStatusExt;
        let st = root.take_child(pid).wait().unwrap();
        assert_eq!(st.signal(), Some(libc::SIGKILL));
    }

    #[test]
    fn nested_cgroups_are_removed_deepest_first() {
        let Some(mut root) = Root::new() else { return };
        let m = root.hierarchies().v2_manager(Some("/a/b"), "b").unwrap();
        m.create().unwrap();
        let leaf = root.dir.join("a/b");
        // The container made cgroups of its own, with a member.
        std::fs::create_dir_all(leaf.join("x/y")).unwrap();
        let pid = root.sleep();
        std::fs::write(leaf.join("x/y/cgroup.procs"), pid.to_string()).unwrap();
        assert_eq!(m.procs().unwrap(), vec![pid]);
        m.destroy().unwrap();
        assert!(!leaf.exists());
        assert!(root.dir.join("a").exists());
        let _ = root.take_child(pid).wait();
    }

    #[test]
    fn limits_of_controllers_not_enabled_are_refused_by_name() {
        let Some(root) = Root::new() else { return };
        let m = root.hierarchies().v2_manager(Some("/c"), "c").unwrap();
        m.create().unwrap();
        let avail = std::fs::read_to_string(root.dir.join("c/cgroup.controllers")).unwrap();
        if avail.split_whitespace().any(|c| c == "pids") {
            eprintln!("pids is enabled here; nothing to refuse");
            m.destroy().unwrap();
            return;
        }
        let r = LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(5i64).build().unwrap())
            .build()
            .unwrap();
        let e = m.apply(&r).unwrap_err();
        assert!(matches!(e, Error::Unsupported { .. }), "{e}");
        assert!(
            e.to_string().contains("pids controller is not enabled"),
            "{e}"
        );
        // Empty resources write nothing and succeed.
        m.apply(&Default::default()).unwrap();
        m.destroy().unwrap();
    }

    #[test]
    fn cgroup_kill_takes_a_whole_subtree() {
        let Some(mut root) = Root::new() else { return };
        let m = root.hierarchies().v2_manager(Some("/c"), "c").unwrap();
        m.create().unwrap();
        // A shell with a child of its own, both in the cgroup.
        let mut c = Command::new("/bin/sh")
            .arg("-c")
            .arg("read x; sleep 1000 & echo started; wait")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = c.id() as i32;
        let mut stdin = c.stdin.take().unwrap();
        let mut out = BufReader::new(c.stdout.take().unwrap());
        root.children.push(c);
        m.add_task(pid).unwrap();
        use std::io::Write;
        stdin.write_all(b"go\n").unwrap();
        let mut l = String::new();
        out.read_line(&mut l).unwrap();
        assert_eq!(l.trim(), "started");
        assert_eq!(m.procs().unwrap().len(), 2);
        m.destroy().unwrap();
        assert!(!root.dir.join("c").exists());
        let _ = root.take_child(pid).wait();
    }

    fn dev(
        allow: bool,
        t: LinuxDeviceType,
        ma: Option<i64>,
        mi: Option<i64>,
        a: &str,
    ) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(t)
            .access(a.to_string());
        if let Some(m) = ma {
            b = b.major(m);
        }
        if let Some(m) = mi {
            b = b.minor(m);
        }
        b.build().unwrap()
    }

    /// The fds of this process that are eBPF programs.
    fn bpf_prog_fds() -> Vec<String> {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read_link(e.path())
                    .is_ok_and(|l| l.to_string_lossy() == "anon_inode:bpf-prog")
            })
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn device_rules_are_enforced_by_an_ebpf_program() {
        let Some(mut root) = Root::new() else { return };
        let m = root.hierarchies().v2_manager(Some("/c"), "c").unwrap();
        m.create().unwrap();
        use LinuxDeviceType::{A, B, C};
        let rules = vec![
            dev(false, A, None, None, "rwm"),
            dev(true, C, None, None, "m"),
            dev(true, C, Some(1), Some(3), "rwm"), // null: everything
            dev(true, C, Some(1), Some(5), "r"),   // zero: read only
            dev(true, C, Some(1), Some(7), "rwm"), // full: all, then no write (the last wins)
            dev(false, C, Some(1), Some(7), "w"),
            dev(true, C, Some(1), Some(9), "r"), // urandom: read and write, in two rules
            dev(true, C, Some(1), Some(9), "w"),
            dev(true, B, Some(1), Some(3), "rwm"), // a block 1:3 is not the char 1:3
            dev(false, C, Some(1), Some(3), "m"),  // the last rule takes mknod of 1:3 away
        ];
        let r = LinuxResourcesBuilder::default()
            .devices(rules)
            .build()
            .unwrap();
        m.apply(&r).unwrap();
        assert_eq!(
            bpf_prog_fds(),
            Vec::<String>::new(),
            "the program fd is closed"
        );

        let checks = r#"
            t null-rw 'exec 3<>/dev/null'
            t zero-r 'exec 3</dev/zero'
            t zero-w 'exec 3>/dev/zero'
            t zero-rw 'exec 3<>/dev/zero'
            t full-r 'exec 3</dev/full'
            t full-w 'exec 3>/dev/full'
            t full-rw 'exec 3<>/dev/full'
            t urandom-rw 'exec 3<>/dev/urandom'
            t random-r 'exec 3</dev/random'
            t mknod-c18 'mknod "$D/c18" c 1 8'
            t mknod-c13 'mknod "$D/c13" c 1 3'
            t mknod-b13 'mknod "$D/b13" b 1 3'
            t mknod-b70 'mknod "$D/b70" b 7 0'
            t c18-r 'exec 3<"$D/c18"'
        "#;
        let (lines, err) = in_cgroup(&mut root, &m, checks);
        assert_eq!(
            lines,
            [
                "null-rw ok",
                "zero-r ok",
                "zero-w no",
                "zero-rw no",
                "full-r ok",
                "full-w no",
                "full-rw no",
                "urandom-rw ok",
                "random-r no",
                "mknod-c18 ok",
                "mknod-c13 no",
                "mknod-b13 ok",
                "mknod-b70 no",
                "c18-r no",
            ],
            "stderr: {err}"
        );
        // Refused by the device filter (EPERM), not by file permissions.
        assert!(err.contains("Operation not permitted"), "{err}");
        assert!(!err.contains("Permission denied"), "{err}");
        // This process is not in the cgroup: the program does not govern it.
        std::fs::File::open("/dev/random").unwrap();

        m.destroy().unwrap();
        assert!(!root.dir.join("c").exists());
    }

    /// Runs the device checks `checks` (`t NAME 'COMMAND'` lines, `$D` a scratch dir) in a
    /// shell moved into the cgroup of `m` before it starts them: each prints `NAME ok` or
    /// `NAME no`. Returns those lines and what the commands wrote to stderr.
    fn in_cgroup(root: &mut Root, m: &dyn Manager, checks: &str) -> (Vec<String>, String) {
        let tmp = tempfile::tempdir().unwrap();
        let script = format!(
            "read x\nt() {{ if sh -c \"$2\" 2>>\"$D/err\"; then echo \"$1 ok\"; else echo \"$1 no\"; fi; }}\n{checks}"
        );
        let mut c = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .env("D", tmp.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = c.id() as i32;
        let mut stdin = c.stdin.take().unwrap();
        let out = c.stdout.take().unwrap();
        root.children.push(c);
        m.add_task(pid).unwrap();
        use std::io::{Read, Write};
        stdin.write_all(b"go\n").unwrap();
        let mut text = String::new();
        BufReader::new(out).read_to_string(&mut text).unwrap();
        let st = root.take_child(pid).wait().unwrap();
        assert!(st.success(), "{st:?}");
        let err = std::fs::read_to_string(tmp.path().join("err")).unwrap_or_default();
        (text.lines().map(String::from).collect(), err)
    }

    fn opens(root: &mut Root, m: &dyn Manager) -> Vec<String> {
        let checks = "t null-rw 'exec 3<>/dev/null'\nt zero-r 'exec 3</dev/zero'\n";
        in_cgroup(root, m, checks).0
    }

    #[test]
    fn an_update_replaces_the_device_rules_and_can_widen_them() {
        let Some(mut root) = Root::new() else { return };
        let m = root.hierarchies().v2_manager(Some("/u"), "u").unwrap();
        m.create().unwrap();
        use LinuxDeviceType::{A, C};
        let apply = |rules| {
            let r = LinuxResourcesBuilder::default()
                .devices(rules)
                .build()
                .unwrap();
            m.apply(&r).unwrap();
        };
        apply(vec![
            dev(false, A, None, None, "rwm"),
            dev(true, C, Some(1), Some(3), "rw"),
        ]);
        assert_eq!(opens(&mut root, &m), ["null-rw ok", "zero-r no"]);
        // The second set replaces the first: /dev/zero is allowed now, /dev/null no longer.
        apply(vec![
            dev(false, A, None, None, "rwm"),
            dev(true, C, Some(1), Some(5), "r"),
        ]);
        assert_eq!(opens(&mut root, &m), ["null-rw no", "zero-r ok"]);
        assert_eq!(bpf_prog_fds(), Vec::<String>::new(), "no program fd kept");
        m.destroy().unwrap();
    }
}
