"""Benchmarks of cnnkit's kernels on real layer shapes, side by side with PyTorch.

The case lists (CONV_CASES, LAYER_CASES) and the benchmarks built from them
(conv_benchmarks(): each case forward, each backward pass alone (bwd-data, bwd-weight), and
forward then backward; layer_benchmarks(): forward, and forward then backward)
are shared by the pytest-benchmark suites in bench/ and by `cnnkit bench`, which
calls run().

Every benchmark first checks cnnkit's result against its float64 NumPy reference
in cnnkit.reference (a correctness gate: a wrong kernel is never timed). It then times
cnnkit and, where it is installed, torch in the same run, in turns, in a few passes
over the whole table (Settings.rounds), and reports the best sample's time per call
after warm-up (on a shared machine, other jobs only ever add time: the best sample is
the one they disturbed least). Yardsticks are measured in the same run: for a
convolution, a bare sgemm (cnnkit._C.matmul) of the shape its forward pass lowers to;
for a bandwidth-bound layer, the machine's copy bandwidth (np.copyto, 64 MiB).

    python -m cnnkit.bench [--quick] [--threads N] [--device cpu|cuda|cuda:N]

On a GPU (device "cuda"), the inputs are copied to the device once, before timing, and
every sample waits for the device at its end; torch runs on CUDA there when it was built
with CUDA (else cnnkit is timed alone), and the yardsticks are CuPy's sgemm (cuBLAS)
and device copy bandwidth (cupy.copyto, 64 MiB).

cnnkit never needs torch: it is imported here only when a benchmark runs, if present.
"""

import argparse
import dataclasses
import math
import os
import sys
import time
import zlib
from dataclasses import dataclass

import numpy as np

from . import _C, _device, reference
from . import functional as _functional

F32 = np.float32

# A float32 result passes the gate when every entry is within RTOL times the largest
# magnitude of the float64 reference (sums of thousands of float32 terms agree to
# about 1e-6 of that); integer results (switches) must match exactly.
RTOL = 1e-4


@dataclass(frozen=True)
class Settings:
    repeats: int  # timed samples per function and round; the best of all is reported
    min_sample_s: float  # a sample loops over calls until it lasts at least this long
    batch_divisor: int  # divides each case's batch (dim 0), at least 1 remains
    # Pause before each sample. After a call, OpenBLAS's worker threads spin for about
    # 0.1 s (torch's OpenMP threads for about 10 ms): without the pause they would steal
    # a core from the function timed next.
    settle_s: float = 0.15
    # Untimed calls after the pause, as a share of the sample's calls: a core that has
    # just idled runs slowly for a few milliseconds (on a VM, its vCPU is rescheduled),
    # which would otherwise weigh on short kernels only.
    rewarm_share: float = 0.2
    # Passes over the whole table, each taking `repeats` samples of every function. A
    # neighbour's load on a shared machine comes in bursts of seconds: samples of one
    # case taken minutes apart are not all caught by the same burst (in one pass of 7
    # samples a case read 0.7-0.9x against its 1.3-1.7x in the passes before and after).
    rounds: int = 1


FULL = Settings(repeats=2, min_sample_s=0.05, batch_divisor=1, rounds=4)
QUICK = Settings(repeats=3, min_sample_s=0.01, batch_divisor=4)


class GateError(AssertionError):
    """A result disagrees with the float64 reference: the kernel is not timed."""


def import_torch():
    """torch where it is installed (the counterpart in every benchmark), else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch


# ---- convolution cases


@dataclass(frozen=True)
class ConvCase:
    """A convolution layer (square images and kernels). For a transposed convolution,
    size is the input's and the weight is (in_channels, out_channels / groups, k, k)."""

    name: str
    batch: int
    in_channels: int
    out_channels: int
    size: int
    kernel: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1
    transposed: bool = False

    kind = "conv"

    def out_size(self):
        if self.transposed:
            return _C.conv_transpose_out_size(self.size, self.kernel, self.stride, self.padding, 0, self.dilation)
        return _C.conv_out_size(self.size, self.kernel, self.stride, self.padding, self.padding, self.dilation)

    def describe(self, batch):
        s = f"{batch}x{self.in_channels}x{self.size}x{self.size} -> {self.out_channels} k{self.kernel}"
        extras = (("s", self.stride, 1), ("p", self.padding, 0), ("d", self.dilation, 1), ("g", self.groups, 1))
        for label, v, default in extras:
            if v != default:
                s += f" {label}{v}"
        return s

    def gemm_shape(self, batch):
        """(M, K, N) of one group's GEMM in the forward pass; the forward does `groups` of them."""
        g, k2 = self.groups, self.kernel * self.kernel
        if self.transposed:  # columns = W^T x, then col2im
            return self.out_channels // g * k2, self.in_channels // g, batch * self.size * self.size
        return self.out_channels // g, self.in_channels // g * k2, batch * self.out_size() ** 2


CONV_CASES = [
    ConvCase("alexnet_conv1", 8, 3, 96, 224, 11, stride=4, padding=2),
    ConvCase("alexnet_conv2", 8, 96, 256, 27, 5, padding=2),
    ConvCase("alexnet_conv3", 8, 256, 384, 13, 3, padding=1),
    ConvCase("alexnet_conv4", 8, 384, 384, 13, 3, padding=1),
    ConvCase("alexnet_conv5", 8, 384, 256, 13, 3, padding=1),
    ConvCase("vgg_3x3_64_128", 2, 64, 128, 112, 3, padding=1),
    ConvCase("resnet_1x1_256_64", 8, 256, 64, 56, 1),
    ConvCase("lenet_conv1", 64, 1, 6, 32, 5),
    ConvCase("dilated_3x3_d2", 8, 64, 64, 56, 3, padding=2, dilation=2),
    ConvCase("depthwise_3x3", 8, 128, 128, 56, 3, padding=1, groups=128),
    ConvCase("transposed_4x4_s2", 8, 128, 64, 28, 4, stride=2, padding=1, transposed=True),
]


# ---- layer cases (bandwidth-bound): inputs, the cnnkit and torch calls, the float64
# reference and the bytes the minimal algorithm reads and writes, forward and backward


def _leaf(torch, a):
    return torch.tensor(a, requires_grad=True)


class _TorchOn:
    """torch whose from_numpy and tensor put their tensors on a device (the cases'
    torch factories take host arrays)."""

    def __init__(self, torch, device):
        self._torch, self._device = torch, device

    def __getattr__(self, name):
        return getattr(self._torch, name)

    def from_numpy(self, a):
        return self._torch.from_numpy(a).to(self._device)

    def tensor(self, a, **kwargs):
        return self._torch.tensor(a, device=self._device, **kwargs)


def _fresh_grads(leaves):
    for t in leaves:
        t.grad = None


class LayerCase:
    kind = "layer"
    forward_needs = ()
    backward_needs = ()

    def __init__(self, name, shape):
        self.name, self.shape = name, tuple(shape)

    def describe(self, shape):
        return "x".join(map(str, shape))

    def output_names(self, backward):
        return self.forward_outputs + (self.backward_outputs if backward else ())


class MaxPool(LayerCase):
    """max_pool2d with switches (return_indices=True), backward from the switches."""

    forward_needs = ("max_pool2d",)
    backward_needs = ("max_pool2d_backward",)
    forward_outputs = ("output", "switches")
    backward_outputs = ("grad_input",)

    def __init__(self, name, shape, kernel, stride):
        super().__init__(name, shape)
        self.kernel, self.stride = kernel, stride

    def describe(self, shape):
        return f"{super().describe(shape)} k{self.kernel} s{self.stride}"

    def inputs(self, rng, shape):
        n, c, h, w = shape
        ho, wo = (_C.pool_out_size(v, self.kernel, self.stride, 0, 1, False) for v in (h, w))
        return {"x": rng.standard_normal(shape, F32), "g": rng.standard_normal((n, c, ho, wo), F32)}

    def cnnkit(self, F, a, backward):
        x, g, k, s = a["x"], a["g"], self.kernel, self.stride
        if not backward:
            return lambda: F.max_pool2d(x, k, s, return_indices=True)

        def step():
            y, switches = F.max_pool2d(x, k, s, return_indices=True)
            return y, switches, F.max_pool2d_backward(g, switches, x.shape)

        return step

    def torch(self, torch, a, backward):
        pool, k, s = torch.nn.functional.max_pool2d, self.kernel, self.stride
        if not backward:
            x = torch.from_numpy(a["x"])
            return lambda: pool(x, k, s, return_indices=True)
        x, g = _leaf(torch, a["x"]), torch.from_numpy(a["g"])

        def step():
            _fresh_grads([x])
            y, idx = pool(x, k, s, return_indices=True)
            y.backward(g)
            return y.detach(), idx, x.grad

        return step

    def reference(self, a, backward):
        y, switches = reference.max_pool2d(a["x"], self.kernel, self.stride, return_indices=True)
        if not backward:
            return y, switches
        return y, switches, reference.max_pool2d_backward(a["g"], switches, a["x"].shape)

    def nbytes(self, a, backward):
        x, out = a["x"].nbytes, a["g"].size * (4 + 8)  # float32 output + int64 switches
        return x + out + (out + x if backward else 0)


class ReLU(LayerCase):
    forward_needs = ("relu",)
    backward_needs = ("relu_backward",)
    forward_outputs = ("output",)
    backward_outputs = ("grad_input",)

    def inputs(self, rng, shape):
        return {"x": rng.standard_normal(shape, F32), "g": rng.standard_normal(shape, F32)}

    def cnnkit(self, F, a, backward):
        x, g = a["x"], a["g"]
        if not backward:
            return lambda: (F.relu(x),)
        return lambda: (F.relu(x), F.relu_backward(g, x))

    def torch(self, torch, a, backward):
        relu = torch.nn.functional.relu
        if not backward:
            x = torch.from_numpy(a["x"])
            return lambda: (relu(x),)
        x, g = _leaf(torch, a["x"]), torch.from_numpy(a["g"])

        def step():
            _fresh_grads([x])
            y = relu(x)
            y.backward(g)
            return y.detach(), x.grad

        return step

    def reference(self, a, backward):
        x = a["x"].astype(np.float64)
        y = np.maximum(x, 0)
        return (y, a["g"] * (x > 0)) if backward else (y,)

    def nbytes(self, a, backward):
        n = a["x"].nbytes
        return 2 * n + (3 * n if backward else 0)  # x -> y; (grad, x) -> grad_input


class Softmax(LayerCase):
    """softmax over the last dim; the backward takes the forward's output."""

    forward_needs = ("softmax",)
    backward_needs = ("softmax_backward",)
    forward_outputs = ("output",)
    backward_outputs = ("grad_input",)

    def inputs(self, rng, shape):
        return {"x": rng.standard_normal(shape, F32), "g": rng.standard_normal(shape, F32)}

    def cnnkit(self, F, a, backward):
        x, g = a["x"], a["g"]
        if not backward:
            return lambda: (F.softmax(x, dim=-1),)

        def step():
            y = F.softmax(x, dim=-1)
            return y, F.softmax_backward(g, y, dim=-1)

        return step

    def torch(self, torch, a, backward):
        softmax = torch.nn.functional.softmax
        if not backward:
            x = torch.from_numpy(a["x"])
            return lambda: (softmax(x, dim=-1),)
        x, g = _leaf(torch, a["x"]), torch.from_numpy(a["g"])

        def step():
            _fresh_grads([x])
            y = softmax(x, dim=-1)
            y.backward(g)
            return y.detach(), x.grad

        return step

    def reference(self, a, backward):
        y = reference.softmax(a["x"])
        if not backward:
            return (y,)
        g = a["g"].astype(np.float64)
        return y, y * (g - (g * y).sum(axis=-1, keepdims=True))

    def nbytes(self, a, backward):
        n = a["x"].nbytes
        return 2 * n + (3 * n if backward else 0)  # x -> y; (grad, y) -> grad_input


class CrossEntropy(LayerCase):
    """Mean cross-entropy of (N, C) logits and int64 targets; the backward's upstream gradient is 1."""

    forward_needs = ("cross_entropy",)
    backward_needs = ("cross_entropy_backward",)
    forward_outputs = ("loss",)
    backward_outputs = ("grad_input",)

    def inputs(self, rng, shape):
        return {"x": rng.standard_normal(shape, F32), "target": rng.integers(0, shape[1], shape[0], dtype=np.int64)}

    def cnnkit(self, F, a, backward):
        x, t = a["x"], a["target"]
        if not backward:
            return lambda: (F.cross_entropy(x, t),)
        return lambda: (F.cross_entropy(x, t), F.cross_entropy_backward(x, t))

    def torch(self, torch, a, backward):
        ce = torch.nn.functional.cross_entropy
        t = torch.from_numpy(a["target"])
        if not backward:
            x = torch.from_numpy(a["x"])
            return lambda: (ce(x, t),)
        x = _leaf(torch, a["x"])

        def step():
            _fresh_grads([x])
            loss = ce(x, t)
            loss.backward()
            return loss.detach(), x.grad

        return step

    def reference(self, a, backward):
        x, t = a["x"].astype(np.float64), a["target"]
        n = x.shape[0]
        p = reference.softmax(x)
        loss = np.array(-np.log(p[np.arange(n), t]).mean())
        if not backward:
            return (loss,)
        p[np.arange(n), t] -= 1
        return loss, p / n

    def nbytes(self, a, backward):
        read = a["x"].nbytes + a["target"].nbytes
        return read + (read + a["x"].nbytes if backward else 0)  # logits, targets -> loss; -> grad


class LocalResponseNorm(LayerCase):
    forward_needs = ("local_response_norm",)
    backward_needs = ("local_response_norm_backward",)
    forward_outputs = ("output",)
    backward_outputs = ("grad_input",)

    def __init__(self, name, shape, size, alpha, beta, k):
        super().__init__(name, shape)
        self.args = (size, alpha, beta, k)

    def describe(self, shape):
        size, alpha, beta, k = self.args
        return f"{super().describe(shape)} n{size} a{alpha:g} b{beta:g} k{k:g}"

    def inputs(self, rng, shape):
        return {"x": rng.standard_normal(shape, F32), "g": rng.standard_normal(shape, F32)}

    def cnnkit(self, F, a, backward):
        x, g, args = a["x"], a["g"], self.args
        if not backward:
            return lambda: (F.local_response_norm(x, *args),)
        return lambda: (F.local_response_norm(x, *args), F.local_response_norm_backward(g, x, *args))

    def torch(self, torch, a, backward):
        lrn, args = torch.nn.functional.local_response_norm, self.args
        if not backward:
            x = torch.from_numpy(a["x"])
            return lambda: (lrn(x, *args),)
        x, g = _leaf(torch, a["x"]), torch.from_numpy(a["g"])

        def step():
            _fresh_grads([x])
            y = lrn(x, *args)
            y.backward(g)
            return y.detach(), x.grad

        return step

    def reference(self, a, backward):
        y = reference.local_response_norm(a["x"], *self.args)
        return (y, reference.local_response_norm_backward(a["g"], a["x"], *self.args)) if backward else (y,)

    def nbytes(self, a, backward):
        n = a["x"].nbytes
        return 2 * n + (3 * n if backward else 0)  # x -> y; (grad, x) -> grad_input


class BatchNorm(LayerCase):
    """Training-mode batch norm over (N, H, W) per channel, running stats updated (on copies,
    so that every call starts from the same stats)."""

    forward_needs = ("batch_norm",)
    backward_needs = ("batch_norm_backward",)
    forward_outputs = ("output", "running_mean", "running_var")
    backward_outputs = ("grad_input", "grad_weight", "grad_bias")
    momentum, eps = 0.1, 1e-5

    def inputs(self, rng, shape):
        c = shape[1]
        return {
            "x": (rng.standard_normal(shape, F32) * 2 + 0.5).astype(F32),
            "gamma": (1 + 0.1 * rng.standard_normal(c, F32)).astype(F32),
            "beta": (0.1 * rng.standard_normal(c, F32)).astype(F32),
            "running_mean": (0.1 * rng.standard_normal(c, F32)).astype(F32),
            "running_var": (1 + rng.random(c, F32)).astype(F32),
            "g": rng.standard_normal(shape, F32),
        }

    def cnnkit(self, F, a, backward):
        x, g, gamma, beta, m, v = (a[k] for k in ("x", "g", "gamma", "beta", "running_mean", "running_var"))

        def step():
            rm, rv = m.copy(), v.copy()
            y, saved = F.batch_norm(x, gamma, beta, rm, rv, training=True, momentum=self.momentum, eps=self.eps)
            if not backward:
                return y, rm, rv
            return (y, rm, rv, *F.batch_norm_backward(g, saved))

        return step

    def torch(self, torch, a, backward):
        bn = torch.nn.functional.batch_norm
        m, v, g = (torch.from_numpy(a[k]) for k in ("running_mean", "running_var", "g"))
        make = _leaf if backward else (lambda torch, arr: torch.from_numpy(arr))
        x, gamma, beta = (make(torch, a[k]) for k in ("x", "gamma", "beta"))

        def step():
            rm, rv = m.clone(), v.clone()
            if not backward:
                return bn(x, rm, rv, gamma, beta, training=True, momentum=self.momentum, eps=self.eps), rm, rv
            _fresh_grads([x, gamma, beta])
            y = bn(x, rm, rv, gamma, beta, training=True, momentum=self.momentum, eps=self.eps)
            y.backward(g)
            return y.detach(), rm, rv, x.grad, gamma.grad, beta.grad

        return step

    def reference(self, a, backward):
        x = a["x"].astype(np.float64)
        gamma, beta = a["gamma"].astype(np.float64), a["beta"].astype(np.float64)
        count = x.size // x.shape[1]
        mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
        invstd = 1 / np.sqrt(var + self.eps)
        xhat = (x - mean[:, None, None]) * invstd[:, None, None]
        y = xhat * gamma[:, None, None] + beta[:, None, None]
        mom = self.momentum
        rm = (1 - mom) * a["running_mean"] + mom * mean
        rv = (1 - mom) * a["running_var"] + mom * var * count / (count - 1)
        if not backward:
            return y, rm, rv
        g = a["g"].astype(np.float64)
        gb, gg = g.sum(axis=(0, 2, 3)), (g * xhat).sum(axis=(0, 2, 3))
        scale = (gamma * invstd / count)[:, None, None]
        gx = scale * (count * g - gb[:, None, None] - xhat * gg[:, None, None])
        return y, rm, rv, gx, gg, gb

    def nbytes(self, a, backward):
        n = a["x"].nbytes
        # forward: read x for the statistics, read it again and write y;
        # backward: read (grad, x) for the two sums, read them again and write grad_input
        return 3 * n + (5 * n if backward else 0)


LAYER_CASES = [
    MaxPool("alexnet_pool1", (8, 96, 55, 55), kernel=3, stride=2),
    MaxPool("maxpool_2x2", (8, 64, 112, 112), kernel=2, stride=2),
    ReLU("relu", (8, 96, 55, 55)),
    Softmax("softmax", (256, 1000)),
    CrossEntropy("cross_entropy", (256, 1000)),
    LocalResponseNorm("alexnet_lrn", (8, 96, 55, 55), size=5, alpha=1e-4, beta=0.75, k=2.0),
    BatchNorm("batch_norm", (8, 64, 56, 56)),
]


# ---- benchmarks: a case in one mode, prepared with inputs


def _batch(n, settings):
    return max(1, n // settings.batch_divisor)


def _to_numpy(outputs):
    return tuple(_device.to_host(o) for o in outputs)


def _compare(what, got, want):
    want = np.asarray(want)
    if want.ndim == 0:  # a loss: a float, or a 0-d array
        try:
            got = float(got)
        except (TypeError, ValueError):
            raise GateError(f"{what}: expected a scalar, got {type(got).__name__}") from None
        if not abs(got - want) <= RTOL * max(abs(float(want)), 1.0):
            raise GateError(f"{what}: {got!r} differs from the reference {float(want)!r}")
        return
    if not isinstance(got, np.ndarray):
        raise GateError(f"{what}: expected an ndarray, got {type(got).__name__}")
    if got.shape != want.shape:
        raise GateError(f"{what}: shape {got.shape}, expected {want.shape}")
    if want.dtype.kind in "iu":
        if got.dtype != np.int64:
            raise GateError(f"{what}: dtype {got.dtype}, expected int64")
        wrong = int(np.count_nonzero(got != want))
        if wrong:
            raise GateError(f"{what}: {wrong} of {want.size} entries differ from the reference")
        return
    if got.dtype != F32:
        raise GateError(f"{what}: dtype {got.dtype}, expected float32")
    bound = RTOL * float(np.max(np.abs(want))) if want.size else 0.0
    err = float(np.max(np.abs(got - want))) if want.size else 0.0
    if not err <= bound:  # also catches NaN
        raise GateError(f"{what}: max abs error {err:.3g} exceeds {RTOL:g} x max |reference| = {bound:.3g}")


class Prepared:
    """A benchmark with its inputs: cnnkit's call, torch's, the float64 reference (computed
    on first use), and the work of one call (flops for a convolution, else bytes moved)."""

    def __init__(self, benchmark, shape, cnnkit_fn, torch_factory, reference_fn, work, gemm=None, kernel=None):
        self.benchmark = benchmark
        self.shape = shape
        self.cnnkit = cnnkit_fn
        self._torch_factory = torch_factory
        self._reference_fn = reference_fn
        self._reference = None
        self.work = work
        self.gemm = gemm  # (M, K, N) of one group's forward GEMM, for a convolution
        self.kernel = kernel  # the forward's algorithm ('winograd', 'gemm', 'direct'), for a convolution

    @property
    def reference(self):
        if self._reference is None:
            self._reference = self._reference_fn()
        return self._reference

    def torch(self, torch):
        """torch's counterpart of the cnnkit call (same inputs, returns tensors)."""
        return self._torch_factory(torch)

    def check(self, outputs, who="cnnkit"):
        """The correctness gate: raises GateError unless outputs match the reference."""
        outputs = _to_numpy(outputs)
        names, ref = self.benchmark.output_names, self.reference
        if len(outputs) != len(ref):
            raise GateError(f"{self.benchmark.id}: {who} returned {len(outputs)} results, expected {len(ref)}")
        for name, got, want in zip(names, outputs, ref):
            _compare(f"{self.benchmark.id}: {who}: {name}", got, want)

    def info(self):
        unit = "flops" if self.benchmark.kind == "conv" else "bytes"
        info = {"shape": self.shape, unit: self.work}
        if self.kernel is not None:
            info["kernel"] = self.kernel
        return info


# A convolution's backward passes timed on their own: (mode, output_mask).
CONV_BACKWARD_PASSES = {"bwd-data": (True, False, False), "bwd-weight": (False, True, False)}


class Benchmark:
    """A case in one mode: 'fwd' (forward), 'fwd+bwd' (forward, then backward) or, for
    a convolution, one backward pass alone: 'bwd-data' (the input gradient) or
    'bwd-weight' (the weight gradient)."""

    def __init__(self, case, mode):
        assert mode in ("fwd", "fwd+bwd") or (case.kind == "conv" and mode in CONV_BACKWARD_PASSES)
        self.case, self.mode = case, mode
        self.kind = case.kind
        self.backward = mode == "fwd+bwd"
        self.id = f"{case.name}-{mode.replace('+', '_').replace('-', '_')}"

    def __repr__(self):
        return f"Benchmark({self.id})"

    @property
    def needs(self):
        """The cnnkit.functional names this benchmark calls."""
        if self.kind == "conv":
            fwd = "conv_transpose2d" if self.case.transposed else "conv2d"
            if self.mode in CONV_BACKWARD_PASSES:
                return (fwd + "_backward",)
            return (fwd, fwd + "_backward") if self.backward else (fwd,)
        return self.case.forward_needs + (self.case.backward_needs if self.backward else ())

    def missing(self):
        """The names in `needs` that cnnkit.functional does not have (yet)."""
        return [n for n in self.needs if not hasattr(_functional, n)]

    @property
    def output_names(self):
        if self.kind == "conv":
            if self.mode in CONV_BACKWARD_PASSES:
                return ("grad_input",) if self.mode == "bwd-data" else ("grad_weight",)
            return ("output", "grad_input", "grad_weight", "grad_bias") if self.backward else ("output",)
        return self.case.output_names(self.backward)

    def prepare(self, settings=FULL, device=("cpu", None)):
        """The benchmark with its inputs; cnnkit's on device ((kind, index) as
        cnnkit._device.parse_device gives), torch's tensors there too."""
        rng = np.random.default_rng(zlib.crc32(self.id.encode()))
        if self.kind == "conv":
            return self._prepare_conv(rng, settings, device)
        shape = (_batch(self.case.shape[0], settings),) + self.case.shape[1:]
        a = self.case.inputs(rng, shape)
        on_device = {k: _device.to_device(v, *device) for k, v in a.items()}
        return Prepared(
            self,
            self.case.describe(shape),
            self.case.cnnkit(_functional, on_device, self.backward),
            lambda torch: self.case.torch(torch, a, self.backward),
            lambda: self.case.reference(a, self.backward),
            self.case.nbytes(a, self.backward),
        )

    def _prepare_conv(self, rng, settings, device):
        c, backward, F = self.case, self.backward, _functional
        n = _batch(c.batch, settings)
        s, p, d, g = c.stride, c.padding, c.dilation, c.groups
        o = c.out_size()
        if c.transposed:
            w_shape = (c.in_channels, c.out_channels // g, c.kernel, c.kernel)
        else:
            w_shape = (c.out_channels, c.in_channels // g, c.kernel, c.kernel)
        fan_in = c.in_channels // g * c.kernel**2
        x = rng.standard_normal((n, c.in_channels, c.size, c.size), F32)
        w = (rng.standard_normal(w_shape, F32) / np.sqrt(fan_in)).astype(F32)
        b = rng.standard_normal(c.out_channels, F32)
        gy = rng.standard_normal((n, c.out_channels, o, o), F32)
        kw = dict(stride=s, padding=p, dilation=d, groups=g)

        fwd = F.conv_transpose2d if c.transposed else F.conv2d
        bwd = getattr(F, "conv_transpose2d_backward" if c.transposed else "conv2d_backward", None)
        algorithm = getattr(F, "conv_transpose2d_algorithm" if c.transposed else "conv2d_algorithm", None)
        # The CPU's algorithm of the timed pass (the GPU's convolution is im2col + cuBLAS, or
        # direct depthwise).
        kernel = None
        if algorithm is not None and device[0] == "cpu":
            grad = {"bwd-data": "input", "bwd-weight": "weight"}.get(self.mode)
            kernel = algorithm(x, w, **kw, grad=grad)
        xd, wd, bd, gyd = (_device.to_device(v, *device) for v in (x, w, b, gy))

        mask = CONV_BACKWARD_PASSES.get(self.mode)
        kept = None if mask is None else mask.index(True)  # the gradient a backward pass keeps

        def cnnkit_fn():
            if mask is not None:
                return (bwd(gyd, xd, wd, **kw, output_mask=mask)[kept],)
            y = fwd(xd, wd, bd, **kw)
            return (y, *bwd(gyd, xd, wd, **kw)) if backward else (y,)

        def torch_factory(torch):
            tf = torch.nn.functional
            op = tf.conv_transpose2d if c.transposed else tf.conv2d
            if mask is not None:  # one pass of aten's backward, as autograd runs it
                xt, wt, gyt = (torch.from_numpy(v) for v in (x, w, gy))
                args = ([s, s], [p, p], [d, d], c.transposed, [0, 0], g, list(mask))
                return lambda: (torch.ops.aten.convolution_backward(gyt, xt, wt, None, *args)[kept],)
            if not backward:
                xt, wt, bt = (torch.from_numpy(v) for v in (x, w, b))
                return lambda: (op(xt, wt, bt, **kw),)
            leaves = [_leaf(torch, v) for v in (x, w, b)]
            gyt = torch.from_numpy(gy)

            def step():
                _fresh_grads(leaves)
                y = op(*leaves, **kw)
                y.backward(gyt)
                return (y.detach(), *(t.grad for t in leaves))

            return step

        def reference_fn():
            ref_fwd = reference.conv_transpose2d if c.transposed else reference.conv2d
            ref_bwd = reference.conv_transpose2d_backward if c.transposed else reference.conv2d_backward
            if mask is not None:
                return (ref_bwd(gy, x, w, **kw, output_mask=mask)[kept],)
            y = ref_fwd(x, w, b, **kw)
            return (y, *ref_bwd(gy, x, w, **kw)) if backward else (y,)

        gemm = c.gemm_shape(n)
        flops = 2.0 * math.prod(gemm) * g * (3 if backward else 1)  # each pass: a GEMM of the forward's size
        return Prepared(self, c.describe(n), cnnkit_fn, torch_factory, reference_fn, flops, gemm, kernel)


def conv_benchmarks():
    return [Benchmark(c, m) for c in CONV_CASES for m in ("fwd", "bwd-data", "bwd-weight", "fwd+bwd")]


def layer_benchmarks():
    return [Benchmark(c, m) for c in LAYER_CASES for m in ("fwd", "fwd+bwd")]


def all_benchmarks():
    return conv_benchmarks() + layer_benchmarks()


# ---- timing


def _sample(fn, loops, sync):
    t0 = time.perf_counter()
    for _ in range(loops):
        fn()
    if sync is not None:  # the device's queued work is part of the sample
        sync()
    return (time.perf_counter() - t0) / loops


def time_interleaved(fns, settings=FULL, sync=None):
    """The best sample's seconds per call of each function. After a warm-up call each, a
    calibration call sets how many calls make one sample; then samples are taken in turns
    (f, g, f, g...) so that the functions see the same machine state, each after a pause
    that lets the previous function's spinning threads go to sleep and a few untimed
    calls that wake the cores up again. sync (a GPU's synchronize) ends every sample."""
    for fn in fns:
        fn()
    loops = [min(10_000, max(1, math.ceil(settings.min_sample_s / max(_sample(fn, 1, sync), 1e-7)))) for fn in fns]
    samples = [[] for _ in fns]
    for _ in range(settings.repeats):
        for fn, n, s in zip(fns, loops, samples):
            time.sleep(settings.settle_s)
            _sample(fn, max(1, math.ceil(n * settings.rewarm_share)), sync)
            s.append(_sample(fn, n, sync))
    return [min(s) for s in samples]


def _all_samples_at_once(settings):
    """settings for a yardstick timed on its own: all rounds' samples in one pass."""
    return dataclasses.replace(settings, repeats=settings.repeats * settings.rounds, rounds=1)


def copy_bandwidth(settings=FULL, xp=np, sync=None):
    """The copy bandwidth in GB/s: xp.copyto of 64 MiB of float32 (read + write); xp is
    numpy (the host's memory) or cupy (the GPU's)."""
    src = xp.ones(16 * 2**20, F32)
    dst = xp.zeros_like(src)
    (t,) = time_interleaved([lambda: xp.copyto(dst, src)], _all_samples_at_once(settings), sync)
    return 2 * src.nbytes / t / 1e9


def cpu_model():
    """The CPU's model name (/proc/cpuinfo on Linux), else what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown CPU"


def sgemm_gflops(settings=FULL, kernel=None):
    """The machine's sgemm rate on cnnkit's threads: a square float32 GEMM (2048, or
    1024 with --quick) through cnnkit._C.matmul, in GFLOPS, on the sgemm kernel chosen
    now or on `kernel` ('auto' or 'openblas', see cnnkit.set_sgemm_kernel)."""
    n = 1024 if settings is QUICK else 2048
    rng = np.random.default_rng(1)
    fn = _sgemm((n, n, n), rng, ("cpu", None))
    saved = "openblas" if _C.get_sgemm_kernel() == "openblas" else "auto"
    try:
        if kernel is not None:
            _C.set_sgemm_kernel(kernel)
        (t,) = time_interleaved([fn], _all_samples_at_once(settings))
    finally:
        _C.set_sgemm_kernel(saved)
    return 2.0 * n**3 / t / 1e9


def _sgemm(gemm, rng, device):
    m, k, n = gemm
    a, b = (_device.to_device(rng.standard_normal(shape, F32), *device) for shape in ((m, k), (k, n)))
    if device[0] == "cpu":
        return lambda: _C.matmul(a, b)
    xp = _device.array_module(a)
    return lambda: xp.matmul(a, b)  # cuBLAS


# ---- the table


_COLUMNS = (
    ("case", "<", 18), ("mode", "<", 10), ("shape", "<", 30), ("kernel", "<", 8), ("cnnkit ms", ">", 10),
    ("torch ms", ">", 9),
    ("ratio", ">", 6), ("GFLOPS", ">", 7), ("GB/s", ">", 6), ("share", ">", 7), ("of", "<", 0),
)


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def _row(r):
    if r["status"] != "ok":
        return f"{r['case']:<18} {r['mode']:<10} {r['status']}: {r['message']}"
    cells = (
        r["case"], r["mode"], r["shape"], r["kernel"] or "-", _fmt(r["cnnkit_ms"], ".3f"),
        _fmt(r["torch_ms"], ".3f"),
        _fmt(r["ratio"], ".2f"), _fmt(r["gflops"], ".1f"), _fmt(r["gbps"], ".1f"),
        "-" if r["share"] is None else f"{100 * r['share']:.0f}%",
        f"{r['yardstick']} {r['yardstick_rate']:.1f} {'GFLOPS' if r['yardstick'] == 'sgemm' else 'GB/s'}",
    )
    return " ".join(format(c, f"{a}{w}") for c, (_, a, w) in zip(cells, _COLUMNS)).rstrip()


def _geomean(values):
    values = [v for v in values if v]
    return (math.exp(sum(map(math.log, values)) / len(values)), len(values)) if values else (None, 0)


def _prepare_one(b, settings, torch, rng, device=("cpu", None)):
    """A benchmark's result row and what is timed for it: the functions (cnnkit's, then
    torch's where it runs, then a convolution's sgemm yardstick), its prepared case and
    whether torch is among them; (row, None, None, False) when it is not timed (skipped,
    wrong or failing)."""
    r = dict(id=b.id, case=b.case.name, kind=b.kind, mode=b.mode, shape=None, kernel=None, status="ok", message="",
             cnnkit_ms=None, torch_ms=None, ratio=None, gflops=None, gbps=None,
             yardstick=None, yardstick_rate=None, share=None)
    missing = b.missing()
    if missing:
        r.update(status="skipped", message="cnnkit.functional has no " + ", ".join(missing))
        return r, None, None, False
    try:
        p = b.prepare(settings, device)
        r["shape"], r["kernel"] = p.shape, p.kernel
        p.check(p.cnnkit())
        fns = [p.cnnkit]
        torch_fn = p.torch(torch) if torch is not None else None
        if torch_fn is not None:
            try:
                p.check(torch_fn(), who="torch")
            except GateError as e:  # a harness bug, not cnnkit's: time cnnkit alone
                r["message"] = f"torch not timed: {e}"
                torch_fn = None
            else:
                fns.append(torch_fn)
        if b.kind == "conv":
            fns.append(_sgemm(p.gemm, rng, device))
    except GateError as e:
        r.update(status="WRONG, not timed", message=str(e))
        return r, None, None, False
    except Exception as e:  # a kernel still being written must not stop the table
        r.update(status="error", message=f"{type(e).__name__}: {e}")
        return r, None, None, False
    return r, fns, p, torch_fn is not None


def _record(r, p, times, timed_torch, copy_gbps):
    """Fills row r from the best times (seconds per call) of its functions."""
    t = times[0]
    r["cnnkit_ms"] = 1e3 * t
    if timed_torch:
        r["torch_ms"] = 1e3 * times[1]
        r["ratio"] = times[1] / t
    if r["kind"] == "conv":
        r["gflops"] = p.work / t / 1e9
        r["yardstick"], r["yardstick_rate"] = "sgemm", 2.0 * math.prod(p.gemm) / times[-1] / 1e9
        r["share"] = r["gflops"] / r["yardstick_rate"]
    else:
        r["gbps"] = p.work / t / 1e9
        r["yardstick"], r["yardstick_rate"] = "copy", copy_gbps
        r["share"] = r["gbps"] / copy_gbps


def _run_all(benchmarks, settings, torch, copy_gbps, rng, device, sync):
    """Result rows of the benchmarks: every one is gated first, then all are timed in
    settings.rounds passes, each function's best sample over all of them kept."""
    prepared = [_prepare_one(b, settings, torch, rng, device) for b in benchmarks]
    best = [None if fns is None else [math.inf] * len(fns) for _, fns, _, _ in prepared]
    for _ in range(settings.rounds):
        for i, (r, fns, _, _) in enumerate(prepared):
            if fns is None or r["status"] != "ok":
                continue
            try:
                times = time_interleaved(fns, settings, sync)
            except Exception as e:
                r.update(status="error", message=f"{type(e).__name__}: {e}")
                continue
            best[i] = [min(a, b) for a, b in zip(best[i], times)]
    for (r, fns, p, timed_torch), times in zip(prepared, best):
        if fns is not None and r["status"] == "ok":
            _record(r, p, times, timed_torch, copy_gbps)
    return [r for r, _, _, _ in prepared]


def run(quick=False, threads=2, file=None, benchmarks=None, device="cpu"):
    """Runs the benchmarks (default: all of them) on device ("cpu", "cuda" or "cuda:N"),
    prints the table to `file` (default sys.stdout) and returns one dict per benchmark, with keys id, case, kind, mode, shape,
    kernel (a convolution's forward algorithm: see cnnkit.functional.conv2d_algorithm),
    status ('ok', 'skipped', 'error' or 'WRONG, not timed'), message, cnnkit_ms, torch_ms,
    ratio (torch_ms / cnnkit_ms: above 1, cnnkit is faster), gflops (convolutions), gbps
    (layers), yardstick ('sgemm' or 'copy'), yardstick_rate (GFLOPS or GB/s) and share
    (gflops or gbps over yardstick_rate). Missing values are None (printed as '-').

    A device that is malformed raises ValueError, "cuda" without CuPy or a GPU RuntimeError."""
    place = _device.require(device, "cnnkit.bench.run: device")
    xp, sync = np, None
    if place[0] == "cuda":
        xp = sys.modules["cupy"]
        sync = xp.cuda.Device(place[1]).synchronize
    file = sys.stdout if file is None else file
    settings = QUICK if quick else FULL
    benchmarks = all_benchmarks() if benchmarks is None else list(benchmarks)
    torch = import_torch()
    torch_on = torch  # the torch the benchmarks run
    if torch is not None and xp is not np:
        torch_on = _TorchOn(torch, device) if torch.cuda.is_available() else None
    saved_threads = _C.get_num_threads()
    saved_torch_threads = torch.get_num_threads() if torch is not None else None
    _C.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)

    def out(line=""):
        print(line, file=file, flush=True)

    try:
        quick_flag = " --quick" if quick else ""
        if xp is np:
            env = " ".join(f"{k}={os.environ[k]}" for k in sorted(os.environ) if k.startswith(("OPENBLAS_", "OMP_")))
            out(f"cnnkit bench{quick_flag}: float32, {threads} threads, "
                f"{_C.blas_config()}{', ' + env if env else ''}")
            kernel = _C.get_sgemm_kernel()
            rate = f"sgemm {sgemm_gflops(settings):.0f} GFLOPS on {threads} threads ({kernel}"
            if kernel != "openblas":
                rate += f"; OpenBLAS's {sgemm_gflops(settings, 'openblas'):.0f}"
            out(f"machine: {cpu_model()}, SIMD {_C.simd_level()}, {os.cpu_count()} CPUs; {rate}), measured now")
            torch_line = torch.__version__ if torch is not None else "not installed"
        else:
            name = xp.cuda.runtime.getDeviceProperties(xp.cuda.Device(place[1]).id)["name"]
            name = name.decode() if isinstance(name, bytes) else name
            out(f"cnnkit bench{quick_flag} --device {device}: float32 on {name} (CuPy {xp.__version__}, "
                f"CUDA runtime {xp.cuda.runtime.runtimeGetVersion()}); each sample ends with a device synchronize")
            torch_line = ("not installed" if torch is None else f"{torch.__version__} on CUDA" if torch_on is not None
                          else f"{torch.__version__}, built without CUDA: cnnkit timed alone")
        out(f"torch: {torch_line}; "
            f"best of {settings.repeats * settings.rounds} samples (each >= {1e3 * settings.min_sample_s:g} ms) "
            f"after warm-up, cnnkit and torch in turns, {settings.rounds} pass{'es' * (settings.rounds > 1)} "
            f"over the table")
        copy_gbps = copy_bandwidth(settings, xp, sync)
        out(f"ratio = torch ms / cnnkit ms (> 1: cnnkit faster); share = GFLOPS / sgemm GFLOPS of the forward's "
            f"GEMM shape, or GB/s / copy GB/s ({xp.__name__}.copyto, 64 MiB: {copy_gbps:.1f} GB/s)")
        out()
        out(" ".join(format(name, f"{a}{w}") for name, a, w in _COLUMNS).rstrip())
        results = _run_all(benchmarks, settings, torch_on, copy_gbps, np.random.default_rng(0), place, sync)
        for r in results:
            out(_row(r))
            if r["status"] == "ok" and r["message"]:
                out(f"    {r['message']}")
        out()
        parts = []
        for label, pick in (
            ("conv fwd", lambda r: r["kind"] == "conv" and r["mode"] == "fwd"),
            ("conv bwd-data", lambda r: r["kind"] == "conv" and r["mode"] == "bwd-data"),
            ("conv bwd-weight", lambda r: r["kind"] == "conv" and r["mode"] == "bwd-weight"),
            ("conv fwd+bwd", lambda r: r["kind"] == "conv" and r["mode"] == "fwd+bwd"),
            ("layers", lambda r: r["kind"] == "layer"),
        ):
            g, count = _geomean([r["ratio"] for r in results if pick(r) and r["status"] == "ok"])
            parts.append(f"{label} {_fmt(g, '.2f')} ({count} cases)")
        out("geometric mean of ratio (torch ms / cnnkit ms): " + ", ".join(parts))
        return results
    finally:
        _C.set_num_threads(saved_threads)
        if torch is not None:
            torch.set_num_threads(saved_torch_threads)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m cnnkit.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and a quarter of each batch")
    parser.add_argument("--threads", type=int, default=2, help="threads for cnnkit and torch (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads: expected a positive integer, got {args.threads}")
    try:
        _device.require(args.device, "--device")
    except (ValueError, RuntimeError) as e:
        parser.error(str(e))
    results = run(quick=args.quick, threads=args.threads, device=args.device)
    return 1 if any(r["status"] in ("error", "WRONG, not timed") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
