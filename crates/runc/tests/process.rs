//! What the container's process sees from inside: its pid, hostname, mounts, user and groups,
//! capabilities, rlimits, cwd, environment, umask, and what it may not touch.

mod common;

use std::collections::BTreeSet;
use std::fs;

use common::*;
use serde_json::{json, Value};

fn args(s: &mut Value, argv: &[&str]) {
    s["process"]["args"] = json!(argv);
}

#[test]
fn init_is_pid_1() {
    let env = Env::new("pid1");
    let out = env.run_ok(&["sh", "-c", "echo $$; cat /proc/self/stat | cut -d' ' -f4"]);
    // The shell is pid 1, so the cat it starts has parent 1.
    assert_eq!(out.lines(), ["1", "1"], "{}", out.describe());
}

#[test]
fn hostname_and_domainname_from_config() {
    let env = Env::new("hostname");
    let out = env
        .run_container(&[], |s| {
            s["hostname"] = "box-7".into();
            s["domainname"] = "example.test".into();
            args(
                s,
                &["sh", "-c", "hostname; cat /proc/sys/kernel/domainname"],
            );
        })
        .ok();
    assert_eq!(out.lines(), ["box-7", "example.test"]);
    // The host's own name is untouched.
    assert_ne!(
        fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim(),
        "box-7"
    );
}

#[test]
fn mounts_are_the_configured_ones() {
    let env = Env::new("mounts");
    let out = env.run_ok(&["cat", "/proc/self/mountinfo"]);
    let mounts = parse_mountinfo(&out.stdout);
    let find = |mp: &str| {
        mounts
            .iter()
            .rfind(|m| m.mount_point == mp)
            .unwrap_or_else(|| panic!("no mount at {mp}:\n{}", out.stdout))
    };
    assert!(
        find("/").is_ro(),
        "root.readonly: / should be ro:\n{}",
        out.stdout
    );
    for (mp, fstype) in [
        ("/proc", "proc"),
        ("/dev", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
        ("/dev/mqueue", "mqueue"),
        ("/sys", "sysfs"),
    ] {
        assert_eq!(find(mp).fstype, fstype, "{mp}:\n{}", out.stdout);
    }
    assert!(
        find("/sys").is_ro(),
        "/sys is mounted ro in the config:\n{}",
        out.stdout
    );
    // The config mounts /sys/fs/cgroup ro: on v1 the hierarchies under it must be ro (the
    // tmpfs holding them may be either, as with runc).
    let cg = find("/sys/fs/cgroup");
    assert!(cg.is_ro() || cg.fstype == "tmpfs", "{cg:?}");
    let hierarchies: Vec<_> = mounts
        .iter()
        .filter(|m| m.mount_point.starts_with("/sys/fs/cgroup") && m.fstype.starts_with("cgroup"))
        .collect();
    assert!(
        !hierarchies.is_empty(),
        "no cgroup mounted:\n{}",
        out.stdout
    );
    for m in hierarchies {
        assert!(
            m.is_ro(),
            "/sys/fs/cgroup is ro in the config: {m:?}\n{}",
            out.stdout
        );
    }
    let dev = find("/dev");
    assert!(dev.options.iter().any(|o| o == "nosuid"), "{dev:?}");
    let shm = find("/dev/shm");
    for o in ["nosuid", "noexec", "nodev"] {
        assert!(
            shm.options.iter().any(|x| x == o),
            "/dev/shm lacks {o}: {shm:?}"
        );
    }

    // Nothing else: no mount of the host's leaks in.
    let spec = warden_runtime::spec::default_spec(None);
    let mut allowed: BTreeSet<String> = [
        "/",
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    for key in ["maskedPaths", "readonlyPaths"] {
        for p in spec["linux"][key].as_array().unwrap() {
            allowed.insert(p.as_str().unwrap().to_string());
        }
    }
    // Device nodes may be bind mounts of the host's.
    for d in ["null", "zero", "full", "random", "urandom", "tty", "ptmx"] {
        allowed.insert(format!("/dev/{d}"));
    }
    for m in &mounts {
        assert!(
            allowed.contains(&m.mount_point)
                || m.mount_point == "/sys/fs/cgroup"
                || m.mount_point.starts_with("/sys/fs/cgroup/"),
            "unexpected mount {m:?} in the container:\n{}",
            out.stdout
        );
    }
}

#[test]
fn user_groups_and_additional_gids() {
    let env = Env::new("user");
    let out = env
        .run_container(&[], |s| {
            s["process"]["user"] = json!({"uid": 1000, "gid": 1001, "additionalGids": [10, 20]});
            args(
                s,
                &[
                    "sh",
                    "-c",
                    "id -u; id -g; grep -E '^(Uid|Gid|Groups):' /proc/self/status",
                ],
            );
        })
        .ok();
    let l = out.lines();
    assert_eq!(l[0], "1000", "{}", out.stdout);
    assert_eq!(l[1], "1001", "{}", out.stdout);
    let field = |k: &str| {
        status_field(&out.stdout, k)
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(field("Uid"), ["1000"; 4], "real, effective, saved, fs uid");
    assert_eq!(field("Gid"), ["1001"; 4], "real, effective, saved, fs gid");
    assert_eq!(field("Groups"), ["10", "20"], "supplementary groups");
}

#[test]
fn callers_groups_and_umask_do_not_leak_in() {
    // The runtime runs with supplementary groups and a umask of its own: the container gets
    // the config's (none, and runc's default umask 0022).
    let env = Env::new("caller-creds");
    let id = env.new_id();
    let b = env.bundle(&id, |s| {
        args(
            s,
            &[
                "sh",
                "-c",
                "umask; grep -E '^(Uid|Gid|Groups):' /proc/self/status",
            ],
        )
    });
    let out = env
        .spawn_with(&["run", "-b", b.to_str().unwrap(), &id], |cmd| {
            // SAFETY: setgroups and umask between fork and exec, no allocation.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(cmd, || {
                    let groups = [4242 as libc::gid_t, 4343];
                    if libc::setgroups(2, groups.as_ptr()) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::umask(0o077);
                    Ok(())
                });
            }
        })
        .wait(CMD_TIMEOUT)
        .ok();
    assert_eq!(out.lines()[0], "0022", "{}", out.stdout);
    let field = |k: &str| {
        status_field(&out.stdout, k)
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(field("Uid"), ["0"; 4]);
    assert_eq!(field("Gid"), ["0"; 4]);
    assert!(
        field("Groups").is_empty(),
        "the caller's groups leaked in:\n{}",
        out.stdout
    );
}

#[test]
fn capabilities_are_exactly_the_configured_ones() {
    let env = Env::new("caps");
    let caps = [
        "CAP_CHOWN",
        "CAP_KILL",
        "CAP_NET_BIND_SERVICE",
        "CAP_NET_RAW",
        "CAP_AUDIT_WRITE",
    ];
    let out = env
        .run_container(&[], |s| {
            set_caps(s, &caps);
            args(s, &["cat", "/proc/self/status"]);
        })
        .ok();
    let want = cap_mask(&caps);
    for k in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(status_field(&out.stdout, k), want, "{k}");
    }
    assert_eq!(status_field(&out.stdout, "CapInh"), "0000000000000000");
    assert_eq!(status_field(&out.stdout, "CapAmb"), "0000000000000000");
    // The default spec asks for noNewPrivileges.
    assert_eq!(status_field(&out.stdout, "NoNewPrivs"), "1");

    // The default set, for a second opinion with other bits.
    let out = env.run_ok(&["cat", "/proc/self/status"]);
    let want = cap_mask(&["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    assert_eq!(want, "0000000020000420");
    for k in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(
            status_field(&out.stdout, k),
            want,
            "{k} with the default spec"
        );
    }
}

#[test]
fn capabilities_of_a_non_root_user_come_through_ambient() {
    let env = Env::new("caps-user");
    let caps = ["CAP_NET_BIND_SERVICE", "CAP_KILL"];
    let out = env
        .run_container(&[], |s| {
            let list = json!(caps);
            s["process"]["user"] = json!({"uid": 1000, "gid": 1000});
            s["process"]["capabilities"] = json!({
                "bounding": list, "effective": list, "permitted": list,
                "inheritable": list, "ambient": list
            });
            args(s, &["cat", "/proc/self/status"]);
        })
        .ok();
    let want = cap_mask(&caps);
    for k in ["CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"] {
        assert_eq!(status_field(&out.stdout, k), want, "{k}");
    }
}

#[test]
fn rlimits_are_applied() {
    let env = Env::new("rlimits");
    let out = env
        .run_container(&[], |s| {
            s["process"]["rlimits"] = json!([
                {"type": "RLIMIT_NOFILE", "soft": 777, "hard": 888},
                {"type": "RLIMIT_NPROC", "soft": 333, "hard": 444}
            ]);
            args(
                s,
                &["sh", "-c", "ulimit -n; ulimit -Hn; cat /proc/self/limits"],
            );
        })
        .ok();
    let l = out.lines();
    assert_eq!(l[..2], ["777", "888"], "{}", out.stdout);
    let row = |name: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in\n{}", out.stdout))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(row("Max open files")[3..5], ["777", "888"]);
    assert_eq!(row("Max processes")[2..4], ["333", "444"]);
}

#[test]
fn cwd_env_and_umask() {
    let env = Env::new("cwd-env");
    let out = env
        .run_container(&[], |s| {
            s["process"]["cwd"] = "/etc".into();
            s["process"]["env"] = json!(["PATH=/bin:/usr/bin", "FOO=bar baz", "EMPTY="]);
            s["process"]["user"]["umask"] = 0o027.into();
            args(s, &["sh", "-c", "pwd; umask; grep Umask /proc/self/status"]);
        })
        .ok();
    let l = out.lines();
    assert_eq!(l[0], "/etc", "cwd:\n{}", out.stdout);
    assert_eq!(l[1], "0027", "umask:\n{}", out.stdout);
    assert_eq!(status_field(&out.stdout, "Umask"), "0027");

    // The environment the process was exec'd with: the configured one plus HOME (runc adds
    // HOME from the container's /etc/passwd when it is not set).
    let out = env
        .run_container(&[], |s| {
            s["process"]["env"] = json!(["PATH=/bin:/usr/bin", "FOO=bar baz", "EMPTY="]);
            args(s, &["cat", "/proc/self/environ"]);
        })
        .ok();
    let got: BTreeSet<&str> = out.stdout.split('\0').filter(|s| !s.is_empty()).collect();
    let want: BTreeSet<&str> = ["PATH=/bin:/usr/bin", "FOO=bar baz", "EMPTY=", "HOME=/root"]
        .into_iter()
        .collect();
    assert_eq!(got, want);
}

#[test]
fn readonly_root_cannot_be_written() {
    let env = Env::new("ro-root");
    let out = env.run_ok(&[
        "sh",
        "-c",
        "touch /x-ro-root-test; echo rc=$?; touch /tmp/y; echo tmp=$?",
    ]);
    assert!(out.stdout.contains("rc=1"), "{}", out.describe());
    assert!(out.stdout.contains("tmp=1"), "{}", out.describe());
    assert!(
        out.stderr.contains("Read-only file system"),
        "{}",
        out.describe()
    );
    assert!(!rootfs().join("x-ro-root-test").exists());

    // A writable root for contrast (the container gets its own tmpfs on /tmp instead of the
    // shared rootfs): the same touch works.
    let out = env
        .run_container(&[], |s| {
            s["mounts"].as_array_mut().unwrap().push(json!({
                "destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]
            }));
            args(s, &["sh", "-c", "touch /tmp/y; echo tmp=$?"]);
        })
        .ok();
    assert_eq!(out.stdout.trim(), "tmp=0", "{}", out.describe());
}

#[test]
fn masked_paths_are_empty() {
    let env = Env::new("masked");
    // What this host has to hide (its kernel has no /proc/kcore: a masked path that does not
    // exist is skipped, so kcore reads as empty either way).
    assert!(!fs::read_to_string("/proc/keys").unwrap().is_empty());
    assert!(!fs::read_to_string("/proc/timer_list").unwrap().is_empty());
    let out = env.run_ok(&[
        "sh",
        "-c",
        "cat /proc/keys | wc -c; cat /proc/timer_list | wc -c; ls -A /sys/firmware | wc -l; \
         { head -c 16 /proc/kcore 2>/dev/null; true; } | wc -c; \
         grep -c ' /proc/keys ' /proc/self/mountinfo",
    ]);
    let l: Vec<i64> = out
        .lines()
        .iter()
        .map(|s| s.trim().parse().unwrap())
        .collect();
    assert_eq!(
        l[0],
        0,
        "/proc/keys must read as empty:\n{}",
        out.describe()
    );
    assert_eq!(
        l[1],
        0,
        "/proc/timer_list must read as empty:\n{}",
        out.describe()
    );
    assert_eq!(
        l[2],
        0,
        "/sys/firmware must look empty:\n{}",
        out.describe()
    );
    assert_eq!(
        l[3],
        0,
        "/proc/kcore must read as empty:\n{}",
        out.describe()
    );
    assert!(
        l[4] >= 1,
        "/proc/keys has no mount over it:\n{}",
        out.describe()
    );
    // The host still has its own.
    assert!(fs::read_dir("/sys/firmware").unwrap().next().is_some());
}

#[test]
fn readonly_paths_cannot_be_written() {
    let env = Env::new("ro-paths");
    // CAP_SYS_ADMIN, so only the read-only mount stands between the process and the file.
    let out = env
        .run_container(&[], |s| {
            set_caps(s, &["CAP_SYS_ADMIN", "CAP_KILL"]);
            s["hostname"] = "ro-paths".into();
            args(
                s,
                &[
                    "sh",
                    "-c",
                    "echo changed > /proc/sys/kernel/hostname; echo rc=$?; hostname; \
                     grep ' /proc/sys ' /proc/self/mountinfo",
                ],
            );
        })
        .ok();
    let l = out.lines();
    assert_eq!(l[0], "rc=1", "{}", out.describe());
    assert_eq!(l[1], "ro-paths", "{}", out.describe());
    assert!(
        out.stderr.contains("Read-only file system"),
        "{}",
        out.describe()
    );
    let m = parse_mountinfo(&out.stdout);
    assert!(
        m.iter()
            .rfind(|m| m.mount_point == "/proc/sys")
            .is_some_and(|m| m.is_ro()),
        "/proc/sys should be a read-only mount:\n{}",
        out.stdout
    );

    // Without it in readonlyPaths the same write works: the test can tell.
    let out = env
        .run_container(&[], |s| {
            set_caps(s, &["CAP_SYS_ADMIN", "CAP_KILL"]);
            s["hostname"] = "ro-paths".into();
            s["linux"]["readonlyPaths"] = json!(["/proc/bus"]);
            args(
                s,
                &[
                    "sh",
                    "-c",
                    "echo changed > /proc/sys/kernel/hostname; echo rc=$?; hostname",
                ],
            );
        })
        .ok();
    assert_eq!(out.lines(), ["rc=0", "changed"], "{}", out.describe());
}

#[test]
fn bind_mounts_ro_and_rw() {
    let env = Env::new("binds");
    let ro = host_dir(&env, "ro-src", &[("hello", "hi from the host\n")]);
    let rw = host_dir(&env, "rw-src", &[]);
    let out = env
        .run_container(&[], |s| {
            let mounts = s["mounts"].as_array_mut().unwrap();
            mounts.push(json!({"destination": "/mnt", "type": "bind", "source": ro,
                               "options": ["rbind", "ro"]}));
            mounts.push(json!({"destination": "/home", "type": "none", "source": rw,
                               "options": ["rbind", "rw"]}));
            args(
                s,
                &[
                    "sh",
                    "-c",
                    "cat /mnt/hello; touch /mnt/x; echo ro=$?; echo data > /home/new; echo rw=$?",
                ],
            );
        })
        .ok();
    assert_eq!(
        out.lines(),
        ["hi from the host", "ro=1", "rw=0"],
        "{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("Read-only file system"),
        "{}",
        out.describe()
    );
    assert_eq!(fs::read_to_string(rw.join("new")).unwrap(), "data\n");
    assert!(!ro.join("x").exists());
}

#[test]
fn no_pivot_still_confines_the_root() {
    let env = Env::new("no-pivot");
    let out = env
        .run_container(&["--no-pivot"], |s| {
            args(
                s,
                &[
                    "sh",
                    "-c",
                    "ls /; echo ---; cat /proc/self/mountinfo; touch /x; echo rc=$?",
                ],
            )
        })
        .ok();
    let (ls, rest) = out.stdout.split_once("---\n").unwrap();
    let entries: BTreeSet<&str> = ls.split_whitespace().collect();
    let want: BTreeSet<String> = fs::read_dir(rootfs())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(
        entries,
        want.iter().map(String::as_str).collect(),
        "{}",
        out.stdout
    );
    let mounts = parse_mountinfo(rest);
    assert!(
        mounts
            .iter()
            .any(|m| m.mount_point == "/proc" && m.fstype == "proc"),
        "{rest}"
    );
    assert!(
        rest.contains("rc=1"),
        "root must stay read-only without pivot_root:\n{}",
        out.describe()
    );
}

#[test]
fn default_devices_exist() {
    let env = Env::new("devices");
    let out = env.run_ok(&[
        "sh",
        "-c",
        "for d in null zero full random urandom tty; do test -c /dev/$d && echo $d; done; \
         for l in fd stdin stdout stderr; do test -L /dev/$l && echo $l; done; \
         { test -L /dev/ptmx || test -c /dev/ptmx; } && echo ptmx; \
         head -c 5 /dev/zero | wc -c; echo x > /dev/null && echo null-ok",
    ]);
    assert_eq!(
        out.lines(),
        [
            "null", "zero", "full", "random", "urandom", "tty", "fd", "stdin", "stdout", "stderr",
            "ptmx", "5", "null-ok"
        ],
        "{}",
        out.describe()
    );
}

#[test]
fn network_namespace_has_only_loopback() {
    let env = Env::new("netns");
    let out = env.run_ok(&["cat", "/proc/net/dev"]);
    let ifaces: Vec<&str> = out
        .stdout
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(str::trim))
        .collect();
    assert_eq!(ifaces, ["lo"], "{}", out.stdout);
}

#[test]
fn oom_score_adj_and_no_new_privileges_follow_the_config() {
    let env = Env::new("oom-nnp");
    let out = env
        .run_container(&[], |s| {
            s["process"]["oomScoreAdj"] = json!(500);
            s["process"]["noNewPrivileges"] = json!(false);
            args(
                s,
                &[
                    "sh",
                    "-c",
                    "cat /proc/self/oom_score_adj; grep NoNewPrivs /proc/self/status",
                ],
            );
        })
        .ok();
    let lines = out.lines();
    assert_eq!(lines[0], "500", "{}", out.describe());
    assert_eq!(status_field(&out.stdout, "NoNewPrivs"), "0");
}

#[test]
fn devices_listed_in_the_config_are_created_and_allowed() {
    let env = Env::new("config-devices");
    let out = env
        .run_container(&[], |s| {
            s["linux"]["devices"] = json!([
                {"path": "/dev/warden-null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600},
                {"path": "/dev/sub/owned", "type": "c", "major": 1, "minor": 5,
                 "fileMode": 0o640, "uid": 1, "gid": 2}
            ]);
            args(
                s,
                &["sh", "-c", "stat -c '%F %t:%T %a %u:%g' /dev/warden-null /dev/sub/owned; \
                   echo x > /dev/warden-null && echo written"],
            );
        })
        .ok();
    assert_eq!(
        out.lines(),
        [
            "character special file 1:3 600 0:0",
            "character special file 1:5 640 1:2",
            "written"
        ],
        "{}",
        out.describe()
    );
}

#[test]
fn rootfs_propagation_is_applied() {
    let env = Env::new("propagation");
    let root_line = |out: &Out| -> String {
        out.stdout
            .lines()
            .find(|l| l.split(' ').nth(4) == Some("/"))
            .unwrap_or_else(|| panic!("no / in {}", out.stdout))
            .to_string()
    };
    // By default nothing the container mounts propagates to the host ("/" is not shared).
    let out = env.run_ok(&["cat", "/proc/self/mountinfo"]);
    assert!(!root_line(&out).contains("shared:"), "{}", root_line(&out));
    let out = env
        .run_container(&[], |s| {
            s["linux"]["rootfsPropagation"] = json!("rshared");
            args(s, &["cat", "/proc/self/mountinfo"]);
        })
        .ok();
    let line = root_line(&out);
    assert!(line.contains("shared:"), "{line}");
    let id = env.new_id();
    let b = env.bundle(&id, |s| s["linux"]["rootfsPropagation"] = json!("sideways"));
    env.create(&id, &b)
        .fails_with("unknown rootfsPropagation \"sideways\"");
    env.assert_clean(&id);
}

#[test]
fn namespaced_sysctls_are_set_and_others_refused() {
    let env = Env::new("sysctl");
    let host_ttl = fs::read_to_string("/proc/sys/net/ipv4/ip_default_ttl").unwrap();
    let out = env
        .run_container(&[], |s| {
            s["linux"]["sysctl"] =
                json!({"net.ipv4.ip_default_ttl": "77", "kernel.shmmni": "1234"});
            args(
                s,
                &[
                    "sh",
                    "-c",
                    "cat /proc/sys/net/ipv4/ip_default_ttl /proc/sys/kernel/shmmni",
                ],
            );
        })
        .ok();
    assert_eq!(out.lines(), ["77", "1234"], "{}", out.describe());
    assert_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_default_ttl").unwrap(),
        host_ttl,
        "the host's value changed"
    );
    for (sysctl, want, drop_netns) in [
        (
            "kernel.panic",
            "sysctl \"kernel.panic\" is not namespaced",
            false,
        ),
        (
            "net.ipv4.ip_default_ttl",
            "the container does not have its own namespace",
            true,
        ),
    ] {
        let id = env.new_id();
        let b = env.bundle(&id, |s| {
            s["linux"]["sysctl"] = json!({ sysctl: "1" });
            if drop_netns {
                s["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|n| n["type"] != "network");
            }
        });
        env.create(&id, &b).fails_with(want);
        env.assert_clean(&id);
    }
}

#[test]
fn signals_the_caller_ignored_are_not_ignored_in_the_container() {
    // Run as `nohup` would (SIGHUP ignored) and with SIGUSR2 and SIGINT ignored too: the
    // container's process starts with nothing ignored, as in a fresh shell, so its traps work.
    let env = Env::new("sig-ignored");
    let id = env.new_id();
    let b = env.bundle(&id, |s| {
        args(
            s,
            &[
                "sh",
                "-c",
                "grep SigIgn /proc/self/status; trap 'echo got-hup' HUP; kill -HUP $$",
            ],
        )
    });
    let out = env
        .spawn_with(&["run", "-b", b.to_str().unwrap(), &id], |c| {
            use std::os::unix::process::CommandExt;
            // SAFETY: only signal(2) between fork and exec.
            unsafe {
                c.pre_exec(|| {
                    for s in [libc::SIGHUP, libc::SIGUSR2, libc::SIGINT] {
                        libc::signal(s, libc::SIG_IGN);
                    }
                    Ok(())
                });
            }
        })
        .wait(CMD_TIMEOUT)
        .ok();
    let lines = out.lines();
    assert_eq!(
        lines,
        ["SigIgn:\t0000000000000000", "got-hup"],
        "{}",
        out.describe()
    );
    env.assert_clean(&id);
}

/// Fields `n` (1-based, as proc(5) counts them) of `/proc/<pid>/stat`.
fn stat_field(pid: i32, n: usize) -> String {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = &text[text.rfind(')').unwrap() + 2..];
    rest.split_whitespace().nth(n - 3).unwrap().to_string()
}

/// ioprio_get(IOPRIO_WHO_PROCESS, pid): class << 13 | level.
fn ioprio_of(pid: i32) -> i64 {
    // SAFETY: ioprio_get takes integers only.
    let r = unsafe { libc::syscall(libc::SYS_ioprio_get, 1, pid) };
    assert!(
        r >= 0,
        "ioprio_get({pid}): {}",
        std::io::Error::last_os_error()
    );
    r
}

/// The pid of a started container's init.
fn started_with(env: &Env, edit: impl FnOnce(&mut Value)) -> (String, i32) {
    let id = env.created(|s| {
        args(s, &["sleep", "30"]);
        edit(s);
    });
    env.runc(&["start", &id]).ok();
    let pid = env.state(&id)["pid"].as_i64().unwrap() as i32;
    (id, pid)
}

#[test]
fn personality_linux32_is_set_before_exec() {
    // runc 1.1.5 ignores linux.personality silently (`uname -m` says x86_64); crun 1.8
    // implements it: where crun is installed it runs the same bundle first.
    let env = Env::new("personality");
    let script = "uname -m; cat /proc/self/personality";
    let id = env.new_id();
    let b = env.bundle(&id, |s| {
        // crun 1.8 refuses any ociVersion after 1.0.2.
        s["ociVersion"] = json!("1.0.2");
        s["linux"]["personality"] = json!({"domain": "LINUX32"});
        args(s, &["sh", "-c", script]);
    });
    if let Some(theirs) = crun(&env, &b, &id) {
        assert_eq!(theirs, "i686\n00000008\n");
    }
    let out = env.runc(&["run", "-b", b.to_str().unwrap(), &id]).ok();
    assert_eq!(out.lines(), ["i686", "00000008"], "{}", out.describe());
    env.assert_clean(&id);

    // Flags of <linux/personality.h> by name (runc 1.2 ignores them with a warning).
    let out = env
        .run_container(&[], |s| {
            s["linux"]["personality"] = json!({"domain": "LINUX", "flags": ["ADDR_NO_RANDOMIZE"]});
            args(s, &["sh", "-c", script]);
        })
        .ok();
    assert_eq!(out.lines(), ["x86_64", "00040000"], "{}", out.describe());

    // exec'd processes get it too (runc's setns init sets it as well).
    let (id, _) = started_with(&env, |s| {
        s["linux"]["personality"] = json!({"domain": "LINUX32"});
    });
    let out = env.runc(&["exec", &id, "uname", "-m"]).ok();
    assert_eq!(out.lines(), ["i686"], "{}", out.describe());
}

#[test]
fn scheduler_policy_nice_and_priority_are_set() {
    // runc 1.1 has no process.scheduler (runc 1.2 sets it with sched_setattr, as here).
    // From the host: /proc/<pid>/stat field 19 is the nice value, 40 the real-time
    // priority, 41 the policy (0 OTHER, 1 FIFO, 2 RR, 3 BATCH, 5 IDLE, 6 DEADLINE).
    let env = Env::new("scheduler");
    for (sched, nice, policy) in [
        (json!({"policy": "SCHED_BATCH", "nice": 7}), "7", "3"),
        (json!({"policy": "SCHED_OTHER", "nice": -5}), "-5", "0"),
        (json!({"policy": "SCHED_IDLE"}), "0", "5"),
        (
            json!({"policy": "SCHED_DEADLINE", "runtime": 10_000_000, "deadline": 20_000_000,
                   "period": 20_000_000}),
            "0",
            "6",
        ),
    ] {
        let (id, pid) = started_with(&env, |s| s["process"]["scheduler"] = sched.clone());
        assert_eq!(
            (stat_field(pid, 19), stat_field(pid, 41)),
            (nice.to_string(), policy.to_string()),
            "{sched}"
        );
        env.runc(&["delete", "--force", &id]).ok();
    }
    // SCHED_FLAG_RESET_ON_FORK: the shell's children do not inherit its negative nice.
    let out = env
        .run_container(&[], |s| {
            s["process"]["scheduler"] =
                json!({"policy": "SCHED_OTHER", "nice": -3, "flags": ["SCHED_FLAG_RESET_ON_FORK"]});
            args(
                s,
                &[
                    "sh",
                    "-c",
                    "cut -d' ' -f19,41 /proc/self/stat; cut -d' ' -f19,41 /proc/$$/stat",
                ],
            );
        })
        .ok();
    assert_eq!(out.lines(), ["0 0", "-3 0"], "{}", out.describe());

    // A real-time policy. On a cgroup v1 host with real-time group scheduling the
    // container's cgroup has no real-time runtime, so the kernel refuses it: a clear error
    // naming the field, and nothing left. Elsewhere it is set.
    let rt_group =
        !cgroup_v2() && std::path::Path::new("/sys/fs/cgroup/cpu/cpu.rt_runtime_us").exists();
    let id = env.new_id();
    let b = env.bundle(&id, |s| {
        args(s, &["sleep", "30"]);
        s["process"]["scheduler"] = json!({"policy": "SCHED_FIFO", "priority": 10});
    });
    if rt_group {
        env.create(&id, &b)
            .fails_with("process.scheduler: sched_setattr(SCHED_FIFO, nice 0, priority 10): EPERM");
        env.assert_clean(&id);
    } else {
        env.create(&id, &b).ok();
        let pid = env.state(&id)["pid"].as_i64().unwrap() as i32;
        assert_eq!(
            (stat_field(pid, 40), stat_field(pid, 41)),
            ("10".into(), "1".into())
        );
    }
}

#[test]
fn io_priority_is_set_for_the_init_and_exec() {
    // runc 1.1 has no process.ioPriority (runc 1.2 sets it with ioprio_set, as here).
    let env = Env::new("ioprio");
    for (class, level, want) in [
        ("IOPRIO_CLASS_BE", 5, 2 << 13 | 5),
        ("IOPRIO_CLASS_RT", 3, 1 << 13 | 3),
        ("IOPRIO_CLASS_IDLE", 0, 3 << 13),
    ] {
        let (_, pid) = started_with(&env, |s| {
            s["process"]["ioPriority"] = json!({"class": class, "priority": level})
        });
        assert_eq!(ioprio_of(pid), want, "{class} {level}");
    }
    // exec --process: the process document's own.
    let (id, init) = started_with(&env, |s| {
        s["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 1})
    });
    let p = json!({
        "args": ["sh", "-c", "sleep 30; : ioprio-exec-marker"],
        "cwd": "/", "user": {"uid": 0, "gid": 0},
        "env": ["PATH=/bin"],
        "ioPriority": {"class": "IOPRIO_CLASS_IDLE", "priority": 0},
        "scheduler": {"policy": "SCHED_BATCH", "nice": 4}
    });
    let pf = env.dir().join("exec-process.json");
    fs::write(&pf, p.to_string()).unwrap();
    let pidf = env.dir().join("exec.pid");
    env.runc(&[
        "exec",
        "-d",
        "--process",
        pf.to_str().unwrap(),
        "--pid-file",
        pidf.to_str().unwrap(),
        &id,
    ])
    .ok();
    let pid: i32 = fs::read_to_string(&pidf).unwrap().trim().parse().unwrap();
    assert_eq!(ioprio_of(pid), 3 << 13);
    assert_eq!(
        (stat_field(pid, 19), stat_field(pid, 41)),
        ("4".into(), "3".into())
    );
    assert_eq!(ioprio_of(init), 2 << 13 | 1, "the init keeps its own");
}

#[test]
fn memory_policy_is_set_before_exec() {
    // runc 1.1 has no linux.memoryPolicy (runc 1.3 sets it with set_mempolicy, as here).
    if !std::path::Path::new("/proc/self/numa_maps").exists() {
        eprintln!("skipped: no NUMA in this kernel");
        return;
    }
    let env = Env::new("mempolicy");
    for (policy, want) in [
        (json!({"mode": "MPOL_BIND", "nodes": "0"}), "bind:0"),
        (
            json!({"mode": "MPOL_INTERLEAVE", "nodes": "0"}),
            "interleave:0",
        ),
        (
            json!({"mode": "MPOL_PREFERRED", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]}),
            "prefer=static:0",
        ),
    ] {
        let (_, pid) = started_with(&env, |s| s["linux"]["memoryPolicy"] = policy.clone());
        let maps = fs::read_to_string(format!("/proc/{pid}/numa_maps")).unwrap();
        let first = maps.lines().next().unwrap_or_default();
        assert_eq!(
            first.split_whitespace().nth(1),
            Some(want),
            "{policy}:\n{maps}"
        );
    }
}

#[test]
fn tmpfs_with_tmpcopyup_starts_with_what_it_covers() {
    // runc's `tmpcopyup` (podman asks for it on its tmpfs mounts); runc 1.1.5 runs the same
    // bundle first. The mount is a tmpfs, holds /etc's files with their modes, takes writes,
    // and with `ro` is read-only once filled.
    let env = Env::new("tmpcopyup");
    let script = "grep -c ^root: /etc/passwd; stat -c %a /etc/passwd; \
                  grep ' /etc ' /proc/self/mountinfo | cut -d' ' -f6,9; \
                  echo x > /etc/new && echo written";
    let want_mode = format!(
        "{:o}",
        fs::metadata(rootfs().join("etc/passwd"))
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
            .unwrap()
    );
    for (ro, last) in [(false, "written"), (true, "")] {
        let id = env.new_id();
        let b = env.bundle(&id, |s| {
            let mut options = vec!["nosuid", "nodev", "mode=755", "tmpcopyup"];
            if ro {
                options.push("ro");
            }
            s["mounts"].as_array_mut().unwrap().push(json!({
                "destination": "/etc", "type": "tmpfs", "source": "tmpfs", "options": options
            }));
            args(s, &["sh", "-c", script]);
        });
        let runc = std::process::Command::new("runc")
            .arg("--root")
            .arg(env.dir().join("runc-root"))
            .args(["run", "-b", b.to_str().unwrap(), &format!("{id}-runc")])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let theirs = String::from_utf8_lossy(&runc.stdout).into_owned();
        let out = env.runc(&["run", "-b", b.to_str().unwrap(), &id]);
        assert_eq!(out.stdout, theirs, "against runc:\n{}", out.describe());
        let mut lines = out.lines();
        if !ro {
            assert_eq!(lines.pop(), Some(last), "{}", out.describe());
        }
        assert_eq!(lines[0], "1", "{}", out.describe());
        assert_eq!(lines[1], want_mode);
        let opts = lines[2].split_whitespace().next().unwrap();
        assert!(
            opts.starts_with(if ro { "ro," } else { "rw," }),
            "{}",
            out.describe()
        );
        assert_eq!(lines[2].split_whitespace().nth(1), Some("tmpfs"));
        env.assert_clean(&id);
    }
}
