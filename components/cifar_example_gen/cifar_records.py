"""Beam PTransform: CIFAR-10 shards (batch files or image-file chunks) -> tf.Examples.

A shard is one training/test batch or a chunk of image files, so Beam spreads
work per shard and a worker holds at most one batch (about 30 MB) at a time;
records are converted to PNG one by one as `cifar_format` streams them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import apache_beam as beam
import tensorflow as tf

from components.cifar_example_gen import cifar_format
from components.example_gen.image_examples import encode_png, make_example


def shard_examples(
    shard: cifar_format.CifarShard, image_size: tuple[int, int], class_names: Sequence[str]
) -> Iterator[tf.train.Example]:
    """Every record of one shard as a visionpipe example (PNG, label, class name, id)."""
    for example_id, image, label in cifar_format.iter_shard_records(shard, image_size):
        yield make_example(encode_png(image), label, example_id, class_names[label])


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def CifarShardsToExamples(  # pylint: disable=invalid-name
    pipeline: beam.Pipeline,
    shards: Sequence[cifar_format.CifarShard],
    image_size: tuple[int, int],
    class_names: Sequence[str],
) -> beam.pvalue.PCollection:
    return (
        pipeline
        | "Shards" >> beam.Create(list(shards))
        | "Distribute" >> beam.Reshuffle()
        | "Decode" >> beam.FlatMap(shard_examples, tuple(image_size), tuple(class_names))
    )
