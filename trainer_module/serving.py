"""The exported SavedModel: three signatures that apply the TFT transform in-graph.

* `serving_default`: serialized tf.Examples (the raw ExampleGen layout) ->
  probabilities, class ids and names: TF Serving's Predict API; TFMA uses it.
* `serving_images`: raw encoded PNG/JPEG bytes -> the same outputs, for an
  application holding image files. Images are decoded, converted to the
  model's channel count, resized to its input size if needed and fed through
  the very same transform graph, so no preprocessing is duplicated by hand.
* `classify`: serialized tf.Examples -> `classes` and `scores`, with TF
  Serving's classification method name, for the Classify API and `:classify`.

With `test_time_flip` every signature averages the probabilities of each
image and of its mirror image (one model call on both halves of a doubled
batch): for mirror-symmetric classes such as clothing, two views of the same
item vote, which raised deep_cnn's Fashion-MNIST test accuracy by 0.2-0.3
points at twice the inference cost (README, "Precision and mirror averaging").

The names and the contract live in trainer_module.signatures.

Why the export is built the way it is (as TF 2.21 / Keras 3.15 behave):
the model is Keras 3 while tf.Transform's layer is tf_keras (Keras 2), so the
export is a plain `tf.Module`, not a Keras model. That module must not track
the Keras model itself: a Keras 3 variable is a wrapper around a `tf.Variable`,
and `tf.saved_model.save` writes the wrapper as a *second* variable beside the
one the traced functions read. TF2's loader copes, but TF Serving's C++ loader
(like `tf.compat.v1.saved_model.loader.load` and `saved_model_cli run`) only
restores the wrapper copies through the saver, and every signature then fails
with "Could not find variable ..." (keras-team/keras#20095,
tensorflow/serving#2226). So the module tracks exactly the plain `tf.Variable`s
that the traced signatures capture, nothing else: every variable a signature
reads is saved once and restored by the saver. `keras.export.ExportArchive`
also loads in a session, but it tracks the wrappers as well and so writes every
weight twice (twice the variables on disk), which TF
Serving would then restore and hold twice; it also has no place for the tf_keras
transform layer's own resources.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import keras
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.saved_model import fingerprinting_utils

from trainer_module import features
from trainer_module.signatures import (
    CLASS_IDS,
    CLASS_NAMES,
    CLASSIFY_CLASSES,
    CLASSIFY_INPUT,
    CLASSIFY_SCORES,
    CLASSIFY_SIGNATURE,
    EXAMPLE_INPUT,
    EXAMPLE_SIGNATURE,
    IMAGE_INPUT,
    IMAGE_SIGNATURE,
    METHOD_NAMES,
    PROBABILITIES,
)

SAVED_MODEL_FILE = "saved_model.pb"
# The first 26 bytes of a PNG: the 8-byte signature, the IHDR chunk's length
# (always 13) and type, width, height, bit depth and colour type (PNG spec, 11.2.2).
_PNG_HEADER_BYTES = 26
_PNG_HEADER_PADDING = b"\0" * _PNG_HEADER_BYTES  # so that shorter input still yields 26 bytes
_PNG_SIGNATURE_AND_IHDR = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
_PNG_COLOUR_TYPES = {1: 0, 3: 2}  # channels -> colour type: greyscale, truecolour (no alpha, no palette)
_BIG_ENDIAN_WEIGHTS = (1 << 24, 1 << 16, 1 << 8, 1)


class ServingFunctions:
    """Raw input -> TFT transform -> Keras model -> outputs, for each signature.

    Plain Python on purpose (not a tf.Module): nothing in here is saved except
    what the traced functions capture; see the module docstring.
    """

    def __init__(
        self,
        model: keras.Model,
        transform_layer: tf.Module,
        class_names: Sequence[str],
        image_shape: tuple[int, int, int],
        raw_feature_spec: dict[str, tf.io.FixedLenFeature],
        test_time_flip: bool = False,
    ) -> None:
        self._model = model
        self._test_time_flip = test_time_flip
        self._transform_layer = transform_layer
        self._class_names = tf.constant(list(class_names))
        self._image_shape = tuple(image_shape)
        self._example_spec = {features.IMAGE_KEY: raw_feature_spec[features.IMAGE_KEY]}

    def _probabilities(self, raw_features: dict[str, tf.Tensor]) -> tf.Tensor:
        images = self._transform_layer(raw_features)[features.TRANSFORMED_IMAGE_KEY]
        if not self._test_time_flip:
            return self._model_probabilities(images)
        both = self._model_probabilities(tf.concat([images, tf.image.flip_left_right(images)], axis=0))
        as_is, mirrored = tf.split(both, 2, axis=0)
        return (as_is + mirrored) / 2.0

    def _model_probabilities(self, images: tf.Tensor) -> tf.Tensor:
        return tf.cast(self._model({features.TRANSFORMED_IMAGE_KEY: images}, training=False), tf.float32)

    def _predictions(self, raw_features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        probabilities = self._probabilities(raw_features)
        class_ids = tf.argmax(probabilities, axis=-1)
        return {
            PROBABILITIES: probabilities,
            CLASS_IDS: class_ids,
            CLASS_NAMES: tf.gather(self._class_names, class_ids),
        }

    def _parse(self, serialized_examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return tf.io.parse_example(serialized_examples, self._example_spec)

    def serve_examples(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._predictions(self._parse(examples))

    def serve_images(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._predictions({features.IMAGE_KEY: tf.reshape(self._as_model_pngs(images), [-1, 1])})

    def classify(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        scores = self._probabilities(self._parse(inputs))
        classes = tf.tile(self._class_names[tf.newaxis, :], [tf.shape(scores)[0], 1])
        return {CLASSIFY_CLASSES: classes, CLASSIFY_SCORES: scores}

    def _as_model_pngs(self, images: tf.Tensor) -> tf.Tensor:
        """[N] images -> [N] PNGs that the transform graph takes: the batch as it is when it already is.

        The transform graph decodes PNGs of the model's geometry. When every
        image of the request already is one (what the test split holds, and
        what clients of a 28x28 or 32x32 model usually send), the batch goes
        through untouched: one vectorized header check instead of a per-image
        decode, resize and re-encode in a tf.map_fn, which made the signature
        measurably slower for identical pixels (README, "Serving speed";
        bench/serving_speed.py). Any other request is converted image by image.
        """
        return tf.cond(
            tf.reduce_all(self.is_model_png(images)),
            lambda: images,
            lambda: tf.map_fn(self._to_model_png, images, fn_output_signature=tf.string),
        )

    def is_model_png(self, encoded: tf.Tensor) -> tf.Tensor:
        """Per image: PNG signature and IHDR: width, height (big-endian), bit depth 8, our channels' colour type."""
        height, width, channels = self._image_shape
        header = tf.strings.substr(tf.strings.join([encoded, _PNG_HEADER_PADDING]), 0, _PNG_HEADER_BYTES)
        octets = tf.cast(tf.io.decode_raw(header, tf.uint8), tf.int64)  # [..., 26]
        # Bytes 16-19 and 20-23 as two big-endian integers: [..., 2] = (width, height).
        size = tf.reduce_sum(
            tf.reshape(octets[..., 16:24], tf.concat([tf.shape(octets)[:-1], [2, 4]], 0)) * _BIG_ENDIAN_WEIGHTS, axis=-1
        )
        return tf.reduce_all(
            tf.stack(
                [
                    tf.strings.substr(header, 0, 16) == _PNG_SIGNATURE_AND_IHDR,
                    size[..., 0] == width,
                    size[..., 1] == height,
                    octets[..., 24] == 8,
                    octets[..., 25] == _PNG_COLOUR_TYPES.get(channels, -1),
                ],
                axis=-1,
            ),
            axis=-1,
        )

    def _to_model_png(self, encoded: tf.Tensor) -> tf.Tensor:
        """Any PNG/JPEG -> PNG of the model's height, width and channel count."""
        height, width, channels = self._image_shape
        image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
        image = tf.image.resize(image, [height, width], method="area")
        image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
        return tf.io.encode_png(image)

    def concrete_functions(self) -> dict[str, tf.types.experimental.ConcreteFunction]:
        """Signature name -> the traced function (the input's key is the argument's name)."""
        strings = tf.TensorSpec([None], tf.string)
        return {
            EXAMPLE_SIGNATURE: tf.function(self.serve_examples).get_concrete_function(
                tf.TensorSpec.from_spec(strings, name=EXAMPLE_INPUT)
            ),
            IMAGE_SIGNATURE: tf.function(self.serve_images).get_concrete_function(
                tf.TensorSpec.from_spec(strings, name=IMAGE_INPUT)
            ),
            CLASSIFY_SIGNATURE: tf.function(self.classify).get_concrete_function(
                tf.TensorSpec.from_spec(strings, name=CLASSIFY_INPUT)
            ),
        }


def variables_read_by(functions: Iterable[tf.types.experimental.ConcreteFunction]) -> list[tf.Variable]:
    """The plain tf.Variables the traced functions capture, each once, in a stable order."""
    seen: dict[int, tf.Variable] = {}
    for function in functions:
        for variable in function.variables:
            seen.setdefault(id(variable), variable)
    return list(seen.values())


def set_method_names(export_dir: str, method_names: dict[str, str]) -> None:
    """Gives signatures their TF Serving method names in the written SavedModel.

    TF2's `tf.saved_model.save` writes every signature with the Predict method
    (it hard-codes PREDICT_METHOD_NAME) and has no option for another, while TF
    Serving's Classify API refuses a signature whose method_name is not
    `tensorflow/serving/classify`. So the one field is set in the MetaGraphDef
    after saving; TF2's loader ignores it. The file is replaced atomically and
    its fingerprint (a checksum of saved_model.pb) is written anew.
    """
    path = f"{export_dir}/{SAVED_MODEL_FILE}"
    saved_model = saved_model_pb2.SavedModel.FromString(tf.io.gfile.GFile(path, "rb").read())
    for meta_graph in saved_model.meta_graphs:
        for name, method_name in method_names.items():
            if name in meta_graph.signature_def:
                meta_graph.signature_def[name].method_name = method_name
    temporary = f"{path}.tmp"
    with tf.io.gfile.GFile(temporary, "wb") as handle:
        handle.write(saved_model.SerializeToString(deterministic=True))
    tf.io.gfile.rename(temporary, path, overwrite=True)
    fingerprinting_utils.write_fingerprint(export_dir)


def export_serving_model(
    model: keras.Model,
    tf_transform_output: tft.TFTransformOutput,
    class_names: Sequence[str],
    image_shape: tuple[int, int, int],
    export_dir: str,
    *,
    test_time_flip: bool = False,
) -> None:
    """Writes the SavedModel with its three signatures (see the module docstring)."""
    transform_layer = tf_transform_output.transform_features_layer()
    functions = ServingFunctions(
        model, transform_layer, class_names, image_shape, tf_transform_output.raw_feature_spec(), test_time_flip
    ).concrete_functions()
    root = tf.Module(name="visionpipe_serving")
    root.transform_layer = transform_layer  # its tables and assets, as tf.Transform asks
    root.signature_variables = variables_read_by(functions.values())
    tf.saved_model.save(root, export_dir, signatures=functions)
    set_method_names(export_dir, METHOD_NAMES)
