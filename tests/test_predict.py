"""`visionpipe predict` on bad input, through the CLI, against a real trained export.

Every bad image costs exactly one `visionpipe: error: <file>: ...` line and
exit code 1, and the good files of the same command are still classified; an
incomplete newest version is skipped with a one-line note. Each case writes its
own fixture (Pillow, NumPy, byte surgery).
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import zlib
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from pipeline.cli import main as cli
from tests import serving_helpers
from trainer_module.model_names import TUTORIAL_CNN

GRAY = (28, 28, 1)
PNG_SIGNATURE = 8  # bytes before the first chunk
CHUNK_HEADER = 8  # length and type


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> str:
    """A real, trained, exported grayscale model (the model every test here pushes)."""
    return serving_helpers.trained_export(str(tmp_path_factory.mktemp("predict-model")), 5, GRAY, TUTORIAL_CNN)


def push(export: str, output_dir, version: int) -> str:
    """A copy of the export as the Pusher lays it out: <output>/serving_model/<pipeline>/<version>."""
    return shutil.copytree(export, output_dir / "serving_model" / "visionpipe-test" / str(version))


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def gray_image(seed: int = 0, size: int = 28) -> Image.Image:
    return Image.fromarray((np.random.RandomState(seed).rand(size, size) * 255).astype(np.uint8))


def encoded(image: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format)
    return buffer.getvalue()


def chunks(png: bytes) -> list[tuple[int, bytes, bytes]]:
    """(offset, type, data) of each PNG chunk."""
    found, offset = [], PNG_SIGNATURE
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        kind = png[offset + 4 : offset + 8]
        found.append((offset, kind, png[offset + CHUNK_HEADER : offset + CHUNK_HEADER + length]))
        offset += CHUNK_HEADER + length + 4
    return found


def replace_chunk_data(png: bytes, kind: bytes, data: bytes, *, fix_crc: bool = True) -> bytes:
    """The PNG with that chunk's data replaced (same length), with a correct or a stale CRC."""
    offset, _, old = next(chunk for chunk in chunks(png) if chunk[1] == kind)
    assert len(data) == len(old)
    start = offset + CHUNK_HEADER
    crc = zlib.crc32(kind + data) if fix_crc else zlib.crc32(kind + old)
    return png[:start] + data + struct.pack(">I", crc) + png[start + len(data) + 4 :]


def cmyk_jpeg() -> bytes:
    """Pillow reads it; TensorFlow converts CMYK only to RGB, so this grayscale model's decoder refuses it."""
    return encoded(gray_image(1).convert("CMYK"), "JPEG")


def truncated_jpeg() -> bytes:
    content = encoded(gray_image(2, size=64), "JPEG")
    return content[: len(content) // 2]


def corrupt_idat(*, fix_crc: bool) -> bytes:
    """Scrambled deflate data in IDAT, its CRC recomputed (only decoding finds it) or left stale."""
    png = encoded(gray_image(3), "PNG")
    _, _, data = next(chunk for chunk in chunks(png) if chunk[1] == b"IDAT")
    scrambled = data[:2] + bytes(byte ^ 0x5A for byte in data[2:])  # keep the zlib header
    return replace_chunk_data(png, b"IDAT", scrambled, fix_crc=fix_crc)


def huge_header_png() -> bytes:
    """A tiny PNG whose IHDR claims 60000x60000 (3.6 G pixels; TensorFlow's decoder stops at 2**29)."""
    png = encoded(gray_image(4), "PNG")
    _, _, ihdr = next(chunk for chunk in chunks(png) if chunk[1] == b"IHDR")
    return replace_chunk_data(png, b"IHDR", struct.pack(">II", 60000, 60000) + ihdr[8:])


BAD_IMAGES: dict[str, tuple[Callable[[], bytes], str]] = {
    # file name -> (its bytes, what its error line must say)
    "cmyk.jpg": (cmyk_jpeg, "the model cannot decode this CMYK JPEG image"),
    "truncated.jpg": (truncated_jpeg, "damaged image data (image file is truncated"),
    "corrupt-idat.png": (lambda: corrupt_idat(fix_crc=True), "damaged image data"),
    "corrupt-idat-crc.png": (lambda: corrupt_idat(fix_crc=False), "damaged image data"),
    "huge.png": (huge_header_png, "60000x60000 = 3,600,000,000 pixels, more than the model's decoder accepts"),
    "notes.txt": (lambda: b"shopping list: milk, eggs\n", "not a PNG or JPEG image"),
}


def write_good_images(folder) -> list[str]:
    """A PNG of the model's size and a larger RGB JPEG (converted in the signature)."""
    png, jpeg = folder / "good.png", folder / "good.jpg"
    png.write_bytes(encoded(gray_image(10), "PNG"))
    jpeg.write_bytes(encoded(gray_image(11, size=60).convert("RGB"), "JPEG"))
    return [str(png), str(jpeg)]


def assert_one_error_line(err: str, name: str, problem: str) -> None:
    errors = [line for line in err.splitlines() if line.startswith("visionpipe: error: ")]
    assert len(errors) == 1, err
    assert name in errors[0] and problem in errors[0], errors[0]
    assert "Traceback" not in err and "object at 0x" not in errors[0], err


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_a_bad_image_costs_one_line_not_the_good_ones(export_dir, tmp_path, capsys, name):
    push(export_dir, tmp_path, 100)
    make, problem = BAD_IMAGES[name]
    bad = tmp_path / name
    bad.write_bytes(make())
    good = write_good_images(tmp_path)
    code, out, err = run_cli(capsys, "predict", "--model-dir", str(tmp_path), good[0], str(bad), good[1])
    assert code == 1
    assert_one_error_line(err, f"{bad}: ", problem)
    predicted = [line.split(": ")[0] for line in out.splitlines() if not line.startswith("model: ")]
    assert predicted == good, out


def test_every_bad_image_in_one_command(export_dir, tmp_path, capsys):
    push(export_dir, tmp_path, 100)
    bad = []
    for name, (make, _) in sorted(BAD_IMAGES.items()):
        (tmp_path / name).write_bytes(make())
        bad.append(str(tmp_path / name))
    good = write_good_images(tmp_path)
    code, out, err = run_cli(capsys, "predict", "--model-dir", str(tmp_path), *bad, *good)
    assert code == 1
    named = [line.split(": ")[2] for line in err.splitlines() if line.startswith("visionpipe: error: ")]
    assert sorted(named) == sorted(bad), err
    assert [line.split(": ")[0] for line in out.splitlines()[1:]] == good


def test_predict_without_a_model(tmp_path, capsys):
    code, _, err = run_cli(capsys, "predict", "--model-dir", str(tmp_path), *write_good_images(tmp_path))
    assert code == 1 and "no SavedModel found" in err


def test_predict_rejects_a_non_image_before_loading_anything(tmp_path, capsys):
    version = tmp_path / "serving_model" / "p" / "123"
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"")  # would fail if it were read
    bogus = tmp_path / "bogus.png"
    bogus.write_text("not an image")
    code, _, err = run_cli(capsys, "predict", "--model-dir", str(tmp_path), str(bogus))
    assert code == 1
    assert_one_error_line(err, f"{bogus}: ", "not a PNG or JPEG image")


def truncate_saved_model(version_dir: str) -> None:
    """saved_model.pb cut where a full disk cut it in issue 13 (90 KB of 246 KB)."""
    path = os.path.join(version_dir, "saved_model.pb")
    with open(path, "rb") as handle:
        content = handle.read()
    with open(path, "wb") as handle:
        handle.write(content[: len(content) * 90 // 246])


def remove_variables(version_dir: str) -> None:
    shutil.rmtree(os.path.join(version_dir, "variables"))


@pytest.mark.parametrize(
    "breakage, reason",
    [(truncate_saved_model, "saved_model.pb is not a SavedModel"), (remove_variables, "variables/variables.index is missing")],
)
def test_predict_falls_back_to_the_newest_complete_version(export_dir, tmp_path, capsys, breakage, reason):
    older = push(export_dir, tmp_path, 100)
    newest = push(export_dir, tmp_path, 200)
    breakage(newest)
    good = write_good_images(tmp_path)
    code, out, err = run_cli(capsys, "predict", "--model-dir", str(tmp_path), *good)
    assert code == 0, err
    notes = [line for line in err.splitlines() if line.startswith("visionpipe: ")]
    assert len(notes) == 1, err
    assert notes[0].startswith(f"visionpipe: note: skipping {newest}: ") and notes[0].endswith(f"; using {older}")
    assert reason in notes[0]
    assert out.splitlines()[0] == f"model: {older}"
    assert len(out.splitlines()) == 1 + len(good)


def test_predict_with_no_complete_version_is_one_error_line(export_dir, tmp_path, capsys):
    truncate_saved_model(push(export_dir, tmp_path, 100))
    (tmp_path / "serving_model" / "visionpipe-test" / "200").mkdir()  # a kill at the start of the stock Pusher
    code, out, err = run_cli(capsys, "predict", "--model-dir", str(tmp_path), *write_good_images(tmp_path))
    assert code == 1 and out == ""
    assert_one_error_line(err, "no complete SavedModel", "200: no saved_model.pb")
    assert "100: saved_model.pb is not a SavedModel" in err


def test_predict_on_an_incomplete_version_dir_itself_is_one_error_line(export_dir, tmp_path, capsys):
    version = push(export_dir, tmp_path, 100)
    truncate_saved_model(version)
    code, out, err = run_cli(capsys, "predict", "--model-dir", str(version), *write_good_images(tmp_path))
    assert code == 1 and out == ""
    assert_one_error_line(err, f"{version}: incomplete SavedModel: ", "saved_model.pb is not a SavedModel")
