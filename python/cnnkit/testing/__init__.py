"""Kernel testing: cnnkit's sample cases, tolerances and reference checks for anyone's kernels.

- `sample_inputs(op)`: seeded cases for an op of cnnkit.functional (a random sweep plus
  named adversarial cases);
- `assert_close(actual, expected)`: cnnkit's tolerance per dtype, NaN positions and
  integer results exact, a message naming the worst element;
- `check_op(op, fn)`: runs fn over the samples against cnnkit.reference.

`cnnkit.testing.pytest` turns the samples into one-line parametrisations.
"""

import numpy as np

from ._samples import OPS, RTOL, Sample, _float_dtype, _to_numpy, sample_inputs
from .. import reference

__all__ = ["Sample", "assert_close", "check_op", "sample_inputs", "tolerance", "RTOL"]


def tolerance(dtype, expected):
    """Cnnkit's (rtol, atol) for comparing a result of `dtype` with a float64 reference.

    Parameters
    ----------
    dtype : float32 or float64
        The dtype of the result under test.
    expected : array_like
        The reference result.

    Returns
    -------
    (float, float)
        rtol for the dtype, and atol = rtol times the largest finite magnitude in
        expected, so that entries that cancel to near zero are judged on the scale of
        the whole result (an all-zero expected result must then be matched exactly).
    """
    rtol = RTOL[_float_dtype(dtype)]
    finite = np.abs(np.asarray(expected, np.float64))
    finite = finite[np.isfinite(finite)]
    return rtol, rtol * (float(finite.max()) if finite.size else 0.0)


def _where(flat_index, shape):
    return tuple(int(i) for i in np.unravel_index(flat_index, shape)) if shape else ()


def assert_close(actual, expected, dtype=None, rtol=None, atol=None, note=""):
    """Assert that actual matches the reference expected to cnnkit's tolerance.

    Parameters
    ----------
    actual : array_like
        The result under test (NumPy, CuPy, torch, or anything np.asarray takes).
    expected : array_like
        The reference result (float64, or integers for switches).
    dtype : float32 or float64, optional
        The dtype actual must have; its tolerance is used. Default: actual's dtype.
    rtol, atol : float, optional
        Override the tolerance of `tolerance(dtype, expected)`.
    note : str, optional
        The case's name, put at the head of the failure message.

    Raises
    ------
    AssertionError
        On a shape or dtype mismatch, NaN or infinities at other positions, integers
        that differ, or elements beyond atol + rtol * |expected|; the message names
        the worst element, its index and both values.
    """
    head = f"{note}: " if note else ""
    actual, expected = _to_numpy(actual), np.asarray(expected)
    if actual.shape != expected.shape:
        raise AssertionError(f"{head}shape {actual.shape}, expected {expected.shape}")
    if expected.dtype.kind in "iub":
        if actual.dtype.kind not in "iub":
            raise AssertionError(f"{head}dtype {actual.dtype}, expected integers")
        bad = np.flatnonzero(actual.reshape(-1) != expected.reshape(-1))
        if bad.size:
            i = bad[0]
            raise AssertionError(
                f"{head}{bad.size} of {actual.size} integers differ; first at index "
                f"{_where(i, actual.shape)}: actual {int(actual.reshape(-1)[i])}, expected {int(expected.reshape(-1)[i])}"
            )
        return
    if dtype is not None and actual.dtype != _float_dtype(dtype):
        raise AssertionError(f"{head}dtype {actual.dtype}, expected {np.dtype(dtype)}")
    default_rtol, default_atol = tolerance(actual.dtype if dtype is None else dtype, expected)
    rtol = default_rtol if rtol is None else rtol
    atol = default_atol if atol is None else atol
    a, e = actual.astype(np.float64).reshape(-1), expected.astype(np.float64).reshape(-1)
    nan_a, nan_e = np.isnan(a), np.isnan(e)
    bad = np.flatnonzero(nan_a != nan_e)
    if bad.size:
        i = bad[0]
        raise AssertionError(
            f"{head}NaN at {bad.size} other positions; first at index {_where(i, actual.shape)}: "
            f"actual {float(a[i])!r}, expected {float(e[i])!r}"
        )
    inf = ~nan_e & (np.isinf(a) | np.isinf(e))
    bad = np.flatnonzero(inf & (a != e))
    if bad.size:
        i = bad[0]
        raise AssertionError(
            f"{head}infinities differ at {bad.size} positions; first at index {_where(i, actual.shape)}: "
            f"actual {float(a[i])!r}, expected {float(e[i])!r}"
        )
    finite = ~nan_e & ~inf
    a, e = np.where(finite, a, 0.0), np.where(finite, e, 0.0)
    diff = np.abs(a - e)
    excess = diff - (atol + rtol * np.abs(e))
    if excess.size and excess.max() > 0:
        i = int(np.argmax(excess))
        raise AssertionError(
            f"{head}{int((excess > 0).sum())} of {a.size} elements differ beyond rtol={rtol:.3g}, "
            f"atol={atol:.3g}; worst at index {_where(i, actual.shape)}: actual {float(a[i])!r}, "
            f"expected {float(e[i])!r} (|diff| {diff[i]:.3g})"
        )


def _describe(value):
    if isinstance(value, np.ndarray):
        layout = "" if value.flags.c_contiguous else ", non-contiguous"
        return f"array(shape={value.shape}, dtype={value.dtype}{layout})"
    return repr(value)


def _case_text(op, dtype, case):
    args = ", ".join(_describe(a) for a in case.args)
    kwargs = ", ".join(f"{k}={_describe(v)}" for k, v in case.kwargs.items())
    return f"check_op({op!r}) {np.dtype(dtype)} case '{case.note}': {op}({args}{', ' if kwargs else ''}{kwargs})"


def _outputs(result):
    return result if isinstance(result, tuple) else (result,)


def _compare(what, got, want, dtype, text, scale=0.0):
    got = _outputs(got)
    if len(got) < len(want):
        raise AssertionError(f"{text}\n  {what} gave {len(got)} results, expected {len(want)}")
    for k, (g, w) in enumerate(zip(got, want)):
        if w is None:  # a gradient the reference leaves out (batch_norm without gamma or beta)
            continue
        name = what if len(want) == 1 else f"{what}[{k}]"
        rtol, atol = tolerance(dtype, w)
        try:
            assert_close(g, w, dtype=dtype, atol=max(atol, rtol * scale))
        except AssertionError as e:
            raise AssertionError(f"{text}\n  {name}: {e}") from None


def _call(what, f, args, kwargs, text):
    try:
        return f(*args, **kwargs)
    except Exception as e:  # a kernel that raises on a valid case fails it
        raise AssertionError(f"{text}\n  {what} raised {type(e).__name__}: {e}") from e


def _read(what, f, args, text):
    """f(*args), a spec's reading of fn's result: its AssertionError names the case."""
    try:
        return f(*args)
    except AssertionError as e:
        raise AssertionError(f"{text}\n  {what}: {e}") from None


def check_op(op, fn, dtypes=(np.float32, np.float64), backward=None):
    """Check an implementation of a cnnkit.functional op against cnnkit.reference.

    Parameters
    ----------
    op : str
        The op's name in cnnkit.functional, one of `sample_inputs`' ops.
    fn : callable
        The implementation, with the op's signature: called as fn(*case.args,
        **case.kwargs) on NumPy arrays; its results may be anything np.asarray takes
        (CuPy and torch results are moved to the host). batch_norm's fn updates the
        running statistics in place and returns y or (y, saved). dropout's fn returns
        (y, mask) and y is checked against reference.dropout with that mask, which
        must be bool of the input's shape (None in eval mode) and, on a large input,
        keep about 1 - p of the elements.
    dtypes : dtype or sequence of dtypes, optional
        The dtypes to run, float32 and/or float64; results must keep the dtype.
    backward : callable, optional
        The op's backward, with the signature of cnnkit.functional's op_backward
        (max_pool2d_backward gets the reference's switches; sigmoid, tanh and the
        softmax family get the reference's output; batch_norm_backward gets fn's
        second result, the saved state, whatever it is, and dropout_backward fn's mask).

    Returns
    -------
    str
        A one-line report of the cases and dtypes that passed.

    Raises
    ------
    AssertionError
        At the first failing case, naming the case's note, dtype and arguments.
    ValueError
        For an unknown op.
    TypeError
        If fn or backward is not callable, or a dtype is not float32 or float64.
    """
    spec = OPS.get(op)
    if spec is None:
        raise ValueError(f"check_op: op: expected one of {', '.join(sorted(OPS))}, got {op!r}")
    if not callable(fn):
        raise TypeError(f"check_op: fn: expected a callable, got {type(fn).__name__}")
    if backward is not None and not callable(backward):
        raise TypeError(f"check_op: backward: expected a callable, got {type(backward).__name__}")
    if isinstance(dtypes, (str, type, np.dtype)):
        dtypes = (dtypes,)
    dtypes = [_float_dtype(d, "dtypes") for d in dtypes]
    if not dtypes:
        raise ValueError("check_op: dtypes: expected at least one dtype, got none")
    ref_fwd = getattr(reference, op)
    ref_bwd = getattr(reference, op + "_backward", None)
    count = 0
    for dtype in dtypes:
        for index, case in enumerate(sample_inputs(op, dtype)):
            text = _case_text(op, dtype, case)
            if spec.expected is None:  # before fn, which may update arguments in place (running statistics)
                want = tuple(o for o in _outputs(ref_fwd(*case.args, **case.kwargs)) if o is not None)
            got = _call(op, fn, case.args, case.kwargs, text)
            if spec.expected is not None:
                want = _read(op, spec.expected, (case, got), text)
            _compare(op, spec.actual(got, case) if spec.actual else got, want, dtype, text)
            if backward is not None:
                grad = np.random.default_rng(index).standard_normal(np.shape(want[0])).astype(dtype)
                args, kwargs = _read(op, spec.backward_args, (case, grad, ref_fwd, got), text)
                if spec.reference_grads is not None:
                    want_b = spec.reference_grads(case, grad)
                else:
                    want_b = _outputs(ref_bwd(*args, **kwargs))
                got_b = _call(op + " backward", backward, args, kwargs, text)
                # gradients that cancel are judged on the scale of the upstream gradient
                scale = float(np.max(np.abs(grad), initial=0.0)) if args[0] is grad else 0.0
                _compare(op + " backward", got_b, want_b, dtype, text, scale)
            count += 1
    passes = "forward and backward" if backward is not None else "forward"
    names = "/".join(str(d) for d in dtypes)
    return f"check_op({op!r}): {count} cases ({names}) passed, {passes}"
