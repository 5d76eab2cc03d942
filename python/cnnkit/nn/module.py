"""Torch7-style modules: `forward` keeps what `backward` needs; `backward(grad_out)`
returns the input gradient and accumulates parameter gradients into `.grad`."""

from collections import OrderedDict

import numpy as np

__all__ = ["Parameter", "Module", "Sequential"]


class Parameter:
    """A trainable array `.data` with its accumulated gradient `.grad` (same shape and dtype)."""

    __slots__ = ("data", "grad")

    def __init__(self, data):
        self.data = np.ascontiguousarray(data)
        self.grad = np.zeros_like(self.data)

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self):
        return self.data.size

    def __repr__(self):
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base class. Subclasses implement `forward(x)` and `backward(grad_out)`.

    Attributes that are `Parameter`s or `Module`s are registered automatically, in
    assignment order; `register_buffer` registers non-trainable state (running stats)
    that `state_dict` saves.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_cache", None)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call Module.__init__() before assigning attributes")
        for registry in (self._parameters, self._modules):
            registry.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        elif name in self._buffers:
            self._buffers[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name, array):
        self._buffers[name] = array
        object.__setattr__(self, name, array)

    # -- computation -----------------------------------------------------------------
    def forward(self, *args):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, grad_output):
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def _save(self, *values):
        """Keep what backward needs (called by forward)."""
        self._cache = values

    def clear_state(self):
        """Forget what the last forward kept (backward then needs a new forward)."""
        self._cache = None

    def _saved(self):
        """What forward kept; an error if forward has not run."""
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward: called before forward")
        return self._cache

    # -- traversal -------------------------------------------------------------------
    def children(self):
        return iter(self._modules.values())

    def named_modules(self, prefix=""):
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix=""):
        for mod_name, module in self.named_modules(prefix):
            for name, p in module._parameters.items():
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self):
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self, prefix=""):
        for mod_name, module in self.named_modules(prefix):
            for name, b in module._buffers.items():
                yield (f"{mod_name}.{name}" if mod_name else name), b

    def num_parameters(self):
        return sum(p.size for p in self.parameters())

    # -- state -----------------------------------------------------------------------
    def zero_grad(self):
        for p in self.parameters():
            p.grad.fill(0)

    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def to(self, dtype):
        """Convert parameters (and their gradients) and buffers to `dtype`, in place."""
        dtype = np.dtype(dtype)
        for p in self.parameters():
            p.data = p.data.astype(dtype)
            p.grad = p.grad.astype(dtype)
        for module in self.modules():
            for name, b in list(module._buffers.items()):
                module.register_buffer(name, b.astype(dtype))
        for module in self.modules():
            module.clear_state()
        return self

    def state_dict(self):
        """Copies of every parameter and buffer, keyed by dotted name."""
        state = OrderedDict((name, p.data.copy()) for name, p in self.named_parameters())
        state.update((name, b.copy()) for name, b in self.named_buffers())
        return state

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays into the parameters and buffers, in place (cast to their dtype).

        Raises ValueError naming the key for a missing key, a shape that doesn't match,
        or (when strict) a key the module doesn't have.
        """
        targets = OrderedDict((name, p.data) for name, p in self.named_parameters())
        targets.update(self.named_buffers())
        missing = [k for k in targets if k not in state_dict]
        if missing:
            raise ValueError(f"load_state_dict: missing key(s) {', '.join(map(repr, missing))}")
        unexpected = [k for k in state_dict if k not in targets]
        if strict and unexpected:
            raise ValueError(f"load_state_dict: unexpected key(s) {', '.join(map(repr, unexpected))}")
        for key, target in targets.items():
            value = np.asarray(state_dict[key])
            if value.shape != target.shape:
                raise ValueError(
                    f"load_state_dict: {key!r}: expected shape {target.shape}, got {value.shape}"
                )
        for key, target in targets.items():
            target[...] = state_dict[key]
        return self

    def save(self, path):
        """Write state_dict() to an .npz file."""
        np.savez(path, **self.state_dict())

    def load(self, path):
        """Load parameters and buffers from an .npz file written by save()."""
        with np.load(path, allow_pickle=False) as archive:
            self.load_state_dict({k: archive[k] for k in archive.files})
        return self

    # -- printing --------------------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not self._modules:
            return head + ")"
        lines = [head]
        for name, child in self._modules.items():
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_repr}")
        return "\n".join(lines) + "\n)"


class Sequential(Module):
    """Modules applied in order; backward runs them in reverse. Indexable and iterable."""

    def __init__(self, *modules):
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: module {i}: expected a Module, got {type(m).__name__}")
            setattr(self, str(i), m)

    def append(self, module):
        if not isinstance(module, Module):
            raise TypeError(f"Sequential.append: expected a Module, got {type(module).__name__}")
        setattr(self, str(len(self._modules)), module)
        return self

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        layers = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*layers[index])
        return layers[index]

    def forward(self, x):
        for m in self:
            x = m(x)
        return x

    def backward(self, grad_output):
        for m in reversed(list(self)):
            grad_output = m.backward(grad_output)
        return grad_output
