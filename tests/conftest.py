"""Shared fixtures: tiny MNIST-format datasets written by the tests themselves."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tests.idx_files import write_idx  # noqa: E402

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "t10k": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def synthetic_digits(count: int, seed: int, image_size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """Learnable synthetic images: class k is a bright bar at a class-specific place.

    Random noise would make a test of "the model learned something" meaningless;
    these images are trivially separable, so a couple of epochs reach high accuracy.
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    rng.shuffle(labels)
    images = rng.integers(0, 40, size=(count, image_size, image_size), dtype=np.uint8)
    for index, label in enumerate(labels):
        row = 2 + (label % 5) * 5
        col = 2 if label < 5 else image_size // 2
        images[index, row : row + 4, col : col + image_size // 2 - 4] = 250
    return images, labels.astype(np.uint8)


def write_idx_dataset(
    directory: str,
    train_count: int = 60,
    test_count: int = 20,
    gzip: bool = True,
    seed: int = 0,
    test_label_noise: float = 0.0,
) -> str:
    """Writes the four MNIST-format files; returns the directory.

    `test_label_noise` relabels that fraction of the test set at random, which
    caps the reachable test accuracy (useful to make a model miss a threshold).
    """
    os.makedirs(directory, exist_ok=True)
    suffix = ".gz" if gzip else ""
    for offset, (prefix, count) in enumerate((("train", train_count), ("t10k", test_count))):
        images, labels = synthetic_digits(count, seed + offset)
        if prefix == "t10k" and test_label_noise:
            rng = np.random.default_rng(seed + 100)
            noisy = rng.random(count) < test_label_noise
            labels[noisy] = (labels[noisy] + rng.integers(1, 10, noisy.sum())) % 10
        images_stem, labels_stem = IDX_FILES[prefix]
        write_idx(os.path.join(directory, images_stem + suffix), images)
        write_idx(os.path.join(directory, labels_stem + suffix), labels)
    return directory


@pytest.fixture
def idx_dir(tmp_path) -> str:
    return write_idx_dataset(str(tmp_path / "data"))
