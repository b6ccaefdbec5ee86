#!/usr/bin/env bash
# The apt packages examples/cpp needs on Debian 12: compiler, CMake + Ninja, OpenSSL's libcrypto
# headers (sha256), nlohmann-json (header-only), and the Debian keyring that checks the header fetch
# (build.sh -> fetch_ort_headers.sh; apt-get and dpkg-deb are part of every Debian).
# Idempotent: installs only what is missing. Run it as root (`bash .ci/cpp_deps.sh`, e.g. in a
# container or CI) or as a user with sudo (`sudo bash .ci/cpp_deps.sh`; run without sudo, it
# calls sudo itself for apt-get).
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
# As root (containers, CI) apt-get runs directly; otherwise through sudo, which must exist.
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "cpp_deps: not root and no sudo: run this script as root, or install ${missing[*]} with apt-get as root" >&2
    exit 1
  fi
  SUDO="sudo"
fi
echo "cpp_deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# other apt users on the machine: wait for the lock instead of failing
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"
