"""cnnkit.distributed: data parallelism over MPI.

The exactness tests start their own `mpiexec -n 2` and `-n 3` on scripts in
tests/distributed/ and compare with one process on the whole global batch; they
skip only where mpi4py is not installed."""

import numpy as np
import pytest

from cnnkit.data import DataLoader


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
