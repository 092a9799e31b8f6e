//! Which namespaces a container gets: new ones become clone flags; ones given by path are
//! opened by the parent (so a bad path fails the create before anything is started) and
//! joined by the init with setns, the user namespace first so the others are joined with its
//! privileges.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType, Spec};

use crate::error::{Error, Result, SysContext};

pub fn clone_flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        // CLONE_NEWTIME (0x80) is not in nix's set; it cannot be passed to clone(2) anyway
        // (only unshare), see `Plan::unshare_time`.
        LinuxNamespaceType::Time => CloneFlags::empty(),
    }
}

/// The /proc/<pid>/ns/ file name of a namespace type.
pub fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// A namespace to join, opened.
pub struct Join {
    pub typ: LinuxNamespaceType,
    pub path: PathBuf,
    pub fd: OwnedFd,
}

/// The namespace part of a create.
pub struct Plan {
    /// Flags for clone(2): the new namespaces.
    pub clone_flags: CloneFlags,
    /// Namespaces the init joins, user first.
    pub joins: Vec<Join>,
    /// A pid namespace to join: the parent enters it before clone so the init is born there.
    pub pid_join: Option<Join>,
    pub new_user: bool,
    /// Every namespace type the container has, new or joined.
    pub types: Vec<LinuxNamespaceType>,
}

impl Plan {
    pub fn from_spec(spec: &Spec) -> Result<Plan> {
        let mut plan = Plan {
            clone_flags: CloneFlags::empty(),
            joins: Vec::new(),
            pid_join: None,
            new_user: false,
            types: Vec::new(),
        };
        let namespaces: Vec<LinuxNamespace> = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default();
        for ns in &namespaces {
            let typ = ns.typ();
            plan.types.push(typ);
            if typ == LinuxNamespaceType::Time {
                return Err(Error::Config(
                    "time namespaces are not supported by this runtime".into(),
                ));
            }
            match ns.path() {
                None => {
                    plan.clone_flags |= clone_flag(typ);
                    plan.new_user |= typ == LinuxNamespaceType::User;
                }
                Some(path) => {
                    let file = File::open(path).map_err(|e| {
                        Error::Config(format!(
                            "cannot open {} namespace {}: {e}",
                            proc_name(typ),
                            path.display()
                        ))
                    })?;
                    let join = Join {
                        typ,
                        path: path.clone(),
                        fd: file.into(),
                    };
                    if typ == LinuxNamespaceType::Pid {
                        plan.pid_join = Some(join);
                    } else if typ == LinuxNamespaceType::User {
                        plan.joins.insert(0, join);
                    } else {
                        plan.joins.push(join);
                    }
                }
            }
        }
        let joins_user = plan.joins.iter().any(|j| j.typ == LinuxNamespaceType::User);
        if joins_user && !plan.clone_flags.is_empty() {
            // clone(2) would make the new namespaces before the init joins the user namespace,
            // so they would belong to the wrong owner. runc handles this with a second fork;
            // refuse it clearly rather than get the ownership wrong.
            return Err(Error::Config(
                "joining an existing user namespace while creating other namespaces is not supported"
                    .into(),
            ));
        }
        Ok(plan)
    }

    pub fn has(&self, t: LinuxNamespaceType) -> bool {
        self.types.contains(&t)
    }

    /// Whether the parent joins `j` around the clone instead of the init: with a new user
    /// namespace the init has privileges only there, and a namespace given by path (the
    /// daemon's network namespace, say) belongs to the caller's user namespace, where only
    /// the caller's count. runc joins them before it makes the user namespace, for the same
    /// reason. A mount namespace stays with the init: the parent must keep its own.
    fn parent_joins(&self, j: &Join) -> bool {
        self.new_user && j.typ != LinuxNamespaceType::Mount
    }

    /// Parent side, right before the clone: enters the namespaces the init is to inherit
    /// (see `parent_joins`). Returns the parent's own, for [`Plan::leave_for_init`].
    pub fn enter_for_init(&self) -> Result<Vec<(CloneFlags, OwnedFd)>> {
        let mut own = Vec::new();
        for j in self.joins.iter().filter(|j| self.parent_joins(j)) {
            let path = format!("/proc/self/ns/{}", proc_name(j.typ));
            let file = File::open(&path).map_err(|e| Error::io("open", &path, e))?;
            own.push((clone_flag(j.typ), OwnedFd::from(file)));
            if let Err(e) = nix::sched::setns(j.fd.as_fd(), clone_flag(j.typ)) {
                let _ = Plan::leave_for_init(own);
                return Err(Error::sys(format!("setns {}", j.path.display()), e));
            }
        }
        Ok(own)
    }

    /// Parent side, right after the clone: back into its own namespaces.
    pub fn leave_for_init(own: Vec<(CloneFlags, OwnedFd)>) -> Result<()> {
        for (flag, fd) in own {
            nix::sched::setns(fd.as_fd(), flag).sys("setns back into the runtime's namespace")?;
        }
        Ok(())
    }

    /// Init side: join every namespace given by path (but those the parent joined for it).
    pub fn join_all(&self) -> Result<()> {
        for j in self.joins.iter().filter(|j| !self.parent_joins(j)) {
            nix::sched::setns(j.fd.as_fd(), clone_flag(j.typ))
                .sys(format!("setns {}", j.path.display()))?;
        }
        Ok(())
    }

    /// The flags the init is cloned with: all new namespaces but the cgroup one, which the
    /// init unshares after the parent has put it into its cgroup (a cgroup namespace is
    /// rooted at the cgroup its creator is in at that moment).
    pub fn clone_flags_for_init(&self) -> CloneFlags {
        self.clone_flags - CloneFlags::CLONE_NEWCGROUP
    }

    /// Init side, once in its cgroup: the new cgroup namespace, if one is wanted.
    pub fn unshare_cgroup(&self) -> Result<()> {
        if self.clone_flags.contains(CloneFlags::CLONE_NEWCGROUP) {
            nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP).sys("unshare(CLONE_NEWCGROUP)")?;
        }
        Ok(())
    }

    /// Parent side: enter the pid namespace the init must be born in.
    pub fn enter_pid_namespace(&self) -> Result<()> {
        if let Some(j) = &self.pid_join {
            nix::sched::setns(j.fd.as_fd(), CloneFlags::CLONE_NEWPID)
                .sys(format!("setns {}", j.path.display()))?;
        }
        Ok(())
    }
}

/// Init side, in a network namespace the runtime created: brings its loopback up, as runc
/// does (a new namespace's `lo` starts down, and a container with no other network still
/// expects 127.0.0.1 to work). A namespace joined by path is left to whoever made it.
///
/// SIOCGIFFLAGS/SIOCSIFFLAGS on a throwaway socket: one ioctl pair, where a netlink request
/// would need a message layer the runtime does not otherwise have.
pub fn bring_up_loopback() -> Result<()> {
    use std::os::fd::AsRawFd;

    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .sys("socket(AF_INET, SOCK_DGRAM) for lo")?;
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name and writes ifru_flags of the ifreq we own.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) };
    nix::errno::Errno::result(r).sys("ioctl(SIOCGIFFLAGS, lo)")?;
    // SAFETY: the kernel filled ifru_flags, the union member the flag ioctls use.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    if flags & libc::IFF_UP as libc::c_short != 0 {
        return Ok(());
    }
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads the name and flags of the ifreq we own.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) };
    nix::errno::Errno::result(r).sys("ioctl(SIOCSIFFLAGS, lo up)")?;
    Ok(())
}
