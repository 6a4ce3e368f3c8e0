"""ExampleGen for CIFAR-10 in any of its three on-disk forms (see cifar_format/); the reader imports without TensorFlow."""
