"""Host execution of the CUDA kernels: cuda/*.cu compiled as C++ with shim.h and run on
the CPU, behind the interface of cupy.RawModule.

    module = host_module("activation")          # compiles cuda/activation.cu, or loads it
    kernel = module.get_function("relu_forward_f32")
    kernel((blocks,), (256,), (x, y, np.int64(n)))   # as cupy.RawKernel

Each .cu is one translation unit and one shared library, like one RawModule per family
on the GPU: shim.h, the .cu, and a generated host_launch_<name> / host_signature_<name>
pair per `extern "C" __global__` kernel, cached under build/cuda_host/ keyed by a hash of
the sources and loaded with ctypes. A family that does not compile fails only its tests.

A launch is stricter than CuPy's, to catch backend bugs that a GPU would not report:
arguments must be C-contiguous ndarrays (pointers) and NumPy scalars whose types match
the kernel's parameters exactly; the launch configuration must be one a GPU accepts (no
empty grid); every array is run in a copy between guard zones (NaN as floats, negative as
integers), and a write outside the array, or into an argument the kernel takes as const,
fails the launch.
"""

import ctypes
import fcntl
import hashlib
import os
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHIM = HERE / "shim.h"
SELFTEST = HERE / "selftest.cu"
ROOT = HERE.parent.parent

CXX = os.environ.get("CXX", "g++")
CXXFLAGS = ["-O1", "-std=c++20", "-fPIC", "-pthread", "-Wall", "-Wextra", "-Werror", "-Wno-unused-function"]
GUARD = 256  # bytes of guard zone on each side of every array argument

_KERNEL_RE = re.compile(
    r'extern\s*"C"\s*__cuda_host_global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\('
)

_SCALARS = {
    "f": ctypes.c_float, "d": ctypes.c_double, "b": ctypes.c_int8, "B": ctypes.c_uint8,
    "h": ctypes.c_int16, "H": ctypes.c_uint16, "i": ctypes.c_int32, "I": ctypes.c_uint32,
    "q": ctypes.c_int64, "Q": ctypes.c_uint64, "?": ctypes.c_bool,
}
_DTYPE_CODE = {
    ("f", 4): "f", ("f", 8): "d", ("i", 1): "b", ("u", 1): "B", ("i", 2): "h", ("u", 2): "H",
    ("i", 4): "i", ("u", 4): "I", ("i", 8): "q", ("u", 8): "Q", ("b", 1): "?",
}


def _guarded(nbytes, k):
    """A buffer for nbytes between two guard zones, all filled with the bytes (k, 255, 255,
    255) repeated: NaN as float32 and float64, negative as an integer, and different for
    each argument k (a kernel that copies out of bounds copies a pattern that differs)."""
    n = 2 * GUARD + nbytes
    return np.resize(np.array([k & 0x7F, 255, 255, 255], np.uint8), n)


def _code(dtype):
    return _DTYPE_CODE.get((dtype.kind, dtype.itemsize), "x")


def source_dir():
    """The kernel sources the backend loads (the repository's cuda/ in-tree)."""
    from cnnkit.cuda import kernel_dir

    return kernel_dir()


def build_dir():
    """build/cuda_host/ in the repository, else a temporary directory; CNNKIT_CUDA_HOST_BUILD overrides."""
    env = os.environ.get("CNNKIT_CUDA_HOST_BUILD")
    if env:
        return Path(env)
    if os.access(ROOT, os.W_OK) and (ROOT / "pyproject.toml").is_file():
        return ROOT / "build" / "cuda_host"
    return Path(tempfile.gettempdir()) / "cnnkit-cuda-host"


def kernel_names(cu, sources):
    """The `extern "C" __global__` kernels of one .cu, after the preprocessor (macros
    generate most of them)."""
    out = subprocess.run(
        [CXX, "-E", "-P", "-x", "c++", "-std=c++20", "-D__global__=__cuda_host_global__",
         "-DCNNKIT_CUDA_HOST=1", "-I", str(sources), str(cu)],
        check=True, capture_output=True, text=True,
    ).stdout
    return _KERNEL_RE.findall(out)


def _digest(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def _compiler_id():
    return subprocess.run([CXX, "--version"], check=True, capture_output=True, text=True).stdout


def build(cu, sources=None, out=None):
    """Compiles one .cu (or finds it cached) into a shared library of its own; returns
    (library path, kernel names). A compile error raises RuntimeError with the log."""
    cu = Path(cu)
    sources = Path(sources or source_dir())
    out = Path(out or build_dir())
    out.mkdir(parents=True, exist_ok=True)
    headers = b"".join(p.name.encode() + p.read_bytes() for p in sorted(sources.glob("*.cuh")))
    key = _digest(_compiler_id(), CXXFLAGS, SHIM.read_bytes(), headers, Path(__file__).read_bytes(),
                  cu.name, cu.read_bytes())
    lib = out / f"{cu.stem}-{key}.so"
    names_file = lib.with_suffix(".names")
    with open(out / f".{cu.stem}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (lib.is_file() and names_file.is_file()):
            names = kernel_names(cu, sources)
            cpp = lib.with_suffix(".cpp")
            cpp.write_text(
                f'#include "{SHIM}"\n#include "{cu}"\n' + "".join(f"CUDA_HOST_EXPORT({n})\n" for n in names)
            )
            tmp = lib.with_suffix(f".{os.getpid()}.tmp")
            cmd = [CXX, *CXXFLAGS, "-shared", "-I", str(sources), str(cpp), "-o", str(tmp)]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode:
                raise RuntimeError(f"host compile of {cu.name} failed:\n{r.stderr}")
            os.replace(tmp, lib)
            names_file.write_text("".join(f"{n}\n" for n in names))
    return lib, names_file.read_text().split()


_modules = {}


def host_module(family):
    """The process's HostModule of cuda/<family>.cu ("selftest": tests/cuda_host/selftest.cu),
    built once: a drop-in for the backend's loader, as cnnkit.cuda's raw_module."""
    mod = _modules.get(family)
    if mod is None:
        cu = SELFTEST if family == "selftest" else Path(source_dir()) / f"{family}.cu"
        mod = _modules[family] = HostModule(cu)
    return mod


class HostModule:
    """cupy.RawModule's interface over the host build of one .cu file.

    launches records (name, grid, block, shared_mem) of every launch, for tests that
    check what the backend launched.
    """

    def __init__(self, cu, sources=None, out=None):
        path, names = build(cu, sources, out)
        self._lib = ctypes.CDLL(str(path))
        self.names = tuple(names)
        self.launches = []
        self._functions = {}

    def get_function(self, name):
        if name not in self._functions:
            if name not in self.names:
                raise AttributeError(f"no kernel {name!r} in this module (kernels: {', '.join(self.names)})")
            self._functions[name] = HostFunction(self, name)
        return self._functions[name]


def _dims(v, what):
    v = (v,) if isinstance(v, (int, np.integer)) else tuple(v)
    if not 1 <= len(v) <= 3 or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in v):
        raise TypeError(f"{what}: expected 1 to 3 ints, got {v!r}")
    return (ctypes.c_uint * 3)(*(list(map(int, v)) + [1, 1])[:3]), tuple(map(int, v))


class HostFunction:
    """One kernel; called as cupy.RawKernel: kernel(grid, block, args, shared_mem=0)."""

    def __init__(self, module, name):
        self.module = module
        self.name = name
        lib = module._lib
        self._launch = getattr(lib, f"host_launch_{name}")
        self._launch.restype = ctypes.c_int
        self._launch.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_ulonglong,
                                 ctypes.c_char_p, ctypes.c_ulonglong]
        sig = getattr(lib, f"host_signature_{name}")
        sig.restype = ctypes.c_char_p
        text = sig().decode()
        self.params = tuple(text.split(",")) if text else ()
        if any("x" in p for p in self.params):
            raise TypeError(f"{name}: a parameter type the host shim cannot pass ({text})")

    def __call__(self, grid, block, args, shared_mem=0):
        name = self.name
        g, gv = _dims(grid, f"{name}: grid")
        b, bv = _dims(block, f"{name}: block")
        args = tuple(args)
        if len(args) != len(self.params):
            raise TypeError(f"{name}: expected {len(self.params)} arguments, got {len(args)}")
        keep, ptrs, arrays, buffers, buffers_index = [], [], [], {}, {}
        for i, (param, a) in enumerate(zip(self.params, args)):
            where = f"{name}: argument {i} ({param})"
            if param[0] in "pP":
                if not isinstance(a, np.ndarray):
                    raise TypeError(f"{where}: expected an ndarray, got {type(a).__name__}")
                if _code(a.dtype) != param[1] and not (param[1] in "bB" and a.dtype == np.bool_):
                    raise TypeError(f"{where}: expected an array of {param[1]!r} elements, got dtype {a.dtype}")
                if not a.flags.c_contiguous:
                    raise ValueError(f"{where}: expected a C-contiguous array (a kernel sees only its pointer)")
                if param[0] == "p" and not a.flags.writeable:
                    raise ValueError(f"{where}: the kernel writes to a read-only array")
                key = (a.ctypes.data, a.nbytes)
                buf = buffers.get(key)
                if buf is None:  # the same memory twice (an in-place kernel) shares one copy
                    if any(np.shares_memory(a, other) for other, _ in arrays):
                        raise ValueError(f"{where}: overlaps another argument only in part")
                    buf = _guarded(a.nbytes, i)
                    buf[GUARD : GUARD + a.nbytes] = a.reshape(-1).view(np.uint8)
                    buffers[key] = buf
                    buffers_index[id(buf)] = i
                arrays.append((a, (i, param, buf)))
                c = ctypes.c_void_p(buf.ctypes.data + GUARD)
            else:
                if not isinstance(a, np.generic):
                    raise TypeError(
                        f"{where}: expected a NumPy scalar (np.int64, np.float32, ...), got {type(a).__name__}"
                    )
                if _code(a.dtype) != param:
                    raise TypeError(f"{where}: expected a {param!r} scalar, got {a.dtype}")
                c = _SCALARS[param](a.item())
            keep.append(c)
            ptrs.append(ctypes.addressof(c))
        argv = (ctypes.c_void_p * max(1, len(ptrs)))(*ptrs)
        err = ctypes.create_string_buffer(512)
        self.module.launches.append((name, gv, bv, int(shared_mem)))
        if self._launch(g, b, argv, int(shared_mem), err, len(err)):
            raise RuntimeError(f"{name}: launch failed: {err.value.decode()}")
        written = {id(buf) for _, (_, param, buf) in arrays if param[0] == "p"}
        for a, (i, param, buf) in arrays:
            fill = _guarded(a.nbytes, buffers_index[id(buf)])
            if not (np.array_equal(buf[:GUARD], fill[:GUARD]) and np.array_equal(buf[GUARD + a.nbytes :], fill[GUARD + a.nbytes :])):
                raise AssertionError(f"{name}: wrote outside argument {i} ({param}, {a.nbytes} bytes)")
            data = buf[GUARD : GUARD + a.nbytes]
            if param[0] == "P":
                if id(buf) in written:
                    continue
                if not np.array_equal(data, a.reshape(-1).view(np.uint8)):
                    raise AssertionError(f"{name}: wrote to argument {i}, which it takes as const")
            else:
                a.reshape(-1).view(np.uint8)[:] = data


def error_of(fn, *args):
    """(type, message) of the error fn(*args) raises, to compare the backend's errors
    with the CPU's; the calling test fails if fn returns."""
    import pytest

    try:
        fn(*args)
    except (TypeError, ValueError, IndexError) as e:
        return type(e), str(e)
    pytest.fail(f"{fn} accepted {args!r}")
