"""Devices and array modules: the one home of "which array module holds this array" and
of moving arrays between the host and a GPU.

CuPy is never imported here unless a CUDA device is asked for, or is already imported
and an array may be one of its own.
"""

import re
import sys

import numpy as np

_DEVICE = re.compile(r"(cpu|cuda)(?::(\d+))?")


def array_module(a):
    """numpy, or cupy for a cupy.ndarray (as cupy.get_array_module, never importing CuPy)."""
    if type(a) is np.ndarray:
        return np
    cupy = sys.modules.get("cupy")
    if cupy is not None and isinstance(a, cupy.ndarray):
        return cupy
    return np


def parse_device(device, where):
    """("cpu", None) or ("cuda", index) from "cpu", "cuda" (the current device) or "cuda:N".

    where: the function and argument for the message, e.g. "Linear.to: device".
    """
    m = _DEVICE.fullmatch(device) if isinstance(device, str) else None
    if m is None or (m.group(1) == "cpu" and m.group(2) is not None):
        raise ValueError(f"{where}: expected 'cpu', 'cuda' or 'cuda:N' (N a device index), got {device!r}")
    return m.group(1), None if m.group(2) is None else int(m.group(2))


def cuda_module(where, index=None):
    """cupy, once it is known to run here (and to have device index, when given).

    Raises RuntimeError naming `where` when CuPy is missing or sees no GPU, ValueError
    for an index beyond the devices it sees.
    """
    try:
        import cupy
    except ImportError:
        raise RuntimeError(
            f"{where}: 'cuda' needs CuPy and a CUDA GPU, and CuPy is not installed "
            "(pip install cnnkit[cuda], or the cupy-cudaNNx wheel of your CUDA)"
        ) from None
    from . import cuda

    if not cuda.is_available():
        raise RuntimeError(f"{where}: 'cuda' needs a CUDA GPU, and CuPy sees none here (cupy.is_available() is False)")
    if index is not None:
        count = cupy.cuda.runtime.getDeviceCount()
        if index >= count:
            raise ValueError(f"{where}: expected 'cuda:N' with N < {count} (the CUDA devices here), got 'cuda:{index}'")
    return cupy


def require(device, where):
    """(kind, index) of a device string, once that device is known to run here (the
    errors of parse_device and cuda_module, naming where)."""
    kind, index = parse_device(device, where)
    if kind == "cuda":
        cuda_module(f"{where} {device}", index)
    return kind, index


def to_device(a, kind, index=None):
    """a on the host (kind "cpu": a NumPy array) or on CUDA device index; a itself when it
    is there already. index None: a GPU array stays on its device, anything else goes to
    the current one. For kind "cuda", CuPy must have been imported (cuda_module does)."""
    cupy = sys.modules.get("cupy")
    on_gpu = cupy is not None and isinstance(a, cupy.ndarray)
    if kind == "cpu":
        return cupy.asnumpy(a) if on_gpu else a
    if on_gpu and (index is None or a.device.id == index):
        return a
    with cupy.cuda.Device(index):
        return cupy.array(a) if on_gpu else cupy.asarray(a)


def move_like(a, like):
    """a on the device of the array like (a itself when it is there)."""
    where = place(like)
    return a if place(a) == where else to_device(a, *where)


def to_host(a):
    """a as a NumPy array: copied from the GPU (a cupy array, or a torch tensor), or as it is."""
    if hasattr(a, "detach"):  # a torch tensor
        return a.detach().cpu().numpy()
    return to_device(a, "cpu")


def place(a):
    """Where a lives: ("cpu", None), or ("cuda", its device index)."""
    return ("cpu", None) if array_module(a) is np else ("cuda", a.device.id)


def describe(a):
    """Where a lives, for messages: 'cpu' or 'cuda:N'."""
    kind, index = place(a)
    return kind if index is None else f"{kind}:{index}"
