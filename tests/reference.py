"""Naive NumPy references for cnnkit's tests.

Every reference here accumulates in float64, is written from the op's definition
(loops over kernel taps, einsum, scatter), and never calls cnnkit or torch: an op
is never its own reference. Sections are one per op family; each is self-contained.
"""

import numpy as np


def numeric_grad(f, x, eps=1e-6):
    """Central finite differences of the scalar function f at the float64 array x.

    f is called on a C-contiguous copy of x that is perturbed one element at a time.
    """
    x = np.array(x, order="C")  # a copy: the caller's array is never touched
    if x.dtype != np.float64:
        raise TypeError(f"numeric_grad: x: expected float64, got {x.dtype}")
    grad = np.zeros_like(x)
    flat_x, flat_g = x.reshape(-1), grad.reshape(-1)  # views into x and grad
    for i in range(flat_x.size):
        orig = flat_x[i]
        flat_x[i] = orig + eps
        f_plus = float(f(x))
        flat_x[i] = orig - eps
        f_minus = float(f(x))
        flat_x[i] = orig
        flat_g[i] = (f_plus - f_minus) / (2 * eps)
    return grad


# ---------------------------------------------------------------------------
# Convolution family: conv2d, conv_transpose2d, linear (forward and gradients)
# ---------------------------------------------------------------------------
#
# Layouts follow torch.nn.functional: x is (N, C, H, W); conv2d weights are
# (C_out, C_in/groups, kH, kW); conv_transpose2d weights are (C_in, C_out/groups, kH, kW).


def _pair(v):
    return (v, v) if np.isscalar(v) else tuple(v)


def conv_padding(padding, kernel_hw, dilation=1):
    """Padding as (top, bottom, left, right) from an int, an (h, w) pair, a 4-tuple,
    'valid', or 'same' (total d*(k-1), the odd extra element going to the bottom/right)."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            out = []
            for k, d in zip(kernel_hw, _pair(dilation)):
                total = d * (k - 1)
                out += [total // 2, total - total // 2]
            return tuple(out)
        raise ValueError(padding)
    padding = tuple(padding) if not np.isscalar(padding) else padding
    if np.isscalar(padding):
        return (padding,) * 4
    if len(padding) == 2:
        return (padding[0], padding[0], padding[1], padding[1])
    return tuple(padding)


def conv_out_size(size, k, stride, pad_begin, pad_end, dilation):
    return (size + pad_begin + pad_end - dilation * (k - 1) - 1) // stride + 1


def conv_transpose_out_size(size, k, stride, pad, output_padding, dilation):
    return (size - 1) * stride - 2 * pad + dilation * (k - 1) + 1 + output_padding


def _conv_setup(x_shape, w_shape, stride, padding, dilation):
    sh, sw = _pair(stride)
    dh, dw = _pair(dilation)
    kh, kw = w_shape[2:]
    top, bottom, left, right = conv_padding(padding, (kh, kw), (dh, dw))
    ho = conv_out_size(x_shape[2], kh, sh, top, bottom, dh)
    wo = conv_out_size(x_shape[3], kw, sw, left, right, dw)
    return (sh, sw), (dh, dw), (top, bottom, left, right), (ho, wo)


def _tap(i, j, dil, stride, out_hw):
    """Slices of a padded plane that tap (i, j) reads for every output position."""
    (dh, dw), (sh, sw), (ho, wo) = dil, stride, out_hw
    return (slice(i * dh, i * dh + (ho - 1) * sh + 1, sh), slice(j * dw, j * dw + (wo - 1) * sw + 1, sw))


def _grouped(a, groups):
    """(N, C, ...) -> (N, groups, C/groups, ...)."""
    return a.reshape(a.shape[0], groups, a.shape[1] // groups, *a.shape[2:])


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Cross-correlation, as torch.nn.functional.conv2d; padding may be a 4-tuple
    (top, bottom, left, right)."""
    x = np.asarray(x, np.float64)
    weight = np.asarray(weight, np.float64)
    stride, dil, (t, b, l, r), (ho, wo) = _conv_setup(x.shape, weight.shape, stride, padding, dilation)
    n, c_out, (kh, kw) = x.shape[0], weight.shape[0], weight.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)))
    wg = weight.reshape(groups, c_out // groups, *weight.shape[1:])  # (G, C_out/G, C_in/G, kH, kW)
    y = np.zeros((n, groups, c_out // groups, ho, wo))
    for i in range(kh):
        for j in range(kw):
            rows, cols = _tap(i, j, dil, stride, (ho, wo))
            patch = _grouped(xp[:, :, rows, cols], groups)  # (N, G, C_in/G, Ho, Wo)
            y += np.einsum("ngchw,goc->ngohw", patch, wg[:, :, :, i, j])
    y = y.reshape(n, c_out, ho, wo)
    if bias is not None:
        y += np.asarray(bias, np.float64)[None, :, None, None]
    return y


def conv2d_grads(grad_out, x, weight, stride=1, padding=0, dilation=1, groups=1):
    """(grad_input, grad_weight, grad_bias) of conv2d, scattering grad_out back
    through every kernel tap."""
    gy = np.asarray(grad_out, np.float64)
    x = np.asarray(x, np.float64)
    weight = np.asarray(weight, np.float64)
    stride, dil, (t, b, l, r), (ho, wo) = _conv_setup(x.shape, weight.shape, stride, padding, dilation)
    n, c_in, h, w = x.shape
    c_out, (kh, kw) = weight.shape[0], weight.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)))
    gxp = np.zeros_like(xp)
    wg = weight.reshape(groups, c_out // groups, *weight.shape[1:])
    gyg = _grouped(gy, groups)  # (N, G, C_out/G, Ho, Wo)
    gw = np.zeros((groups, c_out // groups) + weight.shape[1:])
    for i in range(kh):
        for j in range(kw):
            rows, cols = _tap(i, j, dil, stride, (ho, wo))
            contrib = np.einsum("ngohw,goc->ngchw", gyg, wg[:, :, :, i, j])
            gxp[:, :, rows, cols] += contrib.reshape(n, c_in, ho, wo)
            patch = _grouped(xp[:, :, rows, cols], groups)
            gw[:, :, :, i, j] = np.einsum("ngohw,ngchw->goc", gyg, patch)
    gx = gxp[:, :, t : t + h, l : l + w]
    return gx.copy(), gw.reshape(weight.shape), gy.sum(axis=(0, 2, 3))


def _transpose_setup(x_shape, w_shape, stride, padding, output_padding, dilation):
    sh, sw = _pair(stride)
    dh, dw = _pair(dilation)
    ph, pw = _pair(padding)
    oph, opw = _pair(output_padding)
    kh, kw = w_shape[2:]
    ho = conv_transpose_out_size(x_shape[2], kh, sh, ph, oph, dh)
    wo = conv_transpose_out_size(x_shape[3], kw, sw, pw, opw, dw)
    # Uncropped canvas: every tap of every input position lands inside it, and so
    # does the cropped output [ph, ph + ho) x [pw, pw + wo).
    canvas = (
        max((x_shape[2] - 1) * sh + dh * (kh - 1) + 1, ph + ho),
        max((x_shape[3] - 1) * sw + dw * (kw - 1) + 1, pw + wo),
    )
    return (sh, sw), (dh, dw), (ph, pw), (ho, wo), canvas


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed convolution, as torch.nn.functional.conv_transpose2d: each input
    pixel (h, w) adds x * weight[:, :, i, j] at output (h*s - p + i*d, w*s - p + j*d)."""
    x = np.asarray(x, np.float64)
    weight = np.asarray(weight, np.float64)
    stride, dil, (ph, pw), (ho, wo), canvas = _transpose_setup(
        x.shape, weight.shape, stride, padding, output_padding, dilation
    )
    n, c_in, h, w = x.shape
    cog, (kh, kw) = weight.shape[1], weight.shape[2:]
    wg = weight.reshape(groups, c_in // groups, cog, kh, kw)
    xg = _grouped(x, groups)  # (N, G, C_in/G, H, W)
    full = np.zeros((n, groups, cog) + canvas)
    for i in range(kh):
        for j in range(kw):
            rows, cols = _tap(i, j, dil, stride, (h, w))
            full[:, :, :, rows, cols] += np.einsum("ngchw,gco->ngohw", xg, wg[:, :, :, i, j])
    y = full.reshape(n, groups * cog, *canvas)[:, :, ph : ph + ho, pw : pw + wo].copy()
    if bias is not None:
        y += np.asarray(bias, np.float64)[None, :, None, None]
    return y


def conv_transpose2d_grads(grad_out, x, weight, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """(grad_input, grad_weight, grad_bias) of conv_transpose2d: grad_out is placed on
    the uncropped canvas and gathered back through every kernel tap."""
    gy = np.asarray(grad_out, np.float64)
    x = np.asarray(x, np.float64)
    weight = np.asarray(weight, np.float64)
    stride, dil, (ph, pw), (ho, wo), canvas = _transpose_setup(
        x.shape, weight.shape, stride, padding, output_padding, dilation
    )
    n, c_in, h, w = x.shape
    cog, (kh, kw) = weight.shape[1], weight.shape[2:]
    wg = weight.reshape(groups, c_in // groups, cog, kh, kw)
    xg = _grouped(x, groups)
    full = np.zeros((n, groups * cog) + canvas)
    full[:, :, ph : ph + ho, pw : pw + wo] = gy
    fullg = _grouped(full, groups)  # (N, G, C_out/G, canvas)
    gx = np.zeros((n, groups, c_in // groups, h, w))
    gw = np.zeros_like(wg)
    for i in range(kh):
        for j in range(kw):
            rows, cols = _tap(i, j, dil, stride, (h, w))
            g_tap = fullg[:, :, :, rows, cols]  # (N, G, C_out/G, H, W)
            gx += np.einsum("ngohw,gco->ngchw", g_tap, wg[:, :, :, i, j])
            gw[:, :, :, i, j] = np.einsum("ngchw,ngohw->gco", xg, g_tap)
    return gx.reshape(x.shape), gw.reshape(weight.shape), gy.sum(axis=(0, 2, 3))


def linear(x, weight, bias=None):
    """y[..., o] = sum_i x[..., i] * weight[o, i] + bias[o], for any leading dims."""
    x = np.asarray(x, np.float64)
    weight = np.asarray(weight, np.float64)
    y = np.einsum("...i,oi->...o", x, weight)
    if bias is not None:
        y = y + np.asarray(bias, np.float64)
    return y


def linear_grads(grad_out, x, weight):
    """(grad_input, grad_weight, grad_bias) of linear, for any leading dims."""
    gy = np.asarray(grad_out, np.float64)
    x = np.asarray(x, np.float64)
    weight = np.asarray(weight, np.float64)
    gx = np.einsum("...o,oi->...i", gy, weight)
    gy2, x2 = gy.reshape(-1, gy.shape[-1]), x.reshape(-1, x.shape[-1])  # (samples, out), (samples, in)
    gw = np.einsum("no,ni->oi", gy2, x2)
    gb = gy2.sum(axis=0)
    return gx, gw, gb
