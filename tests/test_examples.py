"""The scripts in examples/ run and do what they say."""

import os
import subprocess
import sys

import pytest

import cnnkit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE_PARENT = os.path.dirname(os.path.dirname(cnnkit.__file__))


def run_example(name, *args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [PACKAGE_PARENT, os.environ.get("PYTHONPATH")])))
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", name), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_xor_mlp_classifies_all_four_points():
    result = run_example("xor_mlp.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4/4 points classified correctly" in result.stdout
    for line in ("0 xor 0 ->", "0 xor 1 ->", "1 xor 0 ->", "1 xor 1 ->"):
        assert line in result.stdout
    assert result.stdout.count("-> 1\n") == 2


def test_lenet_digits_runs():
    pytest.importorskip("sklearn")
    result = run_example("lenet_digits.py", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "total params: 21,386" in result.stdout
    assert "epoch  2" in result.stdout and "test accuracy:" in result.stdout
