"""A threadpoolctl controller for cnnkit's thread pool.

threadpoolctl finds thread pools among the loaded shared libraries by file name and
exported symbols. cnnkit's pool lives in its compiled module _C, which exports
``int cnnkit_get_num_threads(void)`` and ``void cnnkit_set_num_threads(int)`` for
this. cnnkit/__init__.py registers the controller when threadpoolctl (3.0 or later,
which has ``threadpoolctl.register``) is installed, so that
``threadpoolctl.threadpool_limits(1)`` also caps cnnkit, as it caps OpenBLAS and
OpenMP. This module imports threadpoolctl; import it only when that is installed.
"""

import ctypes
import os

import threadpoolctl

from . import _C

__all__ = ["CnnkitController", "register"]

# threadpoolctl matches the lower-cased basename of each loaded library against the
# prefixes; the whole basename of _C (e.g. "_c.cpython-311-x86_64-linux-gnu.so")
# keeps other packages' _C modules (torch's) out even before the symbols are checked.
_FILENAME = os.path.basename(os.path.realpath(_C.__file__)).lower()


class CnnkitController(threadpoolctl.LibController):
    """threadpoolctl's view of cnnkit's thread pool (user_api and internal_api "cnnkit").

    Notes
    -----
    ``threadpool_info()`` lists it; ``threadpool_limits(n)`` and
    ``threadpool_limits(n, user_api="cnnkit")`` set the pool's thread count for the
    duration of the block, as ``cnnkit.set_num_threads(n)`` does, and restore it
    afterwards.
    """

    user_api = "cnnkit"
    internal_api = "cnnkit"
    filename_prefixes = (_FILENAME,)
    check_symbols = ("cnnkit_get_num_threads", "cnnkit_set_num_threads")

    def get_num_threads(self):
        """int: the pool's thread count (cnnkit.get_num_threads())."""
        get = getattr(self.dynlib, "cnnkit_get_num_threads", None)
        if get is None:
            return None
        get.restype = ctypes.c_int
        get.argtypes = ()
        return get()

    def set_num_threads(self, num_threads):
        """Set the pool's thread count (values below 1 count as 1)."""
        set_ = getattr(self.dynlib, "cnnkit_set_num_threads", None)
        if set_ is None:
            return None
        set_.restype = None
        set_.argtypes = (ctypes.c_int,)
        # threadpoolctl may pass anything; the C ABI takes an int.
        n = max(1, min(int(num_threads), 2**31 - 1))
        return set_(n)

    def get_version(self):
        """str: cnnkit's version."""
        from . import __version__

        return __version__


def register():
    """Register CnnkitController with threadpoolctl (once)."""
    if CnnkitController not in getattr(threadpoolctl, "_ALL_CONTROLLERS", ()):
        threadpoolctl.register(CnnkitController)
