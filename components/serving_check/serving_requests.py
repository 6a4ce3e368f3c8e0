"""TF Serving requests built from real test-split examples, as PredictionLog records.

The serving check sends what a client of TF Serving sends: `PredictRequest`s
to `serving_default` (serialized tf.Examples) and `serving_images` (the PNG
bytes inside those examples, and a JPEG re-encoding of them), and
`ClassifyRequest`s to `classify`. They are PredictionLog records because that
is the format TF Serving replays as warm-up (`assets.extra/
tf_serving_warmup_requests`) and the format it logs requests in; the probe
process reads nothing else.

TensorFlow and tensorflow-serving-api's protos only: the probe's side of the
wire must not depend on TFX, and neither does this.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from google.protobuf.message import DecodeError
import tensorflow as tf
from tensorflow_serving.apis import classification_pb2, predict_pb2, prediction_log_pb2

from components.serving_check.probe import MAX_WARMUP_RECORDS
from trainer_module import features
from trainer_module.signatures import (
    CLASSIFY_SIGNATURE,
    EXAMPLE_INPUT,
    EXAMPLE_SIGNATURE,
    IMAGE_INPUT,
    IMAGE_SIGNATURE,
)

# Batch sizes of the warm-up requests, and so of the latency table: one image
# (an interactive client), a small and a large batch (a batch job).
BATCH_SIZES = (1, 32, 256)
EVALUATION_BATCH_SIZE = 256  # the whole test split goes through serving_default in these


@dataclasses.dataclass(frozen=True)
class TestExample:
    """One test-split tf.Example: its bytes, PNG image and label."""

    serialized: bytes
    image: bytes
    label: int


def parse_test_example(serialized: bytes) -> TestExample:
    example = tf.train.Example.FromString(serialized)
    feature = example.features.feature
    return TestExample(
        serialized=serialized,
        image=feature[features.IMAGE_KEY].bytes_list.value[0],
        label=int(feature[features.LABEL_KEY].int64_list.value[0]),
    )


def read_test_examples(file_pattern: str) -> list[TestExample]:
    """Every example of the TFRecord files (ExampleGen writes them gzipped, `.gz`), in file order.

    Raises FileNotFoundError when nothing matches, ValueError naming the file
    when a record is not a tf.Example with an image and a label.
    """
    files = sorted(tf.io.gfile.glob(file_pattern))
    if not files:
        raise FileNotFoundError(f"{file_pattern}: no example files")
    examples = []
    for path in files:
        try:
            for record in tf.data.TFRecordDataset(path, compression_type="GZIP" if path.endswith(".gz") else ""):
                examples.append(parse_test_example(record.numpy()))
        except (tf.errors.OpError, IndexError, DecodeError) as error:
            raise ValueError(f"{path}: not a TFRecord file of tf.Examples with '{features.IMAGE_KEY}' and "
                             f"'{features.LABEL_KEY}' ({type(error).__name__})") from error
    return examples


def predict_log(model_name: str, signature: str, input_key: str, values: Sequence[bytes]) -> prediction_log_pb2.PredictionLog:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    request.inputs[input_key].CopyFrom(tf.make_tensor_proto(np.array(list(values), dtype=object)))
    return prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))


def classify_log(model_name: str, serialized: Sequence[bytes]) -> prediction_log_pb2.PredictionLog:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = CLASSIFY_SIGNATURE
    for record in serialized:
        request.input.example_list.examples.add().ParseFromString(record)
    return prediction_log_pb2.PredictionLog(classify_log=prediction_log_pb2.ClassifyLog(request=request))


def to_jpeg(png: bytes) -> bytes:
    return tf.io.encode_jpeg(tf.io.decode_png(png), quality=95).numpy()


def first(examples: Sequence[TestExample], count: int) -> list[TestExample]:
    """The first `count` examples, repeated from the start if the split is smaller."""
    return list(itertools.islice(itertools.cycle(examples), count))


def same_examples_through_every_signature(
    model_name: str, examples: Sequence[TestExample], jpeg: bool = False
) -> list[prediction_log_pb2.PredictionLog]:
    """[serving_default, serving_images, classify] requests for the same examples, in this order.

    With `jpeg`, the image request carries JPEG re-encodings of the PNGs.
    """
    images = [to_jpeg(example.image) if jpeg else example.image for example in examples]
    serialized = [example.serialized for example in examples]
    return [
        predict_log(model_name, EXAMPLE_SIGNATURE, EXAMPLE_INPUT, serialized),
        predict_log(model_name, IMAGE_SIGNATURE, IMAGE_INPUT, images),
        classify_log(model_name, serialized),
    ]


def warmup_logs(model_name: str, examples: Sequence[TestExample]) -> list[prediction_log_pb2.PredictionLog]:
    """TF Serving's warm-up: every signature once at each of BATCH_SIZES (9 records)."""
    logs = [
        log for batch in BATCH_SIZES for log in same_examples_through_every_signature(model_name, first(examples, batch))
    ]
    assert len(logs) <= MAX_WARMUP_RECORDS
    return logs


def evaluation_logs(model_name: str, examples: Sequence[TestExample]) -> Iterator[prediction_log_pb2.PredictionLog]:
    """The whole split through serving_default (what the Evaluator scored), in batches."""
    for start in range(0, len(examples), EVALUATION_BATCH_SIZE):
        batch = examples[start : start + EVALUATION_BATCH_SIZE]
        yield predict_log(model_name, EXAMPLE_SIGNATURE, EXAMPLE_INPUT, [example.serialized for example in batch])


def write_prediction_logs(path: str, logs: Iterable[prediction_log_pb2.PredictionLog]) -> int:
    """Writes an uncompressed TFRecord file of PredictionLogs (TF Serving's warm-up format)."""
    count = 0
    with tf.io.TFRecordWriter(path) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
            count += 1
    return count
