"""Benchmark: train-step throughput of model variants, timed alternately in one process.

Each variant is a JSON object: ``policy`` (Keras dtype policy, default
float32), ``batch`` (default 128), ``model`` (default deep_cnn),
``image_shape`` (default [28, 28, 1]; [32, 32, 3] for the CIFAR-10 models),
``jit`` (compile with XLA, default false), and any ModelHParams fields. All
variants are built first, then timed round-robin (``--rounds`` rounds of
``--images`` images each), so a slow spell of a shared machine hits them all
alike; the medians are printed with every round's figure. Rounds of several
seconds: this VM's CPU time seems to come in slices of about 5 s, which
quantizes shorter timings.

    uv run python bench/train_step_speed.py '{"augmentation": "flip_shift"}' \\
        '{"augmentation": "flip_shift", "policy": "mixed_bfloat16"}'
    uv run python bench/train_step_speed.py --images 2000 '{"model": "resnet9", "image_shape": [32, 32, 3]}' \\
        '{"model": "resnet9", "image_shape": [32, 32, 3], "policy": "mixed_bfloat16"}'
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

DEFAULT_IMAGES_PER_ROUND = 6000


def build_variant(spec: dict) -> tuple[object, object, int]:
    import keras
    import tensorflow as tf

    from trainer_module import models
    from trainer_module.hparams import default_hparams

    spec = dict(spec)
    policy, batch = spec.pop("policy", "float32"), spec.pop("batch", 128)
    name, jit = spec.pop("model", "deep_cnn"), spec.pop("jit", False)
    image_shape = tuple(spec.pop("image_shape", (28, 28, 1)))
    keras.mixed_precision.set_global_policy(policy)  # before the layers are created
    hparams = dataclasses.replace(default_hparams(name), **spec)
    model = models.build_model(name, image_shape, 10, hparams, steps_per_epoch=100, epochs=10)
    if jit:  # Keras falls back to no XLA, with a warning, for a model it cannot compile
        model.compile(optimizer=model.optimizer, loss=model.loss, metrics=["accuracy"], jit_compile=True)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch * 40, *image_shape)).astype(np.float32)
    labels = rng.integers(0, 10, batch * 40)
    batches = tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch).repeat().prefetch(4)
    model.fit(batches, steps_per_epoch=10, epochs=1, verbose=0)  # trace and warm up
    return model, batches, batch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="+", type=json.loads, help="JSON objects, see above")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--images", type=int, default=DEFAULT_IMAGES_PER_ROUND, help="images per round and variant")
    args = parser.parse_args()

    built = [(json.dumps(spec), *build_variant(spec)) for spec in args.variants]
    rates: dict[str, list[float]] = {label: [] for label, *_ in built}
    for _ in range(args.rounds):
        for label, model, batches, batch in built:
            steps = max(10, args.images // batch)
            started = time.monotonic()
            model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0)
            rates[label].append(steps * batch / (time.monotonic() - started))
    print(f"{os.cpu_count()} CPU cores, {args.rounds} alternating rounds of about {args.images} images")
    for label, values in rates.items():
        print(f"{label}: median {statistics.median(values):.0f} images/s  (rounds: {[round(v) for v in values]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
