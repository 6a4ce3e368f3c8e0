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

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from pipeline.inspect.eval_results import read_accuracy
from pipeline.plumbing import metadata_queries
from pipeline.plumbing.metadata_queries import OUTPUT_EVENTS, artifacts_by_key, int_property, string_property
from pipeline.inspect.serving_verdicts import ServingVerdict, serving_verdict
from trainer_module.training_summary import TRAINING_SUMMARY_FILE


@dataclasses.dataclass(frozen=True)
class RunOutcome:
    test_accuracy: float | None
    per_class_accuracy: dict[str, float]
    blessed: bool
    pushed_model_dir: str | None
    evaluation_uri: str | None
    training: dict  # trainer_module.run_fn's training_summary.json ({} if missing)
    serving_check: ServingVerdict | None  # the trained model's serving check (None: it did not run)


def _run_outputs(
    store: metadata_store.MetadataStore, pipeline_name: str, in_run: set[int], node_id: str
) -> dict[str, metadata_store_pb2.Artifact]:
    """Output key -> artifact of one pipeline node's execution in the run (empty: it did not run)."""
    execution = metadata_queries.node_execution(store, pipeline_name, in_run, node_id)
    return artifacts_by_key(store, execution.id, OUTPUT_EVENTS) if execution is not None else {}


def read_outcome(
    metadata_path: str, pipeline_name: str, run_id: str, class_names: Sequence[str]
) -> RunOutcome:
    """Reads blessing, push destination and accuracy of run `run_id` (see local_runner.run_pipeline)."""
    store = metadata_queries.open_read_only(metadata_path)
    in_run = metadata_queries.run_execution_ids(store, run_id)
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
