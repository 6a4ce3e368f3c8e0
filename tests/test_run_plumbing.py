"""Small pieces of `visionpipe run`: progress lines, error condensing, env config."""

from __future__ import annotations

import io
import json
import logging

import pytest

from pipeline import configs, datasets, local_runner
from pipeline.plumbing import errors
from pipeline.configs import RunConfig
from pipeline.plumbing.progress import ComponentProgress


def emit(handler: logging.Handler, message: str, *args: object) -> None:
    handler.handle(logging.LogRecord("absl", logging.INFO, __file__, 1, message, args, None))


def record_executions(metadata_path: str, pipeline_name: str, run_id: str, states: dict[str, int]) -> None:
    """Writes what TFX's launcher records: one execution per node, in its node and run contexts."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as mlmd
    from tfx.dsl.compiler import constants

    config = mlmd.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    store = metadata_store.MetadataStore(config)
    node_type = store.put_context_type(mlmd.ContextType(name=constants.NODE_CONTEXT_TYPE_NAME))
    run_type = store.put_context_type(mlmd.ContextType(name=constants.PIPELINE_RUN_CONTEXT_TYPE_NAME))
    [run_context] = store.put_contexts([mlmd.Context(type_id=run_type, name=run_id)])
    execution_type = store.put_execution_type(mlmd.ExecutionType(name="Component"))
    for node_id, state in states.items():
        [node_context] = store.put_contexts([mlmd.Context(type_id=node_type, name=f"{pipeline_name}.{node_id}")])
        execution = mlmd.Execution(type_id=execution_type, last_known_state=state)
        [execution_id] = store.put_executions([execution])
        store.put_attributions_and_associations(
            [], [mlmd.Association(context_id=context, execution_id=execution_id) for context in (node_context, run_context)]
        )


def test_progress_prints_one_line_per_component_with_ml_metadatas_record(tmp_path):
    from ml_metadata.proto import metadata_store_pb2 as mlmd

    metadata_path = str(tmp_path / "metadata.sqlite")
    record_executions(
        metadata_path, "visionpipe-mnist", "run-1", {"Transform": mlmd.Execution.CACHED, "Trainer": mlmd.Execution.COMPLETE}
    )
    stream = io.StringIO()
    progress = ComponentProgress(3, metadata_path, "visionpipe-mnist", "run-1", stream=stream)
    emit(progress, "Component %s is running.", "Transform")
    emit(progress, "Component %s is finished.", "Transform")
    emit(progress, "Component %s is running.", "Trainer")
    emit(progress, "Component %s is finished.", "Trainer")
    emit(progress, "Component %s is running.", "Evaluator")
    emit(progress, "something else entirely")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[1/3] Transform ..."
    assert lines[1].startswith("[1/3] Transform done in ") and lines[1].endswith(" s (cached)")
    assert lines[2] == "[2/3] Trainer ..."
    assert lines[3].startswith("[2/3] Trainer done in ") and lines[3].endswith(" s")
    assert lines[4] == "[3/3] Evaluator ..."
    assert set(progress.seconds) == {"Transform", "Trainer"} and progress.cached == {"Transform"}
    assert progress.current_component == "Evaluator"


def test_progress_reads_only_its_own_runs_executions(tmp_path):
    """Another run's cached Transform in the same store does not make this run's look cached."""
    from ml_metadata.proto import metadata_store_pb2 as mlmd

    metadata_path = str(tmp_path / "metadata.sqlite")
    record_executions(metadata_path, "visionpipe-mnist", "earlier", {"Transform": mlmd.Execution.CACHED})
    stream = io.StringIO()
    progress = ComponentProgress(1, metadata_path, "visionpipe-mnist", "this-run", stream=stream)
    emit(progress, "Component %s is running.", "Transform")
    emit(progress, "Component %s is finished.", "Transform")
    assert stream.getvalue().splitlines()[1] == "[1/1] Transform done (no execution record)"
    assert progress.seconds == {} and progress.cached == set()


def test_one_line_finds_the_root_cause_and_drops_beams_step_suffix():
    try:
        try:
            raise ValueError("data/x.gz: label 12 at index 7 is outside 0-9 [while running 'Read/Decode']\nTraceback...")
        except ValueError as inner:
            raise RuntimeError("Pipeline failed") from inner
    except RuntimeError as outer:
        assert errors.one_line(outer) == "data/x.gz: label 12 at index 7 is outside 0-9"


def test_one_line_of_an_empty_message_names_the_type():
    assert errors.one_line(KeyError()) == "KeyError"


def test_config_from_environment_overrides_defaults(tmp_path):
    config = local_runner.config_from_environment(
        {
            "VISIONPIPE_DATASET": "mnist",
            "VISIONPIPE_DATA_DIR": str(tmp_path),
            "VISIONPIPE_EPOCHS": "3",
            "VISIONPIPE_ACCURACY_THRESHOLD": "0.7",
        }
    )
    assert (config.dataset, config.data_dir, config.epochs, config.accuracy_threshold) == (
        "mnist", str(tmp_path), 3, 0.7,
    )
    assert config.pipeline_name == "visionpipe-mnist"
    assert config.model == RunConfig().model


def test_config_from_environment_rejects_a_bad_number():
    with pytest.raises(ValueError):
        local_runner.config_from_environment({"VISIONPIPE_EPOCHS": "many"})


def test_each_dataset_gets_its_default_model_unless_one_is_chosen():
    assert RunConfig(dataset="fashion_mnist").model == "deep_cnn"
    assert RunConfig(dataset="cifar10").model == datasets.CIFAR10.default_model
    assert RunConfig(dataset="cifar10", model="lenet5").model == "lenet5"


def test_only_explicit_hyperparameters_reach_the_trainer():
    assert RunConfig().hparam_overrides() == {}
    assert RunConfig(learning_rate=0.01, augment=False).hparam_overrides() == {
        "learning_rate": 0.01,
        "augment": False,
    }


def test_unknown_normalization_is_refused():
    with pytest.raises(ValueError, match="normalization must be one of"):
        RunConfig(normalization="zca")


def test_only_mirror_symmetric_datasets_get_flipped():
    from pipeline import definition

    fashion = definition.training_custom_config(RunConfig(dataset="fashion_mnist"))
    digits = definition.training_custom_config(RunConfig(dataset="mnist"))
    assert fashion["hparams"] == {"augmentation": "flip_shift", "test_time_flip": True}
    assert digits["hparams"] == {}  # a flipped digit is another digit, or none


def test_precision_reaches_the_trainer_and_an_unknown_one_is_refused():
    from pipeline import definition
    from pipeline.cli import main as cli_main

    assert definition.training_custom_config(RunConfig())["precision"] == "auto"
    args = cli_main.build_parser().parse_args(["run", "--precision", "float32"])
    assert definition.training_custom_config(cli_main._run_config(args))["precision"] == "float32"
    with pytest.raises(ValueError, match="precision must be one of"):
        RunConfig(precision="bfloat16")


def test_normalization_choice_reaches_the_transform():
    from pipeline import definition

    pipeline = definition.create_pipeline(
        RunConfig(dataset="cifar10", data_dir="/data", normalization="imagenet"),
        beam_pipeline_args=configs.IN_PROCESS_BEAM_ARGS,
    )
    transform = next(node for node in pipeline.components if node.id == "Transform")
    assert json.loads(transform.exec_properties["custom_config"]) == {
        "image_shape": [32, 32, 3],
        "normalization": "imagenet",
    }
