"""Run by tests/test_distributed.py under `mpiexec -n P` (and imported there for the
one-process reference): trains a small float64 network data-parallel and writes what
rank 0 sees to an .npz file.

    mpiexec -n P python tests/distributed_worker.py OUT.npz
"""

import sys

import numpy as np

import cnnkit
from cnnkit import distributed, nn, optim
from cnnkit.data import DataLoader

STEPS = 20
GLOBAL_BATCH = 7  # 50 samples: batches of 7 and a last one of 1, uneven over 2 and 3 ranks
BUCKET_BYTES = 2048  # several buckets for this small network


def counting(comm):
    """comm as a communicator that counts its Iallreduce and Allreduce calls."""
    from mpi4py import MPI

    class Counting(MPI.Intracomm):
        calls = {"Iallreduce": 0, "Allreduce": 0}

        def Iallreduce(self, *args, **kwargs):
            type(self).calls["Iallreduce"] += 1
            return super().Iallreduce(*args, **kwargs)

        def Allreduce(self, *args, **kwargs):
            type(self).calls["Allreduce"] += 1
            return super().Allreduce(*args, **kwargs)

    return Counting(comm)


def network(comm):
    f64 = np.float64
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=False, dtype=f64),  # a bias before batch norm has no gradient but rounding, which Adam would amplify
        nn.SyncBatchNorm2d(4, dtype=f64, comm=comm),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.3),
        nn.Linear(64, 16, dtype=f64),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(16, 5, dtype=f64),
    )


def data():
    rng = np.random.default_rng(42)
    x = rng.normal(size=(50, 2, 8, 8))
    return x, np.argmax(x.reshape(50, -1) @ rng.normal(size=(128, 5)), axis=1)  # labels a network can learn


def train(comm, optimizer, overlap=True):
    """Parameters and buffers after STEPS steps, and the global loss of each step."""
    # Each rank starts from its own initialisation: DataParallel broadcasts rank 0's.
    cnnkit.manual_seed(comm.rank)
    model = network(comm)
    for _, buffer in model.named_buffers():
        buffer += comm.rank  # and its own running statistics: rank 0's are broadcast too
    dp = distributed.DataParallel(model, comm, bucket_bytes=BUCKET_BYTES, overlap=overlap)
    cnnkit.manual_seed(123)  # the same dropout seeds on every rank
    if optimizer == "sgd":
        opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    else:
        opt = optim.Adam(model.parameters(), lr=0.01)
    criterion = nn.CrossEntropyLoss()
    x, y = data()
    loader = DataLoader((x, y), batch_size=GLOBAL_BATCH, shuffle=True, seed=5, rank=comm.rank,
                        world_size=comm.size)
    losses, sizes, step = [], [], 0
    while step < STEPS:
        for xb, yb in loader:
            model.zero_grad()
            loss = criterion(dp(xb), yb)
            dp.backward(criterion.backward())
            opt.step()
            # the global batch's loss: the parts' losses weighted by their sizes
            parts = comm.allgather((loss, len(xb)))
            losses.append(sum(l * n for l, n in parts if n) / sum(n for _, n in parts))
            sizes.append(len(xb))
            step += 1
            if step == STEPS:
                break
    state = model.state_dict()
    state["losses"] = np.array(losses)
    state["local_sizes"] = np.array(sizes)
    state["buckets"] = np.array(len(dp.buckets))
    return state


def main(out):
    comm = counting(distributed.init())
    results = {}
    for optimizer in ("sgd", "adam"):
        for overlap in (True, False):
            before = dict(comm.calls)
            state = train(comm, optimizer, overlap)
            tag = f"{optimizer}_{'overlap' if overlap else 'after'}"
            results.update({f"{tag}/{k}": v for k, v in state.items()})
            for call in comm.calls:
                results[f"{tag}/calls_{call}"] = np.array(comm.calls[call] - before[call])
            # every rank must hold the same parameters and running statistics, bit for bit
            gathered = comm.gather(model_state(state), root=0)
            if comm.rank == 0:
                results[f"{tag}/identical"] = np.array(
                    all(all(np.array_equal(a, b) for a, b in zip(g, gathered[0])) for g in gathered)
                )
    results["size"] = np.array(comm.size)
    if comm.rank == 0:
        np.savez(out, **results)


def model_state(state):
    return [v for k, v in state.items() if k not in ("losses", "local_sizes", "buckets")]


class Twice(nn.Module):
    """y = linear(x) + linear(x): the one Linear's backward runs twice per step."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2, dtype=np.float64)

    def forward(self, x):
        y = self.linear(x)
        return y + y

    def backward(self, grad_output):
        return self.linear.backward(grad_output) + self.linear.backward(grad_output)


def twice(out):
    """overlap=False averages a module whose backward runs twice per step; overlap
    refuses it (RuntimeError)."""
    comm = distributed.init()
    cnnkit.manual_seed(0)
    model = Twice()
    x = np.arange(6.0 * comm.size).reshape(-1, 3)[2 * comm.rank : 2 * comm.rank + 2]
    dp = distributed.DataParallel(model, comm, overlap=False)
    model.zero_grad()
    dp(x)
    dp.backward(np.ones((2, 2)))
    results = {"grad": model.linear.weight.grad.copy()}
    # a .grad replaced after DataParallel was made is taken in
    model.linear.weight.grad = np.zeros((2, 3))
    dp(x)
    dp.backward(np.ones((2, 2)))
    results["replaced"] = model.linear.weight.grad.copy()
    model.linear.weight.grad = np.zeros((2, 3), np.float32)
    dp(x)
    try:
        dp.backward(np.ones((2, 2)))
    except RuntimeError as e:
        results["replaced_error"] = np.array(str(e))
    model.linear.weight.grad = np.zeros((2, 3))
    dp = distributed.DataParallel(model, comm)
    dp(x)
    try:
        dp.backward(np.ones((2, 2)))
    except RuntimeError as e:
        results["error"] = np.array(str(e))
    if comm.rank == 0:
        np.savez(out, **results)


if __name__ == "__main__":
    {"train": main, "twice": twice}[sys.argv[1]](sys.argv[2])
