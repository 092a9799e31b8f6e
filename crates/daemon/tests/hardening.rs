//! What confines a job beyond its user: the container's seccomp profile (the built-in one by
//! default), its pids limit, and the masked and read-only paths, seen from inside real jobs,
//! privileged and not.

mod wardend;

use std::path::Path;
use std::process::{Command, Stdio};

use warden_client::Client;
use warden_protocol::DestroyRequest;
use wardend::*;

fn field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
        .unwrap_or_default()
}

/// The job's own pids.max (the container has its own cgroup namespace).
const PIDS_MAX: &str =
    "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max";

#[test]
fn every_job_runs_under_the_default_profile_with_a_pids_limit_and_masked_paths() {
    let w = Wardend::start("", "");
    let mut c = w.client();
    let h = create(&mut c);
    for privileged in [false, true] {
        let who = if privileged {
            "privileged"
        } else {
            "unprivileged"
        };
        let (code, out, _) = run_as(&mut c, &h, "cat /proc/self/status", privileged);
        assert_eq!(code, 0);
        assert_eq!(field(&out, "Seccomp:"), "2", "{who}: a filter is loaded");
        assert_eq!(field(&out, "NoNewPrivs:"), "1", "{who}");

        // A user namespace, where the job would be root with every capability.
        let (code, _, err) = run_as(&mut c, &h, "unshare -U -r id", privileged);
        assert_ne!(code, 0, "{who}: unshare -U worked");
        assert!(err.contains("Operation not permitted"), "{who}: {err}");
        // mount, even for root in the container.
        let (code, _, err) = run_as(&mut c, &h, "mount -t tmpfs none /mnt", privileged);
        assert_ne!(code, 0, "{who}: mount worked");
        assert!(
            err.contains("ermission denied") || err.contains("not permitted"),
            "{who}: {err}"
        );
        // Masked and read-only paths, as runc's defaults.
        let (_, out, err) = run_as(
            &mut c,
            &h,
            "stat -c '%t:%T' /proc/keys /proc/timer_list; ls -A /sys/firmware | wc -l",
            privileged,
        );
        // Files masked with /dev/null (1:3), directories with an empty read-only tmpfs.
        assert_eq!(out, "1:3\n1:3\n0\n", "{who}: masked paths: {err}");
        let (code, _, _) = run_as(&mut c, &h, "echo h > /proc/sysrq-trigger", privileged);
        assert_ne!(code, 0, "{who}: /proc/sysrq-trigger is writable");
        // Ordinary work still runs: pipes, fork, a shell's job control, sockets.
        let (code, out, err) = run_as(
            &mut c,
            &h,
            "echo a | tr a b; (sleep 0.1 &) ; wait; nc -l -p 0 -w 1 127.0.0.1 </dev/null; echo ok",
            privileged,
        );
        assert_eq!(code, 0, "{who}: {err}");
        assert!(out.ends_with("ok\n"), "{who}: {out} {err}");

        let (_, out, _) = run_as(&mut c, &h, PIDS_MAX, privileged);
        assert_eq!(out.trim(), "4096", "{who}: the default pids limit");
    }
    c.destroy(DestroyRequest { handle: h }).unwrap();
    w.assert_clean();
}

#[test]
fn a_fork_bomb_is_contained_by_the_pids_limit() {
    let w = Wardend::start("container_pids_limit: 64", "");
    let mut c = w.client();
    let h = create(&mut c);
    let (_, out, _) = run(&mut c, &h, PIDS_MAX);
    assert_eq!(out.trim(), "64");
    // Far more sleeps than the limit: the shell is refused forks and says so.
    let (_, out, err) = run(
        &mut c,
        &h,
        "i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done; echo spawned",
    );
    assert!(
        err.contains("fork") || err.contains("Resource temporarily unavailable"),
        "no fork was refused: {out} {err}"
    );
    // The host is fine and the container goes away with its processes.
    assert!(Command::new("true").status().unwrap().success());
    c.destroy(DestroyRequest { handle: h }).unwrap();
    w.assert_clean();
}

#[test]
fn unconfined_and_unlimited_when_the_operator_says_so() {
    let w = Wardend::start(
        "container_seccomp_profile: unconfined\ncontainer_pids_limit: null",
        "",
    );
    let mut c = w.client();
    let h = create(&mut c);
    let (_, out, _) = run(&mut c, &h, "cat /proc/self/status");
    assert_eq!(field(&out, "Seccomp:"), "0");
    let (_, out, _) = run(&mut c, &h, PIDS_MAX);
    assert_eq!(out.trim(), "max");
    c.destroy(DestroyRequest { handle: h }).unwrap();
    w.assert_clean();
}

#[test]
fn a_profile_that_does_not_compile_stops_the_daemon_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("profile.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_SOMETIMES"}]}"#,
    )
    .unwrap();
    let config = dir.path().join("wardend.yml");
    std::fs::write(
        &config,
        format!(
            "server:\n  container_seccomp_profile: {}\n  container_depot_path: {}\nhealth_check_server:\n  port: 0\n",
            profile.display(),
            dir.path().join("depot").display()
        ),
    )
    .unwrap();
    let out = Command::new(WARDEND)
        .arg("--config")
        .arg(&config)
        .arg("--socket")
        .arg(dir.path().join("w.sock"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "wardend started: {err}");
    assert!(
        err.contains("server.container_seccomp_profile") && err.contains("profile.json"),
        "{err}"
    );
    assert!(!Path::new(&dir.path().join("w.sock")).exists());
}

// ---------------------------------------------------------------------------------------------
// The user namespace: container root is an unprivileged host uid.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use warden_protocol::{BindMount, CreateRequest, Mode};

/// The default range (`user.namespace_start_uid`).
const START: u32 = 2_000_000_000;

fn words(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A host dir anyone may write (the container's root is "anyone" there), with a file of the
/// host's root that only root may read and one that only root may write, bound into a new
/// container at /host.
fn create_with_host_dir(c: &mut Client) -> (String, tempfile::TempDir) {
    let host = tempfile::tempdir().unwrap();
    std::fs::set_permissions(host.path(), PermissionsExt::from_mode(0o777)).unwrap();
    let secret = host.path().join("secret");
    std::fs::write(&secret, "host secret\n").unwrap();
    std::fs::set_permissions(&secret, PermissionsExt::from_mode(0o600)).unwrap();
    let config = host.path().join("config");
    std::fs::write(&config, "host config\n").unwrap();
    std::fs::set_permissions(&config, PermissionsExt::from_mode(0o644)).unwrap();
    let h = c
        .create(CreateRequest {
            bind_mounts: vec![BindMount {
                src_path: host.path().display().to_string(),
                dst_path: "/host".into(),
                mode: Mode::Rw as i32,
            }],
            ..Default::default()
        })
        .unwrap()
        .handle;
    (h, host)
}

/// What a privileged job may do as root of its own user namespace, and what only the host's
/// root could, checked from inside and on the host.
fn privileged_root_is_root_inside_only(w: &Wardend) {
    let mut c = w.client();
    let (h, host) = create_with_host_dir(&mut c);
    let (code, out, err) = run_as(
        &mut c,
        &h,
        "id -u; cat /proc/self/uid_map /proc/self/gid_map",
        true,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().map(words).collect::<Vec<_>>(),
        [
            "0",
            &format!("0 {START} 65536"),
            &format!("0 {START} 65536")
        ]
    );

    // Root inside: the base rootfs is its own, it writes /etc, chowns, changes user.
    let (code, out, err) = run_as(
        &mut c,
        &h,
        "stat -c %u:%g /bin/busybox /etc /etc/passwd / && echo '10.0.0.1 db' >> /etc/hosts \
         && echo 'app:x:1234:1234::/:/bin/sh' >> /etc/passwd && touch /tmp/f \
         && chown 1234:1234 /tmp/f && stat -c %u:%g /tmp/f && su -s /bin/sh app -c 'id -u' \
         && chmod u+s /tmp/f && echo done",
        true,
    );
    assert_eq!(code, 0, "{out} {err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["0:0", "0:0", "0:0", "0:0", "1234:1234", "1234", "done"],
        "{err}"
    );
    let upper = w.depot.join(ids(w, &h)).join("disk").join("upper");
    let f = std::fs::metadata(upper.join("tmp/f")).unwrap();
    assert_eq!(
        (f.uid(), f.gid()),
        (START + 1234, START + 1234),
        "on the host"
    );
    assert_eq!(
        std::fs::metadata(upper.join("etc/hosts")).unwrap().uid(),
        START
    );

    // Not root on the host: a host dir bound in is the host's, a device is not its to make.
    let (code, out, err) = run_as(
        &mut c,
        &h,
        "touch /host/made; cat /host/secret; echo more >> /host/config; \
         mknod /tmp/disk b 8 0 && head -c1 /tmp/disk; echo end",
        true,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "end\n", "{err}");
    assert!(
        err.matches("Permission denied").count() >= 2 && err.contains("mknod"),
        "{err}"
    );
    let made = std::fs::metadata(host.path().join("made")).unwrap();
    assert_eq!(
        (made.uid(), made.gid()),
        (START, START),
        "the new file is the mapped root's"
    );
    assert_eq!(
        std::fs::read_to_string(host.path().join("config")).unwrap(),
        "host config\n"
    );
    assert!(!upper.join("tmp/disk").exists());

    // An unprivileged job, as before: its own uid, no root powers even in the namespace.
    let (code, out, err) = run(
        &mut c,
        &h,
        "id -u; touch /home/vcap/mine && stat -c %U /home/vcap/mine; touch /etc/x; echo end",
    );
    assert_eq!(code, 0, "{err}");
    let uid: u32 = out.lines().next().unwrap().parse().unwrap();
    assert!((10000..10064).contains(&uid), "{out}");
    assert_eq!(out.lines().skip(1).collect::<Vec<_>>(), ["vcap", "end"]);
    assert!(err.contains("/etc/x"), "{err}");
    let mine = std::fs::metadata(upper.join("home/vcap/mine")).unwrap();
    assert_eq!(mine.uid(), START + uid);
    c.destroy(DestroyRequest { handle: h }).unwrap();
    w.assert_clean();
}

/// The container id of `handle` (its dir in the depot).
fn ids(w: &Wardend, handle: &str) -> String {
    let mut c = w.client();
    let info = c
        .info(warden_protocol::InfoRequest {
            handle: handle.into(),
        })
        .unwrap();
    Path::new(&info.container_path.unwrap())
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string()
}

#[test]
fn a_privileged_job_is_root_in_its_user_namespace_not_on_the_host() {
    let w = Wardend::start("", "");
    privileged_root_is_root_inside_only(&w);
    // Idmapped where the base's filesystem can be (ext4, xfs, btrfs: this host); the VM
    // lane's base is on the host's root shared over 9p, which cannot: there the copy.
    let copied = w.depot.join(".rootfs").exists();
    let fs = nix::sys::statfs::statfs(&rootfs())
        .unwrap()
        .filesystem_type()
        .0 as u64;
    let idmappable = [0xEF53, 0x5846_5342, 0x9123_683E].contains(&fs);
    eprintln!("base rootfs on filesystem {fs:#x}: copied: {copied}");
    if idmappable {
        assert!(
            !copied,
            "the base was copied, not idmapped:\n{}",
            w.log_text()
        );
    } else {
        assert!(
            !copied || w.log_text().contains("cannot be idmapped here"),
            "{}",
            w.log_text()
        );
    }
}

#[test]
fn the_chowned_copy_of_the_base_when_idmapping_is_not_used() {
    let w = Wardend::start("", "user:\n  namespace_rootfs: copy\n");
    privileged_root_is_root_inside_only(&w);
    // One copy, made by the first create and shared by the next.
    let copies: Vec<_> = std::fs::read_dir(w.depot.join(".rootfs"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    let copy = copies[0].path();
    assert_eq!(
        std::fs::metadata(copy.join("bin/busybox")).unwrap().uid(),
        START
    );
    let made = std::fs::metadata(&copy).unwrap().ino();
    let mut c = w.client();
    let h = create(&mut c);
    assert_eq!(std::fs::metadata(&copy).unwrap().ino(), made);
    let (_, out, _) = run_as(&mut c, &h, "stat -c %u /bin/busybox", true);
    assert_eq!(out, "0\n");
    c.destroy(DestroyRequest { handle: h }).unwrap();
    assert_eq!(
        w.log_text().matches("made the chowned copy").count(),
        1,
        "{}",
        w.log_text()
    );
}

/// A copy of the busybox base at `to` (`cp -a`, owners kept).
fn copy_base(to: &Path) {
    let cp = Command::new("cp")
        .arg("-a")
        .arg(rootfs())
        .arg(to)
        .output()
        .unwrap();
    assert!(cp.status.success(), "{cp:?}");
}

/// The base rootfs on a filesystem that Linux 5.19+ can idmap under an overlay (ext4, on a
/// loop device of the test's own): the idmapped path, never the copy. The v2 lane's root is
/// 9p, which cannot be idmapped, so this is what proves the path on its 6.1 kernel; there
/// WARDEN_TEST_REQUIRE_IDMAP=1 makes it fail, not skip, when the loop device, the ext4 or
/// the idmapping cannot be had.
#[test]
fn a_base_on_an_idmappable_filesystem_is_idmapped_not_copied() {
    let required = std::env::var("WARDEN_TEST_REQUIRE_IDMAP").is_ok_and(|v| v == "1");
    let skip = |why: String| {
        assert!(!required, "WARDEN_TEST_REQUIRE_IDMAP=1: {why}");
        eprintln!("skipped: {why}");
    };
    let fs = match LoopFs::try_new("ext4", 64) {
        Ok(fs) => fs,
        Err(e) => return skip(format!("no ext4 on a loop device here ({e})")),
    };
    // The busybox base, plus a file of a user of the range's and one of a uid past it.
    let base = fs.mount.join("base");
    copy_base(&base);
    for (name, owner) in [("theirs", 1234), ("far", 70000)] {
        let p = base.join(name);
        std::fs::write(&p, "base\n").unwrap();
        std::fs::set_permissions(&p, PermissionsExt::from_mode(0o644)).unwrap();
        std::os::unix::fs::chown(&p, Some(owner), Some(owner)).unwrap();
    }
    let w = Wardend::start_on_base(&base, "", "");
    let mut c = w.client();
    let h = create(&mut c);
    if w.log_text().contains("cannot be idmapped here") {
        return skip(format!("wardend fell back:\n{}", w.log_text()));
    }
    let dir = w.depot.join(ids(&w, &h));
    // The overlay's lower layer is the idmapped mount (detached from `lower/` once the
    // overlay holds it), not a copy.
    let lower = format!("lowerdir={}", dir.join("lower").display());
    let rootfs_mp = dir.join("rootfs").display().to_string();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let overlay = mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(rootfs_mp.as_str()))
        .unwrap_or_else(|| panic!("no overlay at {rootfs_mp}:\n{mountinfo}"));
    assert!(overlay.contains(&lower), "{overlay}");
    assert!(!dir.join("lower").exists());
    assert!(!w.depot.join(".rootfs").exists(), "{}", w.log_text());

    // Inside, the base's owners through the map: host root is root, 1234 is 1234, a uid the
    // range does not hold is nobody. Files copied up from it keep their owner: on the host
    // they are the mapped ids.
    let (code, out, err) = run_as(
        &mut c,
        &h,
        "id -u; stat -c %u:%g /bin/busybox /usr /theirs /far; echo more >> /theirs \
         && touch /usr/made && cat /theirs",
        true,
    );
    assert_eq!(code, 0, "{out} {err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "0",
            "0:0",
            "0:0",
            "1234:1234",
            "65534:65534",
            "base",
            "more"
        ],
        "{err}"
    );
    let upper = dir.join("disk").join("upper");
    let owner = |p: &str| {
        let m = std::fs::metadata(upper.join(p)).unwrap();
        (m.uid(), m.gid())
    };
    assert_eq!(owner("theirs"), (START + 1234, START + 1234));
    assert_eq!(owner("usr"), (START, START));
    assert_eq!(owner("usr/made"), (START, START));
    // The base itself is untouched.
    let theirs = std::fs::metadata(base.join("theirs")).unwrap();
    assert_eq!((theirs.uid(), theirs.len()), (1234, 5));
    c.destroy(DestroyRequest { handle: h }).unwrap();

    // And a privileged job there is root inside only, as on a copied base.
    privileged_root_is_root_inside_only(&w);
    assert!(!w.depot.join(".rootfs").exists(), "{}", w.log_text());
    drop(c);
    drop(w);
    drop(fs);
}

/// A ramfs of the test's own, unmounted when dropped (even when the test fails).
struct Ramfs(tempfile::TempDir);

impl Drop for Ramfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(self.0.path(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// `namespace_rootfs: auto` on a base the kernel will not idmap (ramfs has no idmapped
/// mounts on any kernel): the chowned copy, the reason logged, and the kernel asked once, not
/// again by every later create.
#[test]
fn a_base_that_cannot_be_idmapped_falls_back_to_the_copy_and_says_why_once() {
    let dir = tempfile::Builder::new()
        .prefix("wardend-ramfs")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
    nix::mount::mount(
        Some("ramfs"),
        dir.path(),
        Some("ramfs"),
        nix::mount::MsFlags::empty(),
        Some("mode=0755"),
    )
    .unwrap();
    let fs = Ramfs(dir);
    let base = fs.0.path().join("base");
    copy_base(&base);
    let w = Wardend::start_on_base(&base, "", "");
    privileged_root_is_root_inside_only(&w);
    let mut c = w.client();
    let (a, b) = (create(&mut c), create(&mut c));
    for h in [&a, &b] {
        let (_, out, _) = run_as(&mut c, h, "stat -c %u:%g /bin/busybox", true);
        assert_eq!(out, "0:0\n");
    }
    let log = w.log_text();
    let said: Vec<_> = log
        .lines()
        .filter(|l| l.contains("cannot be idmapped here"))
        .collect();
    assert_eq!(said.len(), 1, "{log}");
    assert!(
        said[0].contains("mount_setattr(MOUNT_ATTR_IDMAP)") && said[0].contains("from now on"),
        "{}",
        said[0]
    );
    assert_eq!(log.matches("made the chowned copy").count(), 1, "{log}");
    let copies = std::fs::read_dir(w.depot.join(".rootfs")).unwrap().count();
    assert_eq!(copies, 1);
    for h in [a, b] {
        c.destroy(DestroyRequest { handle: h }).unwrap();
    }
    w.assert_clean();
    drop(c);
    drop(w);
    drop(fs);
}

#[test]
fn container_root_is_host_root_only_when_the_operator_says_so() {
    let w = Wardend::start("", "user:\n  container_root_is_host_root: true\n");
    let mut c = w.client();
    let (h, host) = create_with_host_dir(&mut c);
    let (code, out, err) = run_as(
        &mut c,
        &h,
        "cat /proc/self/uid_map; touch /host/made; cat /host/secret",
        true,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().map(words).collect::<Vec<_>>(),
        ["0 0 4294967295", "host secret"]
    );
    assert_eq!(
        std::fs::metadata(host.path().join("made")).unwrap().uid(),
        0
    );
    c.destroy(DestroyRequest { handle: h }).unwrap();
    w.assert_clean();
}

#[test]
fn an_exhausted_uid_pool_fails_the_create_and_leaves_nothing() {
    let w = Wardend::start("", "user:\n  pool_size: 1\n");
    let mut c = w.client();
    let h = create(&mut c);
    let e = server_error(c.create(Default::default()));
    assert_eq!(e, "Warden::Pool::Uid::NoUidAvailable");
    c.destroy(DestroyRequest { handle: h }).unwrap();
    w.assert_clean();
    // The uid came back: the next create works.
    let h = create(&mut c);
    c.destroy(DestroyRequest { handle: h }).unwrap();
    w.assert_clean();
}

/// wardend with `user:` lines, expected to refuse to start; its stderr.
fn refused(user: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wardend.yml");
    std::fs::write(
        &config,
        format!(
            "server:\n  container_depot_path: {}\nhealth_check_server:\n  port: 0\nuser:\n{user}",
            dir.path().join("depot").display()
        ),
    )
    .unwrap();
    let out = Command::new(WARDEND)
        .arg("--config")
        .arg(&config)
        .arg("--socket")
        .arg(dir.path().join("w.sock"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "wardend started: {err}");
    assert!(!dir.path().join("w.sock").exists());
    assert!(!dir.path().join("depot").exists(), "{err}");
    err
}

#[test]
fn a_bad_user_namespace_range_stops_the_daemon_naming_the_key() {
    let e = refused("  namespace_start_uid: 5000\n");
    assert!(
        e.contains("user.namespace_start_uid: 5000") && e.contains("overlaps the uid pool"),
        "{e}"
    );
    let e = refused("  namespace_start_uid: 0\n");
    assert!(e.contains("user.namespace_start_uid: 0"), "{e}");
    let e = refused("  namespace_size: 1000\n");
    assert!(e.contains("user.namespace_size: 1000"), "{e}");
    // A range holding a user of the host's: root's gid 0 is in /etc/group, uid 0 in
    // /etc/passwd, but start 0 is refused already; take the host's nobody (65534).
    let e = refused("  namespace_start_uid: 65000\n  pool_start_uid: 40000\n  pool_size: 10\n");
    assert!(
        e.contains("user.namespace_start_uid: 65000") && e.contains("/etc/passwd"),
        "{e}"
    );
}

/// CVE-2024-21626 (runc leaked a host cgroup fd into the container, and a job whose cwd was
/// `/proc/self/fd/N` walked the host) and CVE-2019-5736 (a container overwrote the runtime's
/// binary through /proc/<pid>/exe): a job holds no descriptor of the host's, the init only
/// /dev/null, and neither the init's binary nor wardend's can be written from inside.
#[test]
fn no_host_descriptor_leaks_in_and_the_runtime_binaries_cannot_be_overwritten() {
    use std::hash::{Hash, Hasher};
    let digest = |p: &std::path::Path| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::fs::read(p).unwrap().hash(&mut h);
        h.finish()
    };
    let w = Wardend::start("", "");
    let init_bin = w.depot.join(".bin").join("warden-init");
    let (wardend_before, init_before) = (digest(std::path::Path::new(WARDEND)), digest(&init_bin));
    let mut c = w.client();
    let h = create(&mut c);
    for privileged in [false, true] {
        let who = if privileged {
            "privileged"
        } else {
            "unprivileged"
        };
        // Every descriptor the job's shell started with, as its first child inherits them:
        // its three pipes (stdin, stdout, stderr). (Listed from the shell itself, busybox's
        // own redirections would show.)
        let (code, out, err) = run_as(
            &mut c,
            &h,
            // (A file per job: with fs.protected_regular, as systemd sets it, root may not
            // reopen a file another user made in the sticky /tmp.)
            "sleep 5 & p=$!; ls -l /proc/$p/fd > /tmp/fds.$$; kill $p; cat /tmp/fds.$$",
            privileged,
        );
        assert_eq!(code, 0, "{who}: {err}");
        for line in out.lines().filter(|l| l.contains(" -> ")) {
            let (left, target) = line.split_once(" -> ").unwrap();
            let fd = left.rsplit(' ').next().unwrap();
            assert!(
                // (A background job's stdin is /dev/null, POSIX says.)
                ["0", "1", "2"].contains(&fd)
                    && (target.starts_with("pipe:[") || target == "/dev/null"),
                "{who}: the job holds fd {fd} -> {target}:\n{out}"
            );
        }
        // A cwd through a descriptor that is not there goes nowhere.
        let (code, _, _) = run_as(&mut c, &h, "cd /proc/self/fd/7", privileged);
        assert_ne!(code, 0, "{who}");
    }
    // The init (pid 1 in the container): /dev/null on its stdio and nothing else.
    let (code, out, err) = run_as(
        &mut c,
        &h,
        "ls -l /proc/1/fd > /tmp/fds.$$; cat /tmp/fds.$$",
        true,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().filter(|l| l.contains(" -> ")).count(),
        3,
        "{out}"
    );
    for line in out.lines().filter(|l| l.contains(" -> ")) {
        assert!(
            line.ends_with(" -> /dev/null"),
            "the init holds {line}:\n{out}"
        );
    }
    // Its binary (the daemon's warden-init on the host) cannot be written through /proc, nor
    // opened for writing by path from inside; wardend's own binary is not in reach.
    for script in [
        "echo x >> /proc/1/exe",
        "exec 3>>/proc/1/exe",
        "echo x > /.warden/init",
    ] {
        let (code, _, _) = run_as(&mut c, &h, script, true);
        assert_ne!(code, 0, "{script} worked");
    }
    c.destroy(DestroyRequest { handle: h }).unwrap();
    assert_eq!(digest(std::path::Path::new(WARDEND)), wardend_before);
    assert_eq!(digest(&init_bin), init_before);
    w.assert_clean();
}

/// The kernel surfaces a container must not reach, probed from inside privileged and
/// unprivileged jobs by a static C program (`tests/fixtures/escape_probe.c`): the keyring,
/// bpf, userfaultfd and perf_event_open fail with EPERM (the default profile), so does
/// unmounting a masked path; another container's init, seen by its host pid, can be neither
/// traced nor read through /proc (it is not in this container's pid namespace).
#[test]
fn kernel_surfaces_and_other_containers_are_out_of_reach() {
    let w = Wardend::start("", "");
    let mut c = w.client();
    let other = create(&mut c);
    let other_id = std::path::PathBuf::from(
        c.info(warden_protocol::InfoRequest {
            handle: other.clone(),
        })
        .unwrap()
        .container_path
        .unwrap(),
    );
    let other_id = other_id.file_name().unwrap().to_string_lossy().into_owned();
    let state = w
        .depot
        .join(&other_id)
        .join("run")
        .join(&other_id)
        .join("state.json");
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(state).unwrap()).unwrap();
    let other_init = state["pid"].as_i64().unwrap();
    assert!(
        Path::new(&format!("/proc/{other_init}/root/etc/hostname")).exists(),
        "the host sees the other container's init"
    );
    let h = create_with_fixture(&w, &mut c, "escape_probe");
    let (eperm, esrch, enoent) = (libc::EPERM, libc::ESRCH, libc::ENOENT);
    let want = format!(
        "keyctl {eperm}\nadd_key {eperm}\nbpf {eperm}\nuserfaultfd {eperm}\n\
         perf_event_open {eperm}\numount_masked {eperm}\nptrace_host {esrch}\n\
         other_root {enoent}\n"
    );
    for privileged in [false, true] {
        let (code, out, err) = run_as(
            &mut c,
            &h,
            &format!("/mnt/bin/escape_probe {other_init}"),
            privileged,
        );
        assert_eq!(code, 0, "privileged {privileged}: {err}");
        assert_eq!(out, want, "privileged {privileged}: {err}");
    }
    // And nothing changed: /proc/keys still masked in the container, the other container
    // still running.
    let (_, out, _) = run_as(&mut c, &h, "stat -c '%t:%T' /proc/keys", true);
    assert_eq!(out, "1:3\n");
    let (code, out, _) = run(&mut c, &other, "cat /etc/hostname");
    assert_eq!((code, out.trim()), (0, other_id.as_str()));
    for handle in [h, other] {
        c.destroy(DestroyRequest { handle }).unwrap();
    }
    w.assert_clean();
}

/// A job gets a session keyring of its own: the daemon's (here: the one of the thread that
/// started it, holding a key of the test's) is not the job's to search or read, even with the
/// `unconfined` profile, which lets keyctl through. The probe is a static C program
/// (`tests/fixtures/key_probe.c`) searching its session keyring.
#[test]
fn a_job_does_not_get_the_daemons_session_keyring() {
    let secret = format!("warden-daemon-secret-{}", std::process::id());
    let ring = std::ffi::CString::new(format!("{secret}-ring")).unwrap();
    let desc = std::ffi::CString::new(secret.as_str()).unwrap();
    // This test's thread only: the daemon it starts inherits the keyring.
    // SAFETY: keyctl and add_key read the NUL-terminated strings and the payload only.
    unsafe {
        assert!(libc::syscall(libc::SYS_keyctl, 1 as libc::c_long, ring.as_ptr()) >= 0);
        let payload = b"x";
        let r = libc::syscall(
            libc::SYS_add_key,
            c"user".as_ptr(),
            desc.as_ptr(),
            payload.as_ptr(),
            payload.len(),
            -3 as libc::c_long,
        );
        assert!(r >= 0, "add_key: {}", std::io::Error::last_os_error());
    }
    let w = Wardend::start("container_seccomp_profile: unconfined", "");
    let mut c = w.client();
    let h = create_with_fixture(&w, &mut c, "key_probe");
    // The check can fail: the daemon's side finds the key.
    let host = Command::new(w.dir.path().join("bin/key_probe"))
        .arg(&secret)
        .output()
        .unwrap();
    let host = String::from_utf8_lossy(&host.stdout).to_string();
    assert!(host.starts_with("found"), "{host}");
    for privileged in [false, true] {
        let (code, out, err) = run_as(
            &mut c,
            &h,
            &format!("/mnt/bin/key_probe {secret}"),
            privileged,
        );
        assert_eq!(code, 0, "privileged {privileged}: {err}");
        assert!(
            out.starts_with("search:"),
            "privileged {privileged}: the job has the daemon's key: {out}"
        );
    }
    c.destroy(DestroyRequest { handle: h }).unwrap();
    w.assert_clean();
}
