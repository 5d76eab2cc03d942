"""Modules, optimisers and gradients on a real GPU (skipped without one; the same code
paths run on the CPU through a stand-in CuPy in tests/test_cuda_host_modules.py).
"""

import copy

import numpy as np
import pytest

import cnnkit
from cnnkit import functional as F
from cnnkit import models, nn, optim
from cnnkit.gradcheck import gradcheck

cupy = pytest.importorskip("cupy")
if not cnnkit.cuda.is_available():
    pytest.skip("no CUDA device (cupy.is_available() is False)", allow_module_level=True)


def gpu(a):
    return cupy.asarray(a) if isinstance(a, np.ndarray) else a


def host(result):
    if isinstance(result, tuple):
        return tuple(host(r) for r in result)
    return cupy.asnumpy(result) if isinstance(result, cupy.ndarray) else result


def on_gpu(fn):
    """fn run on GPU copies of its NumPy arguments, with its results copied back."""
    return lambda *args: host(fn(*map(gpu, args)))


def test_cuda_module_round_trip():
    cnnkit.manual_seed(0)
    model = models.LeNet5(10, in_channels=1, input_size=16, padding=2)
    model.append(nn.Dropout(0.1))
    bn = nn.BatchNorm2d(6)
    model = nn.Sequential(*list(model)[:1], bn, *list(model)[1:])
    before = model.state_dict()
    params = list(model.parameters())
    assert model.cuda() is model
    assert list(model.parameters()) == params
    for p in params:
        assert isinstance(p.data, cupy.ndarray) and isinstance(p.grad, cupy.ndarray)
        assert p.data.device.id == cupy.cuda.runtime.getDevice()
    assert isinstance(bn.running_mean, cupy.ndarray) and isinstance(bn.running_var, cupy.ndarray)
    assert model.to("cuda:0") is model
    assert model.cpu() is model
    assert all(type(p.data) is np.ndarray for p in params)
    after = model.state_dict()
    assert all(np.array_equal(after[k], before[k]) for k in before)


def test_cuda_short_training_run_matches_cpu(rng):
    cnnkit.manual_seed(1)
    cpu = models.LeNet5(10, in_channels=1, input_size=16, padding=2, dtype=np.float64)
    dev = copy.deepcopy(cpu).to("cuda")
    runs = []
    for model in (cpu, dev):
        opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        crit = nn.CrossEntropyLoss()
        data = np.random.default_rng(2)
        losses = []
        for _ in range(5):
            x, t = data.standard_normal((16, 1, 16, 16)), data.integers(0, 10, 16)
            if model is dev:
                x, t = gpu(x), gpu(t)
            model.zero_grad()
            losses.append(crit(model(x), t))
            model.backward(crit.backward())
            opt.step()
        runs.append(losses)
    np.testing.assert_allclose(runs[1], runs[0], rtol=1e-10)
    for p, q in zip(dev.parameters(), cpu.parameters()):
        assert isinstance(p.data, cupy.ndarray)
        np.testing.assert_allclose(cupy.asnumpy(p.data), q.data, rtol=1e-10, atol=1e-12)


def test_cuda_adam_step_in_place_on_the_device():
    p = nn.Parameter(cupy.ones(4))
    data = p.data
    p.grad[...] = cupy.arange(4.0)
    optim.Adam([p], lr=0.1).step()
    assert p.data is data  # in place
    np.testing.assert_allclose(cupy.asnumpy(p.data), [1.0, 0.9, 0.9, 0.9], rtol=1e-7)


# op, its inputs (float64, NumPy), its backward (R, *inputs) -> gradients
def _cases(rng):
    x = rng.standard_normal((2, 3, 6, 6))
    w, b = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    wt, bt = rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(2)
    xl, wl, bl = rng.standard_normal((3, 5)), rng.standard_normal((4, 5)), rng.standard_normal(4)
    logits, target = rng.standard_normal((5, 4)), rng.integers(0, 4, 5)
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
    distinct = rng.permutation(72).reshape(2, 1, 6, 6) / 7.0  # no ties for max pooling
    return {
        "conv2d": (lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1, dilation=1), (x, w, b),
                   lambda g, x, w, b: F.conv2d_backward(g, x, w, stride=2, padding=1)),
        "conv2d_grouped": (lambda x, w: F.conv2d(x, w, padding=2, dilation=2, groups=3), (x, w[:3, :1]),
                           lambda g, x, w: F.conv2d_backward(g, x, w, padding=2, dilation=2, groups=3)[:2]),
        "conv_transpose2d": (lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, output_padding=1), (x, wt, bt),
                             lambda g, x, w, b: F.conv_transpose2d_backward(g, x, w, stride=2, output_padding=1)),
        "linear": (F.linear, (xl, wl, bl), lambda g, x, w, b: F.linear_backward(g, x, w)),
        "max_pool2d": (lambda x: F.max_pool2d(x, 2), (distinct,),
                       lambda g, x: F.max_pool2d_backward(g, F.max_pool2d(x, 2, return_indices=True)[1], x.shape)),
        "avg_pool2d": (lambda x: F.avg_pool2d(x, 3, 2, 1), (x,), lambda g, x: F.avg_pool2d_backward(g, x.shape, 3, 2, 1)),
        "lp_pool2d": (lambda x: F.lp_pool2d(x, 2.0, 2), (np.abs(x) + 0.5,),
                      lambda g, x: F.lp_pool2d_backward(g, x, 2.0, 2)),
        "sigmoid": (F.sigmoid, (x,), lambda g, x: F.sigmoid_backward(g, F.sigmoid(x))),
        "tanh": (F.tanh, (x,), lambda g, x: F.tanh_backward(g, F.tanh(x))),
        "relu": (F.relu, (x + 0.05,), F.relu_backward),
        "softmax": (lambda x: F.softmax(x, dim=1), (x,), lambda g, x: F.softmax_backward(g, F.softmax(x, dim=1), dim=1)),
        "log_softmax": (F.log_softmax, (x,), lambda g, x: F.log_softmax_backward(g, F.log_softmax(x))),
        "cross_entropy": (lambda x, t: F.cross_entropy(x, t), (logits, target),
                          lambda g, x, t: F.cross_entropy_backward(x, t) * g),
        "mse_loss": (lambda x, y: F.mse_loss(x, y), (xl, xl * 0.3), lambda g, x, y: F.mse_loss_backward(x, y) * g),
        "batch_norm": (lambda x, gm, bt: F.batch_norm(x, gm, bt)[0], (x, gamma, beta),
                       lambda g, x, gm, bt: F.batch_norm_backward(g, F.batch_norm(x, gm, bt)[1])),
        "local_response_norm": (lambda x: F.local_response_norm(x, 3, 1e-2, 0.75, 2.0), (x,),
                                lambda g, x: F.local_response_norm_backward(g, x, 3, 1e-2, 0.75, 2.0)),
        "dropout": (lambda x: F.dropout(x, 0.4, seed=9)[0], (x,),
                    lambda g, x: F.dropout_backward(g, F.dropout(x, 0.4, seed=9)[1], 0.4)),
    }


@pytest.mark.parametrize("name", sorted(_cases(np.random.default_rng(0))))
def test_cuda_gradcheck_float64(name):
    fn, inputs, backward = _cases(np.random.default_rng(3))[name]
    result = gradcheck(on_gpu(fn), inputs, backward=on_gpu(backward), atol=1e-7, rtol=1e-6)
    assert result, str(result)
