#!/usr/bin/env bash
# The apt packages examples/cpp needs on Debian 12: compiler, CMake + Ninja, OpenSSL's libcrypto
# headers (sha256), nlohmann-json (header-only), and the Debian keyring that checks the header fetch
# (build.sh -> fetch_ort_headers.sh; apt-get and dpkg-deb are part of every Debian).
# Idempotent: installs only what is missing. Runs as root (CI) or through sudo.
set -euo pipefail
packages=(g++ cmake ninja-build libssl-dev nlohmann-json3-dev debian-archive-keyring)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "cpp_deps: all present (${packages[*]})"
  exit 0
fi
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
echo "cpp_deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# other apt users on the machine: wait for the lock instead of failing
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"
