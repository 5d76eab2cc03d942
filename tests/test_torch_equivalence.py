"""Equivalence with PyTorch: every layer's forward and backward, and 15 steps of SGD
training of a small CNN from the same initial weights on the same batches."""

import numpy as np
import pytest

import cnnkit
from cnnkit import nn, optim

torch = pytest.importorskip("torch")
tnn = torch.nn

TOL = {np.float32: 1e-4, np.float64: 1e-9}
TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}


def copy_weights(ours, theirs):
    """Copy cnnkit's parameters into the torch module (same names, same layouts)."""
    state = {k: torch.tensor(v) for k, v in ours.state_dict().items()}
    missing, unexpected = theirs.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)


def small_cnn(dtype, batch_norm):
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, dtype=dtype),
        *([nn.BatchNorm2d(8, dtype=dtype)] if batch_norm else []),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, dtype=dtype),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 10, dtype=dtype),
    )


def small_cnn_torch(dtype, batch_norm):
    return tnn.Sequential(
        tnn.Conv2d(3, 8, 3, padding=1),
        *([tnn.BatchNorm2d(8)] if batch_norm else []),
        tnn.ReLU(),
        tnn.MaxPool2d(2),
        tnn.Conv2d(8, 16, 3),
        tnn.ReLU(),
        tnn.Flatten(),
        tnn.Linear(16 * 4 * 4, 10),
    ).to(TORCH_DTYPE[dtype])


def train_both(dtype, batch_norm=False, steps=15, batch=16, seed=0):
    """Train the same CNN in cnnkit and torch; returns the (cnnkit, torch) loss per step
    and both models."""
    cnnkit.manual_seed(seed)
    ours = small_cnn(dtype, batch_norm)
    theirs = small_cnn_torch(dtype, batch_norm)
    copy_weights(ours, theirs)
    opt = optim.SGD(ours.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    topt = torch.optim.SGD(theirs.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    crit = nn.CrossEntropyLoss()
    tcrit = tnn.CrossEntropyLoss()
    rng = np.random.default_rng(seed)
    # Three random batches, visited in turn: enough for the loss to fall in 15 steps.
    batches = [
        (rng.standard_normal((batch, 3, 12, 12)).astype(dtype), rng.integers(0, 10, batch)) for _ in range(3)
    ]
    losses = []
    for step in range(steps):
        x, y = batches[step % 3]
        opt.zero_grad()
        loss = crit(ours(x), y)
        ours.backward(crit.backward())
        opt.step()
        topt.zero_grad()
        tloss = tcrit(theirs(torch.tensor(x)), torch.tensor(y))
        tloss.backward()
        topt.step()
        losses.append((loss, tloss.item()))
    return np.array(losses), ours, theirs


@pytest.mark.parametrize("batch_norm", [False, True], ids=["plain", "batch_norm"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_sgd_training_matches_torch(dtype, batch_norm):
    losses, ours, theirs = train_both(dtype, batch_norm)
    rel = np.abs(losses[:, 0] - losses[:, 1]) / np.abs(losses[:, 1])
    assert rel.max() <= TOL[dtype], f"step-by-step relative loss error {rel}"
    # The run really trains: the loss falls well below chance (log 10 = 2.30).
    assert losses[-3:, 0].mean() < 0.8 * losses[:3, 0].mean()
    for name, p in theirs.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        np.testing.assert_allclose(
            ours.state_dict()[name], p.numpy(), rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10, err_msg=name
        )


# ---- every layer, forward and backward, float64 ---------------------------------------
LAYERS = {
    "linear": (lambda: nn.Linear(5, 4, dtype=np.float64), lambda: tnn.Linear(5, 4), (3, 5)),
    "conv": (
        lambda: nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=1, groups=2, dtype=np.float64),
        lambda: tnn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=1, groups=2),
        (2, 4, 7, 6),
    ),
    "conv_transpose": (
        lambda: nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2, dtype=np.float64),
        lambda: tnn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2),
        (2, 4, 4, 5),
    ),
    "max_pool": (lambda: nn.MaxPool2d(3, stride=2, padding=1), lambda: tnn.MaxPool2d(3, stride=2, padding=1), (2, 3, 7, 6)),
    "avg_pool": (
        lambda: nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
        lambda: tnn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
        (2, 3, 7, 6),
    ),
    "lp_pool": (lambda: nn.LPPool2d(2, 2), lambda: tnn.LPPool2d(2, 2), (2, 3, 4, 6)),
    "relu": (lambda: nn.ReLU(), lambda: tnn.ReLU(), (3, 4, 2)),
    "sigmoid": (lambda: nn.Sigmoid(), lambda: tnn.Sigmoid(), (3, 4)),
    "tanh": (lambda: nn.Tanh(), lambda: tnn.Tanh(), (3, 4)),
    "softmax": (lambda: nn.Softmax(dim=1), lambda: tnn.Softmax(dim=1), (2, 5, 3)),
    "log_softmax": (lambda: nn.LogSoftmax(dim=-1), lambda: tnn.LogSoftmax(dim=-1), (3, 5)),
    "flatten": (lambda: nn.Flatten(), lambda: tnn.Flatten(), (2, 3, 4)),
    "batch_norm": (lambda: nn.BatchNorm2d(3, dtype=np.float64), lambda: tnn.BatchNorm2d(3), (4, 3, 3, 2)),
    "lrn": (
        lambda: nn.LocalResponseNorm(3, alpha=1e-2, beta=0.75, k=2.0),
        lambda: tnn.LocalResponseNorm(3, alpha=1e-2, beta=0.75, k=2.0),
        (2, 5, 3, 3),
    ),
}


@pytest.mark.parametrize("ours_make, theirs_make, shape", LAYERS.values(), ids=LAYERS.keys())
def test_layer_matches_torch(rng, ours_make, theirs_make, shape):
    ours = ours_make()
    theirs = theirs_make().double()
    copy_weights(ours, theirs)
    x = rng.standard_normal(shape)
    tx = torch.tensor(x, requires_grad=True)
    y = ours(x)
    ty = theirs(tx)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    g = rng.standard_normal(y.shape)
    gx = ours.backward(g)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    tparams = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, tparams[name].grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


def test_max_pool_switches_are_torch_indices(rng):
    pool = nn.MaxPool2d(2, stride=1)
    x = rng.standard_normal((2, 3, 5, 5))
    pool(x)
    _, indices = tnn.functional.max_pool2d(torch.tensor(x), 2, stride=1, return_indices=True)
    np.testing.assert_array_equal(pool.switches, indices.numpy())


def test_unpool_matches_torch(rng):
    pool = nn.MaxPool2d(2)
    unpool = nn.MaxUnpool2d(pool)
    x = rng.standard_normal((2, 3, 4, 6))
    z = unpool(pool(x))
    tp, ti = tnn.functional.max_pool2d(torch.tensor(x), 2, return_indices=True)
    np.testing.assert_array_equal(z, tnn.functional.max_unpool2d(tp, ti, 2).numpy())


@pytest.mark.parametrize("crit, tcrit", [(nn.CrossEntropyLoss(), tnn.CrossEntropyLoss()), (nn.MSELoss(reduction="sum"), tnn.MSELoss(reduction="sum"))], ids=["ce", "mse"])
def test_losses_match_torch(rng, crit, tcrit):
    out = rng.standard_normal((4, 5))
    target = np.array([1, 0, 4, 2]) if isinstance(crit, nn.CrossEntropyLoss) else rng.standard_normal((4, 5))
    tout = torch.tensor(out, requires_grad=True)
    tloss = tcrit(tout, torch.tensor(target))
    tloss.backward()
    assert crit(out, target) == pytest.approx(tloss.item(), rel=1e-12)
    np.testing.assert_allclose(crit.backward(), tout.grad.numpy(), rtol=1e-10, atol=1e-14)
