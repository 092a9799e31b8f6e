#!/usr/bin/env bash
# One command from a fresh Debian 12 machine (as root): install what is needed, build,
# make the default rootfs, and run a busybox container that prints something.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/deps.sh
cargo build --release --workspace --bins
rootfs=$(scripts/mkrootfs.sh)
bundle=$(mktemp -d /tmp/warden-quickstart.XXXXXX)
trap 'rm -rf "$bundle"' EXIT
ln -s "$rootfs" "$bundle/rootfs"
cd "$bundle"
runc=$OLDPWD/target/release/warden-runc
"$runc" spec
jq '.process.terminal = false | .process.args = ["/bin/sh", "-c", "echo hello from a warden-runc container: $(hostname), pid $$, $(id)"]' \
    config.json > config.json.new && mv config.json.new config.json
exec "$runc" run "quickstart-$$"
