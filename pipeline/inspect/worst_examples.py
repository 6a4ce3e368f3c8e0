"""The test images a model gets most wrong, for `visionpipe report`.

TFMA keeps aggregates, not per-example predictions, so the report runs the
evaluated model over the test split once, through its `serving_default`
signature: the same serialized tf.Examples, TFT transform and network that
the Evaluator used. Only the `count` lowest true-class probabilities are kept
(a bounded heap), so memory does not grow with the split.
"""

from __future__ import annotations

import dataclasses
import glob
import heapq
import os
from collections.abc import Callable, Iterator, Sequence

import tensorflow as tf
from tfx.utils import path_utils

from pipeline.eval_config import INFERENCE_BATCH_SIZE
from trainer_module import features, signatures


class WorstExamplesError(ValueError):
    """The model or the test split cannot be read; the message names the path."""


@dataclasses.dataclass(frozen=True)
class WorstExample:
    """A test image the model got most wrong: lowest probability for its true class."""

    example_id: str
    png: bytes  # the encoded image exactly as stored in the test split (PNG)
    true_class: str
    predicted_class: str
    true_class_probability: float
    predicted_probability: float


def test_split_files(test_split_uri: str) -> list[str]:
    """The TFRecord files of the test split's folder (`EvaluatorRun.test_split_uri`)."""
    files = sorted(glob.glob(os.path.join(test_split_uri, "*")))
    if not files:
        raise WorstExamplesError(f"{test_split_uri}: no test split files")
    return files


def _batches(files: Sequence[str], batch_size: int) -> Iterator[tuple[tf.Tensor, dict[str, list]]]:
    """(serialized examples as read, parsed image/label/id lists) per batch of the split."""
    spec = {
        features.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
        features.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
        features.EXAMPLE_ID_KEY: tf.io.FixedLenFeature([], tf.string, default_value=""),
    }
    dataset = tf.data.TFRecordDataset(list(files), compression_type="GZIP").batch(batch_size)
    try:
        for serialized in dataset:
            parsed = tf.io.parse_example(serialized, spec)
            yield serialized, {key: list(value.numpy()) for key, value in parsed.items()}
    except tf.errors.OpError as error:
        raise WorstExamplesError(f"{os.path.dirname(files[0])}: unreadable test split ({error.message})") from error


def load_classifier(model_uri: str) -> Callable:
    """The serving_default signature of a Trainer Model artifact (or of a SavedModel dir)."""
    model_dir = path_utils.serving_model_dir(model_uri)
    if not os.path.isdir(model_dir):
        model_dir = model_uri
    try:
        return tf.saved_model.load(model_dir).signatures[signatures.EXAMPLE_SIGNATURE]
    except (OSError, KeyError, ValueError, tf.errors.OpError) as error:
        raise WorstExamplesError(f"{model_dir}: cannot load the model's {signatures.EXAMPLE_SIGNATURE} signature ({error})") from error


def worst_examples(
    model_uri: str,
    test_split_uri: str,
    class_names: Sequence[str],
    count: int,
    batch_size: int = INFERENCE_BATCH_SIZE,
) -> tuple[list[WorstExample], int]:
    """The `count` test examples with the lowest true-class probability, worst first,
    and how many examples were scored."""
    classify = load_classifier(model_uri)
    files = test_split_files(test_split_uri)
    # A max-heap on the true-class probability (negated): its top is the best
    # of the kept examples, the first to be replaced by a worse one.
    kept: list[tuple[float, int, WorstExample]] = []
    scored = 0
    for serialized, parsed in _batches(files, batch_size):
        probabilities = classify(examples=serialized)[signatures.PROBABILITIES].numpy()
        for row, label in enumerate(parsed[features.LABEL_KEY]):
            scored += 1
            true_probability = float(probabilities[row, label])
            if len(kept) == count and (count == 0 or true_probability >= -kept[0][0]):
                continue
            predicted = int(probabilities[row].argmax())
            example = WorstExample(
                example_id=parsed[features.EXAMPLE_ID_KEY][row].decode("utf-8", "replace"),
                png=parsed[features.IMAGE_KEY][row],
                true_class=class_names[label],
                predicted_class=class_names[predicted],
                true_class_probability=true_probability,
                predicted_probability=float(probabilities[row, predicted]),
            )
            entry = (-true_probability, -scored, example)  # ties: the earlier example stays
            if len(kept) < count:
                heapq.heappush(kept, entry)
            else:
                heapq.heapreplace(kept, entry)
    worst_first = sorted(kept, key=lambda item: (-item[0], -item[1]))
    return [example for _, _, example in worst_first], scored
