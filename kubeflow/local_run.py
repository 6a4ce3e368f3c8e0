"""`visionpipe kubeflow local-run`: a compiled package executed by KFP's own local runner, `kfp.local`.

kfp.local runs a package's DAG the way the KFP backend does, task after task,
each with the executor input KFP would hand its pod, here in a subprocess of
this interpreter (`SubprocessRunner`). It is what proves a package executes
before anything is uploaded. kfp 2.16 needs three adjustments for TFX
packages, and `tfx_tasks_allowed` makes exactly those, for one run:

1. `SubprocessRunner` refuses every container component ("only supports
   running Lightweight Python Components"), and every TFX task is one: its
   command is TFX's KFP v2 launcher, `python -m
   tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor`. The
   adapter's task handler accepts that one command (nothing else), run with
   this interpreter instead of the image's `python`.
2. kfp.local rebuilds every output artifact as a KFP `dsl.Artifact` before it
   becomes the next task's input, and an artifact type KFP does not know
   (`tfx.Examples`, `tfx.Model`, ...) comes back as `system.Artifact`; TFX's
   launcher then fails with "ImportError: Could not import system.Artifact".
   The adapter keeps each artifact's schema title and version, which the
   ExecutorOutput carries.
3. kfp.local names a task's folder (and its log lines) after its component
   with the first five characters cut, assuming the `comp-` prefix of
   kfp.compiler; TFX names components after their nodes (`Trainer`), which
   would become `er`. The adapter cuts the prefix only where it is there.

Written against the kfp version in `KFP_VERSION` and refused with any other:
both are private parts of kfp.local. `tests/test_kubeflow_local_run.py`
checks that kfp still has both limitations, so it fails loudly when kfp
changes under the adapter (fixed, or moved).

kfp.local's `DockerRunner` is not offered: it mounts only the pipeline root
into each task's container, so ExampleGen could not read a data folder
outside it, nor ImportSchemaGen this checkout's curated schemas; and no Docker
engine was available to make that work and test it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from typing import Any

KFP_VERSION = "2.16.1"  # the kfp of uv.lock, whose kfp.local internals the adapter replaces
TFX_LAUNCHER_MODULE = "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"
KFP_COMPONENT_PREFIX = "comp-"  # kfp.dsl.utils.COMPONENT_NAME_PREFIX
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")  # kfp.local colours task names in its messages
PUSHER_TASK = "Pusher"
EVALUATOR_TASK = "Evaluator"


class LocalRunError(RuntimeError):
    """A package that kfp.local cannot run here, or a task that failed; one line."""


def check_kfp_version(version: str) -> None:
    """Refuses a kfp whose kfp.local internals the adapter was not written against."""
    if version != KFP_VERSION:
        raise LocalRunError(
            f"kfp {version} is installed; local-run adapts kfp.local {KFP_VERSION}'s internals "
            "(kubeflow/local_run.py), so it refuses any other version: `uv sync` installs the locked one"
        )


def _tfx_task_handler_class() -> type:
    """kfp.local's SubprocessTaskHandler, accepting TFX's launcher command (limitation 1)."""
    from kfp.local import subprocess_task_handler

    class TfxSubprocessTaskHandler(subprocess_task_handler.SubprocessTaskHandler):
        """Runs a TFX task's container command in a subprocess of this interpreter."""

        def __init__(self, image: str, full_command: list[str], pipeline_root: str, runner: Any) -> None:
            if full_command[1:3] == ["-m", TFX_LAUNCHER_MODULE]:
                full_command = [sys.executable, *full_command[1:]]
            super().__init__(image, full_command, pipeline_root, runner)

        def validate_image(self, image: str) -> None:
            """The image is not used: the task runs in this interpreter (kfp warns for non-Python names)."""

        def validate_not_container_component(self, full_command: list[str]) -> None:
            if full_command[:3] != [sys.executable, "-m", TFX_LAUNCHER_MODULE]:
                super().validate_not_container_component(full_command)

    return TfxSubprocessTaskHandler


def _typed_artifact_builder(stock_builder: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """kfp.local's RuntimeArtifact -> dsl.Artifact builder, keeping the TFX type (limitation 2).

    TFX declares its types by an instance schema (`title: tfx.Examples`),
    which kfp.local drops; its title, as the schema title, is what TFX's
    launcher reads back.
    """
    import yaml

    def typed_artifact(runtime_artifact: Any) -> Any:
        artifact = stock_builder(runtime_artifact)
        artifact_type = runtime_artifact.type
        title = artifact_type.schema_title or yaml.safe_load(artifact_type.instance_schema or "{}").get("title")
        if title and artifact.schema_title != title:
            artifact.schema_title = title
            artifact.schema_version = artifact_type.schema_version or artifact.schema_version
        return artifact

    return typed_artifact


def _task_resource_name(component_name: str) -> str:
    """A task's folder name: its component's name without kfp.compiler's prefix, if any (limitation 3)."""
    return component_name.removeprefix(KFP_COMPONENT_PREFIX)


@contextlib.contextmanager
def tfx_tasks_allowed() -> Iterator[None]:
    """kfp.local with the two adjustments for TFX tasks, restored afterwards."""
    import kfp
    from kfp.local import executor_input_utils, executor_output_utils, subprocess_task_handler

    check_kfp_version(kfp.__version__)
    replacements = [
        (subprocess_task_handler, "SubprocessTaskHandler", _tfx_task_handler_class()),
        (
            executor_output_utils,
            "runtime_artifact_to_dsl_artifact",
            _typed_artifact_builder(executor_output_utils.runtime_artifact_to_dsl_artifact),
        ),
        (executor_input_utils, "get_local_task_resource_name", _task_resource_name),
    ]
    stock = [(module, name, getattr(module, name)) for module, name, _ in replacements]
    for module, name, replacement in replacements:
        setattr(module, name, replacement)
    try:
        yield
    finally:
        for module, name, original in stock:
            setattr(module, name, original)


@dataclasses.dataclass(frozen=True)
class LocalRunResult:
    """Where one local run wrote, and whether its model was blessed and pushed."""

    run_dir: str  # <pipeline root>/<pipeline>-<time>: kfp.local's folder for this run's artifacts
    blessed: bool
    pushed_model_dir: str | None


def push_base_directory(spec: Any) -> str | None:
    """The Pusher's push destination in a PipelineSpec (where blessed models go), if it has one."""
    from google.protobuf import json_format

    from tfx.proto import pusher_pb2

    task = spec.root.dag.tasks.get(PUSHER_TASK)
    if task is None:
        return None
    value = task.inputs.parameters["push_destination"].runtime_value.constant.string_value
    destination = json_format.Parse(value, pusher_pb2.PushDestination())
    return destination.filesystem.base_directory or None


def run_package(
    package_path: str, parameters: Mapping[str, Any], pipeline_root: str | None = None
) -> LocalRunResult:
    """Runs a package compiled for local-run, task by task, with kfp.local's SubprocessRunner.

    `pipeline_root` (default: the package's) is where kfp.local writes every
    task's artifacts, in a folder of its own per run. Raises LocalRunError,
    one line, for a package compiled for a cluster or a failed task; kfp.local
    prints each task's log as it runs.
    """
    from kfp import components, local

    from kubeflow import package

    spec, _ = package.load_package(package_path)
    root = pipeline_root or spec.default_pipeline_root
    if "://" in root:
        raise LocalRunError(
            f"{package_path}: compiled for a cluster (pipeline root {root}); compile it with --for-local-run "
            "to run it here"
        )
    root = os.path.abspath(root)
    before = set(os.listdir(root)) if os.path.isdir(root) else set()
    push_base = push_base_directory(spec)
    pushed_before = set(_pushed_versions(push_base))
    with tempfile.TemporaryDirectory(prefix="visionpipe-kfp-workspace-") as workspace, tfx_tasks_allowed():
        local.init(
            runner=local.SubprocessRunner(use_venv=False),
            pipeline_root=root,
            workspace_root=workspace,
            raise_on_error=True,
        )
        pipeline = components.load_component_from_file(package_path)
        try:
            pipeline(**parameters)
        except RuntimeError as error:  # kfp.local: "Task X finished with status FAILURE" and the like
            message = ANSI_ESCAPE.sub("", str(error).splitlines()[0])
            raise LocalRunError(f"{package_path}: {message} (its log is above)") from None
    new_dirs = sorted(set(os.listdir(root)) - before)
    run_dir = os.path.join(root, new_dirs[-1]) if new_dirs else root
    return LocalRunResult(
        run_dir=run_dir,
        blessed=os.path.exists(os.path.join(run_dir, EVALUATOR_TASK, "blessing", "BLESSED")),
        pushed_model_dir=next((v for v in reversed(_pushed_versions(push_base)) if v not in pushed_before), None),
    )


def _pushed_versions(base: str | None) -> list[str]:
    from components import pushed_versions

    return pushed_versions.version_dirs(base) if base else []
