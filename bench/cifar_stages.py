"""Benchmark: every stage of the CIFAR-10 pipeline at full size (50,000 + 10,000 images).

CIFAR-10 cannot be downloaded on the machines this project is built on, so the
benchmark writes the official Python-version tarball itself, at full size, with
synthetic pixels (`tests.cifar_files.synthetic_cifar`). Stage costs depend on the
number and size of images, not on what they show; ACCURACY ON REAL CIFAR-10
IS NOT MEASURED HERE.

Runs, one after the other:
1. the pipeline's data stages for real, LocalDagRunner + Beam (ExampleGen,
   StatisticsGen, ImportSchemaGen, ExampleValidator, AnomalyGate, Transform),
   reporting wall seconds and examples/s;
2. for each CIFAR model of the zoo: `model.fit` on the transformed training
   split (the Trainer's own tf.data pipeline, transform graph included, cached),
   timing `--steps` batches after one warm-up epoch of the same length, as
   images/s.

    uv run python bench/cifar_stages.py [--layout python|binary|image_folder] [--steps 40]
"""

from __future__ import annotations

import argparse
import datetime
import glob
import os
import sys
import time

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench.results_io import save_results
from bench.run_artifacts import newest  # noqa: E402
from components.cifar_example_gen import cifar_format  # noqa: E402
from components.example_gen import example_splits  # noqa: E402
from tests import cifar_files  # noqa: E402
from pipeline import configs, datasets, local_runner  # noqa: E402
from pipeline.plumbing import run_logging  # noqa: E402
from pipeline.plumbing.progress import ComponentProgress  # noqa: E402
from trainer_module import features, model_names  # noqa: E402

CIFAR_MODELS = (model_names.LENET5, model_names.MOBILENET_V2, model_names.RESNET9)
TRAIN_BATCHES, PER_BATCH, TEST_COUNT = 5, 10_000, 10_000
DATA_STAGES = 6  # ExampleGen, StatisticsGen, ImportSchemaGen, ExampleValidator, AnomalyGate, Transform


def write_full_size_data(data_dir: str, layout: str) -> float:
    """Writes the official layout once (kept between runs); returns seconds spent."""
    marker = os.path.join(data_dir, f".complete-{layout}")
    if os.path.exists(marker):
        return 0.0
    started = time.monotonic()
    train = [cifar_files.synthetic_cifar(PER_BATCH, seed=seed) for seed in range(TRAIN_BATCHES)]
    test = cifar_files.synthetic_cifar(TEST_COUNT, seed=TRAIN_BATCHES)
    if layout == cifar_format.PYTHON:
        cifar_files.write_python_version(data_dir, train, test, tarball=True)
    elif layout == cifar_format.BINARY:
        cifar_files.write_binary_version(data_dir, train, test, tarball=True)
    else:
        merged = tuple(np.concatenate(parts) for parts in zip(*train))
        cifar_files.write_image_folder(data_dir, merged, test)
    open(marker, "w", encoding="utf-8").close()
    return time.monotonic() - started


def run_data_stages(config: configs.RunConfig) -> tuple[dict[str, float], str]:
    """Runs ExampleGen ... Transform with LocalDagRunner; returns seconds per component
    and the pipeline root."""
    data_pipeline = local_runner.build_local_pipeline(config, data_stages_only=True)
    run_id = local_runner.new_run_id()
    progress = ComponentProgress(DATA_STAGES, config.metadata_path, config.pipeline_name, run_id)
    log_path = run_logging.new_log_path(config.output_dir)
    with run_logging.captured_run_logs(log_path, [progress], verbose=False):
        local_runner.run_pipeline(data_pipeline, run_id)
    return dict(progress.seconds), config.pipeline_root


def trainer_images_per_second(
    model_name: str, examples_uri: str, transform_uri: str, steps: int, batch_size: int
) -> float:
    """images/s of model.fit on the transformed train split, after a warm-up epoch."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from trainer_module import accelerator, models, run_fn

    accelerator.configure_accelerator()
    transform_output = tft.TFTransformOutput(transform_uri)
    files = glob.glob(os.path.join(examples_uri, "Split-train", "*.gz"))
    raw = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(run_fn.TRANSFORM_BATCH_SIZE)
    raw = raw.map(lambda records: tf.io.parse_example(records, transform_output.raw_feature_spec()))
    layer = transform_output.transform_features_layer()

    def transform(raw_features: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        transformed = layer(raw_features)
        return transformed[features.TRANSFORMED_IMAGE_KEY], transformed[features.LABEL_KEY]

    images_needed = steps * batch_size
    dataset = (
        raw.map(transform)
        .unbatch()
        .take(images_needed)
        .cache()
        .repeat()
        .batch(batch_size)
    )
    hparams = models.default_hparams(model_name)
    spec = datasets.CIFAR10
    model = models.build_model(model_name, spec.image_shape, spec.num_classes, hparams)
    model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0)  # warm-up: tracing, cache fill
    started = time.monotonic()
    model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0)
    return images_needed / (time.monotonic() - started)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--layout",
        choices=(cifar_format.PYTHON, cifar_format.BINARY, cifar_format.IMAGE_FOLDER),
        default=cifar_format.PYTHON,
    )
    parser.add_argument("--models", nargs="+", choices=CIFAR_MODELS, default=list(CIFAR_MODELS))
    parser.add_argument("--steps", type=int, default=40, help="timed batches per model")
    parser.add_argument("--batch-size", type=int, default=configs.DEFAULT_BATCH_SIZE)
    parser.add_argument(
        "--work-dir", default=os.path.join(REPO_ROOT, "bench", "results", "work", "cifar")
    )
    args = parser.parse_args()

    data_dir = os.path.join(args.work_dir, f"data-{args.layout}")
    print(f"writing full-size CIFAR-10 {args.layout} layout to {data_dir} (synthetic pixels) ...")
    write_seconds = write_full_size_data(data_dir, args.layout)
    source = cifar_format.detect_cifar_source(data_dir)
    print(f"found {source.describe()}")

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    config = configs.RunConfig(
        dataset="cifar10", data_dir=data_dir, output_dir=os.path.join(args.work_dir, f"out-{stamp}")
    ).absolute()
    seconds, pipeline_root = run_data_stages(config)

    total = TRAIN_BATCHES * PER_BATCH + TEST_COUNT
    weights = example_splits.DEFAULT_TRAIN_EVAL_WEIGHTS
    train_count = sum(
        example_splits.split_bucket(f"data_batch_{batch}-{index:05d}".encode(), sum(weights))
        < weights[0]
        for batch in range(1, TRAIN_BATCHES + 1)
        for index in range(PER_BATCH)
    )
    example_gen_uri = newest(os.path.join(pipeline_root, "FileBasedExampleGen", "examples", "*"))
    transform_uri = newest(os.path.join(pipeline_root, "Transform", "transform_graph", "*"))

    speeds = {}
    for name in args.models:
        print(f"timing model.fit for {name} ({args.steps} batches of {args.batch_size}) ...")
        speeds[name] = trainer_images_per_second(
            name, example_gen_uri, transform_uri, args.steps, args.batch_size
        )

    rows = ["| Stage | wall s | examples/s |", "|---|---:|---:|"]
    rows += [
        f"| {name} | {value:.1f} | "
        + (f"{total / value:,.0f}" if name == "FileBasedExampleGen" else "")
        + (f"{train_count / value:,.0f} (train split, full-pass analysis)" if name == "Transform" else "")
        + " |"
        for name, value in seconds.items()
    ]
    rows += ["", "| Model | Trainer images/s (model.fit) | one epoch of the train split |", "|---|---:|---:|"]
    rows += [
        f"| {name} | {speed:,.0f} | {train_count / speed / 60:.1f} min |" for name, speed in speeds.items()
    ]
    table = "\n".join(rows)
    header = (
        f"visionpipe CIFAR-10 stage benchmark, {datetime.date.today()}: {args.layout} layout, "
        f"{total:,} synthetic images ({train_count:,} in the train split), batch {args.batch_size}, "
        f"{os.cpu_count()} CPU cores. Accuracy on real CIFAR-10 is not measured."
    )
    print("\n" + header + "\n\n" + table)
    raw = {
        "args": vars(args),
        "write_seconds": write_seconds,
        "components": seconds,
        "trainer_images_per_second": speeds,
        "counts": {"all": total, "train": train_count},
    }
    print("results:", save_results(f"cifar-{args.layout}", header, table, raw))
    return 0


if __name__ == "__main__":
    sys.exit(main())
