"""Data-pipeline benchmarks: cnnkit.data.augment on a CIFAR-10 batch.

A batch of 256 uint8 images (3 x 32 x 32) gets a random 32 x 32 crop of the image
zero-padded by 4, a random horizontal flip and CIFAR-10's per-channel mean/std, as
torchvision's RandomCrop(32, padding=4), RandomHorizontalFlip(), ToTensor() and
Normalize(mean, std) do. Against:

- per-sample transforms in Python, torchvision style, in plain NumPy: pad, crop, flip,
  scale and normalise one image at a time in a Python loop, then stack;
- vectorised NumPy, the batch at once: fancy indexing of a sliding-window view of a
  padded copy (one window per sample, whole rows copied), the flipped half mirrored
  in one assignment, then the normalisation in place in float32; and a per-pixel
  fancy-indexing gather (rows and columns index arrays, the flip in the columns).
  The faster of the two counts (the fastest NumPy found; a lookup table of the
  normalised values and take_along_axis were slower still).

Every implementation's output is checked before it is timed: each sample must be a
padded crop (mirrored or not) of its input, normalised. cnnkit runs on THREADS threads;
NumPy on one. ``test_ratios`` times them in turns and prints ms, images/s and the
ratios with the targets (>= 10x the per-sample loop, >= 2x vectorised NumPy):

    PYTHONPATH=python python -m pytest bench/test_bench_data.py -s
"""

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from cnnkit import data

from conftest import THREADS, best_time

N, C, SIZE, PAD = 256, 3, 32, 4
MEAN = np.array(data.CIFAR10_MEAN, np.float32)
STD = np.array(data.CIFAR10_STD, np.float32)


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(0).integers(0, 256, size=(N, C, SIZE, SIZE), dtype=np.uint8)


def cnnkit_augment(images, seeds):
    return data.augment(images, SIZE, padding=PAD, flip=True, mean=data.CIFAR10_MEAN, std=data.CIFAR10_STD,
                        seed=int(seeds.integers(2**63)))


def per_sample(images, rng):
    """torchvision's transforms one image at a time (RandomCrop, RandomHorizontalFlip,
    ToTensor, Normalize), in NumPy."""
    out = []
    mean, std = MEAN[:, None, None], STD[:, None, None]
    for img in images:
        padded = np.pad(img, ((0, 0), (PAD, PAD), (PAD, PAD)))
        i, j = rng.integers(0, 2 * PAD + 1, size=2)
        x = padded[:, i : i + SIZE, j : j + SIZE]
        if rng.random() < 0.5:
            x = x[:, :, ::-1]
        x = x.astype(np.float32) / np.float32(255)
        out.append((x - mean) / std)
    return np.stack(out)


def _padded_and_draws(images, rng):
    n = len(images)
    padded = np.zeros((n, C, SIZE + 2 * PAD, SIZE + 2 * PAD), np.uint8)
    padded[:, :, PAD:-PAD, PAD:-PAD] = images
    return padded, rng.integers(0, 2 * PAD + 1, size=n), rng.integers(0, 2 * PAD + 1, size=n), rng.random(n) < 0.5


SCALE = (1 / (255 * STD)).astype(np.float32)[:, None, None]
BIAS = (-MEAN / STD).astype(np.float32)[:, None, None]


def _normalised(crops):
    out = crops.astype(np.float32)
    out *= SCALE
    out += BIAS
    return out


def vectorised_windows(images, rng):
    padded, oy, ox, flip = _padded_and_draws(images, rng)
    windows = sliding_window_view(padded, (SIZE, SIZE), axis=(2, 3))  # N C oy ox h w, a view
    crops = windows[np.arange(len(images)), :, oy, ox]
    crops[flip] = crops[flip, :, :, ::-1]
    return _normalised(crops)


def vectorised_gather(images, rng):
    padded, oy, ox, flip = _padded_and_draws(images, rng)
    r = np.arange(SIZE)
    rows = oy[:, None] + r
    cols = ox[:, None] + np.where(flip[:, None], SIZE - 1 - r, r)
    crops = padded[np.arange(len(images))[:, None, None, None], np.arange(C)[None, :, None, None],
                   rows[:, None, :, None], cols[:, None, None, :]]
    return _normalised(crops)


IMPLEMENTATIONS = {
    "cnnkit": cnnkit_augment,
    "numpy-per-sample": per_sample,
    "numpy-vectorised-windows": vectorised_windows,
    "numpy-vectorised-gather": vectorised_gather,
}


def check(images, out):
    """Each sample is some padded crop of its input, mirrored or not, normalised (to
    float32 rounding: the NumPy versions normalise in float32)."""
    assert out.shape == (N, C, SIZE, SIZE) and out.dtype == np.float32
    mean, std = MEAN.astype(np.float64)[:, None, None, None, None], STD.astype(np.float64)[:, None, None, None, None]
    for k in range(N):
        padded = np.pad(images[k], ((0, 0), (PAD, PAD), (PAD, PAD)))
        windows = (sliding_window_view(padded, (SIZE, SIZE), axis=(1, 2)) / 255 - mean) / std  # C oy ox h w
        for candidates in (windows, windows[..., ::-1]):
            err = np.abs(candidates - out[k][:, None, None]).max(axis=(0, 3, 4))
            if err.min() <= 1e-5:
                break
        else:
            raise AssertionError(f"sample {k} is no padded crop or flip of its input")


def prepared(who, images):
    """A no-argument callable of the implementation with its own random stream, checked first."""
    rng = np.random.default_rng(1)
    fn = IMPLEMENTATIONS[who]
    check(images, fn(images, rng))  # the gate: a wrong result is never timed
    return lambda: fn(images, rng)


@pytest.mark.parametrize("who", list(IMPLEMENTATIONS))
def test_augment(benchmark, batch, who):
    benchmark.group = "augment-cifar-256"
    benchmark(prepared(who, batch))


def test_ratios(batch):
    fns = {who: prepared(who, batch) for who in IMPLEMENTATIONS}
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(3):  # in turns: fair to each on a busy machine
        for who, fn in fns.items():
            best[who] = min(best[who], best_time(fn, 5 if who == "numpy-per-sample" else 30))
    vectorised = min(best["numpy-vectorised-windows"], best["numpy-vectorised-gather"])
    print(f"\naugment of a CIFAR batch of {N} (crop {SIZE}, padding {PAD}, flip, normalise); cnnkit on "
          f"{THREADS} threads")
    print(f"{'implementation':28s} {'ms':>8s} {'images/s':>12s}")
    for who, t in best.items():
        print(f"{who:28s} {t * 1e3:8.2f} {N / t:12,.0f}")
    rows = [("vs per-sample NumPy loop", best["numpy-per-sample"] / best["cnnkit"], 10.0),
            ("vs vectorised NumPy (best)", vectorised / best["cnnkit"], 2.0)]
    print(f"{'cnnkit':28s} {'ratio':>8s} {'target':>12s}")
    for name, ratio, target in rows:
        print(f"{name:28s} {ratio:8.2f} {'>= %.1f' % target:>12s}")
    missed = [name for name, ratio, target in rows if ratio < target]
    assert not missed, f"below target: {missed}"
