"""Naive NumPy float64 references for every op of cnnkit.functional.

For anyone testing a kernel (cnnkit's own tests and benchmarks use them too). Each
reference accumulates in float64, is written from the op's definition (loops over
kernel taps, one matmul each; einsum; scatter), and never calls cnnkit or torch: an op is never its
own reference. Names and signatures are those of cnnkit.functional (arrays positional,
options by the same keywords), with these differences:

- conv2d also takes a 4-tuple padding (top, bottom, left, right);
- batch_norm returns (y, new_running_mean, new_running_var) and never updates in place;
  batch_norm_grads(grad_out, x, gamma, training, eps, running_mean, running_var)
  stands for batch_norm_backward(grad_out, saved);
- dropout(x, keep, p) takes the keep-mask instead of drawing it, and returns y alone.

Sections are one per op family, plus the classic methods (cnnkit.classic).
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


def _flat(a):
    """(N, G, C, H, W) -> (N, G, C, H*W): a tap's plane as the columns of a matmul."""
    return a.reshape(*a.shape[:3], a.shape[3] * a.shape[4])


def _mask(output_mask):
    mask = tuple(bool(m) for m in output_mask)
    if len(mask) != 3:
        raise ValueError(f"output_mask: expected 3 booleans, got {output_mask!r}")
    return mask


def _masked(output_mask, *grads):
    """The gradients output_mask asks for, None for the others."""
    return tuple(g if m else None for g, m in zip(grads, _mask(output_mask)))


# Each convolution below is a sum over the kernel taps (i, j): tap (i, j) multiplies
# the weight slice w[..., i, j] with the input plane it reads (a strided slice of the
# padded input), one batched matmul over all samples and groups per tap.


def _ieee():
    """NaN and infinities spread as IEEE arithmetic says, without matmul's warnings."""
    return np.errstate(invalid="ignore", over="ignore")


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Cross-correlation, as torch.nn.functional.conv2d; padding may be a 4-tuple
    (top, bottom, left, right):
    y[n, o, h, w] = sum_{c, i, j} x_pad[n, c, h*sh + i*dh, w*sw + j*dw] * weight[o, c, i, j]
    over the input channels c of o's group."""
    x = np.asarray(x, np.float64)
    weight = np.asarray(weight, np.float64)
    stride, dil, (t, b, l, r), (ho, wo) = _conv_setup(x.shape, weight.shape, stride, padding, dilation)
    n, c_out, (kh, kw) = x.shape[0], weight.shape[0], weight.shape[2:]
    xpg = _grouped(np.pad(x, ((0, 0), (0, 0), (t, b), (l, r))), groups)  # (N, G, C_in/G, Hp, Wp)
    wg = weight.reshape(groups, c_out // groups, *weight.shape[1:])  # (G, C_out/G, C_in/G, kH, kW)
    y = np.zeros((n, groups, c_out // groups, ho * wo))
    with _ieee():
        for i in range(kh):
            for j in range(kw):
                rows, cols = _tap(i, j, dil, stride, (ho, wo))
                y += wg[:, :, :, i, j] @ _flat(xpg[:, :, :, rows, cols])
    y = y.reshape(n, c_out, ho, wo)
    if bias is not None:
        y += np.asarray(bias, np.float64)[None, :, None, None]
    return y


def conv2d_backward(grad_out, x, weight, stride=1, padding=0, dilation=1, groups=1, output_mask=(True, True, True)):
    """(grad_input, grad_weight, grad_bias) of conv2d, those not in output_mask None:
    grad_out is scattered back through every kernel tap (grad_input) and correlated
    with the plane each tap reads (grad_weight)."""
    want_x, want_w, _ = _mask(output_mask)
    gy = np.asarray(grad_out, np.float64)
    x = np.asarray(x, np.float64)
    weight = np.asarray(weight, np.float64)
    stride, dil, (t, b, l, r), (ho, wo) = _conv_setup(x.shape, weight.shape, stride, padding, dilation)
    n, c_in, h, w = x.shape
    c_out, (kh, kw) = weight.shape[0], weight.shape[2:]
    xpg = _grouped(np.pad(x, ((0, 0), (0, 0), (t, b), (l, r))), groups)
    gxpg = np.zeros_like(xpg)
    wg = weight.reshape(groups, c_out // groups, *weight.shape[1:])
    gyg = _grouped(gy, groups).reshape(n, groups, c_out // groups, ho * wo)
    gw = np.zeros_like(wg)
    with _ieee():
        for i in range(kh):
            for j in range(kw):
                rows, cols = _tap(i, j, dil, stride, (ho, wo))
                if want_x:
                    contrib = np.swapaxes(wg[:, :, :, i, j], 1, 2) @ gyg  # (N, G, C_in/G, Ho*Wo)
                    gxpg[:, :, :, rows, cols] += contrib.reshape(n, groups, c_in // groups, ho, wo)
                if want_w:
                    patch = _flat(xpg[:, :, :, rows, cols])
                    gw[:, :, :, i, j] = (gyg @ np.swapaxes(patch, 2, 3)).sum(axis=0)
    gx = gxpg.reshape(n, c_in, *xpg.shape[3:])[:, :, t : t + h, l : l + w].copy()
    return _masked(output_mask, gx, gw.reshape(weight.shape), gy.sum(axis=(0, 2, 3)))


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
    xg = _flat(_grouped(x, groups))  # (N, G, C_in/G, H*W)
    full = np.zeros((n, groups, cog) + canvas)
    with _ieee():
        for i in range(kh):
            for j in range(kw):
                rows, cols = _tap(i, j, dil, stride, (h, w))
                contrib = np.swapaxes(wg[:, :, :, i, j], 1, 2) @ xg  # (N, G, C_out/G, H*W)
                full[:, :, :, rows, cols] += contrib.reshape(n, groups, cog, h, w)
    y = full.reshape(n, groups * cog, *canvas)[:, :, ph : ph + ho, pw : pw + wo].copy()
    if bias is not None:
        y += np.asarray(bias, np.float64)[None, :, None, None]
    return y


def conv_transpose2d_backward(grad_out, x, weight, stride=1, padding=0, output_padding=0, groups=1, dilation=1,
                              output_mask=(True, True, True)):
    """(grad_input, grad_weight, grad_bias) of conv_transpose2d, those not in
    output_mask None: grad_out is placed on the uncropped canvas and gathered back
    through every kernel tap."""
    want_x, want_w, _ = _mask(output_mask)
    gy = np.asarray(grad_out, np.float64)
    x = np.asarray(x, np.float64)
    weight = np.asarray(weight, np.float64)
    stride, dil, (ph, pw), (ho, wo), canvas = _transpose_setup(
        x.shape, weight.shape, stride, padding, output_padding, dilation
    )
    n, c_in, h, w = x.shape
    cog, (kh, kw) = weight.shape[1], weight.shape[2:]
    wg = weight.reshape(groups, c_in // groups, cog, kh, kw)
    xg = _flat(_grouped(x, groups))
    full = np.zeros((n, groups * cog) + canvas)
    full[:, :, ph : ph + ho, pw : pw + wo] = gy
    fullg = _grouped(full, groups)  # (N, G, C_out/G, canvas)
    gx = np.zeros(xg.shape)
    gw = np.zeros_like(wg)
    with _ieee():
        for i in range(kh):
            for j in range(kw):
                rows, cols = _tap(i, j, dil, stride, (h, w))
                g_tap = _flat(fullg[:, :, :, rows, cols])  # (N, G, C_out/G, H*W)
                if want_x:
                    gx += wg[:, :, :, i, j] @ g_tap
                if want_w:
                    gw[:, :, :, i, j] = (xg @ np.swapaxes(g_tap, 2, 3)).sum(axis=0)
    return _masked(output_mask, gx.reshape(x.shape), gw.reshape(weight.shape), gy.sum(axis=(0, 2, 3)))


def linear(x, weight, bias=None):
    """y[..., o] = sum_i x[..., i] * weight[o, i] + bias[o], for any leading dims."""
    x = np.asarray(x, np.float64)
    weight = np.asarray(weight, np.float64)
    y = np.einsum("...i,oi->...o", x, weight)
    if bias is not None:
        y = y + np.asarray(bias, np.float64)
    return y


def linear_backward(grad_out, x, weight):
    """(grad_input, grad_weight, grad_bias) of linear, for any leading dims."""
    gy = np.asarray(grad_out, np.float64)
    x = np.asarray(x, np.float64)
    weight = np.asarray(weight, np.float64)
    gx = np.einsum("...o,oi->...i", gy, weight)
    gy2, x2 = gy.reshape(-1, gy.shape[-1]), x.reshape(-1, x.shape[-1])  # (samples, out), (samples, in)
    gw = np.einsum("no,ni->oi", gy2, x2)
    gb = gy2.sum(axis=0)
    return gx, gw, gb


# ---------------------------------------------------------------------------
# Activations: relu, sigmoid, tanh (forward and gradients)
# ---------------------------------------------------------------------------


def relu(x):
    """max(x, 0); NaN stays NaN, as in torch."""
    x = np.asarray(x, np.float64)
    return np.where(np.isnan(x) | (x > 0), x, 0.0)


def relu_backward(grad_out, x):
    """grad_out where x > 0 or x is NaN (torch's threshold_backward: zero where x <= 0)."""
    x = np.asarray(x, np.float64)
    return np.where(x <= 0, 0.0, np.asarray(grad_out, np.float64))


def sigmoid(x):
    """1 / (1 + e^-x), from e^-|x| so that no exp overflows."""
    x = np.asarray(x, np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid_backward(grad_out, y):
    """d sigmoid / dx = y (1 - y), given the output y."""
    y = np.asarray(y, np.float64)
    return np.asarray(grad_out, np.float64) * y * (1.0 - y)


def tanh(x):
    return np.tanh(np.asarray(x, np.float64))


def tanh_backward(grad_out, y):
    """d tanh / dx = 1 - y^2, given the output y."""
    y = np.asarray(y, np.float64)
    return np.asarray(grad_out, np.float64) * (1.0 - y * y)


# ---------------------------------------------------------------------------
# Softmax and losses: softmax, log_softmax, cross_entropy, mse_loss
# ---------------------------------------------------------------------------


def softmax(x, dim=-1):
    x = np.asarray(x, np.float64)
    e = np.exp(x - np.max(x, axis=dim, keepdims=True))
    return e / np.sum(e, axis=dim, keepdims=True)


def log_softmax(x, dim=-1):
    """(x - max) - log(sum(exp(x - max))): exact for large logits."""
    x = np.asarray(x, np.float64)
    shifted = x - np.max(x, axis=dim, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=dim, keepdims=True))


def _jacobian_along(grad_out, jac, dim):
    """grad_x[..., i] = sum_j grad_out[..., j] * jac[..., j, i] with dim moved last."""
    g = np.moveaxis(np.asarray(grad_out, np.float64), dim, -1)
    return np.moveaxis(np.einsum("...j,...ji->...i", g, jac), -1, dim)


def softmax_backward(grad_out, y, dim=-1):
    """Through the full Jacobian d y_j / d x_i = y_j (delta_ij - y_i), given the output y."""
    s = np.moveaxis(np.asarray(y, np.float64), dim, -1)
    jac = s[..., :, None] * (np.eye(s.shape[-1]) - s[..., None, :])
    return _jacobian_along(grad_out, jac, dim)


def log_softmax_backward(grad_out, y, dim=-1):
    """Through the full Jacobian d y_j / d x_i = delta_ij - softmax_i, given the output y."""
    p = np.exp(np.moveaxis(np.asarray(y, np.float64), dim, -1))
    jac = np.eye(p.shape[-1]) - p[..., None, :]
    return _jacobian_along(grad_out, jac, dim)


def _reduce(losses, reduction):
    if reduction == "none":
        return losses
    if reduction == "sum":
        return np.sum(losses)
    return np.mean(losses) if losses.size else np.nan


def cross_entropy(logits, target, reduction="mean"):
    """-log_softmax(logits)[i, target[i]] per sample, then reduced."""
    lp = log_softmax(logits, dim=1)
    target = np.asarray(target, np.int64)
    losses = np.array([-lp[i, t] for i, t in enumerate(target)], dtype=np.float64)
    return _reduce(losses, reduction)


def cross_entropy_backward(logits, target, reduction="mean"):
    """d loss / d logits for an upstream gradient of 1 (ones for 'none')."""
    p = softmax(logits, dim=1)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(target)), np.asarray(target, np.int64)] = 1.0
    g = p - onehot
    return g / len(target) if reduction == "mean" else g


def mse_loss(x, target, reduction="mean"):
    d = np.asarray(x, np.float64) - np.asarray(target, np.float64)
    return _reduce(d * d, reduction)


def mse_loss_backward(x, target, reduction="mean"):
    d = np.asarray(x, np.float64) - np.asarray(target, np.float64)
    return 2.0 * d / d.size if reduction == "mean" else 2.0 * d


# ---------------------------------------------------------------------------
# Dropout and normalisation: dropout, batch_norm, local_response_norm
# ---------------------------------------------------------------------------


def dropout(x, keep, p):
    """Inverted dropout with a given keep-mask: x * keep / (1 - p), so that a dropped
    NaN or infinity gives NaN; x itself where keep is None (eval mode)."""
    x = np.asarray(x, np.float64)
    if keep is None:
        return x
    with np.errstate(invalid="ignore"):
        return x * np.asarray(keep, np.float64) / (1.0 - p)


def dropout_backward(grad_out, keep, p):
    """Gradient of dropout: the same map, grad_out * keep / (1 - p)."""
    return dropout(grad_out, keep, p)


def _channel_view(x):
    """(N, C, ...) -> (N, C, S) and the axes that a per-channel statistic reduces."""
    x = np.asarray(x, np.float64)
    return x.reshape(x.shape[0], x.shape[1], int(np.prod(x.shape[2:]))), (0, 2)


def batch_norm(x, gamma, beta, running_mean=None, running_var=None, training=True, momentum=0.1, eps=1e-5):
    """Returns (y, new_running_mean, new_running_var); the running stats are returned
    updated (training) or unchanged, never modified in place. Training normalises
    with the biased variance and updates running_var with the unbiased one."""
    x3, axes = _channel_view(x)
    c = x3.shape[1]
    if training:
        m = x3.shape[0] * x3.shape[2]
        mean = x3.mean(axis=axes)
        var = ((x3 - mean[None, :, None]) ** 2).mean(axis=axes)
        new_rm = new_rv = None
        if running_mean is not None:
            new_rm = (1 - momentum) * np.asarray(running_mean, np.float64) + momentum * mean
        if running_var is not None:
            new_rv = (1 - momentum) * np.asarray(running_var, np.float64) + momentum * var * m / (m - 1)
    else:
        mean = np.asarray(running_mean, np.float64)
        var = np.asarray(running_var, np.float64)
        new_rm, new_rv = mean, var
    g = np.ones(c) if gamma is None else np.asarray(gamma, np.float64)
    b = np.zeros(c) if beta is None else np.asarray(beta, np.float64)
    y = (x3 - mean[None, :, None]) / np.sqrt(var[None, :, None] + eps) * g[None, :, None] + b[None, :, None]
    return y.reshape(np.shape(x)), new_rm, new_rv


def batch_norm_grads(grad_out, x, gamma, training=True, eps=1e-5, running_mean=None, running_var=None):
    """(grad_x, grad_gamma, grad_beta). Training differentiates through the batch mean
    and variance: with x_hat = (x - mean) / sqrt(var + eps) and M values per channel,
    dL/dx = gamma / sqrt(var + eps) * (g - mean(g) - x_hat * mean(g * x_hat));
    eval treats the running stats as constants."""
    x3, axes = _channel_view(x)
    g3 = np.asarray(grad_out, np.float64).reshape(x3.shape)
    c = x3.shape[1]
    if training:
        mean = x3.mean(axis=axes)
        var = ((x3 - mean[None, :, None]) ** 2).mean(axis=axes)
    else:
        mean = np.asarray(running_mean, np.float64)
        var = np.asarray(running_var, np.float64)
    gam = np.ones(c) if gamma is None else np.asarray(gamma, np.float64)
    inv = 1.0 / np.sqrt(var + eps)
    x_hat = (x3 - mean[None, :, None]) * inv[None, :, None]
    grad_gamma = (g3 * x_hat).sum(axis=axes)
    grad_beta = g3.sum(axis=axes)
    if training:
        gm = g3.mean(axis=axes, keepdims=True)
        gxm = (g3 * x_hat).mean(axis=axes, keepdims=True)
        gx = (gam * inv)[None, :, None] * (g3 - gm - x_hat * gxm)
    else:
        gx = (gam * inv)[None, :, None] * g3
    return gx.reshape(np.shape(x)), grad_gamma, grad_beta


def _lrn_window(c, channels, size):
    """Channels summed for channel c: [c - size//2, c + (size-1)//2], clipped."""
    return range(max(0, c - size // 2), min(channels, c + (size - 1) // 2 + 1))


def _lrn_denominator(x3, size, alpha, k):
    """k + alpha / size * (sum of x^2 over each channel's window), x3 as (N, C, S)."""
    channels = x3.shape[1]
    d = np.empty_like(x3)
    for c in range(channels):
        d[:, c] = k + alpha / size * sum(x3[:, j] ** 2 for j in _lrn_window(c, channels, size))
    return d


def local_response_norm(x, size, alpha=1e-4, beta=0.75, k=1.0):
    """torch.nn.functional.local_response_norm, across channels of (N, C, ...)."""
    x3, _ = _channel_view(x)
    return (x3 / _lrn_denominator(x3, size, alpha, k) ** beta).reshape(np.shape(x))


def local_response_norm_backward(grad_out, x, size, alpha=1e-4, beta=0.75, k=1.0):
    """Chain rule over every pair (c, j) with j in c's window:
    dy_c/dx_j = [c == j] d_c^-beta - 2 alpha beta / size * x_c x_j d_c^(-beta-1)."""
    x3, _ = _channel_view(x)
    g3 = np.asarray(grad_out, np.float64).reshape(x3.shape)
    d = _lrn_denominator(x3, size, alpha, k)
    gx = g3 * d**-beta
    channels = x3.shape[1]
    for c in range(channels):
        common = g3[:, c] * x3[:, c] * d[:, c] ** (-beta - 1) * (-2.0 * alpha * beta / size)
        for j in _lrn_window(c, channels, size):
            gx[:, j] += common * x3[:, j]
    return gx.reshape(np.shape(x))


# ---------------------------------------------------------------------------
# Pooling: max_pool2d (with PyTorch's switches), max_unpool2d, avg_pool2d, lp_pool2d
# ---------------------------------------------------------------------------
#
# x is (N, C, H, W). Windows are walked tap by tap, in row-major order; taps that fall
# in the padding (or past it, for ceil_mode) hold no input. Switches are flat indices
# h * W + w within each (n, c) plane.


def pool_out_size(size, k, stride, pad, dilation, ceil_mode):
    """PyTorch's pooling output length: ceil_mode rounds the window count up, but the
    last window must start inside the input or its left padding."""
    span = size + 2 * pad - dilation * (k - 1) - 1
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _pool_params(kernel_size, stride, padding, dilation):
    k = _pair(kernel_size)
    return k, (k if stride is None else _pair(stride)), _pair(padding), _pair(dilation)


def _tap_positions(out, stride, pad, dilation, tap, size):
    """Input positions of one tap for every output position along an axis, and
    whether each lies inside the input."""
    pos = np.arange(out) * stride - pad + tap * dilation
    return pos, (pos >= 0) & (pos < size)


def _first_inside(out, k, stride, pad, dilation, size):
    """Input position of the first tap inside the input, for every output position."""
    first = np.full(out, -1)
    for tap in reversed(range(k)):
        pos, inside = _tap_positions(out, stride, pad, dilation, tap, size)
        first = np.where(inside, pos, first)
    return first


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """y, or (y, switches) with return_indices, by PyTorch's rule: starting from -inf at
    the window's first input element, a tap takes the window when it is greater than the
    running maximum or NaN. So on ties the first maximum wins, and among NaNs the last one."""
    x = np.asarray(x, dtype=np.float64)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = _pool_params(kernel_size, stride, padding, dilation)
    ho = pool_out_size(h, kh, sh, ph, dh, ceil_mode)
    wo = pool_out_size(w, kw, sw, pw, dw, ceil_mode)
    y = np.full((n, c, ho, wo), -np.inf)
    first = np.add.outer(_first_inside(ho, kh, sh, ph, dh, h) * w, _first_inside(wo, kw, sw, pw, dw, w))
    switches = np.broadcast_to(first, y.shape).astype(np.int64)
    for i in range(kh):
        rows, rows_in = _tap_positions(ho, sh, ph, dh, i, h)
        for j in range(kw):
            cols, cols_in = _tap_positions(wo, sw, pw, dw, j, w)
            v = x[:, :, np.clip(rows, 0, h - 1)[:, None], np.clip(cols, 0, w - 1)[None, :]]
            take = np.outer(rows_in, cols_in) & ((v > y) | np.isnan(v))
            y = np.where(take, v, y)
            switches = np.where(take, np.add.outer(rows * w, cols), switches)
    return (y, switches) if return_indices else y


def _scatter_add(values, switches, plane_shape):
    """Planes of plane_shape with values added at the switches of each (n, c) plane."""
    n, c = values.shape[:2]
    out = np.zeros((n * c, plane_shape[0] * plane_shape[1]))
    flat = switches.reshape(n * c, int(np.prod(switches.shape[2:]))) + np.arange(n * c)[:, None] * out.shape[1]
    np.add.at(out.reshape(-1), flat.reshape(-1), np.asarray(values, np.float64).reshape(-1))
    return out.reshape(n, c, *plane_shape)


def max_pool2d_backward(grad_out, switches, input_shape):
    """Gradient of max_pool2d: each output's gradient goes to its window's winner."""
    return _scatter_add(np.asarray(grad_out, np.float64), np.asarray(switches), tuple(input_shape)[2:])


def max_unpool2d(x, switches, kernel_size, stride=None, padding=0, output_size=None):
    """Zeros of the plane shape output_size (its last two entries; by default
    (H - 1) * stride - 2 * padding + kernel_size per axis) with x written at the switches,
    position by position in row-major order, so that the last of duplicate switches wins."""
    x = np.asarray(x, dtype=np.float64)
    n, c = x.shape[:2]
    if output_size is None:
        (kh, kw), (sh, sw), (ph, pw), _ = _pool_params(kernel_size, stride, padding, 1)
        output_hw = (unpool_out_size(x.shape[2], kh, sh, ph), unpool_out_size(x.shape[3], kw, sw, pw))
    else:
        output_hw = tuple(output_size)[-2:]
    out = np.zeros((n * c, output_hw[0] * output_hw[1]))
    planes = np.arange(n * c)
    plane = int(np.prod(x.shape[2:]))
    xs, ss = x.reshape(n * c, plane), np.asarray(switches).reshape(n * c, plane)
    for k in range(xs.shape[1]):
        out[planes, ss[:, k]] = xs[:, k]
    return out.reshape(n, c, *output_hw)


def max_unpool2d_backward(grad_out, switches):
    """Gradient of max_unpool2d: grad_out read back at the switches."""
    g = np.asarray(grad_out, dtype=np.float64)
    n, c = g.shape[:2]
    s = np.asarray(switches)
    g3, s3 = g.reshape(n, c, int(np.prod(g.shape[2:]))), s.reshape(n, c, int(np.prod(s.shape[2:])))
    return np.take_along_axis(g3, s3, axis=2).reshape(s.shape)


def unpool_out_size(size, k, stride, pad):
    return (size - 1) * stride - 2 * pad + k


def _avg_divisors(out, k, stride, pad, size, count_include_pad):
    """Divisor factor along one axis: the window clipped to the padded input when
    count_include_pad, else the number of input elements in it."""
    start = np.arange(out) * stride - pad
    if count_include_pad:
        return np.minimum(start + k, size + pad) - start
    return np.minimum(start + k, size) - np.maximum(start, 0)


def _avg_setup(x_shape, kernel_size, stride, padding, ceil_mode, count_include_pad):
    h, w = x_shape[2:]
    (kh, kw), (sh, sw), (ph, pw), _ = _pool_params(kernel_size, stride, padding, 1)
    ho = pool_out_size(h, kh, sh, ph, 1, ceil_mode)
    wo = pool_out_size(w, kw, sw, pw, 1, ceil_mode)
    div = np.outer(_avg_divisors(ho, kh, sh, ph, h, count_include_pad), _avg_divisors(wo, kw, sw, pw, w, count_include_pad))
    return (kh, kw), (sh, sw), (ph, pw), (ho, wo), div


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Window sums over the input elements of each window, divided as PyTorch divides."""
    x = np.asarray(x, dtype=np.float64)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (ho, wo), div = _avg_setup(x.shape, kernel_size, stride, padding, ceil_mode, count_include_pad)
    total = np.zeros((n, c, ho, wo))
    for i in range(kh):
        rows, rows_in = _tap_positions(ho, sh, ph, 1, i, h)
        for j in range(kw):
            cols, cols_in = _tap_positions(wo, sw, pw, 1, j, w)
            v = x[:, :, np.clip(rows, 0, h - 1)[:, None], np.clip(cols, 0, w - 1)[None, :]]
            total += np.where(np.outer(rows_in, cols_in), v, 0.0)
    return total / div


def avg_pool2d_backward(grad_out, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Gradient of avg_pool2d: each output's gradient / divisor to every input of its window."""
    n, c, h, w = input_shape
    (kh, kw), (sh, sw), (ph, pw), (ho, wo), div = _avg_setup(input_shape, kernel_size, stride, padding, ceil_mode, count_include_pad)
    share = np.asarray(grad_out, dtype=np.float64) / div
    gx = np.zeros((n, c, h, w))
    for i in range(kh):
        rows, rows_in = _tap_positions(ho, sh, ph, 1, i, h)
        for j in range(kw):
            cols, cols_in = _tap_positions(wo, sw, pw, 1, j, w)
            oi, oj = np.nonzero(np.outer(rows_in, cols_in))
            np.add.at(gx, (slice(None), slice(None), rows[oi], cols[oj]), share[:, :, oi, oj])
    return gx


def lp_pool2d(x, norm_type, kernel_size, stride=None, ceil_mode=False):
    """PyTorch's definition: (avg_pool2d(x^p) * kH * kW)^(1/p), padding 0 and
    count_include_pad; p = inf is the max of |x|, p = -inf the min of |x|."""
    x = np.asarray(x, dtype=np.float64)
    if np.isinf(norm_type):
        sign = 1.0 if norm_type > 0 else -1.0
        return sign * max_pool2d(sign * np.abs(x), kernel_size, stride, 0, 1, ceil_mode)
    kh, kw = _pair(kernel_size)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = avg_pool2d(x**norm_type, kernel_size, stride, 0, ceil_mode, True) * kh * kw
        return (np.sign(out) * np.abs(out)) ** (1.0 / norm_type)


def lp_pool2d_backward(grad_out, x, norm_type, kernel_size, stride=None, ceil_mode=False):
    """Gradient of lp_pool2d by the chain rule through its definition; windows whose
    power sum is zero pass no gradient, as in PyTorch."""
    x = np.asarray(x, dtype=np.float64)
    g = np.asarray(grad_out, dtype=np.float64)
    if np.isinf(norm_type):
        sign = 1.0 if norm_type > 0 else -1.0
        _, switches = max_pool2d(sign * np.abs(x), kernel_size, stride, 0, 1, ceil_mode, True)
        n, c = x.shape[:2]
        at_winner = np.take_along_axis(np.sign(x).reshape(n, c, -1), switches.reshape(n, c, -1), axis=2)
        return _scatter_add(g * at_winner.reshape(g.shape), switches, x.shape[2:])
    p = norm_type
    kh, kw = _pair(kernel_size)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = avg_pool2d(x**p, kernel_size, stride, 0, ceil_mode, True) * kh * kw
        # d/d(out) of out^(1/p), times d(out)/d(avg) = kH * kW.
        d_avg = np.where(out != 0, g * out ** (1.0 / p - 1.0) / p * kh * kw, 0.0)
        return avg_pool2d_backward(d_avg, x.shape, kernel_size, stride, 0, ceil_mode, True) * p * x ** (p - 1)


# ---------------------------------------------------------------------------
# Classic methods: pairwise distances, k nearest neighbours, Lloyd's k-means,
# linear softmax and hinge losses
# ---------------------------------------------------------------------------


def pairwise_distances(A, B, metric="l2"):
    """Distances between the rows of A and B by broadcasting, in float64."""
    diff = np.asarray(A, dtype=np.float64)[:, None, :] - np.asarray(B, dtype=np.float64)[None, :, :]
    if metric == "l1":
        return np.abs(diff).sum(axis=2)
    sq = (diff * diff).sum(axis=2)
    return np.sqrt(sq) if metric == "l2" else sq


def kneighbors(X_train, Q, k, metric="l2"):
    """(dist, idx) of the k nearest training rows by a full sort on (distance, index)."""
    d = pairwise_distances(Q, X_train, metric)
    idx = np.empty((len(Q), k), dtype=np.int64)
    for i, row in enumerate(d):
        idx[i] = np.lexsort((np.arange(len(row)), row))[:k]
    return np.take_along_axis(d, idx, axis=1), idx


def knn_predict(X_train, y_train, Q, k, metric="l2"):
    """Majority label of the k nearest (kneighbors' order); a tied vote to the smallest label."""
    _, idx = kneighbors(X_train, Q, k, metric)
    out = []
    for row in np.asarray(y_train)[idx]:
        labels, counts = np.unique(row, return_counts=True)  # labels ascending
        out.append(labels[np.argmax(counts)])
    return np.array(out, dtype=np.int64)


def kmeans_lloyd(X, init, max_iter=300, tol=1e-4):
    """Lloyd's algorithm as scikit-learn's KMeans(algorithm="lloyd") defines it: tol
    times the mean feature variance bounds the total squared centre shift; stop when
    the labels repeat; an empty cluster takes the point farthest from its (old)
    centre, ties to the lowest index; labels and inertia of the final centres.
    Returns (labels, centres, inertia, n_iter), in float64."""
    X = np.asarray(X, dtype=np.float64)
    centers = np.array(init, dtype=np.float64)
    k = len(centers)
    tol = np.mean(np.var(X, axis=0)) * tol
    labels_old = np.full(len(X), -1)
    strict = False
    def nearest(centers):  # the first minimum: the lowest centre index
        d = np.stack([((X - c) ** 2).sum(axis=1) for c in centers], axis=1)
        return np.argmin(d, axis=1)

    for it in range(max_iter):
        labels = nearest(centers)
        sums = np.zeros_like(centers)
        np.add.at(sums, labels, X)
        counts = np.bincount(labels, minlength=k).astype(np.float64)
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            gaps = ((X - centers[labels]) ** 2).sum(axis=1)
            far = np.lexsort((np.arange(len(X)), -gaps))[: len(empty)]
            for c, f in zip(empty, far):
                sums[labels[f]] -= X[f]
                counts[labels[f]] -= 1
                sums[c], counts[c] = X[f], 1
        new = sums / counts[:, None]
        shift = ((new - centers) ** 2).sum()
        centers = new
        if np.array_equal(labels, labels_old):
            strict = True
            break
        if shift <= tol:
            break
        labels_old = labels
    if not strict:
        labels = nearest(centers)
    inertia = ((X - centers[labels]) ** 2).sum()
    return labels, centers, inertia, it + 1


def softmax_loss(W, b, X, y, reg=0.0):
    """Mean cross-entropy of softmax(X W^T + b) plus reg * sum(W^2): (loss, dW, db)."""
    W, b, X = (np.asarray(a, dtype=np.float64) for a in (W, b, X))
    n = len(X)
    s = X @ W.T + b
    s -= s.max(axis=1, keepdims=True)
    p = np.exp(s) / np.exp(s).sum(axis=1, keepdims=True)
    loss = -np.log(p[np.arange(n), y]).mean() + reg * (W * W).sum()
    g = p.copy()
    g[np.arange(n), y] -= 1
    g /= n
    return loss, g.T @ X + 2 * reg * W, g.sum(axis=0)


def svm_loss(W, b, X, y, reg=0.0):
    """Mean multiclass hinge sum_{j != y} max(0, s_j - s_y + 1) plus reg * sum(W^2): (loss, dW, db)."""
    W, b, X = (np.asarray(a, dtype=np.float64) for a in (W, b, X))
    n = len(X)
    s = X @ W.T + b
    margins = s - s[np.arange(n), y][:, None] + 1
    margins[np.arange(n), y] = 0
    active = (margins > 0).astype(np.float64)
    loss = np.maximum(margins, 0).sum() / n + reg * (W * W).sum()
    g = active
    g[np.arange(n), y] = -active.sum(axis=1)
    g /= n
    return loss, g.T @ X + 2 * reg * W, g.sum(axis=0)
