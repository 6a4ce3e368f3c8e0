"""TFT `preprocessing_fn`: decode, scale by 1/255, standardize with full-pass stats.

The seed tutorials normalize with constants typed into the training script and
hope serving does the same. Here the per-channel mean and variance are computed
by tf.Transform in a full pass over the training split and baked into the
transform graph, so training, evaluation and both serving signatures apply the
identical transformation.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_transform as tft

from trainer_module import features

# Guards the division for a constant channel (variance 0).
VARIANCE_EPSILON = 1e-7
IMAGE_SHAPE_CONFIG_KEY = "image_shape"


def decode_images(encoded: tf.Tensor, image_shape: tuple[int, int, int]) -> tf.Tensor:
    """[B] or [B, 1] PNG strings -> float32 [B, H, W, C] in [0, 1]."""
    height, width, channels = image_shape
    encoded = tf.reshape(encoded, [-1])
    decoded = tf.map_fn(
        lambda png: tf.io.decode_png(png, channels=channels),
        encoded,
        fn_output_signature=tf.TensorSpec([None, None, channels], tf.uint8),
    )
    decoded = tf.ensure_shape(decoded, [None, height, width, channels])
    return tf.cast(decoded, tf.float32) / 255.0


def standardize_per_channel(images: tf.Tensor) -> tf.Tensor:
    """Subtracts the dataset mean and divides by the dataset std, per channel."""
    channels = images.shape[-1]
    pixels = tf.reshape(images, [-1, channels])
    mean = tft.mean(pixels, reduce_instance_dims=False)
    variance = tft.var(pixels, reduce_instance_dims=False)
    return (images - mean) / tf.sqrt(variance + VARIANCE_EPSILON)


def preprocessing_fn(
    inputs: dict[str, tf.Tensor], custom_config: dict[str, Any]
) -> dict[str, tf.Tensor]:
    """TFX Transform entry point (passed by import path, not as a module_file)."""
    image_shape = tuple(int(d) for d in custom_config[IMAGE_SHAPE_CONFIG_KEY])
    images = decode_images(inputs[features.IMAGE_KEY], image_shape)
    labels = tf.reshape(inputs[features.LABEL_KEY], [-1])
    return {
        features.TRANSFORMED_IMAGE_KEY: standardize_per_channel(images),
        features.LABEL_KEY: labels,
    }
