"""Detection, safe streaming reading and validation of CIFAR-10 in its three on-disk forms.

Users point ``--data-dir`` at whatever they downloaded or extracted, so the
same dataset can arrive as:

* the official **python version**: ``cifar-10-python.tar.gz`` or its extracted
  ``cifar-10-batches-py/``, six pickled batches (``data_batch_1..5``,
  ``test_batch``) plus ``batches.meta``;
* the official **binary version**: ``cifar-10-binary.tar.gz`` or its extracted
  ``cifar-10-batches-bin/``, six ``.bin`` files of 3073-byte records (1 label
  byte + 3072 pixel bytes) plus ``batches.meta.txt``;
* an **image folder** (the ``cifar10png`` layout of cifar2png-style tools):
  ``train/<class>/*.png`` and ``test/<class>/*.png`` (or ``.jpg``/``.jpeg``).

In both official versions an image is three 1024-byte planes (R, then G, then
B), each a row-major 32x32 grid; everything here hands images out as
``[height, width, 3]`` uint8 arrays.

The pickles are the dangerous part: ``pickle.load`` runs whatever a file asks
for, and CIFAR tarballs are routinely fetched from mirrors. They are read with
an unpickler that can rebuild a plain numeric numpy array and nothing else,
and no array larger than the file. Sizes are bounded before anything is read
too: a tar header or a sparse file can claim gigabytes that a small download
does not hold, so batches far larger than CIFAR-10's are refused.

Reading streams so that memory stays flat: a tarball is decompressed in one
forward pass that stops at the wanted member (never extracted to disk), binary
batches are read a bounded chunk of records at a time, a pickled batch (30 MB)
is loaded one batch at a time, and image folders are split into shards of a
fixed number of files. Every problem becomes a one-line :class:`CifarFormatError`
that starts with the offending file, so the CLI's pre-flight check can fail in
a second instead of deep inside a Beam job.

Like :mod:`components.idx_format`, this module imports only the standard
library, numpy and Pillow, so the pre-flight check starts fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import importlib
import math
import operator
import os
import pickle
import tarfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
from PIL import Image

from components.data_errors import DataFormatError
from components.data_files import (
    check_directory,
    fill,
    is_file_or_link,
    list_directory,
    missing_file_problem,
    open_for_reading,
)

PYTHON, BINARY, IMAGE_FOLDER = "python", "binary", "image_folder"

CIFAR10_CLASS_NAMES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
NUM_CLASSES = len(CIFAR10_CLASS_NAMES)
IMAGE_SIZE = (32, 32)  # (height, width) of a CIFAR image
RECORD_PIXELS = 3 * IMAGE_SIZE[0] * IMAGE_SIZE[1]  # one image: R, G, B planes
BINARY_RECORD_BYTES = 1 + RECORD_PIXELS  # binary version: label byte + pixels
TRAIN_BATCHES = tuple(f"data_batch_{number}" for number in range(1, 6))
TEST_BATCH = "test_batch"
SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
TARBALL_SUFFIX = ".tar.gz"

# Records per read from a binary batch (3 MB), so memory stays bounded.
_BINARY_CHUNK_RECORDS = 1024
# Read size when decompressing through a tarball; tarfile's default (10 KiB)
# would mean thousands of tiny Python-level reads per batch.
_TAR_BUFSIZE = 1 << 20
# A class-name file (batches.meta, batches.meta.txt) is a few hundred bytes.
_MAX_META_BYTES = 1 << 20
# An official batch holds 10,000 images. One file may hold at most the whole
# dataset (50,000 + 10,000), so a small file that claims millions is refused
# before any work: by its size for the binary version (3,073 bytes an image),
# and for pickles by its size and by the images it declares.
_MAX_BATCH_IMAGES = 60_000
_MAX_BATCH_BYTES = {PYTHON: 256 << 20, BINARY: _MAX_BATCH_IMAGES * BINARY_RECORD_BYTES}
_BATCH_SIZE_NOTE = (
    "a CIFAR-10 batch (10,000 images: 30,730,000 bytes in the binary version, "
    "about 31 MB pickled)"
)
# Deflate's best case: gzip data never expands to more than about 1032 times its size.
_MAX_GZIP_RATIO = 1032
# What the gzip module raises for damaged, cut-off or unreadable streams.
_GZIP_ERRORS = (EOFError, zlib.error, OSError)
# What Pillow raises for files it cannot decode (truncated, garbage, bombs).
_IMAGE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)
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
_FORMAT_TITLES = {
    PYTHON: "python version",
    BINARY: "binary version",
    IMAGE_FOLDER: "image folder",
}
# Pillow modes that are not RGB colour, with a word for the error message.
_MODE_NAMES = {
    "1": "black and white",
    "L": "grayscale",
    "LA": "grayscale with alpha",
    "La": "grayscale with alpha",
    "I": "32-bit grayscale",
    "I;16": "16-bit grayscale",
    "I;16B": "16-bit grayscale",
    "F": "floating-point grayscale",
    "RGBA": "RGB with alpha",
    "RGBa": "RGB with alpha",
    "PA": "palette with alpha",
    "CMYK": "CMYK",
}


class CifarFormatError(DataFormatError):
    """A CIFAR-10 file or folder is missing, malformed, unsafe or inconsistent
    (one line, path first)."""


def _error(path: str, problem: str) -> CifarFormatError:
    """Build the standard ``<path>: <problem>`` error."""
    return CifarFormatError(f"{path}: {problem}")


@dataclass(frozen=True)
class BatchLayout:
    """File names of one official version; the python and binary versions differ only here."""

    format: str
    tarball: str
    folder: str
    meta: str
    batch_suffix: str

    def batch_file(self, stem: str) -> str:
        """File name of a batch, e.g. ``data_batch_1.bin`` for stem ``data_batch_1``."""
        return stem + self.batch_suffix

    @property
    def required_files(self) -> tuple[str, ...]:
        """Every file the version must contain, batches first."""
        return (*(self.batch_file(stem) for stem in (*TRAIN_BATCHES, TEST_BATCH)), self.meta)

    def member(self, file_name: str) -> str:
        """Tar member name of a file, e.g. ``cifar-10-batches-py/test_batch``."""
        return f"{self.folder}/{file_name}"


BATCH_LAYOUTS = {
    PYTHON: BatchLayout(
        PYTHON, "cifar-10-python.tar.gz", "cifar-10-batches-py", "batches.meta", ""
    ),
    BINARY: BatchLayout(
        BINARY, "cifar-10-binary.tar.gz", "cifar-10-batches-bin", "batches.meta.txt", ".bin"
    ),
}
_SPLIT_BATCHES = {"train": TRAIN_BATCHES, "test": (TEST_BATCH,)}
_EXPECTED_LAYOUTS = (
    f"expected {BATCH_LAYOUTS[PYTHON].tarball}, {BATCH_LAYOUTS[PYTHON].folder}/, "
    f"{BATCH_LAYOUTS[BINARY].tarball}, {BATCH_LAYOUTS[BINARY].folder}/, "
    "or train/ and test/ folders with one sub-folder of images per class"
)


@dataclass(frozen=True)
class CifarShard:
    """One picklable unit of work (a Beam element): a batch file, or a chunk of image files.

    ``container`` is the tarball, the extracted batch folder, or the image-folder
    root; ``member`` is the tar member name or the batch file's path ('' for image
    chunks); ``files`` are an image chunk's paths; ``label`` is an image chunk's
    class index (-1 for batches, whose records carry their own labels).
    """

    format: str
    container: str
    member: str
    files: tuple[str, ...]
    id_prefix: str
    label: int = -1

    @property
    def in_tarball(self) -> bool:
        """True when ``member`` is a member of the tarball ``container``, not a file."""
        return self.format != IMAGE_FOLDER and self.container.endswith(TARBALL_SUFFIX)

    @property
    def path(self) -> str:
        """Where the shard's data is, as errors name it (``tarball:member`` inside a tarball)."""
        if self.format == IMAGE_FOLDER:
            return os.path.join(self.container, *self.id_prefix.split("/"))
        return f"{self.container}:{self.member}" if self.in_tarball else self.member


@dataclass(frozen=True)
class CifarSource:
    """A detected CIFAR-10 dataset: its format, where it is, its classes and its shards.

    ``shards`` maps ``'train'`` and ``'test'`` to their shards; ``ignored`` lists
    other layouts found in the same directory that lost on precedence.
    """

    format: str
    location: str
    class_names: tuple[str, ...]
    shards: dict[str, tuple[CifarShard, ...]]
    ignored: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line for "found X" messages, e.g. ``CIFAR-10 python version (x.tar.gz): ...``."""
        train, test = self.shards.get("train", ()), self.shards.get("test", ())
        if self.format == IMAGE_FOLDER:
            counts = (
                f"{sum(len(shard.files) for shard in train)} training images, "
                f"{sum(len(shard.files) for shard in test)} test images "
                f"in {len(self.class_names)} classes"
            )
        else:
            counts = (
                f"{_count(len(train), 'training batch', 'training batches')}, "
                f"{_count(len(test), 'test batch', 'test batches')}"
            )
        line = f"CIFAR-10 {_location_label(self.format, self.location)}: {counts}"
        if self.ignored:
            line += (
                f"; also found {' and '.join(self.ignored)}, not used "
                f"(the {_FORMAT_TITLES[self.format]} takes precedence)"
            )
        return line


def _count(number: int, singular: str, plural: str) -> str:
    return f"{number} {singular if number == 1 else plural}"


def _location_label(kind: str, location: str) -> str:
    """E.g. ``python version (cifar-10-python.tar.gz)`` or ``image folder (cifar10png/)``."""
    name = os.path.basename(os.path.normpath(location))
    if not location.endswith(TARBALL_SUFFIX):
        name += "/"
    return f"{_FORMAT_TITLES[kind]} ({name})"


# --- safe unpickling ---------------------------------------------------------


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


def _brief(value: object, limit: int = 60) -> str:
    """``repr(value)`` on one line and at most ``limit`` characters: files choose these values."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _plain_dtype(spec: object) -> np.dtype:
    """The builtin numeric dtype that ``spec`` (a name such as ``b'u1'``) stands for."""
    if isinstance(spec, _PickledDtype):
        return spec.dtype
    try:
        dtype = np.dtype(spec)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise _Refused(f"refusing to unpickle numpy dtype {_brief(spec)}: not a dtype") from None
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
        raise _Refused(f"refusing to unpickle a numpy array with {what} {_brief(value)}") from None


def _checked_state(state: object) -> tuple[object, ...]:
    """An array's BUILD state ``(version, shape, dtype, is_fortran, data)``: clean dtype, raw bytes.

    numpy then checks that the bytes fill the shape exactly, so the array is no
    larger than what the file holds; data given as a list of objects (which
    numpy trusts to have the right length, and crashes on otherwise) is refused.
    """
    if not isinstance(state, tuple) or len(state) != 5:
        raise _Refused(f"refusing to unpickle a numpy array with state {_brief(state)}")
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
            raise _Refused(f"refusing to unpickle a numpy array of type {_brief(subtype)}")
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
                f"refusing to unpickle a numpy array with strides {_brief(strides)}: zero or "
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
            f"refusing to unpickle _codecs.encode({type(text).__name__}, {_brief(encoding)}): "
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
        raise _error(path, str(exc)) from None
    except _PICKLE_ERRORS as exc:
        raise _error(path, f"not a valid pickle ({type(exc).__name__}: {exc})") from None


def _as_text(value: object) -> object:
    """Decode byte strings (what Python 2 pickles load as); leave anything else alone."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _unguarded(value: object) -> object:
    """A loaded array as a plain ndarray (same memory); anything else as it is."""
    return value.view(np.ndarray) if isinstance(value, _GuardedArray) else value


def _load_pickled_dict(stream: IO[bytes], path: str, size: int) -> dict[object, Any]:
    """Unpickle a dict and normalise its keys to str, whether they were pickled as bytes or str."""
    loaded = _safe_unpickle(stream, path, size)
    if not isinstance(loaded, dict):
        raise _error(path, f"expected a pickled dict, found {type(loaded).__name__}")
    return {_as_text(key): _unguarded(value) for key, value in loaded.items()}


def _missing_keys_error(
    path: str, loaded: dict[object, Any], missing: Sequence[str]
) -> CifarFormatError:
    found = ", ".join(_brief(key) for key in list(loaded)[:10]) or "none"
    hint = " (this looks like CIFAR-100, which is not supported)" if "fine_labels" in loaded else ""
    wanted = " and ".join(repr(key) for key in missing)
    return _error(path, f"pickled dict has no {wanted} key (keys found: {found}){hint}")


# --- meta files and class names ----------------------------------------------


def _check_class_names(where: str, names: Sequence[str]) -> tuple[str, ...]:
    """Insist on CIFAR-10's own classes, in the official order.

    Labels are indices into this list, so a different list means different
    labels. This is the one place to relax for other 10-class datasets.
    """
    names = tuple(names)
    if names == CIFAR10_CLASS_NAMES:
        return names
    missing = [name for name in CIFAR10_CLASS_NAMES if name not in names]
    unexpected = [name for name in names if name not in CIFAR10_CLASS_NAMES]
    if missing or unexpected:
        problem = "; ".join(
            f"{what}: {', '.join(values)}"
            for what, values in (("missing", missing), ("unexpected", unexpected))
            if values
        )
    elif len(names) != len(CIFAR10_CLASS_NAMES):
        problem = f"{len(names)} names with duplicates: {', '.join(names)}"
    else:
        problem = f"wrong order: {', '.join(names)}"
    raise _error(
        where,
        f"class names do not match CIFAR-10's ({', '.join(CIFAR10_CLASS_NAMES)}); {problem}",
    )


def _read_python_meta(stream: IO[bytes], size: int, path: str) -> tuple[str, ...]:
    """Class names from ``batches.meta`` (a pickled dict with ``label_names``)."""
    meta = _load_pickled_dict(stream, path, size)
    if "label_names" not in meta:
        raise _missing_keys_error(path, meta, ["label_names"])
    names = meta["label_names"]
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, (str, bytes)) for n in names):
        raise _error(path, f"'label_names' is not a list of strings ({type(names).__name__})")
    num_vis = meta.get("num_vis", RECORD_PIXELS)
    if type(num_vis) is not int or num_vis != RECORD_PIXELS:  # an array compares elementwise
        raise _error(path, f"num_vis is {_brief(num_vis)}, expected {RECORD_PIXELS} (32x32 RGB)")
    return tuple(str(_as_text(name)) for name in names)


def _read_binary_meta(stream: IO[bytes], size: int, path: str) -> tuple[str, ...]:
    """Class names from ``batches.meta.txt``: one per line, trailing blank lines ignored."""
    raw = stream.read(size)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _error(path, f"not UTF-8 text ({exc})") from None
    names = [line.strip() for line in text.splitlines()]
    while names and not names[-1]:
        names.pop()
    return tuple(names)


_META_READERS: dict[str, Callable[[IO[bytes], int, str], tuple[str, ...]]] = {
    PYTHON: _read_python_meta,
    BINARY: _read_binary_meta,
}


def _read_meta(
    layout: BatchLayout, stream: IO[bytes], size: int, where: str, archive: str | None = None
) -> tuple[str, ...]:
    """The checked class names of a ``size``-byte meta file (a member of ``archive``, if given)."""
    _check_declared_size(where, size, _MAX_META_BYTES, f"{layout.meta} (ten class names)", archive)
    return _check_class_names(where, _META_READERS[layout.format](stream, size, where))


# --- files and tarballs --------------------------------------------------------


def _open_file(path: str) -> IO[bytes]:
    """Open a file for binary reading; failures become a CifarFormatError naming it."""
    return open_for_reading(path, _error)


def _file_size(stream: IO[bytes]) -> int:
    return os.fstat(stream.fileno()).st_size


def _check_declared_size(
    where: str, size: int, limit: int, expected: str, archive: str | None = None
) -> None:
    """Refuse, unread, a file far larger than CIFAR-10's, or a member too big for its archive.

    A tar header can declare any size, and a sparse member is handed out as
    zeros, so a 1 MB download can claim gigabytes; an extracted file can be
    sparse too. ``archive`` is the tarball that ``where`` is a member of.
    """
    if size > limit:
        raise _error(
            where, f"size {size:,} bytes is far larger than {expected}; refusing to read it"
        )
    if archive is not None:
        archive_size = os.path.getsize(archive)
        if size > _MAX_GZIP_RATIO * archive_size:
            raise _error(
                where,
                f"size {size:,} bytes is more than the {archive_size:,}-byte archive can hold "
                f"(gzip expands at most {_MAX_GZIP_RATIO}x): a corrupt or crafted tar header",
            )


class _GuardedReader:
    """Read-only view of a gzip stream that blames decompression failures on the tarball.

    Without it a truncated download surfaces as a bare EOFError from inside
    tarfile or pickle, and would be reported as a broken member instead.
    """

    def __init__(self, stream: gzip.GzipFile, tarball: str) -> None:
        self._stream = stream
        self._tarball = tarball

    def read(self, size: int = -1) -> bytes:
        try:
            return self._stream.read(size)
        except _GZIP_ERRORS as exc:
            raise _error(self._tarball, f"corrupt or truncated gzip data ({exc})") from None

    def drain(self) -> None:
        """Read to the end, which is what makes gzip verify its CRC and length trailer."""
        while self.read(_TAR_BUFSIZE):
            pass


@contextlib.contextmanager
def _tar_stream(tarball: str) -> Iterator[tuple[tarfile.TarFile, _GuardedReader]]:
    """Open a ``.tar.gz`` for a single forward pass (tarfile's streaming mode).

    Streaming mode never seeks, so only the bytes up to the last member used
    are decompressed, and nothing is extracted to disk (so member names cannot
    escape anywhere). Archive damage inside the ``with`` block becomes a
    CifarFormatError naming the tarball.
    """
    with _open_file(tarball) as raw, gzip.GzipFile(fileobj=raw, mode="rb") as compressed:
        reader = _GuardedReader(compressed, tarball)
        try:
            with tarfile.open(  # type: ignore[call-overload]
                fileobj=reader,
                mode="r|",
                bufsize=_TAR_BUFSIZE,
            ) as tar:
                yield tar, reader
        except tarfile.TarError as exc:
            raise _error(tarball, f"corrupt or truncated tar archive ({exc})") from None


def _member_name(info: tarfile.TarInfo) -> str:
    """Member name without the ``./`` that ``tar czf x.tar.gz ./dir`` adds."""
    name = info.name
    while name.startswith("./"):
        name = name[2:]
    return name


def _wanted_members(
    tar: tarfile.TarFile, wanted: dict[str, CifarShard]
) -> Iterator[tuple[CifarShard, tarfile.TarInfo]]:
    """Yield ``(shard, member)`` as wanted members stream by, removing them from ``wanted``.

    Stops as soon as nothing is wanted any more, so a reader of an early
    member does not decompress the rest of the archive.
    """
    for info in tar:
        shard = wanted.pop(_member_name(info), None) if info.isfile() else None
        if shard is not None:
            yield shard, info
            if not wanted:
                return


def _missing_members_error(tarball: str, missing: Sequence[str]) -> CifarFormatError:
    return _error(tarball, f"archive has no member {', '.join(missing)}")


def _check_batch_size(format: str, where: str, size: int, archive: str | None) -> None:
    """:func:`_check_declared_size` for a batch file or member of the python or binary version."""
    _check_declared_size(where, size, _MAX_BATCH_BYTES[format], _BATCH_SIZE_NOTE, archive)


# --- batch contents --------------------------------------------------------------


def _planes_to_images(pixels: np.ndarray) -> np.ndarray:
    """``[N, 3072]`` R,G,B planes -> ``[N, 32, 32, 3]`` view (no copy)."""
    return pixels.reshape(len(pixels), 3, *IMAGE_SIZE).transpose(0, 2, 3, 1)


def _check_labels(path: str, labels: np.ndarray, first_index: int) -> None:
    """Fail on the first label outside ``0..9``; ``first_index`` numbers the chunk's first image."""
    bad = np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))
    if bad.size:
        index = int(bad[0])
        raise _error(
            path,
            f"label {int(labels[index])} of image {first_index + index} "
            f"is outside 0..{NUM_CLASSES - 1}",
        )


def _check_image_count(path: str, count: int, size: int) -> None:
    """Refuse ``data`` that claims more images than CIFAR-10 has, or than ``size`` bytes hold."""
    if count > _MAX_BATCH_IMAGES:
        raise _error(
            path,
            f"'data' holds {count:,} images, far more than a CIFAR-10 batch "
            f"(10,000; at most {_MAX_BATCH_IMAGES:,} are accepted)",
        )
    if count * RECORD_PIXELS > size:
        raise _error(
            path,
            f"'data' declares {count:,} images ({count * RECORD_PIXELS:,} pixel bytes), "
            f"more than the file's {size:,} bytes hold",
        )


def _batch_data(value: object, path: str, size: int) -> np.ndarray:
    """The ``data`` entry as a uint8 ``[N, 3072]`` array; also accepts bytes or a list of rows."""
    if isinstance(value, (bytes, bytearray)):
        value = np.frombuffer(value, np.uint8)
        if value.size % RECORD_PIXELS == 0:
            value = value.reshape(-1, RECORD_PIXELS)
    elif isinstance(value, list):
        _check_image_count(path, len(value), size)  # before converting: rows can be shared
        value = _integer_table(value, path)
    elif type(value) is not np.ndarray:
        raise _error(path, f"'data' is a {type(value).__name__}, expected a uint8 numpy array")
    if value.dtype != np.uint8:
        raise _error(path, f"'data' has dtype {value.dtype}, expected uint8")
    if value.ndim != 2 or value.shape[1] != RECORD_PIXELS or not len(value):
        raise _error(
            path, f"'data' has shape {value.shape}, expected N x {RECORD_PIXELS} with N > 0"
        )
    _check_image_count(path, len(value), size)
    return value


def _integer_table(rows: list[Any], path: str) -> np.ndarray:
    """A list of pixel rows as uint8 ``[N, 3072]``, refusing anything but rows of integers 0..255.

    ``bytes(row)`` builds exactly the 3,072 bytes a row can be, whereas
    ``np.array`` would follow any nesting (a pickle can repeat one long list
    as every pixel) and allocate for all of it first.
    """
    for index, row in enumerate(rows):
        if not isinstance(row, (list, tuple)) or len(row) != RECORD_PIXELS:
            raise _error(
                path, f"'data' is a list whose row {index} is not a list of {RECORD_PIXELS} numbers"
            )
    try:
        pixels = b"".join(map(bytes, rows))
    except (TypeError, ValueError):
        raise _error(path, "'data' is a list whose values are not all integers 0..255") from None
    return np.frombuffer(pixels, np.uint8).reshape(len(rows), RECORD_PIXELS)


def _batch_labels(value: object, path: str) -> np.ndarray:
    """The ``labels`` entry as a 1-D int64 array (a list of ints in the official files).

    A list must hold ints only, so that no nesting reaches ``np.array`` (see
    :func:`_integer_table`).
    """
    labels = np.asarray(None)
    if isinstance(value, np.ndarray):
        labels = value
    elif isinstance(value, (list, tuple)) and all(type(label) is int for label in value):
        with contextlib.suppress(OverflowError):
            labels = np.array(value, np.int64)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise _error(path, f"'labels' is not a list of integers ({type(value).__name__})")
    return labels.astype(np.int64)


def _python_batch(stream: IO[bytes], size: int, path: str) -> tuple[np.ndarray, np.ndarray]:
    """Load and check one pickled batch; returns ``(images [N, 32, 32, 3] view, labels [N])``."""
    batch = _load_pickled_dict(stream, path, size)
    missing = [key for key in ("data", "labels") if key not in batch]
    if missing:
        raise _missing_keys_error(path, batch, missing)
    data = _batch_data(batch["data"], path, size)
    labels = _batch_labels(batch["labels"], path)
    if len(labels) != len(data):
        raise _error(path, f"{len(data)} images but {len(labels)} labels")
    _check_labels(path, labels, 0)
    return _planes_to_images(data), labels


def _binary_chunks(
    stream: IO[bytes], size: int, path: str
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stream a ``.bin`` batch ``_BINARY_CHUNK_RECORDS`` records at a time.

    The size is checked before anything is read: a size that is not a whole
    number of records means a truncated or foreign file.
    """
    if size % BINARY_RECORD_BYTES:
        raise _error(
            path,
            f"size {size} bytes is not a multiple of {BINARY_RECORD_BYTES} "
            f"(1 label byte + {RECORD_PIXELS} pixel bytes per image)",
        )
    total = size // BINARY_RECORD_BYTES
    done = 0
    while done < total:
        records = np.empty(
            (min(_BINARY_CHUNK_RECORDS, total - done), BINARY_RECORD_BYTES), np.uint8
        )
        got = fill(stream, records.reshape(-1).data)
        if got < records.nbytes:
            raise _error(
                path,
                f"truncated: expected {total} images, "
                f"file ends after {done + got // BINARY_RECORD_BYTES}",
            )
        labels = records[:, 0]
        _check_labels(path, labels, done)
        yield _planes_to_images(records[:, 1:]), labels
        done += len(records)


def _member_chunks(
    shard: CifarShard, stream: IO[bytes], size: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(images, labels)`` chunks of one batch, whichever version and container it comes from."""
    if shard.format not in _MAX_BATCH_BYTES:
        raise ValueError(f"{shard.path}: not a batch shard (format {shard.format!r})")
    if size == 0:
        raise _error(shard.path, "file is empty")
    _check_batch_size(shard.format, shard.path, size, shard.container if shard.in_tarball else None)
    if shard.format == PYTHON:
        yield _python_batch(stream, size, shard.path)
    else:
        yield from _binary_chunks(stream, size, shard.path)


def _iter_batch_chunks(shard: CifarShard) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Chunks of a batch shard, from its own file or by streaming its tarball up to it."""
    if not shard.in_tarball:
        with _open_file(shard.member) as stream:
            yield from _member_chunks(shard, stream, _file_size(stream))
        return
    wanted = {shard.member: shard}
    with _tar_stream(shard.container) as (tar, _reader):
        for _shard, info in _wanted_members(tar, wanted):
            member = tar.extractfile(info)
            assert member is not None  # regular files always have data
            yield from _member_chunks(shard, member, info.size)
    if wanted:
        raise _missing_members_error(shard.container, list(wanted))


# --- images ------------------------------------------------------------------------


def _decode_image(path: str) -> Image.Image:
    """Open and fully decode an image; Pillow is lazy, so truncation only shows on load."""
    image = None
    try:
        image = Image.open(path)
        image.load()
        return image
    except FileNotFoundError:
        raise _error(path, missing_file_problem(path)) from None
    except _IMAGE_ERRORS as exc:
        if image is not None:
            image.close()
        raise _error(path, f"cannot read image ({exc})") from None


def _as_rgb(image: Image.Image, path: str) -> Image.Image:
    """The image as RGB, refusing anything that is not a plain colour image.

    A palette image is accepted when it really has colour; grey palettes and
    transparency are refused like grayscale and RGBA, because silently
    dropping alpha or replicating gray channels hides a wrong dataset.
    """
    if image.mode == "RGB":
        return image
    if image.mode != "P":
        kind = _MODE_NAMES.get(image.mode, "not RGB")
        raise _error(path, f"image mode {image.mode} ({kind}), expected RGB colour images")
    if "transparency" in image.info:
        raise _error(path, "image mode P (palette with transparency), expected RGB colour images")
    rgb = image.convert("RGB")
    pixels = np.asarray(rgb)
    if (pixels == pixels[..., :1]).all():
        raise _error(
            path, "image mode P with only grey colours (no colour), expected RGB colour images"
        )
    return rgb


def _resized(image: Image.Image, image_size: tuple[int, int]) -> Image.Image:
    """Resize to ``(height, width)`` with Pillow's bilinear filter (antialiased when shrinking)."""
    height, width = image_size
    if image.size == (width, height):
        return image
    return image.resize((width, height), Image.Resampling.BILINEAR)


def _read_image(path: str, image_size: tuple[int, int]) -> np.ndarray:
    """One image file as a fresh ``[height, width, 3]`` uint8 array."""
    with _decode_image(path) as image:
        return np.array(_resized(_as_rgb(image, path), image_size), dtype=np.uint8)


def _fit_array(image: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """A batch image as its own C-contiguous array, resized if another size is wanted.

    Always a copy, so keeping one image does not keep its 30 MB batch alive.
    """
    if image.shape[:2] == tuple(image_size):
        return image.copy()
    return np.array(
        _resized(Image.fromarray(np.ascontiguousarray(image)), image_size), dtype=np.uint8
    )


def _check_image_size(image_size: tuple[int, int]) -> tuple[int, int]:
    """``image_size`` as a ``(height, width)`` tuple of positive ints, or a ValueError."""
    try:
        height, width = (operator.index(n) for n in image_size)
    except (TypeError, ValueError):
        height = width = 0
    if height < 1 or width < 1:
        raise ValueError(f"image_size must be (height, width) of positive ints, got {image_size!r}")
    return height, width


# --- public reading API ------------------------------------------------------------


def iter_shard_records(
    shard: CifarShard, image_size: tuple[int, int] = IMAGE_SIZE
) -> Iterator[tuple[str, np.ndarray, int]]:
    """Stream ``(example_id, image uint8 [H, W, 3], label)`` for every image of a shard.

    Example ids are stable across runs and machines: ``data_batch_3-00042``
    (batch stem and index; the same for the python and binary versions) or
    ``train/cat/0001.png`` (split, class folder, file name). Each image is a
    fresh array, resized to ``image_size`` (height, width) when it differs.

    A tarball is decompressed in one forward pass that stops after the shard's
    member; binary batches are read ``_BINARY_CHUNK_RECORDS`` records at a time;
    a pickled batch is loaded whole (one batch, about 30 MB). Any problem
    raises a one-line CifarFormatError naming the file (or the tarball).
    """
    image_size = _check_image_size(image_size)
    if shard.format == IMAGE_FOLDER:
        for path in shard.files:
            yield (
                f"{shard.id_prefix}/{os.path.basename(path)}",
                _read_image(path, image_size),
                shard.label,
            )
        return
    index = 0
    for images, labels in _iter_batch_chunks(shard):
        for image, label in zip(images, labels.tolist(), strict=True):
            yield f"{shard.id_prefix}-{index:05d}", _fit_array(image, image_size), label
            index += 1


def _count_tarball_records(tarball: str, shards: Sequence[CifarShard]) -> int:
    """Check every batch of one tarball in a single decompression pass, plus its gzip CRC."""
    wanted = {shard.member: shard for shard in shards}
    count = 0
    with _tar_stream(tarball) as (tar, reader):
        for shard, info in _wanted_members(tar, wanted):
            member = tar.extractfile(info)
            assert member is not None
            count += sum(
                len(labels) for _images, labels in _member_chunks(shard, member, info.size)
            )
        reader.drain()
    if wanted:
        raise _missing_members_error(tarball, sorted(wanted))
    return count


def _count_shard_records(shard: CifarShard, image_size: tuple[int, int]) -> int:
    if shard.format == IMAGE_FOLDER:
        return sum(1 for _ in iter_shard_records(shard, image_size))
    return sum(len(labels) for _, labels in _iter_batch_chunks(shard))


def validate_cifar_source(source: CifarSource, image_size: tuple[int, int] = IMAGE_SIZE) -> int:
    """Read and check every record of every shard; returns the number of images.

    Run before a pipeline starts, so that a truncated download, a bad label or
    an unreadable image fails in seconds with one line instead of deep inside
    Beam. Batches of one tarball are checked in a single pass that also
    verifies the gzip CRC (which streaming a single member does not reach).
    """
    image_size = _check_image_size(image_size)
    by_tarball: dict[str, list[CifarShard]] = {}
    count = 0
    for split_shards in source.shards.values():
        for shard in split_shards:
            if shard.in_tarball:
                by_tarball.setdefault(shard.container, []).append(shard)
            else:
                count += _count_shard_records(shard, image_size)
    for tarball, tarball_shards in by_tarball.items():
        count += _count_tarball_records(tarball, tarball_shards)
    return count


# --- detection -----------------------------------------------------------------------


def _find_batch_version(data_dir: str, layout: BatchLayout) -> str | None:
    """Where an official version is: its extracted folder, ``data_dir`` itself, or the tarball."""
    folder = os.path.join(data_dir, layout.folder)
    if os.path.isdir(folder):
        return folder
    if any(is_file_or_link(os.path.join(data_dir, name)) for name in layout.required_files):
        return data_dir
    tarball = os.path.join(data_dir, layout.tarball)
    return tarball if is_file_or_link(tarball) else None


def _find_image_folder(data_dir: str) -> str | None:
    """``data_dir`` if it has a ``train/`` or ``test/`` folder (both are checked later)."""
    return data_dir if any(os.path.isdir(os.path.join(data_dir, s)) for s in SPLITS) else None


def _batch_shards(
    layout: BatchLayout, container: str, in_tarball: bool
) -> dict[str, tuple[CifarShard, ...]]:
    """One shard per batch file; ``member`` is a tar member name or the batch file's path."""

    def shard(stem: str) -> CifarShard:
        name = layout.batch_file(stem)
        member = layout.member(name) if in_tarball else os.path.join(container, name)
        return CifarShard(layout.format, container, member, (), stem)

    return {split: tuple(shard(stem) for stem in stems) for split, stems in _SPLIT_BATCHES.items()}


def _batch_folder_source(layout: BatchLayout, folder: str) -> CifarSource:
    present = {entry.name for entry in list_directory(folder, _error) if is_file_or_link(entry)}
    missing = [name for name in layout.required_files if name not in present]
    if missing:
        others = f" (also missing: {', '.join(missing[1:])})" if missing[1:] else ""
        raise _error(
            os.path.join(folder, missing[0]),
            f"file not found; the CIFAR-10 {_FORMAT_TITLES[layout.format]} needs "
            f"{', '.join(layout.required_files)}{others}",
        )
    meta_path = os.path.join(folder, layout.meta)
    with _open_file(meta_path) as stream:
        class_names = _read_meta(layout, stream, _file_size(stream), meta_path)
    return CifarSource(
        layout.format, folder, class_names, _batch_shards(layout, folder, in_tarball=False)
    )


def _batch_tarball_source(layout: BatchLayout, tarball: str) -> CifarSource:
    """List the tarball (one decompression pass; also checks the CRC) and read its meta member."""
    members: set[str] = set()
    meta_member = layout.member(layout.meta)
    batch_members = {layout.member(name) for name in layout.required_files} - {meta_member}
    class_names: tuple[str, ...] = ()
    with _tar_stream(tarball) as (tar, reader):
        for info in tar:
            if not info.isfile():
                continue
            name = _member_name(info)
            members.add(name)
            if name == meta_member:
                stream = tar.extractfile(info)
                assert stream is not None
                class_names = _read_meta(layout, stream, info.size, f"{tarball}:{name}", tarball)
            elif name in batch_members:  # now: skipping a huge declared size reads to the end
                _check_batch_size(layout.format, f"{tarball}:{name}", info.size, tarball)
        reader.drain()
    missing = [
        layout.member(name) for name in layout.required_files if layout.member(name) not in members
    ]
    if missing:
        raise _missing_members_error(tarball, missing)
    return CifarSource(
        layout.format, tarball, class_names, _batch_shards(layout, tarball, in_tarball=True)
    )


def _class_folders(split_dir: str) -> list[str]:
    """Sorted class sub-folder names; hidden ones (``.ipynb_checkpoints``...) are skipped."""
    entries = list_directory(split_dir, _error)
    names = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    if not names:
        raise _error(split_dir, "no class folders (expected one sub-folder of images per class)")
    return names


def _image_files(class_dir: str) -> list[str]:
    """Sorted image paths of a class folder (byte-wise name order, the same on every machine)."""
    names = sorted(
        e.name
        for e in list_directory(class_dir, _error)
        if is_file_or_link(e)
        and not e.name.startswith(".")
        and e.name.lower().endswith(IMAGE_SUFFIXES)
    )
    if not names:
        raise _error(class_dir, f"class folder has no {'/'.join(IMAGE_SUFFIXES)} images")
    return [os.path.join(class_dir, name) for name in names]


def _image_folder_source(root: str, files_per_shard: int) -> CifarSource:
    split_dirs = {split: os.path.join(root, split) for split in SPLITS}
    for split_dir in split_dirs.values():
        if not os.path.isdir(split_dir):
            raise _error(split_dir, "folder not found; an image folder needs both train/ and test/")
    classes = {split: _class_folders(split_dir) for split, split_dir in split_dirs.items()}
    for split, other in (("test", "train"), ("train", "test")):
        for name in classes[other]:
            if name not in classes[split]:
                raise _error(
                    os.path.join(split_dirs[split], name),
                    f"class folder not found, but {os.path.join(split_dirs[other], name)} exists",
                )
    class_names = _check_class_names(split_dirs["train"], classes["train"])
    shards = {
        split: tuple(
            shard
            for label, name in enumerate(class_names)
            for shard in _class_shards(root, split, name, label, files_per_shard)
        )
        for split in SPLITS
    }
    return CifarSource(IMAGE_FOLDER, root, class_names, shards)


def _class_shards(
    root: str, split: str, name: str, label: int, files_per_shard: int
) -> list[CifarShard]:
    """A class folder's images in shards of ``files_per_shard`` files."""
    files = _image_files(os.path.join(root, split, name))
    return [
        CifarShard(
            IMAGE_FOLDER,
            root,
            "",
            tuple(files[start : start + files_per_shard]),
            f"{split}/{name}",
            label,
        )
        for start in range(0, len(files), files_per_shard)
    ]


def detect_cifar_source(data_dir: str, image_files_per_shard: int = 1000) -> CifarSource:
    """Find which CIFAR-10 layout ``data_dir`` holds, read its class names and list its shards.

    An extracted folder wins over the tarball of the same version (it is
    faster to read). When different layouts are present, the python version
    wins over the binary version, which wins over an image folder; the losers
    are named in :meth:`CifarSource.describe`. Checks presence of every batch
    file and the class names; a tarball is listed in one decompression pass,
    which also verifies its gzip CRC. Image folders are split into shards of
    ``image_files_per_shard`` files.
    """
    if image_files_per_shard < 1:
        raise ValueError(f"image_files_per_shard must be >= 1, got {image_files_per_shard}")
    entries = check_directory(data_dir, _error)
    found = [
        (kind, location)
        for kind, location in (
            (PYTHON, _find_batch_version(data_dir, BATCH_LAYOUTS[PYTHON])),
            (BINARY, _find_batch_version(data_dir, BATCH_LAYOUTS[BINARY])),
            (IMAGE_FOLDER, _find_image_folder(data_dir)),
        )
        if location is not None
    ]
    if not found:
        raise _error(
            data_dir,
            f"{'no CIFAR-10 data found' if entries else 'directory is empty'}; {_EXPECTED_LAYOUTS}",
        )
    (kind, location), others = found[0], found[1:]
    if kind == IMAGE_FOLDER:
        source = _image_folder_source(location, image_files_per_shard)
    elif location.endswith(TARBALL_SUFFIX):
        source = _batch_tarball_source(BATCH_LAYOUTS[kind], location)
    else:
        source = _batch_folder_source(BATCH_LAYOUTS[kind], location)
    ignored = tuple(_location_label(other, where) for other, where in others)
    return dataclasses.replace(source, ignored=ignored)
