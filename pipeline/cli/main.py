"""`visionpipe` command line: run the pipeline, fetch data, inspect evaluations, predict, deploy to Kubeflow.

Exit codes of `run`: 0 a model was pushed; 3 the run completed but the Evaluator
did not bless the model (nothing pushed); 4 the Evaluator blessed it but the
serving check refused it (nothing pushed); 1 anything failed (bad data, a
component error); 2 bad command-line usage.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import sys
from collections.abc import Callable, Sequence

from kubeflow import commands as kubeflow_commands
from kubeflow.commands import add_kubeflow_parser
from pipeline import configs, datasets
from pipeline.plumbing import errors, output_lock, run_logging
from pipeline.cli import preflight


def _bounded_int(maximum: int) -> Callable[[str], int]:
    """An argparse type for an integer from 1 to `maximum`.

    The bound keeps an absurd value (a batch of 10^20 images) a usage error
    at once, instead of a failure minutes later inside the Trainer.
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if not 1 <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be an integer from 1 to {maximum:,}, got {text}")
        return value

    return parse


_positive_int = _bounded_int(10**9)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    """What to train and how: shared by `run` and `kubeflow compile`."""
    from trainer_module.model_names import MODEL_NAMES
    from trainer_module.normalization_names import NORMALIZATIONS

    parser.add_argument(
        "--dataset", choices=sorted(datasets.DATASETS), default=datasets.DEFAULT_DATASET, help="which dataset the files hold"
    )
    parser.add_argument(
        "--model",
        choices=MODEL_NAMES,
        default=argparse.SUPPRESS,
        help="network from the model zoo (default: "
        + ", ".join(f"{spec.default_model} for {name}" for name, spec in datasets.DATASETS.items())
        + ")",
    )
    parser.add_argument(
        "--normalization",
        choices=NORMALIZATIONS,
        default=NORMALIZATIONS[0],
        help="computed: per-channel mean/std of the training split (tf.Transform full pass); "
        "imagenet: the fixed ImageNet RGB mean/std (colour datasets)",
    )
    parser.add_argument(
        "--epochs", type=_bounded_int(configs.MAX_EPOCHS), default=configs.DEFAULT_EPOCHS, help="passes over the train split"
    )
    parser.add_argument(
        "--batch-size", type=_bounded_int(configs.MAX_BATCH_SIZE), default=configs.DEFAULT_BATCH_SIZE, help="training batch size"
    )
    parser.add_argument(
        "--accuracy-threshold",
        type=_fraction,
        default=configs.DEFAULT_ACCURACY_THRESHOLD,
        help="minimum test SparseCategoricalAccuracy for the model to be blessed and pushed",
    )
    parser.add_argument(
        "--serving-check",
        choices=configs.SERVING_CHECKS,
        default=configs.SERVING_GATE,
        help="how the model is proven servable before it is pushed: serving-gate loads it the way "
        "TF Serving does in a separate process and sends it real requests; infra-validator is TFX's "
        "InfraValidator with a real TF Serving in the local Docker engine (not for Kubeflow)",
    )


def _add_run_parser(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser(
        "run",
        help="run the whole pipeline locally (ExampleGen ... Pusher)",
        description="Run the TFX pipeline locally with LocalDagRunner. With no "
        "arguments it trains on the embedded Fashion-MNIST sample. Exit codes: 0 model "
        "pushed, 3 completed but not blessed (nothing pushed), 4 blessed but not servable (nothing "
        "pushed), 1 failed, 2 usage.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    run.add_argument(
        "--data-dir",
        default=argparse.SUPPRESS,  # keeps "(default: None)" out of --help
        help="mnist/fashion_mnist: folder with the four IDX files, gzipped or not; "
        "cifar10: folder with cifar-10-python.tar.gz, cifar-10-binary.tar.gz, their "
        "extracted folders, or train/ and test/ trees of class folders of PNG/JPEG "
        "(default: the embedded Fashion-MNIST sample)",
    )
    run.add_argument(
        "--output-dir",
        default=configs.DEFAULT_OUTPUT_DIR,
        help="artifacts, ML Metadata, pushed models, logs and run_summary.json",
    )
    _add_training_options(run)
    run.add_argument("--verbose", action="store_true", help="also print TFX/Beam logs")


def _add_slices_parser(subparsers: argparse._SubParsersAction) -> None:
    slices = subparsers.add_parser(
        "slices",
        help="per-slice metrics and the blessing verdict of an Evaluator run",
        description="Show TFMA's metrics per slice (overall, each class) for the newest "
        "Evaluator run in an output dir, or for one evaluation folder, with the difference "
        "to the baseline model and the validation verdict. Exit codes: 0 shown (blessed or "
        "not), 1 no or unreadable evaluation, 2 usage.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    where = slices.add_mutually_exclusive_group()
    where.add_argument(
        "--output-dir",
        default=configs.DEFAULT_OUTPUT_DIR,
        help="a run's output dir: its newest Evaluator output (found in metadata.sqlite)",
    )
    where.add_argument(
        "--eval-dir",
        default=argparse.SUPPRESS,
        help="an Evaluator output folder (.../Evaluator/evaluation/<id>) instead",
    )
    slices.add_argument("--metric", default="sparse_categorical_accuracy", help="metric shown first and sorted by")
    slices.add_argument(
        "--sort", choices=("worst",), default=argparse.SUPPRESS,
        help="worst: slices by ascending --metric, after the overall row (default: slice order)",
    )
    slices.add_argument("--json", action="store_true", help="machine-readable output")


def _add_report_parser(subparsers: argparse._SubParsersAction) -> None:
    report = subparsers.add_parser(
        "report",
        help="one self-contained HTML report of the newest evaluation",
        description="Write one HTML file (viewable offline) for the newest Evaluator run in an "
        "output dir: run summary, metrics per slice, per-class accuracy, confusion matrix, the "
        "worst-classified test images, the accuracy trend across the pipeline's models, and "
        "component timings. Exit codes: 0 written, 1 nothing to report or not writable, 2 usage.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    report.add_argument("--output-dir", default=configs.DEFAULT_OUTPUT_DIR, help="a run's output dir")
    report.add_argument("--out", default=None, help="the HTML file to write (default: <output-dir>/report.html)")
    report.add_argument(
        "--worst", type=_positive_int, default=configs.DEFAULT_WORST_COUNT, help="how many worst-classified test images to show"
    )


def _add_serve_check_parser(subparsers: argparse._SubParsersAction) -> None:
    serve_check = subparsers.add_parser(
        "serve-check",
        help="check that TensorFlow Serving can load and serve a pushed model",
        description="Load a pushed SavedModel the way TensorFlow Serving does (session loader, warm-up "
        "replay) in a separate process that imports only TensorFlow and tensorflow-serving-api, send it "
        "Predict and Classify requests, and check every answer: the pipeline's serving gate, on any "
        "model. Exit codes: 0 servable, 1 not servable or nothing to check, 2 usage.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    serve_check.add_argument(
        "--model-dir",
        required=True,
        help="a pushed SavedModel version, its pipeline folder under serving_model/, or an output dir (newest version)",
    )
    serve_check.add_argument(
        "--examples",
        default=argparse.SUPPRESS,
        help="TFRecord files of tf.Examples (glob; .gz is read as gzip) to build the requests from, "
        "e.g. a test split (default: the model's own warm-up requests)",
    )
    serve_check.add_argument("--json", action="store_true", help="machine-readable output")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="visionpipe", description="TFX image-classification pipeline."
    )
    parser.add_argument("--version", action="version", version=_version_text())
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_run_parser(subparsers)
    add_kubeflow_parser(subparsers, _add_training_options, _positive_int)
    _add_slices_parser(subparsers)
    _add_report_parser(subparsers)

    fetch = subparsers.add_parser("fetch", help="download an official dataset with checksum checks")
    fetch.add_argument("--dataset", choices=sorted(datasets.DATASETS), required=True)
    fetch.add_argument("--data-dir", help="where to put the files (default: data/<dataset>)")
    fetch.add_argument(
        "--deadline",
        type=_positive_float,
        metavar="SECONDS",
        default=argparse.SUPPRESS,
        help="time limit per file (default: its size at 64 KiB/s, at least 300 s); a partial file is kept and resumed",
    )

    predict = subparsers.add_parser("predict", help="classify PNG/JPEG files with a pushed model")
    predict.add_argument(
        "--model-dir",
        required=True,
        help="a pushed SavedModel, its pipeline folder under serving_model/, or an output dir",
    )
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    _add_serve_check_parser(subparsers)
    return parser


def _training_config(args: argparse.Namespace, *, data_dir: str, output_dir: str) -> configs.RunConfig:
    """RunConfig from the shared training options, with the given locations."""
    return configs.RunConfig(
        dataset=args.dataset,
        data_dir=data_dir,
        output_dir=output_dir,
        model=getattr(args, "model", None),
        normalization=args.normalization,
        epochs=args.epochs,
        batch_size=args.batch_size,
        accuracy_threshold=args.accuracy_threshold,
        serving_check=args.serving_check,
    )


def _run_config(args: argparse.Namespace) -> configs.RunConfig:
    data_dir = getattr(args, "data_dir", None)
    if data_dir is None:
        if args.dataset != datasets.DEFAULT_DATASET:
            raise configs.ConfigError(
                f"--data-dir is required for --dataset {args.dataset} "
                f"(try: visionpipe fetch --dataset {args.dataset})"
            )
        data_dir = datasets.DEFAULT_SAMPLE_DIR
    config = _training_config(args, data_dir=data_dir, output_dir=args.output_dir).absolute()
    configs.check_plain_path("--data-dir", config.data_dir)
    configs.check_plain_path("--output-dir", config.output_dir)
    return config


def _version_text() -> str:
    """`visionpipe --version`: ours and the stack's versions, read from the installed metadata (no imports)."""
    names = ("visionpipe", "tfx", "tensorflow")
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return f"visionpipe {versions['visionpipe']} (TFX {versions['tfx']}, TensorFlow {versions['tensorflow']})"


def _run(args: argparse.Namespace) -> int:
    """`visionpipe run`, in the order that keeps every failure one line and every log its own run's:
    the output dir, its run lock, this run's log file, the input files' pre-flight, then the
    pipeline (TensorFlow and TFX included, hence the late import) with native stderr going into
    that log."""
    config = _run_config(args)
    try:
        run_logging.create_output_dir(config.output_dir)
        with output_lock.exclusive_output_dir(config.output_dir):
            log_path = run_logging.create_run_log(config.output_dir)
            native_logs = contextlib.nullcontext() if args.verbose else run_logging.native_stderr_to(log_path)
            with native_logs:
                preflight.preflight(config)  # before the 17 s import of TFX: bad input fails in a second
                from pipeline.cli import run_command

                return run_command.run(config, log_path, verbose=args.verbose)
    except (OSError, ValueError, output_lock.OutputDirBusyError) as error:
        return errors.fail(str(error))


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        return _run(args)
    if args.command == "fetch":
        from pipeline.cli import fetch_command

        return fetch_command.fetch(args.dataset, args.data_dir, getattr(args, "deadline", None))
    # The other commands print tables, JSON or one line per file: TF's
    # native start-up lines have no place there.
    with run_logging.native_stderr_to(os.devnull):
        return _dispatch_inspection(args)


def _dispatch_inspection(args: argparse.Namespace) -> int:
    if args.command == "kubeflow":
        return kubeflow_commands.main(args, _training_config)
    if args.command in ("slices", "report"):
        run_logging.quiet_library_warnings()
    if args.command == "slices":
        from pipeline.cli import slices_command

        return slices_command.slices(
            output_dir=args.output_dir,
            eval_dir=getattr(args, "eval_dir", None),
            metric=args.metric,
            sort=getattr(args, "sort", None),
            as_json=args.json,
        )
    if args.command == "report":
        from pipeline.cli import report_command

        return report_command.report(args.output_dir, args.out, args.worst)
    if args.command == "serve-check":
        from pipeline.cli import serve_check_command

        return serve_check_command.serve_check(args.model_dir, getattr(args, "examples", None), args.json)
    from pipeline.cli import predict

    return predict.predict_files(args.model_dir, args.images)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run_logging.quiet_native_logs(verbose=getattr(args, "verbose", False))
    try:
        return _dispatch(args)
    except configs.ConfigError as error:
        parser.error(str(error))  # an impossible combination of options: a usage error, exit 2
    except KeyboardInterrupt:
        print("visionpipe: interrupted", file=sys.stderr, flush=True)
        return errors.EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
