#!/usr/bin/env bash
# One command from a fresh Debian 12 machine (as root): install what is needed, build, make
# the default rootfs, start wardend on it, and run a job in a fresh container through the
# `warden` client, printing its output. Everything it made is removed when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/deps.sh
cargo build --release --workspace --bins
rootfs=$(scripts/mkrootfs.sh)
bin=$PWD/target/release

# The OCI runtime alone: a busybox bundle run by warden-runc.
bundle=$(mktemp -d /tmp/warden-quickstart.XXXXXX)
work=$(mktemp -d /tmp/wardend-quickstart.XXXXXX)
cleanup() {
    if [ -n "${daemon:-}" ]; then kill "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; fi
    nft delete table ip warden_quickstart 2>/dev/null || true
    rm -rf "$bundle" "$work"
}
trap cleanup EXIT
ln -s "$rootfs" "$bundle/rootfs"
(cd "$bundle" && "$bin/warden-runc" spec &&
    jq '.process.terminal = false | .process.args = ["/bin/sh", "-c", "echo hello from a warden-runc container: $(hostname), pid $$, $(id)"]' \
        config.json > config.json.new && mv config.json.new config.json &&
    "$bin/warden-runc" run "quickstart-$$")

# The daemon: a container from the default rootfs, and a job in it through the client.
sock=$work/warden.sock
cat > "$work/wardend.yml" <<YAML
server:
  container_grace_time: 30
health_check_server:
  port: 0
network:
  nftables_table: warden_quickstart
YAML
"$bin/wardend" --config "$work/wardend.yml" --socket "$sock" --depot "$work/depot" \
    --rootfs "$rootfs" 2> "$work/wardend.log" &
daemon=$!
for _ in $(seq 200); do [ -S "$sock" ] && break; sleep 0.05; done
handle=$("$bin/warden" --socket "$sock" -- create)
"$bin/warden" --socket "$sock" -- run --handle "$handle" \
    --script 'echo "hello from a wardend container: $(hostname) as $(id -un)"'
"$bin/warden" --socket "$sock" -- destroy --handle "$handle" >/dev/null
