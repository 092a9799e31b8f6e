#!/usr/bin/env bash
# Times a container's whole lifecycle (create, start, wait for exit, delete) of a busybox
# /bin/true bundle, and `run` (create + start + wait + auto-remove in one call), for
# warden-runc (release build), runc and crun in the same run, interleaved; prints median
# and p90 per runtime, the ratio to crun (with and without crun's mount-namespace wrapper),
# and each runtime's peak RSS. Then the commands on a running container: `exec` of
# /bin/true, `update --memory`, `events --stats`.
#
# Usage: bench/lifecycle.sh [-n N] [-r "warden-runc runc crun"] [--rss-runs M]
#   N (default 100, also $N) iterations per runtime and measure.
# Needs root. See bench/README.md.
set -euo pipefail

# A detached container's init is reparented when `create` exits; this host's pid 1 reaps
# nothing, so run under a child subreaper that does (the lifecycle's wait would see zombies
# as exited anyway, but they would pile up).
if [ -z "${LIFECYCLE_UNDER_TINI:-}" ] && command -v tini >/dev/null; then
    LIFECYCLE_UNDER_TINI=1 exec tini -s -- "$0" "$@"
fi

N=${N:-100}
RSS_RUNS=${RSS_RUNS:-5}
RUNTIMES="warden-runc runc crun"
while [ $# -gt 0 ]; do
    case $1 in
        -n) N=$2; shift 2 ;;
        -r|--runtimes) RUNTIMES=$2; shift 2 ;;
        --rss-runs) RSS_RUNS=$2; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "lifecycle.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
case $N in ''|*[!0-9]*) echo "lifecycle.sh: N must be a number" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "lifecycle.sh: needs root" >&2; exit 1; }

cd "$(dirname "$0")/.."
ws=$PWD

export PATH="$HOME/.cargo/bin:$PATH"
for tool in jq /usr/bin/time unshare; do
    command -v "$tool" >/dev/null || { echo "lifecycle.sh: $tool is missing (scripts/deps.sh installs it)" >&2; exit 1; }
done

WARDEN_RUNC=${WARDEN_RUNC:-$ws/target/release/warden-runc}
case " $RUNTIMES " in
    *" warden-runc "*)
        if [ -z "${WARDEN_RUNC_NO_BUILD:-}" ]; then
            echo "building warden-runc (release)..." >&2
            cargo build --release -q -p warden-runc >&2
        fi
        [ -x "$WARDEN_RUNC" ] || { echo "lifecycle.sh: $WARDEN_RUNC is not executable" >&2; exit 1; }
        ;;
esac

rootfs=$(scripts/mkrootfs.sh "${WARDEN_ROOTFS:-${WARDEN_CACHE_DIR:-/var/cache/warden}/rootfs}")
tmp=$(mktemp -d /tmp/warden-bench.XXXXXX)

# The command prefix of each runtime, with its own state root. crun refuses this host's
# hybrid cgroup layout when it sets up cgroups (create, run) unless /sys/fs/cgroup/unified is
# out of its sight, so those two go through a private mount namespace where it is unmounted
# (its cost is measured below and printed with the results); start, state and delete do not
# need it.
declare -A PREFIX
prefix() {
    case $1 in
        warden-runc) echo "$WARDEN_RUNC" ;;
        runc) echo runc ;;
        crun) echo crun ;;
        *) echo "lifecycle.sh: unknown runtime $1" >&2; exit 2 ;;
    esac
}
CRUN_WRAP=(unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; exec "$0" "$@"')
rt_argv() { # RUNTIME COMMAND: sets ARGV to the command line up to COMMAND
    case $1:$2 in
        crun:create|crun:run) ARGV=("${CRUN_WRAP[@]}" "${PREFIX[crun]}" --root "$tmp/root/crun" "$2") ;;
        *) ARGV=("${PREFIX[$1]}" --root "$tmp/root/$1" "$2") ;;
    esac
}
rt() { # RUNTIME COMMAND ARGS...: runs one runtime command
    local r=$1 cmd=$2; shift 2
    rt_argv "$r" "$cmd"
    "${ARGV[@]}" "$@"
}

active=()
for r in $RUNTIMES; do
    p=$(prefix "$r")
    if ! command -v "$p" >/dev/null; then
        echo "lifecycle.sh: $r not found, skipping it" >&2
        continue
    fi
    PREFIX[$r]=$(command -v "$p")
    active+=("$r")
done
[ ${#active[@]} -gt 0 ] || { echo "lifecycle.sh: no runtime to measure" >&2; exit 1; }

cleanup() {
    set +e
    for r in "${active[@]}"; do
        for id in $(rt "$r" list -q 2>/dev/null); do
            rt "$r" delete --force "$id" >/dev/null 2>&1
        done
    done
    for c in /sys/fs/cgroup/*/warden-bench; do
        [ -d "$c" ] || continue
        rmdir "$c"/*/ 2>/dev/null
        rmdir "$c" 2>/dev/null
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

# One bundle per runtime, the same config but for its cgroup: /bin/true in busybox, the
# shared rootfs read-only, no terminal.
for r in "${active[@]}"; do
    b=$tmp/bundle/$r
    mkdir -p "$b" "$tmp/root/$r"
    # warden-runc's default spec (runc's, when warden-runc is not measured).
    if [ -x "$WARDEN_RUNC" ]; then "$WARDEN_RUNC" spec -b "$b"; else (cd "$b" && runc spec); fi
    # ociVersion 1.0.2: Debian's crun 1.8 refuses any later version.
    jq --arg rootfs "$rootfs" --arg cg "/warden-bench/$r" '
        .ociVersion = "1.0.2" | .process.terminal = false | .process.args = ["/bin/true"]
        | .root = {path: $rootfs, readonly: true} | .linux.cgroupsPath = $cg' \
        "$b/config.json" > "$b/config.json.new"
    mv "$b/config.json.new" "$b/config.json"
done

# The kernel's floor for one container: the bundle's namespaces made by unshare(1) and
# /bin/true exec'd from the same rootfs, then everything torn down, timed like `run --rm`.
# No cgroup, no mounts in the new namespace, no config to read: no runtime can do less.
FLOOR=(unshare --fork)
for ns in $(jq -r '.linux.namespaces[].type' "$tmp/bundle/${active[0]}/config.json"); do
    case $ns in
        mount) FLOOR+=(--mount) ;; pid) FLOOR+=(--pid) ;; network) FLOOR+=(--net) ;;
        ipc) FLOOR+=(--ipc) ;; uts) FLOOR+=(--uts) ;; cgroup) FLOOR+=(--cgroup) ;;
        user) FLOOR+=(--user) ;; time) FLOOR+=(--time) ;;
    esac
done
FLOOR+=(--root "$rootfs" /bin/true)
"${FLOOR[@]}" || { echo "lifecycle.sh: the floor command failed: ${FLOOR[*]}" >&2; exit 1; }

# A sleep in a builtin: read with a timeout on a pipe nobody writes to.
exec {SLEEP_FD}<> <(:)
nap() { read -r -t "$1" -u "$SLEEP_FD" _ || :; }

fail() { # RUNTIME WHAT
    echo "lifecycle.sh: $1: $2 failed:" >&2
    cat "$tmp/err" >&2
    exit 1
}

# Waits (at most 10s) until pid $1 is gone or a zombie: only builtins, so the wait costs
# every runtime the same.
wait_exit() {
    local pid=$1 stat i
    for ((i = 0; i < 20000; i++)); do
        { read -r stat < "/proc/$pid/stat"; } 2>/dev/null || return 0
        stat=${stat##*) }
        [ "${stat%% *}" = Z ] && return 0
        nap 0.0005
    done
    echo "lifecycle.sh: init $pid did not exit within 10s" >&2
    return 1
}

now_us() { echo "${EPOCHREALTIME/./}"; }

lifecycle() { # RUNTIME ID: create, start, wait for exit, delete
    local r=$1 id=$2 pid
    rt "$r" create --bundle "$tmp/bundle/$r" --pid-file "$tmp/$r.pid" "$id" >/dev/null 2>"$tmp/err" || fail "$r" "create $id"
    rt "$r" start "$id" >/dev/null 2>>"$tmp/err" || fail "$r" "start $id"
    read -r pid < "$tmp/$r.pid" || [ -n "$pid" ]  # no trailing newline
    wait_exit "$pid" || fail "$r" "wait $id"
    rt "$r" delete "$id" >/dev/null 2>>"$tmp/err" || fail "$r" "delete $id"
}

run_rm() { # RUNTIME ID: run in the foreground, removed when it exits
    rt "$1" run --bundle "$tmp/bundle/$1" "$2" >/dev/null 2>"$tmp/err" || fail "$1" "run $2"
}

# Sanity and warm-up: every runtime does both once, untimed.
for r in "${active[@]}"; do
    lifecycle "$r" "warm-$r"
    run_rm "$r" "warm-run-$r"
done

echo "measuring: N=$N, runtimes: ${active[*]}" >&2
for ((i = 0; i < N; i++)); do
    # Interleaved, and the order rotates, so drift and caches hit every runtime alike.
    k=${#active[@]}
    for ((j = 0; j < k; j++)); do
        r=${active[$(((i + j) % k))]}
        t0=$(now_us); lifecycle "$r" "lc-$r-$i"; t1=$(now_us)
        echo $((t1 - t0)) >> "$tmp/lifecycle.$r"
        t0=$(now_us); run_rm "$r" "run-$r-$i"; t1=$(now_us)
        echo $((t1 - t0)) >> "$tmp/run.$r"
    done
    t0=$(now_us); "${FLOOR[@]}"; t1=$(now_us)
    echo $((t1 - t0)) >> "$tmp/floor"
    if (((i + 1) % 25 == 0)); then echo "  $((i + 1))/$N" >&2; fi
done

# Commands on a running container (a `sleep` in the same bundle): exec of /bin/true,
# update of the memory limit (alternating, so every call writes), events --stats (crun has
# no events command). Interleaved like the rest. crun's exec and update join or change
# cgroups, so they take the wrapper too (its cost is printed).
OPS="exec update events"
op_argv() { # RUNTIME OP ID I: sets ARGV to the op's whole command line
    local r=$1 op=$2 id=$3 i=$4 cmd=$2
    [ "$op" = events ] && [ "$r" = crun ] && { ARGV=(); return; }
    case $r:$op in
        crun:exec|crun:update) ARGV=("${CRUN_WRAP[@]}" "${PREFIX[crun]}" --root "$tmp/root/crun" "$cmd") ;;
        *) ARGV=("${PREFIX[$r]}" --root "$tmp/root/$r" "$cmd") ;;
    esac
    case $op in
        exec) ARGV+=("$id" /bin/true) ;;
        update) ARGV+=(--memory "$(((64 + i % 2) << 20))" "$id") ;;
        events) ARGV+=(--stats "$id") ;;
    esac
}
for r in "${active[@]}"; do
    b=$tmp/bundle-sleep/$r
    mkdir -p "$b"
    jq '.process.args = ["sleep", "100000"]' "$tmp/bundle/$r/config.json" > "$b/config.json"
    rt "$r" create --bundle "$b" "ops-$r" >/dev/null 2>"$tmp/err" || fail "$r" "create ops-$r"
    rt "$r" start "ops-$r" >/dev/null 2>>"$tmp/err" || fail "$r" "start ops-$r"
    for op in $OPS; do  # warm-up and sanity
        op_argv "$r" "$op" "ops-$r" 0
        [ ${#ARGV[@]} -gt 0 ] || continue
        "${ARGV[@]}" >/dev/null 2>"$tmp/err" || fail "$r" "$op ops-$r"
    done
done
echo "measuring exec, update, events on a running container: N=$N" >&2
for ((i = 0; i < N; i++)); do
    k=${#active[@]}
    for ((j = 0; j < k; j++)); do
        r=${active[$(((i + j) % k))]}
        for op in $OPS; do
            op_argv "$r" "$op" "ops-$r" "$i"
            [ ${#ARGV[@]} -gt 0 ] || continue
            t0=$(now_us)
            "${ARGV[@]}" >/dev/null 2>"$tmp/err" || fail "$r" "$op ops-$r"
            t1=$(now_us)
            echo $((t1 - t0)) >> "$tmp/$op.$r"
        done
    done
done
for r in "${active[@]}"; do
    rt "$r" delete --force "ops-$r" >/dev/null 2>&1 || :
done

# Peak RSS (max over RSS_RUNS) of `create` and of `run`, from GNU time.
rss() { # RUNTIME create|run -> KiB
    local r=$1 what=$2 max=0 k id v
    for ((k = 0; k < RSS_RUNS; k++)); do
        id=rss-$what-$r-$k
        rt_argv "$r" "$what"
        if [ "$what" = create ]; then
            /usr/bin/time -f %M -o "$tmp/rss" "${ARGV[@]}" --bundle "$tmp/bundle/$r" "$id" \
                >/dev/null 2>"$tmp/err" || fail "$r" "create $id"
            rt "$r" start "$id" >/dev/null 2>>"$tmp/err" || fail "$r" "start $id"
            rt "$r" delete --force "$id" >/dev/null 2>>"$tmp/err" || fail "$r" "delete $id"
        else
            /usr/bin/time -f %M -o "$tmp/rss" "${ARGV[@]}" --bundle "$tmp/bundle/$r" "$id" \
                >/dev/null 2>"$tmp/err" || fail "$r" "run $id"
        fi
        v=$(tail -n1 "$tmp/rss")
        ((v > max)) && max=$v
    done
    echo "$max"
}

# The crun wrapper alone (unshare + sh + umount + exec of a no-op), per call.
wrapper_us() {
    local k t0 t1 all=()
    for ((k = 0; k < 50; k++)); do
        t0=$(now_us)
        "${CRUN_WRAP[@]}" true
        t1=$(now_us)
        all+=($((t1 - t0)))
    done
    printf '%s\n' "${all[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

pct() { # FILE P -> the P-th percentile (nearest rank), in microseconds
    sort -n "$1" | awk -v p="$2" '{a[NR]=$1} END {i=int((NR*p+99)/100); if (i<1) i=1; print a[i]}'
}
ms() { awk -v us="$1" 'BEGIN {printf "%.2f", us/1000}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b>0) printf "%.2fx", a/b; else print "-"}'; }

declare -A LC_MED LC_P90 RUN_MED RUN_P90 RSS_CREATE RSS_RUN
for r in "${active[@]}"; do
    LC_MED[$r]=$(pct "$tmp/lifecycle.$r" 50); LC_P90[$r]=$(pct "$tmp/lifecycle.$r" 90)
    RUN_MED[$r]=$(pct "$tmp/run.$r" 50); RUN_P90[$r]=$(pct "$tmp/run.$r" 90)
    RSS_CREATE[$r]=$(rss "$r" create); RSS_RUN[$r]=$(rss "$r" run)
done

# Every container was deleted: nothing should be left in the cgroup tree.
left=$(find /sys/fs/cgroup/*/warden-bench -mindepth 1 -maxdepth 1 -type d 2>/dev/null || true)
[ -z "$left" ] || { echo "warning: cgroups left behind:"; echo "$left"; } >&2

echo
echo "busybox /bin/true, N=$N per runtime, interleaved; times in ms; ratio = median / crun's median"
echo "host: $(nproc) cores, kernel $(uname -r), cgroup v1"
printf '%-12s | %9s %9s %7s | %9s %9s %7s | %11s %11s\n' \
    runtime "lifecycle" "p90" "ratio" "run --rm" "p90" "ratio" "RSS create" "RSS run"
printf '%s\n' "-------------+-----------------------------+-----------------------------+------------------------"
for r in "${active[@]}"; do
    base_lc=${LC_MED[crun]:-0}; base_run=${RUN_MED[crun]:-0}
    printf '%-12s | %9s %9s %7s | %9s %9s %7s | %8s MiB %7s MiB\n' "$r" \
        "$(ms "${LC_MED[$r]}")" "$(ms "${LC_P90[$r]}")" "$(ratio "${LC_MED[$r]}" "$base_lc")" \
        "$(ms "${RUN_MED[$r]}")" "$(ms "${RUN_P90[$r]}")" "$(ratio "${RUN_MED[$r]}" "$base_run")" \
        "$(awk -v k="${RSS_CREATE[$r]}" 'BEGIN {printf "%.1f", k/1024}')" \
        "$(awk -v k="${RSS_RUN[$r]}" 'BEGIN {printf "%.1f", k/1024}')"
done
wrap=0
if [ -n "${PREFIX[crun]:-}" ]; then
    wrap=$(wrapper_us)
    # crun without the wrapper: its median less the wrapper's, once per lifecycle (create)
    # and once per run; the ratios of every runtime to that.
    nw_lc=$((LC_MED[crun] - wrap)); nw_run=$((RUN_MED[crun] - wrap))
    printf '%-12s | %9s %9s %7s | %9s %9s %7s |\n' "crun -wrap" "$(ms "$nw_lc")" "" "1.00x" \
        "$(ms "$nw_run")" "" "1.00x"
    for r in "${active[@]}"; do
        [ "$r" = crun ] && continue
        echo "  $r / crun without its wrapper: lifecycle $(ratio "${LC_MED[$r]}" "$nw_lc"), run --rm $(ratio "${RUN_MED[$r]}" "$nw_run")"
    done
    echo
    echo "crun's figures include its mount-namespace wrapper: $(ms "$wrap") ms per call (median),"
    echo "once per lifecycle (create) and once per run; \"crun -wrap\" subtracts it."
fi
floor=$(pct "$tmp/floor" 50)
echo
echo "kernel floor (${FLOOR[*]/#$rootfs/ROOTFS}): $(ms "$floor") ms median, p90 $(ms "$(pct "$tmp/floor" 90)")"
if [ -n "${PREFIX[crun]:-}" ]; then
    echo "  floor / crun without its wrapper: lifecycle $(ratio "$floor" "$nw_lc"), run --rm $(ratio "$floor" "$nw_run")"
fi
for r in "${active[@]}"; do
    echo "  $r above the floor: lifecycle $(ms $((LC_MED[$r] - floor))) ms, run --rm $(ms $((RUN_MED[$r] - floor))) ms"
done
if [ -n "${PREFIX[crun]:-}" ]; then
    echo "  crun -wrap above the floor: lifecycle $(ms $((nw_lc - floor))) ms, run --rm $(ms $((nw_run - floor))) ms"
fi
echo
echo "commands on a running container (sleep), N=$N; median and p90 in ms; ratio = median / crun's without its wrapper"
echo "(crun's exec and update run in the wrapper: \"-wrap\" subtracts its median; crun has no events)"
printf '%-12s' op
for r in "${active[@]}"; do printf ' | %-22s' "$r"; done
[ -n "${PREFIX[crun]:-}" ] && printf ' | %-10s' "crun -wrap"
echo
for op in $OPS; do
    printf '%-12s' "$op"
    base=0
    if [ -s "$tmp/$op.crun" ]; then base=$(($(pct "$tmp/$op.crun" 50) - wrap)); fi
    for r in "${active[@]}"; do
        if [ -s "$tmp/$op.$r" ]; then
            med=$(pct "$tmp/$op.$r" 50)
            printf ' | %6s %6s %8s' "$(ms "$med")" "$(ms "$(pct "$tmp/$op.$r" 90)")" \
                "$( [ "$base" -gt 0 ] && ratio "$med" "$base" || echo -)"
        else
            printf ' | %-22s' "-"
        fi
    done
    if [ -n "${PREFIX[crun]:-}" ]; then
        if [ "$base" -gt 0 ]; then printf ' | %-10s' "$(ms "$base")"; else printf ' | %-10s' "-"; fi
    fi
    echo
done
echo "RSS: max resident set of the runtime process over $RSS_RUNS calls (GNU time %M; for run it includes the waited-for container)."
