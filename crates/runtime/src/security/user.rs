//! `process.user`: groups, gid, uid and umask, in that order (setgroups and setgid need the
//! privileges the uid change drops).

use nix::unistd::{Gid, Uid};
use oci_spec::runtime::User;

use crate::error::{Error, Result, SysContext};

/// prctl(PR_SET_KEEPCAPS): keep the permitted capabilities across the uid change.
pub fn set_keep_caps(keep: bool) -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    let r = unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, keep as libc::c_ulong, 0, 0, 0) };
    if r != 0 {
        return Err(Error::sys(
            "prctl(PR_SET_KEEPCAPS)",
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

/// Becomes `user`. In a user namespace whose setgroups is denied the supplementary groups
/// can only be left as they are; that is an error only when the config asks for some.
pub fn apply(user: &User, in_user_ns: bool) -> Result<()> {
    let gid = Gid::from_raw(user.gid());
    let uid = Uid::from_raw(user.uid());
    let groups: Vec<Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| Gid::from_raw(*g))
        .collect();
    let setgroups_denied = in_user_ns
        && std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny");
    if setgroups_denied {
        if !groups.is_empty() {
            return Err(Error::Config(
                "cannot set additionalGids: setgroups is denied in this user namespace".into(),
            ));
        }
    } else {
        nix::unistd::setgroups(&groups).sys(format!("setgroups {groups:?}"))?;
    }
    nix::unistd::setresgid(gid, gid, gid).sys(format!("setresgid {gid}"))?;
    nix::unistd::setresuid(uid, uid, uid).sys(format!("setresuid {uid}"))?;
    // The caller's umask must not leak in: 0022 unless the config says otherwise (runc).
    let mask = user.umask().unwrap_or(0o022);
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask as _));
    Ok(())
}
