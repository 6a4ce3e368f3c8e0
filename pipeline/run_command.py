"""`visionpipe run`: pre-flight data check, the local pipeline run, the run summary."""

from __future__ import annotations

import datetime
import os
import time

from components import cifar_format, idx_format
from pipeline import datasets, errors, local_runner, run_logging, run_results
from pipeline.configs import INFRA_VALIDATOR, SERVING_GATE, RunConfig
from pipeline.progress import ComponentProgress

EXIT_OK = 0
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"  # where docker-py looks without DOCKER_HOST
EXIT_NOT_BLESSED = 3
EXIT_NOT_SERVABLE = 4  # blessed by the Evaluator, refused by the serving check: nothing pushed


def preflight(config: RunConfig) -> None:
    """Validates the input files before any component starts.

    Catching a truncated gzip or tarball, a bad label or a grayscale image here
    costs seconds of streaming, gives the user the file name at once, and
    leaves no failed executions in MLMD. Raises IdxFormatError or
    CifarFormatError (both ValueErrors) with a one-line message.
    """
    if config.serving_check == INFRA_VALIDATOR:
        check_docker_engine()
    spec = datasets.get_dataset(config.dataset)
    if spec.source_format == datasets.CIFAR_FORMAT:
        source = cifar_format.detect_cifar_source(config.data_dir)
        print(f"visionpipe: found {source.describe()}", flush=True)
        count = cifar_format.validate_cifar_source(source)
        print(f"visionpipe: checked {count:,} images", flush=True)
        return
    idx_format.validate_idx_dataset(
        config.data_dir, image_shape=spec.image_shape[:2], num_classes=spec.num_classes
    )


def check_docker_engine() -> None:
    """`--serving-check infra-validator` starts TF Serving in Docker: refuse at once if no engine answers.

    TFX's InfraValidator would otherwise fail only after ExampleGen ... Evaluator
    (minutes), with a docker-py traceback in the log. Raises ValueError.
    """
    import docker  # docker-py, which InfraValidator's local runner uses itself

    try:
        docker.from_env(timeout=10).ping()
    except Exception as error:  # noqa: BLE001  (docker-py raises several unrelated types)
        raise ValueError(
            f"--serving-check {INFRA_VALIDATOR} runs TensorFlow Serving in Docker, but no Docker engine "
            f"answers at {os.environ.get('DOCKER_HOST', DEFAULT_DOCKER_HOST)} ({errors.one_line(error)}); "
            f"use --serving-check {SERVING_GATE}"
        ) from error


def build_summary(
    config: RunConfig, run_id: str, outcome: run_results.RunOutcome, seconds: dict[str, float], total: float
) -> dict:
    return {
        "pipeline_run_id": run_id,
        "dataset": config.dataset,
        "model": config.model,
        "data_dir": config.data_dir,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "accuracy_threshold": config.accuracy_threshold,
        "finished_at": datetime.datetime.now().isoformat(timespec="seconds"),
        "total_seconds": round(total, 2),
        "components": seconds,
        "test_accuracy": outcome.test_accuracy,
        "per_class_accuracy": outcome.per_class_accuracy,
        "training": outcome.training,
        "blessed": outcome.blessed,
        "serving_check": outcome.serving_check.to_json() if outcome.serving_check else None,
        "pushed_model_dir": outcome.pushed_model_dir,
        "evaluation_uri": outcome.evaluation_uri,
    }


def print_summary(summary: dict, summary_path: str) -> None:
    accuracy = summary["test_accuracy"]
    accuracy_text = f"{accuracy:.4f}" if accuracy is not None else "n/a"
    print(f"\nvisionpipe: {summary['dataset']} / {summary['model']} finished in {summary['total_seconds']:.1f} s")
    print(f"  test accuracy : {accuracy_text} (threshold {summary['accuracy_threshold']})")
    print(f"  blessed       : {'yes' if summary['blessed'] else 'no'}")
    serving = summary["serving_check"]
    print(f"  serving check : {serving['headline'] if serving else 'did not run'}")
    print(f"  pushed model  : {summary['pushed_model_dir'] or 'not pushed'}")
    print(f"  summary       : {summary_path}", flush=True)


def run(config: RunConfig, log_path: str, verbose: bool = False) -> int:
    """Runs the pipeline for `config`; returns the process exit code.

    The caller holds the output dir's run lock and has created `log_path`
    (see `pipeline.cli`), so everything here may write to both.
    """
    try:
        preflight(config)
    except (idx_format.IdxFormatError, ValueError) as error:
        return errors.fail(str(error))

    pipeline = local_runner.build_local_pipeline(config)
    progress = ComponentProgress(len(pipeline.components))
    run_id = local_runner.new_run_id()
    print(
        f"visionpipe: {config.pipeline_name}: {config.dataset} from {config.data_dir}, "
        f"model {config.model}, {config.epochs} epochs (log: {log_path})",
        flush=True,
    )
    started = time.monotonic()
    try:
        with run_logging.captured_run_logs(log_path, [progress], verbose=verbose):
            local_runner.run_pipeline(pipeline, run_id)
    except KeyboardInterrupt:
        where = progress.current_component or "the pipeline"
        errors.fail(
            f"interrupted during {where}; the run did not finish and {config.summary_path} is unchanged; "
            f"running the same command again reuses every component that finished (full log: {log_path})"
        )
        return errors.EXIT_INTERRUPTED
    except Exception as error:  # pylint: disable=broad-except  (report every failure)
        where = progress.current_component or "pipeline"
        return errors.fail(f"{where} failed: {errors.one_line(error)} (full log: {log_path})")
    total = time.monotonic() - started

    spec = datasets.get_dataset(config.dataset)
    outcome = run_results.read_outcome(config.metadata_path, config.pipeline_name, run_id, spec.class_names)
    summary = build_summary(config, run_id, outcome, progress.seconds, total)
    run_results.write_json_atomically(config.summary_path, summary)
    print_summary(summary, config.summary_path)
    if outcome.pushed_model_dir:
        return EXIT_OK
    if outcome.blessed and outcome.serving_check is not None and not outcome.serving_check.passed:
        return EXIT_NOT_SERVABLE
    return EXIT_NOT_BLESSED
