"""Convolution benchmarks (cnnkit.bench.CONV_CASES), forward and forward + backward:
cnnkit against torch, grouped per case."""

import pytest

from cnnkit import bench

BENCHMARKS = bench.conv_benchmarks()


def test_cnnkit(benchmark, prepared):
    prepared.check(prepared.cnnkit())  # the gate: a wrong result is never timed
    benchmark.extra_info.update(prepared.info())
    benchmark(prepared.cnnkit)


def test_torch(benchmark, prepared):
    """torch's counterpart on the same inputs, checked against the same reference."""
    torch = pytest.importorskip("torch")
    fn = prepared.torch(torch)
    prepared.check(fn(), who="torch")
    benchmark.extra_info.update(prepared.info())
    benchmark(fn)
