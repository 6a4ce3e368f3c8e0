"""`BudgetKeeper`: re-plans a time-budgeted training after every epoch, so it ends on time and annealed.

Why re-plan: the first plan (``run_fn.plan_budgeted_epochs``) comes from a few
seconds of measured steps, and a shared machine's speed drifts by tens of
percent over minutes (2-core VMs here ran one epoch in 59 s and the next in
88 s). After each epoch the keeper takes the median of the last epochs' real
durations (training and validation), fits the epochs that are left into what
is left of the budget, and moves the end of the one-cycle schedule
(``schedules.OneCycle.retarget``) so that the learning rate still reaches 0
at the last step trained. It stops ``fit`` when the planned epochs are done.

The exponential schedule needs no retargeting (it decays per epoch, not
towards an end); stock ``CosineDecay`` cannot be retargeted, so under it the
first plan stands.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import keras
from absl import logging

from trainer_module.callbacks import learning_rate_schedule
from trainer_module.schedules import OneCycle
from trainer_module.time_budget import TimeBudget

RECENT_EPOCHS = 3  # the epoch time estimate is the median of this many latest epochs
# Lengthening the plan needs this much of an epoch to spare, so timing noise
# does not make the plan (and the schedule's end) flip back and forth.
GROWTH_MARGIN_EPOCHS = 0.5


class BudgetKeeper(keras.callbacks.Callback):
    """Keeps a ``fit`` to the epochs that fit ``budget`` (counted from ``started_at``), re-planned every epoch.

    ``fit`` must be called with ``epochs=budget.max_epochs``: the keeper ends
    it earlier through ``stop_training``. ``replans`` records every change of
    plan for the training summary.
    """

    def __init__(
        self,
        budget: TimeBudget,
        *,
        started_at: float,
        steps_per_epoch: int,
        planned_epochs: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.budget = budget
        self.started_at = started_at
        self.steps_per_epoch = steps_per_epoch
        self.planned_epochs = planned_epochs
        self.clock = clock
        self.epoch_seconds: list[float] = []
        self.replans: list[dict[str, Any]] = []
        self._epoch_started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_started = self.clock()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        now = self.clock()
        self.epoch_seconds.append(now - self._epoch_started)
        done = epoch + 1
        per_epoch = statistics.median(self.epoch_seconds[-RECENT_EPOCHS:])
        left = self.budget.seconds_left(started_at=self.started_at, now=now)
        planned = self.replanned_epochs(done, per_epoch, left)
        if planned != self.planned_epochs:
            self._change_plan(done, planned, per_epoch, left)
        if done >= self.planned_epochs:
            self.model.stop_training = True

    def replanned_epochs(self, done: int, per_epoch: float, left: float) -> int:
        """The total epochs to train, ``done`` trained, epochs of ``per_epoch`` s, ``left`` s left for training."""
        more = math.floor(left / per_epoch) if left > 0 else 0
        if done + more > self.planned_epochs:  # lengthen only with time to spare
            more = max(math.floor((left - GROWTH_MARGIN_EPOCHS * per_epoch) / per_epoch), self.planned_epochs - done)
        return max(done, min(done + more, self.budget.max_epochs))

    def _change_plan(self, done: int, planned: int, per_epoch: float, left: float) -> None:
        schedule = learning_rate_schedule(self.model.optimizer)
        if isinstance(schedule, OneCycle):
            schedule.retarget(planned * self.steps_per_epoch)
        elif isinstance(schedule, keras.optimizers.schedules.CosineDecay):
            logging.info("time budget: would re-plan to %d epochs, but a cosine schedule cannot move its end", planned)
            return
        logging.info(
            "time budget: re-planned from %d to %d epochs after epoch %d (an epoch takes ~%.1f s, %.0f s of the budget left)",
            self.planned_epochs, planned, done, per_epoch, left + self.budget.reserve_seconds,
        )
        self.replans.append({"after_epoch": done, "from": self.planned_epochs, "to": planned, "epoch_seconds": round(per_epoch, 2)})
        self.planned_epochs = planned
