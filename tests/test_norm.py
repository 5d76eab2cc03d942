"""dropout, batch_norm and local_response_norm with their backwards against the float64
references in cnnkit.reference: seeded masks, running statistics, large means,
channel windows, layouts, empty batches, finite differences, torch, errors."""

import numpy as np
import pytest

import cnnkit
from cnnkit import functional as F

from cnnkit import reference as ref
from conftest import assert_close, random_array

# ---- dropout


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9])
@pytest.mark.parametrize("shape", [(), (7,), (4, 5, 6), (300, 300)], ids=str)
def test_dropout_forward_and_backward(p, shape, rng, dtype):
    x = np.asarray(random_array(rng, shape, dtype))
    y, mask = F.dropout(x, p, seed=123)
    assert mask.dtype == np.bool_ and mask.shape == shape
    assert y.dtype == dtype and y.shape == shape and y.flags.c_contiguous
    assert_close(y, ref.dropout(x, mask, p), dtype)
    gy = np.asarray(random_array(rng, shape, dtype))
    assert_close(F.dropout_backward(gy, mask, p), ref.dropout(gy, mask, p), dtype)


def test_dropout_p_zero_is_identity(rng, dtype):
    x = random_array(rng, (50, 40), dtype)
    y, mask = F.dropout(x, 0.0, seed=1)
    assert mask.all()
    np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("p", [0.2, 0.5, 0.75])
def test_dropout_keeps_one_minus_p(p):
    n = 400_000
    _, mask = F.dropout(np.ones(n, np.float32), p, seed=2024)
    kept = mask.mean()
    sigma = np.sqrt(p * (1 - p) / n)
    assert abs(kept - (1 - p)) < 5 * sigma
    # no visible structure along the index: halves and odd/even positions agree
    for part in (mask[: n // 2], mask[n // 2 :], mask[::2], mask[1::2]):
        assert abs(part.mean() - (1 - p)) < 5 * np.sqrt(2) * sigma


def test_dropout_seed_reproducible_across_threads_and_dtypes(rng, num_threads):
    x = random_array(rng, (257, 301), np.float64)
    num_threads(1)
    y1, m1 = F.dropout(x, 0.3, seed=99)
    num_threads(2)
    y2, m2 = F.dropout(x, 0.3, seed=99)
    _, m32 = F.dropout(x.astype(np.float32), 0.3, seed=99)
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(m1, m32)
    np.testing.assert_array_equal(y1, y2)
    _, other = F.dropout(x, 0.3, seed=100)
    assert (other != m1).mean() > 0.3
    # the mask is a function of the flat index: a prefix of a longer array agrees
    _, longer = F.dropout(np.zeros(x.size + 1000), 0.3, seed=99)
    np.testing.assert_array_equal(longer[: x.size], m1.reshape(-1))


def test_dropout_unseeded_follows_manual_seed(rng):
    x = random_array(rng, (40, 40), np.float32)
    cnnkit.manual_seed(5)
    _, a = F.dropout(x, 0.5)
    _, b = F.dropout(x, 0.5)
    cnnkit.manual_seed(5)
    _, c = F.dropout(x, 0.5)
    np.testing.assert_array_equal(a, c)
    assert (a != b).any()


def test_dropout_numpy_integer_seed_and_full_range(rng):
    x = random_array(rng, (10, 10), np.float64)
    _, a = F.dropout(x, 0.5, seed=np.uint64(2**64 - 1))
    _, b = F.dropout(x, 0.5, seed=2**64 - 1)
    np.testing.assert_array_equal(a, b)


def test_dropout_eval_mode(rng, dtype):
    x = random_array(rng, (5, 6), dtype)[:, ::2]
    y, mask = F.dropout(x, 0.5, training=False)
    assert mask is None and y is not x and y.flags.c_contiguous
    np.testing.assert_array_equal(y, x)
    g = random_array(rng, (5, 3), dtype)
    np.testing.assert_array_equal(F.dropout_backward(g, None, 0.5), g)


def test_dropout_backward_finite_differences(rng):
    x = rng.standard_normal((4, 6))
    w = rng.standard_normal((4, 6))
    _, mask = F.dropout(x, 0.4, seed=7)
    analytic = F.dropout_backward(w, mask, 0.4)
    numeric = ref.numeric_grad(lambda v: np.sum(F.dropout(v, 0.4, seed=7)[0] * w), x)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_dropout_nan_stays_nan_as_torch(dtype):
    # torch multiplies by the mask: a dropped NaN is still NaN
    x = np.full(64, np.nan, dtype)
    y, mask = F.dropout(x, 0.5, seed=3)
    assert not mask.all() and np.isnan(y).all()


def test_dropout_non_contiguous_and_empty(rng, dtype):
    base = random_array(rng, (8, 9), dtype)
    x = base.T[::2]
    y, mask = F.dropout(x, 0.5, seed=11)
    assert_close(y, ref.dropout(x, mask, 0.5), dtype)
    g = random_array(rng, (5, 16), dtype)[:, ::2]
    assert_close(F.dropout_backward(g, np.asfortranarray(mask), 0.5), ref.dropout(g, mask, 0.5), dtype)
    y, mask = F.dropout(np.zeros((0, 3), dtype), 0.5, seed=1)
    assert y.shape == mask.shape == (0, 3)


def test_dropout_matches_torch_statistics(rng):
    torch = pytest.importorskip("torch")
    # Masks differ from torch's generator; the kept values and scale must not.
    x = random_array(rng, (1000,), np.float32)
    y, mask = F.dropout(x, 0.25, seed=8)
    yt = torch.nn.functional.dropout(torch.from_numpy(x), 0.25, training=True)
    kept_t = yt.numpy() != 0
    np.testing.assert_allclose(yt.numpy()[kept_t] / x[kept_t], 1 / 0.75, rtol=1e-6)
    np.testing.assert_allclose(y[mask] / x[mask], 1 / 0.75, rtol=1e-6)


@pytest.mark.parametrize("p", [1.0, -0.1, 1.5, float("nan")])
def test_error_dropout_p(p):
    with pytest.raises(ValueError, match=r"dropout: p: expected a probability in \[0, 1\), got"):
        F.dropout(np.zeros(3), p, seed=0)
    with pytest.raises(ValueError, match=r"dropout_backward: p: expected a probability in \[0, 1\), got"):
        F.dropout_backward(np.zeros(3), np.ones(3, bool), p)


def test_error_dropout_arguments():
    x = np.zeros(3)
    with pytest.raises(TypeError, match=r"dropout: p: expected a real number, got str"):
        F.dropout(x, "0.5", seed=0)
    with pytest.raises(ValueError, match=r"dropout: seed: expected an int in \[0, 2\*\*64\), got -1"):
        F.dropout(x, 0.5, seed=-1)
    with pytest.raises(ValueError, match=r"dropout: seed: expected an int in \[0, 2\*\*64\), got 18446744073709551616"):
        F.dropout(x, 0.5, seed=2**64)
    with pytest.raises(TypeError, match=r"dropout: seed: expected an int, got float"):
        F.dropout(x, 0.5, seed=1.0)
    with pytest.raises(TypeError, match=r"dropout: seed: expected an int, got bool"):
        F.dropout(x, 0.5, seed=True)
    with pytest.raises(TypeError, match=r"dropout: input: expected dtype float32 or float64, got int64"):
        F.dropout(np.zeros(3, np.int64), 0.5, seed=0)
    with pytest.raises(TypeError, match=r"dropout: input: expected a numpy.ndarray"):
        F.dropout([0.0], 0.5, seed=0)


def test_error_dropout_backward_mask():
    g = np.zeros((2, 3))
    with pytest.raises(TypeError, match=r"dropout_backward: mask: expected the bool array .* got dtype float64"):
        F.dropout_backward(g, np.ones((2, 3)), 0.5)
    with pytest.raises(TypeError, match=r"dropout_backward: mask: expected the bool array .* got list"):
        F.dropout_backward(g, [[True] * 3] * 2, 0.5)
    with pytest.raises(ValueError, match=r"dropout_backward: mask: expected shape \(2, 3\), got \(3, 2\)"):
        F.dropout_backward(g, np.ones((3, 2), bool), 0.5)
    with pytest.raises(TypeError, match=r"dropout_backward: grad_output: expected dtype float32 or float64"):
        F.dropout_backward(np.zeros((2, 3), np.int32), np.ones((2, 3), bool), 0.5)


# ---- batch_norm

BN_SHAPES = [(4, 3), (2, 3, 5), (4, 3, 5, 6), (2, 5, 1, 1), (1, 2, 3, 3), (16, 8, 32, 32)]


def _bn_operands(rng, shape, dtype, affine=True):
    c = shape[1]
    x = random_array(rng, shape, dtype) * 2 + 0.5
    gamma = random_array(rng, (c,), dtype) if affine else None
    beta = random_array(rng, (c,), dtype) if affine else None
    rm = random_array(rng, (c,), dtype)
    rv = (rng.random(c) + 0.5).astype(dtype)
    return x, gamma, beta, rm, rv


@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
def test_batch_norm_forward_and_backward(shape, training, affine, rng, dtype):
    x, gamma, beta, rm, rv = _bn_operands(rng, shape, dtype, affine)
    rm0, rv0 = rm.copy(), rv.copy()
    y, saved = F.batch_norm(x, gamma, beta, rm, rv, training=training, momentum=0.2, eps=1e-3)
    ey, erm, erv = ref.batch_norm(x, gamma, beta, rm0, rv0, training, 0.2, 1e-3)
    assert_close(y, ey, dtype)
    assert_close(rm, erm, dtype)
    assert_close(rv, erv, dtype)
    gy = random_array(rng, shape, dtype)
    gx, gg, gb = F.batch_norm_backward(gy, saved)
    egx, egg, egb = ref.batch_norm_grads(gy, x, gamma, training, 1e-3, rm0, rv0)
    assert_close(gx, egx, dtype)
    if affine:
        assert_close(gg, egg, dtype)
        assert_close(gb, egb, dtype)
    else:
        assert gg is None and gb is None


def test_batch_norm_without_running_stats(rng, dtype):
    x, gamma, beta, _, _ = _bn_operands(rng, (5, 4, 3, 3), dtype)
    y, _ = F.batch_norm(x, gamma, beta)
    assert_close(y, ref.batch_norm(x, gamma, beta)[0], dtype)


def test_batch_norm_gamma_only(rng, dtype):
    x, gamma, _, _, _ = _bn_operands(rng, (5, 4, 3), dtype)
    y, saved = F.batch_norm(x, gamma, None)
    assert_close(y, ref.batch_norm(x, gamma, None)[0], dtype)
    gy = random_array(rng, x.shape, dtype)
    gx, gg, gb = F.batch_norm_backward(gy, saved)
    egx, egg, _ = ref.batch_norm_grads(gy, x, gamma)
    assert gb is None
    assert_close(gx, egx, dtype)
    assert_close(gg, egg, dtype)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batch_norm_backward_finite_differences(training, rng):
    shape = (3, 2, 2, 3)
    x, gamma, beta, rm, rv = _bn_operands(rng, shape, np.float64)
    w = rng.standard_normal(shape)

    def loss(x_, gamma_, beta_):
        y, _ = F.batch_norm(x_, gamma_, beta_, rm.copy(), rv.copy(), training=training)
        return np.sum(y * w)

    _, saved = F.batch_norm(x, gamma, beta, rm.copy(), rv.copy(), training=training)
    gx, gg, gb = F.batch_norm_backward(w, saved)
    np.testing.assert_allclose(gx, ref.numeric_grad(lambda v: loss(v, gamma, beta), x), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(gg, ref.numeric_grad(lambda v: loss(x, v, beta), gamma), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(gb, ref.numeric_grad(lambda v: loss(x, gamma, v), beta), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 5, 5)], ids=str)
def test_batch_norm_matches_torch_over_several_steps(shape, rng, dtype):
    torch = pytest.importorskip("torch")
    c = shape[1]
    gamma = random_array(rng, (c,), dtype)
    beta = random_array(rng, (c,), dtype)
    rm, rv = np.zeros(c, dtype), np.ones(c, dtype)
    rm_t, rv_t = torch.zeros(c, dtype=torch.from_numpy(rm).dtype), torch.ones(c, dtype=torch.from_numpy(rv).dtype)
    for step in range(4):
        x = random_array(rng, shape, dtype) * (step + 1) + step
        gy = random_array(rng, shape, dtype)
        xt = torch.from_numpy(x.copy()).requires_grad_(True)
        gt = torch.from_numpy(gamma.copy()).requires_grad_(True)
        bt = torch.from_numpy(beta.copy()).requires_grad_(True)
        yt = torch.nn.functional.batch_norm(xt, rm_t, rv_t, gt, bt, training=True, momentum=0.1, eps=1e-5)
        yt.backward(torch.from_numpy(gy))
        y, saved = F.batch_norm(x, gamma, beta, rm, rv, training=True, momentum=0.1, eps=1e-5)
        gx, gg, gb = F.batch_norm_backward(gy, saved)
        assert_close(y, yt.detach().numpy().astype(np.float64), dtype)
        assert_close(rm, rm_t.numpy().astype(np.float64), dtype)
        assert_close(rv, rv_t.numpy().astype(np.float64), dtype)
        assert_close(gx, xt.grad.numpy().astype(np.float64), dtype)
        assert_close(gg, gt.grad.numpy().astype(np.float64), dtype)
        assert_close(gb, bt.grad.numpy().astype(np.float64), dtype)
    # eval with the accumulated running stats
    x = random_array(rng, shape, dtype)
    gy = random_array(rng, shape, dtype)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = torch.nn.functional.batch_norm(xt, rm_t, rv_t, torch.from_numpy(gamma), torch.from_numpy(beta), training=False)
    yt.backward(torch.from_numpy(gy))
    y, saved = F.batch_norm(x, gamma, beta, rm, rv, training=False)
    assert_close(y, yt.detach().numpy().astype(np.float64), dtype)
    assert_close(F.batch_norm_backward(gy, saved)[0], xt.grad.numpy().astype(np.float64), dtype)


def test_batch_norm_large_mean_float32(rng):
    # E[x^2] - E[x]^2 in float32 would lose every digit of a unit variance at mean 1e4.
    x = (rng.standard_normal((64, 4, 8, 8)) + 1e4).astype(np.float32)
    rm, rv = np.zeros(4, np.float32), np.ones(4, np.float32)
    y, saved = F.batch_norm(x, None, None, rm, rv, momentum=1.0, eps=0.0)
    ey, erm, erv = ref.batch_norm(x, None, None, np.zeros(4), np.ones(4), True, 1.0, 0.0)
    np.testing.assert_allclose(y, ey, rtol=0, atol=2e-5)
    np.testing.assert_allclose(rv, erv, rtol=1e-5)
    np.testing.assert_allclose(rm, erm, rtol=1e-7)
    gy = rng.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_allclose(F.batch_norm_backward(gy, saved)[0], ref.batch_norm_grads(gy, x, None, eps=0.0)[0], rtol=0, atol=1e-4)


def test_batch_norm_non_contiguous(rng, dtype):
    x, gamma, beta, rm, rv = _bn_operands(rng, (4, 6, 5, 8), dtype)
    x = x[:, ::2, :, ::3]
    gamma, beta, rm, rv = gamma[::2], beta[::2], rm[::2].copy(), rv[::2].copy()
    rm0, rv0 = rm.copy(), rv.copy()
    y, saved = F.batch_norm(x, gamma, beta, rm, rv)
    ey, erm, erv = ref.batch_norm(x, gamma, beta, rm0, rv0)
    assert_close(y, ey, dtype)
    assert_close(rm, erm, dtype)
    gy = np.asfortranarray(random_array(rng, x.shape, dtype))
    assert_close(F.batch_norm_backward(gy, saved)[0], ref.batch_norm_grads(gy, x, gamma)[0], dtype)
    # eval only reads the running stats: any layout will do
    y, _ = F.batch_norm(x, gamma, beta, np.repeat(rm, 2)[::2], np.repeat(rv, 2)[::2], training=False)
    assert_close(y, ref.batch_norm(x, gamma, beta, rm, rv, training=False)[0], dtype)


def test_batch_norm_empty_batch(dtype):
    rm, rv = np.zeros(3, dtype), np.ones(3, dtype)
    for training in (True, False):
        y, saved = F.batch_norm(np.zeros((0, 3, 2, 2), dtype), None, None, rm, rv, training=training)
        assert y.shape == (0, 3, 2, 2)
        gx, _, _ = F.batch_norm_backward(np.zeros((0, 3, 2, 2), dtype), saved)
        assert gx.shape == (0, 3, 2, 2)
    # torch leaves the running stats alone on an empty batch
    np.testing.assert_array_equal(rm, 0.0)
    np.testing.assert_array_equal(rv, 1.0)


def test_batch_norm_threads_agree(rng, num_threads):
    x, gamma, beta, _, _ = _bn_operands(rng, (8, 16, 16, 16), np.float32)
    num_threads(1)
    one = F.batch_norm(x, gamma, beta)[0]
    num_threads(2)
    np.testing.assert_array_equal(F.batch_norm(x, gamma, beta)[0], one)


def test_error_batch_norm_shapes():
    x = np.zeros((4, 3, 2, 2))
    c3 = np.zeros(3)
    with pytest.raises(ValueError, match=r"batch_norm: input: expected 2 or more dims \(N, C, \.\.\.\), got 1-D"):
        F.batch_norm(np.zeros(4), None, None)
    with pytest.raises(ValueError, match=r"batch_norm: gamma: expected shape \(3,\), got \(4,\)"):
        F.batch_norm(x, np.zeros(4), c3)
    with pytest.raises(ValueError, match=r"batch_norm: beta: expected shape \(3,\), got \(1, 3\)"):
        F.batch_norm(x, c3, np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"batch_norm: running_mean: expected shape \(3,\), got \(2,\)"):
        F.batch_norm(x, None, None, np.zeros(2), np.ones(3))
    with pytest.raises(ValueError, match=r"batch_norm: running_var: expected shape \(3,\), got \(4,\)"):
        F.batch_norm(x, None, None, np.zeros(3), np.ones(4))
    with pytest.raises(ValueError, match=r"batch_norm: input: expected more than 1 value per channel when training"):
        F.batch_norm(np.zeros((1, 3)), None, None)
    with pytest.raises(ValueError, match=r"batch_norm: running_mean: expected an array when training=False, got None"):
        F.batch_norm(x, None, None, training=False)
    with pytest.raises(ValueError, match=r"batch_norm: running_var: expected an array when training=False, got None"):
        F.batch_norm(x, None, None, c3, None, training=False)
    with pytest.raises(ValueError, match=r"batch_norm: eps: expected a non-negative value, got -1"):
        F.batch_norm(x, None, None, eps=-1.0)


def test_error_batch_norm_running_stats_in_place():
    x = np.zeros((4, 3))
    with pytest.raises(TypeError, match=r"batch_norm: running_mean: expected dtype float64 to match input, got float32"):
        F.batch_norm(x, None, None, np.zeros(3, np.float32), np.ones(3))
    with pytest.raises(ValueError, match=r"batch_norm: running_mean: expected a writeable, aligned C-contiguous array .* non-contiguous"):
        F.batch_norm(x, None, None, np.zeros(6)[::2], np.ones(3))
    ro = np.ones(3)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"batch_norm: running_var: expected a writeable, aligned C-contiguous array .* read-only"):
        F.batch_norm(x, None, None, np.zeros(3), ro)
    with pytest.raises(TypeError, match=r"batch_norm: running_var: expected a numpy.ndarray"):
        F.batch_norm(x, None, None, np.zeros(3), [1.0, 1.0, 1.0])


def test_error_batch_norm_types_and_backward():
    x = np.zeros((4, 3))
    with pytest.raises(TypeError, match=r"batch_norm: input: expected dtype float32 or float64, got int64"):
        F.batch_norm(np.zeros((4, 3), np.int64), None, None)
    with pytest.raises(TypeError, match=r"batch_norm: gamma: expected dtype float64 to match input, got float32"):
        F.batch_norm(x, np.ones(3, np.float32), None)
    with pytest.raises(TypeError, match=r"batch_norm: momentum: expected a real number, got NoneType"):
        F.batch_norm(x, None, None, momentum=None)
    _, saved = F.batch_norm(x + np.arange(4)[:, None], None, None)
    with pytest.raises(ValueError, match=r"batch_norm_backward: grad_output: expected shape \(4, 3\), got \(3, 4\)"):
        F.batch_norm_backward(np.zeros((3, 4)), saved)
    with pytest.raises(TypeError, match=r"batch_norm_backward: input: expected dtype float32 to match grad_output"):
        F.batch_norm_backward(np.zeros((4, 3), np.float32), saved)
    with pytest.raises(TypeError, match=r"batch_norm_backward: saved: expected the BatchNormSaved from batch_norm, got tuple"):
        F.batch_norm_backward(x, tuple(saved))


# ---- local_response_norm

LRN_CASES = [
    ((2, 7, 3, 4), 5, 1e-4, 0.75, 1.0),
    ((2, 7, 3, 4), 2, 0.5, 0.75, 2.0),
    ((1, 6, 5, 5), 4, 1.0, 0.5, 1.0),
    ((3, 5, 4), 3, 2.0, 1.0, 0.5),
    ((2, 4, 2, 3, 2), 3, 0.7, 0.6, 1.5),
    ((2, 3, 4, 4), 7, 1.5, 0.75, 1.0),  # window wider than the channels
    ((2, 8, 4, 4), 1, 1.0, 0.3, 1.0),
    ((1, 9, 20, 20), 5, 3.0, 0.75, 2.0),  # spatial blocks of 256 positions plus a remainder
]


def _lrn_id(case):
    shape, size, alpha, beta, k = case
    return f"{'x'.join(map(str, shape))}-n{size}-a{alpha}-b{beta}-k{k}"


LRN_PARAMS = [pytest.param(*c, id=_lrn_id(c)) for c in LRN_CASES]


@pytest.mark.parametrize("shape, size, alpha, beta, k", LRN_PARAMS)
def test_lrn_forward_and_backward(shape, size, alpha, beta, k, rng, dtype):
    x = random_array(rng, shape, dtype) * 2
    y = F.local_response_norm(x, size, alpha, beta, k)
    assert y.flags.c_contiguous
    assert_close(y, ref.local_response_norm(x, size, alpha, beta, k), dtype)
    gy = random_array(rng, shape, dtype)
    gx = F.local_response_norm_backward(gy, x, size, alpha, beta, k)
    assert_close(gx, ref.local_response_norm_backward(gy, x, size, alpha, beta, k), dtype)


@pytest.mark.parametrize("shape, size, alpha, beta, k", LRN_PARAMS[:6])
def test_lrn_backward_finite_differences(shape, size, alpha, beta, k, rng):
    x = rng.standard_normal(shape) * 2
    w = rng.standard_normal(shape)
    analytic = F.local_response_norm_backward(w, x, size, alpha, beta, k)
    numeric = ref.numeric_grad(lambda v: np.sum(F.local_response_norm(v, size, alpha, beta, k) * w), x)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("shape, size, alpha, beta, k", LRN_PARAMS)
def test_lrn_matches_torch(shape, size, alpha, beta, k, rng, dtype):
    torch = pytest.importorskip("torch")
    x = random_array(rng, shape, dtype) * 2
    gy = random_array(rng, shape, dtype)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = torch.nn.functional.local_response_norm(xt, size, alpha, beta, k)
    yt.backward(torch.from_numpy(gy))
    assert_close(F.local_response_norm(x, size, alpha, beta, k), yt.detach().numpy().astype(np.float64), dtype)
    gx = F.local_response_norm_backward(gy, x, size, alpha, beta, k)
    assert_close(gx, xt.grad.numpy().astype(np.float64), dtype)


def test_lrn_defaults_match_alexnet(rng, dtype):
    x = random_array(rng, (2, 12, 5, 5), dtype) * 30
    assert_close(F.local_response_norm(x, 5), ref.local_response_norm(x, 5, 1e-4, 0.75, 1.0), dtype)


def test_lrn_non_contiguous_and_empty(rng, dtype):
    x = random_array(rng, (3, 8, 6, 10), dtype)[:, ::2, :, 1::3]
    assert_close(F.local_response_norm(x, 3, 1.0), ref.local_response_norm(x, 3, 1.0), dtype)
    gy = np.asfortranarray(random_array(rng, x.shape, dtype))
    assert_close(F.local_response_norm_backward(gy, x, 3, 1.0), ref.local_response_norm_backward(gy, x, 3, 1.0), dtype)
    empty = np.zeros((0, 4, 3, 3), dtype)
    assert F.local_response_norm(empty, 3).shape == empty.shape
    assert F.local_response_norm_backward(empty, empty, 3).shape == empty.shape


def test_lrn_threads_agree(rng, num_threads):
    x = random_array(rng, (4, 16, 24, 24), np.float32)
    num_threads(1)
    one = F.local_response_norm(x, 5, 1.0)
    num_threads(2)
    np.testing.assert_array_equal(F.local_response_norm(x, 5, 1.0), one)


# ---- local_response_norm next to large channels: every window sum must carry the
# rounding error of its own terms only, whatever the other channels hold.

# Elementwise relative tolerance against the float64 reference.
LRN_RTOL = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}


def _wide_range(rng, shape, lo, hi):
    """Values 10**uniform(lo, hi) with random signs: channels many orders apart."""
    return rng.choice([-1.0, 1.0], shape) * 10.0 ** rng.uniform(lo, hi, shape)


def _lrn_grad_scale(grad_out, x, size, alpha, beta, k):
    """The reference gradient with every term taken in absolute value: the scale of
    the rounding error of any direct evaluation, as its two parts may cancel."""
    x3 = np.asarray(x, np.float64).reshape(x.shape[0], x.shape[1], -1)
    g3 = np.abs(np.asarray(grad_out, np.float64)).reshape(x3.shape)
    d = ref._lrn_denominator(x3, size, alpha, k)
    scale = g3 * d**-beta
    for c in range(x3.shape[1]):
        common = g3[:, c] * np.abs(x3[:, c] * d[:, c] ** (-beta - 1)) * abs(2.0 * alpha * beta / size)
        for j in ref._lrn_window(c, x3.shape[1], size):
            scale[:, j] += common * np.abs(x3[:, j])
    return scale.reshape(x.shape)


def _assert_lrn_close(x, gy, y, gx, size, alpha, beta, k, rtol):
    np.testing.assert_allclose(y, ref.local_response_norm(x, size, alpha, beta, k), rtol=rtol, atol=0)
    err = np.abs(gx - ref.local_response_norm_backward(gy, x, size, alpha, beta, k))
    bound = rtol * _lrn_grad_scale(gy, x, size, alpha, beta, k)
    worst = np.unravel_index(np.argmax(err - bound), err.shape)
    assert np.all(err <= bound), f"gradient error {err[worst]:.3g} > {bound[worst]:.3g} at {worst}"


def test_lrn_large_channel_example(dtype):
    # size 1: each channel's window is itself, so y_c = x_c / (k + x_c^2)^beta exactly.
    x = np.array([1e8, 0.9, 0.1], dtype).reshape(1, 3, 1)
    x64 = x.astype(np.float64)
    s = 0.5 + x64**2
    y = F.local_response_norm(x, 1, alpha=1.0, beta=0.75, k=0.5)
    expected = x64 * s**-0.75
    np.testing.assert_allclose(expected.ravel(), [1e-4, 0.7350, 0.1657], rtol=2e-4)  # torch's values
    rtol = LRN_RTOL[np.dtype(dtype)]
    np.testing.assert_allclose(y, expected, rtol=rtol, atol=0)
    gy = np.array([0.3, -1.2, 0.7], dtype).reshape(1, 3, 1)
    gx = F.local_response_norm_backward(gy, x, 1, alpha=1.0, beta=0.75, k=0.5)
    # dy/dx = s^-beta (1 - 2 beta x^2 / s) = s^-beta (0.5 - 0.5 x^2) / s here.
    expected_gx = gy * s**-0.75 * (0.5 - 0.5 * x64**2) / s
    # The two terms of dy/dx partly cancel: judged on the scale of the terms.
    assert np.all(np.abs(gx - expected_gx) <= rtol * _lrn_grad_scale(gy, x, 1, 1.0, 0.75, 0.5))


# (shape, size, alpha, beta, k): 3-D, 4-D and 5-D, sizes 1..7 with even ones and
# windows wider than the channels, every special-cased exponent and a general one.
LRN_WIDE_CASES = [
    ((2, 9, 7), 1, 1.0, 0.75, 0.5),
    ((2, 9, 7), 2, 1.0, 0.75, 1.0),
    ((2, 9, 7), 3, 0.5, 0.5, 1.0),
    ((2, 9, 7), 4, 2.0, 1.0, 0.5),
    ((2, 9, 7), 5, 1e-4, 0.75, 2.0),
    ((2, 9, 7), 6, 1.0, 0.6, 1.0),
    ((2, 9, 7), 7, 1.0, 0.75, 1.0),
    ((3, 6, 3, 5), 2, 1.0, 0.5, 0.5),
    ((1, 12, 17, 17), 5, 1.0, 0.75, 1.0),  # a spatial block of 256 plus a remainder
    ((2, 4, 3, 5), 7, 1.0, 0.75, 1.0),  # window wider than the channels
    ((2, 5, 2, 3, 2), 3, 1.0, 0.75, 1.0),
    ((2, 3, 2, 2, 3), 6, 0.7, 1.3, 1.5),
]
LRN_WIDE_PARAMS = [pytest.param(*c, id=_lrn_id(c)) for c in LRN_WIDE_CASES]


@pytest.mark.parametrize("shape, size, alpha, beta, k", LRN_WIDE_PARAMS)
def test_lrn_channels_many_orders_apart(shape, size, alpha, beta, k, rng, dtype):
    x = _wide_range(rng, shape, -8, 8).astype(dtype)
    gy = _wide_range(rng, shape, -2, 2).astype(dtype)
    y = F.local_response_norm(x, size, alpha, beta, k)
    gx = F.local_response_norm_backward(gy, x, size, alpha, beta, k)
    assert y.dtype == gx.dtype == np.dtype(dtype)
    _assert_lrn_close(x, gy, y, gx, size, alpha, beta, k, LRN_RTOL[np.dtype(dtype)])


def test_lrn_window_over_hundreds_of_channels(rng, dtype):
    # A window this wide narrows the backward's spatial blocks (224 positions, then 6).
    x = _wide_range(rng, (1, 300, 230), -4, 4).astype(dtype)
    gy = _wide_range(rng, x.shape, -1, 1).astype(dtype)
    y = F.local_response_norm(x, 280, 1.0, 0.75, 1.0)
    gx = F.local_response_norm_backward(gy, x, 280, 1.0, 0.75, 1.0)
    _assert_lrn_close(x, gy, y, gx, 280, 1.0, 0.75, 1.0, LRN_RTOL[np.dtype(dtype)])


@pytest.mark.parametrize("k", [0.0, 1e-30])
@pytest.mark.parametrize("beta", [0.75, 0.5, 1.0, 0.6])
def test_lrn_float32_windows_beyond_float_range(k, beta, rng):
    # With k ~ 0 the window sums of tiny or huge float32 inputs, or their powers, leave
    # float's range while y (and, on the narrower ranges, the gradient) stay inside it.
    rtol = LRN_RTOL[np.dtype(np.float32)]
    for lo, hi in [(-30, -20), (20, 30)]:
        x = _wide_range(rng, (2, 6, 4), lo, hi).astype(np.float32)
        y = F.local_response_norm(x, 3, 1.0, beta, k)
        np.testing.assert_allclose(y, ref.local_response_norm(x, 3, 1.0, beta, k), rtol=rtol, atol=0)
    for lo, hi in [(-18, -12), (12, 18)]:
        x = _wide_range(rng, (2, 6, 4), lo, hi).astype(np.float32)
        gy = _wide_range(rng, x.shape, -1, 1).astype(np.float32)
        y = F.local_response_norm(x, 3, 1.0, beta, k)
        gx = F.local_response_norm_backward(gy, x, 3, 1.0, beta, k)
        _assert_lrn_close(x, gy, y, gx, 3, 1.0, beta, k, rtol)


@pytest.mark.parametrize("shape, size, alpha, beta, k", LRN_WIDE_PARAMS[:8] + LRN_WIDE_PARAMS[9:])  # not the big one
def test_lrn_wide_range_finite_differences(shape, size, alpha, beta, k, rng):
    # Steps relative to each input, and each output weighted by the inverse of its
    # magnitude, so that every input's derivative is resolved on its own scale.
    x = _wide_range(rng, shape, -3, 5)
    k = k * 1e-3
    w = rng.choice([-1.0, 1.0], shape) / np.abs(ref.local_response_norm(x, size, alpha, beta, k))
    analytic = F.local_response_norm_backward(w, x, size, alpha, beta, k) * x
    numeric = ref.numeric_grad(
        lambda v: np.sum(F.local_response_norm(x * (1 + v), size, alpha, beta, k) * w), np.zeros(shape)
    )
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape, size, alpha, beta, k", LRN_WIDE_PARAMS)
def test_lrn_channels_many_orders_apart_match_torch(shape, size, alpha, beta, k, rng, dtype):
    torch = pytest.importorskip("torch")
    x = _wide_range(rng, shape, -8, 8).astype(dtype)
    gy = _wide_range(rng, shape, -2, 2).astype(dtype)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = torch.nn.functional.local_response_norm(xt, size, alpha, beta, k)
    yt.backward(torch.from_numpy(gy))
    # torch's float32 sums and powers run in float32: a few float32 roundings more.
    rtol = 1e-11 if dtype == np.float64 else 1e-5
    y = F.local_response_norm(x, size, alpha, beta, k)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=rtol, atol=0)
    err = np.abs(F.local_response_norm_backward(gy, x, size, alpha, beta, k).astype(np.float64) - xt.grad.numpy())
    assert np.all(err <= rtol * _lrn_grad_scale(gy, x, size, alpha, beta, k))


@pytest.mark.parametrize("op", [F.local_response_norm, F.local_response_norm_backward])
def test_error_lrn(op):
    name = op.__name__
    backward = name.endswith("_backward")

    def call(x, size, **kw):
        return op(x, x, size, **kw) if backward else op(x, size, **kw)

    x = np.zeros((2, 3, 4))
    with pytest.raises(ValueError, match=rf"{name}: size: expected a positive integer, got 0"):
        call(x, 0)
    with pytest.raises(TypeError, match=rf"{name}: size: expected an int, got float"):
        call(x, 2.0)
    with pytest.raises(TypeError, match=rf"{name}: alpha: expected a real number, got str"):
        call(x, 2, alpha="1")
    with pytest.raises(ValueError, match=rf"{name}: input: expected 3 or more dims \(N, C, \.\.\.\), got 2-D"):
        call(np.zeros((2, 3)), 2)
    with pytest.raises(TypeError, match=rf"{name}: .*: expected dtype float32 or float64, got int64"):
        call(np.zeros((2, 3, 4), np.int64), 2)
    if backward:
        with pytest.raises(ValueError, match=rf"{name}: grad_output: expected shape \(2, 3, 4\), got \(2, 3, 5\)"):
            op(np.zeros((2, 3, 5)), x, 2)
