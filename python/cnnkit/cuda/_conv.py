"""Convolution and linear ops of the CUDA backend (cuda/im2col.cu, cuda/conv.cu).

Shapes and messages come from _C (conv2d_geometry, conv_transpose2d_geometry,
check_linear, check_shape). A convolution is described by its geometry g, as in
csrc/conv.cpp: the image side (n, c_in, h, w) and the column side (c_out, ho, wo); a
transposed convolution is the adjoint of the convolution g describes, so that its
forward is that convolution's input gradient and so on.

GEMMs are xp.matmul (cuBLAS through CuPy), batched over the groups. The column matrix
of a block of samples is (C_in*kH*kW, nb, rows, Wo), and blocks are sized so that it
(with its share of grad_output) stays within cnnkit.get_workspace_bytes(): whole
samples when one fits, else a few output rows of one sample, as the CPU's plan.
Depthwise layers run direct kernels; 1x1 stride-1 unpadded ones multiply the image
itself.
"""

import numpy as np

from .. import _C

_I = np.int64


def _geometry_args(g):
    return tuple(_I(g[k]) for k in ("kh", "kw", "sh", "sw", "ph", "pw", "dh", "dw"))


def _depthwise(g):
    return g["c_in"] // g["groups"] == 1 and g["groups"] > 1


def _pointwise(g):
    return g["kh"] == g["kw"] == g["sh"] == g["sw"] == 1 and g["ph"] == g["pw"] == 0


def _degenerate(g):
    """As ConvGeometry::degenerate: some sum of the result is empty."""
    G = g["groups"]
    return (
        g["n"] == 0 or g["c_in"] // G == 0 or g["c_out"] // G == 0 or g["h"] * g["w"] == 0 or g["ho"] * g["wo"] == 0
    )


class ConvOps:
    """conv2d, conv_transpose2d and linear, forward and backward (a Backend mixin)."""

    # ---- helpers

    def _blocks(self, g, dtype):
        """The column blocks (n0, nb, oh0, rows) of g within the workspace (as make_plan)."""
        from .. import get_workspace_bytes

        plane = g["ho"] * g["wo"]
        per_col = (g["c_in"] * g["kh"] * g["kw"] + g["c_out"]) * np.dtype(dtype).itemsize
        max_cols = max(g["wo"], get_workspace_bytes() // per_col)
        n, ho = g["n"], g["ho"]
        if plane <= max_cols:
            nb = min(n, max_cols // plane)
            return [(n0, min(nb, n - n0), 0, ho) for n0 in range(0, n, nb)]
        rows = min(max(max_cols // g["wo"], 1), ho)
        return [(n0, 1, oh0, min(rows, ho - oh0)) for n0 in range(n) for oh0 in range(0, ho, rows)]

    def _col_buffer(self, g, dtype, blocks):
        k_all = g["c_in"] * g["kh"] * g["kw"]
        cols = max(nb * rows for _, nb, _, rows in blocks) * g["wo"]
        return self.xp.empty(k_all * cols, dtype)

    def _im2col(self, img, g, block, buf):
        n0, nb, oh0, rows = block
        col = buf[: g["c_in"] * g["kh"] * g["kw"] * nb * rows * g["wo"]]
        k = self.kernel("im2col", "im2col", img.dtype)
        self.launch_1d(k, col.size, img[n0 : n0 + nb], col, _I(nb), _I(g["c_in"]), _I(g["h"]), _I(g["w"]),
                       _I(g["wo"]), *_geometry_args(g), _I(oh0), _I(rows))
        G = g["groups"]
        return col.reshape(G, col.size // (G * nb * rows * g["wo"]), nb * rows * g["wo"])

    def _col2im(self, col, out, g, block):
        n0, nb, oh0, rows = block
        k = self.kernel("im2col", "col2im", out.dtype)
        dst = out[n0 : n0 + nb]
        self.launch_1d(k, dst.size, col, dst, _I(nb), _I(g["c_in"]), _I(g["h"]), _I(g["w"]), _I(g["ho"]),
                       _I(g["wo"]), *_geometry_args(g), _I(oh0), _I(rows), _I(oh0 > 0))

    def _columns_of(self, t, g, block):
        """Rows [oh0, oh0 + rows) of samples [n0, n0 + nb) of a column-side tensor t
        (n, c_out, ho, wo) as (groups, c_out / groups, nb * rows * wo)."""
        n0, nb, oh0, rows = block
        part = t[n0 : n0 + nb, :, oh0 : oh0 + rows]
        if nb > 1:
            part = part.transpose(1, 0, 2, 3)
        G = g["groups"]
        return self.contiguous(part).reshape(G, g["c_out"] // G, nb * rows * g["wo"])

    def _store_columns(self, m, out, g, block):
        """The inverse of _columns_of: m (groups, M, cols) into out's block."""
        n0, nb, oh0, rows = block
        m = m.reshape(g["c_out"], nb, rows, g["wo"])
        out[n0 : n0 + nb, :, oh0 : oh0 + rows] = m.transpose(1, 0, 2, 3)

    def _wg(self, w, g):
        """The weight as (groups, c_out / groups, c_in / groups * kH * kW)."""
        G = g["groups"]
        return w.reshape(G, g["c_out"] // G, -1)

    def _launch_dw(self, name, a, b, out, g):
        k = self.kernel("conv", name, out.dtype)
        args = (_I(g["n"]), _I(g["c_in"]), _I(g["h"]), _I(g["w"]), _I(g["c_out"]), _I(g["ho"]), _I(g["wo"]))
        args += _geometry_args(g)
        if name == "depthwise_backward_weight":
            if out.size:
                grid = (min(out.size, self.max_blocks),)
                k(grid, (256,), (a, b, out, *args))
        else:
            self.launch_1d(k, out.size, a, b, out, *args)

    def _add_bias(self, y, bias, c, plane):
        if bias is not None and y.size:
            k = self.kernel("conv", "bias_add", y.dtype)
            self.launch_1d(k, y.size, y, self.contiguous(bias), _I(y.size), _I(c), _I(plane))
        return y

    def _bias_grad(self, gy, n, c, plane):
        gb = self.xp.empty((c,), gy.dtype)
        if c:
            if n * plane == 0:
                gb[...] = 0
            else:
                k = self.kernel("conv", "bias_grad", gy.dtype)
                k((min(c, self.max_blocks),), (256,), (gy, gb, _I(n), _I(c), _I(plane)))
        return gb

    # ---- the three products of a convolution g, for contiguous operands

    def _conv_forward(self, img, w, g):
        """The column side (n, c_out, ho, wo) of img (n, c_in, h, w)."""
        xp = self.xp
        n, G = g["n"], g["groups"]
        if _depthwise(g):
            y = xp.empty((n, g["c_out"], g["ho"], g["wo"]), img.dtype)
            self._launch_dw("depthwise_forward", img, w, y, g)
            return y
        wg = self._wg(w, g)
        if _pointwise(g):
            y = xp.matmul(wg, img.reshape(n, G, g["c_in"] // G, g["h"] * g["w"]))
            return y.reshape(n, g["c_out"], g["ho"], g["wo"])
        y = xp.empty((n, g["c_out"], g["ho"], g["wo"]), img.dtype)
        blocks = self._blocks(g, img.dtype)
        buf = self._col_buffer(g, img.dtype, blocks)
        for b in blocks:
            self._store_columns(xp.matmul(wg, self._im2col(img, g, b, buf)), y, g, b)
        return y

    def _conv_backward_data(self, gy, w, g):
        """The image side (n, c_in, h, w) of the adjoint applied to gy (n, c_out, ho, wo)."""
        xp = self.xp
        n, G = g["n"], g["groups"]
        gx = xp.empty((n, g["c_in"], g["h"], g["w"]), gy.dtype)
        if _depthwise(g):
            self._launch_dw("depthwise_backward_data", gy, w, gx, g)
            return gx
        wt = self._wg(w, g).transpose(0, 2, 1)
        if _pointwise(g):
            m = xp.matmul(wt, gy.reshape(n, G, g["c_out"] // G, g["ho"] * g["wo"]))
            return m.reshape(gx.shape)
        blocks = self._blocks(g, gy.dtype)
        buf = self._col_buffer(g, gy.dtype, blocks)
        for b in blocks:
            cols = self._columns_of(gy, g, b)
            col = buf[: G * wt.shape[1] * cols.shape[2]].reshape(G, wt.shape[1], cols.shape[2])
            xp.matmul(wt, cols, out=col)
            self._col2im(col, gx, g, b)
        return gx

    def _conv_backward_weight(self, img, gy, g, w_shape):
        """The weight gradient of g for image img and column-side gradient gy."""
        xp = self.xp
        if _depthwise(g):
            gw = xp.empty(w_shape, gy.dtype)
            self._launch_dw("depthwise_backward_weight", img, gy, gw, g)
            return gw
        gw = None
        blocks = self._blocks(g, gy.dtype)
        buf = self._col_buffer(g, gy.dtype, blocks)
        for b in blocks:
            col = self._im2col(img, g, b, buf)
            part = xp.matmul(self._columns_of(gy, g, b), col.transpose(0, 2, 1))
            gw = part if gw is None else gw + part
        return gw.reshape(w_shape)

    # ---- ops

    def conv2d(self, input, weight, bias, stride, padding, dilation, groups):
        op = "conv2d"
        dtype = self.float_operands(op, optional=("bias",), input=input, weight=weight, bias=bias)
        g = _C.conv2d_geometry(op, input.shape, weight.shape, None if bias is None else bias.shape,
                               stride, padding, dilation, groups)
        shape = (g["n"], g["c_out"], g["ho"], g["wo"])
        if _degenerate(g):
            return self._add_bias(self.xp.zeros(shape, dtype), bias, g["c_out"], g["ho"] * g["wo"])
        y = self._conv_forward(self.contiguous(input), self.contiguous(weight), g)
        return self._add_bias(y, bias, g["c_out"], g["ho"] * g["wo"])

    def conv2d_backward(self, grad_output, input, weight, stride, padding, dilation, groups,
                        output_mask=(True, True, True)):
        op = "conv2d_backward"
        dtype = self.float_operands(op, grad_output=grad_output, input=input, weight=weight)
        g = _C.conv2d_geometry(op, input.shape, weight.shape, None, stride, padding, dilation, groups)
        _C.check_shape(op, "grad_output", grad_output.shape, (g["n"], g["c_out"], g["ho"], g["wo"]))
        gy = self.contiguous(grad_output)
        want_gx, want_gw, want_gb = output_mask
        gb = self._bias_grad(gy, g["n"], g["c_out"], g["ho"] * g["wo"]) if want_gb else None
        if _degenerate(g):
            return (self.xp.zeros(input.shape, dtype) if want_gx else None,
                    self.xp.zeros(weight.shape, dtype) if want_gw else None, gb)
        gw = self._conv_backward_weight(self.contiguous(input), gy, g, weight.shape) if want_gw else None
        gx = self._conv_backward_data(gy, self.contiguous(weight), g) if want_gx else None
        return gx, gw, gb

    def conv_transpose2d(self, input, weight, bias, stride, padding, output_padding, groups, dilation):
        op = "conv_transpose2d"
        dtype = self.float_operands(op, optional=("bias",), input=input, weight=weight, bias=bias)
        g = _C.conv_transpose2d_geometry(op, input.shape, weight.shape, None if bias is None else bias.shape,
                                         stride, padding, output_padding, groups, dilation)
        shape = (g["n"], g["c_in"], g["h"], g["w"])
        if _degenerate(g):
            return self._add_bias(self.xp.zeros(shape, dtype), bias, g["c_in"], g["h"] * g["w"])
        y = self._conv_backward_data(self.contiguous(input), self.contiguous(weight), g)
        return self._add_bias(y, bias, g["c_in"], g["h"] * g["w"])

    def conv_transpose2d_backward(self, grad_output, input, weight, stride, padding, output_padding, groups,
                                  dilation, output_mask=(True, True, True)):
        op = "conv_transpose2d_backward"
        dtype = self.float_operands(op, grad_output=grad_output, input=input, weight=weight)
        g = _C.conv_transpose2d_geometry(op, input.shape, weight.shape, None, stride, padding, output_padding,
                                         groups, dilation)
        _C.check_shape(op, "grad_output", grad_output.shape, (g["n"], g["c_in"], g["h"], g["w"]))
        gy = self.contiguous(grad_output)
        want_gx, want_gw, want_gb = output_mask
        gb = self._bias_grad(gy, g["n"], g["c_in"], g["h"] * g["w"]) if want_gb else None
        if _degenerate(g):
            return (self.xp.zeros(input.shape, dtype) if want_gx else None,
                    self.xp.zeros(weight.shape, dtype) if want_gw else None, gb)
        gx = self._conv_forward(gy, self.contiguous(weight), g) if want_gx else None
        gw = self._conv_backward_weight(gy, self.contiguous(input), g, weight.shape) if want_gw else None
        return gx, gw, gb

    def linear(self, input, weight, bias):
        op = "linear"
        dtype = self.float_operands(op, optional=("bias",), input=input, weight=weight, bias=bias)
        _C.check_linear(op, input.shape, weight.shape, None if bias is None else bias.shape)
        n, out = input.shape[0], weight.shape[0]
        if input.shape[1] == 0:
            y = self.xp.zeros((n, out), dtype)
        else:
            y = self.xp.matmul(input, weight.T)
            y = y if y.flags.c_contiguous else self.xp.ascontiguousarray(y)
        return self._add_bias(y, bias, out, 1)

    def linear_backward(self, grad_output, input, weight):
        op = "linear_backward"
        dtype = self.float_operands(op, grad_output=grad_output, input=input, weight=weight)
        _C.check_linear(op, input.shape, weight.shape, None)
        n, in_f, out = input.shape[0], input.shape[1], weight.shape[0]
        _C.check_shape(op, "grad_output", grad_output.shape, (n, out))
        xp = self.xp
        gy = self.contiguous(grad_output)
        if n == 0 or in_f == 0 or out == 0:
            gx = xp.zeros((n, in_f), dtype)
            gw = xp.zeros((out, in_f), dtype)
        else:
            gx = xp.ascontiguousarray(xp.matmul(gy, weight))
            gw = xp.ascontiguousarray(xp.matmul(gy.T, input))
        return gx, gw, self._bias_grad(gy, n, out, 1)
