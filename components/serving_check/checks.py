"""The serving check: the probe process's report, plus the model's own contract, as one verdict.

`check_model` writes the requests (components.serving_check.serving_requests), runs
probe.py in a separate `python -I` process (what TF Serving would do with
the model, importing nothing but TensorFlow and tensorflow-serving-api), and
then checks what came back against what visionpipe promises:

* the three signatures exist with TF Serving's method names (trainer_module.signatures);
* every response is well formed: probabilities finite and summing to 1, the
  class id the arg-max, the class name that id's name, classify's `classes`
  the class names in id order;
* the signatures agree: the same examples give the same probabilities through
  serving_default, serving_images (their PNG bytes) and classify; JPEG
  re-encodings give valid probabilities;
* when given the Evaluator's confusion matrix, the served model's predictions
  over the whole split reproduce it cell for cell: what is served is what was
  evaluated.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from components.confusion_matrix import count_matrix, padded
from components.serving_check import probe, serving_requests
from components.serving_check.serving_requests import TestExample
from trainer_module.signatures import (
    CLASS_IDS,
    CLASS_NAMES,
    CLASSIFY_CLASSES,
    CLASSIFY_SCORES,
    INPUT_KEYS,
    METHOD_NAMES,
    PROBABILITIES,
)

PROBE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "probe.py")
REPORT_FILE = "serving_check.json"  # the verdict, beside the InfraBlessing or in serve-check --json
DEFAULT_ROUNDS = 10  # timed repeats of each warm-up request
DEFAULT_TIMEOUT_SECONDS = 900
CROSS_CHECK_EXAMPLES = 32  # examples sent through every signature and compared
SUM_TOLERANCE = 1e-4  # float32 softmax rows sum to 1 within this
AGREEMENT_TOLERANCE = 1e-5  # the same pixels through two signatures
PROBE_PHASES = ("import", "load", "latency", "requests")  # the probe report's <phase>_seconds


@dataclasses.dataclass(frozen=True)
class RequestPlan:
    """What is sent, in order: triples through every signature, JPEG image requests, the evaluation pass."""

    triples: list[list[prediction_log_pb2.PredictionLog]]  # [serving_default, serving_images, classify]
    jpeg: list[prediction_log_pb2.PredictionLog]
    evaluation: list[prediction_log_pb2.PredictionLog]
    labels: list[int]  # of the evaluation pass's examples

    def logs(self) -> list[prediction_log_pb2.PredictionLog]:
        return [log for triple in self.triples for log in triple] + self.jpeg + self.evaluation

    @classmethod
    def from_examples(cls, model_name: str, examples: Sequence[TestExample]) -> "RequestPlan":
        """The gate's plan: 32 examples through every signature (PNG and JPEG), then the whole split."""
        sample = list(examples[:CROSS_CHECK_EXAMPLES])
        return cls(
            triples=[serving_requests.same_examples_through_every_signature(model_name, sample)],
            jpeg=[serving_requests.same_examples_through_every_signature(model_name, sample, jpeg=True)[1]],
            evaluation=list(serving_requests.evaluation_logs(model_name, examples)),
            labels=[example.label for example in examples],
        )

    @classmethod
    def from_warmup(cls, warmup: Sequence[prediction_log_pb2.PredictionLog]) -> "RequestPlan":
        """A pushed model's own warm-up requests, which the gate wrote as triples."""
        return cls(triples=[list(warmup[i : i + 3]) for i in range(0, len(warmup) - 2, 3)], jpeg=[], evaluation=[], labels=[])


@dataclasses.dataclass(frozen=True)
class ServingCheck:
    """The verdict and the figures: load time, warm-up, latency per signature and batch size."""

    model_dir: str
    passed: bool
    failures: list[str]
    load_seconds: float | None
    warmup: dict[str, Any]
    latency: list[dict[str, Any]]
    signatures: dict[str, Any]
    requests_answered: int
    evaluated_examples: int  # test examples whose served prediction was compared or scored
    served_accuracy: float | None  # of the evaluation pass, against the examples' labels
    imported_modules: list[str]
    seconds: dict[str, float]  # the probe process's PROBE_PHASES (warm-up: in `warmup`)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> "ServingCheck":
        return cls(**{field.name: payload.get(field.name) for field in dataclasses.fields(cls)})

    def headline(self) -> str:
        """One line: PASSED with load time and batch-1 latency, or FAILED with the first failure."""
        if not self.passed:
            more = f" (and {len(self.failures) - 1} more)" if len(self.failures) > 1 else ""
            return f"FAILED: {self.failures[0]}{more}"
        single = [row for row in self.latency if row["batch_size"] == 1]
        latency = ", ".join(f"{row['signature']} p50 {row['p50_ms']:.1f} ms" for row in single)
        return f"PASSED (session load {self.load_seconds:.2f} s" + (f"; batch 1: {latency})" if latency else ")")


def serving_environment() -> dict[str, str]:
    """This process's environment without what tf.Transform set in it.

    TFT sets TF_USE_LEGACY_KERAS=1 when imported (tensorflow_transform/keras_lib.py),
    which makes TensorFlow import tf_keras; a serving container has no such setting.
    """
    return {name: value for name, value in os.environ.items() if name != "TF_USE_LEGACY_KERAS"}


def run_probe(
    model_dir: str, work_dir: str, requests_path: str | None, rounds: int, timeout_seconds: int
) -> tuple[dict[str, Any], list[prediction_log_pb2.PredictionLog]]:
    """Runs probe.py in its own isolated interpreter; returns its report and the answered requests."""
    report_path = os.path.join(work_dir, "probe_report.json")
    responses_path = os.path.join(work_dir, "responses.tfrecord")
    command = [sys.executable, "-I", PROBE_FILE, "--model-dir", model_dir, "--report", report_path,
               "--rounds", str(rounds)]
    if requests_path:
        command += ["--requests", requests_path, "--responses", responses_path]
    try:
        finished = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_seconds, check=False, env=serving_environment()
        )
    except subprocess.TimeoutExpired:
        return {"failures": [f"the serving check did not finish within {timeout_seconds} s"]}, []
    if finished.returncode != 0 or not os.path.isfile(report_path):
        last = next((line for line in reversed(finished.stderr.splitlines()) if line.strip()), "no output")
        return {"failures": [f"the serving check process exited with code {finished.returncode}: {last.strip()}"]}, []
    with open(report_path, encoding="utf-8") as handle:
        report = json.load(handle)
    answered = list(probe.read_prediction_logs(responses_path)) if requests_path and os.path.isfile(responses_path) else []
    return report, answered


def check_signatures(signatures: dict[str, Any]) -> list[str]:
    """visionpipe's three signatures, with TF Serving's method names and their input aliases."""
    problems = []
    for name, method in METHOD_NAMES.items():
        found = signatures.get(name)
        if found is None:
            problems.append(f"signature '{name}' is missing (found {', '.join(sorted(signatures)) or 'none'})")
        elif found["method_name"] != method:
            problems.append(f"signature '{name}' has method_name {found['method_name']}, not {method}")
        elif list(found["inputs"]) != [INPUT_KEYS[name]]:
            problems.append(f"signature '{name}' takes {sorted(found['inputs'])}, not ['{INPUT_KEYS[name]}']")
    return problems


def predict_outputs(log: prediction_log_pb2.PredictionLog) -> dict[str, np.ndarray]:
    return {alias: tf.make_ndarray(proto) for alias, proto in log.predict_log.response.outputs.items()}


def classify_outputs(log: prediction_log_pb2.PredictionLog) -> tuple[list[list[str]], np.ndarray]:
    rows = log.classify_log.response.result.classifications
    return [[entry.label for entry in row.classes] for row in rows], np.array(
        [[entry.score for entry in row.classes] for row in rows], dtype=np.float32
    )


def probability_problems(where: str, probabilities: np.ndarray) -> list[str]:
    if not np.all(np.isfinite(probabilities)):
        return [f"{where}: {int(np.sum(~np.isfinite(probabilities)))} probabilities are not finite"]
    worst = float(np.max(np.abs(probabilities.sum(axis=-1) - 1.0))) if probabilities.size else 0.0
    return [f"{where}: probabilities sum to 1 only within {worst:.2g}"] if worst > SUM_TOLERANCE else []


def predict_problems(where: str, outputs: dict[str, np.ndarray], class_names: Sequence[str]) -> list[str]:
    """A predict response's probabilities, class ids and class names, consistent with each other."""
    missing = [alias for alias in (PROBABILITIES, CLASS_IDS, CLASS_NAMES) if alias not in outputs]
    if missing:
        return [f"{where}: outputs {missing} missing"]
    probabilities = outputs[PROBABILITIES]
    problems = probability_problems(where, probabilities)
    if not np.array_equal(outputs[CLASS_IDS], np.argmax(probabilities, axis=-1)):
        problems.append(f"{where}: {CLASS_IDS} is not the arg-max of {PROBABILITIES}")
    names = [name.decode() for name in outputs[CLASS_NAMES]]
    if class_names and names != [class_names[int(i)] for i in outputs[CLASS_IDS]]:
        problems.append(f"{where}: {CLASS_NAMES} do not name {CLASS_IDS}")
    return problems


def agreement_problem(where: str, reference: np.ndarray, other: np.ndarray, against: str) -> list[str]:
    if reference.shape != other.shape:
        return [f"{where}: {list(other.shape)} probabilities for {list(reference.shape)} from {against}"]
    worst = float(np.max(np.abs(reference - other))) if reference.size else 0.0
    if worst > AGREEMENT_TOLERANCE:
        return [f"{where}: probabilities differ from {against}'s by up to {worst:.3g} (tolerance {AGREEMENT_TOLERANCE})"]
    return []


def triple_problems(triple: Sequence[prediction_log_pb2.PredictionLog], class_names: Sequence[str]) -> list[str]:
    """One set of examples through serving_default, serving_images and classify: each valid, all equal."""
    default_log, image_log, classify_log = triple
    default = predict_outputs(default_log)
    images = predict_outputs(image_log)
    batch = default[PROBABILITIES].shape[0] if PROBABILITIES in default else 0
    default_name = default_log.predict_log.request.model_spec.signature_name
    image_name = image_log.predict_log.request.model_spec.signature_name
    classify_name = classify_log.classify_log.request.model_spec.signature_name
    problems = predict_problems(f"{default_name} (batch {batch})", default, class_names)
    problems += predict_problems(f"{image_name} (batch {batch})", images, class_names)
    classes, scores = classify_outputs(classify_log)
    problems += probability_problems(f"{classify_name} (batch {batch})", scores)
    expected_classes = list(class_names) if class_names else (classes[0] if classes else [])
    if any(row != expected_classes for row in classes):
        problems.append(f"{classify_name}: '{CLASSIFY_CLASSES}' are not the class names in class-id order")
    if problems:
        return problems
    return agreement_problem(f"{image_name} (batch {batch})", default[PROBABILITIES], images[PROBABILITIES], default_name) + (
        agreement_problem(f"{classify_name} '{CLASSIFY_SCORES}' (batch {batch})", default[PROBABILITIES], scores, default_name)
    )


def evaluation_problems(
    predicted: Sequence[int], labels: Sequence[int], evaluated: list[list[int]] | None, class_names: Sequence[str]
) -> list[str]:
    """The served predictions over the split against the Evaluator's confusion matrix, cell for cell."""
    if evaluated is None:
        return []
    size = max(len(evaluated), len(class_names), 1 + max(labels, default=0), 1 + max(predicted, default=0))
    served = count_matrix(((true, guess, 1) for true, guess in zip(labels, predicted)), size)
    expected = padded(evaluated, size)
    cells = [(true, guess) for true in range(size) for guess in range(size) if served[true][guess] != expected[true][guess]]
    if not cells:
        return []
    true, guess = cells[0]
    differing = sum(abs(served[t][g] - expected[t][g]) for t, g in cells) // 2 or 1
    return [
        f"the served model's predictions differ from what the Evaluator scored on about {differing} of "
        f"{len(labels)} test examples (e.g. true class {true} predicted as {guess}: Evaluator "
        f"{expected[true][guess]}, served model {served[true][guess]})"
    ]


def check_model(
    model_dir: str,
    plan: RequestPlan,
    work_dir: str,
    class_names: Sequence[str] = (),
    evaluated_matrix: list[list[int]] | None = None,
    rounds: int = DEFAULT_ROUNDS,
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS,
) -> ServingCheck:
    """Everything the module docstring lists, for the SavedModel in `model_dir`."""
    os.makedirs(work_dir, exist_ok=True)
    requests_path = os.path.join(work_dir, "requests.tfrecord")
    serving_requests.write_prediction_logs(requests_path, plan.logs())
    report, answered = run_probe(model_dir, work_dir, requests_path, rounds, timeout_seconds)
    failures = list(report.get("failures", []))
    signatures = report.get("signatures", {})
    if signatures:
        failures += check_signatures(signatures)
    predicted: list[int] = []
    if not failures:
        index = 0
        for triple in plan.triples:
            failures += triple_problems(answered[index : index + 3], class_names)
            index += 3
        for log in answered[index : index + len(plan.jpeg)]:
            name = log.predict_log.request.model_spec.signature_name
            failures += predict_problems(f"{name} (JPEG)", predict_outputs(log), class_names)
        index += len(plan.jpeg)
        for log in answered[index:]:
            outputs = predict_outputs(log)
            failures += predict_problems("serving_default (test split)", outputs, class_names)
            predicted += [int(i) for i in outputs.get(CLASS_IDS, [])]
        failures += evaluation_problems(predicted, plan.labels, evaluated_matrix, class_names)
    correct = sum(int(p == label) for p, label in zip(predicted, plan.labels))
    return ServingCheck(
        model_dir=model_dir,
        passed=not failures,
        failures=failures,
        load_seconds=report.get("load_seconds"),
        warmup=report.get("warmup", {}),
        latency=report.get("latency", []),
        signatures=signatures,
        requests_answered=int(report.get("requests_answered", 0)),
        evaluated_examples=len(predicted),
        served_accuracy=round(correct / len(predicted), 6) if predicted and len(predicted) == len(plan.labels) else None,
        imported_modules=report.get("imported_modules", []),
        seconds={phase: report[f"{phase}_seconds"] for phase in PROBE_PHASES if f"{phase}_seconds" in report},
    )
