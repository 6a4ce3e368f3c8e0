"""The exported SavedModel: two signatures that both apply the TFT transform in-graph.

* `serving_default`: serialized tf.Examples (the raw ExampleGen layout) -> the
  signature TF Serving's predict API and TFMA use.
* `serving_images`: raw encoded PNG/JPEG bytes -> what an application holding an
  image file wants. Images are decoded, converted to the model's channel count,
  resized to its input size if needed, re-encoded as PNG and then fed through the
  very same transform graph, so no preprocessing is duplicated by hand.

The model is Keras 3 while tf.Transform's layer is tf_keras (Keras 2), so the
export is a plain `tf.Module` holding both, not a Keras model.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf
import tensorflow_transform as tft

from trainer_module import features

PROBABILITIES = "probabilities"
CLASS_IDS = "class_ids"
CLASS_NAMES = "class_names"
IMAGE_SIGNATURE = "serving_images"
EXAMPLE_SIGNATURE = "serving_default"


class ServingModule(tf.Module):
    """Raw input -> TFT transform -> Keras model -> probabilities, ids and names."""

    def __init__(
        self,
        model: keras.Model,
        tf_transform_output: tft.TFTransformOutput,
        class_names: Sequence[str],
        image_shape: tuple[int, int, int],
    ) -> None:
        super().__init__(name="visionpipe_serving")
        self.model = model
        # Keras 3 keeps random-layer seed states (augmentation, dropout) outside
        # what tf.Module tracking sees through `model`; listing every variable
        # makes them reachable so tf.saved_model.save can serialize the graph.
        self.model_variables = list(model.variables)
        self.tft_layer = tf_transform_output.transform_features_layer()
        self._class_names = tf.constant(list(class_names))
        self._image_shape = tuple(image_shape)
        raw_spec = tf_transform_output.raw_feature_spec()
        self._example_spec = {
            key: spec for key, spec in raw_spec.items() if key == features.IMAGE_KEY
        }

    def _predict_raw(self, raw_features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        transformed = self.tft_layer(raw_features)
        probabilities = tf.cast(
            self.model({features.TRANSFORMED_IMAGE_KEY: transformed[features.TRANSFORMED_IMAGE_KEY]}, training=False),
            tf.float32,
        )
        class_ids = tf.argmax(probabilities, axis=-1)
        return {
            PROBABILITIES: probabilities,
            CLASS_IDS: class_ids,
            CLASS_NAMES: tf.gather(self._class_names, class_ids),
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(self, serialized_examples: tf.Tensor) -> dict[str, tf.Tensor]:
        raw = tf.io.parse_example(serialized_examples, self._example_spec)
        return self._predict_raw(raw)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def serve_images(self, encoded_images: tf.Tensor) -> dict[str, tf.Tensor]:
        pngs = tf.map_fn(
            self._to_model_png, encoded_images, fn_output_signature=tf.string
        )
        return self._predict_raw({features.IMAGE_KEY: tf.reshape(pngs, [-1, 1])})

    def _to_model_png(self, encoded: tf.Tensor) -> tf.Tensor:
        """Any PNG/JPEG -> PNG of the model's height, width and channel count."""
        height, width, channels = self._image_shape
        image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
        image = tf.image.resize(image, [height, width], method="area")
        image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
        return tf.io.encode_png(image)


def export_serving_model(module: ServingModule, export_dir: str) -> None:
    """Writes the SavedModel with both signatures."""
    tf.saved_model.save(
        module,
        export_dir,
        signatures={
            EXAMPLE_SIGNATURE: module.serve_examples.get_concrete_function(),
            IMAGE_SIGNATURE: module.serve_images.get_concrete_function(),
        },
    )
