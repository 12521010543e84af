#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine with the Swift toolchain:
# installs the packages the tests need, builds, and runs every test target
# (unit tests, the end-to-end suite against real Knot servers and real clients,
# and the route-helper tests inside private network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
PKGS=(libevent-dev pkg-config knot knot-dnsutils bind9-dnsutils iproute2 iputils-ping iptables nftables systemd python3 nginx musl-tools)
missing=()
for p in "${PKGS[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Knot is started by the tests themselves; the package's own service is not needed.
$SUDO systemctl disable --now knot nginx >/dev/null 2>&1 || true

swift build --build-tests
swift test --skip-build
