"""Optimisers with PyTorch's update rules, and a step learning-rate schedule.

Updates are vectorised NumPy, in place on each Parameter's `.data`.
"""

import math

import numpy as np

from .nn.module import Parameter

__all__ = ["Optimizer", "SGD", "Adam", "StepLR"]


class Optimizer:
    def __init__(self, params, lr):
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: params: expected at least one Parameter, got none")
        for i, p in enumerate(self.params):
            if not isinstance(p, Parameter):
                raise TypeError(f"{type(self).__name__}: params: item {i}: expected a Parameter, got {type(p).__name__}")
        if not lr > 0:
            raise ValueError(f"{type(self).__name__}: lr: expected a positive learning rate, got {lr}")
        self.lr = float(lr)

    def zero_grad(self):
        for p in self.params:
            p.grad.fill(0)

    def step(self):
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent, PyTorch's rule:
    g = grad + weight_decay * p;  b = momentum * b + (1 - dampening) * g (b = g at the
    first step);  g = g + momentum * b if nesterov else b;  p -= lr * g."""

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params, lr)
        if momentum < 0:
            raise ValueError(f"SGD: momentum: expected a value >= 0, got {momentum}")
        if weight_decay < 0:
            raise ValueError(f"SGD: weight_decay: expected a value >= 0, got {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov: needs momentum > 0 and dampening 0")
        self.momentum = float(momentum)
        self.dampening = float(dampening)
        self.weight_decay = float(weight_decay)
        self.nesterov = bool(nesterov)
        self._buffers = [None] * len(self.params)

    def step(self):
        for i, p in enumerate(self.params):
            g = p.grad
            if self.weight_decay:
                g = g + self.weight_decay * p.data
            if self.momentum:
                buf = self._buffers[i]
                if buf is None:
                    buf = self._buffers[i] = g.copy()
                else:
                    buf *= self.momentum
                    buf += (1.0 - self.dampening) * g
                g = g + self.momentum * buf if self.nesterov else buf
            p.data -= self.lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba), PyTorch's rule with L2 weight decay added to the gradient."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        beta1, beta2 = betas
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ValueError(f"Adam: betas: expected values in [0, 1), got {tuple(betas)}")
        self.betas = (float(beta1), float(beta2))
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        self.t = 0
        self._m = [np.zeros_like(p.data) for p in self.params]
        self._v = [np.zeros_like(p.data) for p in self.params]

    def step(self):
        self.t += 1
        beta1, beta2 = self.betas
        step_size = self.lr / (1.0 - beta1**self.t)
        bias_correction2_sqrt = math.sqrt(1.0 - beta2**self.t)
        for p, m, v in zip(self.params, self._m, self._v):
            g = p.grad
            if self.weight_decay:
                g = g + self.weight_decay * p.data
            m *= beta1
            m += (1.0 - beta1) * g
            v *= beta2
            v += (1.0 - beta2) * g * g
            denom = np.sqrt(v) / bias_correction2_sqrt + self.eps
            p.data -= step_size * m / denom


class StepLR:
    """Multiplies the optimiser's learning rate by gamma every step_size epochs
    (call step() once per epoch)."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        if step_size <= 0:
            raise ValueError(f"StepLR: step_size: expected a positive int, got {step_size}")
        self.optimizer = optimizer
        self.step_size = int(step_size)
        self.gamma = float(gamma)
        self.base_lr = optimizer.lr
        self.epoch = 0

    def step(self):
        self.epoch += 1
        self.optimizer.lr = self.base_lr * self.gamma ** (self.epoch // self.step_size)

    def get_last_lr(self):
        return self.optimizer.lr
