"""The CUDA ops: validation through _C, then kernel launches.

Backend is written against an array module xp and a module loader, so that one code
path runs on CuPy (xp = cupy, loader = cupy.RawModule per family) and, in the tests, on
the CPU (xp = numpy, loader = tests/cuda_host's HostModule, which runs the same .cu
files). Launch configurations live here.

Each op method takes the operands that cnnkit.functional passes to _C (already
normalised, positionally), validates them with _C's checks (the same messages as on
the CPU) and returns new C-contiguous arrays of xp.
"""

import numpy as np

from .. import _C
from ._conv import ConvOps
from ._norm import NormOps
from ._pool import PoolOps
from ._softmax import SoftmaxOps

BLOCK = 256  # threads per block of the 1-D kernels
MAX_BLOCKS = 8192  # grid cap of the grid-stride kernels: enough to fill any current GPU

_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}


class Backend(ConvOps, NormOps, SoftmaxOps, PoolOps):
    """The ops on arrays of xp.

    Parameters
    ----------
    xp : module
        cupy, or numpy in the host tests.
    load_module : callable
        family -> an object with get_function(name) returning a kernel that is called
        as kernel(grid, block, args) (cupy.RawModule, or the tests' HostModule).
    max_blocks : int
        Grid cap of the grid-stride kernels (the tests lower it to run the loops).
    """

    def __init__(self, xp, load_module, max_blocks=MAX_BLOCKS):
        self.xp = xp
        self._load_module = load_module
        self.max_blocks = int(max_blocks)
        self._modules = {}
        self._kernels = {}

    # ---- helpers for the op families

    def kernel(self, family, name, dtype=None):
        """The kernel name (with _f32/_f64 for a float dtype) of cuda/<family>.cu."""
        if dtype is not None:
            name = f"{name}_{_SUFFIX[np.dtype(dtype)]}"
        k = self._kernels.get((family, name))
        if k is None:
            mod = self._modules.get(family)
            if mod is None:
                mod = self._modules[family] = self._load_module(family)
            k = self._kernels[family, name] = mod.get_function(name)
        return k

    def float_operands(self, op, optional=(), **operands):
        """Checks the float operands of op as _C does for NumPy ones: xp arrays of
        float32 or float64, all of one dtype; those named in optional may be None.
        Returns that dtype (None when all are absent)."""
        dtype = _C.check_float_operands(op, list(operands.items()), self.xp.ndarray, list(optional))
        return None if dtype is None else np.dtype(dtype)

    def contiguous(self, a):
        """a as a C-contiguous array (a itself when it is one): kernels see only pointers."""
        return a if a.flags.c_contiguous else self.xp.ascontiguousarray(a)

    def grid_1d(self, n):
        """(grid, block) of a grid-stride loop over n > 0 items."""
        return (min(-(-n // BLOCK), self.max_blocks),), (BLOCK,)

    def launch_1d(self, kernel, n, *args):
        """Runs kernel(*args) over n items with a grid-stride loop; nothing for n = 0."""
        if n > 0:
            grid, block = self.grid_1d(n)
            kernel(grid, block, args)

    def _elementwise(self, op, kernel, x):
        dtype = self.float_operands(op, input=x)
        x = self.contiguous(x)
        y = self.xp.empty(x.shape, dtype)
        self.launch_1d(self.kernel("activation", kernel, dtype), x.size, x, y, np.int64(x.size))
        return y

    def _elementwise_backward(self, op, kernel, other_name, gy, other):
        dtype = self.float_operands(op, **{"grad_output": gy, other_name: other})
        _C.check_shape(op, "grad_output", gy.shape, other.shape)
        gy, other = self.contiguous(gy), self.contiguous(other)
        gx = self.xp.empty(other.shape, dtype)
        n = other.size
        self.launch_1d(self.kernel("activation", kernel, dtype), n, gy, other, gx, np.int64(n))
        return gx

    # ---- activations (cuda/activation.cu)

    def relu(self, input):
        return self._elementwise("relu", "relu_forward", input)

    def relu_backward(self, grad_output, input):
        return self._elementwise_backward("relu_backward", "relu_backward", "input", grad_output, input)

    def sigmoid(self, input):
        return self._elementwise("sigmoid", "sigmoid_forward", input)

    def sigmoid_backward(self, grad_output, output):
        return self._elementwise_backward("sigmoid_backward", "sigmoid_backward", "output", grad_output, output)

    def tanh(self, input):
        return self._elementwise("tanh", "tanh_forward", input)

    def tanh_backward(self, grad_output, output):
        return self._elementwise_backward("tanh_backward", "tanh_backward", "output", grad_output, output)
