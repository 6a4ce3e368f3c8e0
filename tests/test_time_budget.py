"""Time budgets: the epoch plan, the run's start, the calibration, and how the CLI and pipeline pass them on."""

from __future__ import annotations

import pytest

from pipeline import configs, definition
from pipeline.cli import main as cli_main
from trainer_module.time_budget import (
    RUN_STARTED_AT_ENV,
    TIME_BUDGET_KEY,
    TimeBudget,
    fitting_steps,
    plan_epochs,
    plan_epochs_of,
    run_started_at,
)

BUDGET = TimeBudget(seconds=600.0, reserve_seconds=30.0, max_epochs=50)


def plan(budget: TimeBudget = BUDGET, *, elapsed: float = 60.0, train_step: float = 0.1, eval_step: float = 0.05):
    return plan_epochs(
        budget,
        started_at=1000.0,
        now=1000.0 + elapsed,
        train_steps_per_epoch=100,
        eval_steps_per_epoch=20,
        train_step_seconds=train_step,
        eval_step_seconds=eval_step,
    )


def test_the_plan_fits_the_epochs_into_what_is_left_after_the_elapsed_time_and_the_reserve():
    result = plan()  # 600 - 60 - 30 = 510 s left; an epoch is 100 * 0.1 + 20 * 0.05 = 11 s

    assert (result.epochs, result.seconds_per_epoch, result.seconds_available) == (46, pytest.approx(11.0), 510.0)
    assert not result.capped and not result.over_budget
    assert "46 epoch(s)" in result.describe()


def test_a_fast_machine_is_capped_at_max_epochs():
    result = plan(train_step=0.001, eval_step=0.001)

    assert (result.epochs, result.capped) == (50, True)
    assert "capped" in result.describe()


def test_a_budget_already_spent_still_trains_one_epoch_and_says_the_run_will_overrun():
    result = plan(elapsed=590.0)

    assert (result.epochs, result.over_budget) == (1, True)
    assert "overrun" in result.describe()


def test_whole_epochs_plan_whole_epochs_of_steps():
    result = plan()

    assert result.steps == 46 * 100 and result.to_json()["steps"] == 4600


# An epoch of 10 s: 100 training steps of 0.09 s and a 1 s validation pass (share 0.1).
@pytest.mark.parametrize(
    ("seconds", "steps"),
    [
        (25.0, 244),  # 2 epochs; the 5 s left: 1 s validation, 4 s = 44 steps
        (22.0, 211),  # 1 s for 11 steps: above a tenth of an epoch
        (21.8, 200),  # 0.8 s for 8 steps: under a tenth of an epoch, not begun
        (21.0, 200),  # the 1 s left is the validation pass alone
        (19.99, 199),  # at most one step short of another whole epoch
        (9.0, 88),  # part of the first epoch
        (0.0, 0),
    ],
)
def test_the_time_whole_epochs_leave_holds_a_partial_epoch_with_its_validation(seconds, steps):
    assert fitting_steps(seconds, steps_per_epoch=100, seconds_per_epoch=10.0, validation_share=0.1) == steps


def test_without_the_validation_share_only_whole_epochs_are_planned():
    assert fitting_steps(29.9, steps_per_epoch=100, seconds_per_epoch=10.0, validation_share=None) == 200


def test_a_budget_that_holds_part_of_one_epoch_plans_that_part_not_an_overrun():
    budget = TimeBudget(seconds=100.0, reserve_seconds=0.0, max_epochs=5)
    result = plan_epochs_of(
        budget, started_at=0.0, now=91.0, seconds_per_epoch=10.0, steps_per_epoch=100, validation_share=0.1
    )

    assert (result.epochs, result.steps, result.over_budget) == (1, 88, False)


@pytest.mark.parametrize(
    "changes", [{"seconds": 0.0}, {"reserve_seconds": -1.0}, {"max_epochs": 0}], ids=["no time", "negative reserve", "no epochs"]
)
def test_an_impossible_budget_is_refused(changes):
    with pytest.raises(ValueError):
        TimeBudget(**{**BUDGET.to_json(), **changes})


def test_the_budget_round_trips_through_json():
    assert TimeBudget.from_json(BUDGET.to_json()) == BUDGET


def test_the_run_start_comes_from_the_environment_or_is_now():
    assert run_started_at(2000.0, {}) == 2000.0
    assert run_started_at(2000.0, {RUN_STARTED_AT_ENV: "1500.5"}) == 1500.5
    with pytest.raises(ValueError, match="not a Unix time"):
        run_started_at(2000.0, {RUN_STARTED_AT_ENV: "yesterday"})
    with pytest.raises(ValueError, match="future"):
        run_started_at(2000.0, {RUN_STARTED_AT_ENV: "2500"})


def run_config(*argv: str) -> configs.RunConfig:
    args = cli_main.build_parser().parse_args(["run", *argv])
    return cli_main._run_config(args)


def test_the_default_run_has_the_standard_profiles_budget_and_no_pinned_epochs():
    config = run_config()

    assert (config.epochs, config.time_budget_minutes) == (None, configs.STANDARD_PROFILE.budget_minutes)
    assert config.describe_epochs() == "the epochs that fit 15 min (profile standard)"
    budget = definition.training_custom_config(config)[TIME_BUDGET_KEY]
    assert budget == {
        "seconds": 900.0,
        "reserve_seconds": configs.AFTER_TRAINING_RESERVE_SECONDS,
        "max_epochs": configs.STANDARD_PROFILE.max_epochs,
    }


def test_a_profile_or_budget_minutes_sets_the_budget_and_epochs_pin_the_count():
    assert run_config("--profile", "fast").time_budget_minutes == 3.0
    assert definition.training_custom_config(run_config("--profile", "fast"))[TIME_BUDGET_KEY]["max_epochs"] == configs.FAST_PROFILE.max_epochs
    assert run_config("--budget-minutes", "7.5").time_budget_minutes == 7.5
    pinned = run_config("--budget-minutes", "7.5", "--epochs", "4")
    assert (pinned.epochs, pinned.time_budget_minutes) == (4, None)
    assert TIME_BUDGET_KEY not in definition.training_custom_config(pinned)


@pytest.mark.parametrize("value", ["0", "-3", "soon"])
def test_a_budget_that_is_not_a_positive_number_is_a_usage_error(value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main.build_parser().parse_args(["run", "--budget-minutes", value])

    assert exit_info.value.code == 2
    assert "--budget-minutes" in capsys.readouterr().err


def test_calibration_times_real_train_and_validation_steps():
    from trainer_module import calibration
    from trainer_module.models import build_model

    times = calibration.measure_step_times(lambda: build_model("lenet5", (28, 28, 1), 10), 16, (28, 28, 1), 10)

    assert times.train_step_seconds > 0 and times.eval_step_seconds > 0
    assert times.seconds_spent >= 2 * calibration.TARGET_SECONDS * 0.5


def test_the_run_start_is_in_the_environment_only_during_the_run(monkeypatch):
    from pipeline.cli.run_command import run_start_in_environment

    monkeypatch.delenv(RUN_STARTED_AT_ENV, raising=False)
    with run_start_in_environment(1234.5):
        assert run_started_at(2000.0) == 1234.5
    assert run_started_at(2000.0) == 2000.0  # gone again: a later run counts from its own start


def test_the_console_names_a_partial_last_epoch_by_its_steps():
    from pipeline.cli.run_command import trained_length

    assert trained_length({"epochs": 2, "time_budget": {"trained_steps": 646, "steps_per_epoch": 431}}) == (
        "1.50 epochs (646 steps)"
    )
    assert trained_length({"epochs": 12, "time_budget": {"trained_steps": 12 * 431, "steps_per_epoch": 431}}) == "12 epochs"
    assert trained_length({"epochs": 3}) == "3 epochs"  # pinned epochs: no time budget record
