"""`AtomicPusher`: TFX's Pusher, but a version appears under the push base only once it is complete.

The stock executor (tfx/components/pusher/executor.py) copies the model with
`io_utils.copy_dir` straight into `<base>/<version>`. A full disk leaves that
directory with a cut `saved_model.pb`, a kill an empty one; either is then the
highest integer-named child, which TF Serving serves and `visionpipe predict`
picked, and a re-run pushes beside it without noticing.

This executor keeps everything the stock one does (blessing checks, the model
path of the InfraBlessing, versioning, the archive copy into the PushedModel
artifact, its properties) and changes only where the copy lands:

1. Before a blessed model is pushed, leftovers of earlier crashes are cleared
   (`clear_leftovers`): stale staging dirs are removed, and numbered versions
   that are not complete (components.pushed_versions) are moved to
   `.incomplete-<version>` and logged, not deleted.
2. The stock `Do` runs with the push base swapped for a staging dir beside the
   destination, `<base>/.partial-<time>-<pid>`: TF Serving serves only
   integer-named children of `<base>`, so it never sees the staged copy.
3. Only when that succeeded are the staged files fsynced and the version
   renamed into `<base>/<version>` (one rename(2), on the same file system),
   then `<base>` is fsynced. On any failure the staging dir is removed and the
   error fails the component as before.

Staging needs an atomic directory rename, which object stores (gs://) do not
have; there the stock copy (saved_model.pb last, the convention TF Serving
relies on there) is kept, after the same clean-up.
"""

from __future__ import annotations

import os
import posixpath
import time
from typing import Any

from absl import logging
from tfx import types
from tfx.components.pusher import component as pusher_component
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components import pushed_versions

STAGING_PREFIX = ".partial-"
INCOMPLETE_PREFIX = ".incomplete-"
PUSHED_VERSION_PROPERTY = "pushed_version"  # what the stock executor records (its _PUSHED_VERSION_KEY)
NODE_ID = "Pusher"  # the stock node id, which run_results, the progress lines and artifact paths use


def _is_local(path: str) -> bool:
    return "://" not in path


def _aside_name(base: str, version: str) -> str:
    """`<base>/.incomplete-<version>`, numbered when an earlier one is already there."""
    target = posixpath.join(base, f"{INCOMPLETE_PREFIX}{version}")
    suffix = 1
    while fileio.exists(target):
        suffix += 1
        target = posixpath.join(base, f"{INCOMPLETE_PREFIX}{version}-{suffix}")
    return target


def clear_leftovers(base: str) -> None:
    """Removes stale staging dirs and moves incomplete numbered versions aside, logging each."""
    if not fileio.isdir(base):
        return
    for name in fileio.listdir(base):
        name = name.rstrip("/")
        if name.startswith(STAGING_PREFIX):
            logging.warning("Removing %s, left by an interrupted push.", posixpath.join(base, name))
            fileio.rmtree(posixpath.join(base, name))
    for version_dir in pushed_versions.version_dirs(base):
        problem = pushed_versions.incompleteness(version_dir)
        if problem is not None:
            target = _aside_name(base, posixpath.basename(version_dir))
            logging.warning("Moving incomplete version %s to %s (%s).", version_dir, target, problem)
            fileio.rename(version_dir, target)


def _fsync(path: str, flags: int) -> None:
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_tree(root: str) -> None:
    """Flushes every file and directory under `root` to disk, so the rename publishes durable bytes."""
    for folder, _, files in os.walk(root):
        for name in files:
            _fsync(os.path.join(folder, name), os.O_RDONLY)
        _fsync(folder, os.O_RDONLY | os.O_DIRECTORY)


def publish(staged: str, destination: str) -> None:
    """Renames the complete staged version into place, durably; keeps an existing destination like the stock Pusher."""
    if fileio.exists(destination):
        logging.info("Destination directory %s already exists, skipping current push.", destination)
        return
    fsync_tree(staged)
    os.rename(staged, destination)
    _fsync(os.path.dirname(destination), os.O_RDONLY | os.O_DIRECTORY)
    logging.info("Model published to serving path %s.", destination)


def _push_destination(exec_properties: dict[str, Any]) -> pusher_pb2.PushDestination:
    return proto_utils.json_to_proto(
        exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], pusher_pb2.PushDestination()
    )


def _push_base(exec_properties: dict[str, Any]) -> str | None:
    """The filesystem push destination's base directory, or None for another destination kind."""
    if not exec_properties.get(standard_component_specs.PUSH_DESTINATION_KEY):
        return None
    destination = _push_destination(exec_properties)
    return destination.filesystem.base_directory if destination.HasField("filesystem") else None


def _with_push_base(exec_properties: dict[str, Any], base: str) -> dict[str, Any]:
    """The same execution properties, pushing to `base` instead."""
    destination = _push_destination(exec_properties)
    destination.filesystem.base_directory = base
    return {**exec_properties, standard_component_specs.PUSH_DESTINATION_KEY: proto_utils.proto_to_json(destination)}


class Executor(pusher_executor.Executor):
    """The stock Pusher executor, staging the copy beside the destination (see the module docstring).

    Overrides only `Do`, around the stock one: TFX's executor has no hook for
    the copy itself (it calls io_utils.copy_dir inline), but it does take the
    push base from the execution properties, so the stock code copies into the
    staging dir unchanged.
    """

    def Do(  # noqa: N802  (TFX's method name)
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        base = _push_base(exec_properties)
        if base is None or not self.CheckBlessing(input_dict):
            super().Do(input_dict, output_dict, exec_properties)  # not blessed (recorded as not pushed), or not a filesystem
            return
        clear_leftovers(base)
        if not _is_local(base):
            super().Do(input_dict, output_dict, exec_properties)
            return
        staging = os.path.join(base, f"{STAGING_PREFIX}{int(time.time())}-{os.getpid()}")
        try:
            super().Do(input_dict, output_dict, _with_push_base(exec_properties, staging))
            pushed = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
            version = pushed.get_string_custom_property(PUSHED_VERSION_PROPERTY)
            destination = os.path.join(base, version)
            publish(os.path.join(staging, version), destination)
            self._MarkPushed(pushed, pushed_destination=destination, pushed_version=version)
        finally:
            if fileio.exists(staging):
                fileio.rmtree(staging)


class AtomicPusher(pusher_component.Pusher):
    """`tfx.components.Pusher` with the atomic executor; same inputs, outputs and node id ("Pusher")."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.with_id(NODE_ID)
