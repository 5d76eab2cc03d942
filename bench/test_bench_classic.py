"""Classic-method benchmarks: cnnkit.classic against scikit-learn on the issue's shapes.

- kNN predict by brute force, 5,000 x 256 training set, 1,000 queries, float32, k=5:
  L1 and L2 against ``KNeighborsClassifier(algorithm="brute")``, and L2 against a
  bare GEMM of the same shape (cnnkit._C.matmul, 1,000 x 256 by 256 x 5,000).
- KMeans.fit, 20,000 x 64, k=16, 50 Lloyd iterations from a given init (tol=0),
  float32 and float64, against ``KMeans(algorithm="lloyd", n_init=1)``.

Both libraries run on THREADS threads (scikit-learn's OpenMP and BLAS through
threadpoolctl). Every result is checked against scikit-learn's before it is timed.
``test_ratios`` times the pairs in turns and prints the ratios with the targets
(kNN >= 1.5x scikit-learn, L2 within 1.5x of the GEMM, KMeans >= 1.0x):

    PYTHONPATH=python python -m pytest bench/test_bench_classic.py -s
"""

import time

import numpy as np
import pytest

import cnnkit
from cnnkit import classic

from conftest import THREADS, best_time

sklearn_neighbors = pytest.importorskip("sklearn.neighbors")
sklearn_cluster = pytest.importorskip("sklearn.cluster")
threadpoolctl = pytest.importorskip("threadpoolctl")

SK_METRIC = {"l1": "manhattan", "l2": "euclidean"}


@pytest.fixture(scope="module")
def knn_data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5000, 256)).astype(np.float32)
    y = rng.integers(0, 10, 5000)
    Q = rng.standard_normal((1000, 256)).astype(np.float32)
    return X, y, Q


@pytest.fixture(scope="module")
def kmeans_data():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((20000, 64))
    return X, X[rng.choice(len(X), 16, replace=False)]


def _limited(fn):
    """fn run with scikit-learn's (and every other) pool capped at THREADS."""

    def run():
        with threadpoolctl.threadpool_limits(THREADS):
            return fn()

    return run


def knn_pair(data, metric):
    X, y, Q = data
    ours = classic.KNearestNeighbors(n_neighbors=5, metric=metric).fit(X, y)
    theirs = sklearn_neighbors.KNeighborsClassifier(n_neighbors=5, algorithm="brute", metric=SK_METRIC[metric])
    theirs.fit(X, y)
    cn, sk = (lambda: ours.predict(Q)), _limited(lambda: theirs.predict(Q))
    np.testing.assert_array_equal(cn(), sk())  # the gate: a wrong result is never timed
    return cn, sk


def gemm_of_knn(data):
    X, _, Q = data
    Xt = np.ascontiguousarray(X.T)
    return lambda: cnnkit._C.matmul(Q, Xt)


def kmeans_pair(data, dtype):
    X, init = (a.astype(dtype) for a in data)
    kw = dict(n_clusters=16, init=init, max_iter=50, tol=0.0)
    cn = lambda: classic.KMeans(**kw).fit(X)  # noqa: E731
    sk = _limited(lambda: sklearn_cluster.KMeans(n_init=1, algorithm="lloyd", **kw).fit(X))
    ours, theirs = cn(), sk()
    assert ours.n_iter_ == theirs.n_iter_
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)
    return cn, sk


@pytest.mark.parametrize("metric", ["l1", "l2"])
@pytest.mark.parametrize("who", ["cnnkit", "sklearn"])
def test_knn_predict(benchmark, knn_data, metric, who):
    benchmark.group = f"knn-{metric}"
    cn, sk = knn_pair(knn_data, metric)
    benchmark(cn if who == "cnnkit" else sk)


def test_knn_gemm_yardstick(benchmark, knn_data):
    benchmark.group = "knn-l2"
    benchmark(gemm_of_knn(knn_data))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("who", ["cnnkit", "sklearn"])
def test_kmeans_fit(benchmark, kmeans_data, dtype, who):
    benchmark.group = f"kmeans-{dtype}"
    cn, sk = kmeans_pair(kmeans_data, dtype)
    benchmark.pedantic(cn if who == "cnnkit" else sk, rounds=5, warmup_rounds=1)


def _turns(a, b, rounds=3, repeats=3):
    """Best times of a and b, timed in alternating rounds (fair to both on a busy machine)."""
    ta = tb = float("inf")
    for _ in range(rounds):
        time.sleep(0.15)  # let the other library's spinning threads go to sleep
        ta = min(ta, best_time(a, repeats))
        time.sleep(0.15)
        tb = min(tb, best_time(b, repeats))
    return ta, tb


def test_ratios(knn_data, kmeans_data):
    rows = []
    for metric in ("l1", "l2"):
        cn, sk = knn_pair(knn_data, metric)
        t_cn, t_sk = _turns(cn, sk)
        rows.append((f"kNN predict {metric} vs sklearn brute", t_cn, t_sk, t_sk / t_cn, 1.5))
        if metric == "l2":
            t_cn, t_gemm = _turns(cn, gemm_of_knn(knn_data))
            rows.append(("kNN predict l2 vs bare GEMM", t_cn, t_gemm, t_gemm / t_cn, 1 / 1.5))
    for dtype in ("float32", "float64"):
        cn, sk = kmeans_pair(kmeans_data, dtype)
        t_cn, t_sk = _turns(cn, sk, rounds=2, repeats=2)
        rows.append((f"KMeans.fit {dtype} vs sklearn lloyd", t_cn, t_sk, t_sk / t_cn, 1.0))
    print(f"\n{'case':40s} {'cnnkit ms':>10s} {'other ms':>10s} {'ratio':>7s} {'target':>8s}")
    for name, a, b, ratio, target in rows:
        print(f"{name:40s} {a * 1e3:10.1f} {b * 1e3:10.1f} {ratio:7.2f} {'>= %.2f' % target:>8s}")
    missed = [name for name, _, _, ratio, target in rows if ratio < target]
    assert not missed, f"below target: {missed}"
