"""A strict stand-in for CuPy that runs on the CPU.

It exists so that the CuPy backend's code paths run on machines without a GPU
*and fail where real CuPy would fail*. A looser stand-in (numpy under the name
``cupy``) hides exactly the bug a GPU backend hits first: a host array mixed
with a device array, or an implicit ``np.asarray`` on device data.

What it copies from CuPy (checked against CuPy's own source: ``_core/core.pyx``,
``_core/_kernel.pyx``, ``_core/_routines_indexing.pyx``):

- Its arrays are ``DeviceArray`` objects, not numpy arrays (``isinstance(a,
  np.ndarray)`` is False). The values live in a private numpy array.
- ``np.asarray(a)`` / ``np.array(a)`` / ``a.__array__()`` raise the TypeError
  CuPy raises: "Implicit conversion to a NumPy array is not allowed. Please use
  `.get()` to construct a NumPy array explicitly."
- Only ``cupy.asnumpy(a)`` and ``a.get()`` copy device data to the host;
  ``cupy.asarray``/``cupy.array`` copy host data to the device (always a copy,
  so code that relies on a host array aliasing a device array breaks here too).
- An operation that mixes a device array with a numpy array raises
  ``TypeError: Unsupported type <class 'numpy.ndarray'>``, in either order
  (``dev + host``, ``host + dev``, ``np.exp(host, out=dev)``, ``cupy.where(.., host)``).
  Python and numpy *scalars* are fine, as in CuPy.
- ``dev[...] = host_array`` (basic indexing) raises the ValueError CuPy raises
  ("non-scalar numpy.ndarray cannot be used for fill"); with advanced (integer
  array) indexing CuPy copies the host values over, and so does this.
  Integer index arrays from the host are copied over, as CuPy does.
- numpy functions called on device arrays dispatch to the stand-in through
  ``__array_function__`` / ``__array_ufunc__`` and return device arrays, as
  CuPy's do (``np.concatenate([dev, dev])`` is a device array).
- Reductions return 0-d device arrays; ``float()``, ``int()``, ``bool()`` of a
  size-1 array work (a synchronisation in CuPy) and are counted.

Transfer bookkeeping: :data:`stats` counts every host->device and
device->host copy (and bytes) and every scalar read-back, so a test can assert
how much crosses the bus per training step.
"""

import types

import numpy as np

IMPLICIT_MESSAGE = ("Implicit conversion to a NumPy array is not allowed. "
                    "Please use `.get()` to construct a NumPy array explicitly.")


class TransferStats:
    """Counts of copies across the (pretend) bus since the last reset()."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.h2d = 0          # host -> device copies
        self.h2d_bytes = 0
        self.d2h = 0          # device -> host copies (asnumpy / get)
        self.d2h_bytes = 0
        self.scalar_reads = 0  # float()/int()/bool()/item() of a device array

    def snapshot(self):
        return dict(vars(self))


stats = TransferStats()


def _unsupported(value):
    return TypeError(f"Unsupported type {type(value)}")


def _unwrap(value):
    """Device arrays to their numpy values; a host ndarray raises (no implicit H2D)."""
    if isinstance(value, DeviceArray):
        return value._a
    if isinstance(value, np.ndarray):
        raise _unsupported(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v) for v in value)
    return value


def _wrap(value):
    if isinstance(value, np.ndarray):
        return DeviceArray(value)
    if isinstance(value, np.generic):
        return DeviceArray(np.asarray(value))        # reductions give 0-d device arrays
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def _call(func, args, kwargs):
    out = kwargs.get("out")
    if out is not None:
        outs = out if isinstance(out, tuple) else (out,)
        for o in outs:
            if not isinstance(o, DeviceArray):
                raise _unsupported(o)
    result = func(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()})
    if out is not None:
        return out
    return _wrap(result)


def _h2d(value, dtype=None, copy=True):
    """cupy.asarray on host data: a copy onto the device."""
    if isinstance(value, DeviceArray):
        if dtype is None or np.dtype(dtype) == value.dtype:
            return value
        return DeviceArray(value._a.astype(dtype))
    if isinstance(value, (list, tuple)) and any(isinstance(v, DeviceArray) for v in value):
        return DeviceArray(np.array([_unwrap(v) for v in value], dtype=dtype))
    host = np.array(value, dtype=dtype, copy=True)
    stats.h2d += 1
    stats.h2d_bytes += host.nbytes
    return DeviceArray(host)


def _is_advanced(key):
    keys = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, (list, np.ndarray, DeviceArray)) for k in keys)


def _index(key):
    """An index for the private array: host index arrays are copied over (as CuPy does)."""
    keys = key if isinstance(key, tuple) else (key,)
    out = []
    for k in keys:
        if isinstance(k, DeviceArray):
            out.append(k._a)
        elif isinstance(k, (np.ndarray, list)):
            out.append(_unwrap(_h2d(k)))
        else:
            out.append(k)
    return tuple(out) if isinstance(key, tuple) else out[0]


class DeviceArray:
    """An array on the pretend device. Not a numpy array; see the module docstring."""

    __slots__ = ("_a",)
    __array_priority__ = 100
    __hash__ = None

    def __init__(self, values):
        self._a = values

    # -- explicit conversion only ---------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        raise TypeError(IMPLICIT_MESSAGE)

    def get(self, stream=None, order="C", out=None):
        stats.d2h += 1
        stats.d2h_bytes += self._a.nbytes
        return np.array(self._a, order=order, copy=True)

    def tolist(self):
        return self.get().tolist()

    def item(self):
        stats.scalar_reads += 1
        return self._a.item()

    def _scalar(self, kind):
        if self._a.size != 1:
            raise TypeError(f"only size-1 arrays can be converted to Python scalars (got shape {self.shape})")
        stats.scalar_reads += 1
        return kind(self._a.reshape(()))

    def __float__(self):
        return self._scalar(float)

    def __int__(self):
        return self._scalar(int)

    def __index__(self):
        if self._a.dtype.kind not in "iub":
            raise TypeError("only integer arrays can be used as an index")
        return self._scalar(int)

    def __bool__(self):
        return self._scalar(bool)

    def __complex__(self):
        return self._scalar(complex)

    def __format__(self, spec):
        if self._a.ndim == 0:
            return format(self._scalar(lambda v: v[()]), spec)
        return format(self.get(), spec)

    def __repr__(self):
        return f"DeviceArray({self._a!r})"

    def __str__(self):
        return str(self._a)

    # -- numpy's dispatch protocols, as CuPy implements them ---------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if "out" in kwargs and isinstance(kwargs["out"], tuple) and len(kwargs["out"]) == 1:
            kwargs["out"] = kwargs["out"][0]
        func = ufunc if method == "__call__" else getattr(ufunc, method)
        return _call(func, inputs, kwargs)

    def __array_function__(self, func, types_, args, kwargs):
        if func.__name__ in _NO_DEVICE_VERSION:
            return NotImplemented
        return _call(func, args, kwargs)

    # -- attributes ------------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: DeviceArray(self._a.T))
    real = property(lambda self: DeviceArray(self._a.real))
    imag = property(lambda self: DeviceArray(self._a.imag))

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self._a.shape[0]))

    def __getitem__(self, key):
        return _wrap(self._a[_index(key)])

    def __setitem__(self, key, value):
        if isinstance(value, np.ndarray):
            if _is_advanced(key):
                value = _h2d(value)                 # CuPy copies these over
            elif value.ndim:
                raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
            else:
                value = value[()]
        self._a[_index(key)] = _unwrap(value)

    def __copy__(self):
        return DeviceArray(self._a.copy())

    def __deepcopy__(self, memo):
        return DeviceArray(self._a.copy())

    def __reduce__(self):
        raise TypeError("strict_cupy: device arrays are not pickled here (a model file must hold host arrays)")

    def __getattr__(self, name):
        # array methods (sum, reshape, astype, ...) run on the private array and
        # give device arrays back; a host ndarray among their arguments raises
        if name.startswith("__") or name == "_a" or name in _NO_DEVICE_METHOD:
            raise AttributeError(name)
        method = getattr(self._a, name)
        if not callable(method):
            raise AttributeError(name)
        return lambda *args, **kwargs: _call(method, args, kwargs)


def _binary(ufunc):
    def forward(self, other):
        return _call(ufunc, (self, other), {})

    def reflected(self, other):
        return _call(ufunc, (other, self), {})

    def inplace(self, other):
        return _call(ufunc, (self, other), {"out": self})
    return forward, reflected, inplace


for _name, _ufunc in [("add", np.add), ("sub", np.subtract), ("mul", np.multiply),
                      ("truediv", np.true_divide), ("floordiv", np.floor_divide), ("mod", np.remainder),
                      ("pow", np.power), ("matmul", np.matmul), ("and", np.bitwise_and),
                      ("or", np.bitwise_or), ("xor", np.bitwise_xor), ("lshift", np.left_shift),
                      ("rshift", np.right_shift)]:
    _f, _r, _i = _binary(_ufunc)
    setattr(DeviceArray, f"__{_name}__", _f)
    setattr(DeviceArray, f"__r{_name}__", _r)
    setattr(DeviceArray, f"__i{_name}__", _i)

for _name, _ufunc in [("lt", np.less), ("le", np.less_equal), ("gt", np.greater),
                      ("ge", np.greater_equal), ("eq", np.equal), ("ne", np.not_equal)]:
    setattr(DeviceArray, f"__{_name}__", _binary(_ufunc)[0])

for _name, _ufunc in [("neg", np.negative), ("pos", np.positive), ("abs", np.absolute),
                      ("invert", np.invert)]:
    setattr(DeviceArray, f"__{_name}__", (lambda u: lambda self: _call(u, (self,), {}))(_ufunc))

# array methods that would hand host memory out (CuPy has none of these)
_NO_DEVICE_METHOD = {"tofile", "tobytes", "tostring", "dump", "dumps", "ctypes", "data",
                     "__array_interface__", "base", "getfield", "setfield"}
# numpy functions CuPy does not implement; numpy then raises its own TypeError
_NO_DEVICE_VERSION = {"save", "savez", "savez_compressed", "savetxt", "tofile"}

# names taken from numpy as they are: types, dtypes, constants and introspection
_AS_IS = {"dtype", "issubdtype", "finfo", "iinfo", "result_type", "promote_types", "can_cast",
          "isscalar", "ndim", "shape", "newaxis", "inf", "nan", "pi", "e", "euler_gamma",
          "floating", "integer", "signedinteger", "unsignedinteger", "number", "generic",
          "inexact", "complexfloating", "bool_", "errstate", "seterr", "geterr"}


def asnumpy(a, stream=None, order="C", out=None):
    """cupy.asnumpy: device arrays are copied to the host; host data passes through."""
    if isinstance(a, DeviceArray):
        return a.get(order=order)
    return np.asarray(a, order=order)


def asarray(a, dtype=None, order=None):
    return _h2d(a, dtype=dtype)


def array(a, dtype=None, copy=True, order="K", ndmin=0):
    if isinstance(a, DeviceArray):
        out = a._a.astype(dtype or a.dtype, copy=copy)
        return DeviceArray(out if ndmin <= out.ndim else out.reshape((1,) * (ndmin - out.ndim) + out.shape))
    return _h2d(np.array(a, dtype=dtype, ndmin=ndmin))


def get_array_module(*args):
    return module if any(isinstance(a, DeviceArray) for a in args) else np


class _MemoryPool:
    def used_bytes(self):
        return 0

    def total_bytes(self):
        return 0

    def free_all_blocks(self):
        pass


def _make_module():
    mod = types.ModuleType("cupy", "strict CuPy stand-in (tests/strict_cupy.py)")
    for name in dir(np):
        if name.startswith("_") or name in ("asarray", "array", "asanyarray", "ascontiguousarray"):
            continue
        value = getattr(np, name)
        if name in _AS_IS or isinstance(value, type) or not callable(value):
            setattr(mod, name, value)            # dtypes, scalar types, constants
        else:
            setattr(mod, name, (lambda f: lambda *a, **k: _call(f, a, k))(value))
    mod.ndarray = DeviceArray
    mod.asarray = asarray
    mod.asanyarray = asarray
    mod.ascontiguousarray = asarray
    mod.array = array
    mod.asnumpy = asnumpy
    mod.get_array_module = get_array_module
    mod.get_default_memory_pool = lambda: _MemoryPool()
    mod.cuda = types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=lambda: 1),
        Device=lambda device=None: types.SimpleNamespace(synchronize=lambda: None, id=0),
        get_current_stream=lambda: types.SimpleNamespace(synchronize=lambda: None),
    )
    mod.is_strict_stand_in = True
    return mod


module = _make_module()
