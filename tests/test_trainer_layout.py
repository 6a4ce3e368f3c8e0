"""trainer_module's TF-free parts: the model registry, hparams and the run summary.

The CLI and the run report import these before (or without) TensorFlow, so
each is checked in a fresh interpreter, where an accidental Keras import shows.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from trainer_module import hparams, model_names, training_summary

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TF_FREE_MODULES = ("model_names", "normalization_names", "hparams", "training_summary")


@pytest.mark.parametrize("module", TF_FREE_MODULES)
def test_module_imports_without_tensorflow(module: str) -> None:
    code = (
        "import sys\n"
        f"from trainer_module import {module}\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "assert not heavy, heavy[:5]\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_every_name_is_registered_with_a_builder_path_in_the_models_package() -> None:
    assert model_names.MODEL_NAMES == tuple(model_names.BUILDER_PATHS)
    for name, path in model_names.BUILDER_PATHS.items():
        module, separator, function = path.partition(":")
        assert separator and function, (name, path)
        assert module.startswith("trainer_module.models."), (name, path)


def test_unknown_names_are_refused_with_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="valid names: tutorial_cnn, deep_cnn"):
        model_names.check_model_name("resnet9000")
    with pytest.raises(ValueError, match="valid names"):
        hparams.default_hparams("resnet9000")
    assert model_names.check_model_name(model_names.RESNET9) == model_names.RESNET9


def test_training_summary_keeps_the_last_epoch_of_each_metric() -> None:
    summary = training_summary.training_summary(
        model="deep_cnn",
        device="CPU (float32)",
        epochs=2,
        batch_size=128,
        fit_seconds=12.3456,
        history={"loss": [0.9, 0.5], "learning_rate": [0.002, 0.0017], "empty": []},
        resumed_after_epoch=1,
    )

    assert summary == {
        "model": "deep_cnn",
        "device": "CPU (float32)",
        "epochs": 2,
        "batch_size": 128,
        "fit_seconds": 12.35,
        "resumed_after_epoch": 1,
        "time_budget": None,  # the epochs were given, not planned for a budget
        "final_metrics": {"loss": 0.5, "learning_rate": 0.0017},
    }
    assert training_summary.TRAINING_SUMMARY_FILE == "training_summary.json"
