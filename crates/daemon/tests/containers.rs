//! Containers and jobs through the real socket, on the real kernel: create, info, run,
//! spawn/link/stream, stop, destroy, copy, grace time, bad input, and a create failing at
//! each of its steps. After every test nothing of the daemon's is left on the host.

mod wardend;

use std::time::{Duration, Instant};

use warden_protocol::{
    BindMount, CopyInRequest, CopyOutRequest, CreateRequest, DestroyRequest, InfoRequest,
    LinkRequest, Mode, SpawnRequest, StopRequest, StreamRequest,
};
use wardend::*;

fn info(c: &mut warden_client::Client, h: &str) -> warden_protocol::InfoResponse {
    c.info(InfoRequest { handle: h.into() }).unwrap()
}

#[test]
fn create_info_run_destroy_leaves_nothing() {
    let w = Wardend::start("", "");
    let mut c = w.client();
    let h = create(&mut c);
    assert_eq!(h.len(), 11, "a generated handle is the container id: {h}");
    let i = info(&mut c, &h);
    assert_eq!(i.state.as_deref(), Some("active"));
    let path = i.container_path.clone().unwrap();
    assert!(path.starts_with(&w.depot.display().to_string()), "{path}");
    // The overlay never syncs the host's filesystem (its `volatile` option; Linux 5.10).
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let overlay = mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(&format!("{path}/rootfs")))
        .unwrap_or_else(|| panic!("no overlay at {path}/rootfs: {mountinfo}"));
    // Shown as `volatile`, or `fsync=volatile` since Linux 6.7.
    assert!(overlay.contains("volatile"), "{overlay}");
    let (host, cont) = (i.host_ip.unwrap(), i.container_ip.unwrap());
    assert_ne!(host, cont);
    assert_eq!(c.list().unwrap().handles, vec![h.clone()]);

    let (code, out, err) = run(&mut c, &h, "echo hi; echo oops >&2; exit 3");
    assert_eq!((code, out.as_str(), err.as_str()), (3, "hi\n", "oops\n"));

    // What the job sees: its own hostname, pid namespace, network, user and files.
    let (code, out, _) = run(
        &mut c,
        &h,
        "hostname; id -u; cat /etc/hostname; ip -4 -o addr show 2>/dev/null | grep -c inet || \
         cat /proc/net/dev | grep -c :; ls /home",
    );
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], h);
    assert_ne!(lines[1], "0", "an unprivileged job is not root");
    assert_eq!(lines[2], h);
    assert_eq!(*lines.last().unwrap(), "vcap");
    let (_, out, _) = run_as(&mut c, &h, "id -u", true);
    assert_eq!(out, "0\n", "a privileged job is root");
    // The original's devices: /dev/fuse is there and an unprivileged job may open it.
    let (code, out, err) = run(
        &mut c,
        &h,
        "stat -c '%F %t:%T %a' /dev/fuse && exec 3<>/dev/fuse && echo opened",
    );
    assert_eq!(
        (code, out.as_str()),
        (0, "character special file a:e5 666\nopened\n"),
        "{err}"
    );

    c.destroy(DestroyRequest { handle: h.clone() }).unwrap();
    assert!(c.list().unwrap().handles.is_empty());
    assert_eq!(
        server_error(c.info(InfoRequest { handle: h.clone() })),
        "unknown handle"
    );
    assert_eq!(
        server_error(c.destroy(DestroyRequest { handle: h })),
        "unknown handle"
    );
    w.assert_clean();
}

/// The mount namespace wardend makes every container's from (a copy of the host's at start,
/// the daemon holding it by an fd): none of the containers' mounts are in it, before or
/// after a restart, and it stays that small; a bind mount still sees what the host mounted
/// after the daemon started (its source is taken from the host's namespace, not the seed's).
#[test]
fn containers_start_from_a_mount_seed_and_binds_see_the_hosts_mounts() {
    let mut w = Wardend::start("", "");
    let mut c = w.client();
    let before = create(&mut c);
    // A daemon restart: the new seed must leave out the live container's mounts too.
    w.terminate();
    w.spawn();
    let mut c = w.client();
    let late = w.dir.path().join("late");
    std::fs::create_dir_all(&late).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "wlate"])
        .arg(&late)
        .status()
        .unwrap();
    assert!(mounted.success());
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _late_mount = Unmount(late.clone());
    std::fs::write(late.join("f"), "mounted after the daemon started\n").unwrap();
    let h = c
        .create(CreateRequest {
            bind_mounts: vec![BindMount {
                src_path: late.display().to_string(),
                dst_path: "/mnt/late".into(),
                mode: Mode::Ro as i32,
            }],
            ..Default::default()
        })
        .unwrap()
        .handle;
    let (code, out, err) = run(&mut c, &h, "cat /mnt/late/f");
    assert_eq!(
        (code, out.as_str()),
        (0, "mounted after the daemon started\n"),
        "{err}"
    );

    // The seed: the one mount namespace among the daemon's fds.
    let own = std::fs::read_link(format!("/proc/{}/ns/mnt", w.pid())).unwrap();
    let seeds: Vec<_> = std::fs::read_dir(format!("/proc/{}/fd", w.pid()))
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path())
                .is_ok_and(|l| l.to_string_lossy().starts_with("mnt:[") && l != own)
        })
        .map(|e| e.path())
        .collect();
    assert_eq!(seeds.len(), 1, "{seeds:?}");
    let mountinfo = std::process::Command::new("nsenter")
        .arg(format!("--mount={}", seeds[0].display()))
        .args(["cat", "/proc/self/mountinfo"])
        .output()
        .unwrap();
    assert!(mountinfo.status.success(), "{mountinfo:?}");
    let seed = String::from_utf8(mountinfo.stdout).unwrap();
    let depot = std::fs::canonicalize(&w.depot).unwrap();
    let points: Vec<&str> = seed.lines().filter_map(|l| l.split(' ').nth(4)).collect();
    let inside: Vec<_> = points
        .iter()
        .filter(|p| {
            std::path::Path::new(p)
                .strip_prefix(&depot)
                .is_ok_and(|r| !r.as_os_str().is_empty())
        })
        .collect();
    assert!(
        inside.is_empty(),
        "the seed holds containers' mounts: {inside:?}"
    );
    assert!(
        !points
            .iter()
            .any(|p| p.starts_with(&*late.to_string_lossy())),
        "{seed}"
    );
    let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let host_inside = host
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&format!("{}/", depot.display())))
        .count();
    assert!(
        host_inside >= 4,
        "two containers' overlays and netns files: {host}"
    );

    for h in [h, before] {
        c.destroy(DestroyRequest { handle: h }).unwrap();
    }
    w.assert_clean();
}

/// On cgroup v1 a container's cpuset is born with its parent's cpus and mems
/// (`cgroup.clone_children` on the daemon's parent): writing them into each new cpuset made
/// the kernel check every sibling, milliseconds a create beside 1,000 containers.
#[test]
fn a_containers_cpuset_is_born_with_its_parents() {
    let cpuset = std::path::Path::new("/sys/fs/cgroup/cpuset");
    if !cpuset.join("cpuset.cpus").exists() {
        eprintln!("skipped: no cgroup v1 cpuset hierarchy");
        return;
    }
    let w = Wardend::start("", "");
    let parent = cpuset.join(&w.cgroup_parent);
    let read = |p: std::path::PathBuf| std::fs::read_to_string(&p).unwrap().trim().to_string();
    let mut c = w.client();
    let h = create(&mut c);
    assert_eq!(read(parent.join("cgroup.clone_children")), "1");
    let path = info(&mut c, &h).container_path.unwrap();
    let id = std::path::Path::new(&path).file_name().unwrap().to_owned();
    let cpus = read(parent.join("cpuset.cpus"));
    assert!(!cpus.is_empty());
    assert_eq!(read(parent.join(&id).join("cpuset.cpus")), cpus);
    assert_eq!(
        read(parent.join(&id).join("cpuset.mems")),
        read(parent.join("cpuset.mems"))
    );
    let (code, _, err) = run(&mut c, &h, "true");
    assert_eq!(code, 0, "{err}");
    c.destroy(DestroyRequest { handle: h }).unwrap();
    w.assert_clean();
}

/// A daemon that makes no container makes no cgroup on the host: its containers' parent is
/// made (and set up, see `a_containers_cpuset_is_born_with_its_parents`) by the first create.
/// The fields of `/proc/<pid>/stat` after the command's `)` (state, parent pid, process
/// group, session, ...); empty once the process is gone.
fn stat_fields(pid: i32) -> Vec<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// The live processes whose parent is `parent`, whose second argument is `mode` (a helper:
/// `__warden_create`, `__warden_keeper`) and that lead no session (a keeper at work has
/// detached), by pid.
fn helpers(parent: i32, mode: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let fields = stat_fields(pid);
        if fields.len() < 4
            || fields[0] == "Z"
            || fields[1] != parent.to_string()
            || fields[3] == pid.to_string()
        {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmdline.split(|&b| b == 0).nth(1) == Some(mode.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

/// Waits until `parent` has exactly one `mode` helper; returns its pid.
fn one_spare(parent: i32, mode: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = helpers(parent, mode);
        if let [pid] = found[..] {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "{mode} helpers of {parent}: {found:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn gone(pid: i32) -> bool {
    stat_fields(pid).first().is_none_or(|state| state == "Z")
}

/// The create helper and the keeper are started one request ahead (a spare of each waits for
/// its arguments); a spare that died is replaced by a helper started on the spot, and the
/// spares go with the daemon, even a killed one.
#[test]
fn helpers_are_started_a_request_ahead_and_go_with_the_daemon() {
    let mut w = Wardend::start("", "");
    let mut c = w.client();
    let daemon = w.pid();
    let h = create(&mut c);
    let creator = one_spare(daemon, "__warden_create");
    // A spare killed from outside: the next create starts a helper of its own.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(creator),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let h2 = create(&mut c);
    let creator = one_spare(daemon, "__warden_create");
    let (code, out, _) = run(&mut c, &h2, "echo ran");
    assert_eq!((code, out.as_str()), (0, "ran\n"));
    // Once the job's keeper has exited, the spare is the only keeper left.
    let keeper = one_spare(daemon, "__warden_keeper");
    let (code, out, _) = run(&mut c, &h, "echo again");
    assert_eq!((code, out.as_str()), (0, "again\n"));
    let keeper = {
        let next = one_spare(daemon, "__warden_keeper");
        assert_ne!(next, keeper, "the spare keeper ran the second job");
        next
    };
    for h in [h, h2] {
        c.destroy(DestroyRequest { handle: h }).unwrap();
    }
    w.kill9();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(gone(creator) && gone(keeper)) {
        assert!(
            Instant::now() < deadline,
            "spares {creator} and {keeper} outlived the daemon"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    w.assert_clean();
}

#[test]
fn a_daemon_that_makes_no_container_makes_no_cgroup() {
    let w = Wardend::start("", "");
    assert!(w.client().list().unwrap().handles.is_empty());
    // Nor any helper.
    for mode in ["__warden_create", "__warden_keeper"] {
        assert!(helpers(w.pid(), mode).is_empty(), "{mode}");
    }
    let made: Vec<_> = std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .map(|h| h.path().join(&w.cgroup_parent))
        .filter(|p| p.exists())
        .collect();
    assert!(made.is_empty(), "{made:?}");
}

#[test]
fn container_reaches_the_host_over_its_veth_with_allow_host_access() {
    let w = Wardend::start_net("allow_host_access: true");
    let mut c = w.client();
    let h = create(&mut c);
    let i = info(&mut c, &h);
    let host_ip = i.host_ip.unwrap();
    // A listener on the host's end of the veth; the container connects to it.
    let listener = std::net::TcpListener::bind((host_ip.as_str(), 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = String::new();
        std::io::Read::read_to_string(&mut s, &mut buf).unwrap();
        buf
    });
    let (code, out, err) = run(
        &mut c,
        &h,
        &format!("echo from-container | nc -w 2 {host_ip} {port}; echo $?"),
    );
    assert_eq!(code, 0, "{out} {err}");
    assert_eq!(t.join().unwrap(), "from-container\n");
}

#[test]
fn an_unprivileged_job_pings_with_no_capability() {
    // ICMP echo through an ICMP datagram socket (what iputils' ping falls back to without
    // CAP_NET_RAW), which ping_group_range in the container's netns allows; busybox's ping
    // only knows raw sockets, so the test builds its own static client. The job has no
    // capability at all, and the host's own range ("1 0" by default) is not changed.
    let w = Wardend::start_net("allow_host_access: true");
    let host_range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").unwrap();
    let mut c = w.client();
    let h = create_with_fixture(&w, &mut c, "icmp_echo");
    let i = info(&mut c, &h);
    let (host_ip, own_ip) = (i.host_ip.unwrap(), i.container_ip.unwrap());
    let (code, out, err) = run(
        &mut c,
        &h,
        &format!(
            "grep CapEff /proc/self/status; id -u; /mnt/bin/icmp_echo {host_ip} && \
             /mnt/bin/icmp_echo {own_ip}"
        ),
    );
    assert_eq!(code, 0, "{out} {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().nth(1),
        Some("0000000000000000"),
        "{out}"
    );
    assert_ne!(lines[1], "0", "the job is not root: {out}");
    assert_eq!(
        lines[2..],
        [
            format!("reply from {host_ip}"),
            format!("reply from {own_ip}")
        ],
        "{out} {err}"
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").unwrap(),
        host_range
    );
    c.destroy(warden_protocol::DestroyRequest { handle: h })
        .unwrap();
    w.assert_clean();
}

#[test]
fn handles_bind_mounts_and_rootfs() {
    let w = Wardend::start("", "");
    let mut c = w.client();
    let ro = w.dir.path().join("ro");
    let rw = w.dir.path().join("rw");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::create_dir_all(&rw).unwrap();
    std::fs::write(ro.join("f"), "from host\n").unwrap();
    // Container root is host uid 2000000000 (user.namespace_start_uid): a host dir it is to
    // write is given to it, as an operator would.
    std::os::unix::fs::chown(&rw, Some(2_000_000_000), Some(2_000_000_000)).unwrap();
    let h = c
        .create(CreateRequest {
            handle: Some("my handle ✓".into()),
            bind_mounts: vec![
                BindMount {
                    src_path: ro.display().to_string(),
                    dst_path: "/mnt/ro".into(),
                    mode: Mode::Ro as i32,
                },
                BindMount {
                    src_path: rw.display().to_string(),
                    dst_path: "/mnt/rw".into(),
                    mode: Mode::Rw as i32,
                },
            ],
            ..Default::default()
        })
        .unwrap()
        .handle;
    assert_eq!(h, "my handle ✓");
    let (code, out, _) = run_as(
        &mut c,
        &h,
        "cat /mnt/ro/f; touch /mnt/ro/x 2>/dev/null && echo ro-writable; echo hi > /mnt/rw/y && echo rw-ok",
        true,
    );
    assert_eq!((code, out.as_str()), (0, "from host\nrw-ok\n"));
    assert_eq!(std::fs::read_to_string(rw.join("y")).unwrap(), "hi\n");

    assert_eq!(
        server_error(c.create(CreateRequest {
            handle: Some(h.clone()),
            ..Default::default()
        })),
        "container with handle: my handle ✓ already exists."
    );
    let missing = w.dir.path().join("missing");
    assert_eq!(
        server_error(c.create(CreateRequest {
            bind_mounts: vec![BindMount {
                src_path: missing.display().to_string(),
                dst_path: "/mnt/x".into(),
                mode: Mode::Ro as i32,
            }],
            ..Default::default()
        })),
        format!(
            "Source path for bind mount does not exist: {}",
            missing.display()
        )
    );
    assert_eq!(
        server_error(c.create(CreateRequest {
            rootfs: Some(missing.display().to_string()),
            ..Default::default()
        })),
        format!("rootfs {} not found", missing.display())
    );
    let file = w.dir.path().join("ro/f");
    assert_eq!(
        server_error(c.create(CreateRequest {
            rootfs: Some(file.display().to_string()),
            ..Default::default()
        })),
        format!("rootfs {} not found", file.display())
    );
    assert_eq!(c.list().unwrap().handles, vec![h.clone()]);
    c.destroy(DestroyRequest { handle: h }).unwrap();
    w.assert_clean();
}

#[test]
fn spawn_link_and_stream() {
    let w = Wardend::start("", "");
    let mut c = w.client();
    let h = create(&mut c);
    let spawn = |c: &mut warden_client::Client, script: &str| {
        c.spawn(SpawnRequest {
            handle: h.clone(),
            script: script.into(),
            ..Default::default()
        })
        .unwrap()
        .job_id
    };
    let job = spawn(&mut c, "sleep 0.3; echo done");
    assert!(info(&mut c, &h).job_ids.contains(&u64::from(job)));
    // Linking from two connections: both get the result.
    let (s2, h2) = (w.socket.clone(), h.clone());
    let other = std::thread::spawn(move || {
        let mut c2 = warden_client::Client::connect(s2).unwrap();
        c2.link(LinkRequest {
            handle: h2,
            job_id: job,
        })
        .unwrap()
    });
    let l = c
        .link(LinkRequest {
            handle: h.clone(),
            job_id: job,
        })
        .unwrap();
    assert_eq!(l.exit_status, Some(0));
    assert_eq!(l.stdout.as_deref(), Some(&b"done\n"[..]));
    assert!(l.info.is_some());
    assert_eq!(
        other.join().unwrap().stdout.as_deref(),
        Some(&b"done\n"[..])
    );
    assert_eq!(
        server_error(c.link(LinkRequest {
            handle: h.clone(),
            job_id: job
        })),
        "no such job"
    );
    assert!(!info(&mut c, &h).job_ids.contains(&u64::from(job)));

    // A stream delivers chunks before the job ends, then the exit status.
    let job = spawn(&mut c, "echo A; sleep 0.5; echo B >&2; exit 7");
    let started = Instant::now();
    let mut chunks = Vec::new();
    let mut first_at = None;
    let mut exit = None;
    for r in c
        .stream(StreamRequest {
            handle: h.clone(),
            job_id: job,
        })
        .unwrap()
    {
        let r = r.unwrap();
        if let (Some(name), Some(data)) = (&r.name, &r.data) {
            first_at.get_or_insert(started.elapsed());
            chunks.push((name.clone(), String::from_utf8_lossy(data).to_string()));
        }
        if r.exit_status.is_some() {
            exit = r.exit_status;
            assert!(r.info.is_some());
        }
    }
    assert_eq!(exit, Some(7));
    assert_eq!(
        chunks,
        vec![
            ("stdout".into(), "A\n".into()),
            ("stderr".into(), "B\n".into())
        ]
    );
    assert!(
        first_at.unwrap() < Duration::from_millis(450),
        "{first_at:?}"
    );
    let again: Vec<_> = c
        .stream(StreamRequest {
            handle: h.clone(),
            job_id: job,
        })
        .unwrap()
        .collect();
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(
        again[0].as_ref().unwrap_err().server_message(),
        Some("no such job")
    );
    assert_eq!(
        server_error(c.link(LinkRequest {
            handle: h.clone(),
            job_id: 999_999
        })),
        "no such job"
    );
    c.destroy(DestroyRequest { handle: h }).unwrap();
    w.assert_clean();
}

#[test]
fn stop_terminates_jobs_and_kill_does_at_once() {
    let w = Wardend::start("", "");
    let mut c = w.client();
    let h = create(&mut c);
    let trap = c
        .spawn(SpawnRequest {
            handle: h.clone(),
            script: "trap 'exit 37' TERM; while true; do sleep 0.05; done".into(),
            ..Default::default()
        })
        .unwrap()
        .job_id;
    std::thread::sleep(Duration::from_millis(200));
    c.stop(StopRequest {
        handle: h.clone(),
        ..Default::default()
    })
    .unwrap();
    let l = c
        .link(LinkRequest {
            handle: h.clone(),
            job_id: trap,
        })
        .unwrap();
    assert_eq!(l.exit_status, Some(37));
    assert_eq!(info(&mut c, &h).state.as_deref(), Some("stopped"));
    // Stopped: no new jobs; stopping again is a no-op.
    assert_eq!(
        server_error(c.spawn(SpawnRequest {
            handle: h.clone(),
            script: "true".into(),
            ..Default::default()
        })),
        "Container state must be one of 'active', current state is 'stopped'"
    );
    c.stop(StopRequest {
        handle: h.clone(),
        ..Default::default()
    })
    .unwrap();

    // background: the reply comes first, the stop goes on, and a linker gets the job's own
    // exit code.
    let hb = create(&mut c);
    let trap = c
        .spawn(SpawnRequest {
            handle: hb.clone(),
            script: "trap 'exit 37' TERM; while true; do sleep 0.05; done".into(),
            ..Default::default()
        })
        .unwrap()
        .job_id;
    std::thread::sleep(Duration::from_millis(200));
    c.stop(StopRequest {
        handle: hb.clone(),
        background: Some(true),
        ..Default::default()
    })
    .unwrap();
    let l = c
        .link(LinkRequest {
            handle: hb.clone(),
            job_id: trap,
        })
        .unwrap();
    assert_eq!(l.exit_status, Some(37));
    assert_eq!(info(&mut c, &hb).state.as_deref(), Some("stopped"));
    c.destroy(DestroyRequest { handle: hb }).unwrap();

    let h2 = create(&mut c);
    let job = c
        .spawn(SpawnRequest {
            handle: h2.clone(),
            script: "trap '' TERM; sleep 100".into(),
            ..Default::default()
        })
        .unwrap()
        .job_id;
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    c.stop(StopRequest {
        handle: h2.clone(),
        kill: Some(true),
        ..Default::default()
    })
    .unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let l = c
        .link(LinkRequest {
            handle: h2.clone(),
            job_id: job,
        })
        .unwrap();
    assert_eq!(l.exit_status, Some(255));
    for h in [h, h2] {
        c.destroy(DestroyRequest { handle: h }).unwrap();
    }
    w.assert_clean();
}

#[test]
fn destroy_during_a_run_returns_to_the_runner() {
    let w = Wardend::start("", "");
    let mut c = w.client();
    let h = create(&mut c);
    let (s, h2) = (w.socket.clone(), h.clone());
    let runner = std::thread::spawn(move || {
        let mut c = warden_client::Client::connect(s).unwrap();
        run(&mut c, &h2, "touch /tmp/running; sleep 100")
    });
    // Once the job runs (a fixed sleep here lost the race on the emulated lane: the destroy
    // came first and the run was refused).
    let marker =
        std::path::Path::new(&info(&mut c, &h).container_path.unwrap()).join("rootfs/tmp/running");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the job did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    c.destroy(DestroyRequest { handle: h }).unwrap();
    let (code, _, _) = runner.join().unwrap();
    assert_ne!(code, 0);
    w.assert_clean();
}

#[test]
fn copy_in_and_out() {
    let w = Wardend::start("", "");
    let mut c = w.client();
    let h = create(&mut c);
    let src = w.dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/a"), "alpha\n").unwrap();
    c.copy_in(CopyInRequest {
        handle: h.clone(),
        src_path: format!("{}/", src.display()),
        dst_path: "/tmp/in".into(),
    })
    .unwrap();
    let (code, out, _) = run(&mut c, &h, "cat /tmp/in/sub/a; stat -c %U /tmp/in/sub/a");
    assert_eq!((code, out.as_str()), (0, "alpha\nvcap\n"));
    run(&mut c, &h, "mkdir -p /tmp/out && echo beta > /tmp/out/b");
    let dst = w.dir.path().join("dst");
    c.copy_out(CopyOutRequest {
        handle: h.clone(),
        src_path: "/tmp/out/".into(),
        dst_path: dst.display().to_string(),
        owner: None,
    })
    .unwrap();
    assert_eq!(std::fs::read_to_string(dst.join("b")).unwrap(), "beta\n");
    // With an owner, what copy_out creates on the host belongs to it.
    let owned = w.dir.path().join("owned");
    c.copy_out(CopyOutRequest {
        handle: h.clone(),
        src_path: "/tmp/out/b".into(),
        dst_path: owned.display().to_string(),
        owner: Some("1234:2345".into()),
    })
    .unwrap();
    let meta = std::fs::metadata(&owned).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((meta.uid(), meta.gid()), (1234, 2345));
    // A symlink in the container pointing at a host path stays inside the container.
    run(&mut c, &h, "ln -s /etc /tmp/evil");
    c.copy_out(CopyOutRequest {
        handle: h.clone(),
        src_path: "/tmp/evil/hostname".into(),
        dst_path: w.dir.path().join("hn").display().to_string(),
        owner: None,
    })
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(w.dir.path().join("hn"))
            .unwrap()
            .trim(),
        h,
        "copy_out read the host's file, not the container's"
    );
    c.destroy(DestroyRequest { handle: h }).unwrap();
    w.assert_clean();
}

#[test]
fn grace_time_destroys_an_unreferenced_container() {
    let w = Wardend::start("", "");
    let h = {
        let mut c = w.client();
        c.create(CreateRequest {
            grace_time: Some(1),
            ..Default::default()
        })
        .unwrap()
        .handle
    };
    // No connection references it now: gone after about a second. (Watched on the host: a
    // connection would reference every container and so restart its timer, SPEC 3.1.)
    // The handle leaves the registry last, after the teardown: wait for both.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !w.leftovers().is_empty() || w.client().list().unwrap().handles.contains(&h) {
        assert!(Instant::now() < deadline, "the grace timer never fired");
        std::thread::sleep(Duration::from_millis(100));
    }
    w.assert_clean();

    // A connection that stays keeps it alive.
    let mut holder = w.client();
    let h = holder
        .create(CreateRequest {
            grace_time: Some(1),
            ..Default::default()
        })
        .unwrap()
        .handle;
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(info(&mut holder, &h).state.as_deref(), Some("active"));
    holder.destroy(DestroyRequest { handle: h }).unwrap();
}

/// Every container's root is the same host uid (the user namespace's first id) and the
/// kernel counts keys per uid (`kernel.keys.maxkeys`, 200 by default): a session keyring per
/// container made by that uid stopped creates at about 200 live containers (EDQUOT). The
/// create helper makes it as host root instead; each container still has one of its own.
#[test]
fn more_live_containers_than_a_users_key_quota() {
    let maxkeys: usize = std::fs::read_to_string("/proc/sys/kernel/keys/maxkeys")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    if maxkeys > 1000 {
        eprintln!("skipped: kernel.keys.maxkeys is {maxkeys}, too many containers to make");
        return;
    }
    let n = maxkeys + 8;
    let prefix = 30 - n.next_power_of_two().trailing_zeros() as u8;
    let w = Wardend::start_pool("", &format!("user:\n  pool_size: {n}\n"), prefix);
    let mut c = w.client();
    let handles: Vec<String> = (0..n).map(|_| create(&mut c)).collect();
    let keys = std::fs::read_to_string("/proc/keys").unwrap();
    for h in &handles {
        // The generated handle is the id, and the keyring is named after the id.
        assert!(
            keys.lines()
                .any(|l| l.contains(" keyring ") && l.ends_with(&format!(" {h}: empty"))),
            "no session keyring of {h}'s own in /proc/keys"
        );
    }
    let (code, out, err) = run(&mut c, handles.last().unwrap(), "echo ok");
    assert_eq!((code, out.as_str()), (0, "ok\n"), "{err}");
    for h in handles {
        c.destroy(DestroyRequest { handle: h }).unwrap();
    }
    w.assert_clean();
}

#[test]
fn a_full_network_pool_is_an_error() {
    let w = Wardend::start("", "");
    let mut c = w.client();
    // Ask for a network outside the pool, then exhaust a pool of one /30.
    assert_eq!(
        server_error(c.create(CreateRequest {
            network: Some("192.0.2.1".into()),
            ..Default::default()
        })),
        "Could not acquire network: 192.0.2.1"
    );
    drop(c);
    drop(w);

    let w = Wardend::start_pool("", "", 30);
    let mut c = w.client();
    let h = create(&mut c);
    assert_eq!(
        server_error(c.create(Default::default())),
        "Could not acquire network"
    );
    // Released (release_delay 0 here), the network is there again once the kernel has
    // deleted its veth, a few milliseconds after destroy.
    c.destroy(DestroyRequest { handle: h }).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let h = loop {
        match c.create(Default::default()) {
            Ok(r) => break r.handle,
            Err(e) => assert!(Instant::now() < deadline, "{e}"),
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    c.destroy(DestroyRequest { handle: h }).unwrap();
    w.assert_clean();
}

#[test]
fn a_create_failing_at_any_step_leaves_nothing() {
    for step in ["disk", "overlay", "identity", "network", "bundle", "init"] {
        // A pool of one /30 and one uid: a create after the failed one proves both came back.
        let mut w = Wardend::start_pool("", "user:\n  pool_size: 1\n", 30);
        w.kill9();
        w.env = vec![("WARDEN_TEST_FAIL_CREATE_AT".into(), step.into())];
        w.spawn();
        let mut c = w.client();
        let e = server_error(c.create(Default::default()));
        assert_eq!(e, format!("injected failure after {step}"));
        assert!(c.list().unwrap().handles.is_empty());
        w.assert_clean();
        // The same daemon creates again: with one network and one uid in its pools, that
        // works only if the failed create gave both back (the network once its veth is gone,
        // a few milliseconds after the failure).
        let deadline = Instant::now() + Duration::from_secs(5);
        let h = loop {
            match c.create(Default::default()) {
                Ok(r) => break r.handle,
                Err(e) => assert!(Instant::now() < deadline, "after {step}: {e}"),
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        c.destroy(DestroyRequest { handle: h }).unwrap();
        w.assert_clean();
    }
}

#[test]
fn output_over_the_limit_is_cut_and_recorded() {
    let w = Wardend::start("job_output_limit: 4096", "");
    let mut c = w.client();
    let h = create(&mut c);
    let (code, out, _) = run(
        &mut c,
        &h,
        "yes hello | head -c 100000; echo unreachable >&2",
    );
    assert_eq!(code, 255);
    assert!(out.len() <= 4096 && out.len() >= 4000, "{}", out.len());
    let events = info(&mut c, &h).events;
    assert_eq!(events, vec!["command exceeded maximum output".to_string()]);

    // discard_output: nothing kept, and the limit never triggers.
    let r = c
        .run(warden_protocol::RunRequest {
            handle: h.clone(),
            script: "yes hello | head -c 100000; exit 4".into(),
            discard_output: Some(true),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(r.exit_status, Some(4));
    assert!(r.stdout.unwrap_or_default().is_empty());

    // Request rlimits reach the job.
    let r = c
        .run(warden_protocol::RunRequest {
            handle: h.clone(),
            script: "ulimit -n".into(),
            rlimits: Some(warden_protocol::ResourceLimits {
                nofile: Some(1234),
                ..Default::default()
            }),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(r.stdout.as_deref(), Some(&b"1234\n"[..]));
    c.destroy(DestroyRequest { handle: h }).unwrap();
    w.assert_clean();
}

#[test]
fn log_tag_sends_each_line_to_the_syslog_socket() {
    // A syslog of our own: a datagram socket, as rsyslog's and journald's /dev/log are.
    let logdir = tempfile::tempdir().unwrap();
    let sock = logdir.path().join("log");
    let syslog = std::os::unix::net::UnixDatagram::bind(&sock).unwrap();
    syslog
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let w = Wardend::start(&format!("syslog_socket: {}", sock.display()), "");
    let mut c = w.client();
    let h = create(&mut c);
    let r = c
        .run(warden_protocol::RunRequest {
            handle: h.clone(),
            script: "echo out one; echo err one >&2; echo out two; printf 'no newline'".into(),
            log_tag: Some("mytag".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(r.exit_status, Some(0));
    // The job's own output is kept as without a tag.
    assert_eq!(
        r.stdout.as_deref(),
        Some(&b"out one\nout two\nno newline"[..])
    );
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    while got.len() < 4 {
        let n = syslog.recv(&mut buf).expect("a syslog message within 20 s");
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    // `<PRI>Mmm dd hh:mm:ss warden.TAG: line`, as logger writes to a local socket.
    let body = |m: &String| {
        let (pri, rest) = m.split_at(m.find('>').unwrap() + 1);
        assert_eq!(rest.as_bytes()[15], b' ', "timestamp of {m:?}");
        format!("{pri}{}", &rest[16..])
    };
    let mut stdout: Vec<String> = got
        .iter()
        .map(body)
        .filter(|m| m.starts_with("<14>"))
        .collect();
    let stderr: Vec<String> = got
        .iter()
        .map(body)
        .filter(|m| m.starts_with("<11>"))
        .collect();
    stdout.sort();
    assert_eq!(
        stdout,
        [
            "<14>warden.mytag: no newline",
            "<14>warden.mytag: out one",
            "<14>warden.mytag: out two"
        ],
        "{got:?}"
    );
    assert_eq!(stderr, ["<11>warden.mytag: err one"], "{got:?}");
    // A job without a tag sends nothing.
    let (code, _, _) = run(&mut c, &h, "echo untagged");
    assert_eq!(code, 0);
    syslog.set_nonblocking(true).unwrap();
    assert!(syslog.recv(&mut buf).is_err(), "an untagged job logged");
    c.destroy(DestroyRequest { handle: h }).unwrap();
    w.assert_clean();
}

#[test]
fn memory_and_cpu_limits_and_out_of_memory() {
    use warden_protocol::{LimitCpuRequest, LimitMemoryRequest};
    let w = Wardend::start("", "");
    let mut c = w.client();
    let h = create(&mut c);
    let id = info(&mut c, &h)
        .container_path
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    // cgroup v1 (this host) or the unified hierarchy (the v2 lane): other dirs, other files.
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let cg = |v1_ctrl: &str, v1_file: &str, v2_file: &str| {
        let base = std::path::Path::new("/sys/fs/cgroup");
        let dir = if v2 {
            base.to_path_buf()
        } else {
            base.join(v1_ctrl)
        };
        let file = if v2 { v2_file } else { v1_file };
        std::fs::read_to_string(dir.join(&w.cgroup_parent).join(&id).join(file))
            .unwrap()
            .trim()
            .to_string()
    };
    let limit = |c: &mut warden_client::Client, v: Option<u64>| {
        c.limit_memory(LimitMemoryRequest {
            handle: h.clone(),
            limit_in_bytes: v,
        })
        .unwrap()
        .limit_in_bytes
    };
    let unlimited = if v2 { u64::MAX } else { 9223372036854771712 };
    assert_eq!(limit(&mut c, None), Some(unlimited), "unlimited at first");
    assert_eq!(limit(&mut c, Some(64 << 20)), Some(64 << 20));
    let mb = |n: u64| (n << 20).to_string();
    assert_eq!(cg("memory", "memory.limit_in_bytes", "memory.max"), mb(64));
    // No swapping past the limit: v1's memory+swap limit is the same, v2's swap limit 0.
    let no_swap = |n| if v2 { "0".to_string() } else { mb(n) };
    assert_eq!(
        cg("memory", "memory.memsw.limit_in_bytes", "memory.swap.max"),
        no_swap(64)
    );
    // Lowering writes both too (memsw last).
    assert_eq!(limit(&mut c, Some(32 << 20)), Some(32 << 20));
    assert_eq!(
        cg("memory", "memory.memsw.limit_in_bytes", "memory.swap.max"),
        no_swap(32)
    );

    let shares = |c: &mut warden_client::Client, v: Option<u64>| {
        c.limit_cpu(LimitCpuRequest {
            handle: h.clone(),
            limit_in_shares: v,
        })
        .unwrap()
        .limit_in_shares
    };
    assert_eq!(shares(&mut c, Some(100)), Some(100));
    assert_eq!(shares(&mut c, None), Some(100), "what was set, asked again");
    // v2 keeps a weight: runc's mapping of 100 shares.
    let weight = if v2 { "4" } else { "100" };
    assert_eq!(cg("cpu", "cpu.shares", "cpu.weight"), weight);
    assert_eq!(shares(&mut c, Some(1)), Some(2), "the kernel's minimum");

    // info's figures, in the original's names and units on both hierarchies.
    let (code, _, _) = run(
        &mut c,
        &h,
        "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done",
    );
    assert_eq!(code, 0);
    let i = info(&mut c, &h);
    let cpu = i.cpu_stat.expect("cpu_stat");
    assert!(cpu.usage.unwrap() > 0, "{cpu:?}");
    assert!(cpu.user.is_some() && cpu.system.is_some(), "{cpu:?}");
    let mem = i.memory_stat.expect("memory_stat");
    assert_eq!(mem.hierarchical_memory_limit, Some(32 << 20), "{mem:?}");
    assert!(mem.rss.is_some() && mem.cache.is_some(), "{mem:?}");

    // Filling /dev/shm (tmpfs, charged to the container) past the limit: an OOM, which the
    // container records and answers by stopping.
    fill_memory_until_oom(&mut c, &h);
    c.destroy(DestroyRequest { handle: h }).unwrap();
    w.assert_clean();
}

/// A listener on `addr` that records what the first connection sends, if one comes.
fn listen(addr: &str) -> (u16, std::sync::mpsc::Receiver<String>) {
    let listener = std::net::TcpListener::bind((addr, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = String::new();
            let _ = std::io::Read::read_to_string(&mut s, &mut buf);
            let _ = tx.send(buf);
        }
    });
    (port, rx)
}

#[test]
fn containers_reach_neither_the_host_nor_each_other_by_default() {
    let w = Wardend::start("", "");
    let mut c = w.client();
    let a = create(&mut c);
    let b = create(&mut c);
    let host_ip = info(&mut c, &a).host_ip.unwrap();
    let b_ip = info(&mut c, &b).container_ip.unwrap();

    // To the host: refused (no connection reaches the listener).
    let (port, got) = listen(&host_ip);
    let (code, _, _) = run(&mut c, &a, &format!("echo x | nc -w 2 {host_ip} {port}"));
    assert_ne!(code, 0);
    assert!(got.recv_timeout(Duration::from_millis(300)).is_err());

    // To another container: refused too.
    let listener = c
        .spawn(SpawnRequest {
            handle: b.clone(),
            script: "nc -l -p 8080 -w 5 > /tmp/got; echo done".into(),
            ..Default::default()
        })
        .unwrap()
        .job_id;
    wait_listening(&mut c, &b, 8080);
    let (code, _, _) = run(&mut c, &a, &format!("echo from-a | nc -w 2 {b_ip} 8080"));
    assert_ne!(code, 0);

    // The host may open connections into a container; the replies come back.
    let (code, _, _) = run(&mut c, &b, "true");
    assert_eq!(code, 0);
    let mut s = std::net::TcpStream::connect((b_ip.as_str(), 8080)).unwrap();
    std::io::Write::write_all(&mut s, b"from-host\n").unwrap();
    drop(s);
    let l = c
        .link(LinkRequest {
            handle: b.clone(),
            job_id: listener,
        })
        .unwrap();
    assert_eq!(l.stdout.as_deref(), Some(&b"done\n"[..]));
    let (_, got, _) = run(&mut c, &b, "cat /tmp/got");
    assert_eq!(got, "from-host\n");
    for h in [a, b] {
        c.destroy(DestroyRequest { handle: h }).unwrap();
    }
    w.assert_clean();
}

/// The packet filter is IPv4's (`table ip`), so the host's end of a container's veth has no
/// IPv6 at all: with the link-local address the kernel gives an interface by default, a
/// container reached every host service listening on `[::]` over IPv6, whatever the rules.
#[test]
fn a_container_cannot_reach_the_host_over_ipv6() {
    if !std::path::Path::new("/proc/sys/net/ipv6").exists() {
        eprintln!("skipped: no IPv6 in this kernel");
        return;
    }
    let w = Wardend::start("", "");
    let mut c = w.client();
    let a = create(&mut c);
    let path = info(&mut c, &a).container_path.unwrap();
    let id = std::path::Path::new(&path)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let (host_if, cont_if) = (format!("{PREFIX}{id}-0"), format!("{PREFIX}{id}-1"));
    // The link-local address the kernel would give the host's end (EUI-64 of its MAC).
    let mac = std::fs::read_to_string(format!("/sys/class/net/{host_if}/address")).unwrap();
    let b: Vec<u8> = mac
        .trim()
        .split(':')
        .map(|x| u8::from_str_radix(x, 16).unwrap())
        .collect();
    let ll = format!(
        "fe80::{:x}:{:x}:{:x}:{:x}",
        u16::from_be_bytes([b[0] ^ 2, b[1]]),
        u16::from_be_bytes([b[2], 0xff]),
        u16::from_be_bytes([0xfe, b[3]]),
        u16::from_be_bytes([b[4], b[5]])
    );
    let (port, got) = listen("::");
    let (code, out, err) = run_as(
        &mut c,
        &a,
        &format!("sleep 2; echo x | nc -w 2 {ll}%{cont_if} {port}"),
        true,
    );
    assert!(
        got.recv_timeout(Duration::from_millis(300)).is_err(),
        "the container reached the host at {ll}: {code} {out} {err}"
    );
    assert_ne!(code, 0);
    let addrs = std::fs::read_to_string("/proc/net/if_inet6").unwrap();
    assert!(
        !addrs
            .lines()
            .any(|l| l.split_whitespace().last() == Some(host_if.as_str())),
        "{addrs}"
    );
    c.destroy(DestroyRequest { handle: a }).unwrap();
    w.assert_clean();
}

#[test]
fn allow_networks_opens_the_way_between_containers() {
    // The pool itself is allowed: containers may talk to each other.
    let w = Wardend::start_net("allow_networks: [{pool}]");
    let mut c = w.client();
    let a = create(&mut c);
    let b = create(&mut c);
    let b_ip = info(&mut c, &b).container_ip.unwrap();
    let listener = c
        .spawn(SpawnRequest {
            handle: b.clone(),
            script: "nc -l -p 8080 -w 5".into(),
            ..Default::default()
        })
        .unwrap()
        .job_id;
    wait_listening(&mut c, &b, 8080);
    let (code, _, err) = run(&mut c, &a, &format!("echo from-a | nc -w 2 {b_ip} 8080"));
    assert_eq!(code, 0, "{err}");
    let l = c
        .link(LinkRequest {
            handle: b.clone(),
            job_id: listener,
        })
        .unwrap();
    assert_eq!(l.stdout.as_deref(), Some(&b"from-a\n"[..]));
    for h in [a, b] {
        c.destroy(DestroyRequest { handle: h }).unwrap();
    }
    w.assert_clean();
}

#[test]
fn concurrent_destroys_tear_down_once_and_spare_a_new_container_of_the_same_name() {
    let w = Wardend::start("", "");
    let mut c = w.client();
    for round in 0..3 {
        let name = format!("twice-{round}");
        c.create(CreateRequest {
            handle: Some(name.clone()),
            ..Default::default()
        })
        .unwrap();
        let destroys: Vec<_> = (0..2)
            .map(|_| {
                let (s, n) = (w.socket.clone(), name.clone());
                std::thread::spawn(move || {
                    let mut c = warden_client::Client::connect(s).unwrap();
                    c.destroy(DestroyRequest { handle: n }).map(|_| ())
                })
            })
            .collect();
        let results: Vec<_> = destroys.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(results.iter().any(|r| r.is_ok()), "{results:?}");
        for r in &results {
            if let Err(e) = r {
                assert_eq!(e.server_message(), Some("unknown handle"));
            }
        }
        // A new container under the same handle is not hit by the late destroy.
        c.create(CreateRequest {
            handle: Some(name.clone()),
            ..Default::default()
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(c.list().unwrap().handles.contains(&name));
        c.destroy(DestroyRequest { handle: name }).unwrap();
    }
    w.assert_clean();
}

#[test]
fn a_stream_over_the_limit_delivers_the_whole_limit_before_the_kill() {
    // SPEC 3.5: between limit - 200 and limit + 64 KiB of the stream arrive, then 255.
    const LIMIT: usize = 100 * 1024;
    let w = Wardend::start(&format!("job_output_limit: {LIMIT}"), "");
    let mut c = w.client();
    let h = create(&mut c);
    for script in [
        "yes hello | head -c 300000",
        // Slow writes: the kill comes while the stream is following the files.
        "i=0; while [ $i -lt 6000 ]; do echo line-of-some-length-$i; i=$((i+1)); done",
    ] {
        let job = c
            .spawn(SpawnRequest {
                handle: h.clone(),
                script: script.into(),
                ..Default::default()
            })
            .unwrap()
            .job_id;
        let (mut got, mut exit) = (0usize, None);
        for r in c
            .stream(StreamRequest {
                handle: h.clone(),
                job_id: job,
            })
            .unwrap()
        {
            let r = r.unwrap();
            got += r.data.as_ref().map_or(0, |d| d.len());
            if r.exit_status.is_some() {
                exit = r.exit_status;
            }
        }
        assert_eq!(exit, Some(255), "{script}");
        assert!(
            (LIMIT - 200..=LIMIT + 64 * 1024).contains(&got),
            "{got} bytes of a {LIMIT} limit streamed: {script}"
        );
    }
    c.destroy(DestroyRequest { handle: h }).unwrap();
    w.assert_clean();
}

#[test]
fn an_abandoned_stream_leaves_the_job_to_be_linked() {
    let w = Wardend::start("", "");
    let mut c = w.client();
    let h = create(&mut c);
    let job = c
        .spawn(SpawnRequest {
            handle: h.clone(),
            script: "sleep 1; echo done".into(),
            ..Default::default()
        })
        .unwrap()
        .job_id;
    {
        let mut s = w.client();
        let stream = s
            .stream(StreamRequest {
                handle: h.clone(),
                job_id: job,
            })
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        drop(stream);
    }
    std::thread::sleep(Duration::from_millis(1500));
    let l = c
        .link(LinkRequest {
            handle: h.clone(),
            job_id: job,
        })
        .unwrap();
    assert_eq!(l.exit_status, Some(0));
    assert_eq!(l.stdout.as_deref(), Some(&b"done\n"[..]));
    c.destroy(DestroyRequest { handle: h }).unwrap();
    w.assert_clean();
}

/// A daemon whose port pool is `start..start+1000` (a range of the test's own, so that no
/// other test's DNAT takes its ports).
fn start_with_ports(start: u16) -> Wardend {
    Wardend::start(
        "",
        &format!("port:\n  pool_start_port: {start}\n  pool_size: 1000\n"),
    )
}

fn nft_table(w: &Wardend) -> String {
    let out = std::process::Command::new("nft")
        .args(["list", "table", "ip", &w.nft_table])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into()
}

/// Starts `nc -l -p port` in `h`; the job's id.
fn nc_listen(c: &mut warden_client::Client, h: &str, port: u16) -> u32 {
    let job = c
        .spawn(SpawnRequest {
            handle: h.into(),
            script: format!("nc -l -p {port} -w 5"),
            ..Default::default()
        })
        .unwrap()
        .job_id;
    wait_listening(c, h, port);
    job
}

fn net_in(c: &mut warden_client::Client, h: &str, hp: Option<u32>, cp: Option<u32>) -> (u32, u32) {
    let r = c
        .net_in(warden_protocol::NetInRequest {
            handle: h.into(),
            host_port: hp,
            container_port: cp,
        })
        .unwrap();
    (r.host_port, r.container_port)
}

#[test]
fn net_in_forwards_a_host_port_into_the_container() {
    let w = start_with_ports(31000);
    let mut c = w.client();
    let h = create(&mut c);
    let i = info(&mut c, &h);
    let (host_ip, ip) = (i.host_ip.unwrap(), i.container_ip.unwrap());
    let t = Instant::now();
    assert_eq!(net_in(&mut c, &h, None, None), (31000, 31000));
    eprintln!("net_in took {:?}", t.elapsed());
    assert_eq!(net_in(&mut c, &h, None, Some(8080)), (31001, 8080));
    assert_eq!(net_in(&mut c, &h, Some(40123), Some(8081)), (40123, 8081));
    assert_eq!(net_in(&mut c, &h, Some(40124), None), (40124, 40124));
    for (hp, cp) in [(31000u16, 31000u16), (31001, 8080), (40123, 8081)] {
        let job = nc_listen(&mut c, &h, cp);
        let mut s = std::net::TcpStream::connect((host_ip.as_str(), hp)).unwrap();
        std::io::Write::write_all(&mut s, format!("to-{hp}\n").as_bytes()).unwrap();
        drop(s);
        let l = c
            .link(LinkRequest {
                handle: h.clone(),
                job_id: job,
            })
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&l.stdout.unwrap()),
            format!("to-{hp}\n")
        );
    }
    // Wrong state: stopped.
    c.stop(StopRequest {
        handle: h.clone(),
        kill: Some(true),
        ..Default::default()
    })
    .unwrap();
    let e = server_error(c.net_in(warden_protocol::NetInRequest {
        handle: h.clone(),
        host_port: None,
        container_port: None,
    }));
    assert_eq!(
        e,
        "Container state must be one of 'active', current state is 'stopped'"
    );
    let text = nft_table(&w);
    assert!(text.contains(&ip), "{text}");
    c.destroy(DestroyRequest { handle: h }).unwrap();
    let text = nft_table(&w);
    assert!(!text.contains(&format!("{ip} ")), "{text}");
    assert!(!text.contains("40123"), "{text}");
    // Pool ports come back at the tail: a new container gets the next one.
    let h = create(&mut c);
    assert_eq!(net_in(&mut c, &h, None, None).0, 31002);
    c.destroy(DestroyRequest { handle: h }).unwrap();
    w.assert_clean();
}

#[test]
fn a_host_port_is_forwarded_once() {
    let w = start_with_ports(34000);
    let mut c = w.client();
    let (a, b) = (create(&mut c), create(&mut c));
    let b_ip = info(&mut c, &b).container_ip.unwrap();
    assert_eq!(net_in(&mut c, &a, None, None), (34000, 34000));
    assert_eq!(net_in(&mut c, &a, Some(40200), Some(80)), (40200, 80));
    let dup = |c: &mut warden_client::Client, h: &str, hp: u32, cp: u32| {
        server_error(c.net_in(warden_protocol::NetInRequest {
            handle: h.into(),
            host_port: Some(hp),
            container_port: Some(cp),
        }))
    };
    // Another container, or the same one again (even with the same mapping): refused, by
    // its port, and nothing changes.
    for (h, hp, cp) in [
        (&b, 40200, 80),
        (&a, 40200, 80),
        (&a, 40200, 81),
        (&b, 34000, 1),
    ] {
        assert_eq!(
            dup(&mut c, h, hp, cp),
            format!("host port {hp} is already forwarded by a net_in")
        );
    }
    let text = nft_table(&w);
    assert!(!text.contains(&format!("{b_ip} ")), "{text}");
    // The refused pool port stays a's: the pool hands out the next one.
    assert_eq!(net_in(&mut c, &b, None, None), (34001, 34001));
    // Nothing in the container holds a socket of the daemon's, the packet filter's netlink
    // socket above all (close-on-exec, and the init and the keepers close what they inherit).
    let (_, out, _) = run_as(
        &mut c,
        &a,
        "for f in /proc/self/fd/* /proc/1/fd/*; do readlink $f; done",
        true,
    );
    assert!(out.contains("/dev/null"), "{out}");
    assert!(!out.contains("socket:"), "{out}");
    for h in [a, b] {
        c.destroy(DestroyRequest { handle: h }).unwrap();
    }
    let text = nft_table(&w);
    assert!(!text.contains("40200") && !text.contains("34001"), "{text}");
    w.assert_clean();
}

fn net_out(
    c: &mut warden_client::Client,
    h: &str,
    f: impl FnOnce(&mut warden_protocol::NetOutRequest),
) -> Result<warden_protocol::NetOutResponse, warden_client::Error> {
    let mut r = warden_protocol::NetOutRequest {
        handle: h.into(),
        ..Default::default()
    };
    f(&mut r);
    c.net_out(r)
}

/// Whether `from` gets a line through to `to_ip:port` (a listener in `to`).
fn reaches(c: &mut warden_client::Client, from: &str, to: &str, to_ip: &str, port: u16) -> bool {
    // Two tries: on a loaded machine one connection can time out for no rule's sake; a rule
    // that lets nothing through fails both.
    reaches_once(c, from, to, to_ip, port) || reaches_once(c, from, to, to_ip, port)
}

fn reaches_once(
    c: &mut warden_client::Client,
    from: &str,
    to: &str,
    to_ip: &str,
    port: u16,
) -> bool {
    let job = nc_listen(c, to, port);
    let (code, _, _) = run(c, from, &format!("echo hi | nc -w 2 {to_ip} {port}"));
    if code != 0 {
        // Let the listener end.
        let _ = std::net::TcpStream::connect((to_ip, port));
    }
    let l = c
        .link(LinkRequest {
            handle: to.into(),
            job_id: job,
        })
        .unwrap();
    code == 0 && l.stdout.as_deref() == Some(&b"hi\n"[..])
}

#[test]
fn net_out_opens_ports_ranges_and_protocols() {
    let w = start_with_ports(32000);
    let mut c = w.client();
    let a = create(&mut c);
    let b = create(&mut c);
    let b_ip = info(&mut c, &b).container_ip.unwrap();
    assert!(!reaches(&mut c, &a, &b, &b_ip, 8080));
    let t = Instant::now();
    net_out(&mut c, &a, |r| {
        r.network = Some(b_ip.clone());
        r.port = Some(8080);
    })
    .unwrap();
    eprintln!("net_out took {:?}", t.elapsed());
    assert!(reaches(&mut c, &a, &b, &b_ip, 8080));
    assert!(!reaches(&mut c, &a, &b, &b_ip, 8081));
    net_out(&mut c, &a, |r| {
        r.network = Some(format!("{b_ip}/32"));
        r.port_range = Some("9000:9010".into());
    })
    .unwrap();
    assert!(reaches(&mut c, &a, &b, &b_ip, 9005));
    assert!(!reaches(&mut c, &a, &b, &b_ip, 9011));
    // Protocol ALL to a range of addresses.
    net_out(&mut c, &a, |r| {
        r.network = Some(format!("{b_ip}-{b_ip}"));
        r.protocol = Some(warden_protocol::Protocol::All as i32);
        r.log = Some(true);
    })
    .unwrap();
    assert!(reaches(&mut c, &a, &b, &b_ip, 7000));
    // b was not opened the other way.
    let a_ip = info(&mut c, &a).container_ip.unwrap();
    assert!(!reaches(&mut c, &b, &a, &a_ip, 7000));
    // Argument errors.
    assert_eq!(
        server_error(net_out(&mut c, &a, |_| {})),
        "Please specify network, port, and/or port_range."
    );
    assert_eq!(
        server_error(net_out(&mut c, &a, |r| r.port_range = Some("10:10".into()))),
        "Port range maximum must be greater than minimum"
    );
    assert_eq!(
        server_error(net_out(&mut c, &a, |r| r.port_range = Some("20:10".into()))),
        "Port range maximum must be greater than minimum"
    );
    net_out(&mut c, &a, |r| {
        r.protocol = Some(warden_protocol::Protocol::Icmp as i32);
        r.network = Some("10.0.0.0/8".into());
        r.icmp_type = Some(-1);
    })
    .unwrap();
    c.stop(StopRequest {
        handle: a.clone(),
        kill: Some(true),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        server_error(net_out(&mut c, &a, |r| r.port = Some(80))),
        "Container state must be one of 'active', current state is 'stopped'"
    );
    let id = info(&mut c, &a).container_path.unwrap();
    let id = id.rsplit('/').next().unwrap().to_string();
    assert!(nft_table(&w).contains(&format!("c{id}")));
    for h in [a, b] {
        c.destroy(DestroyRequest { handle: h }).unwrap();
    }
    let text = nft_table(&w);
    assert!(!text.contains(&format!("c{id}")), "{text}");
    assert!(!text.contains(&format!("{a_ip} ")), "{text}");
    w.assert_clean();
}
