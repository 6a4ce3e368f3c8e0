"""TFT `preprocessing_fn`: decode, scale by 1/255, standardize with full-pass stats.

The seed tutorials normalize with constants typed into the training script and
hope serving does the same. Here the per-channel mean and variance are computed
by tf.Transform in a full pass over the training split and baked into the
transform graph, so training, evaluation and both serving signatures apply the
identical transformation.

The CIFAR seeds used the fixed ImageNet mean/std instead; that is available as
``normalization: "imagenet"`` in the custom config (colour images only). It is
still applied inside the transform graph, so serving cannot drift from it.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_transform as tft

from trainer_module import features
from trainer_module.normalization_names import COMPUTED, IMAGENET, NORMALIZATIONS

# Guards the division for a constant channel (variance 0).
VARIANCE_EPSILON = 1e-7
IMAGE_SHAPE_CONFIG_KEY = "image_shape"
NORMALIZATION_CONFIG_KEY = "normalization"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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


def standardize_imagenet(images: tf.Tensor) -> tf.Tensor:
    """The torchvision/Keras ImageNet constants on [0, 1] RGB images."""
    if images.shape[-1] != len(IMAGENET_MEAN):
        raise ValueError(
            f"{IMAGENET!r} normalization needs RGB images, got "
            f"{images.shape[-1]} channel(s); use {COMPUTED!r}"
        )
    return (images - tf.constant(IMAGENET_MEAN)) / tf.constant(IMAGENET_STD)


def preprocessing_fn(
    inputs: dict[str, tf.Tensor], custom_config: dict[str, Any]
) -> dict[str, tf.Tensor]:
    """TFX Transform entry point (passed by import path, not as a module_file)."""
    image_shape = tuple(int(d) for d in custom_config[IMAGE_SHAPE_CONFIG_KEY])
    normalization = custom_config.get(NORMALIZATION_CONFIG_KEY, COMPUTED)
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    images = decode_images(inputs[features.IMAGE_KEY], image_shape)
    labels = tf.reshape(inputs[features.LABEL_KEY], [-1])
    standardize = (
        standardize_imagenet if normalization == IMAGENET else standardize_per_channel
    )
    return {
        features.TRANSFORMED_IMAGE_KEY: standardize(images),
        features.LABEL_KEY: labels,
    }
