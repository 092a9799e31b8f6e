//! Idmapped bind mounts (a mount's `uidMappings`/`gidMappings`, the `idmap` and `ridmap`
//! options) and the recursive mount attributes (`rro`, `rnosuid`, `rnoatime`...), both made
//! with mount_setattr(2), through the real binary on real bundles. The sources are tmpfs
//! mounts the test makes (idmappable since Linux 6.3).
//!
//! References: Debian's runc 1.1.5 has the recursive attributes but not idmapped mounts (it
//! ignores a mount's mappings silently), so it runs the `rro` bundle only. crun 1.8.1 has
//! both and runs every bundle first where it can (a cgroup v1 host: see `crun`).

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use serde_json::{json, Value};

/// A temp dir outside the test's own (whose new mounts the harness reports as leaks) with
/// tmpfs mounts of the test's making, unmounted on drop.
struct Sources {
    dir: tempfile::TempDir,
    mounts: Vec<PathBuf>,
}

impl Sources {
    fn new(name: &str) -> Sources {
        let dir = tempfile::Builder::new()
            .prefix(&format!("warden-runc-{name}-"))
            .tempdir()
            .unwrap();
        Sources {
            dir,
            mounts: Vec::new(),
        }
    }

    /// A tmpfs at `rel` (created) holding `files`, each `(name, uid)`.
    fn tmpfs(&mut self, rel: &str, files: &[(&str, u32)]) -> PathBuf {
        let p = self.dir.path().join(rel);
        fs::create_dir_all(&p).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            &p,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("mode=1777"),
        )
        .unwrap();
        self.mounts.push(p.clone());
        for (f, uid) in files {
            let path = p.join(f);
            fs::write(&path, "x\n").unwrap();
            std::os::unix::fs::chown(&path, Some(*uid), Some(*uid)).unwrap();
        }
        p
    }

    /// mount(2) with `flags` on one of our mounts (a propagation change, a remount).
    fn change(&self, p: &Path, flags: nix::mount::MsFlags) {
        nix::mount::mount(None::<&str>, p, None::<&str>, flags, None::<&str>).unwrap();
    }
}

impl Drop for Sources {
    fn drop(&mut self) {
        for m in self.mounts.iter().rev() {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Whether this kernel can idmap a tmpfs (Linux 6.3 and later). Where it cannot (the v2
/// lane's 6.1), an idmapped bind of `src` must fail `create` clearly, naming the mount and
/// the filesystem; the test then stops there.
#[track_caller]
fn tmpfs_idmaps(env: &Env, src: &Path) -> bool {
    let release = nix::sys::utsname::uname().unwrap();
    let release = release.release().to_string_lossy();
    let mut nums = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let version = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    if version >= (6, 3) {
        return true;
    }
    let id = env.new_id();
    let b = env.bundle(&id, |s| {
        push_mount(
            s,
            json!({"destination": "/mnt", "type": "bind", "source": src, "options": ["bind"],
                   "uidMappings": maps(0, 100000, 65536), "gidMappings": maps(0, 100000, 65536)}),
        );
    });
    env.create(&id, &b).fails_with(&format!(
        "mount /mnt: the filesystem of {} (tmpfs) cannot be idmapped on this kernel",
        src.display()
    ));
    env.assert_clean(&id);
    eprintln!("Linux {release} cannot idmap a tmpfs: checked that create says so, and stopped");
    false
}

fn maps(container: u32, host: u32, size: u32) -> Value {
    json!([{"containerID": container, "hostID": host, "size": size}])
}

fn user_ns(s: &mut Value, host: u32) {
    s["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    s["linux"]["uidMappings"] = maps(0, host, 65536);
    s["linux"]["gidMappings"] = maps(0, host, 65536);
}

fn push_mount(s: &mut Value, m: Value) {
    s["mounts"].as_array_mut().unwrap().push(m);
}

/// The bundle run by crun (where it can, and `with_crun`) and by warden-runc, which must
/// print the same: returns warden-runc's output.
#[track_caller]
fn run_both(env: &Env, with_crun: bool, edit: impl FnOnce(&mut Value)) -> Out {
    let id = env.new_id();
    let b = env.bundle(&id, |s| {
        // crun 1.8 refuses any ociVersion after 1.0.2.
        s["ociVersion"] = json!("1.0.2");
        edit(s);
    });
    let theirs = with_crun.then(|| crun(env, &b, &id)).flatten();
    let ours = env.runc(&["run", "-b", b.to_str().unwrap(), &id]).ok();
    if let Some(theirs) = theirs {
        assert_eq!(ours.stdout, theirs, "warden-runc against crun");
    }
    env.assert_clean(&id);
    ours
}

fn sh(s: &mut Value, script: &str) {
    s["process"]["args"] = json!(["sh", "-c", script]);
}

#[test]
fn idmapped_bind_mount_without_a_user_namespace() {
    // runc 1.2's "simple idmap mount [no userns]": the mappings are host ids, so a file of
    // host uid 0 shows as 100000; the container's root (host 0) is not in the mapping's
    // range and cannot create a file there (EOVERFLOW).
    let env = Env::new("idmap-nouserns");
    let mut srcs = Sources::new("idmap-nouserns");
    let src = srcs.tmpfs("src", &[("root-file", 0), ("user-file", 1000)]);
    if !tmpfs_idmaps(&env, &src) {
        return;
    }
    let out = run_both(&env, true, |s| {
        push_mount(
            s,
            json!({"destination": "/mnt", "type": "bind", "source": src, "options": ["bind"],
                   "uidMappings": maps(0, 100000, 65536), "gidMappings": maps(0, 100000, 65536)}),
        );
        sh(
            s,
            "stat -c %u:%g /mnt/root-file /mnt/user-file; \
             touch /mnt/new 2>&1; echo touch=$?",
        );
    });
    let lines = out.lines();
    assert_eq!(
        lines[..2],
        ["100000:100000", "101000:101000"],
        "{}",
        out.describe()
    );
    assert!(
        lines[2].contains("Value too large for defined data type"),
        "{}",
        out.describe()
    );
    assert_eq!(lines[3], "touch=1");
    assert!(!src.join("new").exists());
}

#[test]
fn idmapped_bind_mount_in_a_user_namespace() {
    // The container's root is host uid 200000. Through a mount idmapped with the same range
    // (given, or taken from the container's by `idmap` alone) the host's root-owned files
    // are its own, and what it writes lands on the host owned by host root; a plain bind of
    // the same dir shows the overflow id.
    let env = Env::new("idmap-userns");
    let mut srcs = Sources::new("idmap-userns");
    let src = srcs.tmpfs("src", &[("root-file", 0), ("user-file", 1000)]);
    if !tmpfs_idmaps(&env, &src) {
        return;
    }
    let script = "stat -c %u:%g /mnt/root-file /mnt/user-file /home/root-file /tmp/root-file; \
                  rm -f /mnt/new; touch /mnt/new && stat -c %u:%g /mnt/new";
    let out = run_both(&env, true, |s| {
        user_ns(s, 200000);
        push_mount(
            s,
            json!({"destination": "/mnt", "type": "bind", "source": src, "options": ["bind", "idmap"],
                   "uidMappings": maps(0, 200000, 65536), "gidMappings": maps(0, 200000, 65536)}),
        );
        push_mount(
            s,
            json!({"destination": "/home", "type": "bind", "source": src, "options": ["bind", "idmap"]}),
        );
        push_mount(
            s,
            json!({"destination": "/tmp", "type": "bind", "source": src, "options": ["bind"]}),
        );
        sh(s, script);
    });
    assert_eq!(
        out.lines(),
        ["0:0", "1000:1000", "0:0", "65534:65534", "0:0"],
        "{}",
        out.describe()
    );
    let meta = fs::metadata(src.join("new")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (0, 0),
        "the host sees the unmapped owner"
    );
}

#[test]
fn mounts_under_an_idmapped_mount_stay_in_the_container() {
    // The source is shared (as on a systemd host): the idmapped copy is a slave of it, as a
    // plain bind in the container's rslave namespace is, so a mount the container makes in
    // it does not appear on the host.
    let env = Env::new("idmap-propagation");
    let mut srcs = Sources::new("idmap-propagation");
    let src = srcs.tmpfs("src", &[]);
    if !tmpfs_idmaps(&env, &src) {
        return;
    }
    srcs.change(&src, nix::mount::MsFlags::MS_SHARED);
    fs::create_dir(src.join("d")).unwrap();
    let out = run_both(&env, true, |s| {
        for set in ["bounding", "effective", "permitted"] {
            s["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push(json!("CAP_SYS_ADMIN"));
        }
        push_mount(
            s,
            json!({"destination": "/mnt", "type": "bind", "source": src, "options": ["bind"],
                   "uidMappings": maps(0, 100000, 65536), "gidMappings": maps(0, 100000, 65536)}),
        );
        sh(
            s,
            "mount -t tmpfs inner /mnt/d && grep -c ' /mnt/d ' /proc/self/mountinfo; \
             sleep 0.2; stat -c %u /mnt",
        );
    });
    assert_eq!(out.lines(), ["1", "100000"], "{}", out.describe());
    let leaked = host_mount_points()
        .into_iter()
        .filter(|m| Path::new(m).starts_with(&src) && Path::new(m) != src)
        .collect::<Vec<_>>();
    assert!(
        leaked.is_empty(),
        "the container's mount reached the host: {leaked:?}"
    );
}

#[test]
fn ridmap_idmaps_the_submounts_of_an_rbind() {
    // rbind with `idmap` maps the top mount only; with `ridmap` every mount of the copy
    // (runc 1.2's semantics). crun 1.8.1 copies no submounts for an idmapped rbind at all
    // (`/mnt/sub/below` is missing): no reference here.
    let env = Env::new("ridmap");
    let mut srcs = Sources::new("ridmap");
    let src = srcs.tmpfs("src", &[("top", 0)]);
    if !tmpfs_idmaps(&env, &src) {
        return;
    }
    srcs.tmpfs("src/sub", &[("below", 0)]);
    let out = run_both(&env, false, |s| {
        for (dest, opt) in [("/mnt", "idmap"), ("/home", "ridmap")] {
            push_mount(
                s,
                json!({"destination": dest, "type": "bind", "source": src, "options": ["rbind", opt],
                       "uidMappings": maps(0, 100000, 65536), "gidMappings": maps(0, 100000, 65536)}),
            );
        }
        sh(
            s,
            "stat -c %u /mnt/top /mnt/sub/below /home/top /home/sub/below",
        );
    });
    assert_eq!(
        out.lines(),
        ["100000", "0", "100000", "100000"],
        "{}",
        out.describe()
    );
}

/// The per-mount options (mountinfo's 6th field) of the container's mount at `point`, from
/// the lines `grep` printed.
fn mount_opts<'a>(out: &'a Out, point: &str) -> &'a str {
    out.lines()
        .iter()
        .find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() > 5 && f[4] == point).then(|| f[5])
        })
        .unwrap_or_else(|| panic!("no mount at {point}:\n{}", out.describe()))
}

#[test]
fn rro_makes_the_submounts_read_only_and_ro_does_not() {
    let env = Env::new("rro");
    let mut srcs = Sources::new("rro");
    let src = srcs.tmpfs("src", &[]);
    srcs.tmpfs("src/sub", &[]);
    let script = "touch /mnt/top 2>/dev/null; echo ro-top=$?; touch /mnt/sub/a; echo ro-sub=$?; \
                  touch /home/top 2>/dev/null; echo rro-top=$?; touch /home/sub/b 2>&1; \
                  echo rro-sub=$?; grep -E ' /(mnt|home)(/sub)? ' /proc/self/mountinfo";
    let id = env.new_id();
    let b = env.bundle(&id, |s| {
        s["ociVersion"] = json!("1.0.2");
        push_mount(
            s,
            json!({"destination": "/mnt", "type": "bind", "source": src, "options": ["rbind", "ro"]}),
        );
        push_mount(
            s,
            json!({"destination": "/home", "type": "bind", "source": src,
                   "options": ["rbind", "rro", "rnosuid", "rnoexec"]}),
        );
        sh(s, script);
    });
    let want_head = [
        "ro-top=1",
        "ro-sub=0",
        "rro-top=1",
        "touch: /home/sub/b: Read-only file system",
        "rro-sub=1",
    ];
    // runc 1.1.5 has the recursive attributes: the same bundle with it first.
    let runc = Command::new("runc")
        .arg("--root")
        .arg(env.dir().join("runc-root"))
        .args(["run", "-b", b.to_str().unwrap(), &format!("{id}-runc")])
        .stdin(Stdio::null())
        .output()
        .expect("run runc (scripts/deps.sh installs it)");
    assert!(runc.status.success(), "runc fails the bundle: {runc:?}");
    let theirs = String::from_utf8_lossy(&runc.stdout);
    assert_eq!(
        theirs.lines().take(5).collect::<Vec<_>>(),
        want_head,
        "runc:\n{theirs}"
    );
    fs::remove_file(src.join("sub/a")).unwrap();
    if let Some(theirs) = crun(&env, &b, &id) {
        assert_eq!(
            theirs.lines().take(5).collect::<Vec<_>>(),
            want_head,
            "crun:\n{theirs}"
        );
        fs::remove_file(src.join("sub/a")).unwrap();
    }

    let out = env.runc(&["run", "-b", b.to_str().unwrap(), &id]).ok();
    assert_eq!(out.lines()[..5], want_head, "{}", out.describe());
    env.assert_clean(&id);
    assert!(src.join("sub/a").exists() && !src.join("sub/b").exists());
    assert!(
        mount_opts(&out, "/mnt").starts_with("ro,"),
        "{}",
        out.describe()
    );
    assert!(
        mount_opts(&out, "/mnt/sub").starts_with("rw,"),
        "{}",
        out.describe()
    );
    for point in ["/home", "/home/sub"] {
        let opts: Vec<&str> = mount_opts(&out, point).split(',').collect();
        for want in ["ro", "nosuid", "noexec"] {
            assert!(opts.contains(&want), "{point}: {want} in {opts:?}");
        }
    }

    // `rrw` after `rro` clears it again (the last one wins, as runc); an atime setting
    // replaces the one before it. (crun 1.8.1 fails `rnoatime` with EINVAL: it sets the
    // atime field without clearing it, which mount_setattr(2) refuses.)
    let out = env
        .run_container(&[], |s| {
            push_mount(
                s,
                json!({"destination": "/home", "type": "bind", "source": src,
                       "options": ["rbind", "rro", "rrw", "rstrictatime", "rnoatime"]}),
            );
            sh(
                s,
                "touch /home/sub/c && echo written; grep ' /home/sub ' /proc/self/mountinfo",
            );
        })
        .ok();
    assert_eq!(out.lines()[0], "written", "{}", out.describe());
    let opts: Vec<&str> = mount_opts(&out, "/home/sub").split(',').collect();
    assert!(
        opts.contains(&"rw") && opts.contains(&"noatime"),
        "{opts:?}"
    );
}

#[test]
fn idmapped_and_recursive_mounts_refuse_bad_input() {
    let env = Env::new("idmap-bad");
    let mut srcs = Sources::new("idmap-bad");
    let src = srcs.tmpfs("src", &[]);
    // Read-only on the host: a user namespace's copy of it is locked read-only.
    let ro = srcs.tmpfs("ro", &[]);
    srcs.change(
        &ro,
        nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_RDONLY,
    );
    let m = |extra: Value| {
        let mut base = json!({"destination": "/mnt", "type": "bind", "source": src,
                              "options": ["bind"]});
        base.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        base
    };
    let u = maps(0, 100000, 65536);
    let cases: Vec<(Value, bool, String)> = vec![
        (
            json!({"destination": "/mnt", "type": "tmpfs", "source": "tmpfs",
                   "uidMappings": u, "gidMappings": u}),
            false,
            "mounts: /mnt: an idmapped mount (uidMappings/gidMappings, idmap, ridmap) must be a \
             bind mount, not type \"tmpfs\""
                .into(),
        ),
        (
            m(json!({"uidMappings": u})),
            false,
            "mounts: /mnt: an idmapped mount needs both uidMappings and gidMappings".into(),
        ),
        (
            m(json!({"options": ["bind", "idmap"]})),
            false,
            "mounts: /mnt: option idmap without uidMappings/gidMappings takes the container's \
             user namespace mappings, and the container has no user namespace"
                .into(),
        ),
        (
            m(json!({"options": ["bind", "idmap=uids=0-100000-10;gids=0-100000-10"]})),
            false,
            "mounts: /mnt: option \"idmap=uids=0-100000-10;gids=0-100000-10\" (crun's mapping \
             syntax) is not supported"
                .into(),
        ),
        (
            m(json!({"uidMappings": maps(0, 100000, 0), "gidMappings": u})),
            false,
            "mounts: /mnt: uidMappings entry {containerID 0, hostID 100000, size 0} is not a \
             valid range"
                .into(),
        ),
        (
            m(json!({"source": "/proc", "uidMappings": u, "gidMappings": u})),
            false,
            "mount /mnt: the filesystem of /proc (proc) cannot be idmapped on this kernel".into(),
        ),
        (
            m(json!({"source": src.join("missing"), "uidMappings": u, "gidMappings": u})),
            false,
            format!(
                "bind mount source {} of /mnt: No such file or directory",
                src.join("missing").display()
            ),
        ),
        // A container in a user namespace cannot clear what the host made read-only.
        (
            json!({"destination": "/mnt", "type": "bind", "source": ro,
                   "options": ["rbind", "rrw"]}),
            true,
            "mount /mnt: mount_setattr(AT_RECURSIVE, set 0x0, clear 0x1) for its recursive \
             options: EPERM"
                .into(),
        ),
    ];
    for (mount, in_user_ns, want) in cases {
        let id = env.new_id();
        let b = env.bundle(&id, |s| {
            if in_user_ns {
                user_ns(s, 200000);
            }
            push_mount(s, mount.clone());
            s["process"]["args"] = json!(["true"]);
        });
        env.create(&id, &b).fails_with(&want);
        env.assert_clean(&id);
        env.runc(&["state", &id])
            .fails_with("container does not exist");
    }
}
