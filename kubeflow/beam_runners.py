"""Where the Beam-based components of a compiled package run: in their pod, on Dataflow, or on Flink.

ExampleGen, StatisticsGen, Transform and the Evaluator are Beam pipelines.
`kubeflow compile --beam-runner` picks the Beam runner they use, and this
module turns the choice and its options into the `beam_pipeline_args` that
TFX writes into every Beam-based component of the package. A runner's
required options are checked here, so a package never reaches a cluster
only to fail in a pod log for a missing `--region`.

* `direct` (default): Beam's FnApiRunner in the component's own pod, as a
  local run does (`pipeline.configs.IN_PROCESS_BEAM_ARGS`).
* `dataflow`: Google Cloud Dataflow. Needs a project, a region, a gs://
  temp location and the workers' SDK container image: a Beam SDK image
  (its entrypoint `/opt/apache/beam/boot`) with visionpipe installed and
  the worker start-up folder on its PYTHONPATH (kubeflow/README.md). The
  pipeline image is not one, so there is no default.
* `flink`: a Flink cluster through Beam's portable Flink runner. Needs the
  JobManager's address and a parallelism; the SDK workers run as Docker
  containers of that same kind of SDK image (`--environment_type DOCKER`),
  or as a process or external service (`PROCESS`, `EXTERNAL` with
  `--flink-environment-config`).

Raw `--beam-arg` values are appended last, so they can add any other Beam
option or override one of the above. Neither Dataflow nor Flink can be
reached from the machines this project is built on: these arguments are
checked in the compiled package, not executed.
"""

from __future__ import annotations

import dataclasses

from pipeline import configs

DIRECT = "direct"
DATAFLOW = "dataflow"
FLINK = "flink"
BEAM_RUNNERS = (DIRECT, DATAFLOW, FLINK)
FLINK_ENVIRONMENTS = ("DOCKER", "PROCESS", "EXTERNAL")


@dataclasses.dataclass(frozen=True)
class BeamRunnerSettings:
    """The `kubeflow compile` options that choose and configure the Beam runner."""

    runner: str = DIRECT
    dataflow_project: str | None = None
    dataflow_region: str | None = None
    dataflow_temp_location: str | None = None
    sdk_container_image: str | None = None  # the Beam SDK image of Dataflow's workers / Flink's DOCKER environment
    flink_master: str | None = None
    flink_parallelism: int | None = None
    flink_environment: str = "DOCKER"
    flink_environment_config: str | None = None  # PROCESS: a JSON command; EXTERNAL: host:port (DOCKER: sdk_container_image)
    extra_args: tuple[str, ...] = ()

    def pipeline_args(self) -> tuple[str, ...]:
        """The Beam arguments of every Beam-based component; `configs.ConfigError` names what is missing."""
        if self.runner == DIRECT:
            return (*configs.IN_PROCESS_BEAM_ARGS, *self.extra_args)
        if self.runner == DATAFLOW:
            return (*self._dataflow_args(), *self.extra_args)
        if self.runner == FLINK:
            return (*self._flink_args(), *self.extra_args)
        raise configs.ConfigError(f"--beam-runner {self.runner!r}: choose one of {', '.join(BEAM_RUNNERS)}")

    def _dataflow_args(self) -> tuple[str, ...]:
        self._require(
            DATAFLOW,
            {
                "--dataflow-project": self.dataflow_project,
                "--dataflow-region": self.dataflow_region,
                "--dataflow-temp-location": self.dataflow_temp_location,
                "--sdk-container-image": self.sdk_container_image,
            },
        )
        if not str(self.dataflow_temp_location).startswith("gs://"):
            raise configs.ConfigError(
                f"--dataflow-temp-location {self.dataflow_temp_location}: Dataflow stages files in Cloud Storage; "
                "give a gs:// URI"
            )
        return (
            "--runner=DataflowRunner",
            f"--project={self.dataflow_project}",
            f"--region={self.dataflow_region}",
            f"--temp_location={self.dataflow_temp_location}",
            f"--sdk_container_image={self.sdk_container_image}",
            # A custom SDK container needs Dataflow's Runner v2.
            "--experiments=use_runner_v2",
        )

    def _flink_args(self) -> tuple[str, ...]:
        self._require(FLINK, {"--flink-master": self.flink_master, "--flink-parallelism": self.flink_parallelism})
        if self.flink_parallelism is not None and self.flink_parallelism < 1:
            raise configs.ConfigError(f"--flink-parallelism {self.flink_parallelism}: must be 1 or more")
        if self.flink_environment not in FLINK_ENVIRONMENTS:
            raise configs.ConfigError(
                f"--flink-environment {self.flink_environment}: choose one of {', '.join(FLINK_ENVIRONMENTS)}"
            )
        environment_config = self.sdk_container_image if self.flink_environment == "DOCKER" else self.flink_environment_config
        if not environment_config:
            needed = "--sdk-container-image" if self.flink_environment == "DOCKER" else "--flink-environment-config"
            raise configs.ConfigError(
                f"--flink-environment {self.flink_environment} needs {needed} "
                "(DOCKER: the Beam SDK image; PROCESS: the worker command as JSON; EXTERNAL: the worker pool's host:port)"
            )
        return (
            "--runner=FlinkRunner",
            f"--flink_master={self.flink_master}",
            f"--parallelism={self.flink_parallelism}",
            f"--environment_type={self.flink_environment}",
            f"--environment_config={environment_config}",
        )

    @staticmethod
    def _require(runner: str, values: dict[str, object]) -> None:
        missing = [option for option, value in values.items() if value in (None, "")]
        if missing:
            raise configs.ConfigError(f"--beam-runner {runner} needs {', '.join(missing)}")
