"""Normalisation of Python-side arguments (ints, pairs, padding strings).

Value checks (positivity, shapes) live in C++ (csrc/common/validate.cpp), once.
"""

import numbers


def _int(v, op, name):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{op}: {name}: expected an int or a pair of ints, got {type(v).__name__}")
    return int(v)


def pair(v, op, name):
    """An int or an (h, w) pair, as a tuple of two ints."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{op}: {name}: expected an int or a pair of ints, got {len(v)} values {tuple(v)}")
        return (_int(v[0], op, name), _int(v[1], op, name))
    v = _int(v, op, name)
    return (v, v)


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
                out += [total // 2, total - total // 2]
            return tuple(out)
        raise ValueError(f"{op}: padding: expected an int, a pair, 'valid' or 'same', got {padding!r}")
    ph, pw = pair(padding, op, "padding")
    return (ph, ph, pw, pw)


def groups(v, op):
    return _int(v, op, "groups")


def weight_kernel_hw(weight, op):
    """Kernel size from a weight array, for resolving 'same' before C++ validates the weight."""
    shape = getattr(weight, "shape", None)
    if shape is None or len(shape) != 4:
        return (1, 1)  # C++ reports the bad weight with its full message
    return (int(shape[2]), int(shape[3]))
