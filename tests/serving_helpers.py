"""Real tf.Transform outputs, trained and exported zoo models, and the export that TF Serving cannot load.

Shared by the export tests (test_transform_and_serving), the serving-check
tests (test_serving_check) and the end-to-end run (test_end_to_end).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any
from collections.abc import Sequence

import apache_beam as beam
import keras
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from components.example_gen.image_examples import encode_png, make_example
from components.serving_check.serving_requests import TestExample, parse_test_example
from tests.conftest import synthetic_digits
from trainer_module import features, models, preprocessing, serving

CLASS_NAMES = tuple(f"class-{i}" for i in range(10))
RAW_SPEC = {
    "image": tf.io.FixedLenFeature([1], tf.string),
    "label": tf.io.FixedLenFeature([1], tf.int64),
    "example_id": tf.io.FixedLenFeature([1], tf.string),
}


def synthetic_images(count: int, seed: int, image_shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The learnable bars of conftest.synthetic_digits at `image_shape` ([N, H, W] for one channel)."""
    height, _, channels = image_shape
    images, labels = synthetic_digits(count, seed=seed, image_size=height)
    return (images if channels == 1 else np.stack([images] * channels, axis=-1)), labels


def write_transform_output(root: str, images: np.ndarray, labels: np.ndarray, image_shape: tuple[int, int, int]) -> str:
    """Runs tf.Transform's AnalyzeDataset (Beam) on the images; returns the transform output dir."""
    raw = [
        {"image": [encode_png(image)], "label": [int(label)], "example_id": [b"x"]}
        for image, label in zip(images, labels)
    ]
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(RAW_SPEC))
    transform_dir = os.path.join(root, "transform_output")
    preprocessing_fn = functools.partial(
        preprocessing.preprocessing_fn, custom_config={"image_shape": list(image_shape)}
    )
    with beam.Pipeline() as pipeline, tft_beam.Context(temp_dir=os.path.join(root, "tmp")):
        raw_data = pipeline | beam.Create(raw)
        transform_fn = (raw_data, metadata) | tft_beam.AnalyzeDataset(preprocessing_fn)
        _ = transform_fn | tft_beam.WriteTransformFn(transform_dir)
        # The raw schema, as TFX's Transform writes it, for raw_feature_spec().
        _ = metadata | tft_beam.WriteMetadata(
            os.path.join(transform_dir, tft.TFTransformOutput.RAW_METADATA_DIR), pipeline
        )
    return transform_dir


def transformed_images(transform_dir: str, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The images through the saved transform graph, exactly as the Trainer sees them."""
    output = tft.TFTransformOutput(transform_dir).transform_raw_features(
        {
            "image": tf.constant([[encode_png(image)] for image in images]),
            "label": tf.constant([[int(label)] for label in labels], dtype=tf.int64),
        }
    )
    return output[features.TRANSFORMED_IMAGE_KEY].numpy()


def trained_model(
    name: str, image_shape: tuple[int, int, int], transform_dir: str, images: np.ndarray, labels: np.ndarray
) -> keras.Model:
    """The zoo model `name`, fitted for one epoch (batches of 20) on the transformed images."""
    model = models.build_model(name, image_shape, len(CLASS_NAMES))
    x = transformed_images(transform_dir, images, labels)
    model.fit(x, np.asarray(labels, dtype=np.int64), epochs=1, batch_size=20, verbose=0)
    return model


def as_test_examples(images: np.ndarray, labels: np.ndarray) -> list[TestExample]:
    """The images as ExampleGen's test-split tf.Examples."""
    return [
        parse_test_example(make_example(encode_png(image), int(label), f"test-{i}", CLASS_NAMES[label]).SerializeToString())
        for i, (image, label) in enumerate(zip(images, labels))
    ]


def export(model: keras.Model, transform_dir: str, image_shape: tuple[int, int, int], export_dir: str) -> str:
    serving.export_serving_model(model, tft.TFTransformOutput(transform_dir), CLASS_NAMES, image_shape, export_dir)
    return export_dir


def trained_export(root: str, seed: int, image_shape: tuple[int, int, int], model_name: str) -> str:
    """A real export of `model_name`, trained for one epoch on 40 synthetic images, under `root`/export."""
    images, labels = synthetic_images(40, seed=seed, image_shape=image_shape)
    transform_dir = write_transform_output(root, images, labels, image_shape)
    model = trained_model(model_name, image_shape, transform_dir, images, labels)
    return export(model, transform_dir, image_shape, os.path.join(root, "export"))


class KerasTrackingModule(tf.Module):
    """The export as it was before issue 12: the module tracks the Keras 3 model and its variables.

    tf.saved_model.load runs it; TF Serving's session loader restores only the
    wrappers' copies, so every signature fails with "Could not find variable".
    Kept here, in the tests, as the deliberately unservable model.
    """

    def __init__(self, model: keras.Model, transform_output: tft.TFTransformOutput, class_names: Sequence[str]):
        super().__init__(name="visionpipe_serving")
        self.model = model
        self.model_variables = list(model.variables)
        self.tft_layer = transform_output.transform_features_layer()
        self._class_names = tf.constant(list(class_names))
        self._spec = {features.IMAGE_KEY: transform_output.raw_feature_spec()[features.IMAGE_KEY]}

    def _predict(self, pngs: tf.Tensor) -> dict[str, tf.Tensor]:
        transformed = self.tft_layer({features.IMAGE_KEY: pngs})
        probabilities = self.model(
            {features.TRANSFORMED_IMAGE_KEY: transformed[features.TRANSFORMED_IMAGE_KEY]}, training=False
        )
        class_ids = tf.argmax(probabilities, axis=-1)
        return {"probabilities": probabilities, "class_ids": class_ids, "class_names": tf.gather(self._class_names, class_ids)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._predict(tf.io.parse_example(examples, self._spec)[features.IMAGE_KEY])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def serve_images(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._predict(tf.reshape(images, [-1, 1]))


def keras_tracking_export(
    model: keras.Model, transform_output: tft.TFTransformOutput, class_names: Sequence[str],
    image_shape: tuple[int, int, int], export_dir: str, *, test_time_flip: bool = False,
) -> None:
    """Drop-in for serving.export_serving_model that writes the unservable pre-issue-12 export."""
    del image_shape  # the old image signature took PNGs of the model's size only; enough here
    assert not test_time_flip, "the pre-issue-12 export had no mirror averaging; use it for MNIST"
    module = KerasTrackingModule(model, transform_output, class_names)
    tf.saved_model.save(
        module,
        export_dir,
        signatures={
            "serving_default": module.serve_examples.get_concrete_function(),
            "serving_images": module.serve_images.get_concrete_function(),
        },
    )


def saved_model_cli_run(model_dir: str, signature: str, input_key: str, values: Sequence[bytes], out_dir: str) -> dict[str, np.ndarray]:
    """`saved_model_cli run` (TensorFlow's CLI, the session loader) as a subprocess; its outputs by alias."""
    import subprocess
    import sys

    os.makedirs(out_dir, exist_ok=True)
    inputs = os.path.join(out_dir, f"{input_key}.npy")
    np.save(inputs, np.array(list(values), dtype=object), allow_pickle=True)
    saved_model_cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    result = subprocess.run(
        [saved_model_cli, "run", "--dir", model_dir, "--tag_set", "serve", "--signature_def", signature,
         "--inputs", f"{input_key}={inputs}", "--outdir", out_dir, "--overwrite"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return {
        name[: -len(".npy")]: np.load(os.path.join(out_dir, name), allow_pickle=True)
        for name in os.listdir(out_dir)
        if name.endswith(".npy") and name != f"{input_key}.npy"
    }


def predict_fresh_digits(model_dir: str, folder: Path, capsys: Any) -> tuple[list[int], list[int], list[str]]:
    """`visionpipe predict` on ten fresh synthetic digits (every class once) written as PNGs into `folder`.

    Returns the predicted classes, the true labels and predict's lines for them.
    """
    from pipeline.cli import main as cli
    from tests.conftest import synthetic_digits

    images, labels = synthetic_digits(10, seed=8)
    paths = []
    for index, image in enumerate(images):
        path = folder / f"digit{index}.png"
        path.write_bytes(encode_png(image))
        paths.append(str(path))
    capsys.readouterr()
    assert cli.main(["predict", "--model-dir", model_dir, *paths]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith(str(folder))]
    predicted = [int(line.split("(class ")[1].split(",")[0]) for line in lines]
    return predicted, [int(label) for label in labels], lines
