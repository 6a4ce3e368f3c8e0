"""Detection, safe streaming reading and validation of CIFAR-10 in its three on-disk forms.

Users point ``--data-dir`` at whatever they downloaded or extracted, so the
same dataset can arrive as:

* the official **python version**: ``cifar-10-python.tar.gz`` or its extracted
  ``cifar-10-batches-py/``, six pickled batches (``data_batch_1..5``,
  ``test_batch``) plus ``batches.meta`` (`python_version`, `safe_pickle`);
* the official **binary version**: ``cifar-10-binary.tar.gz`` or its extracted
  ``cifar-10-batches-bin/``, six ``.bin`` files of 3073-byte records (1 label
  byte + 3072 pixel bytes) plus ``batches.meta.txt`` (`binary_version`);
* an **image folder** (the ``cifar10png`` layout of cifar2png-style tools):
  ``train/<class>/*.png`` and ``test/<class>/*.png`` (or ``.jpg``/``.jpeg``)
  (`image_folders`).

`detection` finds which one a directory holds and lists its shards; `records`
streams a shard's images and validates a whole source; tarballs are read by
`tar_stream`, and `bounds` refuses files that claim more than CIFAR-10 holds.
Every problem is a one-line :class:`CifarFormatError` that starts with the
offending file, so the CLI's pre-flight check can fail in a second instead of
deep inside a Beam job.

This package imports only the standard library, numpy and Pillow (like
`components.idx_example_gen.idx_format`), so the pre-flight check starts fast;
this module re-exports what the executor, the pre-flight and the tests use.
"""

from components.cifar_example_gen.cifar_format.common import (
    BINARY,
    CIFAR10_CLASS_NAMES,
    IMAGE_FOLDER,
    IMAGE_SIZE,
    NUM_CLASSES,
    PYTHON,
    RECORD_PIXELS,
    TEST_BATCH,
    CifarFormatError,
)
from components.cifar_example_gen.cifar_format.detection import detect_cifar_source
from components.cifar_example_gen.cifar_format.layout import (
    BATCH_LAYOUTS,
    BatchLayout,
    CifarShard,
    CifarSource,
)
from components.cifar_example_gen.cifar_format.records import (
    iter_shard_records,
    validate_cifar_source,
)

__all__ = [
    "BATCH_LAYOUTS",
    "BINARY",
    "CIFAR10_CLASS_NAMES",
    "IMAGE_FOLDER",
    "IMAGE_SIZE",
    "NUM_CLASSES",
    "PYTHON",
    "RECORD_PIXELS",
    "TEST_BATCH",
    "BatchLayout",
    "CifarFormatError",
    "CifarShard",
    "CifarSource",
    "detect_cifar_source",
    "iter_shard_records",
    "validate_cifar_source",
]
