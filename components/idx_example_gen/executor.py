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

import hashlib
from collections.abc import Mapping
from typing import Any

import apache_beam as beam
from tfx.components.example_gen import base_example_gen_executor
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from components.idx_example_gen import idx_records, settings

def split_bucket(example_id: bytes, total_weight: int) -> int:
    """Deterministic bucket in [0, total_weight) for an example id.

    A content hash (not Python's salted `hash`) so every run, worker and machine
    puts an example in the same split.
    """
    digest = hashlib.sha256(example_id).digest()
    return int.from_bytes(digest[:8], "big") % total_weight


def _partition_index(example: Any, num_partitions: int, boundaries: list[int]) -> int:
    example_id = example.features.feature["example_id"].bytes_list.value[0]
    bucket = split_bucket(example_id, boundaries[-1])
    return next(index for index, bound in enumerate(boundaries) if bucket < bound)


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    """Generates train/eval/test tf.Examples from IDX image/label file pairs."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return idx_records.IdxPairToExamples

    def GenerateExamplesByBeam(
        self, pipeline: beam.Pipeline, exec_properties: dict[str, Any]
    ) -> dict[str, beam.pvalue.PCollection]:
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config
        )
        weights: Mapping[str, float] = settings.decode(exec_properties).get(
            settings.SPLIT_WEIGHTS_KEY, {}
        )

        splits_by_pattern: dict[str, list[str]] = {}
        for split in input_config.splits:
            splits_by_pattern.setdefault(split.pattern, []).append(split.name)

        result: dict[str, beam.pvalue.PCollection] = {}
        for pattern, split_names in splits_by_pattern.items():
            examples = pipeline | f"Read[{pattern}]" >> idx_records.IdxPairToExamples(
                exec_properties, pattern
            )
            if len(split_names) == 1:
                result[split_names[0]] = examples
                continue
            boundaries = _cumulative_weights(split_names, weights, pattern)
            parts = examples | f"Split[{pattern}]" >> beam.Partition(
                _partition_index, len(split_names), boundaries
            )
            result.update(zip(split_names, parts))
        return result


def _cumulative_weights(
    split_names: list[str], weights: Mapping[str, float], pattern: str
) -> list[int]:
    missing = [name for name in split_names if int(weights.get(name, 0)) <= 0]
    if missing:
        raise ValueError(
            f"splits {split_names} share pattern {pattern!r}, so each needs a positive "
            f"integer weight in custom_config['{settings.SPLIT_WEIGHTS_KEY}']; missing: {missing}"
        )
    boundaries, total = [], 0
    for name in split_names:
        total += int(weights[name])
        boundaries.append(total)
    return boundaries
