"""Goal 3 without the machine's slow spells: the Trainer's input against plain Keras's NumPy arrays, alternating.

`bench/pipeline_vs_keras.py` trains the pipeline and the plain script one after
the other, so on a VM whose epochs take 55, 80 or 115 s at random one run cannot
tell a slower Trainer from a slow spell. This benchmark takes a finished run's
Trainer execution from ML Metadata (its input artifacts and settings, turned
into `FnArgs` by TFX's own `get_common_fn_args`, as the Trainer got them),
builds the model once, as run_fn does, and trains it alternately on

* `trainer`: `run_fn.make_dataset` over that run's train split and transform
  graph (the transform graph applied once and cached, shuffled, batched:
  the Trainer's tf.data input), and
* `plain Keras`: the same train split standardized into NumPy arrays
  (`pipeline_vs_keras.standardized_splits`, the same example ids and
  statistics), fitted as the tutorial script fits them,

one epoch of the train split per round by default (`--steps` fewer), one
`fit` call a round on each side (its set-up included: Keras turns the arrays
into batches at every call), with no callbacks and no validation on either
side, so the difference is the input alone; prints every round's images/s, the medians and their ratio. Point it at
the output dir that `bench/pipeline_vs_keras.py` leaves behind:

    uv run python bench/trainer_vs_keras_speed.py --output-dir bench/results/work/run-<stamp>/pipeline_output
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from components import tfx_bsl_compat  # noqa: E402  (before TFT/TFDV imports)

tfx_bsl_compat.install()

from tfx.components.trainer import fn_args_utils  # noqa: E402
from tfx.types import artifact_utils  # noqa: E402

from bench.alternation import alternate  # noqa: E402
from bench.pipeline_vs_keras import FASHION_MNIST_DIR, standardized_splits  # noqa: E402
from bench.results_io import save_results  # noqa: E402
from components.parameterized_trainer import NODE_ID, fold_run_parameters  # noqa: E402
from pipeline import configs  # noqa: E402
from pipeline.plumbing import metadata_queries  # noqa: E402
from pipeline.plumbing.metadata_queries import INPUT_EVENTS, artifacts_by_key  # noqa: E402


def trainer_execution_inputs(metadata_path: str) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """The newest finished Trainer execution's input artifacts (TFX objects, by key) and exec properties."""
    store = metadata_queries.open_read_only(metadata_path)
    executions = [
        execution
        for context in store.get_contexts_by_type("node")
        if context.name.endswith(f".{NODE_ID}")
        for execution in store.get_executions_by_context(context.id)
        if execution.last_known_state in metadata_queries.FINISHED_STATES
    ]
    if not executions:
        raise SystemExit(f"{metadata_path}: no finished Trainer execution recorded")
    execution = max(executions, key=lambda found: found.id)
    types = {artifact_type.id: artifact_type for artifact_type in store.get_artifact_types()}
    inputs = {
        key: [artifact_utils.deserialize_artifact(types[artifact.type_id], artifact)]
        for key, artifact in artifacts_by_key(store, execution.id, INPUT_EVENTS).items()
    }
    properties = {
        name: value.string_value if value.HasField("string_value") else value.int_value
        for name, value in execution.custom_properties.items()
    }
    return inputs, properties


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", required=True, help="a finished pipeline run's --output-dir (full data)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of each input, alternating")
    parser.add_argument("--steps", type=int, default=0, help="training steps per round (default: one epoch)")
    parser.add_argument("--data-dir", default=FASHION_MNIST_DIR, help="the IDX files that run read, for the arrays")
    args = parser.parse_args()

    import tensorflow_transform as tft

    from trainer_module import accelerator, distribution, models, run_fn

    inputs, properties = trainer_execution_inputs(os.path.join(args.output_dir, configs.METADATA_FILE))
    fn_args = fn_args_utils.get_common_fn_args(inputs, fold_run_parameters(properties))
    training = run_fn.TrainingConfig.from_custom_config(fn_args.custom_config)
    batch_size = training.batch_size
    device = accelerator.configure_accelerator(training.precision)  # before the model's layers exist
    transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)  # the Trainer executor copies it to transform_output
    train_count = run_fn.count_examples(fn_args.train_files, fn_args.data_accessor, transform_output)
    steps_per_epoch = distribution.steps_per_epoch(train_count, batch_size, 1)
    steps = min(args.steps or steps_per_epoch, steps_per_epoch)
    one_epoch = run_fn.make_dataset(
        fn_args.train_files, fn_args.data_accessor, transform_output, batch_size, shuffle=True, example_count=train_count
    )
    for _ in one_epoch:  # fills the cache, as run_fn.fill_caches does before fit; a `take` alone never would
        pass
    trainer_batches = one_epoch.take(steps) if steps < steps_per_epoch else one_epoch
    splits = standardized_splits(args.data_dir)
    if len(splits.y_train) != train_count:
        raise SystemExit(f"{args.data_dir}: {len(splits.y_train)} training images, {train_count} in the run's train split")
    images = min(steps * batch_size, train_count)
    x_train, y_train = splits.x_train[:images], splits.y_train[:images]
    model = models.build_model(
        training.model, training.image_shape, len(training.class_names), training.hparams,
        steps_per_epoch=steps_per_epoch, epochs=max(training.epochs, 1),
    )  # fmt: skip
    print(f"{training.model} on {device}, batch {batch_size}, {steps} steps a round, {args.rounds} rounds each", flush=True)
    model.fit(trainer_batches.take(5), verbose=0)  # tracing, on both inputs
    model.fit(x_train[: 5 * batch_size], y_train[: 5 * batch_size], batch_size=batch_size, verbose=0)

    def timed_round(**fit_inputs: Any) -> Callable[[], tuple[float, str]]:
        def fit_once() -> tuple[float, str]:
            started = time.monotonic()
            model.fit(**fit_inputs, epochs=1, verbose=0)
            elapsed = time.monotonic() - started
            return elapsed, f" ({images / elapsed:,.0f} images/s)"

        return fit_once

    rounds = {
        "trainer": timed_round(x=trainer_batches),
        "plain Keras": timed_round(x=x_train, y=y_train, batch_size=batch_size, shuffle=True),
    }
    medians = alternate(rounds, args.rounds)
    ratio = medians["plain Keras"] / medians["trainer"]
    table = "| Input | median s a round | images/s |\n|---|---:|---:|\n" + "\n".join(
        f"| {name} | {seconds:.2f} | {images / seconds:,.0f} |" for name, seconds in medians.items()
    )
    header = (
        f"# Trainer input vs plain Keras arrays: {training.model}, {steps} steps of {batch_size} a round, "
        f"{args.rounds} alternating rounds each, {os.cpu_count()} CPUs, {device}\n\n"
        f"Trainer images/s / plain Keras images/s = **{ratio:.3f}** (medians; goal 3: at least 0.95)"
    )
    print(save_results("trainer-vs-keras", header, table, {"medians": medians, "rounds": args.rounds, "steps": steps}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
