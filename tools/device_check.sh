#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: build fastml with the CUDA module for the GPU's own architecture,
# run the CUDA tests (then the whole suite), and time the CUDA kernels against torch (tools/cuda_bench.py).
# Logs go to $OUT (default build/gpu-out). Usage: bash tools/device_check.sh [all|build|quick|full]
#   build: only build; quick: build and the CUDA tests; all (default): also the benchmark;
#   full: also the whole test suite on this machine's CPU (8 pytest workers of 2 threads each).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
OUT=${OUT:-build/gpu-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
JOBS=$(nproc)
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
"$PY" -c "import sys, numpy, torch, pybind11; print(sys.version.split()[0], 'numpy', numpy.__version__, 'torch', torch.__version__, 'pybind11', pybind11.__version__)"
CC=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '.')
t0=$(date +%s)
cmake -S . -B build/gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DFASTML_INPLACE=ON -DFASTML_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="${CC:-90}" -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" \
  -DPython_EXECUTABLE="$(command -v "$PY")" -DSKBUILD_PROJECT_VERSION=0.1.0 >"$OUT/cmake.log" 2>&1 \
  || { tail -30 "$OUT/cmake.log"; exit 1; }
cmake --build build/gpu -j "$JOBS" >"$OUT/build.log" 2>&1 || { grep -B2 -A10 -m5 "error" "$OUT/build.log"; exit 1; }
echo "== built in $(( $(date +%s) - t0 )) s"
[ "${1:-all}" = build ] && exit 0
export PYTHONPATH=$PWD
"$PY" -c "import fastml; fastml.info()" || exit 1
echo "== CUDA tests"
"$PY" -m pytest -q -p no:cacheprovider -o addopts="--strict-markers" tests/test_cuda_kernels.py 2>&1 | tee "$OUT/cuda-tests.log" | tail -25
"$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -3
if [ "${1:-all}" != quick ]; then
  echo "== CUDA bench"
  "$PY" tools/cuda_bench.py 2>&1 | tee "$OUT/cuda-bench.log"
fi
if [ "${1:-all}" = full ]; then
  echo "== whole suite (CPU)"
  OMP_NUM_THREADS=2 "$PY" -m pytest -q -p no:cacheprovider -p no:benchmark -n 8 -m "not cuda" -o addopts="--strict-markers" -rf tests \
    2>&1 | tee "$OUT/all-tests.log" | tail -25
fi
