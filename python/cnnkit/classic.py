"""Classic methods: nearest neighbours, k-means, linear classifiers, data splits.

The course's methods before neural networks, with scikit-learn's estimator
conventions (``fit`` returns self, fitted attributes end in ``_``). Inputs are 2-D
float32 or float64 arrays (n_samples, n_features); results keep that dtype. The hot
loops are Cython (``cnnkit._classic``) on cnnkit's thread pool and GEMM, so
:func:`cnnkit.set_num_threads` governs them, and one input gives one result on any
number of threads.

Examples
--------
>>> import numpy as np
>>> from cnnkit import classic
>>> X = np.array([[0.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
>>> classic.pairwise_distances(X, X[:1], metric="l1").ravel()
array([ 0.,  1., 10.])
>>> classic.KNearestNeighbors(n_neighbors=1).fit(X, [0, 0, 1]).predict([[4.0, 4.0]])
array([1])
"""

import copy

import numpy as np

from . import _args, _classic
from . import functional as F

__all__ = [
    "pairwise_distances",
    "KNearestNeighbors",
    "KMeans",
    "LinearSoftmax",
    "LinearSVM",
    "softmax_loss",
    "svm_loss",
    "train_val_test_split",
    "cross_val_score",
]

_METRICS = {"l1": _classic.METRIC_L1, "l2": _classic.METRIC_L2, "sqeuclidean": _classic.METRIC_SQEUCLIDEAN}


def _matrix_like(v, op, name, like):
    """A 2-D float matrix of like's dtype and feature count (like: a validated array)."""
    a = _args.float_matrix(v, op, name)
    if a.dtype != like.dtype:
        raise TypeError(f"{op}: {name}: expected dtype {like.dtype} (as the data it goes with), got {a.dtype}")
    if a.shape[1] != like.shape[1]:
        raise ValueError(f"{op}: {name}: expected {like.shape[1]} features, got shape {a.shape}")
    return a


def _fitted(model, op, attr):
    if not hasattr(model, attr):
        raise ValueError(f"{op}: this {type(model).__name__} is not fitted yet; call fit first")


def _encode(y, op, n):
    """(classes, codes): the sorted distinct labels and each sample's index into them."""
    y = _args.int_labels(y, op, "y", n)
    classes, codes = np.unique(y, return_inverse=True)
    return classes, np.ascontiguousarray(codes.reshape(-1), dtype=np.int64)


class _Estimator:
    """get_params / set_params over the constructor's arguments, as scikit-learn has."""

    _params = ()

    def get_params(self, deep=True):
        """The constructor's arguments.

        Parameters
        ----------
        deep : bool, default True
            Accepted for scikit-learn compatibility (no nested estimators here).

        Returns
        -------
        dict
        """
        return {name: getattr(self, name) for name in self._params}

    def set_params(self, **params):
        """Set constructor arguments by name.

        Parameters
        ----------
        **params
            Names from get_params().

        Returns
        -------
        self
        """
        for name, value in params.items():
            if name not in self._params:
                raise ValueError(f"{type(self).__name__}.set_params: unknown parameter {name!r}")
            setattr(self, name, value)
        return self

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def pairwise_distances(A, B=None, metric="l2"):
    """Distances between the rows of A and the rows of B.

    Blocked and multithreaded: memory is the output plus a bounded scratch block per
    thread. ``"l2"`` and ``"sqeuclidean"`` go through GEMM (``|a|^2 + |b|^2 - 2 a.b``
    with the norms in float64); a pair whose norms nearly cancel is computed directly
    in float64 instead, and a negative result is clamped to 0.

    Parameters
    ----------
    A : array_like, shape (m, n_features)
        float32 or float64.
    B : array_like, shape (n, n_features), optional
        A's dtype. Default: A itself.
    metric : {"l2", "l1", "sqeuclidean"}, default "l2"
        Euclidean, Manhattan, or squared Euclidean distance.

    Returns
    -------
    ndarray, shape (m, n)
        A's dtype.

    Raises
    ------
    TypeError
        A or B is not float32/float64, or B's dtype is not A's; metric is not a string.
    ValueError
        A or B is not 2-D, has no features, holds NaN or infinity, or their feature
        counts differ; metric is unknown.
    """
    op = "pairwise_distances"
    code = _METRICS[_args.choice(metric, op, "metric", tuple(_METRICS))]
    A = _args.float_matrix(A, op, "A")
    B = A if B is None else _matrix_like(B, op, "B", A)
    out = np.empty((A.shape[0], B.shape[0]), dtype=A.dtype)
    _classic.pairwise(A, B, code, out)
    return out


class KNearestNeighbors(_Estimator):
    """k-nearest-neighbour classifier by brute force.

    Neighbours are ordered by distance, then by training index; the majority label
    of the k neighbours wins, and a tied vote goes to the smallest label. For
    ``"l2"`` and ``"sqeuclidean"`` the candidates come from GEMM and every pair within
    GEMM's rounding bound of the k-th is ranked again by its exact distance, so ties
    in exact arithmetic (integer-valued data) are ties here.

    Parameters
    ----------
    n_neighbors : int, default 1
        k, at least 1 and at most the number of training samples.
    metric : {"l2", "l1", "sqeuclidean"}, default "l2"
        As in :func:`pairwise_distances`.

    Attributes
    ----------
    classes_ : ndarray of int64
        The sorted distinct training labels.
    n_features_in_ : int
    """

    _params = ("n_neighbors", "metric")

    def __init__(self, n_neighbors=1, metric="l2"):
        self.n_neighbors = n_neighbors
        self.metric = metric

    def fit(self, X, y):
        """Remember the training set.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)
            float32 or float64.
        y : array_like of int, shape (n_samples,)

        Returns
        -------
        self
        """
        op = "KNearestNeighbors.fit"
        self._metric = _METRICS[_args.choice(self.metric, op, "metric", tuple(_METRICS))]
        k = _args.positive(self.n_neighbors, op, "n_neighbors")
        X = _args.float_matrix(X, op, "X")
        if k > len(X):
            raise ValueError(f"{op}: n_neighbors: expected at most n_samples = {len(X)}, got {k}")
        self.classes_, self._codes = _encode(y, op, len(X))
        self._X = X
        self._sqnorms = _classic.row_sqnorms(X)
        self.n_features_in_ = X.shape[1]
        return self

    def kneighbors(self, X, n_neighbors=None):
        """The nearest training samples of each row of X.

        Parameters
        ----------
        X : array_like, shape (n_queries, n_features)
            Cast to the training data's dtype.
        n_neighbors : int, optional
            Default: the model's n_neighbors.

        Returns
        -------
        dist : ndarray, shape (n_queries, n_neighbors)
            Distances (squared for ``"sqeuclidean"``), ascending, in the training dtype.
        idx : ndarray of int64, shape (n_queries, n_neighbors)
            Training indices; equal distances in increasing index order.
        """
        op = "KNearestNeighbors.kneighbors"
        _fitted(self, op, "_X")
        k = self.n_neighbors if n_neighbors is None else n_neighbors
        k = _args.positive(k, op, "n_neighbors")
        if k > len(self._X):
            raise ValueError(f"{op}: n_neighbors: expected at most n_samples = {len(self._X)}, got {k}")
        Q = self._queries(X, op)
        return _classic.kneighbors(Q, self._X, self._sqnorms, k, self._metric)

    def _queries(self, X, op):
        Q = _args.float_matrix(X, op, "X")
        if Q.shape[1] != self.n_features_in_:
            raise ValueError(f"{op}: X: expected {self.n_features_in_} features, got shape {Q.shape}")
        return np.ascontiguousarray(Q, dtype=self._X.dtype)

    def predict(self, X):
        """The majority label of each row's neighbours (ties to the smallest label).

        Parameters
        ----------
        X : array_like, shape (n_queries, n_features)

        Returns
        -------
        ndarray of int64, shape (n_queries,)
        """
        _, idx = self.kneighbors(X)
        n_classes = len(self.classes_)
        votes = self._codes[idx] + n_classes * np.arange(len(idx))[:, None]
        counts = np.bincount(votes.ravel(), minlength=len(idx) * n_classes).reshape(len(idx), n_classes)
        return self.classes_[np.argmax(counts, axis=1)]  # argmax: the first, smallest label

    def score(self, X, y):
        """Accuracy of predict(X) against y.

        Parameters
        ----------
        X : array_like, shape (n_queries, n_features)
        y : array_like of int, shape (n_queries,)

        Returns
        -------
        float
        """
        return _accuracy(self, X, y, "KNearestNeighbors.score")


def _accuracy(model, X, y, op):
    predicted = model.predict(X)
    y = _args.int_labels(y, op, "y", len(predicted))
    return float(np.mean(predicted == y)) if len(y) else 0.0


class KMeans(_Estimator):
    """k-means clustering by Lloyd's algorithm, with scikit-learn's semantics.

    As ``sklearn.cluster.KMeans(algorithm="lloyd")``: tol is relative to the mean
    feature variance; iterations stop when the labels stop changing or when the total
    squared centre shift is within tol; labels_ and inertia_ then belong to the final
    centres. A distance tie goes to the lowest centre index, and a cluster left empty
    is re-seeded with the point farthest from its centre. Assignment is a GEMM and a
    fused argmin per chunk of samples.

    Parameters
    ----------
    n_clusters : int, default 8
        At most the number of samples.
    init : {"k-means++", "random"} or array_like, default "k-means++"
        Greedy k-means++ seeding, n_clusters distinct random samples, or the initial
        centres, shape (n_clusters, n_features) (then n_init must be 1).
    max_iter : int, default 300
        Lloyd iterations per run, at least 1.
    tol : float, default 1e-4
        Non-negative; multiplied by the mean of the features' variances.
    n_init : int, default 1
        Runs from different seedings; the one of lowest inertia is kept.
    seed : int, optional
        Seed of the seedings (NumPy's default_rng).

    Attributes
    ----------
    cluster_centers_ : ndarray, shape (n_clusters, n_features)
        X's dtype.
    labels_ : ndarray of int64, shape (n_samples,)
    inertia_ : float
        Sum of squared distances of the samples to their centres.
    n_iter_ : int
        Iterations of the kept run.
    """

    _params = ("n_clusters", "init", "max_iter", "tol", "n_init", "seed")

    def __init__(self, n_clusters=8, init="k-means++", max_iter=300, tol=1e-4, n_init=1, seed=None):
        self.n_clusters = n_clusters
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.n_init = n_init
        self.seed = seed

    def fit(self, X, y=None):
        """Cluster X.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)
            float32 or float64.
        y : ignored
            For scikit-learn's API.

        Returns
        -------
        self
        """
        op = "KMeans.fit"
        X = _args.float_matrix(X, op, "X")
        k = _args.positive(self.n_clusters, op, "n_clusters")
        if k > len(X):
            raise ValueError(f"{op}: n_clusters: expected at most n_samples = {len(X)}, got {k}")
        max_iter = _args.positive(self.max_iter, op, "max_iter")
        n_init = _args.positive(self.n_init, op, "n_init")
        tol = _args.real(self.tol, op, "tol")
        if not tol >= 0:
            raise ValueError(f"{op}: tol: expected a non-negative number, got {tol}")
        rng = np.random.default_rng(_args.seed(self.seed, op))
        if isinstance(self.init, str):
            method = _args.choice(self.init, op, "init", ("k-means++", "random"))
            given = None
        else:
            given = _matrix_like(np.asarray(self.init, dtype=X.dtype), op, "init", X)
            if len(given) != k:
                raise ValueError(f"{op}: init: expected {k} centres (n_clusters), got shape {given.shape}")
            if n_init != 1:
                raise ValueError(f"{op}: n_init: expected 1 with init given as an array, got {n_init}")
        tol_abs = float(np.mean(np.var(X, axis=0, dtype=np.float64))) * tol
        best = None
        for _ in range(n_init):
            if given is not None:
                centers = given.copy()
            elif method == "random":
                centers = X[np.sort(rng.choice(len(X), size=k, replace=False))]
            else:
                centers = _kmeans_plusplus(X, k, rng)
            centers = np.ascontiguousarray(centers)
            labels, inertia, n_iter = _classic.lloyd(X, centers, max_iter, tol_abs)
            if best is None or inertia < best[2]:
                best = (centers, labels, inertia, n_iter)
        self.cluster_centers_, self.labels_, self.inertia_, self.n_iter_ = best
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X):
        """The nearest centre of each row (ties to the lowest index).

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)
            Cast to the fitted centres' dtype.

        Returns
        -------
        ndarray of int64, shape (n_samples,)
        """
        op = "KMeans.predict"
        _fitted(self, op, "cluster_centers_")
        centers = self.cluster_centers_
        Q = _args.float_matrix(X, op, "X")
        if Q.shape[1] != centers.shape[1]:
            raise ValueError(f"{op}: X: expected {centers.shape[1]} features, got shape {Q.shape}")
        labels = np.full(len(Q), -1, dtype=np.int64)
        _classic.assign(np.ascontiguousarray(Q, dtype=centers.dtype), centers, labels)
        return labels

    def fit_predict(self, X, y=None):
        """fit(X), then labels_.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        ndarray of int64, shape (n_samples,)
        """
        return self.fit(X).labels_


def _sqdist(A, B):
    """Squared distances of validated A and B, as float64."""
    out = np.empty((len(A), len(B)), dtype=A.dtype)
    _classic.pairwise(np.ascontiguousarray(A), B, _classic.METRIC_SQEUCLIDEAN, out)
    return out.astype(np.float64, copy=False)


def _kmeans_plusplus(X, k, rng):
    """Greedy k-means++: each new centre is the best of 2 + log(k) samples drawn with
    probability proportional to the squared distance to the nearest centre so far."""
    n = len(X)
    trials = 2 + int(np.log(k))
    centers = np.empty((k, X.shape[1]), dtype=X.dtype)
    first = int(rng.integers(n))
    centers[0] = X[first]
    closest = _sqdist(X[first : first + 1], X)[0]
    potential = closest.sum()
    for c in range(1, k):
        draws = rng.uniform(size=trials) * potential
        candidates = np.minimum(np.searchsorted(np.cumsum(closest), draws), n - 1)
        d = _sqdist(X[candidates], X)
        np.minimum(d, closest, out=d)
        sums = d.sum(axis=1)
        best = int(np.argmin(sums))
        centers[c] = X[candidates[best]]
        closest, potential = d[best], sums[best]
    return centers


def _loss_args(W, b, X, y, reg, op):
    W = _args.float_matrix(W, op, "W")
    X = _matrix_like(X, op, "X", W)
    b = np.asarray(b)
    if b.dtype != W.dtype:
        raise TypeError(f"{op}: b: expected dtype {W.dtype} (as W), got {b.dtype}")
    if b.shape != (W.shape[0],):
        raise ValueError(f"{op}: b: expected shape ({W.shape[0]},), one bias per class, got shape {b.shape}")
    if len(X) == 0:
        raise ValueError(f"{op}: X: expected at least one sample (the loss is a mean), got shape {X.shape}")
    y = _args.int_labels(y, op, "y", len(X))
    if y.min() < 0 or y.max() >= W.shape[0]:
        bad = int(np.flatnonzero((y < 0) | (y >= W.shape[0]))[0])
        raise ValueError(f"{op}: y: expected class indices in [0, {W.shape[0]}), got {y[bad]} at position {bad}")
    reg = _args.real(reg, op, "reg")
    if not reg >= 0:
        raise ValueError(f"{op}: reg: expected a non-negative number, got {reg}")
    return W, np.ascontiguousarray(b), X, y, reg


def softmax_loss(W, b, X, y, reg=0.0):
    """Softmax (cross-entropy) loss of the linear scores ``X @ W.T + b`` and its gradients.

    Parameters
    ----------
    W : array_like, shape (n_classes, n_features)
        float32 or float64.
    b : array_like, shape (n_classes,)
        W's dtype.
    X : array_like, shape (n_samples, n_features)
        W's dtype, at least one sample.
    y : array_like of int, shape (n_samples,)
        Class indices in [0, n_classes).
    reg : float, default 0.0
        L2 regularisation strength, non-negative.

    Returns
    -------
    loss : float
        The mean loss over the samples plus ``reg * sum(W**2)``.
    dW : ndarray, shape (n_classes, n_features)
        W's dtype.
    db : ndarray, shape (n_classes,)
        W's dtype.
    """
    W, b, X, y, reg = _loss_args(W, b, X, y, reg, "softmax_loss")
    return _classic.linear_loss(W, b, X, y, reg, _classic.LOSS_SOFTMAX)


def svm_loss(W, b, X, y, reg=0.0):
    """Multiclass hinge loss ``sum_{j != y} max(0, s_j - s_y + 1)`` of the linear scores
    ``s = X @ W.T + b`` and its (sub)gradients.

    Parameters
    ----------
    W : array_like, shape (n_classes, n_features)
        float32 or float64.
    b : array_like, shape (n_classes,)
        W's dtype.
    X : array_like, shape (n_samples, n_features)
        W's dtype, at least one sample.
    y : array_like of int, shape (n_samples,)
        Class indices in [0, n_classes).
    reg : float, default 0.0
        L2 regularisation strength, non-negative.

    Returns
    -------
    loss : float
        The mean loss over the samples plus ``reg * sum(W**2)``.
    dW : ndarray, shape (n_classes, n_features)
        W's dtype.
    db : ndarray, shape (n_classes,)
        W's dtype.
    """
    W, b, X, y, reg = _loss_args(W, b, X, y, reg, "svm_loss")
    return _classic.linear_loss(W, b, X, y, reg, _classic.LOSS_SVM)


class _LinearClassifier(_Estimator):
    _params = ("reg", "learning_rate", "epochs", "batch_size", "seed")
    _kind = None

    def __init__(self, reg=1e-4, learning_rate=0.1, epochs=50, batch_size=128, seed=None):
        self.reg = reg
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.batch_size = batch_size
        self.seed = seed

    def fit(self, X, y):
        """Train by minibatch SGD from zero weights.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)
            float32 or float64.
        y : array_like of int, shape (n_samples,)

        Returns
        -------
        self
        """
        op = f"{type(self).__name__}.fit"
        X = _args.float_matrix(X, op, "X")
        if len(X) == 0:
            raise ValueError(f"{op}: X: expected at least one sample, got shape {X.shape}")
        self.classes_, codes = _encode(y, op, len(X))
        reg = _args.real(self.reg, op, "reg")
        if not reg >= 0:
            raise ValueError(f"{op}: reg: expected a non-negative number, got {reg}")
        lr = _args.real(self.learning_rate, op, "learning_rate")
        if not lr > 0:
            raise ValueError(f"{op}: learning_rate: expected a positive number, got {lr}")
        epochs = _args.positive(self.epochs, op, "epochs")
        batch = _args.positive(self.batch_size, op, "batch_size")
        rng = np.random.default_rng(_args.seed(self.seed, op))
        W = np.zeros((len(self.classes_), X.shape[1]), dtype=X.dtype)
        b = np.zeros(len(self.classes_), dtype=X.dtype)
        step = X.dtype.type(lr)
        history = []
        for _ in range(epochs):
            order = rng.permutation(len(X))
            total = 0.0
            for start in range(0, len(X), batch):
                idx = order[start : start + batch]
                loss, dW, db = _classic.linear_loss(W, b, X[idx], codes[idx], reg, self._kind)
                W -= step * dW
                b -= step * db
                total += loss * len(idx)
            history.append(total / len(X))
        self.coef_, self.intercept_ = W, b
        self.loss_history_ = history
        self.n_features_in_ = X.shape[1]
        return self

    def decision_function(self, X):
        """The class scores ``X @ coef_.T + intercept_``.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)
            Cast to coef_'s dtype.

        Returns
        -------
        ndarray, shape (n_samples, n_classes)
        """
        op = f"{type(self).__name__}.decision_function"
        _fitted(self, op, "coef_")
        Q = _args.float_matrix(X, op, "X")
        if Q.shape[1] != self.n_features_in_:
            raise ValueError(f"{op}: X: expected {self.n_features_in_} features, got shape {Q.shape}")
        s = _classic.scores(self.coef_, np.ascontiguousarray(Q, dtype=self.coef_.dtype))
        s += self.intercept_
        return s

    def predict(self, X):
        """The label of the highest score (ties to the smallest label).

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)

        Returns
        -------
        ndarray of int64, shape (n_samples,)
        """
        scores = self.decision_function(X)
        return self.classes_[np.argmax(scores, axis=1)]

    def predict_proba(self, X):
        """The softmax of the class scores.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)

        Returns
        -------
        ndarray, shape (n_samples, n_classes)
            Rows sum to 1; columns follow classes_.
        """
        return F.softmax(self.decision_function(X), dim=1)

    def score(self, X, y):
        """Accuracy of predict(X) against y.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)
        y : array_like of int, shape (n_samples,)

        Returns
        -------
        float
        """
        return _accuracy(self, X, y, f"{type(self).__name__}.score")


class LinearSoftmax(_LinearClassifier):
    """Linear softmax classifier trained by minibatch SGD on :func:`softmax_loss`.

    Parameters
    ----------
    reg : float, default 1e-4
        L2 regularisation strength (the loss adds ``reg * sum(W**2)``).
    learning_rate : float, default 0.1
        SGD step size.
    epochs : int, default 50
        Passes over the training set.
    batch_size : int, default 128
        Samples per SGD step.
    seed : int, optional
        Seed of the shuffling (NumPy's default_rng).

    Attributes
    ----------
    coef_ : ndarray, shape (n_classes, n_features)
    intercept_ : ndarray, shape (n_classes,)
    classes_ : ndarray of int64
    loss_history_ : list of float
        The mean minibatch loss of each epoch.
    """

    _kind = _classic.LOSS_SOFTMAX


class LinearSVM(_LinearClassifier):
    """Linear multiclass SVM trained by minibatch SGD on :func:`svm_loss`.

    Parameters
    ----------
    reg : float, default 1e-4
        L2 regularisation strength (the loss adds ``reg * sum(W**2)``).
    learning_rate : float, default 0.1
        SGD step size.
    epochs : int, default 50
        Passes over the training set.
    batch_size : int, default 128
        Samples per SGD step.
    seed : int, optional
        Seed of the shuffling (NumPy's default_rng).

    Attributes
    ----------
    coef_ : ndarray, shape (n_classes, n_features)
    intercept_ : ndarray, shape (n_classes,)
    classes_ : ndarray of int64
    loss_history_ : list of float
        The mean minibatch loss of each epoch.
    """

    _kind = _classic.LOSS_SVM


def _split_count(v, n, op, name):
    if isinstance(v, float):
        if not 0 <= v < 1:
            raise ValueError(f"{op}: {name}: expected a fraction in [0, 1) or a count, got {v}")
        return int(round(v * n))
    v = _args.integer(v, op, name, "a fraction in [0, 1) or a count")
    if v < 0:
        raise ValueError(f"{op}: {name}: expected a non-negative count, got {v}")
    return v


def train_val_test_split(X, y, val_size=0.1, test_size=0.1, seed=None, shuffle=True):
    """Split samples into training, validation and test sets.

    Parameters
    ----------
    X : array_like, shape (n_samples, ...)
    y : array_like, shape (n_samples,)
    val_size, test_size : float or int, default 0.1
        A fraction of n_samples (rounded) or a count; at least one sample must be
        left for training.
    seed : int, optional
        Seed of the shuffle.
    shuffle : bool, default True
        Shuffle before splitting (else the splits are consecutive: train, val, test).

    Returns
    -------
    X_train, X_val, X_test, y_train, y_val, y_test : ndarray
    """
    op = "train_val_test_split"
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim == 0 or y.ndim != 1 or len(y) != len(X):
        raise ValueError(f"{op}: X, y: expected one label per sample, got shapes {X.shape} and {y.shape}")
    n = len(X)
    n_val, n_test = _split_count(val_size, n, op, "val_size"), _split_count(test_size, n, op, "test_size")
    if n_val + n_test >= n:
        raise ValueError(f"{op}: val_size, test_size: expected to leave a training sample of {n}, "
                         f"got {n_val} + {n_test}")
    order = np.arange(n)
    if _args.boolean(shuffle, op, "shuffle"):
        order = np.random.default_rng(_args.seed(seed, op)).permutation(n)
    tr, va, te = np.split(order, [n - n_val - n_test, n - n_test])
    return X[tr], X[va], X[te], y[tr], y[va], y[te]


def cross_val_score(model, X, y, folds=5, seed=None):
    """Score of the model on each of k folds, trained on the others (k-fold CV).

    Parameters
    ----------
    model : estimator
        Anything with fit(X, y) and score(X, y); each fold trains a deep copy.
    X : array_like, shape (n_samples, ...)
    y : array_like, shape (n_samples,)
    folds : int, default 5
        At least 2 and at most n_samples; the first n_samples % folds folds are one
        sample larger.
    seed : int, optional
        Shuffle the samples with this seed before folding (default: consecutive folds).

    Returns
    -------
    ndarray of float64, shape (folds,)
    """
    op = "cross_val_score"
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim == 0 or y.ndim != 1 or len(y) != len(X):
        raise ValueError(f"{op}: X, y: expected one label per sample, got shapes {X.shape} and {y.shape}")
    folds = _args.positive(folds, op, "folds", low=2)
    if folds > len(X):
        raise ValueError(f"{op}: folds: expected at most n_samples = {len(X)}, got {folds}")
    seed = _args.seed(seed, op)
    order = np.arange(len(X)) if seed is None else np.random.default_rng(seed).permutation(len(X))
    scores = []
    for held in np.array_split(order, folds):
        train = np.setdiff1d(order, held, assume_unique=True)
        fitted = copy.deepcopy(model).fit(X[train], y[train])
        scores.append(fitted.score(X[held], y[held]))
    return np.asarray(scores, dtype=np.float64)
