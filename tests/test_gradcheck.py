"""cnnkit.gradcheck: finite differences in float64 against every layer's backward, and
the checker itself (it finds a wrong gradient and says where)."""

import numpy as np
import pytest

import cnnkit
import cnnkit.functional as F
from cnnkit import nn
from cnnkit.gradcheck import GradcheckResult


def _unpool():
    pool = nn.MaxPool2d(2, stride=2)
    pool(np.random.default_rng(0).standard_normal((2, 2, 5, 4)))
    return nn.MaxUnpool2d(pool)


def _eval(module):
    return module.eval()


# name: (module factory, input shape)
LAYERS = {
    "linear": (lambda: nn.Linear(5, 4), (3, 5)),
    "linear_nobias": (lambda: nn.Linear(5, 4, bias=False), (3, 5)),
    "conv": (lambda: nn.Conv2d(2, 3, 3), (2, 2, 5, 5)),
    "conv_strided_padded": (lambda: nn.Conv2d(2, 3, (3, 2), stride=2, padding=1), (2, 2, 5, 6)),
    "conv_dilated_grouped": (lambda: nn.Conv2d(4, 2, 2, dilation=2, groups=2), (1, 4, 5, 5)),
    "conv_same": (lambda: nn.Conv2d(2, 2, 4, padding="same"), (1, 2, 5, 4)),
    "conv_depthwise": (lambda: nn.Conv2d(3, 3, 3, groups=3, padding=1), (1, 3, 4, 4)),
    "conv_transpose": (lambda: nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1), (2, 2, 3, 3)),
    "conv_transpose_grouped": (lambda: nn.ConvTranspose2d(4, 2, 2, groups=2, dilation=2), (1, 4, 3, 3)),
    "max_pool": (lambda: nn.MaxPool2d(2), (2, 2, 4, 4)),
    "max_pool_overlapping": (lambda: nn.MaxPool2d(3, stride=2, padding=1), (1, 2, 5, 5)),
    "max_unpool": (_unpool, (2, 2, 2, 2)),
    "avg_pool": (lambda: nn.AvgPool2d(2), (2, 2, 4, 4)),
    "avg_pool_padded": (lambda: nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), (1, 2, 5, 5)),
    "lp_pool": (lambda: nn.LPPool2d(2, 2), (2, 2, 4, 4)),
    "relu": (lambda: nn.ReLU(), (3, 2, 3, 3)),
    "sigmoid": (lambda: nn.Sigmoid(), (3, 7)),
    "tanh": (lambda: nn.Tanh(), (3, 7)),
    "softmax": (lambda: nn.Softmax(dim=1), (2, 4, 3, 2)),
    "log_softmax": (lambda: nn.LogSoftmax(), (3, 6)),
    "flatten": (lambda: nn.Flatten(), (2, 3, 2, 2)),
    "dropout": (lambda: nn.Dropout(0.3), (3, 20)),
    "batch_norm_train": (lambda: nn.BatchNorm2d(3), (3, 3, 3, 3)),
    "batch_norm_eval": (lambda: _eval(nn.BatchNorm2d(3)), (2, 3, 2, 2)),
    "lrn": (lambda: nn.LocalResponseNorm(3, alpha=0.5, beta=0.75, k=1.5), (2, 5, 2, 2)),
    "sequential": (
        lambda: nn.Sequential(
            nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3)
        ),
        (2, 1, 4, 4),
    ),
}


@pytest.mark.parametrize("make, shape", LAYERS.values(), ids=LAYERS.keys())
def test_every_layer(rng, make, shape):
    cnnkit.manual_seed(0)
    module = make()
    x = rng.standard_normal(shape)
    result = cnnkit.gradcheck(module, x)
    assert result, str(result)
    expected = x.size + sum(p.size for p in module.parameters())
    assert result.checked == expected


def test_batch_norm_moves_running_stats_only_on_the_copy(rng):
    bn = nn.BatchNorm2d(2)
    assert cnnkit.gradcheck(bn, rng.standard_normal((3, 2, 2, 2)))
    np.testing.assert_array_equal(bn.running_mean, 0)


def test_cross_entropy_loss(rng):
    logits = rng.standard_normal((4, 5))
    result = cnnkit.gradcheck(nn.CrossEntropyLoss(), (logits, np.array([0, 4, 2, 2])))
    assert result and result.checked == logits.size and result.where == "input[0]"


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse_loss(rng, reduction):
    out, target = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    assert cnnkit.gradcheck(nn.MSELoss(reduction=reduction), (out, target))


def test_function_with_functional_backward(rng):
    x, w = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((4, 3, 3, 3))
    result = cnnkit.gradcheck(
        lambda x, w: F.conv2d(x, w, stride=2), (x, w), backward=lambda g, x, w: F.conv2d_backward(g, x, w, stride=2)[:2]
    )
    assert result and result.checked == x.size + w.size


def test_float32_module_is_checked_in_float64_and_untouched(rng):
    layer = nn.Linear(3, 2)
    before = layer.weight.data.copy()
    result = cnnkit.gradcheck(layer, rng.standard_normal((2, 3)).astype(np.float32))
    assert result
    assert layer.weight.data.dtype == np.float32
    np.testing.assert_array_equal(layer.weight.data, before)
    assert not layer.weight.grad.any()


class WrongWeightGradient(nn.Linear):
    """Linear whose weight gradient is off at one element."""

    def backward(self, grad_output):
        gx = super().backward(grad_output)
        self.weight.grad[1, 2] += 0.5
        return gx


def test_reports_where_a_parameter_gradient_is_wrong(rng):
    net = nn.Sequential(nn.Tanh(), WrongWeightGradient(3, 2))
    result = cnnkit.gradcheck(net, rng.standard_normal((4, 3)))
    assert not result
    assert result.where == "1.weight" and result.index == 1 * 3 + 2
    assert result.max_abs_error == pytest.approx(0.5, rel=1e-5)
    assert result.analytic - result.numeric == pytest.approx(0.5, rel=1e-5)
    assert "FAILED" in str(result) and "1.weight[5]" in str(result)


def test_reports_where_an_input_gradient_is_wrong(rng):
    def wrong_backward(g, x):
        gx = F.tanh_backward(g, F.tanh(x))
        gx.reshape(-1)[7] *= 1.01
        return gx

    result = cnnkit.gradcheck(F.tanh, rng.standard_normal((3, 4)), backward=wrong_backward)
    assert not result and result.where == "input[0]" and result.index == 7
    assert isinstance(result, GradcheckResult)


def test_tolerances(rng):
    # A relative error of 1e-2 fails at rtol 1e-3 and passes at rtol 1e-1.
    def backward(g, x):
        return 1.01 * g

    x = rng.standard_normal(5) + 3
    assert not cnnkit.gradcheck(lambda x: x * 1.0, x, backward=backward)
    assert cnnkit.gradcheck(lambda x: x * 1.0, x, backward=backward, rtol=1e-1)


def test_errors(rng):
    x = rng.standard_normal(3)
    with pytest.raises(ValueError, match="backward: needed when fn is a function"):
        cnnkit.gradcheck(F.tanh, x)
    with pytest.raises(TypeError, match="fn: expected a Module or a callable, got int"):
        cnnkit.gradcheck(3, x)
    with pytest.raises(ValueError, match="inputs: nothing to check"):
        cnnkit.gradcheck(lambda x: x * 1.0, np.arange(3), backward=lambda g, x: g)
    with pytest.raises(ValueError, match="gradient of input\\[0\\]: expected shape \\(3,\\), got \\(2,\\)"):
        cnnkit.gradcheck(F.tanh, x, backward=lambda g, x: g[:2])
