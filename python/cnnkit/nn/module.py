"""Torch7-style modules: `forward` keeps what `backward` needs; `backward(grad_out)`
returns the input gradient and accumulates parameter gradients into `.grad`.

The base class guards every subclass's `forward` and `backward` (see
`Module.__init_subclass__`): a forward that raises leaves no saved state behind, a
backward before forward is a RuntimeError, and a grad_output whose shape is not that of
the forward's output is a ValueError naming the layer.
"""

import functools
import os
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

from .. import _device
from .._args import boolean

__all__ = ["Parameter", "Module", "Sequential"]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _is_array(x):
    """An array the kernels take: a NumPy array, or a device array (CuPy) that
    cnnkit.functional checks itself."""
    return isinstance(x, np.ndarray) or hasattr(x, "__cuda_array_interface__")


class Parameter:
    """A trainable array with its accumulated gradient.

    Parameter is array-like: ``np.asarray(p)`` is ``p.data`` itself (no copy), and
    ``p.shape``, ``p.dtype``, ``p.size`` and ``p.ndim`` are those of ``p.data``.

    Parameters
    ----------
    data : array_like
        The initial value, float32 or float64; stored as a C-contiguous ndarray (a
        cupy.ndarray stays one, on its device).

    Attributes
    ----------
    data : numpy.ndarray or cupy.ndarray
        The value. Optimisers update it in place.
    grad : numpy.ndarray or cupy.ndarray
        The accumulated gradient, same shape, dtype and device as ``data``;
        ``backward`` adds to it and ``Module.zero_grad`` resets it.

    Raises
    ------
    TypeError
        If data is not a float32 or float64 array.
    """

    __slots__ = ("data", "grad")

    def __init__(self, data):
        xp = _device.array_module(data)
        array = xp.ascontiguousarray(data)
        if array.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"Parameter: data: expected a float32 or float64 array, got {array.dtype}")
        self.data = array
        self.grad = xp.zeros_like(array)

    @property
    def shape(self):
        """tuple of int: shape of ``data`` (read-only)."""
        return self.data.shape

    @property
    def dtype(self):
        """numpy.dtype: dtype of ``data`` (read-only)."""
        return self.data.dtype

    @property
    def size(self):
        """int: number of elements of ``data`` (read-only)."""
        return self.data.size

    @property
    def ndim(self):
        """int: number of dimensions of ``data`` (read-only)."""
        return self.data.ndim

    def __array__(self, dtype=None, copy=None):
        """The NumPy array protocol (NumPy 2's signature; NumPy 1 passes dtype only).

        Parameters
        ----------
        dtype : data-type, optional
            Convert to this dtype (a copy, unless it is ``data``'s dtype).
        copy : bool or None, optional
            True: always a copy. None: ``data`` itself unless dtype needs a copy.
            False: never a copy.

        Returns
        -------
        numpy.ndarray
            ``data``, or a converted copy of it.

        Raises
        ------
        ValueError
            If copy is False and dtype differs from ``data``'s dtype.
        TypeError
            If ``data`` is on a GPU (NumPy would need a device-to-host copy).
        """
        array = self.data
        if type(array) is not np.ndarray and _device.array_module(array) is not np:
            raise TypeError(
                f"Parameter.__array__: data: expected a host array for NumPy, got one on {_device.describe(array)} "
                "(move its module with .cpu(), or copy it with cupy.asnumpy)"
            )
        if dtype is not None and np.dtype(dtype) != array.dtype:
            if copy is False:
                raise ValueError(
                    f"Parameter.__array__: copy: converting {array.dtype} to {np.dtype(dtype)} needs a copy, "
                    "got copy=False"
                )
            return array.astype(dtype)
        return array.copy() if copy else array

    def __repr__(self):
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


def _host_copy(a):
    host = _device.to_host(a)
    return host.copy() if host is a else host


def _output_shape(out):
    """The shape that backward's grad_output must have: that of forward's result (its
    first item for a tuple such as MaxPool2d's (y, switches)); None when the result is
    not an array (a loss's float)."""
    y = out[0] if isinstance(out, tuple) and out else out
    return tuple(y.shape) if _is_array(y) else None


def _guard_forward(fn):
    @functools.wraps(fn)
    def forward(self, *args, **kwargs):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call Module.__init__() before forward")
        object.__setattr__(self, "_forwarded", False)
        try:
            out = fn(self, *args, **kwargs)
        except BaseException:
            # A failed forward must not leave a previous forward's state (or a partial
            # one: a Sequential's earlier children) for backward to use.
            for m in self.modules():
                m.clear_state()
            raise
        object.__setattr__(self, "_forwarded", True)
        object.__setattr__(self, "_forward_output_shape", _output_shape(out))
        return out

    forward._cnnkit_guarded = True
    return forward


def _guard_backward(fn):
    @functools.wraps(fn)
    def backward(self, *args, **kwargs):
        name = type(self).__name__
        if not self.__dict__.get("_forwarded"):
            raise RuntimeError(f"{name}.backward: called before forward (or after a forward that raised)")
        expected = self.__dict__.get("_forward_output_shape")
        if self._check_grad_output and expected is not None and (args or "grad_output" in kwargs):
            g = args[0] if args else kwargs["grad_output"]
            if not _is_array(g):
                raise TypeError(
                    f"{name}.backward: grad_output: expected an array of shape {expected} (forward's output), "
                    f"got {type(g).__name__}"
                )
            if tuple(g.shape) != expected:
                raise ValueError(
                    f"{name}.backward: grad_output: expected shape {expected} (forward's output), got {tuple(g.shape)}"
                )
        result = fn(self, *args, **kwargs)
        for hook in self.__dict__.get("_backward_hooks", ()):
            hook(self)
        return result

    backward._cnnkit_guarded = True
    return backward


def _path_arg(module, path, method, mode):
    """save's and load's path as a str (from a str, bytes or os.PathLike), or a file
    object as it is (one with a `mode` method, 'read' or 'write'); a TypeError naming
    the module's method otherwise (an int file descriptor included)."""
    if isinstance(path, (str, bytes, os.PathLike)):
        try:
            return os.fsdecode(os.fspath(path))
        except TypeError:  # a PathLike whose __fspath__ returns neither str nor bytes
            pass
    elif hasattr(path, mode) and not isinstance(path, type):
        return path
    raise TypeError(
        f"{type(module).__name__}.{method}: path: expected a str, bytes or os.PathLike path (or a file object "
        f"with a {mode} method), got {type(path).__name__}"
    )


def _read_npz(file, where):
    """name -> array of an .npz archive open for reading, never unpickling; a file
    that is not one, or a damaged one, is a ValueError starting with `where`."""
    expected = f"{where}: expected an .npz archive written by save, got"
    try:
        archive = np.load(file, allow_pickle=False)
    except ValueError:  # neither a zip nor a .npy file: numpy would have to unpickle it
        raise ValueError(f"{expected} a file that is not one (neither a zip archive nor a readable .npy file; "
                         "load never unpickles)") from None
    except (EOFError, zipfile.BadZipFile) as e:  # empty, truncated
        raise ValueError(f"{expected} a truncated or corrupt one ({type(e).__name__}: {e})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{expected} a .npy file (one array of shape {np.shape(archive)})")
    with archive:
        try:
            return {k: archive[k] for k in archive.files}
        except (ValueError, EOFError, KeyError, NotImplementedError, zipfile.BadZipFile, zlib.error) as e:
            # a damaged member, or an object array (never unpickled)
            raise ValueError(f"{expected} one it cannot read ({type(e).__name__}: {e})") from None


class Module:
    """Base class of layers, losses and containers.

    Subclasses implement ``forward(x)``, which keeps what backward needs (through
    ``_save``), and ``backward(grad_output)``, which returns the gradient with respect
    to the input and adds the parameter gradients to each ``Parameter.grad``. Calling a
    module calls ``forward``.

    Attributes that are `Parameter`s or `Module`s are registered automatically, in
    assignment order; ``register_buffer`` registers non-trainable state (running
    statistics) that ``state_dict`` saves.

    Every subclass's forward and backward are guarded by the base class:

    - a forward that raises clears the saved state of the module and of all its
      submodules, so no stale state from an earlier forward reaches backward;
    - backward before forward (or after a forward that raised) raises RuntimeError;
    - backward checks that grad_output is an array of the forward output's shape
      (ValueError or TypeError naming the module otherwise). Losses, whose backward
      takes a scale, set ``_check_grad_output = False``.

    Attributes
    ----------
    training : bool
        True in training mode (the default), False after ``eval()``.
    """

    _check_grad_output = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name, guard in (("forward", _guard_forward), ("backward", _guard_backward)):
            fn = cls.__dict__.get(name)
            if callable(fn) and not getattr(fn, "_cnnkit_guarded", False):
                setattr(cls, name, guard(fn))

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_cache", None)
        object.__setattr__(self, "_forwarded", False)
        object.__setattr__(self, "_forward_output_shape", None)

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
        """Register non-trainable state that ``state_dict`` saves and ``to`` converts.

        Parameters
        ----------
        name : str
            Attribute name of the buffer.
        array : numpy.ndarray
            Its value (e.g. BatchNorm2d's running_mean).
        """
        self._buffers[name] = array
        object.__setattr__(self, name, array)

    def register_backward_hook(self, hook):
        """Call ``hook(module)`` after each backward of this module returns, when the
        gradients of its own parameters are accumulated (DataParallel starts a
        bucket's allreduce from there).

        Parameters
        ----------
        hook : callable
            Takes the module.

        Raises
        ------
        TypeError
            If hook is not callable.
        """
        if not callable(hook):
            raise TypeError(f"{type(self).__name__}.register_backward_hook: hook: expected a callable, "
                            f"got {type(hook).__name__}")
        self.__dict__.setdefault("_backward_hooks", []).append(hook)

    # -- computation -----------------------------------------------------------------
    def forward(self, *args):
        """Compute the output and keep what backward needs. Implemented by subclasses.

        Raises
        ------
        NotImplementedError
            In the base class.
        """
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, grad_output):
        """Return the gradient with respect to forward's input, given grad_output (the
        gradient with respect to its output, of the output's shape), and add the
        parameter gradients to each ``Parameter.grad``. Implemented by subclasses.

        Raises
        ------
        NotImplementedError
            In the base class.
        """
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def _save(self, *values):
        """Keep what backward needs (called by forward)."""
        self._cache = values

    def clear_state(self):
        """Forget what the last forward kept; backward then needs a new forward.

        Subclasses that keep more state (MaxPool2d's switches) extend it.
        """
        object.__setattr__(self, "_cache", None)
        object.__setattr__(self, "_forwarded", False)
        object.__setattr__(self, "_forward_output_shape", None)

    def _saved(self):
        """What forward kept; an error if forward has not run."""
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward: called before forward (or after a forward that raised)")
        return self._cache

    # -- traversal -------------------------------------------------------------------
    def children(self):
        """Iterate over the direct submodules, in registration order."""
        return iter(self._modules.values())

    def named_modules(self, prefix=""):
        """Iterate over this module and every submodule, depth first, with names.

        Parameters
        ----------
        prefix : str, default ""
            The name of this module; children are "prefix.name".

        Yields
        ------
        (str, Module)
            Dotted name and module, this module first.
        """
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        """Iterate over this module and every submodule, depth first."""
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix=""):
        """Iterate over every parameter with its dotted name.

        Parameters
        ----------
        prefix : str, default ""
            Prepended (with a dot) to every name.

        Yields
        ------
        (str, Parameter)
            e.g. ``("0.weight", p)``.
        """
        for mod_name, module in self.named_modules(prefix):
            for name, p in module._parameters.items():
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self):
        """Iterate over every Parameter (what an optimiser takes)."""
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self, prefix=""):
        """Iterate over every buffer with its dotted name.

        Parameters
        ----------
        prefix : str, default ""
            Prepended (with a dot) to every name.

        Yields
        ------
        (str, numpy.ndarray)
            e.g. ``("1.running_mean", a)``.
        """
        for mod_name, module in self.named_modules(prefix):
            for name, b in module._buffers.items():
                yield (f"{mod_name}.{name}" if mod_name else name), b

    def num_parameters(self):
        """int: total number of parameter elements."""
        return sum(p.size for p in self.parameters())

    # -- state -----------------------------------------------------------------------
    def zero_grad(self):
        """Set every parameter's ``.grad`` to zero, in place."""
        for p in self.parameters():
            p.grad.fill(0)

    def train(self, mode=True):
        """Set training mode (mode True) or eval mode on this module and all submodules.

        Parameters
        ----------
        mode : bool, default True

        Returns
        -------
        Module
            self.
        """
        mode = boolean(mode, f"{type(self).__name__}.train", "mode")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        """Set eval mode (dropout off, batch norm on running statistics); returns self."""
        return self.train(False)

    def to(self, target):
        """Move parameters (and their gradients) and buffers to a device, or convert
        them to a dtype, in place; the Parameter objects stay (an optimiser keeps them).

        Saved forward state is cleared, so backward needs a new forward.

        Parameters
        ----------
        target : str or dtype
            A device, "cpu", "cuda" (the current CUDA device) or "cuda:N"; or a dtype,
            numpy.float32 or numpy.float64.

        Returns
        -------
        Module
            self.

        Raises
        ------
        TypeError
            If target is neither a device nor float32 or float64.
        ValueError
            If target is a malformed device ("cuda:x"), or "cuda:N" beyond the devices.
        RuntimeError
            For "cuda" where CuPy is not installed or sees no GPU.
        """
        name = type(self).__name__
        if isinstance(target, str) and target.startswith(("cpu", "cuda")):
            return self._move(*_device.parse_device(target, f"{name}.to: device"), f"{name}.to: device")
        try:
            dtype = None if target is None else np.dtype(target)
        except TypeError:
            dtype = None
        if dtype is None or dtype not in _FLOAT_DTYPES:  # (None == np.dtype("float64") is True)
            raise TypeError(
                f"{name}.to: dtype: expected float32 or float64 (or a device: 'cpu', 'cuda', 'cuda:N'), got {target!r}"
            )
        return self._apply(lambda a: a.astype(dtype))

    def cuda(self, device=None):
        """Move parameters, gradients and buffers to a CUDA device (as ``to``).

        Parameters
        ----------
        device : int, optional
            The device index; default the current CUDA device.

        Returns
        -------
        Module
            self.

        Raises
        ------
        TypeError
            If device is not an int.
        ValueError
            If device is negative or beyond the devices.
        RuntimeError
            Where CuPy is not installed or sees no GPU.
        """
        where = f"{type(self).__name__}.cuda: device"
        if device is not None:
            if isinstance(device, bool) or not isinstance(device, (int, np.integer)):
                raise TypeError(f"{where}: expected an int device index, got {type(device).__name__}")
            if device < 0:
                raise ValueError(f"{where}: expected a device index >= 0, got {device}")
            device = int(device)
        return self._move("cuda", device, where)

    def cpu(self):
        """Move parameters, gradients and buffers to the host (as ``to("cpu")``); returns self."""
        return self._move("cpu", None, f"{type(self).__name__}.cpu")

    def _move(self, kind, index, where):
        if kind == "cuda":
            _device.cuda_module(where, index)
        return self._apply(lambda a: _device.to_device(a, kind, index))

    def _apply(self, convert):
        """Replace every parameter's data and grad, and every buffer, by convert(it)."""
        for p in self.parameters():
            p.data = convert(p.data)
            p.grad = convert(p.grad)
        for module in self.modules():
            for name, b in list(module._buffers.items()):
                module.register_buffer(name, convert(b))
        for module in self.modules():
            module.clear_state()
        return self

    def state_dict(self):
        """Host copies of every parameter and buffer (on any device).

        Returns
        -------
        collections.OrderedDict
            Dotted name -> numpy.ndarray copy; parameters first, then buffers.
        """
        state = OrderedDict((name, _host_copy(p.data)) for name, p in self.named_parameters())
        state.update((name, _host_copy(b)) for name, b in self.named_buffers())
        return state

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays into the parameters and buffers, in place (cast to their dtype).

        Parameters
        ----------
        state_dict : mapping
            Dotted name -> array (NumPy or CuPy: each is copied to its target's
            device), as ``state_dict()`` returns.
        strict : bool, default True
            Refuse keys the module does not have.

        Returns
        -------
        Module
            self.

        Raises
        ------
        TypeError
            If state_dict is not a mapping (a dict; a list of pairs included).
        ValueError
            Naming the key, for a missing key, a shape that doesn't match, or (when
            strict) a key the module doesn't have. Nothing is copied then.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                f"{type(self).__name__}.load_state_dict: state_dict: expected a mapping of names to arrays "
                f"(as state_dict() returns), got {type(state_dict).__name__}"
            )
        targets = OrderedDict((name, p.data) for name, p in self.named_parameters())
        targets.update(self.named_buffers())
        missing = [k for k in targets if k not in state_dict]
        if missing:
            raise ValueError(f"load_state_dict: missing key(s) {', '.join(map(repr, missing))}")
        unexpected = [k for k in state_dict if k not in targets]
        if strict and unexpected:
            raise ValueError(f"load_state_dict: unexpected key(s) {', '.join(map(repr, unexpected))}")
        for key, target in targets.items():
            shape = np.shape(state_dict[key])
            if shape != target.shape:
                raise ValueError(
                    f"load_state_dict: {key!r}: expected shape {target.shape}, got {shape}"
                )
        for key, target in targets.items():
            target[...] = _device.move_like(state_dict[key], target)
        return self

    def save(self, path):
        """Write ``state_dict()`` to an .npz file.

        Parameters
        ----------
        path : str, bytes, os.PathLike or file
            Where to write; like ``numpy.savez``, ".npz" is appended to a name
            that does not end with it. A file object must be open for writing
            (binary).

        Returns
        -------
        str or file
            The path of the file written (with ".npz"), or the file object given.

        Raises
        ------
        TypeError
            If path is none of these (an int file descriptor included).
        OSError
            If the file cannot be written.
        """
        path = _path_arg(self, path, "save", "write")
        if isinstance(path, str) and not path.endswith(".npz"):
            path += ".npz"
        np.savez(path, **self.state_dict())
        return path

    def load(self, path):
        """Load parameters and buffers from an .npz file written by ``save``.

        Parameters
        ----------
        path : str, bytes, os.PathLike or file
            A file object must be open for reading (binary) and seekable.

        Returns
        -------
        Module
            self.

        Raises
        ------
        TypeError
            If path is none of these (an int file descriptor included).
        OSError
            If the file cannot be read (FileNotFoundError, IsADirectoryError...).
        ValueError
            Naming the file: if it is not an .npz archive (a .npy file, a pickle,
            anything else), or is corrupt or holds object arrays (never unpickled);
            or as ``load_state_dict``, which then copies nothing.
        """
        path = _path_arg(self, path, "load", "read")
        where = f"{type(self).__name__}.load: {path if isinstance(path, str) else 'path'}"
        if isinstance(path, str):
            # opened here: np.load leaves its own file open when the zip is corrupt
            with open(path, "rb") as file:
                state = _read_npz(file, where)
        else:
            state = _read_npz(path, where)
        try:
            self.load_state_dict(state)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        return self

    # -- printing --------------------------------------------------------------------
    def extra_repr(self):
        """The arguments shown in this module's repr; subclasses override it."""
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
    """Modules applied in order; backward runs them in reverse.

    Indexable (an int gives a module, a slice a new Sequential sharing the modules),
    iterable and sized. Children are named "0", "1", ...

    Parameters
    ----------
    *modules : Module
        The layers, first to last.

    Raises
    ------
    TypeError
        If an argument is not a Module.
    """

    def __init__(self, *modules):
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: module {i}: expected a Module, got {type(m).__name__}")
            setattr(self, str(i), m)

    def append(self, module):
        """Add a module at the end; returns self.

        Raises
        ------
        TypeError
            If module is not a Module.
        """
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
        """Apply each module in turn.

        Parameters
        ----------
        x : numpy.ndarray
            Input of the first module.

        Returns
        -------
        numpy.ndarray
            Output of the last module.

        Raises
        ------
        ValueError, TypeError
            From the module that refuses its input; the state of every module is
            then cleared.
        """
        for m in self:
            x = m(x)
        return x

    def backward(self, grad_output):
        """Backpropagate through the modules in reverse order.

        Parameters
        ----------
        grad_output : numpy.ndarray
            Gradient with respect to forward's output (same shape).

        Returns
        -------
        numpy.ndarray
            Gradient with respect to forward's input.

        Raises
        ------
        RuntimeError
            Before forward.
        ValueError, TypeError
            If grad_output is not an array of the output's shape.
        """
        for m in reversed(list(self)):
            grad_output = m.backward(grad_output)
        return grad_output
