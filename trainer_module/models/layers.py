"""The zoo's own Keras parts: augmentation layers, conv blocks, the output head, the loss.

Only what Keras does not offer as the zoo needs it; each class says why the
stock part does not fit. Every class is registered for Keras serialization
under the ``visionpipe`` package, so a ``.keras`` file of any zoo model loads
without ``custom_objects``.
"""

from __future__ import annotations

from typing import Any

import keras


@keras.saving.register_keras_serializable(package="visionpipe")
class Augmentation(keras.Sequential):
    """A stack of random augmentation layers that is OFF unless ``training=True``.

    Why not a plain ``keras.Sequential``: Keras 3's image preprocessing layers
    (RandomRotation, RandomTranslation, ...) default to ``training=True``. When
    the model is called directly, e.g. ``model(images)`` in a serving or TFMA
    signature, no training flag is set, so they would randomly transform
    serving inputs, and the resolved ``True`` would also leak to the layers
    after them through Keras's call context. Defaulting the container to
    ``training=False`` makes direct calls inference calls; ``fit`` still passes
    ``training=True`` explicitly.

    ``enabled = False`` makes it the identity in training too, for a budget of
    one or two epochs, where augmentation costs more accuracy than it gives
    (trainer_module.budget_keeper). It is read when Keras traces the train
    step, so whoever changes it mid-``fit`` retraces it
    (``model.make_train_function(force=True)``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.enabled = True

    def call(self, inputs: Any, training: bool = False, mask: Any = None, **kwargs: Any) -> Any:
        if not self.enabled:
            return inputs
        return super().call(inputs, training=training, mask=mask, **kwargs)


@keras.saving.register_keras_serializable(package="visionpipe")
class RandomPadCrop(keras.layers.Layer):
    """Random ``H x W`` crop of the image reflect-padded by ``padding`` pixels.

    The standard CIFAR augmentation ("pad 4, random crop 32x32"), i.e. a random
    shift of up to ``padding`` pixels in each direction, drawn independently for
    every image. Reflect padding (as in D. Page's DAWNBench ResNet-9 code) rather
    than zeros: after standardization a 0 is the dataset mean, a grey frame that
    never occurs in real images. Integer shifts only, so pixels are copied, not
    interpolated. The identity unless ``training=True``.

    Why not ``keras.layers.RandomTranslation(..., interpolation="nearest")``: it
    has no fill that reproduces this padding (its ``"reflect"`` repeats the edge
    pixel, ``d c b a | a b c d``, where this pad is ``c b | a b c d``, and
    ``"constant"`` is the grey frame), and its continuous shift, rounded to
    whole pixels, draws the two extreme shifts half as often as the others.
    """

    def __init__(self, padding: int = 4, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if padding < 1:
            raise ValueError(f"padding must be >= 1, got {padding}")
        self.padding = padding
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images: Any, training: bool = False) -> Any:
        return self._random_crops(images) if training else images

    def _random_crops(self, images: Any) -> Any:
        pad = self.padding
        batch, height, width = (keras.ops.shape(images)[axis] for axis in range(3))
        padded = keras.ops.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="reflect")
        # Top-left corner of each image's crop inside the padded image.
        corners = keras.random.randint(
            (batch, 2), minval=0, maxval=2 * pad + 1, seed=self.seed_generator
        )
        rows = corners[:, :1] + keras.ops.arange(height, dtype="int32")  # [B, H]
        cols = corners[:, 1:] + keras.ops.arange(width, dtype="int32")  # [B, W]
        cropped_rows = keras.ops.take_along_axis(padded, rows[:, :, None, None], axis=1)
        return keras.ops.take_along_axis(cropped_rows, cols[:, None, :, None], axis=2)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "padding": self.padding, "seed": self.seed}


@keras.saving.register_keras_serializable(package="visionpipe")
class RandomStandardizedJitter(keras.layers.Layer):
    """Random per-image contrast and brightness jitter for STANDARDIZED images.

    Why not ``keras.layers.RandomContrast`` / ``RandomBrightness``: in Keras 3
    both clip their output to ``value_range`` (default ``[0, 255]``) and
    RandomBrightness scales its shift by the width of that range. Our inputs are
    z-scores with negative values and no natural bounds, so the built-in layers
    would silently clip away every below-mean pixel. This layer applies the same
    two transformations without any clipping:

        ``x' = (x - mean_c) * contrast + mean_c + brightness``

    with ``mean_c`` the per-image, per-channel mean, ``contrast`` drawn from
    ``[1 - contrast, 1 + contrast]`` and ``brightness`` from
    ``[-brightness, brightness]``, once per image. Because the inputs are
    standardized, ``brightness`` is measured in dataset standard deviations.
    Like the built-in layers it is the identity unless ``training=True``.
    """

    def __init__(
        self, contrast: float, brightness: float, seed: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= contrast < 1.0:
            raise ValueError(f"contrast must be in [0, 1), got {contrast}")
        if brightness < 0.0:
            raise ValueError(f"brightness must be >= 0, got {brightness}")
        self.contrast = contrast
        self.brightness = brightness
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images: Any, training: bool = False) -> Any:
        if not training:
            return images
        per_image = (keras.ops.shape(images)[0], 1, 1, 1)
        contrast = keras.random.uniform(
            per_image,
            minval=1.0 - self.contrast,
            maxval=1.0 + self.contrast,
            dtype=self.compute_dtype,
            seed=self.seed_generator,
        )
        brightness = keras.random.uniform(
            per_image,
            minval=-self.brightness,
            maxval=self.brightness,
            dtype=self.compute_dtype,
            seed=self.seed_generator,
        )
        mean = keras.ops.mean(images, axis=(1, 2), keepdims=True)
        return (images - mean) * contrast + mean + brightness

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "contrast": self.contrast,
            "brightness": self.brightness,
            "seed": self.seed,
        }


def conv_bn(
    x: keras.KerasTensor,
    filters: int,
    *,
    name: str,
    strides: int = 1,
    regularizer: keras.regularizers.Regularizer | None = None,
) -> keras.KerasTensor:
    """3x3 'same' conv -> batch norm, named ``{name}_conv`` / ``{name}_bn``.

    No conv bias: BN's beta replaces it. The caller adds the activation.
    """
    x = keras.layers.Conv2D(
        filters,
        3,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        kernel_regularizer=regularizer,
        name=f"{name}_conv",
    )(x)
    return keras.layers.BatchNormalization(name=f"{name}_bn")(x)


def probabilities_output(
    x: keras.KerasTensor,
    num_classes: int,
    kernel_regularizer: keras.regularizers.Regularizer | None = None,
) -> keras.KerasTensor:
    """Softmax output pinned to float32, so mixed precision never leaks into it."""
    return keras.layers.Dense(
        num_classes,
        activation="softmax",
        kernel_regularizer=kernel_regularizer,
        dtype="float32",
        name="probabilities",
    )(x)


@keras.saving.register_keras_serializable(package="visionpipe")
class LabelSmoothedSparseCrossentropy(keras.losses.Loss):
    """Categorical cross-entropy on INTEGER labels, with label smoothing.

    Keras 3's ``SparseCategoricalCrossentropy`` has no ``label_smoothing``, and
    the dense ``CategoricalCrossentropy`` wants one-hot labels, which our
    datasets and the sparse ``accuracy`` metric do not use. This one-hots the
    labels inside the loss and applies ``categorical_crossentropy`` with
    ``label_smoothing=e``: the target becomes ``1 - e + e/K`` for the true class
    and ``e/K`` for each of the other ``K - 1`` classes. ``y_pred`` are
    probabilities (the models' softmax output), labels ``[B]`` or ``[B, 1]``.
    """

    def __init__(
        self,
        label_smoothing: float = 0.0,
        name: str = "label_smoothed_sparse_crossentropy",
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, **kwargs)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def call(self, y_true: Any, y_pred: Any) -> Any:
        labels = keras.ops.cast(y_true, "int32")
        if len(labels.shape) == len(y_pred.shape):
            labels = keras.ops.squeeze(labels, axis=-1)
        targets = keras.ops.one_hot(labels, y_pred.shape[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(
            targets, y_pred, label_smoothing=self.label_smoothing
        )

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "label_smoothing": self.label_smoothing}
