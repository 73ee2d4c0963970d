#!/usr/bin/env bash
# install-deps.sh -- install the Debian 12 packages subgate builds and tests with.
# Idempotent: installs only what is missing. Usage: scripts/install-deps.sh [bench]
set -euo pipefail

pkgs=(build-essential pkg-config libssl-dev openssl libevent-dev libconfig-dev
      libjemalloc-dev libcmocka-dev libjansson-dev python3 python3-pytest curl
      libunistring-dev clang libclang-rt-14-dev procps
      systemd strace)	# the unit file's checks: systemd-analyze, and the calls it must allow
if [ "${1:-}" = bench ]; then
	pkgs+=(nginx haproxy wrk apache2-utils util-linux)
fi

missing=()
for p in "${pkgs[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
sudo=
[ "$(id -u)" -eq 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
