#!/usr/bin/env bash
# The whole test suite. Needs root (real namespaces, cgroups, mounts, sockets).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/deps.sh
WARDEN_TEST_ROOTFS=$(scripts/mkrootfs.sh "${WARDEN_CACHE_DIR:-/var/cache/warden}/rootfs")
export WARDEN_TEST_ROOTFS
cargo build --workspace --bins
# tini -s makes the harness a child subreaper, so detached container inits that exit are
# reaped instead of lingering as zombies under a pid 1 that reaps nothing.
exec tini -s -g -- cargo test --workspace "$@"
