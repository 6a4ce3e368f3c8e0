"""The raw tf.Example layout every visionpipe ExampleGen writes, and its PNG encoding.

One definition for all source formats (IDX, CIFAR-10 batches, image folders),
so the schema, the Transform and TFMA's class-name slices see the same
features whatever the data came from.
"""

from __future__ import annotations

import io

import numpy as np
import tensorflow as tf
from PIL import Image

from trainer_module import features


def encode_png(image: np.ndarray) -> bytes:
    """Encodes an HxW (grayscale) or HxWxC uint8 array as PNG bytes.

    zlib level 1, not Pillow's default 6: the ExampleGen is CPU-bound on PNG
    encoding, and the faster level costs only slightly larger files.
    """
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def make_example(
    image_png: bytes, label: int, example_id: str, class_name: str
) -> tf.train.Example:
    """PNG image, integer label, its class name (for readable slices) and a stable id."""
    feature = tf.train.Feature
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                features.IMAGE_KEY: feature(bytes_list=tf.train.BytesList(value=[image_png])),
                features.LABEL_KEY: feature(int64_list=tf.train.Int64List(value=[label])),
                features.CLASS_NAME_KEY: feature(
                    bytes_list=tf.train.BytesList(value=[class_name.encode()])
                ),
                features.EXAMPLE_ID_KEY: feature(
                    bytes_list=tf.train.BytesList(value=[example_id.encode()])
                ),
            }
        )
    )
