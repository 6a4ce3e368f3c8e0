"""How many epochs fit in a run's time budget: the plan, without TensorFlow.

Why a budget instead of an epoch count: what a user of a 2-core laptop and of
a GPU box both know is how long they are willing to wait, and the epochs that
fit in 15 minutes differ by 10x between the two. The learning-rate schedules
anneal to zero at the last step of whatever epoch count is chosen
(``trainer_module.schedules``), so the count can be decided at the start of
training, from throughput measured on the machine the Trainer landed on
(``trainer_module.calibration``), and the run still ends on a fully annealed
model.

The budget counts from the start of the run: the stages before the Trainer
(ExampleGen ... Transform) have already used part of it when the Trainer
starts, and the Trainer keeps ``reserve_seconds`` back for what comes after
training (export, Evaluator, serving check, Pusher). The start reaches the
Trainer in the environment (``RUN_STARTED_AT_ENV``, set by ``visionpipe run``),
not in its settings: the settings are the TFX cache key, so the same command
run again reuses a trained model as it reuses every other finished component.
Without the variable (a Kubeflow pod) the budget counts from the Trainer's
own start.

TF-free so that the CLI, the pipeline definition and the run summary can use
the record without importing TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from typing import Any

# custom_config key of the budget; absent: the Trainer trains config.epochs.
TIME_BUDGET_KEY = "time_budget"
# Unix time the run started, as a decimal string in the environment of the Trainer.
RUN_STARTED_AT_ENV = "VISIONPIPE_RUN_STARTED_AT"


@dataclasses.dataclass(frozen=True)
class TimeBudget:
    """How long the whole run may take, and how the Trainer spends what is left of it.

    * ``seconds``: wall time of the whole run, from its start.
    * ``reserve_seconds``: kept back for everything after ``model.fit``.
    * ``max_epochs``: a cap, so a tiny dataset (the embedded sample) does not
      train hundreds of epochs just because the budget would allow it.
    """

    seconds: float
    reserve_seconds: float
    max_epochs: int

    def __post_init__(self) -> None:
        if self.seconds <= 0:
            raise ValueError(f"seconds must be > 0, got {self.seconds}")
        if self.reserve_seconds < 0:
            raise ValueError(f"reserve_seconds must be >= 0, got {self.reserve_seconds}")
        if self.max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {self.max_epochs}")

    def seconds_left(self, *, started_at: float, now: float) -> float:
        """What is left for training at ``now`` of a budget started at ``started_at``, the reserve kept back."""
        return started_at + self.seconds - self.reserve_seconds - now

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> "TimeBudget":
        return cls(
            seconds=float(record["seconds"]),
            reserve_seconds=float(record["reserve_seconds"]),
            max_epochs=int(record["max_epochs"]),
        )


def run_started_at(now: float, environ: Mapping[str, str] | None = None) -> float:
    """When the run's budget started counting: ``RUN_STARTED_AT_ENV``, else ``now``.

    A value that is not a number, or lies in the future, is a bug of whoever
    set it, not something to plan around: it raises.
    """
    text = (os.environ if environ is None else environ).get(RUN_STARTED_AT_ENV)
    if not text:
        return now
    try:
        started = float(text)
    except ValueError:
        raise ValueError(f"{RUN_STARTED_AT_ENV}={text!r} is not a Unix time") from None
    if started > now:
        raise ValueError(f"{RUN_STARTED_AT_ENV}={text!r} lies in the future (now {now:.0f})")
    return started


# A last, partial epoch shorter than this share of an epoch is not begun:
# its validation pass would cost about as much as its training gives.
MIN_PARTIAL_EPOCH = 0.1


@dataclasses.dataclass(frozen=True)
class EpochPlan:
    """The training length chosen for a budget, with the figures it was chosen from (for the run summary).

    ``steps`` is the length the schedule anneals over; ``epochs`` the epochs
    ``fit`` begins, the last of them partial when ``steps`` is not a multiple
    of an epoch's steps.
    """

    epochs: int
    steps: int  # training steps in all
    seconds_per_epoch: float  # estimated: training steps plus the validation pass
    seconds_available: float  # for model.fit, when the plan was made
    capped: bool  # True: max_epochs, not the budget, set the count
    over_budget: bool  # True: not even one epoch fits; one is trained anyway

    def to_json(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "steps": self.steps,
            "seconds_per_epoch": round(self.seconds_per_epoch, 2),
            "seconds_available": round(self.seconds_available, 2),
            "capped": self.capped,
            "over_budget": self.over_budget,
        }

    def describe(self) -> str:
        """One log line: why this many epochs."""
        if self.over_budget:
            return (
                f"time budget: one epoch takes ~{self.seconds_per_epoch:.1f} s but only "
                f"{self.seconds_available:.0f} s are left; training 1 epoch anyway (the run will overrun)"
            )
        return (
            f"time budget: {self.epochs} epoch(s), {self.steps} steps, of ~{self.seconds_per_epoch:.1f} s an epoch "
            f"fit the {self.seconds_available:.0f} s left of the time budget"
            + (" (capped at the budget's max_epochs)" if self.capped else "")
        )


def fitting_steps(
    seconds: float, *, steps_per_epoch: int, seconds_per_epoch: float, validation_share: float | None
) -> int:
    """The most training steps, from an epoch's start, whose training and validation fit in ``seconds``.

    Whole epochs first; with ``validation_share`` (the part of an epoch's
    seconds its validation pass takes) the time they leave holds a partial
    last epoch too, validated like any other, if it is at least
    ``MIN_PARTIAL_EPOCH`` of an epoch. ``None``: whole epochs only, for a
    schedule that cannot end inside an epoch.
    """
    if seconds <= 0:
        return 0
    whole = math.floor(seconds / seconds_per_epoch)
    if validation_share is None:
        return whole * steps_per_epoch
    validation = validation_share * seconds_per_epoch
    step_seconds = (seconds_per_epoch - validation) / steps_per_epoch
    rest = seconds - whole * seconds_per_epoch - validation
    partial = min(math.floor(rest / step_seconds), steps_per_epoch - 1) if rest > 0 else 0
    return whole * steps_per_epoch + (partial if partial >= MIN_PARTIAL_EPOCH * steps_per_epoch else 0)


def plan_epochs(
    budget: TimeBudget,
    *,
    started_at: float,
    now: float,
    train_steps_per_epoch: int,
    eval_steps_per_epoch: int,
    train_step_seconds: float,
    eval_step_seconds: float,
) -> EpochPlan:
    """The most whole epochs whose estimated time fits in what is left of the budget, less the reserve (at least 1)."""
    if train_step_seconds <= 0 or eval_step_seconds < 0:
        raise ValueError(
            f"step times must be positive, got train {train_step_seconds}, eval {eval_step_seconds}"
        )
    per_epoch = train_steps_per_epoch * train_step_seconds + eval_steps_per_epoch * eval_step_seconds
    return plan_epochs_of(
        budget, started_at=started_at, now=now, seconds_per_epoch=per_epoch, steps_per_epoch=train_steps_per_epoch
    )


def plan_epochs_of(
    budget: TimeBudget,
    *,
    started_at: float,
    now: float,
    seconds_per_epoch: float,
    steps_per_epoch: int,
    validation_share: float | None = None,
) -> EpochPlan:
    """The steps that fit what is left of the budget from ``now`` (``fitting_steps``), capped at ``max_epochs``.

    When nothing fits, one epoch is planned anyway (the run will overrun);
    when part of one epoch fits, that part.
    """
    if seconds_per_epoch <= 0:
        raise ValueError(f"an epoch must take > 0 s, got {seconds_per_epoch}")
    available = budget.seconds_left(started_at=started_at, now=now)
    steps = fitting_steps(
        available, steps_per_epoch=steps_per_epoch, seconds_per_epoch=seconds_per_epoch, validation_share=validation_share
    )
    most = budget.max_epochs * steps_per_epoch
    planned = min(steps, most) if steps else steps_per_epoch  # nothing fits: one epoch anyway, over the budget
    return EpochPlan(
        epochs=math.ceil(planned / steps_per_epoch),
        steps=planned,
        seconds_per_epoch=seconds_per_epoch,
        seconds_available=available,
        capped=steps > most,
        over_budget=steps == 0,
    )
