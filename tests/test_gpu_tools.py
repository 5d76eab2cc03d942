"""tools/gpu_check.sh and tools/gpu_wheels.sh, as far as a machine without a GPU (or
without a network, for gpu_wheels.sh's downloads) can run them: syntax, usage errors, the
refusal without a GPU, the plan of a dry run (with a stand-in Python whose probe sees a
GPU), and an install that fails."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECK = ROOT / "tools" / "gpu_check.sh"
WHEELS = ROOT / "tools" / "gpu_wheels.sh"


def run(script, *args, **env):
    return subprocess.run(["bash", str(script), *map(str, args)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


@pytest.fixture
def gpu_python(tmp_path):
    """A Python whose gpu_check probe finds a GPU (this interpreter otherwise)."""
    stub = tmp_path / "python-with-gpu"
    stub.write_text(
        "#!/bin/bash\n"
        'if [ "$1" = -c ] && [[ "$2" == *getDeviceCount* ]]; then echo "Stub GPU x1, CuPy 0, Python 3"; exit 0; fi\n'
        f'exec {sys.executable} "$@"\n'
    )
    stub.chmod(0o755)
    return stub


@pytest.mark.parametrize("script", [CHECK, WHEELS], ids=lambda p: p.name)
def test_scripts_parse_and_are_executable(script):
    r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert os.access(script, os.X_OK)


def test_gpu_check_without_cupy_refuses(tmp_path):
    (tmp_path / "cupy.py").write_text("raise ImportError('stand-in: no CuPy')\n")
    logs = tmp_path / "logs"
    r = run(CHECK, PYTHON=sys.executable, PYTHONPATH=str(tmp_path), CHECK_LOG_DIR=str(logs))
    assert r.returncode == 3 and r.stdout == ""
    assert r.stderr == ("gpu_check: no usable CUDA GPU here (no CuPy: stand-in: no CuPy); nothing installed or run\n")
    assert not logs.exists()


def test_gpu_check_without_a_gpu_refuses(tmp_path):
    (tmp_path / "cupy.py").write_text(
        "__version__ = '0-stand-in'\n"
        "class _Runtime:\n"
        "    @staticmethod\n"
        "    def getDeviceCount():\n"
        "        raise RuntimeError('cudaErrorNoDevice: no CUDA-capable device is detected')\n"
        "cuda = type('cuda', (), {'runtime': _Runtime})\n"
    )
    for dry in ([], ["--dry-run"]):
        r = run(CHECK, *dry, PYTHON=sys.executable, PYTHONPATH=str(tmp_path))
        assert r.returncode == 3, r.stderr
        assert r.stderr == ("gpu_check: no usable CUDA GPU here (no GPU: CuPy 0-stand-in sees none (RuntimeError: "
                            "cudaErrorNoDevice: no CUDA-capable device is detected)); nothing installed or run\n")


def test_gpu_check_usage_errors(tmp_path):
    r = run(CHECK, "--bogus")
    assert r.returncode == 2 and r.stderr.startswith("gpu_check: unknown option --bogus\nThe GPU check")
    r = run(CHECK, tmp_path / "nowhere")
    assert r.returncode == 2
    assert r.stderr == (f"gpu_check: WHEEL_DIR: expected a directory of wheels (tools/gpu_wheels.sh makes one), "
                        f"got '{tmp_path / 'nowhere'}'\n")
    r = run(CHECK, PYTHON=str(tmp_path / "no-python"))
    assert r.returncode == 2 and r.stderr == f"gpu_check: no Python interpreter '{tmp_path / 'no-python'}' (set PYTHON)\n"


def test_gpu_check_dry_run_plan(gpu_python, tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    r = run(CHECK, "--dry-run", wheels, PYTHON=str(gpu_python), CHECK_LOG_DIR=str(tmp_path / "logs"))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "== device: Stub GPU x1, CuPy 0, Python 3"
    assert lines[1] == f"install: the checkout, built here (no build isolation) with scipy-openblas32 from {wheels}"
    pip = f"{gpu_python} -m pip install -q --no-deps --target {tmp_path / 'logs' / 'site'} --no-index --find-links {wheels}"
    assert lines[2] == f"  {pip} scipy-openblas32"
    assert lines[3] == f"  env PYTHONPATH={tmp_path / 'logs' / 'site'} {pip} --no-build-isolation {ROOT}"
    gpu_tests = ["tests/test_cuda.py", "tests/test_cuda_conv.py", "tests/test_cuda_modules.py", "tests/test_cuda_norm.py",
                 "tests/test_cuda_pool.py", "tests/test_cuda_softmax.py"]
    assert lines[4] == "GPU tests: " + " ".join(gpu_tests)
    assert lines[5] == "bench: cnnkit bench --device cuda --quick"
    cpu_tests = sorted(f"tests/{p.name}" for p in (ROOT / "tests").glob("test_cuda*.py") if f"tests/{p.name}" not in gpu_tests)
    assert lines[6].startswith("CPU-side CUDA tests: " + " ".join(cpu_tests))
    assert "tests/test_cuda_host_modules.py" in cpu_tests and "tests/test_cuda_compile.py" in cpu_tests
    assert lines[7] == f"logs: {tmp_path / 'logs'}; budget 460 s" and len(lines) == 8
    assert not (tmp_path / "logs" / "site").exists()  # nothing installed

    (wheels / "cnnkit-0.1.0-cp3-cp3-linux_x86_64.whl").write_bytes(b"")
    r = run(CHECK, "--dry-run", PYTHON=str(gpu_python), CNNKIT_WHEELS=str(wheels), CHECK_BENCH_FULL="1")
    assert r.returncode == 0, r.stderr
    assert f"install: the cnnkit wheel in {wheels}\n" in r.stdout and f"--find-links {wheels} cnnkit\n" in r.stdout
    assert "bench: cnnkit bench --device cuda\n" in r.stdout
    r = run(CHECK, "--dry-run", PYTHON=str(gpu_python))
    assert "install: the checkout, with a plain pip install (needs a package index)\n" in r.stdout
    assert "--find-links" not in r.stdout and f"--target {Path(r.stdout.split('logs: ')[1].split(';')[0]) / 'site'} {ROOT}\n" in r.stdout


def test_gpu_check_install_failure_stops_it(gpu_python, tmp_path):
    wheels = tmp_path / "empty"
    wheels.mkdir()
    logs = tmp_path / "logs"
    r = run(CHECK, wheels, PYTHON=str(gpu_python), CHECK_LOG_DIR=str(logs))
    assert r.returncode == 1
    assert "== install: FAILED (the checkout, built here (no build isolation) with scipy-openblas32 from" in r.stdout
    assert "No matching distribution found for scipy-openblas32" in (logs / "install.log").read_text()
    assert not (logs / "gpu-tests.log").exists()


def test_gpu_check_budget_bounds_every_step(gpu_python, tmp_path):
    logs = tmp_path / "logs"
    r = run(CHECK, PYTHON=str(gpu_python), CHECK_LOG_DIR=str(logs), CHECK_BUDGET_S="3")
    assert r.returncode == 1 and "== install: FAILED" in r.stdout
    assert (logs / "install.log").read_text() == "no time left\n"


def test_gpu_wheels_dry_run(tmp_path):
    out = tmp_path / "w"
    r = run(WHEELS, "--dry-run", out, PYTHON=sys.executable)
    assert r.returncode == 0, r.stderr
    download, build = r.stdout.splitlines()
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert download.startswith(f"{sys.executable} -m pip download -q --no-deps --only-binary=:all: --python-version "
                               f"{version} --implementation cp --platform manylinux_2_28_x86_64 ")
    assert download.endswith(f"-d {out} scipy-openblas32 scikit-build-core>=0.11")
    assert build == f"{sys.executable} -m pip wheel -q --no-deps -w {out} {ROOT}"
    assert not out.exists()
    r = run(WHEELS, "--dry-run", PYTHON=sys.executable)
    assert f" -d {ROOT / 'dist' / 'wheels'} " in r.stdout


def test_gpu_wheels_usage_errors():
    r = run(WHEELS, "--bogus")
    assert r.returncode == 2 and r.stderr == "gpu_wheels: unknown option --bogus\n"
    r = run(WHEELS, "--help")
    assert r.returncode == 2 and r.stderr.startswith("Makes the wheel directory that tools/gpu_check.sh installs from")
