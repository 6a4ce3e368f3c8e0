"""Deterministic train/eval carving shared by every visionpipe ExampleGen executor.

Seed tutorials hold out a validation set from the training files; here the
held-out part is chosen by a content hash of each example's stable id, so every
run, Beam worker and machine puts an example in the same split, and the ratio
is configurable through split weights (default train:eval = 5:1).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import apache_beam as beam

from trainer_module import features


def split_bucket(example_id: bytes, total_weight: int) -> int:
    """Deterministic bucket in [0, total_weight) for an example id.

    A content hash (not Python's salted `hash`) so every run, worker and machine
    puts an example in the same split.
    """
    digest = hashlib.sha256(example_id).digest()
    return int.from_bytes(digest[:8], "big") % total_weight


def _partition_index(example: Any, num_partitions: int, boundaries: list[int]) -> int:
    del num_partitions  # beam.Partition's signature; the boundaries say it all
    feature = example.features.feature[features.EXAMPLE_ID_KEY]
    bucket = split_bucket(feature.bytes_list.value[0], boundaries[-1])
    return next(index for index, bound in enumerate(boundaries) if bucket < bound)


def cumulative_weights(
    split_names: Sequence[str], weights: Mapping[str, float], source: str
) -> list[int]:
    """Partition boundaries, e.g. train:5, eval:1 -> [5, 6]."""
    missing = [name for name in split_names if int(weights.get(name, 0)) <= 0]
    if missing:
        raise ValueError(
            f"splits {list(split_names)} are carved out of {source}, so each needs a "
            f"positive integer split weight; missing: {missing}"
        )
    boundaries, total = [], 0
    for name in split_names:
        total += int(weights[name])
        boundaries.append(total)
    return boundaries


def carve_splits(
    examples: beam.pvalue.PCollection,
    split_names: Sequence[str],
    weights: Mapping[str, float],
    source: str,
) -> dict[str, beam.pvalue.PCollection]:
    """One PCollection per split name; several names share `examples` by weight."""
    if len(split_names) == 1:
        return {split_names[0]: examples}
    boundaries = cumulative_weights(split_names, weights, source)
    parts = examples | f"Split[{source}]" >> beam.Partition(
        _partition_index, len(split_names), boundaries
    )
    return dict(zip(split_names, parts))
