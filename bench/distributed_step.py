"""Data-parallel step time and the time in allreduce, on one thread per rank.

    mpiexec -n P python bench/distributed_step.py MODEL BATCH STEPS OUT.json

MODEL is alexnet (224x224 inputs, 1000 classes: 62.4 M parameters, 250 MB of float32
gradients) or lenet (32x32, 10 classes: 61,706 parameters). BATCH is the batch of
each rank (the global batch is P x BATCH: weak scaling). Each rank times STEPS
steps (after one warm-up step) of forward, loss, backward and an SGD step, of
three copies of the model (same seed, each with its own optimiser, so that no
mode works on another's gradients): the model alone (compute: no communication,
the ranks running side by side as in the others), and DataParallel with the
buckets' allreduce started during backward (overlap) and after it (no_overlap).
The modes take turns, in an order that rotates every step. A step's time is the
slowest rank's (a data-parallel step ends when the last rank's does, and so is a
step of ranks computing side by side). Rank 0 writes to OUT.json the best (the
fastest) of the STEPS steps of each mode, as the other benches take the best of
their runs: the machine may be shared, and other load only adds time.

- {compute,overlap,no_overlap}_step_s: the whole step;
- {overlap,no_overlap}_exposed_s: DataParallel.comm_seconds (the slowest rank's),
  the part of backward after the model's backward returned (the communication the
  backward pass did not hide; with no overlap, all of it);
- {overlap,no_overlap}_overhead_s: the step's excess over compute's (what data
  parallelism costs in all: the allreduce work done during backward too);
- allreduce_s: one blocking in-place Allreduce of all the gradients as one flat
  array (the bare transfer the cost model needs).
"""

import json
import sys
import time

import numpy as np

import cnnkit
from cnnkit import distributed, models, nn, optim


def build(name):
    if name == "alexnet":
        return models.AlexNet(), (3, 224, 224), 1000
    return models.LeNet5(10), (1, 32, 32), 10


def main(name, batch, steps, out):
    cnnkit.set_num_threads(1)
    comm = distributed.init()
    criterion = nn.CrossEntropyLoss()
    runs = {}
    for label, overlap in (("compute", None), ("overlap", True), ("no_overlap", False)):
        cnnkit.manual_seed(0)
        model, shape, classes = build(name)
        net = model if overlap is None else distributed.DataParallel(model, comm, overlap=overlap)
        opt = optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
        runs[label] = (model, net, opt)
    rng = np.random.default_rng(comm.rank)
    x = rng.random((batch, *shape), dtype=np.float32)
    y = rng.integers(0, classes, batch)
    labels = list(runs)
    times = {label: {"step_s": [], "exposed_s": []} for label in runs}
    for i in range(steps + 1):
        for label in labels[i % 3:] + labels[: i % 3]:
            model, net, opt = runs[label]
            comm_barrier(comm)
            start = time.perf_counter()
            model.zero_grad()
            criterion(net(x), y)
            net.backward(criterion.backward())
            opt.step()
            elapsed = time.perf_counter() - start
            ranks = comm.allgather((elapsed, getattr(net, "comm_seconds", 0.0)))
            if i:  # the first is a warm-up
                times[label]["step_s"].append(max(r[0] for r in ranks))
                times[label]["exposed_s"].append(max(r[1] for r in ranks))
    flat = np.concatenate([p.grad.reshape(-1) for p in runs["overlap"][0].parameters()])
    bare = []
    for _ in range(max(3, steps)):
        comm_barrier(comm)
        start = time.perf_counter()
        distributed._allreduce_sum(comm, flat)
        bare.append(time.perf_counter() - start)
    result = {
        "model": name,
        "ranks": comm.size,
        "batch_per_rank": batch,
        "steps": steps,
        "grad_bytes": int(flat.nbytes),
        "buckets": len(runs["overlap"][1].buckets),
        "allreduce_s": min(bare),
        "compute_step_s": min(times["compute"]["step_s"]),
    }
    for label in ("overlap", "no_overlap"):
        for key, values in times[label].items():
            result[f"{label}_{key}"] = min(values)
        result[f"{label}_overhead_s"] = result[f"{label}_step_s"] - result["compute_step_s"]
    if comm.rank == 0:
        with open(out, "w") as f:
            json.dump(result, f, indent=1)


def comm_barrier(comm):
    """Line the ranks up before timing (nothing to wait for alone)."""
    comm.allgather(None)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
