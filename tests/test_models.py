"""Tests for trainer_module.models (the zoo and its MNIST-size networks), .callbacks and .accelerator.

Real 28x28x1 / 32x32x3 shapes, but only a handful of random standardized images
and one or two steps: these check wiring and contracts, not learning.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainer_module import accelerator, models
from trainer_module.callbacks import EpochDiagnostics, training_callbacks
from trainer_module.hparams import ModelHParams, default_hparams
from trainer_module.model_names import MODEL_NAMES
from trainer_module.models import build_model, mnist_models

NUM_CLASSES = 10
BATCH = 4
MNIST_SHAPE = (28, 28, 1)
CIFAR_SHAPE = (32, 32, 3)
# deep_cnn must stay cheap enough to train a Fashion-MNIST epoch on a few CPU cores.
DEEP_CNN_MAC_BUDGET = 25_000_000


def _batch(shape: tuple[int, int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Standardized-looking images (zero mean, unit variance) and integer labels."""
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((BATCH, *shape)).astype("float32")
    labels = rng.integers(0, NUM_CLASSES, size=BATCH)
    return images, labels


def _digit_like_batch() -> np.ndarray:
    """A standardized 'bright square on dark background' image, as Transform emits.

    Background is well below zero and the object above one, the way Fashion-MNIST
    looks after per-channel standardization (about -0.8 .. 2.0).
    """
    images = np.full((BATCH, *MNIST_SHAPE), -0.8, dtype="float32")
    images[:, 8:20, 8:20, :] = 2.0
    return images


def _macs(model: keras.Model) -> int:
    """Multiply-accumulates per image of the model's Conv2D and Dense layers."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, height, width, filters = layer.output.shape
            kernel_h, kernel_w = layer.kernel_size
            total += height * width * filters * kernel_h * kernel_w * layer.input.shape[-1]
        elif isinstance(layer, keras.layers.Dense):
            total += layer.input.shape[-1] * layer.units
    return total


def _scalar_summaries(event_dir: Path) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} of every scalar summary in the event files of a dir."""
    scalars: dict[str, dict[int, float]] = {}
    for event_file in event_dir.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "scalars":
                    scalars.setdefault(value.tag, {})[event.step] = float(
                        tf.make_ndarray(value.tensor)
                    )
    return scalars


@pytest.fixture
def restore_dtype_policy() -> Iterator[None]:
    """Mixed precision is process-global: put back whatever policy was active."""
    policy = keras.mixed_precision.global_policy()
    yield
    keras.mixed_precision.set_global_policy(policy)
    assert keras.mixed_precision.global_policy().name == policy.name


# --- models -------------------------------------------------------------------


@pytest.mark.parametrize("input_shape", [MNIST_SHAPE, CIFAR_SHAPE])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_trains_one_step_and_outputs_probabilities(
    name: str, input_shape: tuple[int, int, int]
) -> None:
    model = build_model(name, input_shape, NUM_CLASSES)
    images, labels = _batch(input_shape)

    history = model.fit(images, labels, batch_size=BATCH, epochs=1, verbose=0)
    probabilities = model.predict(images, verbose=0)

    assert model.inputs[0].name == "image_xf"
    assert np.isfinite(history.history["loss"][0])
    assert "accuracy" in history.history
    assert probabilities.shape == (BATCH, NUM_CLASSES)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_build_model_compiles_with_hparams() -> None:
    hparams = ModelHParams(learning_rate=0.01, adam_beta1=0.5)

    model = build_model("tutorial_cnn", MNIST_SHAPE, NUM_CLASSES, hparams)

    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
    assert model.optimizer.beta_1 == 0.5
    assert isinstance(model.loss, keras.losses.SparseCategoricalCrossentropy)


def test_unknown_model_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="tutorial_cnn, deep_cnn"):
        build_model("resnet9000", MNIST_SHAPE, NUM_CLASSES)


def test_tutorial_cnn_matches_the_estimator_network() -> None:
    model = build_model("tutorial_cnn", MNIST_SHAPE, NUM_CLASSES)

    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers}

    assert shapes["conv1"] == (28, 28, 32)
    assert shapes["pool2"] == (7, 7, 64)
    assert shapes["dense"] == (1024,)
    assert model.get_layer("dropout").rate == 0.4
    assert _macs(model) == 13_883_904
    assert "13,883,904" in mnist_models.__doc__


def test_deep_cnn_fits_the_cpu_compute_budget() -> None:
    model = build_model("deep_cnn", MNIST_SHAPE, NUM_CLASSES)

    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]

    assert len(convs) == 6
    assert all(conv.kernel_size == (3, 3) for conv in convs)
    assert _macs(model) == 23_709_440
    assert "23,709,440" in mnist_models.__doc__
    strides = [conv.strides for conv in convs]
    assert strides.count((2, 2)) == 1 and any(
        isinstance(layer, keras.layers.MaxPooling2D) for layer in model.layers
    )
    assert _macs(model) <= DEEP_CNN_MAC_BUDGET
    assert len(model.losses) == 7  # L2 on six conv kernels and the output kernel


@pytest.mark.parametrize(
    "width_multiplier, channels, macs",
    [
        # output pixels x 3x3 x in x out per conv, summed by hand, + GAP -> 10 dense
        (1.5, [48, 48, 96, 96, 192, 192], 53_175_936),
        (0.5, [16, 16, 32, 32, 64, 64], 5_984_128),
    ],
)
def test_deep_cnn_width_multiplier_scales_every_stage(
    width_multiplier: float, channels: list[int], macs: int
) -> None:
    hparams = dataclasses.replace(default_hparams("deep_cnn"), width_multiplier=width_multiplier)
    model = build_model("deep_cnn", MNIST_SHAPE, NUM_CLASSES, hparams)

    assert [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)] == channels
    assert _macs(model) == macs
    assert f"{macs:,}" in mnist_models.__doc__


def test_ema_momentum_leaves_the_moving_average_of_the_weights_after_fit() -> None:
    momentum = 0.5
    hparams = dataclasses.replace(default_hparams("deep_cnn"), ema_momentum=momentum, augment=False)
    model = build_model("deep_cnn", MNIST_SHAPE, NUM_CLASSES, hparams)
    kernel = next(layer for layer in model.layers if isinstance(layer, keras.layers.Dense)).kernel
    after_each_step: list[np.ndarray] = []  # the raw weights: EMA replaces them only when fit ends
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: after_each_step.append(keras.ops.convert_to_numpy(kernel))
    )
    images = np.random.default_rng(0).normal(size=(4 * BATCH, *MNIST_SHAPE)).astype("float32")
    labels = np.arange(4 * BATCH) % NUM_CLASSES

    model.fit(images, labels, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[record])

    expected = after_each_step[0]
    for weights in after_each_step[1:]:
        expected = momentum * expected + (1.0 - momentum) * weights
    assert len(after_each_step) == 4
    np.testing.assert_allclose(keras.ops.convert_to_numpy(kernel), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(expected, after_each_step[-1])
    assert not build_model("deep_cnn", MNIST_SHAPE, NUM_CLASSES).optimizer.use_ema
    with pytest.raises(ValueError, match="ema_momentum"):
        ModelHParams(ema_momentum=1.0)


def test_without_augmentation_also_drops_mirror_averaging() -> None:
    hparams = ModelHParams(augmentation="flip_shift", test_time_flip=True, learning_rate=3e-3)

    assert hparams.without_augmentation() == dataclasses.replace(hparams, augment=False, test_time_flip=False)


def test_augmentation_is_identity_at_inference() -> None:
    augmentation = build_model("deep_cnn", MNIST_SHAPE, NUM_CLASSES).get_layer("augmentation")
    images = _digit_like_batch()

    np.testing.assert_array_equal(keras.ops.convert_to_numpy(augmentation(images)), images)


def test_augmentation_in_training_keeps_standardized_values() -> None:
    augmentation = build_model("deep_cnn", MNIST_SHAPE, NUM_CLASSES).get_layer("augmentation")
    images = _digit_like_batch()

    augmented = keras.ops.convert_to_numpy(augmentation(images, training=True))

    assert augmented.shape == images.shape
    assert np.isfinite(augmented).all()
    assert not np.allclose(augmented, images)
    # Clipping to [0, 1] or [0, 255] would wipe out the negative background.
    assert (augmented < -0.3).mean() > 0.5
    assert augmented.max() > 1.5
    np.testing.assert_allclose(augmented.mean(), images.mean(), atol=0.5)


def test_deep_cnn_direct_call_is_inference_and_augmentation_optional() -> None:
    """A serving signature calls ``model(images)`` with no training flag."""
    model = build_model("deep_cnn", MNIST_SHAPE, NUM_CLASSES)
    plain = build_model("deep_cnn", MNIST_SHAPE, NUM_CLASSES, ModelHParams(augment=False))
    images, _ = _batch(MNIST_SHAPE)

    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model(images)), model.predict(images, verbose=0)
    )
    assert "augmentation" not in [layer.name for layer in plain.layers]


def test_deep_cnn_survives_keras_save_and_load(tmp_path: Path) -> None:
    model = build_model("deep_cnn", MNIST_SHAPE, NUM_CLASSES)
    images, _ = _batch(MNIST_SHAPE)
    path = tmp_path / "deep_cnn.keras"

    model.save(path)
    restored = keras.models.load_model(path, compile=False)

    np.testing.assert_allclose(
        restored.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6
    )


@pytest.mark.usefixtures("restore_dtype_policy")
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_trains_under_mixed_precision(name: str) -> None:
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = build_model(name, MNIST_SHAPE, NUM_CLASSES)
    images, labels = _batch(MNIST_SHAPE)

    history = model.fit(images, labels, batch_size=BATCH, epochs=1, verbose=0)
    probabilities = model.predict(images, verbose=0)

    assert any(layer.compute_dtype == "float16" for layer in model.layers)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert np.isfinite(history.history["loss"][0])
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-3)


# --- callbacks ----------------------------------------------------------------


def test_training_callbacks_decay_lr_and_log_to_tensorboard(tmp_path: Path) -> None:
    """The epoch's own rate in History and TensorBoard, not the next epoch's that the optimizer holds."""
    hparams = ModelHParams(learning_rate=0.01, lr_decay_rate=0.5)
    model = build_model("deep_cnn", MNIST_SHAPE, NUM_CLASSES, hparams, steps_per_epoch=1, epochs=2)
    images, labels = _batch(MNIST_SHAPE)

    history = model.fit(
        images,
        labels,
        batch_size=BATCH,
        epochs=2,
        verbose=0,
        callbacks=training_callbacks(str(tmp_path), hparams),
    )
    scalars = _scalar_summaries(tmp_path / "train")

    assert history.history["learning_rate"] == pytest.approx([0.01, 0.01 * 0.5])
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01 * 0.5**2)  # the next step's
    assert all(loss > 0 for loss in history.history["regularization_loss"])
    assert {
        "epoch_loss",
        "epoch_accuracy",
        "epoch_learning_rate",
        "epoch_regularization_loss",
    } <= scalars.keys()
    assert scalars["epoch_learning_rate"] == pytest.approx({0: 0.01, 1: 0.005})
    assert scalars["epoch_regularization_loss"] == pytest.approx(
        dict(enumerate(history.history["regularization_loss"])), rel=1e-6
    )


def test_training_callbacks_refuse_a_model_built_without_its_schedule(tmp_path: Path) -> None:
    """Without the step count the optimizer has a constant rate: a silently different run."""
    hparams = ModelHParams()
    model = build_model("tutorial_cnn", MNIST_SHAPE, NUM_CLASSES, hparams)
    images, labels = _batch(MNIST_SHAPE)

    with pytest.raises(ValueError, match="steps_per_epoch"):
        model.fit(images, labels, epochs=1, verbose=0, callbacks=training_callbacks(str(tmp_path), hparams))
    assert int(model.optimizer.iterations) == 0


def test_epoch_diagnostics_reports_zero_regularization_without_penalties() -> None:
    diagnostics = EpochDiagnostics()
    diagnostics.set_model(build_model("tutorial_cnn", MNIST_SHAPE, NUM_CLASSES))
    logs: dict[str, float] = {"loss": 1.0}

    diagnostics.on_epoch_end(0, logs)

    assert logs == {"loss": 1.0, "learning_rate": pytest.approx(1e-3), "regularization_loss": 0.0}


# --- accelerator --------------------------------------------------------------

FAKE_GPUS = [
    tf.config.PhysicalDevice(name=f"/physical_device:GPU:{index}", device_type="GPU")
    for index in range(2)
]


def _pretend_gpus(monkeypatch: pytest.MonkeyPatch, gpus: list) -> dict[str, bool]:
    """Makes TF report `gpus`; returns the memory-growth settings it receives.

    TF rejects PhysicalDevice objects it did not enumerate itself, so the two
    per-device calls are faked along with the device listing.
    """
    real_list = tf.config.list_physical_devices
    memory_growth: dict[str, bool] = {}

    def list_physical_devices(device_type: str | None = None) -> list:
        return list(gpus) if device_type == "GPU" else real_list(device_type)

    def set_memory_growth(device: tf.config.PhysicalDevice, enable: bool) -> None:
        memory_growth[device.name] = enable

    monkeypatch.setattr(tf.config, "list_physical_devices", list_physical_devices)
    monkeypatch.setattr(tf.config.experimental, "set_memory_growth", set_memory_growth)
    monkeypatch.setattr(
        tf.config.experimental,
        "get_device_details",
        lambda device: {"device_name": "NVIDIA Fake H100", "compute_capability": (9, 0)},
    )
    return memory_growth


@pytest.mark.usefixtures("restore_dtype_policy")
def test_configure_accelerator_on_gpus_enables_growth_and_mixed_precision(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    memory_growth = _pretend_gpus(monkeypatch, FAKE_GPUS)

    description = accelerator.configure_accelerator()

    assert description == "GPU x2 (NVIDIA Fake H100, mixed_float16)"
    assert keras.mixed_precision.global_policy().name == "mixed_float16"
    assert memory_growth == {gpu.name: True for gpu in FAKE_GPUS}


@pytest.mark.usefixtures("restore_dtype_policy")
def test_configure_accelerator_survives_initialized_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    _pretend_gpus(monkeypatch, FAKE_GPUS[:1])

    def already_initialized(device: tf.config.PhysicalDevice, enable: bool) -> None:
        raise RuntimeError("Physical devices cannot be modified after being initialized")

    monkeypatch.setattr(tf.config.experimental, "set_memory_growth", already_initialized)

    assert accelerator.configure_accelerator() == "GPU x1 (NVIDIA Fake H100, mixed_float16)"
    assert keras.mixed_precision.global_policy().name == "mixed_float16"


def _cpu_info(tmp_path: Path, flags: str) -> str:
    """A /proc/cpuinfo of two cores with these flags."""
    path = tmp_path / "cpuinfo"
    path.write_text("".join(f"processor\t: {n}\nmodel name\t: Some CPU\nflags\t\t: {flags}\n\n" for n in range(2)))
    return str(path)


@pytest.mark.usefixtures("restore_dtype_policy")
def test_configure_accelerator_on_cpu_without_bf16_uses_float32(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _pretend_gpus(monkeypatch, [])
    keras.mixed_precision.set_global_policy("mixed_float16")

    assert accelerator.configure_accelerator(cpu_info_path=_cpu_info(tmp_path, "fpu sse2 avx2 avx512f")) == "CPU (float32)"
    assert keras.mixed_precision.global_policy().name == "float32"


@pytest.mark.usefixtures("restore_dtype_policy")
@pytest.mark.parametrize("flag", ["avx512_bf16", "amx_bf16"])
def test_configure_accelerator_on_a_bf16_cpu_uses_mixed_bfloat16(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, flag: str
) -> None:
    _pretend_gpus(monkeypatch, [])
    cpu_info = _cpu_info(tmp_path, f"fpu avx512f {flag} avx512_vnni")

    assert accelerator.configure_accelerator(cpu_info_path=cpu_info) == f"CPU (mixed_bfloat16, {flag})"
    assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    # --precision float32 keeps float32 on the same CPU.
    assert accelerator.configure_accelerator("float32", cpu_info_path=cpu_info) == "CPU (float32)"
    assert keras.mixed_precision.global_policy().name == "float32"


@pytest.mark.usefixtures("restore_dtype_policy")
def test_configure_accelerator_float32_on_gpus_and_unknown_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    _pretend_gpus(monkeypatch, FAKE_GPUS[:1])
    assert accelerator.configure_accelerator("float32") == "GPU x1 (NVIDIA Fake H100, float32)"
    assert keras.mixed_precision.global_policy().name == "float32"
    with pytest.raises(ValueError, match="precision must be one of"):
        accelerator.configure_accelerator("bfloat16")


def test_no_cpu_info_means_no_bf16(tmp_path: Path) -> None:
    assert accelerator.cpu_bf16_flag(str(tmp_path / "missing")) is None


@pytest.mark.usefixtures("restore_dtype_policy")
def test_float32_twin_serves_a_bf16_trained_model_in_float32() -> None:
    """The export's copy: float32 compute, the trained weights, the bf16 model's predictions up to bf16 rounding."""
    hparams = dataclasses.replace(default_hparams("deep_cnn"), augmentation="flip_shift")
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    trained = models.build_model("deep_cnn", (28, 28, 1), 10, hparams, steps_per_epoch=2, epochs=1)
    rng = np.random.default_rng(0)
    images, labels = rng.standard_normal((64, 28, 28, 1)).astype(np.float32), rng.integers(0, 10, 64)
    trained.fit(images, labels, batch_size=32, epochs=1, verbose=0)

    twin = accelerator.float32_twin(trained, lambda: models.build_model("deep_cnn", (28, 28, 1), 10, hparams))

    assert twin is not trained
    assert {layer.compute_dtype for layer in twin.layers} == {"float32"}
    for ours, theirs in zip(twin.get_weights(), trained.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    bf16, fp32 = trained.predict(images, verbose=0), twin.predict(images, verbose=0)
    assert fp32.dtype == np.float32
    np.testing.assert_allclose(fp32, bf16, atol=0.02)  # bfloat16 keeps 8 significant bits
    assert not np.array_equal(fp32, bf16)  # it did compute in another precision
    assert accelerator.float32_twin(twin, lambda: pytest.fail("a float32 model is not rebuilt")) is twin


@pytest.mark.parametrize(
    "policy, layer_types",
    [
        ("seed", {"RandomRotation", "RandomTranslation", "RandomStandardizedJitter", "GaussianNoise"}),
        ("flip_shift", {"RandomFlip", "RandomTranslation"}),
    ],
)
def test_deep_cnn_augmentation_policies(policy: str, layer_types: set[str]) -> None:
    hparams = ModelHParams(augmentation=policy)
    augmentation = build_model("deep_cnn", MNIST_SHAPE, NUM_CLASSES, hparams).get_layer("augmentation")
    assert {type(layer).__name__ for layer in augmentation.layers} == layer_types


def test_unknown_augmentation_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="augmentation must be one of"):
        ModelHParams(augmentation="mixup")
