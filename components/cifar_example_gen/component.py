"""`CifarExampleGen`: the ExampleGen for CIFAR-10 (python, binary or image-folder layout)."""

from __future__ import annotations

from tfx.dsl.components.base import executor_spec

from components.cifar_example_gen import executor
from components.example_gen.component import ImageExampleGen


class CifarExampleGen(ImageExampleGen):
    """`train`/`eval` carved from the training batches by the train:eval weights, `test` from the test batch.

    Takes (input_base, image_shape, class_names[, train_eval_weights]); see
    `ImageExampleGen`. The executor finds its files by itself (see executor.py).
    """

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
    # TFX's driver globs each split pattern under input_base to fingerprint the
    # input (file count, sizes, mtimes) for caching; the executor finds its files
    # by itself. CIFAR data sits one to three levels deep depending on the layout
    # (tarball; extracted batch files; train/<class>/<image>), so the three
    # patterns together cover every file of every layout: change a batch or an
    # image and the fingerprint changes, so a cached ExampleGen is not reused.
    SPLIT_PATTERNS = {"train": "*", "eval": "*/*", "test": "*/*/*"}
