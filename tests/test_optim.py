"""cnnkit.optim: SGD, Adam and StepLR follow PyTorch's update rules exactly (float64)."""

import numpy as np
import pytest

from cnnkit import optim
from cnnkit.nn import Parameter

SHAPES = [(3, 4), (5,), (2, 1, 3, 3)]


def _grads(rng, steps):
    return [[rng.standard_normal(s) for s in SHAPES] for _ in range(steps)]


def _run_cnnkit(make, init, grads):
    params = [Parameter(p.copy()) for p in init]
    opt = make(params)
    for step in grads:
        for p, g in zip(params, step):
            p.grad[...] = g
        opt.step()
    return [p.data for p in params]


def _run_torch(torch, make, init, grads):
    params = [torch.tensor(p, requires_grad=True) for p in init]
    opt = make(params)
    for step in grads:
        for p, g in zip(params, step):
            p.grad = torch.tensor(g)
        opt.step()
    return [p.detach().numpy() for p in params]


SGD_CONFIGS = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.05, momentum=0.9, weight_decay=5e-4),
    dict(lr=0.05, momentum=0.9, dampening=0.3),
    dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
]


@pytest.mark.parametrize("config", SGD_CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_sgd_matches_torch(rng, config):
    torch = pytest.importorskip("torch")
    init = [rng.standard_normal(s) for s in SHAPES]
    grads = _grads(rng, 6)
    ours = _run_cnnkit(lambda ps: optim.SGD(ps, **config), init, grads)
    theirs = _run_torch(torch, lambda ps: torch.optim.SGD(ps, **config), init, grads)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("config", [dict(lr=1e-2), dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2)])
def test_adam_matches_torch(rng, config):
    torch = pytest.importorskip("torch")
    init = [rng.standard_normal(s) for s in SHAPES]
    grads = _grads(rng, 8)
    ours = _run_cnnkit(lambda ps: optim.Adam(ps, **config), init, grads)
    theirs = _run_torch(torch, lambda ps: torch.optim.Adam(ps, **config), init, grads)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_sgd_by_hand():
    """Two momentum steps with weight decay, worked out by hand."""
    p = Parameter(np.array([1.0]))
    opt = optim.SGD([p], lr=0.1, momentum=0.5, weight_decay=0.1)
    p.grad[...] = 2.0
    opt.step()  # g = 2 + 0.1 * 1 = 2.1; b = 2.1; p = 1 - 0.21 = 0.79
    np.testing.assert_allclose(p.data, [0.79])
    opt.step()  # g = 2 + 0.079 = 2.079; b = 0.5 * 2.1 + 2.079 = 3.129; p = 0.79 - 0.3129
    np.testing.assert_allclose(p.data, [0.79 - 0.3129])


def test_float32_parameters_stay_float32(rng):
    p = Parameter(rng.standard_normal((4, 4)).astype(np.float32))
    p.grad[...] = 1
    for opt in (optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=1e-4), optim.Adam([p], weight_decay=1e-4)):
        opt.step()
        opt.step()
        assert p.data.dtype == np.float32


def test_zero_grad():
    p = Parameter(np.ones(3))
    p.grad[...] = 5
    optim.SGD([p], lr=1).zero_grad()
    assert not p.grad.any()


def test_step_lr_matches_torch():
    torch = pytest.importorskip("torch")
    p = Parameter(np.zeros(1))
    opt = optim.SGD([p], lr=0.5)
    schedule = optim.StepLR(opt, step_size=3, gamma=0.5)
    tp = torch.zeros(1, requires_grad=True)
    topt = torch.optim.SGD([tp], lr=0.5)
    tschedule = torch.optim.lr_scheduler.StepLR(topt, step_size=3, gamma=0.5)
    for _ in range(10):
        assert opt.lr == pytest.approx(topt.param_groups[0]["lr"], rel=1e-15)
        topt.step()
        schedule.step()
        tschedule.step()
    assert schedule.get_last_lr() == pytest.approx(0.5 * 0.5**3)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda ps: optim.SGD(ps, lr=0), "lr"),
        (lambda ps: optim.SGD(ps, lr=-1), "lr"),
        (lambda ps: optim.SGD(ps, lr=0.1, momentum=-0.1), "momentum"),
        (lambda ps: optim.SGD(ps, lr=0.1, weight_decay=-1), "weight_decay"),
        (lambda ps: optim.SGD(ps, lr=0.1, nesterov=True), "nesterov"),
        (lambda ps: optim.Adam(ps, betas=(1.0, 0.9)), "betas"),
        (lambda ps: optim.SGD([], lr=0.1), "params"),
    ],
)
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make([Parameter(np.zeros(2))])


def test_params_must_be_parameters():
    with pytest.raises(TypeError, match="params: item 0: expected a Parameter, got ndarray"):
        optim.SGD([np.zeros(2)], lr=0.1)


def test_step_lr_bad_step_size():
    with pytest.raises(ValueError, match="step_size"):
        optim.StepLR(optim.SGD([Parameter(np.zeros(1))], lr=0.1), step_size=0)
