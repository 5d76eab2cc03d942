"""A forked child (multiprocessing's default start method on Linux) gets a working pool."""

import os
import subprocess
import sys
import textwrap

import cnnkit

SCRIPT = textwrap.dedent(
    """
    import os, numpy as np, cnnkit.functional as F
    x = np.random.default_rng(0).standard_normal((8, 16, 32, 32))
    w = np.random.default_rng(1).standard_normal((16, 16, 3, 3))
    y = F.conv2d(x, w, padding=1)          # starts the worker threads
    pid = os.fork()
    if pid == 0:
        ok = np.array_equal(F.conv2d(x, w, padding=1), y)
        os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    raise SystemExit(os.waitstatus_to_exitcode(status))
    """
)


def test_conv_in_forked_child_neither_hangs_nor_differs():
    root = os.path.dirname(os.path.dirname(cnnkit.__file__))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="2")
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, timeout=120)
    assert result.returncode == 0
