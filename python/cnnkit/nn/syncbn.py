"""SyncBatchNorm2d: batch norm whose batch statistics span every rank (cnnkit.distributed)."""

import numpy as np

from .. import distributed
from .layers import BatchNorm2d, _accumulate, _check_image, _check_like

__all__ = ["SyncBatchNorm2d"]


class SyncBatchNorm2d(BatchNorm2d):
    """BatchNorm2d over the global batch that the ranks of a communicator split.

    In training the mean and variance of each channel are those of every rank's
    samples together (sums reduced over the ranks, the variance around the global
    mean), the running statistics take them (the same on every rank), and backward
    reduces the per-channel gradient sums over the ranks, so that training equals
    BatchNorm2d in one process on the whole batch. In eval mode it is BatchNorm2d.

    Backward expects what DataParallel does: each rank's grad_output is that of the
    mean loss over its own samples, and the ranks' parameter gradients are then
    combined with weights n_r / N (the average where the parts are equal).

    Parameters
    ----------
    num_features, eps, momentum, affine, track_running_stats, dtype
        As BatchNorm2d.
    comm : mpi4py.MPI.Intracomm or distributed.SelfComm, optional
        Default ``distributed.init()``; the communicator that DataParallel uses.

    Raises
    ------
    TypeError, ValueError
        As BatchNorm2d; TypeError for a comm that is not a communicator; in forward,
        TypeError for an input that is not a NumPy array, and in training ValueError
        where all the ranks together hold one value per channel (or none).
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 dtype=np.float32, comm=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, dtype)
        self.comm = distributed._check_comm(comm, "SyncBatchNorm2d")

    def forward(self, x):
        """Normalise with the global batch's statistics (training) or the running ones.

        Parameters
        ----------
        x : numpy.ndarray
            (N, num_features, H, W), of the layer's dtype: this rank's samples
            (possibly none).

        Returns
        -------
        numpy.ndarray
            Of x's shape.
        """
        if not (self.training or not self.track_running_stats):
            return super().forward(x)
        _check_image(x, "SyncBatchNorm2d")
        if not isinstance(x, np.ndarray):
            raise TypeError(f"SyncBatchNorm2d: input: expected a NumPy array (it runs on the host), "
                            f"got {type(x).__name__}")
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"SyncBatchNorm2d: input: expected shape[1] == num_features = {self.num_features}, "
                f"got shape {tuple(x.shape)}"
            )
        _check_like(x, "SyncBatchNorm2d", self._layer_array())
        x = np.ascontiguousarray(x)  # sums in one order whatever the layout
        count = x.shape[0] * x.shape[2] * x.shape[3]
        sums = np.concatenate([[count], x.sum(axis=(0, 2, 3), dtype=np.float64)])
        distributed._allreduce_sum(self.comm, sums)
        total = sums[0]
        if total <= 1:
            raise ValueError(
                "SyncBatchNorm2d: input: expected more than one value per channel over the ranks in training, "
                f"got {int(total)}"
            )
        mean = sums[1:] / total
        # Two passes, as BatchNorm2d: the variance around the global mean.
        centred = np.subtract(x, mean[:, None, None], dtype=np.float64)
        var = np.square(centred).sum(axis=(0, 2, 3))
        distributed._allreduce_sum(self.comm, var)
        var /= total
        invstd = 1 / np.sqrt(var + self.eps)
        xhat = np.multiply(centred, invstd[:, None, None], out=centred)
        if self.affine:
            y = xhat * self.weight.data[:, None, None] + self.bias.data[:, None, None]
        else:
            y = xhat
        if self.track_running_stats:
            m = self.momentum
            self.running_mean[...] = (1 - m) * self.running_mean + m * mean
            self.running_var[...] = (1 - m) * self.running_var + m * var * (total / (total - 1))
        self._save(xhat, invstd, count / total, count, x.dtype)
        return y.astype(x.dtype, copy=y is xhat)  # never the saved xhat itself

    def backward(self, grad_output):
        """Backpropagate through the global statistics; adds this rank's sums to
        weight.grad and bias.grad (when affine).

        Parameters
        ----------
        grad_output : numpy.ndarray
            Gradient of this rank's loss with respect to forward's output.

        Returns
        -------
        numpy.ndarray
            Gradient with respect to forward's input, scaled as grad_output: divided
            by this rank's weight n_r / N, which DataParallel's combination restores.
        """
        saved = self._saved()
        if len(saved) == 1:  # eval mode: BatchNorm2d's forward saved its own
            return super().backward(grad_output)
        xhat, invstd, weight, count, dtype = saved
        if not isinstance(grad_output, np.ndarray) or grad_output.dtype != dtype:
            got = f"dtype {grad_output.dtype}" if isinstance(grad_output, np.ndarray) else type(grad_output).__name__
            raise TypeError(f"SyncBatchNorm2d.backward: grad_output: expected a NumPy array of {dtype} (the "
                            f"input's dtype), got {got}")
        grad_output = np.ascontiguousarray(grad_output)
        sum_g = grad_output.sum(axis=(0, 2, 3), dtype=np.float64)
        sum_gx = np.einsum("nchw,nchw->c", grad_output, xhat, dtype=np.float64)
        # Sums of the global loss's gradient: each rank's counts with its weight.
        sums = np.concatenate([weight * sum_g, weight * sum_gx])
        distributed._allreduce_sum(self.comm, sums)
        if self.affine:
            _accumulate(self.weight, sum_gx)
            _accumulate(self.bias, sum_g)
        if not count:
            return np.zeros_like(grad_output)
        c = self.num_features
        scale = invstd * (self.weight.data if self.affine else 1)
        gx = grad_output - (sums[:c, None, None] + xhat * sums[c:, None, None]) / count
        gx *= scale[:, None, None]
        return gx.astype(grad_output.dtype, copy=False)
