#!/usr/bin/env bash
# Installs the Debian packages contactguard needs to build, test, run the
# demo and the benchmarks, but only those that are missing: a machine that
# has them all is not touched (no apt-get update, no root needed). Works on
# a bare Debian 12 (make and the compilers are in the list). Extra package
# names on the command line are installed too (make bare: mmdebstrap).
#
#   scripts/deps.sh [PACKAGE...]
set -euo pipefail

PKGS=(
    build-essential make cmake pkg-config git
    librdkafka-dev libcurl4-openssl-dev libjansson-dev libssl-dev
    libhiredis-dev libidn2-dev
    redis-server redis-tools
    clang libclang-rt-14-dev clang-format
    python3 python3-azure python3-azure-cli python3-aiohttp jq curl wrk kcat
    openssl time linux-perf
    yamllint python3-yaml prometheus
    podman runc mmdebstrap
    chromium python3-websocket
    "$@"
)

missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
        grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

echo "deps: missing Debian packages: ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then
    # sudo when it may run without asking, or when someone is there to
    # answer its password prompt.
    if command -v sudo >/dev/null 2>&1 &&
        { sudo -n true 2>/dev/null || [ -t 0 ]; }; then
        SUDO=sudo
    else
        echo "deps: not root; run as root (or with sudo):" >&2
        echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
else
    SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends "${missing[@]}"
