"""`visionpipe run`: the local pipeline run and its summary (after `pipeline.cli.preflight` checked the inputs)."""

from __future__ import annotations

import contextlib
import datetime
import os
import time
from collections.abc import Iterator

from pipeline import datasets, local_runner
from pipeline.plumbing import atomic_files, errors, run_logging
from pipeline.inspect import run_results
from pipeline.configs import RunConfig
from trainer_module import time_budget
from pipeline.plumbing.progress import ComponentProgress

EXIT_OK = 0
EXIT_NOT_BLESSED = 3
EXIT_NOT_SERVABLE = 4  # blessed by the Evaluator, refused by the serving check: nothing pushed


def build_summary(
    config: RunConfig, run_id: str, outcome: run_results.RunOutcome, seconds: dict[str, float], total: float
) -> dict:
    return {
        "pipeline_run_id": run_id,
        "dataset": config.dataset,
        "model": config.model,
        "data_dir": config.data_dir,
        # The trained epochs: the pinned ones, or those the Trainer planned for the time budget.
        "epochs": (outcome.training or {}).get("epochs", config.epochs),
        "time_budget_minutes": config.time_budget_minutes,
        "batch_size": config.batch_size,
        "beam_workers": config.beam_workers,
        "accuracy_threshold": config.accuracy_threshold,
        "finished_at": datetime.datetime.now().isoformat(timespec="seconds"),
        "total_seconds": round(total, 2),
        "components": seconds,
        "test_accuracy": outcome.test_accuracy,
        "per_class_accuracy": outcome.per_class_accuracy,
        "training": outcome.training,
        "blessed": outcome.blessed,
        "serving_check": outcome.serving_check.to_json() if outcome.serving_check else None,
        "pushed_model_dir": outcome.pushed_model_dir,
        "evaluation_uri": outcome.evaluation_uri,
    }


def trained_length(training: dict) -> str:
    """"12 epochs", or, when a time budget ended the last epoch early, "1.49 epochs (646 steps)"."""
    budget = training.get("time_budget") or {}
    steps, steps_per_epoch = budget.get("trained_steps"), budget.get("steps_per_epoch")
    if steps and steps_per_epoch and steps % steps_per_epoch:
        return f"{steps / steps_per_epoch:.2f} epochs ({steps} steps)"
    return f"{training['epochs']} epochs"


def print_summary(summary: dict, summary_path: str) -> None:
    accuracy = summary["test_accuracy"]
    accuracy_text = f"{accuracy:.4f}" if accuracy is not None else "n/a"
    print(f"\nvisionpipe: {summary['dataset']} / {summary['model']} finished in {summary['total_seconds']:.1f} s")
    print(f"  test accuracy : {accuracy_text} (threshold {summary['accuracy_threshold']})")
    training = summary.get("training") or {}
    if training.get("epochs"):
        budget = summary.get("time_budget_minutes")
        planned = f", planned for the {budget:g} min budget" if budget and training.get("time_budget") else ""
        print(f"  training      : {trained_length(training)} in {training.get('fit_seconds', 0):.0f} s{planned}")
    print(f"  blessed       : {'yes' if summary['blessed'] else 'no'}")
    serving = summary["serving_check"]
    print(f"  serving check : {serving['headline'] if serving else 'did not run'}")
    print(f"  pushed model  : {summary['pushed_model_dir'] or 'not pushed'}")
    print(f"  summary       : {summary_path}", flush=True)


def run(config: RunConfig, log_path: str, verbose: bool = False, started_at: float | None = None) -> int:
    """Runs the pipeline for `config`; returns the process exit code.

    The caller holds the output dir's run lock, has checked the input files
    (`pipeline.cli.preflight`) and created `log_path` (see `pipeline.cli`), so
    everything here may write to both. `started_at` (Unix time, default now)
    is when the command started: a time budget counts from then, start-up
    included, because that is the wall time the user waits.
    """
    with run_start_in_environment(time.time() if started_at is None else started_at):
        return _run(config, log_path, verbose)


@contextlib.contextmanager
def run_start_in_environment(started_at: float) -> Iterator[None]:
    """Tells the in-process Trainer when the run started (its time budget counts from then), for this run only.

    Restored afterwards, so that a later run in the same process that is not
    started here (the TFX CLI's script path) does not count from this one.
    """
    previous = os.environ.get(time_budget.RUN_STARTED_AT_ENV)
    os.environ[time_budget.RUN_STARTED_AT_ENV] = repr(started_at)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(time_budget.RUN_STARTED_AT_ENV, None)
        else:
            os.environ[time_budget.RUN_STARTED_AT_ENV] = previous


def _run(config: RunConfig, log_path: str, verbose: bool) -> int:
    pipeline = local_runner.build_local_pipeline(config)
    run_id = local_runner.new_run_id()
    progress = ComponentProgress(len(pipeline.components), config.metadata_path, config.pipeline_name, run_id)
    print(
        f"visionpipe: {config.pipeline_name}: {config.dataset} from {config.data_dir}, "
        f"model {config.model}, {config.describe_epochs()} (log: {log_path})",
        flush=True,
    )
    started = time.monotonic()
    try:
        with run_logging.captured_run_logs(log_path, [progress], verbose=verbose):
            local_runner.run_pipeline(pipeline, run_id)
    except KeyboardInterrupt:
        where = progress.current_component or "the pipeline"
        errors.fail(
            f"interrupted during {where}; the run did not finish and {config.summary_path} is unchanged; "
            f"running the same command again reuses every component that finished (full log: {log_path})"
        )
        return errors.EXIT_INTERRUPTED
    except Exception as error:  # pylint: disable=broad-except  (report every failure)
        return errors.fail(errors.run_failure(progress.current_component, error, log_path))
    total = time.monotonic() - started

    spec = datasets.get_dataset(config.dataset)
    outcome = run_results.read_outcome(config.metadata_path, config.pipeline_name, run_id, spec.class_names)
    summary = build_summary(config, run_id, outcome, progress.seconds, total)
    atomic_files.write_json_atomically(config.summary_path, summary)
    print_summary(summary, config.summary_path)
    if outcome.pushed_model_dir:
        return EXIT_OK
    if outcome.blessed and outcome.serving_check is not None and not outcome.serving_check.passed:
        return EXIT_NOT_SERVABLE
    return EXIT_NOT_BLESSED
