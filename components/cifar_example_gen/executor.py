"""Custom FileBasedExampleGen executor for CIFAR-10: python, binary or image-folder layout.

The layout is detected from what is under `input_base` (see
`components.cifar_format.detect_cifar_source`), so users point visionpipe at
the tarball they downloaded, its extracted folder or a cifar2png-style tree
without converting anything. Which part of the data feeds which output split
comes from the custom config's `split_sources` (default: `train` and `eval`
are carved 5:1 out of the training batches by a hash of each example id,
`test` is the test batch / `test/` folder).

The input config's split patterns are NOT used to find files here; TFX's driver
only globs them to fingerprint the input for caching (see component.py).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import apache_beam as beam
from tfx.components.example_gen import base_example_gen_executor
from tfx.types import standard_component_specs

from components import cifar_format
from components import example_gen_settings as settings
from components import example_splits
from components.cifar_example_gen import cifar_records

SPLIT_SOURCES_KEY = "split_sources"  # output split -> 'train' | 'test' part of the data
DEFAULT_SPLIT_SOURCES = {"train": "train", "eval": "train", "test": "test"}
DEFAULT_IMAGE_SIZE = (32, 32)


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    """Generates train/eval/test tf.Examples from CIFAR-10 files of any official layout."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        # Required by the base class, which would apply it once per split
        # pattern; this executor reads per detected shard instead (see
        # GenerateExamplesByBeam), so there is no per-pattern transform.
        raise NotImplementedError("CIFAR ExampleGen reads shards in GenerateExamplesByBeam")

    def GenerateExamplesByBeam(
        self, pipeline: beam.Pipeline, exec_properties: dict[str, Any]
    ) -> dict[str, beam.pvalue.PCollection]:
        config = settings.decode(exec_properties)
        weights: Mapping[str, float] = config.get(settings.SPLIT_WEIGHTS_KEY, {})
        split_sources: Mapping[str, str] = config.get(SPLIT_SOURCES_KEY, DEFAULT_SPLIT_SOURCES)
        image_size = tuple(
            int(d) for d in config.get(settings.IMAGE_SHAPE_KEY, DEFAULT_IMAGE_SIZE)
        )[:2]

        source = cifar_format.detect_cifar_source(
            exec_properties[standard_component_specs.INPUT_BASE_KEY]
        )
        logging.info("visionpipe CIFAR ExampleGen: %s", source.describe())

        splits_by_part: dict[str, list[str]] = {}
        for split in settings.input_splits(exec_properties):
            part = split_sources.get(split.name)
            if part not in source.shards:
                raise ValueError(
                    f"split {split.name!r}: no data part {part!r} in {source.location} "
                    f"(parts: {', '.join(sorted(source.shards))})"
                )
            splits_by_part.setdefault(part, []).append(split.name)

        result: dict[str, beam.pvalue.PCollection] = {}
        for part, split_names in splits_by_part.items():
            examples = pipeline | f"Read[{part}]" >> cifar_records.CifarShardsToExamples(
                source.shards[part], image_size, source.class_names
            )
            result.update(
                example_splits.carve_splits(examples, split_names, weights, f"the {part} data")
            )
        return result
