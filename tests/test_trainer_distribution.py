"""Several GPUs train as one: MirroredStrategy, the global batch and the learning-rate rule, on CPU.

No GPU here, so the mirrored run uses two logical CPU devices (TensorFlow's
documented stand-in). It must train exactly like one device given the same
global batch and learning rate (synchronous data parallelism is that), and
its export must still load in TF Serving's session loader.
"""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from tests.test_run_faults import REPO_ROOT
from trainer_module import distribution
from trainer_module.hparams import ModelHParams

# Runs in its own process: logical devices must be set before TensorFlow starts its runtime.
MIRRORED_SCRIPT = r"""
import json, os, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, numpy as np
from tests import serving_helpers
from trainer_module import distribution
from trainer_module.hparams import ModelHParams
from trainer_module.models import build_model

root = sys.argv[1]
PER_REPLICA, EPOCHS = 8, 3
images, labels = serving_helpers.synthetic_images(64, seed=3, image_shape=(28, 28, 1))
transform_dir = serving_helpers.write_transform_output(root, images, labels, (28, 28, 1))
x = serving_helpers.transformed_images(transform_dir, images, labels)
y = np.asarray(labels, dtype=np.int64)
hparams = ModelHParams(dropout=0.0, augment=False)

def train(strategy, batch, learning_rate_hparams):
    keras.utils.set_random_seed(11)
    with strategy.scope():
        model = build_model("tutorial_cnn", (28, 28, 1), 10, learning_rate_hparams,
                            steps_per_epoch=len(x) // batch, epochs=EPOCHS)
    history = model.fit(x, y, batch_size=batch, epochs=EPOCHS, shuffle=False, verbose=0)
    return model, history.history["loss"]

mirrored = distribution.training_strategy([device.name for device in tf.config.list_logical_devices("CPU")])
batch = distribution.global_batch_size(PER_REPLICA, mirrored)
scaled = distribution.scaled_hparams(hparams, mirrored)
model, mirrored_loss = train(mirrored, batch, scaled)
_, single_loss = train(distribution.training_strategy([]), batch, scaled)

export_dir = serving_helpers.export(model, transform_dir, (28, 28, 1), os.path.join(root, "export"))
with tf.compat.v1.Session(graph=tf.Graph()) as session:
    graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], export_dir)
    signature = graph.signature_def["serving_images"]
    served = session.run(signature.outputs["probabilities"].name,
                         {signature.inputs["images"].name: [serving_helpers.encode_png(images[0])]})
json.dump({
    "strategy": type(mirrored).__name__, "replicas": mirrored.num_replicas_in_sync, "batch": batch,
    "learning_rate": scaled.learning_rate, "mirrored_loss": mirrored_loss, "single_loss": single_loss,
    "served_sum": float(served.sum()),
}, open(os.path.join(root, "result.json"), "w"))
"""


def test_two_mirrored_replicas_train_like_one_device_with_their_global_batch_and_export_servably(tmp_path):
    process = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())

    assert (result["strategy"], result["replicas"], result["batch"]) == ("MirroredStrategy", 2, 16)
    assert result["learning_rate"] == pytest.approx(2 * ModelHParams().learning_rate)
    # Same global batch, same rate: the mirrored loss curve is the single device's, to float rounding.
    assert result["mirrored_loss"] == pytest.approx(result["single_loss"], rel=1e-4)
    assert result["mirrored_loss"][-1] < result["mirrored_loss"][0]
    assert result["served_sum"] == pytest.approx(1.0, abs=1e-4)  # TF Serving's loader serves it


def test_one_device_keeps_the_batch_and_the_learning_rate():
    one = SimpleNamespace(num_replicas_in_sync=1)
    hparams = ModelHParams(learning_rate=1e-3)
    assert distribution.global_batch_size(128, one) == 128
    assert distribution.scaled_hparams(hparams, one) is hparams
    four = SimpleNamespace(num_replicas_in_sync=4)
    assert distribution.global_batch_size(128, four) == 512
    assert distribution.scaled_hparams(hparams, four).learning_rate == pytest.approx(4e-3)


def test_one_device_or_none_is_the_default_strategy():
    import tensorflow as tf

    assert distribution.training_strategy([]) is tf.distribute.get_strategy()
    assert distribution.training_strategy(["/cpu:0"]) is tf.distribute.get_strategy()
