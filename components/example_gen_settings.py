"""ExampleGen settings carried in `example_gen_pb2.CustomConfig`.

FileBasedExampleGen only has a proto `Any` slot for executor settings; a
`google.protobuf.Struct` packed into it keeps them plain JSON, which survives
both the local IR and Kubeflow compilation unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format, struct_pb2
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

SPLIT_WEIGHTS_KEY = "split_weights"  # {'train': 5, 'eval': 1}
IMAGE_SHAPE_KEY = "image_shape"  # [height, width, channels]
CLASS_NAMES_KEY = "class_names"  # label i is called class_names[i]


def encode(settings: Mapping[str, Any]) -> example_gen_pb2.CustomConfig:
    struct = struct_pb2.Struct()
    struct.update(dict(settings))
    custom_config = example_gen_pb2.CustomConfig()
    custom_config.custom_config.Pack(struct)
    return custom_config


def decode(exec_properties: Mapping[str, Any]) -> dict[str, Any]:
    """Returns the settings an executor was given ({} when there are none)."""
    raw = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
    if not raw:
        return {}
    custom_config = example_gen_pb2.CustomConfig()
    proto_utils.json_to_proto(raw, custom_config)
    struct = struct_pb2.Struct()
    if not custom_config.custom_config.Unpack(struct):
        return {}
    return json_format.MessageToDict(struct)


def input_splits(exec_properties: Mapping[str, Any]) -> list[example_gen_pb2.Input.Split]:
    """The input config's splits (name + pattern) an executor was given."""
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(
        exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config
    )
    return list(input_config.splits)
