"""What every part of the CIFAR-10 reader shares: the format's facts and its one-line error.

In both official versions an image is three 1024-byte planes (R, then G, then
B), each a row-major 32x32 grid, and a label is an index into CIFAR-10's ten
class names; the readers hand images out as ``[height, width, 3]`` uint8 arrays.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import IO

import numpy as np

from components.example_gen.data_errors import DataFormatError
from components.example_gen import data_files
from components.example_gen.data_files import open_for_reading


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
TARBALL_SUFFIX = ".tar.gz"

FORMAT_TITLES = {
    PYTHON: "python version",
    BINARY: "binary version",
    IMAGE_FOLDER: "image folder",
}


class CifarFormatError(DataFormatError):
    """A CIFAR-10 file or folder is missing, malformed, unsafe or inconsistent
    (one line, path first)."""


def error(path: str, problem: str) -> CifarFormatError:
    """Build the standard ``<path>: <problem>`` error."""
    return CifarFormatError(f"{path}: {problem}")


def brief(value: object, limit: int = 60) -> str:
    """``repr(value)`` on one line and at most ``limit`` characters: files choose these values."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def open_file(path: str) -> IO[bytes]:
    """Open a file for binary reading; failures become a CifarFormatError naming it."""
    return open_for_reading(path, error)


def file_size(stream: IO[bytes]) -> int:
    return os.fstat(stream.fileno()).st_size


def planes_to_images(pixels: np.ndarray) -> np.ndarray:
    """``[N, 3072]`` R,G,B planes -> ``[N, 32, 32, 3]`` view (no copy)."""
    return pixels.reshape(len(pixels), 3, *IMAGE_SIZE).transpose(0, 2, 3, 1)


def check_labels(path: str, labels: np.ndarray, first_index: int) -> None:
    """Fail on the first label outside ``0..9``; ``first_index`` numbers the chunk's first image."""
    data_files.check_labels(path, labels, NUM_CLASSES, first_index, "of image", error)


def check_class_names(where: str, names: Sequence[str]) -> tuple[str, ...]:
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
    raise error(
        where,
        f"class names do not match CIFAR-10's ({', '.join(CIFAR10_CLASS_NAMES)}); {problem}",
    )
