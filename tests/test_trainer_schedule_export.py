"""A model trained with its learning-rate schedule inside the optimizer still exports and serves.

The serving export must load in a TF1 session (the TF Serving C++ loader's
path, `tf.compat.v1.saved_model.loader.load`). The other export tests train
models built without a step count, i.e. with a constant rate; these build them
as run_fn does, so the optimizer holds a stock or a visionpipe schedule.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from components.example_gen.image_examples import encode_png, make_example
from tests import serving_helpers
from trainer_module import callbacks, serving, signatures
from trainer_module.hparams import COSINE, EXPONENTIAL, default_hparams
from trainer_module.models import build_model

IMAGE_SHAPE = (28, 28, 1)
BATCH = 20


@pytest.fixture(scope="module")
def transform_output(tmp_path_factory):
    images, labels = serving_helpers.synthetic_images(40, seed=5, image_shape=IMAGE_SHAPE)
    transform_dir = serving_helpers.write_transform_output(
        str(tmp_path_factory.mktemp("tft")), images, labels, IMAGE_SHAPE
    )
    return images, labels, transform_dir


@pytest.mark.parametrize(
    ("name", "lr_schedule"),
    [("deep_cnn", EXPONENTIAL), ("deep_cnn", None), ("lenet5", COSINE)],  # deep_cnn's default: one_cycle
    ids=["exponential", "one_cycle", "cosine"],
)
def test_scheduled_model_exports_and_runs_in_a_tf1_session(
    name: str, lr_schedule: str | None, transform_output, tmp_path
) -> None:
    images, labels, transform_dir = transform_output
    hparams = default_hparams(name)
    if lr_schedule is not None:
        hparams = dataclasses.replace(hparams, lr_schedule=lr_schedule)
    steps_per_epoch = len(images) // BATCH
    model = build_model(
        name, IMAGE_SHAPE, len(serving_helpers.CLASS_NAMES), hparams, steps_per_epoch=steps_per_epoch, epochs=2
    )
    x = serving_helpers.transformed_images(transform_dir, images, labels)
    model.fit(
        x,
        np.asarray(labels, dtype=np.int64),
        batch_size=BATCH,
        epochs=2,
        verbose=0,
        callbacks=callbacks.training_callbacks(str(tmp_path / "logs"), hparams),
    )
    export_dir = str(tmp_path / "export")
    serving.export_serving_model(
        model, tft.TFTransformOutput(transform_dir), serving_helpers.CLASS_NAMES, IMAGE_SHAPE, export_dir
    )
    serialized = [
        make_example(encode_png(image), 0, f"x-{i}", "0").SerializeToString() for i, image in enumerate(images[:4])
    ]

    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], export_dir)
        signature = meta_graph.signature_def[signatures.EXAMPLE_SIGNATURE]
        probabilities = session.run(
            signature.outputs[signatures.PROBABILITIES].name,
            {signature.inputs[signatures.EXAMPLE_INPUT].name: serialized},
        )

    assert isinstance(model.optimizer._learning_rate, keras.optimizers.schedules.LearningRateSchedule)
    assert int(model.optimizer.iterations) == 2 * steps_per_epoch
    np.testing.assert_allclose(probabilities, model.predict(x[:4], verbose=0), atol=1e-5)
