"""The scripts in examples/ run and do what they say."""

import os
import re
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


def test_knn_digits_chooses_k_by_cross_validation():
    pytest.importorskip("sklearn")
    result = run_example("knn_digits.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("5-fold accuracy") == 10 and "chosen: " in result.stdout
    assert float(re.search(r"test accuracy: ([\d.]+)%", result.stdout).group(1)) >= 97


def test_linear_digits_runs():
    pytest.importorskip("sklearn")
    result = run_example("linear_digits.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "softmax loss at zero weights: 2.3026" in result.stdout
    for name in ("LinearSoftmax", "LinearSVM"):
        accuracy = re.search(rf"^{name}: reg=\S+, test accuracy ([\d.]+)%", result.stdout, re.M)
        assert accuracy and float(accuracy.group(1)) >= 90, result.stdout


def test_kmeans_digits_runs():
    pytest.importorskip("sklearn")
    result = run_example("kmeans_digits.py", "10")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("  cluster ") == 10
    assert float(re.search(r"purity: ([\d.]+)%", result.stdout).group(1)) >= 60
