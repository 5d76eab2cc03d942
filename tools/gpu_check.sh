#!/usr/bin/env bash
# The GPU check, for a machine with a CUDA GPU (and CuPy), with or without a package index:
#   1. installs cnnkit into a temporary site directory (the environment is left as it is):
#      from WHEEL_DIR with pip --no-index --find-links (the cnnkit wheel there, else the
#      checkout built there with --no-build-isolation against scipy-openblas32 from
#      WHEEL_DIR); without WHEEL_DIR, a plain pip install of the checkout;
#   2. runs the GPU tests (tests/test_cuda.py and the other tests/test_cuda_*.py that need a device);
#   3. runs `cnnkit bench --device cuda --quick` (CHECK_BENCH_FULL=1: the full bench);
#   4. runs the rest of tests/test_cuda*.py (kernels on the CPU, nvcc) in the time left;
#   5. prints a summary that fits one screen; full logs are in CHECK_LOG_DIR.
# The whole run ends within CHECK_BUDGET_S seconds (default 460: under 8 minutes).
#
# Usage: tools/gpu_check.sh [--dry-run] [WHEEL_DIR]
#   WHEEL_DIR, or $CNNKIT_WHEELS: wheels made by tools/gpu_wheels.sh (dist/wheels by default there).
#   --dry-run: probe Python, CuPy and the GPU, print the plan, install and run nothing.
#   PYTHON: the interpreter (default python3); CHECK_LOG_DIR: where the logs go (default: a new temp dir).
# Exit status: 0 every step passed; 1 a step failed or timed out; 2 bad usage; 3 no usable GPU here.
set -uo pipefail

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

dry=0
wheels=${CNNKIT_WHEELS:-}
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) dry=1 ;;
    -h|--help) usage ;;
    -*) echo "gpu_check: unknown option $1" >&2; usage ;;
    *) wheels=$1 ;;
  esac
  shift
done

root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python3}
budget=${CHECK_BUDGET_S:-460}
start=$SECONDS
summary=()
failed=0

note() { summary+=("$1"); echo "== $1"; }
left() { echo $((budget - (SECONDS - start))); }

# timed CAP LOG CMD...: runs CMD with its output in LOG, within CAP seconds and the budget left
timed() {
  local cap=$1 log=$2 t
  shift 2
  t=$(left)
  [ "$cap" -ge "$t" ] || t=$cap
  if [ "$t" -le 5 ]; then echo "no time left" >"$log"; return 124; fi
  timeout --kill-after=10 "$t" "$@" >"$log" 2>&1
}

if [ -n "$wheels" ] && [ ! -d "$wheels" ]; then
  echo "gpu_check: WHEEL_DIR: expected a directory of wheels (tools/gpu_wheels.sh makes one), got '$wheels'" >&2
  exit 2
fi
[ -z "$wheels" ] || wheels=$(cd "$wheels" && pwd)

probe='import sys
try:
    import cupy
except ImportError as e:
    print("no CuPy:", e); sys.exit(3)
try:
    n = cupy.cuda.runtime.getDeviceCount()
    name = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
except Exception as e:
    print("no GPU: CuPy", cupy.__version__, "sees none (" + type(e).__name__ + ": " + str(e).splitlines()[0] + ")"); sys.exit(3)
print(f"{name} x{n}, CuPy {cupy.__version__}, Python {sys.version.split()[0]}")'
if ! command -v "$py" >/dev/null; then
  echo "gpu_check: no Python interpreter '$py' (set PYTHON)" >&2
  exit 2
fi
gpu=$("$py" -c "$probe" 2>&1)
rc=$?
if [ $rc -ne 0 ]; then
  [ $rc -eq 3 ] || gpu="probe failed: $(echo "$gpu" | tail -n 1)"
  echo "gpu_check: no usable CUDA GPU here ($gpu); nothing installed or run" >&2
  exit 3
fi
logs=${CHECK_LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/cnnkit-gpu-check.XXXXXX")}
mkdir -p "$logs"
note "device: $gpu"

site="$logs/site"
pip=("$py" -m pip install -q --no-deps --target "$site")
if [ -n "$wheels" ]; then
  pip+=(--no-index --find-links "$wheels")
  # scipy-openblas32 first: the build of the checkout (no isolation) links against it
  first=("${pip[@]}" scipy-openblas32)
  if ls "$wheels"/cnnkit-*.whl >/dev/null 2>&1; then
    how="the cnnkit wheel in $wheels"
    then_=("${pip[@]}" cnnkit)
  else
    how="the checkout, built here (no build isolation) with scipy-openblas32 from $wheels"
    then_=(env PYTHONPATH="$site" "${pip[@]}" --no-build-isolation "$root")
  fi
else
  how="the checkout, with a plain pip install (needs a package index)"
  first=("${pip[@]}" scipy-openblas32)
  then_=("${pip[@]}" "$root")
fi
gpu_tests=()
for f in "$root"/tests/test_cuda*.py; do
  grep -q 'cupy.is_available()' "$f" && grep -q 'allow_module_level=True' "$f" && gpu_tests+=("tests/${f##*/}")
done
cpu_tests=()
for f in "$root"/tests/test_cuda*.py; do
  case " ${gpu_tests[*]} " in *" tests/${f##*/} "*) ;; *) cpu_tests+=("tests/${f##*/}") ;; esac
done
bench_args=(--device cuda)
[ "${CHECK_BENCH_FULL:-0}" = 1 ] || bench_args+=(--quick)
xdist=()
"$py" -c "import xdist" 2>/dev/null && xdist=(-n auto)

if [ $dry -eq 1 ]; then
  echo "install: $how"
  echo "  ${first[*]}"
  echo "  ${then_[*]}"
  echo "GPU tests: ${gpu_tests[*]}"
  echo "bench: cnnkit bench ${bench_args[*]}"
  echo "CPU-side CUDA tests: ${cpu_tests[*]} ${xdist[*]}"
  echo "logs: $logs; budget ${budget} s"
  exit 0
fi

run_pytest() {  # LABEL CAP LOG FILES...
  local label=$1 cap=$2 log=$3
  shift 3
  (cd "$root" && PYTHONPATH="$site" timed "$cap" "$log" "$py" -m pytest -q -p no:cacheprovider -rfE \
      "${xdist[@]}" "$@")
  local rc=$?
  local tail_line
  tail_line=$(grep -E '^(=+ )?[0-9]+ (passed|failed|skipped|error)|no tests ran|^(=+ )?[0-9]+ .* in [0-9.]+s' "$log" | tail -n 1)
  [ $rc -ne 124 ] || tail_line="TIMED OUT (${tail_line:-no result line}; see $log)"
  note "$label: ${tail_line:-rc $rc, see $log}"
  while IFS= read -r l; do summary+=("  ${l:0:150}"); done < <(grep -E '^(FAILED|ERROR) ' "$log" | head -n 8)
  [ $rc -eq 0 ] || failed=1
}

echo "installing $how (log: $logs/install.log)"
if timed 120 "$logs/install.log" "${first[@]}" && timed 240 "$logs/install2.log" "${then_[@]}" &&
   (cd /tmp && PYTHONPATH="$site" "$py" -c "import cnnkit, cnnkit._C, cnnkit.cuda; assert cnnkit.cuda.is_available()") \
     >>"$logs/install2.log" 2>&1; then
  note "install: ok, $how"
else
  note "install: FAILED ($how); last lines of its logs:"
  tail -q -n 4 "$logs"/install*.log | cut -c1-150
  exit 1
fi

run_pytest "GPU tests" 200 "$logs/gpu-tests.log" "${gpu_tests[@]}"

echo "running cnnkit bench ${bench_args[*]} (log: $logs/bench.log)"
(cd /tmp && PYTHONPATH="$site" timed 180 "$logs/bench.log" "$py" -m cnnkit bench "${bench_args[@]}")
rc=$?
bad=$(grep -cE '^[a-z0-9_]+ +fwd(\+bwd)? +(error|WRONG)' "$logs/bench.log")
if [ $rc -eq 0 ] && [ "$bad" -eq 0 ]; then note "bench: ok"; else note "bench: rc $rc, $bad rows in error"; failed=1; fi
[ $rc -ne 124 ] || summary+=("  bench TIMED OUT: the rows done are in $logs/bench.log")
while IFS= read -r l; do summary+=("  ${l:0:150}"); done < <(
  grep -E '^(cnnkit bench|torch:)|^(alexnet_conv2|vgg_3x3|resnet_1x1|depthwise_3x3|alexnet_pool1|maxpool_2x2) |error|WRONG|^geometric' \
    "$logs/bench.log" | head -n 20)

run_pytest "CPU-side CUDA tests" 400 "$logs/cpu-tests.log" "${cpu_tests[@]}"

echo
echo "==================== cnnkit GPU check: summary ($((SECONDS - start)) s) ===================="
printf '%s\n' "${summary[@]}"
echo "logs: $logs"
exit $failed
