"""Data: a DataLoader-like batch iterator and readers for local datasets.

- ``ArrayDataset(*arrays)`` and ``DataLoader(dataset, batch_size, shuffle, seed,
  drop_last)`` over it, a tuple of arrays, or any object with ``__len__`` and a
  ``__getitem__`` that takes an index array.
- ``read_idx(path)``, ``load_mnist(root, train)``: MNIST's IDX files (optionally .gz).
- ``load_cifar10(root, train)``: CIFAR-10's binary batches.
- ``load_digits()``: scikit-learn's bundled 8x8 digits (no network;
  ``pip install cnnkit[digits]``).
- ``load_dataset(spec)``: ``"digits"``, ``"mnist:DIR"`` or ``"cifar10:DIR"`` (the
  specs listed in ``DATASETS``) -> a ``Dataset`` with train and test splits.

Images come back as float32 NCHW in [0, 1]; labels as int64. Malformed files raise
ValueError naming the file; missing ones FileNotFoundError.
"""

import gzip
import math
import os
import zlib
from dataclasses import dataclass

import numpy as np

from . import _random
from ._args import real

__all__ = [
    "ArrayDataset",
    "DataLoader",
    "Dataset",
    "read_idx",
    "load_mnist",
    "load_cifar10",
    "load_digits",
    "load_dataset",
    "DATASETS",
]


class ArrayDataset:
    """Arrays that share their first (sample) dimension, indexed together.

    ``dataset[index]`` is the tuple ``(a[index] for each array)``: an int gives one
    sample, a slice or an index array a batch.

    Parameters
    ----------
    *arrays : array_like
        At least one; each is converted with ``np.asarray``, must be at least 1-D and
        have as many samples (``len``) as the first.

    Raises
    ------
    ValueError
        No arrays, or an array is 0-d or its length differs from the first's.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.data import ArrayDataset
    >>> ds = ArrayDataset(np.zeros((5, 2)), np.arange(5))
    >>> len(ds), ds[np.array([0, 3])][1]
    (5, array([0, 3]))
    """

    def __init__(self, *arrays):
        if not arrays:
            raise ValueError("ArrayDataset: arrays: expected at least one array, got none")
        arrays = tuple(np.asarray(a) for a in arrays)
        n = len(arrays[0]) if arrays[0].ndim else 0
        for i, a in enumerate(arrays):
            if a.ndim == 0 or len(a) != n:
                raise ValueError(
                    f"ArrayDataset: arrays: expected {n} samples in every array, got {a.shape} for array {i}"
                )
        self.arrays = arrays

    def __len__(self):
        return len(self.arrays[0])

    def __getitem__(self, index):
        return tuple(a[index] for a in self.arrays)


class DataLoader:
    """Iterates over a dataset in batches.

    Each pass (each ``iter()``) yields ``dataset[indices]`` for consecutive slices of
    batch_size indices of the epoch's order: for an ArrayDataset or a tuple of arrays,
    a tuple of arrays of batch_size samples (the last batch may be shorter unless
    drop_last). ``len(loader)`` is the number of batches per pass. Batches are
    assembled in the calling thread, on demand.

    Parameters
    ----------
    dataset : ArrayDataset, tuple or list of arrays, or dataset-like
        A tuple or list is wrapped in an ArrayDataset; anything else needs
        ``__len__`` and a ``__getitem__`` that takes an int64 index array.
    batch_size : int, default 1
        Samples per batch; positive.
    shuffle : bool, default False
        A new random order every pass; otherwise 0, 1, ..., len - 1.
    seed : int, optional
        Seeds the loader's own Generator once, at construction, so that a seeded
        loader gives the same sequence of orders. None draws from cnnkit's random
        stream (cnnkit.manual_seed). Only used with shuffle.
    drop_last : bool, default False
        Skip a final batch shorter than batch_size.

    Raises
    ------
    ValueError
        batch_size is not a positive int (a bool or a float included); a tuple or
        list dataset is invalid as for ArrayDataset; seed is a negative int.
    TypeError
        dataset has no ``__len__`` or ``__getitem__``; seed is not a seed NumPy takes.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.data import DataLoader
    >>> x, y = np.arange(10.).reshape(5, 2), np.arange(5)
    >>> [yb.tolist() for xb, yb in DataLoader((x, y), batch_size=2)]
    [[0, 1], [2, 3], [4]]
    >>> len(DataLoader((x, y), batch_size=2, drop_last=True))
    2
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, seed=None, drop_last=False):
        if isinstance(dataset, (tuple, list)):
            dataset = ArrayDataset(*dataset)
        elif not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(
                f"DataLoader: dataset: expected an ArrayDataset, a tuple of arrays or an object with __len__ and "
                f"__getitem__, got {type(dataset).__name__}"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
            raise ValueError(f"DataLoader: batch_size: expected a positive int, got {batch_size!r}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self._rng = _random.generator() if seed is None else _seeded(seed, "DataLoader", "seed")

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.dataset)
        order = self._rng.permutation(n) if self.shuffle else np.arange(n)
        for b in range(len(self)):
            yield self.dataset[order[b * self.batch_size : (b + 1) * self.batch_size]]


# -- file formats ------------------------------------------------------------------------
_IDX_TYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _seeded(seed, op, name):
    """np.random.default_rng(seed), its errors naming op and the argument."""
    if isinstance(seed, (bool, float)):
        raise TypeError(f"{op}: {name}: expected a non-negative int, got {type(seed).__name__}")
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{op}: {name}: expected a non-negative int, got {seed!r} ({e})") from None


def _path(path, op, name="path"):
    """path as a str or bytes file system path; TypeError for anything else (an int
    would be taken by open() as a file descriptor)."""
    if isinstance(path, (str, bytes, os.PathLike)):
        return os.fspath(path)
    raise TypeError(f"{op}: {name}: expected a str or os.PathLike path, got {type(path).__name__}")


def _read_bytes(path):
    with open(path, "rb") as f:
        raw = f.read()
    if path.endswith(b".gz" if isinstance(path, bytes) else ".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"read_idx: {_shown(path)}: not a valid gzip file ({e})") from None
    return raw


def _shown(path):
    return os.fsdecode(path)


def read_idx(path):
    """Read an IDX file (MNIST's format) into an array.

    The format: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16,
    0x0C int32, 0x0D float32, 0x0E float64) and the number of dims; each dim as a
    big-endian uint32; then the big-endian data. A path ending in .gz is read
    through gzip.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    ndarray
        Of the dims' shape and the type code's dtype, in native byte order.

    Raises
    ------
    TypeError
        path is not a str, bytes or os.PathLike.
    ValueError
        A bad magic number, a truncated header, a size that does not match the dims
        (truncated data or trailing bytes), or a .gz file that is not valid (or is
        truncated) gzip; the message names the file.
    OSError
        The file cannot be read (FileNotFoundError when it does not exist).
    """
    path = _path(path, "read_idx")
    raw = _read_bytes(path)
    shown = _shown(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"read_idx: {shown}: not an IDX file (bad magic number {raw[:4].hex()})")
    dtype, ndim = _IDX_TYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"read_idx: {shown}: truncated header (expected {header} bytes, got {len(raw)})")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    expected = header + math.prod(shape) * dtype.itemsize  # Python ints: no wrap-around
    if len(raw) != expected:
        raise ValueError(f"read_idx: {shown}: expected {expected} bytes for shape {shape}, got {len(raw)}")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(root, names, what):
    for name in names:
        for candidate in (name, name + ".gz"):
            path = os.path.join(os.fsdecode(root), candidate)
            if os.path.exists(path):
                return path
    raise FileNotFoundError(f"{what}: no {names[0]} (or .gz) in {root}")


def load_mnist(root, train=True):
    """MNIST-format images and labels (MNIST, Fashion-MNIST) from IDX files in a directory.

    Reads ``{prefix}-images-idx3-ubyte`` and ``{prefix}-labels-idx1-ubyte`` (or the
    ``{prefix}-images.idx3-ubyte`` spelling), each optionally gzipped with a .gz
    suffix, where prefix is "train" or "t10k".

    Parameters
    ----------
    root : str or os.PathLike
        Directory that holds the files.
    train : bool, default True
        The training set (60000 samples for MNIST) or the test set (10000).

    Returns
    -------
    images : ndarray of float32, shape (N, 1, H, W)
        Pixel / 255, in [0, 1]; (N, 1, 28, 28) for MNIST.
    labels : ndarray of int64, shape (N,)

    Raises
    ------
    TypeError
        root is not a str, bytes or os.PathLike.
    FileNotFoundError
        The images or labels file is missing.
    ValueError
        A malformed file (as for read_idx), or images that are not (N, H, W), labels
        that are not (N,), or counts that differ.
    """
    root = _path(root, "load_mnist", "root")
    prefix = "train" if train else "t10k"
    images = read_idx(_find(root, [f"{prefix}-images-idx3-ubyte", f"{prefix}-images.idx3-ubyte"], "load_mnist"))
    labels = read_idx(_find(root, [f"{prefix}-labels-idx1-ubyte", f"{prefix}-labels.idx1-ubyte"], "load_mnist"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"load_mnist: {root}: expected images (N, H, W) and labels (N,), got {images.shape} and {labels.shape}"
        )
    x = images.astype(np.float32)[:, None] / np.float32(255)
    return x, labels.astype(np.int64)


_CIFAR_RECORD = 1 + 3 * 32 * 32


def load_cifar10(root, train=True):
    """CIFAR-10 from its binary batches in a directory.

    Reads the train batches ``data_batch_1.bin`` ... ``data_batch_5.bin`` that exist
    (in that order), or ``test_batch.bin``, from root or from
    ``root/cifar-10-batches-bin`` when that directory exists. Each record is one label
    byte and 3 * 32 * 32 pixel bytes.

    Parameters
    ----------
    root : str or os.PathLike
        Directory that holds the batches, or their cifar-10-batches-bin parent.
    train : bool, default True
        The train batches (50000 samples when all five exist) or the test batch
        (10000).

    Returns
    -------
    images : ndarray of float32, shape (N, 3, 32, 32)
        Pixel / 255, in [0, 1].
    labels : ndarray of int64, shape (N,)

    Raises
    ------
    TypeError
        root is not a str, bytes or os.PathLike.
    FileNotFoundError
        None of the batch files exists.
    ValueError
        A batch file's size is not a multiple of 3073 bytes; the message names the file.
    """
    root = os.fsdecode(_path(root, "load_cifar10", "root"))
    nested = os.path.join(root, "cifar-10-batches-bin")
    if os.path.isdir(nested):
        root = nested
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if train else ["test_batch.bin"]
    paths = [os.path.join(root, n) for n in names if os.path.exists(os.path.join(root, n))]
    if not paths:
        raise FileNotFoundError(f"load_cifar10: no {names[0]} in {root}")
    xs, ys = [], []
    for path in paths:
        raw = np.fromfile(path, np.uint8)
        if raw.size % _CIFAR_RECORD:
            raise ValueError(
                f"load_cifar10: {path}: expected a multiple of {_CIFAR_RECORD} bytes (label + 3x32x32), got {raw.size}"
            )
        records = raw.reshape(-1, _CIFAR_RECORD)
        ys.append(records[:, 0].astype(np.int64))
        xs.append(records[:, 1:].reshape(-1, 3, 32, 32))
    return np.concatenate(xs).astype(np.float32) / np.float32(255), np.concatenate(ys)


def load_digits():
    """scikit-learn's bundled handwritten digits, read from the installed package.

    1797 8x8 images of the digits 0 to 9; no network access.

    Returns
    -------
    images : ndarray of float32, shape (1797, 1, 8, 8)
        Pixel / 16, in [0, 1].
    labels : ndarray of int64, shape (1797,)

    Raises
    ------
    ImportError
        scikit-learn is not installed (``pip install 'cnnkit[digits]'``).
    """
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise ImportError(
            "the digits dataset needs scikit-learn: pip install 'cnnkit[digits]' (or scikit-learn)"
        ) from None
    bunch = sklearn_digits()
    x = bunch.images.astype(np.float32)[:, None] / np.float32(16)
    return x, bunch.target.astype(np.int64)


@dataclass
class Dataset:
    """Train and test splits of a named dataset, as load_dataset returns them.

    Attributes
    ----------
    name : str
        "digits", "mnist" or "cifar10".
    x_train, x_test : ndarray of float32, shape (N, C, H, W)
        Images in [0, 1].
    y_train, y_test : ndarray of int64, shape (N,)
        Labels.
    num_classes : int
        Number of classes (10 for each of the three).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int


DATASETS = ("digits", "mnist:DIR", "cifar10:DIR")


def _split(x, y, test_fraction, seed):
    """A random split fixed by its seed: the same seed gives the same split."""
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def load_dataset(spec, test_fraction=0.2, split_seed=0):
    """Load a dataset by name, split into train and test sets.

    Parameters
    ----------
    spec : str
        "digits" (split into train and test at random), "mnist:DIR" or "cifar10:DIR"
        (their own train and test sets, read from directory DIR with load_mnist or
        load_cifar10).
    test_fraction : float, default 0.2
        For "digits": the share of samples in the test set (rounded to a count).
    split_seed : int, default 0
        For "digits": the seed of the split; the same seed gives the same split.

    Returns
    -------
    Dataset
        name, x_train, y_train, x_test, y_test and num_classes.

    Raises
    ------
    ValueError
        spec is not one of the forms above; test_fraction is outside [0, 1] (NaN
        included); split_seed is negative; as the loaders, for malformed files.
    TypeError
        test_fraction is not a real number; split_seed is not an int.
    FileNotFoundError
        A file is missing, as for load_mnist and load_cifar10.
    ImportError
        "digits" without scikit-learn.
    """
    test_fraction = real(test_fraction, "load_dataset", "test_fraction")
    if not 0 <= test_fraction <= 1:
        raise ValueError(f"load_dataset: test_fraction: expected a fraction in [0, 1], got {test_fraction}")
    _seeded(split_seed, "load_dataset", "split_seed")
    name, _, root = str(spec).partition(":")
    if name == "digits" and not root:
        x, y = load_digits()
        return Dataset("digits", *_split(x, y, test_fraction, split_seed), num_classes=10)
    if name in ("mnist", "cifar10") and root:
        loader = load_mnist if name == "mnist" else load_cifar10
        x_train, y_train = loader(root, train=True)
        x_test, y_test = loader(root, train=False)
        return Dataset(name, x_train, y_train, x_test, y_test, num_classes=10)
    raise ValueError(f"load_dataset: spec: expected one of {', '.join(DATASETS)}, got {spec!r}")
