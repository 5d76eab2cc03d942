# Types of the Cython module cnnkit._classic (src/_classic.pyx); see cnnkit/classic.py.
from typing import Optional, Tuple

import numpy as np
from numpy.typing import NDArray

METRIC_L1: int
METRIC_L2: int
METRIC_SQEUCLIDEAN: int
LOSS_SOFTMAX: int
LOSS_SVM: int

def row_sqnorms(x: NDArray[np.floating]) -> NDArray[np.float64]: ...
def pairwise(a: NDArray[np.floating], b: NDArray[np.floating], metric: int, out: NDArray[np.floating]) -> None: ...
def kneighbors(
    queries: NDArray[np.floating],
    train: NDArray[np.floating],
    train_sqnorms: NDArray[np.float64],
    k: int,
    metric: int,
) -> Tuple[NDArray[np.floating], NDArray[np.int64]]: ...
def sqdist_to_assigned(
    x: NDArray[np.floating], centers: NDArray[np.floating], labels: NDArray[np.int64]
) -> NDArray[np.float64]: ...
def assign(
    x: NDArray[np.floating],
    centers: NDArray[np.floating],
    labels: NDArray[np.int64],
    sums: Optional[NDArray[np.float64]] = ...,
    counts: Optional[NDArray[np.int64]] = ...,
) -> int: ...
def lloyd(
    x: NDArray[np.floating], centers: NDArray[np.floating], max_iter: int, tol: float
) -> Tuple[NDArray[np.int64], float, int]: ...
def scores(w: NDArray[np.floating], x: NDArray[np.floating]) -> NDArray[np.floating]: ...
def linear_loss(
    w: NDArray[np.floating],
    b: NDArray[np.floating],
    x: NDArray[np.floating],
    y: NDArray[np.int64],
    reg: float,
    kind: int,
) -> Tuple[float, NDArray[np.floating], NDArray[np.floating]]: ...
def pool_threads_seen(tasks: int) -> int: ...
