"""cnnkit.bench's harness on tiny cases: every convolution pass (forward, each backward
pass alone, forward then backward) passes its float64 gate for cnnkit and for torch,
and the table reports the timed pass's kernel and a measured machine line. Timings
are not asserted: speed lives in bench/ and `cnnkit bench`."""

import io

import numpy as np
import pytest

import cnnkit
from cnnkit import bench

TINY = [
    bench.ConvCase("tiny_3x3", 2, 16, 16, 12, 3, padding=1),
    bench.ConvCase("tiny_dilated", 1, 16, 16, 16, 3, padding=2, dilation=2),
    bench.ConvCase("tiny_depthwise", 2, 8, 8, 10, 3, padding=1, groups=8),
    bench.ConvCase("tiny_transposed", 2, 16, 8, 6, 4, stride=2, padding=1, transposed=True),
]
MODES = ("fwd", "bwd-data", "bwd-weight", "fwd+bwd")


@pytest.fixture(scope="module")
def table():
    out = io.StringIO()
    results = bench.run(quick=True, threads=1, file=out, benchmarks=[bench.Benchmark(c, m) for c in TINY for m in MODES])
    return results, out.getvalue()


def test_every_pass_passes_its_gate(table):
    results, text = table
    assert [(r["case"], r["mode"]) for r in results] == [(c.name, m) for c in TINY for m in MODES]
    for r in results:
        assert r["status"] == "ok", (r["id"], r["message"])
        assert "torch not timed" not in r["message"], r["message"]  # torch's pass computed the same gradient


def test_the_kernel_column_is_the_timed_pass(table):
    kernels = {(r["case"], r["mode"]): r["kernel"] for r in table[0]}
    assert kernels["tiny_3x3", "fwd"] == "winograd"
    assert kernels["tiny_3x3", "bwd-data"] == "winograd"  # the transposed direction's Winograd
    assert kernels["tiny_3x3", "bwd-weight"] == "winograd"  # the forward's path
    assert kernels["tiny_dilated", "fwd"] == "winograd"
    assert kernels["tiny_dilated", "bwd-data"] == "winograd"  # the stride-1 adjoint
    assert kernels["tiny_dilated", "bwd-weight"] == "winograd"  # the forward's path
    assert {kernels["tiny_depthwise", m] for m in MODES} == {"direct"}


def test_machine_line_and_per_pass_means(table):
    text = table[1]
    machine = next(line for line in text.splitlines() if line.startswith("machine: "))
    assert bench.cpu_model() in machine and "sgemm" in machine and "GFLOPS" in machine
    rate = float(machine.split("sgemm ")[1].split()[0])
    assert rate > 0
    summary = text.strip().splitlines()[-1]
    for label in ("conv fwd", "conv bwd-data", "conv bwd-weight", "conv fwd+bwd"):
        assert f"{label} " in summary


def test_a_wrong_backward_pass_is_not_timed(monkeypatch):
    """The gate compares each pass with its own reference: a wrong weight gradient in
    the bwd-weight pass is reported, not timed."""
    real = bench._functional.conv2d_backward

    def wrong(*args, output_mask=(True, True, True), **kwargs):
        gx, gw, gb = real(*args, output_mask=output_mask, **kwargs)
        return gx, None if gw is None else gw + np.float32(1), gb

    monkeypatch.setattr(bench._functional, "conv2d_backward", wrong)
    results = bench.run(quick=True, threads=1, file=io.StringIO(),
                        benchmarks=[bench.Benchmark(TINY[0], m) for m in ("bwd-data", "bwd-weight")])
    assert [r["status"] for r in results] == ["ok", "WRONG, not timed"]
