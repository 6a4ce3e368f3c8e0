"""`visionpipe` command line: run the pipeline, fetch data, inspect evaluations, predict, and plugged-in groups.

Exit codes of `run`: 0 a model was pushed; 3 the run completed but the Evaluator
did not bless the model (nothing pushed); 4 the Evaluator blessed it but the
serving check refused it (nothing pushed); 1 anything failed (bad data, a
component error); 2 bad command-line usage.

Every command is a sub-parser whose handler (`set_defaults(func=...)`)
imports its command module only when it runs, so building the parser (and
`visionpipe --help`, and every usage error) never imports TensorFlow or TFX.

Command groups of other packages (`visionpipe kubeflow ...`) are found through
the `visionpipe.commands` entry points, not imported by name: they depend on
`pipeline`, and `pipeline` must not depend on them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.metadata
import sys
import time
from collections.abc import Sequence

# When this command started, before its imports: a run's time budget counts from here.
COMMAND_STARTED_AT = time.time()

from pipeline import configs, datasets, eval_config
from pipeline.cli import options, preflight
from pipeline.plumbing import errors, output_lock, run_logging

# Entry-point group of command plugins. Each entry point names a function
# `add_parser(subparsers: argparse._SubParsersAction) -> None` that adds its
# sub-command (built with `pipeline.cli.options.add_command`, so that it gets
# a handler and a usage line like the built-in ones).
COMMAND_PLUGINS = "visionpipe.commands"


def _add_run_parser(subparsers: argparse._SubParsersAction) -> None:
    run = options.add_command(
        subparsers,
        "run",
        _run,
        console_is_output=False,
        help="run the whole pipeline locally (ExampleGen ... Pusher)",
        description="Run the TFX pipeline locally with LocalDagRunner. With no "
        "arguments it trains on the embedded Fashion-MNIST sample. Exit codes: 0 model "
        "pushed, 3 completed but not blessed (nothing pushed), 4 blessed but not servable (nothing "
        "pushed), 1 failed, 2 usage.",
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
    options.add_budget_options(run)
    options.add_training_options(run)
    run.add_argument(
        "--beam-workers",
        type=options.bounded_int(configs.MAX_BEAM_WORKERS),
        default=1,
        help="Beam worker processes for ExampleGen, StatisticsGen, Transform and the Evaluator "
        "(1: in this process, the fastest on a few cores)",
    )
    run.add_argument("--verbose", action="store_true", help="also print TFX/Beam logs")


def _add_slices_parser(subparsers: argparse._SubParsersAction) -> None:
    slices = options.add_command(
        subparsers,
        "slices",
        _slices,
        help="per-slice metrics and the blessing verdict of an Evaluator run",
        description="Show TFMA's metrics per slice (overall, each class) for the newest "
        "Evaluator run in an output dir, or for one evaluation folder, with the difference "
        "to the baseline model and the validation verdict. Exit codes: 0 shown (blessed or "
        "not), 1 no or unreadable evaluation, 2 usage.",
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
    slices.add_argument(
        "--metric",
        default=eval_config.ACCURACY_KEY,
        help="metric shown first and sorted by; the default is the accuracy the Evaluator gates on",
    )
    slices.add_argument(
        "--sort", choices=("worst",), default=argparse.SUPPRESS,
        help="worst: slices by ascending --metric, after the overall row (default: slice order)",
    )
    options.add_json_option(slices)


def _add_report_parser(subparsers: argparse._SubParsersAction) -> None:
    report = options.add_command(
        subparsers,
        "report",
        _report,
        help="one self-contained HTML report of the newest evaluation",
        description="Write one HTML file (viewable offline) for the newest Evaluator run in an "
        "output dir: run summary, metrics per slice, per-class accuracy, confusion matrix, the "
        "worst-classified test images, the accuracy trend across the pipeline's models, and "
        "component timings. Exit codes: 0 written, 1 nothing to report or not writable, 2 usage.",
    )
    report.add_argument("--output-dir", default=configs.DEFAULT_OUTPUT_DIR, help="a run's output dir")
    report.add_argument("--out", default=None, help="the HTML file to write (default: <output-dir>/report.html)")
    report.add_argument(
        "--worst", type=options.positive_int, default=configs.DEFAULT_WORST_COUNT,
        help="how many worst-classified test images to show",
    )


def _add_fetch_parser(subparsers: argparse._SubParsersAction) -> None:
    fetch = options.add_command(
        subparsers, "fetch", _fetch, console_is_output=False, help="download an official dataset with checksum checks"
    )
    fetch.add_argument("--dataset", choices=sorted(datasets.DATASETS), required=True)
    fetch.add_argument("--data-dir", help="where to put the files (default: data/<dataset>)")
    fetch.add_argument(
        "--deadline",
        type=options.positive_float,
        metavar="SECONDS",
        default=argparse.SUPPRESS,
        help="time limit per file (default: its size at 64 KiB/s, at least 300 s); a partial file is kept and resumed",
    )


def _add_predict_parser(subparsers: argparse._SubParsersAction) -> None:
    predict = options.add_command(subparsers, "predict", _predict, help="classify PNG/JPEG files with a pushed model")
    predict.add_argument(
        "--model-dir",
        required=True,
        help="a pushed SavedModel, its pipeline folder under serving_model/, or an output dir",
    )
    predict.add_argument("images", nargs="+", metavar="IMAGE")


def _add_serve_check_parser(subparsers: argparse._SubParsersAction) -> None:
    serve_check = options.add_command(
        subparsers,
        "serve-check",
        _serve_check,
        help="check that TensorFlow Serving can load and serve a pushed model",
        description="Load a pushed SavedModel the way TensorFlow Serving does (session loader, warm-up "
        "replay) in a separate process that imports only TensorFlow and tensorflow-serving-api, send it "
        "Predict and Classify requests, and check every answer: the pipeline's serving gate, on any "
        "model. Exit codes: 0 servable, 1 not servable or nothing to check, 2 usage.",
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
    options.add_json_option(serve_check)


def _add_plugin_commands(subparsers: argparse._SubParsersAction) -> None:
    """Adds the command groups installed packages declare under `COMMAND_PLUGINS`.

    A plugin that cannot be loaded (its package or one of its dependencies
    missing, a stale entry point) costs only its own commands, with one
    warning line: it must never take `visionpipe run` down with it.
    """
    plugins = sorted(importlib.metadata.entry_points(group=COMMAND_PLUGINS), key=lambda plugin: plugin.name)
    for plugin in plugins:
        try:
            add_parser = plugin.load()
        except Exception as error:  # noqa: BLE001  (ImportError, AttributeError, a plugin's own bug: all the same here)
            print(
                f"visionpipe: warning: the {plugin.name!r} commands ({plugin.value}) are unavailable: "
                f"{errors.one_line(error)}",
                file=sys.stderr,
            )
            continue
        add_parser(subparsers)


def build_parser() -> argparse.ArgumentParser:
    """The whole `visionpipe` argparse tree: the built-in commands, then the plugged-in groups."""
    parser = argparse.ArgumentParser(prog="visionpipe", description="TFX image-classification pipeline.")
    parser.add_argument("--version", action="version", version=_version_text())
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add_parser in (
        _add_run_parser,
        _add_slices_parser,
        _add_report_parser,
        _add_fetch_parser,
        _add_predict_parser,
        _add_serve_check_parser,
    ):
        add_parser(subparsers)
    _add_plugin_commands(subparsers)
    return parser


def _version_text() -> str:
    """`visionpipe --version`: ours and the stack's versions, read from the installed metadata (no imports)."""
    versions = {}
    for name in ("visionpipe", "tfx", "tensorflow"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return f"visionpipe {versions['visionpipe']} (TFX {versions['tfx']}, TensorFlow {versions['tensorflow']})"


def _run_config(args: argparse.Namespace) -> configs.RunConfig:
    """The run's RunConfig with absolute paths; a `configs.ConfigError` is a usage error."""
    data_dir = getattr(args, "data_dir", None)
    if data_dir is None:
        if args.dataset != datasets.DEFAULT_DATASET:
            raise configs.ConfigError(
                f"--data-dir is required for --dataset {args.dataset} "
                f"(try: visionpipe fetch --dataset {args.dataset})"
            )
        data_dir = datasets.DEFAULT_SAMPLE_DIR
    config = dataclasses.replace(
        options.training_config(args, data_dir=data_dir, output_dir=args.output_dir), beam_workers=args.beam_workers
    ).absolute()
    configs.check_plain_path("--data-dir", config.data_dir)
    configs.check_plain_path("--output-dir", config.output_dir)
    return config


def _run(args: argparse.Namespace) -> int:
    """`visionpipe run`, in the order that keeps every failure one line and every log its own run's:
    the options (a usage error before anything is created), the output dir, its run lock, this
    run's log file, the input files' pre-flight, then the pipeline (TensorFlow and TFX included,
    hence the late import) with native stderr going into that log."""
    config = _run_config(args)
    try:
        run_logging.create_output_dir(config.output_dir)
        with output_lock.exclusive_output_dir(config.output_dir):
            log_path = run_logging.create_run_log(config.output_dir)
            native_logs = contextlib.nullcontext() if args.verbose else run_logging.native_stderr_to(log_path)
            with native_logs:
                preflight.preflight(config)  # before the 17 s import of TFX: bad input fails in a second
                from pipeline.cli import run_command

                return run_command.run(config, log_path, verbose=args.verbose, started_at=COMMAND_STARTED_AT)
    except (OSError, ValueError, output_lock.OutputDirBusyError) as error:
        return errors.fail(str(error))


def _fetch(args: argparse.Namespace) -> int:
    from pipeline.cli import fetch_command

    return fetch_command.fetch(args.dataset, args.data_dir, getattr(args, "deadline", None))


def _slices(args: argparse.Namespace) -> int:
    run_logging.quiet_library_warnings()  # TFMA's loaders' deprecation notices would interleave the table
    from pipeline.cli import slices_command

    return slices_command.slices(
        output_dir=args.output_dir,
        eval_dir=getattr(args, "eval_dir", None),
        metric=args.metric,
        sort=getattr(args, "sort", None),
        as_json=args.json,
    )


def _report(args: argparse.Namespace) -> int:
    run_logging.quiet_library_warnings()
    from pipeline.cli import report_command

    return report_command.report(args.output_dir, args.out, args.worst)


def _serve_check(args: argparse.Namespace) -> int:
    from pipeline.cli import serve_check_command

    return serve_check_command.serve_check(args.model_dir, getattr(args, "examples", None), args.json)


def _predict(args: argparse.Namespace) -> int:
    from pipeline.cli import predict

    return predict.predict_files(args.model_dir, args.images)


def main(argv: Sequence[str] | None = None) -> int:
    """Parses `argv` and runs the chosen command's handler; returns its exit code.

    Usage errors exit 2 through argparse (`parser.error`), including the ones a
    handler finds in a combination of options (`configs.ConfigError`, raised
    before it imports TFX). Runtime failures are the handlers' own one-line
    `visionpipe: error:` (exit 1 and the codes above); Ctrl-C exits 130.
    """
    args = build_parser().parse_args(argv)
    run_logging.quiet_native_logs(verbose=getattr(args, "verbose", False))
    try:
        return args.func(args)
    except configs.ConfigError as error:
        args.command_parser.error(str(error))  # exits 2 with the command's usage line
    except KeyboardInterrupt:
        print("visionpipe: interrupted", file=sys.stderr, flush=True)
        return errors.EXIT_INTERRUPTED
