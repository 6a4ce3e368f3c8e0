"""The whole pipeline, for real: LocalDagRunner, Beam, TFT, Keras, TFMA, Pusher.

One module-scoped run on a few hundred synthetic MNIST-format examples, then
follow-up runs in the same output dir that exercise caching, the "not blessed"
exit code, bad data after a good run, the TFX CLI and, last (it leaves an
Evaluator-blessed but unservable model behind), a Trainer whose export TF
Serving cannot load, which the serving gate must refuse.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import pytest

from pipeline.cli import main as cli
from tests.conftest import write_idx_dataset

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAINING_ARGS = ["--model", "tutorial_cnn", "--epochs", "2", "--batch-size", "32"]


def pushed_versions(output_dir: str) -> list[str]:
    base = os.path.join(output_dir, "serving_model", "visionpipe-mnist")
    return sorted(os.listdir(base)) if os.path.isdir(base) else []


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    # 30% of test labels are wrong on purpose: accuracy tops out near 0.7, so a
    # 0.95 bar is out of reach for the follow-up run.
    data_dir = write_idx_dataset(
        str(root / "data"), train_count=360, test_count=120, seed=7, test_label_noise=0.3
    )
    output_dir = str(root / "out")
    code = cli.main(
        ["run", "--dataset", "mnist", "--data-dir", data_dir, "--output-dir", output_dir,
         "--accuracy-threshold", "0.5", *TRAINING_ARGS]
    )
    with open(os.path.join(output_dir, "run_summary.json"), encoding="utf-8") as handle:
        summary = json.load(handle)
    return code, summary, data_dir, output_dir


def test_run_pushes_a_blessed_model_and_writes_the_summary(first_run):
    code, summary, _, output_dir = first_run
    assert code == 0
    assert summary["dataset"] == "mnist" and summary["model"] == "tutorial_cnn"
    assert summary["blessed"] is True
    assert 0.5 < summary["test_accuracy"] < 0.95
    assert set(summary["per_class_accuracy"]) == {str(d) for d in range(10)}
    for component in ("FileBasedExampleGen", "StatisticsGen", "Transform", "Trainer", "Evaluator", "Pusher"):
        assert summary["components"][component] >= 0
    pushed = summary["pushed_model_dir"]
    assert pushed and os.path.isfile(os.path.join(pushed, "saved_model.pb"))
    assert os.path.dirname(pushed) == os.path.join(output_dir, "serving_model", "visionpipe-mnist")
    serving = summary["serving_check"]
    assert serving["component"] == "ServingGate" and serving["passed"] is True
    assert serving["headline"].startswith("PASSED (session load ")
    report = serving["report"]
    # Every test example went through serving_default and matched the Evaluator's confusion matrix.
    assert report["evaluated_examples"] == 120 and report["served_accuracy"] == pytest.approx(summary["test_accuracy"])
    assert report["warmup"]["records"] == 9 and len(report["latency"]) == 9
    # The run log has one line per epoch, whatever the console showed.
    log_path = sorted(glob.glob(os.path.join(output_dir, "logs", "run-*.log")))[0]  # this first run's
    with open(log_path, encoding="utf-8") as handle:
        epoch_lines = [line for line in handle if "] Epoch " in line]
    assert [line.split("] Epoch ")[1].split(":")[0] for line in epoch_lines] == ["1", "2"]
    assert "val_accuracy: " in epoch_lines[-1] and "learning_rate: " in epoch_lines[-1]


def test_transform_leaves_the_statistics_to_statistics_gen(first_run):
    """Transform's own TFDV pass over the train split (`disable_statistics`) would repeat StatisticsGen's."""
    output_dir = first_run[3]
    transform = os.path.join(output_dir, "tfx", "visionpipe-mnist", "Transform")
    graphs = glob.glob(os.path.join(transform, "transform_graph", "*"))
    assert graphs and all(os.path.isdir(os.path.join(graph, "transform_fn")) for graph in graphs)
    written = {name for _, folders, files in os.walk(transform) for name in folders + files}
    assert not written & {"pre_transform_stats", "post_transform_stats", "pre_transform_feature_stats",
                          "post_transform_feature_stats", "FeatureStats.pb"}


def infra_blessings(output_dir: str) -> list[tuple[str, int, int]]:
    """(uri, blessed, has_model) of every InfraBlessing, through ML Metadata's own API."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = os.path.join(output_dir, "metadata.sqlite")
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(config)
    return [
        (a.uri, a.custom_properties["blessed"].int_value, a.custom_properties["has_model"].int_value)
        for a in store.get_artifacts_by_type("InfraBlessing")
    ]


def test_the_pushed_model_is_the_gated_copy_with_tf_serving_warmup(first_run, tmp_path):
    from tensorflow_serving.apis import prediction_log_pb2
    import tensorflow as tf

    from tests import serving_helpers
    from trainer_module import signatures

    _, summary, _, output_dir = first_run
    [(blessing_uri, blessed, has_model)] = infra_blessings(output_dir)
    assert (blessed, has_model) == (1, 1) and blessing_uri == summary["serving_check"]["blessing_uri"]
    pushed = summary["pushed_model_dir"]
    warmup = os.path.join(pushed, "assets.extra", "tf_serving_warmup_requests")
    with open(warmup, "rb") as handle, open(os.path.join(blessing_uri, "stamped_model", "assets.extra",
                                                         "tf_serving_warmup_requests"), "rb") as stamped:
        assert handle.read() == stamped.read()
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(warmup)]
    assert len(logs) == 9
    assert {log.WhichOneof("log_type") for log in logs} == {"predict_log", "classify_log"}
    first_request = logs[0].predict_log.request
    assert first_request.model_spec.name == "visionpipe-mnist"
    example = tf.train.Example.FromString(first_request.inputs[signatures.EXAMPLE_INPUT].string_val[0])
    assert example.features.feature["example_id"].bytes_list.value[0].startswith(b"t10k-")  # the test split

    # TensorFlow's saved_model_cli (the session loader) runs every signature of the pushed model,
    # with the same answers as the TF2 loader.
    serialized = list(first_request.inputs[signatures.EXAMPLE_INPUT].string_val)
    images = [tf.train.Example.FromString(record).features.feature["image"].bytes_list.value[0] for record in serialized]
    loaded = tf.saved_model.load(pushed)
    for name, key, values, output in (
        (signatures.EXAMPLE_SIGNATURE, signatures.EXAMPLE_INPUT, serialized, signatures.PROBABILITIES),
        (signatures.IMAGE_SIGNATURE, signatures.IMAGE_INPUT, images, signatures.PROBABILITIES),
        (signatures.CLASSIFY_SIGNATURE, signatures.CLASSIFY_INPUT, serialized, signatures.CLASSIFY_SCORES),
    ):
        by_cli = serving_helpers.saved_model_cli_run(pushed, name, key, values, str(tmp_path / name))[output]
        by_tf2 = loaded.signatures[name](**{key: tf.constant(values)})[output].numpy()
        assert by_cli.shape == (len(values), 10)
        import numpy as np

        np.testing.assert_allclose(by_cli, by_tf2, atol=1e-6)


def test_serve_check_passes_the_pushed_model(first_run, capsys):
    *_, output_dir = first_run
    capsys.readouterr()
    assert cli.main(["serve-check", "--model-dir", output_dir]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "servable: yes (9 requests answered)"


def test_pushed_model_classifies_a_png_through_the_image_signature(first_run, tmp_path, capsys):
    from tests import serving_helpers

    *_, output_dir = first_run
    predicted, labels, lines = serving_helpers.predict_fresh_digits(output_dir, tmp_path, capsys)
    correct = sum(int(p == l) for p, l in zip(predicted, labels))
    assert len(predicted) == 10 and correct >= 7, lines


@pytest.fixture(scope="module")
def higher_bar_run(first_run):
    """The same data and training re-run with a 0.95 bar: a NOT blessed run (with a baseline)."""
    _, _, data_dir, output_dir = first_run
    before = pushed_versions(output_dir)
    code = cli.main(
        ["run", "--dataset", "mnist", "--data-dir", data_dir, "--output-dir", output_dir,
         "--accuracy-threshold", "0.95", *TRAINING_ARGS]
    )
    with open(os.path.join(output_dir, "run_summary.json"), encoding="utf-8") as handle:
        summary = json.load(handle)
    return code, summary, before


def test_rerun_with_a_higher_bar_reuses_the_cache_and_exits_3(first_run, higher_bar_run):
    _, first_summary, _, output_dir = first_run
    code, summary, before = higher_bar_run
    assert code == 3
    assert summary["blessed"] is False and summary["pushed_model_dir"] is None
    assert pushed_versions(output_dir) == before
    # Everything up to the Trainer was reused: same inputs, same model, same accuracy.
    assert summary["test_accuracy"] == pytest.approx(first_summary["test_accuracy"])
    assert summary["components"]["Trainer"] < first_summary["components"]["Trainer"]


def test_each_run_reads_only_its_own_executions(first_run, higher_bar_run):
    """Results are read by pipeline run id, not "the newest Evaluator": after the not-blessed
    second run, the first run's own executions still say blessed and pushed."""
    from ml_metadata.metadata_store import metadata_store
    from tfx.dsl.compiler import constants
    from tfx.orchestration import metadata

    from pipeline.inspect import run_results

    _, first_summary, _, output_dir = first_run
    _, second_summary, _ = higher_bar_run
    assert first_summary["pipeline_run_id"] != second_summary["pipeline_run_id"]
    store = metadata_store.MetadataStore(
        metadata.sqlite_metadata_connection_config(os.path.join(output_dir, "metadata.sqlite"))
    )
    run_names = [context.name for context in store.get_contexts_by_type(constants.PIPELINE_RUN_CONTEXT_TYPE_NAME)]
    assert {first_summary["pipeline_run_id"], second_summary["pipeline_run_id"]} <= set(run_names)

    def outcome(summary: dict) -> run_results.RunOutcome:
        return run_results.read_outcome(
            os.path.join(output_dir, "metadata.sqlite"), "visionpipe-mnist", summary["pipeline_run_id"], [str(d) for d in range(10)]
        )

    first, second = outcome(first_summary), outcome(second_summary)
    assert first.blessed and first.pushed_model_dir == first_summary["pushed_model_dir"]
    assert not second.blessed and second.pushed_model_dir is None
    assert first.test_accuracy == pytest.approx(first_summary["test_accuracy"])


def test_bad_data_after_a_good_run_keeps_earlier_results(first_run, tmp_path, capsys):
    *_, output_dir = first_run
    summary_path = os.path.join(output_dir, "run_summary.json")
    with open(summary_path, "rb") as handle:
        summary_before = handle.read()
    before = pushed_versions(output_dir)
    broken = write_idx_dataset(str(tmp_path / "broken"), train_count=30, test_count=10)
    os.remove(os.path.join(broken, "train-images-idx3-ubyte.gz"))
    code = cli.main(["run", "--dataset", "mnist", "--data-dir", broken, "--output-dir", output_dir])
    assert code == 1
    assert "train-images-idx3-ubyte" in capsys.readouterr().err
    assert pushed_versions(output_dir) == before
    with open(summary_path, "rb") as handle:
        assert handle.read() == summary_before


def slices_json(capsys, *argv: str) -> dict:
    capsys.readouterr()
    assert cli.main(["slices", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_slices_of_the_blessed_run_match_the_summary(first_run, capsys):
    _, summary, _, _ = first_run
    uri = summary["evaluation_uri"]
    capsys.readouterr()
    assert cli.main(["slices", "--eval-dir", uri]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith(("overall ", "class_name="))}
    assert list(rows) == ["overall"] + [f"class_name={digit}" for digit in range(10)]
    assert rows["overall"][:2] == ["120", f"{summary['test_accuracy']:.4f}"]
    for digit, accuracy in summary["per_class_accuracy"].items():
        assert rows[f"class_name={digit}"][1] == f"{accuracy:.4f}"
    assert "per class, one-vs-rest (overall slice):" in out  # MNIST's class names are its digits
    assert "validation: BLESSED" in out and "failed:" not in out and "no baseline model" in out

    result = slices_json(capsys, "--eval-dir", uri, "--sort", "worst")
    by_name = {entry["slice"]: entry for entry in result["slices"]}
    assert result["slices"][0]["slice"] == "overall" and len(by_name) == 23
    assert list(result["slices"][0]["class_metrics"]) == [str(digit) for digit in range(10)]
    assert by_name["prediction_outcome=correct"]["example_count"] == round(120 * summary["test_accuracy"])
    for digit, accuracy in summary["per_class_accuracy"].items():  # label slices are the same classes
        assert by_name[f"label={digit}"]["metrics"]["sparse_categorical_accuracy"] == pytest.approx(accuracy)
        assert by_name[f"class_name={digit}"]["metrics"]["sparse_categorical_accuracy"] == pytest.approx(accuracy)
    for column in ("class_name", "label", "prediction_outcome"):  # worst first within each column
        accuracies = [
            entry["metrics"]["sparse_categorical_accuracy"] for entry in result["slices"] if entry["column"] == column
        ]
        assert accuracies == sorted(accuracies) and accuracies
    assert result["validation"]["blessed"] is True and result["validation"]["failures"] == []


def test_slices_of_the_not_blessed_run_name_the_failing_slice(higher_bar_run, first_run, capsys):
    _, summary, _ = higher_bar_run
    *_, output_dir = first_run
    accuracy = summary["test_accuracy"]
    capsys.readouterr()
    assert cli.main(["slices", "--output-dir", output_dir]) == 0  # the newest Evaluator run
    out = capsys.readouterr().out
    assert f"evaluation: {summary['evaluation_uri']} " in out and "candidate vs baseline" in out
    assert "validation: NOT BLESSED" in out
    assert (
        f"failed: overall: sparse_categorical_accuracy = {accuracy:.4f}, below lower bound 0.9500 "
        f"by {0.95 - accuracy:.4f}" in out
    )
    overall = next(line for line in out.splitlines() if line.startswith("overall "))
    cells = overall.split()  # the same model as the baseline: every difference is 0
    assert cells[:3] == ["overall", "120", f"{accuracy:.4f}"] and cells[4:] == ["+0.0000", "+0.0000"]

    result = slices_json(capsys, "--output-dir", output_dir)
    assert result["evaluation_uri"] == summary["evaluation_uri"]
    assert (result["candidate_model"], result["baseline_model"]) == ("candidate", "baseline")
    assert all(
        set(entry["baseline_diffs"].values()) == {0.0} and "sparse_categorical_accuracy" in entry["baseline_diffs"]
        for entry in result["slices"]
    )
    [failure] = result["validation"]["failures"]
    assert (failure["slice"], failure["metric"], failure["bound"]) == ("overall", "sparse_categorical_accuracy", "lower_bound")
    assert failure["value"] == pytest.approx(accuracy) and failure["threshold"] == pytest.approx(0.95)
    assert failure["by"] == pytest.approx(accuracy - 0.95)


def true_class_probabilities_through_the_image_signature(examples_uri: str, model_dir: str) -> dict[str, float]:
    """example id -> probability of its label, scored independently of the report's code path."""
    import tensorflow as tf

    from trainer_module import signatures

    classify = tf.saved_model.load(model_dir).signatures[signatures.IMAGE_SIGNATURE]
    spec = {key: tf.io.FixedLenFeature([], dtype) for key, dtype in
            (("image", tf.string), ("label", tf.int64), ("example_id", tf.string))}
    files = tf.io.gfile.glob(os.path.join(examples_uri, "Split-test", "*"))
    result = {}
    for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(64):
        parsed = tf.io.parse_example(batch, spec)
        probabilities = classify(images=parsed["image"])[signatures.PROBABILITIES].numpy()
        for row, (label, example_id) in enumerate(zip(parsed["label"].numpy(), parsed["example_id"].numpy())):
            result[example_id.decode()] = float(probabilities[row, label])
    return result


def test_report_of_the_not_blessed_run_renders_offline(first_run, higher_bar_run, tmp_path, capsys):
    from pipeline.inspect import evaluator_runs, report_data
    from tests import headless_browser
    from tests.test_report import assert_painted, assert_report_dom

    _, first_summary, _, output_dir = first_run
    _, summary, _ = higher_bar_run
    path = tmp_path / "report.html"
    assert cli.main(["report", "--output-dir", output_dir, "--out", str(path), "--worst", "6"]) == 0
    assert f"wrote {path}" in capsys.readouterr().out
    page = path.read_text(encoding="utf-8")
    assert "NOT BLESSED" in page and "below lower bound 0.9500" in page
    trend = page.split('<table class="trend">')[1].split("</table>")[0]
    # Both evaluations of the same (cached) model: blessed at 0.5, not at 0.95.
    assert trend.count("<tr>") == 3 and trend.index("yes") < trend.index("no")
    assert trend.count(f"{first_summary['test_accuracy']:.4f}") == 2

    data = report_data.gather(output_dir, worst_count=6, progress=lambda line: None)
    run = evaluator_runs.latest_evaluator_run(os.path.join(output_dir, "metadata.sqlite"))
    assert data.evaluation.uri == summary["evaluation_uri"] == run.evaluation_uri and data.scored_examples == 120
    expected = true_class_probabilities_through_the_image_signature(
        run.examples_uri, os.path.join(run.model_uri, "Format-Serving")
    )
    lowest = sorted(expected.values())[:6]  # (ties may pick either example: compare probabilities)
    assert [example.true_class_probability for example in data.worst_examples] == pytest.approx(lowest, abs=1e-5)
    for example in data.worst_examples:
        assert example.true_class_probability == pytest.approx(expected[example.example_id], abs=1e-5)
        assert f"<code>{example.example_id}</code>" in page

    if headless_browser.chromium_binary() is None and os.environ.get("CI") != "true":
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium); CI installs it")
    from PIL import Image

    screenshot = str(tmp_path / "report.png")
    with headless_browser.recording_proxy() as proxy:
        dom = headless_browser.dump_dom(str(path), proxy)
        headless_browser.screenshot(str(path), proxy, screenshot)
    assert proxy.page_requests() == [], proxy.requests
    assert_report_dom(dom, worst_count=6, slice_rows=10 + 1 + 2)
    assert_painted(Image.open(screenshot))


def test_tfx_cli_creates_and_runs_the_same_pipeline(first_run, tmp_path):
    _, _, data_dir, output_dir = first_run
    environment = dict(
        os.environ,
        HOME=str(tmp_path),
        VISIONPIPE_DATASET="mnist",
        VISIONPIPE_DATA_DIR=data_dir,
        VISIONPIPE_OUTPUT_DIR=output_dir,
        VISIONPIPE_MODEL="tutorial_cnn",
        VISIONPIPE_EPOCHS="2",
        VISIONPIPE_BATCH_SIZE="32",
        VISIONPIPE_ACCURACY_THRESHOLD="0.5",
    )
    tfx = os.path.join(os.path.dirname(sys.executable), "tfx")
    for command in (
        [tfx, "pipeline", "create", "--engine", "local", "--pipeline_path", "pipeline/local_runner.py"],
        [tfx, "run", "create", "--engine", "local", "--pipeline_name", "visionpipe-mnist"],
    ):
        result = subprocess.run(
            command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert os.path.isfile(os.path.join(tmp_path, "tfx", "local", "visionpipe-mnist", "pipeline_args.json"))
    # The run prints visionpipe's progress lines; Beam's and TFX's INFO lines go to the run log.
    assert "] FileBasedExampleGen done in " in result.stdout and "] Pusher done in " in result.stdout, result.stdout
    assert "Component FileBasedExampleGen is running" not in result.stdout + result.stderr


def test_a_model_tf_serving_cannot_load_is_refused_and_nothing_is_pushed(first_run, monkeypatch, capsys):
    """The Trainer exports as before issue 12: TF2 loads it, so the Evaluator blesses it; the gate must not.

    Runs last: it leaves an Evaluator-blessed, unservable model in the output dir.
    """
    from tests import serving_helpers
    from trainer_module import serving

    _, first_summary, data_dir, output_dir = first_run
    before = pushed_versions(output_dir)
    monkeypatch.setattr(serving, "export_serving_model", serving_helpers.keras_tracking_export)
    capsys.readouterr()
    code = cli.main(
        ["run", "--dataset", "mnist", "--data-dir", data_dir, "--output-dir", output_dir,
         "--accuracy-threshold", "0.5", "--model", "tutorial_cnn", "--epochs", "3", "--batch-size", "32"]
    )  # another epoch count: a new Trainer execution, not the cached model
    out = capsys.readouterr().out
    assert code == 4, out[-3000:]
    with open(os.path.join(output_dir, "run_summary.json"), encoding="utf-8") as handle:
        summary = json.load(handle)
    assert summary["blessed"] is True and summary["pushed_model_dir"] is None
    serving_check = summary["serving_check"]
    assert serving_check["passed"] is False
    assert "Could not find variable" in serving_check["headline"]
    # TF Serving would fail the load at its first warm-up request; so does the gate.
    assert "serving check : FAILED: serving_default: warm-up request 1 (batch 1) failed: Could not find variable" in out
    assert "pushed model  : not pushed" in out
    assert pushed_versions(output_dir) == before  # the earlier pushed model is untouched, nothing new
    refused = [entry for entry in infra_blessings(output_dir) if entry[0] == serving_check["blessing_uri"]]
    assert refused == [(serving_check["blessing_uri"], 0, 0)]
    assert os.path.isfile(os.path.join(serving_check["blessing_uri"], "INFRA_NOT_BLESSED"))

    capsys.readouterr()
    assert cli.main(["slices", "--output-dir", output_dir]) == 0
    assert "serving check (ServingGate): FAILED: serving_default: warm-up request 1" in capsys.readouterr().out
