"""`BudgetKeeper`: plans a time-budgeted training from its first steps and re-plans it after every epoch.

Why plan inside ``fit``: timing a throwaway copy of the model before
training (``trainer_module.calibration``) cost 6-9 s of every budgeted run
and still missed the real step time by up to 50 % (short ``fit`` calls carry
their own overhead). So for the one-cycle and exponential schedules the
model is built for the budget's ``max_epochs`` and the keeper times the real
training steps (``FIRST_PLAN_TIMED_STEPS`` of them, after
``FIRST_PLAN_SKIPPED_STEPS`` that trace and warm up): from them it plans the
epochs that fit and moves the one-cycle's end (``schedules.OneCycle.retarget``),
warm-up included, to the planned length, a few dozen steps into a run of
thousands. An epoch shorter than that (a small dataset) is planned at its end.

Why re-plan: a shared machine's speed drifts by tens of percent over
minutes (2-core VMs here ran one epoch in 48 s and the next in 82 s). After
each epoch the keeper takes the median of the last epochs' real durations
(training and validation), fits the epochs that are left into what is left
of the budget, and moves the end of the one-cycle schedule so that the
learning rate still reaches 0 at the last step trained. It stops ``fit``
when the planned epochs are done.

Why a short first plan switches augmentation off: in a budget of one or two
epochs (the fast profile's on 2 cores) the network under-fits, and random
flips and shifts cost more than they give (README, Benchmark: 88.45 %
without against 87.1 % with them after one epoch of deep_cnn). The switch
is made at the first plan, because only then is the budget's epoch count
known; later re-plans leave it as it is. A network trained without flips
gains nothing from averaging with mirror images, so the export then leaves
mirror averaging out (``augmentation_off``, read by trainer_module.run_fn).

Why the last epoch may be partial: whole epochs waste up to an epoch of the
budget (the fast profile's 3 minutes on 2 cores held one epoch of 67 s and
ended 38 s early). So the keeper plans training steps, not epochs: whole
epochs, then as many steps of one more as the time they leave holds with its
validation pass (``time_budget.fitting_steps``), and stops ``fit`` at the
planned step; the one-cycle ends there, at rate 0. This needs the validation
pass's share of an epoch, which the keeper knows when it makes the first plan
itself (``eval_steps``); a plan made before ``fit`` stays in whole epochs.

The exponential schedule needs no retargeting (it decays per epoch, not
towards an end); stock ``CosineDecay`` cannot be retargeted, so under it the
Trainer plans before ``fit`` from the calibration and that first plan stands.
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
from trainer_module.models.layers import Augmentation
from trainer_module.schedules import OneCycle
from trainer_module.time_budget import TimeBudget, fitting_steps, plan_epochs_of

RECENT_EPOCHS = 3  # the epoch time estimate is the median of this many latest epochs
# Lengthening the plan needs this much of an epoch to spare, so timing noise
# does not make the plan (and the schedule's end) flip back and forth.
GROWTH_MARGIN_EPOCHS = 0.5
FIRST_PLAN_SKIPPED_STEPS = 5  # the first steps trace the train function and warm caches: not timed
FIRST_PLAN_TIMED_STEPS = 40  # timed for the first plan (5 to 10 s of deep_cnn on 2 cores)
# Until the first epoch measures it, a validation step is taken to cost a
# third of a training step: the forward pass, without backward pass and update.
EVAL_STEP_SHARE = 1.0 / 3.0
SHORT_BUDGET_EPOCHS = 2  # a first plan of at most this many epochs trains on without augmentation


class BudgetKeeper(keras.callbacks.Callback):
    """Keeps a ``fit`` to the epochs that fit ``budget`` (counted from ``started_at``), re-planned every epoch.

    ``fit`` must be called with ``epochs=budget.max_epochs``: the keeper ends
    it earlier through ``stop_training``. With ``eval_steps`` the keeper makes
    the first plan itself, from the first training steps (see the module
    docstring); the model's schedule is then built for ``planned_epochs`` =
    ``budget.max_epochs``. Without, ``planned_epochs`` is a plan made before
    ``fit``. ``first_plan`` and ``replans`` record the plans for the training
    summary.
    """

    def __init__(
        self,
        budget: TimeBudget,
        *,
        started_at: float,
        steps_per_epoch: int,
        planned_epochs: int,
        eval_steps: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.budget = budget
        self.started_at = started_at
        self.steps_per_epoch = steps_per_epoch
        self.planned_steps = planned_epochs * steps_per_epoch
        self.eval_steps = eval_steps
        self.clock = clock
        self.epoch_seconds: list[float] = []
        self.replans: list[dict[str, Any]] = []
        self.first_plan: dict[str, Any] | None = None  # set by the in-fit first plan
        self._epoch = 0
        self._epoch_started = 0.0
        self._timing_started = 0.0

    @property
    def planned_epochs(self) -> int:
        """The epochs ``fit`` begins under the plan, the last one partial if the steps end inside it."""
        return math.ceil(self.planned_steps / self.steps_per_epoch)

    @property
    def validation_share(self) -> float | None:
        """The part of an epoch's seconds its validation takes, as estimated; None: plan whole epochs only."""
        if self.eval_steps is None:
            return None
        validation = self.eval_steps * EVAL_STEP_SHARE
        return validation / (self.steps_per_epoch + validation)

    @property
    def augmentation_off(self) -> bool:
        """True once a first plan of at most ``SHORT_BUDGET_EPOCHS`` switched augmentation off."""
        return bool((self.first_plan or {}).get("augmentation_off"))

    @property
    def awaits_first_plan(self) -> bool:
        """True until the in-fit first plan is made (never when a plan was made before ``fit``)."""
        return self.eval_steps is not None and self.first_plan is None

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch
        self._epoch_started = self.clock()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if batch + 1 < self.steps_per_epoch and self._epoch * self.steps_per_epoch + batch + 1 >= self.planned_steps:
            self.model.stop_training = True  # a partial last epoch: its validation and on_epoch_end still run
        if not self.awaits_first_plan or self._epoch != 0:
            return
        steps = batch + 1
        if steps == FIRST_PLAN_SKIPPED_STEPS:
            self._timing_started = self.clock()
        elif steps == FIRST_PLAN_SKIPPED_STEPS + FIRST_PLAN_TIMED_STEPS:
            step_seconds = (self.clock() - self._timing_started) / FIRST_PLAN_TIMED_STEPS
            assert self.eval_steps is not None
            per_epoch = self.steps_per_epoch * step_seconds + self.eval_steps * step_seconds * EVAL_STEP_SHARE
            self._plan_first(per_epoch, after_steps=steps, step_seconds=step_seconds)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        now = self.clock()
        self.epoch_seconds.append(now - self._epoch_started)
        done = (epoch + 1) * self.steps_per_epoch
        if done > self.planned_steps:  # the partial last epoch, stopped at the planned step
            self.model.stop_training = True
            return
        per_epoch = statistics.median(self.epoch_seconds[-RECENT_EPOCHS:])
        if self.awaits_first_plan:  # an epoch too short to time its steps in: plan from the whole epoch
            self._plan_first(per_epoch, after_steps=self.steps_per_epoch)
        else:
            left = self.budget.seconds_left(started_at=self.started_at, now=now)
            planned = self.replanned_steps(done, per_epoch, left)
            if planned != self.planned_steps:
                self._change_plan(epoch + 1, planned, per_epoch, left)
        if done >= self.planned_steps:
            self.model.stop_training = True

    def _plan_first(self, per_epoch: float, *, after_steps: int, step_seconds: float | None = None) -> None:
        """The first plan, from the first epoch's pace; the one-cycle's warm-up gets its share of it."""
        # From the epoch's start: the plan covers the first epoch too, all of it at the measured pace.
        plan = plan_epochs_of(
            self.budget,
            started_at=self.started_at,
            now=self._epoch_started,
            seconds_per_epoch=per_epoch,
            steps_per_epoch=self.steps_per_epoch,
            validation_share=self.validation_share,
        )
        measured = f"{FIRST_PLAN_TIMED_STEPS} training steps of {step_seconds:.3f} s" if step_seconds else "the first epoch"
        logging.info("%s (measured on %s)", plan.describe(), measured)
        self.first_plan = {**plan.to_json(), "planned_after_steps": after_steps}
        if step_seconds:
            self.first_plan.update(
                train_step_seconds=round(step_seconds, 4), eval_step_seconds=round(step_seconds * EVAL_STEP_SHARE, 4)
            )
        # The plan counts from this epoch on: a fit resumed from a backup starts past epoch 0.
        self.planned_steps = min(self._epoch * self.steps_per_epoch + plan.steps, self.most_steps)
        self._move_schedule_end(self.planned_steps, first=True)
        if self.planned_steps <= SHORT_BUDGET_EPOCHS * self.steps_per_epoch and self._switch_off_augmentation():
            self.first_plan["augmentation_off"] = True

    def _switch_off_augmentation(self) -> bool:
        """Makes the model's augmentation the identity from the next step on; False: it has none on."""
        layer = next((layer for layer in self.model.layers if isinstance(layer, Augmentation)), None)
        if layer is None or not layer.enabled:
            return False
        layer.enabled = False
        self.model.make_train_function(force=True)  # the train step was traced with augmentation
        logging.info("time budget: %d epochs or fewer, so the rest trains without augmentation", SHORT_BUDGET_EPOCHS)
        return True

    @property
    def most_steps(self) -> int:
        return self.budget.max_epochs * self.steps_per_epoch

    def replanned_steps(self, done: int, per_epoch: float, left: float) -> int:
        """The total steps to train, ``done`` trained (at an epoch's end), epochs of ``per_epoch`` s, ``left`` s left."""

        def fitting(seconds: float) -> int:
            return fitting_steps(
                seconds, steps_per_epoch=self.steps_per_epoch, seconds_per_epoch=per_epoch,
                validation_share=self.validation_share,
            )  # fmt: skip

        more = fitting(left)
        if done + more > self.planned_steps:  # lengthen only with time to spare
            more = max(fitting(left - GROWTH_MARGIN_EPOCHS * per_epoch), self.planned_steps - done)
        return max(done, min(done + more, self.most_steps))

    def _change_plan(self, epochs_done: int, planned: int, per_epoch: float, left: float) -> None:
        if not self._move_schedule_end(planned, first=False):
            logging.info("time budget: would re-plan to %d steps, but a cosine schedule cannot move its end", planned)
            return
        before, after = (round(steps / self.steps_per_epoch, 2) for steps in (self.planned_steps, planned))
        logging.info(
            "time budget: re-planned from %s to %s epochs (%d steps) after epoch %d "
            "(an epoch takes ~%.1f s, %.0f s of the budget left)",
            before, after, planned, epochs_done, per_epoch, left + self.budget.reserve_seconds,
        )  # fmt: skip
        self.replans.append({"after_epoch": epochs_done, "from": before, "to": after, "epoch_seconds": round(per_epoch, 2)})
        self.planned_steps = planned

    def _move_schedule_end(self, planned: int, *, first: bool) -> bool:
        """Moves the schedule's end to ``planned`` steps; False: the schedule cannot move (cosine).

        ``first``: the warm-up takes its fraction of the planned run, as if the
        schedule had been built for it (a later re-plan keeps the warm-up).
        """
        schedule = learning_rate_schedule(self.model.optimizer)
        if isinstance(schedule, keras.optimizers.schedules.CosineDecay):
            return False
        if isinstance(schedule, OneCycle):
            warmup = round(schedule.warmup_steps * planned / schedule.total_steps) if first else None
            schedule.retarget(planned, warmup_steps=warmup)
        return True
