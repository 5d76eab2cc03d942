"""The CUDA sources compile for the GPU, without one.

- nvcc: every cuda/*.cu (and the test kernels of tests/cuda_host/selftest.cu) compiles
  with -std=c++17 for sm_80 and sm_90 (one nvcc run per file, both targets) with
  warnings as errors, and its kernels are exactly the ones the host build found (so
  the host tests run every kernel). Skipped where nvcc is absent.
- NVRTC: the source the backend hands to cupy.RawModule (includes inlined), with the
  backend's options plus the ones CuPy adds, compiles through cupy.cuda.nvrtc for both
  targets to binaries that hold every kernel, with an empty log. NVRTC needs no driver: this runs wherever CuPy and an
  NVRTC library (the nvidia-cuda-nvrtc-cu12 wheel) are installed; skipped otherwise.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import cuda_host
from cnnkit.cuda import _loader

ARCHS = ("80", "90")
SOURCES = sorted(Path(_loader.kernel_dir()).glob("*.cu")) + [cuda_host.SELFTEST]
IDS = [p.name for p in SOURCES]
NVCC = shutil.which("nvcc") or ("/usr/local/bin/nvcc" if os.access("/usr/local/bin/nvcc", os.X_OK) else None)


def test_cuda_sources_exist():
    assert [p.name for p in SOURCES if p.parent == Path(_loader.kernel_dir())], "no cuda/*.cu"
    assert (Path(_loader.kernel_dir()) / "common.cuh").is_file()


@pytest.fixture(scope="module")
def nvcc_builds(tmp_path_factory):
    """Starts every nvcc compile at once (2 at a time); path -> (returncode, log, kernel names)."""
    if NVCC is None:
        pytest.skip("nvcc is not installed")
    out = tmp_path_factory.mktemp("nvcc")
    gencode = [f"-gencode=arch=compute_{a},code=[sm_{a},compute_{a}]" for a in ARCHS]
    pending = list(SOURCES)
    running, results = [], {}
    while pending or running:
        while pending and len(running) < max(2, os.cpu_count() or 1):
            src = pending.pop(0)
            obj = out / f"{src.stem}.o"
            cmd = [NVCC, "-std=c++17", *gencode, "--Werror", "all-warnings", "-I", str(_loader.kernel_dir()),
                   "-c", str(src), "-o", str(obj)]
            running.append((src, obj, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
        src, obj, proc = running.pop(0)
        log = proc.communicate()[0]
        names = None
        if proc.returncode == 0:
            nm = subprocess.run(["nm", "--defined-only", str(obj)], check=True, capture_output=True, text=True).stdout
            # extern "C" kernels leave their host stubs under their plain names
            names = sorted(re.findall(r"^\w+ T ([A-Za-z]\w*)$", nm, re.M))
        results[src] = (proc.returncode, log, names)
    return results


@pytest.mark.parametrize("src", SOURCES, ids=IDS)
def test_cuda_nvcc_compiles_sm80_sm90_without_warnings(src, nvcc_builds):
    rc, log, names = nvcc_builds[src]
    assert rc == 0 and not log.strip(), f"nvcc {src.name}:\n{log}"
    assert names == sorted(cuda_host.kernel_names(src, _loader.kernel_dir())), (
        "the host build parses other kernels than nvcc compiled (declare each as "
        '`extern "C" __global__ void name(`)'
    )


@pytest.fixture(scope="module")
def nvrtc():
    pytest.importorskip("cupy")
    try:
        from cupy.cuda import nvrtc

        nvrtc.getVersion()
    except Exception as e:  # no NVRTC library
        pytest.skip(f"NVRTC is not available: {e}")
    return nvrtc


def cupy_options(arch):
    """The backend's options as CuPy completes them for a RawModule on an sm_<arch> device."""
    try:
        from cupy._core.core import assemble_cupy_compiler_options

        options = tuple(assemble_cupy_compiler_options(_loader.OPTIONS))
    except Exception:  # another CuPy version: the backend's own options are what matters
        options = _loader.OPTIONS
    return options + ("-ftz=true", f"-arch=sm_{arch}", "--device-as-default-execution-space")


def nvrtc_compile(nvrtc, source, name, options):
    prog = nvrtc.createProgram(source, name, (), ())
    try:
        try:
            nvrtc.compileProgram(prog, options)
        except nvrtc.NVRTCError:
            pytest.fail(f"NVRTC {name} {' '.join(options)}:\n{nvrtc.getProgramLog(prog)}")
        log = nvrtc.getProgramLog(prog).strip("\0 \n")
        assert not log, f"NVRTC {name} warns:\n{log}"
        return nvrtc.getCUBIN(prog)
    finally:
        nvrtc.destroyProgram(prog)


@pytest.mark.parametrize("src", SOURCES, ids=IDS)
def test_cuda_nvrtc_compiles_backend_source(src, nvrtc):
    if src.parent == Path(_loader.kernel_dir()):
        source = _loader.module_source(src.stem)
    else:
        source = _loader.expand_includes(src, [_loader.kernel_dir()])
    assert not re.search(r"^\s*#\s*include", source, re.M), "NVRTC has no system headers"
    for arch in ARCHS:
        cubin = nvrtc_compile(nvrtc, source, src.name, cupy_options(arch))
        assert len(cubin) > 0
        for name in cuda_host.kernel_names(src, _loader.kernel_dir()):
            assert name.encode() in cubin, f"{name} is missing from the sm_{arch} binary"


def test_cuda_sources_ship_in_the_sdist(tmp_path, monkeypatch):
    """The wheel installs cuda/*.cu and *.cuh to cnnkit/cuda/kernels (CMakeLists.txt);
    the sdist must carry them to build it."""
    build = pytest.importorskip("scikit_build_core.build")
    root = Path(__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file() or Path(_loader.kernel_dir()) != root / "cuda":
        pytest.skip("not running from a source tree")
    monkeypatch.chdir(root)
    import tarfile

    name = build.build_sdist(str(tmp_path))
    with tarfile.open(tmp_path / name) as tar:
        top = name[: -len(".tar.gz")]
        members = {m.name[len(top) + 1 :] for m in tar.getmembers() if m.isfile()}
    tracked = subprocess.run(["git", "ls-files", "cuda"], cwd=root, capture_output=True, text=True).stdout.split()
    for f in tracked or [f"cuda/{p.name}" for p in SOURCES if p.parent == root / "cuda"]:
        if f.endswith((".cu", ".cuh")):
            assert f in members, f
    assert "tests/cuda_host/shim.h" in members
    assert "install(DIRECTORY cuda/ DESTINATION cnnkit/cuda/kernels" in (root / "CMakeLists.txt").read_text()
