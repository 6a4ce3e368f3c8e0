"""Beam PTransform: one IDX image/label file pair -> stream of tf.train.Examples.

The pair is validated up front (magic numbers, dimensions, matching counts), then
read as independent chunks of records: a chunk only ever holds `CHUNK_RECORDS`
images, so memory stays flat however large the files are, and Beam can spread
chunks over workers. Images are stored as PNG: compact, lossless and decodable
by every tool, including `tf.io.decode_png` inside the Transform graph.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import apache_beam as beam
import tensorflow as tf

from components.example_gen.image_examples import encode_png, make_example
from components.idx_example_gen import idx_format

CHUNK_RECORDS = 5000


def idx_prefix(split_pattern: str) -> str:
    """`train-*` -> `train`: the prefix of the IDX pair a split pattern selects."""
    prefix = split_pattern.split("-", 1)[0].rstrip("*")
    if not prefix:
        raise ValueError(
            f"split pattern {split_pattern!r} must start with an IDX file prefix, "
            "e.g. 'train-*' or 't10k-*'"
        )
    return prefix


def read_chunk(
    chunk: tuple[int, int],
    images_path: str,
    labels_path: str,
    prefix: str,
    class_names: Sequence[str],
) -> Iterator[tf.train.Example]:
    """Yields the examples of records [start, start + count) of one IDX pair."""
    start, count = chunk
    images = idx_format.iter_idx_records(images_path, start=start, count=count)
    labels = idx_format.iter_idx_records(labels_path, start=start, count=count)
    for offset, (image, label) in enumerate(zip(images, labels)):
        index = start + offset
        label_value = int(label)
        if not 0 <= label_value < len(class_names):
            raise idx_format.IdxFormatError(
                f"{labels_path}: label {label_value} at index {index} is outside "
                f"0-{len(class_names) - 1}"
            )
        yield make_example(
            encode_png(image), label_value, f"{prefix}-{index:06d}", class_names[label_value]
        )


def chunk_ranges(count: int) -> list[tuple[int, int]]:
    """``(start, count)`` of each chunk of `CHUNK_RECORDS` records (the last may be shorter)."""
    return [(start, min(CHUNK_RECORDS, count - start)) for start in range(0, count, CHUNK_RECORDS)]


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def IdxPairToExamples(  # pylint: disable=invalid-name
    pipeline: beam.Pipeline,
    input_base: str,
    split_pattern: str,
    image_size: tuple[int, int],
    class_names: Sequence[str],
) -> beam.pvalue.PCollection:
    """Reads the IDX image/label pair named by `split_pattern` under `input_base`.

    Label i is named ``class_names[i]``; the names come from the component
    (pipeline.datasets owns them), since IDX files carry none.
    """
    prefix = idx_prefix(split_pattern)
    # The same header checks as the CLI's pre-flight (files, magic, size, counts).
    source = idx_format.check_split_headers(input_base, prefix, image_size)
    return (
        pipeline
        | "Chunks" >> beam.Create(chunk_ranges(source.count))
        | "Distribute" >> beam.Reshuffle()
        | "Decode"
        >> beam.FlatMap(
            read_chunk, source.images_path, source.labels_path, prefix, tuple(class_names)
        )
    )
