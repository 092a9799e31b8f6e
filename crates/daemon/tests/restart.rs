//! A daemon that dies (kill -9) or stops (SIGTERM) loses nothing: the next one finds every
//! container, every job's full output and status, continues the job ids, and tears down what
//! cannot be recovered.

mod wardend;

use std::time::{Duration, Instant};

use warden_protocol::{
    DestroyRequest, InfoRequest, LinkRequest, SpawnRequest, StopRequest, StreamRequest,
};
use wardend::*;

fn spawn(c: &mut warden_client::Client, h: &str, script: &str) -> u32 {
    c.spawn(SpawnRequest {
        handle: h.into(),
        script: script.into(),
        ..Default::default()
    })
    .unwrap()
    .job_id
}

fn container_id(c: &mut warden_client::Client, h: &str) -> String {
    let path = c
        .info(InfoRequest { handle: h.into() })
        .unwrap()
        .container_path
        .unwrap();
    path.rsplit('/').next().unwrap().to_string()
}

#[test]
fn kill_9_loses_no_container_job_or_output() {
    let mut w = Wardend::start("", "");
    let mut c = w.client();
    let a = create(&mut c);
    let b = create(&mut c);
    let doomed = create(&mut c);
    let stopped = create(&mut c);
    c.stop(StopRequest {
        handle: stopped.clone(),
        ..Default::default()
    })
    .unwrap();
    // A job writing as the daemon dies, and one that finished before it died.
    let running = spawn(
        &mut c,
        &a,
        "i=0; while [ $i -lt 40 ]; do echo line$i; echo err$i >&2; i=$((i+1)); sleep 0.05; done; exit 5",
    );
    let finished = spawn(&mut c, &b, "echo fin; exit 2");
    let deadline = Instant::now() + Duration::from_secs(10);
    while c
        .info(InfoRequest { handle: b.clone() })
        .unwrap()
        .job_ids
        .contains(&u64::from(finished))
    {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    let doomed_id = container_id(&mut c, &doomed);
    drop(c);
    std::thread::sleep(Duration::from_millis(300));
    w.kill9();

    // While no daemon runs, one container's init dies: it cannot be recovered.
    let state = w
        .depot
        .join(&doomed_id)
        .join("run")
        .join(&doomed_id)
        .join("state.json");
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    let init = state["pid"].as_i64().unwrap() as i32;
    unsafe { libc::kill(init, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(200));

    w.spawn();
    let mut c = w.client();
    let mut handles = c.list().unwrap().handles;
    handles.sort();
    let mut want = vec![a.clone(), b.clone(), stopped.clone()];
    want.sort();
    assert_eq!(handles, want, "{}", w.log_text());
    assert!(
        !w.depot.join(&doomed_id).exists(),
        "the unrecoverable container's dir is still there"
    );
    assert!(
        !w.interfaces().iter().any(|i| i.contains(&doomed_id)),
        "{:?}",
        w.interfaces()
    );
    assert_eq!(
        c.info(InfoRequest {
            handle: stopped.clone()
        })
        .unwrap()
        .state
        .as_deref(),
        Some("stopped")
    );

    // Two followers of the job that was running: the stream and the link get it all.
    let mut out = Vec::new();
    let mut exit = None;
    for r in c
        .stream(StreamRequest {
            handle: a.clone(),
            job_id: running,
        })
        .unwrap()
    {
        let r = r.unwrap();
        if r.name.as_deref() == Some("stdout") {
            out.extend(r.data.unwrap());
        }
        if r.exit_status.is_some() {
            exit = r.exit_status;
        }
    }
    let want_out: String = (0..40).map(|i| format!("line{i}\n")).collect();
    assert_eq!(String::from_utf8(out).unwrap(), want_out);
    assert_eq!(exit, Some(5));

    let l = c
        .link(LinkRequest {
            handle: b.clone(),
            job_id: finished,
        })
        .unwrap();
    assert_eq!(l.exit_status, Some(2));
    assert_eq!(l.stdout.as_deref(), Some(&b"fin\n"[..]));

    // New jobs run, and their ids continue past the recovered ones.
    let next = spawn(&mut c, &a, "echo again");
    assert!(next > running.max(finished), "{next}");
    let l = c
        .link(LinkRequest {
            handle: a.clone(),
            job_id: next,
        })
        .unwrap();
    assert_eq!(l.stdout.as_deref(), Some(&b"again\n"[..]));

    for h in [a, b, stopped] {
        c.destroy(DestroyRequest { handle: h }).unwrap();
    }
    w.assert_clean();
}

#[test]
fn sigterm_leaves_containers_running_for_the_next_daemon() {
    let mut w = Wardend::start("", "");
    let mut c = w.client();
    let h = create(&mut c);
    let job = spawn(&mut c, &h, "sleep 1; echo survived");
    drop(c);
    assert_eq!(w.terminate(), Some(0));
    w.spawn();
    let mut c = w.client();
    assert_eq!(c.list().unwrap().handles, vec![h.clone()]);
    let l = c
        .link(LinkRequest {
            handle: h.clone(),
            job_id: job,
        })
        .unwrap();
    assert_eq!(l.exit_status, Some(0));
    assert_eq!(l.stdout.as_deref(), Some(&b"survived\n"[..]));
    let (code, out, _) = run(&mut c, &h, "echo still here");
    assert_eq!((code, out.as_str()), (0, "still here\n"));
    c.destroy(DestroyRequest { handle: h }).unwrap();
    w.assert_clean();
}

#[test]
fn a_daemon_killed_during_a_stop_loses_no_container() {
    // The original deleted the snapshot while a stop ran (up to 10 s with a job ignoring
    // TERM), so a daemon dying then left a dir with no snapshot, torn down at the next start.
    let mut w = Wardend::start("", "");
    let mut c = w.client();
    let h = create(&mut c);
    spawn(&mut c, &h, "trap '' TERM; while :; do sleep 0.1; done");
    let stopping = {
        let (mut c, h) = (w.client(), h.clone());
        std::thread::spawn(move || {
            c.stop(StopRequest {
                handle: h,
                ..Default::default()
            })
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !stopping.is_finished(),
        "the stop should still be waiting on the job"
    );
    drop(c);
    w.kill9();
    assert!(
        stopping.join().unwrap().is_err(),
        "the stop's connection died with the daemon"
    );
    w.spawn();
    let mut c = w.client();
    assert_eq!(
        c.list().unwrap().handles,
        vec![h.clone()],
        "{}",
        w.log_text()
    );
    let info = c.info(InfoRequest { handle: h.clone() }).unwrap();
    assert_eq!(info.state.as_deref(), Some("stopped"));
    c.destroy(DestroyRequest { handle: h }).unwrap();
    w.assert_clean();
}

#[test]
fn a_recovered_container_with_a_grace_time_is_reaped() {
    let mut w = Wardend::start("", "");
    let mut c = w.client();
    c.create(warden_protocol::CreateRequest {
        grace_time: Some(1),
        ..Default::default()
    })
    .unwrap();
    drop(c);
    w.kill9();
    // The next daemon starts the timer at startup (SPEC 3.3); nobody connects.
    w.spawn();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !w.leftovers().is_empty() {
        assert!(
            Instant::now() < deadline,
            "not reaped: {:?}\n{}",
            w.leftovers(),
            w.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn out_of_memory_is_still_seen_after_a_restart() {
    let mut w = Wardend::start("", "");
    let mut c = w.client();
    let h = create(&mut c);
    c.limit_memory(warden_protocol::LimitMemoryRequest {
        handle: h.clone(),
        limit_in_bytes: Some(32 << 20),
    })
    .unwrap();
    drop(c);
    w.kill9();
    w.spawn();
    let mut c = w.client();
    fill_memory_until_oom(&mut c, &h);
    c.destroy(DestroyRequest { handle: h }).unwrap();
    w.assert_clean();
}

#[test]
fn recovery_leaves_foreign_dirs_alone_and_tears_down_unfinished_creates() {
    let mut w = Wardend::start("", "");
    let mut c = w.client();
    let h = create(&mut c);
    let id = container_id(&mut c, &h);
    drop(c);
    w.kill9();
    // Someone's data in the depot, and a create that never finished (state "born").
    let foreign = w.depot.join("not-a-container");
    std::fs::create_dir_all(foreign.join("sub")).unwrap();
    std::fs::write(foreign.join("sub/precious"), "keep me").unwrap();
    let snap = w.depot.join(&id).join("snapshot.json");
    let text = std::fs::read_to_string(&snap).unwrap();
    std::fs::write(&snap, text.replace("\"active\"", "\"born\"")).unwrap();
    w.spawn();
    let mut c = w.client();
    assert!(c.list().unwrap().handles.is_empty());
    assert_eq!(
        std::fs::read_to_string(foreign.join("sub/precious")).unwrap(),
        "keep me"
    );
    std::fs::remove_dir_all(&foreign).unwrap();
    w.assert_clean();
}

#[test]
fn shutdown_drops_a_waiting_link_at_once_and_the_next_daemon_answers_it() {
    let mut w = Wardend::start("shutdown_timeout: 60", "");
    let mut c = w.client();
    let h = create(&mut c);
    let job = spawn(&mut c, &h, "sleep 2; echo late");
    let (s, h2) = (w.socket.clone(), h.clone());
    let linker = std::thread::spawn(move || {
        let mut c = warden_client::Client::connect(s).unwrap();
        c.link(LinkRequest {
            handle: h2,
            job_id: job,
        })
    });
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    // SIGUSR2, the original's drain.
    unsafe { libc::kill(w.pid(), libc::SIGUSR2) };
    let mut child = w.child.take().unwrap();
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(0));
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    assert!(
        linker.join().unwrap().is_err(),
        "the linker should see the connection close"
    );
    w.spawn();
    let mut c = w.client();
    let l = c
        .link(LinkRequest {
            handle: h.clone(),
            job_id: job,
        })
        .unwrap();
    assert_eq!(l.stdout.as_deref(), Some(&b"late\n"[..]));
    c.destroy(DestroyRequest { handle: h }).unwrap();
    w.assert_clean();
}

#[test]
fn net_in_and_net_out_survive_a_kill_9() {
    let mut w = Wardend::start("", "port:\n  pool_start_port: 33000\n  pool_size: 1000\n");
    let mut c = w.client();
    let a = create(&mut c);
    let b = create(&mut c);
    let ia = c.info(InfoRequest { handle: a.clone() }).unwrap();
    let b_ip = c
        .info(InfoRequest { handle: b.clone() })
        .unwrap()
        .container_ip
        .unwrap();
    let host_ip = ia.host_ip.unwrap();
    let r = c
        .net_in(warden_protocol::NetInRequest {
            handle: a.clone(),
            host_port: None,
            container_port: Some(8080),
        })
        .unwrap();
    assert_eq!(r.host_port, 33000);
    c.net_out(warden_protocol::NetOutRequest {
        handle: a.clone(),
        network: Some(b_ip.clone()),
        port: Some(8080),
        ..Default::default()
    })
    .unwrap();
    drop(c);
    w.kill9();
    w.spawn();
    let mut c = w.client();
    // net_in: the host reaches a's listener through the mapping.
    let job = spawn(&mut c, &a, "nc -l -p 8080 -w 5");
    wait_listening(&mut c, &a, 8080);
    let mut s = std::net::TcpStream::connect((host_ip.as_str(), 33000)).unwrap();
    std::io::Write::write_all(&mut s, b"after-restart\n").unwrap();
    drop(s);
    let l = c
        .link(LinkRequest {
            handle: a.clone(),
            job_id: job,
        })
        .unwrap();
    assert_eq!(l.stdout.as_deref(), Some(&b"after-restart\n"[..]));
    // net_out: a reaches b:8080.
    let job = spawn(&mut c, &b, "nc -l -p 8080 -w 5");
    wait_listening(&mut c, &b, 8080);
    let (code, _, err) = run(&mut c, &a, &format!("echo hi | nc -w 2 {b_ip} 8080"));
    assert_eq!(code, 0, "{err}");
    let l = c
        .link(LinkRequest {
            handle: b.clone(),
            job_id: job,
        })
        .unwrap();
    assert_eq!(l.stdout.as_deref(), Some(&b"hi\n"[..]));
    // The port was taken out of the pool: the next is 33001.
    let r = c
        .net_in(warden_protocol::NetInRequest {
            handle: b.clone(),
            host_port: None,
            container_port: None,
        })
        .unwrap();
    assert_eq!(r.host_port, 33001);
    for h in [a, b] {
        c.destroy(DestroyRequest { handle: h }).unwrap();
    }
    w.assert_clean();
}

#[test]
fn a_tagged_job_goes_on_logging_to_syslog_while_no_daemon_runs() {
    let logdir = tempfile::tempdir().unwrap();
    let sock = logdir.path().join("log");
    let syslog = std::os::unix::net::UnixDatagram::bind(&sock).unwrap();
    syslog
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let recv = || {
        let mut buf = [0u8; 4096];
        let n = syslog.recv(&mut buf).expect("a syslog message within 20 s");
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        m.split_once(" warden.")
            .map(|(_, body)| body.to_string())
            .unwrap_or(m)
    };
    let mut w = Wardend::start(&format!("syslog_socket: {}", sock.display()), "");
    let mut c = w.client();
    let h = create(&mut c);
    // The job waits for a file the test makes once the daemon is gone.
    let job = c
        .spawn(SpawnRequest {
            handle: h.clone(),
            script: "echo before; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo after; exit 3"
                .into(),
            log_tag: Some("kept".into()),
            ..Default::default()
        })
        .unwrap()
        .job_id;
    assert_eq!(recv(), "kept: before");
    let cid = container_id(&mut c, &h);
    drop(c);
    w.kill9();
    // The container's root is the overlay mounted at <dir>/rootfs on the host.
    let go = w.depot.join(&cid).join("rootfs").join("tmp").join("go");
    std::fs::write(&go, "").unwrap_or_else(|e| panic!("{}: {e}", go.display()));
    assert_eq!(recv(), "kept: after", "logged with no daemon running");

    w.spawn();
    let mut c = w.client();
    let l = c
        .link(LinkRequest {
            handle: h.clone(),
            job_id: job,
        })
        .unwrap();
    assert_eq!(l.exit_status, Some(3));
    assert_eq!(l.stdout.as_deref(), Some(&b"before\nafter\n"[..]));
    c.destroy(DestroyRequest { handle: h }).unwrap();
    w.assert_clean();
}

#[test]
fn a_container_whose_dir_was_moved_is_found_again_and_keeps_what_it_holds() {
    let mut w = Wardend::start("", "");
    let mut c = w.client();
    let h = create(&mut c);
    let ip = c
        .info(InfoRequest { handle: h.clone() })
        .unwrap()
        .container_ip
        .unwrap();
    let job = spawn(
        &mut c,
        &h,
        "echo before; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo after; exit 4",
    );
    let cid = container_id(&mut c, &h);
    drop(c);
    w.kill9();
    // Out of the depot's naming while no daemon runs (a rename takes its mounts along):
    // without the mount table, recovery would leave it running and hand its network out.
    let moved = w.depot.join(format!("moved-{cid}"));
    std::fs::rename(w.depot.join(&cid), &moved).unwrap();

    w.spawn();
    let mut c = w.client();
    assert_eq!(
        c.list().unwrap().handles,
        std::slice::from_ref(&h),
        "{}",
        w.log_text()
    );
    let info = c.info(InfoRequest { handle: h.clone() }).unwrap();
    assert_eq!(
        info.container_path.as_deref(),
        Some(moved.to_str().unwrap())
    );
    // What it holds stays its own: a new container gets another network.
    let other = create(&mut c);
    let other_ip = c
        .info(InfoRequest {
            handle: other.clone(),
        })
        .unwrap()
        .container_ip
        .unwrap();
    assert_ne!(other_ip, ip);
    // Its job ran on through the move: its output and status are all there.
    std::fs::write(moved.join("rootfs").join("tmp").join("go"), "").unwrap();
    let l = c
        .link(LinkRequest {
            handle: h.clone(),
            job_id: job,
        })
        .unwrap();
    assert_eq!(l.exit_status, Some(4), "{l:?}");
    assert_eq!(l.stdout.as_deref(), Some(&b"before\nafter\n"[..]));
    for h in [h, other] {
        c.destroy(DestroyRequest { handle: h }).unwrap();
    }
    assert!(!moved.exists(), "{} is left", moved.display());
    w.assert_clean();
}

/// A container made before the host's end of a veth lost its IPv6 (an older daemon) loses
/// it when a daemon takes the container back (see `containers.rs`
/// `a_container_cannot_reach_the_host_over_ipv6`).
#[test]
fn recovery_turns_ipv6_off_on_the_hosts_end_of_an_older_container() {
    let knob = |cid: &str| format!("/proc/sys/net/ipv6/conf/{PREFIX}{cid}-0/disable_ipv6");
    let mut w = Wardend::start("", "");
    let mut c = w.client();
    let h = create(&mut c);
    let cid = container_id(&mut c, &h);
    if !std::path::Path::new(&knob(&cid)).exists() {
        eprintln!("skipped: no IPv6 in this kernel");
        return;
    }
    assert_eq!(std::fs::read_to_string(knob(&cid)).unwrap(), "1\n");
    drop(c);
    w.kill9();
    std::fs::write(knob(&cid), "0").unwrap();
    w.spawn();
    let mut c = w.client();
    assert_eq!(c.list().unwrap().handles, std::slice::from_ref(&h));
    assert_eq!(std::fs::read_to_string(knob(&cid)).unwrap(), "1\n");
    c.destroy(DestroyRequest { handle: h }).unwrap();
    w.assert_clean();
}

#[test]
fn a_daemon_whose_pool_overlaps_another_wardends_table_refuses_to_start() {
    // A daemon's table outlives it (its containers stay fenced); another daemon on the same
    // pool under another table name would have its containers' traffic rejected by it.
    let mut w = Wardend::start("", "");
    let mut c = w.client();
    let h = create(&mut c);
    c.destroy(DestroyRequest { handle: h }).unwrap();
    drop(c);
    assert_eq!(w.terminate(), Some(0));
    let other_table = format!("{}_other", w.nft_table);
    let config = std::fs::read_to_string(w.dir.path().join("wardend.yml"))
        .unwrap()
        .replace(
            &format!("nftables_table: {}", w.nft_table),
            &format!("nftables_table: {other_table}"),
        );
    let path = w.dir.path().join("other.yml");
    std::fs::write(&path, config).unwrap();
    let out = std::process::Command::new(WARDEND)
        .arg("--config")
        .arg(&path)
        .arg("--socket")
        .arg(w.dir.path().join("other.sock"))
        .arg("--depot")
        .arg(w.dir.path().join("other-depot"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("network.pool_network")
            && err.contains(&format!("nftables table ip {}", w.nft_table)),
        "{err}"
    );
    let tables = std::process::Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&tables.stdout).contains(&other_table),
        "the refused daemon made its table"
    );
    // The same table by name is taken over: the first daemon starts again on it.
    w.spawn();
    let mut c = w.client();
    let h = create(&mut c);
    c.destroy(DestroyRequest { handle: h }).unwrap();
    w.assert_clean();
}
