"""A TFMA metric: one-vs-rest precision, recall and calibration of every class, in one pass.

TFMA's own way to get these is `Precision`, `Recall` and `Calibration` under a
MetricsSpec that binarizes by class id. That runs a separate combiner per
class and metric (30 for ten classes), each converting every example's
labels and predictions again, on every slice the example belongs to, which
makes the Evaluator far slower (bench/evaluator_cost.py measures by how much).
This metric reads each example once and counts all
classes with numpy, for the same numbers under the same metric keys
(`precision`, `recall`, `calibration` with sub key `classId:N`), so TFMA's
loaders, `tfma.view` and `visionpipe slices` see what binarization would
have written.

Definitions (TFMA's binarized metrics with top_k 1 give the same numbers):
  precision[c]   = examples predicted c (arg-max) that are c / examples predicted c
  recall[c]      = examples of class c predicted c / examples of class c
  calibration[c] = sum of predicted probability of c / examples of class c
NaN where the denominator is 0, as TFMA's own precision and recall give.
One difference, on purpose: where a class is never the arg-max in a slice,
TFMA's binarized top_k path counts every example of the slice as predicted
for that class (recall 1, precision = the class's share of the slice); here
its precision is 0/0 = NaN and its recall 0, which is what was predicted.
tests/test_class_metrics.py compares the two on every slice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types, metric_util
from tensorflow_model_analysis.proto import config_pb2

METRIC_NAME = "per_class_one_vs_rest"
PRECISION = "precision"
RECALL = "recall"
CALIBRATION = "calibration"


@dataclasses.dataclass
class _Counts:
    """Weighted sums per class id."""

    predicted: np.ndarray  # examples whose arg-max is the class
    correct: np.ndarray  # ... that are also of that class
    actual: np.ndarray  # examples of the class
    probability: np.ndarray  # predicted probability of the class, summed

    @classmethod
    def zeros(cls, num_classes: int) -> "_Counts":
        return cls(*(np.zeros(num_classes) for _ in range(4)))

    def add(self, other: "_Counts") -> "_Counts":
        self.predicted += other.predicted
        self.correct += other.correct
        self.actual += other.actual
        self.probability += other.probability
        return self


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> list[float]:
    return [float(n / d) if d > 0 else float("nan") for n, d in zip(numerator, denominator)]


class _PerClassCombiner(beam.CombineFn):
    def __init__(
        self,
        keys: dict[str, list[metric_types.MetricKey]],
        num_classes: int,
        eval_config: config_pb2.EvalConfig | None,
        model_name: str,
        output_name: str,
        example_weighted: bool,
    ) -> None:
        self._keys = keys
        self._num_classes = num_classes
        self._eval_config = eval_config
        self._model_name = model_name
        self._output_name = output_name
        self._example_weighted = example_weighted

    def create_accumulator(self) -> _Counts:
        return _Counts.zeros(self._num_classes)

    def add_input(self, accumulator: _Counts, element: metric_types.StandardMetricInputs) -> _Counts:
        label, predictions, weight = next(
            metric_util.to_label_prediction_example_weight(
                element,
                eval_config=self._eval_config,
                model_name=self._model_name,
                output_name=self._output_name,
                example_weighted=self._example_weighted,
                flatten=False,
                require_single_example_weight=True,
            )
        )
        predictions = np.asarray(predictions, dtype=np.float64).reshape(-1)
        if predictions.size != self._num_classes:
            raise ValueError(
                f"{METRIC_NAME}: expected {self._num_classes} class probabilities, got shape {predictions.shape}"
            )
        label = np.asarray(label)
        actual = int(np.argmax(label)) if label.size > 1 else int(label.item())
        predicted = int(np.argmax(predictions))
        weight = float(np.asarray(weight).item())
        accumulator.predicted[predicted] += weight
        accumulator.actual[actual] += weight
        if predicted == actual:
            accumulator.correct[actual] += weight
        accumulator.probability += weight * predictions
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[_Counts]) -> _Counts:
        accumulators = iter(accumulators)
        result = next(accumulators)
        for accumulator in accumulators:
            result.add(accumulator)
        return result

    def extract_output(self, accumulator: _Counts) -> dict[metric_types.MetricKey, float]:
        values = {
            PRECISION: _ratio(accumulator.correct, accumulator.predicted),
            RECALL: _ratio(accumulator.correct, accumulator.actual),
            CALIBRATION: _ratio(accumulator.probability, accumulator.actual),
        }
        return {key: values[name][index] for name, keys in self._keys.items() for index, key in enumerate(keys)}


def _per_class_computations(
    num_classes: int,
    name: str = METRIC_NAME,
    eval_config: config_pb2.EvalConfig | None = None,
    model_name: str = "",
    output_name: str = "",
    example_weighted: bool = False,
) -> metric_types.MetricComputations:
    keys = {
        metric: [
            metric_types.MetricKey(
                name=metric,
                model_name=model_name,
                output_name=output_name,
                sub_key=metric_types.SubKey(class_id=class_id),
                example_weighted=example_weighted,
            )
            for class_id in range(num_classes)
        ]
        for metric in (PRECISION, RECALL, CALIBRATION)
    }
    combiner = _PerClassCombiner(keys, num_classes, eval_config, model_name, output_name, example_weighted)
    return [
        metric_types.MetricComputation(
            keys=[key for per_metric in keys.values() for key in per_metric],
            preprocessors=None,
            combiner=combiner,
        )
    ]


class PerClassOneVsRest(metric_types.Metric):
    """Precision, recall and calibration per class id (0 .. num_classes - 1)."""

    def __init__(self, num_classes: int, name: str = METRIC_NAME) -> None:
        super().__init__(
            metric_util.merge_per_key_computations(_per_class_computations), num_classes=num_classes, name=name
        )


metric_types.register_metric(PerClassOneVsRest)


def metric_config(num_classes: int) -> Any:
    """The MetricConfig that adds this metric to an EvalConfig (by module path)."""
    return config_pb2.MetricConfig(
        class_name=PerClassOneVsRest.__name__, module=__name__, config=f'"num_classes": {num_classes}'
    )
