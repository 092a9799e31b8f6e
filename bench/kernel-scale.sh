#!/bin/sh
# The kernel operations whose cost grows with the number of live containers, alone, with
# 10 and with N (default 1000) of what each container leaves on the host (see bench/README.md):
#   - a new mount namespace (copied from the host's: every container's overlay and netns
#     bind are in it), made rslave, as a container's init did before wardend made them from
#     a seed: `unshare -m`;
#   - the ping_group_range write in a new network namespace through the host's /proc (as
#     wardend's netns setup did before it used a procfs of its own),
#     beside N other network namespaces (each has its own net.ipv4 sysctl table);
#   - a veth pair added, brought up and deleted beside N others (each up, with its IPv6
#     link-local address and routes, as wardend's host-side ends were before it turned IPv6
#     off on them);
#   - one nftables change (an element added to a map, then removed) in a table with N
#     chains, N verdict-map elements jumping to them and N port mappings, as wardend's
#     table has with N containers that each have a net_out rule and a net_in.
# Needs root, hyperfine, nft. Everything it makes is under a temp dir or named after its pid,
# and goes on exit.
#
#     sudo bench/kernel-scale.sh        # N=1000
#     sudo N=2000 bench/kernel-scale.sh
set -eu
N=${N:-1000}
RUNS=${RUNS:-100}
dir=$(mktemp -d /tmp/kernel-scale.XXXXXX)
table=kscale_$$
holders=""
cleanup() {
    set +e
    for p in $holders; do kill "$p" 2>/dev/null; done
    ip -o link show | grep -o "k$$-[0-9x]*a@" | tr -d @ | while read -r l; do ip link del "$l" 2>/dev/null; done
    wait 2>/dev/null
    # Mounts first (deepest first), then the files under them.
    grep " $dir" /proc/self/mountinfo | cut -d' ' -f5 | sort -r | while read -r m; do
        umount -l "$m"
    done
    nft delete table ip "$table" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

mkdir "$dir/m"
mount -t tmpfs -o size=1m kscale "$dir/m"
mount --make-private "$dir/m"

# $1 mounts under $dir/m (two per container: its overlay and its netns file).
mounts_to() {
    i=$(grep -c " $dir/m/" /proc/self/mountinfo || true)
    while [ "$i" -lt "$1" ]; do
        mkdir -p "$dir/m/$i"
        mount -t tmpfs -o size=4k "k$i" "$dir/m/$i"
        i=$((i + 1))
    done
}

# $1 network namespaces, each kept by a sleeping process.
netns_to() {
    have=$(echo $holders | wc -w)
    while [ "$have" -lt "$1" ]; do
        # Each opens its ping_group_range once, as wardend's netns setup does: the host's
        # /proc keeps a dentry per namespace for the name, all in one hash chain.
        unshare -n sh -c 'read -r _ </proc/sys/net/ipv4/ping_group_range; exec sleep 3600' &
        holders="$holders $!"
        have=$((have + 1))
    done
}

# $1 veth pairs on the host, up.
veths_to() {
    have=$(ip -o link show | grep -c "k$$-[0-9]*a@" || true)
    while [ "$have" -lt "$1" ]; do
        ip link add "k$$-${have}a" type veth peer name "k$$-${have}b"
        ip link set "k$$-${have}a" up
        ip link set "k$$-${have}b" up
        have=$((have + 1))
    done
}

# $1 chains in the table, each with a rule and a verdict-map element jumping to it, and $1
# port mappings.
chains_to() {
    have=$(nft list chains ip "$table" 2>/dev/null | grep -c "chain c" || true)
    f="$dir/chains.nft"
    : >"$f"
    while [ "$have" -lt "$1" ]; do
        a=$((have / 250)); b=$((have % 250 + 1))
        echo "add chain ip $table c$have" >>"$f"
        echo "add rule ip $table c$have tcp dport 443 ip daddr 10.98.$a.0/24 accept" >>"$f"
        echo "add element ip $table out_chains { 10.97.$a.$b : jump c$have }" >>"$f"
        echo "add element ip $table in_ports { $((20000 + have)) : 10.97.$a.$b . 8080 }" >>"$f"
        have=$((have + 1))
    done
    nft -f "$f"
}

nft -f - <<EOF
table ip $table {
  map out_chains { type ipv4_addr : verdict; }
  map in_ports { type inet_service : ipv4_addr . inet_service; }
  chain forward {
    type filter hook forward priority filter; policy accept;
    ip saddr vmap @out_chains
  }
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    fib daddr type local dnat ip to tcp dport map @in_ports
  }
}
EOF
echo "create element ip $table in_ports { 7000 : 10.97.0.1 . 8080 }
delete element ip $table in_ports { 7000 }" >"$dir/change.nft"

measure() {
    hyperfine -N -w 5 -r "$RUNS" --export-json "$dir/$1.json" \
        -n "mount ns" "unshare -m --propagation slave true" \
        -n "netns (sh -c true)" "unshare -n sh -c true" \
        -n "netns + ping_group_range" "unshare -n sh -c 'echo 0 1 >/proc/sys/net/ipv4/ping_group_range'" \
        -n "veth add, up, del (sh)" "sh -c 'ip link add k$$-xa type veth peer name k$$-xb && ip link set k$$-xa up && ip link del k$$-xa'" \
        -n "nft change" "nft -f $dir/change.nft" >/dev/null
    jq -r '.results[] | "\(.command)\t\(.median * 1000)"' "$dir/$1.json" >"$dir/$1.tsv"
}

for level in 10 "$N"; do
    mounts_to $((2 * level))
    netns_to "$level"
    veths_to "$level"
    chains_to "$level"
    measure "$level"
done

printf '%-28s %10s %10s %8s\n' "kernel op (median ms)" 10 "$N" ratio
paste "$dir/10.tsv" "$dir/$N.tsv" | while IFS="$(printf '\t')" read -r name a _ b; do
    awk -v n="$name" -v a="$a" -v b="$b" 'BEGIN { printf "%-28s %10.3f %10.3f %8.2f\n", n, a, b, b / a }'
done
