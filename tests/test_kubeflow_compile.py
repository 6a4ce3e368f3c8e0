"""The Kubeflow package: compiled for real by TFX's KubeflowV2DagRunner, then checked.

The package is compiled once for the module through the CLI
(`visionpipe kubeflow compile`) and parsed into the official pipeline-spec
protos; the tests then compare it with the local pipeline that
`visionpipe run` executes, built by the same `create_pipeline`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from kubeflow import beam_runners, package, runner, settings
from pipeline.cli import main as cli
from pipeline import configs, datasets, definition, local_runner
from pipeline.configs import RunConfig


def executor_config(
    spec: pipeline_spec_pb2.PipelineSpec,
) -> pipeline_spec_pb2.PipelineDeploymentConfig:
    """The spec's deploymentSpec (a Struct in PipelineSpec) as its typed message, to read executors."""
    config = pipeline_spec_pb2.PipelineDeploymentConfig()
    json_format.ParseDict(json_format.MessageToDict(spec.deployment_spec), config)
    return config


IMAGE = "registry.example.com/ml/visionpipe:0.1.0"
PIPELINE_ROOT = "gs://visionpipe-test/root"
DATA_DIR = "gs://visionpipe-test/data/fashion_mnist"
NODE_LABEL = ("cloud.google.com/gke-accelerator", "nvidia-tesla-t4")
RESOLVER_ID = "latest_blessed_model_resolver"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    path = str(tmp_path_factory.mktemp("kfp") / "visionpipe.yaml")
    code = cli.main(
        [
            "kubeflow", "compile",
            "--image", IMAGE,
            "--pipeline-root", PIPELINE_ROOT,
            "--data-dir", DATA_DIR,
            "--output", path,
            "--gpus", "2",
            "--gpu-node-selector", "=".join(NODE_LABEL),
            "--epochs", "7",
        ]
    )  # fmt: skip
    assert code == 0
    spec, platform = package.load_package(path)
    with open(path, encoding="utf-8") as handle:
        documents = list(yaml.safe_load_all(handle))
    yield {
        "path": path,
        "spec": spec,
        "platform": platform,
        "documents": documents,
        "executors": executor_config(spec).executors,
    }


def _local_pipeline(tmp_path: Any) -> Any:
    config = RunConfig(output_dir=str(tmp_path / "out"), epochs=7).absolute()
    return local_runner.build_local_pipeline(config)


def _upstream_ids(pipeline: Any) -> dict[str, set[str]]:
    return {
        component.id: {node.id for node in component.upstream_nodes}
        for component in pipeline.components
    }


def _package_upstream_ids(spec: pipeline_spec_pb2.PipelineSpec) -> dict[str, set[str]]:
    """Per task: explicit dependencies plus the producers of its input artifacts."""
    upstream = {}
    for name, task in spec.root.dag.tasks.items():
        producers = {
            artifact.task_output_artifact.producer_task
            for artifact in task.inputs.artifacts.values()
            if artifact.task_output_artifact.producer_task
        }
        upstream[name] = producers | set(task.dependent_tasks)
    return upstream


def test_package_is_a_valid_pipeline_spec_with_pipeline_root(compiled: dict[str, Any]) -> None:
    spec = compiled["spec"]
    assert spec.pipeline_info.name == "visionpipe-fashion-mnist"
    assert spec.schema_version == "2.1.0"
    assert spec.default_pipeline_root == PIPELINE_ROOT
    assert isinstance(compiled["platform"], pipeline_spec_pb2.PlatformSpec)


def test_dag_has_the_local_components_and_wiring_without_the_resolver(
    compiled: dict[str, Any], tmp_path: Any
) -> None:
    local = _upstream_ids(_local_pipeline(tmp_path))
    # The one documented difference: no Resolver on Kubeflow (OSS KFP cannot run it).
    del local[RESOLVER_ID]
    local = {name: ids - {RESOLVER_ID} for name, ids in local.items()}

    assert _package_upstream_ids(compiled["spec"]) == local
    assert local["Evaluator"] == {"FileBasedExampleGen", "Trainer"}
    assert "AnomalyGate" in local["Transform"]  # the anomaly gate still stops the data


def test_local_and_kubeflow_pipelines_come_from_the_same_definition(tmp_path: Any) -> None:
    kubeflow_settings = settings.KubeflowSettings(image=IMAGE, pipeline_root=PIPELINE_ROOT)
    remote = runner.build_kubeflow_pipeline(RunConfig(epochs=7), kubeflow_settings)
    local = _local_pipeline(tmp_path)

    assert [c.id for c in local.components if c.id != RESOLVER_ID] == [c.id for c in remote.components]
    for local_component, remote_component in zip(
        (c for c in local.components if c.id != RESOLVER_ID), remote.components
    ):
        assert type(local_component) is type(remote_component)
        assert local_component.exec_properties.keys() == remote_component.exec_properties.keys()
    local_trainer = next(c for c in local.components if c.id == "Trainer")
    remote_trainer = next(c for c in remote.components if c.id == "Trainer")
    assert local_trainer.exec_properties["custom_config"] == remote_trainer.exec_properties["custom_config"]


def test_every_executor_runs_the_image_with_the_tfx_launcher_command(compiled: dict[str, Any]) -> None:
    containers = {name: e.container for name, e in compiled["executors"].items() if e.HasField("container")}
    assert set(containers) == {f"{task}_executor" for task in compiled["spec"].root.dag.tasks}
    for container in containers.values():
        assert container.image == IMAGE
        assert list(container.command) == [
            "python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"
        ]  # fmt: skip


def test_trainer_requests_gpus_and_every_component_cpu_and_memory(compiled: dict[str, Any]) -> None:
    executors = compiled["executors"]
    trainer = executors["Trainer_executor"].container.resources
    assert trainer.accelerator.resource_type == "nvidia.com/gpu"
    assert trainer.accelerator.resource_count == "2"
    assert (trainer.resource_cpu_request, trainer.resource_memory_request) == ("4", "16Gi")
    for name, executor in executors.items():
        resources = executor.container.resources
        if name != "Trainer_executor":
            assert not resources.HasField("accelerator"), name
            # Including FileBasedExampleGen, whose platform config TFX drops.
            assert (resources.resource_cpu_request, resources.resource_memory_request) == ("1", "4Gi"), name
            assert resources.memory_request == pytest.approx(4 * 2**30 / 1e9)


def test_trainer_is_placed_on_gpu_nodes(compiled: dict[str, Any]) -> None:
    platform = compiled["documents"][1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(platform) == {"Trainer_executor"}
    assert platform["Trainer_executor"]["nodeSelector"] == {"labels": dict([NODE_LABEL])}
    assert platform["Trainer_executor"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert set(compiled["platform"].platforms) == {"kubernetes"}


# Run parameter -> (its type in the package, the default compiled from the options above, the task and
# the execution property it feeds).
EXPECTED_RUN_PARAMETERS = {
    "data_root": ("STRING", DATA_DIR, "FileBasedExampleGen", "input_base"),
    "epochs": ("NUMBER_INTEGER", 7, "Trainer", "epochs"),
    "batch_size": ("NUMBER_INTEGER", configs.DEFAULT_BATCH_SIZE, "Trainer", "batch_size"),
    "model": ("STRING", datasets.FASHION_MNIST.default_model, "Trainer", "model_name"),
    "accuracy_threshold": ("NUMBER_DOUBLE", configs.DEFAULT_ACCURACY_THRESHOLD, "Evaluator", "accuracy_threshold"),
}


def test_data_location_training_settings_and_threshold_are_run_parameters(compiled: dict[str, Any]) -> None:
    spec = compiled["spec"]
    parameters = spec.root.input_definitions.parameters
    assert set(parameters) == set(EXPECTED_RUN_PARAMETERS)
    for name, (type_name, default, task, exec_property) in EXPECTED_RUN_PARAMETERS.items():
        parameter = parameters[name]
        assert pipeline_spec_pb2.ParameterType.ParameterTypeEnum.Name(parameter.parameter_type) == type_name
        assert parameter.is_optional
        assert json_format.MessageToDict(parameter.default_value) == default, name
        task_input = spec.root.dag.tasks[task].inputs.parameters[exec_property]
        assert task_input.component_input_parameter == name, (name, task)
    # The three training settings are the Trainer's own properties, not baked into its custom_config.
    custom_config = json.loads(_constant(spec.root.dag.tasks["Trainer"], "custom_config"))
    assert not {"epochs", "batch_size", "model"} & set(custom_config)


def _constant(task: pipeline_spec_pb2.PipelineTaskSpec, name: str) -> Any:
    return json_format.MessageToDict(task.inputs.parameters[name].runtime_value.constant)


def test_paths_baked_into_the_package_exist_on_the_cluster(compiled: dict[str, Any]) -> None:
    tasks = compiled["spec"].root.dag.tasks
    schema_file = _constant(tasks["ImportSchemaGen"], "schema_file")
    expected = datasets.FASHION_MNIST.schema_file(runner.CONTAINER_SCHEMA_ROOT)
    assert schema_file == expected
    # The image has the repository's schema/ at /app/schema (kubeflow/Dockerfile).
    relative = os.path.relpath(schema_file, settings.CONTAINER_PROJECT_ROOT)
    assert os.path.isfile(os.path.join(os.path.dirname(datasets.SCHEMA_ROOT), relative))
    push_destination = _constant(tasks["Pusher"], "push_destination")
    assert f"{PIPELINE_ROOT}/serving_model/visionpipe-fashion-mnist" in push_destination


def test_the_serving_gate_stands_between_evaluator_and_pusher(compiled: dict[str, Any], tmp_path: Any) -> None:
    local = _upstream_ids(_local_pipeline(tmp_path))
    assert local["ServingGate"] == {"FileBasedExampleGen", "Trainer", "Evaluator"}
    assert local["Pusher"] == {"Evaluator", "ServingGate"}
    tasks = compiled["spec"].root.dag.tasks
    # The Pusher pushes the gated copy (with its warm-up file) from the InfraBlessing, not the Trainer's model.
    assert set(tasks["Pusher"].inputs.artifacts) == {"model_blessing", "infra_blessing"}
    assert tasks["Pusher"].inputs.artifacts["infra_blessing"].task_output_artifact.producer_task == "ServingGate"
    assert _constant(tasks["ServingGate"], "model_name") == "visionpipe-fashion-mnist"
    assert json.loads(_constant(tasks["ServingGate"], "class_names")) == list(datasets.FASHION_MNIST.class_names)
    gate = compiled["executors"]["ServingGate_executor"].container
    assert gate.image == IMAGE  # the probe runs in the pipeline image, like every executor


def test_infra_validator_option_starts_tf_serving_in_docker_and_is_refused_for_kubeflow(
    tmp_path: Any, capsys: pytest.CaptureFixture
) -> None:
    config = RunConfig(output_dir=str(tmp_path / "out"), serving_check=configs.INFRA_VALIDATOR).absolute()
    local = {c.id: c for c in local_runner.build_local_pipeline(config).components}
    assert "ServingGate" not in local
    serving_spec = json.loads(local["InfraValidator"].exec_properties["serving_spec"])  # TFX keeps protos as JSON
    assert "local_docker" in serving_spec and serving_spec["tensorflow_serving"]["tags"] == [definition.TF_SERVING_TAG]
    request_spec = json.loads(local["InfraValidator"].exec_properties["request_spec"])
    assert request_spec["make_warmup"] is True and request_spec["split_name"] == "test"
    assert {node.id for node in local["Pusher"].upstream_nodes} == {"Evaluator", "InfraValidator"}

    # TFX's own compiler cannot compile it (step_builder.py): proven, then refused before compiling.
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

    pipeline = definition.create_pipeline(config, compare_with_blessed=False, beam_pipeline_args=configs.IN_PROCESS_BEAM_ARGS)
    dag_runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(default_image=IMAGE),
        output_dir=str(tmp_path), output_filename="raw.json",
    )
    with pytest.raises(NotImplementedError, match="InfraValidator"):
        dag_runner.run(pipeline)
    path = tmp_path / "iv.yaml"
    capsys.readouterr()
    assert cli.main(["kubeflow", "compile", "--image", IMAGE, "--pipeline-root", PIPELINE_ROOT, "--output", str(path),
                     "--serving-check", configs.INFRA_VALIDATOR]) == 1
    err = capsys.readouterr().err
    assert err.startswith("visionpipe: error: --serving-check infra-validator: TFX 1.21.0's Kubeflow V2 compiler")
    assert len(err.strip().splitlines()) == 1 and not path.exists()


def test_cpu_only_package_has_no_gpu_request_or_placement(tmp_path: Any) -> None:
    kubeflow_settings = settings.KubeflowSettings(
        image=IMAGE,
        pipeline_root=PIPELINE_ROOT,
        trainer_resources=settings.ComponentResources(cpu="2", memory="8Gi", gpus=0),
    )
    path = runner.compile_package(RunConfig(), kubeflow_settings, str(tmp_path / "cpu.yaml"))

    spec, platform = package.load_package(path)
    trainer = executor_config(spec).executors["Trainer_executor"].container.resources
    assert not trainer.HasField("accelerator") and trainer.resource_cpu_request == "2"
    assert platform is None


def test_a_failed_write_leaves_the_previous_package_untouched(tmp_path: Any) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text("previous good package\n")
    broken = {"pipelineInfo": {"name": "x"}, "root": {"dag": {"tasks": {"t": {"noSuchField": 1}}}}}

    with pytest.raises(package.PackageError, match="invalid PipelineSpec"):
        package.write_package([broken], str(path))
    assert path.read_text() == "previous good package\n"
    assert os.listdir(tmp_path) == ["pipeline.yaml"]  # no scratch file left behind


def test_tfx_cli_compiles_the_kubeflow_pipeline_for_vertex(tmp_path: Any) -> None:
    """`tfx pipeline create --engine vertex` runs kubeflow/runner.py as its DSL file."""
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    environment = dict(
        os.environ,
        HOME=str(tmp_path),
        VERTEX_HOME=str(tmp_path / "vertex"),
        VISIONPIPE_IMAGE=IMAGE,
        VISIONPIPE_PIPELINE_ROOT=PIPELINE_ROOT,
        VISIONPIPE_DATA_DIR=DATA_DIR,
        VISIONPIPE_EPOCHS="3",
    )
    tfx = os.path.join(os.path.dirname(sys.executable), "tfx")
    command = [tfx, "pipeline", "create", "--engine", "vertex", "--pipeline_path", "kubeflow/runner.py"]
    result = subprocess.run(
        command, cwd=repo_root, env=environment, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]

    with open(tmp_path / "vertex" / "visionpipe-fashion-mnist" / "pipeline.json", encoding="utf-8") as handle:
        job = json.load(handle)
    spec = json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    assert "Trainer" in spec.root.dag.tasks and RESOLVER_ID not in str(list(spec.root.dag.tasks))
    assert spec.root.dag.tasks["Trainer"].inputs.parameters["epochs"].component_input_parameter == "epochs"
    # Every run parameter has its default in the PipelineJob, so none is mandatory at submission.
    assert set(job["runtimeConfig"]["parameterValues"]) == set(EXPECTED_RUN_PARAMETERS)
    assert job["runtimeConfig"]["parameterValues"]["epochs"] == 3
    assert job["runtimeConfig"]["gcsOutputDirectory"].startswith(PIPELINE_ROOT)


BEAM_COMPONENTS = ("FileBasedExampleGen", "StatisticsGen", "Transform", "Evaluator")
SDK_IMAGE = "registry.example.com/ml/visionpipe-beam-sdk:0.1.0"


def test_the_default_package_runs_beam_in_each_components_pod(compiled: dict[str, Any]) -> None:
    for component in BEAM_COMPONENTS:
        arguments = list(compiled["executors"][f"{component}_executor"].container.args)
        assert all(argument in arguments for argument in configs.IN_PROCESS_BEAM_ARGS), component


@pytest.mark.parametrize(
    "beam, expected",
    [
        (
            beam_runners.BeamRunnerSettings(
                runner="dataflow", dataflow_project="ml-project", dataflow_region="europe-west4",
                dataflow_temp_location="gs://visionpipe-test/tmp", sdk_container_image=SDK_IMAGE,
                extra_args=("--max_num_workers=8",),
            ),
            ["--runner=DataflowRunner", "--project=ml-project", "--region=europe-west4",
             "--temp_location=gs://visionpipe-test/tmp", f"--sdk_container_image={SDK_IMAGE}", "--max_num_workers=8"],
        ),
        (
            beam_runners.BeamRunnerSettings(
                runner="flink", flink_master="flink-jobmanager:8081", flink_parallelism=4, sdk_container_image=SDK_IMAGE
            ),
            ["--runner=FlinkRunner", "--flink_master=flink-jobmanager:8081", "--parallelism=4",
             "--environment_type=DOCKER", f"--environment_config={SDK_IMAGE}"],
        ),
    ],
    ids=["dataflow", "flink"],
)  # fmt: skip
def test_the_chosen_beam_runner_reaches_every_beam_based_component(beam, expected, tmp_path: Any) -> None:
    kubeflow_settings = settings.KubeflowSettings(
        image=IMAGE, pipeline_root=PIPELINE_ROOT, beam_pipeline_args=beam.pipeline_args()
    )
    spec, _ = package.load_package(runner.compile_package(RunConfig(), kubeflow_settings, str(tmp_path / "p.yaml")))
    executors = executor_config(spec).executors
    for component in BEAM_COMPONENTS:
        arguments = list(executors[f"{component}_executor"].container.args)
        assert all(argument in arguments for argument in expected), (component, arguments)
        assert "--runner=FnApiRunner" not in arguments


@pytest.mark.parametrize(
    "arguments, missing",
    [
        (["--beam-runner", "dataflow", "--dataflow-project", "p"],
         "needs --dataflow-region, --dataflow-temp-location, --sdk-container-image"),
        (["--beam-runner", "dataflow", "--dataflow-project", "p", "--dataflow-region", "r",
          "--dataflow-temp-location", "/tmp/x", "--sdk-container-image", "i:1"], "give a gs:// URI"),
        (["--beam-runner", "flink", "--flink-parallelism", "2"], "needs --flink-master"),
        (["--beam-runner", "flink", "--flink-master", "h:8081", "--flink-parallelism", "2",
          "--flink-environment", "EXTERNAL"], "needs --flink-environment-config"),
        (["--beam-runner", "flink", "--flink-master", "h:8081", "--flink-parallelism", "2"], "needs --sdk-container-image"),
    ],
)  # fmt: skip
def test_a_beam_runner_without_its_required_options_is_a_usage_error(arguments, missing, tmp_path, capsys) -> None:
    output = tmp_path / "p.yaml"
    with pytest.raises(SystemExit) as caught:
        cli.main(["kubeflow", "compile", "--image", IMAGE, "--pipeline-root", PIPELINE_ROOT, "--output", str(output),
                  *arguments])  # fmt: skip
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert missing in err.strip().splitlines()[-1] and "usage: visionpipe kubeflow compile" in err
    assert not output.exists()
