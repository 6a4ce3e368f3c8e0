"""Which examples go to train and which to eval: the deterministic carving rule.

Seed tutorials hold out a validation set from the training files; here the
held-out part is chosen by a content hash of each example's stable id, so every
run, Beam worker and machine puts an example in the same split, and the ratio
is configurable through split weights. The rule is plain Python (no Beam, no
TensorFlow) because more than the executors need it: `pipeline.configs` takes
its default weights from here before TFX is imported, and the benchmarks
replay the same split on NumPy arrays.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

# train:eval weights of the examples carved out of the training files. The
# one owner of the default: pipeline.configs.RunConfig and the benchmarks read it.
DEFAULT_TRAIN_EVAL_WEIGHTS: tuple[int, int] = (11, 1)


def split_bucket(example_id: bytes, total_weight: int) -> int:
    """Deterministic bucket in [0, total_weight) for an example id.

    A content hash (not Python's salted `hash`) so every run, worker and machine
    puts an example in the same split.
    """
    digest = hashlib.sha256(example_id).digest()
    return int.from_bytes(digest[:8], "big") % total_weight


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


def split_index(example_id: bytes, boundaries: Sequence[int]) -> int:
    """Index of the split (into the names given to `cumulative_weights`) an example id goes to."""
    bucket = split_bucket(example_id, boundaries[-1])
    return next(index for index, bound in enumerate(boundaries) if bucket < bound)
