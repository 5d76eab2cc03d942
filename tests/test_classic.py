"""cnnkit.classic against the NumPy references in cnnkit.reference (always) and
SciPy / scikit-learn (where installed): distances, kNN with its tie rules, Lloyd's
k-means with scikit-learn's semantics, the linear losses' gradients by finite
differences, the classifiers, splits and cross-validation; one result on any number
of threads; every error path."""

import re

import numpy as np
import pytest

import cnnkit
from cnnkit import _classic, classic

from cnnkit import reference as ref
from conftest import assert_close

METRICS = ("l1", "l2", "sqeuclidean")
SCIPY_METRIC = {"l1": "cityblock", "l2": "euclidean", "sqeuclidean": "sqeuclidean"}


def blobs(rng, n, d, centres, dtype=np.float64, spread=0.5):
    """n points around `centres` random centres in [-5, 5]^d, and their blob index."""
    c = rng.uniform(-5, 5, size=(centres, d))
    which = rng.integers(0, centres, n)
    return (c[which] + spread * rng.standard_normal((n, d))).astype(dtype), which


# ---- pairwise_distances


@pytest.mark.parametrize("metric", METRICS)
def test_pairwise_matches_reference_and_cdist(rng, dtype, metric):
    A = rng.standard_normal((53, 19)).astype(dtype)
    B = rng.standard_normal((300, 19)).astype(dtype)  # two L1 column slices
    got = classic.pairwise_distances(A, B, metric)
    assert_close(got, ref.pairwise_distances(A, B, metric), dtype)
    spatial = pytest.importorskip("scipy.spatial.distance")
    want = spatial.cdist(A.astype(np.float64), B.astype(np.float64), SCIPY_METRIC[metric])
    assert_close(got, want, dtype)


def test_pairwise_defaults_to_l2_against_itself_with_exact_zeros(rng, dtype):
    # Far from the origin the norms cancel: pairs within 2**10 times GEMM's rounding
    # bound are computed directly, so the diagonal is exactly 0 and float32 accurate;
    # float64 keeps GEMM's result (relative error ~ eps * |a|^2 / |a - b|^2).
    A = (1e3 + rng.standard_normal((40, 8))).astype(dtype)
    A[5] = A[7]
    got = classic.pairwise_distances(A)
    assert got.dtype == dtype and got.shape == (40, 40)
    assert np.all(np.diag(got) == 0) and got[5, 7] == 0
    want = ref.pairwise_distances(A, A, "l2")
    np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-8)


def test_pairwise_non_contiguous_lists_and_empty(rng):
    A = rng.standard_normal((30, 12))
    got = classic.pairwise_distances(A[::2, ::3], A[1::3, ::3].tolist(), "l1")
    assert_close(got, ref.pairwise_distances(A[::2, ::3], A[1::3, ::3], "l1"), np.float64)
    assert classic.pairwise_distances(np.empty((0, 4)), A[:, :4]).shape == (0, 30)
    assert classic.pairwise_distances(A[:, :4], np.empty((0, 4), np.float64), "l1").shape == (30, 0)


def test_pairwise_large_blocks_match_reference(rng):
    # Several row blocks of the L2 path and L1 column slices with a remainder.
    A = rng.standard_normal((150, 5)).astype(np.float32)
    B = rng.standard_normal((2100, 5)).astype(np.float32)
    for metric in ("l1", "l2"):
        assert_close(classic.pairwise_distances(A, B, metric), ref.pairwise_distances(A, B, metric), np.float32)


MEMORY_SCRIPT = """
import resource, numpy as np, cnnkit
from cnnkit import classic
rng = np.random.default_rng(0)
A = rng.standard_normal((2000, 32), dtype=np.float32)
B = rng.standard_normal((20000, 32), dtype=np.float32)
y = rng.integers(0, 10, len(B))
classic.pairwise_distances(A[:64], B[:64], "{metric}")   # warm up OpenBLAS's own buffers
model = classic.KNearestNeighbors(3, "{metric}").fit(B, y)
model.predict(A[:64])
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
before = rss()
model.predict(A)
knn = rss() - before
D = classic.pairwise_distances(A, B, "{metric}")
print(knn, rss() - before - knn, D.nbytes)
"""


@pytest.mark.parametrize("metric", ["l1", "l2"])
def test_peak_memory_is_the_output_plus_bounded_blocks(metric):
    # The full distance matrix here is 160 MB: kNN never holds it, and
    # pairwise_distances holds nothing of its size beyond its output.
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(cnnkit.__file__))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT.format(metric=metric)], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    knn, pairwise, output = (int(v) for v in out)
    slack = 16 << 20  # per-thread blocks (1 MiB each), norms, allocator rounding
    assert knn <= slack, knn
    assert pairwise <= output + slack, (pairwise, output)


# ---- k nearest neighbours


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("k", [1, 4, 9])
def test_knn_tie_rules_on_integer_data(rng, dtype, metric, k):
    # Values in {0, 1, 2} on 3 features: distances repeat everywhere, and exact.
    X = rng.integers(0, 3, (70, 3)).astype(dtype)
    y = rng.integers(0, 4, 70)
    Q = rng.integers(0, 3, (40, 3)).astype(dtype)
    model = classic.KNearestNeighbors(n_neighbors=k, metric=metric).fit(X, y)
    dist, idx = model.kneighbors(Q)
    want_dist, want_idx = ref.kneighbors(X, Q, k, metric)
    np.testing.assert_array_equal(idx, want_idx)
    assert dist.dtype == dtype and idx.dtype == np.int64
    assert_close(dist, want_dist, dtype)
    np.testing.assert_array_equal(model.predict(Q), ref.knn_predict(X, y, Q, k, metric))


def test_knn_tied_vote_goes_to_smallest_label():
    X = np.array([[0.0], [1.0], [-1.0], [2.0]])
    model = classic.KNearestNeighbors(n_neighbors=2).fit(X, [7, 3, 5, 9])
    # Neighbours of 0.4: index 0 (label 7) and 1 (label 3): one vote each.
    assert model.predict([[0.4]])[0] == 3
    # Equidistant neighbours: the lower training index comes first.
    model = classic.KNearestNeighbors(n_neighbors=1).fit(X, [7, 3, 5, 9])
    assert model.kneighbors([[0.5]])[1][0, 0] == 0 and model.predict([[-0.5]])[0] == 7


@pytest.mark.parametrize("metric", ["l1", "l2"])
def test_knn_matches_sklearn_brute_force(rng, dtype, metric):
    neighbors = pytest.importorskip("sklearn.neighbors")
    X = rng.standard_normal((400, 16)).astype(dtype)
    y = rng.integers(0, 5, 400)
    Q = rng.standard_normal((120, 16)).astype(dtype)
    ours = classic.KNearestNeighbors(n_neighbors=5, metric=metric).fit(X, y)
    theirs = neighbors.KNeighborsClassifier(
        n_neighbors=5, algorithm="brute", metric="manhattan" if metric == "l1" else "euclidean"
    ).fit(X.astype(np.float64), y)
    dist, idx = ours.kneighbors(Q)
    want_dist, want_idx = theirs.kneighbors(Q.astype(np.float64))
    np.testing.assert_array_equal(idx, want_idx)
    assert_close(dist, want_dist, dtype)
    np.testing.assert_array_equal(ours.predict(Q), theirs.predict(Q.astype(np.float64)))


def test_knn_exact_reranking_survives_cancellation(rng):
    # Far from the origin GEMM's |q|^2 + |t|^2 - 2 q.t rounds by far more than the
    # gaps between neighbours; the exact re-ranking still finds the true order.
    X = (1e4 + rng.standard_normal((500, 6)) * 1e-2).astype(np.float32)
    Q = (1e4 + rng.standard_normal((30, 6)) * 1e-2).astype(np.float32)
    dist, idx = classic.KNearestNeighbors(n_neighbors=3).fit(X, np.zeros(500, int)).kneighbors(Q)
    want_dist, want_idx = ref.kneighbors(X, Q, 3)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_allclose(dist, want_dist, rtol=1e-5)


def test_knn_query_blocks_dtype_cast_and_score(rng):
    X = rng.standard_normal((1500, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64) + 10
    model = classic.KNearestNeighbors(n_neighbors=3).fit(X, y)
    Q = rng.standard_normal((200, 4))  # float64 queries run in the training dtype
    dist, idx = model.kneighbors(Q, n_neighbors=2)
    assert dist.dtype == np.float32 and idx.shape == (200, 2)
    np.testing.assert_array_equal(idx, ref.kneighbors(X, Q.astype(np.float32), 2)[1])
    assert set(model.predict(Q)) <= {10, 11}
    assert model.score(X, y) > 0.95
    assert model.kneighbors(np.empty((0, 4)))[0].shape == (0, 3)
    np.testing.assert_array_equal(model.classes_, [10, 11])


# ---- k-means


def test_kmeans_given_init_equals_reference(rng, dtype):
    X, _ = blobs(rng, 600, 5, 6, dtype)
    init = X[:6].copy()
    model = classic.KMeans(n_clusters=6, init=init, max_iter=100).fit(X)
    labels, centres, inertia, n_iter = ref.kmeans_lloyd(X, init, 100)
    np.testing.assert_array_equal(model.labels_, labels)
    assert model.cluster_centers_.dtype == dtype and model.labels_.dtype == np.int64
    assert_close(model.cluster_centers_, centres, dtype)
    assert model.n_iter_ == n_iter
    assert model.inertia_ == pytest.approx(inertia, rel=1e-4 if dtype == np.float32 else 1e-12)


def test_kmeans_wide_centres_sum_by_features(rng):
    # k * d past what per-slot partial sums may hold: the sums split by features instead.
    X = rng.standard_normal((120, 13200))
    X[:60] += 1.0
    init = X[:40].copy()
    model = classic.KMeans(n_clusters=40, init=init, max_iter=4).fit(X)
    labels, centres, inertia, n_iter = ref.kmeans_lloyd(X, init, 4)
    np.testing.assert_array_equal(model.labels_, labels)
    np.testing.assert_allclose(model.cluster_centers_, centres, rtol=0, atol=1e-12)
    assert model.n_iter_ == n_iter and model.inertia_ == pytest.approx(inertia, rel=1e-12)


@pytest.mark.parametrize("tol", [1e-4, 0.0, 10.0])
def test_kmeans_given_init_equals_sklearn_lloyd(rng, tol):
    cluster = pytest.importorskip("sklearn.cluster")
    X, _ = blobs(rng, 800, 4, 5, spread=1.5)
    init = X[rng.choice(800, 5, replace=False)]
    ours = classic.KMeans(n_clusters=5, init=init, tol=tol, max_iter=60).fit(X)
    theirs = cluster.KMeans(n_clusters=5, init=init, n_init=1, tol=tol, max_iter=60, algorithm="lloyd").fit(X)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)
    np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, rtol=0, atol=1e-12)
    assert ours.inertia_ == pytest.approx(theirs.inertia_, rel=1e-12)
    assert ours.n_iter_ == theirs.n_iter_
    np.testing.assert_array_equal(ours.predict(X), ours.labels_)  # labels of the final centres


def test_kmeans_float32_equals_sklearn_labels(rng):
    cluster = pytest.importorskip("sklearn.cluster")
    X, _ = blobs(rng, 500, 6, 4, np.float32)
    init = X[:4].copy()
    ours = classic.KMeans(n_clusters=4, init=init).fit(X)
    theirs = cluster.KMeans(n_clusters=4, init=init, n_init=1, algorithm="lloyd").fit(X)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)
    np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, rtol=1e-5, atol=1e-5)


def test_kmeans_empty_cluster_takes_the_farthest_point(rng):
    X, _ = blobs(rng, 200, 3, 3)
    init = np.vstack([X[:3], [[100.0, 100.0, 100.0]]])  # the 4th centre attracts nobody
    model = classic.KMeans(n_clusters=4, init=init, max_iter=20).fit(X)
    labels, centres, inertia, n_iter = ref.kmeans_lloyd(X, init, 20)
    np.testing.assert_array_equal(model.labels_, labels)
    np.testing.assert_allclose(model.cluster_centers_, centres, atol=1e-12)
    assert len(np.unique(model.labels_)) == 4
    cluster = pytest.importorskip("sklearn.cluster")
    theirs = cluster.KMeans(n_clusters=4, init=init, n_init=1, max_iter=20, algorithm="lloyd").fit(X)
    np.testing.assert_array_equal(model.labels_, theirs.labels_)


def test_kmeans_distance_ties_go_to_the_lowest_centre():
    X = np.array([[0.0], [2.0], [1.0]])
    # Point 1.0 is equidistant from centres 0 and 2 (indices 0 and 1).
    labels = classic.KMeans(n_clusters=2, init=[[0.0], [2.0]], max_iter=1).fit(X).labels_
    assert labels[2] == 0


def test_kmeans_plusplus_inertia_comparable_to_sklearn(rng):
    X, _ = blobs(rng, 1000, 8, 10, np.float32, spread=1.0)
    ours = np.mean([classic.KMeans(n_clusters=10, seed=s).fit(X).inertia_ for s in range(4)])
    random_init = np.mean([classic.KMeans(n_clusters=10, init="random", seed=s).fit(X).inertia_ for s in range(4)])
    assert ours <= random_init * 1.05
    cluster = pytest.importorskip("sklearn.cluster")
    theirs = np.mean([cluster.KMeans(n_clusters=10, n_init=1, random_state=s).fit(X).inertia_ for s in range(4)])
    assert ours <= theirs * 1.1


def test_kmeans_n_init_keeps_the_best_and_seed_repeats(rng):
    X, _ = blobs(rng, 400, 3, 7, spread=1.0)
    one = classic.KMeans(n_clusters=7, seed=3).fit(X)
    five = classic.KMeans(n_clusters=7, n_init=5, seed=3).fit(X)
    assert five.inertia_ <= one.inertia_
    again = classic.KMeans(n_clusters=7, n_init=5, seed=3)
    np.testing.assert_array_equal(again.fit_predict(X), five.labels_)
    assert isinstance(five.inertia_, float) and isinstance(five.n_iter_, int)


# ---- linear losses and classifiers


@pytest.mark.parametrize("loss", ["softmax", "svm"])
def test_loss_value_and_gradients(rng, loss):
    ours, theirs = {"softmax": (classic.softmax_loss, ref.softmax_loss), "svm": (classic.svm_loss, ref.svm_loss)}[loss]
    W = rng.standard_normal((4, 6)) * 0.3
    b = rng.standard_normal(4) * 0.1
    X = rng.standard_normal((25, 6))
    y = rng.integers(0, 4, 25)
    value, dW, db = ours(W, b, X, y, reg=0.05)
    want = theirs(W, b, X, y, reg=0.05)
    assert value == pytest.approx(want[0], rel=1e-12)
    np.testing.assert_allclose(dW, want[1], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(db, want[2], rtol=1e-10, atol=1e-12)
    # Finite differences (the hinge is smooth away from its kinks, which random data avoids).
    np.testing.assert_allclose(dW, ref.numeric_grad(lambda w: ours(w, b, X, y, 0.05)[0], W), atol=1e-6)
    np.testing.assert_allclose(db, ref.numeric_grad(lambda c: ours(W, c, X, y, 0.05)[0], b), atol=1e-6)
    v32, dW32, db32 = ours(W.astype(np.float32), b.astype(np.float32), X.astype(np.float32), y, 0.05)
    assert dW32.dtype == np.float32 and db32.dtype == np.float32
    assert v32 == pytest.approx(value, rel=1e-5)
    np.testing.assert_allclose(dW32, dW, atol=1e-5)


@pytest.mark.parametrize("cls", [classic.LinearSoftmax, classic.LinearSVM])
def test_linear_classifiers_learn_blobs(rng, dtype, cls):
    X, y = blobs(rng, 600, 10, 4, dtype, spread=1.0)
    y = y * 2 + 1  # labels need not be 0..C-1
    model = cls(epochs=20, seed=0).fit(X, y)
    assert model.coef_.shape == (4, 10) and model.intercept_.shape == (4,)
    assert model.coef_.dtype == dtype and model.intercept_.dtype == dtype
    assert model.score(X, y) > 0.95
    assert model.loss_history_[-1] < model.loss_history_[0]
    proba = model.predict_proba(X)
    assert proba.dtype == dtype
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(model.classes_[np.argmax(proba, axis=1)], model.predict(X))
    again = cls(epochs=20, seed=0).fit(X, y)
    np.testing.assert_array_equal(again.coef_, model.coef_)


# ---- splits and cross-validation


def test_train_val_test_split_partitions_the_samples(rng):
    X = np.arange(100).reshape(50, 2)
    y = np.arange(50)
    Xtr, Xva, Xte, ytr, yva, yte = classic.train_val_test_split(X, y, val_size=0.2, test_size=5, seed=1)
    assert (len(ytr), len(yva), len(yte)) == (35, 10, 5)
    assert sorted(np.concatenate([ytr, yva, yte])) == list(range(50))
    np.testing.assert_array_equal(Xva[:, 0], 2 * yva)
    plain = classic.train_val_test_split(X, y, shuffle=False)
    np.testing.assert_array_equal(plain[3], np.arange(40))
    np.testing.assert_array_equal(plain[5], np.arange(45, 50))


def test_cross_val_score_trains_on_the_other_folds(rng):
    X, y = blobs(rng, 103, 4, 3)
    scores = classic.cross_val_score(classic.KNearestNeighbors(n_neighbors=3), X, y, folds=5)
    assert scores.shape == (5,) and np.all(scores > 0.9)
    # The first fold holds samples 0..20 (103 = 5 * 20 + 3: three folds of 21).
    held = np.arange(21)
    model = classic.KNearestNeighbors(n_neighbors=3).fit(X[21:], y[21:])
    assert scores[0] == model.score(X[held], y[held])
    shuffled = classic.cross_val_score(classic.KNearestNeighbors(n_neighbors=3), X, y, seed=0)
    np.testing.assert_array_equal(shuffled, classic.cross_val_score(classic.KNearestNeighbors(3), X, y, seed=0))


def test_estimator_params_and_repr():
    model = classic.KMeans(n_clusters=3, seed=1)
    assert model.get_params()["n_clusters"] == 3
    assert model.set_params(n_clusters=4) is model and model.n_clusters == 4
    assert repr(classic.KNearestNeighbors(3)) == "KNearestNeighbors(n_neighbors=3, metric='l2')"
    with pytest.raises(ValueError, match="unknown parameter 'k'"):
        model.set_params(k=2)


# ---- threads


def test_loops_run_on_cnnkits_pool(num_threads):
    num_threads(1)
    assert _classic.pool_threads_seen(16) == 1
    num_threads(2)
    # 2 ms per item: both threads of the pool claim a share (three tries on a busy machine).
    assert max(_classic.pool_threads_seen(16) for _ in range(3)) == 2


def test_threadpoolctl_caps_the_cython_loops(num_threads):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    num_threads(2)
    with threadpoolctl.threadpool_limits(1, user_api="cnnkit"):
        assert _classic.pool_threads_seen(8) == 1
    assert cnnkit.get_num_threads() == 2


def test_results_identical_on_any_thread_count(rng, num_threads):
    X, _ = blobs(rng, 3000, 24, 8, np.float32)
    y = rng.integers(0, 3, 3000)
    Q = X[:300] + np.float32(0.1)
    init = X[:8].copy()
    W = rng.standard_normal((3, 24)).astype(np.float32)
    b = np.zeros(3, np.float32)
    results = []
    for n in (1, 2, 3):
        num_threads(n)
        km = classic.KMeans(n_clusters=8, init=init, max_iter=10).fit(X)
        results.append(
            [classic.pairwise_distances(Q, X), classic.pairwise_distances(Q, X, "l1"),
             *classic.KNearestNeighbors(4).fit(X, y).kneighbors(Q), km.cluster_centers_, km.labels_,
             np.float64(km.inertia_), *classic.softmax_loss(W, b, X, y, 1e-3)[1:]]
        )
    for other in results[1:]:
        for a, b_ in zip(results[0], other):
            np.testing.assert_array_equal(a, b_)


# ---- errors


def _fitted_knn():
    return classic.KNearestNeighbors(2).fit(np.zeros((3, 2)), [0, 1, 1])


X2 = np.zeros((4, 2))
ERRORS = [
    (lambda: classic.pairwise_distances(X2.astype(np.int64)), TypeError, "pairwise_distances: A: expected a float32 or float64 array, got dtype int64"),
    (lambda: classic.pairwise_distances(np.zeros(3)), ValueError, r"A: expected a 2-D array \(n_samples, n_features\), got shape \(3,\)"),
    (lambda: classic.pairwise_distances(np.zeros((3, 0))), ValueError, "A: expected at least one feature"),
    (lambda: classic.pairwise_distances(np.array([[0.0, np.nan]])), ValueError, "A: expected finite values, got NaN or infinity in row 0"),
    (lambda: classic.pairwise_distances(X2, X2.astype(np.float32)), TypeError, "B: expected dtype float64"),
    (lambda: classic.pairwise_distances(X2, np.zeros((2, 3))), ValueError, r"B: expected 2 features, got shape \(2, 3\)"),
    (lambda: classic.pairwise_distances(X2, metric="cosine"), ValueError, "metric: expected one of 'l1', 'l2', 'sqeuclidean', got 'cosine'"),
    (lambda: classic.pairwise_distances(X2, metric=2), TypeError, "metric: expected one of .*, got int"),
    (lambda: classic.KNearestNeighbors(0).fit(X2, [0] * 4), ValueError, "KNearestNeighbors.fit: n_neighbors: expected an int >= 1, got 0"),
    (lambda: classic.KNearestNeighbors(1.5).fit(X2, [0] * 4), TypeError, "n_neighbors: expected an int, got float"),
    (lambda: classic.KNearestNeighbors(5).fit(X2, [0] * 4), ValueError, "n_neighbors: expected at most n_samples = 4, got 5"),
    (lambda: classic.KNearestNeighbors(metric="l3").fit(X2, [0] * 4), ValueError, "metric: expected one of"),
    (lambda: classic.KNearestNeighbors().fit(X2, [0.5] * 4), TypeError, "y: expected an integer array of labels, got dtype float64"),
    (lambda: classic.KNearestNeighbors().fit(X2, [0] * 3), ValueError, r"y: expected shape \(4,\), one label per sample, got shape \(3,\)"),
    (lambda: classic.KNearestNeighbors().predict(X2), ValueError, "KNearestNeighbors.kneighbors: this KNearestNeighbors is not fitted yet"),
    (lambda: _fitted_knn().predict(np.zeros((1, 3))), ValueError, r"X: expected 2 features, got shape \(1, 3\)"),
    (lambda: _fitted_knn().kneighbors(X2, n_neighbors=4), ValueError, "n_neighbors: expected at most n_samples = 3, got 4"),
    (lambda: _fitted_knn().score(X2, [0, 1]), ValueError, r"KNearestNeighbors.score: y: expected shape \(4,\)"),
    (lambda: classic.KMeans(5).fit(X2), ValueError, "KMeans.fit: n_clusters: expected at most n_samples = 4, got 5"),
    (lambda: classic.KMeans(0).fit(X2), ValueError, "n_clusters: expected an int >= 1, got 0"),
    (lambda: classic.KMeans(2, max_iter=0).fit(X2), ValueError, "max_iter: expected an int >= 1, got 0"),
    (lambda: classic.KMeans(2, n_init=0).fit(X2), ValueError, "n_init: expected an int >= 1, got 0"),
    (lambda: classic.KMeans(2, tol=-1).fit(X2), ValueError, "tol: expected a non-negative number, got -1.0"),
    (lambda: classic.KMeans(2, tol="x").fit(X2), TypeError, "tol: expected a real number, got str"),
    (lambda: classic.KMeans(2, seed=-1).fit(X2), ValueError, "seed: expected an int >= 0, got -1"),
    (lambda: classic.KMeans(2, init="kmeans").fit(X2), ValueError, "init: expected one of 'k-means\\+\\+', 'random', got 'kmeans'"),
    (lambda: classic.KMeans(2, init=np.zeros((3, 2))).fit(X2), ValueError, r"init: expected 2 centres \(n_clusters\), got shape \(3, 2\)"),
    (lambda: classic.KMeans(2, init=np.zeros((2, 3))).fit(X2), ValueError, r"init: expected 2 features, got shape \(2, 3\)"),
    (lambda: classic.KMeans(2, init=np.zeros((2, 2)), n_init=2).fit(X2), ValueError, "n_init: expected 1 with init given as an array, got 2"),
    (lambda: classic.KMeans(2).predict(X2), ValueError, "KMeans.predict: this KMeans is not fitted yet"),
    (lambda: classic.KMeans(2).fit(X2).predict(np.zeros((1, 1))), ValueError, r"KMeans.predict: X: expected 2 features"),
    (lambda: classic.softmax_loss(np.zeros((3, 2)), np.zeros(3), X2, [0, 1, 2, 3]), ValueError, r"softmax_loss: y: expected class indices in \[0, 3\), got 3 at position 3"),
    (lambda: classic.svm_loss(np.zeros((3, 2)), np.zeros(2), X2, [0] * 4), ValueError, r"svm_loss: b: expected shape \(3,\), one bias per class, got shape \(2,\)"),
    (lambda: classic.svm_loss(np.zeros((3, 2)), np.zeros(3, np.float32), X2, [0] * 4), TypeError, "svm_loss: b: expected dtype float64 .as W., got float32"),
    (lambda: classic.softmax_loss(np.zeros((3, 2)), np.zeros(3), np.zeros((0, 2)), []), ValueError, "X: expected at least one sample"),
    (lambda: classic.softmax_loss(np.zeros((3, 2)), np.zeros(3), X2, [0] * 4, reg=-1), ValueError, "reg: expected a non-negative number, got -1.0"),
    (lambda: classic.softmax_loss(np.zeros((3, 2)), np.zeros(3), X2.astype(np.float32), [0] * 4), TypeError, "softmax_loss: X: expected dtype float64"),
    (lambda: classic.LinearSoftmax(learning_rate=0).fit(X2, [0] * 4), ValueError, "LinearSoftmax.fit: learning_rate: expected a positive number, got 0.0"),
    (lambda: classic.LinearSVM(reg=-1.0).fit(X2, [0] * 4), ValueError, "LinearSVM.fit: reg: expected a non-negative number"),
    (lambda: classic.LinearSVM(epochs=0).fit(X2, [0] * 4), ValueError, "epochs: expected an int >= 1, got 0"),
    (lambda: classic.LinearSVM(batch_size=True).fit(X2, [0] * 4), TypeError, "batch_size: expected an int, got bool"),
    (lambda: classic.LinearSVM().fit(np.zeros((0, 2)), []), ValueError, "LinearSVM.fit: X: expected at least one sample"),
    (lambda: classic.LinearSoftmax().predict(X2), ValueError, "LinearSoftmax.decision_function: this LinearSoftmax is not fitted yet"),
    (lambda: classic.LinearSoftmax(epochs=1).fit(X2, [0, 1, 0, 1]).predict(np.zeros((1, 5))), ValueError, "X: expected 2 features"),
    (lambda: classic.train_val_test_split(X2, [0] * 3), ValueError, r"X, y: expected one label per sample, got shapes \(4, 2\) and \(3,\)"),
    (lambda: classic.train_val_test_split(X2, [0] * 4, val_size=2, test_size=2), ValueError, "val_size, test_size: expected to leave a training sample of 4, got 2 \\+ 2"),
    (lambda: classic.train_val_test_split(X2, [0] * 4, val_size=1.5), ValueError, r"val_size: expected a fraction in \[0, 1\) or a count, got 1.5"),
    (lambda: classic.train_val_test_split(X2, [0] * 4, test_size=-1), ValueError, "test_size: expected a non-negative count, got -1"),
    (lambda: classic.train_val_test_split(X2, [0] * 4, test_size="a"), TypeError, "test_size: expected a fraction in \\[0, 1\\) or a count, got str"),
    (lambda: classic.train_val_test_split(X2, [0] * 4, shuffle=1), TypeError, "shuffle: expected a bool, got int"),
    (lambda: classic.cross_val_score(classic.KNearestNeighbors(), X2, [0] * 4, folds=1), ValueError, "cross_val_score: folds: expected an int >= 2, got 1"),
    (lambda: classic.cross_val_score(classic.KNearestNeighbors(), X2, [0] * 4, folds=5), ValueError, "folds: expected at most n_samples = 4, got 5"),
    (lambda: classic.cross_val_score(classic.KNearestNeighbors(), X2, [0] * 5), ValueError, "cross_val_score: X, y: expected one label per sample"),
]


@pytest.mark.parametrize("call, error, message", ERRORS, ids=[f"error{i}" for i in range(len(ERRORS))])
def test_errors_name_the_argument(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ---- `cnnkit classify`


@pytest.mark.parametrize("method, floor", [("knn", 97.0), ("softmax", 94.0), ("svm", 93.0)])
def test_cli_classify_prints_accuracy_and_time(capsys, method, floor):
    pytest.importorskip("sklearn")
    from cnnkit import cli

    assert cli.main(["classify", "--method", method]) == 0
    out = capsys.readouterr().out
    match = re.fullmatch(r"test accuracy: ([\d.]+)% \((\d+)/359\), (\w+) \(.*\) on digits, [\d.]+ s\n", out)
    assert match, out
    assert float(match.group(1)) >= floor and match.group(3) == method


def test_cli_classify_kmeans_prints_inertia(capsys, num_threads):
    pytest.importorskip("sklearn")
    from cnnkit import cli

    assert cli.main(["classify", "--method", "kmeans", "--k", "12", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert re.fullmatch(r"inertia: [\d.]+, kmeans \(k=12\) on digits, \d+ iterations; test accuracy of the "
                        r"clusters' majority labels: [\d.]+%, [\d.]+ s\n", out), out
    assert cnnkit.get_num_threads() == 1


def test_cli_classify_errors(capsys):
    pytest.importorskip("sklearn")
    from cnnkit import cli

    assert cli.main(["classify", "--k", "50", "--limit", "20"]) == 1
    assert "cnnkit classify: error: --k 50 is more than the 20 training samples" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["classify", "--method", "tree"])
    assert e.value.code == 2
