"""`visionpipe slices`: per-slice metrics and the blessing verdict of an Evaluator run.

Renders `pipeline.inspect.slice_table` as aligned text or as JSON; finds the
evaluation (the newest in an output dir's ML Metadata, or `--eval-dir`).
"""

from __future__ import annotations

import json
import math
import os

from pipeline import configs
from pipeline.plumbing import errors
from pipeline.inspect import eval_results, evaluator_runs, slice_table
from pipeline.inspect.eval_results import Evaluation, EvalResultError, SliceRow
from pipeline.inspect.serving_verdicts import ServingVerdict, serving_verdict



def _aligned(header: list[str], body: list[list[str]]) -> list[str]:
    """Header and rows as text columns: the first left-aligned, numbers right-aligned."""
    widths = [max(len(cells[index]) for cells in [header, *body]) for index in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:])]
        return "  ".join([first, *rest]).rstrip()

    return [line(cells) for cells in [header, *body]]


def render_table(
    evaluation: Evaluation, rows: list[SliceRow], metric: str, serving: ServingVerdict | None = None
) -> str:
    header, body, hidden = slice_table.cells(evaluation, rows, metric)
    with_diffs = evaluation.baseline is not None
    models = f"{evaluation.candidate or 'model'} vs {evaluation.baseline}" if with_diffs else "no baseline model"
    lines = [f"evaluation: {evaluation.uri} (TFMA {evaluation.tfma_version}; {models})", ""]
    lines += _aligned(header, body)
    if hidden:
        lines.append(f"({hidden} label=N slices not shown: the same classes by id; --json lists them)")
    lines += render_class_metrics(evaluation)
    lines += ["", *slice_table.render_verdict(evaluation.verdict)]
    if serving is not None:
        lines.append(f"serving check ({serving.component}): {serving.headline()}")
    return "\n".join(lines)


def render_class_metrics(evaluation: Evaluation) -> list[str]:
    """The overall slice's one-vs-rest metrics, one line per class (none: no lines)."""
    header, body = slice_table.class_metric_table(evaluation, slice_table.class_names_for(evaluation.uri))
    if not body:
        return []
    return ["", "per class, one-vs-rest (overall slice):", *_aligned(header, body)]


def _json_number(value: float | None) -> float | str | None:
    """Floats as JSON allows them; NaN/±inf as "NaN"/"Infinity"/"-Infinity" like protobuf's JSON."""
    if value is None or math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def to_json(evaluation: Evaluation, rows: list[SliceRow], metric: str, serving: ServingVerdict | None = None) -> dict:
    def numbers(values: dict[str, float]) -> dict[str, float | str | None]:
        return {name: _json_number(value) for name, value in values.items()}

    verdict = evaluation.verdict
    class_names = slice_table.class_names_for(evaluation.uri)
    return {
        "evaluation_uri": evaluation.uri,
        "tfma_version": evaluation.tfma_version,
        "candidate_model": evaluation.candidate,
        "baseline_model": evaluation.baseline,
        "metric": metric,
        "slices": [
            {
                "slice": row.slice,
                "column": row.column,
                "value": row.value,
                "example_count": row.example_count,
                "metrics": numbers(row.metrics),
                "baseline_diffs": numbers(row.baseline_diffs) if evaluation.baseline is not None else None,
                "class_metrics": {
                    slice_table.class_label(class_id, class_names): numbers(values)
                    for class_id, values in row.class_metrics.items()
                },
            }
            for row in rows
        ],
        # Overall slice: rows are true classes, columns arg-max predictions.
        "confusion_matrix": evaluation.confusion_matrix,
        "validation": {
            "blessed": verdict.blessed,
            "rubber_stamp": verdict.rubber_stamp,
            "missing_slices": verdict.missing_slices,
            "failures": [
                {
                    "slice": failure.slice,
                    "metric": failure.metric,
                    "value": _json_number(failure.value),
                    "threshold": _json_number(failure.threshold),
                    "bound": failure.bound,
                    "by": _json_number(failure.margin),
                    "message": failure.message,
                }
                for failure in verdict.failures
            ],
        },
        # The evaluated model's serving check (from ML Metadata; null with --eval-dir or if none ran).
        "serving_check": serving.to_json() if serving is not None else None,
    }


def find_evaluation(output_dir: str | None, eval_dir: str | None) -> tuple[str, ServingVerdict | None]:
    """--eval-dir as given, else the newest Evaluator output in <output-dir>'s ML Metadata,
    with the serving check of the model it evaluated (none is looked up for --eval-dir)."""
    if eval_dir:
        return eval_dir, None
    try:
        metadata_path = os.path.join(output_dir or configs.DEFAULT_OUTPUT_DIR, configs.METADATA_FILE)
        run = evaluator_runs.latest_evaluator_run(metadata_path)
        store = evaluator_runs.open_metadata_read_only(metadata_path)
    except evaluator_runs.NoEvaluationError as error:
        raise EvalResultError(str(error)) from error
    return run.evaluation_uri, serving_verdict(store, run.model_uri)


def slices(output_dir: str | None, eval_dir: str | None, metric: str, sort: str | None, as_json: bool) -> int:
    """Prints the slice table (or JSON); exit 0 whether or not the model was blessed."""
    try:
        uri, serving = find_evaluation(output_dir, eval_dir)
        evaluation = eval_results.load_evaluation(uri)
    except EvalResultError as error:
        return errors.fail(str(error))
    if metric not in evaluation.metric_names():
        available = ", ".join(evaluation.metric_names()) or "none"
        return errors.fail(f"{evaluation.uri}: no metric {metric!r} in this evaluation (available: {available})")
    rows = slice_table.ordered_rows(evaluation, metric, sort)
    if as_json:
        print(json.dumps(to_json(evaluation, rows, metric, serving), indent=2, allow_nan=False))
    else:
        print(render_table(evaluation, rows, metric, serving))
    return 0
