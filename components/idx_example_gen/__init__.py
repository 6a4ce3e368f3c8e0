"""ExampleGen for MNIST-format IDX files; the reader (idx_format) is importable without TensorFlow."""
