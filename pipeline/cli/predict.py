"""`visionpipe predict`: classify image files with a pushed SavedModel.

Uses the model's `serving_images` signature, so the files go through exactly
the decoding, resizing and TFT transform that serving clients get.

A bad file costs one line (`visionpipe: error: <file>: <problem>`) and exit
code 1, never the other files' predictions:

* Before TensorFlow is even imported, Pillow opens each file (PNG or JPEG
  only), compares its pixel count from the header with what TensorFlow's
  decoder accepts, verifies the chunks' checksums and decodes it: unreadable,
  damaged and oversized files stop here.
* A file that Pillow reads but the model's decoder refuses (a CMYK JPEG for a
  grayscale model: TensorFlow converts CMYK only to RGB) fails the batch; the
  files are then classified one at a time, so only that file fails.

The model is the newest *complete* pushed version (components.pushed_versions):
a newer incomplete one, as a crashed push leaves it, is skipped with a note.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import re
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from PIL import Image, UnidentifiedImageError

from components import pushed_versions
from pipeline.plumbing import errors

SAVED_MODEL_FILE = pushed_versions.SAVED_MODEL_FILE
SUPPORTED_FORMATS = ("PNG", "JPEG")
# TensorFlow's image decoders, which the model's signature uses, refuse
# width * height >= 2**29 ("PNG size too large for int";
# tensorflow/core/kernels/image/decode_image_op.cc).
MAX_PIXELS = (1 << 29) - 1
_OP_DECORATIONS = re.compile(r"\{\{[^}]*\}\}|\[Op:[^\]]*\]")  # "{{function_node ...}}", "[Op:DecodeImage]"


class ModelNotFoundError(FileNotFoundError):
    pass


class ModelLoadError(RuntimeError):
    pass


class BadImageError(ValueError):
    pass


def _subfolders(folder: str) -> list[str]:
    if not os.path.isdir(folder):
        return []
    return [path for name in sorted(os.listdir(folder)) if os.path.isdir(path := os.path.join(folder, name))]


def _version_candidates(model_dir: str) -> list[str]:
    """Numbered version folders in `model_dir`, in a pipeline folder of it or of its serving_model/; newest first."""
    parents = [model_dir, *_subfolders(model_dir), *_subfolders(os.path.join(model_dir, "serving_model"))]
    versions = [
        path
        for parent in parents
        for path in _subfolders(parent)
        if pushed_versions.is_version_name(os.path.basename(path))
    ]
    return sorted(versions, key=lambda path: (int(os.path.basename(path)), path), reverse=True)


def _not_found(model_dir: str) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"{model_dir}: no SavedModel found (expected {SAVED_MODEL_FILE} or pushed version folders)"
    )


def resolve_model_dir(model_dir: str) -> str:
    """The newest SavedModel in a model dir, a pipeline push folder, or an output dir, as TF Serving would pick it.

    Accepts `<output>/serving_model/<pipeline>/<version>` itself, its pipeline
    folder, `<output>/serving_model`, or `<output>`. Does not read the model:
    `serve-check` wants to see what TF Serving would load, complete or not.
    """
    if os.path.isfile(os.path.join(model_dir, SAVED_MODEL_FILE)):
        return model_dir
    for version_dir in _version_candidates(model_dir):
        if os.path.isfile(os.path.join(version_dir, SAVED_MODEL_FILE)):
            return version_dir
    raise _not_found(model_dir)


@dataclasses.dataclass(frozen=True)
class ModelChoice:
    path: str
    skipped: list[tuple[str, str]]  # newer versions passed over: (folder, why it is incomplete)


def newest_complete_model(model_dir: str) -> ModelChoice:
    """Like resolve_model_dir, but passes over incomplete versions (reads saved_model.pb: imports TensorFlow)."""
    if os.path.isfile(os.path.join(model_dir, SAVED_MODEL_FILE)):
        problem = pushed_versions.incompleteness(model_dir)
        if problem is not None:
            raise ModelNotFoundError(f"{model_dir}: incomplete SavedModel: {problem}")
        return ModelChoice(model_dir, [])
    candidates = _version_candidates(model_dir)
    if not candidates:
        raise _not_found(model_dir)
    chosen, skipped = pushed_versions.newest_complete(candidates)
    if chosen is None:
        reasons = "; ".join(f"{folder}: {problem}" for folder, problem in skipped)
        raise ModelNotFoundError(f"{model_dir}: no complete SavedModel ({reasons})")
    return ModelChoice(chosen, skipped)


@dataclasses.dataclass(frozen=True)
class ImageFile:
    path: str
    content: bytes
    kind: str  # Pillow's mode and format, e.g. "CMYK JPEG": what a refusal by the model is about


@contextlib.contextmanager
def _model_pixel_bound() -> Iterator[None]:
    """Pillow's own bomb check off (its limit is not the model's): _check_image applies MAX_PIXELS instead.

    Pillow checks Image.MAX_IMAGE_PIXELS inside Image.open, before the caller
    sees the size, so it is switched off for the open and restored after.
    """
    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _check_image(content: bytes) -> str:
    """The image's "<mode> <format>", after the checks that are cheap next to the model; raises on the first problem.

    The size comes from the header, before any pixel is decoded. verify()
    checks PNG chunk CRCs (which libpng checks too, but load() does not);
    load() decodes, which catches truncated and corrupt image data.
    """
    with _model_pixel_bound(), Image.open(io.BytesIO(content), formats=SUPPORTED_FORMATS) as image:
        width, height = image.size
        kind = f"{image.mode} {image.format}"
        if width * height > MAX_PIXELS:
            raise BadImageError(
                f"{width}x{height} = {width * height:,} pixels, more than the model's decoder accepts ({MAX_PIXELS:,})"
            )
        image.verify()
    with _model_pixel_bound(), Image.open(io.BytesIO(content), formats=SUPPORTED_FORMATS) as image:
        image.load()
    return kind


def read_image(path: str) -> ImageFile:
    """The file, once _check_image found it a readable PNG or JPEG that the model may decode."""
    try:
        with open(path, "rb") as handle:
            content = handle.read()
    except OSError as error:
        raise BadImageError(f"{path}: cannot read file ({error.strerror})") from error
    try:
        return ImageFile(path, content, _check_image(content))
    except UnidentifiedImageError as error:
        raise BadImageError(f"{path}: not a PNG or JPEG image") from error
    except BadImageError as error:
        raise BadImageError(f"{path}: {error}") from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:  # what Pillow's decoders raise for bad data
        raise BadImageError(f"{path}: damaged image data ({error})") from error


def _readable(image_paths: Sequence[str]) -> tuple[list[ImageFile], bool]:
    """The files that passed the cheap checks, and whether any failed (each failure printed)."""
    readable: list[ImageFile] = []
    failed = False
    for path in image_paths:
        try:
            readable.append(read_image(path))
        except BadImageError as error:
            errors.fail(str(error))
            failed = True
    return readable, failed


@dataclasses.dataclass(frozen=True)
class Prediction:
    class_id: int
    name: str
    probability: float

    def line(self, path: str) -> str:
        return f"{path}: {self.name} (class {self.class_id}, p={self.probability:.3f})"


def _classify(signature: Any, contents: list[bytes]) -> list[Prediction]:
    """One call of the image signature for the batch."""
    import tensorflow as tf

    from trainer_module import signatures

    outputs = signature(images=tf.constant(contents))
    class_ids = outputs[signatures.CLASS_IDS].numpy()
    names = outputs[signatures.CLASS_NAMES].numpy()
    probabilities = outputs[signatures.PROBABILITIES].numpy()
    return [
        Prediction(int(class_id), name.decode(), float(row[class_id]))
        for class_id, name, row in zip(class_ids, names, probabilities)
    ]


def op_message(error: BaseException) -> str:
    """A TensorFlow op error's own message, e.g. "jpeg::Uncompress failed. Invalid JPEG data or crop window."

    A signature call reports "Graph execution error:", the failing node's
    stack trace (or "<stack traces unavailable>"), then the op's message, then
    "\t [[{{node ...}}]] [Op:...]": the message is the last line before that
    suffix. (probe.one_line takes the first line instead, which here is the
    trace placeholder.)
    """
    text = str(getattr(error, "message", error)).split("\n\t [[")[0].strip()
    last_line = text.splitlines()[-1] if text else ""
    return " ".join(_OP_DECORATIONS.sub("", last_line).split()) or type(error).__name__


def _predictions(signature: Any, images: list[ImageFile]) -> Iterator[tuple[ImageFile, Prediction | str]]:
    """Each image with its prediction or, when the model refused it, why: the batch first, one by one if it fails."""
    import tensorflow as tf

    try:
        batch = _classify(signature, [image.content for image in images])
    except tf.errors.OpError:
        batch = None  # one file fails the whole batch; which one(s) is found below
    if batch is not None:
        yield from zip(images, batch)
        return
    for image in images:
        try:
            yield image, _classify(signature, [image.content])[0]
        except tf.errors.OpError as error:
            yield image, f"the model cannot decode this {image.kind} image ({op_message(error)})"


def _load_model(model_dir: str) -> tuple[str, Any]:
    """The chosen version (notes on stderr for newer incomplete ones) and its image signature."""
    choice = newest_complete_model(model_dir)
    for folder, problem in choice.skipped:
        print(f"visionpipe: note: skipping {folder}: {problem}; using {choice.path}", file=sys.stderr, flush=True)
    import tensorflow as tf

    from trainer_module import signatures

    try:
        return choice.path, tf.saved_model.load(choice.path).signatures[signatures.IMAGE_SIGNATURE]
    except (OSError, ValueError, KeyError, tf.errors.OpError) as error:
        problem = errors.one_line(error)
        raise ModelLoadError(f"{choice.path}: cannot load its {signatures.IMAGE_SIGNATURE} signature: {problem}") from error


def predict_files(model_dir: str, image_paths: Sequence[str]) -> int:
    """Prints `<file>: <class name> (class <id>, p=<probability>)` per image; 1 if any file or the model failed.

    The images are checked first: when none is readable, the model is not even
    looked at (no TensorFlow import, seconds saved).
    """
    images, failed = _readable(image_paths)
    if not images:
        return errors.EXIT_FAILED
    try:
        resolved, signature = _load_model(model_dir)
    except (ModelNotFoundError, ModelLoadError) as error:
        return errors.fail(str(error))
    print(f"model: {resolved}", flush=True)
    for image, outcome in _predictions(signature, images):
        if isinstance(outcome, Prediction):
            print(outcome.line(image.path), flush=True)
        else:
            errors.fail(f"{image.path}: {outcome}")
            failed = True
    return errors.EXIT_FAILED if failed else 0
