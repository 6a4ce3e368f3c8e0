"""Custom FileBasedExampleGen executor that reads MNIST-format IDX files directly.

Users point visionpipe at the four files they downloaded (gzipped or not); no
conversion to TFRecord is needed. Each input split's pattern names an IDX file
pair by its prefix: `train-*` selects `train-images-idx3-ubyte[.gz]` plus
`train-labels-idx1-ubyte[.gz]`. Input splits that share a pattern are carved out
of one read of that pair (see `components.example_gen.executor`), the way the
seed tutorials hold out a validation set from the training files.

Records are streamed in chunks (see `idx_records.py`), so memory does not grow
with the dataset and chunks are processed in parallel by Beam.
"""

from __future__ import annotations

from collections.abc import Sequence

from components.example_gen.executor import (
    ExampleSource,
    ImageExampleGenExecutor,
    Split,
    group_splits,
)
from components.example_gen.settings import ImageSettings
from components.idx_example_gen import idx_records


class Executor(ImageExampleGenExecutor):
    """Generates train/eval/test tf.Examples from IDX image/label file pairs."""

    def sources(
        self, input_base: str, splits: Sequence[Split], config: ImageSettings
    ) -> list[ExampleSource]:
        """One read per file pair (split pattern), feeding every split with that pattern."""
        return [
            ExampleSource(
                name=pattern,
                description=f"pattern {pattern!r}",
                split_names=split_names,
                read=idx_records.IdxPairToExamples(
                    input_base, pattern, config.image_size, config.class_names
                ),
            )
            for pattern, split_names in group_splits(splits, lambda split: split.pattern).items()
        ]
