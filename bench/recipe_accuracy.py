"""Benchmark: test accuracy of a training recipe on full Fashion-MNIST, in plain Keras, no pipeline.

For trying a lever (schedule, learning rate, label smoothing, ...) at the cost
of training only: the pipeline's exact train/eval split and standardization,
the zoo's model with ``ModelHParams`` fields from a JSON object, ``fit`` for
``--epochs``, then test accuracy with and without averaging each test image's
prediction with its mirror image's. Appends one JSON line per run to
``bench/results/recipes.jsonl``.

    uv run python bench/recipe_accuracy.py --epochs 14 \\
        '{"augmentation": "flip_shift", "lr_schedule": "one_cycle", "learning_rate": 3e-3,
          "lr_warmup_fraction": 0.15, "label_smoothing": 0.1}'
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench.pipeline_vs_keras import FASHION_MNIST_DIR, standardized_splits  # noqa: E402
from bench.results_io import RESULTS_DIR  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("hparams", type=json.loads, help='ModelHParams fields, plus "model" (default deep_cnn)')
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--data-dir", default=FASHION_MNIST_DIR)
    parser.add_argument("--policy", default="float32", help="Keras dtype policy, e.g. mixed_bfloat16")
    args = parser.parse_args()

    import keras

    keras.mixed_precision.set_global_policy(args.policy)  # before any layer is created

    from trainer_module import models
    from trainer_module.hparams import default_hparams

    fields = dict(args.hparams)
    name = fields.pop("model", "deep_cnn")
    splits = standardized_splits(args.data_dir)
    hparams = dataclasses.replace(default_hparams(name), **fields)
    model = models.build_model(
        name, (28, 28, 1), 10, hparams, steps_per_epoch=math.ceil(len(splits.x_train) / args.batch_size), epochs=args.epochs
    )
    started = time.monotonic()
    history = model.fit(
        splits.x_train, splits.y_train, validation_data=(splits.x_eval, splits.y_eval),
        epochs=args.epochs, batch_size=args.batch_size, verbose=2,
    )
    fit_seconds = time.monotonic() - started
    plain = model.predict(splits.x_test, batch_size=512, verbose=0)
    mirrored = model.predict(splits.x_test[:, :, ::-1], batch_size=512, verbose=0)
    result = {
        "model": name,
        "hparams": args.hparams,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "policy": args.policy,
        "train_examples": len(splits.y_train),
        "fit_seconds": round(fit_seconds, 1),
        "images_per_second": round(len(splits.y_train) * args.epochs / fit_seconds),
        "test_accuracy": float((plain.argmax(1) == splits.y_test).mean()),
        "test_accuracy_mirror_averaged": float(((plain + mirrored).argmax(1) == splits.y_test).mean()),
        "val_accuracy": [round(value, 4) for value in history.history["val_accuracy"]],
    }
    print(json.dumps(result))
    os.makedirs(RESULTS_DIR, exist_ok=True)
    with open(os.path.join(RESULTS_DIR, "recipes.jsonl"), "a", encoding="utf-8") as handle:
        handle.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
