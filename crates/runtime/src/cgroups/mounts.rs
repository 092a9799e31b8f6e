//! Where the hierarchies are mounted (/proc/self/mountinfo) and where the calling process sits
//! in each (/proc/self/cgroup), and the managers built from them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::path::CgroupPath;
use super::{files, CgroupVersion, Error, Manager, Result, V1Manager, V2Manager};

/// One cgroup filesystem mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    pub mount_point: PathBuf,
    /// The mount's root inside its hierarchy (mountinfo field 4): `/` unless a sub-tree is
    /// bind-mounted or the mount was made inside a cgroup namespace.
    pub root: String,
    pub kind: MountKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    /// A v1 hierarchy and its controllers (`cpu`, `cpuacct`, `name=systemd`...).
    V1 { controllers: Vec<String> },
    /// The cgroup2 hierarchy.
    V2,
}

impl CgroupMount {
    pub fn controllers(&self) -> &[String] {
        match &self.kind {
            MountKind::V1 { controllers } => controllers,
            MountKind::V2 => &[],
        }
    }

    /// A v1 hierarchy with at least one real controller (not only a `name=` one).
    fn has_v1_controller(&self) -> bool {
        self.controllers().iter().any(|c| !c.starts_with("name="))
    }
}

/// A line of /proc/<pid>/cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcCgroup {
    pub hierarchy_id: u32,
    /// Empty for cgroup2.
    pub controllers: Vec<String>,
    pub path: String,
}

/// Mount options of a v1 cgroup mount that are not controllers.
fn is_v1_option(o: &str) -> bool {
    matches!(
        o,
        "rw" | "ro"
            | "xattr"
            | "noprefix"
            | "clone_children"
            | "cpuset_v2_mode"
            | "favordynmods"
            | "nofavordynmods"
            | "sane_behavior"
            | "none"
    ) || o.starts_with("release_agent=")
}

/// Undoes mountinfo's octal escapes (`\040` for a space...).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if let Some(oct) = s.get(i + 1..i + 4) {
                if oct.bytes().all(|c| (b'0'..=b'7').contains(&c)) {
                    if let Ok(v) = u8::from_str_radix(oct, 8) {
                        out.push(v);
                        i += 4;
                        continue;
                    }
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The lines of /proc/self/mountinfo that are cgroup mounts, all [`Hierarchies`] needs: for a
/// caller that creates many containers and reads the whole text once (it grows with every
/// mount on the host: a few ms at a thousand containers' overlays).
pub fn cgroup_mountinfo() -> Result<String> {
    let text = files::read(Path::new("/proc/self/mountinfo"))?;
    // A line is kept when parse_mountinfo, the one reader of these lines, takes it.
    Ok(text
        .lines()
        .filter(|l| !parse_mountinfo(l).is_empty())
        .map(|l| format!("{l}\n"))
        .collect())
}

/// The cgroup mounts in a mountinfo text, in order. Other mounts and malformed lines are
/// skipped.
pub fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if sep < 6 || fields.len() < sep + 4 {
            continue;
        }
        let (fstype, super_opts) = (fields[sep + 1], fields[sep + 3]);
        let kind = match fstype {
            "cgroup2" => MountKind::V2,
            "cgroup" => MountKind::V1 {
                controllers: super_opts
                    .split(',')
                    .filter(|o| !o.is_empty() && !is_v1_option(o))
                    .map(str::to_string)
                    .collect(),
            },
            _ => continue,
        };
        out.push(CgroupMount {
            mount_point: PathBuf::from(unescape(fields[4])),
            root: unescape(fields[3]),
            kind,
        });
    }
    out
}

/// The lines of a /proc/<pid>/cgroup text. Malformed lines are skipped.
pub fn parse_proc_cgroup(text: &str) -> Vec<ProcCgroup> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let hierarchy_id = it.next()?.parse().ok()?;
            let controllers = it
                .next()?
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect();
            let path = it.next()?.to_string();
            Some(ProcCgroup {
                hierarchy_id,
                controllers,
                path,
            })
        })
        .collect()
}

/// The host's cgroup hierarchies as seen by the calling process: mounts plus the process's own
/// cgroup in each. Build it from the system, from texts, or (for tests) around a directory.
#[derive(Debug, Clone, Default)]
pub struct Hierarchies {
    mounts: Vec<CgroupMount>,
    own: Vec<ProcCgroup>,
}

impl Hierarchies {
    pub fn new(mounts: Vec<CgroupMount>, own: Vec<ProcCgroup>) -> Self {
        let mut seen = BTreeSet::new();
        let mut unified_seen = false;
        // A hierarchy mounted twice (bind mounts): the first mount wins.
        let mounts = mounts
            .into_iter()
            .filter(|m| match &m.kind {
                MountKind::V2 => !std::mem::replace(&mut unified_seen, true),
                MountKind::V1 { controllers } => {
                    let key: BTreeSet<&String> = controllers.iter().collect();
                    !controllers.is_empty() && seen.insert(format!("{key:?}"))
                }
            })
            .collect();
        Hierarchies { mounts, own }
    }

    /// Parses the texts of /proc/self/mountinfo and /proc/self/cgroup.
    pub fn parse(mountinfo: &str, proc_self_cgroup: &str) -> Self {
        Self::new(
            parse_mountinfo(mountinfo),
            parse_proc_cgroup(proc_self_cgroup),
        )
    }

    /// Reads /proc/self/mountinfo and /proc/self/cgroup.
    pub fn from_system() -> Result<Self> {
        Self::from_system_with(None)
    }

    /// As [`Hierarchies::from_system`], with `mountinfo` (the cgroup lines of a
    /// /proc/self/mountinfo read before, see [`cgroup_mountinfo`]) in place of reading it
    /// when given.
    pub fn from_system_with(mountinfo: Option<&str>) -> Result<Self> {
        let read;
        let mi = match mountinfo {
            Some(mi) => mi,
            None => {
                read = files::read(Path::new("/proc/self/mountinfo"))?;
                &read
            }
        };
        let cg = files::read(Path::new("/proc/self/cgroup"))?;
        Ok(Self::parse(mi, &cg))
    }

    /// A cgroup2 hierarchy rooted at `root` (a mount point, or any directory a test owns and
    /// treats as the root), with the calling process at its top.
    pub fn unified(root: impl Into<PathBuf>) -> Self {
        Self::new(
            vec![CgroupMount {
                mount_point: root.into(),
                root: "/".into(),
                kind: MountKind::V2,
            }],
            vec![ProcCgroup {
                hierarchy_id: 0,
                controllers: vec![],
                path: "/".into(),
            }],
        )
    }

    /// v1 hierarchies mounted at `<dir>/<name>`, one per entry of `groups` (each a
    /// comma-separated controller list such as `cpu,cpuacct`), with the calling process at the
    /// top of each.
    pub fn v1_under(dir: &Path, groups: &[&str]) -> Self {
        let mut mounts = Vec::new();
        let mut own = Vec::new();
        for (i, g) in groups.iter().enumerate() {
            let controllers: Vec<String> = g.split(',').map(str::to_string).collect();
            let name = g.strip_prefix("name=").unwrap_or(g);
            mounts.push(CgroupMount {
                mount_point: dir.join(name),
                root: "/".into(),
                kind: MountKind::V1 {
                    controllers: controllers.clone(),
                },
            });
            own.push(ProcCgroup {
                hierarchy_id: i as u32 + 1,
                controllers,
                path: "/".into(),
            });
        }
        Self::new(mounts, own)
    }

    /// Adds a cgroup2 mount (the hybrid layout's `unified`) to a v1 description.
    pub fn with_unified(mut self, mount_point: impl Into<PathBuf>) -> Self {
        self.mounts.push(CgroupMount {
            mount_point: mount_point.into(),
            root: "/".into(),
            kind: MountKind::V2,
        });
        self.own.push(ProcCgroup {
            hierarchy_id: 0,
            controllers: vec![],
            path: "/".into(),
        });
        Self::new(self.mounts, self.own)
    }

    pub fn mounts(&self) -> &[CgroupMount] {
        &self.mounts
    }

    /// v1 if any v1 hierarchy has a real controller, else v2 if cgroup2 is mounted.
    pub fn version(&self) -> Result<CgroupVersion> {
        if self.mounts.iter().any(CgroupMount::has_v1_controller) {
            Ok(CgroupVersion::V1)
        } else if self.unified_mount().is_some() {
            Ok(CgroupVersion::V2)
        } else {
            Err(Error::NoCgroupFs)
        }
    }

    /// The cgroup2 mount, if any (the whole host on v2, the hybrid extra on v1).
    pub fn unified_mount(&self) -> Option<&CgroupMount> {
        self.mounts.iter().find(|m| m.kind == MountKind::V2)
    }

    /// The calling process's cgroup in the hierarchy of `m`, relative to the mount's root.
    pub fn own_path(&self, m: &CgroupMount) -> String {
        let line = match &m.kind {
            MountKind::V2 => self.own.iter().find(|l| l.controllers.is_empty()),
            MountKind::V1 { controllers } => self
                .own
                .iter()
                .find(|l| l.controllers.iter().any(|c| controllers.contains(c))),
        };
        let Some(line) = line else {
            return "/".into();
        };
        if m.root == "/" {
            return line.path.clone();
        }
        // A bind-mounted sub-tree: the process's path is relative to the hierarchy, the mount
        // shows only the part under `m.root`. Inside a cgroup namespace the process's path is
        // already relative to the namespace root, and used as it is.
        match line.path.strip_prefix(m.root.as_str()) {
            Some("") => "/".into(),
            Some(rest) if rest.starts_with('/') => rest.to_string(),
            _ => line.path.clone(),
        }
    }

    /// The calling process's cgroup dir in every hierarchy, keyed as the managers key theirs
    /// (each v1 controller, `""` for cgroup2).
    pub fn own_dirs(&self) -> BTreeMap<String, PathBuf> {
        let mut out = BTreeMap::new();
        for m in &self.mounts {
            let dir = m.mount_point.join(self.own_path(m).trim_start_matches('/'));
            match &m.kind {
                MountKind::V2 => {
                    out.insert(String::new(), dir);
                }
                MountKind::V1 { controllers } => {
                    for c in controllers {
                        out.insert(c.clone(), dir.clone());
                    }
                }
            }
        }
        out
    }

    /// The directory of the cgroup `p` in the hierarchy of `m`. Errors if it is the hierarchy's
    /// root.
    fn dir_in(&self, m: &CgroupMount, p: &CgroupPath, given: &str) -> Result<PathBuf> {
        let inner = p.resolve(&self.own_path(m));
        if inner == "/" {
            return Err(Error::InvalidPath {
                path: given.to_string(),
                reason: format!(
                    "it resolves to the root of the hierarchy at {}",
                    m.mount_point.display()
                ),
            });
        }
        Ok(m.mount_point.join(inner.trim_start_matches('/')))
    }

    /// The manager of the cgroup `cgroups_path` (the OCI `linux.cgroupsPath`, see the module
    /// docs) of container `container_id`, for this host's version.
    pub fn manager(
        &self,
        cgroups_path: Option<&str>,
        container_id: &str,
    ) -> Result<Box<dyn Manager>> {
        Ok(match self.version()? {
            CgroupVersion::V1 => Box::new(self.v1_manager(cgroups_path, container_id)?),
            CgroupVersion::V2 => Box::new(self.v2_manager(cgroups_path, container_id)?),
        })
    }

    /// A v1 manager: one directory per v1 hierarchy, plus the cgroup2 one if mounted (hybrid).
    pub fn v1_manager(&self, cgroups_path: Option<&str>, container_id: &str) -> Result<V1Manager> {
        let p = CgroupPath::parse(cgroups_path, container_id)?;
        let given = cgroups_path.unwrap_or(container_id);
        let mut dirs = BTreeMap::new();
        for m in &self.mounts {
            let dir = self.dir_in(m, &p, given)?;
            match &m.kind {
                MountKind::V2 => {
                    dirs.insert(String::new(), (dir, m.mount_point.clone()));
                }
                MountKind::V1 { controllers } => {
                    for c in controllers {
                        dirs.insert(c.clone(), (dir.clone(), m.mount_point.clone()));
                    }
                }
            }
        }
        if !dirs.keys().any(|k| !k.is_empty()) {
            return Err(Error::NoCgroupFs);
        }
        Ok(V1Manager::new(dirs))
    }

    /// A v2 manager in the cgroup2 hierarchy.
    pub fn v2_manager(&self, cgroups_path: Option<&str>, container_id: &str) -> Result<V2Manager> {
        let p = CgroupPath::parse(cgroups_path, container_id)?;
        let given = cgroups_path.unwrap_or(container_id);
        let m = self.unified_mount().ok_or(Error::NoCgroupFs)?;
        Ok(V2Manager::new(
            self.dir_in(m, &p, given)?,
            m.mount_point.clone(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cgroup lines alone make the same hierarchies as the whole of this host's
    /// mountinfo, and nothing else is kept.
    #[test]
    fn the_cgroup_lines_of_mountinfo_are_all_hierarchies_need() {
        let lines = cgroup_mountinfo().unwrap();
        let whole = files::read(Path::new("/proc/self/mountinfo")).unwrap();
        assert_eq!(parse_mountinfo(&lines), parse_mountinfo(&whole));
        assert_eq!(
            lines.lines().count(),
            parse_mountinfo(&whole).len(),
            "{lines}"
        );
        assert_eq!(
            Hierarchies::from_system_with(Some(&lines))
                .unwrap()
                .own_dirs(),
            Hierarchies::from_system().unwrap().own_dirs()
        );
    }

    /// This development host: v1 controllers, name=systemd, and a hybrid cgroup2 at unified.
    pub(crate) const HYBRID_MOUNTINFO: &str = "\
24 29 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    pub(crate) const HYBRID_PROC_CGROUP: &str = "\
9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/4cc7dbfb16e3859c559ea35394920f2b
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
";

    /// A systemd host with cpu,cpuacct co-mounted, optional fields and escapes.
    const COMOUNTED_MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,cpu,cpuacct
36 30 0:32 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,memory
37 30 0:33 /docker /mnt/my\\040cg rw,relatime - cgroup cgroup rw,pids,release_agent=/x
38 30 0:33 / /mnt/pids-again rw,relatime - cgroup cgroup rw,pids
";

    const PURE_V2_MOUNTINFO: &str = "\
25 20 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:6 - sysfs sysfs rw
27 25 0:25 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:7 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn this_hosts_layout_is_v1() {
        let h = Hierarchies::parse(HYBRID_MOUNTINFO, HYBRID_PROC_CGROUP);
        assert_eq!(h.version().unwrap(), CgroupVersion::V1);
        assert_eq!(h.mounts().len(), 10);
        assert_eq!(
            h.unified_mount().unwrap().mount_point,
            Path::new("/sys/fs/cgroup/unified")
        );
        let mem = h
            .mounts()
            .iter()
            .find(|m| m.controllers() == ["memory"])
            .unwrap();
        assert_eq!(
            h.own_path(mem),
            "/process_api/4cc7dbfb16e3859c559ea35394920f2b"
        );
        let sd = h
            .mounts()
            .iter()
            .find(|m| m.controllers() == ["name=systemd"])
            .unwrap();
        assert_eq!(sd.mount_point, Path::new("/sys/fs/cgroup/systemd"));
    }

    #[test]
    fn pure_v2_and_nothing() {
        let h = Hierarchies::parse(PURE_V2_MOUNTINFO, "0::/user.slice/session-1.scope\n");
        assert_eq!(h.version().unwrap(), CgroupVersion::V2);
        let m = h.unified_mount().unwrap();
        assert_eq!(m.mount_point, Path::new("/sys/fs/cgroup"));
        assert_eq!(h.own_path(m), "/user.slice/session-1.scope");
        assert!(matches!(
            Hierarchies::parse("", "").version(),
            Err(Error::NoCgroupFs)
        ));
        // Only a name= hierarchy beside cgroup2 is still a v2 host.
        let h = Hierarchies::parse(
            &format!(
                "{PURE_V2_MOUNTINFO}40 27 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n"
            ),
            "",
        );
        assert_eq!(h.version().unwrap(), CgroupVersion::V2);
    }

    #[test]
    fn comounted_options_escapes_and_duplicates() {
        let h = Hierarchies::parse(
            COMOUNTED_MOUNTINFO,
            "5:pids:/docker/abc\n3:cpu,cpuacct:/x\n1:name=systemd:/\n0::/\n",
        );
        let ms = h.mounts();
        // The second pids mount is the same hierarchy again.
        assert_eq!(ms.len(), 5);
        let sd = ms
            .iter()
            .find(|m| m.mount_point.ends_with("systemd"))
            .unwrap();
        assert_eq!(sd.controllers(), ["name=systemd"]);
        let cpu = ms
            .iter()
            .find(|m| m.controllers().contains(&"cpu".into()))
            .unwrap();
        assert_eq!(cpu.controllers(), ["cpu", "cpuacct"]);
        assert_eq!(cpu.mount_point, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(h.own_path(cpu), "/x");
        let pids = ms.iter().find(|m| m.controllers() == ["pids"]).unwrap();
        assert_eq!(pids.mount_point, Path::new("/mnt/my cg"));
        assert_eq!(pids.root, "/docker");
        // The process is at /docker/abc in the hierarchy: /abc under this mount's root.
        assert_eq!(h.own_path(pids), "/abc");
    }

    #[test]
    fn proc_cgroup_lines() {
        let l = parse_proc_cgroup("12:cpu,cpuacct:/a:b\n0::/\nbad\n");
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].controllers, ["cpu", "cpuacct"]);
        assert_eq!(l[0].path, "/a:b");
        assert_eq!(l[1].hierarchy_id, 0);
        assert!(l[1].controllers.is_empty());
    }

    #[test]
    fn managers_get_one_dir_per_hierarchy() {
        let h = Hierarchies::parse(HYBRID_MOUNTINFO, HYBRID_PROC_CGROUP);
        let m = h.v1_manager(None, "c1").unwrap();
        let p = Manager::paths(&m);
        assert_eq!(
            p["memory"],
            Path::new("/sys/fs/cgroup/memory/process_api/4cc7dbfb16e3859c559ea35394920f2b/c1")
        );
        assert_eq!(p["cpu"], Path::new("/sys/fs/cgroup/cpu/c1"));
        assert_eq!(p["name=systemd"], Path::new("/sys/fs/cgroup/systemd/c1"));
        assert_eq!(p[""], Path::new("/sys/fs/cgroup/unified/c1"));
        assert_eq!(p.len(), 10);

        let m = h.v1_manager(Some("/warden/c1"), "c1").unwrap();
        assert_eq!(
            Manager::paths(&m)["memory"],
            Path::new("/sys/fs/cgroup/memory/warden/c1")
        );

        let h = Hierarchies::parse(COMOUNTED_MOUNTINFO, "3:cpu,cpuacct:/x\n0::/\n");
        let m = h
            .v1_manager(Some("system.slice:docker:abc"), "abc")
            .unwrap();
        let p = Manager::paths(&m);
        assert_eq!(
            p["cpu"],
            Path::new("/sys/fs/cgroup/cpu,cpuacct/system.slice/docker-abc.scope")
        );
        assert_eq!(p["cpu"], p["cpuacct"]);
    }

    #[test]
    fn a_path_that_is_the_root_is_refused() {
        let h = Hierarchies::parse(HYBRID_MOUNTINFO, HYBRID_PROC_CGROUP);
        for bad in ["/", "/a/..", "/../.."] {
            let e = h.v1_manager(Some(bad), "c").unwrap_err();
            assert!(matches!(e, Error::InvalidPath { .. }), "{bad}: {e}");
        }
        let h = Hierarchies::unified("/sys/fs/cgroup");
        assert!(h.v2_manager(Some("/"), "c").is_err());
        assert!(h.v2_manager(Some("."), "c").is_err());
    }
}
