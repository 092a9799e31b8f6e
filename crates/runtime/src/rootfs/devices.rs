//! /dev when the container does not bind the host's: the default devices every container
//! gets, the config's `linux.devices`, the /dev symlinks, and /dev/ptmx pointing at the
//! container's own devpts.

use std::os::unix::fs::symlink;
use std::path::Path;

use nix::mount::MsFlags;
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::path::secure_join;
use crate::error::{Error, IoContext, Result};

/// A device to create: path, type, major, minor, mode, uid, gid.
struct Device<'a> {
    path: &'a Path,
    typ: LinuxDeviceType,
    major: i64,
    minor: i64,
    mode: u32,
    uid: u32,
    gid: u32,
}

const DEFAULTS: [(&str, i64, i64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// Creates the default devices and `extra` under `rootfs/dev`. In a user namespace mknod is
/// not allowed, so each device is a bind mount of the host's node onto an empty file.
pub fn create(rootfs: &Path, extra: &[LinuxDevice], in_user_ns: bool) -> Result<()> {
    let old = nix::sys::stat::umask(Mode::empty());
    let result = (|| {
        for (path, major, minor) in DEFAULTS {
            if extra.iter().any(|d| d.path() == Path::new(path)) {
                continue;
            }
            make(
                rootfs,
                &Device {
                    path: Path::new(path),
                    typ: LinuxDeviceType::C,
                    major,
                    minor,
                    mode: 0o666,
                    uid: 0,
                    gid: 0,
                },
                in_user_ns,
            )?;
        }
        for d in extra {
            make(
                rootfs,
                &Device {
                    path: d.path(),
                    typ: d.typ(),
                    major: d.major(),
                    minor: d.minor(),
                    mode: d.file_mode().unwrap_or(0o666),
                    uid: d.uid().unwrap_or(0),
                    gid: d.gid().unwrap_or(0),
                },
                in_user_ns,
            )?;
        }
        Ok(())
    })();
    nix::sys::stat::umask(old);
    result
}

fn make(rootfs: &Path, d: &Device, in_user_ns: bool) -> Result<()> {
    let normal = d.path.components().all(|c| {
        matches!(
            c,
            std::path::Component::RootDir | std::path::Component::Normal(_)
        )
    });
    if !normal || !d.path.starts_with("/dev/") {
        return Err(Error::Config(format!(
            "device {} is not under /dev",
            d.path.display()
        )));
    }
    let dest = secure_join(rootfs, d.path)?;
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).ctx("mkdir", parent)?;
    }
    let _ = std::fs::remove_file(&dest);
    if in_user_ns {
        std::fs::File::create(&dest).ctx("create device mount point", &dest)?;
        return nix::mount::mount(
            Some(d.path),
            &dest,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| {
            Error::sys(
                format!("bind device {} to {}", d.path.display(), dest.display()),
                e,
            )
        });
    }
    let kind = match d.typ {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(Error::Config(format!(
                "device {}: type \"a\" is only valid in cgroup rules",
                d.path.display()
            )))
        }
    };
    let dev = makedev(d.major as u64, d.minor as u64);
    mknod(&dest, kind, Mode::from_bits_truncate(d.mode & 0o7777), dev).map_err(|e| {
        Error::sys(
            format!("mknod {} ({}:{})", d.path.display(), d.major, d.minor),
            e,
        )
    })?;
    nix::unistd::chown(
        &dest,
        Some(nix::unistd::Uid::from_raw(d.uid)),
        Some(nix::unistd::Gid::from_raw(d.gid)),
    )
    .map_err(|e| Error::sys(format!("chown {}", dest.display()), e))
}

/// /dev/fd, /dev/std{in,out,err}, /dev/core, and /dev/ptmx -> pts/ptmx.
pub fn symlinks(rootfs: &Path) -> Result<()> {
    let mut links = vec![
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "/dev/core"));
    }
    for (target, link) in links {
        let dest = secure_join(rootfs, Path::new(link))?;
        match symlink(target, &dest) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("symlink", dest, e)),
        }
    }
    let ptmx = secure_join(rootfs, Path::new("/dev/ptmx"))?;
    let _ = std::fs::remove_file(&ptmx);
    symlink("pts/ptmx", &ptmx).ctx("symlink", &ptmx)
}
