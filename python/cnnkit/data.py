"""Data: a DataLoader-like batch iterator and readers for local datasets.

- ``ArrayDataset(*arrays)`` and ``DataLoader(dataset, batch_size, shuffle, seed,
  drop_last, transform, prefetch)`` over it, a tuple of arrays, or any object with
  ``__len__`` and a ``__getitem__`` that takes an index array; the next batch is
  assembled on a background thread while the current one trains.
- ``augment(images, crop, padding, flip, mean, std, seed)``: random crops of the
  zero-padded images, horizontal flips and per-channel normalisation of a uint8
  batch in one pass on cnnkit's thread pool.
- ``read_idx(path)``, ``load_mnist(root, train)``: MNIST's IDX files (optionally .gz).
- ``load_cifar10(root, train)``: CIFAR-10's binary batches.
- ``load_digits()``: scikit-learn's bundled 8x8 digits (no network;
  ``pip install cnnkit[digits]``).
- ``load_dataset(spec)``: ``"digits"``, ``"mnist:DIR"`` or ``"cifar10:DIR"`` (the
  specs listed in ``DATASETS``) -> a ``Dataset`` with train and test splits.

Images come back as float32 NCHW in [0, 1] (or, from load_mnist and load_cifar10 with
``dtype=np.uint8``, the raw pixels for augment); labels as int64. The files are decoded
and validated by the Cython module cnnkit._data; malformed ones raise ValueError naming
the file; missing ones FileNotFoundError.
"""

import gzip
import os
import queue
import threading
import zlib
from dataclasses import dataclass

import numpy as np

from . import _args, _data, _random
from ._args import real

__all__ = [
    "ArrayDataset",
    "DataLoader",
    "Dataset",
    "augment",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
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
    """Iterates over a dataset in batches, assembling the next ones on a background thread.

    Each pass (each ``iter()``) yields ``dataset[indices]`` for consecutive slices of
    batch_size indices of the epoch's order: for an ArrayDataset or a tuple of arrays,
    a tuple of arrays of batch_size samples (the last batch may be shorter unless
    drop_last), with ``transform`` applied to the first array (the inputs).
    ``len(loader)`` is the number of batches per pass.

    With prefetch > 0 (the default is 1), a background thread assembles (indexes and
    transforms) up to prefetch batches ahead of the one being used, so that a transform
    such as :func:`augment` runs while the current batch trains; the thread is started
    by the pass's first ``next()`` and stopped (joined) when the pass ends, when its
    iterator is closed or dropped, or when assembling a batch raises (the exception
    reaches the consumer in the batch's place). The batches, their order and the calls
    of transform (once per batch, in order, on one thread) are those of prefetch=0,
    where everything runs in the calling thread, on demand. The epoch's order is drawn
    in the calling thread at ``iter()``.

    Parameters
    ----------
    dataset : ArrayDataset, tuple or list of arrays, or dataset-like
        A tuple or list is wrapped in an ArrayDataset; anything else needs
        ``__len__`` and a ``__getitem__`` that takes an int64 index array (and, with
        prefetch, may be called from the background thread).
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
    transform : callable, optional
        ``transform(inputs) -> inputs`` applied to each batch's first array (to the
        whole batch where the dataset's batches are not tuples). With prefetch it runs
        on the background thread: a transform that draws random numbers should draw
        from its own generator (e.g. pass augment a seed from one), not from cnnkit's
        stream, which the training thread also draws from.
    prefetch : int, default 1
        Batches assembled ahead on the background thread; 0 for none (no thread).
    rank, world_size : int, default 0 and 1
        Data parallelism (cnnkit.distributed): batch_size is the global batch, and
        each pass yields this rank's part of each global batch. The global batch is
        split contiguously as ``numpy.array_split`` splits it: the first
        ``len(batch) % world_size`` ranks get one sample more, and a rank gets none
        where a batch has fewer samples than ranks. Every rank makes ``len(loader)``
        steps; with the same seed (or cnnkit.manual_seed) on every rank, the parts
        together are the batches of one process.

    Raises
    ------
    ValueError
        batch_size is not a positive int (a bool or a float included); a tuple or
        list dataset is invalid as for ArrayDataset; seed is a negative int; prefetch
        is negative; world_size is not positive; rank is outside [0, world_size).
    TypeError
        dataset has no ``__len__`` or ``__getitem__``; seed is not a seed NumPy takes;
        transform is neither None nor callable; prefetch, rank or world_size is not
        an int.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.data import DataLoader
    >>> x, y = np.arange(10.).reshape(5, 2), np.arange(5)
    >>> [yb.tolist() for xb, yb in DataLoader((x, y), batch_size=2)]
    [[0, 1], [2, 3], [4]]
    >>> len(DataLoader((x, y), batch_size=2, drop_last=True))
    2
    >>> [xb.tolist() for xb, yb in DataLoader((x, y), batch_size=3, transform=lambda xb: -xb[:, :1])]
    [[[-0.0], [-2.0], [-4.0]], [[-6.0], [-8.0]]]
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, seed=None, drop_last=False, transform=None,
                 prefetch=1, rank=0, world_size=1):
        if isinstance(dataset, (tuple, list)):
            dataset = ArrayDataset(*dataset)
        elif not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(
                f"DataLoader: dataset: expected an ArrayDataset, a tuple of arrays or an object with __len__ and "
                f"__getitem__, got {type(dataset).__name__}"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
            raise ValueError(f"DataLoader: batch_size: expected a positive int, got {batch_size!r}")
        if transform is not None and not callable(transform):
            raise TypeError(f"DataLoader: transform: expected a callable or None, got {type(transform).__name__}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.transform = transform
        self.prefetch = _args.positive(prefetch, "DataLoader", "prefetch", low=0)
        self.world_size = _args.positive(world_size, "DataLoader", "world_size")
        self.rank = _args.positive(rank, "DataLoader", "rank", low=0)
        if self.rank >= self.world_size:
            raise ValueError(
                f"DataLoader: rank: expected an int in [0, world_size) = [0, {self.world_size}), got {self.rank}"
            )
        self._rng = _random.generator() if seed is None else _seeded(seed, "DataLoader", "seed")

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.dataset)
        order = self._rng.permutation(n) if self.shuffle else np.arange(n)
        slices = (self._part(order[b * self.batch_size : (b + 1) * self.batch_size]) for b in range(len(self)))
        if self.prefetch == 0:
            return (self._assemble(index) for index in slices)
        return _prefetched(self._assemble, slices, self.prefetch)

    def _part(self, batch):
        """This rank's contiguous part of a global batch's indices."""
        size, extra = divmod(len(batch), self.world_size)
        start = self.rank * size + min(self.rank, extra)
        return batch[start : start + size + (self.rank < extra)]

    def _assemble(self, index):
        batch = self.dataset[index]
        if self.transform is None:
            return batch
        if isinstance(batch, tuple) and batch:
            return (self.transform(batch[0]),) + batch[1:]
        return self.transform(batch)


_END = object()


def _prefetched(assemble, slices, depth):
    """assemble(index) for each index of slices, computed up to depth items ahead on a
    thread of its own; the thread is joined whenever this generator finishes."""
    ready = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce():
        try:
            for index in slices:
                if stop.is_set():
                    return
                ready.put((assemble(index), None))
            ready.put((_END, None))
        except BaseException as e:  # noqa: BLE001 - it is the consumer's to raise
            ready.put((None, e))

    thread = threading.Thread(target=produce, name="cnnkit-DataLoader-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            batch, error = ready.get()
            if error is not None:
                raise error
            if batch is _END:
                return
            yield batch
    finally:
        stop.set()
        # Room in the queue for the producer's pending put; it then sees stop.
        while True:
            try:
                ready.get_nowait()
            except queue.Empty:
                break
        thread.join()


def augment(images, crop, padding=0, flip=False, mean=None, std=None, seed=None):
    """Random crops of the zero-padded images, random horizontal flips, normalisation.

    Each sample gets a crop window of size crop at a random offset of the image
    padded with zeros by padding on each side (every offset equally likely) and, with
    flip, is mirrored left-right with probability 1/2 (as torchvision's RandomCrop
    then RandomHorizontalFlip); then each value becomes ``(x / 255 - mean) / std`` of
    its channel, computed in float64 and rounded once to float32 (padding is x = 0).
    One pass over the batch on cnnkit's thread pool, no Python loop over samples. A
    sample's draws depend only on seed and its index in the batch (dropout's
    counter-based generator), so one seed gives one batch on any number of threads.

    Parameters
    ----------
    images : ndarray of uint8, shape (N, C, H, W)
        The batch (copied first where not C-contiguous).
    crop : int or (int, int)
        The output's (height, width); from 1 to the padded image's size.
    padding : int or (int, int), default 0
        Zero rows above and below, zero columns left and right; non-negative.
    flip : bool, default False
        Mirror each sample with probability 1/2.
    mean, std : float or sequence of C floats, optional
        Per-channel mean and standard deviation of x / 255 (a number applies to every
        channel); std positive. None: mean 0, std 1 (x / 255, in [0, 1]).
    seed : int, optional
        A non-negative int (below 2**63). None draws one from cnnkit's random stream
        (cnnkit.manual_seed), as dropout does.

    Returns
    -------
    ndarray of float32, shape (N, C, crop_h, crop_w)

    Raises
    ------
    TypeError
        images is not uint8; crop or padding is not an int or a pair of ints; flip is
        not a bool; mean or std holds a non-real value; seed is not an int.
    ValueError
        images is not 4-D; crop or padding is a sequence of other than 2 values, crop
        is below 1 or larger than the padded image, padding is negative or makes the
        padded image larger than the int64 range; mean or std has a length other than
        C, a NaN or infinity, or std a value <= 0; seed is negative or above the
        int64 range.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.data import augment
    >>> images = np.arange(2 * 3 * 4 * 4, dtype=np.uint8).reshape(2, 3, 4, 4)
    >>> out = augment(images, crop=4, padding=2, flip=True, seed=0)
    >>> out.shape, out.dtype
    ((2, 3, 4, 4), dtype('float32'))
    >>> bool(np.array_equal(augment(images, crop=4, seed=1), images / np.float32(255)))
    True
    """
    op = "augment"
    images = _args.uint8_images(images, op, "images")
    n, c, h, w = images.shape
    ph, pw = _args.pair(padding, op, "padding")
    if ph < 0 or pw < 0:
        raise ValueError(f"{op}: padding: expected non-negative values, got ({ph}, {pw})")
    if h + 2 * ph > _args._INT64_MAX or w + 2 * pw > _args._INT64_MAX:
        raise ValueError(
            f"{op}: padding: expected a padded image within the int64 range, got ({h}, {w}) padded by ({ph}, {pw})"
        )
    ch, cw = _args.pair(crop, op, "crop")
    if not (1 <= ch <= h + 2 * ph and 1 <= cw <= w + 2 * pw):
        raise ValueError(
            f"{op}: crop: expected 1 to the padded image's size ({h + 2 * ph}, {w + 2 * pw}), got ({ch}, {cw})"
        )
    flip = _args.boolean(flip, op, "flip")
    mean = _args.per_channel(mean, op, "mean", c, 0.0)
    std = _args.per_channel(std, op, "std", c, 1.0, positive=True)
    seed = _random.next_seed() if seed is None else _args.seed(seed, op)
    return _data.augment(images, ch, cw, ph, pw, flip, mean, std, seed)


# -- file formats ------------------------------------------------------------------------
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


def _read_bytes(path, op):
    """The file's bytes, through gzip where the name ends in .gz."""
    with open(path, "rb") as f:
        raw = f.read()
    if path.endswith(b".gz" if isinstance(path, bytes) else ".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{op}: {_shown(path)}: not a valid gzip file ({e})") from None
    return raw


def _shown(path):
    return os.fsdecode(path)


def _pixels(dtype, op):
    """True for float32 pixels / 255, False for the raw uint8 pixels."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in (np.dtype(np.float32), np.dtype(np.uint8)):
        raise TypeError(f"{op}: dtype: expected np.float32 or np.uint8, got {dtype!r}")
    return dt == np.float32


def read_idx(path):
    """Read an IDX file (MNIST's format) into an array.

    The format: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16,
    0x0C int32, 0x0D float32, 0x0E float64) and the number of dims; each dim as a
    big-endian uint32; then the big-endian data. A path ending in .gz is read
    through gzip. Decoded (and validated) by cnnkit._data on cnnkit's thread pool.

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
        A bad magic number, more than 32 dims, a truncated header, a size that does
        not match the dims (truncated data or trailing bytes), or a .gz file that is
        not valid (or is truncated) gzip; the message names the file and says what
        was expected and what was found.
    OSError
        The file cannot be read (FileNotFoundError when it does not exist).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from cnnkit.data import read_idx
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = pathlib.Path(tmp.name, "a.idx")
    >>> _ = path.write_bytes(bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6)))
    >>> read_idx(path)
    array([[0, 1, 2],
           [3, 4, 5]], dtype=uint8)
    >>> tmp.cleanup()
    """
    path = _path(path, "read_idx")
    return _data.decode_idx(_read_bytes(path, "read_idx"), f"read_idx: {_shown(path)}")


def _find(root, names, what):
    for name in names:
        for candidate in (name, name + ".gz"):
            path = os.path.join(os.fsdecode(root), candidate)
            if os.path.exists(path):
                return path
    raise FileNotFoundError(f"{what}: no {names[0]} (or .gz) in {root}")


# IDX magic numbers of MNIST's files: type code 0x08 (uint8), then the dims.
_MNIST_IMAGES, _MNIST_LABELS = 0x0803, 0x0801


def load_mnist(root, train=True, dtype=np.float32):
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
    dtype : np.float32 or np.uint8, default np.float32
        float32 pixels / 255, or the raw uint8 pixels (what augment takes).

    Returns
    -------
    images : ndarray of float32 (or uint8), shape (N, 1, H, W)
        Pixel / 255, in [0, 1]; (N, 1, 28, 28) for MNIST.
    labels : ndarray of int64, shape (N,)

    Raises
    ------
    TypeError
        root is not a str, bytes or os.PathLike; dtype is neither float32 nor uint8.
    FileNotFoundError
        The images or labels file is missing.
    ValueError
        A malformed file (as for read_idx), an images file whose magic number is not
        0x00000803 (uint8, 3 dims: N, H, W) or a labels file whose magic number is not
        0x00000801 (uint8, 1 dim), or counts that differ; the message names the file.
    """
    root = _path(root, "load_mnist", "root")
    unit = _pixels(dtype, "load_mnist")
    prefix = "train" if train else "t10k"
    images_path = _find(root, [f"{prefix}-images-idx3-ubyte", f"{prefix}-images.idx3-ubyte"], "load_mnist")
    labels_path = _find(root, [f"{prefix}-labels-idx1-ubyte", f"{prefix}-labels.idx1-ubyte"], "load_mnist")
    images = _data.decode_idx(
        _read_bytes(images_path, "load_mnist"), f"load_mnist: {images_path}", _MNIST_IMAGES,
        "MNIST images: uint8, 3 dims (N, H, W)", unit
    )
    labels = _data.decode_idx(
        _read_bytes(labels_path, "load_mnist"), f"load_mnist: {labels_path}", _MNIST_LABELS,
        "MNIST labels: uint8, 1 dim (N,)"
    )
    if len(images) != len(labels):
        raise ValueError(
            f"load_mnist: {root}: expected as many labels as images, got {len(images)} images ({images_path}) "
            f"and {len(labels)} labels ({labels_path})"
        )
    return images[:, None], labels.astype(np.int64)


CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
"""CIFAR-10's per-channel (R, G, B) mean of pixel / 255 over the training set."""
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
"""CIFAR-10's per-channel (R, G, B) standard deviation of pixel / 255 over the training set."""


def load_cifar10(root, train=True, dtype=np.float32):
    """CIFAR-10 from its binary batches in a directory.

    Reads the train batches ``data_batch_1.bin`` ... ``data_batch_5.bin`` that exist
    (in that order), or ``test_batch.bin``, from root or from
    ``root/cifar-10-batches-bin`` when that directory exists. Each record is one label
    byte (0 to 9) and 3 * 32 * 32 pixel bytes. Decoded (and validated) by
    cnnkit._data on cnnkit's thread pool.

    Parameters
    ----------
    root : str or os.PathLike
        Directory that holds the batches, or their cifar-10-batches-bin parent.
    train : bool, default True
        The train batches (50000 samples when all five exist) or the test batch
        (10000).
    dtype : np.float32 or np.uint8, default np.float32
        float32 pixels / 255, or the raw uint8 pixels (what augment takes).

    Returns
    -------
    images : ndarray of float32 (or uint8), shape (N, 3, 32, 32)
        Pixel / 255, in [0, 1].
    labels : ndarray of int64, shape (N,)

    Raises
    ------
    TypeError
        root is not a str, bytes or os.PathLike; dtype is neither float32 nor uint8.
    FileNotFoundError
        None of the batch files exists.
    ValueError
        A batch file is empty, its size is not a multiple of 3073 bytes, or it holds
        a label above 9; the message names the file and what it holds.
    """
    root = os.fsdecode(_path(root, "load_cifar10", "root"))
    unit = _pixels(dtype, "load_cifar10")
    nested = os.path.join(root, "cifar-10-batches-bin")
    if os.path.isdir(nested):
        root = nested
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if train else ["test_batch.bin"]
    paths = [os.path.join(root, n) for n in names if os.path.exists(os.path.join(root, n))]
    if not paths:
        raise FileNotFoundError(f"load_cifar10: no {names[0]} in {root}")
    raws = [_read_bytes(path, "load_cifar10") for path in paths]
    counts = [_data.cifar_records(len(raw), f"load_cifar10: {path}") for raw, path in zip(raws, paths)]
    images = np.empty((sum(counts), 3 * 32 * 32), np.float32 if unit else np.uint8)
    labels = np.empty(sum(counts), np.int64)
    start = 0
    for raw, path, n in zip(raws, paths, counts):
        _data.decode_cifar(raw, f"load_cifar10: {path}", images[start : start + n], labels[start : start + n])
        start += n
    return images.reshape(-1, 3, 32, 32), labels


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
