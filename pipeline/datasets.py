"""The datasets visionpipe knows: image geometry, class names, curated schema.

One registry keeps the facts about a dataset in one place, so ExampleGen's
validation, the Transform, the Trainer, the serving signatures and the reports
all agree on the image shape and on what class 3 is called.
"""

from __future__ import annotations

import dataclasses
import os

import schema
from components.cifar_example_gen import cifar_format

SCHEMA_ROOT = schema.SCHEMA_ROOT
SAMPLE_DATA_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample_data")  # package data


IDX_FORMAT = "idx"
CIFAR_FORMAT = "cifar"


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Static description of one image-classification dataset."""

    name: str
    image_shape: tuple[int, int, int]  # height, width, channels
    class_names: tuple[str, ...]
    source_format: str  # IDX_FORMAT (MNIST-format files) or CIFAR_FORMAT (any CIFAR-10 layout)
    default_model: str
    # deep_cnn's augmentation policy for this dataset (trainer_module.hparams
    # AUGMENTATION_POLICIES); None keeps the model's default. Clothing is
    # mirror-symmetric, digits are not, so only Fashion-MNIST flips.
    augmentation: str | None = None
    # Whether the served model averages each image with its mirror image
    # (ModelHParams.test_time_flip): for mirror-symmetric classes only, the
    # same ones that train with flips.
    test_time_flip: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def schema_path(self) -> str:
        """The curated schema that ExampleValidator checks this dataset against."""
        return self.schema_file(SCHEMA_ROOT)

    def schema_file(self, schema_root: str) -> str:
        """This dataset's schema under `schema_root` (e.g. the copy in a container image)."""
        return os.path.join(schema_root, self.name, "schema.pbtxt")


MNIST = DatasetSpec(
    name="mnist",
    image_shape=(28, 28, 1),
    class_names=tuple(str(digit) for digit in range(10)),
    source_format=IDX_FORMAT,
    default_model="deep_cnn",
)

FASHION_MNIST = DatasetSpec(
    name="fashion_mnist",
    image_shape=(28, 28, 1),
    class_names=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    source_format=IDX_FORMAT,
    default_model="deep_cnn",
    augmentation="flip_shift",
    test_time_flip=True,
)

CIFAR10 = DatasetSpec(
    name="cifar10",
    image_shape=(32, 32, 3),
    # The official order (batches.meta's label_names); ExampleGen checks the data agrees.
    class_names=cifar_format.CIFAR10_CLASS_NAMES,
    source_format=CIFAR_FORMAT,
    default_model="resnet9",
)

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec for spec in (MNIST, FASHION_MNIST, CIFAR10)
}

# `visionpipe run` with no --data-dir trains on this small real sample (see its README).
DEFAULT_DATASET = FASHION_MNIST.name
DEFAULT_SAMPLE_DIR = os.path.join(SAMPLE_DATA_ROOT, "fashion_mnist")


def get_dataset(name: str) -> DatasetSpec:
    """Looks a dataset up by name with an error that lists the valid names."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(
            f"unknown dataset {name!r}; choose one of: {', '.join(sorted(DATASETS))}"
        ) from None
