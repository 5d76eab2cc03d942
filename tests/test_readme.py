"""Every ```python block of README.md runs as written: each in a fresh interpreter (its
own namespace, as a reader pasting it would have), in an empty temporary directory."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import cnnkit

README = Path(__file__).resolve().parent.parent / "README.md"
PACKAGE_PARENT = os.path.dirname(os.path.dirname(cnnkit.__file__))
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)


def python_blocks():
    """(line number, source) of each ```python block."""
    if not README.exists():
        return []
    text = README.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in FENCE.finditer(text)]


BLOCKS = python_blocks()


def test_readme_has_python_blocks():
    if not README.exists():
        pytest.skip("README.md is not next to tests/ (an installed package)")
    assert len(BLOCKS) >= 2  # the quick start and the module API example at least


def test_fence_pattern():
    text = "a\n```python\nx = 1\n```\n```sh\nls\n```\n```python\ny = 2\n```\n"
    assert [m.group(1) for m in FENCE.finditer(text)] == ["x = 1\n", "y = 2\n"]


@pytest.mark.parametrize("line, source", BLOCKS, ids=[f"line{line}" for line, _ in BLOCKS])
def test_readme_block_runs(tmp_path, line, source):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [PACKAGE_PARENT, os.environ.get("PYTHONPATH")])))
    # Warnings are errors here as in the rest of the suite.
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", source],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, f"README.md block at line {line} failed:\n{result.stderr}"


def test_ci_runs_the_readme_test_command():
    ci = README.parent / ".ci" / "run"
    if not (README.exists() and ci.exists()):
        pytest.skip("README.md or .ci/run is not next to tests/ (an installed package)")
    command = ci.read_text(encoding="utf-8").strip().splitlines()[-1]
    assert "mpi" in command  # the distributed tests need the mpi extra
    assert f"```sh\n{command}\n```" in README.read_text(encoding="utf-8")
