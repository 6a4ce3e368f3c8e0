"""`visionpipe report`'s page, rendered from a real TFMA evaluation, in a real browser.

The report's data here is built by hand around a real evaluation folder
(tests/tfma_evaluation.py), so every section has known content; gathering it
from a pipeline run (ML Metadata, the model over the test split) is tested in
tests/test_end_to_end.py. Browser tests use headless Chromium (Debian's
`chromium` package) behind a recording loopback proxy; they are skipped where
Chromium is not installed, except in CI, where they must run.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from components.example_gen.image_examples import encode_png
from pipeline.inspect import eval_results, report_html
from pipeline.inspect.report_data import ReportData, TrendPoint
from pipeline.inspect.worst_examples import WorstExample
from tests import headless_browser
from tests.test_cli import run_cli
from tests.tfma_evaluation import CLASS_NAMES, synthetic_predictions, write_evaluation

needs_chromium = pytest.mark.skipif(
    headless_browser.chromium_binary() is None and os.environ.get("CI") != "true",
    reason="Debian's chromium is not installed (apt-get install -y chromium); CI installs it",
)
WORST_COUNT = 5


@pytest.fixture(scope="module")
def report_data(tmp_path_factory) -> ReportData:
    labels, probabilities = synthetic_predictions()
    uri = str(tmp_path_factory.mktemp("tfma") / "evaluation")
    write_evaluation(uri, labels, probabilities, threshold=0.95)
    rng = np.random.default_rng(0)
    worst = [
        WorstExample(
            example_id=f"test-{index:05d}",
            png=encode_png(rng.integers(0, 256, size=(28, 28), dtype=np.uint8)),
            true_class=CLASS_NAMES[index],
            predicted_class=CLASS_NAMES[-1 - index],
            true_class_probability=0.01 * index,
            predicted_probability=0.9 - 0.01 * index,
        )
        for index in range(WORST_COUNT)
    ]
    trend = [
        TrendPoint("Trainer/model/7", "2026-11-30T10:00:00+00:00", 0.81, True),
        TrendPoint("Trainer/model/15", "2026-12-01T09:00:00+00:00", 0.86, True),
        TrendPoint("Trainer/model/23", "2026-12-01T10:00:00+00:00", 0.42, False),
    ]
    summary = {
        "dataset": "fashion_mnist", "model": "deep_cnn", "epochs": 3, "batch_size": 128,
        "accuracy_threshold": 0.95, "test_accuracy": 0.42, "blessed": False, "pushed_model_dir": None,
        "finished_at": "2026-12-01T10:00:00", "total_seconds": 99.5, "training": {"device": "CPU"},
        "components": {"FileBasedExampleGen": 12.5, "StatisticsGen": 8.25, "Transform": 9.0, "Trainer": 55.0, "Evaluator": 11.0},
        "evaluation_uri": uri,
    }
    return ReportData(
        pipeline_name="visionpipe-fashion-mnist",
        summary=summary,
        evaluation=eval_results.load_evaluation(uri),
        class_names=list(CLASS_NAMES),
        worst_examples=worst,
        scored_examples=200,
        trend=trend,
        notes=["an old evaluation: left out of the trend"],
    )


@pytest.fixture(scope="module")
def page(report_data) -> str:
    return report_html.render(report_data)


def test_page_has_every_section_and_chart(page):
    for section in ("summary", "verdict", "serving", "slices", "per-class", "confusion", "worst", "trend", "timings"):
        assert f'<section id="{section}">' in page
    for chart in ("class-accuracy", "confusion-matrix", "accuracy-trend", "component-timings"):
        assert len(re.findall(f'<svg class="chart" id="chart-{chart}"', page)) == 1
    assert page.count('<img src="data:image/png;base64,') == WORST_COUNT
    assert "NOT BLESSED" in page and "below lower bound 0.9500" in page
    assert "an old evaluation: left out of the trend" in page


def test_page_is_self_contained(page):
    assert 'http-equiv="Content-Security-Policy"' in page and "default-src 'none'" in page
    # Only the SVG namespace and matplotlib's metadata may name a URL; nothing is loaded from one.
    attributes = re.findall(r'(?:src|href)="([^"#][^"]*)"', page)
    assert attributes and all(value.startswith("data:") for value in attributes), attributes
    assert "<script" not in page and "<link" not in page


def test_chart_ids_are_unique_across_the_inlined_svgs(page):
    ids = re.findall(r'\sid="([^"]+)"', page)
    assert len(ids) == len(set(ids)), sorted(identifier for identifier in ids if ids.count(identifier) > 1)[:5]


def test_class_names_and_counts_are_escaped_and_in_the_charts(report_data):
    page = report_html.render(
        ReportData(**{**report_data.__dict__, "class_names": ["<T-shirt>", *CLASS_NAMES[1:]]})
    )
    assert "&lt;T-shirt&gt;" in page and "<T-shirt>" not in page
    confusion = page.split('id="chart-confusion-matrix"')[1].split("</svg>")[0]
    for name in CLASS_NAMES[1:]:
        assert f">{name}<" in confusion  # tick labels are text, not paths


def test_sections_without_data_say_so(report_data):
    empty = ReportData(**{**report_data.__dict__, "summary": {}, "worst_examples": [], "trend": []})
    page = report_html.render(empty)
    assert "No run summary for this evaluation." in page and "No component timings" in page
    assert "No evaluated models." in page and "No test examples were scored." in page
    assert 'id="chart-component-timings"' not in page and 'id="chart-accuracy-trend"' not in page


def test_serving_check_section_shows_the_verdict_and_latency(report_data):
    from components.serving_check.checks import ServingCheck
    from pipeline.inspect.serving_verdicts import ServingVerdict

    assert "No serving check ran for this model." in report_html.render(report_data)
    latency = [
        {"signature": name, "batch_size": batch, "requests": 10, "p50_ms": 1.5 * batch, "p99_ms": 2.0 * batch,
         "images_per_second": 1000 / 1.5}
        for name in ("classify", "serving_default", "serving_images") for batch in (1, 32, 256)
    ]
    check = ServingCheck(
        model_dir="/m", passed=True, failures=[], load_seconds=0.25, warmup={"records": 9, "seconds": 0.5},
        latency=latency, signatures={}, requests_answered=12, evaluated_examples=200, served_accuracy=0.42,
        imported_modules=["tensorflow"], seconds={"import": 5.0},
    )
    passed = ServingVerdict("ServingGate", True, "/b", check)
    page = report_html.render(ReportData(**{**report_data.__dict__, "serving": passed}))
    section = page.split('<section id="serving">')[1].split("</section>")[0]
    assert "SERVABLE" in section and "PASSED (session load 0.25 s; batch 1: classify p50 1.5 ms" in section
    assert section.split('<table class="latency">')[1].count("<tr>") == 1 + 9

    failed = ServingVerdict("ServingGate", False, "/b", ServingCheck(**{
        **check.__dict__, "passed": False, "failures": ["serving_default: <warm-up> failed", "x"], "latency": []}))
    section = report_html.render(ReportData(**{**report_data.__dict__, "serving": failed})).split(
        '<section id="serving">')[1].split("</section>")[0]
    assert "NOT SERVABLE" in section and "<li>serving_default: &lt;warm-up&gt; failed</li><li>x</li>" in section
    assert "FAILED: serving_default: &lt;warm-up&gt; failed (and 1 more)" in section


def test_report_without_any_run_is_one_error_line(tmp_path, capsys):
    code, out, err = run_cli(capsys, "report", "--output-dir", str(tmp_path))
    assert code == 1 and err.count("\n") == 1 and "metadata.sqlite: not found" in err
    assert os.listdir(tmp_path) == []


@needs_chromium
def test_recording_proxy_catches_a_page_that_reaches_out(tmp_path):
    """The leak detector itself: a page with a remote image must show up."""
    leaky = tmp_path / "leaky.html"
    leaky.write_text('<html><body><img src="http://visionpipe-test.invalid/pixel.png"></body></html>')
    with headless_browser.recording_proxy() as proxy:
        headless_browser.dump_dom(str(leaky), proxy)
    assert [headless_browser.request_host(request) for request in proxy.page_requests()] == [
        "visionpipe-test.invalid"
    ], proxy.requests


@needs_chromium
def test_report_renders_in_chromium_without_network(page, tmp_path):
    from PIL import Image

    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    screenshot = str(tmp_path / "report.png")
    with headless_browser.recording_proxy() as proxy:
        dom = headless_browser.dump_dom(str(path), proxy)
        headless_browser.screenshot(str(path), proxy, screenshot)
    assert proxy.page_requests() == [], proxy.requests
    assert_report_dom(dom, worst_count=WORST_COUNT, slice_rows=len(CLASS_NAMES) + 3)
    assert_painted(Image.open(screenshot))


def assert_report_dom(dom: str, worst_count: int, slice_rows: int) -> None:
    """What the browser built: four charts, the slice table, the thumbnails."""
    assert len(re.findall(r'<svg[^>]* class="chart"', dom)) == 4
    slices_table = dom.split('<table class="slices">')[1].split("</table>")[0]
    assert slices_table.count("<tr>") == 1 + slice_rows  # header + overall, classes, outcomes
    assert len(re.findall(r'<figure><img src="data:image/png;base64,', dom)) == worst_count


def assert_painted(image) -> None:
    """The screenshot shows the page: white background, blue bars and heat map cells."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.int32)
    assert pixels.shape[0] >= 2000 and pixels.shape[1] >= 1000
    blue = (pixels[..., 2] > pixels[..., 0] + 60) & (pixels[..., 2] > 120)
    assert blue.mean() > 0.005, f"only {blue.mean():.4%} blue pixels: charts not drawn?"
    assert (pixels.sum(axis=2) > 740).mean() > 0.5  # mostly white page


def record_evaluator_run(output_dir: str, evaluation_uri: str, model_uri: str, examples_uri: str) -> None:
    """Writes what TFX records for one finished Evaluator run into <output_dir>/metadata.sqlite."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as mlmd

    config = mlmd.ConnectionConfig()
    config.sqlite.filename_uri = os.path.join(output_dir, "metadata.sqlite")
    store = metadata_store.MetadataStore(config)
    context = mlmd.Context(
        type_id=store.put_context_type(mlmd.ContextType(name="node")), name="visionpipe-fashion-mnist.Evaluator"
    )
    [context.id] = store.put_contexts([context])
    artifact_type = store.put_artifact_type(mlmd.ArtifactType(name="Artifact"))
    blessing = mlmd.Artifact(type_id=artifact_type, uri=os.path.join(output_dir, "Evaluator", "blessing", "9"))
    blessing.custom_properties["blessed"].int_value = 1
    # The Examples artifact as TFX records it: its type has the split names property.
    examples_type = store.put_artifact_type(mlmd.ArtifactType(name="Examples", properties={"split_names": mlmd.STRING}))
    examples = mlmd.Artifact(type_id=examples_type, uri=examples_uri)
    examples.properties["split_names"].string_value = '["train", "eval", "test"]'
    recorded = [
        (mlmd.Artifact(type_id=artifact_type, uri=evaluation_uri), mlmd.Event.OUTPUT, ["evaluation"]),
        (blessing, mlmd.Event.OUTPUT, ["blessing"]),
        # As TFX records a model evaluated against itself as the baseline (a re-run
        # with another threshold): one event, both keys, the baseline's first.
        (mlmd.Artifact(type_id=artifact_type, uri=model_uri), mlmd.Event.INPUT, ["baseline_model", "model"]),
        (examples, mlmd.Event.INPUT, ["examples"]),
    ]
    artifacts_and_events = []
    for artifact, event_type, keys in recorded:
        event = mlmd.Event(type=event_type)
        for key in keys:
            event.path.steps.add().key = key
            event.path.steps.add().index = 0
        artifacts_and_events.append((artifact, event))
    execution = mlmd.Execution(
        type_id=store.put_execution_type(mlmd.ExecutionType(name="Evaluator")),
        last_known_state=mlmd.Execution.COMPLETE,
    )
    store.put_execution(execution, artifacts_and_events, [context])


@pytest.fixture()
def recorded_output_dir(report_data, tmp_path) -> tuple[str, str, str]:
    """An output dir whose ML Metadata names a copy of the real evaluation, a model dir
    that does not exist, and an earlier report.html that must survive failures."""
    import shutil

    output_dir = str(tmp_path / "out")
    evaluation = os.path.join(output_dir, "tfx", "visionpipe-fashion-mnist", "Evaluator", "evaluation", "9")
    shutil.copytree(report_data.evaluation.uri, evaluation)
    model = os.path.join(output_dir, "tfx", "visionpipe-fashion-mnist", "Trainer", "model", "8")
    record_evaluator_run(output_dir, evaluation, model, os.path.join(output_dir, "examples"))
    with open(os.path.join(output_dir, "report.html"), "w", encoding="utf-8") as handle:
        handle.write("earlier report")
    return output_dir, evaluation, model


def assert_failed_keeping_the_earlier_report(code: int, out: str, err: str, output_dir: str, named: str) -> None:
    assert code == 1
    [line] = err.strip().splitlines()
    assert line.startswith("visionpipe: error: ") and named in line, line
    assert "wrote" not in out
    with open(os.path.join(output_dir, "report.html"), encoding="utf-8") as handle:
        assert handle.read() == "earlier report"
    assert not os.path.exists(os.path.join(output_dir, "report.html.tmp"))


def test_report_of_a_truncated_evaluation_names_the_file(recorded_output_dir, capsys):
    output_dir, evaluation, _ = recorded_output_dir
    [metrics] = [name for name in os.listdir(evaluation) if name.startswith("metrics-")]
    with open(os.path.join(evaluation, metrics), "r+b") as handle:
        handle.truncate(os.path.getsize(os.path.join(evaluation, metrics)) - 7)
    code, out, err = run_cli(capsys, "report", "--output-dir", output_dir)
    assert_failed_keeping_the_earlier_report(code, out, err, output_dir, f"{metrics}: truncated or corrupted")


def test_report_without_the_evaluated_model_names_its_folder(recorded_output_dir, capsys):
    output_dir, _, model = recorded_output_dir
    code, out, err = run_cli(capsys, "report", "--output-dir", output_dir)
    assert_failed_keeping_the_earlier_report(code, out, err, output_dir, f"{model}: cannot load")
    assert "evaluation:" in out  # progress said what it was reading before it failed


def test_report_to_an_unwritable_path_is_one_error_line(recorded_output_dir, report_data, tmp_path, capsys):
    from pipeline.cli import report_command

    target = tmp_path / "not-a-dir"
    target.write_text("a file, so nothing can be written below it")
    code = report_command.write_report(report_data, str(target / "report.html"))
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and f"{target / 'report.html'}: cannot write the report" in err
