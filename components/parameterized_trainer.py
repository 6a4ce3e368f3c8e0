"""`ParameterizedTrainer`: TFX's Trainer with the epochs, batch size and model as parameters of their own.

TFX passes a Trainer's settings to `run_fn` in `custom_config`, one JSON
string. On Kubeflow a run parameter (a TFX `RuntimeParameter`) can only stand
for a whole execution property: TFX's KFP v2 step builder maps top-level
properties to pipeline parameters and serializes everything nested, so an
epoch count inside `custom_config` is fixed when the package is compiled.
This component gives the three settings a user varies between experiments
their own execution properties, which may be RuntimeParameters, and its
executor folds them into `custom_config` before the stock GenericExecutor
runs `run_fn`, which reads them there as before (`TrainingConfig`).

Locally the three are plain values; the node keeps the stock id "Trainer",
which the run summary, the progress lines and the artifact paths use.
"""

from __future__ import annotations

from typing import Any

from tfx import types
from tfx.components.trainer import executor as trainer_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.orchestration import data_types
from tfx.proto import trainer_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import json_utils

NODE_ID = "Trainer"
EPOCHS_KEY = "epochs"
BATCH_SIZE_KEY = "batch_size"
MODEL_KEY = "model_name"  # "model" is the Trainer's output channel
# Execution property -> the custom_config key run_fn reads it from.
RUN_PARAMETER_KEYS = {EPOCHS_KEY: "epochs", BATCH_SIZE_KEY: "batch_size", MODEL_KEY: "model"}


class ParameterizedTrainerSpec(standard_component_specs.TrainerSpec):
    """The stock Trainer's spec plus the three training settings."""

    PARAMETERS = {
        **standard_component_specs.TrainerSpec.PARAMETERS,
        EPOCHS_KEY: ExecutionParameter(type=int),
        BATCH_SIZE_KEY: ExecutionParameter(type=int),
        MODEL_KEY: ExecutionParameter(type=str),
    }


def fold_run_parameters(exec_properties: dict[str, Any]) -> dict[str, Any]:
    """`exec_properties` with the three settings written into `custom_config`, where run_fn reads them."""
    custom_config = json_utils.loads(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "{}")
    custom_config.update(
        epochs=int(exec_properties[EPOCHS_KEY]),
        batch_size=int(exec_properties[BATCH_SIZE_KEY]),
        model=str(exec_properties[MODEL_KEY]),
    )
    return {**exec_properties, standard_component_specs.CUSTOM_CONFIG_KEY: json_utils.dumps(custom_config)}


class Executor(trainer_executor.GenericExecutor):
    """The stock GenericExecutor, run with the settings folded into `custom_config`."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        super().Do(input_dict, output_dict, fold_run_parameters(exec_properties))


class ParameterizedTrainer(base_component.BaseComponent):
    """A Trainer with `run_fn` by import path and `epochs`, `batch_size`, `model_name` as parameters.

    Only what this pipeline uses of the stock Trainer's arguments: raw
    examples with a transform graph, a schema, `run_fn` by import path (TFX
    would package a `module_file` as a wheel through pip), train/eval args and
    the rest of the settings in `custom_config`.
    """

    SPEC_CLASS = ParameterizedTrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(
        self,
        *,
        examples: types.BaseChannel,
        transform_graph: types.BaseChannel,
        schema: types.BaseChannel,
        run_fn: str,
        train_args: trainer_pb2.TrainArgs,
        eval_args: trainer_pb2.EvalArgs,
        custom_config: dict[str, Any],
        epochs: int | data_types.RuntimeParameter,
        batch_size: int | data_types.RuntimeParameter,
        model_name: str | data_types.RuntimeParameter,
    ) -> None:
        clashing = sorted(set(RUN_PARAMETER_KEYS.values()) & set(custom_config))
        if clashing:
            raise ValueError(f"custom_config must not set {clashing}: they are this component's own parameters")
        super().__init__(
            spec=ParameterizedTrainerSpec(
                examples=examples,
                transform_graph=transform_graph,
                schema=schema,
                run_fn=run_fn,
                train_args=train_args,
                eval_args=eval_args,
                custom_config=json_utils.dumps(custom_config),
                epochs=epochs,
                batch_size=batch_size,
                model_name=model_name,
                model=types.Channel(type=standard_artifacts.Model),
                model_run=types.Channel(type=standard_artifacts.ModelRun),
            )
        )
        self.with_id(NODE_ID)
