//! Reading an OCI `linux.cgroupsPath` the way runc's cgroupfs driver does, plus runc's systemd
//! `slice:prefix:name` syntax mapped to the path the systemd driver would use.

use super::{Error, Result};

/// Where a container's cgroup goes, before it is placed in a hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupPath {
    /// From the root of each hierarchy; normalised (`/a/b`, never `/`-ended, no `.` or `..`).
    Absolute(String),
    /// Under the calling process's own cgroup in each hierarchy; normalised, never climbs.
    Relative(String),
}

impl CgroupPath {
    /// `cgroups_path` as the OCI config gives it (`None` or empty: the container id, relative).
    pub fn parse(cgroups_path: Option<&str>, container_id: &str) -> Result<CgroupPath> {
        let given = match cgroups_path {
            Some(p) if !p.is_empty() => p,
            _ => container_id,
        };
        let invalid = |reason: &str| Error::InvalidPath {
            path: given.to_string(),
            reason: reason.to_string(),
        };
        if given.is_empty() {
            return Err(invalid("empty (and no container id)"));
        }
        if given.contains('\0') {
            return Err(invalid("contains a NUL byte"));
        }
        if !given.starts_with('/') {
            let parts: Vec<&str> = given.split(':').collect();
            if parts.len() == 3 {
                return systemd_path(given, parts[0], parts[1], parts[2]).map(CgroupPath::Absolute);
            }
        }
        if given.starts_with('/') {
            return Ok(CgroupPath::Absolute(clean(given)));
        }
        let mut out: Vec<&str> = Vec::new();
        for c in given.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    if out.pop().is_none() {
                        return Err(invalid(
                            "a relative path may not climb above the caller's own cgroup",
                        ));
                    }
                }
                c => out.push(c),
            }
        }
        if out.is_empty() {
            return Err(invalid("it names the caller's own cgroup"));
        }
        Ok(CgroupPath::Relative(out.join("/")))
    }

    /// The cgroup's path inside a hierarchy in which the caller is at `own` (normalised, `/`
    /// for the hierarchy's root).
    pub fn resolve(&self, own: &str) -> String {
        match self {
            CgroupPath::Absolute(p) => p.clone(),
            CgroupPath::Relative(r) => clean(&format!("{own}/{r}")),
        }
    }
}

/// Lexical normalisation of an absolute path: `//`, `.` and `..` go; `..` stops at `/`.
pub(crate) fn clean(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

/// `slice:prefix:name` → `<expanded slice>/<prefix>-<name>.scope` (runc's systemd driver).
fn systemd_path(given: &str, slice: &str, prefix: &str, name: &str) -> Result<String> {
    Ok(SystemdUnit::from_parts(given, slice, prefix, name)?.cgroup_path())
}

/// The systemd unit a `--systemd-cgroup` container gets: runc's reading of `cgroupsPath`
/// as `slice:prefix:name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemdUnit {
    /// The parent slice (`system.slice` when the path leaves it empty).
    pub slice: String,
    /// `<prefix>-<name>.scope`, `<name>.scope` without a prefix, or `<name>` when it is a
    /// slice.
    pub unit: String,
}

impl SystemdUnit {
    /// `cgroups_path` as `slice:prefix:name`; `None` or empty is runc's default,
    /// `system.slice:runc:<container id>`.
    pub fn parse(cgroups_path: Option<&str>, container_id: &str) -> Result<SystemdUnit> {
        let given = match cgroups_path {
            Some(p) if !p.is_empty() => p,
            _ => return SystemdUnit::from_parts(container_id, "", "runc", container_id),
        };
        let parts: Vec<&str> = given.split(':').collect();
        if parts.len() != 3 {
            return Err(Error::InvalidPath {
                path: given.to_string(),
                reason: "with --systemd-cgroup it must be \"slice:prefix:name\" \
                         (e.g. \"system.slice:docker:1234\")"
                    .into(),
            });
        }
        SystemdUnit::from_parts(given, parts[0], parts[1], parts[2])
    }

    fn from_parts(given: &str, slice: &str, prefix: &str, name: &str) -> Result<SystemdUnit> {
        let invalid = |reason: String| Error::InvalidPath {
            path: given.to_string(),
            reason,
        };
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(invalid(format!("bad unit name {name:?}")));
        }
        if prefix.contains('/') {
            return Err(invalid(format!("bad scope prefix {prefix:?}")));
        }
        let slice = if slice.is_empty() {
            "system.slice"
        } else {
            slice
        };
        expand_slice(slice).map_err(|_| invalid(format!("bad slice {slice:?}")))?;
        let unit = if name.ends_with(".slice") {
            name.to_string()
        } else if prefix.is_empty() {
            format!("{name}.scope")
        } else {
            format!("{prefix}-{name}.scope")
        };
        Ok(SystemdUnit {
            slice: slice.to_string(),
            unit,
        })
    }

    /// The unit's cgroup below systemd's root: `<expanded slice>/<unit>`.
    pub fn cgroup_path(&self) -> String {
        let parent = expand_slice(&self.slice).expect("checked when parsed");
        clean(&format!("{parent}/{}", self.unit))
    }

    /// A slice (`name` ended in `.slice`) rather than a scope.
    pub fn is_slice(&self) -> bool {
        self.unit.ends_with(".slice")
    }
}

/// systemd's slice nesting: `a-b-c.slice` → `/a.slice/a-b.slice/a-b-c.slice`; `-.slice` is the
/// root slice, `/`.
pub fn expand_slice(slice: &str) -> Result<String> {
    let invalid = |reason: &str| Error::InvalidPath {
        path: slice.to_string(),
        reason: reason.to_string(),
    };
    let Some(name) = slice.strip_suffix(".slice") else {
        return Err(invalid("a slice name ends with .slice"));
    };
    if slice.contains('/') {
        return Err(invalid("a slice name has no '/'"));
    }
    if name == "-" {
        return Ok("/".into());
    }
    if name.is_empty() || name.starts_with('-') || name.ends_with('-') || name.contains("--") {
        return Err(invalid("bad dashes in slice name"));
    }
    let mut out = String::new();
    let mut prefix = String::new();
    for part in name.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        out.push('/');
        out.push_str(&prefix);
        out.push_str(".slice");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn abs(s: &str) -> CgroupPath {
        CgroupPath::Absolute(s.into())
    }

    #[test]
    fn default_is_the_id_relative() {
        assert_eq!(
            CgroupPath::parse(None, "c1").unwrap(),
            CgroupPath::Relative("c1".into())
        );
        assert_eq!(
            CgroupPath::parse(Some(""), "c1").unwrap(),
            CgroupPath::Relative("c1".into())
        );
        assert!(CgroupPath::parse(None, "").is_err());
    }

    #[test]
    fn absolute_paths_are_cleaned_within_the_root() {
        assert_eq!(CgroupPath::parse(Some("/a/b"), "x").unwrap(), abs("/a/b"));
        assert_eq!(
            CgroupPath::parse(Some("//a/./b/"), "x").unwrap(),
            abs("/a/b")
        );
        assert_eq!(CgroupPath::parse(Some("/../../a"), "x").unwrap(), abs("/a"));
        assert_eq!(CgroupPath::parse(Some("/a/../.."), "x").unwrap(), abs("/"));
        // A colon in an absolute path is just a character.
        assert_eq!(
            CgroupPath::parse(Some("/a:b:c"), "x").unwrap(),
            abs("/a:b:c")
        );
    }

    #[test]
    fn relative_paths_go_under_the_callers_cgroup() {
        let p = CgroupPath::parse(Some("warden/c1"), "c1").unwrap();
        assert_eq!(p, CgroupPath::Relative("warden/c1".into()));
        assert_eq!(
            p.resolve("/user.slice/s.scope"),
            "/user.slice/s.scope/warden/c1"
        );
        assert_eq!(p.resolve("/"), "/warden/c1");
        let p = CgroupPath::parse(Some("a/../b/./c"), "x").unwrap();
        assert_eq!(p.resolve("/own"), "/own/b/c");
        assert!(CgroupPath::parse(Some("../escape"), "x").is_err());
        assert!(CgroupPath::parse(Some("a/../.."), "x").is_err());
        assert!(CgroupPath::parse(Some("."), "x").is_err());
        assert_eq!(abs("/x").resolve("/own"), "/x");
    }

    #[test]
    fn systemd_syntax_maps_to_a_plain_path() {
        let p = |s| CgroupPath::parse(Some(s), "id").unwrap();
        assert_eq!(
            p("system.slice:docker:abc"),
            abs("/system.slice/docker-abc.scope")
        );
        assert_eq!(p(":docker:abc"), abs("/system.slice/docker-abc.scope"));
        assert_eq!(
            p("a-b.slice:crio:x"),
            abs("/a.slice/a-b.slice/crio-x.scope")
        );
        assert_eq!(p("-.slice:p:n"), abs("/p-n.scope"));
        assert_eq!(p("user.slice::n"), abs("/user.slice/n.scope"));
        assert_eq!(p("machine.slice::k.slice"), abs("/machine.slice/k.slice"));
        for bad in [
            "system:docker:abc",
            "a--b.slice:p:n",
            "s.slice:p:",
            "s.slice:p:a/b",
        ] {
            let e = CgroupPath::parse(Some(bad), "id").unwrap_err();
            assert!(matches!(e, Error::InvalidPath { .. }), "{bad}");
            assert!(e.to_string().contains(bad), "{e}");
        }
        // Not three parts: a plain relative path.
        assert_eq!(p("a:b"), CgroupPath::Relative("a:b".into()));
    }

    #[test]
    fn systemd_units_are_runc_s() {
        let u =
            SystemdUnit::parse(Some("kubepods-besteffort.slice:cri-containerd:abc"), "x").unwrap();
        assert_eq!(u.slice, "kubepods-besteffort.slice");
        assert_eq!(u.unit, "cri-containerd-abc.scope");
        assert_eq!(
            u.cgroup_path(),
            "/kubepods.slice/kubepods-besteffort.slice/cri-containerd-abc.scope"
        );
        let u = SystemdUnit::parse(None, "c1").unwrap();
        assert_eq!(
            (u.slice.as_str(), u.unit.as_str()),
            ("system.slice", "runc-c1.scope")
        );
        assert_eq!(SystemdUnit::parse(Some(""), "c1").unwrap(), u);
        let u = SystemdUnit::parse(Some("machine.slice::k.slice"), "x").unwrap();
        assert!(u.is_slice());
        for bad in ["/a/b", "a:b", "a:b:c:d", "system:docker:abc", "s.slice:p:"] {
            let e = SystemdUnit::parse(Some(bad), "id").unwrap_err();
            assert!(matches!(e, Error::InvalidPath { .. }), "{bad}");
            assert!(e.to_string().contains(bad), "{e}");
        }
        let e = SystemdUnit::parse(Some("/a/b"), "id").unwrap_err();
        assert!(e.to_string().contains("slice:prefix:name"), "{e}");
    }

    #[test]
    fn slices_expand() {
        assert_eq!(expand_slice("system.slice").unwrap(), "/system.slice");
        assert_eq!(
            expand_slice("a-b-c.slice").unwrap(),
            "/a.slice/a-b.slice/a-b-c.slice"
        );
        assert_eq!(expand_slice("-.slice").unwrap(), "/");
        for bad in ["a", "-a.slice", "a-.slice", "a/b.slice", ".slice"] {
            assert!(expand_slice(bad).is_err(), "{bad}");
        }
    }
}
