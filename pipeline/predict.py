"""`visionpipe predict`: classify image files with a pushed SavedModel.

Uses the model's `serving_images` signature, so the files go through exactly
the decoding, resizing and TFT transform that serving clients get.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Sequence

from PIL import Image, UnidentifiedImageError

SAVED_MODEL_FILE = "saved_model.pb"
SUPPORTED_FORMATS = ("PNG", "JPEG")


class ModelNotFoundError(FileNotFoundError):
    pass


def _numbered_versions(folder: str) -> list[str]:
    """Version sub-folders (Pusher names them by timestamp) holding a SavedModel."""
    if not os.path.isdir(folder):
        return []
    versions = [
        name
        for name in os.listdir(folder)
        if name.isdigit() and os.path.isfile(os.path.join(folder, name, SAVED_MODEL_FILE))
    ]
    return [os.path.join(folder, name) for name in sorted(versions, key=int)]


def resolve_model_dir(model_dir: str) -> str:
    """Finds the newest SavedModel in a model dir, a pipeline push folder, or an output dir.

    Accepts `<output>/serving_model/<pipeline>/<version>` itself, its pipeline
    folder, `<output>/serving_model`, or `<output>`.
    """
    if os.path.isfile(os.path.join(model_dir, SAVED_MODEL_FILE)):
        return model_dir
    candidates = _numbered_versions(model_dir)
    for parent in (model_dir, os.path.join(model_dir, "serving_model")):
        if os.path.isdir(parent):
            for pipeline_folder in sorted(os.listdir(parent)):
                candidates += _numbered_versions(os.path.join(parent, pipeline_folder))
    if not candidates:
        raise ModelNotFoundError(f"{model_dir}: no SavedModel found (expected {SAVED_MODEL_FILE} or pushed version folders)")
    return max(candidates, key=lambda path: (int(os.path.basename(path)), path))


class BadImageError(ValueError):
    pass


def read_image(path: str) -> bytes:
    """The file's bytes, after checking (cheaply, with Pillow) that it is a PNG or JPEG."""
    try:
        with open(path, "rb") as handle:
            content = handle.read()
    except OSError as error:
        raise BadImageError(f"{path}: cannot read file ({error.strerror})") from error
    try:
        with Image.open(io.BytesIO(content)) as image:
            image_format = image.format
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise BadImageError(f"{path}: not a readable PNG/JPEG image ({error})") from error
    if image_format not in SUPPORTED_FORMATS:
        raise BadImageError(f"{path}: {image_format} images are not supported (use PNG or JPEG)")
    return content


def predict_files(model_dir: str, image_paths: Sequence[str]) -> int:
    """Prints `<file>: <class name> (class <id>, p=<probability>)` per image.

    Unreadable images are reported one line each and give exit code 1, but the
    readable ones are still classified.
    """
    try:
        resolved = resolve_model_dir(model_dir)
    except ModelNotFoundError as error:
        print(f"visionpipe: error: {error}", file=sys.stderr)
        return 1
    readable: list[tuple[str, bytes]] = []
    exit_code = 0
    for path in image_paths:
        try:
            readable.append((path, read_image(path)))
        except BadImageError as error:
            print(f"visionpipe: error: {error}", file=sys.stderr)
            exit_code = 1
    if not readable:
        return exit_code

    import tensorflow as tf  # heavy; only after the cheap checks

    from trainer_module import signatures

    classify = tf.saved_model.load(resolved).signatures[signatures.IMAGE_SIGNATURE]
    outputs = classify(images=tf.constant([content for _, content in readable]))
    print(f"model: {resolved}")
    for row, (path, _) in enumerate(readable):
        class_id = int(outputs[signatures.CLASS_IDS][row])
        name = outputs[signatures.CLASS_NAMES][row].numpy().decode()
        probability = float(outputs[signatures.PROBABILITIES][row][class_id])
        print(f"{path}: {name} (class {class_id}, p={probability:.3f})")
    return exit_code
