"""Size limits that refuse a hostile or corrupt file before anything is read.

A tar header can declare any size, and a sparse file or member is handed out
as zeros, so a small download can claim gigabytes; batches far larger than
CIFAR-10's are refused on their declared size, and a member larger than its
archive could hold is refused too.
"""

from __future__ import annotations

import os

from components.cifar_example_gen.cifar_format.common import (
    BINARY,
    BINARY_RECORD_BYTES,
    PYTHON,
    error,
)


# A class-name file (batches.meta, batches.meta.txt) is a few hundred bytes.
MAX_META_BYTES = 1 << 20
# An official batch holds 10,000 images. One file may hold at most the whole
# dataset (50,000 + 10,000), so a small file that claims millions is refused
# before any work: by its size for the binary version (3,073 bytes an image),
# and for pickles by its size and by the images it declares.
MAX_BATCH_IMAGES = 60_000
MAX_BATCH_BYTES = {PYTHON: 256 << 20, BINARY: MAX_BATCH_IMAGES * BINARY_RECORD_BYTES}
_BATCH_SIZE_NOTE = (
    "a CIFAR-10 batch (10,000 images: 30,730,000 bytes in the binary version, about 31 MB pickled)"
)
# Deflate's best case: gzip data never expands to more than about 1032 times its size.
_MAX_GZIP_RATIO = 1032


def check_declared_size(
    where: str, size: int, limit: int, expected: str, archive: str | None = None
) -> None:
    """Refuse, unread, a file far larger than CIFAR-10's, or a member too big for its archive.

    A tar header can declare any size, and a sparse member is handed out as
    zeros, so a 1 MB download can claim gigabytes; an extracted file can be
    sparse too. ``archive`` is the tarball that ``where`` is a member of.
    """
    if size > limit:
        raise error(
            where, f"size {size:,} bytes is far larger than {expected}; refusing to read it"
        )
    if archive is not None:
        archive_size = os.path.getsize(archive)
        if size > _MAX_GZIP_RATIO * archive_size:
            raise error(
                where,
                f"size {size:,} bytes is more than the {archive_size:,}-byte archive can hold "
                f"(gzip expands at most {_MAX_GZIP_RATIO}x): a corrupt or crafted tar header",
            )


def check_batch_size(format: str, where: str, size: int, archive: str | None) -> None:
    """:func:`check_declared_size` for a batch file or member of the python or binary version."""
    check_declared_size(where, size, MAX_BATCH_BYTES[format], _BATCH_SIZE_NOTE, archive)
