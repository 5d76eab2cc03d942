"""cnnkit's GPU backend: the kernels of cuda/*.cu, compiled by CuPy at first use.

cnnkit.functional sends CuPy arrays (and CUDA arrays of other libraries, through
``__cuda_array_interface__`` or DLPack) here; importing cnnkit never imports CuPy.
Install CuPy with the ``cuda`` extra (``pip install cnnkit[cuda]``, CUDA 12) or the
CuPy wheel for your CUDA.
"""

from ._backend import Backend
from ._loader import families, kernel_dir, module_source

__all__ = ["is_available", "backend", "Backend", "kernel_dir", "families", "module_source"]


def is_available():
    """Whether cnnkit can run on a GPU here.

    Returns
    -------
    bool
        True when CuPy imports and sees at least one CUDA device.
    """
    try:
        import cupy
    except Exception:
        return False
    try:
        return bool(cupy.is_available())
    except Exception:
        return False


_backends = {}


def backend():
    """The CuPy backend of the current CUDA device (cupy.cuda.Device).

    Returns
    -------
    Backend
        Its kernels are compiled for this device at their first use.
    """
    import cupy

    from ._loader import raw_module

    dev = cupy.cuda.runtime.getDevice()
    b = _backends.get(dev)
    if b is None:
        b = _backends[dev] = Backend(cupy, raw_module)
    return b
