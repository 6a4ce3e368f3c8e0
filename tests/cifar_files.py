"""Writers for CIFAR-10 in its three on-disk layouts, and deterministic synthetic images.

Test-only code (the product only reads CIFAR-10): tests use these to build
tiny datasets in every layout that
:mod:`components.cifar_example_gen.cifar_format` reads, and the benchmark
(bench/cifar_stages.py) uses them to write a full-size (50,000 + 10,000 image)
dataset, so they work with whole numpy batches (never one Python object per
pixel) and write each file as they go.

The member files follow the official formats:

* python version: each batch is a protocol-2 pickle of a dict, written the way
  Python 2's cPickle wrote it (see :class:`_Python2Pickler`), with the keys in
  the official order, so ``pickle.load(f, encoding='bytes')`` gives
  ``{b'batch_label': ..., b'labels': [...], b'data': uint8 array [N, 3072],
  b'filenames': [...]}`` like the real files (same opcodes and globals; the
  originals were not at hand to compare every byte);
* binary version: 3073-byte records (label byte, then R, G, B planes) and a
  ``batches.meta.txt`` with one class name per line and a trailing blank line;
* image folder: ``train|test/<class>/0001.png``, numbered per class from 1
  like cifar2png.

Tarballs are reproducible (fixed mtimes, no owner names, gzip header without
name or time), so identical inputs give identical bytes. Their member order is
directory, batches, test batch, meta, readme; the official archives list
members in an arbitrary order, which readers must not depend on either.
"""

from __future__ import annotations

import functools
import gzip
import io
import os
import pickle
import struct
import tarfile
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

import numpy as np
from PIL import Image

from components.cifar_example_gen.cifar_format import (
    BATCH_LAYOUTS,
    BINARY,
    CIFAR10_CLASS_NAMES,
    IMAGE_SIZE,
    NUM_CLASSES,
    PYTHON,
    RECORD_PIXELS,
    TEST_BATCH,
    BatchLayout,
)

Batch = tuple[np.ndarray, np.ndarray]  # images uint8 [N, 32, 32, 3], labels [N]
Writer = Callable[[IO[bytes]], object]  # writes one member file's content

# The official readme.html only redirects to the dataset's web page.
README_HTML = (
    b'<meta HTTP-EQUIV="REFRESH" content="0; url=http://www.cs.toronto.edu/~kriz/cifar.html">\n'
)
# Fixed member mtime (2009-06-04, around the dataset's release) for reproducible tarballs.
_TAR_MTIME = 1244073600
# cPickle wrote list and dict items in batches of this many (MARK ... APPENDS/SETITEMS).
_PICKLE_BATCH = 1000
_IMAGE_FORMATS = {
    "png": ("PNG", {}),
    "jpg": ("JPEG", {"quality": 95}),
    "jpeg": ("JPEG", {"quality": 95}),
}
# One distinct colour per class for synthetic_cifar.
_CLASS_COLOURS = np.array(
    [
        (255, 40, 40),
        (40, 255, 40),
        (40, 40, 255),
        (255, 255, 40),
        (255, 40, 255),
        (40, 255, 255),
        (255, 140, 0),
        (140, 0, 255),
        (255, 255, 255),
        (0, 140, 70),
    ],
    np.uint8,
)


def synthetic_cifar(count: int, seed: int = 0) -> Batch:
    """Deterministic learnable CIFAR-shaped data: ``(images [count, 32, 32, 3], labels [count])``.

    Class k is a block of colour k at a place set by k, on dim noise, with
    classes in a shuffled round robin (balanced). Random noise alone would make
    "the model learned something" untestable; these separate easily. Built
    with per-class array operations: 10,000 images take a fraction of a second.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    rng = np.random.default_rng(seed)
    labels = (np.arange(count) % NUM_CLASSES).astype(np.uint8)
    rng.shuffle(labels)
    images = rng.integers(0, 64, size=(count, *IMAGE_SIZE, 3), dtype=np.uint8)
    for label in range(NUM_CLASSES):
        row, col = divmod(label, 5)
        top, left = 3 + row * 15, 1 + col * 6
        images[labels == label, top : top + 11, left : left + 6] = _CLASS_COLOURS[label]
    return images, labels


def _check_batch(batch: Batch, what: str, max_label: int) -> tuple[np.ndarray, np.ndarray]:
    """Check what a writer can store; labels up to ``max_label`` (255 lets tests write bad ones)."""
    images, labels = (np.asarray(part) for part in batch)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (*IMAGE_SIZE, 3):
        raise ValueError(
            f"{what}: images must be uint8 [N, 32, 32, 3], got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or len(labels) != len(images) or labels.dtype.kind not in "iu":
        raise ValueError(
            f"{what}: labels must be {len(images)} integers, got {labels.dtype} {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() > max_label):
        raise ValueError(f"{what}: labels must be in 0..{max_label}")
    return images, labels


def _to_planes(images: np.ndarray) -> np.ndarray:
    """``[N, 32, 32, 3]`` -> contiguous ``[N, 3072]`` rows of R, G, B planes."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), RECORD_PIXELS)


# --- python version ---------------------------------------------------------------


class _Python2Pickler:
    """Writes pickle protocol 2 the way Python 2's cPickle wrote the CIFAR-10 batches.

    Python 3 cannot produce these files: at protocol 2 it writes ``bytes`` as
    ``_codecs.encode(...)`` calls (which the safe reader accepts for latin1
    text only, but the official files never contain), whereas Python 2 wrote
    its ``str`` (keys, names, raw pixel data) as plain BINSTRING opcodes,
    which Python 3 loads as ``bytes`` with ``encoding='bytes'``. Only what a batch holds is supported: dicts, lists,
    small ints, strings and 2-D uint8 arrays. Like cPickle, memo ids start at 1
    and the temporaries that numpy's ``__reduce__`` creates get no memo entry.
    """

    def __init__(self, out: IO[bytes]) -> None:
        self._write = out.write
        self._memo_size = 0
        self._globals: dict[str, int] = {}

    def dump(self, obj: object) -> None:
        self._write(pickle.PROTO + b"\x02")
        self._save(obj)
        self._write(pickle.STOP)

    def _memoize(self) -> int:
        self._memo_size += 1
        self._write(_memo_opcode(pickle.BINPUT, pickle.LONG_BINPUT, self._memo_size))
        return self._memo_size

    def _save(self, obj: object) -> None:
        if isinstance(obj, dict):
            self._save_dict(obj)
        elif isinstance(obj, list) or (isinstance(obj, np.ndarray) and obj.ndim == 1):
            self._save_list(obj)
        elif isinstance(obj, np.ndarray):
            self._save_array(obj)
        elif isinstance(obj, (str, bytes, memoryview)):
            self._save_string(obj)
        elif isinstance(obj, (int, np.integer)) and not isinstance(obj, bool):
            self._save_int(int(obj))
        else:
            raise TypeError(f"cannot write {type(obj).__name__} as a Python 2 pickle")

    def _save_int(self, value: int) -> None:
        if 0 <= value < 1 << 8:
            self._write(pickle.BININT1 + bytes([value]))
        elif 0 <= value < 1 << 16:
            self._write(pickle.BININT2 + struct.pack("<H", value))
        elif -(1 << 31) <= value < 1 << 31:
            self._write(pickle.BININT + struct.pack("<i", value))
        else:
            raise ValueError(f"{value} does not fit a Python 2 int opcode")

    def _save_string(self, value: str | bytes | memoryview, memoize: bool = True) -> None:
        data = value.encode("latin-1") if isinstance(value, str) else value
        size = len(data) if isinstance(data, bytes) else data.nbytes
        if size < 256:
            self._write(pickle.SHORT_BINSTRING + bytes([size]))
        else:
            self._write(pickle.BINSTRING + struct.pack("<i", size))
        self._write(data)
        if memoize:
            self._memoize()

    def _save_global(self, module: str, name: str) -> None:
        key = f"{module}\n{name}\n"
        if key in self._globals:
            self._write(_memo_opcode(pickle.BINGET, pickle.LONG_BINGET, self._globals[key]))
            return
        self._write(pickle.GLOBAL + key.encode("ascii"))
        self._globals[key] = self._memoize()

    def _save_items(
        self,
        items: Sequence[Any] | np.ndarray,
        save_item: Callable[[Any], None],
        one: bytes,
        many: bytes,
    ) -> None:
        """cPickle's batching: ``MARK item... many`` per 1000 items, ``item one`` for one item."""
        for start in range(0, len(items), _PICKLE_BATCH):
            chunk = items[start : start + _PICKLE_BATCH]
            if len(chunk) > 1:
                self._write(pickle.MARK)
            if isinstance(chunk, np.ndarray):  # small ints, all at once
                opcodes = np.empty((len(chunk), 2), np.uint8)
                opcodes[:, 0] = pickle.BININT1[0]
                opcodes[:, 1] = chunk
                self._write(opcodes.tobytes())
            else:
                for item in chunk:
                    save_item(item)
            self._write(many if len(chunk) > 1 else one)

    def _save_list(self, items: Sequence[object] | np.ndarray) -> None:
        """A list; a 1-D int array of values 0..255 is written as a list of ints, vectorized."""
        if isinstance(items, np.ndarray) and not _small_ints(items):
            items = items.tolist()
        self._write(pickle.EMPTY_LIST)
        self._memoize()
        self._save_items(items, self._save, pickle.APPEND, pickle.APPENDS)

    def _save_dict(self, mapping: dict[object, object]) -> None:
        self._write(pickle.EMPTY_DICT)
        self._memoize()

        def save_pair(pair: tuple[object, object]) -> None:
            key, value = pair
            self._save(key)
            self._save(value)

        self._save_items(list(mapping.items()), save_pair, pickle.SETITEM, pickle.SETITEMS)

    def _save_array(self, array: np.ndarray) -> None:
        """``_reconstruct(ndarray, (0,), 'b')``, then BUILD ``(1, shape, dtype, False, data)``."""
        if array.dtype != np.uint8 or array.ndim != 2:
            raise ValueError(
                f"only 2-D uint8 arrays are supported, got {array.dtype} {array.shape}"
            )
        self._save_global("numpy.core.multiarray", "_reconstruct")
        self._save_global("numpy", "ndarray")
        self._save_int(0)
        self._write(pickle.TUPLE1)
        self._save_string(b"b")  # a cached 1-char string in Python 2, hence memoized
        self._write(pickle.TUPLE3 + pickle.REDUCE)
        self._memoize()
        self._write(pickle.MARK)
        self._save_int(1)
        for dim in array.shape:
            self._save_int(dim)
        self._write(pickle.TUPLE2)
        self._save_uint8_dtype()
        self._write(pickle.NEWFALSE)
        self._save_string(np.ascontiguousarray(array).reshape(-1).data, memoize=False)
        self._write(pickle.TUPLE + pickle.BUILD)

    def _save_uint8_dtype(self) -> None:
        """``dtype('u1', 0, 1)`` then BUILD with ``(3, '|', None, None, None, -1, -1, 0)``."""
        self._save_global("numpy", "dtype")
        self._save_string(b"u1", memoize=False)
        self._save_int(0)
        self._save_int(1)
        self._write(pickle.TUPLE3 + pickle.REDUCE)
        self._memoize()
        self._write(pickle.MARK)
        self._save_int(3)
        self._save_string(b"|")
        self._write(pickle.NONE * 3)
        self._save_int(-1)
        self._save_int(-1)
        self._save_int(0)
        self._write(pickle.TUPLE + pickle.BUILD)


def _memo_opcode(short: bytes, long: bytes, index: int) -> bytes:
    """A memo put/get: one-byte index when it fits, else four bytes."""
    return short + bytes([index]) if index < 256 else long + struct.pack("<I", index)


def _small_ints(values: np.ndarray) -> bool:
    """Whether every value is an int in 0..255 (one BININT1 opcode each)."""
    return values.dtype.kind in "iu" and (
        not values.size or (values.min() >= 0 and values.max() <= 255)
    )


def write_python2_pickle(out: IO[bytes], obj: object) -> None:
    """Write ``obj`` (dicts, lists, ints, byte strings, 2-D uint8 arrays) as Python 2 would have."""
    _Python2Pickler(out).dump(obj)


def _filenames(labels: np.ndarray, first_number: int) -> list[bytes]:
    """Per-image names in the official style (``<class>_s_<number>.png``)."""
    return [
        f"{CIFAR10_CLASS_NAMES[label % NUM_CLASSES]}_s_{first_number + index:06d}.png".encode(
            "ascii"
        )
        for index, label in enumerate(labels.tolist())
    ]


def _python_batch_writer(batch: Batch, batch_label: str, first_number: int) -> Writer:
    images, labels = batch

    def write(out: IO[bytes]) -> None:
        write_python2_pickle(
            out,
            {
                b"batch_label": batch_label.encode("ascii"),
                b"labels": labels,
                b"data": _to_planes(images),
                b"filenames": _filenames(labels, first_number),
            },
        )

    return write


def _python_members(
    train_batches: Sequence[Batch], test_batch: Batch
) -> Iterator[tuple[str, Writer]]:
    count = len(train_batches)
    number = 1
    for index, batch in enumerate(train_batches, 1):
        yield (
            f"data_batch_{index}",
            _python_batch_writer(batch, f"training batch {index} of {count}", number),
        )
        number += len(batch[1])
    yield TEST_BATCH, _python_batch_writer(test_batch, "testing batch 1 of 1", number)
    meta = {
        b"num_cases_per_batch": len(train_batches[0][1]) if count else 0,
        b"label_names": [name.encode("ascii") for name in CIFAR10_CLASS_NAMES],
        b"num_vis": RECORD_PIXELS,
    }
    yield BATCH_LAYOUTS[PYTHON].meta, lambda out: write_python2_pickle(out, meta)
    yield "readme.html", lambda out: out.write(README_HTML)


# --- binary version -------------------------------------------------------------------


def _binary_batch_writer(batch: Batch) -> Writer:
    images, labels = batch

    def write(out: IO[bytes]) -> None:
        records = np.empty((len(images), 1 + RECORD_PIXELS), np.uint8)
        records[:, 0] = labels
        records[:, 1:] = _to_planes(images)
        out.write(records.reshape(-1).data)

    return write


def _binary_members(
    train_batches: Sequence[Batch], test_batch: Batch
) -> Iterator[tuple[str, Writer]]:
    layout = BATCH_LAYOUTS[BINARY]
    for index, batch in enumerate(train_batches, 1):
        yield layout.batch_file(f"data_batch_{index}"), _binary_batch_writer(batch)
    yield layout.batch_file(TEST_BATCH), _binary_batch_writer(test_batch)
    meta_text = ("\n".join(CIFAR10_CLASS_NAMES) + "\n\n").encode("ascii")
    yield layout.meta, lambda out: out.write(meta_text)
    yield "readme.html", lambda out: out.write(README_HTML)


# --- writing a version, extracted or as a tarball ------------------------------------------


def _tar_info(name: str, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = _TAR_MTIME
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    return info


def _write_version(
    out_dir: str,
    layout: BatchLayout,
    members: Iterator[tuple[str, Writer]],
    tarball: bool,
    compresslevel: int,
) -> str:
    """Write an official version's files into its folder, or into its tarball; returns the path.

    For a tarball each member is built in memory first (tar headers need the
    size), so memory peaks at about one batch (30 MB at full size).
    """
    os.makedirs(out_dir, exist_ok=True)
    if not tarball:
        folder = os.path.join(out_dir, layout.folder)
        os.makedirs(folder, exist_ok=True)
        for name, write in members:
            with open(os.path.join(folder, name), "wb") as out:
                write(out)
        return folder
    path = os.path.join(out_dir, layout.tarball)
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=compresslevel
        ) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        tar.addfile(_tar_info(layout.folder, directory=True))
        for name, write in members:
            buffer = io.BytesIO()
            write(buffer)
            size = buffer.tell()
            buffer.seek(0)
            tar.addfile(_tar_info(layout.member(name), size), buffer)
    return path


def write_official_version(
    format: str,
    out_dir: str,
    train_batches: Sequence[Batch],
    test_batch: Batch,
    *,
    tarball: bool,
    compresslevel: int = 6,
) -> str:
    """Write the python or the binary version (``format``): its tarball, or its extracted folder.

    ``cifar-10-python.tar.gz`` / ``cifar-10-batches-py/`` or
    ``cifar-10-binary.tar.gz`` / ``cifar-10-batches-bin/``. ``train_batches``
    become ``data_batch_1..`` (the official dataset has 5 of 10,000 images);
    labels may be 0..255 so that tests can write invalid ones. Returns the
    tarball or folder path.
    """
    train = [
        _check_batch(batch, f"data_batch_{index}", 255)
        for index, batch in enumerate(train_batches, 1)
    ]
    test = _check_batch(test_batch, TEST_BATCH, 255)
    members = {PYTHON: _python_members, BINARY: _binary_members}[format](train, test)
    return _write_version(out_dir, BATCH_LAYOUTS[format], members, tarball, compresslevel)


write_python_version = functools.partial(write_official_version, PYTHON)
write_binary_version = functools.partial(write_official_version, BINARY)


# --- image folder -----------------------------------------------------------------------


def write_image_folder(
    out_dir: str,
    train: Batch,
    test: Batch,
    *,
    image_format: str = "png",
    size: tuple[int, int] = IMAGE_SIZE,
) -> str:
    """Write ``out_dir/{train,test}/<class>/0001.<image_format>``, cifar2png's ``cifar10png``.

    Files are numbered per class from 1. ``size`` (height, width) other than
    32x32 resizes each image (bilinear) before saving, to exercise readers'
    resizing. Labels must be 0..9, since they pick the class folder. Returns ``out_dir``.
    """
    if image_format not in _IMAGE_FORMATS:
        raise ValueError(
            f"image_format must be one of {', '.join(_IMAGE_FORMATS)}, got {image_format!r}"
        )
    pil_format, options = _IMAGE_FORMATS[image_format]
    height, width = size
    for split, batch in (("train", train), ("test", test)):
        images, labels = _check_batch(batch, split, NUM_CLASSES - 1)
        class_dirs = [os.path.join(out_dir, split, name) for name in CIFAR10_CLASS_NAMES]
        for class_dir in class_dirs:
            os.makedirs(class_dir, exist_ok=True)
        counters = [0] * NUM_CLASSES
        for image, label in zip(images, labels.tolist(), strict=True):
            counters[label] += 1
            picture = Image.fromarray(image)
            if picture.size != (width, height):
                picture = picture.resize((width, height), Image.Resampling.BILINEAR)
            picture.save(
                os.path.join(class_dirs[label], f"{counters[label]:04d}.{image_format}"),
                pil_format,
                **options,
            )
    return out_dir
