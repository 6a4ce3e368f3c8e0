"""The serving check against real exports: TF Serving's session loader, its request handlers, the verdict.

Every zoo model's export is loaded through the TF1 session loader (what TF
Serving's C++ loader does) and must answer every signature exactly as the TF2
path does; the pre-issue-12 export must fail there. (`saved_model_cli run` on
every signature is tested on the end-to-end run's pushed model.) The probe process is run
for real (`python -I`, only TensorFlow and tensorflow-serving-api imported)
on a good and an unservable model; `visionpipe serve-check` is driven through
the CLI, bad input included.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow_serving.apis import classification_pb2, prediction_log_pb2

from components.confusion_matrix import count_matrix
from components.serving_check import checks, probe, serving_requests
from pipeline.cli import main as cli
from tests import serving_helpers
from trainer_module import signatures
from trainer_module.model_names import MODEL_NAMES, DEEP_CNN, TUTORIAL_CNN

GRAY = (28, 28, 1)
RGB = (32, 32, 3)
SHAPE_OF = {TUTORIAL_CNN: GRAY, DEEP_CNN: GRAY}  # the others are the CIFAR-10 models


@pytest.fixture(scope="module")
def transforms(tmp_path_factory):
    """image shape -> (transform dir, images, labels): real tf.Transform output for each input shape."""
    result = {}
    for shape in (GRAY, RGB):
        images, labels = serving_helpers.synthetic_images(40, seed=3, image_shape=shape)
        root = str(tmp_path_factory.mktemp(f"tft-{shape[2]}"))
        result[shape] = (serving_helpers.write_transform_output(root, images, labels, shape), images, labels)
    return result


@pytest.fixture(scope="module")
def deep_cnn_export(transforms, tmp_path_factory):
    transform_dir, images, labels = transforms[GRAY]
    model = serving_helpers.trained_model(DEEP_CNN, GRAY, transform_dir, images, labels)
    export_dir = serving_helpers.export(model, transform_dir, GRAY, str(tmp_path_factory.mktemp("deep") / "1"))
    return export_dir, model, images, labels


@pytest.fixture(scope="module")
def unservable_export(deep_cnn_export, transforms, tmp_path_factory):
    """The same trained deep_cnn, exported the way it was before issue 12."""
    _, model, _, _ = deep_cnn_export
    transform_dir, _, _ = transforms[GRAY]
    export_dir = str(tmp_path_factory.mktemp("unservable") / "1")
    serving_helpers.keras_tracking_export(
        model, tft.TFTransformOutput(transform_dir), serving_helpers.CLASS_NAMES, GRAY, export_dir
    )
    return export_dir


def answer(model: probe.ServedModel, log: prediction_log_pb2.PredictionLog) -> prediction_log_pb2.PredictionLog:
    answered, problems = probe.answer(model, log)
    assert problems == []
    return answered


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_zoo_model_is_served_by_the_session_loader_as_by_tensorflow_2(name, transforms, tmp_path):
    shape = SHAPE_OF.get(name, RGB)
    transform_dir, images, labels = transforms[shape]
    model = serving_helpers.trained_model(name, shape, transform_dir, images[:20], labels[:20])
    export_dir = serving_helpers.export(model, transform_dir, shape, str(tmp_path / "1"))
    examples = serving_helpers.as_test_examples(images[:8], labels[:8])
    triple = serving_requests.same_examples_through_every_signature("m", examples)

    served = probe.load(export_dir)
    assert {name: s.method_name for name, s in served.signatures.items() if name in signatures.METHOD_NAMES} == (
        signatures.METHOD_NAMES
    )
    answered = [answer(served, log) for log in triple]
    assert checks.triple_problems(answered, serving_helpers.CLASS_NAMES) == []

    loaded = tf.saved_model.load(export_dir)
    serialized = tf.constant([example.serialized for example in examples])
    tf2 = loaded.signatures[signatures.EXAMPLE_SIGNATURE](examples=serialized)[signatures.PROBABILITIES].numpy()
    np.testing.assert_allclose(checks.predict_outputs(answered[0])[signatures.PROBABILITIES], tf2, atol=1e-5)
    np.testing.assert_allclose(tf2, model.predict(serving_helpers.transformed_images(transform_dir, images[:8], labels[:8]), verbose=0), atol=1e-5)


def test_the_export_writes_each_weight_once(deep_cnn_export, unservable_export):
    """Plain variables only: the pre-issue-12 export saved every Keras 3 variable twice."""
    export_dir, model, *_ = deep_cnn_export
    reader = tf.train.load_checkpoint(os.path.join(export_dir, "variables", "variables"))
    def saved_values(checkpoint) -> int:
        shapes = checkpoint.get_variable_to_shape_map()
        return sum(int(np.prod(shape)) for name, shape in shapes.items() if not name.startswith("_CHECKPOINTABLE"))

    weights = sum(int(np.prod(v.shape)) for v in model.weights)  # layers' weights, no optimizer or seed state
    assert saved_values(reader) == weights
    old = tf.train.load_checkpoint(os.path.join(unservable_export, "variables", "variables"))
    assert saved_values(old) > 1.9 * weights


def test_the_export_before_issue_12_fails_in_the_session_loader(unservable_export, deep_cnn_export):
    *_, images, labels = deep_cnn_export
    served = probe.load(unservable_export)
    [log, *_] = serving_requests.same_examples_through_every_signature("m", serving_helpers.as_test_examples(images[:4], labels[:4]))
    with pytest.raises(probe.ServingError, match="Could not find variable"):
        probe.answer(served, log)
    # ... while TensorFlow 2's loader runs it: the reason no earlier test saw it.
    loaded = tf.saved_model.load(unservable_export)
    assert loaded.signatures["serving_default"](examples=tf.constant([log.predict_log.request.inputs["examples"].string_val[0]]))


def test_probe_answers_like_tf_serving(deep_cnn_export):
    """TF Serving's error answers: unknown signature, wrong API for the signature, wrong inputs."""
    export_dir, _, images, labels = deep_cnn_export
    served = probe.load(export_dir)
    examples = serving_helpers.as_test_examples(images[:2], labels[:2])
    default, _, classify = serving_requests.same_examples_through_every_signature("m", examples)

    unknown = prediction_log_pb2.PredictionLog()
    unknown.CopyFrom(default)
    unknown.predict_log.request.model_spec.signature_name = "nope"
    with pytest.raises(probe.ServingError, match='signature name: "nope" not found'):
        probe.answer(served, unknown)

    classify_on_predict = classification_pb2.ClassificationRequest()
    classify_on_predict.CopyFrom(classify.classify_log.request)
    classify_on_predict.model_spec.signature_name = signatures.EXAMPLE_SIGNATURE
    with pytest.raises(probe.ServingError, match="Expected classification signature method_name"):
        probe.classify(served, classify_on_predict)

    wrong_alias = prediction_log_pb2.PredictionLog()
    wrong_alias.CopyFrom(default)
    request = wrong_alias.predict_log.request
    request.inputs["images"].CopyFrom(request.inputs.pop(signatures.EXAMPLE_INPUT))
    with pytest.raises(probe.ServingError, match="input size does not match signature"):
        probe.answer(served, wrong_alias)

    wrong_dtype = prediction_log_pb2.PredictionLog()
    wrong_dtype.CopyFrom(default)
    wrong_dtype.predict_log.request.inputs[signatures.EXAMPLE_INPUT].CopyFrom(tf.make_tensor_proto([1.0, 2.0]))
    with pytest.raises(probe.ServingError, match="to be DT_STRING but got DT_FLOAT"):
        probe.answer(served, wrong_dtype)

    response, problems = probe.classify(served, classify.classify_log.request)
    assert problems == [] and len(response.result.classifications) == 2
    assert [c.label for c in response.result.classifications[0].classes] == list(serving_helpers.CLASS_NAMES)

    # With a context, TF Serving merges it into every example: here it carries the image.
    with_context = classification_pb2.ClassificationRequest()
    with_context.model_spec.signature_name = signatures.CLASSIFY_SIGNATURE
    listed = with_context.input.example_list_with_context
    listed.context.CopyFrom(classify.classify_log.request.input.example_list.examples[0])
    listed.examples.add()
    merged, problems = probe.classify(served, with_context)
    assert problems == [] and [c.score for c in merged.result.classifications[0].classes] == pytest.approx(
        [c.score for c in response.result.classifications[0].classes], abs=1e-6
    )


def test_check_passes_in_a_separate_process_that_imports_no_tfx(deep_cnn_export, tmp_path):
    export_dir, _, images, labels = deep_cnn_export
    stamped = str(tmp_path / "model")
    shutil.copytree(export_dir, stamped)
    examples = serving_helpers.as_test_examples(images, labels)
    warmup_path = os.path.join(stamped, probe.WARMUP_PATH)
    os.makedirs(os.path.dirname(warmup_path))
    assert serving_requests.write_prediction_logs(warmup_path, serving_requests.warmup_logs("m", examples)) == 9

    plan = checks.RequestPlan.from_examples("m", examples)
    result = checks.check_model(stamped, plan, str(tmp_path / "work"), serving_helpers.CLASS_NAMES, rounds=2)
    assert result.passed, result.failures
    assert result.warmup["records"] == 9 and result.requests_answered == len(plan.logs())
    assert {(row["signature"], row["batch_size"]) for row in result.latency} == {
        (name, batch) for name in signatures.METHOD_NAMES for batch in serving_requests.BATCH_SIZES
    }
    assert all(row["requests"] == 2 and 0 < row["p50_ms"] <= row["p99_ms"] for row in result.latency)
    assert result.evaluated_examples == 40 and 0.0 <= result.served_accuracy <= 1.0
    assert "tensorflow" in result.imported_modules and "tensorflow_serving" in result.imported_modules
    assert not set(result.imported_modules) & set(probe.FORBIDDEN_MODULES)
    assert result.headline().startswith("PASSED (session load ")
    assert set(result.seconds) == set(checks.PROBE_PHASES) and result.seconds["import"] > 1.0  # TF's own import


def test_check_refuses_the_unservable_export(unservable_export, deep_cnn_export, tmp_path):
    *_, images, labels = deep_cnn_export
    plan = checks.RequestPlan.from_examples("m", serving_helpers.as_test_examples(images, labels))
    result = checks.check_model(unservable_export, plan, str(tmp_path / "work"), serving_helpers.CLASS_NAMES, rounds=1)
    assert not result.passed
    assert any("serving_default: request 1 (batch 32) failed: Could not find variable" in f for f in result.failures)
    assert "signature 'classify' is missing (found serving_default, serving_images)" in result.failures
    assert result.headline().startswith("FAILED: serving_default: request 1 (batch 32) failed: Could not find variable")


def test_predictions_are_compared_with_the_evaluators_confusion_matrix():
    labels = [0, 0, 1, 1, 2]
    predicted = [0, 1, 1, 1, 2]
    evaluated = count_matrix(((true, guess, 1) for true, guess in zip(labels, predicted)), 3)
    assert checks.evaluation_problems(predicted, labels, evaluated, ["a", "b", "c"]) == []
    assert checks.evaluation_problems(predicted, labels, [row[:2] for row in evaluated[:2]], ["a", "b", "c"])
    moved = [0, 0, 1, 1, 2]
    [problem] = checks.evaluation_problems(moved, labels, evaluated, ["a", "b", "c"])
    assert "differ from what the Evaluator scored on about 1 of 5 test examples" in problem
    assert "true class 0 predicted as 0: Evaluator 1, served model 2" in problem


def test_malformed_predictions_are_named():
    names = ["a", "b"]
    good = {
        signatures.PROBABILITIES: np.array([[0.25, 0.75]], np.float32),
        signatures.CLASS_IDS: np.array([1]),
        signatures.CLASS_NAMES: np.array([b"b"], dtype=object),
    }
    assert checks.predict_problems("s", good, names) == []
    assert checks.predict_problems("s", {**good, signatures.PROBABILITIES: np.array([[0.5, 0.75]], np.float32)}, names) == [
        "s: probabilities sum to 1 only within 0.25"
    ]
    assert checks.predict_problems("s", {**good, signatures.PROBABILITIES: np.array([[0.0, np.nan]], np.float32)}, names) == [
        "s: 1 probabilities are not finite"
    ]
    assert checks.predict_problems("s", {**good, signatures.CLASS_IDS: np.array([0])}, names) == [
        "s: class_ids is not the arg-max of probabilities", "s: class_names do not name class_ids"
    ]


def test_a_warmup_file_tf_serving_would_refuse_fails_the_check(deep_cnn_export, tmp_path):
    export_dir, _, images, labels = deep_cnn_export
    model_dir = str(tmp_path / "model")
    shutil.copytree(export_dir, model_dir)
    warmup_path = os.path.join(model_dir, probe.WARMUP_PATH)
    os.makedirs(os.path.dirname(warmup_path))
    [log] = serving_requests.same_examples_through_every_signature("m", serving_helpers.as_test_examples(images[:1], labels[:1]))[:1]
    serving_requests.write_prediction_logs(warmup_path, [log] * (probe.MAX_WARMUP_RECORDS + 1))
    report = probe.probe(model_dir, None, None, rounds=0)
    assert report["failures"] == [
        f"assets.extra/tf_serving_warmup_requests has more than {probe.MAX_WARMUP_RECORDS} records, which TF Serving refuses"
    ]
    assert report["warmup"]["records"] == probe.MAX_WARMUP_RECORDS

    with open(warmup_path, "r+b") as handle:  # cut in the middle of a record
        handle.truncate(os.path.getsize(warmup_path) // 2 + 3)
    [failure] = probe.probe(model_dir, None, None, rounds=0)["failures"]
    assert failure.startswith("assets.extra/tf_serving_warmup_requests: unreadable after ")


# ---- visionpipe serve-check ------------------------------------------------------------


def serve_check(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(["serve-check", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write_examples(path, images, labels) -> str:
    """An uncompressed TFRecord file of test tf.Examples."""
    with tf.io.TFRecordWriter(str(path)) as writer:
        for example in serving_helpers.as_test_examples(images, labels):
            writer.write(example.serialized)
    return str(path)


def test_serve_check_prints_one_line_per_signature(deep_cnn_export, tmp_path, capsys):
    export_dir, _, images, labels = deep_cnn_export
    version = tmp_path / "serving_model" / "classifier" / "7"
    shutil.copytree(export_dir, version)
    examples = write_examples(tmp_path / "test.tfrecord", images, labels)
    code, out, err = serve_check(capsys, "--model-dir", str(tmp_path), "--examples", str(examples))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"model: {version}"
    rows = {line.split()[0]: line for line in lines if line.split()[0] in signatures.METHOD_NAMES}
    assert set(rows) == set(signatures.METHOD_NAMES) and all(row.endswith("ok") for row in rows.values())
    assert "tensorflow/serving/classify" in rows["classify"]
    assert lines[-1].startswith("servable: yes (") and "accuracy on the 40 examples" in lines[-1]


@pytest.mark.parametrize(
    "case",
    ["missing", "not_a_saved_model", "empty_version", "truncated_saved_model", "no_variables", "no_requests", "bad_examples"],
)
def test_serve_check_bad_input_is_one_line(case, deep_cnn_export, unservable_export, tmp_path, capsys):
    export_dir, _, images, labels = deep_cnn_export
    model_dir = tmp_path / "serving_model" / "p"
    argv = ["--model-dir", str(model_dir / "1"), "--examples", str(tmp_path / "none*.gz")]
    examples = write_examples(tmp_path / "test.tfrecord", images[:4], labels[:4])
    expected = "no example files"
    if case == "missing":
        expected = "no SavedModel found"
    elif case == "not_a_saved_model":
        image = tmp_path / "cat.png"
        image.write_bytes(b"\x89PNG not really")
        argv[1] = str(image)
        expected = "no SavedModel found"
    elif case == "empty_version":  # a push killed before it wrote anything
        (model_dir / "1").mkdir(parents=True)
        expected = "no SavedModel found"
    elif case == "truncated_saved_model":
        shutil.copytree(export_dir, model_dir / "1")
        pb = model_dir / "1" / "saved_model.pb"
        pb.write_bytes(pb.read_bytes()[: pb.stat().st_size // 3])
        argv[3] = examples
        expected = "not servable: cannot load"
    elif case == "no_variables":
        shutil.copytree(export_dir, model_dir / "1")
        shutil.rmtree(model_dir / "1" / "variables")
        argv[3] = examples
        expected = "not servable: cannot load"
    elif case == "no_requests":
        shutil.copytree(unservable_export, model_dir / "1")
        argv = argv[:2]
        expected = "no warm-up requests (assets.extra/tf_serving_warmup_requests) to send; pass --examples"
    elif case == "bad_examples":
        shutil.copytree(export_dir, model_dir / "1")
        (tmp_path / "junk.gz").write_bytes(b"not gzip at all")
        argv[3] = str(tmp_path / "junk.gz")
        expected = "junk.gz: not a TFRecord file of tf.Examples"
    code, out, err = serve_check(capsys, *argv)
    assert code == 1
    assert err.startswith("visionpipe: error: ") and expected in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in out + err


def test_a_probe_that_hangs_or_dies_is_a_one_line_failure(deep_cnn_export, tmp_path):
    """The separate process is outside our control: a timeout or a crash is a verdict, not a traceback."""
    export_dir, _, images, labels = deep_cnn_export
    plan = checks.RequestPlan.from_examples("m", serving_helpers.as_test_examples(images[:4], labels[:4]))
    hung = checks.check_model(export_dir, plan, str(tmp_path / "hung"), serving_helpers.CLASS_NAMES, timeout_seconds=1)
    assert not hung.passed and hung.failures == ["the serving check did not finish within 1 s"]

    # The probe cannot write its report into a folder that does not exist: it dies with a traceback.
    report, answered = checks.run_probe(export_dir, str(tmp_path / "missing"), None, rounds=0, timeout_seconds=300)
    [failure] = report["failures"]
    assert failure.startswith("the serving check process exited with code 1: ") and "\n" not in failure
    assert answered == []


def test_large_batches_are_timed_fewer_rounds_but_at_least_three() -> None:
    """Ten rounds of batch 256 would cost the gate as much as scoring the whole test split."""
    assert [probe.timed_rounds(10, batch) for batch in (1, 32, 256, 1024)] == [10, 10, 4, 3]
    assert [probe.timed_rounds(rounds, 256) for rounds in (0, 2)] == [0, 2]  # never more than asked
