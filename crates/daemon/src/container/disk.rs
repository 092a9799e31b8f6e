//! Disk quotas (limit_disk, info's disk_stat): a container's writable layer, `<dir>/disk/`
//! (the overlay's `upper/` and `work/`), is one unit of the depot filesystem's quota system,
//! limited and measured by the kernel.
//!
//! Backends, behind [`QuotaBackend`], chosen at daemon start by what the depot's filesystem
//! supports ([`Disks::detect`]; `server.quota.disk_quota_backend`):
//!
//! - [`Xfs`]: XFS project quotas (what Garden's grootfs does). The layer dir gets project id
//!   = the container's uid (unique among live containers: the uid pool) with
//!   `FS_XFLAG_PROJINHERIT`, by `FS_IOC_FSSETXATTR`, so `upper/` and `work/` and all made in
//!   them belong to it; limits and usage by `quotactl(Q_XSETQLIM / Q_XGETQUOTA, PRJQUOTA)` on
//!   the depot's block device. Needs the depot mounted with `prjquota`. Byte, block and inode
//!   limits, soft and hard.
//! - [`Btrfs`]: btrfs qgroups. The layer dir is a subvolume (`BTRFS_IOC_SUBVOL_CREATE`), its
//!   level-0 qgroup limited by `BTRFS_IOC_QGROUP_LIMIT` (referenced bytes); usage from the
//!   qgroup's counters in sysfs. Quotas are turned on for the filesystem at start
//!   (`BTRFS_IOC_QUOTA_CTL`). Hard byte/block limits only: qgroups count no inodes and have no
//!   soft limit, so those are refused with an error naming the backend.
//!
//! Both take the 1 KiB blocks of the original's `setquota` (SPEC 3.8); 0 means no limit.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

use super::Error;

/// The quota block: 1 KiB, whatever the filesystem's block size (the original's setquota).
pub const BLOCK: u64 = 1024;

/// The layer dir: where the overlay's `upper/` and `work/` live.
pub fn layer_dir(container_dir: &Path) -> PathBuf {
    container_dir.join("disk")
}

/// Limits in [`BLOCK`]s and inodes; 0 is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub block_soft: u64,
    pub block_hard: u64,
    pub inode_soft: u64,
    pub inode_hard: u64,
}

/// What a layer uses, as the quota system counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    /// `None` where the backend counts no inodes (btrfs).
    pub inodes: Option<u64>,
}

/// The backend names of the config and the docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Xfs,
    Btrfs,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Xfs => "xfs",
            Kind::Btrfs => "btrfs",
        }
    }
}

/// One quota backend. `layer` is a container's [`layer_dir`], `uid` its user.
pub trait QuotaBackend: Send + Sync {
    fn kind(&self) -> Kind;
    /// Makes the layer dir, a quota unit of its own with no limit.
    fn prepare(&self, layer: &Path, uid: u32) -> Result<(), Error>;
    /// Checks that the backend can enforce `limits` (before anything is changed).
    fn check(&self, limits: &Limits) -> Result<(), Error>;
    fn set(&self, layer: &Path, uid: u32, limits: &Limits) -> Result<(), Error>;
    fn get(&self, layer: &Path, uid: u32) -> Result<(Limits, Usage), Error>;
    /// Removes the layer and its quota unit; fine if either is already gone.
    fn remove(&self, layer: &Path, uid: u32) -> Result<(), Error>;
}

/// The daemon's disk quotas.
pub enum Disks {
    /// `quota.disk_quota_enabled: false`: limit_disk answers empty, info has no disk_stat.
    Disabled,
    /// Enabled, but the depot's filesystem has no backend: why (limit_disk fails with it).
    Unsupported(String),
    On(Box<dyn QuotaBackend>),
}

/// `server.quota.disk_quota_backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Whatever the depot supports; none is an error only for limit_disk.
    Auto,
    /// This one, or the daemon does not start.
    Required(Kind),
}

impl Disks {
    /// The backend the depot's filesystem supports. `Required` and not available: an error
    /// (the daemon does not start).
    pub fn detect(depot: &Path, enabled: bool, choice: Choice) -> Result<Disks, String> {
        if !enabled {
            return Ok(Disks::Disabled);
        }
        let found = detect(depot);
        match (found, choice) {
            (Ok(b), Choice::Auto) => Ok(Disks::On(b)),
            (Ok(b), Choice::Required(k)) if b.kind() == k => Ok(Disks::On(b)),
            (Ok(b), Choice::Required(k)) => Err(format!(
                "the depot {} supports the {} disk quota backend, not {}",
                depot.display(),
                b.kind().as_str(),
                k.as_str()
            )),
            (Err(why), Choice::Auto) => Ok(Disks::Unsupported(why)),
            (Err(why), Choice::Required(_)) => Err(why),
        }
    }

    pub fn backend(&self) -> Option<&dyn QuotaBackend> {
        match self {
            Disks::On(b) => Some(b.as_ref()),
            _ => None,
        }
    }

    /// The backend, if it is `kind` (the one a container's layer was made with).
    pub fn backend_for(&self, kind: Option<Kind>) -> Option<&dyn QuotaBackend> {
        self.backend().filter(|b| Some(b.kind()) == kind)
    }

    pub fn describe(&self) -> String {
        match self {
            Disks::Disabled => "disk quotas disabled".into(),
            Disks::Unsupported(why) => format!("no disk quota backend: {why}"),
            Disks::On(b) => format!("disk quota backend {}", b.kind().as_str()),
        }
    }
}

/// The mount holding `path` (the last, longest mount point that is a prefix of it).
struct MountEntry {
    mount_point: PathBuf,
    fstype: String,
    source: String,
    super_options: String,
}

fn mount_of(path: &Path) -> Result<MountEntry, String> {
    let path = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
    let mut best: Option<MountEntry> = None;
    for line in info.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let Some(sep) = f.iter().position(|s| *s == "-") else {
            continue;
        };
        if f.len() < sep + 4 || f.len() < 5 {
            continue;
        }
        let mp = PathBuf::from(unescape(f[4]));
        if !path.starts_with(&mp) {
            continue;
        }
        if best
            .as_ref()
            .is_some_and(|b| b.mount_point.as_os_str().len() > mp.as_os_str().len())
        {
            continue;
        }
        best = Some(MountEntry {
            mount_point: mp,
            fstype: f[sep + 1].to_string(),
            source: unescape(f[sep + 2]),
            super_options: f[sep + 3].to_string(),
        });
    }
    best.ok_or_else(|| format!("no mount holds {}", path.display()))
}

/// mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let digits = std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("x");
            if let Ok(v) = u8::from_str_radix(digits, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn detect(depot: &Path) -> Result<Box<dyn QuotaBackend>, String> {
    let m = mount_of(depot)?;
    let on = format!(
        "the depot {} is on {} ({} at {})",
        depot.display(),
        m.fstype,
        m.source,
        m.mount_point.display()
    );
    match m.fstype.as_str() {
        "xfs" => {
            let opts: Vec<&str> = m.super_options.split(',').collect();
            if opts.contains(&"prjquota") || opts.contains(&"pquota") {
                Ok(Box::new(Xfs {
                    device: PathBuf::from(&m.source),
                }))
            } else if opts.contains(&"pqnoenforce") {
                Err(format!("{on}, mounted with pqnoenforce: project quotas are counted, not enforced (mount it with prjquota)"))
            } else {
                Err(format!(
                    "{on}, mounted without project quotas (mount it with prjquota)"
                ))
            }
        }
        "btrfs" => {
            let fd = open_dir(depot).map_err(|e| e.to_string())?;
            btrfs::quota_enable(&fd).map_err(|e| {
                format!("{on}: cannot turn btrfs quotas on (BTRFS_IOC_QUOTA_CTL): {e}")
            })?;
            // What an earlier daemon could not remove yet.
            retry_stale_qgroups(depot, None);
            Ok(Box::new(Btrfs))
        }
        _ => Err(format!(
            "{on}, which has no disk quota backend: limit_disk needs an XFS depot mounted with prjquota, or a btrfs depot"
        )),
    }
}

fn open_dir(p: &Path) -> Result<OwnedFd, Error> {
    open(
        p,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::Sys(format!("open {}: {e}", p.display())))
}

fn mkdir(p: &Path) -> Result<(), Error> {
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(p)
        .map_err(|e| Error::io("mkdir", p, e))
}

// ---------------------------------------------------------------------------------------
// XFS project quotas

/// XFS project quotas on the depot's block device.
pub struct Xfs {
    device: PathBuf,
}

mod xfs {
    /// `struct fsxattr` (linux/fs.h).
    #[repr(C)]
    #[derive(Default)]
    pub struct FsXattr {
        pub xflags: u32,
        pub extsize: u32,
        pub nextents: u32,
        pub projid: u32,
        pub cowextsize: u32,
        pub pad: [u8; 8],
    }
    pub const FS_XFLAG_PROJINHERIT: u32 = 0x0000_0200;
    nix::ioctl_read!(fs_getxattr, b'X', 31, FsXattr);
    nix::ioctl_write_ptr!(fs_setxattr, b'X', 32, FsXattr);

    /// `struct fs_disk_quota` (linux/dqblk_xfs.h); blocks are 512-byte basic blocks.
    #[repr(C)]
    #[derive(Default)]
    pub struct FsDiskQuota {
        pub version: i8,
        pub flags: i8,
        pub fieldmask: u16,
        pub id: u32,
        pub blk_hardlimit: u64,
        pub blk_softlimit: u64,
        pub ino_hardlimit: u64,
        pub ino_softlimit: u64,
        pub bcount: u64,
        pub icount: u64,
        pub itimer: i32,
        pub btimer: i32,
        pub iwarns: u16,
        pub bwarns: u16,
        pub itimer_hi: i8,
        pub btimer_hi: i8,
        pub rtbtimer_hi: i8,
        pub padding2: i8,
        pub rtb_hardlimit: u64,
        pub rtb_softlimit: u64,
        pub rtbcount: u64,
        pub rtbtimer: i32,
        pub rtbwarns: u16,
        pub padding3: i16,
        pub padding4: [u8; 8],
    }
    pub const FS_DQUOT_VERSION: i8 = 1;
    pub const FS_PROJ_QUOTA: i8 = 2;
    pub const FS_DQ_BSOFT: u16 = 1 << 0;
    pub const FS_DQ_BHARD: u16 = 1 << 1;
    pub const FS_DQ_ISOFT: u16 = 1 << 2;
    pub const FS_DQ_IHARD: u16 = 1 << 3;
    const XQM_CMD: i32 = (b'X' as i32) << 8;
    pub const Q_XGETQUOTA: i32 = XQM_CMD + 3;
    pub const Q_XSETQLIM: i32 = XQM_CMD + 4;
    pub const PRJQUOTA: i32 = 2;
    /// QCMD(cmd, type).
    pub fn qcmd(cmd: i32) -> i32 {
        (cmd << 8) | PRJQUOTA
    }
    /// Bytes per basic block.
    pub const BB: u64 = 512;
}

impl Xfs {
    fn quotactl(&self, cmd: i32, id: u32, q: &mut xfs::FsDiskQuota) -> Result<(), nix::Error> {
        let dev =
            CString::new(self.device.as_os_str().as_bytes()).map_err(|_| nix::Error::EINVAL)?;
        // SAFETY: dev is a NUL-terminated path; q is a valid fs_disk_quota for the kernel to
        // read (Q_XSETQLIM) or fill (Q_XGETQUOTA).
        let r = unsafe {
            libc::quotactl(
                xfs::qcmd(cmd),
                dev.as_ptr(),
                id as libc::c_int,
                q as *mut xfs::FsDiskQuota as *mut libc::c_char,
            )
        };
        if r < 0 {
            Err(nix::Error::last())
        } else {
            Ok(())
        }
    }
}

impl QuotaBackend for Xfs {
    fn kind(&self) -> Kind {
        Kind::Xfs
    }

    fn prepare(&self, layer: &Path, uid: u32) -> Result<(), Error> {
        mkdir(layer)?;
        let fd = open_dir(layer)?;
        let mut attr = xfs::FsXattr::default();
        // SAFETY: fd is an open dir; attr is a valid fsxattr.
        unsafe { xfs::fs_getxattr(fd.as_raw_fd(), &mut attr) }
            .map_err(|e| Error::Sys(format!("FS_IOC_FSGETXATTR {}: {e}", layer.display())))?;
        attr.projid = uid;
        attr.xflags |= xfs::FS_XFLAG_PROJINHERIT;
        // SAFETY: as above.
        unsafe { xfs::fs_setxattr(fd.as_raw_fd(), &attr) }
            .map_err(|e| Error::Sys(format!("FS_IOC_FSSETXATTR {}: {e}", layer.display())))?;
        // A previous container with this uid left no limit (destroy clears it), but make sure:
        // a new container starts unlimited, as the original's create did (setquota 0 0 0 0).
        self.set(layer, uid, &Limits::default())
    }

    fn check(&self, _limits: &Limits) -> Result<(), Error> {
        Ok(())
    }

    fn set(&self, _layer: &Path, uid: u32, l: &Limits) -> Result<(), Error> {
        let mut q = xfs::FsDiskQuota {
            version: xfs::FS_DQUOT_VERSION,
            flags: xfs::FS_PROJ_QUOTA,
            fieldmask: xfs::FS_DQ_BSOFT | xfs::FS_DQ_BHARD | xfs::FS_DQ_ISOFT | xfs::FS_DQ_IHARD,
            id: uid,
            blk_softlimit: l.block_soft.saturating_mul(BLOCK / xfs::BB),
            blk_hardlimit: l.block_hard.saturating_mul(BLOCK / xfs::BB),
            ino_softlimit: l.inode_soft,
            ino_hardlimit: l.inode_hard,
            ..Default::default()
        };
        self.quotactl(xfs::Q_XSETQLIM, uid, &mut q).map_err(|e| {
            Error::Sys(format!(
                "quotactl(Q_XSETQLIM, PRJQUOTA, {}, project {uid}): {e}",
                self.device.display()
            ))
        })
    }

    fn get(&self, _layer: &Path, uid: u32) -> Result<(Limits, Usage), Error> {
        let mut q = xfs::FsDiskQuota::default();
        match self.quotactl(xfs::Q_XGETQUOTA, uid, &mut q) {
            Ok(()) => {}
            // No dquot: nothing used, nothing limited.
            Err(nix::Error::ENOENT) => {
                return Ok((
                    Limits::default(),
                    Usage {
                        bytes: 0,
                        inodes: Some(0),
                    },
                ))
            }
            Err(e) => {
                return Err(Error::Sys(format!(
                    "quotactl(Q_XGETQUOTA, PRJQUOTA, {}, project {uid}): {e}",
                    self.device.display()
                )))
            }
        }
        let per = BLOCK / xfs::BB;
        Ok((
            Limits {
                block_soft: q.blk_softlimit.div_ceil(per),
                block_hard: q.blk_hardlimit.div_ceil(per),
                inode_soft: q.ino_softlimit,
                inode_hard: q.ino_hardlimit,
            },
            Usage {
                bytes: q.bcount * xfs::BB,
                inodes: Some(q.icount),
            },
        ))
    }

    fn remove(&self, layer: &Path, uid: u32) -> Result<(), Error> {
        match std::fs::remove_dir_all(layer) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", layer, e)),
        }
        // Nothing left with the project id and no limit: the kernel forgets the dquot.
        self.set(layer, uid, &Limits::default())
    }
}

/// The XFS project quota of `project` on `device`: (limits, usage), `None` when the kernel
/// has no dquot for it (nothing used, nothing limited). For tests.
pub fn xfs_project(device: &Path, project: u32) -> Result<Option<(Limits, Usage)>, Error> {
    let x = Xfs {
        device: device.to_path_buf(),
    };
    let mut q = xfs::FsDiskQuota::default();
    match x.quotactl(xfs::Q_XGETQUOTA, project, &mut q) {
        Ok(()) => x.get(Path::new("/"), project).map(Some),
        Err(nix::Error::ENOENT) => Ok(None),
        Err(e) => Err(Error::Sys(format!("Q_XGETQUOTA: {e}"))),
    }
}

// ---------------------------------------------------------------------------------------
// btrfs qgroups

/// btrfs qgroups: the layer is a subvolume.
pub struct Btrfs;

mod btrfs {
    use std::os::fd::{AsRawFd, OwnedFd};

    /// `struct btrfs_ioctl_vol_args`.
    #[repr(C)]
    pub struct VolArgs {
        pub fd: i64,
        pub name: [u8; 4088],
    }
    /// `struct btrfs_ioctl_ino_lookup_args`.
    #[repr(C)]
    pub struct InoLookupArgs {
        pub treeid: u64,
        pub objectid: u64,
        pub name: [u8; 4080],
    }
    /// `struct btrfs_ioctl_quota_ctl_args`.
    #[repr(C)]
    pub struct QuotaCtlArgs {
        pub cmd: u64,
        pub status: u64,
    }
    /// `struct btrfs_ioctl_qgroup_create_args`.
    #[repr(C)]
    pub struct QgroupCreateArgs {
        pub create: u64,
        pub qgroupid: u64,
    }
    /// `struct btrfs_ioctl_qgroup_limit_args` (with its `struct btrfs_qgroup_limit`).
    #[repr(C)]
    pub struct QgroupLimitArgs {
        pub qgroupid: u64,
        pub flags: u64,
        pub max_rfer: u64,
        pub max_excl: u64,
        pub rsv_rfer: u64,
        pub rsv_excl: u64,
    }
    const MAGIC: u8 = 0x94;
    nix::ioctl_write_ptr!(subvol_create, MAGIC, 14, VolArgs);
    nix::ioctl_write_ptr!(snap_destroy, MAGIC, 15, VolArgs);
    nix::ioctl_readwrite!(ino_lookup, MAGIC, 18, InoLookupArgs);
    nix::ioctl_readwrite!(quota_ctl, MAGIC, 40, QuotaCtlArgs);
    nix::ioctl_write_ptr!(qgroup_create, MAGIC, 42, QgroupCreateArgs);
    // BTRFS_IOC_SYNC: commits the transaction, which wakes the cleaner.
    nix::ioctl_none!(sync, MAGIC, 8);
    // The kernel declares it _IOR though it only reads the argument.
    nix::ioctl_read!(qgroup_limit, MAGIC, 43, QgroupLimitArgs);
    pub const QUOTA_CTL_ENABLE: u64 = 1;
    pub const LIMIT_MAX_RFER: u64 = 1 << 0;
    /// btrfs-progs' "none": clears a limit.
    pub const CLEAR: u64 = u64::MAX;
    /// The inode number of every subvolume's root dir.
    pub const FIRST_FREE_OBJECTID: u64 = 256;
    pub const SUPER_MAGIC: i64 = 0x9123_683e;

    pub fn vol_args(name: &[u8]) -> Result<Box<VolArgs>, nix::Error> {
        let mut a = Box::new(VolArgs {
            fd: 0,
            name: [0; 4088],
        });
        if name.len() >= a.name.len() {
            return Err(nix::Error::ENAMETOOLONG);
        }
        a.name[..name.len()].copy_from_slice(name);
        Ok(a)
    }

    pub fn quota_enable(fd: &OwnedFd) -> Result<(), nix::Error> {
        let mut a = QuotaCtlArgs {
            cmd: QUOTA_CTL_ENABLE,
            status: 0,
        };
        // SAFETY: fd is an open dir on btrfs; a is a valid argument.
        unsafe { quota_ctl(fd.as_raw_fd(), &mut a) }.map(drop)
    }

    /// The id of the subvolume `fd` is in.
    pub fn subvol_id(fd: &OwnedFd) -> Result<u64, nix::Error> {
        let mut a = Box::new(InoLookupArgs {
            treeid: 0,
            objectid: FIRST_FREE_OBJECTID,
            name: [0; 4080],
        });
        // SAFETY: as above.
        unsafe { ino_lookup(fd.as_raw_fd(), &mut *a) }?;
        Ok(a.treeid)
    }
}

impl Btrfs {
    /// The sysfs dir of a qgroup: /sys/fs/btrfs/<fsid>/qgroups/0_<subvolume id>.
    fn qgroup_sysfs(fd: &OwnedFd, subvol: u64) -> Result<PathBuf, Error> {
        let fsid = fs_uuid(fd)?;
        Ok(PathBuf::from(format!(
            "/sys/fs/btrfs/{fsid}/qgroups/0_{subvol}"
        )))
    }

    fn layer_fd(layer: &Path) -> Result<(OwnedFd, u64), Error> {
        let fd = open_dir(layer)?;
        let id = btrfs::subvol_id(&fd)
            .map_err(|e| Error::Sys(format!("BTRFS_IOC_INO_LOOKUP {}: {e}", layer.display())))?;
        Ok((fd, id))
    }
}

/// The filesystem's uuid (`BTRFS_IOC_FS_INFO`'s fsid), as sysfs names it.
fn fs_uuid(fd: &OwnedFd) -> Result<String, Error> {
    /// `struct btrfs_ioctl_fs_info_args`: 1 KiB; the fsid is at offset 16.
    #[repr(C)]
    struct FsInfoArgs {
        max_id: u64,
        num_devices: u64,
        fsid: [u8; 16],
        rest: [u8; 1024 - 32],
    }
    nix::ioctl_read!(fs_info, 0x94, 31, FsInfoArgs);
    let mut a = Box::new(FsInfoArgs {
        max_id: 0,
        num_devices: 0,
        fsid: [0; 16],
        rest: [0; 1024 - 32],
    });
    // SAFETY: fd is an open dir on btrfs; a is a valid, zeroed argument.
    unsafe { fs_info(fd.as_raw_fd(), &mut *a) }
        .map_err(|e| Error::Sys(format!("BTRFS_IOC_FS_INFO: {e}")))?;
    let h: String = a.fsid.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

fn read_u64(p: &Path) -> Result<u64, Error> {
    let s = std::fs::read_to_string(p).map_err(|e| Error::io("read", p, e))?;
    s.trim()
        .parse()
        .map_err(|e| Error::Invalid(format!("{}: {e}", p.display())))
}

impl QuotaBackend for Btrfs {
    fn kind(&self) -> Kind {
        Kind::Btrfs
    }

    fn prepare(&self, layer: &Path, _uid: u32) -> Result<(), Error> {
        let (parent, name) = (
            layer.parent().unwrap_or(Path::new("/")),
            layer.file_name().unwrap_or_default(),
        );
        let pfd = open_dir(parent)?;
        let args = btrfs::vol_args(name.as_bytes())
            .map_err(|e| Error::Sys(format!("{}: {e}", layer.display())))?;
        // SAFETY: pfd is an open dir; args is a valid vol_args with a NUL-terminated name.
        unsafe { btrfs::subvol_create(pfd.as_raw_fd(), &*args) }
            .map_err(|e| Error::Sys(format!("BTRFS_IOC_SUBVOL_CREATE {}: {e}", layer.display())))?;
        Ok(())
    }

    fn check(&self, l: &Limits) -> Result<(), Error> {
        if l.inode_soft != 0 || l.inode_hard != 0 {
            return Err(Error::Request(
                "the btrfs disk quota backend cannot limit inodes (btrfs qgroups count bytes only): inode limits need an XFS depot mounted with prjquota".into(),
            ));
        }
        if l.block_soft != 0 {
            return Err(Error::Request(
                "the btrfs disk quota backend has no soft limits (btrfs qgroups have only hard ones): set byte_limit or block_limit".into(),
            ));
        }
        Ok(())
    }

    fn set(&self, layer: &Path, _uid: u32, l: &Limits) -> Result<(), Error> {
        self.check(l)?;
        // The ioctl starts a transaction charged to the fd's subvolume: on the layer itself,
        // a layer over its (new) limit would refuse it with EDQUOT. So from the parent's
        // subvolume, naming the layer's qgroup.
        let (_, id) = Self::layer_fd(layer)?;
        let fd = open_dir(layer.parent().unwrap_or(Path::new("/")))?;
        let mut a = btrfs::QgroupLimitArgs {
            qgroupid: id,
            flags: btrfs::LIMIT_MAX_RFER,
            max_rfer: if l.block_hard == 0 {
                btrfs::CLEAR
            } else {
                l.block_hard.saturating_mul(BLOCK)
            },
            max_excl: 0,
            rsv_rfer: 0,
            rsv_excl: 0,
        };
        // SAFETY: fd is an open dir on the filesystem; a is a valid argument.
        unsafe { btrfs::qgroup_limit(fd.as_raw_fd(), &mut a) }
            .map_err(|e| Error::Sys(format!("BTRFS_IOC_QGROUP_LIMIT {}: {e}", layer.display())))?;
        Ok(())
    }

    fn get(&self, layer: &Path, _uid: u32) -> Result<(Limits, Usage), Error> {
        let (fd, id) = Self::layer_fd(layer)?;
        let q = Self::qgroup_sysfs(&fd, id)?;
        let flags = read_u64(&q.join("limit_flags"))?;
        let max = if flags & btrfs::LIMIT_MAX_RFER != 0 {
            read_u64(&q.join("max_referenced"))?
        } else {
            0
        };
        Ok((
            Limits {
                block_hard: max.div_ceil(BLOCK),
                ..Default::default()
            },
            Usage {
                bytes: read_u64(&q.join("referenced"))?,
                inodes: None,
            },
        ))
    }

    fn remove(&self, layer: &Path, _uid: u32) -> Result<(), Error> {
        remove_subvolume(layer)
    }
}

/// Deletes `layer` if it is a btrfs subvolume, then its qgroup (the kernel refuses while the
/// cleaner has not dropped the subvolume yet, and then removes the qgroup itself: 6.18 does).
pub fn remove_subvolume(layer: &Path) -> Result<(), Error> {
    let fd = match open_dir(layer) {
        Ok(fd) => fd,
        Err(_) if !layer.exists() => return Ok(()),
        Err(e) => return Err(e),
    };
    let st = nix::sys::statfs::fstatfs(&fd).map_err(|e| Error::Sys(format!("statfs: {e}")))?;
    let ino = nix::sys::stat::fstat(&fd)
        .map_err(|e| Error::Sys(format!("stat: {e}")))?
        .st_ino;
    if st.filesystem_type().0 as i64 != btrfs::SUPER_MAGIC || ino != btrfs::FIRST_FREE_OBJECTID {
        return Ok(()); // a plain dir: the container dir's removal takes it
    }
    let id = btrfs::subvol_id(&fd)
        .map_err(|e| Error::Sys(format!("BTRFS_IOC_INO_LOOKUP {}: {e}", layer.display())))?;
    drop(fd);
    let (parent, name) = (
        layer.parent().unwrap_or(Path::new("/")),
        layer.file_name().unwrap_or_default(),
    );
    let pfd = open_dir(parent)?;
    let args = btrfs::vol_args(name.as_bytes())
        .map_err(|e| Error::Sys(format!("{}: {e}", layer.display())))?;
    // SAFETY: pfd is an open dir; args names the subvolume in it.
    match unsafe { btrfs::snap_destroy(pfd.as_raw_fd(), &*args) } {
        Ok(_) | Err(nix::Error::ENOENT) => {}
        Err(e) => {
            return Err(Error::Sys(format!(
                "BTRFS_IOC_SNAP_DESTROY {}: {e}",
                layer.display()
            )))
        }
    }
    let a = btrfs::QgroupCreateArgs {
        create: 0,
        qgroupid: id,
    };
    // SAFETY: pfd is on the same filesystem; a is a valid argument.
    match unsafe { btrfs::qgroup_create(pfd.as_raw_fd(), &a) } {
        Ok(_) | Err(nix::Error::ENOENT) | Err(nix::Error::ENOTCONN) => Ok(()),
        Err(nix::Error::EBUSY) => {
            // The cleaner has not dropped the subvolume yet; kernels before 6.7 then leave
            // the qgroup for good (6.18 removes it by itself, and then ENOENT).
            match layer.parent().and_then(Path::parent) {
                Some(depot) => retry_stale_qgroups(depot, Some(id)),
                None => tracing::warn!("qgroup 0/{id} of {} is left", layer.display()),
            }
            Ok(())
        }
        Err(e) => Err(Error::Sys(format!(
            "BTRFS_IOC_QGROUP_CREATE (remove 0/{id}): {e}"
        ))),
    }
}

/// The qgroups of destroyed layers the kernel would not remove yet (one id a line), in the
/// depot, so that the next daemon finishes what this one could not.
const STALE_QGROUPS: &str = ".btrfs-stale-qgroups";
/// Held while the stale list is read or written; true while a thread retries it.
static STALE: std::sync::Mutex<bool> = std::sync::Mutex::new(false);

/// Records `id` (if any) as a stale qgroup of `depot`'s filesystem and makes sure one thread
/// retries the list: every 200 ms a commit (which wakes the cleaner) and a removal of each,
/// until none is left, or for 5 minutes (a daemon start tries again). Only ids recorded here
/// are ever removed: other qgroups of the filesystem are not the daemon's.
fn retry_stale_qgroups(depot: &Path, id: Option<u64>) {
    let file = depot.join(STALE_QGROUPS);
    let mut running = STALE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(id) = id {
        use std::io::Write;
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file)
            .and_then(|mut f| writeln!(f, "{id}"));
        if let Err(e) = appended {
            tracing::warn!(
                "qgroup 0/{id} is left: cannot record it in {}: {e}",
                file.display()
            );
        }
    }
    if *running || !file.exists() {
        return;
    }
    *running = true;
    drop(running);
    let depot = depot.to_path_buf();
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        loop {
            std::thread::sleep(std::time::Duration::from_millis(200));
            let mut running = STALE.lock().unwrap_or_else(|e| e.into_inner());
            let left = remove_stale_qgroups(&depot, &file);
            if left == 0 || std::time::Instant::now() > deadline {
                if left > 0 {
                    tracing::warn!("{left} qgroup(s) in {} still wait for the btrfs cleaner; the next daemon start retries", file.display());
                }
                *running = false;
                return;
            }
        }
    });
}

/// One round over the stale list: what is left (the file is rewritten, or removed when
/// empty).
fn remove_stale_qgroups(depot: &Path, file: &Path) -> usize {
    let ids: Vec<u64> = std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let Ok(fd) = open_dir(depot) else {
        return 0;
    };
    // SAFETY: fd is an open dir on the btrfs; the ioctl takes no argument.
    let _ = unsafe { btrfs::sync(fd.as_raw_fd()) };
    let left: Vec<u64> = ids
        .into_iter()
        .filter(|&id| {
            let a = btrfs::QgroupCreateArgs {
                create: 0,
                qgroupid: id,
            };
            // SAFETY: as in remove_subvolume.
            match unsafe { btrfs::qgroup_create(fd.as_raw_fd(), &a) } {
                Ok(_) | Err(nix::Error::ENOENT) | Err(nix::Error::ENOTCONN) => false,
                Err(nix::Error::EBUSY) => true,
                Err(e) => {
                    tracing::warn!("cannot remove qgroup 0/{id}: {e}");
                    false
                }
            }
        })
        .collect();
    let text: String = left.iter().map(|id| format!("{id}\n")).collect();
    let written = if left.is_empty() {
        std::fs::remove_file(file).or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Ok(()),
            _ => Err(e),
        })
    } else {
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, file))
    };
    if let Err(e) = written {
        tracing::warn!("{}: {e}", file.display());
    }
    left.len()
}

/// The level-0 qgroups of the btrfs filesystem holding `path` (subvolume ids), from sysfs.
/// For tests: what destroy must leave behind.
pub fn btrfs_qgroups(path: &Path) -> Result<Vec<u64>, Error> {
    let fd = open_dir(path)?;
    let dir = PathBuf::from(format!("/sys/fs/btrfs/{}/qgroups", fs_uuid(&fd)?));
    let mut ids = Vec::new();
    for e in std::fs::read_dir(&dir).map_err(|e| Error::io("read", &dir, e))? {
        let name = e.map_err(|e| Error::io("read", &dir, e))?.file_name();
        if let Some(id) = name.to_string_lossy().strip_prefix("0_") {
            if let Ok(id) = id.parse() {
                ids.push(id);
            }
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// SPEC 3.8's precedence: from the current limits, the byte fields (rounded up to blocks) in
/// the order byte_limit, byte, byte_soft, byte_hard, then the block fields (they win), then
/// the inode fields.
pub fn apply_request(cur: Limits, r: &warden_protocol::LimitDiskRequest) -> Limits {
    let blocks = |b: u64| b.div_ceil(BLOCK);
    let mut l = cur;
    if let Some(b) = r.byte_limit {
        l.block_hard = blocks(b);
    }
    if let Some(b) = r.byte {
        l.block_hard = blocks(b);
    }
    if let Some(b) = r.byte_soft {
        l.block_soft = blocks(b);
    }
    if let Some(b) = r.byte_hard {
        l.block_hard = blocks(b);
    }
    for (v, hard) in [
        (r.block_limit, true),
        (r.block, true),
        (r.block_soft, false),
        (r.block_hard, true),
    ] {
        if let Some(v) = v {
            if hard {
                l.block_hard = v;
            } else {
                l.block_soft = v;
            }
        }
    }
    for (v, hard) in [
        (r.inode_limit, true),
        (r.inode, true),
        (r.inode_soft, false),
        (r.inode_hard, true),
    ] {
        if let Some(v) = v {
            if hard {
                l.inode_hard = v;
            } else {
                l.inode_soft = v;
            }
        }
    }
    l
}

/// The reply: every field read back (bytes = blocks × 1024; the aliases are the hard limit).
pub fn response(l: &Limits) -> warden_protocol::LimitDiskResponse {
    let bytes = |b: u64| b.saturating_mul(BLOCK);
    warden_protocol::LimitDiskResponse {
        block_limit: Some(l.block_hard),
        block: Some(l.block_hard),
        block_soft: Some(l.block_soft),
        block_hard: Some(l.block_hard),
        inode_limit: Some(l.inode_hard),
        inode: Some(l.inode_hard),
        inode_soft: Some(l.inode_soft),
        inode_hard: Some(l.inode_hard),
        byte_limit: Some(bytes(l.block_hard)),
        byte: Some(bytes(l.block_hard)),
        byte_soft: Some(bytes(l.block_soft)),
        byte_hard: Some(bytes(l.block_hard)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_protocol::LimitDiskRequest;

    #[test]
    fn precedence_is_the_originals() {
        let cur = Limits {
            block_soft: 1,
            block_hard: 2,
            inode_soft: 3,
            inode_hard: 4,
        };
        // Nothing asked: the current limits.
        assert_eq!(apply_request(cur, &LimitDiskRequest::default()), cur);
        // Bytes round up to 1 KiB blocks; byte_hard beats byte beats byte_limit.
        let r = LimitDiskRequest {
            byte_limit: Some(1),
            byte: Some(1025),
            byte_soft: Some(2048),
            ..Default::default()
        };
        let l = apply_request(cur, &r);
        assert_eq!((l.block_soft, l.block_hard), (2, 2));
        let r = LimitDiskRequest {
            byte_limit: Some(1),
            byte_hard: Some(10 * 1024 + 1),
            ..Default::default()
        };
        assert_eq!(apply_request(cur, &r).block_hard, 11);
        // Blocks win over bytes; block_hard over block over block_limit.
        let r = LimitDiskRequest {
            byte_limit: Some(1 << 20),
            block_limit: Some(7),
            block: Some(8),
            block_soft: Some(5),
            ..Default::default()
        };
        let l = apply_request(cur, &r);
        assert_eq!((l.block_soft, l.block_hard), (5, 8));
        let r = LimitDiskRequest {
            block: Some(8),
            block_hard: Some(9),
            ..Default::default()
        };
        assert_eq!(apply_request(cur, &r).block_hard, 9);
        // Inodes.
        let r = LimitDiskRequest {
            inode_limit: Some(10),
            inode: Some(11),
            inode_soft: Some(6),
            ..Default::default()
        };
        let l = apply_request(cur, &r);
        assert_eq!((l.inode_soft, l.inode_hard, l.block_hard), (6, 11, 2));
        let r = LimitDiskRequest {
            inode: Some(11),
            inode_hard: Some(12),
            ..Default::default()
        };
        assert_eq!(apply_request(cur, &r).inode_hard, 12);
    }

    #[test]
    fn the_reply_has_every_field() {
        let r = response(&Limits {
            block_soft: 1,
            block_hard: 2,
            inode_soft: 3,
            inode_hard: 4,
        });
        assert_eq!(r.byte_limit, Some(2048));
        assert_eq!(r.byte_soft, Some(1024));
        assert_eq!(
            (r.block_limit, r.block, r.block_hard),
            (Some(2), Some(2), Some(2))
        );
        assert_eq!(
            (r.inode_limit, r.inode, r.inode_hard),
            (Some(4), Some(4), Some(4))
        );
        assert_eq!(r.inode_soft, Some(3));
    }

    #[test]
    fn a_depot_without_quotas_names_what_it_lacks() {
        // /proc is on proc: no backend.
        match Disks::detect(Path::new("/proc"), true, Choice::Auto).unwrap() {
            Disks::Unsupported(why) => {
                assert!(why.contains("on proc"), "{why}");
                assert!(why.contains("prjquota") && why.contains("btrfs"), "{why}");
            }
            _ => panic!("a backend on /proc"),
        }
        let e = Disks::detect(Path::new("/proc"), true, Choice::Required(Kind::Btrfs))
            .err()
            .unwrap();
        assert!(e.contains("on proc"), "{e}");
        assert!(matches!(
            Disks::detect(Path::new("/proc"), false, Choice::Auto),
            Ok(Disks::Disabled)
        ));
    }
}
