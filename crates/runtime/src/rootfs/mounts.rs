//! One entry of `mounts`: its options parsed into flags, data and propagation, and mounted at
//! its destination inside the rootfs.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use oci_spec::runtime::Mount;

use super::idmap;
use super::path::secure_join;
use crate::error::{Error, IoContext, Result, SysContext};

/// A mount's options as mount(2) takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Flags for the mount itself.
    pub flags: MsFlags,
    /// Flags to clear (an explicit `rw`, `suid`...), kept so a remount does not set them.
    pub cleared: MsFlags,
    /// MS_SHARED / MS_SLAVE / MS_PRIVATE / MS_UNBINDABLE, each optionally with MS_REC; applied
    /// with separate mount(2) calls after the mount.
    pub propagation: Vec<MsFlags>,
    /// Filesystem-specific options (`mode=755`, `size=65536k`...).
    pub data: Vec<String>,
    /// `MOUNT_ATTR_*` attributes the recursive options (`rro`, `rnosuid`, `rnoatime`...)
    /// set and clear on the mount and every mount under it, with mount_setattr(2).
    pub rec_set: u64,
    pub rec_clear: u64,
    /// `idmap` (false) or `ridmap` (true): see `idmap::requested`.
    pub idmap: Option<bool>,
}

impl Options {
    pub fn parse(options: &[String]) -> Options {
        let mut o = Options {
            flags: MsFlags::empty(),
            cleared: MsFlags::empty(),
            propagation: Vec::new(),
            data: Vec::new(),
            rec_set: 0,
            rec_clear: 0,
            idmap: None,
        };
        for opt in options {
            if let Some((set, attr)) = recursive_attr(opt) {
                if attr & idmap::MOUNT_ATTR__ATIME != 0 || attr == idmap::MOUNT_ATTR_RELATIME {
                    // The atime setting is one value, changed only with the whole field
                    // cleared: the last atime option wins (`rnoatime,rrelatime` is relatime).
                    o.rec_clear |= idmap::MOUNT_ATTR__ATIME;
                    o.rec_set = if set {
                        (o.rec_set & !idmap::MOUNT_ATTR__ATIME) | attr
                    } else {
                        o.rec_set & !attr
                    };
                } else if set {
                    o.rec_set |= attr;
                    o.rec_clear &= !attr;
                } else {
                    o.rec_clear |= attr;
                    o.rec_set &= !attr;
                }
                continue;
            }
            let (set, clear) = match opt.as_str() {
                "defaults" => (MsFlags::empty(), MsFlags::empty()),
                "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
                "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
                "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
                "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
                "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
                "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
                "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
                "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
                "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
                "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
                "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
                "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
                "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
                "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
                "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
                "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
                "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
                "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
                "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
                "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
                "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
                "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
                "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
                "nosymfollow" => (
                    MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW),
                    MsFlags::empty(),
                ),
                "symfollow" => (
                    MsFlags::empty(),
                    MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW),
                ),
                "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
                "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave"
                | "unbindable" | "runbindable" => {
                    o.propagation.push(propagation_flag(opt).expect("listed"));
                    continue;
                }
                // `tmpcopyup` is handled by `mount_entry` (a tmpfs gets what its mount point
                // held); crun's `copy-symlink` changes nothing for us.
                "tmpcopyup" | "notmpcopyup" | "copy-symlink" => continue,
                "idmap" | "ridmap" => {
                    o.idmap = Some(opt == "ridmap");
                    continue;
                }
                _ => {
                    o.data.push(opt.clone());
                    continue;
                }
            };
            o.flags = (o.flags | set) & !clear;
            o.cleared = (o.cleared | clear) & !set;
        }
        o
    }

    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }
}

/// The recursive mount attribute options (runc's list): each with whether it sets (else
/// clears) the `MOUNT_ATTR_*` it names. The atime ones name a value of the atime field:
/// `ratime`, `rnorelatime` and `rnostrictatime` clear what they name, which leaves relatime.
pub const RECURSIVE_OPTIONS: &[(&str, bool, u64)] = {
    use idmap::*;
    &[
        ("rro", true, MOUNT_ATTR_RDONLY),
        ("rrw", false, MOUNT_ATTR_RDONLY),
        ("rnosuid", true, MOUNT_ATTR_NOSUID),
        ("rsuid", false, MOUNT_ATTR_NOSUID),
        ("rnodev", true, MOUNT_ATTR_NODEV),
        ("rdev", false, MOUNT_ATTR_NODEV),
        ("rnoexec", true, MOUNT_ATTR_NOEXEC),
        ("rexec", false, MOUNT_ATTR_NOEXEC),
        ("rnodiratime", true, MOUNT_ATTR_NODIRATIME),
        ("rdiratime", false, MOUNT_ATTR_NODIRATIME),
        ("rrelatime", true, MOUNT_ATTR_RELATIME),
        ("rnorelatime", false, MOUNT_ATTR_RELATIME),
        ("rnoatime", true, MOUNT_ATTR_NOATIME),
        ("ratime", false, MOUNT_ATTR_NOATIME),
        ("rstrictatime", true, MOUNT_ATTR_STRICTATIME),
        ("rnostrictatime", false, MOUNT_ATTR_STRICTATIME),
        ("rnosymfollow", true, MOUNT_ATTR_NOSYMFOLLOW),
        ("rsymfollow", false, MOUNT_ATTR_NOSYMFOLLOW),
    ]
};

/// The entry of [`RECURSIVE_OPTIONS`] for `opt`, as (sets, attribute).
fn recursive_attr(opt: &str) -> Option<(bool, u64)> {
    RECURSIVE_OPTIONS
        .iter()
        .find(|(name, _, _)| *name == opt)
        .map(|&(_, set, attr)| (set, attr))
}

/// The flag of a propagation name (`rslave`, `private`...).
pub fn propagation_flag(name: &str) -> Option<MsFlags> {
    let (rec, base) = match name.strip_prefix('r') {
        Some(b) if matches!(b, "private" | "shared" | "slave" | "unbindable") => {
            (MsFlags::MS_REC, b)
        }
        _ => (MsFlags::empty(), name),
    };
    let flag = match base {
        "private" => MsFlags::MS_PRIVATE,
        "shared" => MsFlags::MS_SHARED,
        "slave" => MsFlags::MS_SLAVE,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        _ => return None,
    };
    Some(flag | rec)
}

/// What a mount needs to know about the container beyond the entry.
pub struct Context<'a> {
    pub rootfs: &'a Path,
    pub in_user_ns: bool,
    pub new_net_ns: bool,
    /// The container's cgroup dir per controller ("" for the unified hierarchy).
    pub cgroup_paths: &'a BTreeMap<String, PathBuf>,
    /// The idmapped copies the runtime made (`idmap::detached_mounts`), by `mounts` index.
    pub detached: &'a BTreeMap<usize, OwnedFd>,
}

fn sys_mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<()> {
    mount(source, target, fstype, flags, data).map_err(|errno| {
        Error::Init(format!(
            "mount {} to {} (type {}, flags {:?}{}): {errno}",
            source
                .map(|s| s.display().to_string())
                .unwrap_or_else(|| "none".into()),
            target.display(),
            fstype.unwrap_or("none"),
            flags,
            data.map(|d| format!(", data {d:?}")).unwrap_or_default(),
        ))
    })
}

/// Creates the mount point: a file when a bind mount's source is not a directory, else a
/// directory (with its parents).
fn make_target(dest: &Path, file: bool) -> Result<()> {
    if file {
        if let Some(parent) = dest.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .ctx("mkdir", parent)?;
        }
        match std::fs::symlink_metadata(dest) {
            Ok(_) => Ok(()),
            Err(_) => std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dest)
                .map(drop)
                .ctx("create mount point", dest),
        }
    } else {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dest)
            .ctx("mkdir mount point", dest)
    }
}

/// Runs `f` with a path that names the mount point `dest` (as the container sees it) safely:
/// `/proc/self/fd/N` of an fd the kernel resolved inside the rootfs. Opened anew for each
/// call, so after a mount it names the new mount (to remount it, say).
fn at_target<T>(ctx: &Context, dest: &Path, f: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let fd = super::path::open_in_root(ctx.rootfs, dest)?;
    let proc_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    // Errors name the mount point as the config does, not the fd.
    f(Path::new(&proc_path)).map_err(|e| match e {
        Error::Init(msg) => Error::Init(msg.replace(&proc_path, &dest.display().to_string())),
        other => other,
    })
}

/// The source of the bind mount `m`, resolved against `bundle` (runc allows a relative one),
/// checked to exist: what the runtime copies before the clone (idmapped binds, binds made
/// from a seed) and what the error names if it is not there.
pub fn bind_source(m: &Mount, bundle: &Path) -> Result<PathBuf> {
    let dest = m.destination().display();
    let source = m
        .source()
        .as_deref()
        .ok_or_else(|| Error::Config(format!("bind mount {dest} has no source")))?;
    let source = bundle.join(source);
    std::fs::metadata(&source).map_err(|e| {
        Error::Config(format!(
            "bind mount source {} of {dest}: {e}",
            source.display()
        ))
    })?;
    Ok(source)
}

/// Mounts one entry inside the rootfs (before pivot_root). Mount points are created at the
/// path `secure_join` resolves, but every mount(2) goes through [`at_target`], so a symlink
/// swapped in meanwhile cannot move a mount out of the rootfs. `index` is the entry's place in
/// `mounts` (its idmapped copy, if it has one, is `ctx.detached[index]`).
pub fn mount_entry(index: usize, m: &Mount, ctx: &Context) -> Result<()> {
    let opts = Options::parse(m.options().as_deref().unwrap_or_default());
    let typ = m.typ().as_deref().unwrap_or("");
    let dest = secure_join(ctx.rootfs, m.destination())?;
    let shown = m.destination();
    let data = (!opts.data.is_empty()).then(|| opts.data.join(","));

    if typ == "bind" || opts.is_bind() {
        // The kernel ignores filesystem data on MS_BIND (`mode=755`, `size=1k` on a bind
        // change nothing, and runc and crun accept them). The mount attributes (`rro`,
        // `idmap`...) are not data: see `Options`.
        if !opts.data.is_empty() {
            tracing::debug!(
                "mount {}: filesystem data {:?} ignored on a bind mount",
                shown.display(),
                opts.data
            );
        }
        let source = m.source().as_deref().ok_or_else(|| {
            Error::Config(format!(
                "bind mount {} has no source",
                m.destination().display()
            ))
        })?;
        // A copy the runtime made is what gets mounted: its type, not the path's here
        // (in a namespace made from a seed the path may be another file or none).
        let is_dir = match ctx.detached.get(&index) {
            Some(tree) => nix::sys::stat::fstat(tree.as_fd())
                .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
                .sys(format!("fstat the copy of {}", source.display()))?,
            None => std::fs::metadata(source)
                .map_err(|e| {
                    Error::Config(format!(
                        "bind mount source {} of {}: {e}",
                        source.display(),
                        m.destination().display()
                    ))
                })?
                .is_dir(),
        };
        make_target(&dest, !is_dir)?;
        if let Some(tree) = ctx.detached.get(&index) {
            let target = super::path::open_in_root(ctx.rootfs, shown)?;
            idmap::attach(tree, target.as_fd()).map_err(|e| {
                Error::Init(format!(
                    "mount {}: attach the copy of {}: {e}",
                    shown.display(),
                    source.display()
                ))
            })?;
        } else {
            let flags = MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC);
            at_target(ctx, shown, |t| {
                sys_mount(Some(source), t, None, flags, None)
            })?;
        }
        // Bind mounts ignore every other flag until a remount.
        let rest = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        if !rest.is_empty() {
            at_target(ctx, shown, |t| remount(t, rest, &opts))?;
        }
    } else if typ == "cgroup" {
        make_target(&dest, false)?;
        mount_cgroup(&dest, &opts, ctx)?;
    } else {
        make_target(&dest, false)?;
        let source = m.source().as_deref().unwrap_or(Path::new(typ));
        let fstype = (!typ.is_empty()).then_some(typ);
        // runc's `tmpcopyup`: the tmpfs starts with a copy of what the directory it covers
        // holds, read through an fd of that directory opened before the mount (a read-only
        // tmpfs is mounted writable for the copy and made read-only after it).
        let copy_up = typ == "tmpfs"
            && m.options().iter().flatten().any(|o| o == "tmpcopyup")
            && !m.options().iter().flatten().any(|o| o == "notmpcopyup");
        let covered = copy_up
            .then(|| super::path::open_in_root(ctx.rootfs, shown))
            .transpose()?;
        let flags = if copy_up {
            opts.flags & !MsFlags::MS_RDONLY
        } else {
            opts.flags
        };
        let mounted = at_target(ctx, shown, |t| {
            sys_mount(Some(source), t, fstype, flags, data.as_deref())
        });
        if let (Ok(()), Some(covered)) = (&mounted, covered) {
            let from = format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(&covered)
            );
            at_target(ctx, shown, |t| {
                copy_tree(Path::new(&from), t)
                    .map_err(|e| Error::Init(format!("mount {}: tmpcopyup: {e}", shown.display())))
            })?;
            if opts.flags.contains(MsFlags::MS_RDONLY) {
                at_target(ctx, shown, |t| {
                    sys_mount(
                        None,
                        t,
                        None,
                        MsFlags::MS_REMOUNT | opts.flags,
                        data.as_deref(),
                    )
                })?;
            }
        }
        match mounted {
            Ok(()) => {}
            // sysfs of another network namespace, or mqueue of another ipc namespace, cannot
            // be mounted from a user namespace: bind the host's instead, as runc does.
            Err(_) if ctx.in_user_ns && matches!(typ, "sysfs" | "mqueue") => {
                let host = if typ == "sysfs" {
                    "/sys"
                } else {
                    "/dev/mqueue"
                };
                at_target(ctx, shown, |t| {
                    sys_mount(
                        Some(Path::new(host)),
                        t,
                        None,
                        MsFlags::MS_BIND | MsFlags::MS_REC,
                        None,
                    )
                })?;
                let rest = opts.flags & !MsFlags::MS_REMOUNT;
                if !rest.is_empty() {
                    at_target(ctx, shown, |t| remount(t, rest, &opts))?;
                }
            }
            Err(e) => return Err(e),
        }
    }
    for p in &opts.propagation {
        at_target(ctx, shown, |t| sys_mount(None, t, None, *p, None))?;
    }
    // Last, as runc: the recursive attributes hold for the mounts under this one too. runc
    // 1.2 applies them to bind mounts only (and drops them on others); here they hold for
    // every type, as in runc 1.1.
    if opts.rec_set != 0 || opts.rec_clear != 0 {
        let target = super::path::open_in_root(ctx.rootfs, shown)?;
        idmap::set_recursive(target.as_fd(), opts.rec_set, opts.rec_clear).map_err(|e| {
            Error::Init(format!(
                "mount {}: mount_setattr(AT_RECURSIVE, set {:#x}, clear {:#x}) for its \
                 recursive options: {e}",
                shown.display(),
                opts.rec_set,
                opts.rec_clear
            ))
        })?;
    }
    Ok(())
}

/// Copies what `from` holds into `to`: directories, regular files and symlinks with their
/// modes and owners (other file types are skipped, as a tmpfs copy-up needs none). An owner
/// a user namespace does not map stays the init's.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let meta = std::fs::symlink_metadata(&src)?;
        let ft = meta.file_type();
        if ft.is_dir() {
            std::fs::create_dir(&dst)?;
            copy_tree(&src, &dst)?;
        } else if ft.is_file() {
            std::fs::copy(&src, &dst)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else {
            continue;
        }
        match std::os::unix::fs::lchown(&dst, Some(meta.uid()), Some(meta.gid())) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EPERM)) => {}
            r => r?,
        }
        if !ft.is_symlink() {
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        }
    }
    Ok(())
}

/// Remounts a bind mount with `flags`, keeping the flags the kernel locked on it (a user
/// namespace may not clear nosuid/nodev/noexec/atime flags it inherited).
pub fn remount(dest: &Path, flags: MsFlags, opts: &Options) -> Result<()> {
    let locked = current_flags(dest) & !opts.cleared;
    sys_mount(
        None,
        dest,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags | locked,
        None,
    )
}

/// The per-mount flags statvfs reports for `path`.
pub fn current_flags(path: &Path) -> MsFlags {
    use nix::sys::statvfs::{statvfs, FsFlags};
    let Ok(st) = statvfs(path) else {
        return MsFlags::empty();
    };
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(fs) {
            out |= ms;
        }
    }
    out
}

/// A `cgroup` mount. With cgroup v2 the container's own cgroup dir is bound there; with v1
/// a tmpfs holds one bind mount of the container's dir per hierarchy (named as the host
/// names it, e.g. `cpu,cpuacct`, with a symlink for each controller of a combined one).
fn mount_cgroup(dest: &Path, opts: &Options, ctx: &Context) -> Result<()> {
    let ro = opts.flags.contains(MsFlags::MS_RDONLY);
    let base = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let bind_ro = |src: &Path, target: &Path| -> Result<()> {
        sys_mount(
            Some(src),
            target,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )?;
        let flags = base
            | if ro {
                MsFlags::MS_RDONLY
            } else {
                MsFlags::empty()
            };
        sys_mount(
            None,
            target,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags,
            None,
        )
    };
    let unified_only = ctx.cgroup_paths.len() == 1 && ctx.cgroup_paths.contains_key("");
    if unified_only {
        let src = &ctx.cgroup_paths[""];
        return bind_ro(src, dest);
    }
    sys_mount(
        Some(Path::new("tmpfs")),
        dest,
        Some("tmpfs"),
        base,
        Some("mode=755"),
    )?;
    let mut done: BTreeMap<String, ()> = BTreeMap::new();
    for (controller, path) in ctx.cgroup_paths {
        // The hierarchy's mount dir under /sys/fs/cgroup: the first component of the path.
        let Ok(rel) = path.strip_prefix("/sys/fs/cgroup") else {
            continue;
        };
        let Some(hier) = rel.components().next() else {
            continue;
        };
        let hier = hier.as_os_str().to_string_lossy().to_string();
        if !done.contains_key(&hier) {
            let target = dest.join(&hier);
            make_target(&target, false)?;
            bind_ro(path, &target)?;
            done.insert(hier.clone(), ());
        }
        let alias = controller.strip_prefix("name=").unwrap_or(controller);
        if !alias.is_empty() && alias != hier {
            let link = dest.join(alias);
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(&hier, &link).ctx("symlink", &link)?;
            }
        }
    }
    if ro {
        sys_mount(
            None,
            dest,
            None,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | base,
            Some("mode=755"),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_flags_data_and_propagation() {
        let o = Options::parse(&s(&["nosuid", "strictatime", "mode=755", "size=65536k"]));
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.data, s(&["mode=755", "size=65536k"]));
        let o = Options::parse(&s(&["rbind", "ro", "rslave", "private"]));
        assert!(o.is_bind());
        assert_eq!(
            o.flags,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY
        );
        assert_eq!(
            o.propagation,
            vec![MsFlags::MS_SLAVE | MsFlags::MS_REC, MsFlags::MS_PRIVATE]
        );
        let o = Options::parse(&s(&["ro", "rw", "nodev", "dev"]));
        assert_eq!(o.flags, MsFlags::empty());
        assert_eq!(o.cleared, MsFlags::MS_RDONLY | MsFlags::MS_NODEV);
        assert_eq!(propagation_flag("rw"), None);
        // Recursive attributes are not data; the last atime option wins.
        let o = Options::parse(&s(&[
            "rbind",
            "rro",
            "rnosuid",
            "rnoatime",
            "rrelatime",
            "idmap",
        ]));
        assert!(o.data.is_empty());
        assert_eq!(
            o.rec_set,
            idmap::MOUNT_ATTR_RDONLY | idmap::MOUNT_ATTR_NOSUID
        );
        assert_eq!(o.rec_clear, idmap::MOUNT_ATTR__ATIME);
        assert_eq!(o.idmap, Some(false));
        let o = Options::parse(&s(&["rro", "rrw", "rstrictatime", "ridmap"]));
        assert_eq!(o.rec_set, idmap::MOUNT_ATTR_STRICTATIME);
        assert_eq!(
            o.rec_clear,
            idmap::MOUNT_ATTR_RDONLY | idmap::MOUNT_ATTR__ATIME
        );
        assert_eq!(o.idmap, Some(true));
        assert_eq!(propagation_flag("shared"), Some(MsFlags::MS_SHARED));
    }
}
