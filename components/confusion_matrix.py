"""The Evaluator's confusion matrix of the candidate model, read with TFMA's own loader.

The serving gate compares the served model's predictions with it, and
`visionpipe slices` / `report` show it. The pipeline's EvalConfig has one
MultiClassConfusionMatrixPlot at threshold 0, where every example counts for
its arg-max class.
"""

from __future__ import annotations

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
            size = 1 + max((max(true, predicted) for true, predicted, _ in cells), default=-1)
            matrix = [[0] * size for _ in range(size)]
            for true, predicted, count in cells:
                matrix[true][predicted] += count
            return matrix
    return None
