#!/usr/bin/env bash
# Build liblite_export_cpp and lite-recommend into examples/cpp/build (CMake + Ninja, Release).
#
#   bash examples/cpp/build.sh                      # uses the onnxruntime wheel of `python3`
#   PYTHON=.venv/bin/python bash examples/cpp/build.sh
#   ONNXRUNTIME_ROOT=/opt/onnxruntime-linux-x64-1.32.0 bash examples/cpp/build.sh
#
# Without ONNXRUNTIME_ROOT it assembles one in build/_deps/onnxruntime: lib/ links to the
# libonnxruntime.so of the onnxruntime wheel installed for $PYTHON, include/ holds Debian's
# headers (fetch_ort_headers.sh; /usr/include/onnxruntime when libonnxruntime-dev is installed).
# It refuses headers newer than the library (the C API is backward compatible only).
# Prerequisites (Debian 12): cmake ninja-build g++ libssl-dev nlohmann-json3-dev
# (`bash .ci/cpp_deps.sh` as root, `sudo bash .ci/cpp_deps.sh` otherwise). Settings: BUILD_DIR, JOBS (2), PYTHON (python3).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
BUILD_DIR="${BUILD_DIR:-$HERE/build}"
JOBS="${JOBS:-2}"
PYTHON="${PYTHON:-python3}"

die() {
  echo "build.sh: $*" >&2
  exit 1
}
command -v cmake >/dev/null || die "cmake not found (apt-get install cmake, or bash .ci/cpp_deps.sh as root / with sudo)"
command -v "${CXX:-c++}" >/dev/null || die "no C++ compiler (apt-get install g++)"

if [ -z "${ONNXRUNTIME_ROOT:-}" ]; then
  ONNXRUNTIME_ROOT="$BUILD_DIR/_deps/onnxruntime"
  # --- the library: the onnxruntime wheel's libonnxruntime.so.1.X.Y ---------------------------
  ort_info="$("$PYTHON" - <<'EOF'
import glob, os
try:
    import onnxruntime
except ImportError:
    raise SystemExit(1)
capi = os.path.join(os.path.dirname(onnxruntime.__file__), "capi")
libs = sorted(glob.glob(os.path.join(capi, "libonnxruntime.so*")))
if libs:
    print(onnxruntime.__version__, libs[-1])
EOF
  )" || ort_info=""
  ort_version="${ort_info%% *}" ort_lib="${ort_info#* }"
  [ -n "${ort_lib:-}" ] || die "the onnxruntime wheel is not installed for $PYTHON (pip install onnxruntime==1.32.0), or pass ONNXRUNTIME_ROOT"
  mkdir -p "$ONNXRUNTIME_ROOT/lib"
  ln -sfn "$ort_lib" "$ONNXRUNTIME_ROOT/lib/libonnxruntime.so.1"
  ln -sfn libonnxruntime.so.1 "$ONNXRUNTIME_ROOT/lib/libonnxruntime.so"
  echo "ONNX Runtime library: $ort_lib ($ort_version)"
  # --- the headers ---------------------------------------------------------------------------
  if [ ! -f "$ONNXRUNTIME_ROOT/include/onnxruntime_cxx_api.h" ]; then
    if [ -f /usr/include/onnxruntime/onnxruntime_cxx_api.h ]; then
      rm -rf "$ONNXRUNTIME_ROOT/include"
      ln -sfn /usr/include/onnxruntime "$ONNXRUNTIME_ROOT/include"
    else
      bash "$HERE/fetch_ort_headers.sh" "$ONNXRUNTIME_ROOT"
    fi
  fi
  api="$(sed -n 's/^#define ORT_API_VERSION \([0-9]*\).*/\1/p' "$ONNXRUNTIME_ROOT/include/onnxruntime_c_api.h")"
  runtime_api="$(echo "$ort_version" | cut -d. -f2)"
  [ "$api" -le "$runtime_api" ] ||
    die "ONNX Runtime headers have C API version $api, newer than the library $ort_version (API $runtime_api): use older headers or a newer onnxruntime"
  echo "ONNX Runtime headers: C API version $api (library offers up to $runtime_api)"
fi

mkdir -p "$BUILD_DIR"
generator=()
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ] && command -v ninja >/dev/null; then
  generator=(-G Ninja)
fi
cmake -S "$HERE" -B "$BUILD_DIR" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DONNXRUNTIME_ROOT="$ONNXRUNTIME_ROOT" >"$BUILD_DIR/configure.log" 2>&1 || {
  cat "$BUILD_DIR/configure.log" >&2
  die "cmake configure failed (see above)"
}
grep -E "^-- (ONNX Runtime|TensorRT):" "$BUILD_DIR/configure.log" || true
cmake --build "$BUILD_DIR" -j "$JOBS"
echo "built $BUILD_DIR/lite-recommend"
