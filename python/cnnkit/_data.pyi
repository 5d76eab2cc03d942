# Types of the Cython module cnnkit._data (src/_data.pyx); see cnnkit/data.py.
from typing import Tuple

import numpy as np
from numpy.typing import NDArray

IDX_TYPES: dict[int, str]
IDX_MAX_DIMS: int

def counter_bits(seed: int, counters: NDArray[np.uint64]) -> NDArray[np.uint64]: ...
def idx_header(raw: bytes, where: str) -> Tuple[int, Tuple[int, ...], int]: ...
def decode_idx(raw: bytes, where: str, magic: int = ..., what: str = ..., unit: bool = ...) -> np.ndarray: ...
def cifar_records(size: int, where: str) -> int: ...
def decode_cifar(
    raw: bytes, where: str, images: NDArray[np.uint8] | NDArray[np.float32], labels: NDArray[np.int64]
) -> None: ...
def augment(
    images: NDArray[np.uint8], ch: int, cw: int, ph: int, pw: int, flip: bool,
    mean: NDArray[np.float64], std: NDArray[np.float64], seed: int,
) -> NDArray[np.float32]: ...
