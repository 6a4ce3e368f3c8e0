"""Tests for the CIFAR-10 models (lenet5, mobilenet_v2, resnet9) and what they train with.

Covers trainer_module.models.cifar_models, the blocks in trainer_module.models.layers
(crop + flip augmentation, label-smoothed loss), the learning-rate schedules in
trainer_module.schedules and how callbacks report them, and hparams.default_hparams.
Random 32x32x3 data and one or two steps: wiring and contracts, not learning.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainer_module import hparams as hp
from trainer_module import schedules
from trainer_module.callbacks import EpochDiagnostics, training_callbacks
from trainer_module.hparams import ModelHParams, default_hparams
from trainer_module.model_names import (
    DEEP_CNN,
    LENET5,
    MOBILENET_V2,
    RESNET9,
    TUTORIAL_CNN,
)
from trainer_module.models import build_model, builder, cifar_models
from trainer_module.models.layers import LabelSmoothedSparseCrossentropy, RandomPadCrop

NUM_CLASSES = 10
CIFAR_SHAPE = (32, 32, 3)
CIFAR_MODELS = (LENET5, MOBILENET_V2, RESNET9)
# (model, width_multiplier or None for the default) -> (MACs, parameters) per
# 32x32x3 image with 10 classes: the figures in the cifar_models docstrings.
COSTS = {
    (LENET5, None): (651_720, 62_006),
    (MOBILENET_V2, None): (6_124_928, 2_270_794),
    (RESNET9, None): (24_036_608, 414_074),
    (RESNET9, 0.5): (95_259_136, 1_648_362),
    (RESNET9, 1.0): (379_261_952, 6_577_610),
}


def _random_batch(count: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Standardized-looking 32x32x3 images (zero mean, unit variance) and labels."""
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((count, *CIFAR_SHAPE)).astype("float32")
    return images, rng.integers(0, NUM_CLASSES, size=count)


def _layer_macs(layer: keras.layers.Layer) -> int:
    """Multiply-accumulates per image of one conv / depthwise conv / dense layer, else 0."""
    if isinstance(layer, keras.layers.Dense):
        return layer.input.shape[-1] * layer.units
    if not isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
        return 0
    outputs = math.prod(layer.output.shape[1:])  # output pixels x output channels
    # A depthwise conv filters each input channel on its own, a conv sees all of them.
    fan_in = 1 if isinstance(layer, keras.layers.DepthwiseConv2D) else layer.input.shape[-1]
    return outputs * math.prod(layer.kernel_size) * fan_in


def _assert_probabilities(outputs: object, count: int, atol: float = 1e-5) -> None:
    """A float32 [count, NUM_CLASSES] batch of distributions, whatever the model computed in."""
    probabilities = keras.ops.convert_to_numpy(outputs)
    assert probabilities.shape == (count, NUM_CLASSES)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=atol)


def _hparams(name: str, **changes: object) -> ModelHParams:
    return dataclasses.replace(default_hparams(name), **changes)


@pytest.fixture
def mixed_float16() -> Iterator[None]:
    """The process-global dtype policy set to mixed_float16 for one test, then put back."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


# --- the models ---------------------------------------------------------------


@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_model_keeps_the_contract_and_trains_one_step_with_its_callbacks(
    name: str, tmp_path: Path
) -> None:
    hparams = default_hparams(name)
    model = build_model(name, CIFAR_SHAPE, NUM_CLASSES, steps_per_epoch=1, epochs=1)
    images, labels = _random_batch()

    history = model.fit(
        images,
        labels,
        batch_size=len(images),
        epochs=1,
        verbose=0,
        callbacks=training_callbacks(str(tmp_path), hparams),
    )

    assert model.inputs[0].name == "image_xf"
    assert tuple(model.inputs[0].shape) == (None, *CIFAR_SHAPE)
    assert model.layers[-1].name == "probabilities"
    assert np.isfinite(history.history["loss"][0])
    assert {"accuracy", "learning_rate", "regularization_loss"} <= history.history.keys()
    _assert_probabilities(model(images), len(images))


@pytest.mark.parametrize(("name", "width"), list(COSTS))
def test_costs_match_the_docstrings(name: str, width: float | None) -> None:
    hparams = default_hparams(name) if width is None else _hparams(name, width_multiplier=width)
    model = build_model(name, CIFAR_SHAPE, NUM_CLASSES, hparams)
    macs, params = COSTS[name, width]

    assert sum(_layer_macs(layer) for layer in model.layers) == macs
    assert model.count_params() == params
    assert f"{macs:,}" in cifar_models.__doc__ and f"{params:,}" in cifar_models.__doc__
    if width is None:
        builder_doc = builder(name).__doc__
        assert f"{macs:,}" in builder_doc and f"{params:,}" in builder_doc


def test_lenet5_is_the_classic_network() -> None:
    model = build_model(LENET5, CIFAR_SHAPE, NUM_CLASSES)

    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers}

    assert shapes["conv1"] == (28, 28, 6)
    assert shapes["pool1"] == (14, 14, 6)
    assert shapes["conv2"] == (10, 10, 16)
    assert shapes["flatten"] == (400,)
    assert (shapes["fc1"], shapes["fc2"]) == ((120,), (84,))
    assert all(
        model.get_layer(name).activation is keras.activations.relu
        for name in ("conv1", "conv2", "fc1", "fc2")
    )
    assert model.losses == []


def test_resnet9_has_pages_layout_at_the_default_width() -> None:
    model = build_model(RESNET9, CIFAR_SHAPE, NUM_CLASSES)

    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    adds = [layer for layer in model.layers if isinstance(layer, keras.layers.Add)]

    assert [conv.filters for conv in convs] == [16, 32, 32, 32, 64, 128, 128, 128]
    assert all(conv.kernel_size == (3, 3) and not conv.use_bias for conv in convs)
    assert [tuple(add.output.shape[1:]) for add in adds] == [(16, 16, 32), (4, 4, 128)]
    assert isinstance(model.get_layer("pool"), keras.layers.GlobalMaxPooling2D)
    assert model.get_layer("logit_scale").scale == 0.125
    assert len(model.losses) == 9  # L2 on the eight conv kernels and the output kernel


def test_mobilenet_v2_is_the_keras_application_without_warnings() -> None:
    hparams = _hparams(MOBILENET_V2, width_multiplier=0.5, augment=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = build_model(MOBILENET_V2, CIFAR_SHAPE, NUM_CLASSES, hparams)
    reference = keras.applications.MobileNetV2(
        input_shape=CIFAR_SHAPE, alpha=0.5, include_top=False, weights=None, pooling="avg"
    )

    # Same layers in the same order; only the auto-numbered pooling names differ.
    ours = [(type(layer), tuple(layer.output.shape)) for layer in model.layers[1:-1]]
    theirs = [(type(layer), tuple(layer.output.shape)) for layer in reference.layers[1:]]
    assert [layer.name for layer in model.layers[1:-2]] == [
        layer.name for layer in reference.layers[1:-1]
    ]

    assert [str(warning.message) for warning in caught] == []
    assert ours == theirs
    assert model.count_params() == reference.count_params() + 1280 * NUM_CLASSES + NUM_CLASSES
    assert all(not isinstance(layer, keras.Model) for layer in model.layers)


@pytest.mark.usefixtures("mixed_float16")
def test_resnet9_trains_under_mixed_precision() -> None:
    # One step per epoch over 10 epochs: round(0.2 * 10) = 2 warm-up steps, step 0 at 0.
    model = build_model(RESNET9, CIFAR_SHAPE, NUM_CLASSES, steps_per_epoch=1, epochs=10)
    images, labels = _random_batch()

    history = model.fit(
        images, labels, batch_size=len(images), verbose=0, callbacks=[EpochDiagnostics()]
    ).history
    loss = history["loss"][0]

    computed_in = {model.get_layer(name).compute_dtype for name in ("augmentation", "prep_conv")}
    assert computed_in == {"float16"}
    assert model.get_layer("probabilities").compute_dtype == "float32"
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert np.isfinite(loss)
    # Read through the LossScaleOptimizer: step 0 of the one-cycle warm-up, not the constant 5e-3.
    assert history["learning_rate"] == [0.0]
    _assert_probabilities(model.predict(images, verbose=0), len(images), atol=1e-3)


def test_resnet9_survives_keras_save_and_load(tmp_path: Path) -> None:
    model = build_model(RESNET9, CIFAR_SHAPE, NUM_CLASSES, steps_per_epoch=10, epochs=2)
    images, _ = _random_batch()
    path = tmp_path / "resnet9.keras"

    model.save(path)
    restored = keras.models.load_model(path)

    assert isinstance(restored.loss, LabelSmoothedSparseCrossentropy)
    assert restored.loss.label_smoothing == pytest.approx(0.1)
    assert isinstance(restored.optimizer._learning_rate, schedules.OneCycle)
    assert restored.optimizer._learning_rate.get_config() == model.optimizer._learning_rate.get_config()
    np.testing.assert_allclose(
        restored.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6
    )


# --- crop + flip augmentation ------------------------------------------------


def _augmentation() -> keras.layers.Layer:
    return build_model(RESNET9, CIFAR_SHAPE, NUM_CLASSES).get_layer("augmentation")


def test_crop_and_flip_is_identity_at_inference() -> None:
    model = build_model(RESNET9, CIFAR_SHAPE, NUM_CLASSES)
    images, _ = _random_batch()

    augmented = keras.ops.convert_to_numpy(model.get_layer("augmentation")(images))

    np.testing.assert_array_equal(augmented, images)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model(images)), model.predict(images, verbose=0)
    )


def _shifts_and_flips(image: np.ndarray, padding: int) -> list[np.ndarray]:
    """Every crop of the reflect-padded image, and its mirror image."""
    padded = np.pad(image, [(padding, padding), (padding, padding), (0, 0)], mode="reflect")
    height, width, _ = image.shape
    crops = [
        padded[top : top + height, left : left + width]
        for top in range(2 * padding + 1)
        for left in range(2 * padding + 1)
    ]
    return crops + [crop[:, ::-1] for crop in crops]


def test_crop_and_flip_in_training_shifts_and_mirrors_whole_pixels() -> None:
    images, _ = _random_batch(count=16)

    augmented = keras.ops.convert_to_numpy(_augmentation()(images, training=True))

    assert augmented.shape == images.shape
    assert not np.allclose(augmented, images)
    for image, result in zip(images, augmented, strict=True):
        candidates = _shifts_and_flips(image, cifar_models.CIFAR_PADDING)
        assert any(np.array_equal(result, candidate) for candidate in candidates)


def test_random_pad_crop_keeps_any_shape_and_its_config() -> None:
    layer = RandomPadCrop(padding=2, seed=1)
    images = np.arange(3 * 7 * 5 * 2, dtype="float32").reshape(3, 7, 5, 2)

    cropped = keras.ops.convert_to_numpy(layer(images, training=True))

    assert cropped.shape == images.shape
    assert RandomPadCrop.from_config(layer.get_config()).padding == 2
    with pytest.raises(ValueError, match="padding"):
        RandomPadCrop(padding=0)


# --- label smoothing ----------------------------------------------------------


def test_label_smoothed_loss_matches_hand_computation() -> None:
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype="float32")
    labels = np.array([0, 2])
    # epsilon 0.3 over 3 classes: targets 1 - 0.3 + 0.1 = 0.8 and 0.3 / 3 = 0.1.
    expected = (
        -(0.8 * math.log(0.7) + 0.1 * math.log(0.2) + 0.1 * math.log(0.1))
        - (0.1 * math.log(0.1) + 0.1 * math.log(0.1) + 0.8 * math.log(0.8))
    ) / 2
    loss = LabelSmoothedSparseCrossentropy(label_smoothing=0.3)

    assert float(loss(labels, probabilities)) == pytest.approx(expected, rel=1e-5)
    assert float(loss(labels[:, None], probabilities)) == pytest.approx(expected, rel=1e-5)
    assert float(LabelSmoothedSparseCrossentropy()(labels, probabilities)) == pytest.approx(
        float(keras.losses.SparseCategoricalCrossentropy()(labels, probabilities)), rel=1e-5
    )
    restored = LabelSmoothedSparseCrossentropy.from_config(loss.get_config())
    assert restored.label_smoothing == 0.3


def test_build_model_picks_the_loss_from_label_smoothing() -> None:
    smoothed = build_model(RESNET9, CIFAR_SHAPE, NUM_CLASSES)
    plain = build_model(LENET5, CIFAR_SHAPE, NUM_CLASSES)

    assert isinstance(smoothed.loss, LabelSmoothedSparseCrossentropy)
    assert smoothed.loss.label_smoothing == pytest.approx(0.1)
    assert isinstance(plain.loss, keras.losses.SparseCategoricalCrossentropy)


# --- learning-rate schedules --------------------------------------------------


def _schedule(kind: str, warmup_fraction: float = 0.2) -> keras.optimizers.schedules.LearningRateSchedule:
    """The optimizer's schedule for a 100-step run (one epoch of 100 steps)."""
    hparams = ModelHParams(learning_rate=0.01, lr_schedule=kind, lr_warmup_fraction=warmup_fraction)
    return schedules.learning_rate(hparams, steps_per_epoch=100, epochs=1)


def _rates(schedule: keras.optimizers.schedules.LearningRateSchedule, steps: list[int]) -> list[float]:
    return [float(keras.ops.convert_to_numpy(schedule(step))) for step in steps]


def test_exponential_steps_down_once_per_epoch_with_the_stock_schedule() -> None:
    hparams = ModelHParams(learning_rate=0.01, lr_decay_rate=0.5)
    schedule = schedules.learning_rate(hparams, steps_per_epoch=3, epochs=4)

    assert isinstance(schedule, keras.optimizers.schedules.ExponentialDecay)
    # Steps 0-2 are epoch 0, 3-5 epoch 1, ...: learning_rate * lr_decay_rate ** epoch.
    assert _rates(schedule, list(range(9))) == pytest.approx(
        [0.01] * 3 + [0.005] * 3 + [0.0025] * 3, rel=1e-6
    )


def test_one_cycle_warms_up_linearly_then_decays_linearly_to_zero() -> None:
    schedule = _schedule(hp.ONE_CYCLE)
    rates = _rates(schedule, [0, 10, 20, 60, 100, 150])

    assert isinstance(schedule, schedules.OneCycle)
    assert rates == pytest.approx([0.0, 0.005, 0.01, 0.005, 0.0, 0.0], abs=1e-9)


def test_cosine_warms_up_then_follows_half_a_cosine_to_zero() -> None:
    schedule = _schedule(hp.COSINE)
    rates = _rates(schedule, [0, 10, 20, 40, 60, 100])
    no_warmup = _rates(_schedule(hp.COSINE, warmup_fraction=0.0), [0, 50, 100])
    all_warmup = _rates(_schedule(hp.COSINE, warmup_fraction=1.0), [0, 50, 99, 100, 101])

    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    quarter = 0.005 * (1 + math.cos(math.pi / 4))
    assert rates == pytest.approx([0.0, 0.005, 0.01, quarter, 0.005, 0.0], abs=1e-9)
    assert no_warmup == pytest.approx([0.01, 0.005, 0.0], abs=1e-9)
    assert all_warmup == pytest.approx([0.0, 0.005, 0.0099, 0.01, 0.0], abs=1e-9)


def test_schedule_needs_the_step_counts_and_one_cycle_round_trips() -> None:
    schedule = _schedule(hp.ONE_CYCLE)

    restored = schedules.OneCycle.from_config(schedule.get_config())

    assert _rates(restored, [0, 20, 70]) == pytest.approx(_rates(schedule, [0, 20, 70]))
    assert schedules.learning_rate(ModelHParams(learning_rate=0.02)) == 0.02  # no steps: constant
    with pytest.raises(ValueError, match="epochs"):
        schedules.learning_rate(ModelHParams(lr_schedule=hp.COSINE), steps_per_epoch=10)
    with pytest.raises(ValueError, match="warmup_steps"):
        schedules.OneCycle(0.01, total_steps=10, warmup_steps=11)


class _RecordLearningRate(keras.callbacks.Callback):
    """The learning rate each training step runs with."""

    def __init__(self) -> None:
        super().__init__()
        self.rates: list[float] = []

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self.rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))


def _tensorboard_scalars(event_dir: Path, tag: str) -> dict[int, float]:
    """{step: value} of one scalar summary in the event files of a dir."""
    scalars: dict[int, float] = {}
    for event_file in event_dir.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            for value in event.summary.value:
                if value.tag == tag:
                    scalars[event.step] = float(tf.make_ndarray(value.tensor))
    return scalars


def test_the_optimizer_follows_the_schedule_every_step_and_the_logs_report_it(
    tmp_path: Path,
) -> None:
    # 8 images, batch 4: 2 steps x 2 epochs = 4 steps, the first one warm-up.
    hparams = _hparams(
        LENET5, learning_rate=0.01, lr_schedule=hp.ONE_CYCLE, lr_warmup_fraction=0.25
    )
    model = build_model(LENET5, CIFAR_SHAPE, NUM_CLASSES, hparams, steps_per_epoch=2, epochs=2)
    images, labels = _random_batch(count=8)
    recorder = _RecordLearningRate()

    history = model.fit(
        images,
        labels,
        batch_size=4,
        epochs=2,
        verbose=0,
        callbacks=[*training_callbacks(str(tmp_path), hparams), recorder],
    )

    assert recorder.rates == pytest.approx([0.0, 0.01, 0.01 * 2 / 3, 0.01 / 3], rel=1e-6)
    # Per epoch: the rate of its last step, in History and TensorBoard alike.
    assert history.history["learning_rate"] == pytest.approx([0.01, 0.01 / 3], rel=1e-6)
    assert _tensorboard_scalars(tmp_path / "train", "epoch_learning_rate") == pytest.approx(
        {0: 0.01, 1: 0.01 / 3}, rel=1e-6
    )


def test_a_dataset_whose_length_is_restored_keeps_the_schedule_on_its_steps(tmp_path: Path) -> None:
    """On a dataset of unknown length Keras counts one optimizer step too many per epoch.

    run_fn.make_dataset therefore asserts the counted length, as here.
    """
    hparams = _hparams(LENET5, lr_schedule=hp.COSINE)
    model = build_model(LENET5, CIFAR_SHAPE, NUM_CLASSES, hparams, steps_per_epoch=2, epochs=2)
    images, labels = _random_batch(count=8)
    # filter() makes the cardinality unknown, as unbatch() does in run_fn.make_dataset.
    dataset = (
        tf.data.Dataset.from_tensor_slices((images, labels))
        .filter(lambda x, y: True)
        .apply(tf.data.experimental.assert_cardinality(len(images)))
    )

    history = model.fit(
        dataset.batch(4), epochs=2, verbose=0, callbacks=training_callbacks(str(tmp_path), hparams)
    )

    # Cosine over 4 steps, warm-up round(0.2 * 4) = 1: steps 1 and 3 end the epochs.
    peak = hparams.learning_rate
    assert int(model.optimizer.iterations) == 4
    assert history.history["learning_rate"] == pytest.approx(
        [peak, peak * 0.5 * (1 + math.cos(math.pi * 2 / 3))], rel=1e-6
    )


def test_epoch_diagnostics_reports_the_rate_of_the_last_step_taken() -> None:
    model = build_model(LENET5, CIFAR_SHAPE, NUM_CLASSES)
    schedule = schedules.OneCycle(peak_learning_rate=0.01, total_steps=10, warmup_steps=5)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=schedule),
        loss=model.loss,
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    images, labels = _random_batch(count=8)

    history = model.fit(
        images, labels, batch_size=4, epochs=1, verbose=0, callbacks=[EpochDiagnostics()]
    )

    # Two steps taken (0 and 1): the rate of step 1, not the optimizer's next one (step 2's 0.004).
    assert history.history["learning_rate"] == pytest.approx([0.002])
    assert float(model.optimizer.learning_rate) == pytest.approx(0.004)


# --- per-model defaults -------------------------------------------------------


def test_default_hparams_per_model() -> None:
    resnet = default_hparams(RESNET9)

    for name in (TUTORIAL_CNN, LENET5, MOBILENET_V2):
        assert default_hparams(name) == ModelHParams()
    deep = default_hparams(DEEP_CNN)
    # deep_cnn anneals to 0 at the last step, whatever epochs a time budget picks.
    assert deep.lr_schedule == hp.ONE_CYCLE and deep.learning_rate > ModelHParams().learning_rate
    assert deep.label_smoothing == pytest.approx(0.1)
    assert ModelHParams().lr_schedule == hp.EXPONENTIAL
    assert ModelHParams().label_smoothing == 0.0
    assert resnet.lr_schedule == hp.ONE_CYCLE
    assert resnet.label_smoothing == pytest.approx(0.1)
    assert resnet.width_multiplier == 0.25
    assert resnet.learning_rate == pytest.approx(5e-3)
    assert resnet.l2 > 0
    with pytest.raises(ValueError, match="valid names"):
        default_hparams("resnet9000")


def test_hparams_reject_unknown_schedules_and_bad_values() -> None:
    with pytest.raises(ValueError, match="lr_schedule"):
        ModelHParams(lr_schedule="step")
    with pytest.raises(ValueError, match="label_smoothing"):
        ModelHParams(label_smoothing=1.0)
    with pytest.raises(ValueError, match="width_multiplier"):
        ModelHParams(width_multiplier=0.0)


def test_weight_decay_is_decoupled_in_the_optimizer() -> None:
    model = build_model(LENET5, CIFAR_SHAPE, NUM_CLASSES, _hparams(LENET5, weight_decay=5e-4))
    default = build_model(LENET5, CIFAR_SHAPE, NUM_CLASSES)

    assert model.optimizer.weight_decay == pytest.approx(5e-4)
    assert default.optimizer.weight_decay is None
