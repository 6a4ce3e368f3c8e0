"""The python version's contents: pickled batches (``data``, ``labels``) and ``batches.meta``.

Everything a pickle holds is checked before it is used: the keys, the dtype
and shape of ``data``, the labels, and the number of images a file may claim.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import IO, Any

import numpy as np

from components.cifar_example_gen.cifar_format.bounds import MAX_BATCH_IMAGES
from components.cifar_example_gen.cifar_format.common import (
    RECORD_PIXELS,
    CifarFormatError,
    brief,
    check_labels,
    error,
    planes_to_images,
)
from components.cifar_example_gen.cifar_format.safe_pickle import as_text, load_pickled_dict


def _missing_keys_error(
    path: str, loaded: dict[object, Any], missing: Sequence[str]
) -> CifarFormatError:
    found = ", ".join(brief(key) for key in list(loaded)[:10]) or "none"
    hint = " (this looks like CIFAR-100, which is not supported)" if "fine_labels" in loaded else ""
    wanted = " and ".join(repr(key) for key in missing)
    return error(path, f"pickled dict has no {wanted} key (keys found: {found}){hint}")


def read_meta(stream: IO[bytes], size: int, path: str) -> tuple[str, ...]:
    """Class names from ``batches.meta`` (a pickled dict with ``label_names``)."""
    meta = load_pickled_dict(stream, path, size)
    if "label_names" not in meta:
        raise _missing_keys_error(path, meta, ["label_names"])
    names = meta["label_names"]
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, (str, bytes)) for n in names):
        raise error(path, f"'label_names' is not a list of strings ({type(names).__name__})")
    num_vis = meta.get("num_vis", RECORD_PIXELS)
    if type(num_vis) is not int or num_vis != RECORD_PIXELS:  # an array compares elementwise
        raise error(path, f"num_vis is {brief(num_vis)}, expected {RECORD_PIXELS} (32x32 RGB)")
    return tuple(str(as_text(name)) for name in names)


def _check_image_count(path: str, count: int, size: int) -> None:
    """Refuse ``data`` that claims more images than CIFAR-10 has, or than ``size`` bytes hold."""
    if count > MAX_BATCH_IMAGES:
        raise error(
            path,
            f"'data' holds {count:,} images, far more than a CIFAR-10 batch "
            f"(10,000; at most {MAX_BATCH_IMAGES:,} are accepted)",
        )
    if count * RECORD_PIXELS > size:
        raise error(
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
        raise error(path, f"'data' is a {type(value).__name__}, expected a uint8 numpy array")
    if value.dtype != np.uint8:
        raise error(path, f"'data' has dtype {value.dtype}, expected uint8")
    if value.ndim != 2 or value.shape[1] != RECORD_PIXELS or not len(value):
        raise error(
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
            raise error(
                path, f"'data' is a list whose row {index} is not a list of {RECORD_PIXELS} numbers"
            )
    try:
        pixels = b"".join(map(bytes, rows))
    except (TypeError, ValueError):
        raise error(path, "'data' is a list whose values are not all integers 0..255") from None
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
        raise error(path, f"'labels' is not a list of integers ({type(value).__name__})")
    return labels.astype(np.int64)


def read_batch(stream: IO[bytes], size: int, path: str) -> tuple[np.ndarray, np.ndarray]:
    """Load and check one pickled batch; returns ``(images [N, 32, 32, 3] view, labels [N])``."""
    batch = load_pickled_dict(stream, path, size)
    missing = [key for key in ("data", "labels") if key not in batch]
    if missing:
        raise _missing_keys_error(path, batch, missing)
    data = _batch_data(batch["data"], path, size)
    labels = _batch_labels(batch["labels"], path)
    if len(labels) != len(data):
        raise error(path, f"{len(data)} images but {len(labels)} labels")
    check_labels(path, labels, 0)
    return planes_to_images(data), labels
