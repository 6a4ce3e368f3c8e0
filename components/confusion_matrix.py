"""The Evaluator's confusion matrix of the candidate model, read with TFMA's own loader.

The serving gate compares the served model's predictions with it, and
`visionpipe slices` / `report` show it. The pipeline's EvalConfig has one
MultiClassConfusionMatrixPlot at threshold 0, where every example counts for
its arg-max class.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import tensorflow_model_analysis as tfma
from tensorflow_model_analysis import constants as tfma_constants

# How TFMA names the evaluated model: "" alone, "candidate" beside a baseline.
CANDIDATE_MODEL_NAMES = ("", tfma_constants.CANDIDATE_KEY)


def evaluated_confusion_matrix(evaluation_uri: str) -> list[list[int]] | None:
    """matrix[true][predicted]: test examples of class `true` the candidate predicted as `predicted`.

    The overall slice's matrix at its lowest threshold; None when the
    evaluation has no such plot. "No prediction" entries (class -1, only at
    thresholds above 0) are left out.
    """
    for plots in tfma.load_plots(evaluation_uri):
        if plots.slice_key.single_slice_keys:
            continue
        for entry in plots.plot_keys_and_values:
            if entry.key.model_name not in CANDIDATE_MODEL_NAMES:
                continue
            matrices = entry.value.multi_class_confusion_matrix_at_thresholds.matrices
            if not matrices:
                continue
            cells = [
                (cell.actual_class_id, cell.predicted_class_id, int(round(cell.num_weighted_examples)))
                for cell in min(matrices, key=lambda matrix: matrix.threshold).entries
                if cell.actual_class_id >= 0 and cell.predicted_class_id >= 0
            ]
            return count_matrix(cells, 1 + max((max(true, predicted) for true, predicted, _ in cells), default=-1))
    return None


def count_matrix(cells: Iterable[tuple[int, int, int]], size: int) -> list[list[int]]:
    """matrix[true][predicted] summed from (true, predicted, count) cells, size x size."""
    matrix = [[0] * size for _ in range(size)]
    for true, predicted, count in cells:
        matrix[true][predicted] += count
    return matrix


def padded(matrix: Sequence[Sequence[int]], size: int) -> list[list[int]]:
    """The matrix grown to size x size (TFMA's ends at the highest class it saw)."""
    rows = [list(row) + [0] * (size - len(row)) for row in matrix]
    return rows + [[0] * size for _ in range(size - len(rows))]
