"""Losses: `loss = crit(output, target)` returns a float (an array for
reduction='none'); `crit.backward()` returns the gradient with respect to `output`."""

import numpy as np

from .. import functional as F
from .module import Module

__all__ = ["CrossEntropyLoss", "MSELoss"]

_REDUCTIONS = ("mean", "sum", "none")


class _Loss(Module):
    """The target is validated by the functional op (its batch size must match)."""

    def __init__(self, reduction="mean"):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: reduction: expected one of {_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction

    def _result(self, loss):
        return float(loss) if self.reduction != "none" else loss

    def backward(self, grad_output=1.0):
        """Gradient with respect to the output; grad_output scales it (a scalar, or an
        array of per-element weights for reduction='none')."""
        grad = self._gradient(*self._saved())
        if np.isscalar(grad_output) and grad_output == 1.0:
            return grad
        scale = np.asarray(grad_output, dtype=grad.dtype)
        if self.reduction == "none" and scale.ndim:
            scale = scale.reshape(scale.shape + (1,) * (grad.ndim - scale.ndim))
        return grad * scale

    def extra_repr(self):
        return f"reduction={self.reduction!r}" if self.reduction != "mean" else ""


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy of logits (N, C) against integer class targets (N,)."""

    def forward(self, output, target):
        loss = F.cross_entropy(output, target, reduction=self.reduction)
        self._save(output, target)
        return self._result(loss)

    def _gradient(self, output, target):
        return F.cross_entropy_backward(output, target, reduction=self.reduction)


class MSELoss(_Loss):
    """Mean squared error between output and a target of the same shape."""

    def forward(self, output, target):
        loss = F.mse_loss(output, target, reduction=self.reduction)
        self._save(output, target)
        return self._result(loss)

    def _gradient(self, output, target):
        return F.mse_loss_backward(output, target, reduction=self.reduction)
