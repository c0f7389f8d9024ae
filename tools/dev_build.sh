#!/usr/bin/env bash
# Development build: configure + build with ninja into build/dev (or $1) and copy the modules into
# fastml/ so that `PYTHONPATH=$PWD python -m pytest` tests the working tree. CUDA follows FASTML_CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build/dev}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFASTML_INPLACE=ON \
  -DFASTML_CUDA="${FASTML_CUDA:-OFF}" -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" \
  -DPython_EXECUTABLE="$(command -v python)" -DSKBUILD_PROJECT_VERSION=0.1.0 >/dev/null
cmake --build "$BUILD_DIR" -j "${FASTML_BUILD_JOBS:-2}"
