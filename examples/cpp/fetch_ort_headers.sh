#!/usr/bin/env bash
# Put ONNX Runtime's C/C++ headers into DEST/include (default: build/_deps/onnxruntime).
#
# The onnxruntime wheel on PyPI ships libonnxruntime.so.1 but no headers. Debian 13 (trixie)
# packages them as libonnxruntime-dev; on Debian 12 (bookworm) this script downloads that one
# .deb with a private apt configuration (its own sources list, package lists and cache under
# DEST/apt: the machine's apt sources and installed packages are not touched, nothing is
# installed), checks it the way apt does (the suite's signed Release file, the package's
# sha256), and unpacks only the headers. Headers are C API version 21 (ONNX Runtime 1.21):
# ONNX Runtime's C API is backward compatible, so they work with any newer libonnxruntime,
# the wheel's 1.32 included.
#
# Settings: ORT_HEADERS_SUITE (trixie), DEBIAN_MIRROR (http://deb.debian.org/debian),
# DEBIAN_KEYRING (/usr/share/keyrings/debian-archive-keyring.gpg: bookworm's keyring has the
# trixie keys). Needs apt-get and dpkg-deb (any Debian or Ubuntu); root is not needed.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
DEST="${1:-$HERE/build/_deps/onnxruntime}"
SUITE="${ORT_HEADERS_SUITE:-trixie}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
KEYRING="${DEBIAN_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}"
PACKAGE=libonnxruntime-dev

if [ -f "$DEST/include/onnxruntime_cxx_api.h" ]; then
  echo "ONNX Runtime headers already in $DEST/include"
  exit 0
fi
for tool in apt-get dpkg-deb; do
  command -v "$tool" >/dev/null || {
    echo "fetch_ort_headers.sh: $tool not found: this script needs Debian's apt; elsewhere pass" \
      "-DONNXRUNTIME_ROOT=<onnxruntime release folder with include/ and lib/> to CMake" >&2
    exit 1
  }
done
[ -r "$KEYRING" ] || {
  echo "fetch_ort_headers.sh: $KEYRING not found (apt-get install debian-archive-keyring)" >&2
  exit 1
}

APT="$DEST/apt"
rm -rf "$APT"
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$APT/sources.list.d" \
  "$APT/preferences.d" "$APT/debs" "$APT/unpacked"
echo "deb [signed-by=$KEYRING] $MIRROR $SUITE main" >"$APT/sources.list"
opts=(
  -o "Dir::Etc::SourceList=$APT/sources.list"
  -o "Dir::Etc::SourceParts=$APT/sources.list.d"
  -o "Dir::Etc::Preferences=$APT/preferences"
  -o "Dir::Etc::PreferencesParts=$APT/preferences.d"
  -o "Dir::State::Lists=$APT/lists"
  -o "Dir::State::status=/dev/null"
  -o "Dir::Cache=$APT/cache"
  -o "Debug::NoLocking=1"
  -o "APT::Get::List-Cleanup=0"
  -o "Acquire::Languages=none"
)
# as root, apt would hand the download to the _apt user, who may not reach this folder
[ "$(id -u)" = 0 ] && opts+=(-o "APT::Sandbox::User=root")

echo "== fetching $PACKAGE from Debian $SUITE ($MIRROR) into $APT"
apt-get "${opts[@]}" -q update >"$APT/update.log" 2>&1 || {
  cat "$APT/update.log" >&2
  echo "fetch_ort_headers.sh: apt-get update of Debian $SUITE failed (see above)" >&2
  exit 1
}
version="$(apt-cache "${opts[@]}" show --no-all-versions "$PACKAGE" | sed -n 's/^Version: //p')"
(cd "$APT/debs" && apt-get "${opts[@]}" -q download "$PACKAGE") >"$APT/download.log" 2>&1 || {
  cat "$APT/download.log" >&2
  echo "fetch_ort_headers.sh: apt-get download $PACKAGE failed (see above)" >&2
  exit 1
}
deb="$(ls "$APT"/debs/"$PACKAGE"_*.deb)"
dpkg-deb -x "$deb" "$APT/unpacked"
mkdir -p "$DEST/include"
cp -R "$APT/unpacked/usr/include/onnxruntime/." "$DEST/include/"
api="$(sed -n 's/^#define ORT_API_VERSION \([0-9]*\).*/\1/p' "$DEST/include/onnxruntime_c_api.h")"
echo "$PACKAGE $version (Debian $SUITE), C API version $api" >"$DEST/include/HEADERS_FROM"
echo "ONNX Runtime headers: $PACKAGE $version (C API version $api) -> $DEST/include"
