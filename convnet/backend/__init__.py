"""Backend selection: which Ops object the layers ask for their hot kernels.

The model code never calls numpy, numba or cupy for its heavy work directly; it
asks `get_ops()` (the active Ops) for `xp` (the array module) and for kernel pairs
such as im2col/col2im or maxpool/maxpool_backward.

- "numpy": NumpyOps, the readable reference.
- "numba": NumbaOps, jitted CPU kernels (default where numba imports).
- "cupy":  CupyOps, the same reference code on a GPU through CuPy.
"""

import contextlib
import os

from .numpy_ops import NumpyOps

BACKENDS = ("numpy", "numba", "cupy")
_instances = {}
_active = None


def _create(name):
    if name == "numpy":
        return NumpyOps()
    if name == "numba":
        try:
            from .numba import NumbaOps
        except ImportError as exc:
            raise ValueError(
                f"backend 'numba' is not available: {exc}. "
                "Install it with `pip install numba` (or the extra convnet[numba])."
            ) from exc
        return NumbaOps()
    if name == "cupy":
        from .cupy_ops import CupyOps  # raises a clear ValueError without a GPU
        return CupyOps()
    raise ValueError(f"unknown backend {name!r}; expected one of {BACKENDS}")


def get_ops(name=None):
    """The Ops object of backend `name`, or of the active backend when None."""
    if name is None:
        if _active is None:
            _set_default()
        return _active
    if name not in _instances:
        _instances[name] = _create(name)
    return _instances[name]


def set_backend(name):
    """Make `name` ("numpy", "numba" or "cupy") the backend for all layers."""
    global _active
    if not isinstance(name, str):
        raise TypeError(f"set_backend: expected a backend name string, got {type(name).__name__}")
    _active = get_ops(name.lower())


def get_backend():
    """The name of the active backend."""
    return get_ops().name


@contextlib.contextmanager
def use_backend(name):
    """Run a block with another backend, then restore the previous one."""
    global _active
    previous = get_ops()
    set_backend(name)
    try:
        yield get_ops()
    finally:
        _active = previous


def available_backends():
    """Names of the backends that can be created on this machine."""
    names = []
    for name in BACKENDS:
        try:
            get_ops(name)
        except (ValueError, ImportError):
            continue
        names.append(name)
    return names


def _set_default():
    """$CONVNET_BACKEND if set, else numba where it imports, else numpy."""
    global _active
    requested = os.environ.get("CONVNET_BACKEND", "").strip().lower()
    if requested:
        _active = get_ops(requested)
        return
    try:
        _active = get_ops("numba")
    except ValueError:
        _active = get_ops("numpy")
