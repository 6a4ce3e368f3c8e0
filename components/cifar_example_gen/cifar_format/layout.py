"""The official versions' file names, and what detection finds: a source and its shards.

A shard is one picklable unit of work (a Beam element), so the executor
spreads a dataset over workers by batch file or by chunk of image files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from components.cifar_example_gen.cifar_format.common import (
    BINARY,
    FORMAT_TITLES,
    IMAGE_FOLDER,
    PYTHON,
    TARBALL_SUFFIX,
    TEST_BATCH,
    TRAIN_BATCHES,
)


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

SPLIT_BATCHES = {"train": TRAIN_BATCHES, "test": (TEST_BATCH,)}


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
        line = f"CIFAR-10 {location_label(self.format, self.location)}: {counts}"
        if self.ignored:
            line += (
                f"; also found {' and '.join(self.ignored)}, not used "
                f"(the {FORMAT_TITLES[self.format]} takes precedence)"
            )
        return line


def _count(number: int, singular: str, plural: str) -> str:
    return f"{number} {singular if number == 1 else plural}"


def location_label(kind: str, location: str) -> str:
    """E.g. ``python version (cifar-10-python.tar.gz)`` or ``image folder (cifar10png/)``."""
    name = os.path.basename(os.path.normpath(location))
    if not location.endswith(TARBALL_SUFFIX):
        name += "/"
    return f"{FORMAT_TITLES[kind]} ({name})"
