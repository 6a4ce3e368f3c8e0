"""Runs a visionpipe ExampleGen's executor for real (Beam) and reads its output back."""

from __future__ import annotations

import glob
import os
from typing import Any

import tensorflow as tf
from tfx.components import FileBasedExampleGen
from tfx.types import standard_artifacts


def run_example_gen(component: FileBasedExampleGen, output_uri: str) -> None:
    """Calls the component's executor's `Do` the way TFX's launcher does.

    The exec properties are the ones the component itself built (input config,
    custom config as JSON), so a test covers the component-to-executor
    hand-over as well as the executor.
    """
    exec_properties = {
        name: value for name, value in component.exec_properties.items() if value is not None
    }
    examples = standard_artifacts.Examples()
    examples.uri = output_uri
    component.executor_spec.executor_class().Do({}, {"examples": [examples]}, exec_properties)


def read_split(output_uri: str, split: str) -> list[tf.train.Example]:
    files = glob.glob(os.path.join(output_uri, f"Split-{split}", "*.gz"))
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
    return [tf.train.Example.FromString(record.numpy()) for record in dataset]


def feature(example: tf.train.Example, key: str) -> Any:
    """The single value of a bytes or int64 feature."""
    value = example.features.feature[key]
    return value.bytes_list.value[0] if value.bytes_list.value else value.int64_list.value[0]
