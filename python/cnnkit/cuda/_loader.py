"""The kernel sources (cuda/*.cu) and their run-time compilation by CuPy.

One cupy.RawModule per family (cuda/<family>.cu), compiled at first use on each device
and cached; CuPy also caches the binaries on disk, keyed by the source text. Local
includes are inlined here, so that the key covers the headers too.
"""

import re
from pathlib import Path

_HERE = Path(__file__).resolve().parent

# Options of every compile, NVRTC's spelling. CuPy adds -arch for the device and
# -ftz=true (float32 results below FLT_MIN flush to zero on the GPU, unlike the CPU).
OPTIONS = ("-std=c++17",)

_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"[ \t]*$', re.M)
_PRAGMA_ONCE = re.compile(r"^[ \t]*#[ \t]*pragma[ \t]+once[ \t]*$", re.M)


def kernel_dir():
    """Where the .cu/.cuh sources are: cnnkit/cuda/kernels/ in an installed package,
    else the repository's cuda/ (a run from the source tree)."""
    installed = _HERE / "kernels"
    if installed.is_dir():
        return installed
    tree = _HERE.parent.parent.parent / "cuda"
    if tree.is_dir():
        return tree
    raise FileNotFoundError(f"cnnkit.cuda: no kernel sources in {installed} or {tree}")


def families():
    """The kernel families: the stems of cuda/*.cu (activation, pool, ...)."""
    return sorted(p.stem for p in kernel_dir().glob("*.cu"))


def module_source(family):
    """cuda/<family>.cu with its local includes inlined (each header once), as compiled."""
    path = kernel_dir() / f"{family}.cu"
    if not path.is_file():
        raise FileNotFoundError(f"cnnkit.cuda: no kernel source {path}")
    return expand_includes(path)


def expand_includes(path, include_dirs=()):
    """The source at path with its #include "..." files inlined (each once), found beside
    the including file or in include_dirs, with #line directives for the messages."""
    seen = set()

    def find(name, base):
        for d in (base, *map(Path, include_dirs)):
            if (d / name).is_file():
                return (d / name).resolve()
        raise FileNotFoundError(f"cnnkit.cuda: {name}, included by {base}, not found")

    def expand(p):
        text = _PRAGMA_ONCE.sub("", p.read_text())

        def include(m):
            dep = find(m.group(1), p.parent)
            if dep in seen:
                return ""
            seen.add(dep)
            line = text.count("\n", 0, m.end()) + 2
            return f'#line 1 "{m.group(1)}"\n{expand(dep)}\n#line {line} "{p.name}"'

        return _INCLUDE.sub(include, text)

    path = Path(path)
    return f'#line 1 "{path.name}"\n' + expand(path)


_modules = {}


def raw_module(family):
    """The cupy.RawModule of cuda/<family>.cu on the current device (compiled lazily)."""
    import cupy

    key = (cupy.cuda.runtime.getDevice(), family)
    mod = _modules.get(key)
    if mod is None:
        mod = cupy.RawModule(code=module_source(family), options=OPTIONS)
        _modules[key] = mod
    return mod
