"""Pooling on the GPU (cuda/pool.cu): max pooling with switches, max unpooling, average
and Lp pooling, forward and backward.

The op methods take what cnnkit.functional passes to _C and return what _C returns.
Geometry and messages come from _C; out-of-range switches are found by a kernel and
reported through _C.check_switch with the CPU's message (position and value of the
first bad one).
"""

import numpy as np

from .. import _C

FAMILY = "pool"
SWITCH_BLOCK = 256  # CK_POOL_BLOCK of cuda/pool.cu: the per-plane switch kernel's block


def _geometry_args(g):
    """The CK_POOL_GEOM_PARAMS scalars of a _C geometry dict."""
    keys = ("h", "w", "ho", "wo", "kh", "kw", "sh", "sw", "ph", "pw", "dh", "dw")
    return (np.int64(g["n"] * g["c"]),) + tuple(np.int64(g[k]) for k in keys)


class PoolOps:
    """Mixin of Backend: the pooling ops."""

    def _pool_host(self, a):
        get = getattr(self.xp, "asnumpy", None)
        return get(a) if get is not None else np.asarray(a)

    def _switches_operand(self, op, switches):
        """switches as a contiguous int64 array of xp, with the CPU's TypeErrors."""
        xp = self.xp
        if not isinstance(switches, xp.ndarray):
            kind = f"{xp.ndarray.__module__}.{xp.ndarray.__name__}"
            raise TypeError(f"{op}: switches: expected a {kind} of int64, got {type(switches).__name__}")
        if switches.dtype != np.int64:
            raise TypeError(f"{op}: switches: expected dtype int64, got {switches.dtype}")
        return self.contiguous(switches)

    def _check_switches(self, op, switches, plane):
        """Raises the CPU's ValueError for the first switch outside [0, plane)."""
        n = switches.size
        if n == 0:
            return
        found = self.xp.full(2, n, np.int64)
        self.launch_1d(self.kernel(FAMILY, "switches_first_bad"), n, switches, np.int64(n), np.int64(plane), found)
        self.kernel(FAMILY, "switches_report")((1,), (1,), (switches, np.int64(n), found))
        # The op's one device -> host read, after its kernels (which skip bad switches):
        # only to raise the error on the host, as the CPU does.
        first, value = (int(v) for v in self._pool_host(found))
        if first < n:
            _C.check_switch(op, tuple(switches.shape), first, value, plane)
            raise AssertionError(f"{op}: switch check: position {first} reported, not refused")

    # ---- max pooling

    def max_pool2d(self, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
        op = "max_pool2d"
        dtype = self.float_operands(op, input=input)
        g = _C.pool2d_geometry(op, tuple(input.shape), kernel_size, stride, padding, dilation, ceil_mode)
        x = self.contiguous(input)
        shape = (g["n"], g["c"], g["ho"], g["wo"])
        y = self.xp.empty(shape, dtype)
        s = self.xp.empty(shape if return_indices else (0,), np.int64)
        self.launch_1d(self.kernel(FAMILY, "max_pool2d_forward", dtype), y.size, x, y, s,
                       np.int32(bool(return_indices)), *_geometry_args(g))
        return (y, s) if return_indices else y

    def max_pool2d_backward(self, grad_output, switches, input_shape):
        op = "max_pool2d_backward"
        dtype = self.float_operands(op, grad_output=grad_output)
        sw = self._switches_operand(op, switches)
        full = _C.pool2d_input_shape(op, input_shape)
        g = _C.switches_geometry(op, "grad_output", tuple(grad_output.shape), "input_shape", full)
        _C.check_shape(op, "switches", tuple(sw.shape), tuple(grad_output.shape))
        gy = self.contiguous(grad_output)
        gx = self.xp.empty(full, dtype)
        planes, plane = g["n"] * g["c"], g["h"] * g["w"]
        if planes > 0:
            k = self.kernel(FAMILY, "max_pool2d_backward", dtype)
            k((min(planes, self.max_blocks),), (SWITCH_BLOCK,),
              (gy, sw, gx, np.int64(planes), np.int64(g["ho"] * g["wo"]), np.int64(plane)))
        self._check_switches(op, sw, plane)
        return gx

    # ---- max unpooling

    def max_unpool2d(self, input, switches, kernel_size, stride, padding, output_size):
        op = "max_unpool2d"
        dtype = self.float_operands(op, input=input)
        sw = self._switches_operand(op, switches)
        g = _C.max_unpool2d_geometry(op, tuple(input.shape), kernel_size, stride, padding, output_size)
        _C.check_shape(op, "switches", tuple(sw.shape), tuple(input.shape))
        x = self.contiguous(input)
        plane, count = g["h"] * g["w"], g["ho"] * g["wo"]
        y = self.xp.empty((g["n"], g["c"], g["h"], g["w"]), dtype)
        # The last of duplicate switches wins, as on the CPU: integer maxima of positions.
        winner = self.xp.full(y.shape, -1, np.int64)
        self.launch_1d(self.kernel(FAMILY, "max_unpool2d_winners"), sw.size, sw, winner, np.int64(sw.size),
                       np.int64(count), np.int64(plane))
        self.launch_1d(self.kernel(FAMILY, "max_unpool2d_forward", dtype), y.size, x, winner, y,
                       np.int64(y.size), np.int64(count), np.int64(plane))
        self._check_switches(op, sw, plane)
        return y

    def max_unpool2d_backward(self, grad_output, switches):
        op = "max_unpool2d_backward"
        dtype = self.float_operands(op, grad_output=grad_output)
        sw = self._switches_operand(op, switches)
        g = _C.switches_geometry(op, "switches", tuple(sw.shape), "grad_output", tuple(grad_output.shape))
        gy = self.contiguous(grad_output)
        plane, count = g["h"] * g["w"], g["ho"] * g["wo"]
        gx = self.xp.empty(sw.shape, dtype)
        self.launch_1d(self.kernel(FAMILY, "max_unpool2d_backward", dtype), sw.size, gy, sw, gx,
                       np.int64(sw.size), np.int64(count), np.int64(plane))
        self._check_switches(op, sw, plane)
        return gx

    # ---- average pooling

    def avg_pool2d(self, input, kernel_size, stride, padding, ceil_mode, count_include_pad):
        op = "avg_pool2d"
        dtype = self.float_operands(op, input=input)
        g = _C.pool2d_geometry(op, tuple(input.shape), kernel_size, stride, padding, (1, 1), ceil_mode)
        x = self.contiguous(input)
        y = self.xp.empty((g["n"], g["c"], g["ho"], g["wo"]), dtype)
        self.launch_1d(self.kernel(FAMILY, "avg_pool2d_forward", dtype), y.size, x, y,
                       np.int32(bool(count_include_pad)), *_geometry_args(g))
        return y

    def avg_pool2d_backward(self, grad_output, input_shape, kernel_size, stride, padding, ceil_mode,
                            count_include_pad):
        op = "avg_pool2d_backward"
        dtype = self.float_operands(op, grad_output=grad_output)
        full = _C.pool2d_input_shape(op, input_shape)
        g = _C.pool2d_geometry(op, full, kernel_size, stride, padding, (1, 1), ceil_mode)
        _C.check_shape(op, "grad_output", tuple(grad_output.shape), (g["n"], g["c"], g["ho"], g["wo"]))
        gy = self.contiguous(grad_output)
        gx = self.xp.empty(full, dtype)
        self.launch_1d(self.kernel(FAMILY, "avg_pool2d_backward", dtype), gx.size, gy, gx,
                       np.int32(bool(count_include_pad)), *_geometry_args(g))
        return gx

    # ---- Lp pooling

    def lp_pool2d(self, input, norm_type, kernel_size, stride, ceil_mode):
        op = "lp_pool2d"
        dtype = self.float_operands(op, input=input)
        _C.check_norm_type(op, norm_type)
        g = _C.pool2d_geometry(op, tuple(input.shape), kernel_size, stride, (0, 0), (1, 1), ceil_mode)
        x = self.contiguous(input)
        y = self.xp.empty((g["n"], g["c"], g["ho"], g["wo"]), dtype)
        self.launch_1d(self.kernel(FAMILY, "lp_pool2d_forward", dtype), y.size, x, y, np.float64(norm_type),
                       *_geometry_args(g))
        return y

    def lp_pool2d_backward(self, grad_output, input, norm_type, kernel_size, stride, ceil_mode):
        op = "lp_pool2d_backward"
        dtype = self.float_operands(op, grad_output=grad_output, input=input)
        _C.check_norm_type(op, norm_type)
        g = _C.pool2d_geometry(op, tuple(input.shape), kernel_size, stride, (0, 0), (1, 1), ceil_mode)
        _C.check_shape(op, "grad_output", tuple(grad_output.shape), (g["n"], g["c"], g["ho"], g["wo"]))
        xp = self.xp
        gy, x = self.contiguous(grad_output), self.contiguous(input)
        gx = xp.empty(x.shape, dtype)
        geom = _geometry_args(g)
        p = np.float64(norm_type)
        if np.isinf(p):
            switches = xp.empty(gy.shape, np.int64)
            self.launch_1d(self.kernel(FAMILY, "lp_pool2d_switches", dtype), gy.size, x, switches, p, *geom)
            self.launch_1d(self.kernel(FAMILY, "lp_pool2d_backward_inf", dtype), gx.size, gy, switches, x, gx,
                           *geom)
            return gx
        coef = xp.empty(gy.shape, dtype)
        self.launch_1d(self.kernel(FAMILY, "lp_pool2d_backward_coef", dtype), gy.size, gy, x, coef, p, *geom)
        self.launch_1d(self.kernel(FAMILY, "lp_pool2d_backward_input", dtype), gx.size, coef, x, gx, p, *geom)
        return gx
