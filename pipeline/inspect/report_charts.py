"""The report's charts, drawn with matplotlib and returned as inline SVG text.

SVG keeps the HTML self-contained and sharp at any zoom, and its text stays
text (`svg.fonttype: none`), so class names in a chart can be searched and
tested. Several SVGs inlined in one page must not share element ids, so each
chart's ids are prefixed with its name (and `svg.hashsalt` keeps matplotlib's
hashed ids reproducible).
Figures are made with `matplotlib.figure.Figure`, not pyplot, so no global
figure state or GUI backend is involved.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence

import matplotlib
from matplotlib.figure import Figure

from pipeline.inspect.report_data import TrendPoint

ACCENT = "#3465a4"
MUTED = "#babdb6"
WARNING = "#cc0000"
_XML_PROLOGUE = re.compile(r"^.*?(?=<svg)", re.DOTALL)
_ID = re.compile(r'\bid="([^"]+)"')
_REFERENCE = re.compile(r'(href="#|url\(#)([^")]+)')


def _scoped_ids(svg: str, prefix: str) -> str:
    """Every id (and every reference to one) prefixed, so inlined SVGs never share ids.

    matplotlib numbers its groups per figure ("figure_1", "axes_1"), so two
    charts on one page would otherwise repeat them.
    """
    ids = set(_ID.findall(svg))
    svg = _ID.sub(lambda match: f'id="{prefix}-{match.group(1)}"', svg)
    return _REFERENCE.sub(
        lambda match: f"{match.group(1)}{prefix}-{match.group(2)}" if match.group(2) in ids else match.group(0),
        svg,
    )


def to_svg(figure: Figure, name: str, title: str) -> str:
    """The figure as an <svg> element (no XML prologue), tagged for the page."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": name, "svg.fonttype": "none"}):
        figure.savefig(buffer, format="svg", bbox_inches="tight")
    svg = _scoped_ids(_XML_PROLOGUE.sub("", buffer.getvalue(), count=1), name)
    return svg.replace(
        "<svg ", f'<svg class="chart" id="chart-{name}" role="img" aria-label="{title}" ', 1
    )


def class_accuracy_chart(class_names: Sequence[str], accuracies: Sequence[float | None], overall: float | None) -> str:
    """Horizontal bars, one per class, with the overall accuracy as a line."""
    figure = Figure(figsize=(6.4, 0.32 * len(class_names) + 1.0))
    axes = figure.add_subplot()
    values = [0.0 if value is None else value for value in accuracies]
    positions = range(len(class_names))
    bars = axes.barh(positions, values, color=ACCENT)
    for bar, value in zip(bars, accuracies):
        label = "n/a" if value is None else f"{value:.1%}"
        axes.text(bar.get_width() + 0.005, bar.get_y() + bar.get_height() / 2, label, va="center", fontsize=8)
    if overall is not None:
        axes.axvline(overall, color=WARNING, linestyle="--", linewidth=1, label=f"overall {overall:.1%}")
        axes.legend(loc="lower right", fontsize=8)
    axes.set_yticks(list(positions), labels=list(class_names))
    axes.invert_yaxis()
    axes.set_xlim(0, 1.08)
    axes.set_xlabel("test accuracy")
    axes.spines[["top", "right"]].set_visible(False)
    return to_svg(figure, "class-accuracy", "Test accuracy per class")


def confusion_matrix_chart(class_names: Sequence[str], matrix: Sequence[Sequence[int]]) -> str:
    """Heat map of row-normalized counts (recall per true class), counts written in."""
    size = len(class_names)
    figure = Figure(figsize=(0.55 * size + 2.2, 0.55 * size + 1.6))
    axes = figure.add_subplot()
    totals = [max(sum(row), 1) for row in matrix]
    shares = [[count / total for count in row] for row, total in zip(matrix, totals)]
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    for true, row in enumerate(matrix):
        for predicted, count in enumerate(row):
            if count:
                dark = shares[true][predicted] > 0.5
                axes.text(predicted, true, str(count), ha="center", va="center", fontsize=7,
                          color="white" if dark else "black")
    axes.set_xticks(range(size), labels=list(class_names), rotation=45, ha="right")
    axes.set_yticks(range(size), labels=list(class_names))
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of the true class")
    return to_svg(figure, "confusion-matrix", "Confusion matrix")


def accuracy_trend_chart(points: Sequence[TrendPoint]) -> str:
    """Overall accuracy per evaluated model, oldest first; blessed ones filled."""
    figure = Figure(figsize=(6.4, 2.8))
    axes = figure.add_subplot()
    positions = list(range(1, len(points) + 1))
    axes.plot(positions, [point.accuracy for point in points], color=MUTED, linewidth=1, zorder=1)
    for blessed, color, label in ((True, ACCENT, "blessed"), (False, WARNING, "not blessed")):
        chosen = [(x, point.accuracy) for x, point in zip(positions, points) if point.blessed is blessed]
        if chosen:
            xs, ys = zip(*chosen)
            axes.scatter(xs, ys, color=color, label=label, zorder=2,
                         facecolors=color if blessed else "white")
    axes.set_xticks(positions, labels=[point.model_label.rsplit("/", 1)[-1] for point in points])
    axes.set_xlabel("evaluated model (Trainer output id), oldest first")
    axes.set_ylabel("test accuracy")
    axes.legend(fontsize=8, loc="best")
    axes.spines[["top", "right"]].set_visible(False)
    return to_svg(figure, "accuracy-trend", "Test accuracy of the pipeline's models over time")


def component_timings_chart(seconds: dict[str, float]) -> str:
    """Horizontal bars of wall seconds per component, in run order."""
    names = list(seconds)
    figure = Figure(figsize=(6.4, 0.3 * len(names) + 1.0))
    axes = figure.add_subplot()
    bars = axes.barh(range(len(names)), [seconds[name] for name in names], color=ACCENT)
    for bar, name in zip(bars, names):
        axes.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {seconds[name]:.1f} s", va="center", fontsize=8)
    axes.set_yticks(range(len(names)), labels=names)
    axes.invert_yaxis()
    axes.set_xlabel("wall seconds")
    axes.margins(x=0.15)
    axes.spines[["top", "right"]].set_visible(False)
    return to_svg(figure, "component-timings", "Wall seconds per component")
