#!/usr/bin/env bash
# The README's Quick start as a newcomer meets it: on a bare Debian 12.
#
# Builds a minimal Debian 12 root file system (mmdebstrap --variant=minbase,
# plus git and ca-certificates only), clones this repository into it and
# runs, as root inside it (chroot), each command line of the README block
# that follows the "tests/bare/run.sh" marker, in order. The lines are read
# from README.md so that the README and this check cannot drift apart. The
# demo runs with a small population (CG_BARE_TENANTS x
# CG_BARE_SUBSCRIPTIONS, default 20 x 10) to keep the time in bounds.
#
# Needs root, chroot, mount and mmdebstrap, and the Debian archive as the
# host's apt sees it. Without them it prints "SKIPPED" and why, and exits 77.
#
# Safety: the tree gets its own proc, a tmpfs /dev with a few device nodes
# (never the host's /dev), a devpts instance and a tmpfs /dev/shm. On every
# exit path (failure and Ctrl-C included) the processes left inside the tree
# are killed, everything mounted under the tree is unmounted, and the tree is
# deleted only once /proc/mounts shows nothing mounted under it.
#
# Knobs (environment):
#   CG_BARE_TMPDIR=/var/tmp     where the tree goes (a disk, not a small tmpfs)
#   CG_BARE_TENANTS=20 CG_BARE_SUBSCRIPTIONS=10   the demo's population
#   CG_BARE_MIRROR=...          an apt source (file or URI) instead of the host's
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
parent=${CG_BARE_TMPDIR:-/var/tmp}
tenants=${CG_BARE_TENANTS:-20}
subs=${CG_BARE_SUBSCRIPTIONS:-10}
min_free_kb=$((8 * 1024 * 1024)) # packages, two builds, the tests' files
marker='<!-- tests/bare/run.sh'

say() { printf '\033[1m==> bare: %s\033[0m\n' "$*" >&2; }
skip() {
    echo "bare: SKIPPED: $*" >&2
    exit 77
}

# ---- what to run: README's marked block ------------------------------------
# The first fenced block after the marker; blank lines and comment lines are
# not commands.
mapfile -t commands < <(awk -v m="$marker" '
    index($0, m) == 1 { found = 1; next }
    found && !inside && /^```/ { inside = 1; next }
    inside && /^```/ { exit }
    inside && !/^[[:space:]]*(#|$)/ { print }' "$root/README.md")
if [ ${#commands[@]} -eq 0 ]; then
    echo "bare: README.md has no command block after \"$marker\"" >&2
    exit 1
fi

# ---- can this machine make a root file system? -----------------------------
[ "$(uname -s)" = Linux ] || skip "not Linux"
[ "$(id -u)" -eq 0 ] || skip "not root (chroot and mount need root)"
for tool in mmdebstrap chroot mount umount; do
    command -v "$tool" >/dev/null 2>&1 ||
        skip "no $tool (apt-get install mmdebstrap)"
done
[ -d "$parent" ] || skip "$parent does not exist (set CG_BARE_TMPDIR)"
avail=$(df -Pk "$parent" | awk 'NR == 2 { print $4 }')
[ "${avail:-0}" -ge "$min_free_kb" ] ||
    skip "$parent has $((avail / 1024)) MiB free, the check needs 8 GiB (set CG_BARE_TMPDIR)"

# The apt sources: the host's Debian 12 entries (its mirror, updates,
# security), so the tree fetches from where this machine's apt does.
mirrors=()
if [ -n "${CG_BARE_MIRROR:-}" ]; then
    mirrors=("$CG_BARE_MIRROR")
else
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        # A bookworm suite as a word of its own: not "cloud-sdk-bookworm".
        if grep -Eq '^[^#]*(^|[[:space:]])bookworm(-[a-z]+)?([[:space:]]|$)' "$f"; then
            mirrors+=("$f")
        fi
    done
fi
# None configured: mmdebstrap's own default (deb.debian.org, with updates
# and security).

# ---- the tree, and leaving nothing behind -----------------------------------
tmp=$(realpath "$(mktemp -d "$parent/contactguard-bare.XXXXXX")")
rootfs=$tmp/rootfs
phases=() # seconds, name, seconds, name...

# mounted_under DIR: the mount points at or under DIR, deepest first.
# /proc/mounts escapes blanks as octal (\040); mktemp's names have none, but
# a parent might.
mounted_under() {
    awk -v d="$1" '
        function unescape(s,   out, i, c) {
            out = ""
            for (i = 1; i <= length(s); i++) {
                if (substr(s, i, 1) == "\\" && substr(s, i + 1, 3) ~ /^[0-7][0-7][0-7]$/) {
                    c = substr(s, i + 1, 1) * 64 + substr(s, i + 2, 1) * 8
                    out = out sprintf("%c", c + substr(s, i + 3, 1))
                    i += 3
                } else {
                    out = out substr(s, i, 1)
                }
            }
            return out
        }
        { p = unescape($2); if (p == d || index(p, d "/") == 1) print length(p) "\t" p }' \
        /proc/mounts | sort -rn | cut -f2-
}

# kill_inside: the processes whose root is the tree (a server a test left,
# a stuck build) were all started by this script; they go first, else the
# mounts stay busy.
kill_inside() {
    local sig pid r left
    for sig in TERM KILL; do
        left=0
        for pid in /proc/[0-9]*; do
            r=$(readlink "$pid/root" 2>/dev/null) || continue
            if [ "$r" = "$rootfs" ]; then
                kill "-$sig" "${pid#/proc/}" 2>/dev/null || true
                left=1
            fi
        done
        [ "$left" -eq 1 ] || return 0
        [ "$sig" = KILL ] || sleep 2
    done
}

cleanup() {
    local rc=$? t0 m left
    trap - EXIT INT TERM HUP
    set +e # every step runs; the deletion alone is conditional
    t0=$(date +%s)
    kill_inside
    while read -r m; do
        if [ -n "$m" ]; then umount "$m" 2>/dev/null || true; fi
    done < <(mounted_under "$tmp")
    while read -r m; do
        [ -n "$m" ] || continue
        echo "bare: $m still busy, detaching it (umount -l)" >&2
        umount -l "$m" || true
    done < <(mounted_under "$tmp")
    if ! left=$(mounted_under "$tmp"); then
        echo "bare: cannot read /proc/mounts; NOT deleting $tmp" >&2
        rc=1
    elif [ -n "$left" ]; then
        echo "bare: still mounted under $tmp; NOT deleting it:" >&2
        echo "$left" >&2
        rc=1
    else
        rm -rf --one-file-system "$tmp"
    fi
    phases+=("$(($(date +%s) - t0))" "cleanup")
    echo "bare: wall-clock per phase:" >&2
    printf 'bare: %5s s  %s\n' "${phases[@]}" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# phase NAME CMD...: runs CMD, records its wall-clock.
phase() {
    local name=$1 t0 rc=0
    shift
    say "$name ($(date -u +%H:%M:%S))"
    t0=$(date +%s)
    "$@" || rc=$?
    phases+=("$(($(date +%s) - t0))" "$name")
    return "$rc"
}

# ---- 1. the root file system --------------------------------------------------
# The host's apt cache, if any, is linked into the tree's (same disk: no
# copy), for mmdebstrap and again for the README's commands (mmdebstrap
# empties it when done), so that packages this machine fetched once are not
# fetched again. It is only read, and apt checks each file against the
# archive's index as it would a download.
# shellcheck disable=SC2016 # expanded by the hook's shell
seed_cache='d="$1/var/cache/apt/archives"; mkdir -p "$d";
    for f in /var/cache/apt/archives/*.deb; do [ -e "$f" ] || exit 0; break; done;
    cp -l /var/cache/apt/archives/*.deb "$d/" 2>/dev/null ||
        cp /var/cache/apt/archives/*.deb "$d/"'

make_rootfs() {
    # The tree shares the host's network, so it resolves names as the host
    # does (mmdebstrap copies resolv.conf; /etc/hosts is copied here).
    # shellcheck disable=SC2016 # expanded by the hook's shell
    mmdebstrap --variant=minbase --include=git,ca-certificates \
        --setup-hook="$seed_cache" \
        --customize-hook='cp /etc/hosts "$1/etc/hosts"' \
        bookworm "$rootfs" "${mirrors[@]}" >"$tmp/mmdebstrap.log" 2>&1
}

if ! phase "rootfs: mmdebstrap --variant=minbase bookworm + git, ca-certificates" make_rootfs; then
    tail -n 30 "$tmp/mmdebstrap.log" >&2
    unreachable=$(grep -Eio -m1 '(could not resolve|temporary failure resolving|failed to fetch|could not connect|unable to connect|connection (failed|refused|timed out)|network is unreachable).*' \
        "$tmp/mmdebstrap.log" || true)
    [ -z "$unreachable" ] || skip "mmdebstrap could not reach the Debian archive: $unreachable"
    echo "bare: mmdebstrap failed (log above)" >&2
    exit 1
fi
echo "bare: $(du -sm "$rootfs" | cut -f1) MiB, $(chroot "$rootfs" dpkg-query -W | wc -l) packages" >&2
phase "apt cache: link the host's packages" sh -c "$seed_cache" sh "$rootfs"
echo "bare: $(find "$rootfs/var/cache/apt/archives" -name '*.deb' | wc -l) packages linked" >&2

# ---- 2. what a running system has: proc, /dev, /dev/pts, /dev/shm -------------
# /dev is a tmpfs of its own with the few nodes programs open, never a bind
# of the host's /dev (deleting through it would delete the host's devices).
mount_tree() {
    local d=$rootfs/dev node name major minor
    mount -t proc proc "$rootfs/proc"
    mount -t tmpfs -o mode=755,size=64k tmpfs "$d"
    for node in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
        IFS=: read -r name major minor <<<"$node"
        if ! mknod -m 666 "$d/$name" c "$major" "$minor" 2>/dev/null; then
            # No mknod here (a container): bind that one node, a file.
            touch "$d/$name"
            mount --bind "/dev/$name" "$d/$name"
        fi
    done
    ln -s /proc/self/fd "$d/fd"
    ln -s /proc/self/fd/0 "$d/stdin"
    ln -s /proc/self/fd/1 "$d/stdout"
    ln -s /proc/self/fd/2 "$d/stderr"
    mkdir "$d/pts" "$d/shm"
    mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$d/pts"
    ln -s pts/ptmx "$d/ptmx"
    mount -t tmpfs -o mode=1777 tmpfs "$d/shm"
}
phase "mounts: proc, dev (tmpfs), dev/pts, dev/shm" mount_tree ||
    skip "cannot mount proc, tmpfs or devpts in the tree"

# ---- 3. the project, cloned as a newcomer would ----------------------------------
clone() {
    local commit
    commit=$(git -C "$root" rev-parse HEAD)
    git -c safe.directory="$root" clone --quiet --no-hardlinks "$root" \
        "$rootfs/root/contactguard"
    git -C "$rootfs/root/contactguard" -c advice.detachedHead=false \
        checkout --quiet "$commit"
    echo "bare: cloned $root at $commit" >&2
    if [ -n "$(git -C "$root" status --porcelain --untracked-files=no)" ]; then
        echo "bare: note: uncommitted changes in $root are not in the clone" >&2
    fi
}
phase "clone" clone

# ---- 4. README's commands, as root, in a login-like environment -------------------
# A clean environment as a root shell on a bare machine has it; only the
# demo's population is added. In the background so that a signal reaches
# the trap at once (wait returns), not when the command is done.
inside() {
    chroot "$rootfs" /usr/bin/env -i HOME=/root USER=root LOGNAME=root \
        SHELL=/bin/bash TERM=dumb \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        CG_DEMO_TENANTS="$tenants" CG_DEMO_SUBSCRIPTIONS="$subs" \
        /bin/bash -c "cd /root/contactguard && $1" </dev/null &
    wait "$!"
}
n=0
for cmd in "${commands[@]}"; do
    n=$((n + 1))
    if ! phase "README command $n/${#commands[@]}: $cmd" inside "$cmd"; then
        echo "bare: FAILED: README command \"$cmd\" failed inside a bare Debian 12" >&2
        exit 1
    fi
done
say "PASSED: README's ${#commands[@]} commands on a bare Debian 12 (minbase + git, ca-certificates)"
