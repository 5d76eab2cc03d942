"""Bad-input fuzzing of every public function, one forked child per case (issue 9).

Every public entry point (cnnkit.functional, the top-level functions, the nn layers
and losses with their forward/backward, the optimisers and the data readers) gets a
valid *base* call, and each case mutates ONE argument of it to a value from a table
of hostile values: wrong types, 0-d and wrong-ndim arrays, zero-size dims, wrong and
mixed dtypes, NaN/inf values, non-contiguous, transposed, negative-stride, misaligned,
read-only and Fortran-ordered views, ints beyond int64, floats where ints go, wrong
pair lengths, NumPy integer scalars, huge shapes, out-of-range switches and targets.
The list is fixed and deterministic; each case's id says function, argument and kind
of value, e.g. ``conv2d:stride=2^62`` or ``nn.Conv2d.forward:input=misaligned``.

Each case runs in a child forked from the test process (which has numpy and cnnkit
imported), under an address-space limit, so that a crash or a hang cannot take the
run down; the child reports its verdict through a pipe. The rules:

- a crash (a signal, an abnormal exit, no verdict) and a hang (TIMEOUT_S) fail;
- a case that must raise passes on a ValueError or TypeError (IndexError for a
  softmax-family dim out of range; RuntimeError for a module's state errors) whose
  message names the function or layer and the argument (as a word); pybind11's
  "incompatible function arguments" dump is never an answer; a MemoryError fails
  unless the case asks for a huge but legal allocation;
- a case whose input is valid (NumPy integer scalars, views of any layout, an empty
  batch, ...) must return, and its result must equal that of the same call on clean
  C-contiguous inputs (exactly; with a tolerance where the clean call takes an
  equivalent argument, such as stride 5 for stride 2**62 on a 5x5 input);
- a case that should raise but returns is a silent acceptance of bad input.

A message may name another argument of the call instead of the mutated one where the
value is legal on its own and only conflicts with the others (a shape that does not
match, a stride for which grad_output no longer fits): such mutations are marked
`relational`. Array operands after a call's first, and ops whose checks another op's
cases already cover (the *_algorithm queries, twins such as tanh of sigmoid), get a
shorter table.

Cases that fail because of defects not fixed yet are listed in KNOWN_FAILURES (fnmatch
patterns over case ids, each with its reason). The list is strict: a listed case that
passes fails its test until the entry is removed. One test per function runs all of
its cases (CNNKIT_FUZZ_JOBS children at a time, default 2) and reports every failing
case with its outcome in one message; a summary of the outcome classes is printed at
the end of the module.
"""

import contextlib
import fnmatch
import gzip
import inspect
import math
import os
import pathlib
import resource
import select
import signal
import struct
import sys
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import dataclass, fields, is_dataclass
from typing import Callable, Optional

import numpy as np
import pytest

import cnnkit
from cnnkit import classic, data, nn, optim
from cnnkit import functional as F
from cnnkit.nn import Parameter

from cnnkit import reference

TIMEOUT_S = 20.0  # a case still running after this is a hang
SLOW_S = 5.0  # a case that takes longer than this (all are milliseconds) fails as slow
CHILD_HEADROOM = 4 << 30  # address space a child may add to the parent's

VE, TE, IE, RE = ValueError, TypeError, IndexError, RuntimeError
RAISE = "raise"  # must raise (exc), naming the op and the argument
MEMORY = "memory"  # as RAISE, or a MemoryError: a huge but legal allocation
VALID = "valid"  # must return; with a ref, equal to the ref's result
EITHER = "either"  # may raise (as RAISE) or return (then, with a ref, equal to it)

# Failing cases whose fix belongs to someone else's file, as fnmatch patterns over case
# ids -> reason. Strict: every case a pattern matches must fail.
KNOWN_FAILURES = {}


# ---------------------------------------------------------------------------------------
# Cases and the forked runner


@dataclass
class Case:
    id: str
    call: Callable  # () -> result, run in the child
    expect: str
    ref: Optional[Callable] = None  # () -> the result the call must equal
    op: tuple = ()  # op names; the message must contain one (case-insensitive)
    arg: tuple = ()  # argument names; the message must contain one as a word
    exc: tuple = (VE, TE)
    close: bool = False  # compare with a tolerance (an equivalent argument), not exactly


def _same(actual, expected, close, where="result"):
    """AssertionError unless actual equals expected (NaN equal to NaN)."""
    if isinstance(expected, np.ndarray):
        assert isinstance(actual, np.ndarray), f"{where}: {type(actual).__name__}, expected an ndarray"
        assert actual.dtype == expected.dtype, f"{where}: dtype {actual.dtype}, expected {expected.dtype}"
        assert actual.shape == expected.shape, f"{where}: shape {actual.shape}, expected {expected.shape}"
        if close and actual.dtype.kind == "f":
            rtol = 1e-4 if actual.dtype == np.float32 else 1e-10
            scale = float(np.nanmax(np.abs(expected), initial=0.0)) if expected.size else 0.0
            if not np.isfinite(scale):
                scale = 0.0
            np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=where)
        else:
            np.testing.assert_array_equal(actual, expected, err_msg=where, strict=True)
    elif isinstance(expected, (tuple, list)):
        assert isinstance(actual, (tuple, list)) and len(actual) == len(expected), (
            f"{where}: {type(actual).__name__} of {len(actual) if hasattr(actual, '__len__') else '?'} items, "
            f"expected {len(expected)}"
        )
        for i, (a, e) in enumerate(zip(actual, expected)):
            _same(a, e, close, f"{where}[{i}]")
    elif is_dataclass(expected):
        for f in fields(expected):
            _same(getattr(actual, f.name), getattr(expected, f.name), close, f"{where}.{f.name}")
    elif isinstance(expected, float) and isinstance(actual, float):
        if close:
            assert math.isclose(actual, expected, rel_tol=1e-10) or (math.isnan(actual) and math.isnan(expected)), (
                f"{where}: {actual!r}, expected {expected!r}"
            )
        else:
            assert actual == expected or (math.isnan(actual) and math.isnan(expected)), (
                f"{where}: {actual!r}, expected {expected!r}"
            )
    elif isinstance(expected, (int, str, bool, type(None), np.generic)):
        assert type(actual) is type(expected) and actual == expected, f"{where}: {actual!r}, expected {expected!r}"
    else:
        assert str(actual) == str(expected), f"{where}: {actual}, expected {expected}"


def _short(value):
    if isinstance(value, np.ndarray):
        return f"ndarray{value.shape} {value.dtype}"
    if isinstance(value, tuple):
        return "(" + ", ".join(_short(v) for v in value[:4]) + (", ..." if len(value) > 4 else "") + ")"
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."


def _judge_exception(case, e):
    name = type(e).__name__
    msg = str(e)
    if case.expect == VALID:
        return "fail", "rejected-valid-input", f"{name}: {msg}"
    if isinstance(e, MemoryError):
        if case.expect == MEMORY:
            return "pass", "memory", msg
        return "fail", "memory-error", msg
    if not isinstance(e, case.exc):
        return "fail", "wrong-exception", f"{name} (expected {'/'.join(t.__name__ for t in case.exc)}): {msg}"
    if "incompatible function arguments" in msg:
        return "fail", "pybind11-dump", f"{name}: {msg}"
    if case.op and not any(op.lower() in msg.lower() for op in case.op):
        return "fail", "message-missing-op", f"{name}: {msg} (expected one of {case.op})"
    if case.arg and not any(_has_word(msg, a) for a in case.arg for a in (a,) + ALIASES.get(a, ())):
        return "fail", "message-missing-argument", f"{name}: {msg} (expected one of {case.arg})"
    return "pass", {VE: "value", TE: "type", IE: "index", RE: "runtime"}.get(type(e), name), ""


# Words a message may use for an argument: "the dilated kernel is larger than the padded input"
# names dilation, kernel_size and padding.
ALIASES = {"dilation": ("dilated",), "padding": ("padded",), "kernel_size": ("kernel",)}


def _has_word(text, word):
    start = 0
    while True:
        i = text.find(word, start)
        if i < 0:
            return False
        before = text[i - 1] if i else " "
        after = text[i + len(word)] if i + len(word) < len(text) else " "
        if not (before.isalnum() or before == "_") and not (after.isalnum() or after == "_"):
            return True
        start = i + 1


def _verdict(case):
    """(status, class, detail), computed in the child."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = case.call()
        except BaseException as e:  # noqa: BLE001 - the child judges whatever came
            return _judge_exception(case, e)
        if case.expect in (RAISE, MEMORY):
            return "fail", "silent-acceptance", f"returned {_short(result)}"
        if case.ref is None:
            return "pass", "valid-return", ""
        try:
            expected = case.ref()
        except BaseException as e:  # noqa: BLE001
            return "fail", "harness", f"the reference call raised {type(e).__name__}: {e}"
        try:
            _same(result, expected, case.close)
        except AssertionError as e:
            return "fail", "mismatch", str(e).strip()[:1500]
        notes = "; ".join(sorted({f"{w.category.__name__}: {w.message}" for w in caught}))[:300]
        return "pass", "valid-equal", notes


def _limit_memory():
    with open("/proc/self/statm") as f:
        vm = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = vm + CHILD_HEADROOM
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    if soft == resource.RLIM_INFINITY or soft > limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _child(case, w, ew):
    try:
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(ew, 1)
        os.dup2(ew, 2)
        try:
            import faulthandler

            if sys.__stderr__ is not None:
                faulthandler.enable(file=sys.__stderr__, all_threads=True)
        except Exception:  # noqa: BLE001
            pass
        _limit_memory()
        cnnkit.manual_seed(0)
        np.seterr(all="ignore")
        verdict = _verdict(case)
    except BaseException as e:  # noqa: BLE001
        verdict = ("fail", "harness", f"{type(e).__name__}: {e}")
    payload = "\x1f".join(verdict).encode("utf-8", "replace")
    while payload:
        payload = payload[os.write(w, payload) :]
    os._exit(0)


class _Child:
    """One case running in a forked child: its pid, pipes and what came back."""

    def __init__(self, case):
        r, w = os.pipe()
        er, ew = os.pipe()
        self.t0 = time.monotonic()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.close(r)
            os.close(er)
            _child(case, w, ew)
        os.close(w)
        os.close(ew)
        self.pid, self.fds, self.out, self.err = pid, {r: "out", er: "err"}, b"", b""
        self.deadline = self.t0 + TIMEOUT_S

    def read(self, fd):
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            os.close(fd)
            del self.fds[fd]
        elif self.fds[fd] == "out":
            self.out += chunk
        else:
            self.err = (self.err + chunk)[-4000:]

    def result(self, hung):
        """(status, class, detail, seconds); reaps the child (killing it when hung)."""
        if hung:
            os.kill(self.pid, signal.SIGKILL)
        _, status = os.waitpid(self.pid, 0)  # both pipes closed (or killed): the child is exiting
        for fd in list(self.fds):
            os.close(fd)
        self.fds.clear()
        seconds = time.monotonic() - self.t0
        tail = self.err.decode("utf-8", "replace").strip()[-1500:]
        if hung:
            return "fail", "hang", f"killed after {TIMEOUT_S:.0f} s; stderr: {tail}", seconds
        if os.WIFSIGNALED(status):
            sig = signal.Signals(os.WTERMSIG(status)).name
            return "fail", "crash", f"killed by {sig}; stderr: {tail}", seconds
        code = os.WEXITSTATUS(status)
        if code != 0 or not self.out:
            return "fail", "crash", f"exit status {code}, no verdict; stderr: {tail}", seconds
        verdict, cls, detail = self.out.decode("utf-8", "replace").split("\x1f", 2)
        if verdict == "pass" and seconds > SLOW_S:
            return "fail", "slow", f"took {seconds:.1f} s ({cls})", seconds
        return verdict, cls, detail, seconds


JOBS = max(1, min(int(os.environ.get("CNNKIT_FUZZ_JOBS", "2")), len(os.sched_getaffinity(0))))


def run_cases(cases, jobs=JOBS):
    """[(status, class, detail, seconds)] of the cases, each in its own forked child,
    at most `jobs` at a time."""
    results = [None] * len(cases)
    todo = list(enumerate(cases))[::-1]
    running = {}  # index -> _Child
    try:
        while todo or running:
            while todo and len(running) < jobs:
                i, case = todo.pop()
                running[i] = _Child(case)
            now = time.monotonic()
            for i, child in list(running.items()):
                if not child.fds or now > child.deadline:
                    results[i] = child.result(hung=bool(child.fds))
                    del running[i]
            if not running:
                continue
            owner = {fd: child for child in running.values() for fd in child.fds}
            timeout = max(0.0, min(c.deadline for c in running.values()) - time.monotonic())
            ready, _, _ = select.select(list(owner), [], [], timeout)
            for fd in ready:
                owner[fd].read(fd)
    finally:
        for child in running.values():  # interrupted: leave no child behind
            child.result(hung=True)
    return results


def run_case(case):
    return run_cases([case], jobs=1)[0]


# ---------------------------------------------------------------------------------------
# Hostile values


@dataclass
class M:
    """One mutation of one argument: make(base value) -> hostile value."""

    label: str
    make: Callable
    expect: str
    ref: Optional[Callable] = None  # base value -> the value of the reference call
    exc: tuple = (VE, TE)
    close: bool = False
    arg: Optional[tuple] = None  # names the message may use instead of the argument's
    op: Optional[tuple] = None  # op names the message may use instead of the function's
    # The value is legal on its own and conflicts with another argument (a shape that
    # does not match, a stride for which grad_output no longer fits): the message may
    # name any argument of the call.
    relational: bool = False


def const(value):
    return lambda v: value


SAME = lambda v: v  # noqa: E731 - the clean base value (fresh in every call)


def _reshaped(v, k, mode):
    """v's values in an array of k dims: drop or add leading dims ('lead') or trailing
    dims ('trail')."""
    if k == 0:
        return np.array(v.reshape(-1)[0] if v.size else 1, v.dtype)
    shape = v.shape
    if mode == "lead":
        shape = shape[-k:] if k <= len(shape) else (1,) * (k - len(shape)) + shape
    else:
        shape = shape[:k] if k <= len(shape) else shape + (1,) * (k - len(shape))
    flat = v.reshape(-1) if v.size else np.ones(1, v.dtype)
    return np.resize(flat, shape).astype(v.dtype)


def _with_zero(v, axis):
    shape = list(v.shape)
    shape[axis] = 0
    return np.zeros(shape, v.dtype)


def _noncontig(v):
    big = np.zeros(v.shape[:-1] + (2 * v.shape[-1],), v.dtype)
    big[..., ::2] = v
    return big[..., ::2]


def _transposed(v):
    return np.ascontiguousarray(np.swapaxes(v, 0, 1)).swapaxes(0, 1)


def _negstride(v):
    return np.flip(np.flip(v).copy())


def _misaligned(v):
    a = np.frombuffer(bytearray(v.nbytes + 1), dtype=v.dtype, count=v.size, offset=1).reshape(v.shape)
    a[...] = v
    return a


def _readonly(v):
    c = v.copy()
    c.flags.writeable = False
    return c


def _fill(value):
    def make(v):
        a = np.array(v, copy=True)
        a[...] = value
        return a

    return make


def _alternating_inf(v):
    a = np.array(v, copy=True)
    flat = a.reshape(-1)
    flat[::2] = np.inf
    flat[1::2] = -np.inf
    return a


def _one_nan(v):
    a = np.array(v, copy=True)
    if a.size:
        a.reshape(-1)[0] = np.nan
    return a


def _huge_values(v):
    return (np.sign(v) + (v == 0)) * (np.finfo(v.dtype).max / 4)


_BAD_FLOAT_DTYPES = ("int32", "int64", "uint8", "bool", "complex128", "float16", "object", "structured")


def _as_dtype(name):
    def make(v):
        if name == "structured":
            return np.zeros(v.shape, dtype=[("a", "f8"), ("b", "i4")])
        return v.astype(name)

    return make


def _layouts(v, expect=VALID, writes=False):
    """Valid views of any layout: equal to the clean call."""
    ms = []
    kinds = [("misaligned", _misaligned), ("readonly", _readonly), ("negstride", _negstride)]
    if v.ndim >= 1:
        kinds += [("noncontig", _noncontig)]
    if v.ndim >= 2:
        kinds += [("transposed", _transposed), ("forder", np.asfortranarray)]
    for label, make in kinds:
        e = expect
        if writes:  # an array updated in place must be writeable and C-contiguous
            e = {"misaligned": EITHER, "readonly": RAISE, "negstride": RAISE, "noncontig": RAISE}.get(label, VALID)
            if label == "negstride" and v.size <= 1:
                e = VALID
        ms.append(M(label, make, e, SAME if e != RAISE else None))
    return ms


def _not_an_array(optional, none_exc=(TE,)):
    ms = [] if optional else [M("None", const(None), RAISE, exc=none_exc)]
    return ms + [
        M("True", const(True), RAISE, exc=(TE,)),
        M("str", const("x"), RAISE, exc=(TE,)),
        M("list", lambda v: v.tolist(), RAISE, exc=(TE,)),
        M("pyfloat", const(1.5), RAISE, exc=(TE,)),
        M("pyint", const(1), RAISE, exc=(TE,)),
    ]


def farray(v, ndim_ok=(), zero=None, optional=False, reshape="lead", writes=False, single=False, nan=VALID,
           ndim_exc=(VE,), none_exc=(TE,), dtypes_ok=False):
    """Mutations of a float array operand whose base value is v.

    ndim_ok: other ndims that are valid (values reshaped by `reshape`); zero: axis ->
    expectation of a zero-size dim there (default EITHER); single: the only float
    operand (another float dtype is then valid); writes: updated in place."""
    zero = zero or {}
    ms = _not_an_array(optional, none_exc)
    for k in range(0, 7):
        if k != v.ndim:
            make = lambda x, k=k: _reshaped(x, k, reshape)  # noqa: E731
            ok = k in ndim_ok
            ms.append(M(f"ndim{k}", make, VALID if ok else RAISE, make if ok else None, exc=ndim_exc,
                        relational=True))
    for axis in range(v.ndim):
        e = zero.get(axis, EITHER)
        make = lambda x, axis=axis: _with_zero(x, axis)  # noqa: E731
        ms.append(M(f"zero-axis{axis}", make, e, make if e != RAISE else None, relational=True))
    for name in _BAD_FLOAT_DTYPES:
        e = VALID if dtypes_ok else RAISE
        ms.append(M(f"dtype-{name}", _as_dtype(name), e, _as_dtype(name) if dtypes_ok else None, exc=(TE,)))
    other = np.float32 if v.dtype == np.float64 else np.float64
    mixed = lambda x: x.astype(other)  # noqa: E731
    e = single if isinstance(single, str) else (VALID if single else RAISE)
    ms.append(M("mixed-dtype", mixed, e, mixed if e != RAISE else None, exc=(TE,), relational=True))
    for label, make in (("nan", _fill(np.nan)), ("inf", _alternating_inf), ("one-nan", _one_nan),
                        ("huge-values", _huge_values)):
        ms.append(M(label, make, nan, make))
    ms += _layouts(v, writes=writes)
    return ms


def iarray(v, good_dtypes, bad_dtypes, bad_values, zero=None, ndim_ok=()):
    """Mutations of an integer array operand (targets, switches)."""
    zero = zero or {}
    ms = _not_an_array(False)
    for k in range(0, 7):
        if k != v.ndim:
            make = lambda x, k=k: _reshaped(x, k, "lead")  # noqa: E731
            ok = k in ndim_ok
            ms.append(M(f"ndim{k}", make, VALID if ok else RAISE, make if ok else None, exc=(VE,), relational=True))
    for axis in range(v.ndim):
        e = zero.get(axis, RAISE)
        make = lambda x, axis=axis: _with_zero(x, axis)  # noqa: E731
        ms.append(M(f"zero-axis{axis}", make, e, make if e != RAISE else None, relational=True))
    for name in good_dtypes:
        ms.append(M(f"dtype-{name}", _as_dtype(name), VALID, SAME))
    for name in bad_dtypes:
        ms.append(M(f"dtype-{name}", _as_dtype(name), RAISE, exc=(TE,)))
    for label, value, dtype in bad_values:
        def make(x, value=value, dtype=dtype):
            a = x.astype(dtype or x.dtype)
            a.reshape(-1)[-1] = value
            return a

        ms.append(M(f"value-{label}", make, RAISE, exc=(VE,)))
    ms += _layouts(v)
    return ms


def _int_label(i):
    for base, name in ((2, "2^"),):
        for p in (31, 62, 63, 64):
            if i == base**p:
                return f"{name}{p}"
            if i == base**p - 1:
                return f"{name}{p}-1"
            if i == -(base**p):
                return f"-{name}{p}"
            if i == -(base**p) - 1:
                return f"-{name}{p}-1"
    return str(i)


def _relational(i, lo):
    """An int legal on its own (>= its lower bound, within int64) that may conflict with
    other arguments."""
    return lo <= i < 2**63


HOSTILE_INTS = (-(2**63) - 1, -(2**63), -1, 0, 2**31, 2**62, 2**63 - 1, 2**63, 2**64)


def _int_expect(i, lo, hi, big, big_ref):
    """(expect, ref value) of the int i for an argument valid in [lo, hi]; `big` is the
    expectation of an in-range i >= 2**31 (VALID with big_ref: equivalent to big_ref)."""
    if not -(2**63) <= i < 2**63 or i < lo or (hi is not None and i > hi):
        return RAISE, None
    if i >= 2**31:
        return big, (big_ref if big_ref is not None else (i if big in (VALID, EITHER) else None))
    return VALID, i


def intarg(v, lo=1, hi=None, big=RAISE, big_ref=None, pair=False, none=None, extra=(), big_exc=(VE,),
           type_exc=(TE,)):
    """Mutations of an int (or int-or-pair) argument whose base value is v."""
    ms = [
        M("None", const(None), none or RAISE, SAME if none == VALID else None, exc=type_exc),
        M("True", const(True), RAISE, exc=type_exc),
        M("str", const(str(v)), RAISE, exc=type_exc),
        M("1.5", const(1.5), RAISE, exc=type_exc),
        M("nan", const(math.nan), RAISE, exc=type_exc),
        M("inf", const(math.inf), RAISE, exc=type_exc),
        M("np.int64", lambda x: np.int64(x), VALID, SAME),
    ]
    close = big_ref is not None
    for i in HOSTILE_INTS:
        e, ref = _int_expect(i, lo, hi, big, big_ref)
        exc = (VE, TE) if not -(2**63) <= i < 2**63 else (big_exc if i >= 2**31 else (VE,))
        ms.append(M(_int_label(i), const(i), e, None if ref is None else const(ref), exc=exc,
                    close=close and i >= 2**31, relational=_relational(i, lo)))
    if pair:
        ms += [
            M("list-pair", lambda x: [x, x], VALID, SAME),
            M("np.int64-pair", lambda x: (np.int64(x), np.int64(x)), VALID, SAME),
            M("empty-tuple", const(()), RAISE, exc=(VE,)),
            M("1-tuple", lambda x: (x,), RAISE, exc=(VE,)),
            M("3-tuple", lambda x: (x, x, x), RAISE, exc=(VE,)),
            M("nested-pair", lambda x: ((x, x), (x, x)), RAISE, exc=(TE,)),
            M("float-in-pair", lambda x: (1.5, x), RAISE, exc=(TE,)),
            M("ndarray-pair", lambda x: np.array([x, x]), RAISE, exc=(TE,)),
        ]
        for i in (-1, 2**62, 2**64):
            e, ref = _int_expect(i, lo, hi, big, big_ref)
            exc = (VE, TE) if not -(2**63) <= i < 2**63 else (big_exc if i >= 2**31 else (VE,))
            ms.append(
                M(f"pair-w-{_int_label(i)}", lambda x, i=i: (x, i), e,
                  None if ref is None else (lambda x, r=ref: (x, r)), exc=exc, close=close and i >= 2**31,
                  relational=_relational(i, lo))
            )
    return [m for m in ms if m.label not in {e.label for e in extra}] + list(extra)


def realarg(v, classify, name_ok=True):
    """Mutations of a real argument; classify(float) -> expectation of that value."""
    ms = [
        M("None", const(None), RAISE, exc=(TE,)),
        M("True", const(True), RAISE, exc=(TE,)),
        M("str", const(str(v)), RAISE, exc=(TE,)),
        M("complex", const(complex(v, 0)), RAISE, exc=(TE,)),
        M("list", const([v]), RAISE, exc=(TE,)),
        M("2^1100", const(2**1100), RAISE, exc=(VE, TE)),
        M("np.float64", lambda x: np.float64(x), VALID, SAME),
        M("np.float32", lambda x: np.float32(x), VALID, lambda x: float(np.float32(x))),
    ]
    for label, value in (("nan", math.nan), ("inf", math.inf), ("-inf", -math.inf), ("-1.0", -1.0), ("0.0", 0.0),
                         ("1.0", 1.0), ("int-1", 1), ("int-0", 0), ("1e300", 1e300)):
        e = classify(float(value))
        ms.append(M(label, const(value), e, const(value) if e != RAISE else None, exc=(VE,)))
    return ms


def flagarg(v, flip=VALID):
    """Mutations of a bool switch (ceil_mode, training, ...); flip: the expectation of
    the other value (EITHER where it changes what the other arguments must be)."""
    return [
        M("np.bool_", lambda x: np.bool_(not x), flip, lambda x: not x, relational=True),
        M("int-1", const(1), EITHER, const(True), relational=True),
        M("int-0", const(0), EITHER, const(False), relational=True),
        M("None", const(None), RAISE, exc=(TE,)),
        M("str", const("False"), RAISE, exc=(TE,)),
        M("1.5", const(1.5), RAISE, exc=(TE,)),
        M("list", const([]), RAISE, exc=(TE,)),
    ]


def maskarg(v):
    """Mutations of a backward's output_mask (three bools)."""
    return [
        M("list", lambda x: list(x), VALID, SAME),
        M("np.bool_", const((np.True_, np.False_, np.True_)), VALID, const((True, False, True))),
        M("none-asked", const((False, False, False)), VALID, const((False, False, False))),
        M("None", const(None), RAISE, exc=(TE,)),
        M("str", const("xwb"), RAISE, exc=(TE,)),
        M("2-values", const((True, True)), RAISE, exc=(VE,)),
        M("4-values", const((True,) * 4), RAISE, exc=(VE,)),
        M("ints", const((1, 1, 1)), RAISE, exc=(TE,)),
        M("ndarray", const(np.array([True, True, True])), RAISE, exc=(TE,)),
    ]


def reductionarg(v):
    ms = [M(r, const(r), VALID, const(r)) for r in ("mean", "sum", "none") if r != v]
    return ms + [
        M("MEAN", const("MEAN"), RAISE, exc=(VE,)),
        M("empty-str", const(""), RAISE, exc=(VE,)),
        M("None", const(None), RAISE, exc=(TE,)),
        M("int", const(1), RAISE, exc=(TE,)),
        M("bytes", const(b"mean"), RAISE, exc=(TE,)),
    ]


def shapearg(v, huge=None, zero=None, lengths_ok=()):
    """Mutations of a shape tuple (input_shape, output_size); huge: position ->
    expectation of 2**31 there (default RAISE); zero: position -> that of 0."""
    huge, zero = huge or {}, zero or {}
    ms = [
        M("None", const(None), RAISE, exc=(TE,)),
        M("str", const("x"), RAISE, exc=(TE,)),
        M("int", const(5), RAISE, exc=(TE,)),
        M("ndarray", lambda x: np.array(x), RAISE, exc=(TE,)),
        M("list", lambda x: list(x), VALID, SAME),
        M("np.int64-items", lambda x: tuple(np.int64(i) for i in x), VALID, SAME),
        M("empty", const(()), RAISE, exc=(VE,)),
        M("short", lambda x: tuple(x)[:-1], VALID if len(v) - 1 in lengths_ok else RAISE, exc=(VE,)),
        M("long", lambda x: (1,) + tuple(x), VALID if len(v) + 1 in lengths_ok else RAISE, exc=(VE,)),
        M("floats", lambda x: tuple(float(i) for i in x), RAISE, exc=(TE,)),
    ]
    for pos in range(len(v)):
        for label, value, e, exc in (
            ("-1", -1, RAISE, (VE,)),
            ("0", 0, zero.get(pos, RAISE), (VE,)),
            ("1.5", 1.5, RAISE, (TE,)),
            ("None", None, RAISE, (TE,)),
            ("True", True, RAISE, (TE,)),
            ("2^31", 2**31, huge.get(pos, RAISE), (VE,)),
            ("2^62", 2**62, RAISE, (VE,)),
            ("2^63", 2**63, RAISE, (VE, TE)),
            ("2^64", 2**64, RAISE, (VE, TE)),
        ):
            def make(x, pos=pos, value=value):
                x = list(x)
                x[pos] = value
                return tuple(x)

            ms.append(M(f"item{pos}-{label}", make, e,
                        make if e in (VALID, EITHER) else None, exc=exc, relational=label in ("0", "2^31", "2^62")))
    return ms


# ---------------------------------------------------------------------------------------
# Building the cases of one call from its roles


def _rng(seed=0):
    return np.random.default_rng(seed)


def _normal(shape, seed=0, dtype=np.float64):
    return _rng(seed).standard_normal(shape).astype(dtype)


SECONDARY_DROP = {"dtype-uint8", "dtype-int32", "dtype-structured", "huge-values", "pyint", "True", "one-nan"}
LITE_DROP = SECONDARY_DROP | {"ndim1", "ndim2", "ndim3", "ndim6", "dtype-bool", "dtype-complex128", "list", "pyfloat",
                              "inf", "readonly", "negstride", "transposed"}


INT_LITE_DROP = {"inf", "str", "-2^63", "2^63", "np.int64-pair", "empty-tuple", "1-tuple", "nested-pair",
                 "ndarray-pair", "pair-w--1", "pair-w-2^62"}


def cases_for(group, op, call, base, roles, operands=(), variants=(), lite=False, lite_ints=None):
    """Cases that mutate one argument of the call `call(kwargs)` at a time.

    base() -> fresh kwargs of a valid call; roles: {arg: role(base value) -> [M]};
    op: the op name (or names) a message must contain. Array operands after the first
    get a shorter table (their checks share the first's code); lite: every array
    operand gets a still shorter one (an op whose operands another op's checks cover);
    lite_ints (default: lite or a backward op): a shorter table for int arguments."""
    del operands  # the call's float operands, for the reader: a relational message may name any argument
    kw0 = base()
    out = []
    arrays_seen = 0
    if lite_ints is None:
        lite_ints = lite or group.endswith("_backward")
    for arg, role in roles.items():
        secondary = isinstance(kw0[arg], np.ndarray) and arrays_seen > 0
        arrays_seen += isinstance(kw0[arg], np.ndarray)
        for m in role(kw0[arg]):
            if isinstance(kw0[arg], np.ndarray) and m.label in (LITE_DROP if lite else
                                                                 SECONDARY_DROP if secondary else ()):
                continue
            if lite_ints and not isinstance(kw0[arg], np.ndarray) and m.label in INT_LITE_DROP:
                continue
            def run(arg=arg, m=m):
                kw = base()
                kw[arg] = m.make(kw[arg])
                return call(kw)

            ref = None
            if m.ref is not None and m.expect in (VALID, EITHER):
                def ref(arg=arg, m=m):
                    kw = base()
                    kw[arg] = m.ref(kw[arg])
                    return call(kw)

            names = m.arg if m.arg is not None else (arg,)
            if m.relational:
                names = tuple(dict.fromkeys(names + tuple(kw0)))
            ops = m.op if m.op is not None else (op if isinstance(op, tuple) else (op,))
            out.append(Case(f"{group}:{arg}={m.label}", run, m.expect, ref, ops, names, m.exc, m.close))
    out += list(variants)
    return out


def variant(group, op, label, call, expect, ref=None, arg=(), exc=(VE, TE), close=False):
    return Case(f"{group}:{label}", call, expect, ref, op if isinstance(op, tuple) else (op,), arg, exc, close)


# ---------------------------------------------------------------------------------------
# cnnkit.functional

DT = np.float64
CASES = {}


def add(group, cases):
    CASES.setdefault(group, []).extend(cases)


def _zero_variants(group, op, build, call, dims, expects, refimpl=None):
    """Consistent zero-size inputs: build(**{dim: 0}) for each dim; expects: dim ->
    expectation (N: VALID). refimpl(kw): the naive reference, compared when it
    computes the case."""
    out = []
    for d in dims:
        def run(d=d):
            return call(build(**{d: 0}))

        ref = run
        if refimpl is not None:
            def ref(d=d, run=run):
                try:
                    return refimpl(build(**{d: 0}))
                except Exception:  # noqa: BLE001 - the naive reference cannot take it: compare with a rerun
                    return run()

        out.append(variant(group, op, f"consistent-{d}=0", run, expects.get(d, EITHER), ref, close=refimpl is not None))
    return out


def _named(role, *names):
    """role, its messages allowed to use any of names for the argument."""
    def named(v):
        out = []
        for m in role(v):
            m.arg = tuple(names)
            out.append(m)
        return out

    return named


def _fa(**kw):
    return lambda v: farray(v, **kw)


def _ia(**kw):
    return lambda v: iarray(v, **kw)


def _int(**kw):
    return lambda v: intarg(v, **kw)


def _real(classify):
    return lambda v: realarg(v, classify)


def _shape(**kw):
    return lambda v: shapearg(v, **kw)


ANY = lambda f: VALID  # noqa: E731 - every real value is valid
EITHER_NONFINITE = lambda f: VALID if math.isfinite(f) else EITHER  # noqa: E731


def _conv2d_base(N=2, C=3, H=5, W=5, O=4, dtype=DT):
    return dict(input=_normal((N, C, H, W), 1, dtype), weight=_normal((O, C, 3, 3), 2, dtype),
                bias=_normal((O,), 3, dtype), stride=1, padding=0, dilation=1, groups=1)


def _conv_padding_role(backward):
    def role(v):
        extra = [
            M("valid", const("valid"), VALID, const(0)),
            M("same", const("same"), RAISE if backward else VALID, None if backward else const(1), exc=(VE,),
              relational=True),
            M("SAME", const("SAME"), RAISE, exc=(VE,)),
            M("full", const("full"), RAISE, exc=(VE,)),
            M("str", const("1"), RAISE, exc=(VE, TE)),
        ]
        return intarg(v, lo=0, pair=True, extra=extra)

    return role


def _build_conv2d():
    for name, fn, bias in (("conv2d", F.conv2d, True), ("conv2d_algorithm", F.conv2d_algorithm, False)):
        def base(fn=fn, bias=bias, **dims):
            kw = _conv2d_base(**dims)
            if not bias:
                del kw["bias"]
            return kw

        call = lambda kw, fn=fn: fn(**kw)  # noqa: E731
        roles = dict(
            input=_fa(zero={0: VALID, 1: RAISE, 2: RAISE, 3: RAISE}),
            weight=_fa(zero={0: RAISE if bias else VALID, 1: RAISE, 2: RAISE, 3: RAISE}),
            stride=_int(lo=1, pair=True, big=VALID, big_ref=5),
            padding=_conv_padding_role(False),
            dilation=_int(lo=1, pair=True),
            groups=_int(lo=1),
        )
        if bias:
            roles["bias"] = _fa(optional=True, zero={0: RAISE})
        refimpl = None
        if bias:
            refimpl = lambda kw: reference.conv2d(kw["input"], kw["weight"], kw["bias"])  # noqa: E731
        variants = _zero_variants(name, name, base, call, ("N", "C", "O", "H"),
                                  {"N": VALID, "C": VALID, "O": VALID}, refimpl)
        add(f"F.{name}", cases_for(name, name, call, base, roles, ("input", "weight", "bias"), variants,
                                   lite=not bias))

    def bbase(N=2, C=3, H=5, W=5, O=4):
        kw = _conv2d_base(N, C, H, W, O)
        del kw["bias"]
        kw["grad_output"] = _normal((N, O, H - 2, W - 2), 4)
        kw["output_mask"] = (True, True, True)
        return kw

    call = lambda kw: F.conv2d_backward(**kw)  # noqa: E731
    roles = dict(
        output_mask=maskarg,
        grad_output=_fa(zero={0: RAISE, 1: RAISE, 2: RAISE, 3: RAISE}),
        input=_fa(zero={0: RAISE, 1: RAISE, 2: RAISE, 3: RAISE}),
        weight=_fa(zero={0: RAISE, 1: RAISE, 2: RAISE, 3: RAISE}),
        stride=_int(lo=1, pair=True),
        padding=_conv_padding_role(True),
        dilation=_int(lo=1, pair=True),
        groups=_int(lo=1),
    )
    variants = _zero_variants("conv2d_backward", "conv2d_backward", bbase, call, ("N", "C", "O"),
                              {"N": VALID, "C": VALID, "O": VALID})
    add("F.conv2d_backward", cases_for("conv2d_backward", "conv2d_backward", call, bbase, roles,
                                       ("grad_output", "input", "weight"), variants))


def _convt_base(N=2, C=3, H=4, W=4, O=2, dtype=DT):
    return dict(input=_normal((N, C, H, W), 5, dtype), weight=_normal((C, O, 3, 3), 6, dtype),
                bias=_normal((O,), 7, dtype), stride=1, padding=0, output_padding=0, groups=1, dilation=1)


def _build_conv_transpose2d():
    for name, fn, bias in (("conv_transpose2d", F.conv_transpose2d, True),
                           ("conv_transpose2d_algorithm", F.conv_transpose2d_algorithm, False)):
        def base(fn=fn, bias=bias, **dims):
            kw = _convt_base(**dims)
            if not bias:
                del kw["bias"]
            return kw

        call = lambda kw, fn=fn: fn(**kw)  # noqa: E731
        roles = dict(
            input=_fa(zero={0: VALID, 1: RAISE}),
            weight=_fa(zero={0: RAISE, 1: RAISE if bias else VALID, 2: RAISE, 3: RAISE}),
            stride=_int(lo=1, pair=True),
            padding=_int(lo=0, pair=True),
            output_padding=_int(lo=0, hi=0, pair=True),
            groups=_int(lo=1),
            dilation=_int(lo=1, pair=True),
        )
        if bias:
            roles["bias"] = _fa(optional=True, zero={0: RAISE})
        refimpl = None
        if bias:
            refimpl = lambda kw: reference.conv_transpose2d(kw["input"], kw["weight"], kw["bias"])  # noqa: E731
        variants = _zero_variants(name, name, base, call, ("N", "C", "O", "H"),
                                  {"N": VALID, "C": VALID, "O": VALID}, refimpl)
        add(f"F.{name}", cases_for(name, name, call, base, roles, ("input", "weight", "bias"), variants,
                                   lite=not bias))

    def bbase(N=2, C=3, H=4, W=4, O=2):
        kw = _convt_base(N, C, H, W, O)
        del kw["bias"]
        kw["grad_output"] = _normal((N, O, H + 2, W + 2), 8)
        kw["output_mask"] = (True, True, True)
        return kw

    call = lambda kw: F.conv_transpose2d_backward(**kw)  # noqa: E731
    roles = dict(
        output_mask=maskarg,
        grad_output=_fa(zero={0: RAISE, 1: RAISE, 2: RAISE, 3: RAISE}),
        input=_fa(zero={0: RAISE, 1: RAISE, 2: RAISE, 3: RAISE}),
        weight=_fa(zero={0: RAISE, 1: RAISE, 2: RAISE, 3: RAISE}),
        stride=_int(lo=1, pair=True),
        padding=_int(lo=0, pair=True),
        output_padding=_int(lo=0, hi=0, pair=True),
        groups=_int(lo=1),
        dilation=_int(lo=1, pair=True),
    )
    variants = _zero_variants("conv_transpose2d_backward", "conv_transpose2d_backward", bbase, call,
                              ("N", "C", "O"), {"N": VALID, "C": VALID, "O": VALID})
    add("F.conv_transpose2d_backward", cases_for("conv_transpose2d_backward", "conv_transpose2d_backward", call,
                                                 bbase, roles, ("grad_output", "input", "weight"), variants))


def _build_linear():
    def base(N=2, I=3, O=4):
        return dict(input=_normal((N, I), 9), weight=_normal((O, I), 10), bias=_normal((O,), 11))

    call = lambda kw: F.linear(**kw)  # noqa: E731
    roles = dict(
        input=_fa(ndim_ok=(1, 3, 4, 5, 6), zero={0: VALID, 1: RAISE}),
        weight=_fa(zero={0: RAISE, 1: RAISE}),
        bias=_fa(optional=True, zero={0: RAISE}),
    )
    refimpl = lambda kw: reference.linear(kw["input"], kw["weight"], kw["bias"])  # noqa: E731
    variants = _zero_variants("linear", "linear", base, call, ("N", "I", "O"), {"N": VALID, "I": VALID, "O": VALID},
                              refimpl)
    add("F.linear", cases_for("linear", "linear", call, base, roles, ("input", "weight", "bias"), variants))

    def bbase(N=2, I=3, O=4):
        return dict(grad_output=_normal((N, O), 12), input=_normal((N, I), 9), weight=_normal((O, I), 10))

    call = lambda kw: F.linear_backward(**kw)  # noqa: E731
    roles = dict(
        grad_output=_fa(zero={0: RAISE, 1: RAISE}),
        input=_fa(zero={0: RAISE, 1: RAISE}),
        weight=_fa(zero={0: RAISE, 1: RAISE}),
    )
    variants = _zero_variants("linear_backward", "linear_backward", bbase, call, ("N", "I", "O"),
                              {"N": VALID, "I": VALID, "O": VALID})
    add("F.linear_backward", cases_for("linear_backward", "linear_backward", call, bbase, roles,
                                       ("grad_output", "input", "weight"), variants))


def _rebase(ms, value):
    """Mutations of a base value other than the call's (a stride whose base is None)."""
    return [M(m.label, lambda v, m=m: m.make(value), m.expect, None if m.ref is None else (lambda v, m=m: m.ref(value)),
              m.exc, m.close, m.arg, m.op, m.relational) for m in ms]


def _pool_stride_role(big):
    def role(v):
        extra = [M("None", const(None), VALID, SAME), M("empty-tuple", const(()), VALID, const(None))]
        ms = intarg(2, lo=1, pair=True, big=big, big_ref=5 if big == VALID else None)
        return _rebase([m for m in ms if m.label not in ("None", "empty-tuple")], 2) + extra

    return role


def _switch_role(plane, zero=None):
    return _ia(good_dtypes=(), bad_dtypes=("int32", "uint64", "int8", "float64", "bool", "complex128", "object"),
               bad_values=(("-1", -1, None), ("plane", plane, None), ("2^62", 2**62, None),
                           ("int64-min", -(2**63), None)), zero=zero)


def _build_pools():
    # max_pool2d
    def base(N=2, C=3, H=5, W=5):
        return dict(input=_normal((N, C, H, W), 13), kernel_size=2, stride=None, padding=0, dilation=1,
                    ceil_mode=False, return_indices=True)

    call = lambda kw: F.max_pool2d(**kw)  # noqa: E731
    roles = dict(
        input=_fa(zero={0: VALID}, single=True),
        kernel_size=_int(lo=1, pair=True),
        stride=_pool_stride_role(VALID),
        padding=_int(lo=0, hi=1, pair=True),
        dilation=_int(lo=1, pair=True),
        ceil_mode=flagarg,
        return_indices=flagarg,
    )
    variants = _zero_variants("max_pool2d", "max_pool2d", base, call, ("N", "C", "H"), {"N": VALID}, None)
    add("F.max_pool2d", cases_for("max_pool2d", "max_pool2d", call, base, roles, ("input",), variants))

    def bbase(N=2, C=3, H=5, W=5):
        x = _normal((N, C, H, W), 13)
        y, sw = F.max_pool2d(x, 2, return_indices=True)
        return dict(grad_output=_normal(y.shape, 14), switches=sw, input_shape=tuple(x.shape))

    call = lambda kw: F.max_pool2d_backward(**kw)  # noqa: E731
    roles = dict(
        grad_output=_fa(zero={0: RAISE, 1: RAISE, 2: RAISE, 3: RAISE}, single=True),
        switches=_switch_role(25),
        input_shape=_shape(huge={2: MEMORY, 3: MEMORY}),
    )
    variants = _zero_variants("max_pool2d_backward", "max_pool2d_backward", bbase, call, ("N", "C"),
                              {"N": VALID})
    add("F.max_pool2d_backward", cases_for("max_pool2d_backward", "max_pool2d_backward", call, bbase, roles,
                                           ("grad_output",), variants))

    # max_unpool2d: pooled from a 4x4 plane, unpooled to the default 4x4
    def ubase(N=2, C=3):
        x = _normal((N, C, 4, 4), 15)
        y, sw = F.max_pool2d(x, 2, return_indices=True)
        return dict(input=y, switches=sw, kernel_size=2, stride=None, padding=0, output_size=None)

    def output_size_role(v):
        return [
            M("hw", const((4, 4)), VALID, SAME),
            M("nchw", const((2, 3, 4, 4)), VALID, SAME),
            M("list", const([4, 4]), VALID, SAME),
            M("np.int64-items", const((np.int64(4), np.int64(4))), VALID, SAME),
            M("str", const("x"), RAISE, exc=(TE,)),
            M("int", const(4), RAISE, exc=(TE,)),
            M("3-values", const((3, 4, 4)), RAISE, exc=(VE,)),
            M("1-value", const((4,)), RAISE, exc=(VE,)),
            M("floats", const((4.0, 4.0)), RAISE, exc=(TE,)),
            M("too-small", const((3, 3)), RAISE, exc=(VE,), relational=True),
            M("zero", const((0, 4)), RAISE, exc=(VE,)),
            M("-1", const((-1, 4)), RAISE, exc=(VE,)),
            M("2^31xW", const((2**31, 4)), MEMORY, exc=(VE,)),
            M("2^31x2^31", const((2**31, 2**31)), RAISE, exc=(VE,)),
            M("2^62", const((2**62, 4)), RAISE, exc=(VE,)),
            M("2^64", const((2**64, 4)), RAISE, exc=(VE, TE)),
            M("wrong-nc", const((2, 5, 4, 4)), RAISE, exc=(VE,)),
        ]

    call = lambda kw: F.max_unpool2d(**kw)  # noqa: E731
    roles = dict(
        input=_fa(zero={0: RAISE, 1: RAISE, 2: RAISE, 3: RAISE}, single=True),
        switches=_switch_role(16),
        kernel_size=_int(lo=2, hi=2, pair=True),
        stride=_pool_stride_role(RAISE),
        padding=_int(lo=0, hi=0, pair=True),
        output_size=output_size_role,
    )
    variants = _zero_variants("max_unpool2d", "max_unpool2d", ubase, call, ("N", "C"), {"N": VALID})
    add("F.max_unpool2d", cases_for("max_unpool2d", "max_unpool2d", call, ubase, roles, ("input",), variants))

    def ubbase(N=2, C=3):
        x = _normal((N, C, 4, 4), 15)
        _, sw = F.max_pool2d(x, 2, return_indices=True)
        return dict(grad_output=_normal((N, C, 4, 4), 16), switches=sw)

    call = lambda kw: F.max_unpool2d_backward(**kw)  # noqa: E731
    roles = dict(grad_output=_fa(zero={0: RAISE, 1: RAISE, 2: RAISE, 3: RAISE}, single=True),
                 switches=_switch_role(16, zero={2: EITHER, 3: EITHER}))  # an empty pooled plane
    variants = _zero_variants("max_unpool2d_backward", "max_unpool2d_backward", ubbase, call, ("N", "C"),
                              {"N": VALID})
    add("F.max_unpool2d_backward", cases_for("max_unpool2d_backward", "max_unpool2d_backward", call, ubbase, roles,
                                             ("grad_output",), variants))

    # avg_pool2d
    def abase(N=2, C=3, H=5, W=5):
        return dict(input=_normal((N, C, H, W), 17), kernel_size=2, stride=None, padding=0, ceil_mode=False,
                    count_include_pad=True)

    call = lambda kw: F.avg_pool2d(**kw)  # noqa: E731
    roles = dict(
        input=_fa(zero={0: VALID}, single=True),
        kernel_size=_int(lo=1, pair=True),
        stride=_pool_stride_role(VALID),
        padding=_int(lo=0, hi=1, pair=True),
        ceil_mode=flagarg,
        count_include_pad=flagarg,
    )
    refimpl = lambda kw: reference.avg_pool2d(kw["input"], 2)  # noqa: E731
    variants = _zero_variants("avg_pool2d", "avg_pool2d", abase, call, ("N", "C", "H"), {"N": VALID}, refimpl)
    add("F.avg_pool2d", cases_for("avg_pool2d", "avg_pool2d", call, abase, roles, ("input",), variants))

    def abbase(N=2, C=3, H=5, W=5):
        return dict(grad_output=_normal((N, C, H // 2, W // 2), 18), input_shape=(N, C, H, W), kernel_size=2,
                    stride=None, padding=0, ceil_mode=False, count_include_pad=True)

    call = lambda kw: F.avg_pool2d_backward(**kw)  # noqa: E731
    roles = dict(
        grad_output=_fa(zero={0: RAISE, 1: RAISE, 2: RAISE, 3: RAISE}, single=True),
        input_shape=_shape(),
        kernel_size=_int(lo=1, hi=2, pair=True),
        stride=_pool_stride_role(RAISE),
        padding=_int(lo=0, hi=0, pair=True),
        ceil_mode=lambda v: flagarg(v, EITHER),
        count_include_pad=flagarg,
    )
    slow = [
        variant("avg_pool2d_backward", "avg_pool2d_backward", f"input_shape=2^{p}-planes",
                lambda p=p: F.avg_pool2d_backward(np.ones((2, 3, 4, 4)), (2, 3, 2**p, 2**p), 2), RAISE,
                arg=("input_shape", "grad_output"))
        for p in (32, 40)
    ]
    variants = _zero_variants("avg_pool2d_backward", "avg_pool2d_backward", abbase, call, ("N", "C"),
                              {"N": VALID}) + slow
    add("F.avg_pool2d_backward", cases_for("avg_pool2d_backward", "avg_pool2d_backward", call, abbase, roles,
                                           ("grad_output",), variants))

    # lp_pool2d
    norm_ok = lambda f: RAISE if (f == 0 or math.isnan(f)) else (VALID if math.isfinite(f) else EITHER)  # noqa
    def lbase(N=2, C=3, H=5, W=5):
        return dict(input=np.abs(_normal((N, C, H, W), 19)) + 0.5, norm_type=2.0, kernel_size=2, stride=None,
                    ceil_mode=False)

    call = lambda kw: F.lp_pool2d(**kw)  # noqa: E731
    roles = dict(
        input=_fa(zero={0: VALID}, single=True),
        norm_type=_real(norm_ok),
        kernel_size=_int(lo=1, pair=True),
        stride=_pool_stride_role(VALID),
        ceil_mode=flagarg,
    )
    variants = _zero_variants("lp_pool2d", "lp_pool2d", lbase, call, ("N", "C", "H"), {"N": VALID})
    add("F.lp_pool2d", cases_for("lp_pool2d", "lp_pool2d", call, lbase, roles, ("input",), variants))

    def lbbase(N=2, C=3, H=5, W=5):
        kw = lbase(N, C, H, W)
        kw["grad_output"] = _normal((N, C, H // 2, W // 2), 20)
        return kw

    call = lambda kw: F.lp_pool2d_backward(**kw)  # noqa: E731
    roles = dict(
        grad_output=_fa(zero={0: RAISE, 1: RAISE, 2: RAISE, 3: RAISE}),
        input=_fa(zero={0: RAISE, 1: RAISE, 2: RAISE, 3: RAISE}),
        norm_type=_real(norm_ok),
        kernel_size=_int(lo=2, hi=2, pair=True),
        stride=_pool_stride_role(RAISE),
        ceil_mode=lambda v: flagarg(v, EITHER),
    )
    variants = _zero_variants("lp_pool2d_backward", "lp_pool2d_backward", lbbase, call, ("N", "C"), {"N": VALID})
    add("F.lp_pool2d_backward", cases_for("lp_pool2d_backward", "lp_pool2d_backward", call, lbbase, roles,
                                          ("grad_output", "input"), variants))


def _build_elementwise():
    for name, ref_fn in (("relu", reference.relu), ("sigmoid", reference.sigmoid), ("tanh", reference.tanh)):
        fn = getattr(F, name)

        def base(N=2, C=3, H=4):
            return dict(input=_normal((N, C, H), 21))

        call = lambda kw, fn=fn: fn(**kw)  # noqa: E731
        roles = dict(input=_fa(ndim_ok=(0, 1, 2, 4, 5, 6), zero={0: VALID, 1: VALID, 2: VALID}, single=True))
        variants = _zero_variants(name, name, base, call, ("N",), {"N": VALID},
                                  lambda kw, r=ref_fn: r(kw["input"]))
        add(f"F.{name}", cases_for(name, name, call, base, roles, ("input",), variants, lite=name != "relu"))

        bname = f"{name}_backward"
        bfn = getattr(F, bname)
        other = "input" if name == "relu" else "output"

        def bbase(N=2, C=3, H=4, other=other, fn=fn):
            x = _normal((N, C, H), 21)
            return {"grad_output": _normal((N, C, H), 22), other: x if other == "input" else fn(x)}

        call = lambda kw, bfn=bfn: bfn(**kw)  # noqa: E731
        zero = {0: RAISE, 1: RAISE, 2: RAISE}
        roles = {"grad_output": _fa(zero=zero), other: _fa(zero=zero)}
        variants = _zero_variants(bname, bname, bbase, call, ("N",), {"N": VALID})
        add(f"F.{bname}", cases_for(bname, bname, call, bbase, roles, ("grad_output", other), variants,
                                    lite=name != "relu"))


def _dim_role(ndim):
    def role(v):
        return intarg(v, lo=-ndim, hi=ndim - 1, big=RAISE, big_exc=(IE,),
                      extra=[M(f"{i}", const(i), RAISE, exc=(IE,)) for i in (ndim, -ndim - 1)]
                      + [M("-2^63", const(-(2**63)), RAISE, exc=(IE, VE))])

    return role


def _build_softmax():
    for name in ("softmax", "log_softmax"):
        fn = getattr(F, name)
        ref_fn = getattr(reference, name)

        def base(N=2, C=3, H=4):
            return dict(input=_normal((N, C, H), 23), dim=1)

        call = lambda kw, fn=fn: fn(**kw)  # noqa: E731
        roles = dict(input=_fa(ndim_ok=(2, 4, 5, 6), reshape="trail", zero={0: VALID, 1: VALID, 2: VALID},
                               single=True, ndim_exc=(VE, IE)),
                     dim=_dim_role(3))
        variants = _zero_variants(name, name, base, call, ("N", "C"), {"N": VALID, "C": VALID},
                                  lambda kw, r=ref_fn: r(kw["input"], 1))
        add(f"F.{name}", cases_for(name, name, call, base, roles, ("input",), variants, lite=name != "softmax"))

        bname = f"{name}_backward"
        bfn = getattr(F, bname)

        def bbase(N=2, C=3, H=4, fn=fn):
            return dict(grad_output=_normal((N, C, H), 24), output=fn(_normal((N, C, H), 23), 1), dim=1)

        call = lambda kw, bfn=bfn: bfn(**kw)  # noqa: E731
        zero = {0: RAISE, 1: RAISE, 2: RAISE}
        roles = dict(grad_output=_fa(zero=zero), output=_fa(zero=zero), dim=_dim_role(3))
        variants = _zero_variants(bname, bname, bbase, call, ("N", "C"), {"N": VALID, "C": VALID})
        add(f"F.{bname}", cases_for(bname, bname, call, bbase, roles, ("grad_output", "output"), variants,
                                    lite=name != "softmax"))


def _build_losses():
    for name in ("cross_entropy", "cross_entropy_backward"):
        fn = getattr(F, name)

        def base(N=3, C=4):
            return dict(input=_normal((N, C), 25), target=np.arange(N, dtype=np.int64) % C, reduction="mean")

        call = lambda kw, fn=fn: fn(**kw)  # noqa: E731
        roles = dict(
            input=_fa(zero={0: RAISE, 1: RAISE}, single=True),
            target=_ia(good_dtypes=("int8", "uint8", "int16", "int32", "uint32", "uint64"),
                       bad_dtypes=("float64", "float32", "bool", "complex128", "object"),
                       bad_values=(("-1", -1, None), ("C", 4, None), ("2^62", 2**62, None),
                                   ("int64-min", -(2**63), None), ("uint64-max", 2**64 - 1, "uint64"))),
            reduction=reductionarg,
        )
        refimpl = None
        if name == "cross_entropy":
            refimpl = lambda kw: np.asarray(reference.cross_entropy(kw["input"], kw["target"]))  # noqa: E731
        variants = _zero_variants(name, name, base, call, ("N", "C"), {"N": VALID}, refimpl)
        add(f"F.{name}", cases_for(name, name, call, base, roles, ("input",), variants,
                                   lite=name.endswith("_backward")))

    for name in ("mse_loss", "mse_loss_backward"):
        fn = getattr(F, name)

        def base(N=3, C=4):
            return dict(input=_normal((N, C), 26), target=_normal((N, C), 27), reduction="sum")

        call = lambda kw, fn=fn: fn(**kw)  # noqa: E731
        zero = {0: RAISE, 1: RAISE}
        roles = dict(input=_fa(zero=zero), target=_fa(zero=zero), reduction=reductionarg)
        variants = _zero_variants(name, name, base, call, ("N",), {"N": VALID})
        add(f"F.{name}", cases_for(name, name, call, base, roles, ("input", "target"), variants,
                                   lite=name.endswith("_backward")))


def _build_dropout():
    p_ok = lambda f: VALID if 0 <= f < 1 else RAISE  # noqa: E731

    def base(N=2, C=3):
        return dict(input=_normal((N, C, 4), 28), p=0.5, training=True, seed=7)

    def seed_role(v):
        ms = [
            M("None", const(None), VALID),  # a seed from cnnkit's stream
            M("True", const(True), RAISE, exc=(TE,)),
            M("str", const("7"), RAISE, exc=(TE,)),
            M("1.5", const(1.5), RAISE, exc=(TE,)),
            M("nan", const(math.nan), RAISE, exc=(TE,)),
            M("np.int64", lambda x: np.int64(x), VALID, SAME),
            M("np.uint64-max", const(np.uint64(2**64 - 1)), VALID, const(2**64 - 1)),
        ]
        for i in (-(2**63) - 1, -1, 0, 2**31, 2**63 - 1, 2**63, 2**64 - 1, 2**64):
            ok = 0 <= i < 2**64
            ms.append(M(_int_label(i), const(i), VALID if ok else RAISE, const(i) if ok else None, exc=(VE, TE)))
        return ms

    call = lambda kw: F.dropout(**kw)  # noqa: E731
    roles = dict(input=_fa(ndim_ok=(0, 1, 2, 4, 5, 6), zero={0: VALID, 1: VALID, 2: VALID}, single=True),
                 p=_real(p_ok), training=flagarg, seed=seed_role)
    variants = _zero_variants("dropout", "dropout", base, call, ("N",), {"N": VALID})
    add("F.dropout", cases_for("dropout", "dropout", call, base, roles, ("input",), variants))

    def bbase(N=2, C=3):
        _, mask = F.dropout(_normal((N, C, 4), 28), 0.5, seed=7)
        return dict(grad_output=_normal((N, C, 4), 29), mask=mask, p=0.5)

    def mask_role(v):
        ms = [M(m.label, m.make, m.expect, m.ref, m.exc) for m in
              iarray(v, good_dtypes=(), bad_dtypes=("uint8", "int64", "float64", "float32", "object"),
                     bad_values=())]
        return [M("None", const(None), VALID, const(None))] + [m for m in ms if m.label != "None"]

    call = lambda kw: F.dropout_backward(**kw)  # noqa: E731
    roles = dict(grad_output=_fa(zero={0: RAISE, 1: RAISE, 2: RAISE}, single=True), mask=mask_role, p=_real(p_ok))
    variants = _zero_variants("dropout_backward", "dropout_backward", bbase, call, ("N",), {"N": VALID})
    add("F.dropout_backward", cases_for("dropout_backward", "dropout_backward", call, bbase, roles,
                                        ("grad_output",), variants))


def _build_batch_norm():
    eps_ok = lambda f: RAISE if (f < 0 or math.isnan(f)) else (VALID if math.isfinite(f) else EITHER)  # noqa

    for training in (True, False):
        group = "batch_norm" if training else "batch_norm-eval"

        def base(N=2, C=3, H=4, training=training):
            return dict(input=_normal((N, C, H, H), 30), gamma=_normal((C,), 31), beta=_normal((C,), 32),
                        running_mean=_normal((C,), 33), running_var=np.abs(_normal((C,), 34)) + 0.5,
                        training=training, momentum=0.1, eps=1e-5)

        def call(kw):
            y, saved = F.batch_norm(**kw)
            return y, saved, kw["running_mean"], kw["running_var"]

        stat_zero = {0: RAISE}
        roles = dict(
            input=_fa(ndim_ok=(2, 3, 5, 6), reshape="trail", zero={0: VALID if not training else EITHER,
                                                                   1: RAISE, 2: VALID if not training else EITHER,
                                                                   3: VALID if not training else EITHER}),
            gamma=_fa(optional=True, zero=stat_zero),
            beta=_fa(optional=True, zero=stat_zero),
            running_mean=_fa(optional=training, zero=stat_zero, writes=training, none_exc=(TE, VE)),
            running_var=_fa(optional=training, zero=stat_zero, writes=training, none_exc=(TE, VE)),
            training=flagarg,
            momentum=_real(ANY),
            eps=_real(eps_ok),
        )
        variants = _zero_variants(group, "batch_norm", base, call, ("N", "C"),
                                  {"N": EITHER if training else VALID, "C": VALID})
        if not training:  # what eval mode reads differently: the running statistics
            roles = {k: roles[k] for k in ("input", "running_mean", "running_var", "eps")}
        add(f"F.{group}", cases_for(group, "batch_norm", call, base, roles,
                                    ("input", "gamma", "beta", "running_mean", "running_var"), variants,
                                    lite=not training))

    def bbase(N=2, C=3, H=4):
        x = _normal((N, C, H, H), 30)
        _, saved = F.batch_norm(x, _normal((C,), 31), _normal((C,), 32))
        return dict(grad_output=_normal((N, C, H, H), 35), saved=saved)

    def saved_role(v):
        ms = [
            M("None", const(None), RAISE, exc=(TE,)),
            M("tuple", lambda s: tuple(s), RAISE, exc=(TE,)),
            M("str", const("saved"), RAISE, exc=(TE,)),
        ]
        # saved is opaque; a few fields a user could break by building one by hand
        for field, label, make, e, exc in (
            ("input", "None", lambda a: None, RAISE, (TE,)),
            ("input", "float32", lambda a: a.astype(np.float32), RAISE, (TE,)),
            ("input", "other-shape", lambda a: a[:1], RAISE, (VE,)),
            ("input", "misaligned", _misaligned, VALID, ()),
            ("input", "noncontig", _noncontig, VALID, ()),
            ("gamma", "short", lambda a: a[:2], RAISE, (VE,)),
            ("mean", "short", lambda a: a[:2], RAISE, (VE,)),
            ("invstd", "str", lambda a: "x", RAISE, (TE,)),
        ):
            ms.append(M(f"{field}-{label}", lambda s, f=field, mk=make: s._replace(**{f: mk(getattr(s, f))}), e,
                        SAME if e == VALID else None, exc=exc, arg=("saved", field), relational=True))
        return ms

    call = lambda kw: F.batch_norm_backward(**kw)  # noqa: E731
    roles = dict(grad_output=_fa(zero={0: RAISE, 1: RAISE, 2: RAISE, 3: RAISE}), saved=saved_role)
    add("F.batch_norm_backward", cases_for("batch_norm_backward", "batch_norm_backward", call, bbase, roles,
                                           ("grad_output", "saved", "input"), []))


def _build_lrn():
    real_ok = EITHER_NONFINITE

    def base(N=2, C=3, H=4):
        return dict(input=_normal((N, C, H, H), 36), size=2, alpha=1e-4, beta=0.75, k=1.0)

    call = lambda kw: F.local_response_norm(**kw)  # noqa: E731
    roles = dict(
        input=_fa(ndim_ok=(3, 5, 6), reshape="trail", zero={0: VALID, 1: VALID, 2: VALID, 3: VALID}, single=True),
        size=_int(lo=1, big=VALID),
        alpha=_real(real_ok),
        beta=_real(real_ok),
        k=_real(real_ok),
    )
    refimpl = lambda kw: reference.local_response_norm(kw["input"], 2)  # noqa: E731
    variants = _zero_variants("local_response_norm", "local_response_norm", base, call, ("N", "C", "H"),
                              {"N": VALID, "C": VALID, "H": VALID}, refimpl)
    add("F.local_response_norm", cases_for("local_response_norm", "local_response_norm", call, base, roles,
                                           ("input",), variants))

    def bbase(N=2, C=3, H=4):
        kw = base(N, C, H)
        kw["grad_output"] = _normal((N, C, H, H), 37)
        return kw

    call = lambda kw: F.local_response_norm_backward(**kw)  # noqa: E731
    zero = {0: RAISE, 1: RAISE, 2: RAISE, 3: RAISE}
    roles = dict(
        grad_output=_fa(zero=zero),
        input=_fa(zero=zero),
        size=_int(lo=1, big=VALID),
        alpha=_real(real_ok),
        beta=_real(real_ok),
        k=_real(real_ok),
    )
    variants = _zero_variants("local_response_norm_backward", "local_response_norm_backward", bbase, call,
                              ("N", "C", "H"), {"N": VALID, "C": VALID, "H": VALID})
    add("F.local_response_norm_backward", cases_for("local_response_norm_backward", "local_response_norm_backward",
                                                    call, bbase, roles, ("grad_output", "input"), variants))


# ---------------------------------------------------------------------------------------
# Top-level functions


def _build_toplevel():
    def base():
        return dict(n=1)

    def call(kw):
        cnnkit.set_num_threads(**kw)
        return cnnkit.get_num_threads()

    add("cnnkit.set_num_threads",
        cases_for("set_num_threads", "set_num_threads", call, base, dict(n=_int(lo=1, big=RAISE))))

    def wbase():
        return dict(bytes=1 << 20)

    def wcall(kw):
        cnnkit.set_workspace_bytes(**kw)
        got = cnnkit.get_workspace_bytes()
        y = F.conv2d(_normal((2, 8, 9, 9), 38), _normal((8, 8, 3, 3), 39), padding=1)
        return got, y

    add("cnnkit.set_workspace_bytes",
        cases_for("set_workspace_bytes", "set_workspace_bytes", wcall, wbase, dict(bytes=_int(lo=1, big=VALID))))

    def sbase():
        return dict(seed=5)

    def scall(kw):
        cnnkit.manual_seed(**kw)
        layer = nn.Linear(3, 2, dtype=np.float64)
        return layer.weight.data, F.dropout(np.ones(16), 0.5)[1]

    def seed_role(v):
        out = []
        for m in intarg(v, lo=0, big=VALID):
            if m.label in ("2^63", "2^64"):  # any non-negative int seeds a PCG64
                m = M(m.label, m.make, VALID, m.make)
            if m.label != "None":
                out.append(m)
        return out + [M("None", const(None), EITHER, exc=(TE,))]

    add("cnnkit.manual_seed", cases_for("manual_seed", "manual_seed", scall, sbase, dict(seed=seed_role)))


def _tanh_backward(g, x):
    return F.tanh_backward(g, F.tanh(x))


def _build_gradcheck():
    def base():
        return dict(fn=F.tanh, inputs=(_normal((2, 3), 40),), backward=_tanh_backward, eps=1e-6, atol=1e-5,
                    rtol=1e-3, inputs_to_check=None, seed=0)

    call = lambda kw: cnnkit.gradcheck(**kw)  # noqa: E731
    positive = lambda f: VALID if 0 < f < math.inf else RAISE  # noqa: E731
    nonneg = lambda f: RAISE if (f < 0 or math.isnan(f)) else VALID  # noqa: E731

    def fn_role(v):
        return [
            M("None", const(None), RAISE, exc=(TE,)),
            M("str", const("tanh"), RAISE, exc=(TE,)),
            M("int", const(1), RAISE, exc=(TE,)),
            M("ndarray", const(np.ones(3)), RAISE, exc=(TE,)),
        ]

    fn_ops = ("gradcheck", "tanh")  # an input fn rejects: fn's own error

    def inputs_role(v):
        return [
            M("None", const(None), RAISE, exc=(TE,), arg=("inputs", "input"), op=fn_ops),
            M("empty", const(()), RAISE, exc=(VE, TE), arg=("inputs",)),
            M("list", lambda t: list(t), VALID, SAME),
            M("bare-array", lambda t: t[0], VALID, SAME),
            M("float32", lambda t: (t[0].astype(np.float32),), VALID, lambda t: (t[0].astype(np.float32) * 1.0,)),
            M("int64", lambda t: (t[0].astype(np.int64),), RAISE, exc=(TE, VE), arg=("inputs", "input"), op=fn_ops),
            M("str", const("x"), RAISE, exc=(TE,), arg=("inputs", "input"), op=fn_ops),
            M("misaligned", lambda t: (_misaligned(t[0]),), VALID, SAME),
            M("noncontig", lambda t: (_noncontig(t[0]),), VALID, SAME),
            M("readonly", lambda t: (_readonly(t[0]),), VALID, SAME),
            M("two-inputs", lambda t: (t[0], t[0]), RAISE, exc=(TE,), arg=("inputs", "input", "tanh"), op=fn_ops),
        ]

    def backward_role(v):
        return [
            M("None", const(None), RAISE, exc=(VE,)),
            M("str", const("x"), RAISE, exc=(TE,)),
            M("returns-str", const(lambda g, x: "x"), RAISE, exc=(TE, VE)),
            M("returns-wrong-shape", const(lambda g, x: np.ones(5)), RAISE, exc=(VE,), arg=("backward", "gradient")),
            M("returns-None", const(lambda g, x: None), RAISE, exc=(VE,), arg=("backward", "inputs")),
        ]

    def itc_role(v):
        return [
            M("list-0", const([0]), VALID, SAME),
            M("tuple-0", const((0,)), VALID, SAME),
            M("np.int64", const([np.int64(0)]), VALID, SAME),
            M("out-of-range", const([5]), RAISE, exc=(VE,)),
            M("-1", const([-1]), RAISE, exc=(VE,)),
            M("float", const([0.5]), RAISE, exc=(TE,)),
            M("str", const("x"), RAISE, exc=(TE,)),
            M("int", const(0), RAISE, exc=(TE,)),
            M("2^64", const([2**64]), RAISE, exc=(VE, TE)),
        ]

    def seed_role(v):
        return [
            M("np.int64", lambda x: np.int64(x), VALID, SAME),
            M("-1", const(-1), RAISE, exc=(VE,)),
            M("str", const("x"), RAISE, exc=(TE,)),
            M("1.5", const(1.5), RAISE, exc=(TE,)),
            M("2^64", const(2**64), VALID),
        ]

    roles = dict(fn=fn_role, inputs=inputs_role, backward=backward_role, eps=_real(positive), atol=_real(nonneg),
                 rtol=_real(nonneg), inputs_to_check=itc_role, seed=seed_role)
    add("cnnkit.gradcheck", cases_for("gradcheck", "gradcheck", call, base, roles))


def _small_model():
    return nn.Sequential(nn.Conv2d(1, 2, 3, dtype=np.float64), nn.ReLU(), nn.Flatten(), nn.Linear(32, 5, dtype=np.float64))


def _build_summary():
    def base():
        cnnkit.manual_seed(0)
        return dict(model=_small_model(), input_shape=(1, 6, 6))

    call = lambda kw: str(cnnkit.summary(**kw))  # noqa: E731

    def model_role(v):
        return [
            M("None", const(None), RAISE, exc=(TE,)),
            M("str", const("LeNet"), RAISE, exc=(TE,)),
            M("class", const(nn.ReLU), RAISE, exc=(TE,)),
            M("function", const(F.relu), RAISE, exc=(TE,)),
            M("list", const([nn.ReLU()]), RAISE, exc=(TE,)),
        ]

    roles = dict(model=model_role, input_shape=_shape(lengths_ok=(4,)))
    add("cnnkit.summary", cases_for("summary", "summary", call, base, roles))


# ---------------------------------------------------------------------------------------
# cnnkit.nn


def _run_layer(layer, x):
    """forward then backward with a fixed gradient; the outputs and parameter grads."""
    y = layer(x)
    out = y[0] if isinstance(y, tuple) else y
    g = np.resize(np.linspace(-1, 1, 7), out.shape).astype(out.dtype)
    gx = layer.backward(g)
    return y, gx, [p.grad.copy() for p in layer.parameters()]


@dataclass
class Layer:
    name: str
    cls: type
    kwargs: dict  # the base constructor arguments
    x: Callable  # () -> the base input
    ctor_roles: dict
    input_role: Callable
    ops: tuple = ()  # the functional ops it runs: a message naming one names the layer
    grad_single: object = False  # expectation of a grad_output of the other float dtype (False: RAISE)
    grad_dtypes_ok: bool = False  # any dtype of grad_output is valid (Flatten)


def _layers():
    f64 = dict(dtype=np.float64)
    img = lambda: _normal((2, 3, 5, 5), 41)  # noqa: E731
    pos = lambda f: VALID if 0 <= f < 1 else RAISE  # noqa: E731
    eps_ok = lambda f: RAISE if (f < 0 or math.isnan(f)) else (VALID if math.isfinite(f) else EITHER)  # noqa: E731

    def dtype_role(v):
        return [
            M("str-float64", const("float64"), VALID, SAME),
            M("np.dtype", const(np.dtype(np.float64)), VALID, SAME),
            M("int32", const(np.int32), RAISE, exc=(TE,)),
            M("float16", const(np.float16), RAISE, exc=(TE,)),
            M("object", const(object), RAISE, exc=(TE,)),
            M("str-x", const("x"), RAISE, exc=(TE,)),
            M("int", const(3), RAISE, exc=(TE,)),
        ]

    def conv_pad(v):
        return intarg(v, lo=0, pair=True, extra=[M("same", const("same"), VALID, const(1)),
                                                 M("valid", const("valid"), VALID, const(0)),
                                                 M("SAME", const("SAME"), RAISE, exc=(VE,)),
                                                 M("str", const("0"), RAISE, exc=(VE, TE))])

    def unpool_role(v):
        return [
            M("None", const(None), RAISE, exc=(TE,)),
            M("str", const("x"), RAISE, exc=(TE,)),
            M("AvgPool2d", const(nn.AvgPool2d(2)), RAISE, exc=(TE,)),
            M("class", const(nn.MaxPool2d), RAISE, exc=(TE,)),
        ]

    def dim_role(lo, hi):
        return lambda v: intarg(v, lo=lo, hi=hi, big=RAISE, big_exc=(IE, VE),
                                extra=[M(str(hi + 1), const(hi + 1), RAISE, exc=(IE, VE)),
                                       M("-2^63", const(-(2**63)), RAISE, exc=(IE, VE))])

    layers = [
        Layer("Linear", nn.Linear, dict(in_features=3, out_features=4, **f64), lambda: _normal((2, 3), 42),
              dict(in_features=_int(lo=1, big=MEMORY), out_features=_int(lo=1, big=MEMORY), dtype=dtype_role),
              _fa(ndim_ok=(1, 3, 4, 5, 6), zero={0: VALID, 1: RAISE})),
        Layer("Conv2d", nn.Conv2d, dict(in_channels=3, out_channels=4, kernel_size=3, **f64), img,
              dict(in_channels=_int(lo=1, big=MEMORY), out_channels=_int(lo=1, big=MEMORY),
                   kernel_size=_int(lo=1, pair=True, big=MEMORY), stride=_int(lo=1, pair=True, big=VALID, big_ref=5),
                   padding=conv_pad, dilation=_int(lo=1, hi=2, pair=True), groups=_int(lo=1, hi=1), dtype=dtype_role),
              _fa(zero={0: VALID, 1: RAISE, 2: RAISE, 3: RAISE})),
        Layer("ConvTranspose2d", nn.ConvTranspose2d, dict(in_channels=3, out_channels=2, kernel_size=3, **f64), img,
              dict(in_channels=_int(lo=1, big=MEMORY), out_channels=_int(lo=1, big=MEMORY),
                   kernel_size=_int(lo=1, pair=True, big=MEMORY), stride=_int(lo=1, pair=True),
                   padding=_int(lo=0, hi=3, pair=True), output_padding=_int(lo=0, hi=0, pair=True),
                   groups=_int(lo=1, hi=1), dilation=_int(lo=1, pair=True), dtype=dtype_role),
              _fa(zero={0: VALID, 1: RAISE})),
        Layer("MaxPool2d", nn.MaxPool2d, dict(kernel_size=2), img,
              dict(kernel_size=_int(lo=1, hi=5, pair=True), stride=_pool_stride_role(VALID),
                   padding=_int(lo=0, hi=1, pair=True), dilation=_int(lo=1, hi=4, pair=True)),
              _fa(zero={0: VALID}, single=True)),
        Layer("AvgPool2d", nn.AvgPool2d, dict(kernel_size=2), img,
              dict(kernel_size=_int(lo=1, hi=5, pair=True), stride=_pool_stride_role(VALID),
                   padding=_int(lo=0, hi=1, pair=True)),
              _fa(zero={0: VALID}, single=True)),
        Layer("LPPool2d", nn.LPPool2d, dict(norm_type=2, kernel_size=2), lambda: np.abs(img()) + 0.5,
              dict(norm_type=_real(lambda f: RAISE if (f == 0 or math.isnan(f)) else
                                   (VALID if math.isfinite(f) else EITHER)),
                   kernel_size=_int(lo=1, hi=5, pair=True), stride=_pool_stride_role(VALID)),
              _fa(zero={0: VALID}, single=True)),
        Layer("ReLU", nn.ReLU, {}, img, {}, _fa(ndim_ok=(0, 1, 2, 3, 5, 6), zero={0: VALID, 1: VALID, 2: VALID,
                                                                                3: VALID}, single=True)),
        Layer("Sigmoid", nn.Sigmoid, {}, img, {}, _fa(ndim_ok=(0, 1, 2, 3, 5, 6), zero={0: VALID}, single=True)),
        Layer("Tanh", nn.Tanh, {}, img, {}, _fa(ndim_ok=(0, 1, 2, 3, 5, 6), zero={0: VALID}, single=True)),
        Layer("Softmax", nn.Softmax, dict(dim=1), img, dict(dim=dim_role(-4, 3)),
              _fa(ndim_ok=(2, 3, 5, 6), reshape="trail", zero={0: VALID, 1: VALID}, single=True, ndim_exc=(VE, IE))),
        Layer("LogSoftmax", nn.LogSoftmax, dict(dim=1), img, dict(dim=dim_role(-4, 3)),
              _fa(ndim_ok=(2, 3, 5, 6), reshape="trail", zero={0: VALID, 1: VALID}, single=True, ndim_exc=(VE, IE))),
        Layer("Flatten", nn.Flatten, dict(start_dim=1, end_dim=-1), img,
              dict(start_dim=dim_role(-4, 3), end_dim=lambda v: intarg(v, lo=-3, hi=3, big=RAISE, big_exc=(IE, VE),
                                                                      extra=[M("-2^63", const(-(2**63)), RAISE,
                                                                               exc=(IE, VE)),
                                                                             M("0", const(0), RAISE, exc=(VE, IE),
                                                                               relational=True)])),
              _fa(ndim_ok=(2, 3, 5, 6), reshape="trail", zero={0: VALID, 1: VALID, 2: VALID, 3: VALID},
                  single=True, ndim_exc=(VE, IE), dtypes_ok=True), grad_single=VALID, grad_dtypes_ok=True),
        Layer("Dropout", nn.Dropout, dict(p=0.5), img, dict(p=_real(pos)),
              _fa(ndim_ok=(0, 1, 2, 3, 5, 6), zero={0: VALID, 1: VALID}, single=True)),
        Layer("BatchNorm2d", nn.BatchNorm2d, dict(num_features=3, **f64), img,
              dict(num_features=_int(lo=1, big=MEMORY), eps=_real(eps_ok),
                   momentum=_real(lambda f: VALID if 0 <= f <= 1 else RAISE),
                   dtype=dtype_role),
              _fa(zero={0: EITHER, 1: RAISE})),
        Layer("SyncBatchNorm2d", nn.SyncBatchNorm2d, dict(num_features=3, **f64), img,
              dict(num_features=_int(lo=1, big=MEMORY), eps=_real(eps_ok),
                   momentum=_real(lambda f: VALID if 0 <= f <= 1 else RAISE),
                   dtype=dtype_role),
              _fa(zero={0: EITHER, 1: RAISE})),
        Layer("LocalResponseNorm", nn.LocalResponseNorm, dict(size=2), img,
              dict(size=_int(lo=1, big=VALID), alpha=_real(EITHER_NONFINITE), beta=_real(EITHER_NONFINITE),
                   k=_real(EITHER_NONFINITE)),
              _fa(ndim_ok=(3, 5, 6), reshape="trail", zero={0: VALID, 1: VALID, 2: VALID, 3: VALID},
                  single=True)),
    ]
    ops = dict(Linear="linear", Conv2d="conv2d", ConvTranspose2d="conv_transpose2d", MaxPool2d="max_pool2d",
               AvgPool2d="avg_pool2d", LPPool2d="lp_pool2d", ReLU="relu", Sigmoid="sigmoid", Tanh="tanh",
               Softmax="softmax", LogSoftmax="log_softmax", Dropout="dropout", BatchNorm2d="batch_norm",
               SyncBatchNorm2d="batch_norm", LocalResponseNorm="local_response_norm")
    for spec in layers:
        spec.ops = (spec.name,) + ((ops[spec.name],) if spec.name in ops else ())
        if spec.name in ("MaxPool2d", "AvgPool2d", "Dropout"):  # their backward kernels take one float operand
            spec.grad_single = EITHER
    return layers, unpool_role


def _build_nn():
    layers, unpool_role = _layers()
    for spec in layers:
        group = f"nn.{spec.name}"

        # Constructor arguments (each case builds, runs forward and backward).
        def ctor_call(kw, spec=spec):
            cnnkit.manual_seed(0)
            layer = spec.cls(**kw)
            x = spec.x()
            if isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d)):
                x = x.astype(layer.weight.dtype if layer.weight is not None else x.dtype)
            return _run_layer(layer, x)

        def ctor_base(spec=spec):
            kw = {name: prm.default for name, prm in inspect.signature(spec.cls).parameters.items()
                  if name in spec.ctor_roles}
            kw.update(spec.kwargs)
            return kw

        cases = cases_for(f"{group}()", spec.ops, ctor_call, ctor_base, spec.ctor_roles,
                          lite_ints=spec.name not in ("Conv2d", "MaxPool2d"))

        # forward's input.
        def fcall(kw, spec=spec):
            cnnkit.manual_seed(0)
            return _run_layer(spec.cls(**spec.kwargs), kw["input"])

        def fbase(spec=spec):
            return dict(input=spec.x())

        cases += cases_for(f"{group}.forward", spec.ops, fcall, fbase, dict(input=spec.input_role),
                           lite=spec.name in ("Sigmoid", "Tanh", "LogSoftmax"))

        # backward's grad_output.
        def bcall(kw, spec=spec):
            cnnkit.manual_seed(0)
            layer = spec.cls(**spec.kwargs)
            layer(spec.x())
            return layer.backward(kw["grad_output"])

        def bbase(spec=spec):
            cnnkit.manual_seed(0)
            y = spec.cls(**spec.kwargs)(spec.x())
            y = y[0] if isinstance(y, tuple) else y
            return dict(grad_output=_normal(y.shape, 43))

        grad_role = _fa(zero={i: RAISE for i in range(4)}, single=spec.grad_single, dtypes_ok=spec.grad_dtypes_ok)
        cases += cases_for(f"{group}.backward", spec.ops, bcall, bbase, dict(grad_output=grad_role),
                           lite=spec.name not in ("Linear", "Conv2d"))  # the Module guard checks it first

        # State: backward before forward, after a forward that raised, and recovery.
        def before(spec=spec):
            return spec.cls(**spec.kwargs).backward(_normal((2, 4, 3, 3), 43))

        def after_failed(spec=spec):
            layer = spec.cls(**spec.kwargs)
            layer(spec.x())
            try:
                layer("x")
            except (ValueError, TypeError):
                pass
            return layer.backward(_normal((2, 4, 3, 3), 43))

        def recovered(spec=spec):
            cnnkit.manual_seed(0)
            layer = spec.cls(**spec.kwargs)
            state = cnnkit._random.get_state()
            layer(np.zeros((1,) + spec.x().shape[1:]))
            for bad in (np.ones((2, 7), np.int32), "x", np.ones((1, 1, 1, 1, 1, 1))):
                try:
                    layer(bad)
                except (ValueError, TypeError, IndexError):
                    pass
            cnnkit._random.set_state(state)
            return _run_layer(layer, spec.x())

        def fresh(spec=spec):
            cnnkit.manual_seed(0)
            return _run_layer(spec.cls(**spec.kwargs), spec.x())

        cases += [
            variant(group, spec.name, "backward-before-forward", before, RAISE, arg=("backward", "forward"),
                    exc=(RE,)),
            variant(group, spec.name, "backward-after-failed-forward", after_failed, RAISE,
                    arg=("backward", "forward"), exc=(RE,)),
            variant(group, spec.name, "good-forward-after-failed", recovered, VALID, fresh),
        ]
        add(group, cases)

    # MaxUnpool2d(pool), its forward and backward.
    def ucall(kw):
        unpool = nn.MaxUnpool2d(**kw)
        return unpool(kw["pool"](_normal((2, 3, 4, 4), 44)))

    def ubase():
        return dict(pool=nn.MaxPool2d(2))

    cases = cases_for("nn.MaxUnpool2d()", "MaxUnpool2d", ucall, ubase, dict(pool=unpool_role))

    def ufcall(kw):
        pool = nn.MaxPool2d(2)
        unpool = nn.MaxUnpool2d(pool)
        pool(_normal((2, 3, 4, 4), 44))
        y = unpool(kw["input"], output_size=kw["output_size"])
        return y, unpool.backward(np.resize(np.linspace(-1, 1, 7), y.shape))

    def ufbase():
        return dict(input=_normal((2, 3, 2, 2), 45), output_size=None)

    def usize_role(v):
        return [
            M("hw", const((4, 4)), VALID, SAME),
            M("nchw", const((2, 3, 4, 4)), VALID, SAME),
            M("str", const("x"), RAISE, exc=(TE,)),
            M("int", const(4), RAISE, exc=(TE,)),
            M("ndarray", const(np.array([4, 4])), RAISE, exc=(TE,)),
            M("1-value", const((4,)), RAISE, exc=(VE,)),
            M("too-small", const((1, 1)), RAISE, exc=(VE,)),
            M("2^62", const((2**62, 4)), RAISE, exc=(VE,)),
            M("2^64", const((2**64, 4)), RAISE, exc=(VE, TE)),
        ]

    cases += cases_for("nn.MaxUnpool2d.forward", ("MaxUnpool2d", "max_unpool2d"), ufcall, ufbase,
                       dict(input=_fa(zero={i: RAISE for i in range(4)}, single=True), output_size=usize_role),
                       ("input",))

    def unpool_before():
        return nn.MaxUnpool2d(nn.MaxPool2d(2))(_normal((2, 3, 2, 2), 45))

    cases.append(variant("nn.MaxUnpool2d", "MaxUnpool2d", "forward-before-pool", unpool_before, RAISE,
                         arg=("forward", "switches", "MaxPool2d"), exc=(RE,)))
    add("nn.MaxUnpool2d", cases)

    # Sequential and Parameter.
    def seq_call(kw):
        cnnkit.manual_seed(0)
        return _run_layer(nn.Sequential(*kw["modules"]), _normal((2, 3), 46))

    def seq_base():
        cnnkit.manual_seed(0)
        return dict(modules=[nn.Linear(3, 4, dtype=np.float64), nn.ReLU()])

    def modules_role(v):
        return [
            M("None-item", lambda ms: ms + [None], RAISE, exc=(TE,), arg=("modules", "module", "None", "NoneType")),
            M("function-item", lambda ms: ms + [F.relu], RAISE, exc=(TE,), arg=("modules", "module", "function")),
            M("class-item", lambda ms: ms + [nn.ReLU], RAISE, exc=(TE,), arg=("modules", "module", "type")),
            M("str-item", lambda ms: ms + ["relu"], RAISE, exc=(TE,), arg=("modules", "module", "str")),
        ]

    add("nn.Sequential", cases_for("nn.Sequential", "Sequential", seq_call, seq_base, dict(modules=modules_role)))

    def par_call(kw):
        p = Parameter(kw["data"])
        return p.data, p.grad, np.asarray(p)

    def par_base():
        return dict(data=_normal((2, 3), 47))

    def data_role(v):
        ms = [m for m in farray(v, ndim_ok=(0, 1, 3, 4, 5, 6), zero={0: VALID, 1: VALID}, single=True)
              if m.label not in ("list", "pyfloat", "pyint", "True")]  # array-likes: Parameter takes them
        return ms + [M("list", lambda x: x.tolist(), EITHER, lambda x: x)]

    add("nn.Parameter", cases_for("nn.Parameter", "Parameter", par_call, par_base, dict(data=data_role)))


def _deconv_model():
    cnnkit.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3, dtype=np.float64), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(18, 4, dtype=np.float64))


def _build_nn_extras():
    # deconvnet(model, x, layer, channel)
    def dbase():
        return dict(model=_deconv_model(), x=_normal((1, 1, 8, 8), 60), layer=2, channel=1)

    def model_role(v):
        return [
            M("None", const(None), RAISE, exc=(TE,)),
            M("layer-not-Sequential", const(nn.ReLU()), RAISE, exc=(TE,)),
            M("str", const("model"), RAISE, exc=(TE,)),
            M("with-Softmax", lambda m: nn.Sequential(*list(m), nn.Softmax()), VALID, SAME),
        ]

    index_exc = (VE, IE)
    roles = dict(
        model=model_role,
        x=_named(_fa(zero={0: VALID, 1: RAISE, 2: RAISE, 3: RAISE}), "x", "input"),  # the layer's name for it
        layer=_int(lo=-5, hi=4, big_exc=index_exc, extra=[M("5", const(5), RAISE, exc=index_exc),
                                                          M("-6", const(-6), RAISE, exc=index_exc)]),
        channel=_int(lo=0, hi=1, big_exc=index_exc, extra=[M("2", const(2), RAISE, exc=index_exc, relational=True)]),
    )
    # a bad x is reported by the layer that takes it
    add("nn.deconvnet", cases_for("nn.deconvnet", ("deconvnet", "Conv2d"), lambda kw: nn.deconvnet(**kw), dbase, roles,
                                  lite=True, lite_ints=True))

    # Module methods: load_state_dict, to, save, load
    def small():
        cnnkit.manual_seed(0)
        return nn.Sequential(nn.Linear(3, 4, dtype=np.float64), nn.ReLU())

    def lsd_call(kw):
        m = small()
        m.load_state_dict(kw["state_dict"])
        return m(np.ones((2, 3))), m.state_dict()

    def lsd_base():
        cnnkit.manual_seed(1)
        return dict(state_dict=nn.Sequential(nn.Linear(3, 4, dtype=np.float64), nn.ReLU()).state_dict())

    def set_item(key, make):
        def mutate(sd):
            sd = dict(sd)
            sd[key] = make(sd[key])
            return sd

        return mutate

    def sd_role(v):
        return [
            M("None", const(None), RAISE, exc=(TE,)),
            M("list", lambda sd: list(sd.items()), RAISE, exc=(TE, VE)),
            M("empty", const({}), RAISE, exc=(VE,), arg=("missing",)),
            M("extra-key", lambda sd: {**sd, "2.weight": np.ones(3)}, RAISE, exc=(VE,), arg=("unexpected",)),
            M("wrong-shape", set_item("0.weight", lambda a: a[:2]), RAISE, exc=(VE,), arg=("0.weight",)),
            M("str-value", set_item("0.weight", lambda a: "x"), RAISE, exc=(TE, VE), arg=("0.weight",)),
            M("None-value", set_item("0.weight", lambda a: None), RAISE, exc=(TE, VE), arg=("0.weight",)),
            M("int-value", set_item("0.weight", lambda a: a.astype(np.int64)), EITHER,
              set_item("0.weight", lambda a: a.astype(np.int64).astype(np.float64)), arg=("0.weight",)),
            M("float32-value", set_item("0.weight", lambda a: a.astype(np.float32)), EITHER,
              set_item("0.weight", lambda a: a.astype(np.float32).astype(np.float64)), arg=("0.weight",)),
            M("misaligned-value", set_item("0.weight", _misaligned), VALID, SAME),
            M("noncontig-value", set_item("0.weight", _noncontig), VALID, SAME),
            M("nan-value", set_item("0.weight", _fill(np.nan)), VALID, set_item("0.weight", _fill(np.nan))),
        ]

    cases = cases_for("nn.Module.load_state_dict", ("load_state_dict", "Sequential"), lsd_call, lsd_base,
                      dict(state_dict=sd_role))

    def to_call(kw):
        m = small().to(kw["dtype"])
        return m(np.ones((2, 3), m[0].weight.dtype))

    def dtype_role(v):
        return [
            M("str-float32", const("float32"), VALID, const(np.float32)),
            M("np.dtype", const(np.dtype(np.float32)), VALID, const(np.float32)),
            M("int32", const(np.int32), RAISE, exc=(TE,)),
            M("float16", const(np.float16), RAISE, exc=(TE,)),
            M("None", const(None), RAISE, exc=(TE,)),
            M("str-x", const("x"), RAISE, exc=(TE,)),
            M("int", const(3), RAISE, exc=(TE,)),
        ]

    cases += cases_for("nn.Module.to", ("to", "Sequential"), to_call, lambda: dict(dtype=np.float32),
                       dict(dtype=dtype_role))

    def load_call(kw):
        m = small()
        m.load(kw["path"])
        return m.state_dict()

    def save_call(kw):
        small().save(kw["path"])
        m = small()
        cnnkit.manual_seed(5)
        m.load(kw["path"])
        return m.state_dict()

    good = lambda: _p("model.npz")  # noqa: E731
    for label, value, e, exc, arg in (
        ("None", None, RAISE, (TE,), ("path",)),
        ("int-fd", 3, RAISE, (TE,), ("path",)),
        ("missing", _p("no-such-model.npz"), RAISE, (FileNotFoundError,), ("no-such-model",)),
        ("not-npz", _p("good.idx"), RAISE, (VE,), ("good.idx",)),
        ("wrong-shapes", _p("other-model.npz"), RAISE, (VE,), ("0.weight",)),
        ("pathlib", pathlib.Path(_p("model.npz")), VALID, (), ()),
    ):
        ops = () if label == "missing" else ("load", "Sequential", "load_state_dict")
        cases.append(Case(f"nn.Module.load:path={label}", lambda v=value: load_call(dict(path=v)), e,
                          (lambda: load_call(dict(path=good()))) if e == VALID else None, ops, arg, exc))
    for label, value, e, exc, arg in (
        ("None", None, RAISE, (TE,), ("path",)),
        ("int-fd", 3, RAISE, (TE,), ("path",)),
        ("directory", _p("emptydir"), RAISE, (IsADirectoryError, VE, TE), ("emptydir",)),
        ("missing-dir", _p("no-dir/model.npz"), RAISE, (FileNotFoundError,), ("no-dir",)),
        ("pathlib", pathlib.Path(_p("saved.npz")), VALID, (), ()),
    ):
        ops = () if label in ("missing-dir", "directory") else ("save", "Sequential")
        cases.append(Case(f"nn.Module.save:path={label}", lambda v=value: save_call(dict(path=v)), e,
                          (lambda: save_call(dict(path=_p("saved2.npz")))) if e == VALID else None, ops, arg, exc))
    add("nn.Module", cases)

    # two small models (the large ones allocate tens of millions of parameters)
    def mlp_call(kw):
        cnnkit.manual_seed(0)
        return _run_layer(cnnkit.models.MLP(**kw), _normal((2, 4), 61))

    def mlp_base():
        return dict(in_features=4, hidden=(5,), out_features=3, activation="relu", dropout=0.0, dtype=np.float64)

    def hidden_role(v):
        return [
            M("None", const(None), RAISE, exc=(TE,)),
            M("int", const(5), RAISE, exc=(TE,)),
            M("empty", const(()), VALID, const(())),
            M("list", const([5]), VALID, SAME),
            M("np.int64", const((np.int64(5),)), VALID, SAME),
            M("zero", const((0,)), RAISE, exc=(VE,)),
            M("float", const((5.0,)), RAISE, exc=(TE,)),
            M("str", const(("5",)), RAISE, exc=(TE,)),
            M("2^62", const((2**62,)), MEMORY, exc=(VE,)),
        ]

    def activation_role(v):
        return [M("tanh", const("tanh"), VALID, const("tanh")), M("x", const("x"), RAISE, exc=(VE,)),
                M("None", const(None), RAISE, exc=(TE, VE)), M("ReLU-class", const(nn.ReLU), RAISE, exc=(TE, VE))]

    roles = dict(in_features=_int(lo=1, big=MEMORY), hidden=hidden_role, out_features=_int(lo=1, big=MEMORY),
                 activation=activation_role, dropout=_real(lambda f: VALID if 0 <= f < 1 else RAISE))
    add("models.MLP", cases_for("models.MLP", "MLP", mlp_call, mlp_base, roles, lite_ints=True))

    def lenet_call(kw):
        cnnkit.manual_seed(0)
        model = cnnkit.models.LeNet5(**kw)
        return _run_layer(model, _normal((1, 1, 16, 16), 62))

    def lenet_base():
        return dict(num_classes=3, in_channels=1, input_size=16, padding=0, dtype=np.float64)

    roles = dict(num_classes=_int(lo=1, big=MEMORY), in_channels=_int(lo=1, big=MEMORY),
                 input_size=_int(lo=16, big=MEMORY), padding=_int(lo=0, big=MEMORY))
    # padding goes to the Conv2d layers as it is, which report it
    add("models.LeNet5", cases_for("models.LeNet5", ("LeNet5", "Conv2d"), lenet_call, lenet_base, roles,
                                   lite_ints=True))


def _build_nn_losses():
    for name, cls, out, target, troles in (
        ("CrossEntropyLoss", nn.CrossEntropyLoss, lambda: _normal((3, 4), 48),
         lambda: np.array([0, 3, 1]),
         _ia(good_dtypes=("int32", "uint8"), bad_dtypes=("float64", "bool"),
             bad_values=(("-1", -1, None), ("C", 4, None)))),
        ("MSELoss", nn.MSELoss, lambda: _normal((3, 4), 48), lambda: _normal((3, 4), 49),
         _fa(zero={0: RAISE, 1: RAISE})),
    ):
        group = f"nn.{name}"
        name = (name, {"CrossEntropyLoss": "cross_entropy", "MSELoss": "mse_loss"}[name])

        def ccall(kw, cls=cls, out=out, target=target):
            crit = cls(**kw)
            loss = crit(out(), target())
            return loss, crit.backward()

        cases = cases_for(f"{group}()", name, ccall, lambda: dict(reduction="mean"), dict(reduction=reductionarg))

        def fcall(kw, cls=cls):
            crit = cls()
            loss = crit(kw["output"], kw["target"])
            return loss, crit.backward()

        fbase = lambda out=out, target=target: dict(output=out(), target=target())  # noqa: E731
        cases += cases_for(f"{group}.forward", name, fcall, fbase,
                           dict(output=_fa(zero={0: RAISE, 1: RAISE}, single=name[0] == "CrossEntropyLoss"),
                                target=troles), ("output", "target"))

        for reduction in ("mean", "none"):
            def bcall(kw, cls=cls, out=out, target=target, reduction=reduction):
                crit = cls(reduction=reduction)
                crit(out(), target())
                return crit.backward(kw["grad_output"])

            def grad_role(v, reduction=reduction, name=name[0]):
                shape = (3,) if name == "CrossEntropyLoss" else (3, 4)
                ms = [
                    M("None", const(None), RAISE, exc=(TE,)),
                    M("str", const("1"), RAISE, exc=(TE,)),
                    M("True", const(True), RAISE, exc=(TE,)),
                    M("complex", const(1j), RAISE, exc=(TE,)),
                    M("np.float32", const(np.float32(2.0)), VALID, const(2.0)),
                    M("int", const(2), VALID, const(2.0)),
                    M("nan", const(math.nan), VALID, const(math.nan)),
                    M("0-d", const(np.array(2.0)), VALID, const(2.0)),
                    M("wrong-shape", const(np.ones((5,))), RAISE, exc=(VE, TE)),
                ]
                if reduction == "none":
                    ms += [M("per-element", const(np.full(shape, 2.0)), VALID, const(2.0)),
                           M("per-element-misaligned", const(_misaligned(np.full(shape, 2.0))), VALID, const(2.0))]
                return ms

            cases += cases_for(f"{group}.backward-{reduction}", name, bcall, lambda: dict(grad_output=1.0),
                               dict(grad_output=grad_role))
        cases.append(variant(group, name, "backward-before-forward", lambda cls=cls: cls().backward(), RAISE,
                             arg=("backward", "forward"), exc=(RE,)))
        add(group, cases)


# ---------------------------------------------------------------------------------------
# cnnkit.optim


def _params():
    return [Parameter(_normal((2, 3), 50)), Parameter(_normal((3,), 51))]


def _grads(params):
    for i, p in enumerate(params):
        p.grad[...] = _normal(p.shape, 52 + i)
    return params


def _build_optim():
    positive = lambda f: VALID if f > 0 and math.isfinite(f) else (EITHER if f == math.inf else RAISE)  # noqa: E731
    nonneg = lambda f: RAISE if (f < 0 or math.isnan(f)) else (VALID if math.isfinite(f) else EITHER)  # noqa: E731
    anyreal = lambda f: VALID if math.isfinite(f) else EITHER  # noqa: E731

    def params_role(v):
        return [
            M("None", const(None), RAISE, exc=(TE,)),
            M("int", const(5), RAISE, exc=(TE,)),
            M("str", const("ab"), RAISE, exc=(TE,)),
            M("empty", const([]), RAISE, exc=(VE,)),
            M("ndarray-item", lambda ps: [p.data for p in ps], RAISE, exc=(TE,)),
            M("None-item", lambda ps: ps + [None], RAISE, exc=(TE,)),
            M("tuple", lambda ps: tuple(ps), VALID, SAME),
            M("generator", lambda ps: (p for p in ps), VALID, SAME),
        ]

    def betas_role(v):
        return [
            M("None", const(None), RAISE, exc=(TE,)),
            M("float", const(0.9), RAISE, exc=(TE,)),
            M("1-tuple", const((0.9,)), RAISE, exc=(VE,)),
            M("3-tuple", const((0.9, 0.99, 0.9)), RAISE, exc=(VE,)),
            M("strs", const(("a", "b")), RAISE, exc=(TE,)),
            M("nan", const((math.nan, 0.999)), RAISE, exc=(VE,)),
            M("1.0", const((0.9, 1.0)), RAISE, exc=(VE,)),
            M("-0.1", const((-0.1, 0.999)), RAISE, exc=(VE,)),
            M("list", const([0.9, 0.999]), VALID, SAME),
            M("np.float32", const((np.float32(0.5), 0.999)), VALID, const((0.5, 0.999))),
        ]

    def opt_call(cls):
        def call(kw):
            params = kw.pop("params")
            opt = cls(params, **kw)
            for _ in range(2):
                opt.step()
            return [(p.data, p.grad) for p in opt.params]

        return call

    def sgd_base():
        return dict(params=_grads(_params()), lr=0.1, momentum=0.9, dampening=0.0, weight_decay=0.01)

    add("optim.SGD", cases_for("SGD", "SGD", opt_call(optim.SGD), sgd_base,
                               dict(params=params_role, lr=_real(positive), momentum=_real(nonneg),
                                    dampening=_real(anyreal), weight_decay=_real(nonneg))))

    def adam_base():
        return dict(params=_grads(_params()), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)

    add("optim.Adam", cases_for("Adam", "Adam", opt_call(optim.Adam), adam_base,
                                dict(params=params_role, lr=_real(positive), betas=betas_role, eps=_real(nonneg),
                                     weight_decay=_real(nonneg))))

    # step() with a gradient the user replaced.
    for cls in (optim.SGD, optim.Adam):
        def step_call(kw, cls=cls):
            params = _grads(_params())
            params[0].grad = kw["grad"]
            opt = cls(params, lr=0.1)
            opt.step()
            return [p.data for p in params]

        def grad_role(v):
            return [
                M("None", const(None), RAISE, exc=(TE,)),
                M("str", const("x"), RAISE, exc=(TE,)),
                M("list", lambda g: g.tolist(), RAISE, exc=(TE,)),
                M("wrong-shape", lambda g: g[:1], RAISE, exc=(VE,)),
                M("broadcastable", lambda g: g[:1, :1], RAISE, exc=(VE,)),
                M("transposed-shape", lambda g: np.ascontiguousarray(g.T), RAISE, exc=(VE,)),
                M("nan", _fill(np.nan), VALID, _fill(np.nan)),
                M("misaligned", _misaligned, VALID, SAME),
                M("noncontig", _noncontig, VALID, SAME),
                M("float32", lambda g: g.astype(np.float32), EITHER, lambda g: g.astype(np.float32)),
                M("complex", lambda g: g.astype(np.complex128), RAISE, exc=(TE,)),
            ]

        add(f"optim.{cls.__name__}", cases_for(f"{cls.__name__}.step", cls.__name__, step_call,
                                               lambda: dict(grad=_normal((2, 3), 52)), dict(grad=grad_role),
                                               ))

    def steplr_call(kw):
        opt = kw.pop("optimizer")
        sched = optim.StepLR(opt, **kw)
        lrs = []
        for _ in range(5):
            sched.step()
            lrs.append(sched.get_last_lr())
        return lrs

    def steplr_base():
        return dict(optimizer=optim.SGD(_params(), lr=1.0), step_size=2, gamma=0.5)

    def optimizer_role(v):
        return [
            M("None", const(None), RAISE, exc=(TE,)),
            M("str", const("sgd"), RAISE, exc=(TE,)),
            M("params", const(_params()), RAISE, exc=(TE,)),
        ]

    add("optim.StepLR", cases_for("StepLR", "StepLR", steplr_call, steplr_base,
                                  dict(optimizer=optimizer_role, step_size=_int(lo=1, big=VALID, big_ref=10**6),
                                       gamma=_real(anyreal))))


# ---------------------------------------------------------------------------------------
# cnnkit.data

DATA_DIR = tempfile.mkdtemp(prefix="cnnkit-fuzz-")  # filled once, before the cases run


def _idx_bytes(array, code=0x08, dims=None):
    dims = array.shape if dims is None else dims
    header = bytes([0, 0, code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


IDX_IMAGES = (np.arange(2 * 3 * 4) % 251).astype(np.uint8).reshape(2, 3, 4)
IDX_LABELS = np.array([3, 7], np.uint8)


def _write_data_files():
    def write(name, content, gz=False):
        path = os.path.join(DATA_DIR, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with (gzip.open if gz else open)(path, "wb") as f:
            f.write(content)

    good = _idx_bytes(IDX_IMAGES)
    write("good.idx", good)
    write("good.idx.gz", good, gz=True)
    write("float.idx", _idx_bytes(np.linspace(0, 1, 6).reshape(2, 3), code=0x0E))
    write("empty.idx", b"")
    write("magic.idx", b"\x01\x02" + good[2:])
    write("badtype.idx", b"\x00\x00\x07\x01" + good[4:])
    write("truncated-header.idx", good[:6])
    write("truncated-data.idx", good[:-1])
    write("trailing.idx", good + b"\x00")
    write("wrap.idx", bytes([0, 0, 0x08, 4]) + struct.pack(">IIII", 2**16, 2**16, 2**16, 2**16))
    write("huge-dims.idx", bytes([0, 0, 0x08, 3]) + struct.pack(">III", 2**32 - 1, 2**32 - 1, 2**32 - 1) + b"\x00")
    write("many-dims.idx", bytes([0, 0, 0x08, 255]) + b"\x00" * 16)
    write("zero-dim.idx", bytes([0, 0, 0x08, 2]) + struct.pack(">II", 0, 5))
    write("notgzip.idx.gz", good)
    with open(os.path.join(DATA_DIR, "good.idx.gz"), "rb") as f:
        write("truncated.idx.gz", f.read()[:-12])
    # MNIST layouts
    write("mnist/train-images-idx3-ubyte", _idx_bytes(IDX_IMAGES))
    write("mnist/train-labels-idx1-ubyte", _idx_bytes(IDX_LABELS))
    write("mnist/t10k-images-idx3-ubyte.gz", _idx_bytes(IDX_IMAGES[:1]), gz=True)
    write("mnist/t10k-labels-idx1-ubyte.gz", _idx_bytes(IDX_LABELS[:1]), gz=True)
    write("mnist-count/train-images-idx3-ubyte", _idx_bytes(IDX_IMAGES))
    write("mnist-count/train-labels-idx1-ubyte", _idx_bytes(np.array([1, 2, 3], np.uint8)))
    write("mnist-2d/train-images-idx3-ubyte", _idx_bytes(IDX_IMAGES[0]))
    write("mnist-2d/train-labels-idx1-ubyte", _idx_bytes(IDX_LABELS))
    write("mnist-bad/train-images-idx3-ubyte", b"\x00\x00\x08")
    write("mnist-bad/train-labels-idx1-ubyte", _idx_bytes(IDX_LABELS))
    record = bytes([4]) + bytes(range(256)) * 12
    write("cifar/data_batch_1.bin", record * 2)
    write("cifar/test_batch.bin", record)
    write("cifar-short/data_batch_1.bin", record[:-1])
    os.makedirs(os.path.join(DATA_DIR, "emptydir"), exist_ok=True)
    state = cnnkit._random.get_state()
    cnnkit.manual_seed(3)
    nn.Sequential(nn.Linear(3, 4, dtype=np.float64), nn.ReLU()).save(_p("model.npz"))
    nn.Sequential(nn.Linear(4, 3, dtype=np.float64)).save(_p("other-model.npz"))
    cnnkit._random.set_state(state)


def _p(name):
    return os.path.join(DATA_DIR, name)


def _build_data():
    def path_cases(group, op, fn, good, bad_files, missing_exc):
        """op: the names a message may use (a loader's, or read_idx's for a bad file)."""
        cases = []
        arg = "path" if op == ("read_idx",) else "root"
        for label, value, e, ref, exc, names, ops in (
            ("None", None, RAISE, None, (TE,), (arg,), op),
            ("int-fd", 0, RAISE, None, (TE,), (arg,), op),
            ("True", True, RAISE, None, (TE,), (arg,), op),
            ("float", 1.5, RAISE, None, (TE,), (arg,), op),
            ("list", [good], RAISE, None, (TE,), (arg,), op),
            ("pathlib", pathlib.Path(_p(good)), VALID, _p(good), (), (), op),
            ("bytes", os.fsencode(_p(good)), EITHER, _p(good), (TE,), (arg,), op),
            ("missing", _p("no-such-file"), RAISE, None, missing_exc, ("no-such-file",), ()),
            ("empty-str", "", RAISE, None, missing_exc, (), ()),
        ):
            cases.append(Case(f"{group}:{arg}={label}", lambda v=value: fn(v), e,
                              None if ref is None else (lambda r=ref: fn(r)), ops, names, exc))
        for name, e in bad_files:
            cases.append(Case(f"{group}:file={name}", lambda n=name: fn(_p(n)), e, None, op,
                              (os.path.basename(name),), (VE,)))
        return cases

    idx_bad = [(n, RAISE) for n in ("empty.idx", "magic.idx", "badtype.idx", "truncated-header.idx",
                                    "truncated-data.idx", "trailing.idx", "wrap.idx", "huge-dims.idx",
                                    "many-dims.idx", "notgzip.idx.gz", "truncated.idx.gz")]
    cases = path_cases("data.read_idx", ("read_idx",), data.read_idx, "good.idx", idx_bad,
                       (FileNotFoundError, IsADirectoryError))
    cases += [
        Case("data.read_idx:file=good", lambda: data.read_idx(_p("good.idx")), VALID, lambda: IDX_IMAGES.copy()),
        Case("data.read_idx:file=good-gz", lambda: data.read_idx(_p("good.idx.gz")), VALID,
             lambda: IDX_IMAGES.copy()),
        Case("data.read_idx:file=float64", lambda: data.read_idx(_p("float.idx")), VALID,
             lambda: np.linspace(0, 1, 6).reshape(2, 3)),
        Case("data.read_idx:file=zero-dim", lambda: data.read_idx(_p("zero-dim.idx")), VALID,
             lambda: np.zeros((0, 5), np.uint8)),
        Case("data.read_idx:path=directory", lambda: data.read_idx(_p("emptydir")), RAISE, None, (),
             ("emptydir",), (IsADirectoryError, VE)),
    ]
    add("data.read_idx", cases)

    mnist = lambda root: data.load_mnist(root)  # noqa: E731
    cases = path_cases("data.load_mnist", ("load_mnist", "read_idx"), mnist, "mnist",
                       [("mnist-count", RAISE), ("mnist-2d", RAISE), ("mnist-bad", RAISE)], (FileNotFoundError,))
    cases.append(Case("data.load_mnist:root=emptydir", lambda: mnist(_p("emptydir")), RAISE, None, ("load_mnist",),
                      ("emptydir",), (FileNotFoundError,)))
    add("data.load_mnist", cases)

    cifar = lambda root: data.load_cifar10(root)  # noqa: E731
    cases = path_cases("data.load_cifar10", ("load_cifar10",), cifar, "cifar", [("cifar-short", RAISE)],
                       (FileNotFoundError,))
    add("data.load_cifar10", cases)

    def ds_call(kw):
        ds = data.load_dataset(**kw)
        return ds.x_train, ds.y_train, ds.x_test, ds.y_test, ds.num_classes

    def ds_base():
        return dict(spec=f"mnist:{_p('mnist')}", test_fraction=0.2, split_seed=0)

    def spec_role(v):
        return [
            M("None", const(None), RAISE, exc=(TE, VE)),
            M("int", const(5), RAISE, exc=(TE, VE)),
            M("unknown", const("imagenet"), RAISE, exc=(VE,)),
            M("mnist-no-dir", const("mnist:"), RAISE, exc=(VE,)),
            M("digits-colon", const("digits:x"), RAISE, exc=(VE,)),
            M("missing-dir", const(f"cifar10:{_p('nope')}"), RAISE, exc=(FileNotFoundError,),
              arg=("nope",), op=("load_dataset", "load_cifar10")),
        ]

    fraction = lambda f: VALID if 0 <= f <= 1 else RAISE  # noqa: E731

    def seed_role(v):
        return [M("-1", const(-1), RAISE, exc=(VE,)), M("str", const("x"), RAISE, exc=(TE,)),
                M("1.5", const(1.5), RAISE, exc=(TE,)), M("np.int64", const(np.int64(0)), VALID, SAME)]

    cases = cases_for("data.load_dataset", "load_dataset", ds_call, ds_base,
                      dict(spec=spec_role, test_fraction=_real(fraction), split_seed=seed_role))
    add("data.load_dataset", cases)

    # ArrayDataset and DataLoader.
    def ad_cases():
        out = []
        for label, arrays, e, exc in (
            ("none", (), RAISE, (VE, TE)),
            ("None", (None,), RAISE, (VE, TE)),
            ("0-d", (np.float64(5.0),), RAISE, (VE,)),
            ("str", ("abc",), RAISE, (VE, TE)),
            ("lengths", (np.ones(3), np.ones(4)), RAISE, (VE,)),
        ):
            out.append(Case(f"data.ArrayDataset:arrays={label}", lambda a=arrays: data.ArrayDataset(*a)[:], e,
                            None, ("ArrayDataset",), ("arrays",), exc))
        out.append(Case("data.ArrayDataset:arrays=lists", lambda: data.ArrayDataset([1, 2], [3, 4])[:], VALID,
                        lambda: data.ArrayDataset(np.array([1, 2]), np.array([3, 4]))[:]))
        return out

    add("data.ArrayDataset", ad_cases())

    def dl_call(kw):
        return [tuple(b) for b in data.DataLoader(**kw)]

    def dl_base():
        return dict(dataset=(np.arange(10.0).reshape(5, 2), np.arange(5)), batch_size=2, shuffle=True, seed=0,
                    drop_last=False)

    def dataset_role(v):
        return [
            M("None", const(None), RAISE, exc=(TE,)),
            M("int", const(5), RAISE, exc=(TE,)),
            M("lengths", lambda d: (d[0], d[1][:3]), RAISE, exc=(VE,), arg=("arrays", "dataset"),
              op=("DataLoader", "ArrayDataset")),
            M("list", lambda d: list(d), VALID, SAME),
            M("ArrayDataset", lambda d: data.ArrayDataset(*d), VALID, SAME),
        ]

    def dl_seed(v):
        return [M("-1", const(-1), RAISE, exc=(VE,)), M("str", const("x"), RAISE, exc=(TE,)),
                M("1.5", const(1.5), RAISE, exc=(TE,)), M("np.int64", const(np.int64(0)), VALID, SAME),
                M("2^64", const(2**64), VALID)]

    add("data.DataLoader", cases_for("data.DataLoader", "DataLoader", dl_call, dl_base,
                                     dict(dataset=dataset_role,
                                          batch_size=_int(lo=1, big=VALID, big_ref=100, type_exc=(TE, VE),
                                                          extra=[M("2^63", const(2**63), EITHER, const(100)),
                                                                 M("2^64", const(2**64), EITHER, const(100))]),
                                          seed=dl_seed)))


def _relabel(ms, changes):
    """ms with the mutations named in changes (label -> M) replaced."""
    return [changes.get(m.label, m) for m in ms]


def _classic_matrix(v, optional=False, single=False, no_samples=VALID):
    """A classic method's data matrix: array-likes are taken (a list is valid), scalars
    are 0-d arrays (a ValueError), NaN and infinity are refused; huge finite values may
    overflow to an infinite distance."""
    ms = farray(v, zero={0: no_samples, 1: RAISE}, optional=optional, nan=RAISE, ndim_exc=(VE,), single=single)
    scalar = lambda label, value: M(label, const(value), RAISE, exc=(VE, TE))  # noqa: E731
    return _relabel(ms, {"list": M("list", lambda x: x.tolist(), VALID, SAME),
                         "huge-values": M("huge-values", _huge_values, VALID, _huge_values),
                         "True": scalar("True", True), "pyfloat": scalar("pyfloat", 1.5),
                         "pyint": scalar("pyint", 1), "str": M("str", const("x"), RAISE, exc=(TE, VE))})


def _build_classic():
    def pd_base():
        return dict(A=_normal((5, 3), 11), B=_normal((4, 3), 12), metric="l2")

    def metric_role(v):
        ms = [M(m, const(m), VALID, const(m)) for m in ("l1", "sqeuclidean")]
        return ms + [M("L2", const("L2"), RAISE, exc=(VE,)), M("None", const(None), RAISE, exc=(TE, VE)),
                     M("int", const(2), RAISE, exc=(TE, VE)), M("cosine", const("cosine"), RAISE, exc=(VE,))]

    add("classic.pairwise_distances",
        cases_for("classic.pairwise_distances", "pairwise_distances",
                  lambda kw: classic.pairwise_distances(**kw), pd_base,
                  dict(A=_classic_matrix, B=lambda v: _classic_matrix(v, optional=True), metric=metric_role)))

    def km_base():
        return dict(X=_normal((12, 3), 13), n_clusters=3)

    def km_call(kw):
        m = classic.KMeans(n_clusters=kw["n_clusters"], seed=0).fit(kw["X"])
        return m.cluster_centers_, m.labels_, m.inertia_

    add("classic.KMeans",
        cases_for("classic.KMeans", ("KMeans", "KMeans.fit"), km_call, km_base,
                  dict(X=lambda v: _classic_matrix(v, single=True, no_samples=RAISE),  # fewer samples than clusters
                       n_clusters=_int(lo=1, big=RAISE, big_exc=(VE,), type_exc=(TE, VE))),
                  lite_ints=True))

    def aug_base():
        return dict(images=_rng(14).integers(0, 256, (3, 2, 6, 7)).astype(np.uint8), crop=4, padding=1,
                    flip=True, mean=0.5, std=0.25, seed=3)

    def images_role(v):
        ms = _not_an_array(False) + _layouts(v)
        ms += [M(f"dtype-{d}", lambda x, d=d: x.astype(d), RAISE, exc=(TE,)) for d in ("float32", "int64", "bool")]
        ms += [M("ndim3", lambda x: x[0], RAISE, exc=(VE,)), M("ndim5", lambda x: x[None], RAISE, exc=(VE,)),
               M("zero-axis0", lambda x: x[:0], VALID, lambda x: x[:0]),
               M("zero-axis2", lambda x: x[:, :, :0], RAISE, exc=(VE,), relational=True)]
        return _relabel(ms, {"list": M("list", lambda x: x.tolist(), EITHER, SAME, exc=(TE,))})

    def real_role(positive):
        def role(v):
            bad = RAISE if positive else EITHER
            return [M("None", const(None), VALID), M("str", const("x"), RAISE, exc=(TE,)),
                    M("nan", const(math.nan), RAISE, exc=(VE,)), M("inf", const(math.inf), RAISE, exc=(VE,)),
                    M("zero", const(0.0), bad, const(0.0), exc=(VE,)), M("negative", const(-1.0), bad, const(-1.0), exc=(VE,)),
                    M("per-channel", const((v, v)), VALID, SAME),
                    M("wrong-length", const((v, v, v)), RAISE, exc=(VE,)),
                    M("np.float32", lambda x: np.float32(x), VALID, SAME)]
        return role

    def seed_role(v):
        return [M("None", const(None), VALID), M("str", const("x"), RAISE, exc=(TE,)),
                M("1.5", const(1.5), RAISE, exc=(TE,)), M("np.int64", const(np.int64(v)), VALID, SAME),
                M("-1", const(-1), EITHER, exc=(VE,)), M("2^64", const(2**64), EITHER, exc=(VE, TE))]

    add("data.augment",
        cases_for("data.augment", "augment", lambda kw: data.augment(**kw), aug_base,
                  dict(images=images_role,
                       crop=_int(lo=1, hi=8, pair=True, big=RAISE, big_exc=(VE,), type_exc=(TE, VE)),
                       padding=_int(lo=0, pair=True, big=EITHER, big_exc=(VE,), type_exc=(TE, VE)),  # zeros
                       flip=flagarg, mean=real_role(False), std=real_role(True), seed=seed_role),
                  lite_ints=True))


# ---------------------------------------------------------------------------------------
# The tests


for _build in (_build_conv2d, _build_conv_transpose2d, _build_linear, _build_pools, _build_elementwise,
               _build_softmax, _build_losses, _build_dropout, _build_batch_norm, _build_lrn, _build_toplevel,
               _build_gradcheck, _build_summary, _build_nn, _build_nn_extras, _build_nn_losses, _build_optim,
               _build_data, _build_classic):
    _build()
del _build

SUMMARY = {}
SLOWEST = {}


def test_case_ids_are_unique_and_cover_the_api():
    ids = [c.id for cases in CASES.values() for c in cases]
    duplicates = sorted(i for i, n in Counter(ids).items() if n > 1)
    assert not duplicates, duplicates
    covered = {g.split(".", 1)[1].split("-")[0] for g in CASES if g.startswith("F.")}
    assert set(F.__all__) <= covered, sorted(set(F.__all__) - covered)
    layers = {g.split(".", 1)[1] for g in CASES if g.startswith("nn.")}
    assert {n for n in nn.__all__ if n not in ("Module", "deconvnet")} <= layers
    for pattern in KNOWN_FAILURES:
        assert any(fnmatch.fnmatchcase(i, pattern) for i in ids), f"KNOWN_FAILURES entry matches no case: {pattern}"


@pytest.fixture(scope="module", autouse=True)
def _data_files_and_summary(request):
    _write_data_files()
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or not SUMMARY:
        return
    total = Counter()
    lines = ["", f"fuzz: cases per function and outcome class ({JOBS} at a time):"]
    for group, counts in SUMMARY.items():
        total.update(counts)
        lines.append(f"  {group:34s} {sum(counts.values()):5d}  " +
                     ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    lines.append(f"  {'total':34s} {sum(total.values()):5d}  " +
                 ", ".join(f"{k} {v}" for k, v in sorted(total.items())))
    seconds, case_id = max(SLOWEST.values())
    lines.append(f"  slowest case: {case_id} ({seconds:.2f} s, with {JOBS} running)")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        for line in lines:
            reporter.write_line(line)


@pytest.mark.parametrize("group", list(CASES))
def test_fuzz(group):
    counts = Counter()
    unexpected, xpassed = [], []
    slowest = (0.0, "")
    for case, (verdict, cls, detail, seconds) in zip(CASES[group], run_cases(CASES[group])):
        slowest = max(slowest, (seconds, case.id))
        known = [p for p in KNOWN_FAILURES if fnmatch.fnmatchcase(case.id, p)]
        if verdict == "pass":
            counts[cls] += 1
            if known:
                xpassed.append(f"{case.id}: passes now ({cls}); remove KNOWN_FAILURES[{known[0]!r}]")
        else:
            counts[f"FAIL-{cls}" if not known else f"known-{cls}"] += 1
            if not known:
                unexpected.append(f"{case.id} [{case.expect}]: {cls}: {detail}")
    SUMMARY[group] = counts
    SLOWEST[group] = slowest
    problems = unexpected + xpassed
    assert not problems, f"{len(problems)} of {len(CASES[group])} cases:\n" + "\n".join(problems)
