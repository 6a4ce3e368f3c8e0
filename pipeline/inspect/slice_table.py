"""The slice table: what `visionpipe slices` prints and the report shows, as plain cells.

Rows: the overall slice first, then the other slices. The pipeline slices by
both `label` and `class_name`, which are the same examples keyed by id and by
name; the table shows the class names and leaves the `label=N` duplicates to
`--json` (which lists every slice), so a 10-class table has 11 rows, not 21.
The terminal table, the JSON and the HTML report all render this one model,
so they show the same rows, cells and verdict lines.
"""

from __future__ import annotations

import math
import os
from typing import Any

from pipeline import configs
from pipeline.inspect import eval_results
from pipeline.inspect.eval_results import Evaluation, Failure, SliceRow
from trainer_module import features


SORT_WORST = "worst"
LABEL_COLUMN = features.LABEL_KEY
CLASS_NAME_COLUMN = features.CLASS_NAME_KEY


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


def cells(evaluation: Evaluation, rows: list[SliceRow], metric: str) -> tuple[list[str], list[list[str]], int]:
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


def class_label(class_id: int, class_names: list[str] | None) -> str:
    return class_names[class_id] if class_names and class_id < len(class_names) else f"class {class_id}"


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
