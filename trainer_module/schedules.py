"""Learning-rate schedules selectable with ``ModelHParams.lr_schedule``.

* ``exponential``: ``learning_rate * lr_decay_rate ** epoch``, set once per
  epoch (``callbacks._decayed_learning_rate``); the MNIST models' default.
* ``one_cycle``: per STEP, linear warm-up from 0 to ``learning_rate`` over the
  first ``lr_warmup_fraction`` of all steps, then linear decay to 0 at the last
  step: D. Page's DAWNBench ResNet-9 schedule (``PiecewiseLinear([0, 5, 24],
  [0, 0.4, 0])`` epochs, i.e. a 21 % warm-up).
* ``cosine``: the same warm-up, then half a cosine from ``learning_rate`` to 0.

The per-step schedules need the total number of steps, so they are built when
training starts (``callbacks.StepLearningRateScheduler``), not with the model.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import keras

if TYPE_CHECKING:
    from trainer_module.models import ModelHParams

EXPONENTIAL = "exponential"
ONE_CYCLE = "one_cycle"
COSINE = "cosine"
LR_SCHEDULES: tuple[str, ...] = (EXPONENTIAL, ONE_CYCLE, COSINE)
PER_STEP_SCHEDULES: tuple[str, ...] = (ONE_CYCLE, COSINE)

_ANNEALS = ("linear", "cosine")


@keras.saving.register_keras_serializable(package="visionpipe")
class WarmupAnneal(keras.optimizers.schedules.LearningRateSchedule):
    """``0 -> peak`` linearly over ``warmup_steps``, then ``peak -> 0`` at ``total_steps``.

    ``anneal`` is the shape of the way down: ``"linear"`` (one-cycle) or
    ``"cosine"``. Steps past ``total_steps`` stay at 0. A ``LearningRateSchedule``,
    so it can also be given to an optimizer directly.
    """

    def __init__(
        self,
        peak_learning_rate: float,
        total_steps: int,
        warmup_steps: int,
        anneal: str = "linear",
    ) -> None:
        if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
            raise ValueError(
                f"need 0 <= warmup_steps <= total_steps and total_steps >= 1, "
                f"got warmup_steps={warmup_steps}, total_steps={total_steps}"
            )
        if anneal not in _ANNEALS:
            raise ValueError(f"anneal must be one of {_ANNEALS}, got {anneal!r}")
        self.peak_learning_rate = peak_learning_rate
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.anneal = anneal

    def __call__(self, step: Any) -> Any:
        step = keras.ops.cast(step, "float32")
        warmup = keras.ops.cast(self.warmup_steps, "float32")
        warming = step / keras.ops.maximum(warmup, 1.0)
        progress = keras.ops.clip(
            (step - warmup) / max(self.total_steps - self.warmup_steps, 1), 0.0, 1.0
        )
        if self.anneal == "linear":
            annealing = 1.0 - progress
        else:
            annealing = 0.5 * (1.0 + keras.ops.cos(math.pi * progress))
        return self.peak_learning_rate * keras.ops.where(step < warmup, warming, annealing)

    def get_config(self) -> dict[str, Any]:
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "anneal": self.anneal,
        }


def per_step_schedule(hparams: ModelHParams, total_steps: int) -> WarmupAnneal:
    """The ``hparams.lr_schedule`` (``one_cycle`` or ``cosine``) over ``total_steps`` steps."""
    if hparams.lr_schedule not in PER_STEP_SCHEDULES:
        raise ValueError(
            f"{hparams.lr_schedule!r} is not a per-step schedule; one of {PER_STEP_SCHEDULES}"
        )
    return WarmupAnneal(
        peak_learning_rate=hparams.learning_rate,
        total_steps=total_steps,
        warmup_steps=round(hparams.lr_warmup_fraction * total_steps),
        anneal="linear" if hparams.lr_schedule == ONE_CYCLE else "cosine",
    )
