"""Peak extra memory of conv2d forward stays within the output plus the workspace cap."""

import os
import subprocess
import sys
import textwrap

import cnnkit

SCRIPT = textwrap.dedent(
    """
    import resource, numpy as np, cnnkit, cnnkit.functional as F
    cnnkit.set_workspace_bytes({cap})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 64, 64, 64), dtype=np.float32)   # 32 MiB
    w = rng.standard_normal((64, 64, 3, 3), dtype=np.float32)
    F.conv2d(x[:2], w, padding=1)                                  # warm up OpenBLAS's own buffers
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    y = F.conv2d(x, w, padding=1)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(after - before, y.nbytes)
    """
)


def test_conv2d_forward_peak_memory_is_output_plus_workspace():
    cap = 16 << 20
    root = os.path.dirname(os.path.dirname(cnnkit.__file__))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(cap=cap)], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    extra, output_bytes = int(out[0]), int(out[1])
    # A full im2col of this layer would be 32*576*4096 floats = 288 MiB.
    slack = 8 << 20
    assert extra <= output_bytes + cap + slack, (extra, output_bytes)
