//! Namespaces beyond the defaults: a user namespace with id mappings, and namespaces joined
//! by path (another container's), which the joining container then shares.

mod common;

use std::fs;

use common::*;
use serde_json::json;

fn ns_inode(pid: i32, ns: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn user_namespace_maps_root_to_an_unprivileged_host_uid() {
    let env = Env::new("userns");
    let out = env
        .run_container(&[], |s| {
            s["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "user"}));
            s["linux"]["uidMappings"] =
                json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
            s["linux"]["gidMappings"] =
                json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
            s["process"]["args"] = json!([
                "sh",
                "-c",
                "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; \
                 stat -c %u /bin/busybox; echo x > /proc/sys/kernel/hostname 2>/dev/null \
                 || echo sysctl-denied"
            ]);
        })
        .ok();
    let lines: Vec<String> = out
        .lines()
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        lines,
        [
            "0",
            "0",
            "0 200000 65536",
            "0 200000 65536",
            // The host's root owns the rootfs, and is not mapped: the overflow uid.
            "65534",
            "sysctl-denied",
        ],
        "{}",
        out.describe()
    );
}

#[test]
fn user_namespace_without_mappings_is_refused() {
    let env = Env::new("userns-nomap");
    let id = env.new_id();
    let b = env.bundle(&id, |s| {
        s["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
    });
    env.create(&id, &b)
        .fails_with("a new user namespace needs uidMappings and gidMappings");
    env.assert_clean(&id);
}

#[test]
fn namespaces_joined_by_path_are_shared() {
    let env = Env::new("ns-join");
    let first = env.created(|s| {
        s["hostname"] = "ns-first".into();
        s["process"]["args"] = json!(["sleep", "30"]);
    });
    env.runc(&["start", &first]).ok();
    let pid = env.state(&first)["pid"].as_i64().unwrap() as i32;

    let out = env
        .run_container(&[], |s| {
            s.as_object_mut().unwrap().remove("hostname");
            for ns in s["linux"]["namespaces"].as_array_mut().unwrap() {
                let typ = ns["type"].as_str().unwrap().to_string();
                let proc_name = match typ.as_str() {
                    "network" => "net",
                    "uts" => "uts",
                    "ipc" => "ipc",
                    _ => continue,
                };
                ns["path"] = json!(format!("/proc/{pid}/ns/{proc_name}"));
            }
            s["process"]["args"] = json!([
                "sh",
                "-c",
                "hostname; for n in net uts ipc pid; do readlink /proc/self/ns/$n; done"
            ]);
        })
        .ok();
    let lines = out.lines();
    assert_eq!(lines[0], "ns-first", "{}", out.describe());
    assert_eq!(lines[1], ns_inode(pid, "net"));
    assert_eq!(lines[2], ns_inode(pid, "uts"));
    assert_eq!(lines[3], ns_inode(pid, "ipc"));
    // Not joined: its own pid namespace.
    assert_ne!(lines[4], ns_inode(pid, "pid"));

    env.runc(&["delete", "--force", &first]).ok();
    env.assert_clean(&first);
}

#[test]
fn joining_a_namespace_path_that_does_not_exist_fails_cleanly() {
    let env = Env::new("ns-badpath");
    let id = env.new_id();
    let b = env.bundle(&id, |s| {
        for ns in s["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "network" {
                ns["path"] = json!("/proc/999999999/ns/net");
            }
        }
    });
    env.create(&id, &b).fails_with("/proc/999999999/ns/net");
    env.assert_clean(&id);
}

/// Until its execve the init runs the runtime's own image: it must not be dumpable, or a
/// container process could open /proc/<init>/exe and overwrite the runtime on the host
/// (CVE-2019-5736). Seen from a process in the same pid namespace with the same uid and
/// capabilities: it may read /proc/<pid>/environ of a dumpable process, not of a
/// non-dumpable one (that takes CAP_SYS_PTRACE).
#[test]
fn the_init_is_not_dumpable_until_it_execs() {
    let env = Env::new("dumpable");
    let first = env.created(|s| s["process"]["args"] = json!(["sleep", "30"]));
    env.runc(&["start", &first]).ok();
    let first_pid = env.state(&first)["pid"].as_i64().unwrap();
    // A second container in the first one's pid namespace, created, not started: its init
    // waits in the runtime's image, as root with the same capabilities as the first's.
    let second = env.created(|s| {
        s["process"]["args"] = json!(["sleep", "30"]);
        for ns in s["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "pid" {
                ns["path"] = json!(format!("/proc/{first_pid}/ns/pid"));
            }
        }
    });
    let second_pid = env.state(&second)["pid"].as_i64().unwrap();
    let status = fs::read_to_string(format!("/proc/{second_pid}/status")).unwrap();
    let inner_pid = status_field(&status, "NSpid")
        .split_whitespace()
        .last()
        .unwrap()
        .to_string();
    let read = |pid: &str| {
        env.runc(&[
            "exec",
            &first,
            "sh",
            "-c",
            &format!("cat /proc/{pid}/environ >/dev/null && echo readable"),
        ])
    };
    assert_eq!(
        read("1").stdout.trim(),
        "readable",
        "the check itself does not work"
    );
    let out = read(&inner_pid);
    assert_ne!(
        out.stdout.trim(),
        "readable",
        "the created init is dumpable: {}",
        out.describe()
    );
    env.runc(&["start", &second]).ok();
    assert_eq!(read(&inner_pid).stdout.trim(), "readable");
    for id in [second, first] {
        env.runc(&["delete", "--force", &id]).ok();
        env.assert_clean(&id);
    }
}

/// `/proc/uptime`'s first figure, in whole seconds.
fn uptime_secs(text: &str) -> f64 {
    text.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn time_namespace_gets_its_offsets_before_the_init_enters_it() {
    // runc 1.1.5 refuses the time namespace (`namespace {"time" ""} does not exist`), and
    // Debian's crun 1.8.1 fails it on this kernel (`write to sync socket`): no reference
    // runtime runs this here. runc 1.2 writes the offsets from its middle process, between
    // its unshare and the fork of the init; warden-runc unshares in the runtime itself and
    // clones the init into the namespace (see `Plan::enter_time_namespace`).
    let env = Env::new("timens");
    let features: serde_json::Value =
        serde_json::from_str(&env.runc(&["features"]).ok().stdout).unwrap();
    let listed = features["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .contains(&json!("time"));
    let with_time = |s: &mut serde_json::Value| {
        s["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "time"}));
        s["linux"]["timeOffsets"] = json!({
            "monotonic": {"secs": 1000, "nanosecs": 500},
            "boottime": {"secs": 86400}
        });
        s["process"]["args"] = json!(["sleep", "30"]);
    };
    if !std::path::Path::new("/proc/self/ns/time").exists() {
        assert!(!listed, "features lists time without kernel support");
        let id = env.new_id();
        let b = env.bundle(&id, with_time);
        env.create(&id, &b)
            .fails_with("linux.namespaces: this kernel has no time namespaces");
        env.assert_clean(&id);
        return;
    }
    assert!(listed, "features should list time: {features:#}");
    let host_ns = fs::read_link("/proc/self/ns/time").unwrap();
    for user_ns in [false, true] {
        let hook_out = env.dir().join(format!("hook-timens-{user_ns}"));
        let id = env.created(|s| {
            with_time(s);
            if user_ns {
                s["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "user"}));
                s["linux"]["uidMappings"] =
                    json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
                s["linux"]["gidMappings"] =
                    json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
            }
            // A createRuntime hook runs in the runtime's namespaces: not in the container's
            // time namespace.
            s["hooks"] = json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c",
                format!("readlink /proc/self/ns/time > {}", hook_out.display())]}]});
        });
        env.runc(&["start", &id]).ok();
        let pid = env.state(&id)["pid"].as_i64().unwrap() as i32;
        let ns = fs::read_link(format!("/proc/{pid}/ns/time")).unwrap();
        assert_ne!(ns, host_ns, "user_ns {user_ns}: the init is in the host's");
        let offsets = fs::read_to_string(format!("/proc/{pid}/timens_offsets")).unwrap();
        let offsets: Vec<String> = offsets
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(offsets, ["monotonic 1000 500", "boottime 86400 0"]);
        assert_eq!(
            fs::read_to_string(&hook_out).unwrap().trim(),
            host_ns.display().to_string()
        );

        // exec joins it (before the user namespace: the runtime's user namespace owns it).
        let host_up = uptime_secs(&fs::read_to_string("/proc/uptime").unwrap());
        let out = env
            .runc(&[
                "exec",
                &id,
                "sh",
                "-c",
                "readlink /proc/self/ns/time; cat /proc/uptime",
            ])
            .ok();
        let lines = out.lines();
        assert_eq!(lines[0], ns.display().to_string(), "{}", out.describe());
        let inside = uptime_secs(lines[1]);
        assert!(
            inside - host_up > 86400.0 - 1.0 && inside - host_up < 86400.0 + 60.0,
            "uptime inside {inside}, outside {host_up}"
        );

        // Another container joins it by path.
        let out = env
            .run_container(&[], |s| {
                s["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "time", "path": format!("/proc/{pid}/ns/time")}));
                s["process"]["args"] = json!(["readlink", "/proc/self/ns/time"]);
            })
            .ok();
        assert_eq!(out.stdout.trim(), ns.display().to_string());
        env.runc(&["delete", "--force", &id]).ok();
        env.assert_clean(&id);
    }
}

#[test]
fn mappings_given_with_a_joined_user_namespace_must_be_its_own() {
    // They cannot be written into a namespace that has its maps; dropped, the container
    // would run with other ids than its config says. runc 1.2 checks them the same way.
    let env = Env::new("userns-join-maps");
    let maps = |host: u32| json!([{"containerID": 0, "hostID": host, "size": 65536}]);
    let first = env.created(|s| {
        s["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        s["linux"]["uidMappings"] = maps(200000);
        s["linux"]["gidMappings"] = maps(200000);
        s["process"]["args"] = json!(["sleep", "30"]);
    });
    let pid = env.state(&first)["pid"].as_i64().unwrap();
    let id = env.new_id();
    let b = env.bundle(&id, |s| {
        s.as_object_mut().unwrap().remove("hostname");
        s["linux"]["namespaces"] = json!(["user", "pid", "network", "ipc", "uts", "mount"]
            .iter()
            .map(|t| {
                let n = match *t {
                    "network" => "net",
                    "mount" => "mnt",
                    t => t,
                };
                json!({"type": t, "path": format!("/proc/{pid}/ns/{n}")})
            })
            .collect::<Vec<_>>());
        s["linux"]["uidMappings"] = maps(300000);
        s["linux"]["gidMappings"] = maps(200000);
        s["process"]["args"] = json!(["sh", "-c", format!("sleep 30; : {id}")]);
    });
    env.create(&id, &b).fails_with(&format!(
        "linux.uidMappings [(0, 300000, 65536)] are not the mappings of the user namespace \
         /proc/{pid}/ns/user ([(0, 200000, 65536)])"
    ));
    env.assert_clean(&id);
}

/// A new user namespace with the host's network namespace of another container joined by
/// path (wardend's layout): the network namespace belongs to the caller's user namespace,
/// so the runtime joins it before the new one is made; `exec` joins it before the user
/// namespace too.
#[test]
fn a_user_namespace_joins_a_network_namespace_of_the_host_user_namespace() {
    let env = Env::new("userns-netns");
    let first = env.created(|s| {
        s["process"]["args"] = json!(["sleep", "30"]);
    });
    env.runc(&["start", &first]).ok();
    let pid = env.state(&first)["pid"].as_i64().unwrap() as i32;
    let second = env.created(|s| {
        s["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        for ns in s["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "network" {
                ns["path"] = json!(format!("/proc/{pid}/ns/net"));
            }
        }
        s["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
        s["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
        s["process"]["args"] = json!(["sleep", "30"]);
    });
    env.runc(&["start", &second]).ok();
    let pid2 = env.state(&second)["pid"].as_i64().unwrap() as i32;
    assert_eq!(ns_inode(pid2, "net"), ns_inode(pid, "net"));
    assert_ne!(ns_inode(pid2, "user"), ns_inode(pid, "user"));
    let out = env
        .runc(&[
            "exec",
            &second,
            "sh",
            "-c",
            "readlink /proc/self/ns/net; cat /proc/self/uid_map",
        ])
        .ok();
    let lines = out.lines();
    assert_eq!(lines[0], ns_inode(pid, "net"), "{}", out.describe());
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["0", "200000", "65536"]
    );
    for id in [&second, &first] {
        env.runc(&["delete", "--force", id]).ok();
        env.assert_clean(id);
    }
}
