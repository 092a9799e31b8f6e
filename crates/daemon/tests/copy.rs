//! copy_in / copy_out on a temp dir standing for a container's root (run as root: files are
//! chowned). Another temp dir stands for the host files a container must never reach.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use warden_daemon::copy::{copy_in, copy_out, CopyError};

const OWNER: (u32, u32) = (1234, 5678);

fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipped: needs root (files are chowned)");
    false
}

/// A container root with /tmp (1777), /etc and /home/vcap (owned by OWNER); a host work dir
/// for sources and outputs; and a sensitive host dir, holding `secret`, that symlinks in the
/// container point at and that must never be written or read.
struct World {
    root: tempfile::TempDir,
    host: tempfile::TempDir,
    sensitive: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let tmp = |prefix| tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
        let (root, host, sensitive) = (tmp("copy-root"), tmp("copy-host"), tmp("copy-sensitive"));
        let r = root.path();
        fs::create_dir(r.join("tmp")).unwrap();
        fs::set_permissions(r.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
        fs::create_dir(r.join("etc")).unwrap();
        fs::write(r.join("etc/passwd"), "container passwd\n").unwrap();
        fs::create_dir_all(r.join("home/vcap")).unwrap();
        std::os::unix::fs::chown(r.join("home/vcap"), Some(OWNER.0), Some(OWNER.1)).unwrap();
        fs::write(sensitive.path().join("secret"), "host secret\n").unwrap();
        World {
            root,
            host,
            sensitive,
        }
    }

    fn root(&self) -> &Path {
        self.root.path()
    }

    /// A path inside the container root, as the host sees it.
    fn r(&self, p: &str) -> PathBuf {
        self.root.path().join(p.trim_start_matches('/'))
    }

    fn host(&self, p: &str) -> PathBuf {
        self.host.path().join(p)
    }

    fn sensitive(&self) -> &Path {
        self.sensitive.path()
    }

    /// Where the sensitive dir's path lands inside the container root.
    fn sensitive_inside(&self, p: &str) -> PathBuf {
        self.r(&self.sensitive().join(p).display().to_string())
    }

    fn secret_intact(&self) {
        let s = self.sensitive();
        assert_eq!(
            fs::read_to_string(s.join("secret")).unwrap(),
            "host secret\n"
        );
        let names: Vec<_> = fs::read_dir(s)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            ["secret"],
            "something was written into the sensitive host dir"
        );
        assert_eq!(owner(s), (0, 0));
        assert_eq!(owner(&s.join("secret")), (0, 0));
    }
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn owner(p: &Path) -> (u32, u32) {
    let m = fs::symlink_metadata(p).unwrap();
    (m.uid(), m.gid())
}

/// A small source tree in the host dir: src/{a (0755), b (0600), sub/c, link -> a, abs -> /etc/passwd}.
fn make_tree(w: &World) -> PathBuf {
    let src = w.host("src");
    fs::create_dir(&src).unwrap();
    fs::set_permissions(&src, fs::Permissions::from_mode(0o750)).unwrap();
    fs::write(src.join("a"), "#!/bin/sh\necho a\n").unwrap();
    fs::set_permissions(src.join("a"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(src.join("b"), "b").unwrap();
    fs::set_permissions(src.join("b"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::create_dir(src.join("sub")).unwrap();
    fs::set_permissions(src.join("sub"), fs::Permissions::from_mode(0o711)).unwrap();
    fs::write(src.join("sub/c"), "c").unwrap();
    symlink("a", src.join("link")).unwrap();
    symlink("/etc/passwd", src.join("abs")).unwrap();
    src
}

fn check_tree(dst: &Path, owned_by: (u32, u32)) {
    assert_eq!(
        fs::read_to_string(dst.join("a")).unwrap(),
        "#!/bin/sh\necho a\n"
    );
    assert_eq!(mode(&dst.join("a")), 0o755);
    assert_eq!(mode(&dst.join("b")), 0o600);
    assert_eq!(mode(&dst.join("sub")), 0o711);
    assert_eq!(fs::read_to_string(dst.join("sub/c")).unwrap(), "c");
    assert_eq!(fs::read_link(dst.join("link")).unwrap(), Path::new("a"));
    assert_eq!(
        fs::read_link(dst.join("abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    for p in ["a", "b", "sub", "sub/c", "link", "abs"] {
        assert_eq!(owner(&dst.join(p)), owned_by, "{p}");
    }
}

fn no_temp_files(dir: &Path) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(
            !(name.starts_with('.') && name.len() > 9),
            "temp file left: {}",
            e.path().display()
        );
        if e.file_type().unwrap().is_dir() {
            no_temp_files(&e.path());
        }
    }
}

#[test]
fn file_round_trip() {
    if !is_root() {
        return;
    }
    let w = World::new();
    fs::write(w.host("f"), "hello\n").unwrap();
    fs::set_permissions(w.host("f"), fs::Permissions::from_mode(0o755)).unwrap();

    // file -> new path
    copy_in(w.root(), &w.host("f"), Path::new("/tmp/f"), OWNER).unwrap();
    assert_eq!(fs::read_to_string(w.r("tmp/f")).unwrap(), "hello\n");
    assert_eq!(mode(&w.r("tmp/f")), 0o755);
    assert_eq!(owner(&w.r("tmp/f")), OWNER);
    // /tmp itself untouched
    assert_eq!(mode(&w.r("tmp")), 0o1777);
    assert_eq!(owner(&w.r("tmp")), (0, 0));

    // file -> existing dir: goes in under its name
    copy_in(w.root(), &w.host("f"), Path::new("/home/vcap"), OWNER).unwrap();
    assert_eq!(fs::read_to_string(w.r("home/vcap/f")).unwrap(), "hello\n");

    // file -> existing file: replaced
    fs::write(w.host("f"), "second\n").unwrap();
    copy_in(w.root(), &w.host("f"), Path::new("/tmp/f"), OWNER).unwrap();
    assert_eq!(fs::read_to_string(w.r("tmp/f")).unwrap(), "second\n");

    // file -> new path with a trailing slash: a directory is made for it
    copy_in(w.root(), &w.host("f"), Path::new("/tmp/newdir/"), OWNER).unwrap();
    assert_eq!(fs::read_to_string(w.r("tmp/newdir/f")).unwrap(), "second\n");
    assert_eq!(owner(&w.r("tmp/newdir")), OWNER);

    // and out again, without an owner: root's, mode kept
    copy_out(w.root(), Path::new("/tmp/f"), &w.host("out"), None).unwrap();
    assert_eq!(fs::read_to_string(w.host("out")).unwrap(), "second\n");
    assert_eq!(mode(&w.host("out")), 0o755);
    assert_eq!(owner(&w.host("out")), (0, 0));

    // out with an owner
    copy_out(
        w.root(),
        Path::new("/tmp/f"),
        &w.host("out2"),
        Some((4321, 8765)),
    )
    .unwrap();
    assert_eq!(owner(&w.host("out2")), (4321, 8765));
    no_temp_files(w.root());
    w.secret_intact();
}

#[test]
fn dir_round_trip_and_trailing_slash() {
    if !is_root() {
        return;
    }
    let w = World::new();
    let src = make_tree(&w);

    // without a trailing slash, into an existing dir: /tmp/src/...
    copy_in(w.root(), &src, Path::new("/tmp"), OWNER).unwrap();
    check_tree(&w.r("tmp/src"), OWNER);
    assert_eq!(mode(&w.r("tmp/src")), 0o750);
    assert_eq!(
        mode(&w.r("tmp")),
        0o1777,
        "an existing root-owned dir keeps its mode"
    );

    // with a trailing slash, into an existing dir: the contents only
    copy_in(
        w.root(),
        Path::new(&format!("{}/", src.display())),
        Path::new("/home/vcap"),
        OWNER,
    )
    .unwrap();
    check_tree(&w.r("home/vcap"), OWNER);
    // vcap owns /home/vcap, so (as rsync running as vcap would) it gets the source's mode
    assert_eq!(mode(&w.r("home/vcap")), 0o750);

    // a non-empty dir to a new path: the path is made and the dir goes inside it (rsync)
    copy_in(w.root(), &src, Path::new("/tmp/new"), OWNER).unwrap();
    check_tree(&w.r("tmp/new/src"), OWNER);
    assert_eq!(mode(&w.r("tmp/new")), 0o755);
    // with a trailing slash on the source: the new path gets the contents
    copy_in(
        w.root(),
        Path::new(&format!("{}/", src.display())),
        Path::new("/tmp/new2"),
        OWNER,
    )
    .unwrap();
    check_tree(&w.r("tmp/new2"), OWNER);
    assert_eq!(mode(&w.r("tmp/new2")), 0o750);
    // an empty dir to a new path becomes that path (rsync's one-item rule)
    fs::create_dir(w.host("src-empty")).unwrap();
    copy_in(
        w.root(),
        &w.host("src-empty"),
        Path::new("/tmp/empty"),
        OWNER,
    )
    .unwrap();
    assert!(w.r("tmp/empty").is_dir());
    assert_eq!(fs::read_dir(w.r("tmp/empty")).unwrap().count(), 0);

    // out again: into a new host path, with and without trailing slash
    copy_out(w.root(), Path::new("/tmp/src"), &w.host("out"), None).unwrap();
    check_tree(&w.host("out/src"), (0, 0));
    copy_out(
        w.root(),
        Path::new("/tmp/src/"),
        &w.host("out2"),
        Some((4321, 8765)),
    )
    .unwrap();
    check_tree(&w.host("out2"), (4321, 8765));
    assert_eq!(owner(&w.host("out2")), (4321, 8765));
    // into an existing host dir: its own owner and mode are left alone
    fs::create_dir(w.host("out3")).unwrap();
    fs::set_permissions(w.host("out3"), fs::Permissions::from_mode(0o700)).unwrap();
    copy_out(
        w.root(),
        Path::new("/tmp/src/"),
        &w.host("out3"),
        Some((4321, 8765)),
    )
    .unwrap();
    check_tree(&w.host("out3"), (4321, 8765));
    assert_eq!(owner(&w.host("out3")), (0, 0));
    assert_eq!(mode(&w.host("out3")), 0o700);
    // merging keeps extra files
    fs::write(w.host("out3/extra"), "x").unwrap();
    copy_out(w.root(), Path::new("/tmp/src/"), &w.host("out3"), None).unwrap();
    assert!(w.host("out3/extra").exists());
    no_temp_files(w.root());
    no_temp_files(w.host.path());
    w.secret_intact();
}

#[test]
fn hard_links_become_separate_files() {
    if !is_root() {
        return;
    }
    let w = World::new();
    let src = w.host("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("one"), "same").unwrap();
    fs::hard_link(src.join("one"), src.join("two")).unwrap();
    copy_in(w.root(), &src, Path::new("/tmp"), OWNER).unwrap();
    let (a, b) = (
        fs::metadata(w.r("tmp/src/one")).unwrap(),
        fs::metadata(w.r("tmp/src/two")).unwrap(),
    );
    assert_ne!(a.ino(), b.ino());
    assert_eq!(a.nlink(), 1);
    assert_eq!(fs::read_to_string(w.r("tmp/src/two")).unwrap(), "same");

    fs::hard_link(w.r("tmp/src/one"), w.r("tmp/src/three")).unwrap();
    copy_out(w.root(), Path::new("/tmp/src"), &w.host("out"), None).unwrap();
    let (a, c) = (
        fs::metadata(w.host("out/src/one")).unwrap(),
        fs::metadata(w.host("out/src/three")).unwrap(),
    );
    assert_ne!(a.ino(), c.ino());
    assert_eq!(fs::read_to_string(w.host("out/src/three")).unwrap(), "same");
}

#[test]
fn symlinks_are_copied_as_symlinks() {
    if !is_root() {
        return;
    }
    let w = World::new();
    symlink("/etc/passwd", w.host("srclink")).unwrap();
    copy_in(w.root(), &w.host("srclink"), Path::new("/tmp/l"), OWNER).unwrap();
    assert_eq!(
        fs::read_link(w.r("tmp/l")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(owner(&w.r("tmp/l")), OWNER);
    // dangling ones too
    symlink("nowhere", w.host("srcdangling")).unwrap();
    copy_in(w.root(), &w.host("srcdangling"), Path::new("/tmp"), OWNER).unwrap();
    assert_eq!(
        fs::read_link(w.r("tmp/srcdangling")).unwrap(),
        Path::new("nowhere")
    );
    // a file copied onto a symlink replaces the symlink, not what it points to
    fs::write(w.host("srcfile"), "new").unwrap();
    copy_in(w.root(), &w.host("srcfile"), Path::new("/tmp/l"), OWNER).unwrap();
    assert!(fs::symlink_metadata(w.r("tmp/l")).unwrap().is_file());
    assert_eq!(
        fs::read_to_string(w.r("etc/passwd")).unwrap(),
        "container passwd\n"
    );
}

#[test]
fn owner_of_everything_created() {
    if !is_root() {
        return;
    }
    let w = World::new();
    let src = make_tree(&w);
    copy_in(w.root(), &src, Path::new("/tmp/x/"), OWNER).unwrap();
    assert_eq!(owner(&w.r("tmp/x")), OWNER);
    check_tree(&w.r("tmp/x/src"), OWNER);
    assert_eq!(owner(&w.r("tmp/x/src")), OWNER);
    copy_out(
        w.root(),
        Path::new("/tmp/x"),
        &w.host("out"),
        Some((42, 43)),
    )
    .unwrap();
    assert_eq!(owner(&w.host("out")), (42, 43));
    assert_eq!(owner(&w.host("out/x")), (42, 43));
    check_tree(&w.host("out/x/src"), (42, 43));
}

#[test]
fn errors_name_the_path() {
    if !is_root() {
        return;
    }
    let w = World::new();
    let e = copy_in(w.root(), &w.host("nope"), Path::new("/tmp"), OWNER).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "copy_in: source {} does not exist",
            w.host("nope").display()
        )
    );
    let e = copy_out(w.root(), Path::new("/nope"), &w.host("out"), None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "copy_out: no such file in the container: /nope"
    );
    // rsync makes only the last component of DST
    fs::write(w.host("f"), "x").unwrap();
    let e = copy_in(w.root(), &w.host("f"), Path::new("/no/such/dir/f"), OWNER).unwrap_err();
    assert!(matches!(e, CopyError::MissingParent { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "copy_in: cannot create /no/such/dir/f: its parent directory /no/such/dir does not exist"
    );
    let src = make_tree(&w);
    let e = copy_in(w.root(), &src, Path::new("/no/such/dir/"), OWNER).unwrap_err();
    assert!(matches!(e, CopyError::MissingParent { .. }), "{e}");
    // a directory onto a file
    let e = copy_in(w.root(), &src, Path::new("/etc/passwd"), OWNER).unwrap_err();
    assert!(
        matches!(e, CopyError::DestinationNotDirectory { .. }),
        "{e}"
    );
    fs::create_dir(w.host("src-empty")).unwrap();
    let e = copy_in(
        w.root(),
        &w.host("src-empty"),
        Path::new("/etc/passwd"),
        OWNER,
    )
    .unwrap_err();
    assert!(matches!(e, CopyError::OverwriteNonDirectory { .. }), "{e}");
    // a trailing slash on a file source
    let e = copy_in(
        w.root(),
        Path::new(&format!("{}/", w.host("f").display())),
        Path::new("/tmp"),
        OWNER,
    )
    .unwrap_err();
    assert!(matches!(e, CopyError::SourceNotDirectory { .. }), "{e}");
    // a file onto a non-empty directory
    fs::create_dir_all(w.r("tmp/full/f")).unwrap();
    fs::write(w.r("tmp/full/f/x"), "x").unwrap();
    let e = copy_in(w.root(), &w.host("f"), Path::new("/tmp/full"), OWNER).unwrap_err();
    assert!(matches!(e, CopyError::DirectoryInTheWay { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "copy_in: cannot replace non-empty directory /tmp/full/f with a file"
    );
    // ... but an empty one is replaced
    fs::remove_file(w.r("tmp/full/f/x")).unwrap();
    copy_in(w.root(), &w.host("f"), Path::new("/tmp/full"), OWNER).unwrap();
    assert!(w.r("tmp/full/f").is_file());
    // a bad container root
    let e = copy_in(&w.host("nope"), &w.host("f"), Path::new("/tmp"), OWNER).unwrap_err();
    assert!(
        e.to_string().contains("open the container's root failed"),
        "{e}"
    );
    no_temp_files(w.root());
}

#[test]
fn special_files_are_skipped_or_refused() {
    if !is_root() {
        return;
    }
    let w = World::new();
    let src = w.host("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), "x").unwrap();
    nix::unistd::mkfifo(
        &src.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    copy_in(w.root(), &src, Path::new("/tmp"), OWNER).unwrap();
    assert!(w.r("tmp/src/f").exists());
    assert!(fs::symlink_metadata(w.r("tmp/src/fifo")).is_err());
    let e = copy_in(w.root(), &src.join("fifo"), Path::new("/tmp"), OWNER).unwrap_err();
    assert!(matches!(e, CopyError::Special { .. }), "{e}");

    nix::unistd::mkfifo(
        &w.r("tmp/src/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    copy_out(w.root(), Path::new("/tmp/src"), &w.host("out"), None).unwrap();
    assert!(w.host("out/src/f").exists());
    assert!(fs::symlink_metadata(w.host("out/src/fifo")).is_err());
    let e = copy_out(w.root(), Path::new("/tmp/src/fifo"), &w.host("out"), None).unwrap_err();
    assert_eq!(e.to_string(), "copy_out: /tmp/src/fifo is a fifo; only regular files, directories and symlinks are copied");
}

#[test]
fn copy_out_drops_setuid() {
    if !is_root() {
        return;
    }
    let w = World::new();
    fs::write(w.r("tmp/suid"), "x").unwrap();
    fs::set_permissions(w.r("tmp/suid"), fs::Permissions::from_mode(0o6755)).unwrap();
    copy_out(w.root(), Path::new("/tmp/suid"), &w.host("out"), None).unwrap();
    assert_eq!(mode(&w.host("out")), 0o755);
    // copy_in keeps it (the file belongs to the container user)
    copy_in(w.root(), &w.r("tmp/suid"), Path::new("/tmp/suid2"), OWNER).unwrap();
    assert_eq!(mode(&w.r("tmp/suid2")), 0o6755);
}

// ---- escapes -------------------------------------------------------------------------------

/// A symlinked dir in the container pointing to an absolute host path: writing through it lands
/// inside the root (or fails), never in the host dir.
#[test]
fn copy_in_through_absolute_symlink_stays_inside() {
    if !is_root() {
        return;
    }
    let w = World::new();
    symlink(w.sensitive(), w.r("tmp/evil")).unwrap();
    fs::write(w.host("src"), "payload").unwrap();

    // the target doesn't exist inside the root: an error, nothing on the host
    for dst in ["/tmp/evil/secret", "/tmp/evil/", "/tmp/evil/new/"] {
        let r = copy_in(w.root(), &w.host("src"), Path::new(dst), OWNER);
        assert!(r.is_err(), "{dst}: {r:?}");
        w.secret_intact();
    }
    // the link itself is replaced by a file copied onto it (rsync renames over the name)
    copy_in(w.root(), &w.host("src"), Path::new("/tmp/evil"), OWNER).unwrap();
    assert!(fs::symlink_metadata(w.r("tmp/evil")).unwrap().is_file());
    w.secret_intact();

    // once the target path exists inside the root, that is where things go
    symlink(w.sensitive(), w.r("tmp/evil2")).unwrap();
    fs::create_dir_all(w.sensitive_inside("")).unwrap();
    copy_in(
        w.root(),
        &w.host("src"),
        Path::new("/tmp/evil2/secret"),
        OWNER,
    )
    .unwrap();
    assert_eq!(
        fs::read_to_string(w.sensitive_inside("secret")).unwrap(),
        "payload"
    );
    let tree = w.host("srctree");
    fs::create_dir(&tree).unwrap();
    fs::write(tree.join("x"), "x").unwrap();
    copy_in(w.root(), &tree, Path::new("/tmp/evil2"), OWNER).unwrap();
    assert!(w.sensitive_inside("srctree/x").exists());
    copy_in(
        w.root(),
        Path::new(&format!("{}/", tree.display())),
        Path::new("/tmp/evil2/"),
        OWNER,
    )
    .unwrap();
    assert!(w.sensitive_inside("x").exists());
    w.secret_intact();
    no_temp_files(w.root());
}

#[test]
fn dot_dot_and_relative_symlinks_stay_inside() {
    if !is_root() {
        return;
    }
    let w = World::new();
    fs::write(w.host("src"), "payload").unwrap();
    let sens = w.sensitive().display().to_string();
    let sens = sens.trim_start_matches('/');
    let up = "../".repeat(20);

    // `..` in the destination
    let r = copy_in(
        w.root(),
        &w.host("src"),
        Path::new(&format!("/tmp/{up}{sens}/secret")),
        OWNER,
    );
    assert!(r.is_err(), "{r:?}");
    // (the sensitive dir is under /tmp, which the container has: this makes it in there)
    copy_in(
        w.root(),
        &w.host("src"),
        Path::new(&format!("{up}{sens}/")),
        OWNER,
    )
    .unwrap();
    assert_eq!(
        fs::read_to_string(w.sensitive_inside("src")).unwrap(),
        "payload"
    );
    copy_in(
        w.root(),
        &w.host("src"),
        Path::new(&format!("/{up}etc/passwd")),
        OWNER,
    )
    .unwrap();
    assert_eq!(fs::read_to_string(w.r("etc/passwd")).unwrap(), "payload");
    // relative paths are taken from the container's /
    copy_in(w.root(), &w.host("src"), Path::new("../../tmp/rel"), OWNER).unwrap();
    assert!(w.r("tmp/rel").exists());

    // a relative symlink climbing out
    symlink(format!("{up}{sens}"), w.r("tmp/climb")).unwrap();
    copy_in(
        w.root(),
        &w.host("src"),
        Path::new("/tmp/climb/secret"),
        OWNER,
    )
    .unwrap();
    assert_eq!(
        fs::read_to_string(w.sensitive_inside("secret")).unwrap(),
        "payload"
    );
    symlink(format!("{up}etc"), w.r("tmp/etc-link")).unwrap();
    fs::write(w.host("src2"), "two").unwrap();
    copy_in(
        w.root(),
        &w.host("src2"),
        Path::new("/tmp/etc-link/passwd"),
        OWNER,
    )
    .unwrap();
    assert_eq!(fs::read_to_string(w.r("etc/passwd")).unwrap(), "two");
    w.secret_intact();

    // copy_out with `..`: the container's file (made above), not the host's
    copy_out(
        w.root(),
        Path::new(&format!("/{up}{sens}/secret")),
        &w.host("out"),
        None,
    )
    .unwrap();
    assert_eq!(fs::read_to_string(w.host("out")).unwrap(), "payload");
    let e = copy_out(
        w.root(),
        Path::new(&format!("/{up}{sens}/nope")),
        &w.host("out"),
        None,
    )
    .unwrap_err();
    assert!(matches!(e, CopyError::NotInContainer { .. }), "{e}");
    copy_out(
        w.root(),
        Path::new(&format!("/tmp/{up}etc/passwd")),
        &w.host("out"),
        None,
    )
    .unwrap();
    assert_eq!(fs::read_to_string(w.host("out")).unwrap(), "two");
    copy_out(
        w.root(),
        Path::new("/tmp/etc-link/passwd"),
        &w.host("out-l"),
        None,
    )
    .unwrap();
    assert_eq!(fs::read_to_string(w.host("out-l")).unwrap(), "two");
}

/// copy_out of a symlink to a host file copies the symlink; through a symlinked dir it resolves
/// inside the root; the host file's content never comes out.
#[test]
fn copy_out_never_reads_host_files() {
    if !is_root() {
        return;
    }
    let w = World::new();
    let secret = w.sensitive().join("secret");
    symlink(&secret, w.r("tmp/leak")).unwrap();
    symlink(w.sensitive(), w.r("tmp/leakdir")).unwrap();
    symlink(
        format!("{}{}", "../".repeat(20), secret.display()),
        w.r("tmp/leakrel"),
    )
    .unwrap();
    symlink("/proc/self/root/etc/passwd", w.r("tmp/magic")).unwrap();

    copy_out(w.root(), Path::new("/tmp/leak"), &w.host("out1"), None).unwrap();
    assert_eq!(fs::read_link(w.host("out1")).unwrap(), secret);
    // symlinks in a copied tree stay symlinks
    copy_out(w.root(), Path::new("/tmp"), &w.host("out2"), None).unwrap();
    for l in ["leak", "leakdir", "leakrel", "magic"] {
        let m = fs::symlink_metadata(w.host(&format!("out2/tmp/{l}"))).unwrap();
        assert!(m.file_type().is_symlink(), "{l}");
    }

    for src in [
        "/tmp/leak/",
        "/tmp/leakdir/secret",
        "/tmp/leakdir/",
        "/tmp/leakrel/",
        "/tmp/magic/",
    ] {
        let r = copy_out(w.root(), Path::new(src), &w.host("out3"), None);
        assert!(r.is_err(), "{src}: {r:?}");
        assert!(!w.host("out3").exists(), "{src}");
    }
    // once the path exists inside the root, that is what comes out
    fs::create_dir_all(w.sensitive_inside("")).unwrap();
    fs::write(w.sensitive_inside("secret"), "container file").unwrap();
    copy_out(
        w.root(),
        Path::new("/tmp/leakdir/secret"),
        &w.host("out4"),
        None,
    )
    .unwrap();
    assert_eq!(
        fs::read_to_string(w.host("out4")).unwrap(),
        "container file"
    );
    copy_out(w.root(), Path::new("/tmp/leakdir/"), &w.host("out5"), None).unwrap();
    assert_eq!(
        fs::read_to_string(w.host("out5/secret")).unwrap(),
        "container file"
    );
    w.secret_intact();
}

/// A process in the container swaps a directory for a symlink to the host dir while copies run:
/// the host dir never gets a file, and no host content comes out.
#[test]
fn racing_symlink_swaps_cannot_escape() {
    if !is_root() {
        return;
    }
    let w = World::new();
    fs::write(w.host("src"), "payload").unwrap();
    let tree = w.host("srctree");
    fs::create_dir(&tree).unwrap();
    for i in 0..20 {
        fs::write(tree.join(format!("f{i}")), "x").unwrap();
    }
    let root = w.root().to_path_buf();
    let sensitive = w.sensitive().to_path_buf();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        let (root, sensitive) = (root.clone(), sensitive.clone());
        std::thread::spawn(move || {
            let d = root.join("tmp/race");
            let tmp = root.join("tmp/race.tmp");
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // (race.tmp may be left a symlink by a failed rename: never write through it)
                let _ = fs::remove_file(&tmp);
                let _ = fs::remove_dir_all(&tmp);
                if fs::create_dir(&tmp).is_ok() {
                    let _ = fs::write(tmp.join("secret"), "container");
                }
                let _ = fs::rename(&tmp, &d);
                let _ = symlink(&sensitive, &tmp);
                let _ = fs::rename(&tmp, &d);
                let _ = fs::remove_file(&d);
                // a symlink one level down, inside a real dir
                let _ = fs::create_dir(&d);
                let _ = symlink(&sensitive, d.join("srctree"));
                let _ = fs::remove_file(d.join("srctree"));
                let _ = fs::remove_dir_all(&d);
                n += 1;
            }
            n
        })
    };
    let start = Instant::now();
    let (mut copies, mut ok) = (0, 0);
    while start.elapsed().as_millis() < 1500 {
        for dst in ["/tmp/race/secret", "/tmp/race/", "/tmp/race"] {
            for src in [&w.host("src"), &tree] {
                copies += 1;
                ok += copy_in(&root, src, Path::new(dst), OWNER).is_ok() as u32;
            }
        }
        for src in ["/tmp/race/secret", "/tmp/race/", "/tmp/race"] {
            copies += 1;
            ok += copy_out(&root, Path::new(src), &w.host("out-race"), None).is_ok() as u32;
            let _ = fs::remove_file(w.host("out-race"));
            let _ = fs::remove_dir_all(w.host("out-race"));
        }
        w.secret_intact();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    eprintln!("racing: {copies} copies ({ok} succeeded) against {swaps} swap rounds");
    w.secret_intact();
}

#[test]
fn thousand_files() {
    if !is_root() {
        return;
    }
    let w = World::new();
    let src = w.host("src");
    for d in 0..10 {
        fs::create_dir_all(src.join(format!("d{d}"))).unwrap();
        for f in 0..100 {
            fs::write(src.join(format!("d{d}/f{f}")), vec![b'x'; 1024 + f]).unwrap();
        }
    }
    let t = Instant::now();
    copy_in(w.root(), &src, Path::new("/tmp"), OWNER).unwrap();
    let t_in = t.elapsed();
    let t = Instant::now();
    copy_out(
        w.root(),
        Path::new("/tmp/src"),
        &w.host("out"),
        Some((1, 1)),
    )
    .unwrap();
    let t_out = t.elapsed();
    eprintln!("1000 files of ~1 KiB in 10 dirs: copy_in {t_in:?}, copy_out {t_out:?}");
    assert_eq!(fs::read(w.host("out/src/d9/f99")).unwrap().len(), 1024 + 99);
    assert_eq!(fs::read_dir(w.host("out/src/d3")).unwrap().count(), 100);
    assert!(t_in.as_secs() < 10 && t_out.as_secs() < 10);
}

#[test]
fn deep_trees_are_bounded() {
    if !is_root() {
        return;
    }
    let w = World::new();
    let mut p = w.host("src");
    for _ in 0..warden_daemon::copy::MAX_DEPTH - 1 {
        p.push("d");
    }
    fs::create_dir_all(&p).unwrap();
    fs::write(p.join("f"), "deep").unwrap();
    copy_in(w.root(), &w.host("src"), Path::new("/tmp"), OWNER).unwrap();
    let inside = w
        .r("tmp")
        .join(p.strip_prefix(w.host.path()).unwrap())
        .join("f");
    assert_eq!(fs::read_to_string(inside).unwrap(), "deep");
    fs::create_dir(p.join("d")).unwrap();
    let e = copy_in(w.root(), &w.host("src"), Path::new("/tmp/again"), OWNER).unwrap_err();
    assert!(matches!(e, CopyError::TooDeep { .. }), "{e}");
}
