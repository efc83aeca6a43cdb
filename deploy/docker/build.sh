#!/usr/bin/env bash
# Builds the contactguard image with podman and smoke-tests it.
#
#   deploy/docker/build.sh [WORK_DIR]
#
# No container registry is needed: the Debian 12 base (minbase, what
# debian:12-slim is) comes from mmdebstrap over the Debian archive and is
# imported under the name the Dockerfile asks for. The build context is the
# tree's files (git ls-files), so nothing local leaks in. Everything -- the
# base, podman's storage, the image -- lives under WORK_DIR (default: a
# temporary directory) and is removed at exit: nothing is cached outside the
# tree.
#
# Smoke test, inside the image, on a read-only root file system without
# network: the process runs as uid 10001; no compiler and no -dev package
# is installed; every binary is there; contactguard-worker prints its
# effective configuration (--dump-config: every runtime library loads);
# contactguard-config composes a configuration with a secret file using
# the image's jq; contactguard-eval decides a body exactly as the binary
# built on this machine does (BUILD_DIR, default build/).
#
# Exit status: 0 built and smoke-tested; 77 SKIPPED (this machine cannot
# run containers; the reason is printed, and written to $REPORT if set);
# 1 anything else.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build_dir=${BUILD_DIR:-$root/build}
work=${1:-}
if [ -z "$work" ]; then
    work=$(mktemp -d /tmp/contactguard-image.XXXXXX)
fi
mkdir -p "$work"
work=$(cd "$work" && pwd)
image=localhost/contactguard:smoke
base=docker.io/library/debian:12-slim
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

say() { printf 'image: %s\n' "$*" >&2; }
# REPORT (optional): a file that gets the outcome line too, for a CI log.
outcome() {
    echo "$*"
    if [ -n "${REPORT:-}" ]; then echo "$*" >"$REPORT"; fi
}
skip() {
    outcome "SKIPPED: the container image was not built: $*"
    exit 77
}

P=()
cleanup() {
    local rc=$?
    if [ ${#P[@]} -gt 0 ]; then
        "${P[@]}" rmi -a -f >/dev/null 2>&1 || true
        "${P[@]}" system reset -f >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
# A signal (ctest's timeout, Ctrl-C) still cleans up: exit runs the trap.
trap 'exit 143' TERM
trap 'exit 130' INT

for tool in podman mmdebstrap git; do
    command -v "$tool" >/dev/null 2>&1 || skip "$tool is not installed"
done
[ "$(id -u)" -eq 0 ] || skip "rootful podman needs root (uid $(id -u))"

# podman's storage under $work, overlay where the kernel allows it, else
# vfs (no module or fuse needed, but every layer and container is a full
# copy). runc rather than crun: crun refuses hybrid cgroup v1/v2 hosts.
# The default rlimits podman asks for (nofile 1048576, nproc max) need
# CAP_SYS_RESOURCE, which sandboxes often drop: ask for what we have.
runtime=()
if command -v runc >/dev/null 2>&1; then
    runtime=(--runtime "$(command -v runc)")
fi
nofile=$(ulimit -Hn)
[ "$nofile" = unlimited ] && nofile=1048576
[ "$nofile" -gt 65536 ] && nofile=65536
limits=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=4096:4096")

# Can this machine run a container at all? A root file system of one
# program and its libraries answers in seconds, before minutes of
# mmdebstrap.
say "probing podman"
probe=$work/probe
mkdir -p "$probe/bin"
cp /bin/true "$probe/bin/"
for lib in $(ldd /bin/true | grep -o '/[^ ]*'); do
    mkdir -p "$probe$(dirname "$lib")"
    cp "$lib" "$probe$lib"
done
tar -C "$probe" -cf "$work/probe.tar" .
out="podman was not tried"
for driver in overlay vfs; do
    P=(podman --root "$work/storage-$driver" --runroot "$work/run-$driver"
        --storage-driver "$driver" --cgroup-manager cgroupfs "${runtime[@]}")
    if out=$("${P[@]}" import "$work/probe.tar" localhost/cg-probe:1 2>&1) &&
        out=$("${P[@]}" run --rm --network none "${limits[@]}" \
            localhost/cg-probe:1 /bin/true 2>&1); then
        say "storage driver $driver"
        break
    fi
    "${P[@]}" system reset -f >/dev/null 2>&1 || true
    P=()
done
if [ ${#P[@]} -eq 0 ]; then
    skip "podman cannot run a container here: $(printf '%s' "$out" | tail -n 1)"
fi

say "base: mmdebstrap --variant=minbase bookworm ($mirror)"
start=$(date +%s)
debootstrap_base() {
    mmdebstrap --quiet --variant=minbase --include=ca-certificates \
        --aptopt='Acquire::Retries "3"' bookworm "$work/base.tar" \
        "deb $mirror bookworm main" "deb $mirror bookworm-updates main" \
        "deb ${mirror%/debian}/debian-security bookworm-security main"
}
# Once more on failure: on a busy machine its cleanup has been seen to
# fail to unmount the chroot's /proc.
debootstrap_base || debootstrap_base ||
    { outcome "FAILED: mmdebstrap could not make the base"; exit 1; }
"${P[@]}" import --change 'CMD ["/bin/bash"]' "$work/base.tar" "$base" >/dev/null 2>&1
rm -f "$work/base.tar"

say "context: the tree's files"
ctx=$work/context
mkdir -p "$ctx"
(cd "$root" && git ls-files -z --cached --others --exclude-standard |
    xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' |
    tar --null -T - -cf -) | tar -C "$ctx" -xf -

say "podman build"
# The build's RUN steps reach the Debian archive through the host network.
"${P[@]}" build --pull=never --network host "${limits[@]}" \
    -f "$ctx/deploy/docker/Dockerfile" -t "$image" "$ctx" >"$work/build.log" 2>&1 ||
    { tail -n 30 "$work/build.log" >&2; echo "image: podman build failed" >&2; exit 1; }
built=$(date +%s)

run() {
    "${P[@]}" run --rm --network none --read-only "${limits[@]}" "$@"
}
fail() {
    outcome "FAILED: image smoke test: $*"
    exit 1
}

# Everything inside the image in one container: with the vfs driver each
# run copies the image's root file system. One key=value line per fact.
say "smoke test"
smoke=$work/smoke
mkdir -p "$smoke/secrets"
cp "$root/deploy/k8s/base/contactguard.json" "$smoke/"
printf 'smoke-sasl\n' >"$smoke/secrets/kafka-sasl-password"
body=$root/tests/fixtures/contacts/2023/invalid-emails.json
cp "$body" "$smoke/body.json"
chmod -R a+rX "$smoke"
run -v "$smoke:/smoke:ro" "$image" sh -c '
    echo "uid=$(id -u)"
    for b in cc gcc c++ cmake make; do
        command -v "$b" >/dev/null 2>&1 && echo "compiler=$b"
    done
    dpkg-query -W -f "\${Package}\n" | sed -n "s/^\(.*-dev\)\$/dev=\1/p"
    for b in contactguard-worker contactguard-producer contactguard-eval \
             contactguard-report contactguard-remediate contactguard-config \
             jq; do
        command -v "$b" >/dev/null 2>&1 || echo "missing=$b"
    done
    v=$(contactguard-worker --version)
    echo "version_rc=$?"
    echo "version=$v"
    contactguard-worker --set topics.jobs=cg.smoke.jobs --dump-config |
        jq -r "\"topic=\" + .[\"topics.jobs\"]"
    contactguard-config /smoke/contactguard.json /smoke/secrets \
        /tmp/composed.json >/dev/null &&
        jq -r "\"sasl=\" + .kafka[\"sasl.password\"]" /tmp/composed.json
    contactguard-eval --format compact /smoke/body.json >/tmp/eval.json
    echo "eval_rc=$?"
    jq -c "{rule, status, reason_code}" /tmp/eval.json | sed "s/^/eval=/"
' >"$work/smoke.out" 2>"$work/smoke.err" ||
    { cat "$work/smoke.err" >&2; fail "the smoke script did not run"; }
fact() { sed -n "s/^$1=//p" "$work/smoke.out"; }

[ "$(fact uid)" = 10001 ] || fail "runs as uid '$(fact uid)', not 10001"
user=$("${P[@]}" image inspect --format '{{.Config.User}}' "$image")
[ "${user%%:*}" = 10001 ] || fail "image USER is '$user'"
[ -z "$(fact compiler)" ] || fail "compilers in the runtime image: $(fact compiler)"
[ -z "$(fact dev)" ] || fail "development packages in the runtime image: $(fact dev)"
[ -z "$(fact missing)" ] || fail "missing from the image: $(fact missing)"
# The image's worker is the build's version.
want_version=$("$build_dir/worker/contactguard-worker" --version) ||
    fail "the host build's contactguard-worker --version failed"
[ "$(fact version_rc)" = 0 ] && [ "$(fact version)" = "$want_version" ] ||
    fail "contactguard-worker --version: '$(fact version)' (exit" \
        "$(fact version_rc)), want '$want_version'"
# The worker links every runtime library; --dump-config builds and prints
# the effective configuration without connecting anywhere.
[ "$(fact topic)" = cg.smoke.jobs ] ||
    fail "contactguard-worker --dump-config: topics.jobs is '$(fact topic)'"
# The init container's composition, with the image's jq.
[ "$(fact sasl)" = smoke-sasl ] ||
    fail "contactguard-config did not set kafka.sasl.password ('$(fact sasl)')"

# contactguard-eval on a body, inside and outside: the same verdicts (the
# finding time differs run to run; rule, status and reason not).
want_rc=0
"$build_dir/worker/contactguard-eval" --format compact "$body" \
    >"$work/eval.host" || want_rc=$?
[ "$(fact eval_rc)" = "$want_rc" ] ||
    fail "contactguard-eval exit $(fact eval_rc), host $want_rc"
fact eval >"$work/eval.image"
[ -s "$work/eval.image" ] || fail "contactguard-eval printed nothing"
diff <(jq -c '{rule, status, reason_code}' "$work/eval.host") \
    "$work/eval.image" >&2 ||
    fail "contactguard-eval in the image disagrees with the host build"

size=$("${P[@]}" image inspect --format '{{.Size}}' "$image")
outcome "image=contactguard built_s=$((built - start)) size_mb=$((size / 1048576)) user=$user eval_rc=$want_rc findings=$(wc -l <"$work/eval.image") smoke=ok"
