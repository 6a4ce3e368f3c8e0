"""TensorFlow Serving's way of loading and answering, for one SavedModel, in its own process.

Run as `python -I probe.py --model-dir DIR --report FILE [...]`. It does what a
`tensorflow_model_server` does with a new version, as far as Python can:

1. loads the SavedModel through the TF1 session loader (restore variables
   through the saver, run the init op): the path of TF Serving's C++ loader,
   `saved_model_cli run` and `tf.compat.v1.saved_model.loader.load`, which a
   Keras 3 export can fail although `tf.saved_model.load` works;
2. replays `assets.extra/tf_serving_warmup_requests` as TF Serving does at load
   (a failing warm-up request fails the load; at most 1,000 records);
3. answers PredictRequest and ClassifyRequest protos with TF Serving's checks
   (predict_util.cc, classifier.cc): signature lookup, method names, input
   aliases and dtypes, the classification outputs' shapes and dtypes;
4. checks every response against the signature's declared dtypes and shapes;
5. times each warm-up request again `--rounds` times (p50/p99 per signature
   and batch size; a large batch only as often as LATENCY_IMAGES allow, but
   at least MIN_LATENCY_ROUNDS times) and answers the `--requests` file once, writing each
   request with its response to `--responses` as PredictionLog records (TF
   Serving's request-logging format).

It imports only the standard library, NumPy, TensorFlow and the protos of
tensorflow-serving-api, as a serving container has: no TFX, no tf.Transform,
no visionpipe code (`-I` keeps the working directory off sys.path). The report
lists the top-level modules the process imported, and names as a failure any
of FORBIDDEN_MODULES, so a model that needs their Python code cannot pass.

The report is JSON; the process exits 0 whenever it wrote one (the verdict is
in its `failures`), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

_PROCESS_STARTED = time.perf_counter()  # before TensorFlow is imported: its import is part of the cost
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402  (after the log level: TF reads it at import)
import tensorflow as tf  # noqa: E402
from tensorflow.core.framework import types_pb2  # noqa: E402
from tensorflow.core.protobuf import meta_graph_pb2  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    classification_pb2,
    predict_pb2,
    prediction_log_pb2,
)

tf.get_logger().setLevel("ERROR")  # the TF1 loader's deprecation notices are not findings

# TF Serving's constants, as TensorFlow spells them (signature_constants.py).
SERVING_TAG = tf.saved_model.SERVING
DEFAULT_SIGNATURE = tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
PREDICT_METHOD = tf.saved_model.PREDICT_METHOD_NAME
CLASSIFY_METHOD = tf.saved_model.CLASSIFY_METHOD_NAME
REGRESS_METHOD = tf.saved_model.REGRESS_METHOD_NAME
CLASSIFY_INPUT = tf.saved_model.CLASSIFY_INPUTS
CLASSIFY_CLASSES = tf.saved_model.CLASSIFY_OUTPUT_CLASSES
CLASSIFY_SCORES = tf.saved_model.CLASSIFY_OUTPUT_SCORES
# TensorFlow Serving's (saved_model_warmup_util.cc), which TensorFlow has no constant for.
WARMUP_PATH = "assets.extra/tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000
# The latency rounds time a request of B images min(rounds, max(3, 1024 // B)) times: 10 rounds
# of batch 256 cost as much as scoring the whole test split, and 4 give its p50 as well.
LATENCY_IMAGES = 1024
MIN_LATENCY_ROUNDS = 3
# Python packages a serving container does not have; importing one is a failure.
FORBIDDEN_MODULES = (
    "tfx",
    "tfx_bsl",
    "tensorflow_transform",
    "tensorflow_model_analysis",
    "tensorflow_data_validation",
    "apache_beam",
    "tf_keras",
    "pipeline",
    "components",
    "trainer_module",
    "kubeflow",
)


class ServingError(Exception):
    """What TF Serving would answer with an error status; one line."""


@dataclasses.dataclass
class ServedModel:
    """A SavedModel loaded the way TF Serving loads it."""

    session: Any  # tf.compat.v1.Session
    signatures: dict[str, meta_graph_pb2.SignatureDef]

    def signature(self, name: str) -> meta_graph_pb2.SignatureDef:
        name = name or DEFAULT_SIGNATURE
        if name not in self.signatures:
            raise ServingError(f"Serving signature name: \"{name}\" not found in signature def")
        return self.signatures[name]


def load(model_dir: str) -> ServedModel:
    """Session loader: restores variables through the saver and runs the init op."""
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    try:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, [SERVING_TAG], model_dir)
    except Exception as error:  # noqa: BLE001  (any loader failure is the verdict)
        session.close()
        raise ServingError(f"cannot load {model_dir} with tag '{SERVING_TAG}': {one_line(error)}") from error
    return ServedModel(session=session, signatures=dict(meta_graph.signature_def))


def one_line(error: BaseException) -> str:
    """An exception as one line.

    TensorFlow's op errors start with "Graph execution error:" and end with
    node traces; the cause is the first other line, whose first sentence says it.
    """
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    lines = [
        line.strip()
        for line in message.splitlines()
        if line.strip() and not line.strip().startswith(("Graph execution error", "Detected at node", "[["))
    ]
    text = " ".join((lines or [message]).pop(0).split())
    sentence_end = text.find(". ")
    return text[: sentence_end + 1] if 0 < sentence_end < len(text) - 2 else text[:300]


def _dtype_name(dtype: int) -> str:
    return types_pb2.DataType.Name(dtype)


def _declared_shape(info: meta_graph_pb2.TensorInfo) -> list[int] | None:
    if info.tensor_shape.unknown_rank:
        return None
    return [dim.size for dim in info.tensor_shape.dim]


def check_declared(alias: str, info: meta_graph_pb2.TensorInfo, value: np.ndarray, batch: int) -> list[str]:
    """The output's dtype and shape against its TensorInfo, and its batch dimension."""
    problems = []
    actual_dtype = tf.as_dtype(value.dtype).as_datatype_enum if value.dtype != object else types_pb2.DT_STRING
    if actual_dtype != info.dtype:
        problems.append(f"output '{alias}' is {_dtype_name(actual_dtype)}, declared {_dtype_name(info.dtype)}")
    shape = _declared_shape(info)
    if shape is not None and (
        len(shape) != value.ndim or any(size not in (-1, actual) for size, actual in zip(shape, value.shape))
    ):
        problems.append(f"output '{alias}' has shape {list(value.shape)}, declared {shape}")
    if value.ndim == 0 or value.shape[0] != batch:
        problems.append(f"output '{alias}' has shape {list(value.shape)} for a batch of {batch}")
    return problems


def _run(model: ServedModel, feeds: dict[str, np.ndarray], fetches: dict[str, str]) -> dict[str, np.ndarray]:
    try:
        values = model.session.run(list(fetches.values()), feed_dict=feeds)
    except tf.errors.OpError as error:
        raise ServingError(one_line(error)) from error
    return dict(zip(fetches, values))


def predict(model: ServedModel, request: predict_pb2.PredictRequest) -> tuple[predict_pb2.PredictResponse, list[str]]:
    """TF Serving's Predict handler (predict_util.cc); returns the response and declared-contract problems."""
    name = request.model_spec.signature_name or DEFAULT_SIGNATURE
    signature = model.signature(name)
    if signature.method_name not in (PREDICT_METHOD, CLASSIFY_METHOD, REGRESS_METHOD):
        raise ServingError(f"Expected prediction signature method_name to be one of {{{PREDICT_METHOD}, "
                           f"{CLASSIFY_METHOD}, {REGRESS_METHOD}}}. Was: {signature.method_name}")
    if set(request.inputs) != set(signature.inputs):
        raise ServingError(
            f"input size does not match signature: sent {{{','.join(sorted(request.inputs))}}}, "
            f"signature '{name}' takes {{{','.join(sorted(signature.inputs))}}}"
        )
    feeds, batch = {}, None
    for alias, proto in request.inputs.items():
        info = signature.inputs[alias]
        if proto.dtype != info.dtype:
            raise ServingError(f"Expected input '{alias}' to be {_dtype_name(info.dtype)} but got {_dtype_name(proto.dtype)}")
        value = tf.make_ndarray(proto)
        feeds[info.name] = value
        batch = value.shape[0] if value.ndim else 1
    aliases = list(request.output_filter) or sorted(signature.outputs)
    unknown = [alias for alias in aliases if alias not in signature.outputs]
    if unknown:
        raise ServingError(f"output tensor alias not found in signature: {unknown[0]}")
    values = _run(model, feeds, {alias: signature.outputs[alias].name for alias in aliases})
    response = predict_pb2.PredictResponse()
    response.model_spec.CopyFrom(request.model_spec)
    response.model_spec.signature_name = name
    problems = []
    for alias, value in values.items():
        response.outputs[alias].CopyFrom(tf.make_tensor_proto(value))
        problems += check_declared(alias, signature.outputs[alias], value, batch)
    return response, [f"{name}: {problem}" for problem in problems]


def serialized_inputs(request: classification_pb2.ClassificationRequest) -> list[bytes]:
    """The request's tf.Examples as TF Serving feeds them (context merged into each example)."""
    kind = request.input.WhichOneof("kind")
    if kind == "example_list":
        return [example.SerializeToString() for example in request.input.example_list.examples]
    if kind == "example_list_with_context":
        listed = request.input.example_list_with_context
        context = listed.context.SerializeToString()
        return [context + example.SerializeToString() for example in listed.examples]
    raise ServingError("Input is empty")


def classify(
    model: ServedModel, request: classification_pb2.ClassificationRequest
) -> tuple[classification_pb2.ClassificationResponse, list[str]]:
    """TF Serving's Classify handler (classifier.cc), with its checks on the signature and outputs."""
    name = request.model_spec.signature_name or DEFAULT_SIGNATURE
    signature = model.signature(name)
    if signature.method_name != CLASSIFY_METHOD:
        raise ServingError(
            f"Expected classification signature method_name to be {CLASSIFY_METHOD}. Was: {signature.method_name}"
        )
    if len(signature.inputs) != 1 or CLASSIFY_INPUT not in signature.inputs:
        raise ServingError(f"Expected one input Tensor called '{CLASSIFY_INPUT}' in signature '{name}'")
    aliases = [alias for alias in (CLASSIFY_CLASSES, CLASSIFY_SCORES) if alias in signature.outputs]
    if not aliases or len(signature.outputs) > 2:
        raise ServingError(
            f"Expected classification signature outputs '{CLASSIFY_CLASSES}' and/or '{CLASSIFY_SCORES}', "
            f"found {sorted(signature.outputs)}"
        )
    examples = serialized_inputs(request)
    values = _run(
        model,
        {signature.inputs[CLASSIFY_INPUT].name: np.array(examples, dtype=object)},
        {alias: signature.outputs[alias].name for alias in aliases},
    )
    classes, scores = values.get(CLASSIFY_CLASSES), values.get(CLASSIFY_SCORES)
    for alias, value, dtype in ((CLASSIFY_CLASSES, classes, object), (CLASSIFY_SCORES, scores, np.float32)):
        if value is None:
            continue
        if value.ndim != 2:
            raise ServingError(f"Expected Tensor shape: [batch_size num_classes] but got {list(value.shape)} ({alias})")
        if value.dtype != dtype:
            raise ServingError(f"Expected {alias} Tensor of {'DT_STRING' if dtype is object else 'DT_FLOAT'}")
        if value.shape[0] != len(examples):
            raise ServingError(f"Expected {alias} output batch size of {len(examples)}. Got: {value.shape[0]}")
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise ServingError("Tensors class and score should match in dim_size(1)")
    response = classification_pb2.ClassificationResponse()
    response.model_spec.CopyFrom(request.model_spec)
    response.model_spec.signature_name = name
    num_classes = (classes if classes is not None else scores).shape[1]
    for row in range(len(examples)):
        classifications = response.result.classifications.add()
        for column in range(num_classes):
            entry = classifications.classes.add()
            if classes is not None:
                entry.label = classes[row, column].decode()
            if scores is not None:
                entry.score = float(scores[row, column])
    problems = []
    for alias, value in values.items():
        problems += check_declared(alias, signature.outputs[alias], value, len(examples))
    return response, [f"{name}: {problem}" for problem in problems]


def signature_and_batch(log: prediction_log_pb2.PredictionLog) -> tuple[str, int]:
    """(signature name, number of instances) of a logged request."""
    kind = log.WhichOneof("log_type")
    if kind == "predict_log":
        request = log.predict_log.request
        first = next(iter(request.inputs.values()), None)
        batch = first.tensor_shape.dim[0].size if first is not None and first.tensor_shape.dim else 1
        return request.model_spec.signature_name or DEFAULT_SIGNATURE, int(batch)
    if kind == "classify_log":
        request = log.classify_log.request
        return request.model_spec.signature_name or DEFAULT_SIGNATURE, len(serialized_inputs(request))
    raise unsupported(kind)


def unsupported(kind: str | None) -> ServingError:
    return ServingError(f"unsupported request kind {kind!r} (this check answers predict and classify requests)")


def answer(model: ServedModel, log: prediction_log_pb2.PredictionLog) -> tuple[prediction_log_pb2.PredictionLog, list[str]]:
    """The logged request answered; the returned log carries request and response."""
    answered = prediction_log_pb2.PredictionLog()
    answered.CopyFrom(log)
    kind = log.WhichOneof("log_type")
    if kind == "predict_log":
        response, problems = predict(model, log.predict_log.request)
        answered.predict_log.response.CopyFrom(response)
    elif kind == "classify_log":
        response, problems = classify(model, log.classify_log.request)
        answered.classify_log.response.CopyFrom(response)
    else:
        raise unsupported(kind)
    return answered, problems


def read_prediction_logs(path: str) -> Iterator[prediction_log_pb2.PredictionLog]:
    """PredictionLog records of an uncompressed TFRecord file (TF Serving's warm-up format)."""
    for record in tf.data.TFRecordDataset(path):
        yield prediction_log_pb2.PredictionLog.FromString(record.numpy())


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (the p99 of fewer than 100 timings is their maximum)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def latency_rows(timings: dict[tuple[str, int], list[float]]) -> list[dict[str, Any]]:
    rows = []
    for (signature, batch), seconds in sorted(timings.items()):
        p50 = statistics.median(seconds)
        rows.append({
            "signature": signature,
            "batch_size": batch,
            "requests": len(seconds),
            "p50_ms": round(1000 * p50, 3),
            "p99_ms": round(1000 * percentile(seconds, 0.99), 3),
            "images_per_second": round(batch / p50, 1) if p50 > 0 else None,
        })
    return rows


def describe_signatures(model: ServedModel) -> dict[str, Any]:
    def tensors(infos: Any) -> dict[str, Any]:
        return {alias: {"dtype": _dtype_name(info.dtype), "shape": _declared_shape(info)} for alias, info in sorted(infos.items())}

    return {
        name: {"method_name": signature.method_name, "inputs": tensors(signature.inputs), "outputs": tensors(signature.outputs)}
        for name, signature in sorted(model.signatures.items())
        if not name.startswith("__")  # e.g. __saved_model_init_op
    }


def _timed(model: ServedModel, log: prediction_log_pb2.PredictionLog) -> tuple[prediction_log_pb2.PredictionLog, list[str], float]:
    started = time.perf_counter()
    answered, problems = answer(model, log)
    return answered, problems, time.perf_counter() - started


def replay_warmup(model: ServedModel, model_dir: str, failures: list[str]) -> list[prediction_log_pb2.PredictionLog]:
    """TF Serving's warm-up at load: every record once; the first failing one fails the load."""
    warmup_path = os.path.join(model_dir, WARMUP_PATH)
    replayed: list[prediction_log_pb2.PredictionLog] = []
    if not tf.io.gfile.exists(warmup_path):
        return replayed
    try:
        for index, log in enumerate(read_prediction_logs(warmup_path)):
            if index >= MAX_WARMUP_RECORDS:
                raise ServingError(f"{WARMUP_PATH} has more than {MAX_WARMUP_RECORDS} records, which TF Serving refuses")
            name, batch = signature_and_batch(log)
            try:
                _, problems, _ = _timed(model, log)
            except ServingError as error:
                raise ServingError(f"{name}: warm-up request {index + 1} (batch {batch}) failed: {error}") from error
            failures.extend(problems)
            replayed.append(log)
    except tf.errors.OpError as error:
        failures.append(f"{WARMUP_PATH}: unreadable after {len(replayed)} records ({one_line(error)})")
    except ServingError as error:
        failures.append(str(error))
    return replayed


def timed_rounds(rounds: int, batch: int) -> int:
    """How often a request of `batch` images is timed: `rounds`, fewer for large batches (see LATENCY_IMAGES)."""
    return min(rounds, max(MIN_LATENCY_ROUNDS, LATENCY_IMAGES // max(batch, 1)))


def time_requests(model: ServedModel, logs: Sequence[prediction_log_pb2.PredictionLog], rounds: int) -> list[dict[str, Any]]:
    """Each request answered up to `rounds` times (`timed_rounds`): the latency rows per signature and batch size."""
    timings: dict[tuple[str, int], list[float]] = {}
    for round_number in range(rounds):
        for log in logs:
            key = signature_and_batch(log)
            if round_number < timed_rounds(rounds, key[1]):
                _, _, seconds = _timed(model, log)
                timings.setdefault(key, []).append(seconds)
    return latency_rows(timings)


def answer_requests(model: ServedModel, requests_path: str, responses_path: str | None, failures: list[str]) -> int:
    """Answers every request once, logging it with its response; the first failure per signature is kept."""
    answered_count, failed_signatures = 0, set()
    writer = tf.io.TFRecordWriter(responses_path) if responses_path else None
    try:
        for number, log in enumerate(read_prediction_logs(requests_path), start=1):
            try:
                name, batch = signature_and_batch(log)
            except ServingError as error:
                failures.append(f"request {number}: {error}")
                continue
            if name in failed_signatures:
                continue  # one failure per signature is the verdict; the rest would repeat it
            try:
                answered, problems, _ = _timed(model, log)
            except ServingError as error:
                failures.append(f"{name}: request {number} (batch {batch}) failed: {error}")
                failed_signatures.add(name)
                continue
            failures.extend(problems)
            answered_count += 1
            if writer is not None:
                writer.write(answered.SerializeToString())
    finally:
        if writer is not None:
            writer.close()
    return answered_count


def probe(model_dir: str, requests_path: str | None, responses_path: str | None, rounds: int) -> dict[str, Any]:
    """Everything the module docstring lists; returns the report (never raises ServingError).

    `*_seconds` are wall seconds per phase; `import_seconds` (process start to
    here, TensorFlow's import included) means something only when run as a script.
    """
    report: dict[str, Any] = {
        "model_dir": model_dir,
        "tensorflow": tf.__version__,
        "failures": [],
        "import_seconds": round(time.perf_counter() - _PROCESS_STARTED, 3),
    }
    failures: list[str] = report["failures"]
    started = time.perf_counter()
    try:
        model = load(model_dir)
    except ServingError as error:
        failures.append(str(error))
        return report
    report["load_seconds"] = round(time.perf_counter() - started, 3)
    report["signatures"] = describe_signatures(model)

    started = time.perf_counter()
    warmup = replay_warmup(model, model_dir, failures)
    report["warmup"] = {"records": len(warmup), "seconds": round(time.perf_counter() - started, 3)}
    started = time.perf_counter()
    report["latency"] = time_requests(model, warmup, rounds) if not failures else []
    report["latency_seconds"] = round(time.perf_counter() - started, 3)
    started = time.perf_counter()
    answered = answer_requests(model, requests_path, responses_path, failures) if requests_path and not failures else 0
    report["requests_answered"] = answered
    report["requests_seconds"] = round(time.perf_counter() - started, 3)
    model.session.close()
    return report


def imported_top_level_modules() -> list[str]:
    return sorted({name.split(".")[0] for name in sys.modules if not name.startswith("_")})


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", required=True, help="the SavedModel version folder")
    parser.add_argument("--report", required=True, help="where to write the JSON report")
    parser.add_argument("--requests", help="PredictionLog TFRecord file of requests to answer once")
    parser.add_argument("--responses", help="where to write those requests with their responses")
    parser.add_argument("--rounds", type=int, default=10, help="timed repeats of each warm-up request")
    args = parser.parse_args(list(argv) if argv is not None else None)
    report = probe(args.model_dir, args.requests, args.responses, max(0, args.rounds))
    report["imported_modules"] = imported_top_level_modules()
    forbidden = [name for name in report["imported_modules"] if name in FORBIDDEN_MODULES]
    if forbidden:
        report["failures"].append(f"the check imported {', '.join(forbidden)}, which a serving container does not have")
    temporary = f"{args.report}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    os.replace(temporary, args.report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
