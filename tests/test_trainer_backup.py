"""Pre-emption: a killed Trainer, run again, resumes after its last finished epoch.

Two levels. `fit` itself, in a process that is SIGKILLed after an epoch's
backup: the resumed training ends with the same weights as one that was never
interrupted (deterministic model, no dropout, no shuffling), so the optimizer's
state, the step count behind the learning-rate schedule included, came back
too. And `visionpipe run` itself: killed during training and started again, its
Trainer (a new TFX execution) finds the backup of the same training and
finishes the run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest

from tests.test_run_faults import REPO_ROOT, run_in_subprocess

EPOCHS = 6

# Trains tutorial_cnn (no dropout, no augmentation) on fixed data with the
# Trainer's callbacks and a backup dir; sleeps after each epoch's backup so a
# test can kill it between epochs; writes the outcome as JSON.
TRAIN_SCRIPT = """
import json, sys, time
import keras, numpy as np
from trainer_module import callbacks
from trainer_module.hparams import ModelHParams
from trainer_module.models import build_model

backup_dir, out_path, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])
keras.utils.set_random_seed(7)
rng = np.random.default_rng(7)
images = rng.normal(size=(64, 28, 28, 1)).astype("float32")
labels = (images.mean(axis=(1, 2, 3)) > 0).astype("int64") * 3
hparams = ModelHParams(dropout=0.0, augment=False, learning_rate=2e-3, lr_decay_rate=0.7)
model = build_model("tutorial_cnn", (28, 28, 1), 10, hparams, steps_per_epoch=4, epochs=%d)
pause_after_epoch = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: time.sleep(pause))
history = model.fit(
    images, labels, batch_size=16, epochs=%d, shuffle=False, verbose=0,
    callbacks=[*callbacks.training_callbacks(sys.argv[4], hparams, backup_dir), pause_after_epoch],
)
json.dump({
    "epochs_trained": history.epoch,
    "iterations": int(model.optimizer.iterations),
    "learning_rate": history.history["learning_rate"],
    "weights": [float(np.abs(w).sum()) for w in model.get_weights()],
}, open(out_path, "w"))
""" % (EPOCHS, EPOCHS)


def train(backup_dir: str, out_path: str, log_dir: str, pause: float = 0.0) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", TRAIN_SCRIPT, backup_dir, out_path, str(pause), log_dir],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def backed_up_epochs(backup_dir: str) -> int:
    """How many epochs the backup holds (Keras writes training_metadata.json beside the weights)."""
    try:
        with open(os.path.join(backup_dir, "training_metadata.json"), encoding="utf-8") as handle:
            return int(json.load(handle)["epoch"])
    except (OSError, ValueError, KeyError):
        return 0


def test_a_killed_fit_resumes_after_its_last_epoch_and_ends_as_if_never_interrupted(tmp_path):
    backup_dir, logs = str(tmp_path / "backup"), str(tmp_path / "logs")
    uninterrupted = train(str(tmp_path / "unused-backup"), str(tmp_path / "whole.json"), logs)
    killed = train(backup_dir, str(tmp_path / "killed.json"), logs, pause=2.0)
    deadline = time.monotonic() + 240
    while backed_up_epochs(backup_dir) < 2 and time.monotonic() < deadline and killed.poll() is None:
        time.sleep(0.1)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    saved = backed_up_epochs(backup_dir)
    assert 2 <= saved < EPOCHS, f"backup holds {saved} epochs"

    resumed = train(backup_dir, str(tmp_path / "resumed.json"), logs)
    assert resumed.wait(timeout=300) == 0 and uninterrupted.wait(timeout=300) == 0, resumed.stderr.read()
    whole = json.loads((tmp_path / "whole.json").read_text())
    again = json.loads((tmp_path / "resumed.json").read_text())

    assert again["epochs_trained"] == list(range(saved, EPOCHS))  # only the epochs the backup lacked
    assert again["iterations"] == whole["iterations"] == 4 * EPOCHS  # the schedule's step count came back
    assert again["learning_rate"] == pytest.approx(whole["learning_rate"][saved:], rel=1e-6)
    assert again["weights"] == pytest.approx(whole["weights"], rel=1e-4)
    assert not os.path.exists(os.path.join(backup_dir, "latest.weights.h5"))  # a finished fit removes it


def test_the_backup_is_found_by_a_new_execution_of_the_same_training_only():
    from trainer_module import run_fn

    def fn_args(execution: int, **changes: object) -> SimpleNamespace:
        values = {
            "train_files": ["/root/FileBasedExampleGen/examples/1/Split-train/*"],
            "eval_files": ["/root/FileBasedExampleGen/examples/1/Split-eval/*"],
            "transform_output": "/root/Transform/transform_graph/5",
            "custom_config": {"model": "deep_cnn", "epochs": 10},
            "model_run_dir": f"/root/Trainer/model_run/{execution}",
        }
        return SimpleNamespace(**{**values, **changes})

    first = run_fn.backup_dir(fn_args(7), epochs=10)
    assert first.startswith("/root/Trainer/backup/")
    assert run_fn.backup_dir(fn_args(8), epochs=10) == first  # the restarted Trainer: same training, new execution
    assert run_fn.backup_dir(fn_args(8, custom_config={"model": "deep_cnn", "epochs": 20}), epochs=10) != first
    assert run_fn.backup_dir(fn_args(8, transform_output="/root/Transform/transform_graph/6"), epochs=10) != first
    # A time budget that plans other epochs on the restart: another schedule, so no resume.
    assert run_fn.backup_dir(fn_args(8), epochs=11) != first
    bucket = run_fn.backup_dir(fn_args(8, model_run_dir="gs://bucket/root/Trainer/model_run/8"), epochs=10)
    assert bucket.startswith("gs://bucket/root/Trainer/backup/")


def training_summary(output_dir) -> dict:
    with open(os.path.join(output_dir, "run_summary.json"), encoding="utf-8") as handle:
        return json.load(handle)["training"]


def test_a_run_killed_during_training_resumes_its_trainer_when_run_again(idx_dir, tmp_path):
    output_dir = tmp_path / "out"
    command = (
        "run", "--dataset", "mnist", "--data-dir", idx_dir, "--output-dir", str(output_dir),
        "--model", "tutorial_cnn", "--epochs", "40", "--accuracy-threshold", "0",
    )
    first = run_in_subprocess(*command)
    backups = output_dir / "tfx" / "visionpipe-mnist" / "Trainer" / "backup"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and first.poll() is None:
        if any(backed_up_epochs(str(folder)) >= 2 for folder in (backups.iterdir() if backups.is_dir() else [])):
            break
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    assert not (output_dir / "run_summary.json").exists(), "the first run finished before it was killed"

    second = run_in_subprocess(*command)
    out, err = second.communicate(timeout=600)
    assert second.returncode == 0, err
    training = training_summary(output_dir)
    assert 2 <= training["resumed_after_epoch"] < 40, training
    assert "Trainer done" in out and "pushed model  : " in out
    assert not np.any([path.name == "latest.weights.h5" for path in backups.rglob("*")])  # removed when done


def test_an_unreadable_backup_costs_a_warning_and_a_fresh_start_not_the_run(tmp_path, caplog):
    import keras

    from trainer_module import callbacks
    from trainer_module.hparams import ModelHParams
    from trainer_module.models import build_model

    backup_dir = tmp_path / "backup"
    backup_dir.mkdir()
    for name in ("latest.weights.h5", "latest.weights.h5.bkp"):  # both halves of the double checkpoint
        (backup_dir / name).write_bytes(b"\x89HDF\r\n\x1a\n truncated by a kill")
    (backup_dir / "training_metadata.json").write_text('{"epoch": 3, "batch": 0}')
    hparams = ModelHParams(augment=False)
    model = build_model("tutorial_cnn", (28, 28, 1), 10, hparams, steps_per_epoch=1, epochs=2)
    images = np.zeros((8, 28, 28, 1), "float32")
    keras.utils.set_random_seed(0)

    with caplog.at_level("WARNING"):
        history = model.fit(
            images, np.zeros(8, "int64"), batch_size=8, epochs=2, verbose=0,
            callbacks=callbacks.training_callbacks(str(tmp_path / "logs"), hparams, str(backup_dir)),
        )

    assert history.epoch == [0, 1]  # from the start, not from the backup's "epoch 3"
    assert "Unreadable training backup" in caplog.text and str(backup_dir) in caplog.text
