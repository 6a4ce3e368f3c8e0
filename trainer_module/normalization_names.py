"""Names of the image normalizations the Transform offers (TF-free, for the CLI)."""

COMPUTED = "computed"  # per-channel tft.mean / tft.var over the training split (default)
IMAGENET = "imagenet"  # the fixed ImageNet RGB mean/std the CIFAR seeds used
NORMALIZATIONS = (COMPUTED, IMAGENET)
