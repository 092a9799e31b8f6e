//! Persistent network namespaces kept in a file, like `ip netns add` but at a path of ours.
//!
//! A namespace lives as long as something refers to it. [`create`] makes one on a dedicated
//! thread (`unshare(CLONE_NEWNET)` changes only the calling thread, which then exits) and
//! bind-mounts the thread's `/proc/thread-self/ns/net` onto the file, which keeps it alive with
//! no process in it. The OCI runtime later joins it by path (`linux.namespaces: [{type:
//! network, path}]`). [`destroy`] unmounts the file and removes it; the kernel frees the
//! namespace (and the interfaces in it) once the last reference is gone.
//!
//! Never on a pooled thread (tokio's `spawn_blocking`): a thread that changed namespace must
//! not run anything else afterwards.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

/// What [`create`] hands back: references to the new namespace, valid after the creating
/// thread has gone.
#[derive(Debug)]
pub struct NewNetns {
    /// The namespace itself (for `IFLA_NET_NS_FD`: moving a link into it).
    pub ns: OwnedFd,
    /// A `NETLINK_ROUTE` socket opened inside it (a netlink socket belongs to the namespace of
    /// the thread that created it, whichever thread uses it later).
    pub netlink: rtnetlink::sys::Socket,
}

use super::{step as ctx, NetError};

/// Who may open ICMP echo sockets (`socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)`) in a new
/// namespace: every group, so that an unprivileged job can `ping` without a capability or a
/// setuid binary (the original's vcap could; Docker sets the same since 20.10). The kernel's
/// default, "1 0", lets no one.
const PING_GROUP_RANGE: &str = "/proc/sys/net/ipv4/ping_group_range";
const PING_GROUPS: &str = "0 2147483647";

fn errno(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// Creates a new network namespace kept alive by a bind mount on `path`, which must not exist
/// (its parent must). On any failure nothing is left behind (and an existing file is never
/// touched). The work (a thread spawn and a few syscalls, well under a millisecond) runs on a
/// dedicated thread; the caller's task just awaits it.
pub async fn create(path: &Path) -> Result<NewNetns, NetError> {
    let path = path.to_owned();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("warden-netns".into())
        .spawn(move || {
            // If the caller gave up waiting (its future was dropped), undo.
            if let Err(Ok(_)) = tx.send(create_on_this_thread(&path)) {
                let _ = destroy(&path);
            }
        })
        .map_err(ctx("spawn the netns thread"))?;
    rx.await
        .map_err(|_| io::Error::other("the thread panicked"))
        .map_err(ctx("create a network namespace"))?
}

/// The body of [`create`]: this thread's network namespace is changed for good.
fn create_on_this_thread(path: &Path) -> Result<NewNetns, NetError> {
    // Like `ip netns add`: an empty file of mode 0, refused if it exists.
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o000)
        .open(path)
        .map_err(ctx(format!(
            "create the network namespace file {}",
            path.display()
        )))?;
    let undo_file = |_: &NetError| {
        let _ = std::fs::remove_file(path);
    };
    unshare(CloneFlags::CLONE_NEWNET)
        .map_err(errno)
        .map_err(ctx("unshare(CLONE_NEWNET)"))
        .inspect_err(undo_file)?;
    mount(
        Some("/proc/thread-self/ns/net"),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(errno)
    .map_err(ctx(format!("bind-mount the netns on {}", path.display())))
    .inspect_err(undo_file)?;
    let rest = || -> Result<NewNetns, NetError> {
        // /proc/sys/net is the opening thread's namespace: this one's now.
        write_sysctl(PING_GROUP_RANGE, PING_GROUPS)
            .map_err(ctx(format!("write {PING_GROUP_RANGE} in the netns")))?;
        let ns = File::open("/proc/thread-self/ns/net")
            .map_err(ctx("open /proc/thread-self/ns/net"))?
            .into();
        let netlink = rtnetlink::sys::Socket::new(rtnetlink::sys::protocols::NETLINK_ROUTE)
            .map_err(ctx("open a netlink socket in the netns"))?;
        Ok(NewNetns { ns, netlink })
    };
    rest().inspect_err(|_| {
        let _ = destroy(path);
    })
}

/// Writes the sysctl file `path` (under /proc/sys) of this thread's network namespace
/// through a procfs of its own (a new superblock since Linux 5.8), not the host's /proc: the
/// host's keeps one dentry per network namespace for each sysctl name ever opened there,
/// all in one hash chain that every lookup of the name compares against (`proc_sys_compare`),
/// so with 1,000 live containers this write alone cost milliseconds. Where the new mount API
/// is missing (before 5.2), the host's /proc.
fn write_sysctl(path: &str, value: &str) -> io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let rel = path.strip_prefix("/proc/").expect("a path under /proc");
    // SAFETY: fsopen with a constant NUL-terminated name; the fd is checked and owned.
    let fs = unsafe { libc::syscall(libc::SYS_fsopen, c"proc".as_ptr(), FSOPEN_CLOEXEC) };
    if fs < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOSYS) {
            return std::fs::write(path, value);
        }
        return Err(e);
    }
    // SAFETY: as above.
    let fs = unsafe { OwnedFd::from_raw_fd(fs as i32) };
    // SAFETY: fsconfig(CMD_CREATE) takes no key or value; fsmount returns a new fd.
    let created = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    if created < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    let mnt = unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, 0) };
    if mnt < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above; the detached mount (and its superblock) goes with the fd.
    let mnt = unsafe { OwnedFd::from_raw_fd(mnt as i32) };
    let file = nix::fcntl::openat(
        &mnt,
        rel,
        nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(errno)?;
    std::io::Write::write_all(&mut File::from(file), value.as_bytes())
}

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;

/// Unmounts and removes a namespace file made by [`create`]. A file that is not there, or no
/// longer mounted, is fine: this can be run any number of times.
pub fn destroy(path: &Path) -> Result<(), NetError> {
    match umount2(path, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point (already unmounted); ENOENT: no such file.
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(ctx(format!("unmount {}", path.display()))(errno(e))),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ctx(format!("remove {}", path.display()))(e)),
    }
}

/// Runs `f` on a fresh thread that entered the network namespace of `path`, and returns what
/// it returns. Sockets it opens stay in that namespace after it returns. Blocking: from async
/// code, keep `f` short or wrap the call in `spawn_blocking` (the pooled thread itself never
/// changes namespace).
pub fn run_in<R, F>(path: &Path, f: F) -> Result<R, NetError>
where
    R: Send,
    F: FnOnce() -> R + Send,
{
    let file = File::open(path).map_err(ctx(format!("open {}", path.display())))?;
    let path: PathBuf = path.to_owned();
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("warden-netns".into())
            .spawn_scoped(s, move || {
                setns(&file, CloneFlags::CLONE_NEWNET)
                    .map_err(errno)
                    .map_err(ctx(format!("enter the netns {}", path.display())))?;
                Ok(f())
            })
            .map_err(ctx("spawn the netns thread"))?
            .join()
            .map_err(|_| io::Error::other("the thread panicked"))
            .map_err(ctx("run in a network namespace"))?
    })
}

/// Opens a `NETLINK_ROUTE` socket inside the network namespace of `path`.
pub fn netlink_socket_in(path: &Path) -> Result<rtnetlink::sys::Socket, NetError> {
    run_in(path, || {
        rtnetlink::sys::Socket::new(rtnetlink::sys::protocols::NETLINK_ROUTE)
            .map_err(ctx("open a netlink socket in the netns"))
    })?
}
