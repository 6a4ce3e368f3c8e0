"""ML Metadata lookups that the run summary, the evaluation readers and the serving verdicts share.

TFX records every input and output of an execution as an event whose path
names the component's key ("model", "evaluation", "blessing", ...), so an
artifact is found by the key it was recorded under, not by guessing from its
folder name.
"""

from __future__ import annotations

from collections.abc import Iterable

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

FINISHED_STATES = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)
INPUT_EVENTS = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)
OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)


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
