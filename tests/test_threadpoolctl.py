"""threadpoolctl sees and caps cnnkit's thread pool (cnnkit/_threadpoolctl.py), and
cnnkit imports without threadpoolctl (or with one too old to register controllers)."""

import os
import subprocess
import sys

import pytest

import cnnkit

threadpoolctl = pytest.importorskip("threadpoolctl")
if not hasattr(threadpoolctl, "register"):
    pytest.skip("threadpoolctl < 3.0 has no controller registry", allow_module_level=True)

PACKAGE_PARENT = os.path.dirname(os.path.dirname(cnnkit.__file__))


def cnnkit_entries():
    return [info for info in threadpoolctl.threadpool_info() if info["internal_api"] == "cnnkit"]


def test_threadpool_info_lists_cnnkit(num_threads):
    num_threads(3)
    (info,) = cnnkit_entries()
    assert info["user_api"] == "cnnkit" and info["internal_api"] == "cnnkit"
    assert info["num_threads"] == 3
    assert info["version"] == cnnkit.__version__
    assert os.path.realpath(info["filepath"]) == os.path.realpath(cnnkit._C.__file__)


def test_threadpool_limits_caps_cnnkit_and_restores_it(num_threads):
    num_threads(3)
    with threadpoolctl.threadpool_limits(1):
        assert cnnkit.get_num_threads() == 1
    assert cnnkit.get_num_threads() == 3


def test_threadpool_limits_by_user_api(num_threads):
    num_threads(3)
    blas_before = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    with threadpoolctl.threadpool_limits(1, user_api="cnnkit"):
        assert cnnkit.get_num_threads() == 1
        assert [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"] == blas_before
    assert cnnkit.get_num_threads() == 3
    with threadpoolctl.threadpool_limits(limits={"cnnkit": 2}):
        assert cnnkit.get_num_threads() == 2
    assert cnnkit.get_num_threads() == 3


def test_controller_api(num_threads):
    num_threads(2)
    controller = threadpoolctl.ThreadpoolController().select(user_api="cnnkit")
    assert len(controller.lib_controllers) == 1
    with controller.limit(limits=1):
        assert cnnkit.get_num_threads() == 1
    assert cnnkit.get_num_threads() == 2
    lib = controller.lib_controllers[0]
    lib.set_num_threads(0)  # the C ABI clamps to 1 rather than refusing
    assert cnnkit.get_num_threads() == 1


def test_other_libraries_named_like_c_are_not_taken():
    pytest.importorskip("torch")  # torch/_C.*.so: the same stem, without cnnkit's symbols
    assert len(cnnkit_entries()) == 1


def run_python(code):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [PACKAGE_PARENT, os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize(
    "setup",
    [
        "sys.modules['threadpoolctl'] = None",  # not installed
        "sys.modules['threadpoolctl'] = types.ModuleType('threadpoolctl')",  # < 3.0: no register
    ],
    ids=["absent", "too_old"],
)
def test_cnnkit_imports_without_a_usable_threadpoolctl(setup):
    result = run_python(
        f"import sys, types\n{setup}\nimport cnnkit\n"
        "assert 'cnnkit._threadpoolctl' not in sys.modules\n"
        "print(cnnkit.get_num_threads() >= 1)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"
