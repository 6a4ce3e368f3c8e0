"""What `visionpipe report` shows, gathered before any HTML is written.

Kept apart from the renderer (pipeline/inspect/report_html.py) so that the renderer
is a pure function of this data (tests build it by hand), while the gathering
(ML Metadata, TFMA's loaders, running the model over the test split) is
tested on a real pipeline run.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from collections.abc import Callable
from typing import Any

from pipeline import configs
from pipeline.inspect import eval_results, evaluator_runs, worst_examples
from pipeline.inspect.eval_results import Evaluation
from pipeline.inspect.evaluator_runs import EvaluatorRun
from pipeline.inspect.serving_verdicts import ServingVerdict, serving_verdict
from pipeline.inspect.worst_examples import WorstExample


@dataclasses.dataclass(frozen=True)
class TrendPoint:
    """One evaluated model of this pipeline, oldest first in `ReportData.trend`."""

    model_label: str  # e.g. "Trainer/model/12": where the model lives in the pipeline root
    evaluated_at: str  # ISO 8601 (UTC, seconds)
    accuracy: float  # overall sparse_categorical_accuracy on the test split
    blessed: bool


@dataclasses.dataclass(frozen=True)
class ReportData:
    """Everything one report shows.

    `summary` is run_summary.json as written by `visionpipe run` for this
    evaluation ({} when the newest summary describes another run);
    `scored_examples` is how many test examples `worst_examples` was chosen
    from; `notes` are things the reader should know (an old evaluation that
    could not be read, a summary of another run).
    """

    pipeline_name: str
    summary: dict[str, Any]
    evaluation: Evaluation
    class_names: list[str]
    worst_examples: list[WorstExample]
    scored_examples: int
    trend: list[TrendPoint]
    notes: list[str] = dataclasses.field(default_factory=list)
    serving: ServingVerdict | None = None  # the evaluated model's serving check, if one ran

    @property
    def title(self) -> str:
        return f"visionpipe report: {self.pipeline_name}"


def model_label(model_uri: str | None) -> str:
    """"Trainer/model/12": the last three parts of a Model artifact's URI."""
    if not model_uri:
        return "unknown model"
    return "/".join(os.path.normpath(model_uri).split(os.sep)[-3:])


def _iso_time(milliseconds: int) -> str:
    moment = datetime.datetime.fromtimestamp(milliseconds / 1000, tz=datetime.timezone.utc)
    return moment.isoformat(timespec="seconds")


def _summary_of(output_dir: str, evaluation_uri: str) -> tuple[dict[str, Any], list[str]]:
    """run_summary.json if it describes this evaluation, else {} and a note why."""
    path = os.path.join(output_dir, configs.SUMMARY_FILE)
    if not os.path.isfile(path):
        return {}, [f"{path} not found: run summary and component timings are not shown"]
    try:
        with open(path, encoding="utf-8") as handle:
            summary = json.load(handle)
    except (OSError, ValueError) as error:
        return {}, [f"{path} unreadable ({error}): run summary and component timings are not shown"]
    if not isinstance(summary, dict) or summary.get("evaluation_uri") != evaluation_uri:
        return {}, [f"{path} describes another run: run summary and component timings are not shown"]
    return summary, []


def accuracy_trend(
    runs: list[EvaluatorRun], class_names: list[str]
) -> tuple[list[TrendPoint], list[str]]:
    """Overall test accuracy of every model this pipeline evaluated, oldest first."""
    points, notes = [], []
    for run in runs:
        try:
            accuracy, _ = eval_results.read_accuracy(run.evaluation_uri, class_names)
        except Exception as error:  # noqa: BLE001 - an old, deleted or broken run only loses its point
            notes.append(f"{run.evaluation_uri}: left out of the trend ({type(error).__name__})")
            continue
        if accuracy is None:
            notes.append(f"{run.evaluation_uri}: left out of the trend (no accuracy recorded)")
            continue
        points.append(TrendPoint(model_label(run.model_uri), _iso_time(run.finished_at_ms), accuracy, run.blessed))
    return points, notes


def gather(
    output_dir: str, worst_count: int = configs.DEFAULT_WORST_COUNT, progress: Callable[[str], None] = print
) -> ReportData:
    """Reads everything about the newest Evaluator run in `output_dir`.

    Raises NoEvaluationError / EvalResultError / WorstExamplesError, each
    naming the path that is missing or broken.
    """
    metadata_path = os.path.join(output_dir, configs.METADATA_FILE)
    runs = evaluator_runs.evaluator_runs(metadata_path)
    latest = evaluator_runs.newest_run(runs, metadata_path)
    progress(f"evaluation: {latest.evaluation_uri}")
    evaluation = eval_results.load_evaluation(latest.evaluation_uri)
    spec = configs.dataset_of_pipeline(latest.pipeline_name)
    if spec is None:
        raise eval_results.EvalResultError(
            f"{latest.evaluation_uri}: written by pipeline {latest.pipeline_name!r}, not a visionpipe dataset pipeline"
        )
    class_names = list(spec.class_names)
    summary, notes = _summary_of(output_dir, latest.evaluation_uri)
    if not latest.model_uri or not latest.test_split_uri:
        raise evaluator_runs.NoEvaluationError(f"{latest.evaluation_uri}: ML Metadata records no model or test split for it")
    progress(f"scoring the test split with {model_label(latest.model_uri)} for the worst-classified images ...")
    worst, scored = worst_examples.worst_examples(latest.model_uri, latest.test_split_uri, class_names, worst_count)
    progress(f"scored {scored:,} test examples")
    trend, trend_notes = accuracy_trend([run for run in runs if run.pipeline_name == latest.pipeline_name], class_names)
    return ReportData(
        pipeline_name=latest.pipeline_name,
        summary=summary,
        evaluation=evaluation,
        class_names=class_names,
        worst_examples=worst,
        scored_examples=scored,
        trend=trend,
        notes=notes + trend_notes,
        serving=serving_verdict(evaluator_runs.open_metadata_read_only(metadata_path), latest.model_uri),
    )
