"""cnnkit: fast CNN kernels with a NumPy API."""

import scipy_openblas32 as _openblas  # noqa: F401  loads OpenBLAS before _C links to it

from . import _C, _args
from . import functional
from . import functional as F
from . import classic, data, models, nn, optim
from ._random import manual_seed
from .gradcheck import gradcheck
from .summary import summary

__version__ = "0.1.0"



def get_num_threads():
    """The number of threads cnnkit's kernels run on.

    Returns
    -------
    int
        At least 1. By default every core the process may run on, or
        ``OMP_NUM_THREADS`` when it is set; changed by :func:`set_num_threads` and by
        ``threadpoolctl.threadpool_limits``.
    """
    return _C.get_num_threads()


def set_num_threads(n):
    """Set the number of threads cnnkit's kernels run on (the process has one pool).

    OpenBLAS stays single-threaded: cnnkit splits every GEMM over its own pool, so
    the cores are never oversubscribed.

    Parameters
    ----------
    n : int
        Thread count, 1 to 1024.

    Returns
    -------
    None

    Raises
    ------
    TypeError
        If n is not an int.
    ValueError
        If n is outside [1, 1024].
    """
    _C.set_num_threads(_args.integer(n, "set_num_threads", "n"))


def get_workspace_bytes():
    """The bound on the scratch memory one convolution call may use.

    Returns
    -------
    int
        Bytes (64 MiB by default). Larger layers run in blocks of columns (im2col)
        or passes of tiles (Winograd) that fit.
    """
    return _C.get_workspace_bytes()


def set_workspace_bytes(bytes):
    """Set the bound on the scratch memory one convolution call may use.

    Parameters
    ----------
    bytes : int
        A positive byte count. A smaller bound means more, smaller GEMM blocks.

    Returns
    -------
    None

    Raises
    ------
    TypeError
        If bytes is not an int.
    ValueError
        If bytes is not positive or does not fit in int64.
    """
    _C.set_workspace_bytes(_args.integer(bytes, "set_workspace_bytes", "bytes"))


def simd_level():
    """The SIMD code path the kernels chose for this CPU at run time.

    Returns
    -------
    str
        ``'x86-64-v4 (AVX-512)'``, ``'x86-64-v3 (AVX2, FMA)'`` or ``'baseline'``
        (the generic path, which any x86-64 runs).
    """
    return _C.simd_level()


def blas_config():
    """The OpenBLAS build cnnkit runs on (from the scipy-openblas32 wheel).

    Returns
    -------
    str
        OpenBLAS's own configuration string (version, target core, threading).
    """
    return _C.blas_config()


def set_sgemm_kernel(kernel):
    """Choose the single-precision GEMM under the convolutions, linear layers and kNN.

    ``'auto'`` (the default) runs cnnkit's own packed AVX-512 kernel where the CPU has
    AVX-512F and OpenBLAS's elsewhere; ``'openblas'`` runs OpenBLAS's everywhere (to
    compare with it). Double precision always runs OpenBLAS. The setting is global.

    Parameters
    ----------
    kernel : {'auto', 'openblas'}

    Raises
    ------
    TypeError
        If kernel is not a str.
    ValueError
        If kernel is another string.
    """
    if not isinstance(kernel, str):
        raise TypeError(f"set_sgemm_kernel: kernel: expected 'auto' or 'openblas', got {type(kernel).__name__}")
    _C.set_sgemm_kernel(kernel)


def get_sgemm_kernel():
    """The single-precision GEMM that runs now.

    Returns
    -------
    str
        ``'avx512'`` (cnnkit's own) or ``'openblas'``.
    """
    return _C.get_sgemm_kernel()


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
    "set_sgemm_kernel",
    "get_sgemm_kernel",
    "nn",
    "optim",
    "models",
    "data",
    "classic",
    "gradcheck",
    "summary",
    "manual_seed",
]
