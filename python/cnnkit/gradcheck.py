"""Gradient checking: central finite differences in float64 against an analytic backward."""

import copy
import math
import numbers
from dataclasses import dataclass

import numpy as np

from . import _random
from ._args import integer, real
from .nn.module import Module

__all__ = ["gradcheck", "GradcheckResult"]


@dataclass
class GradcheckResult:
    """Outcome of gradcheck: truthy when it passed; ``str()`` gives a one-line report.

    Attributes
    ----------
    ok : bool
        Every checked element passed ``|analytic - numeric| <= atol + rtol * |numeric|``.
    max_abs_error : float
        The largest ``|analytic - numeric|``.
    max_rel_error : float
        The largest ``|analytic - numeric| / max(|analytic|, |numeric|, atol)``.
    where : str
        The tensor that holds the worst element (the largest difference relative to
        its tolerance): "input[i]", or a parameter name such as "0.weight".
    index : int
        The worst element's flat index in that tensor.
    analytic, numeric : float
        The two gradients at the worst element.
    checked : int
        Number of elements compared.
    """

    ok: bool
    max_abs_error: float
    max_rel_error: float
    where: str
    index: int
    analytic: float
    numeric: float
    checked: int

    def __bool__(self):
        return self.ok

    def __str__(self):
        status = "passed" if self.ok else "FAILED"
        return (
            f"gradcheck {status}: {self.checked} elements, max abs error {self.max_abs_error:.3g}, "
            f"max rel error {self.max_rel_error:.3g}; worst at {self.where}[{self.index}] "
            f"(analytic {self.analytic:.10g}, numeric {self.numeric:.10g})"
        )


def _as_tuple(inputs):
    return tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)


def _float64(a):
    if isinstance(a, np.ndarray) and a.dtype.kind == "f":
        return np.array(a, dtype=np.float64)
    return a


def _objective_weights(output, rng):
    """Random weights R so the checked scalar is sum(R * output): every output element
    contributes with its own weight, which defeats gradients that only sum right."""
    if np.isscalar(output) or np.ndim(output) == 0:
        return 1.0
    return rng.standard_normal(np.shape(output))


def _scalar(output, weights):
    if np.isscalar(weights):
        return float(output)
    return float(np.sum(np.asarray(output, dtype=np.float64) * weights))


def _tolerance(value, name):
    value = real(value, "gradcheck", name)
    if not value >= 0:
        raise ValueError(f"gradcheck: {name}: expected a tolerance >= 0, got {value}")
    return value


def _indices(inputs_to_check, inputs):
    """inputs_to_check as a list of indices of float ndarray inputs."""
    if isinstance(inputs_to_check, (str, bytes)) or not isinstance(inputs_to_check, (tuple, list, range)):
        raise TypeError(
            f"gradcheck: inputs_to_check: expected a sequence of ints, got {type(inputs_to_check).__name__}"
        )
    out = []
    for i in inputs_to_check:
        i = integer(i, "gradcheck", "inputs_to_check", "a sequence of ints")
        if not 0 <= i < len(inputs):
            raise ValueError(f"gradcheck: inputs_to_check: expected indices in [0, {len(inputs)}), got {i}")
        if not (isinstance(inputs[i], np.ndarray) and inputs[i].dtype.kind == "f"):
            raise ValueError(
                f"gradcheck: inputs_to_check: input {i} is not a float ndarray ({type(inputs[i]).__name__})"
            )
        out.append(i)
    return out


def _analytic(input_grads, i):
    """The analytic gradient of input i as a float64 array."""
    if i >= len(input_grads) or input_grads[i] is None:
        raise ValueError(f"gradcheck: backward: returned no gradient for input {i} (of inputs_to_check)")
    g = input_grads[i]
    if not isinstance(g, (np.ndarray, numbers.Number)) or isinstance(g, bool):
        raise TypeError(f"gradcheck: backward: the gradient of input {i}: expected an ndarray, got {type(g).__name__}")
    try:
        return np.asarray(g, np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"gradcheck: backward: the gradient of input {i}: expected a numeric array ({e})") from None


def gradcheck(fn, inputs, backward=None, eps=1e-6, atol=1e-5, rtol=1e-3, inputs_to_check=None, seed=0):
    """Compare an analytic gradient with central finite differences, in float64.

    The checked scalar is ``sum(R * output)`` for a random R of the output's shape,
    drawn once from ``seed`` (R = 1 for a scalar output), so that every output element
    contributes with its own weight; this defeats gradients that only sum right. Each
    element is perturbed by +-eps, ``numeric = (f(x + eps) - f(x - eps)) / (2 * eps)``,
    and passes when ``|analytic - numeric| <= atol + rtol * |numeric|``. Float inputs are
    converted to float64 copies first, so the caller's arrays are untouched. cnnkit's
    random stream is reset before every evaluation (so that dropout draws the same
    masks each time) and restored at the end. One evaluation runs per element and
    sign: keep the inputs small.

    Parameters
    ----------
    fn : Module or callable
        A Module: the analytic gradients are the return value of ``module.backward(R)``
        after ``module(*inputs)``, checked against input 0, and the ``.grad`` it
        accumulates in every parameter, all checked. A module whose forward returns a
        scalar (a loss) is called as ``crit(*inputs)`` and ``crit.backward()``. The
        module is deep-copied and converted to float64, so the caller's is untouched.
        A callable: a function of the inputs that returns an array or a scalar.
    inputs : ndarray, or tuple or list of them
        The arguments of fn; non-float ones (such as integer targets) are passed as
        they are.
    backward : callable, optional
        Required when fn is a function, ignored for a Module: ``backward(R, *inputs)``
        returns the gradient of input 0, or a tuple with one gradient (or None) per
        input, as cnnkit.functional's ``*_backward`` ops do (extra items are ignored).
    eps : float, default 1e-6
        Finite-difference step.
    atol : float, default 1e-5
        Absolute tolerance.
    rtol : float, default 1e-3
        Relative tolerance, of |numeric|.
    inputs_to_check : sequence of int, optional
        Indices of the inputs to check. Default: every float ndarray input that the
        backward returns a gradient for (for a Module, input 0).
    seed : int, default 0
        Seed of R.

    Returns
    -------
    GradcheckResult
        Truthy when every element passes.

    Raises
    ------
    TypeError
        fn is neither a Module nor callable; backward is given but not callable; eps,
        atol or rtol is not a real number; inputs_to_check is not a sequence of ints;
        seed is not a seed NumPy takes; an analytic gradient is not numeric.
    ValueError
        fn is a function and backward is None; inputs is empty; eps is not positive and
        finite; atol or rtol is negative or NaN; an index of inputs_to_check is out of
        range or names a non-float input, or backward returned no gradient for it; an
        analytic gradient's shape differs from its input's or parameter's; there is
        nothing to check (no non-empty float input with a gradient, and no parameters).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit import functional as F
    >>> from cnnkit import gradcheck
    >>> rng = np.random.default_rng(0)
    >>> x, w = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((4, 3, 3, 3))
    >>> result = gradcheck(lambda x, w: F.conv2d(x, w, padding=1), (x, w),
    ...                    backward=lambda g, x, w: F.conv2d_backward(g, x, w, padding=1))
    >>> bool(result), result.checked
    (True, 258)
    """
    eps = real(eps, "gradcheck", "eps")
    if not 0 < eps < math.inf:
        raise ValueError(f"gradcheck: eps: expected a positive finite step, got {eps}")
    atol = _tolerance(atol, "atol")
    rtol = _tolerance(rtol, "rtol")
    try:
        rng = np.random.default_rng(seed)
    except (TypeError, ValueError) as e:
        raise type(e)(f"gradcheck: seed: expected a seed NumPy takes (a non-negative int), got {seed!r} ({e})") from None
    inputs = tuple(_float64(a) for a in _as_tuple(inputs))
    if not inputs:
        raise ValueError("gradcheck: inputs: expected at least one input, got none")
    if inputs_to_check is not None:
        inputs_to_check = _indices(inputs_to_check, inputs)
    if isinstance(fn, Module):
        module = copy.deepcopy(fn).to(np.float64)
        forward = module
        params = list(module.named_parameters())
    elif callable(fn):
        if backward is None:
            raise ValueError("gradcheck: backward: needed when fn is a function rather than a Module")
        if not callable(backward):
            raise TypeError(f"gradcheck: backward: expected a callable, got {type(backward).__name__}")
        module = None
        forward = fn
        params = []
    else:
        raise TypeError(f"gradcheck: fn: expected a Module or a callable, got {type(fn).__name__}")

    random_state = _random.get_state()

    def evaluate():
        _random.set_state(random_state)
        return forward(*inputs)

    output = evaluate()
    weights = _objective_weights(output, rng)

    # Analytic gradients.
    if module is not None:
        module.zero_grad()
        grad_in = module.backward() if np.isscalar(weights) else module.backward(weights)
        input_grads = (grad_in,)
    else:
        result = backward(weights, *inputs)
        input_grads = result if isinstance(result, tuple) else (result,)
    if inputs_to_check is None:
        inputs_to_check = [
            i
            for i, g in enumerate(input_grads)
            if g is not None and i < len(inputs) and isinstance(inputs[i], np.ndarray) and inputs[i].dtype.kind == "f"
        ]
    targets = [(f"input[{i}]", inputs[i], _analytic(input_grads, i)) for i in inputs_to_check]
    targets += [(name, p.data, p.grad.copy()) for name, p in params]

    worst = None
    max_abs = max_rel = 0.0
    ok = True
    checked = 0
    for name, array, analytic in targets:
        if analytic.shape != array.shape:
            raise ValueError(f"gradcheck: gradient of {name}: expected shape {array.shape}, got {analytic.shape}")
        flat = array.reshape(-1)  # a view: perturbing it perturbs the input or parameter
        numeric = np.empty(flat.size)
        for k in range(flat.size):
            saved = flat[k]
            flat[k] = saved + eps
            plus = _scalar(evaluate(), weights)
            flat[k] = saved - eps
            minus = _scalar(evaluate(), weights)
            flat[k] = saved
            numeric[k] = (plus - minus) / (2 * eps)
        a = analytic.reshape(-1)
        diff = np.abs(a - numeric)
        tol = atol + rtol * np.abs(numeric)
        checked += flat.size
        if flat.size == 0:
            continue
        ok &= bool(np.all(diff <= tol))
        max_abs = max(max_abs, float(diff.max()))
        max_rel = max(max_rel, float(np.max(diff / np.maximum(np.maximum(np.abs(a), np.abs(numeric)), atol))))
        k = int(np.argmax(diff / tol))
        ratio = float(diff[k] / tol[k])
        if worst is None or ratio > worst[0]:
            worst = (ratio, name, k, float(a[k]), float(numeric[k]))
    _random.set_state(random_state)
    if worst is None:
        raise ValueError("gradcheck: inputs: nothing to check (no float input with a gradient, no parameters)")
    _, where, index, a_val, n_val = worst
    return GradcheckResult(ok, max_abs, max_rel, where, index, a_val, n_val, checked)
