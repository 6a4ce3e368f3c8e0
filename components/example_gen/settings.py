"""ExampleGen settings carried in `example_gen_pb2.CustomConfig`.

FileBasedExampleGen only has a proto `Any` slot for executor settings; a
`google.protobuf.Struct` packed into it keeps them plain JSON, which survives
both the local IR and Kubeflow compilation unchanged. The component encodes
them and the executor decodes them here, so both sides agree on the keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format, struct_pb2
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

SPLIT_WEIGHTS_KEY = "split_weights"  # {'train': 5, 'eval': 1}
IMAGE_SHAPE_KEY = "image_shape"  # [height, width, channels]
CLASS_NAMES_KEY = "class_names"  # label i is called class_names[i]


@dataclasses.dataclass(frozen=True)
class ImageSettings:
    """What every visionpipe ExampleGen executor is told: split weights, geometry, class names.

    The dataset's facts (shape, class names) live in `pipeline.datasets`, which
    components may not import; they reach the executor through these settings.
    """

    split_weights: Mapping[str, int]
    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...]

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)``: what the readers resize or check images against."""
        return self.image_shape[0], self.image_shape[1]


def encode(settings: ImageSettings) -> example_gen_pb2.CustomConfig:
    struct = struct_pb2.Struct()
    struct.update(
        {
            SPLIT_WEIGHTS_KEY: dict(settings.split_weights),
            IMAGE_SHAPE_KEY: list(settings.image_shape),
            CLASS_NAMES_KEY: list(settings.class_names),
        }
    )
    custom_config = example_gen_pb2.CustomConfig()
    custom_config.custom_config.Pack(struct)
    return custom_config


def decode(exec_properties: Mapping[str, Any]) -> ImageSettings:
    """The settings an executor was given by the component.

    JSON has only floats, hence the int conversions. Missing settings mean the
    executor was not run by one of visionpipe's ExampleGen components.
    """
    raw = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
    custom_config = example_gen_pb2.CustomConfig()
    struct = struct_pb2.Struct()
    if raw:
        proto_utils.json_to_proto(raw, custom_config)
        custom_config.custom_config.Unpack(struct)
    values = json_format.MessageToDict(struct)
    missing = [
        key for key in (SPLIT_WEIGHTS_KEY, IMAGE_SHAPE_KEY, CLASS_NAMES_KEY) if key not in values
    ]
    if missing:
        raise ValueError(
            f"ExampleGen custom_config lacks {', '.join(missing)}: build it with "
            "IdxExampleGen or CifarExampleGen, which set them"
        )
    height, width, channels = (int(size) for size in values[IMAGE_SHAPE_KEY])
    return ImageSettings(
        split_weights={name: int(weight) for name, weight in values[SPLIT_WEIGHTS_KEY].items()},
        image_shape=(height, width, channels),
        class_names=tuple(str(name) for name in values[CLASS_NAMES_KEY]),
    )


def input_splits(exec_properties: Mapping[str, Any]) -> list[example_gen_pb2.Input.Split]:
    """The input config's splits (name + pattern) an executor was given."""
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(
        exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config
    )
    return list(input_config.splits)
