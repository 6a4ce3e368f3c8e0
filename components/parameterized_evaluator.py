"""`ParameterizedEvaluator`: TFX's Evaluator with the accuracy threshold as a parameter of its own.

The gate's threshold is a `lower_bound` deep inside the EvalConfig, one
execution property that TFX's KFP v2 step builder serializes whole when the
package is compiled; a run parameter (a TFX `RuntimeParameter`) can only stand
for a top-level property. So the threshold is its own property,
`accuracy_threshold`, and the executor writes it into the EvalConfig's one
value threshold before the stock executor evaluates and blesses. TFMA then
records the EvalConfig it really used in the evaluation output.

Locally the threshold is a plain number, equal to the one the EvalConfig was
built with; the node keeps the stock id "Evaluator".
"""

from __future__ import annotations

from typing import Any

import tensorflow_model_analysis as tfma
from tfx import types
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.orchestration import data_types
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import json_utils, proto_utils

NODE_ID = "Evaluator"
ACCURACY_THRESHOLD_KEY = "accuracy_threshold"


class ParameterizedEvaluatorSpec(standard_component_specs.EvaluatorSpec):
    """The stock Evaluator's spec plus the gate's threshold."""

    PARAMETERS = {
        **standard_component_specs.EvaluatorSpec.PARAMETERS,
        ACCURACY_THRESHOLD_KEY: ExecutionParameter(type=float),
    }


def _value_thresholds(eval_config: tfma.EvalConfig) -> list[tfma.GenericValueThreshold]:
    """Every value threshold in `eval_config` (per-slice, cross-slice and plain ones)."""
    found = []
    for metrics_spec in eval_config.metrics_specs:
        for metric in metrics_spec.metrics:
            thresholds = [metric.threshold]
            thresholds += [per_slice.threshold for per_slice in metric.per_slice_thresholds]
            thresholds += [cross_slice.threshold for cross_slice in metric.cross_slice_thresholds]
            found += [t.value_threshold for t in thresholds if t.HasField("value_threshold")]
    return found


def with_accuracy_threshold(eval_config_json: str, threshold: float) -> str:
    """The EvalConfig (JSON) with its one value threshold's lower bound set to `threshold`.

    One, because this pipeline gates on one number; an EvalConfig with none or
    several is a wiring mistake, refused rather than guessed at.
    """
    eval_config = proto_utils.json_to_proto(eval_config_json, tfma.EvalConfig())
    value_thresholds = _value_thresholds(eval_config)
    if len(value_thresholds) != 1:
        raise ValueError(
            f"the EvalConfig must have exactly one value threshold for {ACCURACY_THRESHOLD_KEY}, "
            f"it has {len(value_thresholds)}"
        )
    value_thresholds[0].lower_bound.value = float(threshold)
    return proto_utils.proto_to_json(eval_config)


class Executor(evaluator_executor.Executor):
    """The stock Evaluator executor, run with `accuracy_threshold` written into the EvalConfig."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        key = standard_component_specs.EVAL_CONFIG_KEY
        exec_properties = {
            **exec_properties,
            key: with_accuracy_threshold(exec_properties[key], exec_properties[ACCURACY_THRESHOLD_KEY]),
        }
        super().Do(input_dict, output_dict, exec_properties)


class ParameterizedEvaluator(base_component.BaseComponent):
    """An Evaluator with an EvalConfig, a UDF module by import path and `accuracy_threshold` as a parameter.

    Only what this pipeline uses of the stock Evaluator's arguments; the
    module by import path, because TFX would package a `module_file` as a
    wheel through pip.
    """

    SPEC_CLASS = ParameterizedEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(
        self,
        *,
        examples: types.BaseChannel,
        model: types.BaseChannel,
        eval_config: tfma.EvalConfig,
        accuracy_threshold: float | data_types.RuntimeParameter,
        example_splits: list[str],
        module_path: str,
        baseline_model: types.BaseChannel | None = None,
    ) -> None:
        with_accuracy_threshold(proto_utils.proto_to_json(eval_config), 0.0)  # one value threshold, or refused now
        super().__init__(
            spec=ParameterizedEvaluatorSpec(
                examples=examples,
                model=model,
                baseline_model=baseline_model,
                eval_config=eval_config,
                accuracy_threshold=accuracy_threshold,
                example_splits=json_utils.dumps(example_splits),
                module_path=module_path,
                evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
                blessing=types.Channel(type=standard_artifacts.ModelBlessing),
            )
        )
        self.with_id(NODE_ID)
