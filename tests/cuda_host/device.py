"""A stand-in CUDA device on the CPU: a CuPy-like module whose arrays live in "device
memory", run by cnnkit.cuda.Backend on the host-compiled kernels (tests/cuda_host).

    with standin_gpu(monkeypatch) as gpu:        # sys.modules["cupy"] is the stand-in
        x = gpu.asarray(host_array)              # one host-to-device copy, counted
        y = cnnkit.functional.relu(x)            # dispatched to the backend, as on CuPy
        gpu.transfers                            # [("H->D", "asarray", shape), ...]
        check_on_device(gpu, "relu")             # cnnkit.testing.check_op on the device

check_on_device and FAMILY_OPS serve the GPU tests too, with xp = cupy.

DeviceArray is an ndarray subclass (the host kernels take its memory as it is), made to
behave as a cupy.ndarray where it matters for host/device traffic:
- arithmetic keeps results on the device (0-d ones too: a reduction is not a host
  number), and refuses host arrays as operands (CuPy raises TypeError);
- every way to the host (asnumpy, .get(), float(), int(), bool(), .item(), .tolist(),
  indexing out a scalar) and from it (asarray/array of host data, .set(), assigning host
  data into a slice) is recorded in `transfers`;
- a kernel launched with a host array raises TypeError (a GPU kernel would fault).
"""

import contextlib
import sys

import numpy as np

import cnnkit
from cnnkit import _dispatch
from cnnkit import functional as F
from cnnkit.cuda import Backend
from cnnkit.testing import check_op

from . import host_module

_COPYING = frozenset(("asarray", "array", "ascontiguousarray", "asfortranarray", "copy"))


class _Device:
    id = 0


class DeviceArray(np.ndarray):
    """An array in the stand-in device's memory."""

    device = _Device()
    transfers = None  # the owning stand-in's list (set by StandinCupy)

    def _record(self, direction, how):
        DeviceArray.transfers.append((direction, how, self.shape))

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        for a in inputs + (out or ()):
            if isinstance(a, np.ndarray) and not isinstance(a, DeviceArray):
                raise TypeError(f"stand-in GPU: {ufunc.__name__}: a host numpy.ndarray among device operands")
        args = [a.view(np.ndarray) if isinstance(a, DeviceArray) else a for a in inputs]
        if out is not None:
            kwargs["out"] = tuple(o.view(np.ndarray) for o in out)
        result = getattr(ufunc, method)(*args, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _on_device(result)

    def __getitem__(self, index):
        return _on_device(super().__getitem__(index))

    def __setitem__(self, index, value):
        if not isinstance(value, DeviceArray) and not isinstance(value, (int, float, bool, np.generic)):
            self._record("H->D", "__setitem__")
        super().__setitem__(index, value.view(np.ndarray) if isinstance(value, DeviceArray) else value)

    def get(self):
        self._record("D->H", "get")
        return np.array(self.view(np.ndarray))

    def set(self, value):
        self._record("H->D", "set")
        self.view(np.ndarray)[...] = value



def _to_host(name):
    def method(self, *args):
        self._record("D->H", name)
        return getattr(np.ndarray, name)(self.view(np.ndarray), *args)

    method.__name__ = name
    return method


for _name in ("__float__", "__int__", "__index__", "__bool__", "__complex__", "item", "tolist"):
    setattr(DeviceArray, _name, _to_host(_name))
DeviceArray.__module__ = "cupy"
DeviceArray.__name__ = DeviceArray.__qualname__ = "ndarray"  # CuPy's error messages


def _on_device(result):
    if isinstance(result, tuple):
        return tuple(_on_device(r) for r in result)
    if isinstance(result, np.generic):
        return np.asarray(result).view(DeviceArray)
    if type(result) is np.ndarray:
        return result.view(DeviceArray)
    return result


class _Kernel:
    def __init__(self, function):
        self.function = function

    def __call__(self, grid, block, args, shared_mem=0):
        for i, a in enumerate(args):
            if isinstance(a, np.ndarray) and not isinstance(a, DeviceArray):
                raise TypeError(f"{self.function.name}: argument {i}: a host numpy.ndarray passed to a GPU kernel")
        args = tuple(a.view(np.ndarray) if isinstance(a, DeviceArray) else a for a in args)
        return self.function(grid, block, args, shared_mem)


class _Module:
    """cupy.RawModule's interface over a HostModule: kernels take device arrays."""

    def __init__(self, family):
        self.host = host_module(family)

    def get_function(self, name):
        return _Kernel(self.host.get_function(name))


class StandinCupy:
    """Enough of the cupy module for cnnkit: device arrays, copies (recorded), devices."""

    ndarray = DeviceArray
    __name__, __version__ = "cupy", "stand-in"

    def __init__(self):
        self.transfers = []
        DeviceArray.transfers = self.transfers
        self.synchronized = 0
        standin = self

        class Device:
            def __init__(self, id=None):
                if id not in (None, 0):
                    raise ValueError(f"stand-in GPU: no device {id}")
                self.id = 0

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def synchronize(self):
                standin.synchronized += 1

        class runtime:
            @staticmethod
            def getDeviceCount():
                return 1

            @staticmethod
            def getDevice():
                return 0

            @staticmethod
            def getDeviceProperties(index):
                return {"name": b"stand-in GPU (host kernels)"}

            @staticmethod
            def runtimeGetVersion():
                return 12000

        self.cuda = type("cuda", (), {"Device": Device, "runtime": runtime})

    @staticmethod
    def is_available():
        return True

    def get_array_module(self, *arrays):
        return self if any(isinstance(a, DeviceArray) for a in arrays) else np

    def asnumpy(self, a):
        if isinstance(a, DeviceArray):
            a._record("D->H", "asnumpy")
            return np.array(a.view(np.ndarray))
        return np.asarray(a)

    def __getattr__(self, name):
        fn = getattr(np, name)
        if not callable(fn) or isinstance(fn, type):
            return fn

        def on_device(*args, **kwargs):
            if name in _COPYING and args and not isinstance(args[0], DeviceArray):  # data from the host
                self.transfers.append(("H->D", name, np.shape(args[0])))
                return np.array(fn(*args, **kwargs)).view(DeviceArray)
            if any(isinstance(a, np.ndarray) and not isinstance(a, DeviceArray) for a in args):
                raise TypeError(f"stand-in GPU: {name}: a host numpy.ndarray among device operands")
            return _on_device(fn(*args, **kwargs))

        return on_device


@contextlib.contextmanager
def standin_gpu(monkeypatch, max_blocks=None):
    """The stand-in as sys.modules["cupy"], with cnnkit's dispatch and backend on it."""
    gpu = StandinCupy()
    options = {} if max_blocks is None else {"max_blocks": max_blocks}
    backend = Backend(gpu, _Module, **options)
    classify = _dispatch.classify
    monkeypatch.setitem(sys.modules, "cupy", gpu)
    monkeypatch.setattr(_dispatch, "classify", lambda v: _dispatch.CUDA if isinstance(v, DeviceArray) else classify(v))
    monkeypatch.setattr(cnnkit.cuda, "backend", lambda: backend)
    try:
        yield gpu
    finally:
        DeviceArray.transfers = None


def on_device(xp, fn):
    """fn (an op of cnnkit.functional) on device arrays of xp (cupy, or the stand-in),
    for cnnkit.testing.check_op: host array arguments go to the device, those that fn
    updates in place (batch_norm's running statistics) come back; results stay on the
    device, where check_op reads them (.get())."""

    def run(*args, **kwargs):
        moved = []

        def to_device(v):
            if type(v) is not np.ndarray:
                return v
            d = xp.asarray(v)
            moved.append((v, d))
            return d

        result = fn(*map(to_device, args), **{k: to_device(v) for k, v in kwargs.items()})
        for host, device in moved:
            back = xp.asnumpy(device)
            if not np.array_equal(back, host, equal_nan=True):
                host[...] = back
        return result

    return run


# The ops of cnnkit.testing by the kernel family (cuda/<family>.cu) that runs them.
FAMILY_OPS = {
    "activation": ("relu", "sigmoid", "tanh"),
    "conv": ("conv2d", "conv_transpose2d", "linear"),
    "pool": ("max_pool2d", "max_unpool2d", "avg_pool2d", "lp_pool2d"),
    "softmax": ("softmax", "log_softmax", "cross_entropy", "mse_loss"),
    "norm": ("dropout", "batch_norm", "local_response_norm"),
}


def check_on_device(xp, op):
    """cnnkit.testing.check_op of cnnkit.functional's op and its backward on xp's device,
    in float32 and float64; returns check_op's report."""
    return check_op(op, on_device(xp, getattr(F, op)), backward=on_device(xp, getattr(F, op + "_backward")))
