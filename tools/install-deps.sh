#!/usr/bin/env bash
# Installs what building, running and testing tasad needs, from Debian 12 packages only.
# Idempotent; needs root (or sudo). Used by the README's commands and by .ci/run.
set -euo pipefail
packages=(
  build-essential meson ninja-build pkg-config python3
  libsystemd-dev libhiredis-dev libconfig-dev libseccomp-dev check libjansson-dev
  libcurl4-openssl-dev libssl-dev
  redis-server redis-tools curl nmap
  debhelper lintian dpkg-dev systemd-container
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The packaged redis-server service is not needed: tasad's tests and demo start their own.
