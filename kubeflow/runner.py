"""Kubeflow runner: the same pipeline definition, compiled into a KFP v2 package.

`pipeline.definition.create_pipeline` builds the pipeline for both runners; this
module only decides what differs on a cluster:

* the data location, the epochs, the batch size, the model and the accuracy
  threshold are run parameters (kubeflow/run_parameters.py), with the
  compiled values as defaults;
* the curated schemas are read from the image (`/app/schema/...`), or from
  this checkout for a package meant for `kubeflow local-run`;
* no latest-blessed-model Resolver: Kubeflow Pipelines' open-source backend
  rejects Resolver nodes ("resolver executors not implemented"), so the
  Evaluator gates on the absolute accuracy threshold only;
* every component gets CPU/memory requests and the Trainer a GPU limit
  (`with_platform_config`), plus a node selector and toleration for GPU nodes;
* the serving check is the ServingGate, which runs in its own pod like any
  other executor: TFX's Kubeflow V2 compiler refuses InfraValidator outright
  (tfx/orchestration/kubeflow/v2/step_builder.py raises NotImplementedError
  for it), so `--serving-check infra-validator` is refused before compiling;
* every executor runs the container image given with `--image`.

Used two ways:
* `visionpipe kubeflow compile ...` calls `compile_package(config, settings, path)`,
  which writes the YAML package that `kfp.Client` and the KFP UI accept;
* the TFX CLI (`tfx pipeline create --engine vertex --pipeline_path
  kubeflow/runner.py`) executes this file as a script, with its settings from
  VISIONPIPE_* variables (`pipeline.local_runner` plus VISIONPIPE_IMAGE and
  VISIONPIPE_PIPELINE_ROOT). TFX's CLI then writes its own Vertex-style
  `pipeline.json` (a PipelineJob) instead of our YAML package.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile

if __package__ in (None, ""):
    # Run as a script by the TFX CLI: the repository root first on the path.
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from tfx import v1 as tfx  # noqa: E402
from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner  # noqa: E402

from kubeflow import package  # noqa: E402
from kubeflow.resources import resource_spec  # noqa: E402
from kubeflow.run_parameters import RUN_PARAMETERS  # noqa: E402
from kubeflow.settings import (  # noqa: E402
    CONTAINER_PROJECT_ROOT,
    PACKAGE_FILENAME,
    KubeflowConfigError,
    KubeflowSettings,
)
from pipeline import datasets, definition  # noqa: E402
from pipeline.configs import DEFAULT_EPOCHS, INFRA_VALIDATOR, SERVING_GATE, RunConfig  # noqa: E402

TRAINER_ID = "Trainer"
CONTAINER_SCHEMA_ROOT = f"{CONTAINER_PROJECT_ROOT}/schema"


def cluster_config(config: RunConfig, settings: KubeflowSettings) -> RunConfig:
    """`config` with its locations on the cluster: data and outputs under the roots.

    And with a number of epochs: a time budget counts from the run's start,
    which a Trainer pod is not told, so a package's `epochs` run parameter
    defaults to `configs.DEFAULT_EPOCHS` unless --epochs was given.
    """
    return dataclasses.replace(
        config,
        data_dir=settings.data_root_for(config.dataset),
        output_dir=settings.pipeline_root,
        epochs=config.epochs if config.epochs is not None else DEFAULT_EPOCHS,
    )


def run_parameter_defaults(config: RunConfig, settings: KubeflowSettings) -> dict[str, str | int | float]:
    """Each run parameter's default: the compiled value of its RunConfig field."""
    config = cluster_config(config, settings)
    return {parameter.name: getattr(config, parameter.config_field) for parameter in RUN_PARAMETERS}


def build_kubeflow_pipeline(config: RunConfig, settings: KubeflowSettings) -> tfx.dsl.Pipeline:
    """The shared pipeline definition with the run parameters and the cluster's resources."""
    if config.serving_check == INFRA_VALIDATOR:
        raise KubeflowConfigError(
            f"--serving-check {INFRA_VALIDATOR}: TFX {tfx.__version__}'s Kubeflow V2 compiler cannot compile "
            f"InfraValidator (its step builder refuses it); use the default --serving-check {SERVING_GATE}, "
            "which runs in the pipeline image"
        )
    defaults = run_parameter_defaults(config, settings)
    pipeline = definition.create_pipeline(
        cluster_config(config, settings),
        run_parameters={
            parameter.config_field: tfx.dsl.experimental.RuntimeParameter(
                name=parameter.name, ptype=parameter.ptype, default=defaults[parameter.name]
            )
            for parameter in RUN_PARAMETERS
        },
        schema_root=datasets.SCHEMA_ROOT if settings.local_run else CONTAINER_SCHEMA_ROOT,
        compare_with_blessed=False,
        beam_pipeline_args=settings.beam_pipeline_args,
    )
    for component in pipeline.components:
        resources = (
            settings.trainer_resources
            if component.id == TRAINER_ID
            else settings.component_resources
        )
        component.with_platform_config(resource_spec(resources))
    return pipeline


def _dag_runner(
    settings: KubeflowSettings, output_dir: str, output_filename: str
) -> kubeflow_v2_dag_runner.KubeflowV2DagRunner:
    return kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(
            default_image=settings.image,
            # The container entrypoint TFX's KFP v2 launcher runs (kubeflow/Dockerfile).
            default_commands=list(kubeflow_v2_dag_runner.KUBEFLOW_TFX_CMD),
            # Pipeline spec 2.1: runtime parameters as `parameterType`, which
            # the YAML writer and the KFP 2.x backend need.
            use_pipeline_spec_2_1=True,
        ),
        output_dir=output_dir,
        output_filename=output_filename,
    )


def compile_package(config: RunConfig, settings: KubeflowSettings, output_path: str) -> str:
    """Compiles the pipeline into a KFP v2 YAML package at `output_path`.

    The package is written whole or not at all: an existing file at
    `output_path` is replaced only once the new package has been compiled,
    completed (pipeline root, parameter default, resources, node placement)
    and parsed back as a valid PipelineSpec.
    """
    pipeline = build_kubeflow_pipeline(config, settings)
    with tempfile.TemporaryDirectory(prefix="visionpipe-kfp-") as scratch:
        _dag_runner(settings, scratch, PACKAGE_FILENAME).run(pipeline)
        with open(os.path.join(scratch, PACKAGE_FILENAME), encoding="utf-8") as handle:
            spec = package.read_pipeline_spec_document(handle.read())
    documents = package.complete_package(
        spec,
        pipeline_root=settings.pipeline_root,
        parameter_defaults=run_parameter_defaults(config, settings),
        default_resources=resource_spec(settings.component_resources),
        gpu_executor=f"{TRAINER_ID}_executor" if settings.trainer_resources.gpus else None,
        gpu_node_selector=settings.gpu_node_selector,
        gpu_resource=settings.trainer_resources.gpu_resource,
    )
    package.write_package(documents, output_path)
    return output_path


def settings_from_environment(environ: dict[str, str] | None = None) -> KubeflowSettings:
    """KubeflowSettings from VISIONPIPE_IMAGE / _PIPELINE_ROOT / _DATA_DIR, for the TFX CLI."""
    environ = dict(os.environ if environ is None else environ)
    missing = [name for name in ("VISIONPIPE_IMAGE", "VISIONPIPE_PIPELINE_ROOT") if not environ.get(name)]
    if missing:
        raise SystemExit(f"kubeflow/runner.py: set {' and '.join(missing)} (see README, Kubeflow)")
    return KubeflowSettings(
        image=environ["VISIONPIPE_IMAGE"],
        pipeline_root=environ["VISIONPIPE_PIPELINE_ROOT"],
        data_root=environ.get("VISIONPIPE_DATA_DIR") or None,
    )


def main() -> None:
    """Script entry for the TFX CLI, which patches `KubeflowV2DagRunner.run` to write its pipeline.json."""
    from pipeline.local_runner import config_from_environment

    settings = settings_from_environment()
    config = config_from_environment()
    # The run parameters' defaults as the PipelineJob's parameter values: TFX
    # leaves them out of the spec, which would make every one mandatory.
    _dag_runner(settings, os.getcwd(), "pipeline.json").run(
        build_kubeflow_pipeline(config, settings), parameter_values=run_parameter_defaults(config, settings)
    )


if __name__ == "__main__":
    main()
