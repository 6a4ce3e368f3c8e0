"""components/class_metrics.py gives exactly what TFMA's own binarized metrics give.

Two real TFMA runs over the same predictions: one with the pipeline's
EvalConfig (the one-pass custom metric), one with TFMA's `Precision`,
`Recall` and `Calibration` under a `binarize` MetricsSpec, the configuration
the custom metric replaces. Every class's numbers must agree on every slice,
except where a class is never the arg-max in a slice: its precision is 0/0
(NaN) and its recall 0 here, while TFMA's top_k path counts every example of
the slice as predicted for that class (recall 1, precision = the class's
share). Class 9 below is never predicted.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.tfma_evaluation import synthetic_predictions, write_evaluation

CLASSES = 10


def binarized_config():
    import tensorflow_model_analysis as tfma
    from tensorflow_model_analysis.proto import config_pb2

    from pipeline.eval_config import make_eval_config

    config = make_eval_config(0.0, None, num_classes=10)
    del config.metrics_specs[:]
    config.metrics_specs.append(
        tfma.MetricsSpec(
            metrics=[
                tfma.MetricConfig(class_name="Precision", config='"top_k": 1'),
                tfma.MetricConfig(class_name="Recall", config='"top_k": 1'),
                tfma.MetricConfig(class_name="Calibration"),
            ],
            binarize=config_pb2.BinarizationOptions(class_ids={"values": list(range(CLASSES))}),
        )
    )
    return config


def per_class(uri: str) -> dict[str, dict[int, dict[str, float]]]:
    from pipeline.inspect import eval_results

    return {row.slice: row.class_metrics for row in eval_results.load_evaluation(uri).rows}


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    labels, probabilities = synthetic_predictions(count=150, seed=11)
    probabilities[:, 9] *= 1e-3  # never the arg-max: the precision of class 9 is 0/0
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    root = tmp_path_factory.mktemp("class_metrics")
    write_evaluation(str(root / "custom"), labels, probabilities, threshold=0.0)
    write_evaluation(str(root / "tfma"), labels, probabilities, threshold=0.0, eval_config=binarized_config())
    return per_class(str(root / "custom")), per_class(str(root / "tfma")), labels, probabilities


def _assert_same(actual: float, expected: float, where: tuple) -> None:
    if math.isnan(expected):
        assert math.isnan(actual), where
    else:
        assert actual == pytest.approx(expected, rel=1e-6, abs=1e-9), where


def test_every_slice_and_class_matches_tfma_binarized_metrics(both):
    custom, reference, _, _ = both
    assert set(custom) == set(reference) and len(custom) == 23
    never_predicted = 0
    for slice_name, classes in reference.items():
        assert sorted(custom[slice_name]) == sorted(classes) == list(range(CLASSES)), slice_name
        for class_id, expected in classes.items():
            actual = custom[slice_name][class_id]
            where = (slice_name, class_id)
            assert set(actual) == set(expected) == {"precision", "recall", "calibration"}
            _assert_same(actual["calibration"], expected["calibration"], where)
            if math.isnan(actual["precision"]):  # never the arg-max in this slice: 0/0
                never_predicted += 1
                assert actual["recall"] == 0.0 or math.isnan(actual["recall"]), where
                # TFMA's top_k path counts every example as predicted for such a class.
                assert expected["recall"] == 1.0 or math.isnan(expected["recall"]), where
                continue
            _assert_same(actual["precision"], expected["precision"], where)
            _assert_same(actual["recall"], expected["recall"], where)
    assert 0 < never_predicted < 23 * CLASSES / 2  # some cells, not most, took that branch


def test_overall_values_are_the_textbook_definitions(both):
    custom, _, labels, probabilities = both
    predicted = probabilities.argmax(axis=1)
    overall = custom["overall"]
    for c in range(CLASSES):
        hits = np.sum((predicted == c) & (labels == c))
        assert overall[c]["recall"] == pytest.approx(hits / np.sum(labels == c))
        assert overall[c]["calibration"] == pytest.approx(probabilities[:, c].sum() / np.sum(labels == c), rel=1e-6)
        if c == 9:
            assert math.isnan(overall[c]["precision"])
        else:
            assert overall[c]["precision"] == pytest.approx(hits / np.sum(predicted == c))


def test_the_eval_config_builds_in_a_process_that_never_imported_tfx():
    """TFMA 0.52 has `tfma.EvalConfig` & co. only once TFX has set them (tfx/types/standard_component_specs.py):
    bench/evaluator_cost.py builds the config before anything imports TFX."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from components import tfx_bsl_compat\n"
        "tfx_bsl_compat.install()\n"
        "from pipeline.eval_config import make_eval_config\n"
        "config = make_eval_config(0.5, 0.0, num_classes=10)\n"
        "assert 'tfx' not in sys.modules, 'TFX was imported'\n"
        "print(len(config.slicing_specs))\n"
    )
    repo_root = __file__.rsplit("/tests/", 1)[0]
    done = subprocess.run([sys.executable, "-c", script], cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["4"]
