#!/usr/bin/env bash
# Builds the CPU module with AddressSanitizer and UndefinedBehaviorSanitizer (build/asan) and runs the test
# suite, or the given pytest arguments, against a copy of the package that holds it; fails on any report.
#   bash tools/sanitize_check.sh                         # whole suite (build ~6, tests ~3 minutes on 2 cores)
#   bash tools/sanitize_check.sh tests/test_pool.py -k max
# ASan checks every ordinary load and store of the C++ code (masked vector loads are not instrumented);
# UBSan reports signed overflow, bad shifts and misaligned scalar accesses. Reports are written to
# build/asan/reports/ (allocations too large for memory still raise MemoryError: allocator_may_return_null).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD_DIR=build/asan
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFASTML_INPLACE=OFF -DFASTML_CUDA=OFF \
  -DFASTML_SANITIZE=address,undefined -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" \
  -DPython_EXECUTABLE="$(command -v python)" -DSKBUILD_PROJECT_VERSION=0.1.0 >/dev/null
cmake --build "$BUILD_DIR" -j "${FASTML_BUILD_JOBS:-2}"
PKG=$(mktemp -d)
trap 'rm -rf "$PKG"' EXIT
cp -r fastml "$PKG/"
rm -f "$PKG"/fastml/_C.*.so "$PKG"/fastml/_C_cuda.*.so
cp "$BUILD_DIR"/_C.*.so "$PKG/fastml/"
for so in "$BUILD_DIR"/_ngrams.*.so; do [ -e "$so" ] && cp "$so" "$PKG/fastml/text/"; done
LOG="$ROOT/$BUILD_DIR/pytest.log"
# Reports go to files (pytest captures the test's stderr, and an ASan abort would lose it there).
REPORTS="$ROOT/$BUILD_DIR/reports"
rm -rf "$REPORTS" && mkdir -p "$REPORTS"
args=()  # test paths made absolute (pytest runs from another folder); no path given: tests/
paths=0
for a in "$@"; do
  if [ -e "${a%%::*}" ]; then args+=("$ROOT/$a"); paths=1; else args+=("$a"); fi
done
[ "$paths" = 1 ] || args+=("$ROOT/tests")
# Run from the package copy's folder so that `import fastml` finds it, not the source tree.
cd "$PKG"
set +e
LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)" \
ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:allocator_may_return_null=1:log_path="$REPORTS/asan" \
UBSAN_OPTIONS=print_stacktrace=1:log_path="$REPORTS/ubsan" \
  python -m pytest -q -p no:cacheprovider --rootdir="$ROOT" "${args[@]}" 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}
set -e
# (allocator_may_return_null also logs a WARNING per refused allocation: not a finding)
if compgen -G "$REPORTS/*" >/dev/null && grep -q "ERROR: \|runtime error:" "$REPORTS"/*; then
  grep -h -A30 "ERROR: \|runtime error:" "$REPORTS"/* | head -100
  echo "sanitize_check: sanitizer reports in $REPORTS"; exit 1
fi
exit "$rc"
