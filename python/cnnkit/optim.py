"""Optimisers with PyTorch's update rules, and a step learning-rate schedule.

Updates are vectorised array arithmetic, in place on each Parameter's ``.data``, from
the gradients that backward accumulated in its ``.grad``; they keep the parameters'
dtype and device (NumPy on the host, CuPy on a GPU: no host copies). An optimiser's
state (momentum, moments) is made at its first step, on the parameter's device, and
follows a parameter that a module's ``to`` moved since.
"""

import math
from collections.abc import Iterable

from . import _device
from ._args import integer, real
from .nn.module import Parameter, _is_array

__all__ = ["Optimizer", "SGD", "Adam", "StepLR"]


class Optimizer:
    """Base class of the optimisers: holds the parameters and the learning rate.

    Subclasses implement ``step()``.

    Parameters
    ----------
    params : iterable of Parameter
        The parameters to update, e.g. ``model.parameters()``; at least one. It is
        consumed once, into the list ``self.params``.
    lr : float
        Learning rate; positive. Kept as ``self.lr``, which a schedule may change.

    Raises
    ------
    ValueError
        params is empty, or lr is not positive (NaN included).
    TypeError
        params is not iterable, an item of params is not a Parameter, or lr is not a
        real number (a bool included).
    """
    def __init__(self, params, lr):
        name = type(self).__name__
        if isinstance(params, (str, bytes)) or not isinstance(params, Iterable):
            raise TypeError(f"{name}: params: expected an iterable of Parameter, got {type(params).__name__}")
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{name}: params: expected at least one Parameter, got none")
        for i, p in enumerate(self.params):
            if not isinstance(p, Parameter):
                raise TypeError(f"{name}: params: item {i}: expected a Parameter, got {type(p).__name__}")
        lr = real(lr, name, "lr")
        if not lr > 0:
            raise ValueError(f"{name}: lr: expected a positive learning rate, got {lr}")
        self.lr = lr

    def _grads(self):
        """(param, grad) pairs, each grad checked: a real ndarray of its parameter's
        shape and device (a user may have replaced ``.grad``; numpy would broadcast a
        wrong one)."""
        op = f"{type(self).__name__}.step"
        for i, p in enumerate(self.params):
            g = p.grad
            array = _is_array(g)
            if not array or g.dtype.kind not in "fiu":
                got = f"dtype {g.dtype}" if array else type(g).__name__
                raise TypeError(f"{op}: grad: params[{i}].grad: expected a real ndarray of shape {p.shape}, got {got}")
            if g.shape != p.data.shape:
                raise ValueError(f"{op}: grad: params[{i}].grad: expected shape {p.shape} (the parameter's), "
                                 f"got {g.shape}")
            if _device.place(g) != _device.place(p.data):
                raise ValueError(f"{op}: grad: params[{i}].grad: expected an array on {_device.describe(p.data)} "
                                 f"(the parameter's device), got one on {_device.describe(g)}")
            yield p, g

    def zero_grad(self):
        """Set every parameter's ``.grad`` to zero, in place."""
        for p in self.params:
            p.grad.fill(0)

    def step(self):
        """Update every parameter's ``.data`` in place from its ``.grad``.

        Raises
        ------
        NotImplementedError
            In the base class; each optimiser implements it.
        """
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, PyTorch's rule.

    For each parameter p with gradient ``grad``, at every step::

        g = grad + weight_decay * p
        b = momentum * b + (1 - dampening) * g     (b = g at the first step)
        g = g + momentum * b if nesterov else b
        p = p - lr * g

    (the momentum lines only when momentum is non-zero).

    Parameters
    ----------
    params : iterable of Parameter
        As for Optimizer.
    lr : float
        Learning rate; positive.
    momentum : float, default 0.0
        Momentum factor; >= 0.
    dampening : float, default 0.0
        Dampening of the gradient's share in the momentum buffer.
    weight_decay : float, default 0.0
        L2 penalty added to the gradient; >= 0.
    nesterov : bool, default False
        Nesterov momentum; needs momentum > 0 and dampening 0.

    Raises
    ------
    ValueError
        As Optimizer; momentum or weight_decay is negative or NaN; nesterov without
        momentum > 0 and dampening 0.
    TypeError
        As Optimizer; momentum, dampening or weight_decay is not a real number.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Parameter
    >>> from cnnkit.optim import SGD
    >>> p = Parameter(np.array([1.0, 2.0]))
    >>> opt = SGD([p], lr=0.1, momentum=0.9)
    >>> p.grad[:] = [1.0, -1.0]
    >>> opt.step()
    >>> p.data
    array([0.9, 2.1])
    """

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params, lr)
        momentum = _non_negative(momentum, "SGD", "momentum")
        dampening = real(dampening, "SGD", "dampening")
        weight_decay = _non_negative(weight_decay, "SGD", "weight_decay")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov: needs momentum > 0 and dampening 0")
        self.momentum = momentum
        self.dampening = dampening
        self.weight_decay = weight_decay
        self.nesterov = bool(nesterov)
        self._buffers = [None] * len(self.params)

    def step(self):
        """One update of every parameter, in place, from its ``.grad``.

        Raises
        ------
        TypeError, ValueError
            A parameter's ``.grad`` is not a real ndarray of its shape.
        """
        for i, (p, g) in enumerate(list(self._grads())):
            if self.weight_decay:
                g = g + self.weight_decay * p.data
            if self.momentum:
                buf = self._buffers[i]
                if buf is None:
                    buf = self._buffers[i] = g.copy()
                else:
                    buf = self._buffers[i] = _device.move_like(buf, g)
                    buf *= self.momentum
                    buf += (1.0 - self.dampening) * g
                g = g + self.momentum * buf if self.nesterov else buf
            p.data -= self.lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba), PyTorch's rule, with L2 weight decay added to the gradient.

    At step t (counted from 1 in ``self.t``), for each parameter p::

        g = grad + weight_decay * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g ** 2
        p = p - lr / (1 - beta1 ** t) * m / (sqrt(v) / sqrt(1 - beta2 ** t) + eps)

    The decay is torch.optim.Adam's (coupled), not AdamW's.

    Parameters
    ----------
    params : iterable of Parameter
        As for Optimizer.
    lr : float, default 1e-3
        Learning rate; positive.
    betas : (float, float), default (0.9, 0.999)
        Decay rates of the first and second moment estimates, each in [0, 1).
    eps : float, default 1e-8
        Added to the denominator.
    weight_decay : float, default 0.0
        L2 penalty added to the gradient.

    Raises
    ------
    ValueError
        As Optimizer; betas is not two values, each in [0, 1); eps or weight_decay is
        negative or NaN.
    TypeError
        As Optimizer; betas is not a pair of real numbers; eps or weight_decay is not a
        real number.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        if not isinstance(betas, (tuple, list)):
            raise TypeError(f"Adam: betas: expected a pair of real numbers, got {type(betas).__name__}")
        if len(betas) != 2:
            raise ValueError(f"Adam: betas: expected a pair of real numbers, got {len(betas)} values {tuple(betas)}")
        beta1, beta2 = (real(b, "Adam", "betas") for b in betas)
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ValueError(f"Adam: betas: expected values in [0, 1), got {tuple(betas)}")
        self.betas = (beta1, beta2)
        self.eps = _non_negative(eps, "Adam", "eps")
        self.weight_decay = _non_negative(weight_decay, "Adam", "weight_decay")
        self.t = 0
        self._m = [None] * len(self.params)
        self._v = [None] * len(self.params)

    def step(self):
        """One update (t += 1) of every parameter, in place, from its ``.grad``.

        Raises
        ------
        TypeError, ValueError
            A parameter's ``.grad`` is not a real ndarray of its shape.
        """
        grads = list(self._grads())
        self.t += 1
        beta1, beta2 = self.betas
        step_size = self.lr / (1.0 - beta1**self.t)
        bias_correction2_sqrt = math.sqrt(1.0 - beta2**self.t)
        for i, (p, g) in enumerate(grads):
            xp = _device.array_module(p.data)
            if self._m[i] is None:
                self._m[i], self._v[i] = xp.zeros_like(p.data), xp.zeros_like(p.data)
            m = self._m[i] = _device.move_like(self._m[i], p.data)
            v = self._v[i] = _device.move_like(self._v[i], p.data)
            if self.weight_decay:
                g = g + self.weight_decay * p.data
            m *= beta1
            m += (1.0 - beta1) * g
            v *= beta2
            v += (1.0 - beta2) * g * g
            denom = xp.sqrt(v) / bias_correction2_sqrt + self.eps
            p.data -= step_size * m / denom


class StepLR:
    """Step learning-rate schedule: ``lr = base_lr * gamma ** (epoch // step_size)``.

    Call ``step()`` once per epoch, after that epoch's optimiser steps. base_lr is the
    optimiser's lr when the schedule is made.

    Parameters
    ----------
    optimizer : Optimizer
        The optimiser whose ``lr`` the schedule sets.
    step_size : int
        Epochs between decays; positive.
    gamma : float, default 0.1
        Multiplicative factor of each decay.

    Raises
    ------
    TypeError
        optimizer is not an Optimizer, step_size is not an int (a bool or a float
        included), or gamma is not a real number.
    ValueError
        step_size is not positive.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Parameter
    >>> from cnnkit.optim import SGD, StepLR
    >>> opt = SGD([Parameter(np.zeros(1))], lr=1.0)
    >>> sched = StepLR(opt, step_size=2, gamma=0.5)
    >>> lrs = []
    >>> for epoch in range(5):
    ...     sched.step()
    ...     lrs.append(sched.get_last_lr())
    >>> lrs
    [1.0, 0.5, 0.5, 0.25, 0.25]
    """

    def __init__(self, optimizer, step_size, gamma=0.1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"StepLR: optimizer: expected an Optimizer, got {type(optimizer).__name__}")
        step_size = integer(step_size, "StepLR", "step_size")
        if step_size <= 0:
            raise ValueError(f"StepLR: step_size: expected a positive int, got {step_size}")
        self.optimizer = optimizer
        self.step_size = step_size
        self.gamma = real(gamma, "StepLR", "gamma")
        self.base_lr = optimizer.lr
        self.epoch = 0

    def step(self):
        """Count one epoch and set the optimiser's lr for the next."""
        self.epoch += 1
        decays = self.epoch // self.step_size
        try:
            factor = self.gamma**decays
        except OverflowError:  # |gamma| > 1 compounded past the float range
            factor = math.inf if self.gamma > 0 or decays % 2 == 0 else -math.inf
        self.optimizer.lr = self.base_lr * factor

    def get_last_lr(self):
        """The optimiser's current learning rate.

        Returns
        -------
        float
            ``optimizer.lr`` (a float, where torch returns a list of one per group).
        """
        return self.optimizer.lr


def _non_negative(value, op, name):
    """value as a float >= 0; TypeError for a non-real, ValueError for a negative or NaN one."""
    value = real(value, op, name)
    if not value >= 0:
        raise ValueError(f"{op}: {name}: expected a value >= 0, got {value}")
    return value
