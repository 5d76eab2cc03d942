"""cnnkit.data: the batch iterator, and the MNIST IDX / CIFAR-10 binary readers on tiny
files written here in those formats."""

import gzip
import struct
import sys

import numpy as np
import pytest

import cnnkit
from cnnkit import _data, data


# ---- DataLoader ---------------------------------------------------------------------
def test_batches_in_order_without_shuffle():
    x = np.arange(10)[:, None] * np.ones((1, 3))
    y = np.arange(10)
    loader = data.DataLoader((x, y), batch_size=4)
    batches = list(loader)
    assert len(loader) == 3
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)
    np.testing.assert_array_equal(batches[0][0], x[:4])


def test_drop_last():
    loader = data.DataLoader((np.arange(10),), batch_size=4, drop_last=True)
    assert len(loader) == 2
    assert [len(b[0]) for b in loader] == [4, 4]


def test_shuffle_is_a_permutation_reproducible_by_seed_and_new_each_epoch():
    y = np.arange(50)
    first = data.DataLoader((y,), batch_size=7, shuffle=True, seed=3)
    second = data.DataLoader((y,), batch_size=7, shuffle=True, seed=3)
    epoch1 = np.concatenate([b[0] for b in first])
    epoch2 = np.concatenate([b[0] for b in first])
    assert sorted(epoch1) == list(y)
    assert not np.array_equal(epoch1, y)
    assert not np.array_equal(epoch1, epoch2)
    np.testing.assert_array_equal(np.concatenate([b[0] for b in second]), epoch1)
    np.testing.assert_array_equal(np.concatenate([b[0] for b in second]), epoch2)


def test_unseeded_shuffle_follows_manual_seed():
    y = np.arange(30)
    cnnkit.manual_seed(11)
    a = np.concatenate([b[0] for b in data.DataLoader((y,), batch_size=8, shuffle=True)])
    cnnkit.manual_seed(11)
    b = np.concatenate([b[0] for b in data.DataLoader((y,), batch_size=8, shuffle=True)])
    np.testing.assert_array_equal(a, b)


def test_features_and_labels_stay_paired():
    x = np.arange(20, dtype=np.float32) * 10
    y = np.arange(20)
    for xb, yb in data.DataLoader(data.ArrayDataset(x, y), batch_size=6, shuffle=True, seed=0):
        np.testing.assert_array_equal(xb, yb * 10)


def test_dataset_arrays_must_have_equal_length():
    with pytest.raises(ValueError, match="arrays: expected 5 samples in every array, got \\(4,\\) for array 1"):
        data.ArrayDataset(np.zeros(5), np.zeros(4))


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_batch_size(bad):
    with pytest.raises(ValueError, match="batch_size: expected a positive int"):
        data.DataLoader((np.zeros(3),), batch_size=bad)


# ---- IDX (MNIST) --------------------------------------------------------------------
IDX_CODES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def write_idx(path, array, code=0x08):
    dtype = IDX_CODES[code]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.asarray(array, dtype).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(payload)


@pytest.mark.parametrize("code", [0x08, 0x0B, 0x0D])
def test_read_idx_types(tmp_path, rng, code):
    values = rng.integers(0, 200, size=(3, 4, 5))
    path = tmp_path / "a.idx"
    write_idx(path, values, code)
    got = data.read_idx(path)
    assert got.shape == (3, 4, 5)
    assert got.dtype.isnative
    np.testing.assert_array_equal(got, values)


def test_read_idx_gzip(tmp_path):
    values = np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_idx(tmp_path / "a.idx.gz", values)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "a.idx.gz"), values)


def test_read_idx_bad_magic(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x01\x00")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(path)


def test_read_idx_truncated(tmp_path):
    path = tmp_path / "short"
    write_idx(path, np.zeros((2, 3), np.uint8))
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match="truncated: expected 18 bytes for shape \\(2, 3\\) of type uint8, got 17"):
        data.read_idx(path)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("code", sorted(IDX_CODES))
def test_read_idx_round_trip_of_every_type(tmp_path, rng, code, gz):
    dtype = np.dtype(IDX_CODES[code])
    if dtype.kind == "f":
        values = rng.standard_normal((2, 3, 5, 7)).astype(dtype)
        values.flat[:3] = [np.inf, -0.0, np.finfo(dtype).tiny]
    else:
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, size=(2, 3, 5, 7), endpoint=True).astype(dtype)
        values.flat[:2] = [info.min, info.max]
    path = tmp_path / ("a.idx.gz" if gz else "a.idx")
    write_idx(path, values, code)
    got = data.read_idx(str(path))
    assert got.dtype == dtype.newbyteorder("=") and got.dtype.isnative and got.flags.writeable
    np.testing.assert_array_equal(got, values)
    assert np.signbit(got.flat[1]) == np.signbit(values.flat[1])


@pytest.mark.parametrize("code", [0x08, 0x0C, 0x0E])
def test_read_idx_on_any_thread_count(tmp_path, rng, num_threads, code):
    values = rng.integers(-100, 100, size=(300_001,)).astype(np.dtype(IDX_CODES[code]).newbyteorder("="))
    write_idx(tmp_path / "big.idx", values, code)
    for threads in (1, 2, 3):
        num_threads(threads)
        np.testing.assert_array_equal(data.read_idx(tmp_path / "big.idx"), values)


def test_read_idx_zero_dims_and_empty_shapes(tmp_path):
    (tmp_path / "scalar.idx").write_bytes(bytes([0, 0, 0x0C, 0]) + struct.pack(">i", -7))
    got = data.read_idx(tmp_path / "scalar.idx")
    assert got.shape == () and got == -7
    write_idx(tmp_path / "empty.idx", np.zeros((0, 4), np.uint8))
    assert data.read_idx(tmp_path / "empty.idx").shape == (0, 4)


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"", "not an IDX file \\(expected the magic number 0x0000TTDD .*, got an empty file\\)"),
        (b"\x00\x00", "not an IDX file .*got 0000\\)"),
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x00", "not an IDX file .*got 01000801\\)"),
        (b"\x00\x02\x08\x01\x00\x00\x00\x01\x00", "not an IDX file .*got 00020801\\)"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "not an IDX file .*got 00000701\\)"),
        (b"\x00\x00\x08\x21" + b"\x00\x00\x00\x01" * 33, "expected at most 32 dims in the IDX header, got 33"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x02\x00", "truncated header \\(expected 12 bytes for 2 dims, got 9\\)"),
        (bytes([0, 0, 0x0B, 2]) + struct.pack(">II", 2, 3) + b"\x00" * 11,
         "truncated: expected 24 bytes for shape \\(2, 3\\) of type int16, got 23"),
        (bytes([0, 0, 0x08, 1]) + struct.pack(">I", 3) + b"\x00" * 4,
         "oversized: expected 11 bytes for shape \\(3,\\) of type uint8, got 12"),
        (bytes([0, 0, 0x0E, 3]) + struct.pack(">III", 2**32 - 1, 2**32 - 1, 2**32 - 1),
         f"truncated: expected {16 + 8 * (2**32 - 1) ** 3} bytes for shape \\(4294967295, 4294967295, 4294967295\\)"),
    ],
    ids=["empty", "short-magic", "byte0", "byte1", "type", "dims", "header", "truncated", "oversized", "huge"],
)
def test_read_idx_malformed(tmp_path, payload, message):
    path = tmp_path / "bad.idx"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match=f"^read_idx: {path}: {message}"):
        data.read_idx(path)


def test_read_idx_bad_gzip(tmp_path):
    write_idx(tmp_path / "plain.idx.gz.raw", np.zeros(4, np.uint8))
    (tmp_path / "plain.idx.gz").write_bytes((tmp_path / "plain.idx.gz.raw").read_bytes())
    with pytest.raises(ValueError, match=f"^read_idx: {tmp_path / 'plain.idx.gz'}: not a valid gzip file"):
        data.read_idx(tmp_path / "plain.idx.gz")
    write_idx(tmp_path / "good.idx.gz", np.arange(100, dtype=np.uint8))
    (tmp_path / "cut.idx.gz").write_bytes((tmp_path / "good.idx.gz").read_bytes()[:-9])
    with pytest.raises(ValueError, match=f"^read_idx: {tmp_path / 'cut.idx.gz'}: not a valid gzip file"):
        data.read_idx(tmp_path / "cut.idx.gz")


def test_read_idx_path_errors(tmp_path):
    with pytest.raises(TypeError, match="^read_idx: path: expected a str or os.PathLike path, got int"):
        data.read_idx(3)
    with pytest.raises(FileNotFoundError):
        data.read_idx(tmp_path / "missing.idx")


def write_mnist(root, n_train=6, n_test=3, gz=False):
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    sets = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28)).astype(np.uint8)
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
        sets[prefix] = (images, labels)
    return sets


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_load_mnist(tmp_path, gz):
    sets = write_mnist(tmp_path, gz=gz)
    for train, prefix in ((True, "train"), (False, "t10k")):
        x, y = data.load_mnist(tmp_path, train=train)
        images, labels = sets[prefix]
        assert x.shape == (len(images), 1, 28, 28) and x.dtype == np.float32
        assert y.dtype == np.int64
        np.testing.assert_allclose(x[:, 0], images / 255.0, rtol=1e-6)
        np.testing.assert_array_equal(y, labels)


def test_load_mnist_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        data.load_mnist(tmp_path)


def test_load_mnist_count_mismatch(tmp_path):
    write_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match="expected as many labels as images, got 6 images"):
        data.load_mnist(tmp_path)


def test_load_mnist_uint8_and_float_pixels(tmp_path):
    sets = write_mnist(tmp_path, n_train=5)
    images, labels = sets["train"]
    raw, y = data.load_mnist(tmp_path, dtype=np.uint8)
    assert raw.dtype == np.uint8 and raw.shape == (5, 1, 28, 28)
    np.testing.assert_array_equal(raw[:, 0], images)
    x, _ = data.load_mnist(tmp_path, dtype="float32")
    np.testing.assert_array_equal(x[:, 0], images.astype(np.float32) / np.float32(255))  # exactly
    np.testing.assert_array_equal(y, labels)
    with pytest.raises(TypeError, match="^load_mnist: dtype: expected np.float32 or np.uint8, got <class 'numpy.float64'>"):
        data.load_mnist(tmp_path, dtype=np.float64)
    with pytest.raises(TypeError, match="^load_mnist: dtype: expected np.float32 or np.uint8, got 'nope'"):
        data.load_mnist(tmp_path, dtype="nope")


@pytest.mark.parametrize(
    "which, array, code, message",
    [
        ("images", np.zeros(6, np.uint8), 0x08,
         "expected MNIST images: uint8, 3 dims \\(N, H, W\\) \\(magic number 0x00000803\\), got magic number 0x00000801"),
        ("images", np.zeros((6, 28, 28), np.int16), 0x0B, ".*got magic number 0x00000b03"),
        ("labels", np.zeros((6, 1), np.uint8), 0x08,
         "expected MNIST labels: uint8, 1 dim \\(N,\\) \\(magic number 0x00000801\\), got magic number 0x00000802"),
        ("labels", np.zeros(6, np.float32), 0x0D, ".*got magic number 0x00000d01"),
    ],
)
def test_load_mnist_wrong_magic(tmp_path, which, array, code, message):
    write_mnist(tmp_path)
    path = tmp_path / f"train-{which}-idx{3 if which == 'images' else 1}-ubyte"
    write_idx(path, array, code)
    with pytest.raises(ValueError, match=f"^load_mnist: {path}: {message}"):
        data.load_mnist(tmp_path)


def test_load_mnist_truncated_and_other_spelling(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match=f"^load_mnist: {path}: truncated: expected 2368 bytes"):
        data.load_mnist(tmp_path, train=False)
    path.rename(tmp_path / "t10k-images.idx3-ubyte.gz")
    with pytest.raises(ValueError, match="t10k-images.idx3-ubyte.gz: not a valid gzip file"):
        data.load_mnist(tmp_path, train=False)


# ---- CIFAR-10 -----------------------------------------------------------------------
def write_cifar(root, counts):
    rng = np.random.default_rng(1)
    sets = {}
    for name, n in counts.items():
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        images = rng.integers(0, 256, size=(n, 3, 32, 32)).astype(np.uint8)
        records = np.concatenate([labels[:, None], images.reshape(n, -1)], axis=1)
        (root / name).write_bytes(records.tobytes())
        sets[name] = (images, labels)
    return sets


def test_load_cifar10(tmp_path):
    nested = tmp_path / "cifar-10-batches-bin"
    nested.mkdir()
    sets = write_cifar(nested, {"data_batch_1.bin": 3, "data_batch_2.bin": 2, "test_batch.bin": 4})
    x, y = data.load_cifar10(tmp_path, train=True)
    assert x.shape == (5, 3, 32, 32) and x.dtype == np.float32 and y.dtype == np.int64
    images = np.concatenate([sets["data_batch_1.bin"][0], sets["data_batch_2.bin"][0]])
    labels = np.concatenate([sets["data_batch_1.bin"][1], sets["data_batch_2.bin"][1]])
    np.testing.assert_allclose(x, images / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, labels)
    x, y = data.load_cifar10(nested, train=False)
    np.testing.assert_array_equal(y, sets["test_batch.bin"][1])
    assert x.shape == (4, 3, 32, 32)


def test_load_cifar10_bad_size(tmp_path):
    (tmp_path / "test_batch.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="expected a multiple of 3073 bytes"):
        data.load_cifar10(tmp_path, train=False)


def test_load_cifar10_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_batch_1.bin"):
        data.load_cifar10(tmp_path)


def test_load_cifar10_uint8_float_and_threads(tmp_path, num_threads):
    sets = write_cifar(tmp_path, {"data_batch_1.bin": 40, "data_batch_3.bin": 31})
    images = np.concatenate([sets["data_batch_1.bin"][0], sets["data_batch_3.bin"][0]])
    labels = np.concatenate([sets["data_batch_1.bin"][1], sets["data_batch_3.bin"][1]])
    for threads in (1, 2, 3):
        num_threads(threads)
        raw, y = data.load_cifar10(tmp_path, dtype=np.uint8)
        assert raw.dtype == np.uint8 and raw.shape == (71, 3, 32, 32) and y.dtype == np.int64
        np.testing.assert_array_equal(raw, images)
        np.testing.assert_array_equal(y, labels)
        x, _ = data.load_cifar10(tmp_path)
        np.testing.assert_array_equal(x, images.astype(np.float32) / np.float32(255))  # exactly
    with pytest.raises(TypeError, match="^load_cifar10: dtype: expected np.float32 or np.uint8, got 'int8'"):
        data.load_cifar10(tmp_path, dtype="int8")


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"", "truncated: expected records of 3073 bytes \\(label \\+ 3x32x32\\), got 0 bytes"),
        (b"\x01" * 3072, "expected a multiple of 3073 bytes .*, got 3072 \\(0 records and 3072 bytes over\\)"),
        (b"\x01" * (2 * 3073 + 5), ".*got 6151 \\(2 records and 5 bytes over\\)"),
        (b"\x01" * 3073 + b"\x0a" + b"\x00" * 3072, "expected labels 0 to 9, got 10 in record 1 \\(byte 3073\\)"),
        (b"\xff" + b"\x00" * 3072, "expected labels 0 to 9, got 255 in record 0 \\(byte 0\\)"),
    ],
    ids=["empty", "short", "trailing", "label-10", "label-255"],
)
def test_load_cifar10_malformed(tmp_path, payload, message):
    write_cifar(tmp_path, {"data_batch_1.bin": 2})
    path = tmp_path / "data_batch_2.bin"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match=f"^load_cifar10: {path}: {message}"):
        data.load_cifar10(tmp_path)


def test_cifar_decoder_checks_its_buffers():
    """The kernel's own guard: the arrays it writes must fit the records (load_cifar10
    always sizes them so)."""
    raw = bytes(2 * 3073)
    with pytest.raises(ValueError, match=r"^f: expected images \(2, 3072\) and labels \(2,\) for its 2 records, "
                                         r"got \(1, 3072\) and \(2,\)"):
        _data.decode_cifar(raw, "f", np.empty((1, 3072), np.uint8), np.empty(2, np.int64))
    with pytest.raises(ValueError, match=r"got \(2, 3071\) and \(2,\)"):
        _data.decode_cifar(raw, "f", np.empty((2, 3071), np.float32), np.empty(2, np.int64))
    with pytest.raises(ValueError, match=r"got \(2, 3072\) and \(3,\)"):
        _data.decode_cifar(raw, "f", np.empty((2, 3072), np.uint8), np.empty(3, np.int64))


# ---- named datasets -----------------------------------------------------------------
def test_load_dataset_mnist(tmp_path):
    write_mnist(tmp_path)
    ds = data.load_dataset(f"mnist:{tmp_path}")
    assert ds.x_train.shape == (6, 1, 28, 28) and ds.x_test.shape == (3, 1, 28, 28)
    assert ds.num_classes == 10


@pytest.mark.parametrize("spec", ["imagenet", "mnist", "mnist:", "digits:/tmp", ""])
def test_load_dataset_unknown(spec):
    with pytest.raises(ValueError, match="spec: expected one of digits, mnist:DIR, cifar10:DIR"):
        data.load_dataset(spec)


def test_load_digits():
    pytest.importorskip("sklearn")
    x, y = data.load_digits()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == np.float32
    assert x.min() == 0 and x.max() == 1
    assert set(np.unique(y)) == set(range(10))
    ds = data.load_dataset("digits")
    assert len(ds.x_train) + len(ds.x_test) == 1797
    assert len(ds.x_test) == 359
    again = data.load_dataset("digits")
    np.testing.assert_array_equal(ds.y_test, again.y_test)


def test_digits_without_scikit_learn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"pip install 'cnnkit\[digits\]'"):
        data.load_digits()
