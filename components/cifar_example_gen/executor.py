"""Custom FileBasedExampleGen executor for CIFAR-10: python, binary or image-folder layout.

The layout is detected from what is under `input_base` (see
`cifar_format.detect_cifar_source`), so users point visionpipe at the tarball
they downloaded, its extracted folder or a cifar2png-style tree without
converting anything. `train` and `eval` are carved out of the training batches
(see `components.example_gen.executor`); `test` is the test batch / `test/`
folder.

The input config's split patterns are NOT used to find files here; TFX's driver
only globs them to fingerprint the input for caching (see component.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from components.cifar_example_gen import cifar_format, cifar_records
from components.example_gen.executor import (
    ExampleSource,
    ImageExampleGenExecutor,
    Split,
    group_splits,
)
from components.example_gen.settings import ImageSettings

# Output split -> the part of the data ('train' or 'test' batches/folder) it comes from.
SPLIT_SOURCES = {"train": "train", "eval": "train", "test": "test"}


class Executor(ImageExampleGenExecutor):
    """Generates train/eval/test tf.Examples from CIFAR-10 files of any official layout."""

    def sources(
        self, input_base: str, splits: Sequence[Split], config: ImageSettings
    ) -> list[ExampleSource]:
        """One read per part of the data (training or test shards), feeding the splits it sources.

        Labels are named by the class names read from the data itself
        (`batches.meta` or the class folders), which detection has checked
        are CIFAR-10's.
        """
        source = cifar_format.detect_cifar_source(input_base)
        logging.info("visionpipe CIFAR ExampleGen: %s", source.describe())

        def part(split: Split) -> str:
            if split.name not in SPLIT_SOURCES:
                raise ValueError(
                    f"split {split.name!r}: no part of {source.location} feeds it "
                    f"(the CIFAR-10 ExampleGen makes {', '.join(SPLIT_SOURCES)})"
                )
            return SPLIT_SOURCES[split.name]

        return [
            ExampleSource(
                name=part_name,
                description=f"the {part_name} data",
                split_names=split_names,
                read=cifar_records.CifarShardsToExamples(
                    source.shards[part_name], config.image_size, source.class_names
                ),
            )
            for part_name, split_names in group_splits(splits, part).items()
        ]
