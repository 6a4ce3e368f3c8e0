"""Custom FileBasedExampleGen executor that reads MNIST-format IDX files directly.

Users point visionpipe at the four files they downloaded (gzipped or not); no
conversion to TFRecord is needed. Each input split's pattern names an IDX file
pair by its prefix: `train-*` selects `train-images-idx3-ubyte[.gz]` plus
`train-labels-idx1-ubyte[.gz]`. Input splits that share a pattern are carved out
of one read of that pair by a deterministic hash of each example's id, weighted
by `split_weights` from the custom config (visionpipe uses train:eval = 5:1 on
the training files, the way the seed tutorials hold out a validation set).

Records are streamed in chunks (see `idx_records.py`), so memory does not grow
with the dataset and chunks are processed in parallel by Beam.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import apache_beam as beam
from tfx.components.example_gen import base_example_gen_executor

from components import example_gen_settings as settings
from components import example_splits
from components.idx_example_gen import idx_records


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    """Generates train/eval/test tf.Examples from IDX image/label file pairs."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return idx_records.IdxPairToExamples

    def GenerateExamplesByBeam(
        self, pipeline: beam.Pipeline, exec_properties: dict[str, Any]
    ) -> dict[str, beam.pvalue.PCollection]:
        weights: Mapping[str, float] = settings.decode(exec_properties).get(
            settings.SPLIT_WEIGHTS_KEY, {}
        )

        splits_by_pattern: dict[str, list[str]] = {}
        for split in settings.input_splits(exec_properties):
            splits_by_pattern.setdefault(split.pattern, []).append(split.name)

        result: dict[str, beam.pvalue.PCollection] = {}
        for pattern, split_names in splits_by_pattern.items():
            examples = pipeline | f"Read[{pattern}]" >> idx_records.IdxPairToExamples(
                exec_properties, pattern
            )
            result.update(
                example_splits.carve_splits(examples, split_names, weights, f"pattern {pattern!r}")
            )
        return result
