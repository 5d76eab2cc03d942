"""Normalisation of Python-side arguments (ints, reals, pairs, padding strings).

The one home of argument types: every int the kernels take is checked here to fit
an int64 (so that pybind11 never sees one it cannot convert), every real to be a
finite-or-infinite float. Value checks (positivity, shapes, overflow of the
geometry) live in C++ (csrc/common/validate.cpp), once.
"""

import numbers

import numpy as np

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def integer(v, op, name, expected="an int"):
    """v as a Python int that fits an int64; TypeError for a non-integer (bool
    included), ValueError for one outside the int64 range."""
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{op}: {name}: expected {expected}, got {type(v).__name__}")
    v = int(v)
    if not _INT64_MIN <= v <= _INT64_MAX:
        raise ValueError(f"{op}: {name}: expected {expected} within the int64 range, got {v}")
    return v


def real(v, op, name):
    """v as a Python float; TypeError for a non-real (bool included), ValueError for
    an integer too large for a float."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{op}: {name}: expected a real number, got {type(v).__name__}")
    try:
        return float(v)
    except OverflowError:
        raise ValueError(f"{op}: {name}: expected a real number within the float range, got {v}") from None


def boolean(v, op, name):
    """v as a Python bool: a bool or a NumPy bool only, as torch takes its flags (bool()
    would take anything, and 'False' is true)."""
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{op}: {name}: expected a bool, got {type(v).__name__}")
    return bool(v)


def output_mask(v, op):
    """Which of (grad_input, grad_weight, grad_bias) a backward computes: three bools,
    as torch's convolution_backward takes them."""
    expected = "a tuple of 3 bools (grad_input, grad_weight, grad_bias)"
    if not isinstance(v, (tuple, list)):
        raise TypeError(f"{op}: output_mask: expected {expected}, got {type(v).__name__}")
    if len(v) != 3:
        raise ValueError(f"{op}: output_mask: expected {expected}, got {len(v)} values {tuple(v)}")
    for b in v:
        if not isinstance(b, (bool, np.bool_)):
            raise TypeError(f"{op}: output_mask: expected {expected}, got {type(b).__name__} {b!r} in {tuple(v)}")
    return tuple(bool(b) for b in v)


def pair(v, op, name):
    """An int or an (h, w) pair, as a tuple of two ints."""
    expected = "an int or a pair of ints"
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{op}: {name}: expected {expected}, got {len(v)} values {tuple(v)}")
        return (integer(v[0], op, name, expected), integer(v[1], op, name, expected))
    v = integer(v, op, name, expected)
    return (v, v)


def ints(v, op, name):
    """A shape-like sequence of ints as a list; its length and values are checked in C++."""
    if not isinstance(v, (tuple, list)):
        raise TypeError(f"{op}: {name}: expected a tuple of ints, got {type(v).__name__}")
    return [integer(i, op, name, "a tuple of ints") for i in v]


def reduction(v, op):
    if not isinstance(v, str):
        raise TypeError(f"{op}: reduction: expected 'mean', 'sum' or 'none', got {type(v).__name__}")
    return v


def conv_padding(padding, kernel_hw, stride, dilation, op):
    """Padding as (top, bottom, left, right), resolving 'valid' and 'same' as PyTorch does."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(f"{op}: padding: 'same' needs stride 1, got stride {stride}")
            out = []
            for k, d in zip(kernel_hw, dilation):
                total = d * (k - 1)
                if total > _INT64_MAX:
                    raise ValueError(
                        f"{op}: padding: 'same' needs dilation * (kernel_size - 1) within the int64 range, "
                        f"got {d} * {k - 1}"
                    )
                out += [total // 2, total - total // 2]
            return tuple(out)
        raise ValueError(f"{op}: padding: expected an int, a pair, 'valid' or 'same', got {padding!r}")
    ph, pw = pair(padding, op, "padding")
    return (ph, ph, pw, pw)


def groups(v, op):
    return integer(v, op, "groups")


def weight_kernel_hw(weight, op):
    """Kernel size from a weight array, for resolving 'same' before C++ validates the weight."""
    shape = getattr(weight, "shape", None)
    if shape is None or len(shape) != 4:
        return (1, 1)  # C++ reports the bad weight with its full message
    return (int(shape[2]), int(shape[3]))


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def float_matrix(v, op, name):
    """v as a C-contiguous 2-D float32 or float64 ndarray of finite values (copied
    only where it is not one already); TypeError for another dtype, ValueError for
    another number of dimensions, no feature columns, or a NaN or infinity."""
    a = np.asarray(v)
    if a.dtype not in _FLOATS:
        raise TypeError(f"{op}: {name}: expected a float32 or float64 array, got dtype {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"{op}: {name}: expected a 2-D array (n_samples, n_features), got shape {a.shape}")
    if a.shape[1] == 0:
        raise ValueError(f"{op}: {name}: expected at least one feature, got shape {a.shape}")
    if not np.isfinite(a).all():
        row = int(np.flatnonzero(~np.isfinite(a).all(axis=1))[0])
        raise ValueError(f"{op}: {name}: expected finite values, got NaN or infinity in row {row}")
    return np.ascontiguousarray(a)


def int_labels(v, op, name, n):
    """v as a 1-D int64 ndarray of length n; TypeError for a non-integer dtype (bool
    included), ValueError for another shape."""
    a = np.asarray(v)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{op}: {name}: expected an integer array of labels, got dtype {a.dtype}")
    if a.shape != (n,):
        raise ValueError(f"{op}: {name}: expected shape ({n},), one label per sample, got shape {a.shape}")
    if a.dtype.kind == "u" and a.size and a.max() > _INT64_MAX:
        raise ValueError(f"{op}: {name}: expected labels within the int64 range, got {a.max()}")
    return np.ascontiguousarray(a, dtype=np.int64)


def choice(v, op, name, options):
    """v, one of the strings in options; TypeError for a non-string, ValueError otherwise."""
    listed = ", ".join(repr(o) for o in options)
    if not isinstance(v, str):
        raise TypeError(f"{op}: {name}: expected one of {listed}, got {type(v).__name__}")
    if v not in options:
        raise ValueError(f"{op}: {name}: expected one of {listed}, got {v!r}")
    return v


def positive(v, op, name, low=1):
    """v as an int >= low (1 unless told)."""
    v = integer(v, op, name)
    if v < low:
        raise ValueError(f"{op}: {name}: expected an int >= {low}, got {v}")
    return v


def seed(v, op, name="seed"):
    """v as None or a non-negative int, for numpy.random.default_rng."""
    if v is None:
        return None
    return positive(v, op, name, low=0)


def uint8_images(v, op, name):
    """v as a C-contiguous 4-D uint8 ndarray (N, C, H, W), copied only where it is not
    one already; TypeError for another dtype, ValueError for another number of dims."""
    a = np.asarray(v)
    if a.dtype != np.uint8:
        raise TypeError(f"{op}: {name}: expected a uint8 array (N, C, H, W), got dtype {a.dtype}")
    if a.ndim != 4:
        raise ValueError(f"{op}: {name}: expected a 4-D array (N, C, H, W), got shape {a.shape}")
    return np.ascontiguousarray(a)


def per_channel(v, op, name, channels, default, positive=False):
    """v as a float64 array of one finite value per channel: None gives default, a real
    number is repeated, a sequence (or 1-D array) gives one each. TypeError for a
    non-real entry, ValueError for another length, a NaN or infinity, or (positive) a
    value <= 0."""
    expected = f"a real number or a sequence of {channels} (one per channel)"
    if v is None:
        values = [default]
    elif isinstance(v, (tuple, list, np.ndarray)):
        if isinstance(v, np.ndarray) and v.ndim != 1:
            raise ValueError(f"{op}: {name}: expected {expected}, got an array of shape {v.shape}")
        if len(v) != channels:
            raise ValueError(f"{op}: {name}: expected {expected}, got {len(v)} values")
        values = [real(x, op, name) for x in (v.tolist() if isinstance(v, np.ndarray) else v)]
    else:
        values = [real(v, op, name)]
    for x in values:
        if not np.isfinite(x) or (positive and x <= 0):
            kind = "positive finite" if positive else "finite"
            raise ValueError(f"{op}: {name}: expected {kind} values, got {x}")
    return np.array(values if len(values) == channels else values * channels, dtype=np.float64)
