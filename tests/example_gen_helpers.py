"""Runs a visionpipe ExampleGen executor for real (Beam) and reads its output back."""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping
from typing import Any

import tensorflow as tf
from tfx.components.example_gen import base_example_gen_executor
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components import example_gen_settings as settings


def run_executor(
    executor_class: type[base_example_gen_executor.BaseExampleGenExecutor],
    input_base: str,
    input_config: example_gen_pb2.Input,
    custom_settings: Mapping[str, Any],
    output_uri: str,
) -> None:
    """Calls `Do` the way TFX's launcher does, with the custom config as a Struct."""
    exec_properties = {
        "input_base": input_base,
        "input_config": proto_utils.proto_to_json(input_config),
        "output_config": proto_utils.proto_to_json(example_gen_pb2.Output()),
        "custom_config": proto_utils.proto_to_json(settings.encode(custom_settings)),
        "output_data_format": example_gen_pb2.FORMAT_TF_EXAMPLE,
        "output_file_format": example_gen_pb2.FORMAT_TFRECORDS_GZIP,
    }
    examples = standard_artifacts.Examples()
    examples.uri = output_uri
    executor_class().Do({}, {"examples": [examples]}, exec_properties)


def read_split(output_uri: str, split: str) -> list[tf.train.Example]:
    files = glob.glob(os.path.join(output_uri, f"Split-{split}", "*.gz"))
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
    return [tf.train.Example.FromString(record.numpy()) for record in dataset]


def feature(example: tf.train.Example, key: str) -> Any:
    """The single value of a bytes or int64 feature."""
    value = example.features.feature[key]
    return value.bytes_list.value[0] if value.bytes_list.value else value.int64_list.value[0]
