"""`visionpipe report`'s page: one self-contained HTML file, a pure function of ReportData.

Nothing is fetched when the page is viewed: styles are inline, charts are
inline SVG, thumbnails are data: URIs of the test split's own PNG bytes, and
a Content-Security-Policy forbids any other source, so a viewer can open it
offline (or from an untrusted share) without it calling anywhere.
"""

from __future__ import annotations

import base64
import datetime
import html
from collections.abc import Iterable, Sequence

from components.confusion_matrix import padded
from pipeline import eval_config
from pipeline.inspect import report_charts, slice_table
from pipeline.inspect.report_data import ReportData, TrendPoint
from pipeline.inspect.worst_examples import WorstExample

CONTENT_SECURITY_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #222; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; margin-top: 2rem; }
table { border-collapse: collapse; font-size: .85rem; margin: .5rem 0; }
th, td { padding: .2rem .6rem; border-bottom: 1px solid #eee; text-align: right; }
th { max-width: 10rem; overflow-wrap: anywhere; vertical-align: bottom; }
.wide { overflow-x: auto; max-width: 100%; }
th:first-child, td:first-child, .summary td { text-align: left; }
.verdict { display: inline-block; padding: .2rem .6rem; border-radius: .3rem; font-weight: bold; color: white; }
.blessed { background: #4e9a06; } .not-blessed { background: #cc0000; }
.charts { display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: flex-start; }
svg.chart { max-width: 100%; height: auto; }
.worst { display: flex; flex-wrap: wrap; gap: .8rem; }
.worst figure { margin: 0; width: 8.5rem; font-size: .75rem; }
.worst img { width: 84px; height: 84px; image-rendering: pixelated; border: 1px solid #ccc; }
.note { color: #8f5902; } code { font-size: .85em; }
"""


def _escape(value: object) -> str:
    return html.escape(str(value), quote=True)


def _table(header: Sequence[str], rows: Iterable[Sequence[object]], css_class: str) -> str:
    head = "".join(f"<th>{_escape(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{_escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _section(section_id: str, title: str, *parts: str) -> str:
    return f'<section id="{section_id}"><h2>{_escape(title)}</h2>{"".join(parts)}</section>'


def summary_section(data: ReportData) -> str:
    summary = data.summary
    if not summary:
        return _section("summary", "Run summary", "<p>No run summary for this evaluation.</p>")
    training = summary.get("training") or {}
    accuracy = summary.get("test_accuracy")
    items = [
        ("dataset", summary.get("dataset")),
        ("model", summary.get("model")),
        ("epochs / batch size", f"{summary.get('epochs')} / {summary.get('batch_size')}"),
        ("test accuracy", "n/a" if accuracy is None else f"{accuracy:.4f}"),
        ("accuracy threshold", summary.get("accuracy_threshold")),
        ("blessed", "yes" if summary.get("blessed") else "no"),
        ("serving check", (summary.get("serving_check") or {}).get("headline", "did not run")),
        ("pushed model", summary.get("pushed_model_dir") or "not pushed"),
        ("training device", training.get("device", "n/a")),
        ("finished at", summary.get("finished_at")),
        ("total seconds", summary.get("total_seconds")),
    ]
    rows = "".join(f"<tr><th>{_escape(name)}</th><td>{_escape(value)}</td></tr>" for name, value in items)
    return _section("summary", "Run summary", f'<table class="summary">{rows}</table>')


def verdict_section(data: ReportData) -> str:
    verdict = data.evaluation.verdict
    css, text = ("blessed", "BLESSED") if verdict.blessed else ("not-blessed", "NOT BLESSED")
    lines = slice_table.render_verdict(verdict)[1:]  # the first line is the verdict itself
    details = "".join(f"<li>{_escape(line.strip())}</li>" for line in lines)
    return _section(
        "verdict",
        "Validation",
        f'<p><span class="verdict {css}">{text}</span></p>',
        f"<ul>{details}</ul>" if details else "",
    )


def serving_section(data: ReportData) -> str:
    """The serving check's verdict and, from the ServingGate, its latency per signature and batch size."""
    serving = data.serving
    if serving is None:
        return _section("serving", "Serving check", "<p>No serving check ran for this model.</p>")
    css, text = ("blessed", "SERVABLE") if serving.passed else ("not-blessed", "NOT SERVABLE")
    parts = [
        f'<p><span class="verdict {css}">{text}</span> {_escape(serving.component)}: {_escape(serving.headline())}</p>'
    ]
    check = serving.check
    if check is not None:
        if check.failures:
            parts.append("<ul>" + "".join(f"<li>{_escape(failure)}</li>" for failure in check.failures) + "</ul>")
        if check.latency:
            parts.append(
                "<p>Through TF Serving's session loader, in a separate process, after the warm-up "
                f"({(check.warmup or {}).get('records', 0)} requests); p99 of fewer than 100 requests is their maximum.</p>"
            )
            rows = [
                [row["signature"], row["batch_size"], row["requests"], f"{row['p50_ms']:.1f}", f"{row['p99_ms']:.1f}",
                 f"{row['images_per_second']:,.0f}"]
                for row in check.latency
            ]
            parts.append(_table(["signature", "batch size", "requests", "p50 ms", "p99 ms", "images/s at p50"], rows, "latency"))
    return _section("serving", "Serving check", *parts)


def slices_section(data: ReportData) -> str:
    evaluation = data.evaluation
    metric = eval_config.ACCURACY_KEY
    header, body, hidden = slice_table.cells(
        evaluation, slice_table.ordered_rows(evaluation, metric, None), metric
    )
    folded = f"<p>{hidden} <code>label=N</code> slices (the same classes by id) are not shown.</p>" if hidden else ""
    where = f"<p>Evaluation <code>{_escape(evaluation.uri)}</code> (TFMA {_escape(evaluation.tfma_version)})"
    where += ", candidate vs baseline.</p>" if evaluation.baseline is not None else ", no baseline model.</p>"
    table = f'<div class="wide">{_table(header, body, "slices")}</div>'
    return _section("slices", "Metrics per slice", where, table, folded)


def class_accuracies(data: ReportData) -> list[float | None]:
    """Accuracy per class, in class-id order, from the class_name slices (None: no examples)."""
    by_name = {
        str(row.value): row.metrics.get(eval_config.ACCURACY_KEY)
        for row in data.evaluation.rows
        if row.column == slice_table.CLASS_NAME_COLUMN
    }
    return [by_name.get(name) for name in data.class_names]


def per_class_section(data: ReportData) -> str:
    overall = data.evaluation.overall()
    chart = report_charts.class_accuracy_chart(
        data.class_names, class_accuracies(data), overall.metrics.get(eval_config.ACCURACY_KEY)
    )
    parts = [f'<div class="charts">{chart}']
    header, body = slice_table.class_metric_table(data.evaluation, data.class_names)
    if body:
        parts.append(_table(["class (one-vs-rest)", *header[1:]], body, "class-metrics"))
    parts.append("</div>")
    return _section("per-class", "Per-class accuracy", *parts)


def confusion_section(data: ReportData) -> str:
    matrix = data.evaluation.confusion_matrix
    if matrix is None:
        return _section("confusion", "Confusion matrix", "<p>This evaluation has no confusion-matrix plot.</p>")
    size = max(len(data.class_names), len(matrix))
    names = [slice_table.class_label(index, data.class_names) for index in range(size)]
    return _section(
        "confusion",
        "Confusion matrix (test split, rows: true class, columns: predicted)",
        report_charts.confusion_matrix_chart(names, padded(matrix, size)),
    )


def _thumbnail(example: WorstExample) -> str:
    source = "data:image/png;base64," + base64.b64encode(example.png).decode("ascii")
    caption = (
        f"true <b>{_escape(example.true_class)}</b> (p={example.true_class_probability:.3f})<br>"
        f"predicted <b>{_escape(example.predicted_class)}</b> (p={example.predicted_probability:.3f})<br>"
        f"<code>{_escape(example.example_id)}</code>"
    )
    alt = f"{example.example_id}: {example.true_class} predicted as {example.predicted_class}"
    return f'<figure><img src="{source}" alt="{_escape(alt)}"><figcaption>{caption}</figcaption></figure>'


def worst_section(data: ReportData) -> str:
    if not data.worst_examples:
        return _section("worst", "Worst-classified test images", "<p>No test examples were scored.</p>")
    intro = (
        f"<p>The {len(data.worst_examples)} of {data.scored_examples:,} test images with the lowest "
        "probability for their true class, worst first.</p>"
    )
    grid = '<div class="worst">' + "".join(_thumbnail(example) for example in data.worst_examples) + "</div>"
    return _section("worst", "Worst-classified test images", intro, grid)


def trend_section(points: Sequence[TrendPoint]) -> str:
    if not points:
        return _section("trend", "Accuracy across the pipeline's models", "<p>No evaluated models.</p>")
    rows = [
        [point.model_label, point.evaluated_at, f"{point.accuracy:.4f}", "yes" if point.blessed else "no"]
        for point in points
    ]
    return _section(
        "trend",
        "Accuracy across the pipeline's models",
        f'<div class="charts">{report_charts.accuracy_trend_chart(points)}',
        _table(["model", "evaluated at (UTC)", "test accuracy", "blessed"], rows, "trend"),
        "</div>",
    )


def timings_section(summary: dict) -> str:
    seconds = summary.get("components") or {}
    if not seconds:
        return _section("timings", "Component timings", "<p>No component timings for this evaluation.</p>")
    rows = [[name, f"{value:.1f}"] for name, value in seconds.items()]
    caption = (
        "<p>Wall seconds of the run that wrote this evaluation. Near 0 s: reused from TFX's cache, "
        "or a component with no work of its own (ImportSchemaGen, the resolver).</p>"
    )
    return _section(
        "timings",
        "Component timings",
        caption,
        f'<div class="charts">{report_charts.component_timings_chart(seconds)}',
        _table(["component", "wall seconds"], rows, "timings"),
        "</div>",
    )


def render(data: ReportData, generated_at: datetime.datetime | None = None) -> str:
    """The whole page."""
    moment = (generated_at or datetime.datetime.now(datetime.timezone.utc)).isoformat(timespec="seconds")
    notes = "".join(f'<p class="note">{_escape(note)}</p>' for note in data.notes)
    body = "".join(
        [
            f"<h1>{_escape(data.title)}</h1><p>Generated {_escape(moment)}.</p>{notes}",
            summary_section(data),
            verdict_section(data),
            serving_section(data),
            slices_section(data),
            per_class_section(data),
            confusion_section(data),
            worst_section(data),
            trend_section(data.trend),
            timings_section(data.summary),
        ]
    )
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">'
        f"<title>{_escape(data.title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>\n"
    )
