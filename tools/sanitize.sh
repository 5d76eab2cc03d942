#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer run of cnnkit's kernel tests.
#
#   tools/sanitize.sh [--rev REV] [--halt] [--build-only] [--timeout S] [PYTEST ARGS...]
#
# Builds cnnkit._C and the Cython modules with -fsanitize=address,undefined into build-sanitize/ (never into
# build/), stages a copy of the Python package with those .so files in build-sanitize/pkg/cnnkit
# (python/cnnkit/ is never touched), and runs pytest on it with the sanitizer runtimes
# preloaded into the (uninstrumented) interpreter. Child processes that tests start
# inherit the environment, so they run sanitized too.
#
#   --rev REV     build and test a committed tree (git archive REV, e.g. HEAD) instead of
#                 the working tree, so that half-edited files of others do not get in
#   --halt        stop the test process at the first report (halt_on_error=1); by default
#                 every report is collected, turned into a failure of the test that
#                 produced it, and the run goes on
#   --build-only  build and stage, run nothing
#   --timeout S   wall-clock limit of the pytest run (default 3600)
#   PYTEST ARGS   replace the default selection (tests/ less DESELECT below), e.g.
#                 tools/sanitize.sh tests/test_conv.py -k winograd
#
# Environment: SANITIZE_OPT (default -O1; -O3 checks the release code generation),
# SANITIZE_NDEBUG=1 (define NDEBUG: pybind11's GIL assertions off), SANITIZE_JOBS
# (build parallelism, default nproc), SANITIZE_ASAN_OPTIONS (appended to ASAN_OPTIONS),
# CXX (default g++), PYTHON (default python).
#
# Exit status: non-zero when the build fails, a test fails, or any sanitizer report was
# written (in the pytest process or any child). Reports are in build-sanitize/logs/.
#
# Compile flags: -fsanitize=address,undefined -fno-omit-frame-pointer -g1 -O1, no NDEBUG.
# The checks are built recoverable (-fsanitize-recover=address, UBSan's default) so that
# one build serves both modes; halting is chosen at run time (halt_on_error), and either
# way any report fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

REV=""
HALT=0
BUILD_ONLY=0
TIMEOUT=3600
while [ $# -gt 0 ]; do
  case "$1" in
    --rev) REV=$2; shift 2 ;;
    --halt) HALT=1; shift ;;
    --build-only) BUILD_ONLY=1; shift ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
    *) break ;;
  esac
done

OUT=$ROOT/build-sanitize
mkdir -p "$OUT"
# One sanitize run at a time (the staging copy and logs are shared).
exec 9>"$OUT/.lock"
flock 9

SAN_FLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fsanitize-recover=address"
CXX=${CXX:-g++}
PY=${PYTHON:-python}
T0=$(date +%s)

# ---- source: the working tree, or a committed tree --------------------------------
if [ -n "$REV" ]; then
  SRC=$OUT/src
  SHA=$(git rev-parse --verify "$REV^{commit}")
  if [ "$(cat "$OUT/.rev" 2>/dev/null)" != "$SHA" ] || [ ! -d "$SRC" ]; then
    rm -rf "$SRC" && mkdir -p "$SRC"
    git archive "$SHA" | tar -x -m -C "$SRC"   # -m: fresh mtimes, so ninja rebuilds what changed
    echo "$SHA" >"$OUT/.rev"
  fi
  echo "sanitize: source ${SHA:0:10} (git archive of $REV)"
else
  SRC=$ROOT
  echo "sanitize: source = working tree"
fi

# ---- build ---------------------------------------------------------------------------
# The project's own -O3 comes after CMAKE_CXX_FLAGS on the command line; a compiler
# launcher appends $OPT after it. -O1 builds ~3x faster than -O3 with ASan and is the
# level ASan is tuned for; SANITIZE_OPT=-O3 checks the release code generation instead.
BUILD=$OUT/build
OPT=${SANITIZE_OPT:--O1}
LAUNCHER=$OUT/cxx-launcher
printf '#!/bin/sh\nexec "$@" %s\n' "$OPT" >"$LAUNCHER.tmp" && chmod +x "$LAUNCHER.tmp"
cmp -s "$LAUNCHER.tmp" "$LAUNCHER" && rm "$LAUNCHER.tmp" || mv "$LAUNCHER.tmp" "$LAUNCHER"
# No NDEBUG by default: pybind11's debug checks (the GIL held on every inc_ref/dec_ref)
# are on, which is part of what this build is for. SANITIZE_NDEBUG=1 turns them off.
NDEBUG_FLAG=""
if [ "${SANITIZE_NDEBUG:-0}" = 1 ]; then NDEBUG_FLAG=" -DNDEBUG"; fi
CONFIG="$SRC $CXX $SAN_FLAGS $OPT$NDEBUG_FLAG"
if [ ! -f "$BUILD/build.ninja" ] || [ "$(cat "$OUT/.config" 2>/dev/null)" != "$CONFIG" ]; then
  rm -rf "$BUILD"
  if command -v ninja >/dev/null; then GEN=Ninja; else GEN="Unix Makefiles"; fi
  cmake -S "$SRC" -B "$BUILD" -G "$GEN" \
    -DCMAKE_CXX_COMPILER="$CXX" \
    -DCMAKE_CXX_COMPILER_LAUNCHER="$LAUNCHER" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-g1${NDEBUG_FLAG}" \
    -DCMAKE_CXX_FLAGS="$SAN_FLAGS" \
    -DCMAKE_C_COMPILER_LAUNCHER="$LAUNCHER" \
    -DCMAKE_C_FLAGS_RELWITHDEBINFO="-g1${NDEBUG_FLAG}" \
    -DCMAKE_C_FLAGS="$SAN_FLAGS" \
    -DCMAKE_MODULE_LINKER_FLAGS="$SAN_FLAGS" \
    -DCMAKE_SHARED_LINKER_FLAGS="$SAN_FLAGS" \
    -DCMAKE_INTERPROCEDURAL_OPTIMIZATION=OFF \
    -DPython_EXECUTABLE="$(command -v "$PY")" \
    -Dpybind11_DIR="$("$PY" -c 'import pybind11; print(pybind11.get_cmake_dir())')" >/dev/null
  echo "$CONFIG" >"$OUT/.config"
fi
cmake --build "$BUILD" --parallel "${SANITIZE_JOBS:-$(nproc)}"
T_BUILD=$(( $(date +%s) - T0 ))

# ---- staging copy of the package -----------------------------------------------------
PKG=$OUT/pkg
rm -rf "$PKG" && mkdir -p "$PKG"
cp -r "$SRC/python/cnnkit" "$PKG/cnnkit"
find "$PKG/cnnkit" \( -name '*.so' -o -name '__pycache__' \) -prune -exec rm -rf {} +
cp "$BUILD"/*.so "$PKG/cnnkit/"  # _C and the Cython modules
# The CUDA kernel sources where an installed package has them (CMakeLists' install rule).
if [ -d "$SRC/cuda" ] && [ -d "$PKG/cnnkit/cuda" ]; then cp -r "$SRC/cuda" "$PKG/cnnkit/cuda/kernels"; fi

# The pytest plugin: checks that the sanitized package is the one imported, and turns
# each new sanitizer report (from this process or a child) into a failure of the test
# during which it appeared.
cat >"$PKG/_cnnkit_sanitize_plugin.py" <<'EOF'
import glob
import json
import os
import re

import pytest

LOGS = os.environ["CNNKIT_SANITIZE_LOGS"]
PKG = os.environ["CNNKIT_SANITIZE_PKG"]
_sizes = {}
FINDINGS = []
COUNTS = {"passed": 0, "failed": 0, "skipped": 0, "error": 0}


def _new_text():
    out = []
    for path in sorted(glob.glob(os.path.join(LOGS, "asan.*")) + glob.glob(os.path.join(LOGS, "ubsan.*"))):
        size = os.path.getsize(path)
        old = _sizes.get(path, 0)
        if size > old:
            with open(path, errors="replace") as f:
                f.seek(old)
                out.append(f"--- {os.path.basename(path)}\n" + f.read())
            _sizes[path] = size
    return "\n".join(out)


_REPORT = re.compile(r"ERROR: AddressSanitizer|runtime error: |AddressSanitizer:DEADLYSIGNAL")
_NOISE = re.compile(r"#\d+ 0x[0-9a-f]+ in .*(pybind11/|pybind11::|Python/|Objects/|Modules/|Include/|libc-start|libc_start|/bits/|_start )")


def _trim(text):
    """The report without the frames of CPython, pybind11's dispatch and libstdc++."""
    return "\n".join(line for line in text.splitlines() if not _NOISE.search(line))


def _headlines(text):
    pat = re.compile(r"(ERROR: AddressSanitizer: .*|runtime error: .*|SUMMARY: .*)")
    keys = []
    for line in text.splitlines():
        m = pat.search(line)
        if m:
            keys.append(line.strip())
    return keys


def pytest_configure(config):
    import cnnkit
    import cnnkit._C

    import sitecustomize  # the staged one, which points UBSan's reports at LOGS

    for mod in (cnnkit, cnnkit._C, sitecustomize):
        if not os.path.realpath(mod.__file__).startswith(os.path.realpath(PKG) + os.sep):
            raise pytest.UsageError(f"sanitize: {mod.__name__} came from {mod.__file__}, not {PKG}")
    with open("/proc/self/maps") as f:
        if "libasan" not in f.read():
            raise pytest.UsageError("sanitize: libasan is not loaded (LD_PRELOAD)")
    _new_text()  # anything written at start-up is reported by the script, not blamed on a test


def pytest_runtest_logstart(nodeid, location):
    with open(os.path.join(LOGS, "current_test"), "w") as f:
        f.write(nodeid + "\n")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    text = _new_text()
    # Only errors count: the logs also get warnings such as "failed to allocate" (a
    # huge request that returned NULL, i.e. a MemoryError, with allocator_may_return_null).
    if text and _REPORT.search(text):
        FINDINGS.append({"test": item.nodeid, "when": rep.when, "headlines": _headlines(text)})
        rep.outcome = "failed"
        rep.longrepr = f"sanitizer report during {rep.when}:\n{_trim(text)[:20000]}"
    if rep.when == "call":
        COUNTS[rep.outcome] += 1
    elif rep.outcome == "skipped":
        COUNTS["skipped"] += 1
    elif rep.outcome == "failed":
        COUNTS["error"] += 1


def pytest_terminal_summary(terminalreporter):
    with open(os.path.join(LOGS, "findings.json"), "w") as f:
        json.dump({"counts": COUNTS, "findings": FINDINGS}, f, indent=1)
    if FINDINGS:
        terminalreporter.section("sanitizer reports")
        for item in FINDINGS:
            terminalreporter.write_line(f"{item['test']} ({item['when']}):")
            for line in item["headlines"]:
                terminalreporter.write_line(f"    {line}")
EOF

# Where reports go. libasan.so and libubsan.so each carry their own copy of the
# sanitizer report file, and they interfere: libubsan ignores UBSAN_OPTIONS' log_path for
# its own reports (they would go to stderr, where a test's captured output or a child's
# pipe hides them) and, when it initialises, applies that log_path to libasan's copy
# instead. Two copies writing one path truncate each other's reports. So: both options
# name $LOGS/asan (libasan's path, whoever sets it), and every Python process started
# with this PYTHONPATH (pytest and the children tests start) points libubsan's own copy
# at $LOGS/ubsan through that library's own symbol.
cat >"$PKG/sitecustomize.py" <<'EOF'
import ctypes
import os

_logs = os.environ.get("CNNKIT_SANITIZE_LOGS")
if _logs:
    for _lib in os.environ.get("CNNKIT_SANITIZE_RUNTIMES", "").split():
        _name = "ubsan" if "libubsan" in os.path.basename(_lib) else "asan"
        try:
            # RTLD_NOLOAD: only a runtime already preloaded (dlopening libasan late aborts)
            _h = ctypes.CDLL(_lib, mode=os.RTLD_NOLOAD)
            _h.__sanitizer_set_report_path(os.path.join(_logs, _name).encode())
        except (OSError, AttributeError):
            pass
EOF

# A canary: one ASan and one UBSan report raised through the runtimes' own entry points,
# in a fresh interpreter as a test's child would be, must land in the log files.
cat >"$PKG/_cnnkit_sanitize_canary.py" <<'EOF'
"""Proves that both runtimes' reports reach CNNKIT_SANITIZE_LOGS (exit 1 otherwise)."""
import ctypes, glob, os, sys
logs = os.environ["CNNKIT_SANITIZE_LOGS"]
libs = os.environ["CNNKIT_SANITIZE_RUNTIMES"].split()
asan = ctypes.CDLL([l for l in libs if "libasan" in l][0], mode=os.RTLD_NOLOAD)
ubsan = ctypes.CDLL([l for l in libs if "libubsan" in l][0], mode=os.RTLD_NOLOAD)

class Type(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_uint16), ("info", ctypes.c_uint16), ("name", ctypes.c_char * 16)]

class Data(ctypes.Structure):
    _fields_ = [("file", ctypes.c_char_p), ("line", ctypes.c_uint32), ("col", ctypes.c_uint32), ("type", ctypes.POINTER(Type))]

t = Type(0, (6 << 1) | 1, b"'long int'")   # signed 64-bit integer
d = Data(b"sanitize-canary.cpp", 1, 1, ctypes.pointer(t))
ubsan.__ubsan_handle_add_overflow.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64]
ubsan.__ubsan_handle_add_overflow(ctypes.addressof(d), 2**63 - 1, 1)
buf = ctypes.create_string_buffer(8)
asan.__asan_report_load8_noabort.argtypes = [ctypes.c_void_p]
asan.__asan_report_load8_noabort(ctypes.addressof(buf) + 8)
pid = os.getpid()
ok_u = "runtime error" in open(f"{logs}/ubsan.{pid}").read() if os.path.exists(f"{logs}/ubsan.{pid}") else False
ok_a = "ERROR: AddressSanitizer" in open(f"{logs}/asan.{pid}").read() if os.path.exists(f"{logs}/asan.{pid}") else False
print(f"sanitize: canary reports reach the logs: ASan {ok_a}, UBSan {ok_u}")
sys.exit(0 if ok_a and ok_u else 1)
EOF

if [ "$BUILD_ONLY" = 1 ]; then
  echo "sanitize: built and staged in ${T_BUILD}s: $PKG"
  exit 0
fi

# ---- run -------------------------------------------------------------------------------
# Tests that cannot mean anything under ASan (not cnnkit defects): a file is --ignore'd,
# a node id (path::name) --deselect'ed. Everything else in tests/ runs (torch
# cross-checks, forks, subprocesses, the g++-compiled CUDA host shim included).
DESELECT=(
  # nvcc/cicc and NVRTC (non-Python tools, run by these tests as children) segfault with
  # libasan preloaded; they compile the CUDA sources and never load cnnkit._C
  tests/test_cuda_compile.py
)

LOGS=$OUT/logs
rm -rf "$LOGS" && mkdir -p "$LOGS"
LIBASAN=$("$CXX" -print-file-name=libasan.so)
LIBUBSAN=$("$CXX" -print-file-name=libubsan.so)
[ -e "$LIBASAN" ] && [ -e "$LIBUBSAN" ] || { echo "sanitize: no libasan/libubsan from $CXX" >&2; exit 2; }

# Known false positive outside cnnkit: pybind11's dispatcher rethrows glibc's forced unwind
# (pthread_exit of a daemon thread at interpreter exit) with catch (abi::__forced_unwind&),
# and the unwind has no exception object for the reference: "reference binding to null
# pointer of type 'struct __forced_unwind'" at pybind11.h. Suppressed for that function.
cat >"$OUT/ubsan.supp" <<'EOF'
null:pybind11::cpp_function::dispatcher
EOF

export CNNKIT_SANITIZE_LOGS=$LOGS CNNKIT_SANITIZE_PKG=$PKG CNNKIT_SANITIZE_RUNTIMES="$LIBASAN $LIBUBSAN"
export PYTHONPATH=$PKG${PYTHONPATH:+:$PYTHONPATH}
export PYTHONMALLOC=malloc            # Python objects through malloc, so ASan sees them
export PYTHONDONTWRITEBYTECODE=1
# The interpreter is not instrumented: leaks of CPython and NumPy are not ours.
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:halt_on_error=$HALT:abort_on_error=0:check_initialization_order=1:strict_init_order=1:detect_stack_use_after_return=0:symbolize=1:log_path=$LOGS/asan${SANITIZE_ASAN_OPTIONS:+:$SANITIZE_ASAN_OPTIONS}"
export UBSAN_OPTIONS="suppressions=$OUT/ubsan.supp:print_stacktrace=1:halt_on_error=$HALT:report_error_type=1:symbolize=1:log_path=$LOGS/asan"

if [ $# -gt 0 ]; then
  SELECT=("$@")
else
  SELECT=("$SRC/tests")
  for d in ${DESELECT[@]+"${DESELECT[@]}"}; do
    case "$d" in
      *::*) SELECT+=(--deselect "$SRC/$d") ;;
      *) SELECT+=(--ignore "$SRC/$d") ;;
    esac
  done
fi

mkdir -p "$LOGS/canary"
if ! CNNKIT_SANITIZE_LOGS=$LOGS/canary LD_PRELOAD="$LIBASAN $LIBUBSAN${LD_PRELOAD:+ $LD_PRELOAD}" \
    ASAN_OPTIONS="$ASAN_OPTIONS:halt_on_error=0:log_path=$LOGS/canary/asan" \
    UBSAN_OPTIONS="$UBSAN_OPTIONS:halt_on_error=0:log_path=$LOGS/canary/asan" \
    "$PY" -m _cnnkit_sanitize_canary; then
  echo "sanitize: sanitizer reports do not reach $LOGS/canary; a run would miss them" >&2
  exit 2
fi

echo "sanitize: built in ${T_BUILD}s; running pytest ${SELECT[*]}"
T1=$(date +%s)
set +e
(cd "$SRC" && LD_PRELOAD="$LIBASAN $LIBUBSAN${LD_PRELOAD:+ $LD_PRELOAD}" \
  timeout --signal=INT --kill-after=60 "$TIMEOUT" \
  "$PY" -m pytest -p _cnnkit_sanitize_plugin -p no:cacheprovider -q "${SELECT[@]}")
RC=$?
set -e
T_TEST=$(( $(date +%s) - T1 ))

# ---- summary -------------------------------------------------------------------------
shopt -s nullglob
REPORTS=("$LOGS"/asan.* "$LOGS"/ubsan.*)
echo
echo "================ sanitize summary ================"
echo "build ${T_BUILD}s, tests ${T_TEST}s, total $(( $(date +%s) - T0 ))s; pytest exit $RC"
if [ -f "$LOGS/findings.json" ]; then
  "$PY" -I - "$LOGS/findings.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
c = d["counts"]
print(f"tests: {c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped or xfailed, {c['error']} errors in setup/teardown")
print(f"tests with sanitizer reports: {len(d['findings'])}")
EOF
elif [ $RC -ne 0 ]; then
  echo "pytest did not finish: it died during $(cat "$LOGS/current_test" 2>/dev/null || echo '(unknown)')"
fi
# Files with errors in them (warnings alone, e.g. "failed to allocate", do not count).
ERRFILES=()
NREP=0
for f in ${REPORTS[@]+"${REPORTS[@]}"}; do
  n=$(grep -a -c -E 'ERROR: AddressSanitizer|runtime error: ' "$f" || true)
  if [ "$n" -gt 0 ]; then ERRFILES+=("$f"); NREP=$(( NREP + n )); fi
done
REPORTS=(${ERRFILES[@]+"${ERRFILES[@]}"})
echo "sanitizer reports: $NREP, in ${#REPORTS[@]} log files (in $LOGS)"
if [ ${#REPORTS[@]} -gt 0 ]; then
  # one line per distinct report (UBSan's 'runtime error' lines and ASan's summaries)
  cat "${REPORTS[@]}" | grep -a -E '^SUMMARY: AddressSanitizer|runtime error: ' | sed "s#$SRC/##" |
    sort | uniq -c | sort -rn | sed 's/^/  /'
fi
if [ $RC -eq 124 ]; then echo "sanitize: the test run passed the ${TIMEOUT}s limit"; fi
if [ $RC -ne 0 ] || [ ${#REPORTS[@]} -gt 0 ]; then
  echo "sanitize: FAILED"
  exit 1
fi
echo "sanitize: clean"
