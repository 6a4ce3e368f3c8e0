"""`visionpipe run`'s pre-flight: the input files (and the Docker engine, when asked for) are checked
before TensorFlow and TFX are even imported.

Importing `tfx.v1` alone takes about 17 s on 2 cores; checking the files takes
milliseconds to seconds. Doing this first means a truncated gzip, a bad label,
a grayscale image or a hostile pickle is one line within a second or two of
pressing Enter, names the file, and leaves no failed executions in ML Metadata.
Only the readers (numpy, Pillow, the standard library) are imported here.
"""

from __future__ import annotations

import os

from components.cifar_example_gen import cifar_format
from components.idx_example_gen import idx_format
from pipeline import datasets
from pipeline.plumbing import errors
from pipeline.configs import INFRA_VALIDATOR, SERVING_GATE, RunConfig

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"  # where docker-py looks without DOCKER_HOST


def preflight(config: RunConfig) -> None:
    """Validates the input files before any component starts.

    Raises IdxFormatError or CifarFormatError (both ValueErrors) with a
    one-line message, or ValueError for a missing Docker engine.
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
