"""run_fn's input pipeline: the train split keeps its length, so the schedule stays on its steps.

Stand-ins for TFX's data accessor and the transform output feed
already-transformed batches; the real ones run in the end-to-end tests.
"""

from __future__ import annotations

import types
from pathlib import Path

import keras
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


def _budgeted_config(budget_seconds: float) -> run_fn.TrainingConfig:
    from trainer_module.time_budget import TimeBudget

    return run_fn.TrainingConfig(
        model="lenet5",
        epochs=0,
        batch_size=BATCH,
        image_shape=IMAGE_SHAPE,
        class_names=tuple(str(digit) for digit in range(10)),
        hparams=ModelHParams(),
        time_budget=TimeBudget(seconds=budget_seconds, reserve_seconds=0.0, max_epochs=7),
    )


@pytest.mark.parametrize(
    ("budget_seconds", "epochs", "capped", "over_budget"),
    [(3600.0, 7, True, False), (0.001, 1, False, True)],
    ids=["an hour: capped", "a millisecond: one epoch"],
)
def test_a_time_budget_plans_epochs_from_steps_measured_on_this_machine(
    accessor: _DataAccessor, budget_seconds: float, epochs: int, capped: bool, over_budget: bool
) -> None:
    import time

    train = run_fn.make_dataset(["train"], accessor, _transform_output(), BATCH, True, example_count=EXAMPLES)
    evaluation = run_fn.make_dataset(["eval"], accessor, _transform_output(), BATCH, False)

    plan, times = run_fn.plan_budgeted_epochs(
        _budgeted_config(budget_seconds), tf.distribute.get_strategy(), train, evaluation, 3, time.time()
    )

    assert (plan.epochs, plan.capped, plan.over_budget) == (epochs, capped, over_budget)
    # 3 train steps and 3 validation batches (10 examples in batches of 4) per epoch.
    assert plan.seconds_per_epoch == pytest.approx(3 * times.train_step_seconds + 3 * times.eval_step_seconds)


def test_epochs_zero_without_a_time_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="time budget"):
        run_fn.TrainingConfig(
            model="lenet5", epochs=0, batch_size=BATCH, image_shape=IMAGE_SHAPE, class_names=("a", "b"), hparams=ModelHParams()
        )


def test_the_precision_comes_from_the_custom_config_and_an_unknown_one_is_refused() -> None:
    config = {"model": "lenet5", "epochs": 1, "batch_size": BATCH, "image_shape": list(IMAGE_SHAPE), "class_names": ["a", "b"]}
    assert run_fn.TrainingConfig.from_custom_config(config).precision == "auto"  # packages compiled before it
    assert run_fn.TrainingConfig.from_custom_config({**config, "precision": "float32"}).precision == "float32"
    with pytest.raises(ValueError, match="precision must be one of"):
        run_fn.TrainingConfig.from_custom_config({**config, "precision": "float16"})


def test_a_time_budget_on_several_workers_is_refused_before_any_data_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every worker must train the same epochs, and each would plan its own from its own clock."""
    from trainer_module import accelerator, distribution
    from trainer_module.time_budget import TIME_BUDGET_KEY, TimeBudget

    monkeypatch.setattr(accelerator, "configure_accelerator", lambda precision: "CPU (float32)")
    monkeypatch.setattr(distribution, "worker_count", lambda strategy: 2)
    budget = TimeBudget(seconds=600.0, reserve_seconds=0.0, max_epochs=5).to_json()
    fn_args = types.SimpleNamespace(custom_config={
        "model": "lenet5", "epochs": 0, "batch_size": BATCH, "image_shape": list(IMAGE_SHAPE),
        "class_names": ["a", "b"], TIME_BUDGET_KEY: budget,
    })  # no data: the refusal comes first

    with pytest.raises(ValueError, match="a time budget needs a single worker"):
        run_fn.run_fn(fn_args)


def _fake_epoch_clock(epoch_seconds: float):
    """A clock for BudgetKeeper: each epoch begins where the last ended and lasts `epoch_seconds`."""
    ticks = iter(value for epoch in range(1000) for value in (epoch * epoch_seconds, (epoch + 1) * epoch_seconds))
    return lambda: next(ticks)


@pytest.mark.parametrize(
    ("budget_seconds", "first_plan", "trained", "replans"),
    [
        (75.0, 5, 7, [{"after_epoch": 1, "from": 5, "to": 7, "epoch_seconds": 10.0}]),
        (45.0, 9, 4, [{"after_epoch": 1, "from": 9, "to": 4, "epoch_seconds": 10.0}]),
        (1000.0, 3, 8, [{"after_epoch": 1, "from": 3, "to": 8, "epoch_seconds": 10.0}]),  # capped at max_epochs 8
    ],
    ids=["slower plan than the machine: lengthened", "faster plan than the machine: shortened", "capped"],
)
def test_the_budget_keeper_replans_and_the_one_cycle_still_ends_at_zero(
    accessor: _DataAccessor, budget_seconds: float, first_plan: int, trained: int, replans: list
) -> None:
    from trainer_module.budget_keeper import BudgetKeeper
    from trainer_module.time_budget import TimeBudget

    dataset = run_fn.make_dataset(["train"], accessor, _transform_output(), BATCH, True, example_count=EXAMPLES)
    steps_per_epoch = -(-EXAMPLES // BATCH)
    hparams = ModelHParams(learning_rate=0.01, lr_schedule=ONE_CYCLE, lr_warmup_fraction=0.0)
    model = build_model("lenet5", IMAGE_SHAPE, 10, hparams, steps_per_epoch=steps_per_epoch, epochs=first_plan)
    budget = TimeBudget(seconds=budget_seconds, reserve_seconds=0.0, max_epochs=8)
    keeper = BudgetKeeper(
        budget, started_at=0.0, steps_per_epoch=steps_per_epoch, planned_epochs=first_plan, clock=_fake_epoch_clock(10.0)
    )

    history = model.fit(dataset, epochs=budget.max_epochs, verbose=0, callbacks=[keeper])

    assert len(history.epoch) == trained
    assert keeper.replans == replans
    schedule = callbacks.learning_rate_schedule(model.optimizer)
    assert schedule.total_steps == trained * steps_per_epoch
    # The step after the last one trained is the end of the cycle: rate 0.
    assert float(schedule(int(model.optimizer.iterations))) == pytest.approx(0.0, abs=1e-9)


def test_the_budget_keeper_plans_from_the_first_training_steps_and_scales_the_warm_up() -> None:
    """No calibration: the model is built for max_epochs, the keeper times real steps and moves the cycle's end."""
    from trainer_module import budget_keeper
    from trainer_module.budget_keeper import BudgetKeeper
    from trainer_module.time_budget import TimeBudget

    steps, step_seconds, eval_steps = 50, 0.1, 3
    rng = np.random.default_rng(1)
    images = rng.standard_normal((steps, *IMAGE_SHAPE)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((images, rng.integers(0, 10, size=steps))).batch(1)
    budget = TimeBudget(seconds=16.0, reserve_seconds=0.0, max_epochs=8)
    hparams = ModelHParams(learning_rate=0.01, lr_schedule=ONE_CYCLE, lr_warmup_fraction=0.2)
    model = build_model("lenet5", IMAGE_SHAPE, 10, hparams, steps_per_epoch=steps, epochs=budget.max_epochs)
    # The machine's clock, as the steps see it: every training step takes 0.1 s.
    clock = lambda: float(model.optimizer.iterations) * step_seconds  # noqa: E731
    keeper = BudgetKeeper(
        budget, started_at=0.0, steps_per_epoch=steps, planned_epochs=budget.max_epochs, eval_steps=eval_steps, clock=clock
    )

    history = model.fit(
        dataset, validation_data=dataset.take(eval_steps), epochs=budget.max_epochs, verbose=0, callbacks=[keeper]
    )

    # An epoch: 50 steps of 0.1 s + 3 validation steps estimated at a third of that = 5.1 s; 16 s hold 3,
    # and the 0.7 s they leave hold 6 steps of a fourth with its validation (0.1 s).
    after = budget_keeper.FIRST_PLAN_SKIPPED_STEPS + budget_keeper.FIRST_PLAN_TIMED_STEPS
    assert keeper.first_plan == {
        "epochs": 4, "steps": 156, "seconds_per_epoch": 5.1, "seconds_available": 16.0, "capped": False,
        "over_budget": False, "planned_after_steps": after, "train_step_seconds": 0.1, "eval_step_seconds": 0.0333,
    }
    assert len(history.epoch) == 4 and keeper.replans == []
    assert int(model.optimizer.iterations) == 156  # the fourth epoch stopped after its 6th step
    assert "val_loss" in history.history and len(history.history["val_loss"]) == 4  # and was validated
    schedule = callbacks.learning_rate_schedule(model.optimizer)
    # The warm-up is 20 % of the planned 156 steps, not of the provisional 400.
    assert (schedule.total_steps, schedule.warmup_steps) == (156, 31)
    assert float(schedule(int(model.optimizer.iterations))) == pytest.approx(0.0, abs=1e-9)


# 10.4 s: 2 epochs of 5.1 s, and no partial third (1 step, under a tenth of an epoch); 16 s: 3 epochs and 6 steps.
@pytest.mark.parametrize(("budget_seconds", "planned", "augmentation_off"), [(10.4, 2, True), (16.0, 4, False)])
def test_a_first_plan_of_two_epochs_or_fewer_trains_on_without_augmentation(
    budget_seconds: float, planned: int, augmentation_off: bool
) -> None:
    from trainer_module import budget_keeper
    from trainer_module.budget_keeper import BudgetKeeper
    from trainer_module.models.layers import Augmentation
    from trainer_module.time_budget import TimeBudget

    steps, step_seconds = 50, 0.1
    rng = np.random.default_rng(2)
    images = rng.standard_normal((steps, *IMAGE_SHAPE)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((images, rng.integers(0, 10, size=steps))).batch(1)
    budget = TimeBudget(seconds=budget_seconds, reserve_seconds=0.0, max_epochs=8)
    hparams = ModelHParams(learning_rate=0.01, lr_schedule=ONE_CYCLE)
    model = build_model("lenet5", IMAGE_SHAPE, 10, hparams, steps_per_epoch=steps, epochs=budget.max_epochs)
    clock = lambda: float(model.optimizer.iterations) * step_seconds  # noqa: E731  (0.1 s a step)
    keeper = BudgetKeeper(
        budget, started_at=0.0, steps_per_epoch=steps, planned_epochs=budget.max_epochs, eval_steps=3, clock=clock
    )
    augmentation = next(layer for layer in model.layers if isinstance(layer, Augmentation))
    # The random layers' seed states move on every augmented step, and only then.
    seed_states: list[list[np.ndarray]] = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: seed_states.append(
            [keras.ops.convert_to_numpy(v) for v in augmentation.variables]
        )
    )

    history = model.fit(dataset, epochs=budget.max_epochs, verbose=0, callbacks=[keeper, record])

    planned_at = budget_keeper.FIRST_PLAN_SKIPPED_STEPS + budget_keeper.FIRST_PLAN_TIMED_STEPS
    assert len(history.epoch) == planned == keeper.first_plan["epochs"]
    assert keeper.augmentation_off is augmentation_off and augmentation.enabled is not augmentation_off
    assert keeper.first_plan.get("augmentation_off", False) is augmentation_off
    moved = [not all(np.array_equal(a, b) for a, b in zip(before, after))
             for before, after in zip(seed_states, seed_states[1:])]
    assert all(moved[: planned_at - 1])  # augmented up to the first plan
    assert any(moved[planned_at:]) is not augmentation_off  # and after it only if still on


def test_an_epoch_too_short_to_time_is_planned_at_its_end(accessor: _DataAccessor) -> None:
    from trainer_module.budget_keeper import BudgetKeeper
    from trainer_module.time_budget import TimeBudget

    dataset = run_fn.make_dataset(["train"], accessor, _transform_output(), BATCH, True, example_count=EXAMPLES)
    steps_per_epoch = -(-EXAMPLES // BATCH)
    budget = TimeBudget(seconds=45.0, reserve_seconds=0.0, max_epochs=8)
    hparams = ModelHParams(learning_rate=0.01, lr_schedule=ONE_CYCLE, lr_warmup_fraction=0.25)
    model = build_model("lenet5", IMAGE_SHAPE, 10, hparams, steps_per_epoch=steps_per_epoch, epochs=budget.max_epochs)
    keeper = BudgetKeeper(
        budget, started_at=0.0, steps_per_epoch=steps_per_epoch, planned_epochs=budget.max_epochs, eval_steps=3,
        clock=_fake_epoch_clock(10.0),
    )

    history = model.fit(dataset, epochs=budget.max_epochs, verbose=0, callbacks=[keeper])

    # Epochs of 10 s, a quarter of them validation (3 steps of 3 at a third of a training step's 2.5 s):
    # 45 s hold 4 epochs, and the 5 s left one more training step with its 2.5 s validation.
    assert keeper.first_plan == {
        "epochs": 5, "steps": 4 * steps_per_epoch + 1, "seconds_per_epoch": 10.0, "seconds_available": 45.0,
        "capped": False, "over_budget": False, "planned_after_steps": steps_per_epoch,
    }
    assert len(history.epoch) == 5 and int(model.optimizer.iterations) == 4 * steps_per_epoch + 1
    schedule = callbacks.learning_rate_schedule(model.optimizer)
    assert (schedule.total_steps, schedule.warmup_steps) == (4 * steps_per_epoch + 1, 3)
