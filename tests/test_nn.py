"""cnnkit.nn: the Module API (parameters, state, modes, errors), each layer against the
functional op it wraps, initialisation, losses and the deconvnet projection."""

import inspect
import io
import math
import os
import pickle
import re

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


@pytest.mark.parametrize("state", [None, [("0.weight", np.zeros((2, 1, 3, 3)))], "0.weight", 3],
                         ids=["None", "list-of-pairs", "str", "int"])
def test_load_state_dict_not_a_mapping(state):
    net = small_net()
    with pytest.raises(TypeError, match=r"^Sequential\.load_state_dict: state_dict: expected a mapping of names to "
                                        r"arrays .*, got " + type(state).__name__ + "$"):
        net.load_state_dict(state)


@pytest.mark.parametrize("method", ["save", "load"])
@pytest.mark.parametrize("path", [None, 3, 1.5, ["net.npz"], io.BytesIO],
                         ids=["None", "int-fd", "float", "list", "class"])
def test_save_load_bad_path_type(method, path):
    net = small_net()
    with pytest.raises(TypeError, match=rf"^Sequential\.{method}: path: expected a str, bytes or os\.PathLike path "
                                        rf".*, got {type(path).__name__}$"):
        getattr(net, method)(path)


@pytest.mark.parametrize("kind", ["str", "bytes", "pathlib", "file"])
def test_save_load_path_kinds(tmp_path, kind):
    cnnkit.manual_seed(0)
    a = small_net()
    cnnkit.manual_seed(1)
    b = small_net()
    if kind == "file":
        buffer = io.BytesIO()
        assert a.save(buffer) is buffer
        buffer.seek(0)
        b.load(buffer)
    else:
        name = tmp_path / "net"  # save appends .npz, as numpy.savez does
        path = {"str": str(name), "bytes": os.fsencode(name), "pathlib": name}[kind]
        assert a.save(path) == str(name) + ".npz"
        b.load({"str": str, "bytes": os.fsencode, "pathlib": lambda p: p}[kind](str(name) + ".npz"))
    for (key, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        np.testing.assert_array_equal(va, vb, err_msg=key)


def _bad_files(tmp_path):
    """name -> (path of a file that load must refuse, what the message says)."""
    small_net().save(tmp_path / "good.npz")
    raw = (tmp_path / "good.npz").read_bytes()
    files = {
        "text": (b"not an archive at all\n",
                 "a file that is not one .neither a zip archive nor a readable .npy file; load never unpickles.$"),
        "pickle": (pickle.dumps({"0.weight": np.zeros(3)}), "a file that is not one"),
        "empty": (b"", "a truncated or corrupt one"),
        "truncated": (raw[: len(raw) // 2], "a truncated or corrupt one"),
    }
    damaged = bytearray(raw)
    start = raw.index(b"\x93NUMPY") + 128  # inside the first member's data (stored, not compressed)
    damaged[start : start + 8] = b"\xff" * 8
    files["bad-crc"] = (bytes(damaged), "one it cannot read .BadZipFile")
    out = {}
    for name, (content, says) in files.items():
        path = tmp_path / f"{name}.npz"
        path.write_bytes(content)
        out[name] = (path, says)
    np.save(tmp_path / "array.npy", np.zeros(3))
    out["npy"] = (tmp_path / "array.npy", r"a \.npy file \(one array of shape \(3,\)\)")
    np.savez(tmp_path / "objects.npz", **{"0.weight": np.array([None, 1], dtype=object)})
    out["object-array"] = (tmp_path / "objects.npz", "one it cannot read .ValueError: Object arrays cannot be loaded")
    return out


@pytest.mark.parametrize("name", ["text", "pickle", "empty", "truncated", "bad-crc", "npy", "object-array"])
def test_load_refuses_files_that_are_not_npz(tmp_path, name):
    path, says = _bad_files(tmp_path)[name]
    net = small_net()
    before = net.state_dict()
    with pytest.raises(ValueError, match=rf"^Sequential\.load: {re.escape(str(path))}: expected an \.npz archive "
                                         rf"written by save, got {says}"):
        net.load(path)
    for key, value in net.state_dict().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


def test_load_names_the_file_and_the_key(tmp_path):
    nn.Sequential(nn.Linear(4, 3)).save(tmp_path / "other.npz")
    net = nn.Sequential(nn.Linear(3, 4))
    with pytest.raises(ValueError, match=rf"^Sequential\.load: {re.escape(str(tmp_path / 'other.npz'))}: "
                                         r"load_state_dict: '0\.weight': expected shape \(4, 3\), got \(3, 4\)$"):
        net.load(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        net.load(tmp_path / "missing.npz")


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
    "lp_pool": (lambda: nn.LPPool2d(2, 2), (1, 2, 4, 4)),
    "dropout_eval": (lambda: nn.Dropout(0.5).eval(), (2, 3)),
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
    with pytest.raises(RuntimeError, match="MaxUnpool2d.backward: called before forward"):
        nn.MaxUnpool2d(nn.MaxPool2d(2)).backward(np.zeros((1, 1, 2, 2), np.float32))


def test_to_rejects_other_dtypes():
    for bad in (np.int32, None, "nonsense"):
        with pytest.raises(TypeError, match="Sequential.to: dtype: expected float32 or float64"):
            small_net().to(bad)


# ---- state after a forward that raised --------------------------------------------------
@pytest.mark.parametrize("make, shape", LAYER_CASES.values(), ids=LAYER_CASES.keys())
def test_failed_forward_leaves_no_stale_state(make, shape, rng):
    layer = make()
    x = rng.standard_normal(shape).astype(np.float32)
    y = layer(x)
    with pytest.raises(TypeError, match="input: expected a numpy.ndarray"):
        layer([[1.0]])
    # The good forward's state is gone with the failed one, and backward says so ...
    with pytest.raises(RuntimeError, match=f"{type(layer).__name__}.backward: called before forward .or after a forward that raised"):
        layer.backward(np.ones_like(y))
    # ... and the next good forward/backward work, on another batch size too.
    x2 = rng.standard_normal((3,) + shape[1:]).astype(np.float32)
    y2 = layer(x2)
    assert layer.backward(np.ones_like(y2)).shape == x2.shape


def test_failed_forward_clears_a_sequential_and_its_children(rng):
    # ReLU saves the bad input before Linear refuses it: backward used to mix the two
    # forwards (and fail on the old shape inside relu_backward).
    net = nn.Sequential(nn.ReLU(), nn.Linear(3, 2))
    x = rng.standard_normal((2, 3)).astype(np.float32)
    g = np.ones((2, 2), np.float32)
    net(x)
    with pytest.raises(ValueError, match="Linear: input: expected shape"):
        net(rng.standard_normal((5, 4)).astype(np.float32))
    for m in (net, net[0], net[1]):
        with pytest.raises(RuntimeError, match="called before forward"):
            m.backward(g if m is not net[0] else np.ones((2, 3), np.float32))
    net.zero_grad()
    net(x)
    gx = net.backward(g)
    expected = nn.Sequential(nn.ReLU(), nn.Linear(3, 2))
    expected[1].weight.data[...] = net[1].weight.data
    expected(x)
    np.testing.assert_array_equal(gx, expected.backward(g))
    np.testing.assert_array_equal(net[1].weight.grad, expected[1].weight.grad)


def test_failed_forward_clears_the_switches(rng):
    pool = nn.MaxPool2d(2)
    pool(rng.standard_normal((1, 1, 4, 4)).astype(np.float32))
    with pytest.raises(ValueError):
        pool(np.zeros((1, 1, 1, 1), np.float32))  # smaller than the window
    assert pool.switches is None and pool.input_shape is None
    with pytest.raises(RuntimeError, match="MaxPool2d has not run forward"):
        nn.MaxUnpool2d(pool)(np.zeros((1, 1, 2, 2), np.float32))


def test_backward_after_a_refused_backward(rng):
    layer = nn.Conv2d(1, 2, 3)
    x = rng.standard_normal((2, 1, 5, 5)).astype(np.float32)
    y = layer(x)
    with pytest.raises(ValueError):
        layer.backward(np.ones((2, 2, 4, 4), np.float32))
    assert layer.backward(np.ones_like(y)).shape == x.shape


# ---- backward's grad_output ---------------------------------------------------------------
@pytest.mark.parametrize("make, shape", LAYER_CASES.values(), ids=LAYER_CASES.keys())
def test_backward_checks_grad_output(make, shape, rng):
    layer = make()
    y = layer(rng.standard_normal(shape).astype(np.float32))
    name = type(layer).__name__
    expected = re.escape(str(y.shape))
    with pytest.raises(TypeError, match=rf"{name}.backward: grad_output: expected an array of shape {expected} .forward's output., got list"):
        layer.backward(np.ones_like(y).tolist())
    wrong = np.ones(y.shape[:-1] + (y.shape[-1] + 1,), np.float32)
    with pytest.raises(ValueError, match=rf"{name}.backward: grad_output: expected shape {expected} .forward's output., got {re.escape(str(wrong.shape))}"):
        layer.backward(wrong)
    assert layer.backward(np.ones_like(y)).shape == shape


def test_maxpool_return_indices_backward_takes_the_output_gradient(rng):
    pool = nn.MaxPool2d(2, return_indices=True)
    y, switches = pool(rng.standard_normal((1, 2, 4, 4)))
    assert pool.backward(np.ones_like(y)).shape == (1, 2, 4, 4)
    with pytest.raises(ValueError, match="grad_output: expected shape"):
        pool.backward(np.ones((1, 2, 4, 4)))


def test_user_module_is_guarded(rng):
    class Double(nn.Module):
        def forward(self, x):
            if x.ndim != 2:
                raise ValueError("Double: input: expected 2-D")
            self._save(x.shape)
            return 2 * x

        def backward(self, grad_output):
            self._saved()
            return 2 * grad_output

    m = Double()
    with pytest.raises(RuntimeError, match="Double.backward: called before forward"):
        m.backward(np.ones((1, 1)))
    m(np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"Double.backward: grad_output: expected shape \(2, 2\)"):
        m.backward(np.ones((2, 3)))
    with pytest.raises(ValueError, match="expected 2-D"):
        m(np.ones(2))
    with pytest.raises(RuntimeError, match="Double.backward: called before forward"):
        m.backward(np.ones((2, 2)))
    assert Double.forward.__doc__ is None and Double.forward.__name__ == "forward"


# ---- Parameter is array-like ----------------------------------------------------------------
def test_parameter_is_array_like():
    conv = nn.Conv2d(2, 3, 3)
    p = conv.weight
    a = np.asarray(p)
    assert a is p.data  # no copy: the parameter's own array
    assert (p.shape, p.dtype, p.size, p.ndim) == ((3, 2, 3, 3), np.float32, 54, 4)
    np.testing.assert_array_equal(np.array(p), p.data)
    assert not np.shares_memory(np.array(p), p.data)  # np.array copies
    b = np.asarray(p, dtype=np.float64)
    assert b.dtype == np.float64 and not np.shares_memory(b, p.data)
    np.testing.assert_array_equal(np.add(p, 1), p.data + 1)  # ufuncs take it
    assert float(np.sum(p)) == pytest.approx(float(p.data.sum()))
    # NumPy 1 calls __array__() and __array__(dtype) without copy.
    assert p.__array__() is p.data and p.__array__(np.float64).dtype == np.float64
    assert p.__array__(copy=True) is not p.data
    with pytest.raises(ValueError, match="Parameter.__array__: copy: converting float32 to float64 needs a copy"):
        p.__array__(np.float64, copy=False)
    assert p.__array__(np.float32, copy=False) is p.data


def test_parameter_properties_are_read_only():
    p = nn.Parameter(np.zeros((2, 3)))
    for name in ("shape", "dtype", "size", "ndim"):
        with pytest.raises(AttributeError):
            setattr(p, name, 1)
    assert p.grad.shape == (2, 3) and p.grad.dtype == np.float64
    assert repr(p) == "Parameter(shape=(2, 3), dtype=float64)"


def test_parameter_rejects_non_float_data():
    with pytest.raises(TypeError, match="Parameter: data: expected a float32 or float64 array, got <U3"):
        nn.Parameter("abc")
    with pytest.raises(TypeError, match="Parameter: data: expected a float32 or float64 array, got int64"):
        nn.Parameter(np.arange(3))


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


# Every constructor argument of every layer: the exception type and a message that
# names the layer and the argument, what was expected and what came.
BAD_CONSTRUCTORS = {
    "conv_kernel_0": (lambda: nn.Conv2d(3, 4, 0), ValueError, r"Conv2d: kernel_size: expected positive ints, got \(0, 0\)"),
    "conv_kernel_str": (lambda: nn.Conv2d(3, 4, "3"), TypeError, "Conv2d: kernel_size: expected an int or a pair of ints, got str"),
    "conv_kernel_triple": (lambda: nn.Conv2d(3, 4, (1, 2, 3)), ValueError, "Conv2d: kernel_size: expected an int or a pair"),
    "conv_stride_0": (lambda: nn.Conv2d(3, 4, 3, stride=0), ValueError, r"Conv2d: stride: expected positive ints, got \(0, 0\)"),
    "conv_dilation_neg": (lambda: nn.Conv2d(3, 4, 3, dilation=(1, -1)), ValueError, r"Conv2d: dilation: expected positive ints, got \(1, -1\)"),
    "conv_padding_neg": (lambda: nn.Conv2d(3, 4, 3, padding=-1), ValueError, r"Conv2d: padding: expected non-negative ints, got \(-1, -1\)"),
    "conv_padding_word": (lambda: nn.Conv2d(3, 4, 3, padding="full"), ValueError, "Conv2d: padding: expected an int, a pair, 'valid' or 'same', got 'full'"),
    "conv_same_strided": (lambda: nn.Conv2d(3, 4, 3, stride=2, padding="same"), ValueError, "Conv2d: padding: 'same' needs stride 1"),
    "conv_in_0": (lambda: nn.Conv2d(0, 4, 3), ValueError, "Conv2d: in_channels: expected a positive int, got 0"),
    "conv_in_str": (lambda: nn.Conv2d("3", 4, 3), TypeError, "Conv2d: in_channels: expected an int, got str"),
    "conv_out_float": (lambda: nn.Conv2d(3, 4.0, 3), TypeError, "Conv2d: out_channels: expected an int, got float"),
    "conv_groups_0": (lambda: nn.Conv2d(3, 4, 3, groups=0), ValueError, "Conv2d: groups: expected a positive int, got 0"),
    "conv_groups_divisor": (lambda: nn.Conv2d(3, 4, 3, groups=2), ValueError, "Conv2d: groups: expected a divisor"),
    "conv_groups_none": (lambda: nn.Conv2d(3, 4, 3, groups=None), TypeError, "Conv2d: groups: expected an int, got NoneType"),
    "conv_huge": (lambda: nn.Conv2d(3, 4, 2**64), ValueError, "Conv2d: kernel_size: expected an int or a pair of ints within the int64 range"),
    "convt_output_padding": (lambda: nn.ConvTranspose2d(2, 2, 3, stride=2, output_padding=2), ValueError, r"ConvTranspose2d: output_padding: expected values smaller than stride \(2, 2\) or dilation \(1, 1\), got \(2, 2\)"),
    "convt_output_padding_neg": (lambda: nn.ConvTranspose2d(2, 2, 3, output_padding=-1), ValueError, "ConvTranspose2d: output_padding: expected non-negative ints"),
    "convt_padding_neg": (lambda: nn.ConvTranspose2d(2, 2, 3, padding=(0, -2)), ValueError, "ConvTranspose2d: padding: expected non-negative ints"),
    "convt_kernel_0": (lambda: nn.ConvTranspose2d(2, 2, (3, 0)), ValueError, "ConvTranspose2d: kernel_size: expected positive ints"),
    "convt_groups": (lambda: nn.ConvTranspose2d(2, 3, 3, groups=2), ValueError, "ConvTranspose2d: groups: expected a divisor"),
    "linear_out_neg": (lambda: nn.Linear(3, -1), ValueError, "Linear: out_features: expected a positive int, got -1"),
    "linear_in_str": (lambda: nn.Linear("3", 2), TypeError, "Linear: in_features: expected an int, got str"),
    "linear_in_bool": (lambda: nn.Linear(True, 2), TypeError, "Linear: in_features: expected an int, got bool"),
    "maxpool_neg": (lambda: nn.MaxPool2d(-1), ValueError, r"MaxPool2d: kernel_size: expected positive ints, got \(-1, -1\)"),
    "maxpool_str": (lambda: nn.MaxPool2d("2"), TypeError, "MaxPool2d: kernel_size: expected an int or a pair of ints, got str"),
    "maxpool_stride_0": (lambda: nn.MaxPool2d(2, stride=0), ValueError, "MaxPool2d: stride: expected positive ints"),
    "maxpool_padding_big": (lambda: nn.MaxPool2d(2, padding=2), ValueError, r"MaxPool2d: padding: expected at most half of kernel_size \(2, 2\), \(1, 1\), got \(2, 2\)"),
    "maxpool_padding_neg": (lambda: nn.MaxPool2d(3, padding=-1), ValueError, "MaxPool2d: padding: expected non-negative ints"),
    "maxpool_dilation_0": (lambda: nn.MaxPool2d(2, dilation=0), ValueError, "MaxPool2d: dilation: expected positive ints"),
    "avgpool_0": (lambda: nn.AvgPool2d(0), ValueError, "AvgPool2d: kernel_size: expected positive ints"),
    "avgpool_stride_str": (lambda: nn.AvgPool2d(2, stride="1"), TypeError, "AvgPool2d: stride: expected an int or a pair"),
    "avgpool_padding_big": (lambda: nn.AvgPool2d(3, padding=2), ValueError, "AvgPool2d: padding: expected at most half of kernel_size"),
    "lppool_norm_str": (lambda: nn.LPPool2d("x", 2), TypeError, "LPPool2d: norm_type: expected a real number, got str"),
    "lppool_norm_0": (lambda: nn.LPPool2d(0, 2), ValueError, "LPPool2d: norm_type: expected a non-zero number, got 0.0"),
    "lppool_norm_nan": (lambda: nn.LPPool2d(float("nan"), 2), ValueError, "LPPool2d: norm_type: expected a non-zero number, got nan"),
    "lppool_kernel_0": (lambda: nn.LPPool2d(2, 0), ValueError, "LPPool2d: kernel_size: expected positive ints"),
    "lppool_stride_neg": (lambda: nn.LPPool2d(2, 2, stride=-1), ValueError, "LPPool2d: stride: expected positive ints"),
    "dropout_str": (lambda: nn.Dropout("0.5"), TypeError, "Dropout: p: expected a real number, got str"),
    "dropout_1": (lambda: nn.Dropout(1.0), ValueError, r"Dropout: p: expected a probability in \[0, 1\), got 1.0"),
    "dropout_neg": (lambda: nn.Dropout(-0.1), ValueError, r"Dropout: p: expected a probability in \[0, 1\)"),
    "dropout_nan": (lambda: nn.Dropout(float("nan")), ValueError, r"Dropout: p: expected a probability in \[0, 1\), got nan"),
    "bn_0": (lambda: nn.BatchNorm2d(0), ValueError, "BatchNorm2d: num_features: expected a positive int, got 0"),
    "bn_float": (lambda: nn.BatchNorm2d(2.5), TypeError, "BatchNorm2d: num_features: expected an int, got float"),
    "bn_eps_str": (lambda: nn.BatchNorm2d(2, eps="1e-5"), TypeError, "BatchNorm2d: eps: expected a real number, got str"),
    "bn_eps_neg": (lambda: nn.BatchNorm2d(2, eps=-1e-5), ValueError, "BatchNorm2d: eps: expected a non-negative value"),
    "bn_momentum_none": (lambda: nn.BatchNorm2d(2, momentum=None), TypeError, "BatchNorm2d: momentum: expected a real number, got NoneType"),
    "bn_momentum_big": (lambda: nn.BatchNorm2d(2, momentum=1.5), ValueError, r"BatchNorm2d: momentum: expected a value in \[0, 1\], got 1.5"),
    "lrn_0": (lambda: nn.LocalResponseNorm(0), ValueError, "LocalResponseNorm: size: expected a positive int, got 0"),
    "lrn_float": (lambda: nn.LocalResponseNorm(2.0), TypeError, "LocalResponseNorm: size: expected an int, got float"),
    "lrn_alpha": (lambda: nn.LocalResponseNorm(2, alpha="a"), TypeError, "LocalResponseNorm: alpha: expected a real number, got str"),
    "lrn_beta": (lambda: nn.LocalResponseNorm(2, beta=None), TypeError, "LocalResponseNorm: beta: expected a real number"),
    "lrn_k": (lambda: nn.LocalResponseNorm(2, k=[1]), TypeError, "LocalResponseNorm: k: expected a real number, got list"),
    "softmax_dim": (lambda: nn.Softmax("a"), TypeError, "Softmax: dim: expected an int, got str"),
    "log_softmax_dim": (lambda: nn.LogSoftmax(1.0), TypeError, "LogSoftmax: dim: expected an int, got float"),
    "flatten_start": (lambda: nn.Flatten("a"), TypeError, "Flatten: start_dim: expected an int, got str"),
    "flatten_end": (lambda: nn.Flatten(1, None), TypeError, "Flatten: end_dim: expected an int, got NoneType"),
    "flatten_order": (lambda: nn.Flatten(2, 1), ValueError, r"Flatten: start_dim: expected a dim at or before end_dim \(1\), got 2"),
    "unpool_pool": (lambda: nn.MaxUnpool2d(nn.AvgPool2d(2)), TypeError, "MaxUnpool2d: pool: expected a MaxPool2d, got AvgPool2d"),
    "ce_reduction": (lambda: nn.CrossEntropyLoss(reduction="avg"), ValueError, "CrossEntropyLoss: reduction: expected one of"),
    "mse_reduction_type": (lambda: nn.MSELoss(reduction=None), TypeError, "MSELoss: reduction: expected one of"),
    "dtype_int": (lambda: nn.Linear(2, 2, dtype=np.int32), TypeError, "Linear: dtype: expected float32 or float64, got int32"),
    "dtype_word": (lambda: nn.Conv2d(2, 2, 1, dtype="float16"), TypeError, "Conv2d: dtype: expected float32 or float64, got float16"),
    "dtype_junk": (lambda: nn.BatchNorm2d(2, dtype="nonsense"), TypeError, "BatchNorm2d: dtype: expected float32 or float64, got 'nonsense'"),
}


@pytest.mark.parametrize("make, error, match", BAD_CONSTRUCTORS.values(), ids=BAD_CONSTRUCTORS.keys())
def test_bad_constructor_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


TOO_BIG = {
    "linear_in": (lambda: nn.Linear(2**62, 4), "Linear", "in_features", r"weight \(out_features, in_features\)"),
    "linear_out": (lambda: nn.Linear(4, 2**63 - 1, bias=False), "Linear", "out_features", "weight"),
    "linear_float64": (lambda: nn.Linear(2**60, 1, dtype=np.float64), "Linear", "in_features", "weight .* float64"),
    "conv_in": (lambda: nn.Conv2d(2**62, 4, 3), "Conv2d", "in_channels",
                r"weight \(out_channels, in_channels / groups, kH, kW\)"),
    "conv_out": (lambda: nn.Conv2d(3, 2**63 - 1, 3), "Conv2d", "out_channels", "weight"),
    "conv_kernel_2^31": (lambda: nn.Conv2d(3, 4, 2**31), "Conv2d", "kernel_size", "weight"),
    "conv_kernel_pair": (lambda: nn.Conv2d(3, 4, (3, 2**62)), "Conv2d", "kernel_size", "weight"),
    "convT_in": (lambda: nn.ConvTranspose2d(2**62, 4, 3), "ConvTranspose2d", "in_channels",
                 r"weight \(in_channels, out_channels / groups, kH, kW\)"),
    "convT_out": (lambda: nn.ConvTranspose2d(3, 2**62, 3), "ConvTranspose2d", "out_channels", "weight"),
    "convT_kernel": (lambda: nn.ConvTranspose2d(3, 4, 2**63 - 1), "ConvTranspose2d", "kernel_size", "weight"),
    "batchnorm": (lambda: nn.BatchNorm2d(2**62), "BatchNorm2d", "num_features", r"weight \(num_features,\)"),
    "batchnorm_buffers": (lambda: nn.BatchNorm2d(2**62, affine=False), "BatchNorm2d", "num_features",
                          r"running_mean \(num_features,\)"),
}


@pytest.mark.parametrize("make, layer, arg, what", TOO_BIG.values(), ids=TOO_BIG.keys())
def test_parameters_too_big_to_allocate(make, layer, arg, what):
    """A parameter beyond NumPy's 2**63 - 1 bytes is a ValueError naming the layer and
    the argument that makes it too big (not numpy's 'array is too big')."""
    cnnkit.manual_seed(0)
    state = cnnkit._random.get_state()
    with pytest.raises(ValueError, match=rf"^{layer}: {arg}: expected a value for which {what}.* is at most "
                                         r"2\*\*63 - 1 bytes, got \d+, which makes it shape \(.*\), \d+ bytes$"):
        make()
    assert cnnkit._random.get_state() == state  # nothing was drawn


def test_parameter_size_bound_is_numpys():
    from cnnkit.nn.layers import _check_size

    _check_size("Layer", "w", (2**60 - 1,), ("n",), np.float64)  # 2**63 - 8 bytes: within the bound
    _check_size("Layer", "w", (2**59 - 1, 4), ("n", None), np.float32)  # 2**63 - 16 bytes
    with pytest.raises(ValueError, match=r"^Layer: n: .* got 1152921504606846976, .* 9223372036854775808 bytes$"):
        _check_size("Layer", "w", (2**60,), ("n",), np.float64)
    with pytest.raises(ValueError, match="^Layer: m: "):  # the named dim that is largest
        _check_size("Layer", "w", (2**62, 3, 2**40), (None, "n", "m"), np.float32)
    with pytest.raises(ValueError):  # numpy agrees: one byte more is too big for it
        np.empty((2**60,), np.float64)


def test_constructor_normalises_arguments():
    conv = nn.Conv2d(np.int64(3), 4, (3, np.int32(1)), stride=[2, 1])
    assert conv.in_channels == 3 and type(conv.in_channels) is int
    assert conv.kernel_size == (3, 1) and conv.stride == (2, 1)
    assert nn.MaxPool2d(3, stride=()).stride == (3, 3)  # an empty stride means kernel_size, as in torch
    assert nn.Dropout(np.float32(0.25)).p == 0.25 and nn.LPPool2d(2, 2).norm_type == 2.0
    assert nn.Linear(2, 2, dtype=None).weight.dtype == np.float32


def _pooled():
    pool = nn.MaxPool2d(2)
    pool(np.zeros((1, 2, 4, 4), np.float32))
    return nn.MaxUnpool2d(pool)


# Every layer's forward on the inputs users get wrong: not an array, the wrong number of
# dims, channels that do not match the layer, another dtype than its parameters.
X4 = np.zeros((2, 3, 4, 4), np.float32)
BAD_INPUTS = {
    "conv_list": (lambda: nn.Conv2d(3, 4, 3), [[1.0]], TypeError, "Conv2d: input: expected a numpy.ndarray of float32 or float64, got list"),
    "conv_3d": (lambda: nn.Conv2d(3, 4, 3), X4[0], ValueError, r"Conv2d: input: expected a 4-D array \(N, C, H, W\), got 3-D shape \(3, 4, 4\)"),
    "conv_channels": (lambda: nn.Conv2d(2, 4, 3), X4, ValueError, r"Conv2d: input: expected shape\[1\] == in_channels = 2, got shape \(2, 3, 4, 4\)"),
    "conv_dtype": (lambda: nn.Conv2d(3, 4, 3), X4.astype(np.float64), TypeError, "Conv2d: input: expected float32 .*, got float64"),
    "conv_int": (lambda: nn.Conv2d(3, 4, 3), X4.astype(np.int64), TypeError, "Conv2d: input: expected a float32 or float64 array, got int64"),
    "convt_channels": (lambda: nn.ConvTranspose2d(4, 2, 3), X4, ValueError, r"ConvTranspose2d: input: expected shape\[1\] == in_channels = 4"),
    "convt_2d": (lambda: nn.ConvTranspose2d(3, 2, 3), X4[0, 0], ValueError, "ConvTranspose2d: input: expected a 4-D array"),
    "linear_list": (lambda: nn.Linear(2, 3), [[1.0, 2.0]], TypeError, "Linear: input: expected a numpy.ndarray"),
    "linear_features": (lambda: nn.Linear(5, 3), X4, ValueError, r"Linear: input: expected shape \(\.\.\., 5\) \(in_features = 5 in the last dim\), got shape \(2, 3, 4, 4\)"),
    "linear_0d": (lambda: nn.Linear(1, 3), np.ones((), np.float32), ValueError, r"Linear: input: expected shape \(\.\.\., 1\)"),
    "linear_dtype": (lambda: nn.Linear(4, 3, dtype=np.float64), X4, TypeError, "Linear: input: expected float64"),
    "maxpool_list": (lambda: nn.MaxPool2d(2), [[1.0]], TypeError, "MaxPool2d: input: expected a numpy.ndarray"),
    "maxpool_3d": (lambda: nn.MaxPool2d(2), X4[0], ValueError, "MaxPool2d: input: expected a 4-D array"),
    "avgpool_list": (lambda: nn.AvgPool2d(2), [[1.0]], TypeError, "AvgPool2d: input: expected a numpy.ndarray of float32 or float64, got list"),
    "avgpool_5d": (lambda: nn.AvgPool2d(2), X4[None], ValueError, "AvgPool2d: input: expected a 4-D array"),
    "lppool_tuple": (lambda: nn.LPPool2d(2, 2), (1.0,), TypeError, "LPPool2d: input: expected a numpy.ndarray"),
    "lppool_3d": (lambda: nn.LPPool2d(2, 2), X4[0], ValueError, "LPPool2d: input: expected a 4-D array"),
    "unpool_shape": (_pooled, np.zeros((1, 2, 3, 3), np.float32), ValueError, r"MaxUnpool2d: input: expected shape \(1, 2, 2, 2\) \(the output of its MaxPool2d's last forward\), got \(1, 2, 3, 3\)"),
    "unpool_channels": (_pooled, np.zeros((1, 3, 2, 2), np.float32), ValueError, r"MaxUnpool2d: input: expected shape \(1, 2, 2, 2\)"),
    "unpool_list": (_pooled, [[1.0]], TypeError, "MaxUnpool2d: input: expected a numpy.ndarray"),
    "unpool_3d": (_pooled, np.zeros((2, 2, 2), np.float32), ValueError, "MaxUnpool2d: input: expected a 4-D array"),
    "relu_list": (lambda: nn.ReLU(), [1.0], TypeError, "ReLU: input: expected a numpy.ndarray of float32 or float64, got list"),
    "relu_int": (lambda: nn.ReLU(), np.arange(3), TypeError, "ReLU: input: expected a float32 or float64 array, got int64"),
    "sigmoid_scalar": (lambda: nn.Sigmoid(), 1.0, TypeError, "Sigmoid: input: expected a numpy.ndarray"),
    "tanh_none": (lambda: nn.Tanh(), None, TypeError, "Tanh: input: expected a numpy.ndarray"),
    "softmax_list": (lambda: nn.Softmax(), [1.0], TypeError, "Softmax: input: expected a numpy.ndarray"),
    "softmax_dim": (lambda: nn.Softmax(dim=2), X4[0, 0], IndexError, r"Softmax: dim: expected a value in \[-2, 1\] for a 2-D input, got 2"),
    "log_softmax_dim": (lambda: nn.LogSoftmax(dim=-3), X4[0, 0], IndexError, r"LogSoftmax: dim: expected a value in \[-2, 1\]"),
    "flatten_list": (lambda: nn.Flatten(), [1, 2], TypeError, "Flatten: input: expected a numpy.ndarray, got list"),
    "flatten_0d": (lambda: nn.Flatten(), np.array(1.0), ValueError, r"Flatten: input: expected 2 or more dims for start_dim=1, end_dim=-1, got 0-D shape \(\)"),
    "flatten_1d": (lambda: nn.Flatten(), np.ones(3), ValueError, "Flatten: input: expected 2 or more dims .* got 1-D shape"),
    "flatten_end": (lambda: nn.Flatten(0, 5), X4, ValueError, "Flatten: input: expected 6 or more dims"),
    "flatten_order": (lambda: nn.Flatten(2, -3), X4, ValueError, r"Flatten: start_dim: expected a dim at or before end_dim \(-3\) for a 4-D input, got 2"),
    "dropout_list": (lambda: nn.Dropout(), [1.0], TypeError, "Dropout: input: expected a numpy.ndarray"),
    "dropout_eval_list": (lambda: nn.Dropout().eval(), [1.0], TypeError, "Dropout: input: expected a numpy.ndarray"),
    "bn_3d": (lambda: nn.BatchNorm2d(4), np.zeros((2, 4, 3), np.float32), ValueError, r"BatchNorm2d: input: expected a 4-D array \(N, C, H, W\), got 3-D shape \(2, 4, 3\)"),
    "bn_channels": (lambda: nn.BatchNorm2d(4), X4, ValueError, r"BatchNorm2d: input: expected shape\[1\] == num_features = 4, got shape \(2, 3, 4, 4\)"),
    "bn_channels_no_affine": (lambda: nn.BatchNorm2d(4, affine=False, track_running_stats=False), X4, ValueError, "BatchNorm2d: input: expected shape.1. == num_features = 4"),
    "bn_dtype": (lambda: nn.BatchNorm2d(3, dtype=np.float64), X4, TypeError, "BatchNorm2d: input: expected float64"),
    "bn_list": (lambda: nn.BatchNorm2d(3), [[1.0]], TypeError, "BatchNorm2d: input: expected a numpy.ndarray"),
    "lrn_2d": (lambda: nn.LocalResponseNorm(3), X4[0, 0], ValueError, r"LocalResponseNorm: input: expected 3 or more dims \(N, C, \.\.\.\), got 2-D shape \(4, 4\)"),
    "lrn_list": (lambda: nn.LocalResponseNorm(3), [[[1.0]]], TypeError, "LocalResponseNorm: input: expected a numpy.ndarray"),
    "sequential_list": (lambda: small_net(), [[1.0]], TypeError, "Conv2d: input: expected a numpy.ndarray"),
}


@pytest.mark.parametrize("make, x, error, match", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_forward_inputs(make, x, error, match):
    layer = make()
    with pytest.raises(error, match=match):
        layer(x)


def test_maxunpool_output_size_type():
    with pytest.raises(TypeError, match="MaxUnpool2d: output_size: expected .H, W. or .N, C, H, W., got int"):
        _pooled()(np.zeros((1, 2, 2, 2), np.float32), output_size=4)


@pytest.mark.parametrize(
    "crit, out, target, error, match",
    [
        (nn.CrossEntropyLoss(), [[1.0]], np.zeros(1, np.int64), TypeError, "CrossEntropyLoss: output: expected a numpy.ndarray, got list"),
        (nn.CrossEntropyLoss(), np.zeros((1, 2)), [0], TypeError, "CrossEntropyLoss: target: expected a numpy.ndarray, got list"),
        (nn.MSELoss(), 1.0, np.zeros(1), TypeError, "MSELoss: output: expected a numpy.ndarray, got float"),
        (nn.MSELoss(), np.zeros(1), None, TypeError, "MSELoss: target: expected a numpy.ndarray, got NoneType"),
    ],
)
def test_loss_bad_operands(crit, out, target, error, match):
    with pytest.raises(error, match=match):
        crit(out, target)


@pytest.mark.parametrize(
    "reduction, grad, error, match",
    [
        ("mean", "1", TypeError, r"CrossEntropyLoss.backward: grad_output: expected a real number, got str"),
        ("mean", np.ones(3), TypeError, r"grad_output: expected a real number for reduction='mean', got an array of shape \(3,\)"),
        ("none", np.ones(4), ValueError, r"CrossEntropyLoss.backward: grad_output: expected shape \(3,\) \(the loss's\), got \(4,\)"),
        ("none", [1.0, 2.0, 3.0], TypeError, "grad_output: expected a real number, got list"),
    ],
)
def test_loss_backward_bad_grad_output(reduction, grad, error, match):
    crit = nn.CrossEntropyLoss(reduction=reduction)
    crit(np.zeros((3, 2)), np.zeros(3, np.int64))
    with pytest.raises(error, match=match):
        crit.backward(grad)
    assert crit.backward(2.0).shape == (3, 2)  # the state survives a refused backward


def test_flatten_follows_torch(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    assert nn.Flatten()(x).shape == (2, 60)
    assert nn.Flatten(0, -1)(x).shape == (120,)
    assert nn.Flatten(1, 2)(x).shape == (2, 12, 5)
    assert nn.Flatten(-2)(x).shape == (2, 3, 20)
    assert nn.Flatten(0)(np.array(7.0)).shape == (1,)  # a 0-d input counts as 1-d
    layer = nn.Flatten(2, 3)
    y = layer(x)
    assert layer.backward(np.ones_like(y)).shape == x.shape
    torch = pytest.importorskip("torch")
    for start, end in ((1, -1), (0, 2), (-3, -2), (2, 2)):
        assert nn.Flatten(start, end)(x).shape == tuple(torch.nn.Flatten(start, end)(torch.tensor(x)).shape)


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


def test_batchnorm_without_parameters_or_buffers_takes_either_dtype(rng):
    layer = nn.BatchNorm2d(2, affine=False, track_running_stats=False)
    for dtype in (np.float32, np.float64):
        assert layer(rng.standard_normal((3, 2, 2, 2)).astype(dtype)).dtype == dtype


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


LOSS_ERRORS = {
    "ce_output_int": (nn.CrossEntropyLoss, np.ones((3, 4), np.int64), np.arange(3), TypeError,
                      "CrossEntropyLoss: output: expected dtype float32 or float64, got int64"),
    "ce_output_float16": (nn.CrossEntropyLoss, np.ones((3, 4), np.float16), np.arange(3), TypeError,
                          "CrossEntropyLoss: output: expected dtype float32 or float64, got float16"),
    "ce_output_1d": (nn.CrossEntropyLoss, np.ones(4), np.arange(3), ValueError,
                     r"CrossEntropyLoss: output: expected a 2-D array \(N, C\) of logits, got 1-D shape \(4,\)"),
    "ce_output_3d": (nn.CrossEntropyLoss, np.ones((1, 3, 4)), np.arange(3), ValueError,
                     "CrossEntropyLoss: output: expected a 2-D array"),
    "ce_output_list": (nn.CrossEntropyLoss, [[1.0, 2.0]], np.arange(1), TypeError,
                       "CrossEntropyLoss: output: expected a numpy.ndarray, got list"),
    "ce_target_batch": (nn.CrossEntropyLoss, np.ones((3, 4)), np.arange(2), ValueError,
                        r"CrossEntropyLoss: target: expected shape \(3,\) to match the batch of output \(3, 4\)"),
    "ce_target_float": (nn.CrossEntropyLoss, np.ones((3, 4)), np.zeros(3), TypeError,
                        "CrossEntropyLoss: target: expected an integer dtype"),
    "ce_target_range": (nn.CrossEntropyLoss, np.ones((3, 4)), np.array([0, 4, 1]), ValueError,
                        r"CrossEntropyLoss: target: expected class indices in \[0, 4\)"),
    "mse_output_int": (nn.MSELoss, np.ones((3, 4), np.int64), np.ones((3, 4)), TypeError,
                       "MSELoss: output: expected dtype float32 or float64, got int64"),
    "mse_output_bool": (nn.MSELoss, np.ones((3, 4), bool), np.ones((3, 4)), TypeError,
                        "MSELoss: output: expected dtype float32 or float64, got bool"),
    "mse_target_dtype": (nn.MSELoss, np.ones((3, 4)), np.ones((3, 4), np.float32), TypeError,
                         "MSELoss: target: expected dtype float64 to match output, got float32"),
    "mse_target_shape": (nn.MSELoss, np.ones((3, 4)), np.ones(4), ValueError,
                         r"MSELoss: target: expected shape \(3, 4\), got \(4,\)"),
}


@pytest.mark.parametrize("cls, out, target, error, match", LOSS_ERRORS.values(), ids=LOSS_ERRORS.keys())
def test_loss_errors_name_the_loss_and_its_argument(cls, out, target, error, match):
    """The functional op calls the loss's output 'input': the loss names its own."""
    crit = cls()
    with pytest.raises(error, match="^" + match) as info:
        crit(out, target)
    assert "input" not in str(info.value) and type(info.value) is error
    with pytest.raises(RuntimeError, match="called before forward"):  # nothing kept from the failed forward
        crit.backward()


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
    with pytest.raises(ValueError, match=r"deconvnet: channel: expected an index in \[0, 2\), got 2"):
        nn.deconvnet(net, x, 2, 2)
    with pytest.raises(ValueError, match=r"deconvnet: layer: expected a layer whose output has channels"):
        nn.deconvnet(nn.Sequential(nn.Flatten(0)), x, 0, 0)
    with pytest.raises(TypeError, match="deconvnet: layer: expected an int, got str"):
        nn.deconvnet(net, x, "2", 0)
    with pytest.raises(TypeError, match="deconvnet: channel: expected an int, got float"):
        nn.deconvnet(net, x, 2, 0.0)
    with pytest.raises(TypeError, match="deconvnet: x: expected a numpy.ndarray, got list"):
        nn.deconvnet(net, x.tolist(), 2, 0)
    with pytest.raises(TypeError, match="layer Sigmoid has no deconvnet projection"):
        nn.deconvnet(nn.Sequential(nn.Sigmoid()), x, 0, 0)
    with pytest.raises(TypeError, match="model: expected a Sequential"):
        nn.deconvnet(nn.ReLU(), x, 0, 0)


def test_deconvnet_restores_training_mode(rng):
    net = hand_net()
    nn.deconvnet(net, rng.standard_normal((1, 1, 3, 3)), 2, 0)
    assert net.training


# ---- docstrings ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", nn.__all__)
def test_public_docstrings(name):
    obj = getattr(nn, name)
    doc = inspect.getdoc(obj)
    assert doc and len(doc.splitlines()) > 3, name
    assert any(f"{h}\n{'-' * len(h)}" in doc for h in ("Parameters", "Attributes", "Raises")), name
    if isinstance(obj, type) and issubclass(obj, nn.Module) and obj is not nn.Module:
        for method in ("forward", "backward"):
            text = inspect.getdoc(getattr(obj, method))
            assert "Parameters\n----------" in text and "Returns\n-------" in text, f"{name}.{method}"


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda v: nn.MaxPool2d(2, ceil_mode=v), "MaxPool2d: ceil_mode"),
        (lambda v: nn.MaxPool2d(2, return_indices=v), "MaxPool2d: return_indices"),
        (lambda v: nn.AvgPool2d(2, count_include_pad=v), "AvgPool2d: count_include_pad"),
        (lambda v: nn.LPPool2d(2, 2, ceil_mode=v), "LPPool2d: ceil_mode"),
        (lambda v: nn.BatchNorm2d(3, affine=v), "BatchNorm2d: affine"),
        (lambda v: nn.ReLU().train(v), "ReLU.train: mode"),
    ],
)
@pytest.mark.parametrize("value", ["False", None, 1.5, 0])
def test_layer_flags_are_bools(make, name, value):
    """'False' is true to bool(): flags take a bool (or a NumPy bool) only, as torch."""
    with pytest.raises(TypeError, match=f"{name}: expected a bool, got"):
        make(value)
    make(np.bool_(True))
