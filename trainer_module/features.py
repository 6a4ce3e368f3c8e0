"""Feature names shared by ExampleGen, Transform, Trainer, serving and TFMA."""

IMAGE_KEY = "image"  # raw: encoded PNG bytes
LABEL_KEY = "label"  # raw and transformed: int64 class id
EXAMPLE_ID_KEY = "example_id"  # raw: stable id such as b"train-000042"
TRANSFORMED_IMAGE_KEY = "image_xf"  # transformed: standardized float32 [H, W, C]
CLASS_NAME_KEY = "class_name"  # raw: the label's name, e.g. b"Coat"; for slices and reports
