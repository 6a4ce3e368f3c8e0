"""Image folders (cifar2png's ``cifar10png`` layout): ``train|test/<class>/*.png``.

Listed into shards of a fixed number of files, and decoded one file at a time
into RGB arrays; anything but a plain colour image is refused.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
from PIL import Image

from components.cifar_example_gen.cifar_format.common import (
    IMAGE_FOLDER,
    SPLITS,
    check_class_names,
    error,
)
from components.cifar_example_gen.cifar_format.layout import CifarShard, CifarSource
from components.example_gen.data_files import is_file_or_link, list_directory, missing_file_problem

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Image files per shard (Beam element): enough to amortise a shard's overhead,
# few enough that a class folder still spreads over several workers.
IMAGE_FILES_PER_SHARD = 1000
# What Pillow raises for files it cannot decode (truncated, garbage, bombs).
_IMAGE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)
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


def _decode_image(path: str) -> Image.Image:
    """Open and fully decode an image; Pillow is lazy, so truncation only shows on load."""
    image = None
    try:
        image = Image.open(path)
        image.load()
        return image
    except FileNotFoundError:
        raise error(path, missing_file_problem(path)) from None
    except _IMAGE_ERRORS as exc:
        if image is not None:
            image.close()
        raise error(path, f"cannot read image ({exc})") from None


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
        raise error(path, f"image mode {image.mode} ({kind}), expected RGB colour images")
    if "transparency" in image.info:
        raise error(path, "image mode P (palette with transparency), expected RGB colour images")
    rgb = image.convert("RGB")
    pixels = np.asarray(rgb)
    if (pixels == pixels[..., :1]).all():
        raise error(
            path, "image mode P with only grey colours (no colour), expected RGB colour images"
        )
    return rgb


def resized(image: Image.Image, image_size: tuple[int, int]) -> Image.Image:
    """Resize to ``(height, width)`` with Pillow's bilinear filter (antialiased when shrinking)."""
    height, width = image_size
    if image.size == (width, height):
        return image
    return image.resize((width, height), Image.Resampling.BILINEAR)


def read_image(path: str, image_size: tuple[int, int]) -> np.ndarray:
    """One image file as a fresh ``[height, width, 3]`` uint8 array."""
    with _decode_image(path) as image:
        return np.array(resized(_as_rgb(image, path), image_size), dtype=np.uint8)


def image_records(
    shard: CifarShard, image_size: tuple[int, int]
) -> Iterator[tuple[str, np.ndarray, int]]:
    """``(example_id, image, label)`` of an image chunk; ids are ``<split>/<class>/<file name>``."""
    for path in shard.files:
        yield (
            f"{shard.id_prefix}/{os.path.basename(path)}",
            read_image(path, image_size),
            shard.label,
        )


def find_image_folder(data_dir: str) -> str | None:
    """``data_dir`` if it has a ``train/`` or ``test/`` folder (both are checked later)."""
    return data_dir if any(os.path.isdir(os.path.join(data_dir, s)) for s in SPLITS) else None


def _class_folders(split_dir: str) -> list[str]:
    """Sorted class sub-folder names; hidden ones (``.ipynb_checkpoints``...) are skipped."""
    entries = list_directory(split_dir, error)
    names = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    if not names:
        raise error(split_dir, "no class folders (expected one sub-folder of images per class)")
    return names


def _image_files(class_dir: str) -> list[str]:
    """Sorted image paths of a class folder (byte-wise name order, the same on every machine)."""
    names = sorted(
        e.name
        for e in list_directory(class_dir, error)
        if is_file_or_link(e)
        and not e.name.startswith(".")
        and e.name.lower().endswith(IMAGE_SUFFIXES)
    )
    if not names:
        raise error(class_dir, f"class folder has no {'/'.join(IMAGE_SUFFIXES)} images")
    return [os.path.join(class_dir, name) for name in names]


def image_folder_source(root: str) -> CifarSource:
    """The source of an image folder: class names from the folder names, shards of image files."""
    split_dirs = {split: os.path.join(root, split) for split in SPLITS}
    for split_dir in split_dirs.values():
        if not os.path.isdir(split_dir):
            raise error(split_dir, "folder not found; an image folder needs both train/ and test/")
    classes = {split: _class_folders(split_dir) for split, split_dir in split_dirs.items()}
    for split, other in (("test", "train"), ("train", "test")):
        for name in classes[other]:
            if name not in classes[split]:
                raise error(
                    os.path.join(split_dirs[split], name),
                    f"class folder not found, but {os.path.join(split_dirs[other], name)} exists",
                )
    class_names = check_class_names(split_dirs["train"], classes["train"])
    shards = {
        split: tuple(
            shard
            for label, name in enumerate(class_names)
            for shard in _class_shards(root, split, name, label)
        )
        for split in SPLITS
    }
    return CifarSource(IMAGE_FOLDER, root, class_names, shards)


def _class_shards(root: str, split: str, name: str, label: int) -> list[CifarShard]:
    """A class folder's images in shards of ``IMAGE_FILES_PER_SHARD`` files."""
    files = _image_files(os.path.join(root, split, name))
    files_per_shard = IMAGE_FILES_PER_SHARD
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
