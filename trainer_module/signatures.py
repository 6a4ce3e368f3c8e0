"""The exported model's serving contract: signature names, their inputs and outputs.

One owner for the names that the exporter (trainer_module.serving), the serving
gate and `visionpipe serve-check` (components.serving_check), `predict`, the
report and TFMA use. What TF Serving itself fixes (the classification aliases,
the method names, the tag, the warm-up location) is taken from TensorFlow's
own constants, not retyped.

The classification signature follows TensorFlow Serving's Classify API
(tensorflow_serving/servables/tensorflow/classifier.cc): method name
`tensorflow/serving/classify`, exactly one input called `inputs` (serialized
tf.Examples) and the outputs `classes` (DT_STRING) and `scores` (DT_FLOAT),
both [batch, num_classes], classes in class-id order.
"""

import tensorflow as tf

# serving_default: serialized tf.Examples (ExampleGen's layout) -> predictions.
# TFMA evaluates through it; TF Serving's Predict API and `:predict` REST verb.
EXAMPLE_SIGNATURE = tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
EXAMPLE_INPUT = "examples"

# serving_images: encoded PNG/JPEG bytes of any size -> predictions.
IMAGE_SIGNATURE = "serving_images"
IMAGE_INPUT = "images"

# Outputs of both predict signatures.
PROBABILITIES = "probabilities"  # float32 [batch, num_classes], rows sum to 1
CLASS_IDS = "class_ids"  # int64 [batch], the arg-max
CLASS_NAMES = "class_names"  # string [batch], the arg-max's name

# classify: TF Serving's Classify API and `:classify` REST verb.
CLASSIFY_SIGNATURE = "classify"
CLASSIFY_INPUT = tf.saved_model.CLASSIFY_INPUTS
CLASSIFY_CLASSES = tf.saved_model.CLASSIFY_OUTPUT_CLASSES
CLASSIFY_SCORES = tf.saved_model.CLASSIFY_OUTPUT_SCORES

METHOD_NAMES = {
    EXAMPLE_SIGNATURE: tf.saved_model.PREDICT_METHOD_NAME,
    IMAGE_SIGNATURE: tf.saved_model.PREDICT_METHOD_NAME,
    CLASSIFY_SIGNATURE: tf.saved_model.CLASSIFY_METHOD_NAME,
}

INPUT_KEYS = {EXAMPLE_SIGNATURE: EXAMPLE_INPUT, IMAGE_SIGNATURE: IMAGE_INPUT, CLASSIFY_SIGNATURE: CLASSIFY_INPUT}
