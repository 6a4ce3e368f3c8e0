"""Measures how long one training step and one validation step take on this machine.

Why measure rather than look the figures up: the same network trains 10x
faster on a GPU than on 2 CPU cores, and even one CPU machine varies from run
to run. Under the cosine schedule, whose end cannot move once training runs,
the Trainer measures right before it plans the epochs of a time budget
(``trainer_module.time_budget``) on a throwaway copy of the model and random
inputs of the real shape and batch size: a step's time does not depend on the
pixel values, and the real model and its optimizer stay untouched. The other
schedules are planned from the real training's first steps instead
(``trainer_module.budget_keeper``), which costs no extra time.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

import keras
import tensorflow as tf

WARMUP_STEPS = 1  # traced and compiled; not timed
PROBE_STEPS = 3  # timed, to size the measurement
TARGET_SECONDS = 1.5  # how long the timed measurement of each kind of step aims to run (BudgetKeeper corrects the rest)
MAX_TIMED_STEPS = 200


@dataclasses.dataclass(frozen=True)
class StepTimes:
    train_step_seconds: float
    eval_step_seconds: float
    seconds_spent: float  # what calibrating cost, building the throwaway model included


def _timed(run: Callable[[int], object], steps: int) -> float:
    started = time.perf_counter()
    run(steps)
    return (time.perf_counter() - started) / steps


def _seconds_per_step(run: Callable[[int], object]) -> float:
    """Warm up, probe, then time enough steps to last about TARGET_SECONDS."""
    run(WARMUP_STEPS)
    probe = _timed(run, PROBE_STEPS)
    steps = min(MAX_TIMED_STEPS, max(PROBE_STEPS, math.ceil(TARGET_SECONDS / probe)))
    return _timed(run, steps)


def measure_step_times(
    build_model: Callable[[], keras.Model],
    batch_size: int,
    image_shape: tuple[int, int, int],
    num_classes: int,
) -> StepTimes:
    """Train-step and validation-step seconds of a model from ``build_model`` at ``batch_size``.

    ``build_model`` returns a compiled model like the one to be trained (call
    it inside the distribution strategy's scope if training uses one).
    """
    started = time.perf_counter()
    model = build_model()
    images = tf.random.normal((batch_size, *image_shape))
    labels = tf.random.uniform((batch_size,), maxval=num_classes, dtype=tf.int64)
    batches = tf.data.Dataset.from_tensors((images, labels)).repeat()
    train = _seconds_per_step(lambda steps: model.fit(batches, steps_per_epoch=steps, epochs=1, shuffle=False, verbose=0))
    evaluate = _seconds_per_step(lambda steps: model.evaluate(batches, steps=steps, verbose=0))
    return StepTimes(
        train_step_seconds=train,
        eval_step_seconds=evaluate,
        seconds_spent=time.perf_counter() - started,
    )
