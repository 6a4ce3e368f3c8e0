"""`visionpipe slices` on a real TFMA evaluation, and on every kind of broken one.

The module fixture runs TFMA itself (tests/tfma_evaluation.py: model-free,
with the pipeline's own EvalConfig and extractors), so the files are exactly
what the Evaluator writes, and the expected numbers are computed here with numpy.
The end-to-end tests (tests/test_end_to_end.py) cover Evaluator output from a
full pipeline, with a baseline model.
"""

from __future__ import annotations

import json
import math
import os
import shutil

import numpy as np
import pytest

from pipeline.cli import slices_command
from pipeline.inspect import slice_table
from pipeline.inspect.eval_results import Evaluation, Failure, SliceRow, Verdict
from tests.test_cli import run_cli
from tests.tfma_evaluation import CLASS_NAMES, synthetic_predictions, write_evaluation

THRESHOLD = 0.95  # out of reach: the evaluation is NOT blessed
METRIC = "sparse_categorical_accuracy"


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory) -> tuple[str, dict]:
    """A TFMA evaluation folder, and the accuracies it must contain."""
    labels, probabilities = synthetic_predictions()
    output = str(tmp_path_factory.mktemp("tfma") / "evaluation")
    write_evaluation(output, labels, probabilities, THRESHOLD)
    predicted = probabilities.argmax(axis=1)
    correct = predicted == labels
    top_2 = (np.argsort(-probabilities, axis=1)[:, :2] == labels[:, None]).any(axis=1)
    expected = {
        "overall": float(correct.mean()),
        "top_2": float(top_2.mean()),
        "correct": int(correct.sum()),
        "per_class_metrics": {
            c: {
                "precision": float((correct & (predicted == c)).sum() / max((predicted == c).sum(), 1)),
                "recall": float((correct & (labels == c)).sum() / (labels == c).sum()),
                "calibration": float(probabilities[:, c].sum() / (labels == c).sum()),
            }
            for c in range(len(CLASS_NAMES))
        },
        "per_class": {CLASS_NAMES[c]: float(correct[labels == c].mean()) for c in range(len(CLASS_NAMES))},
        "counts": {CLASS_NAMES[c]: int((labels == c).sum()) for c in range(len(CLASS_NAMES))},
        "confusion": np.histogram2d(labels, predicted, bins=len(CLASS_NAMES), range=[[0, 10], [0, 10]])[0],
    }
    return output, expected


SLICE_NAMES = ["overall"] + [f"class_name={name}" for name in CLASS_NAMES]


def table_rows(out: str) -> list[tuple[str, list[str]]]:
    """(slice, cells) per table row; class names may hold spaces ("Ankle boot")."""
    rows = []
    for line in out.splitlines():
        names = [name for name in SLICE_NAMES if line.startswith(name + " ")]
        if names:
            name = max(names, key=len)
            rows.append((name, line[len(name):].split()))
    return rows


def test_table_lists_overall_then_each_class_by_name_and_the_failed_threshold(evaluation, capsys):
    uri, expected = evaluation
    code, out, err = run_cli(capsys, "slices", "--eval-dir", uri)
    assert code == 0, err
    rows = dict(table_rows(out))
    assert list(rows) == ["overall"] + sorted(SLICE_NAMES[1:])
    assert rows["overall"][:2] == ["200", f"{expected['overall']:.4f}"]
    for name in CLASS_NAMES:
        assert rows[f"class_name={name}"][:2] == [str(expected["counts"][name]), f"{expected['per_class'][name]:.4f}"]
    assert "(10 label=N slices not shown" in out and "no baseline model" in out
    assert "validation: NOT BLESSED" in out
    margin = THRESHOLD - expected["overall"]
    assert (
        f"failed: overall: {METRIC} = {expected['overall']:.4f}, below lower bound 0.9500 by {margin:.4f}" in out
    )


def test_sort_worst_puts_the_weakest_class_first(evaluation, capsys):
    uri, expected = evaluation
    code, out, _ = run_cli(capsys, "slices", "--eval-dir", uri, "--sort", "worst")
    assert code == 0
    names = [name.removeprefix("class_name=") for name, _ in table_rows(out)]
    assert names[0] == "overall"
    accuracies = [expected["per_class"][name] for name in names[1:]]
    assert accuracies == sorted(accuracies) and len(names) == 11


def test_json_has_every_slice_and_the_failure_margin(evaluation, capsys):
    uri, expected = evaluation
    code, out, _ = run_cli(capsys, "slices", "--eval-dir", uri, "--json")
    assert code == 0
    result = json.loads(out)
    assert result["evaluation_uri"] == uri and result["baseline_model"] is None
    by_name = {entry["slice"]: entry for entry in result["slices"]}
    assert len(by_name) == 23  # overall, 10 class names, 10 labels (the table folds these), 2 outcomes
    assert by_name["overall"]["metrics"][METRIC] == pytest.approx(expected["overall"])
    for index, name in enumerate(CLASS_NAMES):
        for key in (f"class_name={name}", f"label={index}"):
            assert by_name[key]["metrics"][METRIC] == pytest.approx(expected["per_class"][name])
            assert by_name[key]["example_count"] == expected["counts"][name]
    assert by_name["label=3"]["column"] == "label" and by_name["label=3"]["value"] == 3
    validation = result["validation"]
    assert validation["blessed"] is False
    [failure] = validation["failures"]
    assert failure["slice"] == "overall" and failure["metric"] == METRIC
    assert failure["bound"] == "lower_bound" and failure["threshold"] == pytest.approx(THRESHOLD)
    assert failure["by"] == pytest.approx(expected["overall"] - THRESHOLD)


def test_top_2_accuracy_and_one_vs_rest_metrics_per_class(evaluation, capsys):
    uri, expected = evaluation
    code, out, _ = run_cli(capsys, "slices", "--eval-dir", uri, "--json")
    assert code == 0
    overall = json.loads(out)["slices"][0]
    assert overall["metrics"]["sparse_top_k_categorical_accuracy"] == pytest.approx(expected["top_2"])
    # Outside a pipeline's folder the classes have no names: "class N".
    assert list(overall["class_metrics"]) == [f"class {c}" for c in range(len(CLASS_NAMES))]
    for c, values in expected["per_class_metrics"].items():
        assert overall["class_metrics"][f"class {c}"] == pytest.approx(values, rel=1e-5)
    code, out, _ = run_cli(capsys, "slices", "--eval-dir", uri)
    block = out.split("per class, one-vs-rest (overall slice):\n")[1].split("\n\n")[0].splitlines()
    assert block[0].split() == ["class", "precision", "recall", "calibration"]
    assert block[4].split() == ["class", "3", *(f"{expected['per_class_metrics'][3][name]:.4f}"
                                                for name in ("precision", "recall", "calibration"))]


def test_json_has_the_confusion_matrix_of_the_overall_slice(evaluation, capsys):
    uri, expected = evaluation
    code, out, _ = run_cli(capsys, "slices", "--eval-dir", uri, "--json")
    assert code == 0
    matrix = json.loads(out)["confusion_matrix"]
    assert matrix == expected["confusion"].astype(int).tolist() and sum(map(sum, matrix)) == 200


def test_prediction_outcome_slices_split_the_test_set_into_right_and_wrong(evaluation, capsys):
    uri, expected = evaluation
    code, out, _ = run_cli(capsys, "slices", "--eval-dir", uri, "--json")
    assert code == 0
    by_name = {entry["slice"]: entry for entry in json.loads(out)["slices"]}
    right, wrong = by_name["prediction_outcome=correct"], by_name["prediction_outcome=misclassified"]
    assert (right["example_count"], wrong["example_count"]) == (expected["correct"], 200 - expected["correct"])
    assert (right["metrics"][METRIC], wrong["metrics"][METRIC]) == (1.0, 0.0)
    code, out, _ = run_cli(capsys, "slices", "--eval-dir", uri, "--sort", "worst")
    outcome_rows = [line.split()[0] for line in out.splitlines() if line.startswith("prediction_outcome=")]
    assert outcome_rows == ["prediction_outcome=misclassified", "prediction_outcome=correct"]


def test_unknown_metric_lists_the_available_ones(evaluation, capsys):
    uri, _ = evaluation
    code, _, err = run_cli(capsys, "slices", "--eval-dir", uri, "--metric", "auc")
    assert_one_error_line(code, err, uri)
    assert "no metric 'auc'" in err and METRIC in err


def test_eval_dir_and_output_dir_are_exclusive(capsys):
    with pytest.raises(SystemExit) as caught:
        run_cli(capsys, "slices", "--eval-dir", "a", "--output-dir", "b")
    assert caught.value.code == 2


def assert_one_error_line(code: int, err: str, named: str) -> None:
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("visionpipe: error: ") and named in lines[0], lines[0]


def _truncate(path: str, keep: int | None = None) -> None:
    with open(path, "rb") as handle:
        content = handle.read()
    with open(path, "wb") as handle:
        handle.write(content[: len(content) - 7 if keep is None else keep])


def _only(uri: str, prefix: str) -> str:
    [name] = [name for name in os.listdir(uri) if name.startswith(prefix)]
    return os.path.join(uri, name)


def break_truncated_metrics(uri: str) -> str:
    _truncate(_only(uri, "metrics-"))
    return "metrics-00000-of-00001.tfrecord: truncated or corrupted"


def break_empty_metrics(uri: str) -> str:
    _truncate(_only(uri, "metrics-"), keep=0)
    return "metrics-00000-of-00001.tfrecord: no metrics"


def break_missing_metrics(uri: str) -> str:
    os.remove(_only(uri, "metrics-"))
    return "no metrics file"


def break_truncated_plots(uri: str) -> str:
    _truncate(_only(uri, "plots-"))
    return "plots-00000-of-00001.tfrecord: truncated or corrupted"


def break_missing_validations(uri: str) -> str:
    os.remove(os.path.join(uri, "validations.tfrecord"))
    return "no validations file"


def break_empty_validations(uri: str) -> str:
    _truncate(os.path.join(uri, "validations.tfrecord"), keep=0)
    return "validations.tfrecord: no validation result"


def break_truncated_validations(uri: str) -> str:
    _truncate(os.path.join(uri, "validations.tfrecord"))
    return "validations.tfrecord: truncated or corrupted"


def break_other_tfma_version(uri: str) -> str:
    path = os.path.join(uri, "eval_config.json")
    with open(path, encoding="utf-8") as handle:
        eval_run = json.load(handle)
    eval_run["version"] = "0.45.0"
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(eval_run, handle)
    return "eval_config.json: written by TFMA 0.45.0, but TFMA 0.52"


def break_truncated_eval_config(uri: str) -> str:
    _truncate(os.path.join(uri, "eval_config.json"), keep=100)
    return "eval_config.json: unreadable or truncated"


def break_missing_eval_config(uri: str) -> str:
    os.remove(os.path.join(uri, "eval_config.json"))
    return "not an Evaluator output"


BREAKAGES = [
    break_truncated_metrics,
    break_empty_metrics,
    break_missing_metrics,
    break_truncated_plots,
    break_missing_validations,
    break_empty_validations,
    break_truncated_validations,
    break_other_tfma_version,
    break_truncated_eval_config,
    break_missing_eval_config,
]


@pytest.mark.parametrize("breakage", BREAKAGES, ids=lambda f: f.__name__[len("break_"):])
def test_broken_evaluation_gives_one_line_naming_the_path(evaluation, tmp_path, capsys, breakage):
    uri = str(tmp_path / "evaluation")
    shutil.copytree(evaluation[0], uri)
    problem = breakage(uri)
    code, out, err = run_cli(capsys, "slices", "--eval-dir", uri)
    assert_one_error_line(code, err, uri)
    assert problem in err and out == ""


def test_missing_eval_dir(tmp_path, capsys):
    code, _, err = run_cli(capsys, "slices", "--eval-dir", str(tmp_path / "nope"))
    assert_one_error_line(code, err, "nope: no such directory")


def test_output_dir_without_metadata_is_left_untouched(tmp_path, capsys):
    code, _, err = run_cli(capsys, "slices", "--output-dir", str(tmp_path))
    assert_one_error_line(code, err, os.path.join(str(tmp_path), "metadata.sqlite"))
    assert os.listdir(tmp_path) == []  # no empty database created


def test_output_dir_without_an_evaluator_run(tmp_path, capsys):
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    path = str(tmp_path / "metadata.sqlite")
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    metadata_store.MetadataStore(config)  # an empty store, as before any Evaluator ran
    code, _, err = run_cli(capsys, "slices", "--output-dir", str(tmp_path))
    assert_one_error_line(code, err, path)
    assert "no finished Evaluator run" in err


def _row(name: str, accuracy: float, diff: float | None = None) -> SliceRow:
    column, _, value = name.partition("=")
    return SliceRow(
        slice=name,
        column=column if value else None,
        value=value or None,
        example_count=10,
        metrics={METRIC: accuracy},
        baseline_diffs={} if diff is None else {METRIC: diff},
    )


def test_nan_sorts_last_and_is_written_as_a_string():
    rows = [_row("overall", 0.5), _row("class_name=a", math.nan), _row("class_name=b", 0.9), _row("class_name=c", 0.1)]
    evaluation = Evaluation("uri", "0.52.0", "", None, rows, Verdict(True, [], True, []))
    ordered = slice_table.ordered_rows(evaluation, METRIC, "worst")
    assert [row.slice for row in ordered] == ["overall", "class_name=c", "class_name=b", "class_name=a"]
    payload = slices_command.to_json(evaluation, ordered, METRIC)
    assert payload["slices"][-1]["metrics"][METRIC] == "NaN"
    json.dumps(payload, allow_nan=False)


def test_baseline_diffs_get_their_own_columns_and_change_failures_read_as_such():
    failure = Failure("overall", f"{METRIC}_diff", -0.02, -1e-10, "change_absolute", -0.02 + 1e-10)
    rows = [_row("overall", 0.7, -0.02), _row("class_name=a", 0.6, 0.01)]
    evaluation = Evaluation("uri", "0.52.0", "candidate", "baseline", rows, Verdict(False, [failure], False, []))
    table = slices_command.render_table(evaluation, rows, METRIC)
    assert f"{METRIC} vs baseline" in table and "candidate vs baseline" in table
    assert table.splitlines()[3].split() == ["overall", "10", "0.7000", "-0.0200"]
    assert (
        f"failed: overall: {METRIC}_diff = -0.0200, beyond allowed change vs baseline -0.0000 by 0.0200" in table
    )


def test_stock_tfma_loads_the_evaluation_without_visionpipe(evaluation, tmp_path):
    """A notebook with only TFMA installed reads it: the custom metric and extractor leave plain protos."""
    import subprocess
    import sys

    uri, _ = evaluation
    script = (
        "import sys, tensorflow_model_analysis as tfma\n"
        "result = tfma.load_eval_result(sys.argv[1])\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('components', 'pipeline', 'trainer_module')]\n"
        "print(len(result.slicing_metrics), len(result.plots))\n"
    )
    # A clean interpreter outside the repository: nothing of visionpipe is importable.
    done = subprocess.run(
        [sys.executable, "-I", "-c", script, uri], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["23", "23"]


def test_eval_dir_may_be_a_filesystem_uri(evaluation, capsys):
    """gs:// or s3:// on a cluster; TensorFlow's in-memory ram:// filesystem stands in for them here."""
    import tensorflow as tf

    local, expected = evaluation
    uri = "ram://visionpipe-test/evaluation"
    for name in os.listdir(local):
        tf.io.gfile.makedirs(uri)
        tf.io.gfile.copy(os.path.join(local, name), f"{uri}/{name}", overwrite=True)
    code, out, err = run_cli(capsys, "slices", "--eval-dir", uri, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["evaluation_uri"] == uri
    assert result["slices"][0]["metrics"][METRIC] == pytest.approx(expected["overall"])
    code, _, err = run_cli(capsys, "slices", "--eval-dir", "ram://visionpipe-test/nothing-here")
    assert_one_error_line(code, err, "ram://visionpipe-test/nothing-here: no such directory")
