"""Packaging: the licence ships in the wheel and the sdist, and the sdist leaves out
what only the repository needs (.ci/). No network and no compiler: the sdist check
runs scikit-build-core's own sdist hook, which only selects and packs files."""

import importlib.metadata as md
import tarfile
from pathlib import Path

import pytest

import cnnkit

ROOT = Path(__file__).resolve().parent.parent


def installed_distribution():
    """The installed distribution that provides the cnnkit being tested, or a skip."""
    try:
        dist = md.distribution("cnnkit")
    except md.PackageNotFoundError:
        pytest.skip("cnnkit is not installed (the tests run on the source tree)")
    init = Path(cnnkit.__file__).resolve()
    if not any(Path(dist.locate_file(f)).resolve() == init for f in dist.files or ()):
        pytest.skip("the cnnkit under test is not the installed distribution's")
    return dist


def test_installed_distribution_carries_the_license():
    dist = installed_distribution()
    licenses = [f for f in dist.files if f.name == "LICENSE" and "licenses" in f.parts]
    assert licenses, f"no .dist-info/licenses/LICENSE among {[str(f) for f in dist.files]}"
    assert "MIT License" in licenses[0].read_text()
    assert dist.metadata["License-Expression"] == "MIT"


def test_sdist_ships_the_license_and_leaves_out_ci(tmp_path, monkeypatch):
    build = pytest.importorskip("scikit_build_core.build")
    if not (ROOT / "pyproject.toml").is_file():
        pytest.skip("not running from a source tree")
    monkeypatch.chdir(ROOT)
    name = build.build_sdist(str(tmp_path))
    with tarfile.open(tmp_path / name) as tar:
        top = name[: -len(".tar.gz")]
        members = {m.name[len(top) + 1 :] for m in tar.getmembers() if m.isfile()}
        pkg_info = tar.extractfile(f"{top}/PKG-INFO").read().decode()
    for needed in ("LICENSE", "pyproject.toml", "CMakeLists.txt", "csrc/common/vec.cpp",
                   "csrc/common/c_abi.h", "src/_classic.pyx", "src/_data.pyx", "src/_cnnkit_abi.pxd",
                   "python/cnnkit/_data.pyi",
                   "python/cnnkit/__init__.py", "tests/test_packaging.py"):
        assert needed in members, needed
    assert not [m for m in members if m.startswith(".ci/")]
    assert not [m for m in members if m.endswith(".so")]
    assert "License-Expression: MIT" in pkg_info.splitlines()
    assert "License-File: LICENSE" in pkg_info.splitlines()
