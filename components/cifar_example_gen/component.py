"""`CifarExampleGen`: FileBasedExampleGen wired to the CIFAR-10 executor."""

from __future__ import annotations

import functools

from tfx.proto import example_gen_pb2

from components import image_example_gen
from components.cifar_example_gen import executor

DEFAULT_TRAIN_EVAL_WEIGHTS = image_example_gen.DEFAULT_TRAIN_EVAL_WEIGHTS
# TFX's driver globs each split pattern under input_base to fingerprint the
# input (file count, sizes, mtimes) for caching; the executor finds its files
# by itself. CIFAR data sits one to three levels deep depending on the layout
# (tarball; extracted batch files; train/<class>/<image>), so the three
# patterns together cover every file of every layout: change a batch or an
# image and the fingerprint changes, so a cached ExampleGen is not reused.
FINGERPRINT_PATTERNS = {"train": "*", "eval": "*/*", "test": "*/*/*"}


def make_input_config() -> example_gen_pb2.Input:
    return example_gen_pb2.Input(
        splits=[
            example_gen_pb2.Input.Split(name=name, pattern=pattern)
            for name, pattern in FINGERPRINT_PATTERNS.items()
        ]
    )


# ExampleGen for CIFAR-10: `train`/`eval` carved from the training batches, `test` from the test batch.
# Call with (input_base, image_shape, class_names[, train_eval_weights]); see
# `components.image_example_gen.image_example_gen` for the rest of the wiring.
CifarExampleGen = functools.partial(  # pylint: disable=invalid-name  (reads like a component class)
    image_example_gen.image_example_gen,
    executor.Executor,
    make_input_config(),
    extra_settings={executor.SPLIT_SOURCES_KEY: dict(executor.DEFAULT_SPLIT_SOURCES)},
)
