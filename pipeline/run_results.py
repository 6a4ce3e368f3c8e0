"""What a finished run produced, read back from ML Metadata and TFMA's output.

The pipeline's answer (was the model blessed, where was it pushed, what is its
test accuracy) lives in MLMD and in the Evaluator's artifacts, not in the
runner's return value. Reading it from there means the summary reports exactly
what TFX recorded, including executions reused from the cache.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence

import tensorflow_model_analysis as tfma
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import metadata

from components.confusion_matrix import CANDIDATE_MODEL_NAMES
from pipeline.serving_verdicts import ServingVerdict, serving_verdict
from trainer_module.run_fn import TRAINING_SUMMARY_FILE

ACCURACY_KEY = "sparse_categorical_accuracy"


@dataclasses.dataclass(frozen=True)
class RunOutcome:
    test_accuracy: float | None
    per_class_accuracy: dict[str, float]
    blessed: bool
    pushed_model_dir: str | None
    evaluation_uri: str | None
    training: dict  # trainer_module.run_fn's training_summary.json ({} if missing)
    serving_check: ServingVerdict | None  # the trained model's serving check (None: it did not run)


def output_artifacts(
    store: metadata_store.MetadataStore, execution_id: int
) -> list[metadata_store_pb2.Artifact]:
    events = store.get_events_by_execution_ids([execution_id])
    output_ids = [
        event.artifact_id
        for event in events
        if event.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
    ]
    return list(store.get_artifacts_by_id(output_ids)) if output_ids else []


def _latest_outputs(
    store: metadata_store.MetadataStore, pipeline_name: str, node_id: str
) -> list[metadata_store_pb2.Artifact]:
    """Output artifacts of the newest execution of one pipeline node."""
    context = store.get_context_by_type_and_name("node", f"{pipeline_name}.{node_id}")
    if context is None:
        return []
    executions = store.get_executions_by_context(context.id)
    if not executions:
        return []
    latest = max(executions, key=lambda execution: execution.id)
    return output_artifacts(store, latest.id)


def evaluator_output(
    artifacts: Sequence[metadata_store_pb2.Artifact], output_key: str
) -> metadata_store_pb2.Artifact | None:
    """The Evaluator's `evaluation` or `blessing` output (TFX names their folders so)."""
    return next((a for a in artifacts if a.uri and output_key in a.uri), None)


def _output_key(artifact: metadata_store_pb2.Artifact) -> str:
    """The output key of an artifact TFX placed at <pipeline root>/<node>/<key>/<execution id>."""
    return os.path.basename(os.path.dirname(os.path.normpath(artifact.uri)))


def int_property(artifact: metadata_store_pb2.Artifact, name: str) -> int:
    value = artifact.custom_properties.get(name)
    return int(value.int_value) if value is not None else 0


def _string_property(artifact: metadata_store_pb2.Artifact, name: str) -> str:
    value = artifact.custom_properties.get(name)
    return value.string_value if value is not None else ""


def read_accuracy(
    evaluation_uri: str, class_names: Sequence[str]
) -> tuple[float | None, dict[str, float]]:
    """Overall and per-label SparseCategoricalAccuracy of the candidate model."""
    overall: float | None = None
    per_class: dict[str, float] = {}
    for metrics in tfma.load_metrics(evaluation_uri):
        slice_key = {
            single.column: single.int64_value for single in metrics.slice_key.single_slice_keys
        }
        for entry in metrics.metric_keys_and_values:
            key = entry.key
            if key.name != ACCURACY_KEY or key.is_diff or key.model_name not in CANDIDATE_MODEL_NAMES:
                continue
            value = float(entry.value.double_value.value)
            if not slice_key:
                overall = value
            elif "label" in slice_key and 0 <= slice_key["label"] < len(class_names):
                per_class[class_names[slice_key["label"]]] = value
    return overall, dict(sorted(per_class.items(), key=lambda item: class_names.index(item[0])))


def read_outcome(
    metadata_path: str, pipeline_name: str, class_names: Sequence[str]
) -> RunOutcome:
    """Reads blessing, push destination and accuracy of the newest run."""
    store = metadata_store.MetadataStore(
        metadata.sqlite_metadata_connection_config(metadata_path)
    )
    evaluator_outputs = _latest_outputs(store, pipeline_name, "Evaluator")
    blessing = evaluator_output(evaluator_outputs, "blessing")
    evaluation = evaluator_output(evaluator_outputs, "evaluation")
    blessed = bool(blessing is not None and int_property(blessing, "blessed"))

    pushed_dir = None
    if blessed:
        for artifact in _latest_outputs(store, pipeline_name, "Pusher"):
            if int_property(artifact, "pushed"):
                pushed_dir = _string_property(artifact, "pushed_destination") or None

    training: dict = {}
    trained_models = _latest_outputs(store, pipeline_name, "Trainer")
    for artifact in trained_models:
        summary_path = os.path.join(artifact.uri, TRAINING_SUMMARY_FILE)
        if os.path.isfile(summary_path):
            with open(summary_path, encoding="utf-8") as handle:
                training = json.load(handle)

    accuracy, per_class = (None, {})
    if evaluation is not None and os.path.isdir(evaluation.uri):
        accuracy, per_class = read_accuracy(evaluation.uri, class_names)
    return RunOutcome(
        test_accuracy=accuracy,
        per_class_accuracy=per_class,
        blessed=blessed,
        pushed_model_dir=pushed_dir,
        evaluation_uri=evaluation.uri if evaluation is not None else None,
        training=training,
        serving_check=serving_verdict(store, next((a.uri for a in trained_models if _output_key(a) == "model"), None)),
    )


def write_text_atomically(path: str, text: str) -> None:
    """Writes via a temp file + rename, so a crash never leaves half a file
    (and an earlier good one stays until the new one is complete)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = f"{path}.tmp"
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_json_atomically(path: str, payload: dict) -> None:
    """Writes JSON via a temp file + rename, so a crash never leaves half a summary."""
    write_text_atomically(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")
