"""Keras callbacks every training run uses: LR schedule, extra epoch logs, a log line per epoch, TensorBoard.

The learning-rate schedule is ``hparams.lr_schedule`` (``trainer_module.schedules``):
``exponential`` is set once per epoch, ``one_cycle`` / ``cosine`` before every
training step.

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
from absl import logging

from trainer_module import schedules
from trainer_module.models import ModelHParams


def _decayed_learning_rate(epoch: int, current_lr: float, *, hparams: ModelHParams) -> float:
    """``learning_rate * lr_decay_rate ** epoch``.

    Computed from the epoch index alone (``current_lr`` is ignored), so a run
    resumed with ``initial_epoch`` lands on the same schedule as an unbroken one.
    """
    del current_lr
    return float(hparams.learning_rate * hparams.lr_decay_rate**epoch)


class StepLearningRateScheduler(keras.callbacks.Callback):
    """Sets the optimizer's learning rate before EVERY training step (one_cycle, cosine).

    The schedule spans ``epochs * steps_per_epoch`` steps. Either may be left
    None: it is then read from what ``fit`` reports (``self.params``), which
    works for arrays and datasets of known cardinality; a ``tf.data`` pipeline
    of unknown length (e.g. after ``unbatch``/``filter``) needs
    ``steps_per_epoch``. The step index is ``epoch * steps_per_epoch + batch``,
    so a run resumed with ``initial_epoch`` lands on the same schedule.

    At the end of each epoch the rate of the epoch's last step taken is put
    back: on a dataset of unknown length Keras announces one batch past the
    end (``on_train_batch_begin``, then the data runs out), which would
    otherwise leave the next epoch's first rate in the epoch's logs.
    """

    def __init__(
        self,
        hparams: ModelHParams,
        steps_per_epoch: int | None = None,
        epochs: int | None = None,
    ) -> None:
        super().__init__()
        self.hparams = hparams
        self.steps_per_epoch = steps_per_epoch
        self.epochs = epochs
        self.schedule: schedules.WarmupAnneal | None = None
        self._resolved_steps_per_epoch = 0
        self._epoch = 0
        self._rate: float | None = None  # set for the step about to run
        self._last_step_rate: float | None = None  # of the last step that ran

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        steps_per_epoch = self.steps_per_epoch or self.params.get("steps")
        epochs = self.epochs or self.params.get("epochs")
        if not steps_per_epoch or not epochs:
            raise ValueError(
                f"The {self.hparams.lr_schedule!r} learning-rate schedule needs the number "
                "of steps per epoch, and fit() cannot tell it for this dataset: pass "
                "steps_per_epoch= to training_callbacks()."
            )
        self._resolved_steps_per_epoch = steps_per_epoch
        self.schedule = schedules.per_step_schedule(self.hparams, steps_per_epoch * epochs)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        assert self.schedule is not None, "on_train_begin sets the schedule"
        step = self._epoch * self._resolved_steps_per_epoch + batch
        self._rate = float(keras.ops.convert_to_numpy(self.schedule(step)))
        self.model.optimizer.learning_rate = self._rate

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._last_step_rate = self._rate

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self._last_step_rate is not None:
            self.model.optimizer.learning_rate = self._last_step_rate


class EpochDiagnostics(keras.callbacks.Callback):
    """Adds ``learning_rate`` and ``regularization_loss`` to each epoch's logs.

    Why: the reported ``loss`` already includes the L2 penalty, so without the
    penalty on its own one cannot tell a falling data loss from shrinking
    weights; and the learning rate explains plateaus in the curves. Putting
    both in ``logs`` (rather than writing summaries here) lets History, the
    TensorBoard callback and any other logger pick them up unchanged. (Keras
    3's LearningRateScheduler and TensorBoard also log ``learning_rate``; this
    keeps it in the logs whichever callbacks a caller keeps.) The learning
    rate is the optimizer's current one: with a per-step schedule, the rate of
    the epoch's last step; with a ``LearningRateSchedule`` object inside the
    optimizer, the schedule's value at the optimizer's step count.
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


def _learning_rate_callback(
    hparams: ModelHParams, steps_per_epoch: int | None, epochs: int | None
) -> keras.callbacks.Callback:
    if hparams.lr_schedule == schedules.EXPONENTIAL:
        return keras.callbacks.LearningRateScheduler(
            functools.partial(_decayed_learning_rate, hparams=hparams)
        )
    return StepLearningRateScheduler(hparams, steps_per_epoch=steps_per_epoch, epochs=epochs)


def training_callbacks(
    log_dir: str,
    hparams: ModelHParams,
    *,
    steps_per_epoch: int | None = None,
    epochs: int | None = None,
) -> list[keras.callbacks.Callback]:
    """The callbacks to pass to ``model.fit``, in the order they must run.

    TensorBoard writes ``log_dir/train`` (and ``log_dir/validation`` when ``fit``
    has validation data) with ``epoch_<metric>`` scalars. ``steps_per_epoch``
    and ``epochs`` only matter to the per-step schedules (one_cycle, cosine),
    and only when ``fit`` cannot tell them (see ``StepLearningRateScheduler``);
    the exponential schedule ignores them.
    """
    _require_tensorboard()
    return [
        _learning_rate_callback(hparams, steps_per_epoch, epochs),
        EpochDiagnostics(),
        epoch_log_callback(),
        keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch"),
    ]


def epoch_log_callback() -> keras.callbacks.Callback:
    """One log record per epoch with its metrics (after EpochDiagnostics has added its two).

    Keras prints progress to stdout, which is the console, not the run log; on
    a terminal it is a progress bar that leaves nothing readable in a file.
    This keeps one line per epoch in the log whatever the console shows.
    """

    def log_epoch(epoch: int, logs: dict[str, Any] | None) -> None:
        metrics = " - ".join(f"{name}: {value:.4g}" for name, value in sorted((logs or {}).items()))
        logging.info("Epoch %d: %s", epoch + 1, metrics)

    return keras.callbacks.LambdaCallback(on_epoch_end=log_epoch)
