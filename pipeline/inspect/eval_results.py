"""An Evaluator output, read back through TFMA's own loaders into plain rows.

`tfma.load_eval_result` and `tfma.load_validation_result` are what a notebook
would use, so `visionpipe slices` shows exactly what TFMA shows. They are
lenient in ways a command line must not be: a mismatched TFMA version is
accepted silently, a missing or empty metrics file loads as zero slices, a
missing validations file raises a bare AssertionError, and a truncated record
raises a DataLossError that does not name the file. `load_evaluation` checks
for all of these and raises `EvalResultError`, whose message names the path.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

import tensorflow as tf
import tensorflow_model_analysis as tfma
from google.protobuf import json_format
from tensorflow_model_analysis.version import VERSION as INSTALLED_TFMA_VERSION
from tensorflow_model_analysis.proto import config_pb2, validation_result_pb2
from tensorflow_model_analysis.slicer import slicer_lib

from components.confusion_matrix import CANDIDATE_MODEL_NAMES, evaluated_confusion_matrix
from pipeline import eval_config
from trainer_module import features

EVAL_CONFIG_FILE = "eval_config.json"
METRICS_PATTERN = "metrics*"
VALIDATIONS_PATTERN = "validations*"
OVERALL = "overall"
EXAMPLE_COUNT = "example_count"
DIFF_SUFFIX = "_diff"  # how load_eval_result names candidate-minus-baseline values
CLASS_ID_SUB_KEY = "classId:"  # TFMA's sub key of one-vs-rest (binarized) metrics
TOP_1_SUB_KEY = "topK:1"


class EvalResultError(ValueError):
    """Unusable evaluation output; the message starts with the offending path."""


@dataclasses.dataclass(frozen=True)
class SliceRow:
    """One slice of the candidate model's metrics.

    `slice` is "overall" or "column=value" ("class_name=Coat", "label=3");
    `metrics` holds the scalar metrics; `class_metrics[class_id]` the metrics
    TFMA computed one-vs-rest per class (precision, recall, calibration);
    `baseline_diffs` maps a metric to candidate minus baseline (empty when no
    baseline model was evaluated).
    """

    slice: str
    column: str | None
    value: str | int | float | None
    example_count: int | None
    metrics: dict[str, float]
    baseline_diffs: dict[str, float]
    class_metrics: dict[int, dict[str, float]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Failure:
    """One threshold the candidate missed, with the margin `value - threshold`.

    `bound` says which limit: lower_bound / upper_bound (a value threshold),
    change_absolute / change_relative (vs. the baseline; `value` is then the
    difference or the ratio), or "missing" (TFMA could not check it:
    `message` says why, `value`/`threshold`/`margin` may be None).
    """

    slice: str
    metric: str
    value: float | None
    threshold: float | None
    bound: str
    margin: float | None
    message: str = ""


@dataclasses.dataclass(frozen=True)
class Verdict:
    blessed: bool
    failures: list[Failure]
    # No baseline model: change thresholds were not applied (first blessing).
    rubber_stamp: bool
    # Threshold slices that matched no data (TFMA fails validation for these).
    missing_slices: list[str]


@dataclasses.dataclass(frozen=True)
class Evaluation:
    uri: str
    tfma_version: str
    candidate: str
    baseline: str | None
    rows: list[SliceRow]
    verdict: Verdict
    # confusion_matrix[t][p]: test examples of true class t predicted as p (arg-max),
    # overall slice; None when the evaluation has no MultiClassConfusionMatrixPlot.
    confusion_matrix: list[list[int]] | None = None

    def overall(self) -> SliceRow:
        """The overall slice's row (load_evaluation refuses evaluations without one)."""
        return next(row for row in self.rows if row.slice == OVERALL)

    def metric_names(self) -> list[str]:
        names: dict[str, None] = {}
        for row in self.rows:
            names.update(dict.fromkeys(row.metrics))
        return list(names)


def slice_name(slice_key: Sequence[tuple[str, Any]]) -> str:
    """"overall" for the empty key, else "column=value" joined by ", "."""
    if not slice_key:
        return OVERALL
    return ", ".join(f"{column}={value}" for column, value in slice_key)


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def _read_eval_run(uri: str) -> dict:
    """eval_config.json, checked for the TFMA version that wrote it.

    TFMA only checks that a version is present. Result protos change between
    minor releases (metric naming, sub-keys), so a different major.minor is
    refused rather than shown wrongly.
    """
    path = os.path.join(uri, EVAL_CONFIG_FILE)
    if not tf.io.gfile.exists(path) or tf.io.gfile.isdir(path):
        raise EvalResultError(f"{uri}: not an Evaluator output ({EVAL_CONFIG_FILE} is missing)")
    try:
        with tf.io.gfile.GFile(path, "r") as handle:
            eval_run = json.loads(handle.read())
    except (OSError, tf.errors.OpError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise EvalResultError(f"{path}: unreadable or truncated ({error})") from error
    version = eval_run.get("version") if isinstance(eval_run, dict) else None
    if not isinstance(version, str) or not version:
        raise EvalResultError(f"{path}: no TFMA version recorded (not written by TFMA's Evaluator)")
    installed = INSTALLED_TFMA_VERSION
    if _major_minor(version) != _major_minor(installed):
        raise EvalResultError(
            f"{path}: written by TFMA {version}, but TFMA {installed} is installed; "
            f"read it with TFMA {'.'.join(_major_minor(version))}.x"
        )
    return eval_run


def _model_names(eval_run: dict) -> tuple[str, str | None]:
    """(candidate, baseline) model names: "" alone, "candidate"/"baseline" in TFX."""
    specs = eval_run.get("evalConfig", {}).get("modelSpecs", [])
    candidate = next((spec.get("name", "") for spec in specs if not spec.get("isBaseline")), "")
    baseline = next((spec.get("name", "") for spec in specs if spec.get("isBaseline")), None)
    return candidate, baseline


def _require_files(uri: str, pattern: str, what: str) -> list[str]:
    paths = sorted(tf.io.gfile.glob(os.path.join(uri, pattern)))
    if not paths:
        raise EvalResultError(f"{uri}: no {what} file ({pattern}) in this Evaluator output")
    return paths


def _first_corrupt_record_file(paths: Iterable[str]) -> str | None:
    """The first TFRecord file that does not read to its end (only on the error path)."""
    for path in paths:
        try:
            for _ in tf.compat.v1.python_io.tf_record_iterator(path):
                pass
        except tf.errors.OpError:
            return path
    return None


def _record_files(uri: str) -> list[str]:
    return sorted(path for path in tf.io.gfile.glob(os.path.join(uri, "*")) if not path.endswith(".json"))


def _as_float(metric_value: Any) -> float | None:
    """A metric from load_eval_result's dicts: {"doubleValue": 0.7} or NaN as "NaN".

    Non-scalar metrics (arrays, confusion matrices) have no table cell: None.
    """
    if not isinstance(metric_value, dict):
        return None
    if "doubleValue" in metric_value:
        return float(metric_value["doubleValue"])
    bounded = metric_value.get("boundedValue")
    if isinstance(bounded, dict) and "value" in bounded:
        return float(bounded["value"])
    return None


@dataclasses.dataclass
class _FlatMetrics:
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    diffs: dict[str, float] = dataclasses.field(default_factory=dict)
    class_metrics: dict[int, dict[str, float]] = dataclasses.field(default_factory=dict)


def _class_id(sub_key: str) -> int | None:
    """3 for TFMA's one-vs-rest sub keys "classId:3" and "classId:3 topK:1"; else None.

    topK:1 (the class counts as predicted when it is the arg-max) is how the
    pipeline computes per-class precision and recall, so it is the same notion
    of "class 3" as the plain key.
    """
    first, *rest = sub_key.split() or [""]
    prefix, _, number = first.partition(CLASS_ID_SUB_KEY)
    if prefix or not number.isdigit() or rest not in ([], [TOP_1_SUB_KEY]):
        return None
    return int(number)


def _flat_metrics(by_output: dict, with_diffs: bool) -> _FlatMetrics:
    """{output: {sub_key: {name: value}}} -> scalar metrics, diffs, per-class metrics.

    Labels are the metric name, plus "[sub_key]" (e.g. "[topK:2]") and an
    "output/" prefix where TFMA has them; "classId:N" sub keys go to
    `class_metrics[N]` instead. With a baseline, "<name>_diff" entries are the
    differences (per-class differences are left out).
    """
    flat = _FlatMetrics()
    for output_name, by_sub_key in (by_output or {}).items():
        for sub_key, named_values in by_sub_key.items():
            class_id = _class_id(sub_key)
            for name, metric_value in named_values.items():
                value = _as_float(metric_value)
                if value is None:
                    continue
                is_diff = with_diffs and name.endswith(DIFF_SUFFIX)
                label = (name[: -len(DIFF_SUFFIX)] if is_diff else name).replace("\n", " ")
                if output_name:
                    label = f"{output_name}/{label}"
                if class_id is not None:
                    if not is_diff:
                        flat.class_metrics.setdefault(class_id, {})[label] = value
                    continue
                if sub_key:
                    label = f"{label}[{sub_key}]"
                (flat.diffs if is_diff else flat.metrics)[label] = value
    return flat


def _slice_row(slice_key: tuple, by_output: dict, with_diffs: bool) -> SliceRow:
    flat = _flat_metrics(by_output, with_diffs)
    count = flat.metrics.pop(EXAMPLE_COUNT, None)
    flat.diffs.pop(EXAMPLE_COUNT, None)  # both models see the same examples: always 0
    column, value = slice_key[0] if len(slice_key) == 1 else (None, None)
    return SliceRow(
        slice=slice_name(slice_key),
        column=column,
        value=value,
        example_count=None if count is None or math.isnan(count) else int(round(count)),
        metrics=flat.metrics,
        baseline_diffs=flat.diffs,
        class_metrics=dict(sorted(flat.class_metrics.items())),
    )


def _load_result(uri: str, candidate: str) -> Any:
    """tfma.load_eval_result, with its errors turned into EvalResultError naming the file."""
    _require_files(uri, METRICS_PATTERN, "metrics")
    try:
        return tfma.load_eval_result(uri, model_name=candidate or None)
    except tf.errors.OpError as error:  # DataLossError: truncated or corrupted record
        path = _first_corrupt_record_file(_record_files(uri)) or uri
        raise EvalResultError(f"{path}: truncated or corrupted ({error.message})") from error
    except json_format.ParseError as error:  # e.g. fields this TFMA does not know
        raise EvalResultError(f"{os.path.join(uri, EVAL_CONFIG_FILE)}: {error}") from error


def _slice_rows(uri: str, slicing_metrics: Sequence[tuple[tuple, dict]], with_diffs: bool) -> list[SliceRow]:
    """One row per slice; an empty or overall-less result is refused (the metrics file is cut short)."""
    # Cross-slice comparisons (not configured by this pipeline) have no row.
    rows = [
        _slice_row(slice_key, by_output, with_diffs)
        for slice_key, by_output in slicing_metrics
        if not slicer_lib.is_cross_slice_key(slice_key)
    ]
    if rows and any(row.slice == OVERALL for row in rows):
        return rows
    metrics_files = _require_files(uri, METRICS_PATTERN, "metrics")
    where = metrics_files[0] if len(metrics_files) == 1 else uri
    if not rows:
        raise EvalResultError(f"{where}: no metrics in this file (empty or truncated)")
    raise EvalResultError(f"{where}: no overall slice (truncated?)")


def _failure_parts(
    slice_label: str, failure: validation_result_pb2.ValidationFailure, rows_by_slice: dict[str, SliceRow]
) -> list[Failure]:
    """What a ValidationFailure missed, and by how much.

    TFMA leaves `message` empty for ordinary misses, so the margin is computed
    here from the threshold it recorded (the one actually applied).
    """
    key = failure.metric_key
    name = key.name + (DIFF_SUFFIX if key.is_diff else "")
    if failure.message or not failure.HasField("metric_value"):
        message = " ".join(failure.message.split()) or "metric not computed"
        return [Failure(slice_label, name, None, None, "missing", None, message)]
    value = float(failure.metric_value.double_value.value)
    threshold = failure.metric_threshold
    parts: list[Failure] = []
    if threshold.HasField("value_threshold"):
        bounds = threshold.value_threshold
        # NaN fails every bound; report it against whichever bound exists.
        if bounds.HasField("lower_bound") and not value >= bounds.lower_bound.value:
            limit = bounds.lower_bound.value
            parts.append(Failure(slice_label, name, value, limit, "lower_bound", value - limit))
        if bounds.HasField("upper_bound") and not value <= bounds.upper_bound.value:
            limit = bounds.upper_bound.value
            parts.append(Failure(slice_label, name, value, limit, "upper_bound", value - limit))
    if threshold.HasField("change_threshold"):
        change = threshold.change_threshold
        higher = change.direction == config_pb2.MetricDirection.HIGHER_IS_BETTER

        def missed(measured: float, limit: float) -> bool:
            return not (measured >= limit if higher else measured <= limit)

        if change.HasField("absolute") and missed(value, change.absolute.value):
            limit = change.absolute.value
            parts.append(Failure(slice_label, name, value, limit, "change_absolute", value - limit))
        if change.HasField("relative"):
            row = rows_by_slice.get(slice_label)
            candidate_value = row.metrics.get(key.name) if row else None
            baseline_value = None if candidate_value is None else candidate_value - value
            ratio = value / baseline_value if baseline_value else float("nan")
            if missed(ratio, change.relative.value):
                limit = change.relative.value
                parts.append(Failure(slice_label, name, ratio, limit, "change_relative", ratio - limit))
    return parts or [Failure(slice_label, name, value, None, "unknown", None, failure.message)]


def _load_verdict(uri: str, rows: Sequence[SliceRow]) -> Verdict:
    paths = _require_files(uri, VALIDATIONS_PATTERN, "validations")
    try:
        validation = tfma.load_validation_result(uri)
    except tf.errors.OpError as error:
        raise EvalResultError(f"{paths[0]}: truncated or corrupted ({error.message})") from error
    except AssertionError as error:  # TFMA asserts exactly one ValidationResult record
        raise EvalResultError(f"{paths[0]}: no validation result in this file (empty or truncated)") from error
    rows_by_slice = {row.slice: row for row in rows}
    failures = [
        part
        for per_slice in validation.metric_validations_per_slice
        for failure in per_slice.failures
        for part in _failure_parts(
            slice_name(slicer_lib.deserialize_slice_key(per_slice.slice_key))
            if not per_slice.HasField("cross_slice_key")
            else "cross slice",
            failure,
            rows_by_slice,
        )
    ]
    missing = [
        slice_name([(key, "*") for key in spec.feature_keys] + sorted(spec.feature_values.items()))
        for spec in validation.missing_slices
    ]
    return Verdict(
        blessed=bool(validation.validation_ok),
        failures=failures,
        rubber_stamp=bool(validation.rubber_stamp),
        missing_slices=missing,
    )


def load_evaluation(uri: str) -> Evaluation:
    """Reads one Evaluator output folder; raises EvalResultError naming the bad path.

    `uri` may be any filesystem TensorFlow reads (a local path, gs://, s3://
    with tensorflow-io): everything goes through tf.io.gfile, as in TFMA.
    """
    if not tf.io.gfile.isdir(uri):
        raise EvalResultError(f"{uri}: no such directory")
    eval_run = _read_eval_run(uri)
    candidate, baseline = _model_names(eval_run)
    result = _load_result(uri, candidate)
    rows = _slice_rows(uri, result.slicing_metrics, with_diffs=baseline is not None)
    return Evaluation(
        uri=uri,
        tfma_version=eval_run["version"],
        candidate=candidate,
        baseline=baseline,
        rows=rows,
        verdict=_load_verdict(uri, rows),
        confusion_matrix=evaluated_confusion_matrix(uri),
    )


def read_accuracy(
    evaluation_uri: str, class_names: Sequence[str]
) -> tuple[float | None, dict[str, float]]:
    """Overall and per-label accuracy of the candidate model, from the metrics file alone.

    The one reader of a run's test accuracy (run summary, report trend). Lighter
    than `load_evaluation`: `tfma.load_metrics` reads only the metrics records,
    so an old run's point costs no validation or plot loading.
    """
    overall: float | None = None
    per_class: dict[str, float] = {}
    for metrics in tfma.load_metrics(evaluation_uri):
        slice_key = {
            single.column: single.int64_value for single in metrics.slice_key.single_slice_keys
        }
        for entry in metrics.metric_keys_and_values:
            key = entry.key
            if key.name != eval_config.ACCURACY_KEY or key.is_diff or key.model_name not in CANDIDATE_MODEL_NAMES:
                continue
            value = float(entry.value.double_value.value)
            if not slice_key:
                overall = value
            elif features.LABEL_KEY in slice_key and 0 <= slice_key[features.LABEL_KEY] < len(class_names):
                per_class[class_names[slice_key[features.LABEL_KEY]]] = value
    return overall, dict(sorted(per_class.items(), key=lambda item: class_names.index(item[0])))
