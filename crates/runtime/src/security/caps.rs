//! The five capability sets of `process.capabilities`.
//!
//! The bounding set is cut while we still have CAP_SETPCAP (before the uid changes); the
//! effective, permitted and inheritable sets are then set with one capset(2), so that no
//! intermediate state breaks the kernel's subset rules, and the ambient set last (it needs
//! its capabilities in both permitted and inheritable). An ambient capability the kernel
//! refuses to raise (EPERM: it is not in both permitted and inheritable, as in runc's own
//! `spec` template, which lists ambient capabilities and no inheritable ones) is skipped with
//! a warning, as runc does, instead of failing the container.

use ::caps::{CapSet, Capability as Cap, CapsHashSet};
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

use crate::error::{Error, Result};

/// Every capability name a config may use, in the kernel's order (`features` lists them).
pub fn known() -> Vec<String> {
    let mut all: Vec<Cap> = ::caps::all().into_iter().collect();
    all.sort_by_key(|c| c.index());
    all.iter().map(|c| c.to_string()).collect()
}

/// The kernel's number of an OCI capability.
pub fn number(c: &Capability) -> Result<u8> {
    let name = format!("CAP_{c}");
    name.parse::<Cap>()
        .map(|c| c.index())
        .map_err(|_| Error::Config(format!("unknown capability {name:?}")))
}

fn to_set(caps: Option<&Capabilities>) -> Result<CapsHashSet> {
    let mut out = CapsHashSet::new();
    for c in caps.into_iter().flatten() {
        let name = format!("CAP_{c}");
        out.insert(
            name.parse::<Cap>()
                .map_err(|_| Error::Config(format!("unknown capability {name:?}")))?,
        );
    }
    Ok(out)
}

/// Removes from the bounding set every capability the config does not list. Capabilities
/// the running kernel does not know are skipped; without a `capabilities` object nothing
/// changes (the OCI default).
pub fn drop_bounding(caps: Option<&LinuxCapabilities>) -> Result<()> {
    let Some(caps) = caps else { return Ok(()) };
    let keep = to_set(caps.bounding().as_ref())?;
    for cap in ::caps::runtime::thread_all_supported() {
        if !keep.contains(&cap) {
            ::caps::drop(None, CapSet::Bounding, cap)
                .map_err(|e| Error::Init(format!("drop {cap} from the bounding set: {e}")))?;
        }
    }
    Ok(())
}

/// Sets effective, permitted, inheritable (one capset) and then ambient. Returns a warning
/// naming the ambient capabilities skipped, if any.
pub fn apply(caps: Option<&LinuxCapabilities>) -> Result<Option<String>> {
    let Some(caps) = caps else { return Ok(None) };
    let supported = ::caps::runtime::thread_all_supported();
    let mask = |set: CapsHashSet| -> [u32; 2] {
        let mut words = [0u32; 2];
        for c in set.intersection(&supported) {
            let i = c.index() as usize;
            words[i / 32] |= 1 << (i % 32);
        }
        words
    };
    let eff = mask(to_set(caps.effective().as_ref())?);
    let perm = mask(to_set(caps.permitted().as_ref())?);
    let inh = mask(to_set(caps.inheritable().as_ref())?);
    capset(eff, perm, inh)?;

    let mut skipped = Vec::new();
    let ambient = to_set(caps.ambient().as_ref())?;
    for cap in ambient.intersection(&supported) {
        if !raise_ambient(*cap)? {
            skipped.push(cap.to_string());
        }
    }
    if skipped.is_empty() {
        return Ok(None);
    }
    skipped.sort();
    Ok(Some(format!(
        "ambient capabilities {} skipped: the kernel raises only what is both permitted and \
         inheritable",
        skipped.join(", ")
    )))
}

/// Raises `cap` in the ambient set; false if the kernel refuses (EPERM).
fn raise_ambient(cap: Cap) -> Result<bool> {
    // SAFETY: prctl(2) with integer arguments only.
    let r = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
            cap.index() as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if r == 0 {
        return Ok(true);
    }
    match nix::errno::Errno::last() {
        nix::errno::Errno::EPERM => Ok(false),
        e => Err(Error::sys(format!("raise {cap} in the ambient set"), e)),
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

fn capset(eff: [u32; 2], perm: [u32; 2], inh: [u32; 2]) -> Result<()> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [0, 1].map(|i| CapData {
        effective: eff[i],
        permitted: perm[i],
        inheritable: inh[i],
    });
    // SAFETY: header and data are the v3 layout capset(2) expects (two data words).
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if r != 0 {
        return Err(Error::sys(
            "capset (effective must be a subset of permitted)",
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_follow_the_kernel() {
        assert_eq!(number(&Capability::Chown).unwrap(), 0);
        assert_eq!(number(&Capability::SysAdmin).unwrap(), 21);
        assert_eq!(number(&Capability::NetBindService).unwrap(), 10);
    }
}
