#!/usr/bin/env bash
# The whole test suite. Needs root (real namespaces, cgroups, mounts, sockets).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/deps.sh
# Room for the build (a fresh target/ is about 2.5 GiB) and what the tests write (rootfs,
# depots, the disk tests' filesystem images): a full disk fails tests in ways that do not say so.
need_mib=5120
have_mib=$(( $(df --output=avail -k . | tail -n1) / 1024 ))
built_mib=0
[ ! -d target ] || built_mib=$(( $(du -sk target | cut -f1) / 1024 ))
if [ $((have_mib + built_mib)) -lt "$need_mib" ]; then
    echo "test.sh: only ${have_mib} MiB free on $(df --output=target . | tail -n1) (target/ holds ${built_mib} MiB); the suite needs about ${need_mib} MiB"
    exit 1
fi
WARDEN_TEST_ROOTFS=$(scripts/mkrootfs.sh "${WARDEN_CACHE_DIR:-/var/cache/warden}/rootfs")
export WARDEN_TEST_ROOTFS
cargo build --workspace --bins
# tini -s makes the harness a child subreaper, so detached container inits that exit are
# reaped instead of lingering as zombies under a pid 1 that reaps nothing.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# --no-fail-fast: every test binary runs even when an earlier one failed (cargo stops at the
# first failing binary otherwise, hiding every later failure); cargo still exits non-zero.
tini -s -g -- cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
# One closing line for the whole run (cargo prints one per test binary, the last of which is
# often a doc-test binary with nothing in it).
awk '/^test result:/ { p += $4; f += $6; i += $8 }
     END { printf "total: %d passed, %d failed, %d skipped\n", p, f, i }' "$log"
# The parent cgroup the warden-runc tests share (`/warden-test`, made by the runtime, which
# never removes parents): gone once no test runs. rmdir refuses one that is still in use.
for d in /sys/fs/cgroup/*/warden-test /sys/fs/cgroup/warden-test; do
    if [ -d "$d" ] && ! rmdir "$d" 2>/dev/null; then
        echo "test.sh: warning: $d is still in use after the suite (a leaked cgroup?)" >&2
    fi
done
# The cgroup v2 lane: a second kernel, booted under qemu, runs scripts/vm-lane.txt's tests
# on the unified hierarchy (this host binds every controller to v1). WARDEN_VM_LANE=0 skips
# it (for a quick local run; CI always runs it).
if [ "${WARDEN_VM_LANE:-1}" != 0 ] && [ $# -eq 0 ]; then
    scripts/vm-test.sh || status=1
fi
exit "$status"
