"""Local runner: LocalDagRunner with SQLite ML Metadata under the output dir.

Used two ways:
* `visionpipe run ...` calls `run_pipeline(config)` in-process;
* the TFX CLI (`tfx pipeline create --engine local --pipeline_path
  pipeline/local_runner.py`, then `tfx run create --engine local
  --pipeline_name visionpipe-fashion-mnist`) executes this file as a script.
  Script runs take their settings from VISIONPIPE_* environment variables
  (see `config_from_environment`), defaulting to the embedded sample.
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):
    # Run as a script: put the repository root (not pipeline/) first on the path,
    # so `pipeline` resolves to this package.
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from tfx import v1 as tfx  # noqa: E402  (after the path fix above)

from pipeline import definition  # noqa: E402
from pipeline.configs import RunConfig  # noqa: E402

ENVIRONMENT_SETTINGS = {
    "VISIONPIPE_DATASET": ("dataset", str),
    "VISIONPIPE_DATA_DIR": ("data_dir", str),
    "VISIONPIPE_OUTPUT_DIR": ("output_dir", str),
    "VISIONPIPE_MODEL": ("model", str),
    "VISIONPIPE_EPOCHS": ("epochs", int),
    "VISIONPIPE_BATCH_SIZE": ("batch_size", int),
    "VISIONPIPE_ACCURACY_THRESHOLD": ("accuracy_threshold", float),
    "VISIONPIPE_SERVING_CHECK": ("serving_check", str),
}


def config_from_environment(environ: dict[str, str] | None = None) -> RunConfig:
    """RunConfig from VISIONPIPE_* variables, for runs started by the TFX CLI."""
    environ = dict(os.environ if environ is None else environ)
    overrides = {
        field: parse(environ[name])
        for name, (field, parse) in ENVIRONMENT_SETTINGS.items()
        if environ.get(name)
    }
    return RunConfig(**overrides).absolute()


def build_local_pipeline(config: RunConfig) -> tfx.dsl.Pipeline:
    """The pipeline with its SQLite metadata store under the output dir."""
    os.makedirs(config.output_dir, exist_ok=True)
    return definition.create_pipeline(
        config,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            config.metadata_path
        ),
    )


def run_pipeline(config: RunConfig) -> None:
    """Runs every component in order; raises on the first failure."""
    tfx.orchestration.LocalDagRunner().run(build_local_pipeline(config))


if __name__ == "__main__":
    run_pipeline(config_from_environment())
