"""Every finished Evaluator run recorded in an output dir's ML Metadata, read-only.

`visionpipe slices` needs the newest evaluation, `visionpipe report` all of
them (the accuracy trend) and, for the newest, the model and test examples it
evaluated. MLMD is the record of what ran; nothing here is inferred from
folder names.
"""

from __future__ import annotations

import dataclasses

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.types import artifact_utils

from pipeline.eval_config import EVALUATION_SPLIT
from pipeline.plumbing import metadata_queries
from pipeline.plumbing.metadata_queries import FINISHED_STATES, INPUT_EVENTS, OUTPUT_EVENTS, artifacts_by_key, int_property

_EVALUATOR_NODE_SUFFIX = ".Evaluator"  # TFX names node contexts "<pipeline>.<node id>"


class NoEvaluationError(LookupError):
    """No Evaluator output can be found; the message names the path."""


@dataclasses.dataclass(frozen=True)
class EvaluatorRun:
    """One Evaluator execution: what it read, what it wrote, and its verdict."""

    pipeline_name: str
    execution_id: int
    finished_at_ms: int  # ML Metadata's last update time of the execution
    evaluation_uri: str
    blessed: bool
    model_uri: str | None  # the candidate Model artifact (its serving SavedModel is inside)
    examples_uri: str | None  # the Examples artifact
    test_split_uri: str | None  # the folder of its evaluated split, as TFX lays it out (None: not recorded)


def _split_uri(store: metadata_store.MetadataStore, examples: metadata_store_pb2.Artifact, split: str) -> str | None:
    """Where `split` of an Examples artifact lives, by TFX's own rule.

    TFX's artifact_utils knows the layout of every artifact version (older
    TFX wrote `<uri>/<split>`, newer `<uri>/Split-<split>`) and the artifact's
    recorded split names; None when the artifact records no such split.
    """
    [artifact_type] = store.get_artifact_types_by_id([examples.type_id])
    try:
        return artifact_utils.get_split_uri([artifact_utils.deserialize_artifact(artifact_type, examples)], split)
    except ValueError:
        return None


def open_metadata_read_only(metadata_path: str) -> metadata_store.MetadataStore:
    """The output dir's ML Metadata, read-only; NoEvaluationError (naming the file) if it cannot be opened."""
    try:
        return metadata_queries.open_read_only(metadata_path)
    except FileNotFoundError:
        raise NoEvaluationError(f"{metadata_path}: not found (no pipeline has run in this output dir)") from None
    except RuntimeError as error:
        raise NoEvaluationError(f"{metadata_path}: cannot open ML Metadata ({error})") from error


def evaluator_runs(metadata_path: str) -> list[EvaluatorRun]:
    """Finished Evaluator runs of every pipeline in this store, oldest first.

    A cached run reuses an earlier run's outputs, so each evaluation appears
    once (as its first run). Failed runs are left out: they may have
    registered an output folder they never wrote.
    """
    store = open_metadata_read_only(metadata_path)
    pipelines: dict[int, str] = {}  # execution id -> pipeline name
    executions = []
    for context in store.get_contexts_by_type("node"):
        if not context.name.endswith(_EVALUATOR_NODE_SUFFIX):
            continue
        for execution in store.get_executions_by_context(context.id):
            if execution.last_known_state in FINISHED_STATES:
                pipelines[execution.id] = context.name[: -len(_EVALUATOR_NODE_SUFFIX)]
                executions.append(execution)
    executions.sort(key=lambda execution: execution.id)
    runs: dict[str, EvaluatorRun] = {}
    for execution in executions:
        outputs = artifacts_by_key(store, execution.id, OUTPUT_EVENTS)
        evaluation = outputs.get("evaluation")
        if evaluation is None or evaluation.uri in runs:
            continue
        blessing = outputs.get("blessing")
        inputs = artifacts_by_key(store, execution.id, INPUT_EVENTS)
        model, examples = inputs.get("model"), inputs.get("examples")
        runs[evaluation.uri] = EvaluatorRun(
            pipeline_name=pipelines[execution.id],
            execution_id=execution.id,
            finished_at_ms=execution.last_update_time_since_epoch,
            evaluation_uri=evaluation.uri,
            blessed=bool(blessing is not None and int_property(blessing, "blessed")),
            model_uri=model.uri if model is not None else None,
            examples_uri=examples.uri if examples is not None else None,
            test_split_uri=_split_uri(store, examples, EVALUATION_SPLIT) if examples is not None else None,
        )
    return list(runs.values())


def newest_run(runs: list[EvaluatorRun], metadata_path: str) -> EvaluatorRun:
    """The newest of `runs` (read from `metadata_path`); NoEvaluationError if none."""
    if not runs:
        raise NoEvaluationError(f"{metadata_path}: no finished Evaluator run recorded")
    return max(runs, key=lambda run: run.execution_id)


def latest_evaluator_run(metadata_path: str) -> EvaluatorRun:
    """The newest finished Evaluator run, any pipeline; NoEvaluationError if none."""
    return newest_run(evaluator_runs(metadata_path), metadata_path)
