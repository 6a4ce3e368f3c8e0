"""Several machines train as one: MultiWorkerMirroredStrategy from TF_CONFIG, the shards, who writes what.

The end-to-end test starts two real worker processes on 127.0.0.1, each with
its own TF_CONFIG, as two Trainer pods would, and each runs the Trainer's own
`run_fn` (which creates the strategy after its imports and
`configure_accelerator`, before any other TensorFlow op). Unshuffled, so that
step by step the two workers' shards make up one device's batches: the loss
curve must be one device's given the same global batch and learning rate. The
rest are unit tests without a cluster.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

from tests import serving_helpers
from tests.test_run_faults import REPO_ROOT
from trainer_module import callbacks, distribution, run_fn, worker_outputs
from trainer_module.hparams import ModelHParams

IMAGE_SHAPE = (28, 28, 1)
TRAIN, EVAL = 64, 20  # 4 full global batches of 16; the evaluation's last batch is short
PER_REPLICA, EPOCHS = 8, 3
# Deterministic (no dropout, no augmentation), and a rate at which the loss stays well above 0: at
# the default rate it collapses to 1e-5 by epoch 3, where the last-bit differences of convolving 8
# examples instead of 16 (which max-pool ties then route differently) were measured at 2e-3 relative.
HPARAMS = {"dropout": 0.0, "augment": False, "learning_rate": 1e-4}
WORKER_DEADLINE_S = 180  # both workers are killed if they are not done by then

# One worker of the cluster; its TF_CONFIG is in the environment. argv: root, task index.
WORKER_SCRIPT = r"""
import json, os, sys, time
from types import SimpleNamespace
import keras
import numpy as np
from tests.test_trainer_multiworker import RawExamples
from trainer_module import distribution, run_fn

root, index = sys.argv[1], int(sys.argv[2])
while not os.path.exists(os.path.join(root, "data.npz")):  # the parent writes it while this one imports
    time.sleep(0.05)
run_fn.SHUFFLE_BUFFER = 0  # worker_batches then keeps each shard in order
keras.utils.set_random_seed(11)  # the chief's initial weights, which every worker receives
trainer = os.path.join(root, "Trainer")
run_fn.run_fn(SimpleNamespace(  # the FnArgs fields run_fn reads
    train_files=["train"], eval_files=["eval"],
    data_accessor=RawExamples(dict(np.load(os.path.join(root, "data.npz"), allow_pickle=True))),
    transform_output=os.path.join(root, "transform_output"),
    model_run_dir=os.path.join(trainer, "model_run", f"task{index}"),
    serving_model_dir=os.path.join(trainer, "model", f"task{index}"),
    custom_config={"model": "tutorial_cnn", "epochs": %(epochs)d, "batch_size": %(per_replica)d,
                   "image_shape": list(%(image_shape)r), "class_names": [f"class-{i}" for i in range(10)],
                   "hparams": %(hparams)r,
                   # float32 like the one-device reference: bfloat16's rounding (auto on a
                   # CPU with AVX512-BF16) is far above the losses' tolerance
                   "precision": "float32"},
))
strategy = distribution.training_strategy()  # the process's one, which run_fn created
json.dump({
    "workers": distribution.worker_count(strategy), "replicas": strategy.num_replicas_in_sync,
    "chief": distribution.is_chief(strategy),
}, open(os.path.join(root, f"result{index}.json"), "w"))
""" % {"per_replica": PER_REPLICA, "image_shape": IMAGE_SHAPE, "epochs": EPOCHS, "hparams": HPARAMS}


class RawExamples:
    """TFX's DataAccessor as run_fn uses it: a split's raw PNG examples (the split's name is its file), batched."""

    def __init__(self, data: dict[str, np.ndarray]) -> None:
        self._data = data

    def tf_dataset_factory(self, file_pattern: list[str], options: object, schema: object) -> tf.data.Dataset:
        split = file_pattern[0]
        return tf.data.Dataset.from_tensor_slices(
            {"image": self._data[f"{split}_png"][:, None], "label": self._data[f"{split}_labels"][:, None]}
        ).batch(options.batch_size)


def free_ports(count: int) -> list[int]:
    """Ports the OS just handed out as free (bound to port 0, then released for the workers)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for handle in sockets:
            handle.bind(("127.0.0.1", 0))
        return [handle.getsockname()[1] for handle in sockets]
    finally:
        for handle in sockets:
            handle.close()


def tf_config(ports: list[int], index: int) -> str:
    return json.dumps({
        "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
        "task": {"type": "worker", "index": index},
    })


def start_workers(root: Path) -> list[subprocess.Popen]:
    """The two worker processes, each with its TF_CONFIG, its own TMPDIR and its log under `root`."""
    ports = free_ports(2)
    workers = []
    for index in range(2):
        (root / f"tmp{index}").mkdir()
        env = {**os.environ, "TF_CONFIG": tf_config(ports, index), "TMPDIR": str(root / f"tmp{index}")}
        with open(root / f"worker{index}.log", "w") as log:
            workers.append(subprocess.Popen(
                [sys.executable, "-c", WORKER_SCRIPT, str(root), str(index)],
                cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            ))
    return workers


def write_data(root: Path) -> dict[str, np.ndarray]:
    """The raw PNGs and labels (data.npz, which appears whole: a rename) and their transform output."""
    images, labels = serving_helpers.synthetic_images(TRAIN + EVAL, seed=3, image_shape=IMAGE_SHAPE)
    serving_helpers.write_transform_output(str(root), images, labels, IMAGE_SHAPE)
    pngs = np.array([serving_helpers.encode_png(image) for image in images], dtype=object)
    labels = np.asarray(labels, dtype=np.int64)
    data = {"train_png": pngs[:TRAIN], "eval_png": pngs[TRAIN:], "train_labels": labels[:TRAIN], "eval_labels": labels[TRAIN:]}
    with open(root / "data.partial.npz", "wb") as handle:
        np.savez(handle, **data)
    os.replace(root / "data.partial.npz", root / "data.npz")
    return data


def one_device_losses(root: Path, data: dict[str, np.ndarray]) -> tuple[list[float], list[float]]:
    """(loss, val_loss) per epoch of tutorial_cnn on one device, with the workers' global batch and scaled rate.

    Its input is run_fn's own single-machine input, unshuffled: the same transform
    arithmetic as the workers' (eager and tf.data runs of the transform graph differ
    in the last bit, which 3 epochs at this rate amplify to 1e-3).
    """
    import dataclasses

    import keras
    import tensorflow_transform as tft

    from trainer_module.hparams import default_hparams
    from trainer_module.models import build_model

    two_replicas = SimpleNamespace(num_replicas_in_sync=2)
    batch = distribution.global_batch_size(PER_REPLICA, two_replicas)
    hparams = distribution.scaled_hparams(dataclasses.replace(default_hparams("tutorial_cnn"), **HPARAMS), two_replicas)
    transform_output, accessor = tft.TFTransformOutput(str(root / "transform_output")), RawExamples(data)
    train = run_fn.make_dataset(["train"], accessor, transform_output, batch, shuffle=False, example_count=TRAIN)
    evaluation = run_fn.make_dataset(["eval"], accessor, transform_output, batch, shuffle=False)
    keras.utils.set_random_seed(11)
    model = build_model("tutorial_cnn", IMAGE_SHAPE, 10, hparams, steps_per_epoch=TRAIN // batch, epochs=EPOCHS)
    history = model.fit(train, validation_data=evaluation, epochs=EPOCHS, verbose=0)
    return history.history["loss"], history.history["val_loss"]


def wait_for(workers: list[subprocess.Popen], root: Path, deadline: float) -> None:
    """Until both exit or one fails (its peer would wait for it in vain) or the deadline passes."""
    while time.monotonic() < deadline and any(worker.poll() is None for worker in workers):
        if any(worker.poll() not in (None, 0) for worker in workers):
            break
        time.sleep(0.2)
    for index, worker in enumerate(workers):
        log = (root / f"worker{index}.log").read_text()[-3000:]
        assert worker.poll() == 0, f"worker {index} failed or hung (exit {worker.poll()}):\n{log}"


def epoch_scalars(log_dir: Path, tag: str) -> list[float]:
    """The per-epoch values of `tag` that Keras' TensorBoard callback wrote under `log_dir`."""
    values = {}
    for path in log_dir.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == tag:
                    values[event.step] = float(tf.make_ndarray(value.tensor))
    return [values[step] for step in sorted(values)]


def test_two_workers_train_like_one_device_and_only_the_chief_writes(tmp_path: Path) -> None:
    started = time.monotonic()
    workers = start_workers(tmp_path)
    try:
        data = write_data(tmp_path)
        single_loss, single_val_loss = one_device_losses(tmp_path, data)
        wait_for(workers, tmp_path, started + WORKER_DEADLINE_S)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    results = [json.loads((tmp_path / f"result{index}.json").read_text()) for index in range(2)]
    assert [(result["workers"], result["replicas"], result["chief"]) for result in results] == [
        (2, 2, True), (2, 2, False),
    ]

    trainer = tmp_path / "Trainer"
    model_run, export_dir = trainer / "model_run" / "task0", trainer / "model" / "task0"
    loss, val_loss = epoch_scalars(model_run / "train", "epoch_loss"), epoch_scalars(model_run / "validation", "epoch_loss")
    # The same examples in every step at the same rate, so one device's curve, but for float
    # summation order: two half-batch gradients all-reduced against one batch of 16, and the two
    # workers' mean losses averaged against one (measured: within 3e-7 relative).
    assert loss == pytest.approx(single_loss, rel=1e-4) and val_loss == pytest.approx(single_val_loss, rel=1e-4)
    assert loss[-1] < loss[0]
    summary = json.loads((model_run / "training_summary.json").read_text())
    assert summary["final_metrics"]["loss"] == pytest.approx(single_loss[-1], rel=1e-4)

    # Only the chief wrote into its Trainer directories; the other worker wrote none of its own,
    # and deleted its stand-ins; the completed fit deleted the backup.
    assert not (trainer / "model" / "task1").exists() and not (trainer / "model_run" / "task1").exists()
    assert not list((tmp_path / "tmp1").glob("visionpipe-*"))
    assert (trainer / "backup").is_dir() and not list((trainer / "backup").iterdir())
    with tf.compat.v1.Session(graph=tf.Graph()) as session:  # TF Serving's loader serves the chief's export
        graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(export_dir))
        signature = graph.signature_def["serving_images"]
        served = session.run(
            signature.outputs["probabilities"].name,
            {signature.inputs["images"].name: [data["eval_png"][0]]},
        )
    assert float(served.sum()) == pytest.approx(1.0, abs=1e-4)


# Unit tests: the cluster read from TF_CONFIG, without starting one.


@pytest.mark.parametrize(
    "config",
    [
        None,
        {"cluster": {"worker": ["127.0.0.1:2222"]}, "task": {"type": "worker", "index": 0}},
        {"cluster": {"chief": ["127.0.0.1:2222"], "evaluator": ["127.0.0.1:2223"]}, "task": {"type": "chief", "index": 0}},
    ],
    ids=["no TF_CONFIG", "one worker", "a chief and an evaluator"],
)
def test_no_cluster_or_one_training_task_is_one_machine(monkeypatch: pytest.MonkeyPatch, config: dict | None) -> None:
    if config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    assert distribution.multi_worker_resolver() is None
    assert distribution.training_strategy([]) is tf.distribute.get_strategy()


def test_a_chief_and_workers_are_a_multi_worker_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = {"chief": ["127.0.0.1:2222"], "worker": ["127.0.0.1:2223", "127.0.0.1:2224"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}}))
    resolver = distribution.multi_worker_resolver()
    assert (resolver.task_type, resolver.task_id) == ("worker", 1)
    assert distribution.worker_count(SimpleNamespace(cluster_resolver=resolver)) == 3
    assert distribution.worker_count(tf.distribute.get_strategy()) == 1


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("{'cluster': {}}", "is not valid JSON"),
        (json.dumps({"cluster": ["127.0.0.1:2222"]}), "has no usable cluster"),
        (json.dumps({"cluster": {"worker": ["a:1", "b:2"], "ps": ["c:3"]}, "task": {"type": "worker", "index": 0}}),
         "parameter-server cluster"),
        (json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}),
         "task worker:2 is not one of its cluster's"),
        (json.dumps({"cluster": {"worker": ["a:1", "b:2"]}}), "task None:None is not one of"),
    ],
    ids=["not JSON", "cluster not a mapping", "parameter servers", "task out of range", "no task"],
)
def test_a_malformed_tf_config_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch, value: str, problem: str) -> None:
    monkeypatch.setenv("TF_CONFIG", value)
    with pytest.raises(ValueError, match="TF_CONFIG") as raised:
        distribution.training_strategy()
    assert problem in str(raised.value) and "\n" not in str(raised.value)


def test_steps_per_epoch_keep_the_short_batch_on_one_machine_and_full_batches_across_workers() -> None:
    assert distribution.steps_per_epoch(10, 4, workers=1) == 3
    assert distribution.steps_per_epoch(10, 4, workers=2) == 2
    with pytest.raises(ValueError, match="fewer than one global batch of 16 over 2 workers"):
        distribution.steps_per_epoch(10, 16, workers=2)


def worker_epochs(
    examples: tf.data.Dataset, workers: int, replicas_in_sync: int, batch: int, shuffle: int | None, epochs: int
) -> list[list[list[list[int]]]]:
    """Per worker, per epoch, its per-replica batches of `examples` (ints) from `worker_batches`."""
    steps = distribution.steps_per_epoch(int(examples.cardinality()), batch, workers)
    per_epoch = steps * replicas_in_sync // workers  # each of a worker's replicas takes one batch per step
    result = []
    for index in range(workers):
        context = tf.distribute.InputContext(
            num_input_pipelines=workers, input_pipeline_id=index, num_replicas_in_sync=replicas_in_sync
        )
        batches = distribution.worker_batches(examples, context, batch, steps, shuffle).take(epochs * per_epoch)
        batches = [batch.tolist() for batch in batches.as_numpy_iterator()]
        result.append([batches[epoch * per_epoch:(epoch + 1) * per_epoch] for epoch in range(epochs)])
    return result


def test_each_worker_trains_its_own_examples_in_as_many_steps_as_the_others() -> None:
    # 10 examples, global batch 4, 2 workers of one replica: 2 full global batches per epoch.
    first, second = worker_epochs(tf.data.Dataset.range(10), workers=2, replicas_in_sync=2, batch=4, shuffle=None, epochs=2)
    assert first == [[[0, 2], [4, 6]]] * 2 and second == [[[1, 3], [5, 7]]] * 2
    # Step by step the two halves make up one device's batches [0..3] and [4..7].


def test_shuffled_shards_stay_disjoint_equal_and_reshuffle_each_epoch() -> None:
    # 21 examples, global batch 8, 2 workers of 2 replicas each: 2 steps, 4 batches of 2 per worker per epoch.
    per_worker = worker_epochs(tf.data.Dataset.range(21), workers=2, replicas_in_sync=4, batch=8, shuffle=100, epochs=3)
    for epoch in range(3):
        seen = [sorted(sum(per_worker[index][epoch], [])) for index in range(2)]
        assert [len(batches) for batches in (per_worker[0][epoch], per_worker[1][epoch])] == [4, 4]
        assert all(len(batch) == 2 for batch in per_worker[0][epoch] + per_worker[1][epoch])
        assert len(seen[0]) == len(seen[1]) == 8 and not set(seen[0]) & set(seen[1])
        assert all(value % 2 == 0 for value in seen[0]) and all(value % 2 == 1 for value in seen[1])
    assert per_worker[0][0] != per_worker[0][1]  # a new order (and a new few left out) every epoch


def test_every_worker_evaluates_the_whole_split_once() -> None:
    for index in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=index, num_replicas_in_sync=2)
        batches = distribution.evaluation_batches(tf.data.Dataset.range(5), context, global_batch=4)
        assert [batch.tolist() for batch in batches.as_numpy_iterator()] == [[0, 1], [2, 3], [4]]


# Unit tests: who writes what.

NOT_CHIEF = SimpleNamespace(
    extended=SimpleNamespace(should_checkpoint=False), cluster_resolver=SimpleNamespace(task_type="worker", task_id=1)
)


def test_the_chief_writes_the_real_dirs_and_the_others_scratch_that_goes_away(tmp_path: Path) -> None:
    real = (str(tmp_path / "model_run"), str(tmp_path / "model"))
    with worker_outputs.worker_dirs(tf.distribute.get_strategy(), *real) as dirs:
        assert dirs == real
    with worker_outputs.worker_dirs(NOT_CHIEF, *real) as dirs:
        assert len(set(dirs)) == 2 and not set(dirs) & set(real)
        for path in dirs:
            os.makedirs(path)
            Path(path, "written").write_text("x")
    assert not any(os.path.exists(path) for path in dirs + real)


def test_a_worker_resumes_from_a_copy_of_the_chiefs_backup(tmp_path: Path) -> None:
    chief, own = tmp_path / "chief", tmp_path / "own"
    chief.mkdir()
    for name in ("latest.weights.h5", "training_metadata.json", "latest.weights.h5.bkp"):
        (chief / name).write_text(name)
    (own).mkdir()
    (own / "stale").write_text("from an earlier run")

    worker_outputs.seed_backup(str(chief), str(own))

    assert sorted(os.listdir(own)) == sorted(os.listdir(chief))
    assert (own / "training_metadata.json").read_text() == "training_metadata.json"
    worker_outputs.seed_backup(str(chief), str(chief))  # the chief's own: left alone
    assert len(os.listdir(chief)) == 3


def test_without_a_chiefs_backup_a_worker_starts_at_epoch_one(tmp_path: Path) -> None:
    (tmp_path / "own").mkdir()
    worker_outputs.seed_backup(str(tmp_path / "none"), str(tmp_path / "own"))
    assert not (tmp_path / "own").exists()


def test_the_callbacks_read_an_optimizer_mirrored_by_a_strategy() -> None:
    # Under any tf.distribute strategy the step count is a MirroredVariable, which int() refuses.
    from trainer_module.models import build_model

    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        model = build_model("tutorial_cnn", IMAGE_SHAPE, 10, ModelHParams(), steps_per_epoch=4, epochs=2)
        model.optimizer.build(model.trainable_variables)
    assert callbacks.last_step_learning_rate(model.optimizer) == pytest.approx(ModelHParams().learning_rate)
