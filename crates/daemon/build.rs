//! Builds `warden-init` (init/warden-init.rs), the static pid 1 of every container, with the
//! same rustc that builds the daemon. It has no dependencies, so plain rustc suffices, and
//! `+crt-static` links glibc statically: the binary runs in any rootfs.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "init/warden-init.rs";
    println!("cargo:rerun-if-changed={src}");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    let status = Command::new(rustc)
        .args([
            "--edition",
            "2021",
            "--crate-type",
            "bin",
            "--target",
            &target,
        ])
        .args([
            "-C",
            "opt-level=s",
            "-C",
            "panic=abort",
            "-C",
            "strip=symbols",
        ])
        .args(["-C", "target-feature=+crt-static"])
        .arg("-o")
        .arg(out.join("warden-init"))
        .arg(src)
        .status()
        .expect("run rustc for warden-init");
    assert!(status.success(), "building {src} failed");
}
