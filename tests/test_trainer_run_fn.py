"""run_fn's input pipeline: the train split keeps its length, so the schedule stays on its steps.

Stand-ins for TFX's data accessor and the transform output feed
already-transformed batches; the real ones run in the end-to-end tests.
"""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from trainer_module import callbacks, features, run_fn
from trainer_module.hparams import ONE_CYCLE, ModelHParams
from trainer_module.models import build_model

IMAGE_SHAPE = (28, 28, 1)
EXAMPLES, BATCH, EPOCHS = 10, 4, 3  # 3 steps per epoch, the last one short


class _DataAccessor:
    """TFX's DataAccessor as make_dataset uses it: raw examples in batches of the asked size."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self._examples = {features.TRANSFORMED_IMAGE_KEY: images, features.LABEL_KEY: labels}

    def tf_dataset_factory(self, file_pattern: list[str], options: object, schema: object) -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices(self._examples).batch(options.batch_size)


def _transform_output() -> object:
    """A TFTransformOutput whose transform passes the (already standardized) examples through."""
    return types.SimpleNamespace(
        raw_metadata=types.SimpleNamespace(schema=None),
        transform_features_layer=lambda: (lambda raw: raw),
    )


@pytest.fixture
def accessor() -> _DataAccessor:
    rng = np.random.default_rng(0)
    images = rng.standard_normal((EXAMPLES, *IMAGE_SHAPE)).astype("float32")
    return _DataAccessor(images, rng.integers(0, 10, size=EXAMPLES))


def test_the_counted_train_split_trains_exactly_its_steps_on_the_schedule(
    accessor: _DataAccessor, tmp_path: Path
) -> None:
    count = run_fn.count_examples(["train"], accessor, _transform_output())
    dataset = run_fn.make_dataset(["train"], accessor, _transform_output(), BATCH, True, example_count=count)
    steps_per_epoch = -(-count // BATCH)
    hparams = ModelHParams(learning_rate=0.01, lr_schedule=ONE_CYCLE, lr_warmup_fraction=0.0)
    model = build_model("tutorial_cnn", IMAGE_SHAPE, 10, hparams, steps_per_epoch=steps_per_epoch, epochs=EPOCHS)

    history = model.fit(
        dataset, epochs=EPOCHS, verbose=0, callbacks=callbacks.training_callbacks(str(tmp_path), hparams)
    )

    assert (count, int(dataset.cardinality())) == (EXAMPLES, steps_per_epoch)
    assert int(model.optimizer.iterations) == EPOCHS * steps_per_epoch
    # One-cycle without warm-up over 9 steps: epochs end on steps 2, 5 and 8.
    assert history.history["learning_rate"] == pytest.approx([0.01 * 7 / 9, 0.01 * 4 / 9, 0.01 / 9], rel=1e-6)


def test_a_wrong_count_fails_instead_of_training_on_a_shifted_schedule(accessor: _DataAccessor) -> None:
    dataset = run_fn.make_dataset(["train"], accessor, _transform_output(), BATCH, False, example_count=EXAMPLES + 1)

    with pytest.raises(tf.errors.FailedPreconditionError):
        list(dataset)
