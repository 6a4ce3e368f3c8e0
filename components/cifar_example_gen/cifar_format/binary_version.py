"""The binary version's contents: ``.bin`` batches of 3073-byte records and ``batches.meta.txt``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

import numpy as np

from components.cifar_example_gen.cifar_format.common import (
    BINARY_RECORD_BYTES,
    RECORD_PIXELS,
    check_labels,
    error,
    planes_to_images,
)
from components.example_gen.data_files import fill


# Records per read from a binary batch (3 MB), so memory stays bounded.
CHUNK_RECORDS = 1024


def read_meta(stream: IO[bytes], size: int, path: str) -> tuple[str, ...]:
    """Class names from ``batches.meta.txt``: one per line, trailing blank lines ignored."""
    raw = stream.read(size)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(path, f"not UTF-8 text ({exc})") from None
    names = [line.strip() for line in text.splitlines()]
    while names and not names[-1]:
        names.pop()
    return tuple(names)


def batch_chunks(
    stream: IO[bytes], size: int, path: str
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stream a ``.bin`` batch ``CHUNK_RECORDS`` records at a time.

    The size is checked before anything is read: a size that is not a whole
    number of records means a truncated or foreign file.
    """
    if size % BINARY_RECORD_BYTES:
        raise error(
            path,
            f"size {size} bytes is not a multiple of {BINARY_RECORD_BYTES} "
            f"(1 label byte + {RECORD_PIXELS} pixel bytes per image)",
        )
    total = size // BINARY_RECORD_BYTES
    done = 0
    while done < total:
        records = np.empty((min(CHUNK_RECORDS, total - done), BINARY_RECORD_BYTES), np.uint8)
        got = fill(stream, records.reshape(-1).data)
        if got < records.nbytes:
            raise error(
                path,
                f"truncated: expected {total} images, "
                f"file ends after {done + got // BINARY_RECORD_BYTES}",
            )
        labels = records[:, 0]
        check_labels(path, labels, done)
        yield planes_to_images(records[:, 1:]), labels
        done += len(records)
