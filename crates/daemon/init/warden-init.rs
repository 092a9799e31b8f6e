//! warden-init: pid 1 of every wardend container (the role of the original's wshd inside the
//! container). It keeps the container's namespaces alive between jobs and reaps every
//! process orphaned into it, so a job's daemonized children never pile up as zombies.
//!
//! It is built by the daemon's build.rs with plain rustc as a static executable, so it runs
//! in any root filesystem (busybox has no libc). It therefore uses no crates: the few libc
//! calls are declared here.
//!
//! All signals are blocked and taken with sigwaitinfo: SIGCHLD reaps, anything else is
//! ignored (stop signals the jobs, not the init); the daemon ends it with SIGKILL.

use std::ffi::c_int;

#[repr(C)]
struct SigSet([u64; 16]);

extern "C" {
    fn sigfillset(set: *mut SigSet) -> c_int;
    fn sigprocmask(how: c_int, set: *const SigSet, old: *mut SigSet) -> c_int;
    fn sigwaitinfo(set: *const SigSet, info: *mut [u64; 16]) -> c_int;
    fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
}

const SIG_BLOCK: c_int = 0;
const SIGCHLD: c_int = 17;
const WNOHANG: c_int = 1;

fn main() {
    let mut all = SigSet([0; 16]);
    // SAFETY: the set and info buffers are at least as large as glibc's sigset_t and
    // siginfo_t (128 bytes each); the calls only write into them.
    unsafe {
        sigfillset(&mut all);
        sigprocmask(SIG_BLOCK, &all, std::ptr::null_mut());
        loop {
            let mut info = [0u64; 16];
            if sigwaitinfo(&all, &mut info) == SIGCHLD {
                let mut status = 0;
                while waitpid(-1, &mut status, WNOHANG) > 0 {}
            }
        }
    }
}
