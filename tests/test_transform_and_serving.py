"""preprocessing_fn under real tf.Transform (Beam), and the three serving signatures through TF2."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from PIL import Image

from components.example_gen.image_examples import encode_png, make_example
from tests import serving_helpers
from tests.conftest import synthetic_digits
from trainer_module import preprocessing, serving, signatures

IMAGE_SHAPE = (28, 28, 1)
CLASS_NAMES = serving_helpers.CLASS_NAMES


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    """Runs AnalyzeDataset on 40 synthetic images; returns (images, labels, transformed rows, output dir)."""
    images, labels = synthetic_digits(40, seed=3)
    transform_dir = serving_helpers.write_transform_output(str(tmp_path_factory.mktemp("tft")), images, labels, IMAGE_SHAPE)
    # Apply the saved transform graph, exactly as the Trainer and serving do.
    x = serving_helpers.transformed_images(transform_dir, images, labels)
    return images, labels, [{"image_xf": x[i], "label": labels[i]} for i in range(len(images))], transform_dir


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
    model = serving_helpers.trained_model(request.param, IMAGE_SHAPE, transform_dir, images, labels)
    x = np.stack([row["image_xf"] for row in rows]).astype(np.float32)
    export_dir = serving_helpers.export(model, transform_dir, IMAGE_SHAPE, str(tmp_path_factory.mktemp("export") / "model"))
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


def _encoded(array: np.ndarray, mode: str | None = None, format: str = "PNG") -> bytes:
    image = Image.fromarray(array)
    buffer = io.BytesIO()
    (image.convert(mode) if mode else image).save(buffer, format=format)
    return buffer.getvalue()


def test_only_pngs_of_the_models_geometry_skip_the_re_encoding():
    functions = serving.ServingFunctions(
        model=None, transform_layer=None, class_names=CLASS_NAMES, image_shape=IMAGE_SHAPE,
        raw_feature_spec={"image": tf.io.FixedLenFeature([1], tf.string)},
    )
    gray = np.zeros((28, 28), np.uint8)
    cases = {
        "28x28 greyscale PNG": (encode_png(gray), True),
        "28x28 RGB PNG": (_encoded(gray, "RGB"), False),
        "28x28 greyscale+alpha PNG": (_encoded(gray, "LA"), False),
        "28x28 16-bit PNG": (_encoded(gray.astype(np.uint16) * 257, "I;16"), False),
        "29x28 greyscale PNG": (encode_png(np.zeros((28, 29), np.uint8)), False),
        "28x28 JPEG": (_encoded(gray, format="JPEG"), False),
        "PNG signature only": (b"\x89PNG\r\n\x1a\n", False),
        "empty": (b"", False),
    }
    for name, (encoded, expected) in cases.items():
        assert bool(functions.is_model_png(tf.constant(encoded))) is expected, name
    batch = [encoded for encoded, _ in cases.values()]
    assert functions.is_model_png(tf.constant(batch)).numpy().tolist() == [expected for _, expected in cases.values()]


def test_image_signature_answers_the_same_whether_it_re_encodes_or_not(exported):
    images, *_, loaded = exported
    as_is = [encode_png(image) for image in images[:3]]  # a batch of model PNGs passes through
    with_alpha = _encoded(images[0], "LA")  # decoded, alpha dropped, re-encoded: the same pixels
    classify = loaded.signatures[signatures.IMAGE_SIGNATURE]
    passed = classify(images=tf.constant(as_is))[signatures.PROBABILITIES].numpy()
    mixed = classify(images=tf.constant([with_alpha, *as_is[1:]]))[signatures.PROBABILITIES].numpy()  # converted
    np.testing.assert_allclose(passed, mixed, atol=1e-6)


def test_test_time_flip_averages_each_image_with_its_mirror_image_in_every_signature(transformed, tmp_path):
    """The served probabilities are the mean of the model's on the image and on its mirror image,
    through the session loader (saved_model_cli) as well as TF2's."""
    images, labels, _, transform_dir = transformed
    model = serving_helpers.trained_model("tutorial_cnn", IMAGE_SHAPE, transform_dir, images, labels)
    flipped_export = str(tmp_path / "flipped")
    serving.export_serving_model(
        model, tft.TFTransformOutput(transform_dir), CLASS_NAMES, IMAGE_SHAPE, flipped_export, test_time_flip=True
    )
    x = serving_helpers.transformed_images(transform_dir, images[:6], labels[:6])
    expected = (model.predict(x, verbose=0) + model.predict(x[:, :, ::-1], verbose=0)) / 2
    assert not np.allclose(expected, model.predict(x, verbose=0), atol=1e-3)  # digits are not mirror-symmetric

    loaded = tf.saved_model.load(flipped_export)
    pngs = [encode_png(image) for image in images[:6]]
    examples = [make_example(png, 0, "x", "0").SerializeToString() for png in pngs]
    served = {
        signatures.IMAGE_SIGNATURE: loaded.signatures[signatures.IMAGE_SIGNATURE](images=tf.constant(pngs))[signatures.PROBABILITIES],
        signatures.EXAMPLE_SIGNATURE: loaded.signatures[signatures.EXAMPLE_SIGNATURE](examples=tf.constant(examples))[signatures.PROBABILITIES],
        signatures.CLASSIFY_SIGNATURE: loaded.signatures[signatures.CLASSIFY_SIGNATURE](inputs=tf.constant(examples))[signatures.CLASSIFY_SCORES],
    }
    for name, probabilities in served.items():
        np.testing.assert_allclose(probabilities.numpy(), expected, atol=1e-5, err_msg=name)
    by_session = serving_helpers.saved_model_cli_run(
        flipped_export, signatures.IMAGE_SIGNATURE, "images", pngs, str(tmp_path / "cli")
    )
    np.testing.assert_allclose(by_session[signatures.PROBABILITIES], expected, atol=1e-5)
