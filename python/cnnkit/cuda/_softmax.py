"""The softmax family and losses on the GPU (cuda/softmax.cu): softmax, log_softmax,
cross_entropy and mse_loss, forward and backward, as a mixin of Backend."""

import numpy as np

from .. import _C

FAMILY = "softmax"
TILE = 256  # threads of a softmax / cross-entropy block at most (cuda/softmax.cu's kTile)
ROW_TILE = 32  # adjacent inner positions of one block at most: a warp's coalesced run


def _pow2_at_least(n):
    return 1 << max(0, int(n) - 1).bit_length()


def tile_shape(size, inner):
    """(columns, lanes) of a softmax block over (outer, size, inner): up to 32 adjacent
    inner positions, the rest of the 256 threads as lanes along size, neither larger
    than the shape needs (see cuda/softmax.cu)."""
    lanes = min(_pow2_at_least(size), TILE // min(_pow2_at_least(inner), ROW_TILE))
    return min(_pow2_at_least(inner), TILE // lanes), lanes


class SoftmaxOps:
    """softmax, log_softmax, cross_entropy, mse_loss and their backwards."""

    # ---- helpers

    def _tile_launch(self, kernel, outer, size, inner, *args):
        """kernel(*args, outer, size, inner) with one block per tile of columns."""
        if outer * size * inner == 0:
            return
        bx, by = tile_shape(size, inner)
        tiles = outer * -(-inner // bx)
        kernel((min(tiles, self.max_blocks),), (bx, by), (*args, np.int64(outer), np.int64(size), np.int64(inner)))

    def _to_host(self, a):
        get = getattr(self.xp, "asnumpy", None)
        return get(a) if get is not None else np.asarray(a)

    def _loss_total(self, dtype, partial, blocks, count, mean):
        """The 0-d reduced loss from per-block double partial sums."""
        out = self.xp.empty((), dtype)
        self.kernel(FAMILY, "loss_total", dtype)(
            (1,), (TILE,), (partial, np.int64(blocks), np.int64(count), np.int32(mean), out)
        )
        return out

    def _grid(self, n):
        """Blocks of a grid-stride loop of TILE-thread blocks over n > 0 items."""
        return min(-(-n // TILE), self.max_blocks)

    def _sum_blocks(self, kernel, n, *args):
        """kernel(*args, partial, n) over n items: (blocks, partial, the per-block
        double sums); nothing launched for n = 0."""
        blocks = self._grid(n) if n > 0 else 0
        partial = self.xp.empty(max(blocks, 1), np.float64)
        if blocks:
            kernel((blocks,), (TILE,), (*args, partial, np.int64(n)))
        return blocks, partial

    # ---- softmax and log_softmax

    def _softmax(self, op, kernel, input, dim):
        dtype = self.float_operands(op, input=input)
        dim = _C.wrap_dim(op, dim, input.ndim)
        outer, size, inner = _C.split_at_dim(input.shape, dim)
        x = self.contiguous(input)
        y = self.xp.empty(x.shape, dtype)
        self._tile_launch(self.kernel(FAMILY, kernel, dtype), outer, size, inner, x, y)
        return y

    def _softmax_backward(self, op, kernel, grad_output, output, dim):
        dtype = self.float_operands(op, grad_output=grad_output, output=output)
        _C.check_shape(op, "grad_output", grad_output.shape, output.shape)
        dim = _C.wrap_dim(op, dim, output.ndim)
        outer, size, inner = _C.split_at_dim(output.shape, dim)
        gy, y = self.contiguous(grad_output), self.contiguous(output)
        gx = self.xp.empty(y.shape, dtype)
        self._tile_launch(self.kernel(FAMILY, kernel, dtype), outer, size, inner, gy, y, gx)
        return gx

    def softmax(self, input, dim):
        return self._softmax("softmax", "softmax_forward", input, dim)

    def log_softmax(self, input, dim):
        return self._softmax("log_softmax", "log_softmax_forward", input, dim)

    def softmax_backward(self, grad_output, output, dim):
        return self._softmax_backward("softmax_backward", "softmax_backward", grad_output, output, dim)

    def log_softmax_backward(self, grad_output, output, dim):
        return self._softmax_backward("log_softmax_backward", "log_softmax_backward", grad_output, output, dim)

    # ---- cross_entropy

    def _cross_entropy_args(self, op, input, target, reduction):
        """(dtype, logits, int64 targets, reduction, n, c), checked in the CPU's order."""
        dtype = self.float_operands(op, input=input)
        if not isinstance(target, self.xp.ndarray):
            # _C has no validator for this one (its class_indices takes NumPy arrays):
            # the CPU's message, with the array type of this backend.
            kind = f"{self.xp.ndarray.__module__}.{self.xp.ndarray.__name__}"
            raise TypeError(f"{op}: target: expected a {kind} of integer class indices, got {type(target).__name__}")
        if target.dtype.kind not in "iu":
            raise TypeError(f"{op}: target: expected an integer dtype of class indices, got {target.dtype}")
        reduction = _C.parse_reduction(op, reduction)
        _C.check_cross_entropy(op, input.shape, target.shape)
        n, c = input.shape
        t = self.contiguous(target.astype(np.int64, copy=False))  # on the device, as the CPU's forcecast
        self._check_class_indices(op, t, n, c)
        return dtype, self.contiguous(input), t, reduction, n, c

    def _check_class_indices(self, op, target, n, c):
        """Raises the CPU's error for the first target outside [0, c)."""
        if n == 0:
            return
        blocks = self._grid(n)
        partial = self.xp.empty(blocks, np.int64)
        self.kernel(FAMILY, "class_index_partials")((blocks,), (TILE,), (target, np.int64(n), np.int64(c), partial))
        found = self.xp.empty(2, np.int64)
        self.kernel(FAMILY, "class_index_first")((1,), (TILE,), (partial, np.int64(blocks), target, np.int64(n), found))
        # The one device -> host read of the op (it waits for the kernels): the logits
        # must not be indexed by a bad target, and the error is raised here, on the host.
        first, value = (int(v) for v in self._to_host(found))
        if first < n:
            # Targets before the first bad one are valid: zeros are (c > 0 then), so the
            # CPU's check over this short array names the same value and position.
            bad = np.zeros(first + 1, np.int64)
            bad[first] = value
            _C.check_class_indices(op, "target", bad, c)
            raise AssertionError(f"{op}: class index check: position {first} reported, not refused")

    def _ce_launch(self, kernel, n, c, *args):
        if n > 0:
            kernel((min(n, self.max_blocks),), (1, min(_pow2_at_least(c), TILE)), args)

    def cross_entropy(self, input, target, reduction):
        op = "cross_entropy"
        dtype, x, t, reduction, n, c = self._cross_entropy_args(op, input, target, reduction)
        if reduction == "none":
            out = self.xp.empty((n,), dtype)
            self._ce_launch(self.kernel(FAMILY, "cross_entropy_none", dtype), n, c, x, t, np.int64(n), np.int64(c), out)
            return out
        losses = self.xp.empty(n, np.float64)
        self._ce_launch(self.kernel(FAMILY, "cross_entropy_losses", dtype), n, c, x, t, np.int64(n), np.int64(c), losses)
        blocks, partial = self._sum_blocks(self.kernel(FAMILY, "sum_partials_f64"), n, losses)
        return self._loss_total(dtype, partial, blocks, n, reduction == "mean")

    def cross_entropy_backward(self, input, target, reduction):
        op = "cross_entropy_backward"
        dtype, x, t, reduction, n, c = self._cross_entropy_args(op, input, target, reduction)
        g = self.xp.empty((n, c), dtype)
        if n > 0:
            scale = dtype.type(1.0 / n) if reduction == "mean" else dtype.type(1)
            self._ce_launch(self.kernel(FAMILY, "cross_entropy_backward", dtype), n, c, x, t, np.int64(n),
                            np.int64(c), scale, g)
        return g

    # ---- mse_loss

    def _mse_args(self, op, input, target, reduction):
        dtype = self.float_operands(op, input=input, target=target)
        _C.check_shape(op, "target", target.shape, input.shape)
        reduction = _C.parse_reduction(op, reduction)
        return dtype, self.contiguous(input), self.contiguous(target), reduction

    def mse_loss(self, input, target, reduction):
        dtype, x, t, reduction = self._mse_args("mse_loss", input, target, reduction)
        n = x.size
        if reduction == "none":
            y = self.xp.empty(x.shape, dtype)
            self.launch_1d(self.kernel(FAMILY, "squared_error", dtype), n, x, t, y, np.int64(n))
            return y
        blocks, partial = self._sum_blocks(self.kernel(FAMILY, "mse_partials", dtype), n, x, t)
        return self._loss_total(dtype, partial, blocks, n, reduction == "mean")

    def mse_loss_backward(self, input, target, reduction):
        dtype, x, t, reduction = self._mse_args("mse_loss_backward", input, target, reduction)
        n = x.size
        g = self.xp.empty(x.shape, dtype)
        if n > 0:
            scale = dtype.type(2.0 / n) if reduction == "mean" else dtype.type(2)
            self.launch_1d(self.kernel(FAMILY, "mse_loss_backward", dtype), n, x, t, g, np.int64(n), scale)
        return g
