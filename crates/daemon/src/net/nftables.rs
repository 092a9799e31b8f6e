//! libnftables in process: the `nft` language, parsed and sent over netlink by the library
//! that the `nft` command itself is built on (Debian's libnftables1, which nftables depends
//! on), without starting a process per change (about 10 ms each; a change here costs about
//! 0.2 ms, see the daemon's Cargo.toml). Each [`run`] is one file of commands, sent as one
//! netlink batch: one atomic transaction, as `nft -f` makes of it. The file is a memfd kept
//! with the context, read by the library through `/proc/self/fd` (`nft_run_cmd_from_filename`):
//! libnftables 1.0.6 quotes the first line of a buffer in every error, whichever line failed,
//! and the right line of a file.
//!
//! The library is loaded with dlopen at the first use, not linked: the build needs no
//! libnftables-dev, and a daemon that never fences a container never needs the library (a
//! missing one fails that first change with an error that names the package). One context is
//! kept for the daemon's life behind a mutex (a context is not thread-safe); it keeps its
//! netlink socket, which it opened in the calling thread's network namespace: the host's,
//! since the daemon's pooled threads never change namespace (see `net::netns`). Its cache of
//! the ruleset is re-read by the library whenever the kernel's generation has moved on.
//!
//! libnftables opens its netlink socket without `SOCK_CLOEXEC`; a socket able to change the
//! host's packet filter must not be inherited by the processes the daemon starts (the create
//! helper, the keepers: they close what they inherit before running a container's code, but
//! only then), so [`Nft`] marks it close-on-exec after creating the context and checks after
//! every command that it still is (the library may reopen it).

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::sync::{Mutex, OnceLock};

/// The library's soname in Debian's libnftables1 (the ABI of nftables 0.9.x to 1.1.x).
const LIBRARY: &CStr = c"libnftables.so.1";

#[derive(Debug, Clone, thiserror::Error)]
pub enum NftError {
    #[error("cannot load {library} (apt-get install libnftables1): {0}", library = LIBRARY.to_string_lossy())]
    Load(String),
    /// The library's own messages (what `nft` prints on stderr), trimmed.
    #[error("{0}")]
    Rejected(String),
}

type CtxNew = unsafe extern "C" fn(c_uint) -> *mut c_void;
type CtxFn = unsafe extern "C" fn(*mut c_void) -> c_int;
type CtxBuffer = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type RunCmd = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

/// A libnftables context and the entry points used on it.
struct Nft {
    ctx: *mut c_void,
    run: RunCmd,
    output: CtxBuffer,
    error: CtxBuffer,
    /// The commands of the current run, and its path for the library.
    script: File,
    path: CString,
    /// The context's netlink socket: its fd and inode, once found.
    socket: Option<(RawFd, u64)>,
}

// SAFETY: the context is only ever used by one thread at a time (it lives in a Mutex), and
// libnftables keeps no thread-local state.
unsafe impl Send for Nft {}

static NFT: OnceLock<Result<Mutex<Nft>, NftError>> = OnceLock::new();

#[cfg(test)]
thread_local! {
    /// The commands this thread ran through the library: a test's check that a change
    /// does not (the library's cache costs more with each chain of the host, `net::nfbatch`).
    pub static RUNS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Runs `commands` (nft syntax, one or more lines) as one transaction; what the commands
/// print (a `list`) is returned.
pub fn run(commands: &str) -> Result<String, NftError> {
    #[cfg(test)]
    RUNS.with(|r| r.set(r.get() + 1));
    let nft = NFT
        .get_or_init(|| Nft::open().map(Mutex::new))
        .as_ref()
        .map_err(Clone::clone)?;
    let mut nft = nft.lock().unwrap_or_else(|p| p.into_inner());
    nft.run(commands)
}

impl Nft {
    fn open() -> Result<Nft, NftError> {
        // SAFETY: dlopen with a constant soname; the handle is never closed, so the symbols
        // stay valid for the process's life.
        let lib = unsafe { libc::dlopen(LIBRARY.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if lib.is_null() {
            return Err(NftError::Load(dlerror()));
        }
        let sym = |name: &CStr| -> Result<*mut c_void, NftError> {
            // SAFETY: lib is a live handle and name is NUL-terminated.
            let p = unsafe { libc::dlsym(lib, name.as_ptr()) };
            if p.is_null() {
                Err(NftError::Load(format!(
                    "no symbol {}: {}",
                    name.to_string_lossy(),
                    dlerror()
                )))
            } else {
                Ok(p)
            }
        };
        // SAFETY: the symbols have these C prototypes in <nftables/libnftables.h>.
        let (new, buffer_output, buffer_error, output, error, run) = unsafe {
            (
                std::mem::transmute::<*mut c_void, CtxNew>(sym(c"nft_ctx_new")?),
                std::mem::transmute::<*mut c_void, CtxFn>(sym(c"nft_ctx_buffer_output")?),
                std::mem::transmute::<*mut c_void, CtxFn>(sym(c"nft_ctx_buffer_error")?),
                std::mem::transmute::<*mut c_void, CtxBuffer>(sym(c"nft_ctx_get_output_buffer")?),
                std::mem::transmute::<*mut c_void, CtxBuffer>(sym(c"nft_ctx_get_error_buffer")?),
                std::mem::transmute::<*mut c_void, RunCmd>(sym(c"nft_run_cmd_from_filename")?),
            )
        };
        // SAFETY: NFT_CTX_DEFAULT (0); a null return is checked.
        let ctx = unsafe { new(0) };
        if ctx.is_null() {
            return Err(NftError::Load("nft_ctx_new failed".into()));
        }
        // SAFETY: a constant name; the fd returned is new and ours.
        let fd = unsafe { libc::memfd_create(c"warden-nft".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            return Err(NftError::Load(format!("memfd_create: {e}")));
        }
        // SAFETY: as above.
        let script = unsafe { File::from_raw_fd(fd) };
        let path = CString::new(format!("/proc/self/fd/{}", script.as_raw_fd()))
            .expect("no NUL in a path of digits");
        let mut nft = Nft {
            ctx,
            run,
            output,
            error,
            script,
            path,
            socket: None,
        };
        nft.seal_socket();
        // SAFETY: ctx is live. Both streams go to memory buffers, read after each command,
        // instead of the daemon's stdout and stderr.
        if unsafe { buffer_output(ctx) } != 0 || unsafe { buffer_error(ctx) } != 0 {
            return Err(NftError::Load("cannot buffer libnftables' output".into()));
        }
        Ok(nft)
    }

    fn run(&mut self, commands: &str) -> Result<String, NftError> {
        self.script
            .set_len(0)
            .and_then(|()| self.script.write_all_at(commands.as_bytes(), 0))
            .map_err(|e| {
                NftError::Rejected(format!("cannot write the commands to a memfd: {e}"))
            })?;
        // SAFETY: ctx is live and used by this thread only (the mutex); path is
        // NUL-terminated and outlives the call.
        let rc = unsafe { (self.run)(self.ctx, self.path.as_ptr()) };
        // Both buffers are read every time: reading one empties it for the next command.
        let output = self.take(self.output);
        let error = self.take(self.error);
        if !self.socket_sealed() {
            self.seal_socket();
        }
        if rc == 0 {
            Ok(output)
        } else {
            // `/proc/self/fd/N:2:5-9: Error: ...` → `line 2:5-9: Error: ...`.
            let prefix = format!("{}:", self.path.to_string_lossy());
            Err(NftError::Rejected(
                error.trim().replace(&prefix, "line ").to_string(),
            ))
        }
    }

    fn take(&self, get: CtxBuffer) -> String {
        // SAFETY: ctx is live; the buffer is a NUL-terminated string owned by the context,
        // valid until its next command, and copied out here.
        let p = unsafe { get(self.ctx) };
        if p.is_null() {
            return String::new();
        }
        // SAFETY: as above.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }

    /// Whether the socket found last is still this fd, the same socket, close-on-exec.
    fn socket_sealed(&self) -> bool {
        let Some((fd, ino)) = self.socket else {
            return false;
        };
        // SAFETY: F_GETFD and fstat on an fd number only read; a closed fd fails.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        flags >= 0
            && flags & libc::FD_CLOEXEC != 0
            && unsafe { libc::fstat(fd, &mut st) } == 0
            && st.st_ino == ino
    }

    /// Marks every netfilter netlink socket of the process that lacks it close-on-exec (the
    /// daemon opens none itself: they are libnftables') and remembers the last one.
    fn seal_socket(&mut self) {
        let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
            return;
        };
        for entry in dir.flatten() {
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<RawFd>().ok())
            else {
                continue;
            };
            if !is_netfilter_socket(fd) {
                continue;
            }
            // SAFETY: F_GETFD/F_SETFD on a socket fd only change its close-on-exec flag.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
            }
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: fstat fills st for a valid fd.
            if unsafe { libc::fstat(fd, &mut st) } == 0 {
                self.socket = Some((fd, st.st_ino));
            }
        }
    }
}

fn is_netfilter_socket(fd: RawFd) -> bool {
    let opt = |name| {
        let mut v: c_int = 0;
        let mut len = std::mem::size_of::<c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes one int into v; a non-socket fails with ENOTSOCK.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                name,
                (&mut v as *mut c_int).cast(),
                &mut len,
            )
        };
        (rc == 0).then_some(v)
    };
    opt(libc::SO_DOMAIN) == Some(libc::AF_NETLINK)
        && opt(libc::SO_PROTOCOL) == Some(libc::NETLINK_NETFILTER)
}

fn dlerror() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated message owned by libc.
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        "unknown error".into()
    } else {
        // SAFETY: as above.
        unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table of this test's own, removed however the test ends.
    struct Table(String);
    impl Drop for Table {
        fn drop(&mut self) {
            let _ = run(&format!("delete table ip {}\n", self.0));
        }
    }

    #[test]
    fn commands_run_in_one_transaction_and_errors_are_the_librarys() {
        let t = Table(format!("wnft_unit_{}", std::process::id()));
        let name = &t.0;
        run(&format!(
            "add table ip {name}\nadd set ip {name} s {{ type inet_service; }}\n"
        ))
        .unwrap();
        // The second command fails, so the first is not applied either.
        let e = run(&format!(
            "add element ip {name} s {{ 1 }}\nadd element ip {name} nope {{ 2 }}\n"
        ))
        .unwrap_err()
        .to_string();
        // The line that failed, quoted.
        assert!(e.starts_with("line 2:"), "{e}");
        assert!(
            e.contains(&format!("\nadd element ip {name} nope {{ 2 }}\n")),
            "{e}"
        );
        let listed = run(&format!("list set ip {name} s\n")).unwrap();
        assert!(listed.contains("type inet_service"), "{listed}");
        assert!(!listed.contains("elements"), "{listed}");
        run(&format!("add element ip {name} s {{ 1 }}\n")).unwrap();
        assert!(run(&format!("list set ip {name} s\n"))
            .unwrap()
            .contains("elements = { 1 }"));
    }

    #[test]
    fn the_librarys_netlink_socket_is_not_inherited() {
        run("list tables\n").unwrap();
        let mut found = 0;
        for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
            let fd: RawFd = entry.file_name().to_str().unwrap().parse().unwrap();
            if is_netfilter_socket(fd) {
                found += 1;
                let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
                assert_ne!(flags & libc::FD_CLOEXEC, 0, "fd {fd} is inherited");
            }
        }
        assert!(found >= 1);
    }
}
