"""`IdxExampleGen`: the ExampleGen for MNIST-format data (IDX files)."""

from __future__ import annotations

from tfx.dsl.components.base import executor_spec

from components.example_gen.component import ImageExampleGen
from components.idx_example_gen import executor


class IdxExampleGen(ImageExampleGen):
    """`train`/`eval` carved from the `train-*` IDX pair by the train:eval weights, `test` from `t10k-*`.

    Takes (input_base, image_shape, class_names[, train_eval_weights]); see
    `ImageExampleGen`. The class names label the examples, as IDX files have none.
    """

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
    # Split pattern -> IDX file pair by prefix (see executor.py).
    SPLIT_PATTERNS = {"train": "train-*", "eval": "train-*", "test": "t10k-*"}
