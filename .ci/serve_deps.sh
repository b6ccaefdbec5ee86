#!/usr/bin/env bash
# System packages for tests/serving: Debian's Chromium, which the page test drives headless through
# Playwright (executable_path=/usr/bin/chromium; `playwright install` is never run). Idempotent:
# does nothing when chromium is already there. Needs root (or sudo) and Debian's package archive.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
  echo "serve_deps: $(chromium --version 2>/dev/null || echo chromium) already installed"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq chromium >/dev/null
echo "serve_deps: installed $(chromium --version 2>/dev/null || echo chromium)"
