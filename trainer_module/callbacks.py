"""Keras callbacks every training run uses: LR schedule, extra epoch logs, TensorBoard.

The order of the list matters. Keras calls ``on_epoch_end`` in list order on one
shared ``logs`` dict, so the callback that adds ``learning_rate`` and
``regularization_loss`` must come before TensorBoard writes the dict out; the
``History`` callback that ``fit`` appends after them records the additions too.
"""

from __future__ import annotations

import functools
import importlib.util
from typing import Any

import keras

from trainer_module.models import ModelHParams


def _decayed_learning_rate(epoch: int, current_lr: float, *, hparams: ModelHParams) -> float:
    """``learning_rate * lr_decay_rate ** epoch``.

    Computed from the epoch index alone (``current_lr`` is ignored), so a run
    resumed with ``initial_epoch`` lands on the same schedule as an unbroken one.
    """
    del current_lr
    return float(hparams.learning_rate * hparams.lr_decay_rate**epoch)


class EpochDiagnostics(keras.callbacks.Callback):
    """Adds ``learning_rate`` and ``regularization_loss`` to each epoch's logs.

    Why: the reported ``loss`` already includes the L2 penalty, so without the
    penalty on its own one cannot tell a falling data loss from shrinking
    weights; and the learning rate explains plateaus in the curves. Putting
    both in ``logs`` (rather than writing summaries here) lets History, the
    TensorBoard callback and any other logger pick them up unchanged. (Keras
    3's LearningRateScheduler and TensorBoard also log ``learning_rate``; this
    keeps it in the logs whichever callbacks a caller keeps.)
    """

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is None:
            return
        logs["learning_rate"] = float(
            keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
        )
        logs["regularization_loss"] = float(
            sum(float(keras.ops.convert_to_numpy(loss)) for loss in self.model.losses)
        )


def _require_tensorboard() -> None:
    """Fails before training instead of at the end of the first epoch.

    TensorFlow 2.21 does not depend on the ``tensorboard`` package, and without
    it ``tf.summary.scalar`` only raises when first called, i.e. when the
    TensorBoard callback logs epoch 1 (possibly hours into a run).
    """
    if importlib.util.find_spec("tensorboard") is None:
        raise ModuleNotFoundError(
            "keras.callbacks.TensorBoard needs the `tensorboard` package, which "
            "TensorFlow 2.21 does not install; add it to the dependencies."
        )


def training_callbacks(log_dir: str, hparams: ModelHParams) -> list[keras.callbacks.Callback]:
    """The callbacks to pass to ``model.fit``, in the order they must run.

    TensorBoard writes ``log_dir/train`` (and ``log_dir/validation`` when ``fit``
    has validation data) with ``epoch_<metric>`` scalars.
    """
    _require_tensorboard()
    return [
        keras.callbacks.LearningRateScheduler(
            functools.partial(_decayed_learning_rate, hparams=hparams)
        ),
        EpochDiagnostics(),
        keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch"),
    ]
