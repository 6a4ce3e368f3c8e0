"""ML Metadata lookups shared by the progress lines, the run summary, the evaluation readers and the serving verdicts.

TFX records every input and output of an execution as an event whose path
names the component's key ("model", "evaluation", "blessing", ...), so an
artifact is found by the key it was recorded under, not by guessing from its
folder name. A run's executions are found through its `pipeline_run`
context, so another run writing into the same store never shows up.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.dsl.compiler import constants as compiler_constants

FINISHED_STATES = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)
INPUT_EVENTS = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)
OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)


def open_read_only(metadata_path: str) -> metadata_store.MetadataStore:
    """Opens an existing ML Metadata SQLite file without any chance of writing to it.

    TFX's `sqlite_metadata_connection_config` opens READWRITE_OPENCREATE, which
    would leave an empty database behind a mistyped --output-dir. Raises
    FileNotFoundError, or RuntimeError when MLMD cannot open the file.
    """
    if not os.path.isfile(metadata_path):
        raise FileNotFoundError(metadata_path)
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def artifacts_by_key(
    store: metadata_store.MetadataStore, execution_id: int, event_types: Iterable[int]
) -> dict[str, metadata_store_pb2.Artifact]:
    """Key -> artifact of one execution's inputs or outputs (`event_types`).

    One artifact used under two keys has one event whose path lists both, as
    key/index step pairs: a candidate re-evaluated against itself as the
    baseline reads ["baseline_model", 0, "model", 0].
    """
    wanted = tuple(event_types)
    keys_by_artifact: dict[int, list[str]] = {}
    for event in store.get_events_by_execution_ids([execution_id]):
        if event.type in wanted:
            keys = [step.key for step in event.path.steps if step.HasField("key")]
            keys_by_artifact.setdefault(event.artifact_id, []).extend(keys)
    artifacts = store.get_artifacts_by_id(list(keys_by_artifact)) if keys_by_artifact else []
    return {key: artifact for artifact in artifacts for key in keys_by_artifact[artifact.id]}


def int_property(artifact: metadata_store_pb2.Artifact, name: str) -> int:
    value = artifact.custom_properties.get(name)
    return int(value.int_value) if value is not None else 0


def string_property(artifact: metadata_store_pb2.Artifact, name: str) -> str:
    value = artifact.custom_properties.get(name)
    return value.string_value if value is not None else ""


def run_execution_ids(store: metadata_store.MetadataStore, run_id: str) -> set[int]:
    """The executions of run `run_id`: those in its `pipeline_run` context (cache hits included)."""
    run = store.get_context_by_type_and_name(compiler_constants.PIPELINE_RUN_CONTEXT_TYPE_NAME, run_id)
    return {execution.id for execution in store.get_executions_by_context(run.id)} if run is not None else set()


def node_execution(
    store: metadata_store.MetadataStore, pipeline_name: str, in_run: set[int], node_id: str
) -> metadata_store_pb2.Execution | None:
    """One pipeline node's execution among a run's executions `in_run` (None: it did not run).

    An execution belongs to its node's context and to its run's context; the
    intersection is this run's execution of that node.
    """
    node = store.get_context_by_type_and_name(compiler_constants.NODE_CONTEXT_TYPE_NAME, f"{pipeline_name}.{node_id}")
    if node is None:
        return None
    executions = [execution for execution in store.get_executions_by_context(node.id) if execution.id in in_run]
    return max(executions, key=lambda execution: execution.id) if executions else None


def execution_seconds(execution: metadata_store_pb2.Execution) -> float:
    """Wall time of an execution as ML Metadata recorded it: registered at its start, updated at its end."""
    return round((execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000, 2)


def is_cached(execution: metadata_store_pb2.Execution) -> bool:
    """Whether the launcher reused an earlier execution's outputs instead of running the component."""
    return execution.last_known_state == metadata_store_pb2.Execution.CACHED
