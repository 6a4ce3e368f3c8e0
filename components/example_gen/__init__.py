"""What visionpipe's two ExampleGens (IDX, CIFAR-10) share.

The component and executor base classes, the tf.Example layout, the
train/eval carving rule, the custom-config settings, and the file helpers and
error type of the readers. Deliberately empty: the readers and the CLI's
pre-flight import modules of this package before TensorFlow is loaded, so
importing the package itself must not pull in TFX or Beam.
"""
