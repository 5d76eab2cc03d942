"""cnnkit.distributed: data parallelism over MPI.

The exactness tests start their own `mpiexec -n 2` and `-n 3` on scripts in
tests/distributed/ and compare with one process on the whole global batch; they
skip only where mpi4py is not installed."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cnnkit
from cnnkit import _random, distributed, nn
from cnnkit import functional as F
from cnnkit.data import DataLoader

import distributed_worker as worker

HERE = Path(__file__).resolve().parent
PACKAGE_PARENT = os.path.dirname(os.path.dirname(cnnkit.__file__))
LAUNCHER_VARIABLES = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_RANK")


def clean_env(**extra):
    """This environment without any MPI launcher's variables, cnnkit importable, one thread."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_PARENT, str(HERE), os.environ.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra)
    return env


def mpiexec(n, *args, timeout=120):
    """Run `mpiexec -n n python args...` (the mpiexec of mpi4py's MPI: the mpich wheel's,
    next to this Python); skipped where mpi4py is not installed."""
    pytest.importorskip("mpi4py")
    launcher = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    launcher = launcher if os.path.exists(launcher) else shutil.which("mpiexec")
    assert launcher, "mpi4py is installed but no mpiexec was found (pip install 'cnnkit[mpi]' ships one)"
    result = subprocess.run([launcher, "-n", str(n), sys.executable, *args], capture_output=True, text=True,
                            env=clean_env(), timeout=timeout)
    assert result.returncode == 0, f"mpiexec -n {n} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


# -- DataLoader(rank=, world_size=) ------------------------------------------------------
@pytest.mark.parametrize("n, batch_size", [(11, 5), (12, 4), (7, 7), (5, 8)])
@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
@pytest.mark.parametrize("shuffle", [False, True])
def test_dataloader_parts_make_the_global_batches(n, batch_size, world_size, shuffle):
    x, y = np.arange(n * 2.0).reshape(n, 2), np.arange(n)
    whole = [yb for _, yb in DataLoader((x, y), batch_size, shuffle=shuffle, seed=7)]
    parts = [
        [yb for _, yb in DataLoader((x, y), batch_size, shuffle=shuffle, seed=7, rank=r, world_size=world_size)]
        for r in range(world_size)
    ]
    assert all(len(p) == len(whole) for p in parts)  # every rank makes the same number of steps
    for b, batch in enumerate(whole):
        pieces = [p[b] for p in parts]
        np.testing.assert_array_equal(np.concatenate(pieces), batch)
        # contiguous, as numpy.array_split: sizes differ by at most one, larger first
        assert [len(q) for q in pieces] == [len(q) for q in np.array_split(batch, world_size)]


def test_dataloader_uneven_batch_split():
    y = np.arange(5)
    got = [[yb.tolist() for (yb,) in DataLoader((y,), batch_size=5, rank=r, world_size=3)] for r in range(3)]
    assert got == [[[0, 1]], [[2, 3]], [[4]]]
    # fewer samples than ranks: the last ranks get empty parts (and still step)
    got = [[yb.tolist() for (yb,) in DataLoader((y,), batch_size=4, rank=r, world_size=3)] for r in range(3)]
    assert got == [[[0, 1], [4]], [[2], []], [[3], []]]


def test_dataloader_rank_and_world_size_errors():
    data = (np.zeros(4),)
    with pytest.raises(ValueError, match=r"DataLoader: world_size: expected an int >= 1, got 0"):
        DataLoader(data, world_size=0)
    with pytest.raises(ValueError, match=r"DataLoader: rank: expected an int >= 0, got -1"):
        DataLoader(data, rank=-1, world_size=2)
    with pytest.raises(ValueError, match=r"DataLoader: rank: expected an int in \[0, world_size\) = \[0, 2\), got 2"):
        DataLoader(data, rank=2, world_size=2)
    with pytest.raises(TypeError, match=r"DataLoader: world_size: expected an int, got float"):
        DataLoader(data, world_size=2.0)
    with pytest.raises(TypeError, match=r"DataLoader: rank: expected an int, got bool"):
        DataLoader(data, rank=True, world_size=2)


# -- init() ------------------------------------------------------------------------------
def run_python(source, **env):
    return subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, env=clean_env(**env),
                          timeout=60)


def test_init_outside_mpiexec_is_a_size_one_communicator_without_mpi4py():
    result = run_python(
        "import sys\n"
        "from cnnkit import distributed\n"
        "comm = distributed.init()\n"
        "print(type(comm).__name__, comm.rank, comm.size, comm.allgather(7), 'mpi4py.MPI' in sys.modules)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["SelfComm", "0", "1", "[7]", "False"]


def test_init_under_a_launcher_without_mpi4py_raises():
    result = run_python(
        "import sys\n"
        "sys.modules['mpi4py'] = None  # not installed\n"
        "from cnnkit import distributed\n"
        "distributed.init()\n",
        PMI_SIZE="2", PMI_RANK="0",
    )
    assert result.returncode != 0
    assert "RuntimeError: distributed.init: an MPI launcher started this process (one of PMI_SIZE, PMI_RANK is set)" \
           ", but mpi4py is not installed: pip install 'cnnkit[mpi]'" in result.stderr


def test_init_under_mpiexec_is_comm_world():
    # rank 0 prints what every rank saw: two ranks printing would interleave their lines
    result = mpiexec(2, "-c", "from mpi4py import MPI\nfrom cnnkit import distributed\n"
                              "comm = distributed.init()\n"
                              "seen = comm.gather((comm is MPI.COMM_WORLD, comm.rank, comm.size))\n"
                              "if comm.rank == 0: print(seen)")
    assert result.stdout.strip() == "[(True, 0, 2), (True, 1, 2)]", result.stdout + result.stderr


# -- exactness: P ranks on the split global batch equal one process on the whole -------
@pytest.fixture(scope="module")
def one_process():
    return {opt: worker.train(distributed.init(), opt) for opt in ("sgd", "adam")}


@pytest.mark.parametrize("ranks", [2, 3])
def test_ranks_equal_one_process(tmp_path, one_process, ranks):
    out = tmp_path / "result.npz"
    mpiexec(ranks, str(HERE / "distributed_worker.py"), "train", str(out))
    got = np.load(out)
    assert int(got["size"]) == ranks
    params = sum(1 for _ in worker.network(distributed.init()).parameters())
    for opt, expected in one_process.items():
        for tag in (f"{opt}_overlap", f"{opt}_after"):
            # the split was uneven, and some ranks had no samples (the last batch holds one)
            assert got[f"{tag}/local_sizes"].tolist() == ([4] * 7 + [1]) * 2 + [4] * 4 if ranks == 2 else \
                ([3] * 7 + [1]) * 2 + [3] * 4
            for key, value in expected.items():
                if key not in ("local_sizes", "buckets"):
                    np.testing.assert_allclose(got[f"{tag}/{key}"], value, rtol=0, atol=1e-12, err_msg=f"{tag}: {key}")
            assert got[f"{tag}/identical"], f"{tag}: the ranks' parameters or running statistics differ"
            # one Iallreduce per bucket and step (no message per parameter); SyncBatchNorm2d's
            # two sums in forward and one in backward
            buckets = int(got[f"{tag}/buckets"])
            assert buckets == 3 < params
            assert int(got[f"{tag}/calls_Iallreduce"]) == buckets * worker.STEPS
            assert int(got[f"{tag}/calls_Allreduce"]) == 3 * worker.STEPS


def test_one_process_run_is_not_degenerate(one_process):
    cnnkit.manual_seed(0)
    initial = worker.network(distributed.init()).state_dict()
    for opt, state in one_process.items():
        for key, value in initial.items():
            assert np.abs(state[key] - value).max() > 1e-3, f"{opt}: {key} hardly moved"
        assert state["losses"][-5:].mean() < state["losses"][:5].mean(), opt


def test_module_whose_backward_runs_twice(tmp_path):
    out = tmp_path / "result.npz"
    mpiexec(2, str(HERE / "distributed_worker.py"), "twice", str(out))
    got = np.load(out)
    # overlap=False: the average of the ranks' 2 * ones^T x, i.e. the column sums of all of x
    expected = np.tile(np.arange(12.0).reshape(4, 3).sum(axis=0), (2, 1))
    np.testing.assert_array_equal(got["grad"], expected)
    np.testing.assert_array_equal(got["replaced"], expected)
    assert str(got["replaced_error"]) == (
        "DataParallel.backward: linear.weight.grad: expected a NumPy array of shape (2, 3) and dtype float64 "
        "(as when DataParallel was made), got shape (2, 3), dtype float32"
    )
    assert str(got["error"]) == (
        "DataParallel.backward: Linear's backward ran more than once in one step (a module applied twice in "
        "forward): construct DataParallel with overlap=False"
    )


# -- DataParallel in one process ---------------------------------------------------------
def test_buckets_in_reverse_parameter_order():
    dp = distributed.DataParallel(worker.network(distributed.init()), bucket_bytes=2048)
    # 9.weight (640 B) + 9.bias + 6.bias fit in 2048 B; 6.weight (8192 B) is a bucket of its own
    assert dp.buckets == [["9.bias", "9.weight", "6.bias"], ["6.weight"], ["1.bias", "1.weight", "0.weight"]]
    assert len(distributed.DataParallel(worker.network(distributed.init())).buckets) == 1
    # one dtype per bucket
    mixed = nn.Sequential(nn.Linear(2, 2, dtype=np.float64), nn.Linear(2, 2, dtype=np.float32))
    assert distributed.DataParallel(mixed).buckets == [["1.bias", "1.weight"], ["0.bias", "0.weight"]]


def test_one_process_data_parallel_is_the_model():
    cnnkit.manual_seed(0)
    model = worker.network(distributed.init())
    dp = distributed.DataParallel(model)
    x, y = worker.data()
    cnnkit.manual_seed(3)
    out = dp(x[:8])
    g = np.ones_like(out)
    gx = dp.backward(g)
    grads = [p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    cnnkit.manual_seed(3)
    np.testing.assert_array_equal(model(x[:8]), out)
    np.testing.assert_array_equal(model.backward(g), gx)
    for p, expected in zip(model.parameters(), grads):
        np.testing.assert_array_equal(p.grad, expected)
    assert list(dp.parameters()) == list(model.parameters())


def test_data_parallel_errors():
    model = nn.Linear(2, 2)
    with pytest.raises(TypeError, match=r"DataParallel: model: expected a cnnkit.nn.Module, got list"):
        distributed.DataParallel([model])
    with pytest.raises(TypeError, match=r"DataParallel: comm: expected an mpi4py intra-communicator or "
                                        r"cnnkit.distributed.init\(\)'s communicator, got int"):
        distributed.DataParallel(model, comm=0)
    with pytest.raises(ValueError, match=r"DataParallel: bucket_bytes: expected an int >= 1, got 0"):
        distributed.DataParallel(model, bucket_bytes=0)
    with pytest.raises(TypeError, match=r"DataParallel: bucket_bytes: expected an int, got float"):
        distributed.DataParallel(model, bucket_bytes=1e6)
    with pytest.raises(TypeError, match=r"DataParallel: overlap: expected a bool, got int"):
        distributed.DataParallel(model, overlap=1)
    model.register_buffer("extra", [0.0])
    with pytest.raises(TypeError, match=r"DataParallel: model: extra: expected a NumPy array \(DataParallel runs "
                                        r"on the host\), got list"):
        distributed.DataParallel(model)
    dp = distributed.DataParallel(nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"DataParallel.forward: x: expected at least one sample over the ranks, "
                                         r"got none"):
        dp(np.zeros((0, 2), np.float32))
    with pytest.raises(TypeError, match=r"DataParallel.forward: x: expected an array of samples, got float"):
        dp(1.0)


def test_mpi4py_communicator_is_taken():
    mpi = pytest.importorskip("mpi4py.MPI")
    dp = distributed.DataParallel(nn.Linear(2, 2), comm=mpi.COMM_SELF)
    assert dp.comm is mpi.COMM_SELF
    with pytest.raises(TypeError, match=r"DataParallel: comm: expected an mpi4py intra-communicator .*, got Comm"):
        distributed.DataParallel(nn.Linear(2, 2), comm=mpi.COMM_NULL)


# -- Dropout's part of the global mask -------------------------------------------------
@pytest.mark.parametrize("shape", [(10, 3, 4, 5), (10, 7), (10,)])
def test_dropout_parts_draw_the_global_mask(shape):
    x = np.random.default_rng(0).normal(size=shape)
    layer = nn.Dropout(0.4)
    cnnkit.manual_seed(11)
    y = layer(x)
    for start, stop in [(0, 4), (4, 7), (7, 10), (3, 3)]:
        layer.sample_offset = start
        cnnkit.manual_seed(11)
        np.testing.assert_array_equal(layer(x[start:stop]), y[start:stop])
    assert 0 < np.count_nonzero(y) < y.size


def test_random_skip_wraps():
    seed = 2**64 - 5
    _, whole = F.dropout(np.ones(8), 0.5, seed=seed)
    _, tail = F.dropout(np.ones(5), 0.5, seed=_random.skip(seed, 3))
    np.testing.assert_array_equal(tail, whole[3:])


# -- SyncBatchNorm2d in one process equals BatchNorm2d ---------------------------------
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("affine, track", [(True, True), (False, True), (True, False), (False, False)])
def test_sync_batchnorm_is_batchnorm_in_one_process(dtype, tol, affine, track):
    rng = np.random.default_rng(1)
    plain = nn.BatchNorm2d(3, momentum=0.3, affine=affine, track_running_stats=track, dtype=dtype)
    sync = nn.SyncBatchNorm2d(3, momentum=0.3, affine=affine, track_running_stats=track, dtype=dtype)
    if affine:
        for m in (plain, sync):
            m.weight.data[:] = [1.5, -0.5, 2.0]
            m.bias.data[:] = [0.1, 0.2, -0.3]
    for mode in ("train", "train", "eval"):
        for m in (plain, sync):
            getattr(m, mode)()
        x = (rng.normal(size=(5, 3, 4, 6)) * 3 + 100).astype(dtype)  # far from zero: two passes needed
        g = rng.normal(size=x.shape).astype(dtype)
        y = sync(x)
        assert y.dtype == dtype
        np.testing.assert_allclose(y, plain(x), rtol=0, atol=tol * 10)
        y[...] = np.nan  # the caller's to change: backward does not read it
        gx = sync.backward(g)
        assert gx.dtype == dtype
        np.testing.assert_allclose(gx, plain.backward(g), rtol=0, atol=tol * 10)
        for (name, a), (_, b) in zip(sync.state_dict().items(), plain.state_dict().items()):
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol, err_msg=name)
        if affine:
            np.testing.assert_allclose(sync.weight.grad, plain.weight.grad, rtol=tol, atol=tol * 100)
            np.testing.assert_allclose(sync.bias.grad, plain.bias.grad, rtol=tol, atol=tol * 100)


def test_sync_batchnorm_errors():
    with pytest.raises(TypeError, match=r"SyncBatchNorm2d: comm: expected an mpi4py intra-communicator .*, got str"):
        nn.SyncBatchNorm2d(3, comm="world")
    layer = nn.SyncBatchNorm2d(3, dtype=np.float64)
    with pytest.raises(ValueError, match=r"SyncBatchNorm2d: input: expected more than one value per channel over "
                                         r"the ranks in training, got 1"):
        layer(np.zeros((1, 3, 1, 1)))
    with pytest.raises(ValueError, match=r"SyncBatchNorm2d: input: expected shape\[1\] == num_features = 3, "
                                         r"got shape \(2, 4, 1, 1\)"):
        layer(np.zeros((2, 4, 1, 1)))
    with pytest.raises(TypeError, match=r"SyncBatchNorm2d: input: expected float64"):
        layer(np.zeros((2, 3, 1, 1), np.float32))
    with pytest.raises(ValueError, match=r"SyncBatchNorm2d: eps: expected a non-negative value, got -1.0"):
        nn.SyncBatchNorm2d(3, eps=-1)
    layer(np.arange(6.0).reshape(2, 3, 1, 1))
    with pytest.raises(TypeError, match=r"SyncBatchNorm2d.backward: grad_output: expected a NumPy array of float64 "
                                        r"\(the input's dtype\), got dtype float32"):
        layer.backward(np.zeros((2, 3, 1, 1), np.float32))
    with pytest.raises(TypeError, match=r"SyncBatchNorm2d.backward: grad_output: expected an array of shape "
                                        r"\(2, 3, 1, 1\) \(forward's output\), got list"):
        layer.backward([0.0])

    class DeviceArray:  # an array on a GPU, as cnnkit's layers recognise one
        __cuda_array_interface__ = {}
        shape, ndim, dtype = (2, 3, 1, 1), 4, np.dtype(np.float64)

    with pytest.raises(TypeError, match=r"SyncBatchNorm2d: input: expected a NumPy array \(it runs on the host\), "
                                        r"got DeviceArray"):
        layer(DeviceArray())


def test_backward_hook_runs_after_each_backward():
    layer = nn.Linear(2, 3, dtype=np.float64)
    model = nn.Sequential(layer, nn.ReLU())
    seen = []
    layer.register_backward_hook(lambda m: seen.append((m, m.weight.grad.copy())))
    model(np.ones((4, 2)))
    model.backward(np.ones((4, 3)))
    assert len(seen) == 1 and seen[0][0] is layer
    np.testing.assert_array_equal(seen[0][1], layer.weight.grad)  # the gradient was complete
    with pytest.raises(TypeError, match=r"Linear.register_backward_hook: hook: expected a callable, got int"):
        layer.register_backward_hook(3)


# -- mpiexec -n 2 cnnkit train ----------------------------------------------------------
def test_cli_train_under_mpiexec_equals_one_process(tmp_path):
    args = ["-m", "cnnkit", "train", "--epochs", "2", "--limit", "300", "--batch-size", "25"]
    one = subprocess.run([sys.executable, *args, "--save", str(tmp_path / "one.npz")], capture_output=True,
                         text=True, env=clean_env(), timeout=120)
    assert one.returncode == 0, one.stderr
    two = mpiexec(2, *args, "--save", str(tmp_path / "two.npz"))
    # only rank 0 prints: one header, one bar line per epoch, one save line, one result
    lines = two.stderr.splitlines()
    assert len(lines) == 4, two.stderr
    assert lines[0].startswith("training lenet on digits: 300 train / 359 test samples, 21,386 parameters, "
                               "1 threads on each of 2 ranks")
    assert [line.split(" [")[0] for line in lines[1:3]] == ["epoch 1/2", "epoch 2/2"]
    assert lines[3] == f"saved the trained weights to {tmp_path / 'two.npz'}"
    (result,) = two.stdout.splitlines()
    assert result.startswith("test accuracy: ") and "lenet on digits, 2 epochs" in result
    # the epochs' loss and accuracy are those of the whole batches: as one process's
    for a, b in zip(one.stderr.splitlines()[1:3], lines[1:3]):
        assert a.split(" train acc")[0][:-2] == b.split(" train acc")[0][:-2]  # loss to 2 decimals
    one_w, two_w = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert one_w.files == two_w.files
    for key in one_w.files:
        np.testing.assert_allclose(two_w[key], one_w[key], rtol=0, atol=1e-4, err_msg=key)
