"""cnnkit.models and cnnkit.summary: shapes, parameter counts, multiply-adds and
receptive fields."""

import numpy as np
import pytest

import cnnkit
from cnnkit import models, nn


def test_mlp(rng):
    net = models.MLP(64, hidden=(32, 16), out_features=10, activation="tanh")
    x = rng.standard_normal((5, 1, 8, 8)).astype(np.float32)
    y = net(x)
    assert y.shape == (5, 10)
    assert net.backward(np.ones_like(y)).shape == x.shape
    assert net.num_parameters() == 64 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10
    assert [type(m).__name__ for m in net] == ["Flatten", "Linear", "Tanh", "Linear", "Tanh", "Linear"]


def test_mlp_bad_activation():
    with pytest.raises(ValueError, match="activation: expected one of"):
        models.MLP(4, activation="gelu")


@pytest.mark.parametrize("size, padding, flat", [(32, 0, 400), (28, 2, 784), (8, 2, 64)])
def test_lenet5(rng, size, padding, flat):
    net = models.LeNet5(10, in_channels=1, input_size=size, padding=padding)
    assert net[7].in_features == flat
    x = rng.standard_normal((3, 1, size, size)).astype(np.float32)
    y = net(x)
    assert y.shape == (3, 10)
    assert net.backward(np.ones_like(y)).shape == x.shape


def test_lenet5_classic_parameter_count():
    # conv1 156, conv2 2,416, fc 48,120 + 10,164 + 850.
    assert models.LeNet5().num_parameters() == 61706


def test_model_construction_leaves_no_forward_state():
    net = models.LeNet5()
    with pytest.raises(RuntimeError, match="called before forward"):
        net.backward(np.zeros((1, 10), np.float32))
    assert net[2].switches is None and net.training


@pytest.fixture(scope="module")
def alexnet():
    cnnkit.manual_seed(0)
    return models.AlexNet()


def test_alexnet_parameter_count(alexnet):
    assert alexnet.num_parameters() == 62_378_344
    s = cnnkit.summary(alexnet, (3, 224, 224))
    assert s.total_params == 62_378_344
    convs = [r for r in s.layers if r.kind == "Conv2d"]
    assert [r.output_shape for r in convs] == [(96, 55, 55), (256, 27, 27), (384, 13, 13), (384, 13, 13), (256, 13, 13)]
    assert [r.params for r in convs] == [34_944, 614_656, 885_120, 1_327_488, 884_992]
    assert s.output_shape == (1000,)
    assert s.layers[-1].macs == 4096 * 1000


@pytest.mark.parametrize("size, conv1", [(224, 55), (227, 56)], ids=["torchvision_224", "paper_227"])
def test_alexnet_takes_224_and_227_inputs(alexnet, rng, size, conv1):
    """torchvision's variant (11x11 stride 4 padding 2) expects 224; the paper's 227
    gives 56x56 after conv1 and the same 6x6 map after the last pool."""
    s = cnnkit.summary(alexnet, (1, 3, size, size))
    assert s.layers[0].output_shape == (96, conv1, conv1)
    assert [r.output_shape for r in s.layers if r.kind == "MaxPool2d"][-1] == (256, 6, 6)
    assert s.total_params == 62_378_344
    x = rng.standard_normal((1, 3, size, size)).astype(np.float32)
    alexnet.zero_grad()
    y = alexnet(x)
    assert y.shape == (1, 1000) and np.isfinite(y).all()
    gx = alexnet.backward(np.ones_like(y))
    assert gx.shape == x.shape and np.isfinite(gx).all()
    assert np.abs(alexnet[0].weight.grad).max() > 0


def test_alexnet_documents_its_input_size():
    doc = models.AlexNet.__doc__
    assert "224" in doc and "227" in doc and "62,378,344" in doc


@pytest.mark.parametrize(
    "make, params, macs",
    [(models.VGG11, 132_863_336, 7_609_090_048), (models.VGG16, 138_357_544, 15_470_264_320)],
    ids=["vgg11", "vgg16"],
)
def test_vgg_counts(make, params, macs):
    net = make()
    s = cnnkit.summary(net, (3, 224, 224))
    assert s.total_params == params
    assert s.total_macs == macs
    assert [r.output_shape for r in s.layers if r.kind == "MaxPool2d"][-1] == (512, 7, 7)


@pytest.mark.parametrize("make, n_conv", [(models.VGG11, 8), (models.VGG16, 13)], ids=["vgg11", "vgg16"])
def test_small_vgg_forward_backward(rng, make, n_conv):
    net = make(num_classes=5, input_size=32, hidden=16, width=16, batch_norm=True)
    assert sum(isinstance(m, nn.Conv2d) for m in net) == n_conv
    x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    y = net(x)
    assert y.shape == (2, 5)
    assert net.backward(np.ones_like(y)).shape == x.shape


def test_vgg_bad_config():
    with pytest.raises(ValueError, match="config: expected one of"):
        models.VGG("Z")


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: models.AlexNet(input_size=32), ValueError, "AlexNet: input_size: 32 is too small for the network"),
        (lambda: models.AlexNet(num_classes=0), ValueError, "AlexNet: num_classes: expected a positive int, got 0"),
        (lambda: models.AlexNet(input_size="224"), TypeError, "AlexNet: input_size: expected an int, got str"),
        (lambda: models.LeNet5(input_size=4), ValueError, "LeNet5: input_size: 4 is too small for the network"),
        (lambda: models.LeNet5(in_channels=1.0), TypeError, "LeNet5: in_channels: expected an int, got float"),
        (lambda: models.VGG11(input_size=16, width=64, hidden=4), ValueError, "VGG: input_size: 16 is too small"),
        (lambda: models.VGG11(width=0), ValueError, "VGG: width: expected a positive int, got 0"),
        (lambda: models.VGG16(hidden=None), TypeError, "VGG: hidden: expected an int, got NoneType"),
        (lambda: models.MLP(0), ValueError, "MLP: in_features: expected a positive int, got 0"),
        (lambda: models.MLP(4, hidden=8), TypeError, "MLP: hidden: expected a tuple of ints, got int"),
        (lambda: models.MLP(4, hidden=(8, -1)), ValueError, "MLP: hidden: expected a positive int, got -1"),
        (lambda: models.MLP(4, out_features="2"), TypeError, "MLP: out_features: expected an int, got str"),
        (lambda: models.MLP(4, dropout="0.5"), TypeError, "MLP: dropout: expected a real number, got str"),
        (lambda: models.MLP(4, dropout=1.0), ValueError, r"MLP: dropout: expected a probability in \[0, 1\), got 1.0"),
    ],
)
def test_model_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


_TOO_BIG = (r"expected a value for which .* is at most 2\*\*63 - 1 bytes, got \d+, which makes it shape \(.*\), "
            r"\d+ bytes$")


@pytest.mark.parametrize(
    "make, model, arg",
    [
        (lambda: models.MLP(2**62, hidden=(5,), out_features=3), "MLP", "in_features"),
        (lambda: models.MLP(4, hidden=(5,), out_features=2**63 - 1), "MLP", "out_features"),
        (lambda: models.MLP(4, hidden=(2**62,), out_features=3), "MLP", "hidden"),
        (lambda: models.MLP(4, hidden=(5, 2**62, 5), out_features=3), "MLP", "hidden"),
        (lambda: models.MLP(2**62, hidden=(), out_features=3), "MLP", "in_features"),
        (lambda: models.LeNet5(num_classes=2**62), "LeNet5", "num_classes"),
        (lambda: models.LeNet5(in_channels=2**63 - 1), "LeNet5", "in_channels"),
        (lambda: models.LeNet5(input_size=2**31), "LeNet5", "input_size"),
        (lambda: models.AlexNet(num_classes=2**62), "AlexNet", "num_classes"),
        (lambda: models.AlexNet(in_channels=2**62), "AlexNet", "in_channels"),
        (lambda: models.VGG11(hidden=2**62, width=64, input_size=32), "VGG", "hidden"),
        (lambda: models.VGG16(num_classes=2**62, width=64, input_size=32, hidden=8), "VGG", "num_classes"),
        (lambda: models.VGG11(in_channels=2**62, width=64), "VGG", "in_channels"),
    ],
    ids=["mlp_in", "mlp_out", "mlp_hidden", "mlp_hidden_middle", "mlp_no_hidden", "lenet_classes", "lenet_in",
         "lenet_input_size", "alexnet_classes", "alexnet_in", "vgg_hidden", "vgg_classes", "vgg_in"],
)
def test_model_parameters_too_big_to_allocate(make, model, arg):
    """A layer too big for NumPy is a ValueError naming the model and its argument
    (not numpy's 'array is too big', nor the layer's own argument), raised before any
    parameter is drawn."""
    cnnkit.manual_seed(0)
    state = cnnkit._random.get_state()
    with pytest.raises(ValueError, match=rf"^{model}: {arg}: {_TOO_BIG}"):
        make()
    assert cnnkit._random.get_state() == state


@pytest.mark.parametrize("make, model", [(lambda: models.MLP(4, dtype=np.int32), "MLP"),
                                         (lambda: models.LeNet5(dtype="float16"), "LeNet5"),
                                         (lambda: models.AlexNet(dtype=np.int64), "AlexNet"),
                                         (lambda: models.VGG11(dtype="x"), "VGG")])
def test_model_dtype_is_checked_by_the_model(make, model):
    with pytest.raises(TypeError, match=rf"^{model}: dtype: expected float32 or float64, got"):
        make()


def test_model_docstrings_have_sections():
    for cls in (models.MLP, models.LeNet5, models.AlexNet, models.VGG):
        assert "Parameters\n    ----------" in cls.__doc__ and "Raises\n    ------" in cls.__doc__, cls


# ---- summary ------------------------------------------------------------------------
@pytest.mark.parametrize("k, p", [(3, 2), (5, 2), (5, 3), (1, 2), (7, 4)])
def test_receptive_field_conv_then_pool(k, p):
    net = nn.Sequential(nn.Conv2d(1, 2, k), nn.ReLU(), nn.MaxPool2d(p, stride=p))
    s = cnnkit.summary(net, (1, 32, 32))
    assert [r.receptive_field for r in s.layers] == [(k, k), (k, k), (p + k - 1, p + k - 1)]


def test_receptive_field_stack():
    # conv3 -> 3; pool2 -> 4 (jump 2); conv3 -> 4 + 2*2 = 8; dilated conv3 (k_eff 5) -> 8 + 4*2 = 16;
    # strided conv (1x2, stride 2) -> rows 16, cols 16 + 1*2 = 18 (jump 4 cols).
    net = nn.Sequential(
        nn.Conv2d(1, 1, 3),
        nn.MaxPool2d(2),
        nn.Conv2d(1, 1, 3),
        nn.Conv2d(1, 1, 3, dilation=2),
        nn.Conv2d(1, 1, (1, 2), stride=2),
        nn.Flatten(),
        nn.Linear(20, 2),
    )
    s = cnnkit.summary(net, (1, 32, 32))
    assert [r.receptive_field for r in s.layers] == [(3, 3), (4, 4), (8, 8), (16, 16), (16, 18), None, None]
    assert str(s).splitlines()[-5].rstrip().endswith("all")


def test_summary_macs_and_table():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, groups=1), nn.Conv2d(8, 8, 3, groups=4), nn.Flatten(), nn.Linear(8 * 6 * 6, 5))
    s = cnnkit.summary(net, (3, 8, 8))
    assert [r.macs for r in s.layers] == [8 * 8 * 8 * 27, 8 * 6 * 6 * 2 * 9, 0, 288 * 5]
    assert s.total_macs == sum(r.macs for r in s.layers)
    assert s.total_params == net.num_parameters()
    text = str(s)
    assert "output shape" in text and "receptive field" in text
    assert f"total params: {net.num_parameters():,}" in text
    assert "8x8x8" in text and "8x6x6" in text


def test_summary_leaves_the_model_as_it_was(rng):
    net = models.LeNet5()
    x = rng.standard_normal((2, 1, 32, 32)).astype(np.float32)
    y = net(x)
    switches = net[2].switches
    cnnkit.summary(net, (1, 32, 32))
    assert net.training and net[2].switches is switches
    assert "forward" not in net[0].__dict__
    assert net.backward(np.ones_like(y)).shape == x.shape  # the forward state survived


# ---- summary's input_shape ---------------------------------------------------------------
def test_summary_takes_the_full_and_the_per_sample_shape():
    net = models.LeNet5()
    full = cnnkit.summary(net, (1, 1, 32, 32))  # as in the README, and torchinfo
    per_sample = cnnkit.summary(net, (1, 32, 32))  # as torchsummary
    assert full.layers == per_sample.layers
    assert full.input_shape == per_sample.input_shape == (1, 32, 32)
    assert (full.batch_size, per_sample.batch_size) == (1, None)
    assert cnnkit.summary(net, [16, 1, 32, 32]).batch_size == 16
    assert cnnkit.summary(net, (0, 1, 32, 32)).total_params == 61706  # N = 0 is a batch size too
    assert "input shape: 1x32x32 per sample (batch of 1)" in str(full)
    assert "input shape: 1x32x32 per sample\n" in str(per_sample)


def test_summary_of_an_mlp_takes_n_features_and_features():
    net = models.MLP(64, hidden=(32,), out_features=10)
    for shape in ((5, 64), (64,), (1, 8, 8), (2, 1, 8, 8)):
        s = cnnkit.summary(net, shape)
        assert s.output_shape == (10,) and s.total_macs == 64 * 32 + 32 * 10, shape
    assert cnnkit.summary(net, (5, 64)).batch_size == 5 and cnnkit.summary(net, (64,)).batch_size is None


@pytest.mark.parametrize(
    "shape, error, match",
    [
        (32, TypeError, "summary: input_shape: expected a tuple of ints, got int"),
        ("1x32x32", TypeError, "summary: input_shape: expected a tuple of ints, got str"),
        (np.array([1, 32, 32]), TypeError, "summary: input_shape: expected a tuple of ints, got ndarray"),
        ((1, 32.0, 32), TypeError, "summary: input_shape: expected a tuple of ints, got float"),
        ((), ValueError, r"summary: input_shape: expected \(N, C, H, W\) or \(C, H, W\) for images, \(N, features\) or \(features,\), got 0 values"),
        ((1, 1, 1, 32, 32), ValueError, r"summary: input_shape: expected \(N, C, H, W\) .* got 5 values \(1, 1, 1, 32, 32\)"),
        ((1, 0, 32), ValueError, r"summary: input_shape: expected positive sizes \(a non-negative batch size\), got \(1, 0, 32\)"),
        ((-1, 1, 32, 32), ValueError, "summary: input_shape: expected positive sizes"),
        ((3, 32, 32), ValueError, r"summary: input_shape: the model does not take inputs of shape \(3, 32, 32\): Conv2d: input: expected shape\[1\] == in_channels = 1"),
        ((1, 3, 32, 32), ValueError, r"summary: input_shape: the model does not take inputs of shape \(1, 3, 32, 32\)"),
        ((1, 8, 8), ValueError, "summary: input_shape: the model does not take inputs of shape"),
    ],
)
def test_summary_bad_input_shape(shape, error, match):
    net = models.LeNet5()
    with pytest.raises(error, match=match):
        cnnkit.summary(net, shape)
    assert "forward" not in net[0].__dict__ and net.training  # the model is left as it was


def test_summary_bad_model():
    with pytest.raises(TypeError, match="summary: model: expected a cnnkit.nn.Module, got function"):
        cnnkit.summary(lambda x: x, (1, 32, 32))
