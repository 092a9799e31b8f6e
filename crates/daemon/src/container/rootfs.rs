//! A container's root filesystem: the read-only base rootfs plus a writable overlay in the
//! container's dir (`upper/`, `work/`, mounted at `rootfs/`), and the files Warden writes
//! into it: /etc/hostname, /etc/hosts, /etc/resolv.conf, the `vcap` user and its home.

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use warden_runtime::rootfs::path::secure_join;

use super::Error;
use crate::config::{NamespaceRootfs, UserNamespace};

/// The container user's name, as in the original.
pub const USER: &str = "vcap";

pub fn rootfs_dir(container_dir: &Path) -> PathBuf {
    container_dir.join("rootfs")
}

/// Mounts the overlay of `base` at `<dir>/rootfs`, its `upper/` and `work/` in `layer` (the
/// container's quota unit, see [`super::disk`]); with a user namespace, over `base` shown to
/// the namespace's ids (see `userns`: idmapped where it can, else the chowned copy kept in
/// `depot`), with the upper layer's root owned by container root.
pub fn mount_overlay(
    dir: &Path,
    layer: &Path,
    base: &Path,
    userns: Option<(&UserNamespace, &Path)>,
    seed: Option<&super::runtime::MountSeed>,
) -> Result<(), Error> {
    let Some((ns, depot)) = userns else {
        return mount_overlay_on(dir, layer, base);
    };
    make_layers(dir, layer)?;
    own_upper(layer, ns)?;
    // Why the idmapped base could not be had, and the overlay's own refusal of it (kernels
    // before 5.19 take no idmapped layer: EINVAL), remembered only once the copy's overlay
    // works, so that a refusal of the overlay as such is not taken for one of the idmap.
    let (mut reason, mut overlay_refused) = (None, None);
    if ns.rootfs == NamespaceRootfs::Auto && !super::userns::refused(base) {
        let mounted = super::userns::mount_idmapped_lower(dir, base, ns, seed).and_then(|lower| {
            try_overlay(dir, layer, &lower)?.map_err(|errno| {
                overlay_refused = Some(errno);
                overlay_error(dir, errno)
            })
        });
        super::userns::unmount_lower(dir);
        match mounted {
            Ok(()) => return Ok(()),
            Err(e) => {
                reason = Some(e);
                let _ = unmount_overlay(dir);
            }
        }
    }
    let copied =
        super::userns::chowned_copy(base, depot, ns).and_then(|c| mount_overlay_on(dir, layer, &c));
    if let Some(e) = reason {
        if let (Ok(()), Some(errno)) = (&copied, overlay_refused) {
            super::userns::refuse_if_lasting(base, errno);
        }
        tracing::info!(
            base = %base.display(),
            "the base rootfs cannot be idmapped here ({e}): using a chowned copy{}",
            if super::userns::refused(base) {
                " for this base from now on"
            } else {
                ""
            }
        );
    }
    copied
}

/// The overlay's root is the upper layer's (as it is when the overlay is mounted): container
/// root's, so it may create files in `/`.
fn own_upper(layer: &Path, ns: &UserNamespace) -> Result<(), Error> {
    let upper = layer.join("upper");
    let root = ns.host_id(0);
    nix::unistd::chown(&upper, Some(root.into()), Some(root.into()))
        .map_err(|e| Error::Sys(format!("chown {}: {e}", upper.display())))
}

/// `<layer>/upper`, `<layer>/work` and `<dir>/rootfs`, if not there yet.
fn make_layers(dir: &Path, layer: &Path) -> Result<(), Error> {
    for d in [layer.join("upper"), layer.join("work"), rootfs_dir(dir)] {
        match std::fs::DirBuilder::new().mode(0o755).create(&d) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(Error::io("mkdir", &d, e))
            }
            _ => {}
        }
    }
    Ok(())
}

fn mount_overlay_on(dir: &Path, layer: &Path, base: &Path) -> Result<(), Error> {
    try_overlay(dir, layer, base)?.map_err(|errno| overlay_error(dir, errno))
}

fn overlay_error(dir: &Path, errno: nix::errno::Errno) -> Error {
    Error::Sys(format!(
        "mount overlay at {}: {errno}",
        rootfs_dir(dir).display()
    ))
}

/// The overlay mount of [`mount_overlay_on`]; the inner error is the mount's own, kept as
/// the errno so that a caller can tell a kernel's lasting refusal.
fn try_overlay(
    dir: &Path,
    layer: &Path,
    base: &Path,
) -> Result<Result<(), nix::errno::Errno>, Error> {
    let (upper, work) = (layer.join("upper"), layer.join("work"));
    let merged = rootfs_dir(dir);
    make_layers(dir, layer)?;
    for p in [base, &upper, &work] {
        let s = p.to_string_lossy();
        if s.contains([',', ':', '\\']) {
            return Err(Error::Invalid(format!(
                "path {s} cannot be used in an overlay mount (it contains ',', ':' or '\\')"
            )));
        }
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        base.display(),
        upper.display(),
        work.display()
    );
    let overlay = |data: &str| {
        mount(
            Some("overlay"),
            &merged,
            Some("overlay"),
            MsFlags::empty(),
            Some(data),
        )
    };
    // `volatile` (Linux 5.10): the overlay never syncs its upper filesystem, which is the
    // host's. Without it, the unmount at destroy (and a job's syncfs) flushed every dirty
    // page of the host's filesystem, so a destroy waited on everyone else's writeback; no
    // container outlives a host crash, so its layer needs no sync. An older kernel refuses
    // the option (EINVAL), and is then asked without it.
    static REFUSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !REFUSED.load(std::sync::atomic::Ordering::Relaxed) {
        match overlay(&format!("{data},volatile")) {
            Err(nix::errno::Errno::EINVAL) => {
                // Only a refusal of the option itself is remembered.
                if overlay(&data).is_ok() {
                    REFUSED.store(true, std::sync::atomic::Ordering::Relaxed);
                    tracing::info!("overlay: this kernel has no `volatile` option");
                    return Ok(Ok(()));
                }
                return Ok(Err(nix::errno::Errno::EINVAL));
            }
            r => return Ok(r),
        }
    }
    Ok(overlay(&data))
}

/// Unmounts the overlay; fine if it is not mounted.
pub fn unmount_overlay(dir: &Path) -> Result<(), Error> {
    // A daemon that died half-way through a create may have left the idmapped base.
    super::userns::unmount_lower(dir);
    let merged = rootfs_dir(dir);
    match umount2(&merged, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(Error::Sys(format!("unmount {}: {e}", merged.display()))),
    }
}

/// What goes into the container's /etc.
pub struct Identity<'a> {
    pub hostname: &'a str,
    pub container_ip: Ipv4Addr,
    pub host_ip: Ipv4Addr,
    pub uid: u32,
    pub dns_servers: &'a [IpAddr],
    /// The containers' user namespace: what is written is owned by its ids.
    pub userns: Option<UserNamespace>,
}

fn write(root: &Path, path: &str, text: &str, mode: u32, owner: u32) -> Result<(), Error> {
    let p = secure_join(root, Path::new(path)).map_err(|e| Error::Invalid(e.to_string()))?;
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io("mkdir", parent, e))?;
    }
    // Replace, never write through: the base may have a symlink or a hard link there.
    let _ = std::fs::remove_file(&p);
    std::fs::write(&p, text).map_err(|e| Error::io("write", &p, e))?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("chmod", &p, e))?;
    if owner != 0 {
        nix::unistd::chown(&p, Some(owner.into()), Some(owner.into()))
            .map_err(|e| Error::Sys(format!("chown {}: {e}", p.display())))?;
    }
    Ok(())
}

fn read(root: &Path, path: &str) -> String {
    secure_join(root, Path::new(path))
        .ok()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default()
}

/// Writes hostname, hosts, resolv.conf and the user (account, group and home dir).
pub fn write_identity(dir: &Path, id: &Identity) -> Result<(), Error> {
    let root = rootfs_dir(dir);
    // The host ids of container root and of the user.
    let host = |i: u32| id.userns.map_or(i, |ns| ns.host_id(i));
    let r = host(0);
    write(
        &root,
        "/etc/hostname",
        &format!("{}\n", id.hostname),
        0o644,
        r,
    )?;
    write(
        &root,
        "/etc/hosts",
        &format!(
            "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n{} {}\n",
            id.container_ip, id.hostname
        ),
        0o644,
        r,
    )?;
    write(&root, "/etc/resolv.conf", &resolv_conf(id), 0o644, r)?;

    let uid = id.uid;
    let strip = |text: String| -> String {
        text.lines()
            .filter(|l| {
                let mut f = l.split(':');
                let name = f.next();
                let num = f.nth(1);
                name != Some(USER) && num != Some(&uid.to_string())
            })
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let passwd = strip(read(&root, "/etc/passwd"))
        + &format!("{USER}:x:{uid}:{uid}::/home/{USER}:/bin/sh\n");
    write(&root, "/etc/passwd", &passwd, 0o644, r)?;
    let group = strip(read(&root, "/etc/group")) + &format!("{USER}:x:{uid}:\n");
    write(&root, "/etc/group", &group, 0o644, r)?;

    let home =
        secure_join(&root, Path::new("/home/vcap")).map_err(|e| Error::Invalid(e.to_string()))?;
    std::fs::create_dir_all(&home).map_err(|e| Error::io("mkdir", &home, e))?;
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::io("chmod", &home, e))?;
    nix::unistd::chown(&home, Some(host(uid).into()), Some(host(uid).into()))
        .map_err(|e| Error::Sys(format!("chown {}: {e}", home.display())))
}

/// resolv.conf: the configured DNS servers, else the host's, where a nameserver on the
/// host's loopback (unreachable from the container) becomes the host's address on the veth.
fn resolv_conf(id: &Identity) -> String {
    if !id.dns_servers.is_empty() {
        return id
            .dns_servers
            .iter()
            .map(|s| format!("nameserver {s}\n"))
            .collect();
    }
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    host.lines()
        .map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            ["nameserver", ip] if ip.starts_with("127.") => format!("nameserver {}\n", id.host_ip),
            _ => format!("{l}\n"),
        })
        .collect()
}

/// The shell a job runs with: /bin/bash where the rootfs has it, else /bin/sh (busybox).
pub fn job_shell(dir: &Path) -> &'static str {
    let root = rootfs_dir(dir);
    let has_bash = secure_join(&root, Path::new("/bin/bash"))
        .map(|p| p.is_file())
        .unwrap_or(false);
    if has_bash {
        "/bin/bash"
    } else {
        "/bin/sh"
    }
}
