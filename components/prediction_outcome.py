"""Evaluator extension: slice the test split by whether the model got each image right.

TFMA slices on features only (raw, or a model's `transformed_features`
signature), never on predictions. Adding a `prediction_outcome` feature
("correct" / "misclassified") to every example after the model has predicted,
and before TFMA computes slice keys, lets the Evaluator report metrics for the
two groups (e.g. mean confidence and calibration of the mistakes) without a
second forward pass through the model.

TFX's Evaluator loads this module by `module_path` and calls
`custom_extractors`; the extractors are TFMA's defaults plus this one.
"""

from __future__ import annotations

from typing import Any

import apache_beam as beam
import numpy as np
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.extractors import slice_key_extractor

from trainer_module import features

PREDICTION_OUTCOME_KEY = "prediction_outcome"
CORRECT = b"correct"
MISCLASSIFIED = b"misclassified"
_STAGE_NAME = "AddPredictionOutcome"


def _candidate_spec(eval_config: tfma.EvalConfig) -> tfma.ModelSpec:
    """The model being judged: the one spec that is not the baseline."""
    return next(spec for spec in eval_config.model_specs if not spec.is_baseline)


def _for_model(value: Any, model_name: str, output_key: str) -> Any:
    """One model's array out of TFMA's nesting ({model: {output: array}} as applicable)."""
    if isinstance(value, dict) and model_name in value:
        value = value[model_name]
    if isinstance(value, dict) and output_key in value:
        value = value[output_key]
    return value


def outcome(label: Any, probabilities: Any) -> bytes:
    """CORRECT when the arg-max class is the label, else MISCLASSIFIED."""
    true_class = int(np.asarray(label).reshape(-1)[0])
    predicted_class = int(np.argmax(np.asarray(probabilities).reshape(-1)))
    return CORRECT if predicted_class == true_class else MISCLASSIFIED


def add_prediction_outcome(extracts: dict, model_name: str, prediction_key: str) -> dict:
    """A copy of one example's extracts with the candidate's outcome as a feature."""
    probabilities = _for_model(extracts[tfma.PREDICTIONS_KEY], model_name, prediction_key)
    label = _for_model(extracts[tfma.LABELS_KEY], model_name, features.LABEL_KEY)
    result = dict(extracts)
    result[tfma.FEATURES_KEY] = {
        **extracts[tfma.FEATURES_KEY],
        PREDICTION_OUTCOME_KEY: np.array([outcome(label, probabilities)], dtype=object),
    }
    return result


def prediction_outcome_extractor(eval_config: tfma.EvalConfig) -> tfma.extractors.Extractor:
    """An extractor for unbatched extracts (it must run after TFMA's UnbatchExtractor)."""
    spec = _candidate_spec(eval_config)
    model_name = spec.name if len(eval_config.model_specs) > 1 else ""
    return tfma.extractors.Extractor(
        stage_name=_STAGE_NAME,
        ptransform=beam.Map(add_prediction_outcome, model_name=model_name, prediction_key=spec.prediction_key),
    )


def custom_extractors(
    eval_shared_model: Any, eval_config: tfma.EvalConfig, tensor_adapter_config: Any
) -> list[tfma.extractors.Extractor]:
    """TFMA's default extractors with the outcome added just before slice keys are made.

    Called by TFX's Evaluator executor (the name and arguments are its contract).
    """
    extractors = tfma.default_extractors(
        eval_shared_model=eval_shared_model,
        eval_config=eval_config,
        tensor_adapter_config=tensor_adapter_config,
    )
    stages = [extractor.stage_name for extractor in extractors]
    position = stages.index(slice_key_extractor.SLICE_KEY_EXTRACTOR_STAGE_NAME)
    return [*extractors[:position], prediction_outcome_extractor(eval_config), *extractors[position:]]
