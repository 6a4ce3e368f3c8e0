"""Names of the models in the zoo, importable without TensorFlow (for the CLI)."""

TUTORIAL_CNN = "tutorial_cnn"
DEEP_CNN = "deep_cnn"
# CIFAR-10 (32x32x3) models, see trainer_module.cifar_models.
LENET5 = "lenet5"
MOBILENET_V2 = "mobilenet_v2"
RESNET9 = "resnet9"
MODEL_NAMES: tuple[str, ...] = (TUTORIAL_CNN, DEEP_CNN, LENET5, MOBILENET_V2, RESNET9)
