"""pytest-benchmark suites over the case lists in cnnkit.bench (shared with `cnnkit bench`).

Run from the repository root (the main test run does not collect bench/):

    PYTHONPATH=python python -m pytest bench                      # time everything
    PYTHONPATH=python python -m pytest bench --benchmark-disable  # each case once: a smoke test

Both libraries run on THREADS threads. A test module lists its benchmarks in
BENCHMARKS; the `prepared` fixture gives each one, with its inputs, once per module,
so that a case's cnnkit and torch tests share the inputs and the float64 reference.
"""

import time

import pytest

import cnnkit
from cnnkit import bench

THREADS = 2


def best_time(fn, repeats):
    """The fastest of `repeats` timed calls of fn, after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def pytest_addoption(parser):
    parser.addoption("--bench-quick", action="store_true", help="cnnkit.bench's quick sizes: a quarter of each batch")


@pytest.fixture(scope="session", autouse=True)
def two_threads():
    torch = bench.import_torch()
    saved = cnnkit.get_num_threads(), torch.get_num_threads() if torch is not None else None
    cnnkit.set_num_threads(THREADS)
    if torch is not None:
        torch.set_num_threads(THREADS)
    yield
    cnnkit.set_num_threads(saved[0])
    if torch is not None:
        torch.set_num_threads(saved[1])


def pytest_generate_tests(metafunc):
    if "prepared" in metafunc.fixturenames:
        params = [
            pytest.param(b, id=b.id, marks=pytest.mark.benchmark(group=b.id)) for b in metafunc.module.BENCHMARKS
        ]
        metafunc.parametrize("prepared", params, indirect=True, scope="module")


@pytest.fixture(scope="module")
def prepared(request):
    """The benchmark, prepared; skipped while cnnkit.functional lacks a function it calls."""
    b = request.param
    missing = b.missing()
    if missing:
        pytest.skip(f"{b.id}: cnnkit.functional has no {', '.join(missing)} yet")
    return b.prepare(bench.QUICK if request.config.getoption("--bench-quick") else bench.FULL)

