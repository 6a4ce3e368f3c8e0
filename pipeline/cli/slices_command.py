"""`visionpipe slices`: per-slice metrics and the blessing verdict of an Evaluator run.

Rows: the overall slice first, then the other slices. The pipeline slices by
both `label` and `class_name`, which are the same examples keyed by id and by
name; the table shows the class names and leaves the `label=N` duplicates to
`--json` (which lists every slice), so a 10-class table has 11 rows, not 21.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from pipeline import configs
from pipeline.plumbing import errors
from pipeline.inspect import eval_results, evaluator_runs
from pipeline.inspect.eval_results import Evaluation, EvalResultError, Failure, SliceRow
from pipeline.inspect.serving_verdicts import ServingVerdict, serving_verdict

SORT_WORST = "worst"
LABEL_COLUMN = "label"
CLASS_NAME_COLUMN = "class_name"


def class_names_for(uri: str) -> list[str] | None:
    """The class names of the dataset whose pipeline wrote this evaluation, if known.

    Evaluator outputs live under <pipeline root>/<pipeline name>/Evaluator/...,
    and each dataset has its own pipeline name; any other location gives None
    (classes are then shown by id).
    """
    for part in os.path.normpath(uri).split(os.sep):
        spec = configs.dataset_of_pipeline(part)
        if spec is not None:
            return list(spec.class_names)
    return None


def _value_order(value: Any) -> tuple:
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


def ordered_rows(evaluation: Evaluation, metric: str, sort: str | None) -> list[SliceRow]:
    """Overall first; then by slice (numbers numerically), or worst `metric` first
    within each slice column (classes, then prediction outcomes).

    NaN (a class absent from the test split) sorts last under --sort worst:
    it is no measurement, not a bad one.
    """
    overall = [row for row in evaluation.rows if row.slice == eval_results.OVERALL]
    others = sorted(
        (row for row in evaluation.rows if row.slice != eval_results.OVERALL),
        key=lambda row: (row.column or "", _value_order(row.value), row.slice),
    )
    if sort == SORT_WORST:
        def badness(row: SliceRow) -> tuple[str, int, float]:
            value = row.metrics.get(metric, math.nan)
            return (row.column or "", *((1, 0.0) if math.isnan(value) else (0, value)))

        others.sort(key=badness)  # within each slice column; stable: ties keep slice order
    return overall + others


def table_rows(rows: list[SliceRow]) -> tuple[list[SliceRow], int]:
    """The rows to print, and how many `label=N` rows were left out as duplicates."""
    if not any(row.column == CLASS_NAME_COLUMN for row in rows):
        return rows, 0
    kept = [row for row in rows if row.column != LABEL_COLUMN]
    return kept, len(rows) - len(kept)


def format_number(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "NaN"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def metric_columns(evaluation: Evaluation, metric: str) -> list[str]:
    """The chosen metric first, the others in TFMA's order."""
    names = evaluation.metric_names()
    return [metric] + [name for name in names if name != metric]


def _aligned(header: list[str], body: list[list[str]]) -> list[str]:
    """Header and rows as text columns: the first left-aligned, numbers right-aligned."""
    widths = [max(len(cells[index]) for cells in [header, *body]) for index in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:])]
        return "  ".join([first, *rest]).rstrip()

    return [line(cells) for cells in [header, *body]]


def slice_table(evaluation: Evaluation, rows: list[SliceRow], metric: str) -> tuple[list[str], list[list[str]], int]:
    """Header, formatted cells per shown row, and how many label=N rows were folded away.

    Shared by the terminal table and the HTML report, so both show the same cells.
    """
    metrics = metric_columns(evaluation, metric)
    with_diffs = evaluation.baseline is not None
    header = ["slice", "examples", *metrics]
    if with_diffs:
        header += [f"{name} vs baseline" for name in metrics]
    shown, hidden = table_rows(rows)
    body = []
    for row in shown:
        cells = [row.slice, "-" if row.example_count is None else str(row.example_count)]
        cells += [format_number(row.metrics.get(name)) for name in metrics]
        if with_diffs:
            cells += [format_number(row.baseline_diffs.get(name), signed=True) for name in metrics]
        body.append(cells)
    return header, body, hidden


def class_metric_table(evaluation: Evaluation, class_names: list[str] | None) -> tuple[list[str], list[list[str]]]:
    """The overall slice's one-vs-rest metrics: header and one row per class (none: no rows)."""
    overall = evaluation.overall()
    names = list(dict.fromkeys(name for values in overall.class_metrics.values() for name in values))
    body = [
        [class_label(class_id, class_names), *(format_number(values.get(name)) for name in names)]
        for class_id, values in overall.class_metrics.items()
    ]
    return ["class", *names], body


def render_table(
    evaluation: Evaluation, rows: list[SliceRow], metric: str, serving: ServingVerdict | None = None
) -> str:
    header, body, hidden = slice_table(evaluation, rows, metric)
    with_diffs = evaluation.baseline is not None
    models = f"{evaluation.candidate or 'model'} vs {evaluation.baseline}" if with_diffs else "no baseline model"
    lines = [f"evaluation: {evaluation.uri} (TFMA {evaluation.tfma_version}; {models})", ""]
    lines += _aligned(header, body)
    if hidden:
        lines.append(f"({hidden} label=N slices not shown: the same classes by id; --json lists them)")
    lines += render_class_metrics(evaluation)
    lines += ["", *render_verdict(evaluation.verdict)]
    if serving is not None:
        lines.append(f"serving check ({serving.component}): {serving.headline()}")
    return "\n".join(lines)


def class_label(class_id: int, class_names: list[str] | None) -> str:
    return class_names[class_id] if class_names and class_id < len(class_names) else f"class {class_id}"


def render_class_metrics(evaluation: Evaluation) -> list[str]:
    """The overall slice's one-vs-rest metrics, one line per class (none: no lines)."""
    header, body = class_metric_table(evaluation, class_names_for(evaluation.uri))
    if not body:
        return []
    return ["", "per class, one-vs-rest (overall slice):", *_aligned(header, body)]


_BOUND_TEXT = {
    "lower_bound": ("below", "lower bound"),
    "upper_bound": ("above", "upper bound"),
    "change_absolute": ("beyond", "allowed change vs baseline"),
    "change_relative": ("beyond", "allowed relative change vs baseline"),
}


def describe_failure(failure: Failure) -> str:
    """"overall: sparse_categorical_accuracy = 0.7083, below lower bound 0.9500 by 0.2417"."""
    where = f"{failure.slice}: {failure.metric}"
    if failure.bound not in _BOUND_TEXT or failure.value is None or failure.threshold is None:
        detail = failure.message or "failed"
        value = "" if failure.value is None else f" = {format_number(failure.value)}"
        return f"{where}{value}: {detail}"
    side, bound = _BOUND_TEXT[failure.bound]
    margin = "NaN" if failure.margin is None or math.isnan(failure.margin) else f"{abs(failure.margin):.4f}"
    signed = failure.bound.startswith("change")
    return (
        f"{where} = {format_number(failure.value, signed)}, {side} {bound} "
        f"{format_number(failure.threshold, signed)} by {margin}"
    )


def render_verdict(verdict: eval_results.Verdict) -> list[str]:
    lines = [f"validation: {'BLESSED' if verdict.blessed else 'NOT BLESSED'}"]
    lines += [f"  failed: {describe_failure(failure)}" for failure in verdict.failures]
    lines += [f"  failed: threshold slice {name} matched no examples" for name in verdict.missing_slices]
    if verdict.rubber_stamp:
        lines.append("  (no baseline model: change thresholds were not applied)")
    return lines


def _json_number(value: float | None) -> float | str | None:
    """Floats as JSON allows them; NaN/±inf as "NaN"/"Infinity"/"-Infinity" like protobuf's JSON."""
    if value is None or math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def to_json(evaluation: Evaluation, rows: list[SliceRow], metric: str, serving: ServingVerdict | None = None) -> dict:
    def numbers(values: dict[str, float]) -> dict[str, float | str | None]:
        return {name: _json_number(value) for name, value in values.items()}

    verdict = evaluation.verdict
    class_names = class_names_for(evaluation.uri)
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
                    class_label(class_id, class_names): numbers(values)
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
    rows = ordered_rows(evaluation, metric, sort)
    if as_json:
        print(json.dumps(to_json(evaluation, rows, metric, serving), indent=2, allow_nan=False))
    else:
        print(render_table(evaluation, rows, metric, serving))
    return 0
