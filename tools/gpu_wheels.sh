#!/usr/bin/env bash
# Makes the wheel directory that tools/gpu_check.sh installs from on a GPU machine with no
# package index: the cnnkit wheel, built here for that machine's Python, and the wheels it
# needs that such a machine may lack (scipy-openblas32 at run and build time,
# scikit-build-core for a build there). CuPy, NumPy, pytest and torch are expected there.
#
# Usage: tools/gpu_wheels.sh [--dry-run] [WHEEL_DIR]      (default: dist/wheels)
#   PYTHON: the interpreter to build the cnnkit wheel with, of the GPU machine's Python
#           version (default python3); the downloads are for that version too.
#   --dry-run: print the commands, run none.
# Then carry WHEEL_DIR to the GPU machine and run tools/gpu_check.sh WHEEL_DIR there.
set -euo pipefail

dry=0
out=
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) dry=1 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    -*) echo "gpu_wheels: unknown option $1" >&2; exit 2 ;;
    *) out=$1 ;;
  esac
  shift
done
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "${out:-$root/dist/wheels}")
py=${PYTHON:-python3}
version=$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')

# manylinux tags pip matches exactly; those of the needed wheels' current releases
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
         manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
download=("$py" -m pip download -q --no-deps --only-binary=:all: --python-version "$version" --implementation cp
          "${platforms[@]}" -d "$out" scipy-openblas32 "scikit-build-core>=0.11")
build=("$py" -m pip wheel -q --no-deps -w "$out" "$root")

if [ $dry -eq 1 ]; then
  echo "${download[*]}"
  echo "${build[*]}"
  exit 0
fi
mkdir -p "$out"
rm -f "$out"/cnnkit-*.whl
"${download[@]}"
"${build[@]}"
ls -l "$out"
echo "wheels for Python $version in $out: carry it, then run tools/gpu_check.sh $out on the GPU machine"
