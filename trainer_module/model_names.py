"""The model zoo's registry: each model's name and where its builder lives, without TensorFlow.

One list, owned here. The CLI offers ``MODEL_NAMES`` as ``--model`` choices
while it parses arguments, before TensorFlow is imported, so this module
imports nothing. ``trainer_module.models.build_model`` imports a builder from
its path only when that model is built. Adding a model is one entry in
``BUILDER_PATHS``: no second list exists that could disagree with it.
"""

TUTORIAL_CNN = "tutorial_cnn"
DEEP_CNN = "deep_cnn"
LENET5 = "lenet5"
MOBILENET_V2 = "mobilenet_v2"
RESNET9 = "resnet9"

_MNIST_MODELS = "trainer_module.models.mnist_models"  # 28x28x1 (MNIST-format) networks
_CIFAR_MODELS = "trainer_module.models.cifar_models"  # 32x32x3 (CIFAR-10) networks

# Model name -> "module:function" of its builder,
# called as ``builder(inputs, num_classes, hparams) -> probabilities``.
BUILDER_PATHS: dict[str, str] = {
    TUTORIAL_CNN: f"{_MNIST_MODELS}:tutorial_cnn",
    DEEP_CNN: f"{_MNIST_MODELS}:deep_cnn",
    LENET5: f"{_CIFAR_MODELS}:lenet5",
    MOBILENET_V2: f"{_CIFAR_MODELS}:mobilenet_v2",
    RESNET9: f"{_CIFAR_MODELS}:resnet9",
}
MODEL_NAMES: tuple[str, ...] = tuple(BUILDER_PATHS)


def check_model_name(name: str) -> str:
    """``name`` if the zoo has it; otherwise a ValueError that lists the valid names."""
    if name not in BUILDER_PATHS:
        raise ValueError(f"Unknown model name {name!r}; valid names: {', '.join(MODEL_NAMES)}")
    return name
