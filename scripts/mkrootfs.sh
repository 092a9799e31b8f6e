#!/usr/bin/env bash
# Builds the default root filesystem from Debian's busybox-static: /bin/sh, the coreutils
# applets, /etc/passwd, /etc/group, /tmp. Usage: scripts/mkrootfs.sh [DIR]
# DIR defaults to $WARDEN_ROOTFS, else $WARDEN_CACHE_DIR/rootfs, else /var/cache/warden/rootfs.
# The result is cached: a rootfs built from the same busybox binary is left as it is.
set -euo pipefail

dir=${1:-${WARDEN_ROOTFS:-${WARDEN_CACHE_DIR:-/var/cache/warden}/rootfs}}
busybox=${BUSYBOX:-/bin/busybox}

if ! "$busybox" --list-full >/dev/null 2>&1; then
    echo "mkrootfs: $busybox is not a busybox that can list its applets (apt-get install busybox-static)" >&2
    exit 1
fi
if ldd "$busybox" >/dev/null 2>&1; then
    echo "mkrootfs: $busybox is dynamically linked; a container rootfs needs busybox-static" >&2
    exit 1
fi

stamp=$(sha256sum "$busybox" | cut -d' ' -f1)
if [ -f "$dir/.warden-rootfs" ] && [ "$(cat "$dir/.warden-rootfs")" = "$stamp" ]; then
    echo "$dir"
    exit 0
fi

tmp=$(mktemp -d "$(dirname "$dir")/.rootfs.XXXXXX" 2>/dev/null || { mkdir -p "$(dirname "$dir")"; mktemp -d "$(dirname "$dir")/.rootfs.XXXXXX"; })
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
mkdir -p "$tmp"/{bin,sbin,usr/bin,usr/sbin,etc,dev,proc,sys,run,var/log,root,home,mnt}
install -m 1777 -d "$tmp/tmp"
install -m 700 -d "$tmp/root"
install -m 755 "$busybox" "$tmp/bin/busybox"
for applet in $("$busybox" --list-full); do
    [ "$applet" = bin/busybox ] && continue
    mkdir -p "$tmp/$(dirname "$applet")"
    ln -sf /bin/busybox "$tmp/$applet"
done
cat > "$tmp/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat > "$tmp/etc/group" <<'GROUP'
root:x:0:
daemon:x:1:
tty:x:5:
nogroup:x:65534:
GROUP
echo "warden" > "$tmp/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$tmp/etc/hosts"
: > "$tmp/etc/resolv.conf"
echo "$stamp" > "$tmp/.warden-rootfs"

rm -rf "$dir.old"
[ -e "$dir" ] && mv "$dir" "$dir.old"
mv "$tmp" "$dir"
trap - EXIT
rm -rf "$dir.old"
echo "$dir"
