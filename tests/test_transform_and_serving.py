"""preprocessing_fn under real tf.Transform (Beam), and both serving signatures."""

from __future__ import annotations

import functools
import io
import os

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from PIL import Image
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from components.image_examples import encode_png, make_example
from tests.conftest import synthetic_digits
from trainer_module import models, preprocessing, serving, signatures

IMAGE_SHAPE = (28, 28, 1)
CLASS_NAMES = tuple(f"class-{i}" for i in range(10))
RAW_SPEC = {
    "image": tf.io.FixedLenFeature([1], tf.string),
    "label": tf.io.FixedLenFeature([1], tf.int64),
    "example_id": tf.io.FixedLenFeature([1], tf.string),
}


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    """Runs AnalyzeAndTransformDataset on 40 synthetic images; returns (images, output)."""
    images, labels = synthetic_digits(40, seed=3)
    raw = [
        {"image": [encode_png(image)], "label": [int(label)], "example_id": [b"x"]}
        for image, label in zip(images, labels)
    ]
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(RAW_SPEC))
    root = tmp_path_factory.mktemp("tft")
    transform_dir = str(root / "transform_output")
    preprocessing_fn = functools.partial(
        preprocessing.preprocessing_fn, custom_config={"image_shape": list(IMAGE_SHAPE)}
    )
    with beam.Pipeline() as pipeline, tft_beam.Context(temp_dir=str(root / "tmp")):
        raw_data = pipeline | beam.Create(raw)
        transform_fn = (raw_data, metadata) | tft_beam.AnalyzeDataset(preprocessing_fn)
        _ = transform_fn | tft_beam.WriteTransformFn(transform_dir)
        # The raw schema, as TFX's Transform writes it, for raw_feature_spec().
        _ = metadata | tft_beam.WriteMetadata(
            os.path.join(transform_dir, tft.TFTransformOutput.RAW_METADATA_DIR), pipeline
        )
    # Apply the saved transform graph, exactly as the Trainer and serving do.
    output = tft.TFTransformOutput(transform_dir).transform_raw_features(
        {
            "image": tf.constant([row["image"] for row in raw]),
            "label": tf.constant([row["label"] for row in raw], dtype=tf.int64),
        }
    )
    rows = [
        {"image_xf": output["image_xf"][i].numpy(), "label": output["label"][i].numpy()}
        for i in range(len(raw))
    ]
    return images, labels, rows, transform_dir


def test_transform_standardizes_with_full_pass_statistics(transformed):
    images, labels, rows, _ = transformed
    pixels = np.stack([row["image_xf"] for row in rows]).astype(np.float64)
    assert pixels.shape == (40, 28, 28, 1)
    assert abs(pixels.mean()) < 1e-3
    assert abs(pixels.std() - 1.0) < 1e-3
    expected = images / 255.0
    expected = (expected - expected.mean()) / expected.std()
    np.testing.assert_allclose(pixels[..., 0], expected, atol=1e-3)
    assert [int(row["label"]) for row in rows] == [int(label) for label in labels]


@pytest.fixture(scope="module", params=["tutorial_cnn", "deep_cnn"])
def exported(request, transformed, tmp_path_factory):
    """Each zoo model trained one epoch and exported (deep_cnn has random layers)."""
    images, labels, rows, transform_dir = transformed
    model = models.build_model(request.param, IMAGE_SHAPE, 10)
    x = np.stack([row["image_xf"] for row in rows]).astype(np.float32)
    model.fit(x, np.asarray(labels, dtype=np.int64), epochs=1, batch_size=20, verbose=0)
    export_dir = str(tmp_path_factory.mktemp("export") / "model")
    serving.export_serving_model(model, tft.TFTransformOutput(transform_dir), CLASS_NAMES, IMAGE_SHAPE, export_dir)
    return images, labels, model, x, tf.saved_model.load(export_dir)


def test_saved_model_has_the_three_signatures(exported):
    *_, loaded = exported
    assert set(loaded.signatures) == {signatures.EXAMPLE_SIGNATURE, signatures.IMAGE_SIGNATURE, signatures.CLASSIFY_SIGNATURE}


def test_classify_signature_gives_class_names_and_the_probabilities(exported):
    images, labels, model, x, loaded = exported
    serialized = [make_example(encode_png(image), 0, "x", "0").SerializeToString() for image in images[:4]]
    out = loaded.signatures[signatures.CLASSIFY_SIGNATURE](inputs=tf.constant(serialized))
    np.testing.assert_allclose(out[signatures.CLASSIFY_SCORES].numpy(), model.predict(x[:4], verbose=0), atol=1e-5)
    assert out[signatures.CLASSIFY_CLASSES].numpy().tolist() == [[name.encode() for name in CLASS_NAMES]] * 4


def test_example_signature_matches_the_keras_model_on_transformed_input(exported):
    images, labels, model, x, loaded = exported
    serialized = [
        make_example(encode_png(image), int(label), f"t-{i}", str(label)).SerializeToString()
        for i, (image, label) in enumerate(zip(images[:8], labels[:8]))
    ]
    out = loaded.signatures[signatures.EXAMPLE_SIGNATURE](examples=tf.constant(serialized))
    np.testing.assert_allclose(out[signatures.PROBABILITIES].numpy(), model.predict(x[:8], verbose=0), atol=1e-5)
    np.testing.assert_allclose(out[signatures.PROBABILITIES].numpy().sum(axis=1), 1.0, atol=1e-5)
    ids = out[signatures.CLASS_IDS].numpy()
    assert [name.decode() for name in out[signatures.CLASS_NAMES].numpy()] == [CLASS_NAMES[i] for i in ids]


def test_image_signature_applies_the_same_transform_as_the_example_signature(exported):
    images, labels, _, _, loaded = exported
    pngs = [encode_png(image) for image in images[:8]]
    by_image = loaded.signatures[signatures.IMAGE_SIGNATURE](images=tf.constant(pngs))
    serialized = [make_example(png, 0, "x", "0").SerializeToString() for png in pngs]
    by_example = loaded.signatures[signatures.EXAMPLE_SIGNATURE](examples=tf.constant(serialized))
    np.testing.assert_allclose(
        by_image[signatures.PROBABILITIES].numpy(), by_example[signatures.PROBABILITIES].numpy(), atol=1e-6
    )


def test_image_signature_accepts_rgb_jpeg_of_another_size(exported):
    images, *_, loaded = exported
    rgb = Image.fromarray(np.stack([images[0]] * 3, axis=-1)).resize((56, 56))
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG")
    out = loaded.signatures[signatures.IMAGE_SIGNATURE](images=tf.constant([buffer.getvalue()]))
    assert out[signatures.PROBABILITIES].shape == (1, 10)


def test_imagenet_normalization_uses_the_fixed_constants():
    images = tf.constant(np.full((2, 4, 4, 3), 0.5, dtype=np.float32))
    normalized = preprocessing.standardize_imagenet(images).numpy()
    expected = (0.5 - np.array(preprocessing.IMAGENET_MEAN)) / np.array(preprocessing.IMAGENET_STD)
    np.testing.assert_allclose(normalized[0, 0, 0], expected, rtol=1e-6)


def test_imagenet_normalization_refuses_grayscale():
    with pytest.raises(ValueError, match="needs RGB images"):
        preprocessing.standardize_imagenet(tf.zeros((1, 28, 28, 1)))


def test_unknown_normalization_is_refused():
    png = tf.constant([[encode_png(np.zeros((28, 28), np.uint8))]])
    with pytest.raises(ValueError, match="normalization must be one of"):
        preprocessing.preprocessing_fn(
            {"image": png, "label": tf.constant([[0]], tf.int64)},
            {"image_shape": [28, 28, 1], "normalization": "zca"},
        )
