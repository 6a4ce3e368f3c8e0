"""Whether a trained model passed the serving check, read from ML Metadata and its InfraBlessing.

The check ran as the ServingGate (its report, serving_check.json, lies in the
InfraBlessing folder) or as TFX's InfraValidator (only the blessed flag). The
model is found by lineage: the newest finished serving-check execution that
read this Model artifact. `visionpipe run`'s summary, `slices` and `report`
all ask here.
"""

from __future__ import annotations

import dataclasses
import json
import os

from ml_metadata.metadata_store import metadata_store

from components.serving_check.checks import REPORT_FILE, ServingCheck
from components.serving_gate import BLESSED_PROPERTY
from pipeline.plumbing.metadata_queries import FINISHED_STATES, INPUT_EVENTS, OUTPUT_EVENTS, artifacts_by_key, int_property

SERVING_GATE_NODE = "ServingGate"  # node ids in pipeline.definition (the components' class names)
SERVING_CHECK_NODES = (SERVING_GATE_NODE, "InfraValidator")
BLESSING_KEY = "blessing"  # the output key of ServingGate and InfraValidator alike


@dataclasses.dataclass(frozen=True)
class ServingVerdict:
    """One serving check of one model: which component, its verdict, and the ServingGate's report."""

    component: str
    passed: bool
    blessing_uri: str
    check: ServingCheck | None  # None for InfraValidator, or a report that could not be read

    def headline(self) -> str:
        if self.check is not None:
            return self.check.headline()
        verdict = "PASSED" if self.passed else "FAILED"
        return f"{verdict} ({self.component}; details in its log)"

    def to_json(self) -> dict:
        return {
            "component": self.component,
            "passed": self.passed,
            "headline": self.headline(),
            "blessing_uri": self.blessing_uri,
            **({"report": self.check.to_json()} if self.check is not None else {}),
        }


def _node_of(store: metadata_store.MetadataStore, execution_id: int) -> str | None:
    for context in store.get_contexts_by_execution(execution_id):
        node = context.name.rsplit(".", 1)[-1]
        if node in SERVING_CHECK_NODES:
            return node
    return None


def _read_report(blessing_uri: str) -> ServingCheck | None:
    path = os.path.join(blessing_uri, REPORT_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            return ServingCheck.from_json(json.load(handle))
    except (OSError, ValueError, TypeError):
        return None


def serving_verdict(store: metadata_store.MetadataStore, model_uri: str | None) -> ServingVerdict | None:
    """The newest finished serving check of the Model artifact at `model_uri`, if any ran."""
    if not model_uri:
        return None
    model_ids = [artifact.id for artifact in store.get_artifacts_by_uri(model_uri)]
    if not model_ids:
        return None
    execution_ids = {event.execution_id for event in store.get_events_by_artifact_ids(model_ids) if event.type in INPUT_EVENTS}
    executions = sorted(
        (e for e in store.get_executions_by_id(list(execution_ids)) if e.last_known_state in FINISHED_STATES),
        key=lambda execution: execution.id,
        reverse=True,
    )
    for execution in executions:
        node = _node_of(store, execution.id)
        if node is None:
            continue
        blessing = artifacts_by_key(store, execution.id, OUTPUT_EVENTS).get(BLESSING_KEY)
        if blessing is None:
            continue
        return ServingVerdict(
            component=node,
            passed=bool(int_property(blessing, BLESSED_PROPERTY)),
            blessing_uri=blessing.uri,
            check=_read_report(blessing.uri) if node == SERVING_GATE_NODE else None,
        )
    return None
