"""`visionpipe kubeflow compile | run | local-run | status`: the Kubeflow side of the CLI.

Exit codes: 0 success (for `run --wait`: the run SUCCEEDED); 1 a bad setting,
an unreachable or refusing endpoint, or a run that ended in any other state;
2 bad command-line usage.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys

# kubeflow.client and kubeflow.settings import nothing heavy at their top;
# kubeflow.package and kubeflow.runner (kfp, TFX) are imported where used.
from kubeflow import beam_runners, run_parameters
from kubeflow.client import DEFAULT_COOKIE_ENV, DEFAULT_TOKEN_ENV, Credentials, KubeflowClient, KubeflowClientError
from kubeflow.local_run import LocalRunError
from kubeflow.settings import (
    DATA_ROOT_PARAMETER,
    DEFAULT_COMPONENT_RESOURCES,
    DEFAULT_GPU_RESOURCE,
    DEFAULT_TRAINER_RESOURCES,
    PACKAGE_FILENAME,
    ComponentResources,
    KubeflowConfigError,
    KubeflowSettings,
    check_cluster_uri,
    check_local_path,
    check_node_selector,
)
from pipeline.cli import options
from pipeline.plumbing import errors

DEFAULT_EXPERIMENT = "visionpipe"
DEFAULT_WAIT_TIMEOUT_SECONDS = 24 * 3600
DEFAULT_POLL_SECONDS = 15.0
# The image named in a package for local-run: kfp.local's SubprocessRunner runs
# each task in this interpreter and never pulls it.
LOCAL_RUN_IMAGE = "visionpipe:local"


PACKAGE_SUFFIXES = (".yaml", ".yml")


def _package_path(text: str) -> str:
    """`--output` must be a YAML name: the package is YAML (a PipelineSpec, then a PlatformSpec
    for GPU settings, as two documents), which a `.json` name would misdescribe."""
    if not text.lower().endswith(PACKAGE_SUFFIXES):
        raise argparse.ArgumentTypeError(
            f"{text}: a Kubeflow Pipelines v2 package is YAML; give it a .yaml or .yml name"
        )
    return text


def _one_line_failures(handler: options.Handler) -> options.Handler:
    """A bad setting, a refusing endpoint or a broken package: one `visionpipe: error:` line, exit 1."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        from kubeflow.package import PackageError  # when a command runs: it loads kfp (a second)

        try:
            return handler(args)
        except (KubeflowConfigError, KubeflowClientError, PackageError, LocalRunError) as error:
            return errors.fail(str(error))

    return run


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint",
        required=True,
        help="the KFP API URL, e.g. https://kubeflow.example.com/pipeline or http://localhost:8080",
    )
    parser.add_argument("--namespace", default=None, help="Kubeflow profile namespace (multi-user clusters)")
    parser.add_argument(
        "--token-env",
        default=DEFAULT_TOKEN_ENV,
        metavar="VAR",
        help="environment variable holding a bearer token, sent as 'Authorization: Bearer'",
    )
    parser.add_argument(
        "--cookie-env",
        default=DEFAULT_COOKIE_ENV,
        metavar="VAR",
        help="environment variable holding a session cookie string (e.g. authservice_session=...)",
    )
    parser.add_argument("--ui-url", help="base URL of the KFP UI for run links (default: --endpoint)")


def add_kubeflow_parser(subparsers: argparse._SubParsersAction) -> None:
    """Adds `visionpipe kubeflow compile|run|status`: the `visionpipe.commands` entry point of this package.

    Found by `pipeline.cli.main` through the entry point (pyproject.toml), so
    that `pipeline` never imports `kubeflow`; the training options are the
    ones `visionpipe run` has (`pipeline.cli.options`), as the pipeline is the same.
    """
    kubeflow = subparsers.add_parser(
        "kubeflow", help="compile the pipeline for Kubeflow Pipelines v2, submit it, follow runs"
    )
    commands = kubeflow.add_subparsers(dest="kubeflow_command", required=True)

    compile_parser = options.add_command(
        commands,
        "compile",
        _one_line_failures(_compile),
        help="compile the pipeline into a KFP v2 YAML package",
        description="Compile the same pipeline as `visionpipe run` (TFX KubeflowV2DagRunner) into a "
        "Kubeflow Pipelines v2 package. Nothing is contacted.",
    )
    compile_parser.add_argument(
        "--image", help=f"pipeline image with a tag or digest (required but with --for-local-run: {LOCAL_RUN_IMAGE})"
    )
    compile_parser.add_argument(
        "--pipeline-root", required=True,
        help="gs://, s3:// or minio:// URI for artifacts and pushed models (a local folder with --for-local-run)",
    )
    compile_parser.add_argument(
        "--data-dir",
        help="URI of the dataset files; the package's data_root run parameter defaults to it "
        "(default: <pipeline-root>/data/<dataset>)",
    )
    compile_parser.add_argument(
        "--for-local-run", action="store_true",
        help="a package for `kubeflow local-run` on this machine: local pipeline root and data dir, "
        "this checkout's schemas",
    )
    compile_parser.add_argument(
        "--output", type=_package_path, default=PACKAGE_FILENAME, help="package file to write (.yaml or .yml)"
    )
    compile_parser.add_argument(
        "--gpus",
        type=int,
        default=DEFAULT_TRAINER_RESOURCES.gpus,
        help="GPUs for the Trainer's pod (0: CPU only); with more than one it trains on all of them "
        "(MirroredStrategy: --batch-size per GPU, the learning rate times the GPUs)",
    )
    compile_parser.add_argument(
        "--gpu-resource", default=DEFAULT_GPU_RESOURCE, help="Kubernetes resource name of the GPU"
    )
    compile_parser.add_argument(
        "--gpu-node-selector",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="node label for the Trainer's pod, e.g. cloud.google.com/gke-accelerator=nvidia-tesla-t4 "
        "(repeatable)",
    )
    compile_parser.add_argument("--trainer-cpu", default=DEFAULT_TRAINER_RESOURCES.cpu, help="Trainer CPU request")
    compile_parser.add_argument(
        "--trainer-memory", default=DEFAULT_TRAINER_RESOURCES.memory, help="Trainer memory request"
    )
    compile_parser.add_argument(
        "--cpu", default=DEFAULT_COMPONENT_RESOURCES.cpu, help="CPU request of every other component"
    )
    compile_parser.add_argument(
        "--memory", default=DEFAULT_COMPONENT_RESOURCES.memory, help="memory request of every other component"
    )
    _add_beam_options(compile_parser)
    options.add_training_options(compile_parser)

    run_parser = options.add_command(
        commands,
        "run",
        _one_line_failures(_run),
        help="upload a compiled package and start a run",
        description="Upload the package (a new pipeline, or a new version of it) and start a run "
        "through kfp.Client; prints the run id and its UI link.",
    )
    _add_connection_options(run_parser)
    run_parser.add_argument("--package", default=PACKAGE_FILENAME, help="the compiled package")
    run_parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="KFP experiment name")
    run_parser.add_argument("--run-name", help="default: <pipeline name> <UTC time>")
    run_parser.add_argument(
        "--data-dir", help="override the package's data_root run parameter for this run"
    )
    _add_param_option(run_parser)
    run_parser.add_argument("--wait", action="store_true", help="follow the run until it finishes")
    run_parser.add_argument(
        "--timeout", type=options.positive_int, default=DEFAULT_WAIT_TIMEOUT_SECONDS, help="--wait limit, seconds"
    )
    run_parser.add_argument(
        "--poll-seconds", type=options.positive_float, default=DEFAULT_POLL_SECONDS, help=argparse.SUPPRESS
    )

    local_parser = options.add_command(
        commands,
        "local-run",
        _one_line_failures(_local_run),
        help="execute a package compiled with --for-local-run, with KFP's own local runner",
        description="Execute the package task by task with kfp.local's SubprocessRunner on this machine, "
        "the way the KFP backend would (kubeflow/local_run.py says what is adapted for TFX tasks).",
    )
    local_parser.add_argument("--package", default=PACKAGE_FILENAME, help="a package compiled with --for-local-run")
    local_parser.add_argument(
        "--pipeline-root", help="where kfp.local writes the tasks' artifacts (default: the package's pipeline root)"
    )
    local_parser.add_argument("--data-dir", help="override the package's data_root run parameter for this run")
    _add_param_option(local_parser)

    status_parser = options.add_command(commands, "status", _one_line_failures(_status), help="show a run's state")
    _add_connection_options(status_parser)
    status_parser.add_argument("run_id", metavar="RUN_ID")
    options.add_json_option(status_parser)


def _add_param_option(parser: argparse.ArgumentParser) -> None:
    names = ", ".join(parameter.name for parameter in run_parameters.RUN_PARAMETERS)
    parser.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE",
        help=f"set a run parameter for this run (repeatable): {names}",
    )


def _run_parameter_values(args: argparse.Namespace, spec: object) -> dict[str, object]:
    """The run's parameter values from --param (and --data-dir), checked against the package."""
    assignments = list(args.param) + ([f"{DATA_ROOT_PARAMETER}={args.data_dir}"] if args.data_dir else [])
    return run_parameters.parse_assignments(assignments, run_parameters.package_parameter_types(spec))


def _add_beam_options(parser: argparse.ArgumentParser) -> None:
    """Where the Beam-based components run (kubeflow/beam_runners.py says what each runner needs)."""
    beam = parser.add_argument_group("Beam runner of ExampleGen, StatisticsGen, Transform and the Evaluator")
    beam.add_argument(
        "--beam-runner", choices=beam_runners.BEAM_RUNNERS, default=beam_runners.DIRECT,
        help="direct: in each component's pod; dataflow: Google Cloud Dataflow; flink: a Flink cluster",
    )
    beam.add_argument("--dataflow-project", help="dataflow: the Google Cloud project")
    beam.add_argument("--dataflow-region", help="dataflow: the region, e.g. europe-west4")
    beam.add_argument("--dataflow-temp-location", help="dataflow: a gs:// folder for staging and temporary files")
    beam.add_argument(
        "--sdk-container-image", help="dataflow / flink DOCKER: the workers' Beam SDK image with visionpipe installed"
    )
    beam.add_argument("--flink-master", help="flink: the JobManager's host:port")
    beam.add_argument("--flink-parallelism", type=options.positive_int, help="flink: the pipelines' parallelism")
    beam.add_argument(
        "--flink-environment", choices=beam_runners.FLINK_ENVIRONMENTS, default="DOCKER",
        help="flink: how the SDK workers run",
    )
    beam.add_argument(
        "--flink-environment-config", help="flink PROCESS: the worker command (JSON); EXTERNAL: host:port"
    )
    beam.add_argument(
        "--beam-arg", action="append", default=[], metavar="ARG",
        help="any other Beam pipeline option, e.g. --beam-arg=--max_num_workers=8 (repeatable; last wins)",
    )


def _beam_pipeline_args(args: argparse.Namespace) -> tuple[str, ...]:
    return beam_runners.BeamRunnerSettings(
        runner=args.beam_runner,
        dataflow_project=args.dataflow_project,
        dataflow_region=args.dataflow_region,
        dataflow_temp_location=args.dataflow_temp_location,
        sdk_container_image=args.sdk_container_image,
        flink_master=args.flink_master,
        flink_parallelism=args.flink_parallelism,
        flink_environment=args.flink_environment,
        flink_environment_config=args.flink_environment_config,
        extra_args=tuple(args.beam_arg),
    ).pipeline_args()


def _compile(args: argparse.Namespace) -> int:
    """Checks the settings and the training options (before TFX is imported), then compiles."""
    if not args.image and not args.for_local_run:
        raise KubeflowConfigError("--image is required (but for a package compiled --for-local-run)")
    settings = KubeflowSettings(
        image=args.image or LOCAL_RUN_IMAGE,
        pipeline_root=args.pipeline_root,
        data_root=args.data_dir,
        component_resources=ComponentResources(cpu=args.cpu, memory=args.memory),
        trainer_resources=ComponentResources(
            cpu=args.trainer_cpu, memory=args.trainer_memory, gpus=args.gpus, gpu_resource=args.gpu_resource
        ),
        gpu_node_selector=check_node_selector(tuple(args.gpu_node_selector)),
        beam_pipeline_args=_beam_pipeline_args(args),
        local_run=args.for_local_run,
    )
    for warning in settings.storage_warnings():
        print(f"visionpipe: warning: {warning}", file=sys.stderr)
    config = options.training_config(
        args, data_dir=settings.data_root_for(args.dataset), output_dir=settings.pipeline_root
    )
    print(f"visionpipe: compiling {config.pipeline_name} for Kubeflow Pipelines (image {settings.image}) ...")
    from kubeflow import runner

    path = runner.compile_package(config, settings, args.output)
    gpu = f"{args.gpus} x {args.gpu_resource}" if args.gpus else "no GPU"
    print(f"visionpipe: wrote {path}")
    print(f"  pipeline root {settings.pipeline_root}; data_root {settings.data_root_for(args.dataset)}; Trainer {gpu}")
    print(f"  Beam runner {args.beam_runner}: {' '.join(settings.beam_pipeline_args)}")
    defaults = ", ".join(f"{name}={value}" for name, value in runner.run_parameter_defaults(config, settings).items())
    print(f"  run parameters (--param NAME=VALUE): {defaults}")
    if args.for_local_run:
        print(f"  run it here: visionpipe kubeflow local-run --package {path}")
    return 0


def _connect(args: argparse.Namespace) -> KubeflowClient:
    credentials = Credentials.from_environment(args.token_env, args.cookie_env)
    return KubeflowClient(args.endpoint, credentials, namespace=args.namespace, ui_url=args.ui_url)


def _run(args: argparse.Namespace) -> int:
    import datetime

    from kubeflow import package

    spec, _ = package.load_package(args.package)  # a broken package never reaches the cluster
    pipeline_name = spec.pipeline_info.name
    if "://" not in spec.default_pipeline_root:
        raise KubeflowConfigError(
            f"{args.package}: compiled --for-local-run (pipeline root {spec.default_pipeline_root}); run it with "
            "`visionpipe kubeflow local-run`, or compile it again for the cluster"
        )
    parameters = _run_parameter_values(args, spec)
    if DATA_ROOT_PARAMETER in parameters:
        check_cluster_uri(parameters[DATA_ROOT_PARAMETER], f"--param {DATA_ROOT_PARAMETER}")
    client = _connect(args)
    print(f"visionpipe: uploading {args.package} as pipeline {pipeline_name} to {client.endpoint} ...")
    pipeline_id, version_id = client.upload(args.package, pipeline_name)
    run_name = args.run_name or f"{pipeline_name} {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S}"
    run_id = client.start_run(pipeline_id, version_id, args.experiment, run_name, parameters)
    print(f"visionpipe: started run {run_id} in experiment {args.experiment}")
    print(f"  {client.run_url(run_id)}")
    if not args.wait:
        return 0
    final = client.wait(
        run_id,
        timeout_seconds=args.timeout,
        poll_seconds=args.poll_seconds,
        on_change=lambda status, elapsed: print(f"  [{elapsed:7.0f} s] {status.state}", flush=True),
    )
    if not final.finished:
        return errors.fail(f"run {run_id} still {final.state} after {args.timeout} s")
    if final.state != "SUCCEEDED":
        detail = f": {final.error}" if final.error else ""
        return errors.fail(f"run {run_id} {final.state}{detail}")
    print(f"visionpipe: run {run_id} SUCCEEDED")
    return 0


def _local_run(args: argparse.Namespace) -> int:
    import time

    from kubeflow import local_run, package

    spec, _ = package.load_package(args.package)
    parameters = _run_parameter_values(args, spec)
    if DATA_ROOT_PARAMETER in parameters:
        parameters[DATA_ROOT_PARAMETER] = check_local_path(parameters[DATA_ROOT_PARAMETER], f"--param {DATA_ROOT_PARAMETER}")
    data_root = parameters.get(DATA_ROOT_PARAMETER) or run_parameters.package_default(spec, DATA_ROOT_PARAMETER)
    if data_root and "://" not in data_root and not os.path.isdir(data_root):
        raise KubeflowConfigError(f"{DATA_ROOT_PARAMETER} {data_root}: no such folder (set it with --data-dir)")
    shown = ", ".join(f"{name}={value}" for name, value in parameters.items()) or "the package's defaults"
    print(f"visionpipe: running {args.package} ({spec.pipeline_info.name}, {len(spec.root.dag.tasks)} tasks) "
          f"with kfp.local's SubprocessRunner; parameters: {shown}", flush=True)
    started = time.monotonic()
    result = local_run.run_package(args.package, parameters, args.pipeline_root)
    print(f"visionpipe: all {len(spec.root.dag.tasks)} tasks succeeded in {time.monotonic() - started:.0f} s; "
          f"artifacts in {result.run_dir}")
    if result.pushed_model_dir:
        print(f"visionpipe: model blessed and pushed to {result.pushed_model_dir}")
    else:
        verdict = "blessed but not pushed" if result.blessed else "not blessed (below the accuracy threshold)"
        print(f"visionpipe: model {verdict}; nothing pushed")
    return 0


def _status(args: argparse.Namespace) -> int:
    status = _connect(args).status(args.run_id)
    if args.json:
        print(json.dumps(status.to_json(), indent=2))
        return 0
    print(f"run {status.run_id} ({status.name}): {status.state}")
    if status.created_at:
        print(f"  created  {status.created_at}")
    if status.finished_at:
        print(f"  finished {status.finished_at}")
    if status.error:
        print(f"  error    {status.error}")
    print(f"  {status.url}")
    return 0

