"""Streaming reader and validator of IDX files (the MNIST file format).

MNIST and Fashion-MNIST ship as four IDX files, usually gzipped. The pipeline
reads them record by record instead of loading them whole, so that memory
stays flat however large the file is, and checks them up front so that a
truncated download or a wrong file fails in seconds with a one-line message,
instead of deep inside a Beam job.

IDX layout (all integers big-endian):

* 4-byte magic number ``0x00 0x00 <element type> <ndim>``; only element type
  ``0x08`` (unsigned byte) is used by MNIST-style datasets and supported here;
* ``ndim`` uint32 dimension sizes, the first being the number of records;
* the records, ``prod(dims)`` bytes in C order.

This module deliberately imports only numpy and the standard library, so the
CLI's pre-flight check stays fast and does not pull in TensorFlow. (Tests
write IDX files with tests/idx_files.py.)
"""

from __future__ import annotations

import gzip
import math
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from components.example_gen.data_errors import DataFormatError
from components.example_gen.data_files import (
    check_directory,
    fill,
    check_labels,
    is_file_or_link,
    open_for_reading,
    stream_failures,
)

GZIP_MAGIC = b"\x1f\x8b"
UBYTE_TYPE_CODE = 0x08
IMAGES_NDIM = 3
LABELS_NDIM = 1
SPLIT_NAMES = ("train", "t10k")

_ELEMENT_TYPE_NAMES = {
    0x08: "unsigned byte",
    0x09: "signed byte",
    0x0B: "int16",
    0x0C: "int32",
    0x0D: "float32",
    0x0E: "float64",
}
_NDIM_DESCRIPTIONS = {
    IMAGES_NDIM: "idx3 unsigned-byte images",
    LABELS_NDIM: "idx1 unsigned-byte labels",
}
# How an IdxFormatError names damaged gzip data (see data_files.stream_failures).
_GZIP_DAMAGED = "corrupt or truncated gzip stream"
# Bytes discarded per read when skipping ahead in a gzip stream.
_SKIP_BLOCK = 1 << 20
# Upper bound on one streamed chunk, so chunk_records cannot blow up memory.
_MAX_CHUNK_BYTES = 64 << 20
# A record bigger than this means a corrupt header, not a real image.
_MAX_RECORD_BYTES = 256 << 20


class IdxFormatError(DataFormatError):
    """An IDX file is missing, malformed or inconsistent (one line, path first)."""


def _error(path: str, problem: str) -> IdxFormatError:
    """Build the standard ``<path>: <problem>`` error."""
    return IdxFormatError(f"{path}: {problem}")


@dataclass(frozen=True)
class IdxHeader:
    """Parsed IDX header; ``data_offset`` is where records start (uncompressed)."""

    path: str
    ndim: int
    dims: tuple[int, ...]
    data_offset: int

    @property
    def count(self) -> int:
        """Number of records (the first dimension)."""
        return self.dims[0]

    @property
    def record_shape(self) -> tuple[int, ...]:
        """Shape of one record: ``(rows, cols)`` for images, ``()`` for labels."""
        return self.dims[1:]

    @property
    def record_size(self) -> int:
        """Bytes per record."""
        return math.prod(self.record_shape)


@dataclass(frozen=True)
class IdxSplitSource:
    """One validated split (``train`` or ``t10k``): where its files are and its size."""

    name: str
    images_path: str
    labels_path: str
    count: int
    image_shape: tuple[int, int]


def _is_gzip(path: str) -> bool:
    """Sniff the gzip magic bytes, because file suffixes lie (``gunzip -k`` etc.)."""
    with open(path, "rb") as raw:
        return raw.read(2) == GZIP_MAGIC


def _open_maybe_gzipped(path: str) -> BinaryIO:
    if _is_gzip(path):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def open_idx(path: str) -> BinaryIO:
    """Open an IDX file for binary reading, gunzipping transparently.

    Compression is detected from the content (bytes ``1f 8b``), not the name,
    so ``foo.gz`` holding plain data and ``foo`` holding gzip data both work.
    """
    return open_for_reading(path, _error, "an IDX file", _open_maybe_gzipped)  # type: ignore[return-value]


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    """Read ``size`` bytes, or fewer only at end of file (raw reads may be short)."""
    parts = []
    while size > 0:
        part = stream.read(size)
        if not part:
            break
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def _magic_problem(magic: int, expected_ndim: int | None) -> str | None:
    """Explain what is wrong with a magic number, or return None if it is fine."""
    if expected_ndim is not None:
        expected = (UBYTE_TYPE_CODE << 8) | expected_ndim
        if magic == expected:
            return None
        description = _NDIM_DESCRIPTIONS.get(
            expected_ndim, f"idx{expected_ndim} unsigned-byte data"
        )
        return f"bad magic number 0x{magic:08x}, expected 0x{expected:08x} ({description})"
    type_code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    if magic >> 16:
        return (
            f"bad magic number 0x{magic:08x}: not an IDX file "
            f"(IDX files start with two zero bytes)"
        )
    if type_code != UBYTE_TYPE_CODE:
        name = _ELEMENT_TYPE_NAMES.get(type_code, "unknown")
        return (
            f"bad magic number 0x{magic:08x}: element type 0x{type_code:02x} ({name}) "
            f"is not supported, only 0x08 (unsigned byte)"
        )
    if ndim == 0:
        return f"bad magic number 0x{magic:08x}: header declares 0 dimensions"
    return None


def read_idx_header(path: str, expected_ndim: int | None = None) -> IdxHeader:
    """Read and validate an IDX header.

    Only unsigned-byte IDX files are accepted. ``expected_ndim`` (3 for images,
    1 for labels) additionally pins the exact magic number, so that swapping
    an images file for a labels file is caught with a precise message.
    """
    with open_idx(path) as stream, stream_failures(path, _error, _GZIP_DAMAGED):
        head = _read_exactly(stream, 4)
        if not head:
            raise _error(path, "file is empty (expected an IDX header)")
        if len(head) < 4:
            raise _error(path, f"too short for an IDX header ({len(head)} bytes)")
        (magic,) = struct.unpack(">I", head)
        problem = _magic_problem(magic, expected_ndim)
        if problem:
            raise _error(path, problem)
        ndim = magic & 0xFF
        raw_dims = _read_exactly(stream, 4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise _error(
            path,
            f"truncated IDX header: expected {ndim} dimension sizes, "
            f"file ends after {4 + len(raw_dims)} bytes",
        )
    dims = struct.unpack(f">{ndim}I", raw_dims)
    header = IdxHeader(path=path, ndim=ndim, dims=dims, data_offset=4 + 4 * ndim)
    if header.record_size > _MAX_RECORD_BYTES:
        shape = "x".join(map(str, header.record_shape))
        raise _error(path, f"implausible record shape {shape} in header (corrupt file?)")
    return header


def _truncated(header: IdxHeader, complete_records: int) -> IdxFormatError:
    return _error(
        header.path,
        f"truncated: expected {header.count} records, file ends after {complete_records}",
    )


def _check_plain_size(stream: BinaryIO, header: IdxHeader) -> None:
    """Fail fast on a short uncompressed file, before streaming any of it.

    Only possible for plain files, whose size is known without reading; gzip
    truncation is found while streaming.
    """
    if isinstance(stream, gzip.GzipFile) or header.record_size == 0:
        return
    data_bytes = os.fstat(stream.fileno()).st_size - header.data_offset
    if data_bytes < header.count * header.record_size:
        raise _truncated(header, max(data_bytes, 0) // header.record_size)


def _skip_records(stream: BinaryIO, header: IdxHeader, start: int) -> None:
    """Position the stream at record ``start``.

    Plain files seek; gzip streams cannot, so they read and discard in
    bounded blocks (memory stays flat) and report truncation on the way.
    """
    target = header.data_offset + start * header.record_size
    if not isinstance(stream, gzip.GzipFile):
        stream.seek(target)
        return
    position = stream.tell()
    while position < target:
        block = stream.read(min(_SKIP_BLOCK, target - position))
        if not block:
            raise _truncated(header, (position - header.data_offset) // header.record_size)
        position += len(block)


def _check_end(stream: BinaryIO, header: IdxHeader) -> None:
    """After the last record: reject trailing data and, for gzip, verify the CRC.

    Reading to the end is what makes gzip check its CRC and length trailer, so
    this is where silent corruption of a .gz file surfaces; the whole rest is
    drained first so that corruption is reported as such, not as extra data.
    """
    extra = 0
    while block := stream.read(_SKIP_BLOCK):
        extra += len(block)
    if extra:
        raise _error(
            header.path,
            f"unexpected trailing data ({extra} bytes) after the {header.count} records "
            f"declared in the header",
        )


def _resolve_range(header: IdxHeader, start: int, count: int | None) -> int:
    """Check ``start``/``count`` against the header and return the record count to read."""
    available = header.count - start
    if start < 0 or available < 0:
        raise ValueError(
            f"{header.path}: start={start} is outside the file's {header.count} records"
        )
    if count is None:
        return available
    if count < 0 or count > available:
        raise ValueError(
            f"{header.path}: cannot read {count} records from index {start}, "
            f"the file has {header.count}"
        )
    return count


def iter_idx_chunks(
    path: str,
    start: int = 0,
    count: int | None = None,
    chunk_records: int = 1024,
) -> Iterator[np.ndarray]:
    """Stream records ``[start, start + count)`` as uint8 arrays of up to ``chunk_records``.

    Each chunk has shape ``(k, *record_shape)`` and is a fresh, writable array,
    so memory use is bounded by one chunk regardless of file size. Reading up
    to the end of the file also verifies there is no trailing data and (gzip)
    the CRC. Raises IdxFormatError on truncated or corrupt data, ValueError on
    an out-of-range ``start``/``count``.
    """
    if chunk_records < 1:
        raise ValueError(f"{path}: chunk_records must be >= 1, got {chunk_records}")
    header = read_idx_header(path)
    count = _resolve_range(header, start, count)
    with open_idx(path) as stream, stream_failures(path, _error, _GZIP_DAMAGED):
        _check_plain_size(stream, header)
        _skip_records(stream, header, start)
        chunk_records = max(1, min(chunk_records, _MAX_CHUNK_BYTES // max(header.record_size, 1)))
        done = 0
        while done < count:
            chunk = np.empty((min(chunk_records, count - done), *header.record_shape), np.uint8)
            got = fill(stream, memoryview(chunk.reshape(-1)))
            if got < chunk.nbytes:
                raise _truncated(header, start + done + got // header.record_size)
            done += len(chunk)
            yield chunk
        if start + count == header.count:
            _check_end(stream, header)


def iter_idx_records(path: str, start: int = 0, count: int | None = None) -> Iterator[np.ndarray]:
    """Stream single records as uint8 arrays of shape ``record_shape``.

    Images come as ``(rows, cols)`` arrays; labels (idx1) come as 0-d uint8
    arrays, so ``int(record)`` gives the label. Records are views into a
    chunk read by :func:`iter_idx_chunks`; copy one if you keep it long-term
    and want its chunk freed.
    """
    for chunk in iter_idx_chunks(path, start, count):
        for index in range(len(chunk)):
            yield chunk[index, ...]


def find_idx_file(data_dir: str, stem: str) -> str:
    """Return ``data_dir/stem`` or ``data_dir/stem.gz``.

    When both exist (typically after ``gunzip -k``) the uncompressed file wins,
    because it is faster to read and they hold the same records. A symbolic
    link counts as present even when broken, so that reading it says so.
    """
    plain = os.path.join(data_dir, stem)
    for candidate in (plain, plain + ".gz"):
        if is_file_or_link(candidate):
            return candidate
    raise _error(f"{plain}[.gz]", "file not found")


def _split_stems(split: str) -> tuple[str, str]:
    """File stems of a split's (images, labels), as named by the MNIST distribution."""
    return f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte"


IDX_FILE_STEMS: tuple[str, ...] = tuple(
    stem for split in SPLIT_NAMES for stem in _split_stems(split)
)


def _check_data_dir(data_dir: str) -> None:
    """Reject a missing, unreadable, non-directory or IDX-less data dir, saying which it is."""
    check_directory(data_dir, _error)
    if not any(
        is_file_or_link(os.path.join(data_dir, stem + ext))
        for stem in IDX_FILE_STEMS
        for ext in ("", ".gz")
    ):
        expected = ", ".join(f"{stem}[.gz]" for stem in IDX_FILE_STEMS)
        raise _error(data_dir, f"no MNIST-format IDX files found (expected {expected})")


def check_split_headers(
    data_dir: str, split: str, image_shape: tuple[int, int]
) -> IdxSplitSource:
    """Cheap checks of one split: files present, magic numbers, image size, counts agree.

    Public because the IDX ExampleGen executor runs the same checks before it streams.
    """
    images_stem, labels_stem = _split_stems(split)
    images_path = find_idx_file(data_dir, images_stem)
    labels_path = find_idx_file(data_dir, labels_stem)
    images = read_idx_header(images_path, expected_ndim=IMAGES_NDIM)
    labels = read_idx_header(labels_path, expected_ndim=LABELS_NDIM)
    if images.record_shape != tuple(image_shape):
        rows, cols = images.record_shape
        raise _error(
            images_path,
            f"images are {rows}x{cols}, expected {image_shape[0]}x{image_shape[1]}",
        )
    if images.count != labels.count:
        raise _error(
            images_path,
            f"{images.count} images but {labels_path} has {labels.count} labels",
        )
    if images.count == 0:
        raise _error(images_path, "contains no images (header count is 0)")
    return IdxSplitSource(
        name=split,
        images_path=images_path,
        labels_path=labels_path,
        count=images.count,
        image_shape=(image_shape[0], image_shape[1]),
    )


def _scan_labels(labels_path: str, num_classes: int) -> None:
    """Stream all labels, failing on the first one outside ``0..num_classes-1``."""
    offset = 0
    for chunk in iter_idx_chunks(labels_path, chunk_records=1 << 16):
        check_labels(labels_path, chunk, num_classes, offset, "at index", _error)
        offset += len(chunk)


def _scan_images(images_path: str) -> None:
    """Stream every image so truncation and gzip corruption are found before training."""
    for _ in iter_idx_chunks(images_path, chunk_records=4096):
        pass


def validate_idx_dataset(
    data_dir: str,
    image_shape: tuple[int, int] = (28, 28),
    num_classes: int = 10,
) -> dict[str, IdxSplitSource]:
    """Pre-flight check of an MNIST-format dataset directory, run before a pipeline starts.

    Header checks (presence, magic numbers, image size, image/label counts)
    run for both splits first because they are instant; then every file is
    streamed to catch truncation, gzip corruption and out-of-range labels,
    which headers cannot show. Returns ``{'train': ..., 't10k': ...}``.
    """
    if not 1 <= num_classes <= 256:
        raise ValueError(f"num_classes must be in 1..256 for uint8 labels, got {num_classes}")
    _check_data_dir(data_dir)
    sources = {split: check_split_headers(data_dir, split, image_shape) for split in SPLIT_NAMES}
    for source in sources.values():
        _scan_labels(source.labels_path, num_classes)
        _scan_images(source.images_path)
    return sources
