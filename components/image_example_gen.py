"""Builds a FileBasedExampleGen around one of visionpipe's image executors.

Every source format (IDX, CIFAR-10) takes the same settings: train:eval
weights, the image shape and the class names. Only the executor and the input
config differ, so the wiring lives here once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tfx.components import FileBasedExampleGen
from tfx.components.example_gen import base_example_gen_executor
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2

from components import example_gen_settings as settings

DEFAULT_TRAIN_EVAL_WEIGHTS = (5, 1)


def image_example_gen(
    executor_class: type[base_example_gen_executor.BaseExampleGenExecutor],
    input_config: example_gen_pb2.Input,
    input_base: str,
    image_shape: tuple[int, int, int],
    class_names: Sequence[str],
    train_eval_weights: tuple[int, int] = DEFAULT_TRAIN_EVAL_WEIGHTS,
    extra_settings: Mapping[str, Any] | None = None,
) -> FileBasedExampleGen:
    """A FileBasedExampleGen running `executor_class` with visionpipe's settings."""
    train_weight, eval_weight = (int(w) for w in train_eval_weights)
    if train_weight <= 0 or eval_weight <= 0:
        raise ValueError(f"train/eval weights must be positive, got {train_eval_weights}")
    return FileBasedExampleGen(
        input_base=input_base,
        input_config=input_config,
        custom_config=settings.encode(
            {
                settings.SPLIT_WEIGHTS_KEY: {"train": train_weight, "eval": eval_weight},
                settings.IMAGE_SHAPE_KEY: list(image_shape),
                settings.CLASS_NAMES_KEY: list(class_names),
                **(extra_settings or {}),
            }
        ),
        custom_executor_spec=executor_spec.BeamExecutorSpec(executor_class),
    )
