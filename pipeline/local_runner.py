"""Local runner: LocalDagRunner with SQLite ML Metadata under the output dir.

Used two ways:
* `visionpipe run ...` calls `run_pipeline(pipeline, run_id)` in-process;
* the TFX CLI (`tfx pipeline create --engine local --pipeline_path
  pipeline/local_runner.py`, then `tfx run create --engine local
  --pipeline_name visionpipe-fashion-mnist`) executes this file as a script.
  Script runs take their settings from VISIONPIPE_* environment variables
  (see `config_from_environment`), defaulting to the embedded sample.
"""

from __future__ import annotations

import datetime
import os
import sys

if __package__ in (None, ""):
    # Run as a script: put the repository root (not pipeline/) first on the path,
    # so `pipeline` resolves to this package.
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from tfx import v1 as tfx  # noqa: E402  (after the path fix above)

from tfx.dsl.compiler import constants  # noqa: E402
from tfx.orchestration.local import local_dag_runner  # noqa: E402
from tfx.orchestration.portable import runtime_parameter_utils  # noqa: E402
from tfx.proto.orchestration import pipeline_pb2  # noqa: E402

from components import tfx_bsl_compat  # noqa: E402
from pipeline import configs, definition  # noqa: E402
from pipeline.plumbing import errors, output_lock, run_logging  # noqa: E402
from pipeline.plumbing.progress import ComponentProgress  # noqa: E402

ENVIRONMENT_SETTINGS = {
    "VISIONPIPE_DATASET": ("dataset", str),
    "VISIONPIPE_DATA_DIR": ("data_dir", str),
    "VISIONPIPE_OUTPUT_DIR": ("output_dir", str),
    "VISIONPIPE_MODEL": ("model", str),
    "VISIONPIPE_EPOCHS": ("epochs", int),
    "VISIONPIPE_PROFILE": ("profile", str),
    "VISIONPIPE_BUDGET_MINUTES": ("budget_minutes", float),
    "VISIONPIPE_BATCH_SIZE": ("batch_size", int),
    "VISIONPIPE_ACCURACY_THRESHOLD": ("accuracy_threshold", float),
    "VISIONPIPE_SERVING_CHECK": ("serving_check", str),
    "VISIONPIPE_BEAM_WORKERS": ("beam_workers", int),
}


def config_from_environment(environ: dict[str, str] | None = None) -> configs.RunConfig:
    """configs.RunConfig from VISIONPIPE_* variables, for runs started by the TFX CLI."""
    environ = dict(os.environ if environ is None else environ)
    overrides = {
        field: parse(environ[name])
        for name, (field, parse) in ENVIRONMENT_SETTINGS.items()
        if environ.get(name)
    }
    return configs.RunConfig(**overrides).absolute()


def build_local_pipeline(config: configs.RunConfig, data_stages_only: bool = False) -> tfx.dsl.Pipeline:
    """The pipeline with its SQLite metadata store under the output dir, and Beam as configured.

    `data_stages_only`: ExampleGen ... Transform, for the benchmarks that time
    the data stages (see `definition.create_pipeline`). With several Beam workers, this process's PYTHONPATH gets the folder that
    installs the tfx-bsl shim in each worker process at its start
    (`tfx_bsl_compat.WORKER_SITE_DIR`): the workers inherit the environment,
    and without the shim they cannot import TFDV.
    """
    os.makedirs(config.output_dir, exist_ok=True)
    if config.beam_workers > 1:
        os.environ["PYTHONPATH"] = tfx_bsl_compat.worker_pythonpath(os.environ.get("PYTHONPATH"))
    return definition.create_pipeline(
        config,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            config.metadata_path
        ),
        beam_pipeline_args=configs.local_beam_args(config.beam_workers),
        data_stages_only=data_stages_only,
    )


def new_run_id() -> str:
    """A pipeline run id no other run shares: LocalDagRunner's own form (the start time) plus the pid."""
    return f"{datetime.datetime.now().isoformat()}-{os.getpid()}"


class NamedRunLocalDagRunner(local_dag_runner.LocalDagRunner):
    """LocalDagRunner that runs under a pipeline run id chosen by the caller.

    LocalDagRunner picks the run id itself (its start time) and does not tell
    it. The id names the ML Metadata `pipeline_run` context that holds exactly
    this run's executions (cache hits included), so fixing it first lets the
    run read its results from its own executions, never from another run's in
    the same store. Only `run_with_ir` is extended: `run` stays TFX's own, so
    the TFX CLI, which patches `LocalDagRunner.run` to capture the pipeline,
    still sees it.
    """

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id

    def run_with_ir(self, pipeline: pipeline_pb2.Pipeline, run_options: pipeline_pb2.RunOptions | None = None) -> None:
        runtime_parameter_utils.substitute_runtime_parameter(
            pipeline, {constants.PIPELINE_RUN_ID_PARAMETER_NAME: self.run_id}
        )
        super().run_with_ir(pipeline, run_options=run_options)


def run_pipeline(pipeline: tfx.dsl.Pipeline, run_id: str) -> None:
    """Runs every component in order under `run_id`; raises on the first failure."""
    NamedRunLocalDagRunner(run_id).run(pipeline)


class LoggedRunLocalDagRunner(NamedRunLocalDagRunner):
    """For runs the TFX CLI starts: the console of `visionpipe run` (a line per component), every
    log line, native ones included, in `<output-dir>/logs/run-*.log`.

    The set-up happens in `run_with_ir`, which only a real run reaches: `tfx
    pipeline create` patches `run` to capture the pipeline without running
    it, and then no log file is made.
    """

    def __init__(self, run_id: str, output_dir: str) -> None:
        super().__init__(run_id)
        self.output_dir = output_dir

    def run_with_ir(self, pipeline: pipeline_pb2.Pipeline, run_options: pipeline_pb2.RunOptions | None = None) -> None:
        log_path = run_logging.create_run_log(self.output_dir)
        progress = ComponentProgress(
            len(pipeline.nodes),
            os.path.join(self.output_dir, configs.METADATA_FILE),
            pipeline.pipeline_info.id,
            self.run_id,
        )
        print(f"visionpipe: {pipeline.pipeline_info.id} (log: {log_path})", flush=True)
        try:
            with run_logging.native_stderr_to(log_path), run_logging.captured_run_logs(log_path, [progress]):
                super().run_with_ir(pipeline, run_options=run_options)
        except Exception as error:  # pylint: disable=broad-except  (one line for the TFX CLI's console)
            raise SystemExit(errors.fail(errors.run_failure(progress.current_component, error, log_path))) from None


if __name__ == "__main__":
    script_config = config_from_environment()
    script_pipeline = build_local_pipeline(script_config)
    with output_lock.exclusive_output_dir(script_config.output_dir):
        LoggedRunLocalDagRunner(new_run_id(), script_config.output_dir).run(script_pipeline)
