"""`IdxExampleGen`: FileBasedExampleGen wired to the IDX executor with visionpipe's splits."""

from __future__ import annotations

import functools

from tfx.proto import example_gen_pb2

from components import image_example_gen
from components.idx_example_gen import executor

# Split pattern -> IDX file pair by prefix (see executor.py). train and eval share
# the training files and are carved out of them by `split_weights`.
TRAIN_PATTERN = "train-*"
TEST_PATTERN = "t10k-*"
DEFAULT_TRAIN_EVAL_WEIGHTS = image_example_gen.DEFAULT_TRAIN_EVAL_WEIGHTS


def make_input_config() -> example_gen_pb2.Input:
    return example_gen_pb2.Input(
        splits=[
            example_gen_pb2.Input.Split(name="train", pattern=TRAIN_PATTERN),
            example_gen_pb2.Input.Split(name="eval", pattern=TRAIN_PATTERN),
            example_gen_pb2.Input.Split(name="test", pattern=TEST_PATTERN),
        ]
    )


# ExampleGen for MNIST-format data: `train`/`eval` carved from train-*, `test` from t10k-*.
# Call with (input_base, image_shape, class_names[, train_eval_weights]); see
# `components.image_example_gen.image_example_gen` for the rest of the wiring.
IdxExampleGen = functools.partial(  # pylint: disable=invalid-name  (reads like a component class)
    image_example_gen.image_example_gen,
    executor.Executor,
    make_input_config(),
)
