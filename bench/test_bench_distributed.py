"""Data-parallel step time at 1 and 2 ranks (one thread each) and the time in allreduce,
with and without overlap: bench/distributed_step.py under `mpiexec -n 1` and `-n 2`.

- AlexNet: 224x224 inputs, 1000 classes (62.4 M parameters, 250 MB of float32
  gradients in 5 buckets of about 25 MiB or one large layer), 8 images per rank.
- LeNet-5: 32x32 inputs (61,706 parameters, 247 KB: one bucket), 64 images per rank.

The table gives, per model and rank count, the best (the fastest, as the other
benches take) of the timed steps (forward, loss, backward, SGD step; the slowest
rank's, the modes taking turns) of the model alone (compute: the ranks running side
by side, no communication) and under DataParallel with the buckets' allreduce
started during backward (overlap) and after it; for each, the allreduce time the
backward pass left exposed (DataParallel.comm_seconds) and its share of the step,
and the step's excess over compute; and one bare blocking Allreduce of all the
gradients.

The target, "allreduce overhead per step <= 10% of the step on AlexNet-sized
gradients at 2 ranks, with overlap", is taken in full: the overhead is the whole
excess of the overlapped data-parallel step over the model alone (the allreduce
work that runs during backward counts, not only what is left exposed after it),
as a share of the overlapped step.

    PYTHONPATH=python python -m pytest bench/test_bench_distributed.py -s
    PYTHONPATH=python python -m pytest bench/test_bench_distributed.py -s --bench-quick   # 1 step, small batches
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TARGET = 0.10

pytest.importorskip("mpi4py")


def cases(quick):
    """(model, batch per rank, steps)."""
    return [("alexnet", 2, 1), ("lenet", 16, 3)] if quick else [("alexnet", 8, 7), ("lenet", 64, 30)]


def run(ranks, model, batch, steps, tmp_path):
    launcher = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    launcher = launcher if os.path.exists(launcher) else shutil.which("mpiexec")
    out = tmp_path / f"{model}-{ranks}.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    package = str(Path(__import__("cnnkit").__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package, os.environ.get("PYTHONPATH")]))
    result = subprocess.run(
        [launcher, "-n", str(ranks), sys.executable, str(HERE / "distributed_step.py"), model, str(batch),
         str(steps), str(out)],
        capture_output=True, text=True, env=env, timeout=1200,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def results(request, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("distributed")
    quick = request.config.getoption("--bench-quick")
    return [run(ranks, *case, tmp_path) for case in cases(quick) for ranks in (1, 2)]


def test_allreduce_overhead(results):
    print(f"\n{'model':8s} {'ranks':>5s} {'batch':>5s} {'grad MB':>7s} {'bkts':>4s} {'compute':>8s} | "
          f"{'step s':>7s} {'exposed':>8s} {'share':>6s} {'excess':>7s} | "
          f"{'step s':>7s} {'exposed':>8s} {'share':>6s} {'excess':>7s} | {'allreduce':>9s}")
    print(f"{'':45s}| {'with overlap':^31s} | {'without overlap':^31s} |")
    for r in results:
        row = f"{r['model']:8s} {r['ranks']:5d} {r['batch_per_rank']:5d} {r['grad_bytes'] / 1e6:7.1f} " \
              f"{r['buckets']:4d} {r['compute_step_s']:8.4f} | "
        for k in ("overlap", "no_overlap"):
            row += f"{r[f'{k}_step_s']:7.4f} {r[f'{k}_exposed_s']:8.4f} " \
                   f"{r[f'{k}_exposed_s'] / r[f'{k}_step_s']:6.1%} {r[f'{k}_overhead_s'] / r[f'{k}_step_s']:7.1%} | "
        print(row + f"{r['allreduce_s']:9.4f}")
    print("seconds, best of the steps; share: exposed / step; excess: (step - compute) / step, the ranks running "
          "side by side")
    (alexnet,) = [r for r in results if r["model"] == "alexnet" and r["ranks"] == 2]
    excess = alexnet["overlap_overhead_s"] / alexnet["overlap_step_s"]
    assert excess <= TARGET, f"AlexNet at 2 ranks: data parallelism costs {excess:.1%} of the overlapped step, " \
                             f"target {TARGET:.0%}"
