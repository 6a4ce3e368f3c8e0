"""Real TFMA evaluation folders for tests, written without a model.

TFMA runs model-free when predictions are a column of the data, so the files
are exactly what the Evaluator writes (same EvalConfig, same extractors,
same writers), and tests know every number in them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline import datasets

CLASS_NAMES = datasets.get_dataset(datasets.DEFAULT_DATASET).class_names


def synthetic_predictions(count: int = 200, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Labels and softmax outputs; higher class ids are easier, so classes differ."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % len(CLASS_NAMES)
    rng.shuffle(labels)
    logits = rng.normal(size=(count, len(CLASS_NAMES)))
    logits[np.arange(count), labels] += 0.5 + 0.25 * labels
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return labels, probabilities.astype(np.float32)


def write_evaluation(
    output: str, labels: np.ndarray, probabilities: np.ndarray, threshold: float, eval_config: Any = None
) -> None:
    """Runs TFMA with the pipeline's EvalConfig (gate at `threshold`, no baseline), or with
    `eval_config`, into `output`."""
    import apache_beam as beam
    import pandas as pd
    import pyarrow as pa
    import tensorflow_model_analysis as tfma
    from apache_beam.options.pipeline_options import PipelineOptions
    from tfx_bsl.arrow import table_util

    from components import prediction_outcome
    from pipeline.configs import IN_PROCESS_BEAM_ARGS
    from pipeline.eval_config import make_eval_config

    frame = pd.DataFrame(
        {
            "label": labels.astype(np.int64),
            "class_name": [CLASS_NAMES[label] for label in labels],
            "probabilities": list(probabilities),
        }
    )
    batch = table_util.CanonicalizeRecordBatch(pa.RecordBatch.from_pandas(frame))
    eval_config = eval_config or make_eval_config(threshold, None, num_classes=len(CLASS_NAMES))
    with beam.Pipeline(options=PipelineOptions(list(IN_PROCESS_BEAM_ARGS))) as pipeline:
        _ = (
            pipeline
            | beam.Create([batch])
            | tfma.ExtractEvaluateAndWriteResults(
                eval_config=eval_config,
                # What TFX's Evaluator calls through module_path: TFMA's defaults + outcome.
                extractors=prediction_outcome.custom_extractors(None, eval_config, None),
                output_path=output,
            )
        )
