"""`ImageExampleGen`: the FileBasedExampleGen that IdxExampleGen and CifarExampleGen specialise.

Every source format (IDX, CIFAR-10) takes the same settings: train:eval
weights, the image shape and the class names. A subclass only names its
executor (`EXECUTOR_SPEC`, as TFX's own CsvExampleGen does) and its input
splits, so the wiring lives here once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from tfx.components import FileBasedExampleGen
from tfx.proto import example_gen_pb2

from components.example_gen import settings
from components.example_gen.example_splits import DEFAULT_TRAIN_EVAL_WEIGHTS

# The node id the ExampleGens had when they were plain FileBasedExampleGens,
# kept: output paths (<pipeline root>/FileBasedExampleGen/examples/<n>), ML
# Metadata node contexts, Kubeflow task names, the README and the benchmarks
# all use it. Only one ExampleGen runs in a pipeline, so one id fits both.
NODE_ID = "FileBasedExampleGen"


class ImageExampleGen(FileBasedExampleGen):
    """A FileBasedExampleGen running a visionpipe image executor with visionpipe's settings.

    Not used directly: subclasses set `EXECUTOR_SPEC` and `SPLIT_PATTERNS`
    (output split name -> file pattern under input_base; splits that share a
    pattern are carved out of the same files by the train/eval weights).
    """

    SPLIT_PATTERNS: ClassVar[Mapping[str, str]] = {}

    def __init__(
        self,
        input_base: str,
        image_shape: tuple[int, int, int],
        class_names: Sequence[str],
        train_eval_weights: tuple[int, int] = DEFAULT_TRAIN_EVAL_WEIGHTS,
    ) -> None:
        if not self.SPLIT_PATTERNS:
            raise TypeError(f"{type(self).__name__} must set SPLIT_PATTERNS and EXECUTOR_SPEC")
        train_weight, eval_weight = (int(w) for w in train_eval_weights)
        if train_weight <= 0 or eval_weight <= 0:
            raise ValueError(f"train/eval weights must be positive, got {train_eval_weights}")
        super().__init__(
            input_base=input_base,
            input_config=example_gen_pb2.Input(
                splits=[
                    example_gen_pb2.Input.Split(name=name, pattern=pattern)
                    for name, pattern in self.SPLIT_PATTERNS.items()
                ]
            ),
            custom_config=settings.encode(
                settings.ImageSettings(
                    split_weights={"train": train_weight, "eval": eval_weight},
                    image_shape=tuple(image_shape),  # type: ignore[arg-type]
                    class_names=tuple(class_names),
                )
            ),
        )
        self.with_id(NODE_ID)
