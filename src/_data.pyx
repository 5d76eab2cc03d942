# cython: language_level=3, cdivision=True, initializedcheck=False
"""Kernels of cnnkit.data: IDX and CIFAR-10 decoding (with the files' validation) and
augment's crop/flip/normalise pass. Private: cnnkit/data.py validates the arguments
(augment's, the paths) and reads the files' bytes; the formats are validated here.

Parallel loops run on cnnkit's pool through the core's C ABI (_cnnkit_abi.pxd). Each
item's result depends only on its index (augment's draws are keyed by the sample
index), so one input gives one result on any number of threads. The def entry points
take typed memoryviews, whose extents prove the indices the nogil loops use on raw
pointers.
"""

from libc.stdint cimport int64_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy

from _cnnkit_abi cimport CNNKIT_OK, cnnkit_c_abi, cnnkit_range_fn, load_abi

import numpy as np

cdef extern from *:
    """
    #include <stdint.h>
    /* floor(h * r / 2^64): a 64-bit draw mapped onto [0, r) (bias below r / 2^64). */
    static inline uint64_t cnnkit_below(uint64_t h, uint64_t r) {
      return (uint64_t)(((unsigned __int128)h * r) >> 64);
    }
    """
    uint64_t cnnkit_below(uint64_t h, uint64_t r) noexcept nogil
    uint16_t __builtin_bswap16(uint16_t) noexcept nogil
    uint32_t __builtin_bswap32(uint32_t) noexcept nogil
    uint64_t __builtin_bswap64(uint64_t) noexcept nogil

ctypedef fused pixel:
    unsigned char
    float

cdef const cnnkit_c_abi* _abi = load_abi()

cdef enum:
    # Elements (or output values) below which a pool task is not worth a thread.
    GRAIN = 1 << 16
    CIFAR_PIXELS = 3 * 32 * 32
    CIFAR_RECORD = 1 + CIFAR_PIXELS
    CIFAR_CLASSES = 10

# IDX type code -> the dtype of its values in native byte order.
IDX_TYPES = {0x08: "u1", 0x09: "i1", 0x0B: "i2", 0x0C: "i4", 0x0D: "f4", 0x0E: "f8"}
# Most dims an IDX header may give: NumPy's limit on every version cnnkit supports.
IDX_MAX_DIMS = 32


cdef int _run(int64_t n, int64_t grain, cnnkit_range_fn fn, void* ctx) except -1:
    cdef int rc
    with nogil:
        rc = _abi.parallel_for(n, grain, fn, ctx)
    if rc != CNNKIT_OK:
        raise RuntimeError("cnnkit's thread pool failed to run a task")
    return 0


# ---------------------------------------------------------------------------
# The counter-based generator of dropout's masks, from the core's one home of it: a
# sample's draws are known without drawing those of the samples before it.


cdef extern from "common/counter_rng.h" nogil:
    uint64_t splitmix64 "cnnkit_splitmix64"(uint64_t seed, uint64_t i)


def counter_bits(uint64_t seed, const uint64_t[::1] counters):
    """splitmix64(seed, i) for each counter i (the tests check it against dropout's masks)."""
    out = np.empty(counters.shape[0], dtype=np.uint64)
    cdef uint64_t[::1] o = out
    cdef Py_ssize_t k
    for k in range(counters.shape[0]):
        o[k] = splitmix64(seed, counters[k])
    return out


# ---------------------------------------------------------------------------
# IDX: a header of two zero bytes, a type code, the number of dims and each dim as a
# big-endian uint32; then the big-endian data.


def idx_header(const unsigned char[::1] raw, str where):
    """(type code, shape, header size) of an IDX file's bytes, checked against the
    file's size; ValueError starting with `where` (the op and the file) otherwise."""
    cdef Py_ssize_t size = raw.shape[0], header, d
    if size < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        found = bytes([raw[d] for d in range(min(size, 4))]).hex() or "an empty file"
        raise ValueError(
            f"{where}: not an IDX file (expected the magic number 0x0000TTDD with type TT one of "
            f"08, 09, 0b, 0c, 0d, 0e and DD dims, got {found})"
        )
    code, ndim = raw[2], raw[3]
    if ndim > IDX_MAX_DIMS:
        raise ValueError(f"{where}: expected at most {IDX_MAX_DIMS} dims in the IDX header, got {ndim}")
    header = 4 + 4 * ndim
    if size < header:
        raise ValueError(f"{where}: truncated header (expected {header} bytes for {ndim} dims, got {size})")
    dims = []
    count = 1
    for d in range(ndim):
        dims.append((<uint32_t>raw[4 + 4 * d] << 24) | (<uint32_t>raw[5 + 4 * d] << 16)
                    | (<uint32_t>raw[6 + 4 * d] << 8) | raw[7 + 4 * d])
        count *= dims[d]  # Python ints: no wrap-around
    shape = tuple(dims)
    expected = header + count * np.dtype(IDX_TYPES[code]).itemsize
    if size != expected:
        what = "truncated" if size < expected else "oversized"
        raise ValueError(
            f"{where}: {what}: expected {expected} bytes for shape {shape} of type {np.dtype(IDX_TYPES[code])}, "
            f"got {size}"
        )
    return code, shape, header


ctypedef struct SwapCtx:
    const unsigned char* src
    unsigned char* dst
    int itemsize
    bint unit


cdef void _swap_cb(void* ctx, int64_t b, int64_t e) noexcept nogil:
    """Elements [b, e) from big-endian to native order (or uint8 to float32 / 255)."""
    cdef SwapCtx* c = <SwapCtx*>ctx
    cdef int64_t i
    cdef uint16_t v16
    cdef uint32_t v32
    cdef uint64_t v64
    cdef float* f
    if c.unit:
        f = <float*>c.dst
        for i in range(b, e):
            f[i] = <float>c.src[i] / <float>255
    elif c.itemsize == 1:
        memcpy(c.dst + b, c.src + b, <size_t>(e - b))
    elif c.itemsize == 2:
        for i in range(b, e):
            memcpy(&v16, c.src + 2 * i, 2)
            v16 = __builtin_bswap16(v16)
            memcpy(c.dst + 2 * i, &v16, 2)
    elif c.itemsize == 4:
        for i in range(b, e):
            memcpy(&v32, c.src + 4 * i, 4)
            v32 = __builtin_bswap32(v32)
            memcpy(c.dst + 4 * i, &v32, 4)
    else:
        for i in range(b, e):
            memcpy(&v64, c.src + 8 * i, 8)
            v64 = __builtin_bswap64(v64)
            memcpy(c.dst + 8 * i, &v64, 8)


def decode_idx(const unsigned char[::1] raw, str where, int magic=-1, str what="", bint unit=False):
    """An IDX file's bytes as an array of its shape in native byte order.

    magic >= 0: the file must have that magic number (type code and dims; `what`
    describes it in the error). unit: a uint8 file comes out as float32 pixel / 255.
    """
    code, shape, header = idx_header(raw, where)
    cdef Py_ssize_t start = header
    found = (code << 8) | len(shape)
    if magic >= 0 and found != magic:
        raise ValueError(f"{where}: expected {what} (magic number {magic:#010x}), got magic number {found:#010x}")
    if unit and code != 0x08:
        raise ValueError(f"{where}: expected uint8 pixels (type code 0x08), got type code {code:#04x}")
    out = np.empty(shape, dtype=np.float32 if unit else IDX_TYPES[code])
    cdef unsigned char[::1] o = out.reshape(-1).view(np.uint8)
    cdef SwapCtx c
    cdef int64_t n = out.size
    if n == 0:
        return out
    c.src = &raw[start]
    c.dst = &o[0]
    c.itemsize = out.itemsize
    c.unit = unit
    _run(n, GRAIN, _swap_cb, &c)
    return out


# ---------------------------------------------------------------------------
# CIFAR-10: records of one label byte and 3 x 32 x 32 pixel bytes (planes R, G, B).


ctypedef struct CifarCtx:
    const unsigned char* src
    void* images
    int64_t* labels
    bint unit


cdef void _cifar_task(CifarCtx* c, pixel* images, int64_t b, int64_t e) noexcept nogil:
    cdef int64_t r, k
    cdef const unsigned char* rec
    cdef pixel* out
    for r in range(b, e):
        rec = c.src + r * CIFAR_RECORD
        c.labels[r] = rec[0]
        out = images + r * CIFAR_PIXELS
        if pixel is float:
            for k in range(CIFAR_PIXELS):
                out[k] = <float>rec[1 + k] / <float>255
        else:
            memcpy(out, rec + 1, CIFAR_PIXELS)


cdef void _cifar_cb(void* ctx, int64_t b, int64_t e) noexcept nogil:
    cdef CifarCtx* c = <CifarCtx*>ctx
    if c.unit:
        _cifar_task(c, <float*>c.images, b, e)
    else:
        _cifar_task(c, <unsigned char*>c.images, b, e)


def cifar_records(Py_ssize_t size, str where):
    """The number of records in a CIFAR-10 batch file of `size` bytes; ValueError for
    an empty file or one that is not whole records."""
    if size == 0:
        raise ValueError(f"{where}: truncated: expected records of {CIFAR_RECORD} bytes (label + 3x32x32), got 0 bytes")
    if size % CIFAR_RECORD:
        raise ValueError(
            f"{where}: expected a multiple of {CIFAR_RECORD} bytes (label + 3x32x32), got {size} "
            f"({size // CIFAR_RECORD} records and {size % CIFAR_RECORD} bytes over)"
        )
    return size // CIFAR_RECORD


def decode_cifar(const unsigned char[::1] raw, str where, pixel[:, ::1] images, int64_t[::1] labels):
    """A batch file's records into images (n, 3072: uint8, or float32 pixel / 255) and
    labels (n,); ValueError naming the first label above 9."""
    cdef int64_t n = cifar_records(raw.shape[0], where)
    cdef int64_t r
    cdef CifarCtx c
    if images.shape[0] != n or images.shape[1] != CIFAR_PIXELS or labels.shape[0] != n:
        raise ValueError(
            f"{where}: expected images ({n}, {CIFAR_PIXELS}) and labels ({n},) for its {n} records, "
            f"got ({images.shape[0]}, {images.shape[1]}) and ({labels.shape[0]},)"
        )
    c.src = &raw[0]
    c.images = &images[0, 0]
    c.labels = &labels[0]
    c.unit = pixel is float
    _run(n, max(1, GRAIN // CIFAR_RECORD), _cifar_cb, &c)
    for r in range(n):
        if labels[r] >= CIFAR_CLASSES:
            raise ValueError(
                f"{where}: expected labels 0 to {CIFAR_CLASSES - 1}, got {labels[r]} in record {r} "
                f"(byte {r * CIFAR_RECORD})"
            )


# ---------------------------------------------------------------------------
# augment: per sample, a crop window of the zero-padded image at a random offset and
# an optional mirror, each output value a per-channel table entry (x/255 - mean)/std.


ctypedef struct AugCtx:
    const unsigned char* src
    float* dst
    const float* table  # channels x 256
    int64_t channels, h, w, ch, cw, ph, pw
    uint64_t rows, cols  # offsets to draw from: h + 2ph - ch + 1, w + 2pw - cw + 1
    uint64_t seed
    bint flip


cdef void _augment_cb(void* ctx, int64_t b, int64_t e) noexcept nogil:
    cdef AugCtx* c = <AugCtx*>ctx
    cdef int64_t i, k, r, j, y, y0, x0, lo, hi, plane = c.h * c.w
    cdef bint mirror
    cdef const float* t
    cdef const unsigned char* row
    cdef float* o
    cdef float pad
    for i in range(b, e):
        # Three counters per sample: row offset, column offset, flip.
        y0 = <int64_t>cnnkit_below(splitmix64(c.seed, 3 * <uint64_t>i), c.rows) - c.ph
        x0 = <int64_t>cnnkit_below(splitmix64(c.seed, 3 * <uint64_t>i + 1), c.cols) - c.pw
        mirror = c.flip and (splitmix64(c.seed, 3 * <uint64_t>i + 2) >> 63) != 0
        # Output columns [lo, hi) read the image; the rest read the zero padding.
        if mirror:
            # Output column j reads window column cw - 1 - j, image column x0 + cw - 1 - j.
            lo = max(<int64_t>0, x0 + c.cw - c.w)
            hi = min(c.cw, x0 + c.cw)
        else:
            lo = max(<int64_t>0, -x0)
            hi = min(c.cw, c.w - x0)
        if hi < lo:
            hi = lo
        o = c.dst + i * c.channels * c.ch * c.cw
        for k in range(c.channels):
            t = c.table + 256 * k
            pad = t[0]
            for r in range(c.ch):
                y = y0 + r
                if y < 0 or y >= c.h:
                    for j in range(c.cw):
                        o[j] = pad
                else:
                    for j in range(lo):
                        o[j] = pad
                    if hi > lo:
                        row = c.src + (i * c.channels + k) * plane + y * c.w
                        if mirror:
                            for j in range(lo, hi):
                                o[j] = t[row[x0 + c.cw - 1 - j]]
                        else:
                            for j in range(lo, hi):
                                o[j] = t[row[x0 + j]]
                    for j in range(hi, c.cw):
                        o[j] = pad
                o += c.cw


def augment(const unsigned char[:, :, :, ::1] images, int64_t ch, int64_t cw, int64_t ph, int64_t pw,
            bint flip, const double[::1] mean, const double[::1] std, uint64_t seed):
    """float32 (n, channels, ch, cw) crops (and flips) of the padded images, each value
    (x/255 - mean)/std of its channel computed in float64. The arguments are checked
    in cnnkit/data.py: 1 <= ch <= h + 2ph, 1 <= cw <= w + 2pw, one mean and std per channel."""
    cdef int64_t n = images.shape[0], channels = images.shape[1], k, v
    out = np.empty((n, channels, ch, cw), dtype=np.float32)
    table = np.empty((channels, 256), dtype=np.float32)
    cdef float[:, ::1] tv = table
    cdef float[:, :, :, ::1] ov = out
    cdef AugCtx c
    for k in range(channels):
        for v in range(256):
            tv[k, v] = <float>((<double>v / 255.0 - mean[k]) / std[k])
    if out.size == 0:
        return out
    c.src = &images[0, 0, 0, 0] if images.size else NULL  # an empty image is all padding
    c.dst = &ov[0, 0, 0, 0]
    c.table = &tv[0, 0]
    c.channels, c.h, c.w = channels, images.shape[2], images.shape[3]
    c.ch, c.cw, c.ph, c.pw = ch, cw, ph, pw
    c.rows = <uint64_t>(c.h + 2 * ph - ch) + 1
    c.cols = <uint64_t>(c.w + 2 * pw - cw) + 1
    c.seed = seed
    c.flip = flip
    _run(n, max(1, GRAIN // (channels * ch * cw)), _augment_cb, &c)
    return out
