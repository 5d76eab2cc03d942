"""cnnkit.data.augment, the DataLoader's transform and prefetch thread, and
`cnnkit train --augment`.

augment's outputs are checked against every candidate its definition allows: each
sample must equal, exactly, the float64 NumPy normalisation (rounded once to float32)
of some crop window of the zero-padded input, mirrored or not.
"""

import math
import threading
import time

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import cnnkit
from cnnkit import _data, cli, data
from cnnkit import functional as F

from test_data import write_cifar

THREAD = "cnnkit-DataLoader-prefetch"


def normalised(x, mean, std):
    """The float64 reference of (x / 255 - mean) / std per channel (axis 1), rounded to float32."""
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    mean = np.broadcast_to(np.asarray(0.0 if mean is None else mean, np.float64), shape[1:2]).reshape(shape)
    std = np.broadcast_to(np.asarray(1.0 if std is None else std, np.float64), shape[1:2]).reshape(shape)
    return ((x.astype(np.float64) / 255 - mean) / std).astype(np.float32)


def matches(images, out, crop, padding, mean=None, std=None):
    """(plain, mirrored): boolean (N, offsets_y, offsets_x) arrays, True where the
    sample's output equals that window of the padded image, as is or mirrored."""
    (ch, cw), (ph, pw) = crop, padding
    padded = np.pad(images, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    windows = normalised(sliding_window_view(padded, (ch, cw), axis=(2, 3)), mean, std)  # N C oy ox ch cw
    got = out[:, :, None, None]
    plain = (windows == got).all(axis=(1, 4, 5))
    mirrored = (windows[..., ::-1] == got).all(axis=(1, 4, 5))
    return plain, mirrored


def assert_candidates(images, out, crop, padding, mean=None, std=None):
    n, c, h, w = images.shape
    assert out.dtype == np.float32 and out.shape == (n, c) + tuple(crop)
    plain, mirrored = matches(images, out, crop, padding, mean, std)
    found = plain.any(axis=(1, 2)) | mirrored.any(axis=(1, 2))
    assert found.all(), f"samples {np.flatnonzero(~found)[:10]} are no padded crop or flip of their input"
    return plain, mirrored


def as_pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def random_images(rng, shape):
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


# ---- the definition: every sample is a padded crop (or its mirror), exactly normalised


@pytest.mark.parametrize(
    "shape, crop, padding, flip",
    [
        ((40, 3, 6, 7), (5, 4), (2, 1), True),
        ((40, 1, 5, 5), 5, 0, True),  # no room to move: only the flip is random
        ((40, 2, 4, 6), (4, 6), 3, False),
        ((40, 3, 3, 3), 7, 2, True),  # the crop is the whole padded image
        ((40, 2, 2, 3), (4, 5), (6, 7), True),  # padding larger than the image
    ],
)
def test_every_sample_is_a_padded_crop_or_its_mirror(rng, shape, crop, padding, flip):
    images = random_images(rng, shape)
    mean, std = rng.uniform(0.2, 0.6, shape[1]), rng.uniform(0.1, 0.5, shape[1])
    out = data.augment(images, crop, padding=padding, flip=flip, mean=mean, std=std, seed=7)
    plain, mirrored = assert_candidates(images, out, as_pair(crop), as_pair(padding), mean, std)
    if not flip:
        assert plain.any(axis=(1, 2)).all()


def test_normalisation_equals_the_float64_reference_exactly(rng):
    images = random_images(rng, (5, 3, 8, 9))
    images[0, :, 0, :6] = np.arange(0, 256, 51, dtype=np.uint8)  # 0 and 255 included
    for mean, std in [(None, None), (0.5, None), (None, 0.25), ([0.1, 0.2, 0.3], (0.3, 0.2, 0.1)),
                      (np.float32(0.4), np.array([0.5, 1.5, 2.5])), (data.CIFAR10_MEAN, data.CIFAR10_STD)]:
        out = data.augment(images, (8, 9), mean=mean, std=std, seed=1)
        np.testing.assert_array_equal(out, normalised(images, mean, std), err_msg=f"mean={mean} std={std}")
    # no normalisation: x / 255, as the loaders give it
    np.testing.assert_array_equal(data.augment(images, (8, 9)), images / np.float32(255))


def test_padding_is_zero_before_normalising(rng):
    images = np.full((20, 2, 2, 2), 200, np.uint8)
    out = data.augment(images, 2, padding=1, mean=(0.5, 0.25), std=(2.0, 4.0), seed=0)
    pad = np.array([-0.25, -0.0625], np.float32)
    value = normalised(images[:1, :, :1, :1], (0.5, 0.25), (2.0, 4.0))[0, :, 0, 0]
    per_channel = out.transpose(1, 0, 2, 3).reshape(2, -1)
    for k in range(2):
        assert set(per_channel[k].tolist()) <= {float(pad[k]), float(value[k])}
    assert (per_channel == pad[:, None]).any() and (per_channel == value[:, None]).any()


def test_offsets_and_flips_are_uniform(rng):
    # 4 x 4 offsets and 2 flips: each of the 32 (offset, flip) cells about n / 32 times.
    n = 6400
    images = random_images(rng, (n, 1, 4, 5))
    out = data.augment(images, (3, 4), padding=1, flip=True, seed=11)
    plain, mirrored = assert_candidates(images, out, (3, 4), (1, 1))
    # random samples of 12 values are never symmetric or shifted copies of themselves
    assert (plain.sum(axis=(1, 2)) + mirrored.sum(axis=(1, 2)) == 1).all()
    flipped = mirrored.any(axis=(1, 2))
    assert abs(flipped.mean() - 0.5) < 4 * math.sqrt(0.25 / n)
    cells = np.concatenate([plain.sum(axis=0).ravel(), mirrored.sum(axis=0).ravel()])
    assert cells.size == 32
    expected = n / cells.size
    assert (np.abs(cells - expected) < 5 * math.sqrt(expected)).all(), cells


def test_without_flip_nothing_is_mirrored(rng):
    images = random_images(rng, (300, 2, 5, 5))
    out = data.augment(images, 5, padding=1, flip=False, seed=3)
    plain, mirrored = matches(images, out, (5, 5), (1, 1))
    assert plain.any(axis=(1, 2)).all() and not mirrored.any()
    # every offset along both axes occurs
    assert plain.any(axis=0).all()


# ---- determinism: one seed, one batch, on any thread count


def test_one_seed_one_batch_on_any_thread_count(rng, num_threads):
    images = random_images(rng, (600, 3, 32, 32))  # many pool tasks
    kw = dict(crop=32, padding=4, flip=True, mean=data.CIFAR10_MEAN, std=data.CIFAR10_STD)
    results = []
    for threads in (1, 2, 3):
        num_threads(threads)
        results.append(data.augment(images, seed=123, **kw))
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])
    assert not np.array_equal(data.augment(images, seed=124, **kw), results[0])
    # a sample's draws depend on its index alone, not on the batch around it
    np.testing.assert_array_equal(data.augment(images[:37], seed=123, **kw), results[0][:37])


def test_unseeded_follows_manual_seed(rng):
    images = random_images(rng, (50, 1, 6, 6))
    cnnkit.manual_seed(5)
    a = data.augment(images, 4, padding=2, flip=True)
    b = data.augment(images, 4, padding=2, flip=True)
    cnnkit.manual_seed(5)
    np.testing.assert_array_equal(data.augment(images, 4, padding=2, flip=True), a)
    assert not np.array_equal(a, b)


def test_the_generator_is_dropouts(rng):
    """augment draws from dropout's counter-based generator: its bits decide dropout's masks."""
    counters = np.arange(5000, dtype=np.uint64)
    for seed, p in ((0, 0.5), (2**63 - 1, 0.3), (987654321, 0.9)):
        bits = _data.counter_bits(seed, counters)
        _, keep = F.dropout(np.ones(counters.size), p, training=True, seed=seed)
        keep_below = int(math.ldexp(1 - p, 53))
        np.testing.assert_array_equal(keep, (bits >> np.uint64(11)) < keep_below)


# ---- inputs of every shape and layout


def test_non_contiguous_input(rng):
    base = random_images(rng, (6, 4, 9, 10))
    view = base[:, ::2, :, ::-1]
    np.testing.assert_array_equal(
        data.augment(view, 5, padding=1, flip=True, seed=2),
        data.augment(np.ascontiguousarray(view), 5, padding=1, flip=True, seed=2),
    )


def test_empty_batches_and_images():
    assert data.augment(np.zeros((0, 3, 8, 8), np.uint8), 6, seed=0).shape == (0, 3, 6, 6)
    assert data.augment(np.zeros((4, 0, 8, 8), np.uint8), 6, seed=0).shape == (4, 0, 6, 6)
    # an image of no pixels, padded, is all padding
    out = data.augment(np.zeros((3, 2, 0, 0), np.uint8), 2, padding=1, mean=0.5, std=0.5, seed=0)
    np.testing.assert_array_equal(out, np.full((3, 2, 2, 2), -1.0, np.float32))


def test_huge_padding_does_not_overflow(rng):
    images = random_images(rng, (64, 1, 3, 3))
    out = data.augment(images, 2, padding=2**61, flip=True, seed=9)
    assert out.shape == (64, 1, 2, 2)
    assert set(np.unique(out)) <= set((images / np.float32(255)).ravel().tolist()) | {0.0}


# ---- every error path


@pytest.mark.parametrize(
    "kwargs, exc, message",
    [
        (dict(images=np.zeros((2, 3, 4, 4))), TypeError, "images: expected a uint8 array \\(N, C, H, W\\), got dtype float64"),
        (dict(images=[[1, 2]]), TypeError, "images: expected a uint8 array"),
        (dict(images=np.zeros((3, 4, 4), np.uint8)), ValueError, "images: expected a 4-D array \\(N, C, H, W\\), got shape \\(3, 4, 4\\)"),
        (dict(crop=0), ValueError, "crop: expected 1 to the padded image's size \\(4, 4\\), got \\(0, 0\\)"),
        (dict(crop=(4, 5)), ValueError, "crop: expected 1 to the padded image's size \\(4, 4\\), got \\(4, 5\\)"),
        (dict(crop=7, padding=1), ValueError, "crop: expected 1 to the padded image's size \\(6, 6\\), got \\(7, 7\\)"),
        (dict(crop=(1, 2, 3)), ValueError, "crop: expected an int or a pair of ints, got 3 values"),
        (dict(crop=2.5), TypeError, "crop: expected an int or a pair of ints, got float"),
        (dict(crop=True), TypeError, "crop: expected an int or a pair of ints, got bool"),
        (dict(crop=None), TypeError, "crop: expected an int or a pair of ints, got NoneType"),
        (dict(padding=-1), ValueError, "padding: expected non-negative values, got \\(-1, -1\\)"),
        (dict(padding=(0, -2)), ValueError, "padding: expected non-negative values, got \\(0, -2\\)"),
        (dict(padding="same"), TypeError, "padding: expected an int or a pair of ints, got str"),
        (dict(padding=2**62), ValueError, "padding: expected a padded image within the int64 range"),
        (dict(padding=2**63), ValueError, "padding: expected an int or a pair of ints within the int64 range"),
        (dict(flip=1), TypeError, "flip: expected a bool, got int"),
        (dict(flip="yes"), TypeError, "flip: expected a bool, got str"),
        (dict(mean="a"), TypeError, "mean: expected a real number, got str"),
        (dict(mean=[0.1, "a", 0.3]), TypeError, "mean: expected a real number, got str"),
        (dict(mean=[0.1, 0.2]), ValueError, "mean: expected a real number or a sequence of 3 \\(one per channel\\), got 2 values"),
        (dict(mean=np.zeros((3, 1))), ValueError, "mean: expected .*, got an array of shape \\(3, 1\\)"),
        (dict(mean=np.array([True, False, True])), TypeError, "mean: expected a real number, got bool"),
        (dict(mean=float("nan")), ValueError, "mean: expected finite values, got nan"),
        (dict(mean=[0, 0, float("inf")]), ValueError, "mean: expected finite values, got inf"),
        (dict(mean=10**400), ValueError, "mean: expected a real number within the float range"),
        (dict(std=0), ValueError, "std: expected positive finite values, got 0.0"),
        (dict(std=[1, -1, 1]), ValueError, "std: expected positive finite values, got -1.0"),
        (dict(std=float("inf")), ValueError, "std: expected positive finite values, got inf"),
        (dict(std=(1, 1)), ValueError, "std: expected a real number or a sequence of 3"),
        (dict(std=True), TypeError, "std: expected a real number, got bool"),
        (dict(seed=-1), ValueError, "seed: expected an int >= 0, got -1"),
        (dict(seed=2**63), ValueError, "seed: expected an int within the int64 range"),
        (dict(seed=1.5), TypeError, "seed: expected an int, got float"),
        (dict(seed=True), TypeError, "seed: expected an int, got bool"),
        (dict(seed="1"), TypeError, "seed: expected an int, got str"),
    ],
)
def test_errors(kwargs, exc, message):
    args = dict(images=np.zeros((2, 3, 4, 4), np.uint8), crop=4)
    args.update(kwargs)
    with pytest.raises(exc, match="^augment: " + message):
        data.augment(**args)


# ---- DataLoader: transform and prefetch


def prefetch_threads():
    return [t for t in threading.enumerate() if t.name == THREAD]


def stateful_transform(seed):
    """A transform with random state of its own: equal batches only if it is called
    once per batch, in order."""
    rng = np.random.default_rng(seed)
    return lambda x: x * 10 + rng.integers(0, 1000)


@pytest.mark.parametrize("prefetch", [1, 2, 5])
@pytest.mark.parametrize("drop_last", [False, True])
def test_prefetch_gives_the_batches_without_prefetch(prefetch, drop_last):
    x, y = np.arange(46.0).reshape(23, 2), np.arange(23)

    def epochs(prefetch):
        loader = data.DataLoader((x, y), batch_size=4, shuffle=True, seed=8, drop_last=drop_last,
                                 transform=stateful_transform(1), prefetch=prefetch)
        return [[tuple(a.tolist() for a in b) for b in loader] for _ in range(3)]

    expected = epochs(0)
    assert len(expected[0]) == (5 if drop_last else 6) and expected[0] != expected[1]
    assert epochs(prefetch) == expected
    assert not prefetch_threads()


def test_transform_applies_to_the_inputs_only():
    x, y = np.arange(10.0).reshape(5, 2), np.arange(5)
    for prefetch in (0, 1):
        batches = list(data.DataLoader((x, y), batch_size=2, transform=lambda v: -v, prefetch=prefetch))
        np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), -x)
        np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)


def test_transform_of_a_dataset_without_tuples():
    class Squares:
        def __len__(self):
            return 6

        def __getitem__(self, index):
            return np.asarray(index) ** 2

    for prefetch in (0, 2):
        got = [b.tolist() for b in data.DataLoader(Squares(), batch_size=4, transform=lambda v: v + 1,
                                                   prefetch=prefetch)]
        assert got == [[1, 2, 5, 10], [17, 26]]


def test_prefetch_assembles_ahead_on_a_background_thread():
    calls = []

    def transform(v):
        calls.append(threading.current_thread().name)
        return v

    x = np.arange(20.0)
    it = iter(data.DataLoader((x,), batch_size=2, transform=transform, prefetch=3))
    assert not calls and not prefetch_threads()  # nothing starts before the first next()
    next(it)
    deadline = time.monotonic() + 10
    while len(calls) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    # the batch given out, three queued and one waiting to be queued: no more
    assert len(calls) == 5 and set(calls) == {THREAD}
    it.close()
    assert not prefetch_threads()
    calls.clear()
    list(data.DataLoader((x,), batch_size=2, transform=transform, prefetch=0))
    assert calls == ["MainThread"] * 10


def test_prefetch_thread_ends_when_the_iterator_is_dropped():
    x = np.arange(100.0)
    it = iter(data.DataLoader((x,), batch_size=3, prefetch=1))
    next(it)
    time.sleep(0.05)  # the producer now waits on a full queue
    assert len(prefetch_threads()) == 1
    del it
    assert not prefetch_threads()
    for _ in data.DataLoader((x,), batch_size=3, prefetch=2):
        break
    assert not prefetch_threads()


@pytest.mark.parametrize("prefetch", [0, 1, 3])
@pytest.mark.parametrize("where", ["transform", "dataset"])
def test_an_exception_reaches_the_consumer_after_the_batches_before_it(prefetch, where):
    class Boom(Exception):
        pass

    def check(v):
        if v[0] >= 6:
            raise Boom(f"batch at {v[0]}")
        return v

    class Data:
        def __len__(self):
            return 12

        def __getitem__(self, index):
            return (check(np.asarray(index)),)

    x = np.arange(12)
    loader = (data.DataLoader((x,), batch_size=3, transform=check, prefetch=prefetch) if where == "transform"
              else data.DataLoader(Data(), batch_size=3, prefetch=prefetch))
    seen = []
    with pytest.raises(Boom, match="batch at 6"):
        for (b,) in loader:
            seen.append(b.tolist())
    assert seen == [[0, 1, 2], [3, 4, 5]]
    assert not prefetch_threads()


def test_prefetch_default_and_errors():
    x = (np.arange(4),)
    assert data.DataLoader(x).prefetch == 1
    for bad, exc, msg in ((-1, ValueError, "prefetch: expected an int >= 0, got -1"),
                          (1.5, TypeError, "prefetch: expected an int, got float"),
                          (True, TypeError, "prefetch: expected an int, got bool"),
                          (None, TypeError, "prefetch: expected an int, got NoneType")):
        with pytest.raises(exc, match="^DataLoader: " + msg):
            data.DataLoader(x, prefetch=bad)
    with pytest.raises(TypeError, match="^DataLoader: transform: expected a callable or None, got int"):
        data.DataLoader(x, transform=5)


# ---- cnnkit train --augment


def test_train_augment_on_cifar_files(capsys, tmp_path, monkeypatch):
    write_cifar(tmp_path, {"data_batch_1.bin": 20, "test_batch.bin": 6})
    calls = []
    real = data.augment

    def spy(images, *args, **kwargs):
        calls.append((images.dtype, images.shape, args, {k: v for k, v in kwargs.items() if k != "seed"}))
        return real(images, *args, **kwargs)

    monkeypatch.setattr(data, "augment", spy)
    argv = ["train", "--data", f"cifar10:{tmp_path}", "--augment", "--epochs", "2", "--batch-size", "8",
            "--model", "mlp", "--seed", "4"]
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    assert "mlp on cifar10" in out and "/6)" in out
    assert "training mlp on cifar10 (augmented): 20 train / 6 test samples" in err
    assert len(calls) == 6  # 3 batches an epoch
    dtype, shape, args, kwargs = calls[0]
    assert dtype == np.uint8 and shape == (8, 3, 32, 32) and args == (32,)
    assert kwargs == dict(padding=4, flip=True, mean=data.CIFAR10_MEAN, std=data.CIFAR10_STD)
    # the same seed gives the same training
    assert cli.main(argv) == 0
    again, again_err = capsys.readouterr()
    losses = lambda text: [line.rsplit(" ", 2)[0] for line in text.splitlines() if line.startswith("epoch")]  # noqa: E731
    assert losses(again_err) == losses(err) and again.split(",")[0] == out.split(",")[0]


def test_train_augment_needs_cifar(capsys):
    assert cli.main(["train", "--augment", "--epochs", "1"]) == 1
    assert "--augment is for --data cifar10:DIR, got --data digits" in capsys.readouterr().err
