"""The package's random stream: parameter initialisation, dropout masks, shuffling.

One NumPy Generator serves the whole package; `manual_seed` resets its state in
place, so code that holds a reference to it stays in step.
"""

import numbers

import numpy as np

_generator = np.random.Generator(np.random.PCG64())


def manual_seed(seed):
    """Seed cnnkit's random stream (initialisation, dropout, unseeded DataLoaders).

    Parameters
    ----------
    seed : int or None
        A non-negative int (any size; NumPy integer scalars too). None seeds from the
        operating system's entropy.

    Raises
    ------
    TypeError
        seed is neither an int nor None (a bool or a float included).
    ValueError
        seed is negative.
    """
    if seed is not None:
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
            raise TypeError(f"manual_seed: seed: expected a non-negative int, got {type(seed).__name__}")
        seed = int(seed)
        if seed < 0:
            raise ValueError(f"manual_seed: seed: expected a non-negative int, got {seed}")
    _generator.bit_generator.state = np.random.PCG64(seed).state


def generator():
    """The package's Generator."""
    return _generator


def get_state():
    return _generator.bit_generator.state


def set_state(state):
    _generator.bit_generator.state = state


def next_seed():
    """A fresh 63-bit seed for a kernel that takes its own seed (dropout)."""
    return int(_generator.integers(0, 2**63 - 1))


def skip(seed, count):
    """The dropout seed whose draw i is draw i + count of seed: the kernels' counter-based
    generator (splitmix64 in csrc/common/counter_rng.h and cuda/norm.cu) draws seed + (i + 1) * gamma."""
    return (seed + count * 0x9E3779B97F4A7C15) % 2**64


def uniform(shape, bound, dtype):
    """U(-bound, bound) of the given shape and dtype, drawn directly in that dtype
    (float32 draws are several times faster than drawing float64 and casting)."""
    values = _generator.random(shape, dtype=dtype)
    values *= 2 * bound
    values -= bound
    return values
