"""The 28x28x1 (MNIST-format) networks of the zoo: ``tutorial_cnn`` and ``deep_cnn``.

Builders for ``trainer_module.models.build_model`` (registered by name in
``trainer_module.model_names``), following the contract in
``trainer_module.models``.

Cost per 28x28x1 image (multiply-accumulates of the conv and dense layers,
counted as ``output pixels x kernel area x in x out`` and ``in x out``; the
tests recompute these from the built models and check they are the ones here):

* ``tutorial_cnn``: 13,883,904 MACs.
* ``deep_cnn``: 23,709,440 MACs, within the CPU budget the tests set for it.
  ``width_multiplier`` scales its 32-64-128 channels, and the MACs about with
  its square: 0.5 costs 5,984,128, 1.5 (48-96-192) 53,175,936.
"""

from __future__ import annotations

import keras

from trainer_module.hparams import FLIP_SHIFT_AUGMENTATION, ModelHParams
from trainer_module.models.layers import (
    Augmentation,
    RandomStandardizedJitter,
    conv_bn,
    probabilities_output,
)


def _augmentation(policy: str) -> Augmentation:
    """Training-only random augmentation; every layer is the identity at inference.

    Both policies shift by up to +-5 % (1.4 px at 28x28), half the usual 10 %:
    Fashion-MNIST items fill the frame (almost every training image touches
    the border), so 10 % shifts crop the item and smear its edge rows, which
    cost test accuracy. Geometric jitter uses ``fill_mode='nearest'`` because a
    constant 0 fill would be the dataset mean after standardization, a grey
    frame rather than background.

    * ``"seed"`` (the MNIST seed's): + rotation up to +-8 degrees, contrast
      +-20 %, brightness +-0.2 std, Gaussian noise of 0.1 std.
    * ``"flip_shift"``: + random horizontal flips, nothing else. For classes
      that are mirror-symmetric (clothing), where it trains this network to a
      better test accuracy than "seed", whose distortions mostly do not occur
      in the test set, so the network under-fits. Never use it for digits,
      where a flip changes the class.
    """
    shift = keras.layers.RandomTranslation(
        height_factor=0.05, width_factor=0.05, fill_mode="nearest"
    )
    if policy == FLIP_SHIFT_AUGMENTATION:
        layers = [keras.layers.RandomFlip("horizontal"), shift]
    else:
        layers = [
            keras.layers.RandomRotation(factor=8.0 / 360.0, fill_mode="nearest"),
            shift,
            RandomStandardizedJitter(contrast=0.2, brightness=0.2),
            keras.layers.GaussianNoise(stddev=0.1),
        ]
    return Augmentation(layers, name="augmentation")


def tutorial_cnn(
    inputs: keras.KerasTensor, num_classes: int, hparams: ModelHParams
) -> keras.KerasTensor:
    """The TensorFlow tutorial / Estimator ``cnn_mnist.py`` network, layer for layer."""
    x = keras.layers.Conv2D(32, 5, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(64, 5, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(1024, activation="relu", name="dense")(x)
    x = keras.layers.Dropout(hparams.dropout, name="dropout")(x)
    return probabilities_output(x, num_classes)


def _conv_bn_lrelu(
    x: keras.KerasTensor,
    filters: int,
    strides: int,
    regularizer: keras.regularizers.Regularizer,
    name: str,
) -> keras.KerasTensor:
    """3x3 conv -> batch norm -> leaky ReLU; no conv bias, BN's beta replaces it."""
    x = conv_bn(x, filters, strides=strides, regularizer=regularizer, name=name)
    return keras.layers.LeakyReLU(negative_slope=0.1, name=f"{name}_lrelu")(x)


DEEP_CNN_WIDTHS = (32, 64, 128)  # channels at 28x28, 14x14 and 7x7 at width_multiplier 1.0


def deep_cnn(
    inputs: keras.KerasTensor, num_classes: int, hparams: ModelHParams
) -> keras.KerasTensor:
    """The deeper "MNIST 99.xx%" network: BN + leaky ReLU conv stack, GAP head.

    28x28 (two convs) -> 14x14 (max pool; one conv) -> 7x7 (stride-2 conv; two
    convs). Two convolutions at full resolution before any downsampling keep
    the fine texture that separates shirts from T-shirts and pullovers: an
    earlier, cheaper layout that strided right after the first convolution
    stalled at a clearly lower Fashion-MNIST accuracy. ``width_multiplier``
    scales the three stages' 32-64-128 channels together: at 1.5 it trained
    to a better accuracy per epoch but not per minute (README, Benchmark).
    """
    regularizer = keras.regularizers.L2(hparams.l2)
    narrow, middle, wide = hparams.scaled_widths(DEEP_CNN_WIDTHS)
    x = _augmentation(hparams.augmentation)(inputs) if hparams.augment else inputs
    x = _conv_bn_lrelu(x, narrow, 1, regularizer, name="block1")
    x = _conv_bn_lrelu(x, narrow, 1, regularizer, name="block2")
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = _conv_bn_lrelu(x, middle, 1, regularizer, name="block3")
    x = _conv_bn_lrelu(x, middle, 2, regularizer, name="block4")
    x = _conv_bn_lrelu(x, wide, 1, regularizer, name="block5")
    x = _conv_bn_lrelu(x, wide, 1, regularizer, name="block6")
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dropout(hparams.dropout, name="dropout")(x)
    return probabilities_output(x, num_classes, kernel_regularizer=regularizer)
