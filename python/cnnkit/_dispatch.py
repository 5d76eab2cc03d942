"""Dispatch of cnnkit.functional's ops on the type of their array operands.

    def relu(input):
        return _dispatch.call("relu", _C.relu, input=input)

call(op, cpu_fn, **args) passes args, in order and positionally, to cpu_fn (the _C
function: NumPy operands, today's path, unchanged) unless one of them is a CUDA array:
a cupy.ndarray, or an object with __cuda_array_interface__ or a CUDA __dlpack_device__
(such as a torch CUDA tensor). Then every array operand must be one (NumPy and CUDA
arrays mixed raise TypeError), on one device; they are taken as CuPy arrays (no copy)
and cnnkit.cuda's backend method named op runs with the same arguments on that device.
The keyword names are the ones error messages use. Non-array arguments (ints, tuples,
None...) pass through untouched. CuPy is imported only when a CUDA array comes.
"""

import sys

import numpy as np

from . import cuda as _cuda

NUMPY, CUDA = "numpy", "cuda"
_ndarray = np.ndarray

_DLPACK_CUDA = (2, 13)  # DLPack's kDLCUDA and kDLCUDAManaged
_PLAIN = frozenset((int, float, bool, str, tuple, list, type(None), dict, complex))


def classify(value):
    """NUMPY for a numpy.ndarray, CUDA for an array in CUDA memory, else None."""
    if isinstance(value, np.ndarray):
        return NUMPY
    if type(value) in _PLAIN:
        return None
    cupy = sys.modules.get("cupy")
    if cupy is not None and isinstance(value, cupy.ndarray):
        return CUDA
    device = getattr(value, "__dlpack_device__", None)
    if device is not None:
        try:
            return CUDA if int(device()[0]) in _DLPACK_CUDA else None
        except Exception:
            return None
    try:
        value.__cuda_array_interface__
    except Exception:  # absent, or refused (a tensor in host memory)
        return None
    return CUDA


def call(op, cpu, **args):
    """cpu(*args.values()) for NumPy operands, else the CUDA backend's op (see the module)."""
    values = args.values()
    for v in values:
        if type(v) is not _ndarray and classify(v) is CUDA:
            return _call_cuda(op, args)
    return cpu(*values)


def _as_cupy(cupy, value):
    if isinstance(value, cupy.ndarray):
        return value
    if hasattr(value, "__dlpack_device__"):
        return cupy.from_dlpack(value)
    return cupy.asarray(value)


def _call_cuda(op, args):
    kinds = {name: classify(v) for name, v in args.items()}
    first = next(name for name, k in kinds.items() if k == CUDA)
    for name, kind in kinds.items():
        if kind == NUMPY:
            raise TypeError(f"{op}: {name}: expected a cupy.ndarray like {first}, got numpy.ndarray")
    try:
        import cupy
    except ImportError as e:
        raise ImportError(f"{op}: {first}: got a CUDA array, and running on it needs CuPy (pip install cnnkit[cuda])") from e
    values, device = [], None
    for name, v in args.items():
        if kinds[name] == CUDA:
            v = _as_cupy(cupy, v)
            if device is None:
                device = v.device.id
            elif v.device.id != device:
                raise ValueError(
                    f"{op}: {name}: expected an array on CUDA device {device} like {first}, got one on device {v.device.id}"
                )
        values.append(v)
    with cupy.cuda.Device(device):
        return getattr(_cuda.backend(), op)(*values)
