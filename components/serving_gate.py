"""`ServingGate`: proves, between Evaluator and Pusher, that TF Serving can serve the candidate.

A SavedModel that `tf.saved_model.load` runs can still fail in TensorFlow
Serving, whose C++ loader restores variables through the saver (see
trainer_module/serving.py). TFX's stock InfraValidator proves servability by
starting a real `tensorflow_model_server` in Docker or Kubernetes; neither is
available everywhere this pipeline runs, so this gate does what that server
does with a new version, in a separate process that imports only TensorFlow
and tensorflow-serving-api (components/serving_check/probe.py), and checks
the answers (components/serving_check/checks.py).

It follows InfraValidator's contract, so the stock Pusher takes its output
(`Pusher(infra_blessing=...)`) unchanged:

* the candidate is copied to `<blessing>/stamped_model` with TF Serving's
  warm-up file (`assets.extra/tf_serving_warmup_requests`: every signature at
  batch 1, 32 and 256, built from real test-split examples), and that copy,
  warm-up included, is what is checked and what the Pusher pushes
  (`has_model` = 1, as InfraValidator's `make_warmup`);
* the `InfraBlessing` carries `blessed` = 1 or 0 and the INFRA_BLESSED or
  INFRA_NOT_BLESSED marker file; `serving_check.json` beside them holds the
  verdict, every failure, the session-load time and p50/p99 latency per
  signature and batch size.

A model that fails is not an error of the pipeline: the gate completes with
`blessed` = 0 and the Pusher pushes nothing, as for a model the Evaluator
did not bless. Missing test examples, by contrast, fail the component.

(No `from __future__ import annotations` here: the TFX component decorator
needs real annotation objects, not strings.)
"""

import json
import os
import tempfile

from absl import logging
from tfx import v1 as tfx
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils

from components.confusion_matrix import evaluated_confusion_matrix
from components.serving_check import checks, serving_requests
from components.serving_check.probe import WARMUP_PATH

TEST_SPLIT = "test"
BLESSED_PROPERTY = "blessed"  # what Pusher reads (tfx.components.util.model_utils.is_infra_validated)
HAS_MODEL_PROPERTY = "has_model"  # Pusher then pushes <blessing>/stamped_model
BLESSED_FILE = "INFRA_BLESSED"  # InfraValidator's marker files
NOT_BLESSED_FILE = "INFRA_NOT_BLESSED"


def stamp_model(model: tfx.types.standard_artifacts.Model, blessing_uri: str, warmup: list) -> str:
    """Copies the Trainer's SavedModel beside the blessing and adds TF Serving's warm-up file."""
    stamped = path_utils.stamped_model_path(blessing_uri)
    io_utils.copy_dir(path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model)), stamped)
    warmup_path = os.path.join(stamped, WARMUP_PATH)
    fileio.makedirs(os.path.dirname(warmup_path))
    serving_requests.write_prediction_logs(warmup_path, warmup)
    return stamped


def record_verdict(blessing: tfx.types.standard_artifacts.InfraBlessing, result: checks.ServingCheck) -> None:
    """The InfraBlessing as the Pusher and InfraValidator's readers expect it, plus the full report.

    Through TFX's fileio, like every executor: on a cluster the URI is gs://.
    """
    io_utils.write_string_file(os.path.join(blessing.uri, checks.REPORT_FILE), json.dumps(result.to_json(), indent=2))
    io_utils.write_string_file(os.path.join(blessing.uri, BLESSED_FILE if result.passed else NOT_BLESSED_FILE), "")
    blessing.set_int_custom_property(BLESSED_PROPERTY, int(result.passed))
    blessing.set_int_custom_property(HAS_MODEL_PROPERTY, int(result.passed))


@tfx.dsl.components.component
def ServingGate(  # pylint: disable=invalid-name  (TFX component naming)
    model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    evaluation: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ModelEvaluation],
    blessing: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.InfraBlessing],
    model_name: tfx.dsl.components.Parameter[str],
    class_names: tfx.dsl.components.Parameter[str],
    rounds: tfx.dsl.components.Parameter[int] = checks.DEFAULT_ROUNDS,
    timeout_seconds: tfx.dsl.components.Parameter[int] = checks.DEFAULT_TIMEOUT_SECONDS,
) -> None:
    """Blesses the candidate for serving only if TF Serving's loader and APIs serve it correctly.

    `model_name`: the name clients use (TF Serving's model_spec.name; the
    pushed folder's name). `class_names`: the dataset's class names as a JSON
    list, in class-id order. `rounds`: timed repeats of each warm-up request.
    """
    split_uri = artifact_utils.get_split_uri([examples], TEST_SPLIT)
    test_examples = serving_requests.read_test_examples(os.path.join(split_uri, "*"))
    names = json.loads(class_names)
    stamped = stamp_model(model, blessing.uri, serving_requests.warmup_logs(model_name, test_examples))
    with tempfile.TemporaryDirectory(prefix="visionpipe-serving-check-") as work_dir:
        result = checks.check_model(
            stamped,
            checks.RequestPlan.from_examples(model_name, test_examples),
            work_dir,
            class_names=names,
            evaluated_matrix=evaluated_confusion_matrix(evaluation.uri),
            rounds=rounds,
            timeout_seconds=timeout_seconds,
        )
    record_verdict(blessing, result)
    logging.info("Serving check of %s: %s", stamped, result.headline())
