"""The learning-rate schedule the optimizer is built with, chosen by ``ModelHParams.lr_schedule``.

The schedule is a ``keras.optimizers.schedules.LearningRateSchedule`` given to
the optimizer when the model is built (``models.build_model``), not a callback
that sets the rate during training. The Trainer knows the number of steps
before it builds the model (``run_fn`` counts the train split), and an
optimizer that owns its schedule evaluates it inside the compiled train step.
That needs no Python per step, and no callback has to be kept in step with the
optimizer.

* ``exponential``: ``learning_rate * lr_decay_rate ** epoch``, one step down
  per epoch: stock ``ExponentialDecay`` with ``decay_steps=steps_per_epoch``
  and ``staircase=True``. The MNIST models' default.
* ``one_cycle``: linear warm-up from 0 to ``learning_rate`` over the first
  ``lr_warmup_fraction`` of all steps, then linear decay to 0 at the last
  step: D. Page's DAWNBench ResNet-9 schedule (``PiecewiseLinear([0, 5, 24],
  [0, 0.4, 0])`` epochs, i.e. a 21 % warm-up). ``OneCycle`` below.
* ``cosine``: the same warm-up, then half a cosine from ``learning_rate`` to 0:
  stock ``CosineDecay`` with ``warmup_target``.

The step a schedule is evaluated at is the optimizer's ``iterations``: a run
resumed from a checkpoint that restores the optimizer continues its schedule,
but a fresh optimizer starts it again. Under mixed precision the
``LossScaleOptimizer`` does not count a step it skips for non-finite
gradients, so the schedule follows the steps actually applied.
"""

from __future__ import annotations

from typing import Any

import keras

from trainer_module.hparams import COSINE, EXPONENTIAL, ModelHParams


@keras.saving.register_keras_serializable(package="visionpipe")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """``0 -> peak`` linearly over ``warmup_steps``, then ``peak -> 0`` linearly at ``total_steps``.

    Steps past ``total_steps`` stay at 0. Hand-written because no stock Keras
    schedule decays linearly after a warm-up: ``CosineDecay``'s warm-up can only
    be followed by a cosine, ``PolynomialDecay`` (power 1 would be the linear
    decay) has no warm-up, and Keras offers no way to chain two schedules.
    """

    def __init__(self, peak_learning_rate: float, total_steps: int, warmup_steps: int) -> None:
        _check_steps(total_steps, warmup_steps)
        self.peak_learning_rate = peak_learning_rate
        # Variables, not constants baked into the traced train step: a time
        # budget re-plans the run's length while it trains (``retarget``).
        self._total_steps = keras.Variable(float(total_steps), trainable=False, name="one_cycle_total_steps")
        self._warmup_steps = keras.Variable(float(warmup_steps), trainable=False, name="one_cycle_warmup_steps")

    @property
    def total_steps(self) -> int:
        return round(float(keras.ops.convert_to_numpy(self._total_steps)))

    @property
    def warmup_steps(self) -> int:
        return round(float(keras.ops.convert_to_numpy(self._warmup_steps)))

    def retarget(self, total_steps: int, warmup_steps: int | None = None) -> None:
        """Makes the cycle end at ``total_steps`` instead: the rate follows the new end from the next step on.

        For a time budget whose epoch count is re-planned during training
        (``budget_keeper.BudgetKeeper``): the decay then still reaches 0 at the
        last step actually trained. The warm-up keeps its length (a re-plan
        after it must not send the rate back up the ramp) unless the new run
        is shorter than it, or ``warmup_steps`` gives a new one: the keeper's
        first plan, made a few steps into a cycle built for a provisional
        length, gives the warm-up its share of the planned run.
        """
        warmup_steps = min(self.warmup_steps if warmup_steps is None else warmup_steps, total_steps)
        _check_steps(total_steps, warmup_steps)
        self._total_steps.assign(float(total_steps))
        self._warmup_steps.assign(float(warmup_steps))

    def __call__(self, step: Any) -> Any:
        step = keras.ops.cast(step, "float32")
        warmup = keras.ops.convert_to_tensor(self._warmup_steps)
        total = keras.ops.convert_to_tensor(self._total_steps)
        rising = step / keras.ops.maximum(warmup, 1.0)
        falling = 1.0 - keras.ops.clip((step - warmup) / keras.ops.maximum(total - warmup, 1.0), 0.0, 1.0)
        return self.peak_learning_rate * keras.ops.where(step < warmup, rising, falling)

    def get_config(self) -> dict[str, Any]:
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
        }


def _check_steps(total_steps: int, warmup_steps: int) -> None:
    if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
        raise ValueError(
            f"need 0 <= warmup_steps <= total_steps and total_steps >= 1, "
            f"got warmup_steps={warmup_steps}, total_steps={total_steps}"
        )


def learning_rate(
    hparams: ModelHParams, steps_per_epoch: int | None = None, epochs: int | None = None
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """What to give the optimizer as ``learning_rate`` for ``hparams.lr_schedule``.

    Without ``steps_per_epoch`` it is the constant ``hparams.learning_rate``, for
    a model that is built to be exported, timed or inspected rather than trained
    on its schedule (``callbacks.training_callbacks`` refuses to train such a
    model). ``epochs`` is needed too for ``one_cycle`` and ``cosine``, which span
    the whole run.
    """
    if steps_per_epoch is None:
        return hparams.learning_rate
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    if hparams.lr_schedule == EXPONENTIAL:
        return keras.optimizers.schedules.ExponentialDecay(
            hparams.learning_rate,
            decay_steps=steps_per_epoch,
            decay_rate=hparams.lr_decay_rate,
            staircase=True,
        )
    if epochs is None or epochs < 1:
        raise ValueError(
            f"The {hparams.lr_schedule!r} learning-rate schedule spans the whole run: "
            f"pass epochs (>= 1) along with steps_per_epoch, got epochs={epochs}"
        )
    total_steps = steps_per_epoch * epochs
    warmup_steps = round(hparams.lr_warmup_fraction * total_steps)
    if hparams.lr_schedule == COSINE:
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0,
            # At least 1: an all-warm-up run (fraction 1.0) would divide 0 by 0 at its end.
            decay_steps=max(total_steps - warmup_steps, 1),
            warmup_target=hparams.learning_rate,
            warmup_steps=warmup_steps,
        )
    return OneCycle(hparams.learning_rate, total_steps=total_steps, warmup_steps=warmup_steps)
