"""Names of the models in the zoo, importable without TensorFlow (for the CLI)."""

TUTORIAL_CNN = "tutorial_cnn"
DEEP_CNN = "deep_cnn"
MODEL_NAMES: tuple[str, ...] = (TUTORIAL_CNN, DEEP_CNN)
