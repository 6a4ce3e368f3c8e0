"""What the Evaluator computes and blesses on: the EvalConfig, the accuracy gate, the metric names.

The metric names are spelled here once, for everything that reads TFMA's
output back (the run summary, `visionpipe slices`, the report): TFMA names a
metric's values by the Keras metric's snake-case name, so the gate's class
`SparseCategoricalAccuracy` appears as `sparse_categorical_accuracy` in every
metrics file. The module's top imports no TensorFlow, so the CLI can use the
names at parse time; TFMA is imported where an EvalConfig is built, and its config messages are named
through `tensorflow_model_analysis.proto.config_pb2`: TFMA 0.52's top level
(`tfma.EvalConfig`, `tfma.MetricConfig`, ...) has them only once TFX has been
imported (tfx/types/standard_component_specs.py sets them there), so a script
that builds the config without TFX, such as bench/evaluator_cost.py, would fail.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainer_module import features

if TYPE_CHECKING:
    from tensorflow_model_analysis.proto import config_pb2

ACCURACY_METRIC = "SparseCategoricalAccuracy"  # the gate's TFMA metric class
ACCURACY_KEY = "sparse_categorical_accuracy"  # ... and the name its values carry in TFMA's output
TOP_K = 2  # top-2 accuracy: is the true class at least the runner-up?
EVALUATION_SPLIT = "test"
# Adds the prediction_outcome slice feature inside the Evaluator (by import path,
# so nothing is packaged as a wheel and Kubeflow images import it the same way).
EVALUATOR_MODULE = "components.prediction_outcome"
# Examples per model call when the test split is scored, by the Evaluator and
# by the report's worst-examples pass. Fixed batches: TFMA's default adaptive
# batching starts at 1 and makes evaluation several times slower.
INFERENCE_BATCH_SIZE = 256


def _accuracy_gate(accuracy_threshold: float, change_threshold: float | None) -> config_pb2.MetricConfig:
    """SparseCategoricalAccuracy, gated on the overall slice only.

    Above `accuracy_threshold` AND no worse than the latest blessed model by
    more than `change_threshold`; `None` skips the comparison (no baseline).
    Per-class slices are for inspection, not for blessing.
    """
    from tensorflow_model_analysis.proto import config_pb2

    change = (
        None
        if change_threshold is None
        else config_pb2.GenericChangeThreshold(
            direction=config_pb2.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -change_threshold - 1e-10},
        )
    )
    return config_pb2.MetricConfig(
        class_name=ACCURACY_METRIC,
        per_slice_thresholds=[
            config_pb2.PerSliceMetricThreshold(
                slicing_specs=[config_pb2.SlicingSpec()],
                threshold=config_pb2.MetricThreshold(
                    value_threshold=config_pb2.GenericValueThreshold(lower_bound={"value": accuracy_threshold}),
                    change_threshold=change,
                ),
            )
        ],
    )


def make_eval_config(accuracy_threshold: float, change_threshold: float | None, num_classes: int) -> config_pb2.EvalConfig:
    """What the Evaluator computes on the test split, and what it blesses on.

    Slices: overall, per class (by `label` id and, for people, by `class_name`),
    and by `prediction_outcome` (correct / misclassified; added by
    components.prediction_outcome). Metrics: accuracy (the gate), top-2
    accuracy, example count, the multi-class confusion matrix (a plot), and
    one-vs-rest precision, recall and calibration per class.
    `change_threshold=None` gates on the absolute threshold only, for pipelines
    built without a baseline model (`create_pipeline(compare_with_blessed=False)`).
    """
    from tensorflow_model_analysis.proto import config_pb2

    from components import class_metrics, prediction_outcome
    from trainer_module.signatures import EXAMPLE_SIGNATURE, PROBABILITIES

    return config_pb2.EvalConfig(
        model_specs=[
            config_pb2.ModelSpec(
                signature_name=EXAMPLE_SIGNATURE,
                label_key=features.LABEL_KEY,
                prediction_key=PROBABILITIES,
                inference_batch_size=INFERENCE_BATCH_SIZE,
            )
        ],
        slicing_specs=[
            config_pb2.SlicingSpec(),
            config_pb2.SlicingSpec(feature_keys=[features.LABEL_KEY]),
            # The same per-class slices, keyed by name ("Coat", "cat") for people.
            config_pb2.SlicingSpec(feature_keys=[features.CLASS_NAME_KEY]),
            config_pb2.SlicingSpec(feature_keys=[prediction_outcome.PREDICTION_OUTCOME_KEY]),
        ],
        metrics_specs=[
            config_pb2.MetricsSpec(
                metrics=[
                    _accuracy_gate(accuracy_threshold, change_threshold),
                    config_pb2.MetricConfig(class_name="SparseTopKCategoricalAccuracy", config=f'"k": {TOP_K}'),
                    config_pb2.MetricConfig(class_name="ExampleCount"),
                    config_pb2.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
                    # One-vs-rest precision, recall, calibration per class (sub
                    # keys "classId:0" .. "classId:N-1"; a class counts as
                    # predicted when it is the arg-max, as for accuracy). One
                    # pass for all classes instead of TFMA's binarize (see module).
                    class_metrics.metric_config(num_classes),
                ]
            ),
        ],
    )
