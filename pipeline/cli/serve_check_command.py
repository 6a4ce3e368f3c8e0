"""`visionpipe serve-check`: the pipeline's serving gate, on any pushed model.

The same checks as the ServingGate (components/serving_check): the model is
loaded the way TF Serving loads it, in a separate process that imports only
TensorFlow and tensorflow-serving-api, replays its warm-up file and answers
real Predict and Classify requests. The requests are the model's own warm-up
requests (every pushed model has them), or, with `--examples`, requests built
from tf.Examples such as a test split, whose labels then give the served
model's accuracy.

Exit codes: 0 servable; 1 not servable, or no model / no requests; 2 usage.
"""

from __future__ import annotations

import json
import os
import tempfile

from pipeline import configs
from pipeline.plumbing import errors
from trainer_module.signatures import METHOD_NAMES
from pipeline.cli.predict import ModelNotFoundError, resolve_model_dir

EXIT_OK = 0


def _plan(model_dir: str, examples_pattern: str | None, model_name: str):
    """The requests to send: from --examples, else the model's warm-up file. Raises ValueError."""
    from components.serving_check import checks, probe, serving_requests

    if examples_pattern:
        try:
            return checks.RequestPlan.from_examples(model_name, serving_requests.read_test_examples(examples_pattern))
        except FileNotFoundError as error:
            raise ValueError(str(error)) from error
    warmup_path = os.path.join(model_dir, probe.WARMUP_PATH)
    if not os.path.isfile(warmup_path):
        raise ValueError(
            f"{model_dir}: no warm-up requests ({probe.WARMUP_PATH}) to send; pass --examples with tf.Examples, "
            "e.g. '<output-dir>/tfx/<pipeline>/FileBasedExampleGen/examples/<id>/Split-test/*'"
        )
    try:
        return checks.RequestPlan.from_warmup(list(probe.read_prediction_logs(warmup_path)))
    except Exception as error:  # noqa: BLE001  (a truncated or foreign file: one line)
        raise ValueError(f"{warmup_path}: not a file of PredictionLog records ({probe.one_line(error)})") from error


def _class_names(model_name: str) -> tuple[str, ...]:
    """The dataset's class names when the model was pushed by one of visionpipe's pipelines."""
    spec = configs.dataset_of_pipeline(model_name)
    return spec.class_names if spec is not None else ()


def _signature_status(name: str, failures: list[str]) -> str:
    """The first failure that names this signature (checks.py and probe.py start them with it)."""
    mine = [failure for failure in failures if f"'{name}'" in failure or failure.startswith((f"{name}:", f"{name} "))]
    return "ok" if not mine else f"FAILED: {mine[0]}"


def render(result) -> list[str]:
    """One line per signature: method, p50 latency at each batch size, and its verdict."""
    lines = [f"model: {result.model_dir}"]
    if result.load_seconds is None:
        return lines
    warmup = result.warmup or {}
    lines.append(
        f"loaded through TF Serving's session loader in {result.load_seconds:.2f} s; "
        f"warm-up: {warmup.get('records', 0)} requests in {warmup.get('seconds', 0.0):.2f} s"
    )
    batches = sorted({row["batch_size"] for row in result.latency})
    header = ["signature", "method", "p50 ms at batch " + " / ".join(map(str, batches)) if batches else "latency", "check"]
    body = []
    for name in sorted(set(result.signatures) | set(METHOD_NAMES)):
        p50 = {row["batch_size"]: row["p50_ms"] for row in result.latency if row["signature"] == name}
        timing = " / ".join(f"{p50[batch]:.1f}" if batch in p50 else "-" for batch in batches) or "-"
        method = result.signatures.get(name, {}).get("method_name", "-")
        body.append([name, method, timing, _signature_status(name, result.failures)])
    widths = [max(len(row[column]) for row in [header, *body]) for column in range(len(header))]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *body]]
    if result.passed:
        accuracy = f"; accuracy on the {result.evaluated_examples:,} examples: {result.served_accuracy:.4f}" if (
            result.served_accuracy is not None
        ) else ""
        lines.append(f"servable: yes ({result.requests_answered} requests answered{accuracy})")
    return lines


def serve_check(model_dir: str, examples_pattern: str | None, as_json: bool) -> int:
    try:
        resolved = resolve_model_dir(model_dir)
    except ModelNotFoundError as error:
        return errors.fail(str(error))
    from components.serving_check import checks

    # TF Serving's model name: the folder above the version (serving_model/<pipeline>/<version>).
    model_name = os.path.basename(os.path.dirname(os.path.abspath(resolved)))
    try:
        plan = _plan(resolved, examples_pattern, model_name)
    except ValueError as error:
        return errors.fail(str(error))
    with tempfile.TemporaryDirectory(prefix="visionpipe-serve-check-") as work_dir:
        result = checks.check_model(resolved, plan, work_dir, class_names=_class_names(model_name))
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print("\n".join(render(result)), flush=True)
    if not result.passed:
        return errors.fail(f"{resolved}: not servable: {result.headline().removeprefix('FAILED: ')}")
    return EXIT_OK
