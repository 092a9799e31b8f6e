#!/usr/bin/env bash
# The cgroup v2 lane: boots Debian's own kernel (the one linux-image-amd64 depends on) under
# qemu with virtme-ng, over this machine's filesystem, with the unified cgroup v2 hierarchy and
# every controller, and runs the test binaries listed in scripts/vm-lane.txt inside. The guest
# writes one result line per binary into a directory shared with the host; this script prints
# them, a total, and exits non-zero when a binary failed, the guest did not finish (no boot,
# a hang past the time limit), or the kernel could not be fetched.
#
#   scripts/vm-test.sh              the whole lane
#   scripts/vm-test.sh FILTER...    only the lane's lines whose text contains a FILTER
#
# Environment: WARDEN_VM_TIMEOUT (seconds for the whole guest, default 1200), WARDEN_VM_MEMORY
# (default 4G), WARDEN_VM_DIR (where the kernel, virtme-ng and the guest's test rootfs are
# kept; default /var/lib/warden/vm: the guest sees the host's files, but a fresh tmpfs on
# /var/cache and on /tmp, so neither may hold what the guest reads).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
export PATH="$HOME/.cargo/bin:$PATH"
cache=${WARDEN_VM_DIR:-/var/lib/warden/vm}
timeout_s=${WARDEN_VM_TIMEOUT:-1200}
memory=${WARDEN_VM_MEMORY:-4G}
# virtme-ng from PyPI, pinned: the guest init and its command line are its own, and a new
# release may change them.
vng_version=1.42

# Every way out says why on stdout, which CI keeps: a lane that died quietly before it booted
# once left CI red with nothing after the host's total.
die() { echo "vm-test: $*"; exit 1; }
trap 'echo "vm-test: line $LINENO failed (exit $?): $BASH_COMMAND"' ERR
[ "$(id -u)" = 0 ] || die "needs root (the guest runs the suite as root over this filesystem)"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 is missing (scripts/deps.sh installs it)"
command -v depmod >/dev/null || die "depmod is missing (package kmod; scripts/deps.sh installs it)"
mkdir -p "$cache"

# virtme-ng, in a venv of its own so nothing of the host's Python changes.
vng=$cache/venv-$vng_version/bin/vng
if [ ! -x "$vng" ]; then
    rm -rf "$cache/venv-$vng_version"
    python3 -m venv "$cache/venv-$vng_version" || die "python3 -m venv failed"
    "$cache/venv-$vng_version/bin/pip" install -q "virtme-ng==$vng_version" ||
        die "pip could not install virtme-ng==$vng_version"
fi

# The kernel package, unpacked once: boot/vmlinuz-* and lib/modules/<version>/, which
# virtme-ng links into the guest's /lib/modules so the guest's modprobe finds them.
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
    awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
[ -n "$pkg" ] || die "cannot tell which kernel package linux-image-amd64 depends on (apt-get update?)"
kdir=$cache/$pkg
if ! ls "$kdir"/boot/vmlinuz-* >/dev/null 2>&1; then
    tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
    (cd "$tmp" && apt-get download -q "$pkg" >/dev/null 2>&1) ||
        { rm -rf "$tmp"; die "apt-get download $pkg failed"; }
    dpkg-deb -x "$tmp"/*.deb "$tmp/root" || { rm -rf "$tmp"; die "cannot unpack $pkg"; }
    rm -rf "$kdir"
    mv "$tmp/root" "$kdir"
    rm -rf "$tmp"
fi
kimg=$(ls "$kdir"/boot/vmlinuz-* | head -n1)

# The test binaries, built here (the guest only runs them: cargo would write into target/).
rootfs=$(scripts/mkrootfs.sh "$cache/rootfs")
cargo build -q --workspace --bins
# A lane line is `[NAME=VALUE...] <package> <test target> [arguments]`: the assignments are
# the test binary's environment (e.g. WARDEN_REQUIRE_CRIU=1, where a test that could skip
# must not). split_line sets envs, pkgname, target and args from one line.
split_line() {
    local rest=$1
    envs=()
    while [[ $rest =~ ^[[:space:]]*([A-Za-z_][A-Za-z0-9_]*=[^[:space:]]*)[[:space:]]+(.*)$ ]]; do
        envs+=("${BASH_REMATCH[1]}")
        rest=${BASH_REMATCH[2]}
    done
    read -r pkgname target args <<< "$rest"
}
lane=()
while IFS= read -r line; do
    line=${line%%#*}
    [ -n "${line// /}" ] || continue
    if [ $# -gt 0 ]; then
        keep=
        for f in "$@"; do case $line in *"$f"*) keep=1 ;; esac; done
        [ -n "$keep" ] || continue
    fi
    lane+=("$line")
done < scripts/vm-lane.txt
[ ${#lane[@]} -gt 0 ] || die "no line of scripts/vm-lane.txt matches: $*"

out=$(mktemp -d /tmp/warden-vm.XXXXXX)
pgid=
cleanup() {
    # The whole group: vng, qemu and anything qemu started.
    if [ -n "$pgid" ]; then kill -KILL -- "-$pgid" 2>/dev/null || true; fi
    rm -rf "$out"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

{
    echo '#!/bin/sh'
    echo "cd '$repo' || exit 1"
    echo "export WARDEN_TEST_ROOTFS='$rootfs' PATH='$PATH' RUST_BACKTRACE=0"
    # The guest's /tmp is an overlay, which overlayfs refuses as an upper layer: the tests'
    # temp dirs (container depots among them) go to a tmpfs of their own.
    echo "mkdir -p /run/warden-tmp && mount -t tmpfs -o mode=1777 tmpfs /run/warden-tmp || exit 1"
    echo "export TMPDIR=/run/warden-tmp"
    # The guest's root is 9p without a cache: every exec read its binary from the host again,
    # and the tests exec the runtime for every container and wardend for every job (the
    # lane ran past its 20 minutes). The binaries, without their debug info, the engines the
    # tests drive and the test rootfs are copied into a tmpfs once and bound over their
    # paths, so that every path stays what the tests were built with.
    echo "mkdir -p /run/warden-bin && mount -t tmpfs tmpfs /run/warden-bin || exit 1"
    echo 'local_copy() {'
    echo '    c=/run/warden-bin/$(echo "$1" | tr / _)'
    echo '    [ ! -e "$c" ] || return 0'
    echo '    if [ -d "$1" ]; then cp -a "$1" "$c"; else objcopy --strip-debug "$1" "$c"; fi &&'
    echo '        mount --bind "$c" "$1"'
    echo '}'
    echo "local_copy '$rootfs' || exit 1"
    for b in $(cargo metadata -q --no-deps --format-version 1 |
        jq -r '.packages[].targets[] | select(.kind == ["bin"]) | .name'); do
        echo "local_copy '$repo/target/debug/$b' || exit 1"
    done
    for b in podman conmon containerd containerd-shim-runc-v2 ctr runc crun criu; do
        if p=$(command -v "$b"); then echo "local_copy '$(readlink -f "$p")' || exit 1"; fi
    done
    echo "uname -r > '$out/kernel'"
    echo "cat /sys/fs/cgroup/cgroup.controllers > '$out/controllers'"
} > "$out/guest.sh"
n=0
for line in "${lane[@]}"; do
    split_line "$line"
    exe=$(cargo test -q -p "$pkgname" --test "$target" --no-run --message-format=json |
        jq -r --arg t "$target" 'select(.reason == "compiler-artifact" and .executable != null
            and .target.name == $t and .target.kind == ["test"]) | .executable' |
        tail -n1)
    [ -n "$exe" ] || die "cannot build test $target of $pkgname (scripts/vm-lane.txt: $line)"
    n=$((n + 1))
    # Each binary under tini (a subreaper, as on the host) and a time limit of its own.
    # The result line is `<exit status> <package> <target> <seconds>`.
    echo "local_copy '$exe' || exit 1" >> "$out/guest.sh"
    echo "s=\$(date +%s); env ${envs[*]} timeout -k 10 600 tini -s -g -- '$exe' $args > '$out/$n.log' 2>&1; rc=\$?; echo \"\$rc $pkgname $target \$((\$(date +%s) - s))\" >> '$out/results'" >> "$out/guest.sh"
done
echo "echo done > '$out/finished'" >> "$out/guest.sh"
chmod +x "$out/guest.sh"

echo "vm-test: booting $pkg ($(basename "$kimg")) for ${#lane[@]} test binaries, limit ${timeout_s}s"
start=$(date +%s)
# /dev/kvm exists on our machines but a KVM guest hangs at boot (nested virtualization):
# software emulation. setsid: its own process group, killed whole on a time-out or exit.
# vng runs virtme-run by name: the venv's bin goes on its PATH (only its: not the guest's).
PATH="$(dirname "$vng"):$PATH" setsid "$vng" --run "$kimg" --disable-kvm --cpus 2 --memory "$memory" --rwdir "$out" \
    --exec "$out/guest.sh" > "$out/console" 2>&1 < /dev/null &
pid=$!
pgid=$pid
while kill -0 "$pid" 2>/dev/null; do
    if [ $(($(date +%s) - start)) -ge "$timeout_s" ]; then
        kill -KILL -- "-$pgid" 2>/dev/null || true
        echo "vm-test: the guest ran past ${timeout_s}s and was killed"
        break
    fi
    sleep 1
done
wait "$pid" 2>/dev/null || true
pgid=
echo "vm-test: guest kernel $(cat "$out/kernel" 2>/dev/null || echo '?'), controllers: $(cat "$out/controllers" 2>/dev/null || echo '?'), $(($(date +%s) - start))s"

status=0
p=0 f=0 i=0
n=0
for line in "${lane[@]}"; do
    n=$((n + 1))
    split_line "$line"
    # The n-th result line is the n-th lane line's (a target may be on two lines).
    read -r rc secs <<< "$(awk -v n="$n" 'NR == n { print $1, $4; exit }' "$out/results" 2>/dev/null || true)"
    counts=$(awk '/^test result:/ { p += $4; f += $6; i += $8 } END { print p+0, f+0, i+0 }' "$out/$n.log" 2>/dev/null || echo "0 0 0")
    read -r tp tf ti <<< "$counts"
    p=$((p + tp)) f=$((f + tf)) i=$((i + ti))
    if [ "$rc" = 0 ]; then
        echo "vm-test: ok     $pkgname $target ($tp passed, $ti skipped, ${secs}s)"
    else
        status=1
        echo "vm-test: FAILED $pkgname $target (exit ${rc:-none}; $tp passed, $tf failed${secs:+, ${secs}s})"
        if [ -f "$out/$n.log" ]; then
            { grep -vE '^test .* ok$' "$out/$n.log" || true; } | tail -n 60 | sed 's/^/    /'
        fi
    fi
done
if [ ! -f "$out/finished" ]; then
    status=1
    echo "vm-test: the guest did not finish its script; the console's last lines:"
    tail -n 30 "$out/console" | sed 's/^/    /' || true
fi
echo "vm-test total: $p passed, $f failed, $i skipped"
exit "$status"
