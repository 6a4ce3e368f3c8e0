"""Small pieces of `visionpipe run`: progress lines, error condensing, env config."""

from __future__ import annotations

import io
import json
import logging

import pytest

from pipeline import datasets, local_runner
from pipeline.plumbing import errors
from pipeline.configs import RunConfig
from pipeline.plumbing.progress import ComponentProgress


def emit(handler: logging.Handler, message: str, *args: object) -> None:
    handler.handle(logging.LogRecord("absl", logging.INFO, __file__, 1, message, args, None))


def test_progress_prints_one_line_per_component_event_and_records_seconds():
    stream = io.StringIO()
    progress = ComponentProgress(component_count=2, stream=stream)
    emit(progress, "Component %s is running.", "Transform")
    emit(progress, "A cached execution %d is used.", 7)
    emit(progress, "Component %s is finished.", "Transform")
    emit(progress, "Component %s is running.", "Trainer")
    emit(progress, "something else entirely")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[1/2] Transform ..."
    assert lines[1].startswith("[1/2] Transform done in ") and lines[1].endswith("(cached)")
    assert lines[2] == "[2/2] Trainer ..."
    assert set(progress.seconds) == {"Transform"}
    assert progress.current_component == "Trainer"


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
    assert fashion["hparams"] == {"augmentation": "flip_shift"}
    assert "augmentation" not in digits["hparams"]


def test_normalization_choice_reaches_the_transform():
    from pipeline import definition

    pipeline = definition.create_pipeline(
        RunConfig(dataset="cifar10", data_dir="/data", normalization="imagenet")
    )
    transform = next(node for node in pipeline.components if node.id == "Transform")
    assert json.loads(transform.exec_properties["custom_config"]) == {
        "image_shape": [32, 32, 3],
        "normalization": "imagenet",
    }
