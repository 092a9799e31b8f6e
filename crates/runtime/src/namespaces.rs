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
        // CLONE_NEWTIME is not in nix's set, and clone(2) cannot take it (it is a bit of
        // CSIGNAL there): a new one is made by `Plan::enter_time_namespace`.
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
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
    /// A new time namespace, with the `timeOffsets` lines to write before the init enters
    /// it (`monotonic <secs> <nanosecs>`).
    pub new_time: Option<String>,
}

impl Plan {
    pub fn from_spec(spec: &Spec) -> Result<Plan> {
        let mut plan = Plan {
            clone_flags: CloneFlags::empty(),
            joins: Vec::new(),
            pid_join: None,
            new_user: false,
            types: Vec::new(),
            new_time: None,
        };
        let namespaces: Vec<LinuxNamespace> = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default();
        for ns in &namespaces {
            let typ = ns.typ();
            plan.types.push(typ);
            match ns.path() {
                None if typ == LinuxNamespaceType::Time => {
                    plan.new_time = Some(time_offsets(spec));
                }
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
        if let Some(j) = plan
            .joins
            .iter()
            .find(|j| j.typ == LinuxNamespaceType::User)
        {
            check_joined_user_maps(spec, j)?;
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

    /// Parent side, right before the init is cloned: a new time namespace for our
    /// children, its offsets written while no process is in it yet (the kernel refuses
    /// them once one is). unshare(CLONE_NEWTIME) moves only the children; the init is then
    /// born in it, and `leave_time_namespace` puts our later children (the createRuntime
    /// hooks) back into ours. Returns our own time namespace for that.
    ///
    /// The namespace is made here, not by the init, because the process that unshares it
    /// stays outside: runc and crun have a process between the runtime and the container's
    /// init for it, which ours does not. It is owned by the runtime's user namespace, so
    /// `exec` joins it before the container's user namespace.
    pub fn enter_time_namespace(&self) -> Result<Option<OwnedFd>> {
        let Some(offsets) = &self.new_time else {
            return Ok(None);
        };
        let ours: OwnedFd = File::open("/proc/self/ns/time")
            .map_err(|e| Error::io("open", "/proc/self/ns/time", e))?
            .into();
        nix::sched::unshare(clone_flag(LinuxNamespaceType::Time)).sys("unshare(CLONE_NEWTIME)")?;
        if !offsets.is_empty() {
            if let Err(e) = std::fs::write("/proc/self/timens_offsets", offsets) {
                let _ = self.leave_time_namespace(Some(ours));
                return Err(Error::Config(format!(
                    "linux.timeOffsets: write /proc/self/timens_offsets ({}): {e}",
                    offsets.trim().replace('\n', ", ")
                )));
            }
        }
        Ok(Some(ours))
    }

    /// Parent side, once the init is cloned: our children are born in our own time
    /// namespace again.
    pub fn leave_time_namespace(&self, ours: Option<OwnedFd>) -> Result<()> {
        if let Some(fd) = ours {
            nix::sched::setns(fd.as_fd(), clone_flag(LinuxNamespaceType::Time))
                .sys("setns back into the runtime's time namespace")?;
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

/// `linux.uidMappings`/`gidMappings` given with a user namespace joined by path cannot be
/// written (the namespace has its maps); as runc 1.2 does, they must be the namespace's own,
/// else `create` fails naming them rather than run with other ids than the config says.
fn check_joined_user_maps(spec: &Spec, join: &Join) -> Result<()> {
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    let want = |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        let mut v: IdMap = maps
            .iter()
            .flatten()
            .map(|m| (m.container_id(), m.host_id(), m.size()))
            .collect();
        v.sort();
        v
    };
    let (uids, gids) = (want(linux.uid_mappings()), want(linux.gid_mappings()));
    if uids.is_empty() && gids.is_empty() {
        return Ok(());
    }
    let (have_uids, have_gids) = user_namespace_maps(join)?;
    for (field, want, have) in [
        ("linux.uidMappings", uids, have_uids),
        ("linux.gidMappings", gids, have_gids),
    ] {
        if !want.is_empty() && want != have {
            return Err(Error::Config(format!(
                "{field} {want:?} are not the mappings of the user namespace {} ({have:?})",
                join.path.display()
            )));
        }
    }
    Ok(())
}

/// An id map as (container id, host id, size) triples, sorted.
type IdMap = Vec<(u32, u32, u32)>;

/// The uid and gid maps of a user namespace, read by a child that joins it.
fn user_namespace_maps(join: &Join) -> Result<(IdMap, IdMap)> {
    let parse = |text: &str| {
        let mut v: IdMap = text
            .lines()
            .filter_map(|l| {
                let f: Vec<u32> = l
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
                (f.len() == 3).then(|| (f[0], f[1], f[2]))
            })
            .collect();
        v.sort();
        v
    };
    let (r, w) = nix::unistd::pipe().sys("pipe")?;
    // SAFETY: the caller is single-threaded (create's rule); the child only joins the
    // namespace, reads two files, writes them to the pipe and _exits.
    match unsafe { nix::unistd::fork() }.sys("fork to read a user namespace's maps")? {
        nix::unistd::ForkResult::Child => {
            drop(r);
            let ok = nix::sched::setns(join.fd.as_fd(), CloneFlags::CLONE_NEWUSER).is_ok();
            let text = if ok {
                let u = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
                let g = std::fs::read_to_string("/proc/self/gid_map").unwrap_or_default();
                format!("{u}--\n{g}")
            } else {
                String::new()
            };
            let _ = nix::unistd::write(&w, text.as_bytes());
            // SAFETY: _exit is always safe.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(w);
            let mut text = String::new();
            std::io::Read::read_to_string(&mut File::from(r), &mut text)
                .map_err(|e| Error::io("read", "the user namespace's maps", e))?;
            let _ = nix::sys::wait::waitpid(child, None);
            let Some((u, g)) = text.split_once("--\n") else {
                return Err(Error::Config(format!(
                    "cannot read the mappings of the user namespace {}",
                    join.path.display()
                )));
            };
            Ok((parse(u), parse(g)))
        }
    }
}

/// The `/proc/self/timens_offsets` lines of `linux.timeOffsets` (checked by `spec`).
fn time_offsets(spec: &Spec) -> String {
    let mut lines = String::new();
    let offsets = spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().as_ref());
    let mut clocks: Vec<_> = offsets.into_iter().flatten().collect();
    clocks.sort_by(|a, b| a.0.cmp(b.0));
    for (clock, o) in clocks {
        lines += &format!(
            "{clock} {} {}\n",
            o.secs().unwrap_or(0),
            o.nanosecs().unwrap_or(0)
        );
    }
    lines
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
