"""Loading the python version's pickles without running what a file asks for.

``pickle.load`` runs whatever a file names, and CIFAR tarballs are routinely
fetched from mirrors. The unpickler here can rebuild a plain numeric numpy
array and nothing else, and no array larger than the file.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import operator
import pickle
from collections.abc import Callable
from typing import IO, Any

import numpy as np

from components.cifar_example_gen.cifar_format.common import CifarFormatError, brief, error


# What unpickling garbage can raise; CifarFormatError (a ValueError) is re-raised
# before this list is consulted.
_PICKLE_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    AttributeError,
    IndexError,
    KeyError,
    MemoryError,
    OverflowError,
    RecursionError,
)


def _numpy_reconstruct() -> Callable[..., Any]:
    """numpy's array-unpickling helper, found without importing the deprecated ``numpy.core``.

    numpy 2 moved it to ``numpy._core``; going through the old name would emit a
    DeprecationWarning on every load of the (Python 2 era) official files.
    """
    for module_name in ("numpy._core.multiarray", "numpy.core.multiarray"):
        with contextlib.suppress(ImportError):
            return importlib.import_module(module_name)._reconstruct
    raise ImportError("numpy has no multiarray._reconstruct")  # pragma: no cover


_RECONSTRUCT = _numpy_reconstruct()
# Array element kinds a batch may hold (bool, ints, floats): never Python
# objects, whose pickled form makes numpy read pointers from the file.
_NUMERIC_KINDS = "biuf"


class _Refused(Exception):
    """What a pickle asked for and a CIFAR-10 batch must not contain (the file is named later)."""


def _plain_dtype(spec: object) -> np.dtype:
    """The builtin numeric dtype that ``spec`` (a name such as ``b'u1'``) stands for."""
    if isinstance(spec, _PickledDtype):
        return spec.dtype
    try:
        dtype = np.dtype(spec)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise _Refused(f"refusing to unpickle numpy dtype {brief(spec)}: not a dtype") from None
    if dtype.kind not in _NUMERIC_KINDS:
        raise _Refused(
            f"refusing to unpickle a numpy array of dtype {dtype}: only arrays of numbers "
            f"are allowed in CIFAR-10 batches"
        )
    return dtype


class _PickledDtype:
    """What ``numpy.dtype(name, align, copy)`` in a pickle builds; BUILD sets only its byte order.

    numpy's own ``dtype.__setstate__`` takes flags and an item size from the
    file (a uint8 dtype can be made to claim that it holds Python objects, so
    that arrays read pointers from the data), so a pickle never reaches it:
    the dtype is rebuilt from its name and byte order alone.
    """

    def __init__(self, spec: object, align: object = False, copy: object = False) -> None:
        self.dtype = _plain_dtype(spec)

    def __setstate__(self, state: object) -> None:
        byteorder = state[1] if isinstance(state, tuple) and len(state) > 1 else None
        if byteorder in ("<", ">"):  # '|' (single bytes) and '=' (native) change nothing
            self.dtype = self.dtype.newbyteorder(byteorder)

    def __repr__(self) -> str:
        return repr(self.dtype)


def _sizes(value: object, what: str) -> tuple[int, ...]:
    """A shape or strides tuple (or a single int) as ints, or a refusal naming ``what``."""
    try:
        sizes = value if isinstance(value, (tuple, list)) else (value,)
        return tuple(operator.index(n) for n in sizes)
    except TypeError:
        raise _Refused(f"refusing to unpickle a numpy array with {what} {brief(value)}") from None


def _checked_state(state: object) -> tuple[object, ...]:
    """An array's BUILD state ``(version, shape, dtype, is_fortran, data)``: clean dtype, raw bytes.

    numpy then checks that the bytes fill the shape exactly, so the array is no
    larger than what the file holds; data given as a list of objects (which
    numpy trusts to have the right length, and crashes on otherwise) is refused.
    """
    if not isinstance(state, tuple) or len(state) != 5:
        raise _Refused(f"refusing to unpickle a numpy array with state {brief(state)}")
    version, shape, dtype, is_fortran, data = state
    if not isinstance(data, (bytes, bytearray)):
        raise _Refused(
            f"refusing to unpickle a numpy array whose data is a {type(data).__name__}, not bytes"
        )
    return version, shape, _plain_dtype(dtype), is_fortran, data


class _GuardedArray(np.ndarray):
    """The arrays the safe unpickler builds: pickle's BUILD (``__setstate__``) is checked first."""

    def __setstate__(self, state: Any) -> None:
        super().__setstate__(_checked_state(state))


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild plain numeric numpy arrays and refuses every other global.

    A pickle can only call code it names through ``find_class`` (GLOBAL,
    STACK_GLOBAL, INST, OBJ and the extension registry all end up here), so
    allowing nothing but numpy's array reconstruction makes ``os.system`` and
    friends unreachable. ``_codecs.encode`` is allowed for latin1 text only:
    that is how Python 3 writes bytes at protocol 2 or lower (PyTorch's
    ``weights_only`` loader allows it for the same reason).

    Arrays are bounded before they are allocated: together they may not claim
    more bytes than the file has (``size``), and strides must be positive, so
    a 200-byte file cannot stand for a 6 GB array by repeating one byte.
    ``encoding='bytes'`` is what the official files need: Python 2 wrote their
    ``str`` objects, including the raw pixel data, as byte strings.
    """

    def __init__(self, stream: IO[bytes], size: int) -> None:
        super().__init__(stream, encoding="bytes")
        self._size = size
        self._unclaimed = size
        self._new_ndarray = self._ndarray  # bound once: _reconstruct checks its subtype by identity
        self._globals: dict[tuple[str, str], Any] = {
            # numpy.core is what Python 2/numpy 1 wrote, numpy._core what numpy 2 writes.
            ("numpy.core.multiarray", "_reconstruct"): self._reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): self._reconstruct,
            ("numpy", "ndarray"): self._new_ndarray,
            ("numpy", "dtype"): _PickledDtype,
            ("_codecs", "encode"): _latin1_encode,
        }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._globals[(module, name)]
        except KeyError:
            raise _Refused(
                f"refusing to unpickle global {module}.{name}: only numpy arrays are allowed "
                f"in CIFAR-10 batches (a file that needs it is corrupt or malicious)"
            ) from None

    def _claim(self, shape: object, dtype: np.dtype) -> tuple[int, ...]:
        """Count an array about to be allocated against the file's bytes; returns its shape."""
        dims = _sizes(shape, "shape")
        if any(n < 0 for n in dims):
            raise _Refused(f"refusing to unpickle a numpy array with shape {dims}")
        nbytes = math.prod(dims) * max(dtype.itemsize, 1)
        if nbytes > self._unclaimed:
            raise _Refused(
                f"refusing to unpickle a numpy array of shape {dims} {dtype}: it declares "
                f"{nbytes:,} bytes, more than the file's {self._size:,} bytes hold"
            )
        self._unclaimed -= nbytes
        return dims

    def _reconstruct(self, subtype: object, shape: object, dtype: object) -> np.ndarray:
        """numpy's ``_reconstruct``: an empty array (``(0,)`` in real files) for BUILD to fill."""
        if subtype is not self._new_ndarray:
            raise _Refused(f"refusing to unpickle a numpy array of type {brief(subtype)}")
        plain = _plain_dtype(dtype)
        return _RECONSTRUCT(_GuardedArray, self._claim(shape, plain), plain)

    def _ndarray(
        self,
        shape: object,
        dtype: object = float,
        buffer: object = None,
        offset: object = 0,
        strides: object = None,
        order: object = "C",
    ) -> np.ndarray:
        """``numpy.ndarray(...)`` called by a pickle (numpy never writes that): bounded strictly."""
        plain = _plain_dtype(dtype)
        if strides is not None and not all(n > 0 for n in _sizes(strides, "strides")):
            raise _Refused(
                f"refusing to unpickle a numpy array with strides {brief(strides)}: zero or "
                f"negative strides make a few bytes stand for a large array"
            )
        dims = self._claim(shape, plain)
        return _GuardedArray(dims, plain, buffer, offset, strides, order)


def _latin1_encode(text: object, encoding: object = "latin1") -> bytes:
    """``_codecs.encode(text, 'latin1')``, the one use allowed: Python 3's protocol-2 form of bytes.

    Other codecs (``zlib``, ``base64``, ...) and anything but text are refused.
    """
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused(
            f"refusing to unpickle _codecs.encode({type(text).__name__}, {brief(encoding)}): "
            f"only latin1 text (how Python 3 pickles bytes at protocol 2) is allowed"
        )
    return text.encode("latin-1")


def _safe_unpickle(stream: IO[bytes], path: str, size: int) -> Any:
    """Load a ``size``-byte pickle with :class:`_NumpyOnlyUnpickler`; garbage: CifarFormatError."""
    try:
        return _NumpyOnlyUnpickler(stream, size).load()
    except CifarFormatError:
        raise
    except _Refused as exc:
        raise error(path, str(exc)) from None
    except _PICKLE_ERRORS as exc:
        raise error(path, f"not a valid pickle ({type(exc).__name__}: {exc})") from None


def as_text(value: object) -> object:
    """Decode byte strings (what Python 2 pickles load as); leave anything else alone."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _unguarded(value: object) -> object:
    """A loaded array as a plain ndarray (same memory); anything else as it is."""
    return value.view(np.ndarray) if isinstance(value, _GuardedArray) else value


def load_pickled_dict(stream: IO[bytes], path: str, size: int) -> dict[object, Any]:
    """Unpickle a dict and normalise its keys to str, whether they were pickled as bytes or str."""
    loaded = _safe_unpickle(stream, path, size)
    if not isinstance(loaded, dict):
        raise error(path, f"expected a pickled dict, found {type(loaded).__name__}")
    return {as_text(key): _unguarded(value) for key, value in loaded.items()}
