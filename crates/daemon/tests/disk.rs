//! limit_disk and info's disk_stat on a real wardend, each test on a filesystem of its own (a
//! loop device over a sparse file): btrfs qgroups on this host, XFS project quotas where the
//! kernel has them (the v2 lane sets WARDEN_TEST_REQUIRE_XFS=1, and there the XFS test fails
//! rather than skip when XFS quotas cannot be had).

mod wardend;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use warden_client::Client;
use warden_daemon::container::disk;
use warden_protocol::{DestroyRequest, InfoRequest, LimitDiskRequest, LimitDiskResponse};
use wardend::{create, run, server_error, LoopFs, Wardend};

const MIB: u64 = 1 << 20;

fn limit(c: &mut Client, h: &str, req: LimitDiskRequest) -> LimitDiskResponse {
    c.call(LimitDiskRequest {
        handle: h.into(),
        ..req
    })
    .unwrap()
}

fn byte_limit(c: &mut Client, h: &str, bytes: u64) -> LimitDiskResponse {
    limit(
        c,
        h,
        LimitDiskRequest {
            byte_limit: Some(bytes),
            ..Default::default()
        },
    )
}

fn disk_stat(c: &mut Client, h: &str) -> Option<warden_protocol::messages::DiskStat> {
    c.info(InfoRequest { handle: h.into() }).unwrap().disk_stat
}

/// Writes `mib` MiB as vcap into its home; (exit status, stderr).
fn write(c: &mut Client, h: &str, name: &str, mib: u64) -> (u32, String) {
    let (code, _, err) = run(
        c,
        h,
        &format!("dd if=/dev/zero of=/home/vcap/{name} bs=1M count={mib} 2>&1 >/dev/null; r=$?; sync; exit $r"),
    );
    (code, err)
}

fn quota_exceeded(c: &mut Client, h: &str, name: &str, mib: u64) {
    let (code, _, out) = run(
        c,
        h,
        &format!("dd if=/dev/zero of=/home/vcap/{name} bs=1M count={mib}"),
    );
    assert_ne!(code, 0, "a {mib} MiB write went through");
    assert!(
        out.contains("Disk quota exceeded") || out.contains("No space left"),
        "{out}"
    );
}

/// The btrfs filesystem's subvolumes (`btrfs subvolume list`) and level-0 qgroups other than
/// the top level's, once the cleaner has dropped deleted subvolumes.
fn btrfs_leftovers(fs: &LoopFs) -> (String, Vec<u64>) {
    // A commit wakes the cleaner, which drops deleted subvolumes (else it waits for the next
    // periodic commit).
    let _ = Command::new("btrfs")
        .args(["filesystem", "sync"])
        .arg(&fs.mount)
        .output();
    let st = Command::new("btrfs")
        .args(["subvolume", "sync"])
        .arg(&fs.mount)
        .output()
        .unwrap();
    assert!(st.status.success(), "{st:?}");
    let list = Command::new("btrfs")
        .args(["subvolume", "list"])
        .arg(&fs.mount)
        .output()
        .unwrap();
    let mut qgroups = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        qgroups = disk::btrfs_qgroups(&fs.mount).unwrap_or(qgroups);
        qgroups.retain(|&q| q != 5);
        if qgroups.is_empty() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (String::from_utf8_lossy(&list.stdout).into_owned(), qgroups)
}

#[test]
fn btrfs_byte_limits_are_enforced_and_usage_reported() {
    let fs = LoopFs::new("btrfs", 1024);
    let w = Wardend::start_on(&fs.depot(), "", "");
    let mut c = w.client();
    let (a, b) = (create(&mut c), create(&mut c));

    // A new container has no limit; a query (no field) changes nothing.
    let r = limit(&mut c, &a, LimitDiskRequest::default());
    assert_eq!(r, disk::response(&disk::Limits::default()));

    // 2 MiB (+1 byte: rounded up to a block), every field read back.
    let r = byte_limit(&mut c, &a, 2 * MIB + 1);
    assert_eq!(r.block_limit, Some(2049));
    assert_eq!((r.block, r.block_hard), (Some(2049), Some(2049)));
    assert_eq!(r.byte_limit, Some(2049 * 1024));
    assert_eq!(
        (r.byte, r.byte_hard),
        (Some(2049 * 1024), Some(2049 * 1024))
    );
    assert_eq!((r.block_soft, r.byte_soft), (Some(0), Some(0)));
    assert_eq!((r.inode_limit, r.inode_soft), (Some(0), Some(0)));
    // block_limit wins over byte_limit (SPEC 3.8).
    let r = limit(
        &mut c,
        &a,
        LimitDiskRequest {
            byte_limit: Some(MIB),
            block_limit: Some(2048),
            ..Default::default()
        },
    );
    assert_eq!(r.byte_limit, Some(2 * MIB));

    // 1 MiB fits, 4 MiB more does not; the other container writes 4 MiB unharmed.
    let before = disk_stat(&mut c, &a)
        .expect("disk_stat")
        .bytes_used
        .unwrap();
    assert_eq!(write(&mut c, &a, "one", 1), (0, String::new()));
    let used = disk_stat(&mut c, &a).unwrap().bytes_used.unwrap();
    assert!(
        used >= before + MIB && used < before + 2 * MIB,
        "{before} -> {used}"
    );
    quota_exceeded(&mut c, &a, "four", 4);
    assert_eq!(write(&mut c, &b, "four", 4).0, 0);
    assert!(disk_stat(&mut c, &b).unwrap().bytes_used.unwrap() >= 4 * MIB);
    // The host is unharmed too: the daemon's own files in the container dir (its snapshot
    // after this limit_disk) are outside the quota.
    byte_limit(&mut c, &a, 2 * MIB);
    assert_eq!(run(&mut c, &a, "echo still here").1, "still here\n");

    // What btrfs cannot do is refused, naming the backend, and changes nothing.
    let e = server_error(c.call(LimitDiskRequest {
        handle: a.clone(),
        inode_limit: Some(100),
        ..Default::default()
    }));
    assert!(e.contains("btrfs") && e.contains("inode"), "{e}");
    let e = server_error(c.call(LimitDiskRequest {
        handle: a.clone(),
        byte_soft: Some(MIB),
        ..Default::default()
    }));
    assert!(e.contains("btrfs") && e.contains("soft"), "{e}");
    assert_eq!(
        limit(&mut c, &a, LimitDiskRequest::default()).byte_limit,
        Some(2 * MIB)
    );
    for h in [a, b] {
        c.destroy(DestroyRequest { handle: h }).unwrap();
    }
    w.assert_clean();
    assert_eq!(btrfs_leftovers(&fs), (String::new(), vec![]));
}

#[test]
fn btrfs_limit_below_usage_zero_and_stopped() {
    let fs = LoopFs::new("btrfs", 1024);
    let w = Wardend::start_on(&fs.depot(), "", "");
    let mut c = w.client();
    let h = create(&mut c);
    assert_eq!(write(&mut c, &h, "three", 3).0, 0);

    // Below what it uses: set as asked (setquota did the same); what is there stays, and
    // nothing more can be written.
    let r = byte_limit(&mut c, &h, MIB);
    assert_eq!(r.byte_limit, Some(MIB));
    assert!(disk_stat(&mut c, &h).unwrap().bytes_used.unwrap() > 3 * MIB);
    quota_exceeded(&mut c, &h, "more", 1);
    assert_eq!(
        run(&mut c, &h, "wc -c < /home/vcap/three").1.trim(),
        (3 * MIB).to_string()
    );

    // Zero: no limit (the original's setquota 0).
    let r = byte_limit(&mut c, &h, 0);
    assert_eq!((r.byte_limit, r.block_limit), (Some(0), Some(0)));
    assert_eq!(write(&mut c, &h, "more", 8).0, 0);

    // Stopped: limit_disk and info go on (state active or stopped, SPEC 3.2).
    c.stop(warden_protocol::StopRequest {
        handle: h.clone(),
        ..Default::default()
    })
    .unwrap();
    let r = byte_limit(&mut c, &h, 64 * MIB);
    assert_eq!(r.byte_limit, Some(64 * MIB));
    assert!(disk_stat(&mut c, &h).unwrap().bytes_used.unwrap() > 11 * MIB);
    c.destroy(DestroyRequest { handle: h }).unwrap();
    w.assert_clean();
    assert_eq!(btrfs_leftovers(&fs), (String::new(), vec![]));
}

#[test]
fn btrfs_a_restart_keeps_limit_and_usage() {
    let fs = LoopFs::new("btrfs", 1024);
    let mut w = Wardend::start_on(&fs.depot(), "", "");
    let mut c = w.client();
    let h = create(&mut c);
    byte_limit(&mut c, &h, 3 * MIB);
    assert_eq!(write(&mut c, &h, "one", 1).0, 0);
    let used = disk_stat(&mut c, &h).unwrap().bytes_used.unwrap();
    drop(c);
    assert_eq!(w.terminate(), Some(0));
    w.spawn();
    let mut c = w.client();
    assert_eq!(
        limit(&mut c, &h, LimitDiskRequest::default()).byte_limit,
        Some(3 * MIB)
    );
    assert_eq!(disk_stat(&mut c, &h).unwrap().bytes_used, Some(used));
    quota_exceeded(&mut c, &h, "four", 4);
    c.destroy(DestroyRequest { handle: h }).unwrap();
    w.assert_clean();
    assert_eq!(btrfs_leftovers(&fs), (String::new(), vec![]));
}

#[test]
fn btrfs_failed_creates_leave_no_subvolume_or_qgroup() {
    let fs = LoopFs::new("btrfs", 1024);
    let depot = fs.depot();
    for step in ["disk", "overlay", "init"] {
        let mut w = Wardend::start_on(&depot, "", "");
        w.kill9();
        w.env = vec![("WARDEN_TEST_FAIL_CREATE_AT".into(), step.into())];
        w.spawn();
        let mut c = w.client();
        let e = server_error(c.create(Default::default()));
        assert_eq!(e, format!("injected failure after {step}"));
        w.assert_clean();
        assert_eq!(
            btrfs_leftovers(&fs),
            (String::new(), vec![]),
            "after {step}"
        );
    }
}

#[test]
fn no_backend_names_what_the_depot_lacks() {
    // The test's depot is in a temp dir on ext4, tmpfs or overlay here: no quota backend.
    let w = Wardend::start("", "");
    let mut c = w.client();
    let h = create(&mut c);
    let e = server_error(c.call(LimitDiskRequest {
        handle: h.clone(),
        byte_limit: Some(MIB),
        ..Default::default()
    }));
    assert!(
        e.starts_with("Failed setting disk limit: no disk quota backend: the depot "),
        "{e}"
    );
    assert!(e.contains("prjquota") && e.contains("btrfs"), "{e}");
    assert_eq!(disk_stat(&mut c, &h), None);
    c.destroy(DestroyRequest { handle: h }).unwrap();
    w.assert_clean();

    // A backend the config demands and the depot cannot have: the daemon does not start.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("w.yml");
    std::fs::write(
        &cfg,
        "server:\n  quota:\n    disk_quota_backend: btrfs\nhealth_check_server:\n  port: 0\n",
    )
    .unwrap();
    let out = Command::new(wardend::WARDEND)
        .arg("--config")
        .arg(&cfg)
        .arg("--socket")
        .arg(dir.path().join("s"))
        .arg("--depot")
        .arg(dir.path().join("depot"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("server.quota.disk_quota_backend") && err.contains("no disk quota backend"),
        "{err}"
    );
}

#[test]
fn quotas_disabled_answer_as_the_original() {
    let fs = LoopFs::new("btrfs", 512);
    let w = Wardend::start_on(&fs.depot(), "quota:\n  disk_quota_enabled: false", "");
    let mut c = w.client();
    let h = create(&mut c);
    // The original's empty response, whatever is asked; no disk_stat.
    assert_eq!(byte_limit(&mut c, &h, MIB), LimitDiskResponse::default());
    assert_eq!(disk_stat(&mut c, &h), None);
    assert_eq!(write(&mut c, &h, "four", 4).0, 0);
    c.destroy(DestroyRequest { handle: h }).unwrap();
    w.assert_clean();
    assert_eq!(btrfs_leftovers(&fs), (String::new(), vec![]));
}

/// The kernel has no dquot for `project` (no limit, nothing charged) within a few seconds: XFS
/// frees unlinked inodes in the background.
#[track_caller]
fn xfs_project_gone(fs: &LoopFs, project: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let q = disk::xfs_project(&fs.device, project).unwrap();
        if q.is_none() {
            return;
        }
        assert!(Instant::now() < deadline, "project {project} left: {q:?}");
        let _ = Command::new("sync").status();
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// XFS project quotas: the lane (Debian's 6.1 under qemu) has them; this host's kernel has
/// none, so here the test says so and passes, unless WARDEN_TEST_REQUIRE_XFS=1.
#[test]
fn xfs_project_quotas_limit_bytes_and_inodes() {
    let required = std::env::var("WARDEN_TEST_REQUIRE_XFS").is_ok_and(|v| v == "1");
    let fs = match LoopFs::try_new("xfs", 512) {
        Ok(fs) => fs,
        Err(e) if !required => {
            eprintln!("skipped: no XFS with prjquota here ({e})");
            return;
        }
        Err(e) => panic!("WARDEN_TEST_REQUIRE_XFS=1 and no XFS with prjquota: {e}"),
    };
    let depot = fs.depot();
    let mut w = Wardend::start_on(&depot, "quota:\n  disk_quota_backend: xfs", "");
    // The socket accepts before the manager is up; a request waits for it.
    w.client().list().unwrap();
    if !w.log_text().contains("disk quota backend xfs") {
        assert!(!required, "no xfs backend:\n{}", w.log_text());
        eprintln!("skipped: the kernel has no XFS quotas");
        return;
    }
    let mut c = w.client();
    let (a, b) = (create(&mut c), create(&mut c));
    let uid: u32 = run(&mut c, &a, "id -u").1.trim().parse().unwrap();

    // Bytes, soft and hard, and inodes; every field read back.
    let r = limit(
        &mut c,
        &a,
        LimitDiskRequest {
            byte_limit: Some(2 * MIB),
            byte_soft: Some(MIB + 1),
            inode_limit: Some(200),
            inode_soft: Some(150),
            ..Default::default()
        },
    );
    // Read back as the kernel keeps it: XFS counts in filesystem blocks (4 KiB here), so
    // 1 MiB + 1 byte (1025 KiB blocks) is 1028 KiB.
    assert_eq!((r.block_limit, r.block_soft), (Some(2048), Some(1028)));
    assert_eq!(
        (r.byte_hard, r.byte_soft),
        (Some(2 * MIB), Some(1028 * 1024))
    );
    assert_eq!(
        (r.inode_limit, r.inode, r.inode_soft),
        (Some(200), Some(200), Some(150))
    );
    let (l, _) = disk::xfs_project(&fs.device, uid).unwrap().unwrap();
    assert_eq!((l.block_hard, l.inode_hard), (2048, 200));

    // Bytes: 1 MiB fits, 4 MiB more does not; the other container is unharmed.
    let before = disk_stat(&mut c, &a).unwrap();
    assert_eq!(write(&mut c, &a, "one", 1).0, 0);
    let after = disk_stat(&mut c, &a).unwrap();
    let (b0, b1) = (before.bytes_used.unwrap(), after.bytes_used.unwrap());
    assert!(b1 >= b0 + MIB && b1 < b0 + 2 * MIB, "{b0} -> {b1}");
    assert_eq!(after.inodes_used, Some(before.inodes_used.unwrap() + 1));
    quota_exceeded(&mut c, &a, "four", 4);
    assert_eq!(write(&mut c, &b, "four", 4).0, 0);

    // Inodes: files past the limit cannot be made.
    let (_, out, _) = run(
        &mut c,
        &a,
        "i=0; while [ $i -lt 400 ] && touch /home/vcap/f$i 2>/tmp/err; do i=$((i+1)); done; echo $i; cat /tmp/err",
    );
    let made: u32 = out.lines().next().unwrap().parse().unwrap();
    assert!(made > 100 && made < 200, "{out}");
    // XFS answers a project over its quota with ENOSPC, as if its tree were a filesystem.
    assert!(
        out.contains("Disk quota exceeded") || out.contains("No space left"),
        "{out}"
    );
    let used = disk_stat(&mut c, &a).unwrap().inodes_used.unwrap();
    assert!((199..=200).contains(&used), "{used}");

    // Below usage, zero, stopped.
    byte_limit(&mut c, &a, 512 * 1024);
    quota_exceeded(&mut c, &a, "more", 1);
    let r = limit(
        &mut c,
        &a,
        LimitDiskRequest {
            byte_limit: Some(0),
            inode_limit: Some(0),
            ..Default::default()
        },
    );
    assert_eq!((r.byte_limit, r.inode_limit), (Some(0), Some(0)));
    assert_eq!(write(&mut c, &a, "more", 4).0, 0);
    byte_limit(&mut c, &a, 16 * MIB);

    // A restart keeps limit and usage.
    let used = disk_stat(&mut c, &a).unwrap();
    drop(c);
    assert_eq!(w.terminate(), Some(0));
    w.spawn();
    let mut c = w.client();
    c.stop(warden_protocol::StopRequest {
        handle: a.clone(),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        limit(&mut c, &a, LimitDiskRequest::default()).byte_limit,
        Some(16 * MIB)
    );
    // The inodes exactly; the bytes within what XFS's trimming of speculative preallocation
    // past the end of files may take back meanwhile.
    let now = disk_stat(&mut c, &a).unwrap();
    assert_eq!(now.inodes_used, used.inodes_used);
    let (b0, b1) = (used.bytes_used.unwrap(), now.bytes_used.unwrap());
    assert!(b1 <= b0 && b1 + MIB > b0, "{b0} -> {b1}");

    // Destroy leaves no project quota behind; nor does a create failing after its disk step.
    for h in [a, b] {
        c.destroy(DestroyRequest { handle: h }).unwrap();
    }
    w.assert_clean();
    xfs_project_gone(&fs, uid);
    drop(c);
    w.kill9();
    w.env = vec![("WARDEN_TEST_FAIL_CREATE_AT".into(), "disk".into())];
    w.spawn();
    let mut c = w.client();
    let e = server_error(c.create(Default::default()));
    assert_eq!(e, "injected failure after disk");
    w.assert_clean();
    for u in uid.saturating_sub(2)..uid + 3 {
        xfs_project_gone(&fs, u);
    }
    assert!(Path::new(&depot).read_dir().unwrap().all(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with('.')));
}
