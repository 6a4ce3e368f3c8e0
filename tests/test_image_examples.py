"""The ExampleGens' PNG encoder: lossless for every image shape the formats produce, readable by stock decoders."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from components.example_gen.image_examples import encode_png


@pytest.mark.parametrize(
    "shape", [(28, 28), (28, 28, 1), (32, 32, 3), (5, 7, 4), (3, 9, 2), (1, 1)], ids=lambda shape: "x".join(map(str, shape))
)
def test_the_png_decodes_to_the_same_pixels_in_pillow_and_tensorflow(shape: tuple[int, ...]) -> None:
    image = np.random.default_rng(sum(shape)).integers(0, 256, size=shape, dtype=np.uint8)

    png = encode_png(image)

    decoded = Image.open(io.BytesIO(png))
    assert decoded.format == "PNG" and decoded.size == (shape[1], shape[0])
    np.testing.assert_array_equal(np.asarray(decoded).reshape(shape), image)
    # What the Transform graph and the serving signature decode with.
    np.testing.assert_array_equal(tf.io.decode_png(png).numpy().reshape(shape), image)
    Image.open(io.BytesIO(png)).verify()  # Pillow's structural check: chunk CRCs, IEND


def test_a_non_contiguous_view_is_encoded_as_its_pixels() -> None:
    image = np.arange(2 * 6 * 5, dtype=np.uint8).reshape(6, 10)[:, ::2]  # every second column

    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(encode_png(image)))), image)


@pytest.mark.parametrize(
    "image", [np.zeros((4, 4), np.float32), np.zeros((4, 4, 5), np.uint8), np.zeros(4, np.uint8)], ids=["float", "5 channels", "1-D"]
)
def test_what_is_not_an_8_bit_image_is_refused(image: np.ndarray) -> None:
    with pytest.raises(ValueError, match="uint8 image"):
        encode_png(image)
