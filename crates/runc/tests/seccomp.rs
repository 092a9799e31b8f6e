//! linux.seccomp: the profile's rules, as the container's process meets them in the real
//! kernel; exec'd processes get the same profile; a bad profile fails `create`.

mod common;

use common::*;
use std::time::Duration;

use serde_json::{json, Value};

/// A writable /tmp (the shared rootfs is read-only).
fn tmpfs_tmp(s: &mut Value) {
    s["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
}

fn args(s: &mut Value, argv: &[&str]) {
    s["process"]["args"] = json!(argv);
}

/// defaultAction ALLOW, `rules` as the syscalls.
fn allow_but(s: &mut Value, rules: Value) {
    s["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": rules
    });
}

const MKDIR_SCRIPT: &str = "mkdir /tmp/x && echo made; echo data > /tmp/f && cat /tmp/f; ls /tmp";

#[test]
fn errno_rule_denies_one_syscall_and_leaves_the_others() {
    let env = Env::new("seccomp-errno");
    let out = env.run_container(&[], |s| {
        tmpfs_tmp(s);
        args(s, &["sh", "-c", MKDIR_SCRIPT]);
        allow_but(
            s,
            json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]),
        );
    });
    assert_eq!(out.code, 0, "{}", out.describe());
    assert!(
        out.stderr
            .contains("can't create directory '/tmp/x': Operation not permitted"),
        "{}",
        out.describe()
    );
    assert_eq!(out.lines(), ["data", "f"], "{}", out.describe());

    // The same container without the profile makes the directory.
    let out = env
        .run_container(&[], |s| {
            tmpfs_tmp(s);
            args(s, &["sh", "-c", MKDIR_SCRIPT]);
        })
        .ok();
    assert_eq!(
        out.lines(),
        ["made", "data", "f", "x"],
        "{}",
        out.describe()
    );
}

#[test]
fn errno_ret_sets_the_errno() {
    let env = Env::new("seccomp-errnoret");
    let out = env.run_container(&[], |s| {
        tmpfs_tmp(s);
        args(s, &["mkdir", "/tmp/x"]);
        allow_but(
            s,
            json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]),
        );
    });
    assert_eq!(out.code, 1, "{}", out.describe());
    assert!(
        out.stderr.contains("Function not implemented"),
        "{}",
        out.describe()
    );
}

#[test]
fn argument_rules_match_values_and_masks() {
    let env = Env::new("seccomp-args");
    let script = "touch /tmp/f; \
        chmod 755 /tmp/f && echo chmod-755-ok; \
        chmod 4755 /tmp/f || echo chmod-4755-denied; \
        linux64 true && echo linux64-ok; \
        linux32 true || echo linux32-denied; \
        stat -c %a /tmp/f";
    let out = env.run_container(&[], |s| {
        tmpfs_tmp(s);
        args(s, &["sh", "-c", script]);
        allow_but(
            s,
            json!([
                // The setuid bit of chmod's mode (arg 1): SCMP_CMP_MASKED_EQ.
                {"names": ["chmod"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 1, "value": 0o4000, "valueTwo": 0o4000,
                           "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["fchmodat"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 2, "value": 0o4000, "valueTwo": 0o4000,
                           "op": "SCMP_CMP_MASKED_EQ"}]},
                // personality(PER_LINUX32) only: SCMP_CMP_EQ.
                {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}
            ]),
        );
    });
    assert_eq!(
        out.lines(),
        [
            "chmod-755-ok",
            "chmod-4755-denied",
            "linux64-ok",
            "linux32-denied",
            "755"
        ],
        "{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("Operation not permitted"),
        "{}",
        out.describe()
    );
}

#[test]
fn default_errno_with_an_allow_list() {
    let env = Env::new("seccomp-allowlist");
    let allowed = [
        "execve",
        "brk",
        "arch_prctl",
        "set_tid_address",
        "set_robust_list",
        "rseq",
        "prlimit64",
        "mprotect",
        "mmap",
        "munmap",
        "getrandom",
        "readlink",
        "uname",
        "prctl",
        "getuid",
        "geteuid",
        "getgid",
        "getegid",
        "getpid",
        "getppid",
        "newfstatat",
        "fstat",
        "rt_sigaction",
        "rt_sigprocmask",
        "rt_sigreturn",
        "write",
        "exit",
        "exit_group",
    ];
    let out = env.run_container(&[], |s| {
        // chdir is not on the list: `cd` fails, with the default errno.
        args(s, &["sh", "-c", "echo ok; cd / || echo cd-denied"]);
        s["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": allowed, "action": "SCMP_ACT_ALLOW"}]
        });
    });
    assert_eq!(out.code, 0, "{}", out.describe());
    assert_eq!(out.lines(), ["ok", "cd-denied"], "{}", out.describe());
    assert!(
        out.stderr.contains("Operation not permitted"),
        "{}",
        out.describe()
    );
}

fn seccomp_status(out: &Out) -> (String, String) {
    (
        status_field(&out.stdout, "Seccomp").to_string(),
        status_field(&out.stdout, "NoNewPrivs").to_string(),
    )
}

#[test]
fn proc_status_shows_the_filter() {
    let env = Env::new("seccomp-status");
    let cat = ["cat", "/proc/self/status"];
    let deny_mkdir = json!([{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]);

    let out = env.run_ok(&cat);
    assert_eq!(seccomp_status(&out), ("0".into(), "1".into()));

    let out = env
        .run_container(&[], |s| {
            args(s, &cat);
            allow_but(s, deny_mkdir.clone());
        })
        .ok();
    assert_eq!(seccomp_status(&out), ("2".into(), "1".into()));

    // Without noNewPrivileges, as a user with no capabilities: the filter is loaded while
    // the init still has CAP_SYS_ADMIN, before it becomes that user.
    let out = env
        .run_container(&[], |s| {
            args(s, &cat);
            s["process"]["noNewPrivileges"] = false.into();
            s["process"]["user"] = json!({"uid": 1000, "gid": 1000});
            set_caps(s, &[]);
            allow_but(s, deny_mkdir.clone());
        })
        .ok();
    assert_eq!(seccomp_status(&out), ("2".into(), "0".into()));
    assert_eq!(status_field(&out.stdout, "CapEff"), cap_mask(&[]));
}

#[test]
fn exec_gets_the_containers_profile() {
    let env = Env::new("seccomp-exec");
    let id = env.created(|s| {
        tmpfs_tmp(s);
        args(s, &["sleep", "30"]);
        allow_but(
            s,
            json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]),
        );
    });
    env.runc(&["start", &id]).ok();

    let out = env.runc(&["exec", &id, "mkdir", "/tmp/x"]);
    assert_eq!(out.code, 1, "{}", out.describe());
    assert!(
        out.stderr.contains("Function not implemented"),
        "{}",
        out.describe()
    );
    let out = env.runc(&["exec", &id, "cat", "/proc/self/status"]).ok();
    assert_eq!(seccomp_status(&out), ("2".into(), "1".into()));

    // A --process file without noNewPrivileges (podman's exec), as a user: the same
    // profile, loaded before the capabilities go.
    let process = env.dir().join("process.json");
    std::fs::write(
        &process,
        json!({
            "user": {"uid": 1000, "gid": 1000},
            "args": ["sh", "-c", "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; mkdir /tmp/y"],
            "env": ["PATH=/bin"],
            "cwd": "/",
            "noNewPrivileges": false
        })
        .to_string(),
    )
    .unwrap();
    let out = env.runc(&["exec", "--process", process.to_str().unwrap(), &id]);
    assert_eq!(out.code, 1, "{}", out.describe());
    assert_eq!(
        seccomp_status(&out),
        ("2".into(), "0".into()),
        "{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("Function not implemented"),
        "{}",
        out.describe()
    );
    env.runc(&["delete", "--force", &id]).ok();
    env.assert_clean(&id);
}

#[test]
fn bad_profiles_fail_create_and_leave_nothing() {
    let env = Env::new("seccomp-bad");
    let cases = [
        (
            json!({"defaultAction": "SCMP_ACT_BOGUS"}),
            "linux.seccomp: unknown variant `SCMP_ACT_BOGUS`",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_BOGUS"}]}]}),
            "linux.seccomp: unknown variant `SCMP_CMP_BOGUS`",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
            "seccomp: syscall \"mkdir\": argument index 7 with SCMP_CMP_EQ is out of range",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/run/x.sock"}),
            "seccomp: defaultAction: SCMP_ACT_NOTIFY cannot be the default action",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x.sock",
                "syscalls": [{"names": ["write"], "action": "SCMP_ACT_NOTIFY"}]}),
            "seccomp: syscall \"write\": SCMP_ACT_NOTIFY cannot be used for write",
        ),
    ];
    for (profile, want) in cases {
        let id = env.new_id();
        let b = env.bundle(&id, |s| s["linux"]["seccomp"] = profile.clone());
        env.create(&id, &b).fails_with(want);
        env.assert_clean(&id);
    }
}

#[test]
fn features_report_seccomp() {
    let env = Env::new("seccomp-features");
    let f: Value = serde_json::from_str(&env.runc(&["features"]).ok().stdout).unwrap();
    let sc = &f["linux"]["seccomp"];
    assert_eq!(sc["enabled"], true, "{f:#}");
    for (key, want) in [
        ("actions", "SCMP_ACT_ERRNO"),
        ("operators", "SCMP_CMP_MASKED_EQ"),
        ("archs", "SCMP_ARCH_X86_64"),
        ("knownFlags", "SECCOMP_FILTER_FLAG_LOG"),
        ("supportedFlags", "SECCOMP_FILTER_FLAG_TSYNC"),
    ] {
        assert!(
            sc[key].as_array().unwrap().iter().any(|v| v == want),
            "{key} should list {want}: {f:#}"
        );
    }
    assert!(
        sc["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "SCMP_ACT_NOTIFY"),
        "{f:#}"
    );
    // This kernel (>= 5.19) takes the notify flag.
    assert!(
        sc["supportedFlags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"),
        "{f:#}"
    );
    assert!(f["annotations"]["io.github.seccomp.libseccomp.version"].is_string());
}

// ---------------------------------------------------------------------------------------
// SCMP_ACT_NOTIFY: a seccomp agent in the test

/// What the agent got on one connection: the container process state, and the cgroup of
/// its `pid` at that moment (which container the process was in).
#[derive(Debug, Clone)]
struct Received {
    state: Value,
    cgroup: String,
}

/// A seccomp agent on a unix socket: each connection brings a listener fd and the container
/// process state; each fd gets a thread answering mkdir/mkdirat by path: `...fake` succeeds
/// without a directory being made, `...denied` fails with ENAMETOOLONG, anything else
/// goes ahead (SECCOMP_USER_NOTIF_FLAG_CONTINUE).
struct Agent {
    path: std::path::PathBuf,
    got: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Agent {
    fn new(env: &Env) -> Agent {
        use std::sync::atomic::Ordering;
        let path = env.dir().join("agent.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut answerers = Vec::new();
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        conn.set_nonblocking(false).unwrap();
                        let (received, fd) = receive(&conn);
                        g.lock().unwrap().push(received);
                        let s = s.clone();
                        answerers.push(std::thread::spawn(move || answer(fd, &s)));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Err(e) => panic!("agent accept: {e}"),
                }
            }
            for a in answerers {
                let _ = a.join();
            }
        });
        Agent {
            path,
            got,
            stop,
            thread: Some(thread),
        }
    }

    fn path(&self) -> &str {
        self.path.to_str().unwrap()
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One connection: the fd comes with the first bytes, then the rest of the JSON.
fn receive(conn: &std::os::unix::net::UnixStream) -> (Received, std::os::fd::OwnedFd) {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::{AsRawFd, FromRawFd, RawFd};
    let mut data = Vec::new();
    let mut fd = None;
    loop {
        let mut buf = [0u8; 4096];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .unwrap();
        for c in msg.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for f in fds {
                    assert!(fd.is_none(), "more than one fd");
                    // SAFETY: the kernel just gave us this fd.
                    fd = Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(f) });
                }
            }
        }
        let n = msg.bytes;
        data.extend_from_slice(&buf[..n]);
        // One document per connection; runc 1.1.5 keeps its end open until it exits, so
        // the end of the document, not EOF, ends it.
        match serde_json::from_slice::<Value>(&data) {
            Err(e) if e.is_eof() && n > 0 => continue,
            Err(e) => panic!("{e}: {}", String::from_utf8_lossy(&data)),
            Ok(_) => break,
        }
    }
    let state: Value = serde_json::from_slice(&data).unwrap();
    let pid = state["pid"].as_i64().unwrap_or(0);
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    (
        Received { state, cgroup },
        fd.expect("an fd came with the state"),
    )
}

/// A NUL-terminated string at `addr` in process `pid`.
fn read_string(pid: u32, addr: u64) -> String {
    use std::os::unix::fs::FileExt;
    let Ok(mem) = std::fs::File::open(format!("/proc/{pid}/mem")) else {
        return String::new();
    };
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < 4096 {
        // Up to the page's end: the next page may not be mapped.
        let mut buf = vec![0u8; (4096 - at % 4096) as usize];
        let Ok(n) = mem.read_at(&mut buf, at) else {
            break;
        };
        if n == 0 {
            break;
        }
        if let Some(end) = buf[..n].iter().position(|b| *b == 0) {
            out.extend_from_slice(&buf[..end]);
            break;
        }
        out.extend_from_slice(&buf[..n]);
        at += n as u64;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn answer(fd: std::os::fd::OwnedFd, stop: &std::sync::atomic::AtomicBool) {
    use libseccomp::{notify_id_valid, ScmpNotifReq, ScmpNotifResp, ScmpNotifRespFlags};
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::{AsFd, AsRawFd};
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => panic!("poll: {e}"),
        }
        let revents = fds[0].revents().unwrap_or(PollFlags::empty());
        if !revents.contains(PollFlags::POLLIN) {
            // POLLHUP: every process under the filter is gone.
            return;
        }
        let Ok(req) = ScmpNotifReq::receive(fd.as_raw_fd()) else {
            continue; // the process died between poll and receive
        };
        let name = req.data.syscall.get_name().unwrap_or_default();
        let path = match name.as_str() {
            "mkdir" => read_string(req.pid, req.data.args[0]),
            "mkdirat" => read_string(req.pid, req.data.args[1]),
            _ => String::new(),
        };
        // The process may have died and its pid been reused while we read its memory.
        if notify_id_valid(fd.as_raw_fd(), req.id).is_err() {
            continue;
        }
        let resp = if path.ends_with("fake") {
            ScmpNotifResp::new_val(req.id, 0, ScmpNotifRespFlags::empty())
        } else if path.ends_with("denied") {
            ScmpNotifResp::new_error(req.id, -libc::ENAMETOOLONG, ScmpNotifRespFlags::empty())
        } else {
            ScmpNotifResp::new_continue(req.id, ScmpNotifRespFlags::empty())
        };
        let _ = resp.respond(fd.as_raw_fd());
    }
}

/// mkdir and mkdirat go to the agent at `listener`.
fn notify_mkdir(s: &mut Value, listener: &str) {
    allow_but(
        s,
        json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]),
    );
    s["linux"]["seccomp"]["listenerPath"] = listener.into();
    s["linux"]["seccomp"]["listenerMetadata"] = "warden-test-agent".into();
}

const AGENT_SCRIPT: &str = "mkdir /tmp/fake && echo fake-made; \
    mkdir /tmp/denied || echo denied; \
    mkdir /tmp/real && echo real-made; ls /tmp";
const AGENT_SAYS: [&str; 4] = ["fake-made", "denied", "real-made", "real"];

/// The container process state the agent got for the init of container `id`.
#[track_caller]
fn check_init_state(r: &Received, id: &str, bundle: &std::path::Path) {
    let s = &r.state;
    assert!(
        s["ociVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "{s:#}"
    );
    assert_eq!(s["fds"], json!(["seccompFd"]), "{s:#}");
    assert_eq!(s["metadata"], "warden-test-agent", "{s:#}");
    assert!(s["pid"].as_i64().unwrap_or(0) > 1, "{s:#}");
    assert_eq!(s["state"]["pid"], s["pid"], "{s:#}");
    assert_eq!(s["state"]["id"], id, "{s:#}");
    assert_eq!(s["state"]["status"], "creating", "{s:#}");
    assert_eq!(
        std::fs::canonicalize(s["state"]["bundle"].as_str().unwrap_or("")).ok(),
        std::fs::canonicalize(bundle).ok(),
        "{s:#}"
    );
    // The pid was the container's init: it was in the container's cgroup.
    assert!(r.cgroup.contains(id), "{s:#}\ncgroup: {}", r.cgroup);
}

/// `runc run` of the bundle, foreground: (exit code, stdout, stderr).
fn real_runc_run(env: &Env, bundle: &std::path::Path, id: &str) -> (i32, String, String) {
    let root = env.dir().join("runc-root");
    let (so, se) = (env.dir().join("runc.out"), env.dir().join("runc.err"));
    let mut child = std::process::Command::new("runc")
        .arg("--root")
        .arg(&root)
        .args(["run", "-b", bundle.to_str().unwrap(), id])
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&so).unwrap())
        .stderr(std::fs::File::create(&se).unwrap())
        .spawn()
        .expect("run runc");
    let st = wait_child(&mut child, CMD_TIMEOUT);
    if st.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    (
        st.map(exit_code).unwrap_or(-1),
        std::fs::read_to_string(&so).unwrap_or_default(),
        std::fs::read_to_string(&se).unwrap_or_default(),
    )
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().filter(|l| !l.trim().is_empty()).collect()
}

#[test]
fn notify_hands_the_listener_to_the_agent_which_answers_mkdir() {
    let env = Env::new("seccomp-notify");
    let agent = Agent::new(&env);
    let edit = |s: &mut Value| {
        tmpfs_tmp(s);
        args(s, &["sh", "-c", AGENT_SCRIPT]);
        notify_mkdir(s, agent.path());
    };

    // runc 1.1.5 first: the scenario is sound.
    let id = env.new_id();
    let b = env.bundle(&id, edit);
    let (code, out, err) = real_runc_run(&env, &b, &id);
    assert_eq!(
        (code, lines(&out)),
        (0, AGENT_SAYS.to_vec()),
        "runc: {err}\nagent got {:?}",
        agent.received()
    );
    assert!(
        err.contains("can't create directory '/tmp/denied': File name too long"),
        "runc: {err}"
    );
    let got = agent.received();
    assert_eq!(got.len(), 1, "{got:?}");
    check_init_state(&got[0], &id, &b);
    env.assert_clean(&id);

    // Then warden-runc, with noNewPrivileges (the filter is loaded last), without it
    // (loaded before the capabilities go), and with the notify flag WAIT_KILLABLE_RECV.
    for (n, (nnp, killable)) in [(true, false), (false, false), (true, true)]
        .into_iter()
        .enumerate()
    {
        let id = env.new_id();
        let b = env.bundle(&id, |s| {
            edit(s);
            s["process"]["noNewPrivileges"] = nnp.into();
            if killable {
                s["linux"]["seccomp"]["flags"] = json!(["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]);
            }
        });
        let out = env.runc(&["run", "-b", b.to_str().unwrap(), &id]);
        assert_eq!(out.code, 0, "nnp {nnp}: {}", out.describe());
        assert_eq!(out.lines(), AGENT_SAYS, "nnp {nnp}: {}", out.describe());
        assert!(
            out.stderr
                .contains("can't create directory '/tmp/denied': File name too long"),
            "{}",
            out.describe()
        );
        let got = agent.received();
        assert_eq!(got.len(), 2 + n, "{got:?}");
        check_init_state(got.last().unwrap(), &id, &b);
        env.assert_clean(&id);
    }
}

#[test]
fn exec_hands_its_own_listener_to_the_agent() {
    let env = Env::new("seccomp-notify-exec");
    let agent = Agent::new(&env);
    let id = env.created(|s| {
        tmpfs_tmp(s);
        args(s, &["sleep", "600"]);
        notify_mkdir(s, agent.path());
    });
    env.runc(&["start", &id]).ok();
    let st = env.state(&id);
    assert_eq!(st["status"], "running", "{st:#}");
    let init = st["pid"].as_i64().unwrap();
    wait_until(Duration::from_secs(5), || !agent.received().is_empty());
    assert_eq!(agent.received().len(), 1);
    assert_eq!(agent.received()[0].state["pid"], init);

    let out = env
        .runc(&[
            "exec",
            "--pid-file",
            env.dir().join("exec.pid").to_str().unwrap(),
            &id,
            "sh",
            "-c",
            AGENT_SCRIPT,
        ])
        .ok();
    assert_eq!(out.lines(), AGENT_SAYS, "{}", out.describe());
    let exec_pid: i64 = std::fs::read_to_string(env.dir().join("exec.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let got = agent.received();
    assert_eq!(got.len(), 2, "{got:?}");
    let s = &got[1].state;
    assert_eq!(s["fds"], json!(["seccompFd"]), "{s:#}");
    assert_eq!(s["metadata"], "warden-test-agent", "{s:#}");
    assert_eq!(s["pid"], exec_pid, "{s:#}");
    assert_eq!(s["state"]["pid"], init, "{s:#}");
    assert_eq!(s["state"]["id"], id.as_str(), "{s:#}");
    assert_eq!(s["state"]["status"], "running", "{s:#}");
    assert!(got[1].cgroup.contains(&id), "{:?}", got[1]);

    // A --process without noNewPrivileges (the filter is loaded before the capabilities go).
    let process = env.dir().join("process.json");
    std::fs::write(
        &process,
        json!({"user": {"uid": 0, "gid": 0},
               "args": ["sh", "-c", AGENT_SCRIPT.replace("/tmp/", "/tmp/p-")],
               "env": ["PATH=/bin"], "cwd": "/", "noNewPrivileges": false})
        .to_string(),
    )
    .unwrap();
    let out = env
        .runc(&["exec", "--process", process.to_str().unwrap(), &id])
        .ok();
    assert_eq!(
        out.lines(),
        ["fake-made", "denied", "real-made", "p-real", "real"],
        "{}",
        out.describe()
    );
    assert_eq!(agent.received().len(), 3);

    // Into a paused container (the process joins the frozen cgroup last): the agent gets
    // the fd before the freeze holds the process, and answers once it is resumed.
    env.runc(&["pause", &id]).ok();
    env.runc(&[
        "exec",
        "-d",
        "--ignore-paused",
        &id,
        "sh",
        "-c",
        "mkdir /tmp/q-fake && echo thawed-fake-made > /tmp/q.log",
    ])
    .ok();
    // `exec -d` returns once the agent has the fd; the agent's thread records it a moment
    // later.
    wait_until(Duration::from_secs(5), || agent.received().len() >= 4);
    let got = agent.received();
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[3].state["state"]["status"], "paused", "{:?}", got[3]);
    env.runc(&["resume", &id]).ok();
    assert!(
        wait_until(Duration::from_secs(10), || env
            .runc(&["exec", &id, "cat", "/tmp/q.log"])
            .stdout
            .contains("thawed-fake-made")),
        "the process exec'd while paused never ran"
    );
    let out = env.runc(&["exec", &id, "ls", "/tmp"]).ok();
    assert_eq!(
        out.lines(),
        ["p-real", "q.log", "real"],
        "{}",
        out.describe()
    );

    env.runc(&["delete", "--force", &id]).ok();
    env.assert_clean(&id);
}

#[test]
fn notify_without_a_reachable_agent_fails_create_and_leaves_nothing() {
    let env = Env::new("seccomp-notify-bad");
    let absent = env.dir().join("nobody.sock");
    // Bound but not listening: connect is refused.
    let deaf = env.dir().join("deaf.sock");
    let _deaf = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::Stream,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    nix::sys::socket::bind(
        std::os::fd::AsRawFd::as_raw_fd(&_deaf),
        &nix::sys::socket::UnixAddr::new(&deaf).unwrap(),
    )
    .unwrap();
    let cases = [
        (
            None,
            "seccomp: SCMP_ACT_NOTIFY (syscall \"mkdir\") needs linux.seccomp.listenerPath"
                .to_string(),
        ),
        (
            Some(absent.clone()),
            format!(
                "seccomp: listenerPath {}: connect to the seccomp agent: No such file or directory",
                absent.display()
            ),
        ),
        (
            Some(deaf.clone()),
            format!(
                "seccomp: listenerPath {}: connect to the seccomp agent: Connection refused",
                deaf.display()
            ),
        ),
    ];
    for (listener, want) in cases {
        for nnp in [true, false] {
            let id = env.new_id();
            let b = env.bundle(&id, |s| {
                allow_but(
                    s,
                    json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]),
                );
                if let Some(l) = &listener {
                    s["linux"]["seccomp"]["listenerPath"] = l.to_str().unwrap().into();
                }
                s["process"]["noNewPrivileges"] = nnp.into();
            });
            env.create(&id, &b).fails_with(&want);
            env.assert_clean(&id);
        }
    }
}

#[test]
fn notify_to_an_agent_that_never_accepts_times_out() {
    let env = Env::new("seccomp-notify-busy");
    use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
    let path = env.dir().join("busy.sock");
    let sock = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    let addr = UnixAddr::new(&path).unwrap();
    socket::bind(std::os::fd::AsRawFd::as_raw_fd(&sock), &addr).unwrap();
    socket::listen(&sock, Backlog::new(0).unwrap()).unwrap();
    // The one connection a backlog of 0 takes: the next connect waits.
    let filler = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let id = env.new_id();
    let b = env.bundle(&id, |s| notify_mkdir(s, path.to_str().unwrap()));
    let t = std::time::Instant::now();
    env.create(&id, &b).fails_with(&format!(
        "seccomp: listenerPath {}: connect: no agent accepted within 10s",
        path.display()
    ));
    assert!(t.elapsed() < Duration::from_secs(25), "{:?}", t.elapsed());
    env.assert_clean(&id);
    drop(filler);
}
