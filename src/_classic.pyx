# cython: language_level=3, cdivision=True, initializedcheck=False
"""Kernels of cnnkit.classic: distances, k-nearest-neighbour search, Lloyd's k-means
and the linear classifiers' losses. Private: cnnkit/classic.py validates every
argument (C-contiguous, one dtype, finite, shapes agreeing) before calling here.

Parallel loops run on cnnkit's pool through the core's C ABI (_cnnkit_abi.pxd), and
each splits its work into pieces whose size does not depend on the thread count, so
that one input gives one result on any number of threads.

The def entry points take C-contiguous typed memoryviews, whose extents prove every
index; the nogil kernels then walk raw pointers into those buffers (unchecked), and
Cython's own checks stay on for the few memoryview accesses (a first element's address).
"""

from libc.float cimport DBL_EPSILON, FLT_EPSILON
from libc.math cimport INFINITY, exp, fabs, fabsf, log, nextafter, nextafterf, sqrt
from libc.stdint cimport int64_t
from libc.stdlib cimport calloc, free, malloc

from _cnnkit_abi cimport CNNKIT_OK, CNNKIT_TOO_LARGE, cnnkit_c_abi, cnnkit_range_fn, load_abi

import numpy as np

ctypedef fused floating:
    float
    double

cdef const cnnkit_c_abi* _abi = load_abi()

# Metric codes, as classic.py passes them.
cdef enum:
    L1 = 0
    L2 = 1
    SQEUCLIDEAN = 2
METRIC_L1 = L1
METRIC_L2 = L2
METRIC_SQEUCLIDEAN = SQEUCLIDEAN

cdef enum:
    # Scratch per task: a block of distance rows stays near this size (cache sized).
    BLOCK_BYTES = 1 << 20
    # kNN's blocks of distance rows: at most this many rows and bytes.
    KNN_ROWS = 256
    KNN_BLOCK_BYTES = 8 << 20
    # Columns of the second operand an L1 block transposes at a time.
    L1_COLS = 256
    # Keys of a distance row tested at a time before any is looked at singly.
    SCAN_GROUP = 32
    # Rows per k-means assignment chunk (a GEMM of CHUNK x k x d, then the argmin).
    KMEANS_CHUNK = 256
    # Slots of partial k-means sums (see _slots), and the most memory they may take.
    MAX_SLOTS = 32
    MIN_SLOTS = 8
    SLOT_BYTES = 32 << 20
# Task states, set by a pool thread and read after the loop.
cdef enum:
    FAILED_MEMORY = 1
    FAILED_SIZE = 2


cdef int _check(int rc, int status) except -1:
    if rc == CNNKIT_TOO_LARGE or status == FAILED_SIZE:
        raise ValueError("a dimension exceeds OpenBLAS's 32-bit index range")
    if rc != CNNKIT_OK:
        raise RuntimeError("cnnkit's thread pool failed to run a task")
    if status == FAILED_MEMORY:
        raise MemoryError("cnnkit.classic: out of memory for a task's scratch block")
    return 0


cdef int _run(int64_t n, int64_t grain, cnnkit_range_fn fn, void* ctx, int* status) except -1:
    cdef int rc
    with nogil:
        rc = _abi.parallel_for(n, grain, fn, ctx)
    return _check(rc, status[0])


cdef int _gemm(bint ta, bint tb, int64_t m, int64_t n, int64_t k, floating alpha,
               const floating* a, int64_t lda, const floating* b, int64_t ldb, floating beta,
               floating* c, int64_t ldc) except -1:
    cdef int rc
    with nogil:
        if floating is float:
            rc = _abi.sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        else:
            rc = _abi.dgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    return _check(rc, 0)


cdef inline int _gemm_serial(bint ta, bint tb, int64_t m, int64_t n, int64_t k, floating alpha,
                             const floating* a, int64_t lda, const floating* b, int64_t ldb,
                             floating beta, floating* c, int64_t ldc) noexcept nogil:
    if floating is float:
        return _abi.sgemm_serial(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    else:
        return _abi.dgemm_serial(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)


cdef inline floating _abs(floating v) noexcept nogil:
    if floating is float:
        return fabsf(v)
    else:
        return fabs(v)


cdef inline double _sqdist(const floating* a, const floating* b, int64_t d) noexcept nogil:
    """The squared distance summed directly in float64: where GEMM's form cancels."""
    cdef double s = 0, t
    cdef int64_t f
    for f in range(d):
        t = <double>a[f] - <double>b[f]
        s += t * t
    return s


cdef inline double _norm1(const floating* x, int64_t d) noexcept nogil:
    """Squared norm of one row in float64."""
    cdef double s = 0
    cdef int64_t f
    for f in range(d):
        s += <double>x[f] * <double>x[f]
    return s


cdef inline double _eps(floating dummy) noexcept nogil:
    if floating is float:
        return FLT_EPSILON
    else:
        return DBL_EPSILON


# ---------------------------------------------------------------------------
# L1 blocks: out[r, j] = sum_f |a[r, f] - b[j, f]|, vectorised across j on a
# transposed slice of b (no reassociation needed), four rows sharing each load.


cdef void _l1_block(const floating* a, int64_t rows, const floating* b, int64_t n, int64_t d,
                    floating* out, int64_t ldo, floating* bt, floating* acc) noexcept nogil:
    cdef int64_t j0, w, j, f, r
    cdef floating a0, a1, a2, a3, t
    cdef floating *acc0
    cdef floating *acc1
    cdef floating *acc2
    cdef floating *acc3
    cdef const floating* bp
    cdef const floating* ar
    acc0 = acc
    acc1 = acc + L1_COLS
    acc2 = acc + 2 * L1_COLS
    acc3 = acc + 3 * L1_COLS
    j0 = 0
    while j0 < n:
        w = min(<int64_t>L1_COLS, n - j0)
        for j in range(w):
            for f in range(d):
                bt[f * L1_COLS + j] = b[(j0 + j) * d + f]
        r = 0
        while r + 4 <= rows:
            ar = a + r * d
            for j in range(w):
                acc0[j] = 0
                acc1[j] = 0
                acc2[j] = 0
                acc3[j] = 0
            for f in range(d):
                a0 = ar[f]
                a1 = ar[d + f]
                a2 = ar[2 * d + f]
                a3 = ar[3 * d + f]
                bp = bt + f * L1_COLS
                for j in range(w):
                    t = bp[j]
                    acc0[j] += _abs(a0 - t)
                    acc1[j] += _abs(a1 - t)
                    acc2[j] += _abs(a2 - t)
                    acc3[j] += _abs(a3 - t)
            for j in range(w):
                out[r * ldo + j0 + j] = acc0[j]
                out[(r + 1) * ldo + j0 + j] = acc1[j]
                out[(r + 2) * ldo + j0 + j] = acc2[j]
                out[(r + 3) * ldo + j0 + j] = acc3[j]
            r += 4
        while r < rows:
            ar = a + r * d
            for j in range(w):
                acc0[j] = 0
            for f in range(d):
                a0 = ar[f]
                bp = bt + f * L1_COLS
                for j in range(w):
                    acc0[j] += _abs(a0 - bp[j])
            for j in range(w):
                out[r * ldo + j0 + j] = acc0[j]
            r += 1
        j0 += L1_COLS


cdef int _l1_scratch(int64_t d, size_t itemsize, void** bt, void** acc) noexcept nogil:
    bt[0] = malloc(<size_t>(d if d > 0 else 1) * L1_COLS * itemsize)
    acc[0] = malloc(4 * L1_COLS * itemsize)
    if bt[0] == NULL or acc[0] == NULL:
        free(bt[0])
        free(acc[0])
        return FAILED_MEMORY
    return 0


# ---------------------------------------------------------------------------
# pairwise_distances: row blocks of the output, each finished while in cache.


ctypedef struct PairCtx:
    const void* a
    const void* b
    void* out
    const double* na
    const double* nb
    int64_t m, n, d, rows
    int metric
    bint f64
    double tau
    int status


cdef void _pair_task(PairCtx* c, const floating* a, const floating* b, floating* out,
                     int64_t blk0, int64_t blk1) noexcept nogil:
    cdef int64_t blk, r0, rows, i, j, d = c.d, n = c.n
    cdef double v, scale
    cdef void* bt = NULL
    cdef void* acc = NULL
    cdef floating* o
    if c.metric == L1:
        if _l1_scratch(d, sizeof(floating), &bt, &acc):
            c.status = FAILED_MEMORY
            return
    for blk in range(blk0, blk1):
        r0 = blk * c.rows
        rows = min(c.rows, c.m - r0)
        if c.metric == L1:
            _l1_block(a + r0 * d, rows, b, n, d, out + r0 * n, n, <floating*>bt, <floating*>acc)
            continue
        if _gemm_serial(False, True, rows, n, d, <floating>-2, a + r0 * d, d, b, d, <floating>0,
                        out + r0 * n, n) != CNNKIT_OK:
            c.status = FAILED_SIZE
            return
        for i in range(r0, r0 + rows):
            o = out + i * n
            for j in range(n):
                scale = c.na[i] + c.nb[j]
                v = scale + <double>o[j]
                # Where the norms nearly cancel, GEMM's rounding is no longer small.
                if v <= c.tau * scale:
                    v = _sqdist(a + i * d, b + j * d, d)
                if v < 0:
                    v = 0
                o[j] = <floating>(sqrt(v) if c.metric == L2 else v)
    free(bt)
    free(acc)


cdef void _pair_cb(void* ctx, int64_t b, int64_t e) noexcept nogil:
    cdef PairCtx* c = <PairCtx*>ctx
    if c.f64:
        _pair_task(c, <const double*>c.a, <const double*>c.b, <double*>c.out, b, e)
    else:
        _pair_task(c, <const float*>c.a, <const float*>c.b, <float*>c.out, b, e)


ctypedef struct NormCtx:
    const void* x
    double* out
    int64_t d
    bint f64


cdef void _norm_task(const floating* x, double* out, int64_t d, int64_t b, int64_t e) noexcept nogil:
    cdef int64_t i
    for i in range(b, e):
        out[i] = _norm1(x + i * d, d)


cdef void _norm_cb(void* ctx, int64_t b, int64_t e) noexcept nogil:
    cdef NormCtx* c = <NormCtx*>ctx
    if c.f64:
        _norm_task(<const double*>c.x, c.out, c.d, b, e)
    else:
        _norm_task(<const float*>c.x, c.out, c.d, b, e)


cdef int _grain(int64_t work_per_item) noexcept nogil:
    # Items per task so that a task does at least ~64k operations.
    return <int>max(1, (1 << 16) // max(1, work_per_item))


def row_sqnorms(const floating[:, ::1] x):
    """Squared row norms in float64 (accumulated in float64)."""
    cdef int64_t n = x.shape[0], d = x.shape[1]
    out = np.empty(n, dtype=np.float64)
    cdef double[::1] o = out
    cdef NormCtx c
    cdef int status = 0
    if n == 0:
        return out
    c.x = &x[0, 0]
    c.out = &o[0]
    c.d = d
    c.f64 = floating is double
    _run(n, _grain(d), _norm_cb, &c, &status)
    return out


cdef double _tau(int64_t d, double eps):
    # Recompute where the result is below 2**10 times GEMM's rounding bound.
    return min(0.25, 1024.0 * (d + 2) * eps)


def pairwise(const floating[:, ::1] a, const floating[:, ::1] b, int metric, floating[:, ::1] out):
    """out[i, j] = distance(a[i], b[j]); out is (len(a), len(b)) of a's dtype."""
    cdef int64_t m = a.shape[0], n = b.shape[0], d = a.shape[1]
    cdef PairCtx c
    cdef double[::1] na, nb
    if m == 0 or n == 0:
        return
    c.a = &a[0, 0]
    c.b = &b[0, 0]
    c.out = &out[0, 0]
    c.m, c.n, c.d = m, n, d
    c.metric = metric
    c.f64 = floating is double
    c.status = 0
    c.rows = max(1, min(64, BLOCK_BYTES // (n * sizeof(floating))))
    if metric != L1:
        na = row_sqnorms(a)
        nb = row_sqnorms(b)
        c.na = &na[0]
        c.nb = &nb[0]
        c.tau = _tau(d, _eps(<floating>0))
    _run((m + c.rows - 1) // c.rows, 1, _pair_cb, &c, &c.status)


# ---------------------------------------------------------------------------
# k nearest neighbours: a block of distance rows, then per row a bounded max-heap
# of (distance, index) pairs; a pair ranks before another by distance, then index.


cdef inline bint _after(double v1, int64_t j1, double v2, int64_t j2) noexcept nogil:
    return v1 > v2 or (v1 == v2 and j1 > j2)


cdef inline void _sift_down(double* hv, int64_t* hj, int64_t size, int64_t i) noexcept nogil:
    cdef int64_t child
    cdef double v = hv[i]
    cdef int64_t j = hj[i]
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and _after(hv[child + 1], hj[child + 1], hv[child], hj[child]):
            child += 1
        if not _after(hv[child], hj[child], v, j):
            break
        hv[i] = hv[child]
        hj[i] = hj[child]
        i = child
    hv[i] = v
    hj[i] = j


cdef inline void _heap_push(double* hv, int64_t* hj, int64_t* size, int64_t k, double v,
                            int64_t j) noexcept nogil:
    """Offer (v, j) to the heap of the k smallest pairs seen; j grows from call to call."""
    cdef int64_t i, parent
    if size[0] < k:
        i = size[0]
        size[0] += 1
        while i > 0:
            parent = (i - 1) // 2
            if not _after(v, j, hv[parent], hj[parent]):
                break
            hv[i] = hv[parent]
            hj[i] = hj[parent]
            i = parent
        hv[i] = v
        hj[i] = j
    elif v < hv[0]:
        hv[0] = v
        hj[0] = j
        _sift_down(hv, hj, k, 0)


cdef inline void _heap_sorted(double* hv, int64_t* hj, int64_t k) noexcept nogil:
    """Sorts the full heap ascending in place (heap sort)."""
    cdef int64_t end
    cdef double v
    cdef int64_t j
    for end in range(k - 1, 0, -1):
        v, j = hv[0], hj[0]
        hv[0], hj[0] = hv[end], hj[end]
        hv[end], hj[end] = v, j
        _sift_down(hv, hj, end, 0)


cdef inline floating _round_up(double v, floating dummy) noexcept nogil:
    """The smallest value of the dtype that is >= v."""
    cdef floating r = <floating>v
    if r < v:
        if floating is float:
            r = nextafterf(r, INFINITY)
        else:
            r = nextafter(r, INFINITY)
    return r


ctypedef struct KnnCtx:
    const void* q
    const void* t
    const void* tn     # squared training norms, in the data's dtype
    void* dist
    int64_t* idx
    int64_t m, n, d, k, rows
    double tn_max, margin
    int metric
    bint f64
    int status


cdef void _knn_task(KnnCtx* c, const floating* q, const floating* t, const floating* tn,
                    floating* dist, int64_t blk0, int64_t blk1) noexcept nogil:
    cdef int64_t n = c.n, d = c.d, k = c.k
    cdef int64_t blk, r0, rows, r, i, j, j0, w, size, nc, kept
    cdef double v, tau, slack
    cdef floating thr
    cdef bint hit
    cdef floating* row
    cdef void* bt = NULL
    cdef void* acc = NULL
    cdef floating* buf = <floating*>malloc(<size_t>c.rows * n * sizeof(floating))
    cdef double* hv = <double*>malloc(k * sizeof(double))
    cdef int64_t* hj = <int64_t*>malloc(k * sizeof(int64_t))
    cdef int64_t* cand = <int64_t*>malloc(n * sizeof(int64_t))
    if buf == NULL or hv == NULL or hj == NULL or cand == NULL or (
            c.metric == L1 and _l1_scratch(d, sizeof(floating), &bt, &acc)):
        c.status = FAILED_MEMORY
        free(buf); free(hv); free(hj); free(cand)
        return
    for blk in range(blk0, blk1):
        r0 = blk * c.rows
        rows = min(c.rows, c.m - r0)
        if c.metric == L1:
            _l1_block(q + r0 * d, rows, t, n, d, buf, n, <floating*>bt, <floating*>acc)
        elif _gemm_serial(False, True, rows, n, d, <floating>-2, q + r0 * d, d, t, d,
                          <floating>0, buf, n) != CNNKIT_OK:
            c.status = FAILED_SIZE
            break
        for r in range(rows):
            i = r0 + r
            row = buf + r * n
            size = 0
            if c.metric == L1:
                for j in range(n):
                    _heap_push(hv, hj, &size, k, <double>row[j], j)
            else:
                # GEMM ranks by the key |t_j|^2 - 2 q.t_j. Every j whose key is within
                # the rounding bound (slack) of the k-th smallest key is a candidate;
                # the threshold only falls, so one pass collects a superset of them,
                # and the candidates are then ranked by their exact distances.
                slack = c.margin * (_norm1(q + i * d, d) + c.tn_max)
                nc = 0
                j0 = 0
                while j0 < n:
                    w = min(<int64_t>SCAN_GROUP, n - j0)
                    # A vector-wide test first: most groups hold no candidate.
                    hit = size < k
                    thr = _round_up(hv[0] + slack, <floating>0) if not hit else 0
                    for j in range(j0, j0 + w):
                        row[j] += tn[j]
                        hit |= row[j] <= thr
                    if hit:
                        for j in range(j0, j0 + w):
                            v = row[j]
                            if size < k or v <= hv[0] + slack:
                                cand[nc] = j
                                nc += 1
                                _heap_push(hv, hj, &size, k, v, j)
                    j0 += w
                tau = hv[0] + slack
                kept = 0
                for j in range(nc):
                    if row[cand[j]] <= tau:
                        cand[kept] = cand[j]
                        kept += 1
                size = 0
                for j in range(kept):
                    _heap_push(hv, hj, &size, k, _sqdist(q + i * d, t + cand[j] * d, d), cand[j])
            _heap_sorted(hv, hj, k)
            for j in range(k):
                v = hv[j]
                if c.metric == L2:
                    v = sqrt(v)
                dist[i * k + j] = <floating>v
                c.idx[i * k + j] = hj[j]
    free(buf); free(hv); free(hj); free(cand); free(bt); free(acc)


cdef void _knn_cb(void* ctx, int64_t b, int64_t e) noexcept nogil:
    cdef KnnCtx* c = <KnnCtx*>ctx
    if c.f64:
        _knn_task(c, <const double*>c.q, <const double*>c.t, <const double*>c.tn, <double*>c.dist, b, e)
    else:
        _knn_task(c, <const float*>c.q, <const float*>c.t, <const float*>c.tn, <float*>c.dist, b, e)


def kneighbors(const floating[:, ::1] queries, const floating[:, ::1] train, const double[::1] train_sqnorms,
               int64_t k, int metric):
    """(dist, idx) of the k nearest training rows of each query, ordered by distance
    then training index; dist in the inputs' dtype, idx int64."""
    cdef int64_t m = queries.shape[0], n = train.shape[0], d = train.shape[1]
    dtype = np.float64 if floating is double else np.float32
    dist = np.empty((m, k), dtype=dtype)
    idx = np.empty((m, k), dtype=np.int64)
    cdef floating[:, ::1] dv = dist
    cdef int64_t[:, ::1] iv = idx
    cdef KnnCtx c
    cdef floating[::1] tn = np.asarray(train_sqnorms).astype(dtype)
    if m == 0 or k == 0:
        return dist, idx
    c.q = &queries[0, 0]
    c.t = &train[0, 0]
    c.tn = &tn[0]
    c.dist = &dv[0, 0]
    c.idx = &iv[0, 0]
    c.m, c.n, c.d, c.k = m, n, d, k
    # Tall blocks: each GEMM call packs the whole training set once, so fewer calls
    # cost less; enough blocks remain for every thread. The results do not depend on
    # the blocks (the final ranking is by exact distances), so threads may shape them.
    c.rows = max(1, min(<int64_t>KNN_ROWS, (m + 2 * _abi.get_num_threads() - 1) // (2 * _abi.get_num_threads()),
                        KNN_BLOCK_BYTES // (n * sizeof(floating))))
    c.metric = metric
    c.f64 = floating is double
    c.status = 0
    c.tn_max = float(np.max(np.asarray(train_sqnorms)))
    # Twice the keys' rounding bound (GEMM's, the norms' and the key's own; the k-th
    # and the candidate each err), with room.
    c.margin = 4.0 * (d + 8) * _eps(<floating>0)
    _run((m + c.rows - 1) // c.rows, 1, _knn_cb, &c, &c.status)
    return dist, idx


# ---------------------------------------------------------------------------
# Lloyd's k-means, with scikit-learn's semantics (see classic.KMeans).


ctypedef struct AssignCtx:
    const void* x
    const void* centers
    const void* cn     # squared centre norms, in the data's dtype
    int64_t* labels
    int64_t* changed   # per slot
    double* sums       # per slot (k, d), or NULL: labels only
    int64_t* counts    # per slot (k,)
    int64_t n, d, k, rows, slot_rows
    bint f64
    int status


cdef void _assign_task(AssignCtx* c, const floating* x, const floating* centers,
                       const floating* cn, int64_t s0, int64_t s1) noexcept nogil:
    # Slot s owns rows [s * slot_rows, (s + 1) * slot_rows), taken in chunks of `rows`:
    # a GEMM, the argmin, and (with sums) the row added to its cluster's sum. float32
    # rows are summed per chunk in float32 (vector-wide), then into the slot in float64.
    cdef int64_t slot, r0, r_end, rows, r, j, f, best, k = c.k, d = c.d, count
    cdef floating v, bv
    cdef floating* acc
    cdef double* dst
    cdef const floating* xr
    cdef floating* buf = <floating*>malloc(<size_t>c.rows * k * sizeof(floating))
    cdef floating* chunk_sums = NULL
    cdef char* touched = NULL
    if floating is float:
        if c.sums != NULL:
            chunk_sums = <floating*>calloc(<size_t>k * d, sizeof(floating))
            touched = <char*>calloc(<size_t>k, 1)
            if chunk_sums == NULL or touched == NULL:
                c.status = FAILED_MEMORY
    if buf == NULL:
        c.status = FAILED_MEMORY
    if c.status == FAILED_MEMORY:
        free(buf); free(chunk_sums); free(touched)
        return
    for slot in range(s0, s1):
        count = 0
        r0 = slot * c.slot_rows
        r_end = min(c.n, r0 + c.slot_rows)
        while r0 < r_end:
            rows = min(c.rows, r_end - r0)
            if _gemm_serial(False, True, rows, k, d, <floating>-2, x + r0 * d, d, centers, d,
                            <floating>0, buf, k) != CNNKIT_OK:
                c.status = FAILED_SIZE
                r_end = r0
                break
            for r in range(rows):
                best = 0
                bv = cn[0] + buf[r * k]
                for j in range(1, k):
                    v = cn[j] + buf[r * k + j]
                    if v < bv:
                        bv = v
                        best = j
                if c.labels[r0 + r] != best:
                    c.labels[r0 + r] = best
                    count += 1
                if c.sums == NULL:
                    continue
                xr = x + (r0 + r) * d
                c.counts[slot * k + best] += 1
                if floating is float:
                    acc = chunk_sums + best * d
                    touched[best] = 1
                    for f in range(d):
                        acc[f] += xr[f]
                else:
                    dst = c.sums + (slot * k + best) * d
                    for f in range(d):
                        dst[f] += xr[f]
            if floating is float:
                if c.sums != NULL:
                    for j in range(k):
                        if touched[j]:
                            touched[j] = 0
                            acc = chunk_sums + j * d
                            dst = c.sums + (slot * k + j) * d
                            for f in range(d):
                                dst[f] += acc[f]
                                acc[f] = 0
            r0 += rows
        c.changed[slot] = count
    free(buf); free(chunk_sums); free(touched)


cdef void _assign_cb(void* ctx, int64_t b, int64_t e) noexcept nogil:
    cdef AssignCtx* c = <AssignCtx*>ctx
    if c.f64:
        _assign_task(c, <const double*>c.x, <const double*>c.centers, <const double*>c.cn, b, e)
    else:
        _assign_task(c, <const float*>c.x, <const float*>c.centers, <const float*>c.cn, b, e)


ctypedef struct SumCtx:
    const void* x
    const int64_t* labels
    double* sums
    int64_t n, d
    bint f64


cdef void _sum_task(SumCtx* c, const floating* x, int64_t f0, int64_t f1) noexcept nogil:
    # Split by features, each summed in sample order: the same sums on any thread count.
    cdef int64_t i, f, d = c.d
    cdef double* s
    cdef const floating* row
    for i in range(c.n):
        s = c.sums + c.labels[i] * d
        row = x + i * d
        for f in range(f0, f1):
            s[f] += row[f]


cdef void _sum_cb(void* ctx, int64_t b, int64_t e) noexcept nogil:
    cdef SumCtx* c = <SumCtx*>ctx
    if c.f64:
        _sum_task(c, <const double*>c.x, b, e)
    else:
        _sum_task(c, <const float*>c.x, b, e)


ctypedef struct GapCtx:
    const void* x
    const void* centers
    const int64_t* labels
    double* out
    int64_t d
    bint f64


cdef void _gap_task(GapCtx* c, const floating* x, const floating* centers, int64_t b,
                    int64_t e) noexcept nogil:
    cdef int64_t i
    for i in range(b, e):
        c.out[i] = _sqdist(x + i * c.d, centers + c.labels[i] * c.d, c.d)


cdef void _gap_cb(void* ctx, int64_t b, int64_t e) noexcept nogil:
    cdef GapCtx* c = <GapCtx*>ctx
    if c.f64:
        _gap_task(c, <const double*>c.x, <const double*>c.centers, b, e)
    else:
        _gap_task(c, <const float*>c.x, <const float*>c.centers, b, e)


def sqdist_to_assigned(const floating[:, ::1] x, const floating[:, ::1] centers, const int64_t[::1] labels):
    """||x_i - centers[labels_i]||^2 per sample, in float64 (computed directly)."""
    cdef int64_t n = x.shape[0]
    out = np.empty(n, dtype=np.float64)
    cdef double[::1] o = out
    cdef GapCtx c
    cdef int status = 0
    if n == 0:
        return out
    c.x = &x[0, 0]
    c.centers = &centers[0, 0]
    c.labels = &labels[0]
    c.out = &o[0]
    c.d = x.shape[1]
    c.f64 = floating is double
    _run(n, _grain(c.d), _gap_cb, &c, &status)
    return out


cdef int64_t _slots(int64_t k, int64_t d):
    """Slots of partial cluster sums for k x d centres: a count fixed by the shape alone
    (never by the thread count), so that the slots' sums, added in slot order, are one
    result on any number of threads. 0: too large to keep per slot (sum separately)."""
    cdef int64_t slots = min(<int64_t>MAX_SLOTS, SLOT_BYTES // max(1, k * d * 8))
    return slots if slots >= MIN_SLOTS else 0


def assign(const floating[:, ::1] x, const floating[:, ::1] centers, int64_t[::1] labels, sums=None,
           counts=None):
    """Sets labels to each sample's nearest centre (ties to the lowest index) through
    GEMM and a fused argmin; returns how many labels changed. With sums (slots, k, d)
    float64 and counts (slots, k) int64 (zeroed, slots from _slots), also adds each
    sample to its cluster's sum and count in the slot that holds it."""
    cdef int64_t n = x.shape[0], k = centers.shape[0]
    cdef floating[::1] cn = row_sqnorms(centers).astype(np.asarray(centers).dtype)
    cdef double[:, :, ::1] sv
    cdef int64_t[:, ::1] cv
    cdef AssignCtx c
    cdef int64_t slots = MAX_SLOTS
    if n == 0:
        return 0
    c.sums = NULL
    c.counts = NULL
    if sums is not None:
        sv = sums
        cv = counts
        slots = sv.shape[0]
        c.sums = &sv[0, 0, 0]
        c.counts = &cv[0, 0]
    c.rows = max(1, min(<int64_t>KMEANS_CHUNK, BLOCK_BYTES // (k * sizeof(floating))))
    c.slot_rows = (n + slots - 1) // slots
    slots = (n + c.slot_rows - 1) // c.slot_rows
    changed = np.zeros(slots, dtype=np.int64)
    cdef int64_t[::1] ch = changed
    c.x = &x[0, 0]
    c.centers = &centers[0, 0]
    c.cn = &cn[0]
    c.labels = &labels[0]
    c.changed = &ch[0]
    c.n, c.d, c.k = n, x.shape[1], k
    c.f64 = floating is double
    c.status = 0
    _run(slots, 1, _assign_cb, &c, &c.status)
    return int(changed.sum())


def _cluster_sums(const floating[:, ::1] x, const int64_t[::1] labels, int64_t k):
    cdef int64_t n = x.shape[0], d = x.shape[1]
    sums = np.zeros((k, d), dtype=np.float64)
    cdef double[:, ::1] sv = sums
    cdef SumCtx c
    cdef int status = 0
    c.x = &x[0, 0]
    c.labels = &labels[0]
    c.sums = &sv[0, 0]
    c.n, c.d = n, d
    c.f64 = floating is double
    _run(d, _grain(n), _sum_cb, &c, &status)
    return sums


def lloyd(const floating[:, ::1] x, floating[:, ::1] centers, int64_t max_iter, double tol):
    """Lloyd's iterations from centers (updated in place) as scikit-learn runs them:
    stop when the labels repeat or the total squared centre shift is <= tol; then
    labels and inertia are made consistent with the final centres.

    Returns (labels, inertia, n_iter)."""
    cdef int64_t n = x.shape[0], k = centers.shape[0], it, c, far
    labels = np.full(n, -1, dtype=np.int64)
    cdef int64_t[::1] lv = labels
    dtype = np.float64 if floating is double else np.float32
    center_arr = np.asarray(centers)
    x_arr = np.asarray(x)
    strict = False
    it = 0
    slots = _slots(k, x.shape[1])
    for it in range(max_iter):
        if slots:
            slot_sums = np.zeros((slots, k, x.shape[1]), dtype=np.float64)
            slot_counts = np.zeros((slots, k), dtype=np.int64)
            changed = assign(x, centers, lv, slot_sums, slot_counts)
            sums = slot_sums.sum(axis=0)
            counts = slot_counts.sum(axis=0).astype(np.float64)
        else:
            changed = assign(x, centers, lv)
            sums = _cluster_sums(x, lv, k)
            counts = np.bincount(labels, minlength=k).astype(np.float64)
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            # Each empty cluster takes the point farthest from its centre (ties: lowest index).
            gaps = sqdist_to_assigned(x, centers, lv)
            farthest = np.argsort(-gaps, kind="stable")[: len(empty)]
            for c, far in zip(empty, farthest):
                sums[labels[far]] -= x_arr[far]
                counts[labels[far]] -= 1
                sums[c] = x_arr[far]
                counts[c] = 1
        new = (sums / counts[:, None]).astype(dtype)
        shift = float(np.sum((new.astype(np.float64) - center_arr) ** 2))
        center_arr[...] = new
        if changed == 0:
            strict = True
            break
        if shift <= tol:
            break
    if not strict:
        assign(x, centers, lv)
    inertia = float(np.sum(sqdist_to_assigned(x, centers, lv)))
    return labels, inertia, it + 1


# ---------------------------------------------------------------------------
# Linear classifiers: scores through GEMM, then one pass per row for the loss and
# its gradient with respect to the scores.

cdef enum:
    SOFTMAX = 0
    SVM = 1
LOSS_SOFTMAX = SOFTMAX
LOSS_SVM = SVM


ctypedef struct LossCtx:
    void* s
    const void* bias
    const int64_t* y
    double* loss
    int64_t n, classes
    int kind
    bint f64


cdef void _loss_task(LossCtx* c, floating* s, const floating* bias, int64_t b, int64_t e) noexcept nogil:
    # Rows of s become d(mean loss)/d(scores) in place.
    cdef int64_t i, j, C = c.classes, yi, positive
    cdef floating* row
    cdef double mx, z, inv_n = 1.0 / c.n, sy, mj, total
    for i in range(b, e):
        row = s + i * C
        yi = c.y[i]
        for j in range(C):
            row[j] += bias[j]
        if c.kind == SOFTMAX:
            mx = row[0]
            for j in range(1, C):
                if row[j] > mx:
                    mx = row[j]
            z = 0
            for j in range(C):
                z += exp(<double>row[j] - mx)
            c.loss[i] = log(z) - (<double>row[yi] - mx)
            for j in range(C):
                row[j] = <floating>(exp(<double>row[j] - mx) / z * inv_n)
            row[yi] -= <floating>inv_n
        else:
            sy = row[yi]
            total = 0
            positive = 0
            for j in range(C):
                if j == yi:
                    continue
                mj = <double>row[j] - sy + 1.0
                if mj > 0:
                    total += mj
                    positive += 1
                    row[j] = <floating>inv_n
                else:
                    row[j] = 0
            row[yi] = <floating>(-positive * inv_n)
            c.loss[i] = total


cdef void _loss_cb(void* ctx, int64_t b, int64_t e) noexcept nogil:
    cdef LossCtx* c = <LossCtx*>ctx
    if c.f64:
        _loss_task(c, <double*>c.s, <const double*>c.bias, b, e)
    else:
        _loss_task(c, <float*>c.s, <const float*>c.bias, b, e)


def scores(const floating[:, ::1] w, const floating[:, ::1] x):
    """x @ w.T as a new (n, classes) array of the inputs' dtype."""
    cdef int64_t n = x.shape[0], C = w.shape[0], d = x.shape[1]
    dtype = np.float64 if floating is double else np.float32
    out = np.empty((n, C), dtype=dtype)
    cdef floating[:, ::1] o = out
    if n and C:
        _gemm(False, True, n, C, d, <floating>1, &x[0, 0], d, &w[0, 0], d, <floating>0, &o[0, 0], C)
    return out


def linear_loss(const floating[:, ::1] w, const floating[::1] b, const floating[:, ::1] x,
                const int64_t[::1] y, double reg, int kind):
    """(loss, dW, db): mean softmax (kind 0) or multiclass hinge (kind 1) loss of the
    scores x @ w.T + b, plus reg * sum(w**2)."""
    cdef int64_t n = x.shape[0], C = w.shape[0], d = x.shape[1]
    dtype = np.float64 if floating is double else np.float32
    w_arr = np.asarray(w)
    g = scores(w, x)
    cdef floating[:, ::1] gv = g
    losses = np.empty(n, dtype=np.float64)
    cdef double[::1] lv = losses
    cdef LossCtx c
    cdef int status = 0
    dw = np.empty((C, d), dtype=dtype)
    cdef floating[:, ::1] dwv = dw
    c.s = &gv[0, 0]
    c.bias = &b[0]
    c.y = &y[0]
    c.loss = &lv[0]
    c.n, c.classes = n, C
    c.kind = kind
    c.f64 = floating is double
    _run(n, _grain(4 * C), _loss_cb, &c, &status)
    _gemm(True, False, C, d, n, <floating>1, &gv[0, 0], C, &x[0, 0], d, <floating>0, &dwv[0, 0], d)
    w64 = w_arr.astype(np.float64)
    dw += (2 * reg * w64).astype(dtype)
    db = g.sum(axis=0, dtype=np.float64).astype(dtype)
    loss = float(losses.sum() / n + reg * np.sum(w64 * w64))
    return loss, dw, db


# ---------------------------------------------------------------------------
# Which threads run a parallel loop: the tests' view of the pool the ABI reaches.

cdef extern from "pthread.h" nogil:
    ctypedef unsigned long pthread_t
    pthread_t pthread_self()

cdef extern from "unistd.h" nogil:
    int usleep(unsigned int usec)


cdef void _who_cb(void* ctx, int64_t b, int64_t e) noexcept nogil:
    cdef unsigned long* ids = <unsigned long*>ctx
    cdef int64_t i
    for i in range(b, e):
        ids[i] = pthread_self()
        usleep(2000)  # long enough that every thread of the pool claims a share


def pool_threads_seen(int64_t tasks):
    """How many distinct threads ran a loop of `tasks` items of 2 ms on the pool."""
    ids = np.zeros(tasks, dtype=np.uint64)
    cdef unsigned long[::1] iv = ids.view(np.ulong)
    cdef int status = 0
    if tasks:
        _run(tasks, 1, _who_cb, &iv[0], &status)
    return len(np.unique(ids))
