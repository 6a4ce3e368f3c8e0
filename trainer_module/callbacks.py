"""Keras callbacks every training run uses: extra epoch logs, a log line per epoch, TensorBoard.

The learning-rate schedule is not among them: it is built into the optimizer
(``trainer_module.schedules``), and these callbacks only report it. The rate
reported for an epoch is the one its last step ran with (for the exponential
schedule, the epoch's rate), in the History, the run log and TensorBoard alike.

The order of the list matters. Keras calls ``on_epoch_end`` in list order on one
shared ``logs`` dict, so the callback that adds ``learning_rate`` and
``regularization_loss`` must come before TensorBoard writes the dict out; the
``History`` callback that ``fit`` appends after them records the additions too.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import keras
import tensorflow as tf
from absl import logging

from trainer_module.hparams import ModelHParams


def learning_rate_schedule(
    optimizer: keras.optimizers.Optimizer,
) -> keras.optimizers.schedules.LearningRateSchedule | None:
    """The schedule the optimizer was built with, or None for a constant rate.

    Keras keeps the schedule object only in the optimizer's private
    ``_learning_rate``; the public ``learning_rate`` is its value at the
    optimizer's step count, i.e. the rate of the NEXT step.
    """
    inner = getattr(optimizer, "inner_optimizer", optimizer)  # a LossScaleOptimizer wraps it
    schedule = getattr(inner, "_learning_rate", None)
    return schedule if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule) else None


def last_step_learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    """The learning rate the optimizer's most recent step ran with (its first step's before any).

    Read through ``convert_to_numpy``: under a tf.distribute strategy the
    optimizer's variables are MirroredVariables, which ``int()`` and
    ``float()`` refuse.
    """
    schedule = learning_rate_schedule(optimizer)
    if schedule is None:
        return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    last_step = max(int(keras.ops.convert_to_numpy(optimizer.iterations)) - 1, 0)
    return float(keras.ops.convert_to_numpy(schedule(last_step)))


class EpochDiagnostics(keras.callbacks.Callback):
    """Adds ``learning_rate`` and ``regularization_loss`` to each epoch's logs.

    Why: the reported ``loss`` already includes the L2 penalty, so without the
    penalty on its own one cannot tell a falling data loss from shrinking
    weights; and the learning rate explains plateaus in the curves. Putting
    both in ``logs`` (rather than writing summaries here) lets History, the
    TensorBoard callback and any other logger pick them up unchanged. The
    learning rate is the one the epoch's last step ran with
    (``last_step_learning_rate``).
    """

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is None:
            return
        logs["learning_rate"] = last_step_learning_rate(self.model.optimizer)
        logs["regularization_loss"] = float(
            sum(float(keras.ops.convert_to_numpy(loss)) for loss in self.model.losses)
        )


class _EpochLogsTensorBoard(keras.callbacks.TensorBoard):
    """Keras's TensorBoard callback, writing the ``learning_rate`` that is already in the logs.

    The stock callback overwrites ``learning_rate`` with the optimizer's
    ``learning_rate``, which for a schedule is the rate of the NEXT step (with
    exponential decay, the next epoch's). That would put a different figure in
    TensorBoard than in the History and the run log.
    """

    def _collect_learning_rate(self, logs: dict[str, Any]) -> dict[str, Any]:
        return logs if "learning_rate" in logs else super()._collect_learning_rate(logs)


class _RequireLearningRateSchedule(keras.callbacks.Callback):
    """Refuses to train a model whose optimizer lacks the schedule ``lr_schedule`` asks for.

    ``build_model`` can only build the schedule from the number of steps; a
    model built without it trains at a constant rate, a silently different run.
    """

    def __init__(self, lr_schedule: str) -> None:
        super().__init__()
        self.lr_schedule = lr_schedule

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if learning_rate_schedule(self.model.optimizer) is None:
            raise ValueError(
                f"The {self.lr_schedule!r} learning-rate schedule is built into the optimizer "
                "from the number of steps, and this model has none: build it with "
                "build_model(..., steps_per_epoch=..., epochs=...)."
            )


class EpochBackup(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore, keeping two backups and never failing a run over a broken one.

    A pre-empted pod or a killed run can die in the middle of writing the
    backup's weights file. With `double_checkpoint` Keras copies the previous
    backup aside before it writes the next one and falls back to it when the
    newest cannot be read (a kill during the write left it truncated; measured
    with `tests/test_trainer_backup.py`). If neither can be read, training
    starts again from epoch 0 with a warning instead of failing: a backup only
    saves time, it must never cost the run.
    """

    def __init__(self, backup_dir: str) -> None:
        super().__init__(backup_dir, double_checkpoint=True)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        try:
            super().on_train_begin(logs)
        except (OSError, ValueError) as error:
            logging.warning("Unreadable training backup in %s (%s); training from epoch 1", self.backup_dir, error)
            if tf.io.gfile.exists(self.backup_dir):  # gfile: the backup may be in a bucket
                tf.io.gfile.rmtree(self.backup_dir)


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


def training_callbacks(
    log_dir: str, hparams: ModelHParams, backup_dir: str | None = None
) -> list[keras.callbacks.Callback]:
    """The callbacks to pass to ``model.fit``, in the order they must run.

    TensorBoard writes ``log_dir/train`` (and ``log_dir/validation`` when ``fit``
    has validation data) with ``epoch_<metric>`` scalars. The model must have
    been built with its schedule (``build_model(..., steps_per_epoch=...,
    epochs=...)``): training stops before the first step otherwise.

    ``backup_dir``: Keras' ``BackupAndRestore`` (``EpochBackup``) saves the weights, the
    optimizer (its step count drives the learning-rate schedule) and the epoch
    there after every epoch; a ``fit`` that finds a backup continues after its
    epoch, and one that completes deletes it. It comes first, so the restored
    state is in place before any other callback looks at the model.
    """
    _require_tensorboard()
    backup = [EpochBackup(backup_dir)] if backup_dir else []
    return [
        *backup,
        _RequireLearningRateSchedule(hparams.lr_schedule),
        EpochDiagnostics(),
        epoch_log_callback(),
        _EpochLogsTensorBoard(log_dir=log_dir, update_freq="epoch"),
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
