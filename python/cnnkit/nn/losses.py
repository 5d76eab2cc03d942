"""Losses: `loss = crit(output, target)` returns a float (an array for
reduction='none'); `crit.backward()` returns the gradient with respect to `output`."""

import numbers
import re

from .. import _device
from .. import functional as F
from .module import Module, _is_array

__all__ = ["CrossEntropyLoss", "MSELoss"]

_REDUCTIONS = ("mean", "sum", "none")
_INPUT = re.compile(r"\binput\b")


class _Loss(Module):
    """The target's shape and values are validated by the functional op."""

    # backward takes a scale (a number, or per-element weights), not an output gradient
    _check_grad_output = False

    def __init__(self, reduction="mean"):
        super().__init__()
        if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
            error = TypeError if not isinstance(reduction, str) else ValueError
            raise error(f"{type(self).__name__}: reduction: expected one of {_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction

    def _check_operands(self, output, target):
        name = type(self).__name__
        for arg, value in (("output", output), ("target", target)):
            if not _is_array(value):
                raise TypeError(f"{name}: {arg}: expected a numpy.ndarray, got {type(value).__name__}")

    def _call_functional(self, fn, op, output, target):
        """fn(output, target, reduction=...): the functional op, which validates the
        operands (their one home). Its errors are told in the loss's words: the op
        calls output 'input', so "op: input: ..." becomes "<Loss>: output: ..."."""
        try:
            return fn(output, target, reduction=self.reduction)
        except (ValueError, TypeError) as e:
            message, prefix = str(e), f"{op}: "
            if type(e) not in (ValueError, TypeError) or not message.startswith(prefix):
                raise
            raise type(e)(f"{type(self).__name__}: {_INPUT.sub('output', message[len(prefix):])}") from None

    def _result(self, loss):
        return float(loss) if self.reduction != "none" else loss

    def backward(self, grad_output=1.0):
        """Gradient of the loss with respect to forward's output.

        Parameters
        ----------
        grad_output : float or numpy.ndarray, default 1.0
            Scale of the gradient: a real number, or for reduction='none' also an
            array of per-element weights of the loss's shape.

        Returns
        -------
        numpy.ndarray
            Of the output's shape and dtype.

        Raises
        ------
        RuntimeError
            Before forward.
        TypeError
            A grad_output that is not a real number (or, for 'none', an array).
        ValueError
            For 'none', an array grad_output of another shape than the loss.
        """
        name = type(self).__name__
        (output, target) = self._saved()
        if _is_array(grad_output) and grad_output.ndim:
            expected = self.__dict__.get("_forward_output_shape")
            if self.reduction != "none":
                raise TypeError(
                    f"{name}.backward: grad_output: expected a real number for reduction={self.reduction!r}, "
                    f"got an array of shape {grad_output.shape}"
                )
            if grad_output.shape != expected:
                raise ValueError(
                    f"{name}.backward: grad_output: expected shape {expected} (the loss's), got {grad_output.shape}"
                )
        elif isinstance(grad_output, bool) or not (isinstance(grad_output, numbers.Real) or _is_array(grad_output)):
            raise TypeError(f"{name}.backward: grad_output: expected a real number, got {type(grad_output).__name__}")
        grad = self._gradient(output, target)
        if not _is_array(grad_output):  # a number: a kernel argument, never a host-to-device copy
            return grad if grad_output == 1.0 else grad * grad.dtype.type(grad_output)
        if _device.place(grad_output) != _device.place(grad):
            raise TypeError(
                f"{name}.backward: grad_output: expected an array on {_device.describe(grad)} (the loss's device), "
                f"got one on {_device.describe(grad_output)}"
            )
        scale = grad_output.astype(grad.dtype, copy=False)
        if self.reduction == "none" and scale.ndim:
            scale = scale.reshape(scale.shape + (1,) * (grad.ndim - scale.ndim))
        return grad * scale

    def extra_repr(self):
        return f"reduction={self.reduction!r}" if self.reduction != "mean" else ""


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy of logits against integer class targets.

    Parameters
    ----------
    reduction : {'mean', 'sum', 'none'}, default 'mean'
        'none' gives the (N,) per-sample losses.

    Notes
    -----
    Shapes: output (N, C) float32 or float64 logits, target (N,) integer class
    indices in [0, C). forward returns a float ('mean', 'sum') or an (N,) array
    ('none'); backward returns the (N, C) gradient with respect to the logits.

    Raises
    ------
    TypeError
        A non-string reduction; in forward, a non-array output or target.
    ValueError
        An unknown reduction; in forward, shapes that do not match or class
        indices out of range.
    """

    def forward(self, output, target):
        """The loss of the logits against the targets.

        Parameters
        ----------
        output : numpy.ndarray
            (N, C) logits, float32 or float64.
        target : numpy.ndarray
            (N,) class indices, any integer dtype, each in [0, C).

        Returns
        -------
        float or numpy.ndarray
            The loss; the (N,) losses for reduction='none'.
        """
        self._check_operands(output, target)
        loss = self._call_functional(F.cross_entropy, "cross_entropy", output, target)
        self._save(output, target)
        return self._result(loss)

    def _gradient(self, output, target):
        return F.cross_entropy_backward(output, target, reduction=self.reduction)


class MSELoss(_Loss):
    """Mean squared error between output and a target of the same shape.

    Parameters
    ----------
    reduction : {'mean', 'sum', 'none'}, default 'mean'
        'none' gives the elementwise squared errors.

    Notes
    -----
    Shapes: output and target of one shape and dtype (float32 or float64). forward
    returns a float ('mean', 'sum') or an array of that shape ('none'); backward
    returns the gradient with respect to output, of its shape.

    Raises
    ------
    TypeError
        A non-string reduction; in forward, a non-array output or target.
    ValueError
        An unknown reduction; in forward, shapes that do not match.
    """

    def forward(self, output, target):
        """The loss of output against target.

        Parameters
        ----------
        output : numpy.ndarray
            float32 or float64, any shape.
        target : numpy.ndarray
            Of output's shape and dtype.

        Returns
        -------
        float or numpy.ndarray
            The loss; the elementwise squared errors for reduction='none'.
        """
        self._check_operands(output, target)
        loss = self._call_functional(F.mse_loss, "mse_loss", output, target)
        self._save(output, target)
        return self._result(loss)

    def _gradient(self, output, target):
        return F.mse_loss_backward(output, target, reduction=self.reduction)
