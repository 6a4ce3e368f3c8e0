"""`visionpipe run` with a time budget, end to end: the Trainer plans the epochs, and the same command reuses them.

Tiny synthetic MNIST-format data, so the budget is ample and the plan hits the
profile's epoch cap: the count is then known in advance, which a budget on
real data (dependent on this machine's speed) would not be.
"""

from __future__ import annotations

import json
import os

import pytest

from pipeline import configs
from pipeline.cli import main as cli
from tests.conftest import write_idx_dataset

COMMAND_ARGS = ["--model", "lenet5", "--batch-size", "16", "--accuracy-threshold", "0", "--profile", "fast", "--budget-minutes", "20"]


def run(data_dir: str, output_dir: str, capsys) -> tuple[int, dict, str]:
    code = cli.main(["run", "--dataset", "mnist", "--data-dir", data_dir, "--output-dir", output_dir, *COMMAND_ARGS])
    console = capsys.readouterr().out
    with open(os.path.join(output_dir, "run_summary.json"), encoding="utf-8") as handle:
        return code, json.load(handle), console


@pytest.fixture(scope="module")
def budget_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("budget")
    data_dir = write_idx_dataset(str(root / "data"), train_count=120, test_count=40, seed=3)
    output_dir = str(root / "out")
    return data_dir, output_dir


def test_the_trainer_plans_the_epochs_and_the_same_command_reuses_its_model(budget_runs, capsys):
    data_dir, output_dir = budget_runs

    code, summary, console = run(data_dir, output_dir, capsys)

    assert code == 0, console
    assert "the epochs that fit 20 min (--budget-minutes)" in console.splitlines()[0]
    budget = summary["training"]["time_budget"]
    # 20 minutes hold far more than the fast profile's cap for 120 images.
    assert budget["capped"] is True and budget["over_budget"] is False
    assert summary["epochs"] == summary["training"]["epochs"] == budget["trained_epochs"] == configs.FAST_PROFILE.max_epochs
    assert len(budget["epoch_seconds"]) == configs.FAST_PROFILE.max_epochs
    assert budget["trained_steps"] == budget["steps"] == 7 * configs.FAST_PROFILE.max_epochs  # capped: whole epochs
    # 7 steps an epoch (the 11:1 split keeps ~110 of the 120 images; batches of 16), too few
    # to time inside it: planned at the end of the first epoch.
    assert budget["planned_after_steps"] == 7 and budget["seconds_per_epoch"] > 0
    assert summary["time_budget_minutes"] == 20.0
    assert "planned for the 20 min budget" in console
    log_path = console.splitlines()[0].rsplit("(log: ", 1)[1].rstrip(")")
    with open(log_path, encoding="utf-8") as handle:
        assert "time budget: " in handle.read()

    again_code, again, _ = run(data_dir, output_dir, capsys)

    # The start of the run is not part of the Trainer's settings: the same command hits the cache.
    assert again_code == 0
    assert again["components"]["Trainer"] < 2.0 < summary["components"]["Trainer"]
    assert again["test_accuracy"] == pytest.approx(summary["test_accuracy"])
