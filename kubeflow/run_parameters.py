"""The compiled package's run parameters: what each stands for, its type, and checking `--param NAME=VALUE`.

A package takes five run parameters, so an experiment changes a number, not
the package: where the data is, how long and with what batch and network to
train, and the accuracy the Evaluator blesses at. Each one is a TFX
`RuntimeParameter` standing in for one `RunConfig` field
(`pipeline.definition.RUN_PARAMETER_FIELDS`), with the compiled value as its
default. Values given with `--param` are checked here, against the package's
own parameter list and against the same rules as the matching option of
`visionpipe run`, so a typo costs one line, not a failed pod minutes later.

Imports nothing heavy: `kubeflow run` checks parameters without TFX.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kubeflow.settings import DATA_ROOT_PARAMETER, KubeflowConfigError
from pipeline import configs
from pipeline.cli import options


def _model_name(text: str) -> str:
    from trainer_module.model_names import MODEL_NAMES

    if text not in MODEL_NAMES:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(MODEL_NAMES)}, got {text!r}")
    return text


def _location(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


@dataclasses.dataclass(frozen=True)
class RunParameter:
    """One run parameter: its name in the package, the RunConfig field it sets, its type and check."""

    name: str
    config_field: str
    ptype: type
    parse: Callable[[str], Any]  # text -> value; raises argparse.ArgumentTypeError, as for the CLI options
    option: str  # the `visionpipe run` option it corresponds to


RUN_PARAMETERS: tuple[RunParameter, ...] = (
    RunParameter(DATA_ROOT_PARAMETER, "data_dir", str, _location, "--data-dir"),
    RunParameter("epochs", "epochs", int, options.bounded_int(configs.MAX_EPOCHS), "--epochs"),
    RunParameter("batch_size", "batch_size", int, options.bounded_int(configs.MAX_BATCH_SIZE), "--batch-size"),
    RunParameter("model", "model", str, _model_name, "--model"),
    RunParameter("accuracy_threshold", "accuracy_threshold", float, options.fraction, "--accuracy-threshold"),
)
BY_NAME = {parameter.name: parameter for parameter in RUN_PARAMETERS}

# The package's parameterType for each Python type (KFP pipeline spec 2.1).
PARAMETER_TYPES = {str: "STRING", int: "NUMBER_INTEGER", float: "NUMBER_DOUBLE"}


def parse_assignments(assignments: Sequence[str], package_parameters: Mapping[str, str]) -> dict[str, Any]:
    """`NAME=VALUE` strings -> {name: typed value}, checked against the package's parameters.

    `package_parameters`: the package's run parameters, name -> parameterType
    (`STRING`, `NUMBER_INTEGER`, `NUMBER_DOUBLE`). Raises KubeflowConfigError,
    one line, for a malformed assignment, a name the package does not take, a
    value of the wrong type or out of range, or a name given twice.
    """
    values: dict[str, Any] = {}
    for assignment in assignments:
        name, separator, text = assignment.partition("=")
        if not separator or not name:
            raise KubeflowConfigError(f"--param {assignment!r}: expected NAME=VALUE")
        if name not in package_parameters:
            known = ", ".join(sorted(package_parameters)) or "none"
            raise KubeflowConfigError(f"--param {assignment}: the package has no run parameter {name!r} (it has: {known})")
        if name in values:
            raise KubeflowConfigError(f"--param {name}: given twice")
        parameter = BY_NAME.get(name)
        if parameter is None or PARAMETER_TYPES[parameter.ptype] != package_parameters[name]:
            raise KubeflowConfigError(
                f"--param {name}: the package's parameter is a {package_parameters[name]}, which this "
                "version of visionpipe does not set; recompile the package with this version"
            )
        try:
            values[name] = parameter.parse(text)
        except argparse.ArgumentTypeError as error:
            raise KubeflowConfigError(f"--param {assignment}: {name} {error}") from None
    return values


def package_parameter_types(spec: Any) -> dict[str, str]:
    """name -> parameterType of a PipelineSpec's run parameters (the root's input parameters)."""
    from kfp.pipeline_spec import pipeline_spec_pb2

    type_names = pipeline_spec_pb2.ParameterType.ParameterTypeEnum
    return {
        name: type_names.Name(definition.parameter_type)
        for name, definition in spec.root.input_definitions.parameters.items()
    }


def package_default(spec: Any, name: str) -> Any:
    """The package's default for run parameter `name`, or None."""
    from google.protobuf import json_format

    definition = spec.root.input_definitions.parameters.get(name)
    if definition is None or not definition.HasField("default_value"):
        return None
    return json_format.MessageToDict(definition.default_value)
