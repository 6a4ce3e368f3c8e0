"""Benchmark: the full visionpipe pipeline vs. the same model in a plain Keras script.

Runs, in one process and one after the other on the same machine:
1. `visionpipe run` on the full dataset (default: Fashion-MNIST from Debian's
   dataset-fashion-mnist package) with the default model;
2. the same model, hyperparameters, epochs, batch size and train/eval split,
   trained by a plain Keras script on NumPy arrays (no TFX, no Beam, no TFT):
   the tutorial way.
Then prints a Markdown table (and writes it with the raw figures under
bench/results/): wall seconds per component, ExampleGen and Transform
examples/s, trainer images/s, test accuracy, and the pipeline's overhead
(everything but model.fit) as seconds and as a ratio.

    uv run python bench/pipeline_vs_keras.py [--profile fast|standard|long] [--epochs N] [--data-dir DIR]

By default the pipeline runs as `visionpipe run` does with no training flags:
the standard profile's time budget picks the epochs (``--profile`` another
profile, ``--epochs N`` pins them). The plain Keras script then trains the
epochs the pipeline's Trainer trained, so model.fit's images/s compare like
for like.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import statistics
import sys
import time

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from components.idx_example_gen import idx_format  # noqa: E402
from components.example_gen.example_splits import DEFAULT_TRAIN_EVAL_WEIGHTS, split_bucket  # noqa: E402
from bench.results_io import save_results  # noqa: E402
from pipeline import configs  # noqa: E402

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def load_split(data_dir: str, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    images_path = idx_format.find_idx_file(data_dir, f"{prefix}-images-idx3-ubyte")
    labels_path = idx_format.find_idx_file(data_dir, f"{prefix}-labels-idx1-ubyte")
    images = np.concatenate(list(idx_format.iter_idx_chunks(images_path)))
    labels = np.concatenate(list(idx_format.iter_idx_chunks(labels_path)))
    return images, labels.astype(np.int64)


@dataclasses.dataclass(frozen=True)
class StandardizedSplits:
    """The pipeline's train/eval/test splits as standardized NumPy images ``[N, 28, 28, 1]`` and labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_eval: np.ndarray
    y_eval: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def standardized_splits(data_dir: str) -> StandardizedSplits:
    """The tutorial way of preparing the data, replaying the pipeline's exact split and statistics.

    The train/eval split uses the same example ids, hash and weights as
    ExampleGen; mean and std come from the train split, as the Transform's.
    """
    train_images, train_labels = load_split(data_dir, "train")
    test_images, test_labels = load_split(data_dir, "t10k")
    weights = DEFAULT_TRAIN_EVAL_WEIGHTS
    buckets = np.array(
        [split_bucket(f"train-{i:06d}".encode(), sum(weights)) for i in range(len(train_labels))]
    )
    is_train = buckets < weights[0]
    scaled = train_images[is_train].astype(np.float32) / 255.0
    mean, std = scaled.mean(), scaled.std()

    def standardize(images: np.ndarray) -> np.ndarray:
        return ((images.astype(np.float32) / 255.0 - mean) / std)[..., np.newaxis]

    return StandardizedSplits(
        x_train=standardize(train_images[is_train]),
        y_train=train_labels[is_train],
        x_eval=standardize(train_images[~is_train]),
        y_eval=train_labels[~is_train],
        x_test=standardize(test_images),
        y_test=test_labels,
    )


def plain_keras(
    config: configs.RunConfig, work_dir: str, epochs: int, augmentation_off: bool, steps: int | None = None
) -> dict:
    """The tutorial-style baseline: NumPy arrays in memory, standardize, fit, evaluate.

    Model, hyperparameters and batch size come from the very same RunConfig ->
    Trainer custom_config translation the pipeline uses; ``epochs`` are the
    ones the pipeline's Trainer trained, and ``steps`` its training steps when
    its time budget ended the last epoch early (trainer_module.budget_keeper):
    the one-cycle then ends at that step here too, where fit stops. ``augmentation_off``: the Trainer's
    first plan switched augmentation (and so mirror averaging) off
    (trainer_module.budget_keeper); this script then trains without it from
    the first step, where the Trainer's first 45 steps were still augmented.
    """
    from pipeline import definition
    import keras

    from trainer_module import accelerator, callbacks, models
    from trainer_module.run_fn import TrainingConfig
    from trainer_module.schedules import OneCycle

    training = TrainingConfig.from_custom_config(
        {**definition.training_custom_config(config), "model": config.model, "epochs": epochs, "batch_size": config.batch_size}
    )
    started = time.monotonic()
    splits = standardized_splits(config.data_dir)
    accelerator.configure_accelerator(training.precision)
    hparams = training.hparams.without_augmentation() if augmentation_off else training.hparams
    steps_per_epoch = math.ceil(len(splits.x_train) / training.batch_size)
    model = models.build_model(
        training.model,
        training.image_shape,
        len(training.class_names),
        hparams,
        steps_per_epoch=steps_per_epoch,
        epochs=training.epochs,
    )
    stop_at_step: list[keras.callbacks.Callback] = []
    if steps is not None and steps < steps_per_epoch * training.epochs:
        schedule = callbacks.learning_rate_schedule(model.optimizer)
        if isinstance(schedule, OneCycle):  # as the keeper's first plan retargets it: warm-up in proportion
            schedule.retarget(steps, warmup_steps=round(schedule.warmup_steps * steps / schedule.total_steps))
        def stop_at(batch: int, logs: dict | None) -> None:
            if int(model.optimizer.iterations) >= steps:
                model.stop_training = True

        stop_at_step.append(keras.callbacks.LambdaCallback(on_train_batch_end=stop_at))
    epoch_seconds: list[float] = []
    epoch_started = [0.0]
    epoch_timer = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: epoch_started.__setitem__(0, time.monotonic()),
        on_epoch_end=lambda epoch, logs: epoch_seconds.append(time.monotonic() - epoch_started[0]),
    )
    prepared = time.monotonic()
    model.fit(
        splits.x_train,
        splits.y_train,
        validation_data=(splits.x_eval, splits.y_eval),
        epochs=training.epochs,
        batch_size=training.batch_size,
        callbacks=[*callbacks.training_callbacks(os.path.join(work_dir, "keras_logs"), hparams), epoch_timer, *stop_at_step],
        verbose=2,
    )
    fitted = time.monotonic()
    probabilities = model.predict(splits.x_test, batch_size=512, verbose=0)
    if hparams.test_time_flip:  # as the pipeline's exported model does (trainer_module.serving)
        probabilities = (probabilities + model.predict(splits.x_test[:, :, ::-1], batch_size=512, verbose=0)) / 2
    test_accuracy = (probabilities.argmax(axis=1) == splits.y_test).mean()
    return {
        "total_seconds": round(time.monotonic() - started, 2),
        "fit_seconds": round(fitted - prepared, 2),
        "epoch_seconds": [round(value, 2) for value in epoch_seconds],
        "train_examples": len(splits.y_train),
        "trained_steps": int(model.optimizer.iterations),
        "steps_per_epoch": steps_per_epoch,
        "test_accuracy": float(test_accuracy),
    }


def run_pipeline(config: configs.RunConfig) -> dict:
    """`visionpipe run` in this process; the budget counts from the call, as from a command's start."""
    from pipeline.cli import run_command
    from pipeline.plumbing import run_logging

    started = time.time()
    run_logging.create_output_dir(config.output_dir)
    code = run_command.run(config, run_logging.create_run_log(config.output_dir), started_at=started)
    wall = time.time() - started
    if code not in (0, 3):
        raise SystemExit(f"pipeline run failed with exit code {code}")
    with open(config.summary_path, encoding="utf-8") as handle:
        summary = json.load(handle)
    summary["command_seconds"] = round(wall, 2)
    return summary


# Which examples each stage reads, to turn its seconds into examples/s.
STAGE_EXAMPLES = {
    "FileBasedExampleGen": "all",
    "StatisticsGen": "train_and_eval",
    "Transform": "train",  # the full-pass analysis reads the train split
    "Evaluator": "test",
    "ServingGate": "test",
}


def median_epoch_rows(pipeline: dict, keras: dict) -> list[tuple[str, str, str]]:
    """Median epoch (train + validation) of both, robust to a slow spell of a shared machine.

    The pipeline's epoch times are in its training summary when a time budget
    planned the run (the BudgetKeeper records them); with --epochs they are not.
    """
    budget = pipeline["training"].get("time_budget") or {}
    # Whole epochs only: a last epoch the budget ended early is shorter by design.
    whole = keras["trained_steps"] // keras["steps_per_epoch"]
    ours_whole, theirs_whole = (budget.get("epoch_seconds") or [])[:whole], keras.get("epoch_seconds", [])[:whole]
    if not ours_whole or not theirs_whole:
        return []
    ours, theirs = statistics.median(ours_whole), statistics.median(theirs_whole)
    return [
        ("median epoch seconds (train + validation; whole epochs)", f"{ours:.1f}", f"{theirs:.1f}"),
        ("plain Keras median epoch / pipeline median epoch", f"{theirs / ours:.3f}", ""),
    ]


def render_table(pipeline: dict, keras: dict, counts: dict) -> str:
    seconds = pipeline["components"]
    fit = pipeline["training"]["fit_seconds"]
    total = pipeline["total_seconds"]
    overhead = total - fit
    epochs = pipeline["training"]["epochs"]
    trained_epochs = keras["trained_steps"] / keras["steps_per_epoch"]  # the same steps, the last epoch maybe partial
    rows = [("Component", "wall s", "examples/s")]
    for name, value in seconds.items():
        split = STAGE_EXAMPLES.get(name)
        rate = f"{counts[split] / value:,.0f}" if split and value > 0 else ""
        rows.append((name, f"{value:.1f}", rate))
    rows += [
        ("**pipeline total**", f"{total:.1f}", ""),
        ("of which model.fit", f"{fit:.1f}", ""),
        ("**pipeline overhead (total - fit)**", f"{overhead:.1f}", ""),
    ]
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    lines.insert(1, "|---|---:|---:|")
    pipeline_rate = counts["train"] * trained_epochs / fit
    keras_rate = keras["train_examples"] * trained_epochs / keras["fit_seconds"]
    trained = f"{epochs} ({keras['trained_steps']} steps)"
    figures = [
        ("epochs (planned by the Trainer for a time budget, or pinned; the last may be partial)", trained, trained),
        ("Trainer images/s (model.fit)", f"{pipeline_rate:,.0f}", f"{keras_rate:,.0f}"),
        ("Trainer images/s / plain Keras images/s", f"{pipeline_rate / keras_rate:.3f}", ""),
        *median_epoch_rows(pipeline, keras),
        ("model.fit seconds", f"{fit:.1f}", f"{keras['fit_seconds']:.1f}"),
        ("end-to-end seconds (pipeline: from the run call, where its budget starts)", f"{pipeline['command_seconds']:.1f}", f"{keras['total_seconds']:.1f}"),
        ("test accuracy", f"{pipeline['test_accuracy']:.4f}", f"{keras['test_accuracy']:.4f}"),
        ("overhead beyond model.fit", f"{overhead:.1f} s", f"{keras['total_seconds'] - keras['fit_seconds']:.1f} s"),
    ]
    lines += ["", "| Figure | pipeline | plain Keras |", "|---|---:|---:|"]
    lines += [f"| {name} | {a} | {b} |" for name, a, b in figures]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=FASHION_MNIST_DIR)
    parser.add_argument("--model", default=configs.RunConfig().model)
    parser.add_argument("--profile", choices=tuple(configs.PROFILES), default=configs.DEFAULT_PROFILE)
    parser.add_argument("--budget-minutes", type=float, default=None, help="instead of the profile's budget")
    parser.add_argument("--epochs", type=int, default=None, help="pin the epochs (no time budget)")
    parser.add_argument("--batch-size", type=int, default=configs.DEFAULT_BATCH_SIZE)
    parser.add_argument("--work-dir", default=os.path.join(REPO_ROOT, "bench", "results", "work"))
    args = parser.parse_args()

    if not os.path.isdir(args.data_dir):
        raise SystemExit(f"{args.data_dir}: not found (apt-get install dataset-fashion-mnist)")
    sources = idx_format.validate_idx_dataset(args.data_dir)
    # A fresh output dir (and ML Metadata store) per run: a reused one would let
    # TFX's cache skip ExampleGen..Transform and report a bogus overhead.
    run_dir = os.path.join(args.work_dir, datetime.datetime.now().strftime("run-%Y%m%d-%H%M%S"))
    os.makedirs(run_dir)

    config = configs.RunConfig(
        dataset="fashion_mnist",
        data_dir=args.data_dir,
        output_dir=os.path.join(run_dir, "pipeline_output"),
        model=args.model,
        epochs=args.epochs,
        profile=args.profile,
        budget_minutes=args.budget_minutes,
        batch_size=args.batch_size,
        accuracy_threshold=0.0,
    ).absolute()
    pipeline = run_pipeline(config)
    budget = pipeline["training"].get("time_budget") or {}
    keras = plain_keras(
        config, run_dir, pipeline["training"]["epochs"], bool(budget.get("augmentation_off")), budget.get("trained_steps")
    )
    train_and_eval = sources["train"].count
    counts = {
        "all": train_and_eval + sources["t10k"].count,
        "train_and_eval": train_and_eval,
        "train": keras["train_examples"],
        "test": sources["t10k"].count,
    }
    table = render_table(pipeline, keras, counts)
    budget = f"{config.time_budget_minutes:g} min budget" if config.time_budget_minutes else "pinned epochs"
    header = (
        f"visionpipe benchmark, {datetime.date.today()}: {args.model}, {pipeline['training']['epochs']} epochs "
        f"({budget}), batch {args.batch_size}, data {args.data_dir}, {os.cpu_count()} CPU cores, "
        f"{pipeline['training'].get('device', '?')}"
    )
    print("\n" + header + "\n\n" + table)
    raw = {"pipeline": pipeline, "plain_keras": keras, "counts": counts, "args": vars(args)}
    print("results:", save_results("bench", header, table, raw))
    return 0


if __name__ == "__main__":
    sys.exit(main())
