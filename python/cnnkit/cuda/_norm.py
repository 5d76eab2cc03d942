"""Dropout, batch norm and local response norm on the GPU (cuda/norm.cu).

The op methods take what cnnkit.functional passes to _C and return what _C returns:
dropout (y, mask), batch_norm (y, contiguous input, mean, invstd) with the float64
statistics of the CPU, local_response_norm y.
"""

import math
import operator

import numpy as np

from .. import _C

REDUCE_BLOCK = 256  # CK_NORM_BLOCK of cuda/norm.cu: the per-channel kernels' block


class NormOps:
    """Mixin of Backend: the normalisation and dropout ops."""

    def _absent(self, dtype):
        # Stands in for an optional operand the kernel is told not to touch.
        return self.xp.empty(0, dtype)

    def _per_channel(self, kernel, channels, *args):
        """kernel(*args) with one 256-thread block per channel (grid-stride over them)."""
        if channels > 0:
            kernel((min(channels, self.max_blocks),), (REDUCE_BLOCK,), args)

    # ---- dropout

    def dropout(self, input, p, training, seed):
        op = "dropout"
        dtype = self.float_operands(op, input=input)
        # p and seed checked by _C itself (on an empty NumPy stand-in): its messages.
        _C.dropout(np.empty(0, dtype), p, training, seed)
        x = self.contiguous(input)
        if not training:
            return self.xp.array(x, dtype, copy=True), None
        y = self.xp.empty(x.shape, dtype)
        mask = self.xp.empty(x.shape, np.bool_)
        keep_below = np.int64(int(math.ldexp(1.0 - p, 53)))
        scale = dtype.type(1.0 / (1.0 - p))
        seed = np.uint64(operator.index(seed))
        self.launch_1d(self.kernel("norm", "dropout_forward", dtype), x.size, x, y, mask,
                       np.int64(x.size), seed, keep_below, scale)
        return y, mask

    def dropout_backward(self, grad_output, mask, p):
        op = "dropout_backward"
        dtype = self.float_operands(op, grad_output=grad_output)
        _C.check_dropout_p(op, p)
        if mask is not None:
            if not (isinstance(mask, self.xp.ndarray) and mask.dtype == np.bool_):
                # _C's message for this mask: raised on a NumPy stand-in of its dtype.
                standin = np.empty(0, mask.dtype) if isinstance(mask, self.xp.ndarray) else mask
                _C.dropout_backward(np.empty(0, dtype), standin, p)
                raise TypeError(f"{op}: mask: expected the bool array (or None) that dropout returned, "
                                f"got {type(mask).__module__}.{type(mask).__name__}")
            _C.check_shape(op, "mask", mask.shape, grad_output.shape)
        g = self.contiguous(grad_output)
        if mask is None:  # eval mode: dropout was the identity
            return self.xp.array(g, dtype, copy=True)
        keep = self.contiguous(mask)
        gx = self.xp.empty(g.shape, dtype)
        scale = dtype.type(1.0 / (1.0 - p))
        self.launch_1d(self.kernel("norm", "dropout_backward", dtype), g.size, g, keep, gx,
                       np.int64(g.size), scale)
        return gx

    # ---- batch norm

    def _check_in_place(self, op, name, a):
        # As bindings.cpp's check_in_place: an updated copy would be lost.
        if a is None:
            return
        flags = a.flags
        writeable = getattr(flags, "writeable", True)
        aligned = getattr(flags, "aligned", True)
        if not (flags.c_contiguous and aligned and writeable):
            why = "a read-only array" if not writeable else "a misaligned array" if not aligned else "a non-contiguous array"
            raise ValueError(f"{op}: {name}: expected a writeable, aligned C-contiguous array (it is updated in place), got {why}")

    def batch_norm(self, input, gamma, beta, running_mean, running_var, training, momentum, eps):
        op = "batch_norm"
        dtype = self.float_operands(op, optional=("gamma", "beta", "running_mean", "running_var"), input=input,
                                    gamma=gamma, beta=beta, running_mean=running_mean, running_var=running_var)
        shape = lambda a: None if a is None else tuple(a.shape)  # noqa: E731
        n, c, s = _C.check_batch_norm(op, tuple(input.shape), shape(gamma), shape(beta), shape(running_mean),
                                      shape(running_var), training, eps)
        if training:
            self._check_in_place(op, "running_mean", running_mean)
            self._check_in_place(op, "running_var", running_var)
        xp = self.xp
        x = self.contiguous(input)
        absent = self._absent(dtype)
        opt = lambda a: absent if a is None else self.contiguous(a)  # noqa: E731
        # In training the running stats are the caller's arrays (checked above), updated in place.
        rm, rv = opt(running_mean), opt(running_var)
        mean, invstd = xp.empty(c, np.float64), xp.empty(c, np.float64)
        y = xp.empty(x.shape, dtype)
        self._per_channel(self.kernel("norm", "batch_norm_stats", dtype), c, x, rm, rv, mean, invstd, np.int64(n),
                          np.int64(c), np.int64(s), np.int32(training), np.int32(running_mean is not None),
                          np.int32(running_var is not None), np.float64(momentum), np.float64(eps))
        self.launch_1d(self.kernel("norm", "batch_norm_affine", dtype), x.size, x, opt(gamma), opt(beta), mean,
                       invstd, y, np.int64(x.size), np.int64(c), np.int64(s), np.int32(gamma is not None),
                       np.int32(beta is not None))
        return y, x, mean, invstd

    def _saved_stat(self, op, name, a, channels):
        if not isinstance(a, self.xp.ndarray):  # bindings.cpp's message for a statistic it cannot convert
            raise TypeError(f"{op}: {name}: expected a float64 array from batch_norm")
        a = self.contiguous(a.astype(np.float64, copy=False))
        _C.check_shape(op, name, tuple(a.shape), (channels,))
        return a

    def batch_norm_backward(self, grad_output, input, gamma, mean, invstd, training, has_beta):
        op = "batch_norm_backward"
        dtype = self.float_operands(op, optional=("gamma",), grad_output=grad_output, input=input, gamma=gamma)
        n, c, s = _C.check_batch_norm_input(op, tuple(input.shape), None if gamma is None else tuple(gamma.shape),
                                            None)
        _C.check_shape(op, "grad_output", tuple(grad_output.shape), tuple(input.shape))
        mean = self._saved_stat(op, "saved.mean", mean, c)
        invstd = self._saved_stat(op, "saved.invstd", invstd, c)
        xp = self.xp
        g, x = self.contiguous(grad_output), self.contiguous(input)
        absent = self._absent(dtype)
        gam = absent if gamma is None else self.contiguous(gamma)
        ggamma = xp.empty(c, dtype) if gamma is not None else None
        gbeta = xp.empty(c, dtype) if has_beta else None
        coef = xp.empty(3 * c, np.float64)
        gx = xp.empty(x.shape, dtype)
        self._per_channel(self.kernel("norm", "batch_norm_backward_sums", dtype), c, g, x, gam, mean, invstd,
                          absent if ggamma is None else ggamma, absent if gbeta is None else gbeta, coef,
                          np.int64(n), np.int64(c), np.int64(s), np.int32(training), np.int32(gamma is not None),
                          np.int32(has_beta))
        self.launch_1d(self.kernel("norm", "batch_norm_backward_input", dtype), x.size, g, x, mean, coef, gx,
                       np.int64(x.size), np.int64(c), np.int64(s))
        return gx, ggamma, gbeta

    # ---- local response norm

    def local_response_norm(self, input, size, alpha, beta, k):
        op = "local_response_norm"
        dtype = self.float_operands(op, input=input)
        _, c, s = _C.check_local_response_norm(op, tuple(input.shape), size)
        x = self.contiguous(input)
        y = self.xp.empty(x.shape, dtype)
        self.launch_1d(self.kernel("norm", "lrn_forward", dtype), x.size, x, y, np.int64(x.size), np.int64(c),
                       np.int64(s), np.int64(size), np.float64(alpha), np.float64(beta), np.float64(k))
        return y

    def local_response_norm_backward(self, grad_output, input, size, alpha, beta, k):
        op = "local_response_norm_backward"
        dtype = self.float_operands(op, grad_output=grad_output, input=input)
        _, c, s = _C.check_local_response_norm(op, tuple(input.shape), size)
        _C.check_shape(op, "grad_output", tuple(grad_output.shape), tuple(input.shape))
        g, x = self.contiguous(grad_output), self.contiguous(input)
        gx = self.xp.empty(x.shape, dtype)
        n = x.size
        if n == 0:
            return gx
        # p = s^-beta and t = g x s^(-beta-1) per element, then the direct window sums of t.
        terms = self.xp.empty((2, n), np.float64)
        params = (np.int64(n), np.int64(c), np.int64(s), np.int64(size), np.float64(alpha), np.float64(beta),
                  np.float64(k))
        self.launch_1d(self.kernel("norm", "lrn_backward_terms", dtype), n, g, x, terms[0], terms[1], *params)
        self.launch_1d(self.kernel("norm", "lrn_backward_input", dtype), n, g, x, terms[0], terms[1], gx, *params)
        return gx
