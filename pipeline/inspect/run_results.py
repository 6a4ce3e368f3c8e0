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
from tfx.dsl.compiler import constants as compiler_constants
from tfx.orchestration import metadata

from components.confusion_matrix import CANDIDATE_MODEL_NAMES
from pipeline.inspect.metadata_queries import OUTPUT_EVENTS, artifacts_by_key, int_property, string_property
from pipeline.inspect.serving_verdicts import ServingVerdict, serving_verdict
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


def _run_execution_ids(store: metadata_store.MetadataStore, run_id: str) -> set[int]:
    """The executions of run `run_id`: those in its `pipeline_run` context (cache hits included)."""
    run = store.get_context_by_type_and_name(compiler_constants.PIPELINE_RUN_CONTEXT_TYPE_NAME, run_id)
    return {execution.id for execution in store.get_executions_by_context(run.id)} if run is not None else set()


def _run_outputs(
    store: metadata_store.MetadataStore, pipeline_name: str, in_run: set[int], node_id: str
) -> dict[str, metadata_store_pb2.Artifact]:
    """Output key -> artifact of one pipeline node's execution among the run's executions `in_run`.

    An execution belongs to its node's context and to its run's context; the
    intersection is this run's execution of that node. Another run writing
    into the same store never shows up here.
    """
    node = store.get_context_by_type_and_name(compiler_constants.NODE_CONTEXT_TYPE_NAME, f"{pipeline_name}.{node_id}")
    if node is None:
        return {}
    executions = [execution for execution in store.get_executions_by_context(node.id) if execution.id in in_run]
    if not executions:
        return {}
    latest = max(executions, key=lambda execution: execution.id)
    return artifacts_by_key(store, latest.id, OUTPUT_EVENTS)


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
    metadata_path: str, pipeline_name: str, run_id: str, class_names: Sequence[str]
) -> RunOutcome:
    """Reads blessing, push destination and accuracy of run `run_id` (see local_runner.run_pipeline)."""
    store = metadata_store.MetadataStore(
        metadata.sqlite_metadata_connection_config(metadata_path)
    )
    in_run = _run_execution_ids(store, run_id)
    evaluator_outputs = _run_outputs(store, pipeline_name, in_run, "Evaluator")
    blessing = evaluator_outputs.get("blessing")
    evaluation = evaluator_outputs.get("evaluation")
    blessed = bool(blessing is not None and int_property(blessing, "blessed"))

    pushed_dir = None
    pushed = _run_outputs(store, pipeline_name, in_run, "Pusher").get("pushed_model")
    if blessed and pushed is not None and int_property(pushed, "pushed"):
        pushed_dir = string_property(pushed, "pushed_destination") or None

    training: dict = {}
    trainer_outputs = _run_outputs(store, pipeline_name, in_run, "Trainer")
    model_run = trainer_outputs.get("model_run")  # run_fn writes its summary into the model_run dir
    summary_path = os.path.join(model_run.uri, TRAINING_SUMMARY_FILE) if model_run is not None else ""
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
        serving_check=serving_verdict(store, trainer_outputs["model"].uri if "model" in trainer_outputs else None),
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
