#!/usr/bin/env bash
# Installs the Debian packages that building, running and testing warden need.
# One list, used by the quick start and by CI.
set -euo pipefail
packages=(
    busybox-static   # the default rootfs
    runc crun        # the runtimes we compare against (tests, bench)
    podman           # drives warden-runc as its OCI runtime in crates/runc/tests/podman.rs
    apparmor         # apparmor_parser: tests/apparmor.rs loads a profile where the kernel enforces AppArmor (the v2 lane)
    docker.io        # dockerd + docker, likewise in crates/runc/tests/docker.rs (its own dockerd)
    systemd dbus     # crates/runc/tests/systemd.rs runs Debian's systemd (and its dbus units) as pid 1 of a namespace
    containerd       # crates/runc/tests/containerd.rs starts its own containerd (docker.io depends on it too)
    criu             # warden-runc checkpoint/restore (crates/runc/tests/checkpoint.rs; works in the v2 lane's 6.1 kernel)
    tini             # a child subreaper for test harnesses: this host's pid 1 reaps nothing
    iproute2 libseccomp-dev
    nftables libnftables1   # wardend's packet filter (its own table): libnftables in process; nft for the tests
    python3-protobuf protobuf-compiler   # an independent protobuf implementation for test vectors
    hyperfine jq procps
    gcc libc6-dev   # static test probes (tests/fixtures/*.c: ICMP echo, escape and keyring probes); libdbus's vendored build
    time         # /usr/bin/time: peak RSS in bench/lifecycle.sh
    qemu-system-x86 kmod python3-venv   # the cgroup v2 lane (scripts/vm-test.sh): qemu, depmod, virtme-ng's venv
    btrfs-progs xfsprogs   # mkfs for the disk quota tests' own filesystems (crates/daemon/tests/disk.rs)
)
if [ "${WARDEN_SKIP_APT:-}" = 1 ]; then exit 0; fi
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    # No package's service starts on install: the tests start what they need themselves
    # (docker.io's would run a system dockerd that adds a bridge and iptables rules).
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}"
fi
