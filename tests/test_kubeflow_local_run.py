"""`visionpipe kubeflow local-run`: a compiled package executed by kfp.local, and the adapter it needs.

The adapter replaces three private parts of kfp.local 2.16 (kubeflow/local_run.py).
The first tests pin them: each checks that the stock kfp still has the
limitation, so that when kfp changes (fixes one, or moves it) they fail and
say the adapter must be revisited. The end-to-end test compiles a package
--for-local-run, runs it with run parameters other than the compiled ones,
and checks what a local run gives: every component, the blessing, a pushed
model that classifies PNGs, and the parameters where they were meant to go.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from kfp.pipeline_spec import pipeline_spec_pb2

from kubeflow import local_run
from pipeline import configs, local_runner
from pipeline.cli import main as cli
from tests import serving_helpers
from tests.conftest import write_idx_dataset
from tests.test_kubeflow_client import one_error_line

TFX_EXAMPLES_SCHEMA = "title: tfx.Examples\ntype: object\n"
TFX_COMMAND = ["python", "-m", local_run.TFX_LAUNCHER_MODULE, "--executor_class_path", "x.Executor"]


# --- kfp.local as the adapter found it ------------------------------------------


def test_the_adapter_is_written_for_the_installed_kfp() -> None:
    import kfp

    assert kfp.__version__ == local_run.KFP_VERSION, (
        f"kfp {kfp.__version__} replaced {local_run.KFP_VERSION}: re-check the three kfp.local internals "
        "kubeflow/local_run.py replaces (the tests below), then update KFP_VERSION"
    )
    local_run.check_kfp_version(kfp.__version__)
    with pytest.raises(local_run.LocalRunError, match="refuses any other version"):
        local_run.check_kfp_version("2.99.0")


def _stock_task_handler(command: list[str]):
    from kfp import local
    from kfp.local import subprocess_task_handler

    return subprocess_task_handler.SubprocessTaskHandler(
        image="visionpipe:local", full_command=command, pipeline_root="/tmp", runner=local.SubprocessRunner(use_venv=False)
    )


def _stock_artifact(schema: str):
    from kfp.local import executor_output_utils

    runtime_artifact = pipeline_spec_pb2.RuntimeArtifact(
        name="examples", uri="/tmp/examples", type=pipeline_spec_pb2.ArtifactTypeSchema(instance_schema=schema)
    )
    return executor_output_utils.runtime_artifact_to_dsl_artifact(runtime_artifact)


def test_stock_kfp_local_still_refuses_tfx_tasks() -> None:
    with pytest.raises(RuntimeError, match="only supports running Lightweight Python Components"):
        _stock_task_handler(TFX_COMMAND)


def test_stock_kfp_local_still_drops_tfx_artifact_types() -> None:
    assert _stock_artifact(TFX_EXAMPLES_SCHEMA).schema_title == "system.Artifact"


def test_stock_kfp_local_still_cuts_five_characters_off_task_names() -> None:
    from kfp.local import executor_input_utils

    assert executor_input_utils.get_local_task_resource_name("Trainer") == "er"


def test_the_adapter_lifts_exactly_those_limitations_and_restores_kfp() -> None:
    import sys

    from kfp.local import executor_input_utils

    with local_run.tfx_tasks_allowed():
        handler = _stock_task_handler(TFX_COMMAND)
        assert handler.full_command[:3] == [sys.executable, "-m", local_run.TFX_LAUNCHER_MODULE]
        with pytest.raises(RuntimeError, match="only supports running Lightweight"):
            _stock_task_handler(["sh", "-c", "echo any other container"])
        assert _stock_artifact(TFX_EXAMPLES_SCHEMA).schema_title == "tfx.Examples"
        assert executor_input_utils.get_local_task_resource_name("Trainer") == "Trainer"
        assert executor_input_utils.get_local_task_resource_name("comp-train") == "train"
    test_stock_kfp_local_still_refuses_tfx_tasks()
    test_stock_kfp_local_still_drops_tfx_artifact_types()
    test_stock_kfp_local_still_cuts_five_characters_off_task_names()


# --- the command ----------------------------------------------------------------


def test_compile_takes_local_paths_only_for_local_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = str(tmp_path / "p.yaml")
    code = cli.main(["kubeflow", "compile", "--pipeline-root", str(tmp_path / "root"), "--output", output])
    assert code == 1
    one_error_line(capsys.readouterr().err, "--image is required")
    code = cli.main(
        ["kubeflow", "compile", "--for-local-run", "--pipeline-root", "gs://bucket/root", "--output", output]
    )
    assert code == 1
    one_error_line(capsys.readouterr().err, "--pipeline-root 'gs://bucket/root'", "give a local path")
    assert not os.path.exists(output)


def test_local_run_refuses_a_package_compiled_for_a_cluster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_kubeflow_client import PACKAGE_YAML

    cluster_package = tmp_path / "cluster.yaml"
    cluster_package.write_text(PACKAGE_YAML, encoding="utf-8")
    assert cli.main(["kubeflow", "local-run", "--package", str(cluster_package)]) == 1
    one_error_line(capsys.readouterr().err, "compiled for a cluster (pipeline root gs://bucket/root)", "--for-local-run")
    assert cli.main(["kubeflow", "local-run", "--package", str(cluster_package), "--param", "epochs=zero"]) == 1
    one_error_line(capsys.readouterr().err, "--param epochs=zero", "must be an integer")


def test_a_missing_data_folder_is_one_line_before_any_task(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_kubeflow_client import PACKAGE_YAML

    local_package = tmp_path / "local.yaml"
    local_package.write_text(PACKAGE_YAML.replace("gs://bucket/root", str(tmp_path / "root")), encoding="utf-8")
    missing = tmp_path / "no-data"
    assert cli.main(["kubeflow", "local-run", "--package", str(local_package), "--data-dir", str(missing)]) == 1
    one_error_line(capsys.readouterr().err, f"data_root {missing}: no such folder")
    assert not (tmp_path / "root").exists()


def test_a_missing_package_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["kubeflow", "local-run", "--package", str(tmp_path / "none.yaml")]) == 1
    one_error_line(capsys.readouterr().err, "none.yaml: cannot read the package")


# --- end to end -----------------------------------------------------------------

COMPILED = {"epochs": "1", "batch-size": "64", "accuracy-threshold": "0.99"}  # what the package says ...
RUN_WITH = {"epochs": 3, "batch_size": 16, "accuracy_threshold": 0.3}  # ... and what the run says instead


@pytest.fixture(scope="module")
def local_run_result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("kfp-local")
    # Synthetic digits, so --dataset mnist: under fashion_mnist the served model would average
    # each digit with its mirror image (pipeline.datasets), which is another digit or none.
    data_dir = write_idx_dataset(str(root / "data"), train_count=120, test_count=40)
    package_path = str(root / "local.yaml")
    compile_args = [f"--{name}={value}" for name, value in COMPILED.items()]
    assert cli.main(
        ["kubeflow", "compile", "--for-local-run", "--pipeline-root", str(root / "pipeline"), "--data-dir", data_dir,
         "--dataset", "mnist", "--model", "tutorial_cnn", "--gpus", "0", "--output", package_path, *compile_args]
    ) == 0  # fmt: skip
    params = [f"--param={name}={value}" for name, value in RUN_WITH.items()]
    assert cli.main(["kubeflow", "local-run", "--package", package_path, *params]) == 0
    run_dirs = [path for path in (root / "pipeline").iterdir() if path.name.startswith("visionpipe-")]
    assert len(run_dirs) == 1, run_dirs
    return {"root": root, "run_dir": run_dirs[0], "package": package_path}


def test_every_component_of_the_local_pipeline_ran(local_run_result: dict, tmp_path: Path) -> None:
    config = configs.RunConfig(output_dir=str(tmp_path / "out"), model="tutorial_cnn").absolute()
    local_ids = {component.id for component in local_runner.build_local_pipeline(config).components}
    local_ids.discard("latest_blessed_model_resolver")  # KFP cannot run Resolver nodes (kubeflow/README.md)
    ran = {path.name for path in local_run_result["run_dir"].iterdir() if (path / "executor_output.json").exists()}
    assert ran == local_ids


def test_the_run_parameters_reached_the_trainer_and_the_evaluator(local_run_result: dict) -> None:
    run_dir = local_run_result["run_dir"]
    (summary_file,) = (run_dir / "Trainer" / "model_run").rglob("training_summary.json")
    summary = json.loads(summary_file.read_text())
    assert (summary["epochs"], summary["batch_size"], summary["model"]) == (RUN_WITH["epochs"], RUN_WITH["batch_size"], "tutorial_cnn")
    eval_config = json.loads((run_dir / "Evaluator" / "evaluation" / "eval_config.json").read_text())
    thresholds = json.dumps(eval_config)
    assert f'"lowerBound": {RUN_WITH["accuracy_threshold"]}' in thresholds, thresholds
    # With the compiled 0.99 bar nothing would be blessed; with the run's 0.3 it is, and pushed.
    assert (run_dir / "Evaluator" / "blessing" / "BLESSED").exists()


def test_the_pushed_model_classifies_pngs(local_run_result: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    predicted, labels, lines = serving_helpers.predict_fresh_digits(str(local_run_result["root"] / "pipeline"), tmp_path, capsys)
    assert len(predicted) == 10 and sum(int(p == l) for p, l in zip(predicted, labels)) >= 7, lines
