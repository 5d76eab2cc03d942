"""The GPU path above the kernels, on the CPU: cnnkit's dispatch, modules, optimisers,
CLI and bench running on a stand-in CuPy (tests/cuda_host/device.py) whose arrays are
run by cnnkit.cuda.Backend on the host-compiled kernels, and whose every host<->device
copy is recorded.

- No op of cnnkit.functional copies to or from the host, except the one documented
  device-to-host read of an op that checks indices (switches, class targets).
- Module.to / .cuda / .cpu move parameters, gradients and buffers; forward, backward
  and the optimisers' steps run on device arrays and equal the CPU path.
- `cnnkit train --device cuda` and `cnnkit bench --device cuda` run there, and fail
  with one line and a non-zero status where there is no GPU.
"""

import copy
import importlib.util
import io
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import cnnkit
from cnnkit import _device, bench, cli, models, nn, optim
from cnnkit import functional as F

from conftest import assert_close
from cuda_host.device import DeviceArray, standin_gpu

# What an op may read back: the 2 int64 of its index check (first bad position, value).
INDEX_CHECK = ("D->H", "asnumpy", (2,))
CHECKED_OPS = {"max_pool2d_backward", "max_unpool2d", "max_unpool2d_backward", "cross_entropy",
               "cross_entropy_backward"}


@pytest.fixture
def gpu(monkeypatch):
    # grids of at most 8 blocks: the host runs the per-channel reductions' blocks one barrier at a time
    with standin_gpu(monkeypatch, max_blocks=8) as g:
        yield g


def device_arrays(result):
    """The arrays in an op's result (tuples and BatchNormSaved flattened)."""
    if isinstance(result, tuple):
        return [a for r in result for a in device_arrays(r)]
    return [result] if isinstance(result, np.ndarray) else []


def op_cases(gpu, rng):
    """op name -> a call of it on device arrays (float32), or a list of calls."""
    d = lambda *shape: gpu.asarray(rng.standard_normal(shape).astype(np.float32))  # noqa: E731
    x, w, b = d(2, 3, 6, 6), d(4, 3, 3, 3), d(4)
    wt, bt = d(3, 2, 3, 3), d(2)
    xl, wl, bl = d(5, 7), d(4, 7), d(4)
    logits, target = d(5, 4), gpu.asarray(rng.integers(0, 4, 5))
    gamma, beta, mean, var = d(3), d(3), d(3), gpu.asarray(np.ones(3, np.float32))
    gy, gyl = d(2, 4, 6, 6), d(5, 4)
    pooled, switches = F.max_pool2d(x, 2, return_indices=True)
    y_t = F.conv_transpose2d(x, wt, bt, stride=2)
    _, mask = F.dropout(x, 0.5, seed=1)
    _, saved = F.batch_norm(x, gamma, beta, mean, var)
    _, saved_eval = F.batch_norm(x, gamma, beta, mean, var, training=False)
    gpu.transfers.clear()
    return {
        "conv2d": lambda: F.conv2d(x, w, b, padding=1),
        "conv2d_backward": lambda: F.conv2d_backward(gy, x, w, padding=1),
        "conv_transpose2d": lambda: F.conv_transpose2d(x, wt, bt, stride=2),
        "conv_transpose2d_backward": lambda: F.conv_transpose2d_backward(y_t, x, wt, stride=2),
        "linear": lambda: F.linear(xl, wl, bl),
        "linear_backward": lambda: F.linear_backward(gyl, xl, wl),
        "max_pool2d": lambda: F.max_pool2d(x, 2, return_indices=True),
        "max_pool2d_backward": lambda: F.max_pool2d_backward(pooled, switches, x.shape),
        "max_unpool2d": lambda: F.max_unpool2d(pooled, switches, 2),
        "max_unpool2d_backward": lambda: F.max_unpool2d_backward(x, switches),
        "avg_pool2d": lambda: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True),
        "avg_pool2d_backward": lambda: F.avg_pool2d_backward(pooled, x.shape, 2),
        "lp_pool2d": lambda: F.lp_pool2d(x, 2.0, 2),
        "lp_pool2d_backward": [lambda: F.lp_pool2d_backward(pooled, x, 2.0, 2),
                               lambda: F.lp_pool2d_backward(pooled, x, float("inf"), 2)],
        "relu": lambda: F.relu(x),
        "relu_backward": lambda: F.relu_backward(x, x),
        "sigmoid": lambda: F.sigmoid(x),
        "sigmoid_backward": lambda: F.sigmoid_backward(x, x),
        "tanh": lambda: F.tanh(x),
        "tanh_backward": lambda: F.tanh_backward(x, x),
        "softmax": lambda: F.softmax(x, dim=1),
        "log_softmax": lambda: F.log_softmax(x),
        "softmax_backward": lambda: F.softmax_backward(x, x, dim=1),
        "log_softmax_backward": lambda: F.log_softmax_backward(x, x),
        "cross_entropy": [lambda: F.cross_entropy(logits, target),
                          lambda: F.cross_entropy(logits, target, reduction="none")],
        "cross_entropy_backward": lambda: F.cross_entropy_backward(logits, target, reduction="sum"),
        "mse_loss": [lambda: F.mse_loss(x, x), lambda: F.mse_loss(x, x, reduction="none")],
        "mse_loss_backward": lambda: F.mse_loss_backward(xl, xl),
        "dropout": [lambda: F.dropout(x, 0.5, seed=3), lambda: F.dropout(x, 0.5, training=False)],
        "dropout_backward": [lambda: F.dropout_backward(x, mask, 0.5), lambda: F.dropout_backward(x, None, 0.5)],
        "batch_norm": [lambda: F.batch_norm(x, gamma, beta, mean, var), lambda: F.batch_norm(x, None, None),
                       lambda: F.batch_norm(x, gamma, beta, mean, var, training=False)],
        "batch_norm_backward": [lambda: F.batch_norm_backward(x, saved), lambda: F.batch_norm_backward(x, saved_eval)],
        "local_response_norm": lambda: F.local_response_norm(x, 3),
        "local_response_norm_backward": lambda: F.local_response_norm_backward(x, x, 3),
    }


def dispatched_ops():
    """Every op of cnnkit.functional: the names of its __all__ that the backend runs
    (all but the CPU's algorithm choosers, which test_..._has_a_copy_count_case checks)."""
    return {n for n in F.__all__ if hasattr(cnnkit.cuda.Backend, n)}


def check_no_copies(gpu, name, calls):
    """Runs each call; AssertionError unless it copied nothing between host and device
    (but for the one index check of an op that has one) and returned device arrays."""
    for call in calls if isinstance(calls, list) else [calls]:
        gpu.transfers.clear()
        arrays = device_arrays(call())
        assert arrays, f"{name}: returned no array"
        for a in arrays:
            assert isinstance(a, DeviceArray), f"{name}: returned a host {type(a).__name__}"
        copies = list(gpu.transfers)
        assert copies == ([INDEX_CHECK] if name in CHECKED_OPS else []), f"{name}: copies {copies}"


def test_cuda_host_every_dispatched_op_has_a_copy_count_case(gpu, rng):
    assert set(op_cases(gpu, rng)) == dispatched_ops()
    assert set(F.__all__) - dispatched_ops() == {"conv2d_algorithm", "conv_transpose2d_algorithm"}


@pytest.mark.parametrize("name", sorted(dispatched_ops()))
def test_cuda_host_op_copies_nothing_between_host_and_device(name, gpu, rng):
    check_no_copies(gpu, name, op_cases(gpu, rng)[name])


@pytest.mark.parametrize("leak", ["asnumpy", "get", "float", "item", "bool", "asarray", "set", "setitem", "index"])
def test_cuda_host_copy_count_catches_a_copy(leak, gpu, rng, monkeypatch):
    """The count is no formality: an op that copies, in any of these ways, fails it."""
    backend, relu = cnnkit.cuda.backend(), cnnkit.cuda.backend().relu

    def leaky(x):
        y = relu(x)
        {
            "asnumpy": lambda: gpu.asnumpy(y), "get": lambda: y.get(), "float": lambda: float(y.sum()),
            "item": lambda: y[0, 0, 0, 0].item(), "bool": lambda: bool((y > 0).all()),
            "asarray": lambda: gpu.asarray(np.zeros(2, np.float32)), "set": lambda: y.set(np.zeros(y.shape)),
            "setitem": lambda: y.__setitem__(0, np.zeros(y.shape[1:], np.float32)),
            "index": lambda: [0, 1][y[0, 0, 0, 0].astype(np.int64)],
        }[leak]()
        return y

    monkeypatch.setattr(backend, "relu", leaky)
    with pytest.raises(AssertionError, match="relu: copies"):
        check_no_copies(gpu, "relu", op_cases(gpu, rng)["relu"])


def test_cuda_host_copy_count_catches_a_host_result(gpu, rng, monkeypatch):
    backend = cnnkit.cuda.backend()
    monkeypatch.setattr(backend, "tanh", lambda x: np.zeros(x.shape, x.dtype))
    with pytest.raises(AssertionError, match="tanh: returned a host ndarray"):
        check_no_copies(gpu, "tanh", op_cases(gpu, rng)["tanh"])


def test_cuda_host_standin_refuses_host_operands(gpu):
    x = gpu.zeros(3, np.float32)
    with pytest.raises(TypeError, match="a host numpy.ndarray among device operands"):
        x + np.ones(3, np.float32)
    with pytest.raises(TypeError, match="a host numpy.ndarray among device operands"):
        gpu.maximum(x, np.ones(3, np.float32))
    kernel = cnnkit.cuda.backend().kernel("activation", "relu_forward", np.float32)
    with pytest.raises(TypeError, match="argument 1: a host numpy.ndarray passed to a GPU kernel"):
        kernel((1,), (32,), (x, np.zeros(3, np.float32), np.int64(3)))


# ---------------------------------------------------------------------------------------
# cnnkit._device


def test_cuda_host_array_module(gpu):
    assert _device.array_module(np.zeros(2)) is np
    assert _device.array_module(gpu.zeros(2)) is gpu
    assert _device.array_module([1.0]) is np
    assert _device.describe(gpu.zeros(2)) == "cuda:0" and _device.describe(np.zeros(2)) == "cpu"


def test_cuda_host_array_module_never_imports_cupy(monkeypatch):
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    assert _device.array_module(np.zeros(1).view(np.matrix)) is np
    assert "cupy" not in sys.modules


@pytest.mark.parametrize("device, parsed", [("cpu", ("cpu", None)), ("cuda", ("cuda", None)), ("cuda:0", ("cuda", 0)),
                                            ("cuda:12", ("cuda", 12))])
def test_cuda_host_parse_device(device, parsed):
    assert _device.parse_device(device, "f: device") == parsed


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:-1", "cuda:x", "cpu:0", "CUDA", " cuda", 0, None])
def test_cuda_host_parse_device_errors(bad):
    message = f"f: device: expected 'cpu', 'cuda' or 'cuda:N' (N a device index), got {bad!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        _device.parse_device(bad, "f: device")


def test_cuda_host_moves(gpu):
    a = np.arange(6.0).reshape(2, 3)
    d = _device.to_device(a, "cuda")
    assert isinstance(d, DeviceArray) and gpu.transfers == [("H->D", "asarray", (2, 3))]
    assert _device.to_device(d, "cuda", 0) is d and _device.to_device(a, "cpu") is a
    assert _device.move_like(d, gpu.zeros(1)) is d
    back = _device.to_host(d)
    assert type(back) is np.ndarray and np.array_equal(back, a) and gpu.transfers[-1] == ("D->H", "asnumpy", (2, 3))
    assert type(_device.move_like(d, a)) is np.ndarray


# ---------------------------------------------------------------------------------------
# Modules


def every_layer_net():
    """A float64 network through every layer (its output (2, 4))."""
    pool = nn.MaxPool2d(2)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.LocalResponseNorm(3), nn.Softmax(dim=1),
        pool, nn.MaxUnpool2d(pool), nn.AvgPool2d(2), nn.ConvTranspose2d(4, 3, 2, stride=2), nn.LPPool2d(2, 2),
        nn.Tanh(), nn.Dropout(0.3), nn.Flatten(), nn.Linear(48, 5), nn.Sigmoid(), nn.Linear(5, 4), nn.LogSoftmax(dim=1),
    ).to(np.float64)


def forward_backward(model, x, gy):
    cnnkit.manual_seed(5)  # the same dropout masks on both devices
    y = model(x)
    gx = model.backward(gy)
    return y, gx, [p.grad for p in model.parameters()], [b for _, b in model.named_buffers()]


def test_cuda_host_module_to_cuda_and_back(gpu):
    cnnkit.manual_seed(0)
    model = every_layer_net()
    params = list(model.parameters())
    before = model.state_dict()
    for p in params:
        p.grad += 1.0
    assert model.to("cuda") is model
    assert [id(p) for p in model.parameters()] == [id(p) for p in params]  # an optimiser keeps them
    for p in params:
        assert isinstance(p.data, DeviceArray) and isinstance(p.grad, DeviceArray)
        assert p.data.dtype == np.float64 and p.data.flags.c_contiguous
    bn = model[1]
    assert isinstance(bn.running_mean, DeviceArray) and isinstance(bn.running_var, DeviceArray)
    assert all(isinstance(b, DeviceArray) for _, b in model.named_buffers())
    state = model.state_dict()  # host copies
    assert all(type(v) is np.ndarray for v in state.values())
    assert all(np.array_equal(state[k], before[k]) for k in before)
    assert model.cuda() is model and model.to("cuda:0") is model and model.cuda(0) is model
    assert model.cpu() is model
    for p in params:
        assert type(p.data) is np.ndarray and type(p.grad) is np.ndarray
        np.testing.assert_array_equal(p.grad, 1.0)
    assert all(type(b) is np.ndarray for _, b in model.named_buffers())
    assert all(np.array_equal(v, before[k]) for k, v in model.state_dict().items())
    assert model.to("cpu") is model


def test_cuda_host_every_layer_on_device_equals_cpu(gpu, rng):
    cnnkit.manual_seed(1)
    cpu = every_layer_net()
    dev = copy.deepcopy(cpu).to("cuda")
    x = rng.standard_normal((2, 2, 8, 8))
    gy = rng.standard_normal((2, 4))
    expected = forward_backward(cpu, x, gy)
    xd, gyd = gpu.asarray(x), gpu.asarray(gy)
    gpu.transfers.clear()
    got = forward_backward(dev, xd, gyd)
    # the one read of each switch check: MaxPool2d's backward, MaxUnpool2d's forward and backward
    assert gpu.transfers == [INDEX_CHECK] * 3
    y, gx, grads, buffers = got
    for a, b in zip([y, gx, *grads, *buffers], [expected[0], expected[1], *expected[2], *expected[3]]):
        assert isinstance(a, DeviceArray) and a.dtype == b.dtype and a.shape == b.shape
        # atol: the conv bias before batch norm has a gradient of rounding errors (exactly 0 in exact arithmetic)
        np.testing.assert_allclose(_device.to_host(a), b, rtol=1e-10, atol=1e-15)
    dev.eval()
    cpu.eval()
    assert_close(_device.to_host(dev(xd)), cpu(x), np.float64)


def train_step(model, opt, crit, x, t):
    model.zero_grad()
    loss = crit(model(x), t)
    model.backward(crit.backward())
    opt.step()
    return loss


@pytest.mark.parametrize("make_opt", [
    lambda p: optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=5e-4),
    lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
    lambda p: optim.Adam(p, lr=1e-3, weight_decay=1e-4),
], ids=["sgd", "nesterov", "adam"])
def test_cuda_host_training_steps_equal_cpu(make_opt, gpu, rng):
    cnnkit.manual_seed(2)
    # LeNet's layers, fewer channels (the host runs a block's threads one barrier at a time)
    cpu = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(2, 3, 3), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 10)).to(np.float64)
    dev = copy.deepcopy(cpu).to("cuda")
    opt_cpu, opt_dev = make_opt(cpu.parameters()), make_opt(dev.parameters())
    crit_cpu, crit_dev = nn.CrossEntropyLoss(), nn.CrossEntropyLoss()
    x, t = rng.standard_normal((3, 1, 8, 8)), rng.integers(0, 10, 3)
    xd, td = gpu.asarray(x), gpu.asarray(t)
    for _ in range(2):  # the second step uses the optimiser's state
        expected = train_step(cpu, opt_cpu, crit_cpu, x, t)
        gpu.transfers.clear()
        loss = train_step(dev, opt_dev, crit_dev, xd, td)
        # the loss (a float) and the index checks: cross_entropy's two, one per max pool backward
        assert sorted(gpu.transfers) == sorted([("D->H", "__float__", ())] + [INDEX_CHECK] * 4)
        assert abs(loss - expected) <= 1e-12 * max(1.0, abs(expected))
    for p, q in zip(dev.parameters(), cpu.parameters()):
        assert isinstance(p.data, DeviceArray)
        assert_close(_device.to_host(p.data), q.data, np.float64)


@pytest.mark.parametrize("make_opt", [lambda p: optim.SGD(p, lr=0.1, momentum=0.5), lambda p: optim.Adam(p, lr=0.1)],
                         ids=["sgd", "adam"])
def test_cuda_host_optimizer_state_follows_a_moved_model(make_opt, gpu):
    def run(move):
        model = nn.Linear(3, 2, dtype=np.float64)
        model.weight.data[...] = 0.5
        model.bias.data[...] = -0.25
        opt = make_opt(model.parameters())
        for step in range(4):
            if step == 2:
                move(model)
            for p in model.parameters():
                p.grad.fill(0.125 * (step + 1))
            gpu.transfers.clear()
            opt.step()
            if step != 2:
                assert gpu.transfers == []  # updates in place on the device, state included
        return model

    moved = run(lambda m: m.to("cuda"))
    stayed = run(lambda m: None)
    for p, q in zip(moved.parameters(), stayed.parameters()):
        assert isinstance(p.data, DeviceArray)
        np.testing.assert_allclose(_device.to_host(p.data), q.data, rtol=1e-15)
    back = run(lambda m: m.to("cuda").cpu())  # and back to the host again
    assert all(type(p.data) is np.ndarray for p in back.parameters())


def test_cuda_host_optimizer_grad_on_another_device(gpu):
    p = nn.Parameter(np.zeros(3))
    p.grad = gpu.zeros(3)
    with pytest.raises(ValueError, match=r"^SGD.step: grad: params\[0\].grad: expected an array on cpu "
                                         r"\(the parameter's device\), got one on cuda:0$"):
        optim.SGD([p], lr=0.1).step()


def test_cuda_host_parameter_on_device(gpu):
    p = nn.Parameter(gpu.asarray(np.ones((2, 2), np.float32)))
    assert isinstance(p.data, DeviceArray) and isinstance(p.grad, DeviceArray)
    with pytest.raises(TypeError, match=r"^Parameter.__array__: data: expected a host array for NumPy, got one on "
                                        r"cuda:0 \(move its module with .cpu\(\), or copy it with cupy.asnumpy\)$"):
        np.asarray(p)
    with pytest.raises(TypeError, match="Parameter: data: expected a float32 or float64 array, got int64"):
        nn.Parameter(gpu.zeros(2, np.int64))


@pytest.mark.parametrize("layer, shape", [(lambda: nn.Linear(3, 2), (4, 3)), (lambda: nn.Conv2d(1, 2, 3), (1, 1, 5, 5)),
                                          (lambda: nn.BatchNorm2d(2), (2, 2, 3, 3))], ids=["linear", "conv", "bn"])
def test_cuda_host_layer_input_on_another_device(layer, shape, gpu):
    m = layer()
    name = type(m).__name__
    x = np.zeros(shape, np.float32)
    with pytest.raises(TypeError, match=rf"^{name}: input: expected an array on cpu \(the device of the layer's "
                                        r"parameters; move the input, or the layer with .to\), got one on cuda:0$"):
        m(gpu.asarray(x))
    m.to("cuda")
    with pytest.raises(TypeError, match=rf"^{name}: input: expected an array on cuda:0 .* got one on cpu$"):
        m(x)
    with pytest.raises(TypeError, match=rf"^{name}: input: expected float32 \(the dtype of the layer's parameters"):
        m(gpu.zeros(shape, np.float64))
    with pytest.raises(TypeError, match=rf"^{name}: input: expected a float32 or float64 array, got int32$"):
        m(gpu.zeros(shape, np.int32))


def test_cuda_host_losses_on_device(gpu, rng):
    logits, target = rng.standard_normal((4, 3)), rng.integers(0, 3, 4)
    weights = rng.standard_normal(4)
    cpu, dev = nn.CrossEntropyLoss(reduction="none"), nn.CrossEntropyLoss(reduction="none")
    expected = cpu(logits, target)
    got = dev(gpu.asarray(logits), gpu.asarray(target))
    assert isinstance(got, DeviceArray)
    assert_close(_device.to_host(got), expected, np.float64)
    g = dev.backward(gpu.asarray(weights))
    assert isinstance(g, DeviceArray)
    assert_close(_device.to_host(g), cpu.backward(weights), np.float64)
    gpu.transfers.clear()
    scaled = dev.backward(2.5)
    assert gpu.transfers == [INDEX_CHECK]  # the op's index check; a number scales on the device
    assert_close(_device.to_host(scaled), cpu.backward(2.5), np.float64)
    with pytest.raises(TypeError, match=r"^CrossEntropyLoss.backward: grad_output: expected an array on cuda:0 "
                                        r"\(the loss's device\), got one on cpu$"):
        dev.backward(weights)
    mse = nn.MSELoss()
    loss = mse(gpu.asarray(logits), gpu.asarray(logits * 0.5))
    assert isinstance(loss, float) and abs(loss - nn.MSELoss()(logits, logits * 0.5)) < 1e-12


def test_cuda_host_state_dict_round_trip_on_device(gpu, tmp_path):
    cnnkit.manual_seed(3)
    src = every_layer_net()
    dst = every_layer_net().to("cuda")
    path = src.save(tmp_path / "w")
    dst.load(path)
    for (k, a), b in zip(dst.state_dict().items(), src.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=k)
    assert all(isinstance(p.data, DeviceArray) for p in dst.parameters())
    dst.load_state_dict({k: gpu.asarray(v) for k, v in src.state_dict().items()})  # device values too
    cpu = every_layer_net()
    cpu.load_state_dict(dst.state_dict())
    cpu.load_state_dict({k: _device.to_device(v, "cuda") for k, v in src.state_dict().items()})
    assert all(np.array_equal(a, b) for a, b in zip(cpu.state_dict().values(), src.state_dict().values()))


def test_cuda_host_deconvnet_on_device(gpu, rng):
    from cnnkit.nn.deconvnet import deconvnet

    cnnkit.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(12, 2)).to(np.float64)
    x = rng.standard_normal((1, 1, 4, 4))
    expected = deconvnet(model, x, 2, 1)
    got = deconvnet(copy.deepcopy(model).to("cuda"), gpu.asarray(x), 2, 1)
    assert isinstance(got, DeviceArray)
    assert_close(_device.to_host(got), expected, np.float64)


# ---------------------------------------------------------------------------------------
# Devices that are not there, and malformed ones


@pytest.mark.parametrize("call, where", [(lambda m: m.to("cuda"), "Linear.to: device"),
                                         (lambda m: m.cuda(), "Linear.cuda: device")])
def test_cuda_host_module_to_cuda_without_cupy(call, where, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    m = nn.Linear(2, 2)
    with pytest.raises(RuntimeError, match=rf"^{re.escape(where)}: 'cuda' needs CuPy and a CUDA GPU, and CuPy is not "
                                           r"installed \(pip install cnnkit\[cuda\]"):
        call(m)
    assert type(m.weight.data) is np.ndarray


def test_cuda_host_module_to_cuda_without_gpu(monkeypatch):
    """CuPy installed, no GPU: where CuPy is missing, an empty module stands in for it."""
    if importlib.util.find_spec("cupy") is None:
        monkeypatch.setitem(sys.modules, "cupy", types.ModuleType("cupy"))
    monkeypatch.setattr(cnnkit.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"^Linear.to: device: 'cuda' needs a CUDA GPU, and CuPy sees none here "
                                           r"\(cupy.is_available\(\) is False\)$"):
        nn.Linear(2, 2).to("cuda:0")


def test_cuda_host_module_device_errors(gpu):
    m = nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"^Linear.to: device: expected 'cuda:N' with N < 1 \(the CUDA devices here\), "
                                         r"got 'cuda:1'$"):
        m.to("cuda:1")
    with pytest.raises(ValueError, match=r"^Linear.cuda: device: expected 'cuda:N' with N < 1 .*got 'cuda:3'$"):
        m.cuda(3)
    for bad in ("cuda:x", "cpu:0", "cuda:-1"):
        with pytest.raises(ValueError, match=rf"^Linear.to: device: expected 'cpu', 'cuda' or 'cuda:N' .*got '{bad}'$"):
            m.to(bad)
    with pytest.raises(ValueError, match=r"^Linear.cuda: device: expected a device index >= 0, got -1$"):
        m.cuda(-1)
    for bad in ("0", 1.0, True):
        with pytest.raises(TypeError, match=rf"^Linear.cuda: device: expected an int device index, got {type(bad).__name__}$"):
            m.cuda(bad)
    with pytest.raises(TypeError, match=r"^Linear.to: dtype: expected float32 or float64 \(or a device: 'cpu', 'cuda', "
                                        r"'cuda:N'\), got 'gpu'$"):
        m.to("gpu")
    assert type(m.weight.data) is np.ndarray  # nothing moved


# ---------------------------------------------------------------------------------------
# cnnkit train / bench --device cuda


def accuracy(text):
    return float(re.search(r"test accuracy: ([\d.]+)%", text).group(1))


def test_cuda_host_train_on_device_matches_cpu(gpu, capsys):
    pytest.importorskip("sklearn")
    args = ["train", "--model", "mlp", "--epochs", "1", "--limit", "96", "--batch-size", "32", "--seed", "1"]
    assert cli.main(args) == 0
    cpu = capsys.readouterr()
    gpu.transfers.clear()
    assert cli.main(args + ["--device", "cuda"]) == 0
    dev = capsys.readouterr()
    assert ", on cuda\n" in dev.err and " threads\n" in cpu.err
    assert abs(accuracy(dev.out) - accuracy(cpu.out)) <= 0.5
    h2d = [t for t in gpu.transfers if t[0] == "H->D"]
    assert h2d and all(t[1] == "asarray" for t in h2d)  # batches (and the model) go to the device, nothing else


@pytest.mark.parametrize("command", ["train", "bench"])
def test_cuda_host_device_cuda_without_cupy(command, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "cupy", None)
    assert cli.main([command, "--device", "cuda"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"cnnkit {command}: error: --device cuda: 'cuda' needs CuPy and a CUDA GPU, and CuPy is not "
                          "installed") and err.count("\n") == 1


@pytest.mark.parametrize("command", ["train", "bench"])
def test_cuda_host_device_cuda_without_gpu_in_a_subprocess(command):
    if cnnkit.cuda.is_available():
        pytest.skip("a GPU is here")
    package = str(Path(cnnkit.__file__).resolve().parent.parent)
    r = subprocess.run([sys.executable, "-m", "cnnkit", command, "--device", "cuda:0"], capture_output=True, text=True,
                       env={"PYTHONPATH": package, "PATH": "/usr/bin:/bin"}, timeout=120)
    assert r.returncode == 1 and r.stdout == ""
    assert re.fullmatch(rf"cnnkit {command}: error: --device cuda:0: 'cuda' needs (CuPy and )?a CUDA GPU, .*\n", r.stderr)


@pytest.mark.parametrize("command", ["train", "bench"])
def test_cuda_host_bad_device_is_a_usage_error(command, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([command, "--device", "gpu"])
    assert e.value.code == 2
    assert "argument --device: expected cpu, cuda or cuda:N, got 'gpu'" in capsys.readouterr().err


def test_cuda_host_bench_device_is_passed_to_run(gpu, monkeypatch):
    calls = []
    monkeypatch.setattr(bench, "run", lambda **kw: calls.append(kw))
    assert cli.main(["bench", "--quick", "--device", "cuda:0"]) == 0
    assert calls == [{"quick": True, "device": "cuda:0"}]


def small_benchmarks():
    return [
        bench.Benchmark(bench.ConvCase("tiny_conv", 2, 3, 4, 8, 3, padding=1), "fwd+bwd"),
        bench.Benchmark(bench.ConvCase("tiny_depthwise", 2, 4, 4, 8, 3, padding=1, groups=4), "fwd"),
        bench.Benchmark(bench.ConvCase("tiny_transposed", 2, 4, 2, 5, 4, stride=2, padding=1, transposed=True),
                        "fwd+bwd"),
        bench.Benchmark(bench.MaxPool("tiny_pool", (2, 3, 8, 8), kernel=2, stride=2), "fwd+bwd"),
        bench.Benchmark(bench.ReLU("tiny_relu", (2, 3, 4, 4)), "fwd+bwd"),
        bench.Benchmark(bench.Softmax("tiny_softmax", (4, 10)), "fwd+bwd"),
        bench.Benchmark(bench.CrossEntropy("tiny_ce", (8, 5)), "fwd+bwd"),
        bench.Benchmark(bench.LocalResponseNorm("tiny_lrn", (2, 6, 3, 3), size=3, alpha=1e-4, beta=0.75, k=2.0),
                        "fwd"),
        bench.Benchmark(bench.BatchNorm("tiny_bn", (2, 3, 4, 4)), "fwd+bwd"),
    ]


def test_cuda_host_bench_on_device(gpu, monkeypatch):
    monkeypatch.setattr(bench, "QUICK", bench.Settings(repeats=1, min_sample_s=0.0, batch_divisor=1, settle_s=0.0,
                                                       rewarm_share=0.0))
    monkeypatch.setattr(bench, "import_torch", lambda: None)
    out = io.StringIO()
    results = bench.run(quick=True, benchmarks=small_benchmarks(), file=out, device="cuda")
    text = out.getvalue()
    assert [r["status"] for r in results] == ["ok"] * len(results), text  # each passed its gate on the device
    assert all(r["torch_ms"] is None and r["cnnkit_ms"] > 0 and r["kernel"] is None for r in results)
    assert "float32 on stand-in GPU (host kernels) (CuPy stand-in, CUDA runtime 12000)" in text
    assert "torch: not installed" in text and "cupy.copyto, 64 MiB" in text
    assert gpu.synchronized > 0  # every sample waits for the device


def test_cuda_host_bench_on_device_with_torch_without_cuda(gpu, monkeypatch):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("torch has CUDA here")
    monkeypatch.setattr(bench, "QUICK", bench.Settings(repeats=1, min_sample_s=0.0, batch_divisor=1, settle_s=0.0,
                                                       rewarm_share=0.0))
    out = io.StringIO()
    results = bench.run(quick=True, benchmarks=small_benchmarks()[-2:], file=out, device="cuda")
    assert all(r["status"] == "ok" and r["torch_ms"] is None for r in results)
    assert f"torch: {torch.__version__}, built without CUDA: cnnkit timed alone" in out.getvalue()


def test_cuda_host_bench_torch_on_a_device():
    torch = pytest.importorskip("torch")
    on = bench._TorchOn(torch, "cpu")
    a = np.arange(3.0)
    t = on.from_numpy(a)
    leaf = bench._leaf(on, a)
    assert t.device.type == "cpu" and leaf.requires_grad and on.float64 is torch.float64
    np.testing.assert_array_equal(leaf.detach().numpy(), a)
    assert bench._to_numpy((t, leaf, 1.5))[2] == 1.5


def test_cuda_host_bench_device_errors(monkeypatch):
    with pytest.raises(ValueError, match=r"^cnnkit.bench.run: device: expected 'cpu', 'cuda' or 'cuda:N'.*got 'gpu'$"):
        bench.run(device="gpu", benchmarks=[])
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(RuntimeError, match=r"^cnnkit.bench.run: device cuda: 'cuda' needs CuPy and a CUDA GPU"):
        bench.run(device="cuda", benchmarks=[])
    with pytest.raises(SystemExit) as e:
        bench.main(["--device", "cuda"])
    assert e.value.code == 2


def test_cuda_host_summary_of_a_model_on_device(gpu):
    from cnnkit.summary import summary

    model = models.LeNet5(10)
    expected = str(summary(model, (1, 32, 32)))
    model.to("cuda")
    assert str(summary(model, (1, 32, 32))) == expected
    assert isinstance(model[0].weight.data, DeviceArray)
