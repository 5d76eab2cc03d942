"""Data parallelism over MPI (through mpi4py).

Each rank (an MPI process) holds the whole model and trains on its part of every
global batch; gradients are averaged over the ranks, so that training equals one
process that sees the whole global batch, to rounding.

- ``init()``: MPI's COMM_WORLD under ``mpiexec`` (or ``srun``), a size-1
  communicator otherwise (mpi4py is not needed then).
- ``DataParallel(model, comm=None)``: broadcasts rank 0's parameters and buffers;
  ``dp(x)`` is ``model(x)`` on this rank's part of the batch; ``dp.backward(g)``
  backpropagates and averages every gradient over the ranks, in large flat buckets
  whose non-blocking allreduce starts as soon as the backward pass has finished
  their gradients.
- ``cnnkit.nn.SyncBatchNorm2d``: batch statistics over all ranks.
- ``cnnkit.data.DataLoader(..., rank=, world_size=)``: each rank's part of every
  global batch.

Example (``mpiexec -n 2 python train.py``)::

    comm = distributed.init()
    dp = distributed.DataParallel(model, comm)
    loader = DataLoader((x, y), batch_size=64, shuffle=True, seed=0,
                        rank=comm.rank, world_size=comm.size)
    for xb, yb in loader:
        model.zero_grad()
        loss = criterion(dp(xb), yb)
        dp.backward(criterion.backward())
        optimizer.step()
"""

import os
import sys
import time

import numpy as np

from ._args import boolean, positive
from .nn.layers import Dropout
from .nn.module import Module

__all__ = ["init", "SelfComm", "DataParallel"]

# Set in every process that an MPI launcher starts (MPICH and Intel MPI's hydra,
# Open MPI, MVAPICH, Slurm's srun through PMI or PMIx).
_LAUNCHER_VARIABLES = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_RANK")


class SelfComm:
    """The communicator of a process that runs alone (rank 0 of 1).

    Has the part of mpi4py's ``Comm`` interface that cnnkit uses: ``rank``, ``size``
    and ``allgather``.
    """

    rank = 0
    size = 1

    def allgather(self, obj):
        """[obj]: the one rank's object."""
        return [obj]

    def __repr__(self):
        return "SelfComm(rank=0, size=1)"


def init():
    """The communicator of the processes that train together.

    Returns
    -------
    mpi4py.MPI.Intracomm or SelfComm
        ``mpi4py.MPI.COMM_WORLD`` in a process that an MPI launcher (``mpiexec``,
        ``srun``) started, else a ``SelfComm`` (size 1; mpi4py is not imported).

    Raises
    ------
    RuntimeError
        If a launcher started the process but mpi4py is not installed
        (``pip install 'cnnkit[mpi]'``).
    """
    if not any(v in os.environ for v in _LAUNCHER_VARIABLES):
        return SelfComm()
    try:
        from mpi4py import MPI
    except ImportError:
        raise RuntimeError(
            "distributed.init: an MPI launcher started this process (one of "
            f"{', '.join(v for v in _LAUNCHER_VARIABLES if v in os.environ)} is set), "
            "but mpi4py is not installed: pip install 'cnnkit[mpi]'"
        ) from None
    return MPI.COMM_WORLD


def _mpi():
    from mpi4py import MPI

    return MPI


def _check_comm(comm, op):
    """comm itself, or init()'s when None; TypeError for anything but a SelfComm or an
    mpi4py intra-communicator."""
    if comm is None:
        return init()
    if isinstance(comm, SelfComm):
        return comm
    # A real communicator exists only once mpi4py.MPI is imported.
    mpi = _mpi() if "mpi4py.MPI" in sys.modules else None
    if mpi is None or not isinstance(comm, mpi.Intracomm) or comm == mpi.COMM_NULL:
        raise TypeError(
            f"{op}: comm: expected an mpi4py intra-communicator or cnnkit.distributed.init()'s communicator, "
            f"got {type(comm).__name__}"
        )
    return comm


def _allreduce_sum(comm, buffer):
    """Sum a contiguous array over the ranks, in place (nothing to do alone)."""
    if comm.size > 1:
        mpi = _mpi()
        comm.Allreduce(mpi.IN_PLACE, buffer, op=mpi.SUM)


class DataParallel:
    """Data-parallel training of a module over the ranks of a communicator.

    At construction, rank 0's parameters and buffers are broadcast to every rank.
    Each rank then calls ``dp(x)`` on its part of the global batch and
    ``dp.backward(grad)`` with the gradient of its part's loss; after backward every
    parameter's ``.grad`` holds the gradient of the whole global batch's loss, the
    same on every rank, so that the optimiser takes the same step everywhere.

    The ranks' gradients are combined with weights n_r / N (rank r's part of the N
    samples of the global batch): the average where the parts are equal, and in
    general the gradient of the mean loss over the global batch (the losses must
    be means over each part, CrossEntropyLoss's and MSELoss's default).

    Gradients are reduced in flat contiguous buckets of about ``bucket_bytes``, in
    reverse parameter order (the order in which backward finishes them), one
    in-place ``Iallreduce`` per bucket. With overlap, a bucket's allreduce starts
    as soon as the backward of every module that owns one of its parameters has
    returned, so that it runs while the rest of the backward pass computes; the last
    ones are waited for at the end of backward. Each parameter's ``.grad`` is made a
    view of its bucket, so that nothing is copied (a ``.grad`` replaced later is
    taken in at the next backward).

    Dropout layers of the model draw their part of the global batch's mask (their
    ``sample_offset`` is set at each forward), so that the ranks together drop what
    one process would.

    Parameters
    ----------
    model : Module
        Its parameters and buffers must be NumPy arrays (on the host).
    comm : mpi4py.MPI.Intracomm or SelfComm, optional
        Default ``init()``.
    bucket_bytes : int, default 25 MiB
        Target size of a bucket; a larger parameter gets a bucket of its own.
    overlap : bool, default True
        Start each bucket's allreduce during backward; False starts them all after it.

    Attributes
    ----------
    module : Module
        The model.
    comm : mpi4py.MPI.Intracomm or SelfComm
    buckets : list of list of str
        The parameter names of each bucket, in the order they are reduced.
    comm_seconds : float
        Seconds the last backward spent after the model's backward returned (starting
        the buckets not started yet and waiting for all): the communication that the
        backward pass did not hide.

    Raises
    ------
    TypeError
        model is not a Module; comm is not a communicator; bucket_bytes is not an
        int; overlap is not a bool; a parameter or buffer is not a NumPy array.
    ValueError
        bucket_bytes is not positive.

    Notes
    -----
    A module whose backward runs more than once per step (one applied twice in a
    forward pass without being registered twice) needs ``overlap=False``: with
    overlap, backward raises RuntimeError there.
    """

    def __init__(self, model, comm=None, bucket_bytes=25 * 2**20, overlap=True):
        if not isinstance(model, Module):
            raise TypeError(f"DataParallel: model: expected a cnnkit.nn.Module, got {type(model).__name__}")
        self.module = model
        self.comm = _check_comm(comm, "DataParallel")
        self.bucket_bytes = positive(bucket_bytes, "DataParallel", "bucket_bytes")
        self.overlap = boolean(overlap, "DataParallel", "overlap")
        named = {}
        for name, p in model.named_parameters():
            named.setdefault(id(p), (name, p))
        for name, a in [(n, p.data) for n, p in named.values()] + list(model.named_buffers()):
            if not isinstance(a, np.ndarray):
                raise TypeError(
                    f"DataParallel: model: {name}: expected a NumPy array (DataParallel runs on the host), "
                    f"got {type(a).__name__}"
                )
        self._broadcast([p.data for _, p in named.values()] + [b for _, b in model.named_buffers()])
        self._buckets = self._make_buckets([p for _, p in named.values()])
        self.buckets = [[named[id(p)][0] for p in b.params] for b in self._buckets]
        for b, names in zip(self._buckets, self.buckets):
            b.allocate(names)
        self._bucket_of = {id(p): b for b in self._buckets for p in b.params}
        # Every module reports when its backward has returned: an owner of parameters
        # may complete a bucket, and any gives MPI a chance to progress the started
        # ones. One registered n times in the model runs its backward n times per step.
        self._owners, self._uses = {}, {}
        for m in model.modules():
            if id(m) not in self._owners:
                self._owners[id(m)] = list(m._parameters.values())
                m.register_backward_hook(self._module_done)
            self._uses[id(m)] = self._uses.get(id(m), 0) + 1
        self._active = False
        self._weight = 1.0
        self.comm_seconds = 0.0

    def _broadcast(self, arrays):
        """Rank 0's arrays to every rank, one flat message per dtype."""
        if self.comm.size == 1:
            return
        for dtype in sorted({a.dtype for a in arrays}, key=str):
            group = [a for a in arrays if a.dtype == dtype]
            flat = np.concatenate([a.reshape(-1) for a in group]) if self.comm.rank == 0 else \
                np.empty(sum(a.size for a in group), dtype)
            self.comm.Bcast(flat, root=0)
            start = 0
            for a in group:
                a[...] = flat[start : start + a.size].reshape(a.shape)
                start += a.size

    def _make_buckets(self, params):
        buckets = []
        for p in reversed(params):
            last = buckets[-1] if buckets else None
            if last is None or p.dtype != last.dtype or last.nbytes + p.data.nbytes > self.bucket_bytes:
                buckets.append(_Bucket(p.dtype))
            buckets[-1].add(p)
        return buckets

    def forward(self, x):
        """model(x) on this rank's part of the global batch.

        Parameters
        ----------
        x : numpy.ndarray
            This rank's samples (possibly none); every rank calls forward once per
            step.

        Returns
        -------
        numpy.ndarray
            The model's output.

        Raises
        ------
        TypeError
            If x is not an array.
        ValueError
            If the global batch is empty.
        """
        if not hasattr(x, "shape") or not len(x.shape):
            raise TypeError(f"DataParallel.forward: x: expected an array of samples, got {type(x).__name__}")
        counts = self.comm.allgather(int(x.shape[0]))
        total = sum(counts)
        if total == 0:
            raise ValueError("DataParallel.forward: x: expected at least one sample over the ranks, got none")
        self._weight = counts[self.comm.rank] / total
        offset = sum(counts[: self.comm.rank])
        for m in self.module.modules():
            if isinstance(m, Dropout):
                m.sample_offset = offset
        return self.module(x)

    __call__ = forward

    def backward(self, grad_output):
        """Backpropagate through the model, then average every gradient over the ranks.

        Parameters
        ----------
        grad_output : numpy.ndarray
            Gradient of this rank's loss with respect to forward's output.

        Returns
        -------
        numpy.ndarray
            Gradient with respect to forward's input (this rank's, not averaged).

        Raises
        ------
        RuntimeError
            With overlap, if a module's backward ran twice in one step; if a
            parameter's ``.grad`` was replaced by an array of another shape or dtype.
        """
        if self.comm.size == 1:
            return self.module.backward(grad_output)
        for b in self._buckets:
            b.pending = len(b.params)
            b.request = None
        self._pending = dict.fromkeys(self._bucket_of, 0)
        for key, params in self._owners.items():
            for p in params:
                self._pending[id(p)] += self._uses[key]
        self._active = self.overlap
        try:
            grad_input = self.module.backward(grad_output)
        finally:
            self._active = False
        start = time.perf_counter()
        for b in self._buckets:
            if b.request is None:
                b.start(self.comm, self._weight)
        for b in self._buckets:
            b.finish()
        self.comm_seconds = time.perf_counter() - start
        return grad_input

    def _module_done(self, module):
        if not self._active:
            return
        for p in self._owners[id(module)]:
            left = self._pending[id(p)] = self._pending[id(p)] - 1
            if left < 0:
                # Every rank gets here alike: finish what started, so that MPI stays usable.
                for b in self._buckets:
                    if b.request is not None:
                        b.request.Wait()
                raise RuntimeError(
                    f"DataParallel.backward: {type(module).__name__}'s backward ran more than once in one step "
                    "(a module applied twice in forward): construct DataParallel with overlap=False"
                )
            if left == 0:
                b = self._bucket_of[id(p)]
                b.pending -= 1
                if b.pending == 0:
                    b.start(self.comm, self._weight)
        # MPI moves a non-blocking collective on only inside MPI calls.
        started = [b.request for b in self._buckets if b.request is not None]
        if started:
            _mpi().Request.Testall(started)

    def parameters(self):
        """The model's parameters (what an optimiser takes)."""
        return self.module.parameters()

    def __repr__(self):
        return f"DataParallel({self.module!r}, rank={self.comm.rank}, size={self.comm.size}, buckets={len(self.buckets)})"


class _Bucket:
    """Parameters whose gradients live in one flat array (their .grad are views of it)."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.params = []
        self.nbytes = 0
        self.pending = 0
        self.request = None

    def add(self, p):
        self.params.append(p)
        self.nbytes += p.data.nbytes

    def allocate(self, names):
        self.names = names
        self.flat = np.empty(self.nbytes // self.dtype.itemsize, self.dtype)
        self.grads = []
        start = 0
        for p in self.params:
            view = self.flat[start : start + p.size].reshape(p.shape)
            view[...] = p.grad
            p.grad = view
            self.grads.append(view)
            start += p.size

    def start(self, comm, weight):
        """Scale by weight in place and start the in-place sum over the ranks."""
        for name, p, view in zip(self.names, self.params, self.grads):
            if p.grad is not view:  # replaced since (an assignment): take its values in
                if not (isinstance(p.grad, np.ndarray) and p.grad.shape == view.shape and p.grad.dtype == view.dtype):
                    got = (f"shape {p.grad.shape}, dtype {p.grad.dtype}" if isinstance(p.grad, np.ndarray)
                           else type(p.grad).__name__)
                    raise RuntimeError(
                        f"DataParallel.backward: {name}.grad: expected a NumPy array of shape {view.shape} and dtype "
                        f"{view.dtype} (as when DataParallel was made), got {got}"
                    )
                view[...] = p.grad
                p.grad = view
        if weight:
            self.flat *= weight
        else:  # an empty part: its gradients may be NaN (a mean over no samples)
            self.flat.fill(0)
        mpi = _mpi()
        self.request = comm.Iallreduce(mpi.IN_PLACE, self.flat, op=mpi.SUM)

    def finish(self):
        self.request.Wait()
