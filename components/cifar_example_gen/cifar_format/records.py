"""Streaming the records of a shard, and checking every record of a source up front.

Memory stays flat: a tarball is read in one forward pass up to the wanted
member, binary batches a bounded chunk of records at a time, a pickled batch
(30 MB) one batch at a time, and image folders one file at a time.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from typing import IO

import numpy as np
from PIL import Image

import components.cifar_example_gen.cifar_format.binary_version as binary_version
import components.cifar_example_gen.cifar_format.python_version as python_version
from components.cifar_example_gen.cifar_format.bounds import MAX_BATCH_BYTES, check_batch_size
from components.cifar_example_gen.cifar_format.common import (
    IMAGE_FOLDER,
    IMAGE_SIZE,
    PYTHON,
    error,
    file_size,
    open_file,
)
from components.cifar_example_gen.cifar_format.image_folders import image_records, resized
from components.cifar_example_gen.cifar_format.layout import CifarShard, CifarSource
from components.cifar_example_gen.cifar_format.tar_stream import (
    missing_members_error,
    open_tarball,
    wanted_members,
)


def _member_chunks(
    shard: CifarShard, stream: IO[bytes], size: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(images, labels)`` chunks of one batch, whichever version and container it comes from."""
    if shard.format not in MAX_BATCH_BYTES:
        raise ValueError(f"{shard.path}: not a batch shard (format {shard.format!r})")
    if size == 0:
        raise error(shard.path, "file is empty")
    check_batch_size(shard.format, shard.path, size, shard.container if shard.in_tarball else None)
    if shard.format == PYTHON:
        yield python_version.read_batch(stream, size, shard.path)
    else:
        yield from binary_version.batch_chunks(stream, size, shard.path)


def _iter_batch_chunks(shard: CifarShard) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Chunks of a batch shard, from its own file or by streaming its tarball up to it."""
    if not shard.in_tarball:
        with open_file(shard.member) as stream:
            yield from _member_chunks(shard, stream, file_size(stream))
        return
    wanted = {shard.member: shard}
    with open_tarball(shard.container) as (tar, _reader):
        for _shard, info in wanted_members(tar, wanted):
            member = tar.extractfile(info)
            assert member is not None  # regular files always have data
            yield from _member_chunks(shard, member, info.size)
    if wanted:
        raise missing_members_error(shard.container, list(wanted))


def _fit_array(image: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """A batch image as its own C-contiguous array, resized if another size is wanted.

    Always a copy, so keeping one image does not keep its 30 MB batch alive.
    """
    if image.shape[:2] == tuple(image_size):
        return image.copy()
    return np.array(
        resized(Image.fromarray(np.ascontiguousarray(image)), image_size), dtype=np.uint8
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


def iter_shard_records(
    shard: CifarShard, image_size: tuple[int, int] = IMAGE_SIZE
) -> Iterator[tuple[str, np.ndarray, int]]:
    """Stream ``(example_id, image uint8 [H, W, 3], label)`` for every image of a shard.

    Example ids are stable across runs and machines: ``data_batch_3-00042``
    (batch stem and index; the same for the python and binary versions) or
    ``train/cat/0001.png`` (split, class folder, file name). Each image is a
    fresh array, resized to ``image_size`` (height, width) when it differs.

    A tarball is decompressed in one forward pass that stops after the shard's
    member; binary batches are read ``binary_version.CHUNK_RECORDS`` records at a time;
    a pickled batch is loaded whole (one batch, about 30 MB). Any problem
    raises a one-line CifarFormatError naming the file (or the tarball).
    """
    image_size = _check_image_size(image_size)
    if shard.format == IMAGE_FOLDER:
        yield from image_records(shard, image_size)
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
    with open_tarball(tarball) as (tar, reader):
        for shard, info in wanted_members(tar, wanted):
            member = tar.extractfile(info)
            assert member is not None
            count += sum(
                len(labels) for _images, labels in _member_chunks(shard, member, info.size)
            )
        reader.drain()
    if wanted:
        raise missing_members_error(tarball, sorted(wanted))
    return count


def _count_shard_records(shard: CifarShard) -> int:
    """Read every record of a shard that is not in a tarball; returns how many there are."""
    if shard.format == IMAGE_FOLDER:
        return sum(1 for _ in image_records(shard, IMAGE_SIZE))
    return sum(len(labels) for _, labels in _iter_batch_chunks(shard))


def validate_cifar_source(source: CifarSource) -> int:
    """Read and check every record of every shard; returns the number of images.

    Run before a pipeline starts, so that a truncated download, a bad label or
    an unreadable image fails in seconds with one line instead of deep inside
    Beam. Batches of one tarball are checked in a single pass that also
    verifies the gzip CRC (which streaming a single member does not reach).
    """
    by_tarball: dict[str, list[CifarShard]] = {}
    count = 0
    for split_shards in source.shards.values():
        for shard in split_shards:
            if shard.in_tarball:
                by_tarball.setdefault(shard.container, []).append(shard)
            else:
                count += _count_shard_records(shard)
    for tarball, tarball_shards in by_tarball.items():
        count += _count_tarball_records(tarball, tarball_shards)
    return count
