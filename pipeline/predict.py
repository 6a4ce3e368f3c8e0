"""`visionpipe predict`: classify image files with a pushed SavedModel.

Uses the model's `serving_images` signature, so the files go through exactly
the decoding, resizing and TFT transform that serving clients get.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

SAVED_MODEL_FILE = "saved_model.pb"


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


def read_images(paths: Sequence[str]) -> list[bytes]:
    contents = []
    for path in paths:
        try:
            with open(path, "rb") as handle:
                contents.append(handle.read())
        except OSError as error:
            raise ModelNotFoundError(f"{path}: cannot read image ({error.strerror})") from error
    return contents


def predict_files(model_dir: str, image_paths: Sequence[str]) -> int:
    """Prints `<file>: <class name> (p=<probability>)` per image; returns the exit code."""
    try:
        resolved = resolve_model_dir(model_dir)
        contents = read_images(image_paths)
    except ModelNotFoundError as error:
        print(f"visionpipe: error: {error}", file=sys.stderr)
        return 1

    import tensorflow as tf  # heavy; only after the cheap checks

    from trainer_module import serving

    model = tf.saved_model.load(resolved)
    classify = model.signatures[serving.IMAGE_SIGNATURE]
    print(f"model: {resolved}")
    exit_code = 0
    for path, content in zip(image_paths, contents):
        try:
            outputs = classify(images=tf.constant([content]))
        except tf.errors.InvalidArgumentError as error:
            first_line = (error.message or str(error)).splitlines()[0]
            print(f"visionpipe: error: {path}: not a decodable PNG/JPEG image ({first_line})", file=sys.stderr)
            exit_code = 1
            continue
        class_id = int(outputs[serving.CLASS_IDS][0])
        name = outputs[serving.CLASS_NAMES][0].numpy().decode()
        probability = float(outputs[serving.PROBABILITIES][0][class_id])
        print(f"{path}: {name} (class {class_id}, p={probability:.3f})")
    return exit_code
