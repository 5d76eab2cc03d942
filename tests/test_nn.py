"""cnnkit.nn: the Module API (parameters, state, modes, errors), each layer against the
functional op it wraps, initialisation, losses and the deconvnet projection."""

import math

import numpy as np
import pytest

import cnnkit
import cnnkit.functional as F
from cnnkit import nn


# ---- Module basics ------------------------------------------------------------------
def small_net(dtype=np.float32):
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1, dtype=dtype),
        nn.BatchNorm2d(2, dtype=dtype),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8, 3, dtype=dtype),
    )


def test_parameters_and_names():
    net = small_net()
    names = [name for name, _ in net.named_parameters()]
    assert names == ["0.weight", "0.bias", "1.weight", "1.bias", "5.weight", "5.bias"]
    assert all(isinstance(p, nn.Parameter) for p in net.parameters())
    assert net.num_parameters() == 2 * 9 + 2 + 2 + 2 + 8 * 3 + 3
    for p in net.parameters():
        assert p.grad.shape == p.data.shape and p.grad.dtype == p.data.dtype and not p.grad.any()
    assert list(net.state_dict()) == names + ["1.running_mean", "1.running_var"]


def test_sequential_indexing_and_iteration():
    net = small_net()
    assert len(net) == 6
    assert isinstance(net[0], nn.Conv2d) and isinstance(net[-1], nn.Linear)
    assert [type(m).__name__ for m in net] == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Flatten", "Linear"]
    head = net[:2]
    assert isinstance(head, nn.Sequential) and len(head) == 2 and head[0] is net[0]
    net.append(nn.Softmax())
    assert len(net) == 7 and isinstance(net[6], nn.Softmax)
    assert "(0): Conv2d(1, 2, kernel_size=(3, 3)" in repr(net)


def test_sequential_rejects_non_modules():
    with pytest.raises(TypeError, match="module 1: expected a Module, got ufunc"):
        nn.Sequential(nn.ReLU(), np.tanh)


def test_forward_backward_shapes_and_zero_grad(rng):
    net = small_net()
    x = rng.standard_normal((4, 1, 4, 4)).astype(np.float32)
    y = net(x)
    assert y.shape == (4, 3) and y.dtype == np.float32
    gx = net.backward(np.ones_like(y))
    assert gx.shape == x.shape and gx.dtype == np.float32
    assert all(p.grad.any() for p in net.parameters())
    net.zero_grad()
    assert not any(p.grad.any() for p in net.parameters())


def test_backward_accumulates(rng):
    layer = nn.Linear(3, 2)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    g = rng.standard_normal((5, 2)).astype(np.float32)
    layer(x)
    layer.backward(g)
    once = layer.weight.grad.copy()
    layer.backward(g)
    np.testing.assert_allclose(layer.weight.grad, 2 * once, rtol=1e-6)


def test_train_eval_propagate():
    net = small_net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())


def test_state_dict_round_trip_and_save_load(tmp_path, rng):
    cnnkit.manual_seed(0)
    a = small_net()
    a(rng.standard_normal((4, 1, 4, 4)).astype(np.float32))  # moves the running stats
    cnnkit.manual_seed(1)
    b = small_net()
    state = a.state_dict()
    state["0.weight"][...] = 0  # a copy: the module is untouched
    assert a[0].weight.data.any()
    a.save(tmp_path / "net.npz")
    b.load(tmp_path / "net.npz")
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        np.testing.assert_array_equal(pa, pb, err_msg=name)
    x = rng.standard_normal((2, 1, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(a.eval()(x), b.eval()(x))


def test_load_state_dict_casts_and_keeps_arrays():
    net = small_net()
    weight = net[0].weight.data
    state = {k: v.astype(np.float64) for k, v in small_net().state_dict().items()}
    net.load_state_dict(state)
    assert net[0].weight.data is weight and weight.dtype == np.float32
    np.testing.assert_allclose(weight, state["0.weight"], rtol=1e-7)


def test_load_state_dict_missing_key():
    net = small_net()
    state = net.state_dict()
    del state["5.bias"]
    with pytest.raises(ValueError, match="missing key\\(s\\) '5.bias'"):
        net.load_state_dict(state)


def test_load_state_dict_wrong_shape():
    net = small_net()
    state = net.state_dict()
    state["0.weight"] = np.zeros((2, 1, 5, 5), np.float32)
    with pytest.raises(ValueError, match="'0.weight': expected shape \\(2, 1, 3, 3\\), got \\(2, 1, 5, 5\\)"):
        net.load_state_dict(state)


def test_load_state_dict_unexpected_key():
    net = small_net()
    state = net.state_dict()
    state["9.weight"] = np.zeros(3)
    with pytest.raises(ValueError, match="unexpected key\\(s\\) '9.weight'"):
        net.load_state_dict(state)
    net.load_state_dict(state, strict=False)


def test_to_float64(rng):
    net = small_net().to(np.float64)
    assert all(p.data.dtype == np.float64 and p.grad.dtype == np.float64 for p in net.parameters())
    assert net[1].running_var.dtype == np.float64
    y = net(rng.standard_normal((2, 1, 4, 4)))
    assert y.dtype == np.float64


LAYER_CASES = {
    "linear": (lambda: nn.Linear(4, 3), (2, 4)),
    "conv": (lambda: nn.Conv2d(2, 3, 3), (1, 2, 5, 5)),
    "conv_transpose": (lambda: nn.ConvTranspose2d(2, 3, 3), (1, 2, 4, 4)),
    "max_pool": (lambda: nn.MaxPool2d(2), (1, 2, 4, 4)),
    "avg_pool": (lambda: nn.AvgPool2d(2), (1, 2, 4, 4)),
    "relu": (lambda: nn.ReLU(), (2, 3)),
    "sigmoid": (lambda: nn.Sigmoid(), (2, 3)),
    "tanh": (lambda: nn.Tanh(), (2, 3)),
    "softmax": (lambda: nn.Softmax(), (2, 3)),
    "log_softmax": (lambda: nn.LogSoftmax(), (2, 3)),
    "flatten": (lambda: nn.Flatten(), (2, 3, 2)),
    "dropout": (lambda: nn.Dropout(0.5), (2, 3)),
    "batch_norm": (lambda: nn.BatchNorm2d(2), (3, 2, 2, 2)),
    "lrn": (lambda: nn.LocalResponseNorm(3), (1, 4, 2, 2)),
    "sequential": (lambda: small_net(), (1, 1, 4, 4)),
}


@pytest.mark.parametrize("make, shape", LAYER_CASES.values(), ids=LAYER_CASES.keys())
def test_backward_before_forward(make, shape):
    layer = make()
    with pytest.raises(RuntimeError, match="backward: called before forward"):
        layer.backward(np.zeros(shape, np.float32))


@pytest.mark.parametrize("crit", [nn.CrossEntropyLoss(), nn.MSELoss()], ids=["ce", "mse"])
def test_loss_backward_before_forward(crit):
    with pytest.raises(RuntimeError, match="backward: called before forward"):
        crit.backward()


def test_unpool_before_pool():
    with pytest.raises(RuntimeError, match="MaxPool2d has not run forward"):
        nn.MaxUnpool2d(nn.MaxPool2d(2))(np.zeros((1, 1, 2, 2), np.float32))


# ---- initialisation -----------------------------------------------------------------
@pytest.mark.parametrize(
    "make, fan_in",
    [
        (lambda d: nn.Linear(50, 40, dtype=d), 50),
        (lambda d: nn.Conv2d(6, 8, (3, 5), groups=2, dtype=d), 3 * 15),
        (lambda d: nn.ConvTranspose2d(6, 8, 3, groups=2, dtype=d), 4 * 9),
    ],
    ids=["linear", "conv", "conv_transpose"],
)
def test_default_init_is_pytorchs(make, fan_in, dtype):
    cnnkit.manual_seed(0)
    layer = make(dtype)
    bound = 1 / math.sqrt(fan_in)
    for p in (layer.weight, layer.bias):
        assert p.dtype == dtype
        assert np.abs(p.data).max() <= bound
    w = layer.weight.data
    # U(-b, b): spread over the whole interval, mean 0, variance b^2 / 3.
    assert np.abs(w).max() > 0.9 * bound
    assert abs(w.mean()) < 0.1 * bound
    assert w.var() == pytest.approx(bound**2 / 3, rel=0.15)


def test_manual_seed_reproduces_init():
    cnnkit.manual_seed(42)
    a = small_net()
    cnnkit.manual_seed(42)
    b = small_net()
    cnnkit.manual_seed(43)
    c = small_net()
    np.testing.assert_array_equal(a[0].weight.data, b[0].weight.data)
    assert not np.array_equal(a[0].weight.data, c[0].weight.data)


def test_init_matches_torch_bounds():
    torch = pytest.importorskip("torch")
    ours = nn.Conv2d(4, 6, 3)
    theirs = torch.nn.Conv2d(4, 6, 3)
    bound = 1 / math.sqrt(4 * 9)
    assert float(theirs.weight.detach().abs().max()) <= bound and np.abs(ours.weight.data).max() <= bound
    assert ours.weight.shape == tuple(theirs.weight.shape)


def test_bias_false():
    layer = nn.Conv2d(2, 3, 3, bias=False)
    assert layer.bias is None
    assert [n for n, _ in layer.named_parameters()] == ["weight"]


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: nn.Conv2d(3, 4, 3, groups=2), "groups: expected a divisor"),
        (lambda: nn.Conv2d(0, 4, 3), "in_channels: expected a positive int"),
        (lambda: nn.Linear(3, -1), "out_features: expected a positive int"),
        (lambda: nn.Dropout(1.0), "p: expected a probability in \\[0, 1\\)"),
        (lambda: nn.BatchNorm2d(0), "num_features"),
        (lambda: nn.CrossEntropyLoss(reduction="avg"), "reduction"),
    ],
)
def test_bad_constructor_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_dtype():
    with pytest.raises(TypeError, match="Linear: dtype: expected float32 or float64, got int32"):
        nn.Linear(2, 2, dtype=np.int32)


# ---- layers wrap their functional op ------------------------------------------------
def test_conv_layer_matches_functional(rng):
    layer = nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=1, groups=2)
    x = rng.standard_normal((2, 4, 7, 7)).astype(np.float32)
    y = layer(x)
    np.testing.assert_array_equal(
        y, F.conv2d(x, layer.weight.data, layer.bias.data, stride=2, padding=1, groups=2)
    )
    g = rng.standard_normal(y.shape).astype(np.float32)
    gx = layer.backward(g)
    ex, ew, eb = F.conv2d_backward(g, x, layer.weight.data, stride=2, padding=1, groups=2)
    np.testing.assert_array_equal(gx, ex)
    np.testing.assert_array_equal(layer.weight.grad, ew)
    np.testing.assert_array_equal(layer.bias.grad, eb)


def test_conv_same_padding(rng):
    layer = nn.Conv2d(2, 3, 4, padding="same")
    x = rng.standard_normal((1, 2, 6, 5)).astype(np.float32)
    assert layer(x).shape == (1, 3, 6, 5)
    assert layer.backward(np.ones((1, 3, 6, 5), np.float32)).shape == x.shape


def test_maxpool_keeps_switches_and_unpool_uses_them(rng):
    pool = nn.MaxPool2d(2)
    unpool = nn.MaxUnpool2d(pool)
    x = rng.standard_normal((2, 3, 5, 7))  # odd sizes: the unpool restores 5x7, not 4x6
    y = pool(x)
    assert pool.switches.dtype == np.int64 and pool.switches.shape == y.shape
    _, switches = F.max_pool2d(x, 2, return_indices=True)
    np.testing.assert_array_equal(pool.switches, switches)
    z = unpool(y)
    assert z.shape == x.shape
    np.testing.assert_array_equal(z, F.max_unpool2d(y, switches, 2, output_size=(5, 7)))
    # Every pooled maximum lands back where it came from; everything else is zero.
    assert np.count_nonzero(z) == y.size
    np.testing.assert_array_equal(z[z != 0], x[z != 0])
    g = rng.standard_normal(z.shape)
    np.testing.assert_array_equal(unpool.backward(g), F.max_unpool2d_backward(g, switches))
    assert not unpool._modules  # the pool is a reference, not a child


def test_maxpool_return_indices(rng):
    y, s = nn.MaxPool2d(2, return_indices=True)(rng.standard_normal((1, 1, 4, 4)))
    assert y.shape == s.shape == (1, 1, 2, 2)


def test_dropout_train_and_eval(rng):
    x = np.ones((20, 50))
    layer = nn.Dropout(0.4)
    cnnkit.manual_seed(5)
    y = layer(x)
    kept = y != 0
    assert 0.45 < kept.mean() < 0.75
    np.testing.assert_allclose(y[kept], 1 / 0.6)
    np.testing.assert_allclose(layer.backward(np.ones_like(x)), y)
    cnnkit.manual_seed(5)
    np.testing.assert_array_equal(nn.Dropout(0.4)(x), y)
    layer.eval()
    np.testing.assert_array_equal(layer(x), x)
    np.testing.assert_array_equal(layer.backward(2 * x), 2 * x)


def test_batchnorm_running_stats_and_eval(rng):
    torch = pytest.importorskip("torch")
    ours = nn.BatchNorm2d(3, momentum=0.2, dtype=np.float64)
    theirs = torch.nn.BatchNorm2d(3, momentum=0.2).double()
    for _ in range(3):
        x = rng.standard_normal((4, 3, 2, 2)) * 3 + 1
        np.testing.assert_allclose(ours(x), theirs(torch.tensor(x)).detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.running_mean, theirs.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), rtol=1e-12)
    ours.eval()
    theirs.eval()
    x = rng.standard_normal((2, 3, 2, 2))
    np.testing.assert_allclose(ours(x), theirs(torch.tensor(x)).detach().numpy(), rtol=1e-10, atol=1e-12)


def test_batchnorm_without_affine(rng):
    layer = nn.BatchNorm2d(2, affine=False, dtype=np.float64)
    assert list(layer.named_parameters()) == []
    x = rng.standard_normal((5, 2, 3, 3))
    y = layer(x)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    assert layer.backward(np.ones_like(y)).shape == x.shape


def test_flatten_empty_batch():
    assert nn.Flatten()(np.zeros((0, 3, 4, 5), np.float32)).shape == (0, 60)


# ---- losses -------------------------------------------------------------------------
def test_cross_entropy_loss(rng):
    logits = rng.standard_normal((5, 4))
    target = np.array([0, 3, 1, 1, 2])
    crit = nn.CrossEntropyLoss()
    loss = crit(logits, target)
    assert isinstance(loss, float)
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    assert loss == pytest.approx(-log_p[np.arange(5), target].mean(), rel=1e-12)
    np.testing.assert_allclose(crit.backward(), F.cross_entropy_backward(logits, target))
    np.testing.assert_allclose(crit.backward(3.0), 3 * F.cross_entropy_backward(logits, target))


def test_cross_entropy_none_reduction(rng):
    logits = rng.standard_normal((3, 4))
    target = np.array([0, 1, 2])
    crit = nn.CrossEntropyLoss(reduction="none")
    losses = crit(logits, target)
    assert losses.shape == (3,)
    w = np.array([1.0, 0.0, 2.0])
    expected = F.cross_entropy_backward(logits, target, reduction="none") * w[:, None]
    np.testing.assert_allclose(crit.backward(w), expected)


def test_mse_loss(rng):
    out = rng.standard_normal((4, 3))
    target = rng.standard_normal((4, 3))
    crit = nn.MSELoss()
    assert crit(out, target) == pytest.approx(np.mean((out - target) ** 2), rel=1e-12)
    np.testing.assert_allclose(crit.backward(), 2 * (out - target) / out.size, rtol=1e-12)


@pytest.mark.parametrize(
    "crit, out, target",
    [
        (nn.CrossEntropyLoss(), np.zeros((4, 3)), np.zeros(5, np.int64)),
        (nn.MSELoss(), np.zeros((4, 3)), np.zeros((5, 3))),
    ],
    ids=["ce", "mse"],
)
def test_loss_target_batch_mismatch(crit, out, target):
    with pytest.raises(ValueError, match="target: expected shape"):
        crit(out, target)


# ---- deconvnet ----------------------------------------------------------------------
def hand_net():
    """conv (2 filters, 2x2, no bias) - ReLU - 2x2 max pool, on 3x3 inputs."""
    conv = nn.Conv2d(1, 2, 2, bias=False, dtype=np.float64)
    conv.weight.data[0, 0] = [[1, 2], [3, 4]]
    conv.weight.data[1, 0] = [[-1, 0], [0, 1]]
    return nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2))


def test_deconvnet_by_hand():
    net = hand_net()
    x = np.array([[[[1.0, 0, 0], [0, 0, 0], [0, 0, 2]]]])
    # conv: channel 0 = [[1, 0], [0, 8]], channel 1 = [[-1, 0], [0, 2]]; ReLU; the pool
    # keeps 8 and 2, both from position (1, 1) (switch 3).
    y = net(x)
    np.testing.assert_array_equal(y.ravel(), [8, 2])
    np.testing.assert_array_equal(net[2].switches.ravel(), [3, 3])
    # Channel 0 from the pool: unpool to [[0, 0], [0, 8]], ReLU, then the transposed
    # conv spreads 8 * w0 over rows/cols 1..2.
    expected0 = [[0, 0, 0], [0, 8, 16], [0, 24, 32]]
    np.testing.assert_array_equal(nn.deconvnet(net, x, 2, 0)[0, 0], expected0)
    # Channel 1: 2 * w1 at (1, 1).
    expected1 = [[0, 0, 0], [0, -2, 0], [0, 0, 2]]
    np.testing.assert_array_equal(nn.deconvnet(net, x, 2, 1)[0, 0], expected1)
    # From the conv output itself (no ReLU, no pool): 1 * w0 at (0, 0) plus 8 * w0 at (1, 1).
    expected_conv = [[1, 2, 0], [3, 12, 16], [0, 24, 32]]
    np.testing.assert_array_equal(nn.deconvnet(net, x, 0, 0)[0, 0], expected_conv)
    # From the ReLU: channel 1's -1 is rectified away.
    np.testing.assert_array_equal(nn.deconvnet(net, x, 1, 1)[0, 0], expected1)


@pytest.mark.parametrize(
    "kwargs",
    [dict(stride=2, padding=1), dict(padding="same"), dict(stride=3, dilation=2), dict(padding=2, groups=2)],
    ids=["strided", "same", "dilated", "grouped"],
)
def test_deconvnet_conv_is_transposed_conv(rng, kwargs):
    """Through one conv, the projection is the transposed conv of the kept map, i.e.
    conv2d's input gradient for that map."""
    conv = nn.Conv2d(2, 4, 4, bias=True, dtype=np.float64, **kwargs)
    x = rng.standard_normal((2, 2, 9, 8))
    y = conv(x)
    signal = np.zeros_like(y)
    signal[:, 1] = y[:, 1]
    expected = F.conv2d_backward(signal, x, conv.weight.data, **conv._args())[0]
    np.testing.assert_allclose(nn.deconvnet(nn.Sequential(conv), x, 0, 1), expected, rtol=1e-12, atol=1e-12)


def test_deconvnet_through_linear_and_flatten(rng):
    net = nn.Sequential(nn.Conv2d(1, 2, 2, dtype=np.float64), nn.ReLU(), nn.Flatten(), nn.Linear(18, 3, dtype=np.float64))
    x = rng.standard_normal((1, 1, 4, 4))
    assert nn.deconvnet(net, x, 3, 2).shape == x.shape


def test_deconvnet_errors(rng):
    net = hand_net()
    x = rng.standard_normal((1, 1, 3, 3))
    with pytest.raises(ValueError, match="layer: expected an index into the model's 3 layers, got 3"):
        nn.deconvnet(net, x, 3, 0)
    with pytest.raises(ValueError, match="channel: expected an index below 2, got 2"):
        nn.deconvnet(net, x, 2, 2)
    with pytest.raises(TypeError, match="layer Sigmoid has no deconvnet projection"):
        nn.deconvnet(nn.Sequential(nn.Sigmoid()), x, 0, 0)
    with pytest.raises(TypeError, match="model: expected a Sequential"):
        nn.deconvnet(nn.ReLU(), x, 0, 0)


def test_deconvnet_restores_training_mode(rng):
    net = hand_net()
    nn.deconvnet(net, rng.standard_normal((1, 1, 3, 3)), 2, 0)
    assert net.training
