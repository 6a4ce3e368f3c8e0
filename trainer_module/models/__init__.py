"""Model zoo: the Keras image classifiers the Trainer can build by name.

Every model shares one contract so the Trainer, TFMA and the serving signatures
never need to know which network they hold:

* one input, ``image_xf``: float32 ``[B, H, W, C]`` images that tf.Transform has
  ALREADY standardized per channel (roughly zero mean, unit variance; negative
  values are normal, and the range is not [0, 1]);
* one output: float32 class probabilities ``[B, num_classes]`` (softmax). The
  output layer is pinned to float32 so the contract holds under the
  ``mixed_float16`` policy too (see ``trainer_module.accelerator``);
* compiled with Adam (its learning-rate schedule built in, see
  ``trainer_module.schedules``), sparse categorical cross-entropy and an
  ``accuracy`` metric, so ``model.fit`` on ``(image_xf, label)`` batches just
  works.

Where the parts live: the names, and where each builder is, in
``trainer_module.model_names`` (TF-free, the one list); the 28x28 networks in
``mnist_models``, the CIFAR-10 ones in ``cifar_models``; the layers and blocks
they use in ``layers``; hyperparameters and each model's defaults
(``default_hparams``, also importable from here) in ``trainer_module.hparams``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import keras

from trainer_module import features, model_names, schedules
from trainer_module.hparams import ModelHParams, default_hparams
from trainer_module.models.layers import LabelSmoothedSparseCrossentropy

__all__ = ["ModelHParams", "build_model", "builder", "default_hparams"]

Builder = Callable[[keras.KerasTensor, int, ModelHParams], keras.KerasTensor]


def builder(name: str) -> Builder:
    """The builder function of model ``name``, imported from its registered path."""
    module, _, function = model_names.BUILDER_PATHS[model_names.check_model_name(name)].partition(":")
    return getattr(importlib.import_module(module), function)


def _loss(hparams: ModelHParams) -> keras.losses.Loss:
    if hparams.label_smoothing:
        return LabelSmoothedSparseCrossentropy(hparams.label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy()


def build_model(
    name: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    hparams: ModelHParams | None = None,
    *,
    steps_per_epoch: int | None = None,
    epochs: int | None = None,
) -> keras.Model:
    """Builds and compiles the model ``name`` (one of ``model_names.MODEL_NAMES``).

    ``hparams`` defaults to ``default_hparams(name)``. The optimizer gets the
    learning-rate schedule ``hparams.lr_schedule`` over ``epochs`` epochs of
    ``steps_per_epoch`` steps (``schedules.learning_rate``), so training needs
    no callback to set the rate. Without them the rate stays at
    ``hparams.learning_rate``, which suits a model that is only exported, timed
    or inspected; ``callbacks.training_callbacks`` refuses to train it. Set the
    mixed-precision policy (``configure_accelerator``) BEFORE calling this:
    Keras fixes each layer's dtype policy when the layer is created.
    """
    body = builder(name)
    if hparams is None:
        hparams = default_hparams(name)
    inputs = keras.Input(
        shape=input_shape, name=features.TRANSFORMED_IMAGE_KEY, dtype="float32"
    )
    model = keras.Model(inputs, body(inputs, num_classes, hparams), name=name)
    model.compile(
        optimizer=keras.optimizers.Adam(
            learning_rate=schedules.learning_rate(hparams, steps_per_epoch, epochs),
            beta_1=hparams.adam_beta1,
            weight_decay=hparams.weight_decay or None,
            use_ema=hparams.ema_momentum > 0.0,
            ema_momentum=hparams.ema_momentum,  # Keras checks it only with use_ema
        ),
        loss=_loss(hparams),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    return model
