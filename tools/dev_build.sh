#!/usr/bin/env bash
# Developer build: compiles cnnkit._C and the Cython modules (src/*.pyx) into build/
# and drops them into python/cnnkit/ so that `PYTHONPATH=python` runs the tree in
# place. Serialised with flock so that concurrent callers do not trample one build
# directory.
set -euo pipefail
cd "$(dirname "$0")/.."
exec 9>/tmp/cnnkit-dev-build.lock
flock 9
if [ ! -f build/build.ninja ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -Dpybind11_DIR="$(python -c 'import pybind11; print(pybind11.get_cmake_dir())')" >/dev/null
fi
cmake --build build
# Replace by rename: overwriting the loaded .so in place crashes running processes.
for so in build/*.so; do
  cp "$so" "python/cnnkit/.$(basename "$so").tmp"
  mv -f "python/cnnkit/.$(basename "$so").tmp" "python/cnnkit/$(basename "$so")"
done
