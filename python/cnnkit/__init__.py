"""cnnkit: fast CNN kernels with a NumPy API."""

import scipy_openblas32 as _openblas  # noqa: F401  loads OpenBLAS before _C links to it

from . import _C
from . import functional
from . import functional as F
from . import data, models, nn, optim
from ._random import manual_seed
from .gradcheck import gradcheck
from .summary import summary

__version__ = "0.1.0"

get_num_threads = _C.get_num_threads
set_num_threads = _C.set_num_threads
get_workspace_bytes = _C.get_workspace_bytes
set_workspace_bytes = _C.set_workspace_bytes
simd_level = _C.simd_level
blas_config = _C.blas_config


def _register_threadpoolctl():
    """Let threadpoolctl see and cap cnnkit's pool, where threadpoolctl >= 3.0 is installed."""
    try:
        import threadpoolctl
    except ImportError:
        return
    if hasattr(threadpoolctl, "register"):
        from ._threadpoolctl import register

        register()


_register_threadpoolctl()

__all__ = [
    "F",
    "functional",
    "get_num_threads",
    "set_num_threads",
    "get_workspace_bytes",
    "set_workspace_bytes",
    "simd_level",
    "blas_config",
    "nn",
    "optim",
    "models",
    "data",
    "gradcheck",
    "summary",
    "manual_seed",
]
