"""The `cnnkit` command line: train (digits, MNIST files), bench, and bad input."""

import os
import re
import subprocess
import sys
import types

import numpy as np
import pytest

import cnnkit
from cnnkit import cli

from test_data import write_cifar, write_mnist

PACKAGE_PARENT = os.path.dirname(os.path.dirname(cnnkit.__file__))


def run_cli(*args, module="cnnkit.cli"):
    """`python -m cnnkit.cli ARGS` in a fresh interpreter that imports this cnnkit."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [PACKAGE_PARENT, os.environ.get("PYTHONPATH")])))
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, env=env, timeout=120
    )


def accuracy(stdout):
    match = re.search(r"^test accuracy: ([\d.]+)% \((\d+)/(\d+)\)", stdout, re.M)
    assert match, stdout
    return float(match.group(1))


def test_default_run_reaches_97_percent_on_digits(capsys):
    """`cnnkit train` with no arguments: LeNet-5 on digits, 15 epochs (a few seconds)."""
    pytest.importorskip("sklearn")
    assert cli.main(["train"]) == 0
    out, err = capsys.readouterr()
    assert accuracy(out) >= 97.0
    assert out.strip().count("\n") == 0  # one line on stdout: the result
    assert "lenet on digits, 15 epochs" in out
    epochs = re.findall(r"^epoch +(\d+)/15 \[#+\] 45/45 loss [\d.]+ train acc [\d.]+% [\d.]+ s$", err, re.M)
    assert epochs == [str(i) for i in range(1, 16)]


def test_mlp_one_epoch_on_a_subset(capsys, tmp_path, num_threads):
    pytest.importorskip("sklearn")
    path = tmp_path / "mlp.npz"
    assert cli.main(["train", "--model", "mlp", "--epochs", "1", "--limit", "300", "--seed", "3",
                     "--threads", "1", "--save", str(path)]) == 0
    out, err = capsys.readouterr()
    assert 0 <= accuracy(out) <= 100
    assert "300 train / 359 test samples" in err
    assert cnnkit.get_num_threads() == 1  # (the num_threads fixture restores the count)
    saved = np.load(path)
    assert set(saved.files) == {"1.weight", "1.bias", "3.weight", "3.bias"}


def test_train_on_mnist_files(capsys, tmp_path):
    write_mnist(tmp_path, n_train=40, n_test=10)
    assert cli.main(["train", "--data", f"mnist:{tmp_path}", "--epochs", "1", "--batch-size", "8"]) == 0
    out, err = capsys.readouterr()
    assert "lenet on mnist" in out and "(" in out and "/10)" in out
    assert "40 train / 10 test samples" in err


def test_train_on_cifar10_files(capsys, tmp_path):
    write_cifar(tmp_path, {"data_batch_1.bin": 12, "test_batch.bin": 4})
    assert cli.main(["train", "--data", f"cifar10:{tmp_path}", "--model", "mlp", "--epochs", "1"]) == 0
    out, _ = capsys.readouterr()
    assert "mlp on cifar10" in out and "/4)" in out


def test_same_seed_same_result(capsys):
    pytest.importorskip("sklearn")
    args = ["train", "--model", "mlp", "--epochs", "2", "--limit", "200"]
    cli.main(args)
    first = capsys.readouterr().out
    cli.main(args)
    second = capsys.readouterr().out
    assert first.split(", ")[:3] == second.split(", ")[:3]


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--model", "resnet"], "argument --model: invalid choice: 'resnet'"),
        (["train", "--data", "imagenet"], "argument --data: unknown dataset 'imagenet'"),
        (["train", "--data", "mnist:"], "argument --data: unknown dataset 'mnist:'"),
        (["train", "--epochs", "0"], "argument --epochs: expected a positive integer, got '0'"),
        (["train", "--lr", "-1"], "argument --lr: expected a positive number"),
        (["fly"], "invalid choice: 'fly'"),
        ([], "the following arguments are required"),
    ],
)
def test_bad_arguments_print_usage_and_exit_2(capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: cnnkit")
    assert message in err


def test_unknown_model_in_a_subprocess_has_no_traceback():
    result = run_cli("train", "--model", "resnet")
    assert result.returncode == 2
    assert "usage: cnnkit train" in result.stderr and "invalid choice: 'resnet'" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_missing_dataset_directory_in_a_subprocess(tmp_path):
    result = run_cli("train", "--data", f"mnist:{tmp_path / 'nowhere'}")
    assert result.returncode == 1
    assert "cnnkit train: error: cannot load" in result.stderr and "train-images-idx3-ubyte" in result.stderr
    assert "Traceback" not in result.stderr


def test_digits_without_scikit_learn(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    assert cli.main(["train"]) == 1
    assert "pip install 'cnnkit[digits]'" in capsys.readouterr().err


def test_unwritable_save_path(capsys, tmp_path):
    write_mnist(tmp_path, n_train=8, n_test=2)
    target = tmp_path / "missing-dir" / "model.npz"
    assert cli.main(["train", "--data", f"mnist:{tmp_path}", "--epochs", "1", "--save", str(target)]) == 1
    assert "cannot save to" in capsys.readouterr().err


@pytest.mark.parametrize("args, expected", [(["bench"], {"quick": False}), (["bench", "--quick", "--threads", "3"], {"quick": True, "threads": 3})])
def test_bench_calls_cnnkit_bench_run(monkeypatch, args, expected):
    calls = []
    fake = types.ModuleType("cnnkit.bench")
    fake.run = lambda **kwargs: calls.append(kwargs)
    monkeypatch.setitem(sys.modules, "cnnkit.bench", fake)
    assert cli.main(args) == 0
    assert calls == [expected]


def test_python_dash_m_cnnkit():
    result = run_cli("--help", module="cnnkit")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: cnnkit") and "{train,bench,classify}" in result.stdout
    result = run_cli("train", "--model", "resnet", module="cnnkit")
    assert result.returncode == 2 and "invalid choice: 'resnet'" in result.stderr


@pytest.mark.parametrize("spec", ["mnist:~/data/mnist", "mnist:$CNNKIT_TEST_DATA/mnist", "mnist:${CNNKIT_TEST_DATA}/mnist"])
def test_data_directory_expands_home_and_variables(capsys, tmp_path, monkeypatch, spec):
    root = tmp_path / "data" / "mnist"
    root.mkdir(parents=True)
    write_mnist(root, n_train=16, n_test=4)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CNNKIT_TEST_DATA", str(tmp_path / "data"))
    assert cli.main(["train", "--data", spec, "--epochs", "1", "--batch-size", "8"]) == 0
    assert "lenet on mnist" in capsys.readouterr().out


def test_missing_expanded_directory_names_the_expanded_path(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cli.main(["train", "--data", "mnist:~/nowhere"]) == 1
    assert f"cannot load 'mnist:{tmp_path / 'nowhere'}'" in capsys.readouterr().err


@pytest.mark.parametrize("name, written", [("weights.npz", "weights.npz"), ("weights", "weights.npz")])
def test_save_prints_where_it_saved(capsys, tmp_path, monkeypatch, name, written):
    write_mnist(tmp_path, n_train=8, n_test=2)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cli.main(["train", "--data", f"mnist:{tmp_path}", "--epochs", "1", f"--save=~/{name}"]) == 0
    out, err = capsys.readouterr()
    path = tmp_path / written
    assert f"saved the trained weights to {path}\n" in err
    assert out.startswith("test accuracy:") and out.count("\n") == 1  # stdout: the result only
    assert set(np.load(path).files) >= {"0.weight", "0.bias"}


@pytest.mark.parametrize("epochs, words", [("1", "1 epoch,"), ("2", "2 epochs,")])
def test_epoch_count_singular_and_plural(capsys, tmp_path, epochs, words):
    write_mnist(tmp_path, n_train=8, n_test=2)
    assert cli.main(["train", "--data", f"mnist:{tmp_path}", "--epochs", epochs]) == 0
    out = capsys.readouterr().out
    assert f"lenet on mnist, {words} " in out
