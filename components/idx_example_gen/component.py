"""`IdxExampleGen`: FileBasedExampleGen wired to the IDX executor with visionpipe's splits."""

from __future__ import annotations

from tfx.components import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2

from components.idx_example_gen import executor, settings

# Split pattern -> IDX file pair by prefix (see executor.py). train and eval share
# the training files and are carved out of them by `split_weights`.
TRAIN_PATTERN = "train-*"
TEST_PATTERN = "t10k-*"
DEFAULT_TRAIN_EVAL_WEIGHTS = (5, 1)


def make_input_config() -> example_gen_pb2.Input:
    return example_gen_pb2.Input(
        splits=[
            example_gen_pb2.Input.Split(name="train", pattern=TRAIN_PATTERN),
            example_gen_pb2.Input.Split(name="eval", pattern=TRAIN_PATTERN),
            example_gen_pb2.Input.Split(name="test", pattern=TEST_PATTERN),
        ]
    )


def IdxExampleGen(  # pylint: disable=invalid-name  (reads like a component class)
    input_base: str,
    image_shape: tuple[int, int, int],
    num_classes: int,
    train_eval_weights: tuple[int, int] = DEFAULT_TRAIN_EVAL_WEIGHTS,
) -> FileBasedExampleGen:
    """ExampleGen for MNIST-format data: `train`/`eval` from train-*, `test` from t10k-*."""
    train_weight, eval_weight = (int(w) for w in train_eval_weights)
    if train_weight <= 0 or eval_weight <= 0:
        raise ValueError(f"train/eval weights must be positive, got {train_eval_weights}")
    return FileBasedExampleGen(
        input_base=input_base,
        input_config=make_input_config(),
        custom_config=settings.encode(
            {
                settings.SPLIT_WEIGHTS_KEY: {"train": train_weight, "eval": eval_weight},
                settings.IMAGE_SHAPE_KEY: list(image_shape),
                settings.NUM_CLASSES_KEY: num_classes,
            }
        ),
        custom_executor_spec=executor_spec.BeamExecutorSpec(executor.Executor),
    )
