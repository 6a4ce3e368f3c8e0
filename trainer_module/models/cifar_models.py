"""The CIFAR-10 (32x32x3) networks of the zoo: ``lenet5``, ``mobilenet_v2`` and ``resnet9``.

Builders for ``trainer_module.models.build_model`` (registered by name in
``trainer_module.model_names``), following the contract in
``trainer_module.models``; their per-model training defaults are in
``trainer_module.hparams``. Designed for 32x32x3 images; they also build for
28x28x1.

When ``hparams.augment`` is on (the default), all three train on the standard
CIFAR augmentation: a random crop of the image reflect-padded by 4 pixels and
a random horizontal flip, both the identity at inference (``Augmentation``).

Cost per 32x32x3 image with 10 classes, counted like the MNIST models
(multiply-accumulates of the conv and dense layers; a depthwise conv counts
``output pixels x kernel area x channels``; the tests recompute these and the
parameter counts, batch-norm moving statistics included, from the built
models and check they are the ones here):

===============================  ===========  ==========
model (``width_multiplier``)            MACs  parameters
===============================  ===========  ==========
``lenet5``                           651,720      62,006
``mobilenet_v2`` (1.0, default)    6,124,928   2,270,794
``resnet9`` (0.25, default)       24,036,608     414,074
``resnet9`` (0.5)                 95,259,136   1,648,362
``resnet9`` (1.0, Page's)        379,261,952   6,577,610
===============================  ===========  ==========
"""

from __future__ import annotations

import keras

from trainer_module.hparams import ModelHParams
from trainer_module.models.layers import (
    Augmentation,
    RandomPadCrop,
    conv_bn,
    probabilities_output,
)

CIFAR_PADDING = 4  # pixels of reflect padding before the random crop


def _crop_and_flip() -> Augmentation:
    """Pad-4 random crop + random horizontal flip; the identity at inference."""
    return Augmentation(
        [RandomPadCrop(CIFAR_PADDING), keras.layers.RandomFlip("horizontal")],
        name="augmentation",
    )


def _augmented(inputs: keras.KerasTensor, hparams: ModelHParams) -> keras.KerasTensor:
    return _crop_and_flip()(inputs) if hparams.augment else inputs


def lenet5(
    inputs: keras.KerasTensor, num_classes: int, hparams: ModelHParams
) -> keras.KerasTensor:
    """LeNet-5 as in the CIFAR seed: two 5x5 'valid' convs with 2x2 max pools, 120-84 dense.

    32x32x3 -> 28x28x6 -> 14x14x6 -> 10x10x16 -> 5x5x16 = 400 -> 120 -> 84 -> out,
    ReLU throughout, no dropout, no batch norm, no weight penalty.
    651,720 MACs (conv 352,800 + 240,000, dense 48,000 + 10,080 + 840) and
    62,006 parameters per 32x32x3 image with 10 classes.
    """
    x = _augmented(inputs, hparams)
    x = keras.layers.Conv2D(6, 5, activation="relu", name="conv1")(x)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(16, 5, activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(120, activation="relu", name="fc1")(x)
    x = keras.layers.Dense(84, activation="relu", name="fc2")(x)
    return probabilities_output(x, num_classes)


def mobilenet_v2(
    inputs: keras.KerasTensor, num_classes: int, hparams: ModelHParams
) -> keras.KerasTensor:
    """``keras.applications.MobileNetV2`` as the seed used it, trained from scratch.

    ``MobileNetV2(weights=None, include_top=False, alpha=width_multiplier)`` with
    global average pooling, then our float32 softmax in place of its
    ``predictions`` layer (the application's own top is exactly GAP + dense).
    Its layers are built directly on our graph (``input_tensor``), so the model
    keeps the ``image_xf`` input and holds no nested model. ``weights=None``: no
    download, and none of the "weights for input shape (224, 224) will be
    loaded" warnings, which only concern ImageNet weights. The application's
    ``preprocess_input`` (scaling to [-1, 1]) is NOT applied: we train from
    scratch on already standardized images, which batch norm handles alike.

    Unmodified ImageNet strides: 32x32 is downsampled 32x, so the last blocks
    run on 1x1 maps; that is the seed's network, not a CIFAR-tuned variant.
    6,124,928 MACs and 2,270,794 parameters per 32x32x3 image with 10 classes
    at ``alpha`` 1.0, the Keras default (on CPU its cost is dominated by the
    memory traffic of the depthwise layers, not by MACs).
    """
    backbone = keras.applications.MobileNetV2(
        input_tensor=_augmented(inputs, hparams),
        alpha=hparams.width_multiplier,
        include_top=False,
        weights=None,
        pooling="avg",
    )
    return probabilities_output(backbone.output, num_classes)


def _conv_bn_relu(
    x: keras.KerasTensor, filters: int, regularizer: keras.regularizers.Regularizer, name: str
) -> keras.KerasTensor:
    x = conv_bn(x, filters, regularizer=regularizer, name=name)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


RESNET9_WIDTHS = (64, 128, 256, 512)  # prep, layer1, layer2, layer3 at width_multiplier 1.0
# (stage name, index into RESNET9_WIDTHS, residual block after the pool?)
_RESNET9_STAGES = (("layer1", 1, True), ("layer2", 2, False), ("layer3", 3, True))


def resnet9(
    inputs: keras.KerasTensor, num_classes: int, hparams: ModelHParams
) -> keras.KerasTensor:
    """D. Page's DAWNBench ResNet-9 ("How to train your ResNet"), channels scaled.

    prep conv -> [conv, max pool, residual(conv, conv)] -> [conv, max pool] ->
    [conv, max pool, residual(conv, conv)] -> global max pool -> x0.125 -> dense,
    every conv 3x3 + batch norm + ReLU, L2 ``hparams.l2`` on all kernels.
    The 0.125 scaling of the pooled features is Page's logit scaling.

    The original uses 64-128-256-512 channels (``width_multiplier=1.0``), far
    more compute than a CPU trains in reasonable time (costs in the module
    docstring). Compute scales with the square of the width, so the default
    ``width_multiplier=0.25`` (16-32-64-128) costs 24,036,608 MACs (1/16) with
    414,074 parameters, close to the MNIST models' CPU budget, while keeping
    the architecture; use 0.5 or 1.0 on a GPU.
    """
    regularizer = keras.regularizers.L2(hparams.l2)
    widths = hparams.scaled_widths(RESNET9_WIDTHS)
    x = _conv_bn_relu(_augmented(inputs, hparams), widths[0], regularizer, "prep")
    for stage, width_index, residual in _RESNET9_STAGES:
        x = _conv_bn_relu(x, widths[width_index], regularizer, stage)
        x = keras.layers.MaxPooling2D(2, name=f"{stage}_pool")(x)
        if residual:
            branch = _conv_bn_relu(x, widths[width_index], regularizer, f"{stage}_res1")
            branch = _conv_bn_relu(branch, widths[width_index], regularizer, f"{stage}_res2")
            x = keras.layers.Add(name=f"{stage}_add")([x, branch])
    x = keras.layers.GlobalMaxPooling2D(name="pool")(x)
    x = keras.layers.Rescaling(0.125, name="logit_scale")(x)
    return probabilities_output(x, num_classes, kernel_regularizer=regularizer)
