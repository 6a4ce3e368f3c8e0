"""`ImageExampleGenExecutor`: read each data source once, then carve its splits by weight.

TFX's BaseExampleGenExecutor applies `GetInputSourceToExamplePTransform` once
per input split: given train and eval splits over the same training files, it
would read them twice and put every example in both. visionpipe's executors
override `GenerateExamplesByBeam` instead: a subclass says which sources there
are and which output splits each feeds (`sources`); this class reads every
source once and partitions it by the deterministic hash of `example_splits`.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, TypeVar

import apache_beam as beam
import tensorflow as tf
from tfx.components.example_gen import base_example_gen_executor
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs

from components.example_gen import example_splits, settings
from components.example_gen.settings import ImageSettings
from trainer_module import features

Key = TypeVar("Key", bound=Hashable)
Split = example_gen_pb2.Input.Split  # an input split: name and file pattern


@dataclasses.dataclass(frozen=True)
class ExampleSource:
    """One read of the input data and the output splits it is carved into.

    ``name`` labels the Beam steps; ``description`` says in errors what the
    splits are carved out of (e.g. ``pattern 'train-*'``, ``the train data``).
    """

    name: str
    description: str
    split_names: list[str]
    read: beam.PTransform


def group_splits(splits: Sequence[Split], key: Callable[[Split], Key]) -> dict[Key, list[str]]:
    """Output split names grouped by the source ``key`` picks for each, in input order."""
    groups: dict[Key, list[str]] = {}
    for split in splits:
        groups.setdefault(key(split), []).append(split.name)
    return groups


def _partition_index(example: tf.train.Example, num_partitions: int, boundaries: list[int]) -> int:
    del num_partitions  # beam.Partition's signature; the boundaries say it all
    example_id = example.features.feature[features.EXAMPLE_ID_KEY].bytes_list.value[0]
    return example_splits.split_index(example_id, boundaries)


def carve_splits(
    examples: beam.pvalue.PCollection,
    split_names: Sequence[str],
    weights: Mapping[str, float],
    source: str,
) -> dict[str, beam.pvalue.PCollection]:
    """One PCollection per split name; several names share `examples` by weight."""
    if len(split_names) == 1:
        return {split_names[0]: examples}
    boundaries = example_splits.cumulative_weights(split_names, weights, source)
    parts = examples | f"Split[{source}]" >> beam.Partition(
        _partition_index, len(split_names), boundaries
    )
    return dict(zip(split_names, parts))


class ImageExampleGenExecutor(base_example_gen_executor.BaseExampleGenExecutor):
    """Generates the output splits from the sources a subclass names."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        # Abstract in the base class, which calls it only from the
        # GenerateExamplesByBeam overridden below; never reached.
        raise NotImplementedError("visionpipe ExampleGens read in GenerateExamplesByBeam")

    @abc.abstractmethod
    def sources(
        self, input_base: str, splits: Sequence[Split], config: ImageSettings
    ) -> list[ExampleSource]:
        """The reads to make under ``input_base``; together they feed every split once."""

    def GenerateExamplesByBeam(
        self, pipeline: beam.Pipeline, exec_properties: dict[str, Any]
    ) -> dict[str, beam.pvalue.PCollection]:
        config = settings.decode(exec_properties)
        input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
        result: dict[str, beam.pvalue.PCollection] = {}
        for source in self.sources(input_base, settings.input_splits(exec_properties), config):
            examples = pipeline | f"Read[{source.name}]" >> source.read
            result.update(
                carve_splits(examples, source.split_names, config.split_weights, source.description)
            )
        return result
