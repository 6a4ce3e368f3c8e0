"""Tests for components.cifar_example_gen.cifar_format on tiny CIFAR-10 datasets written by tests.cifar_files."""

from __future__ import annotations

import gzip
import importlib
import io
import os
import pickle
import pickletools
import shutil
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from components.cifar_example_gen.cifar_format import binary_version, image_folders, tar_stream
from tests.cifar_files import (
    Batch,
    synthetic_cifar,
    write_binary_version,
    write_image_folder,
    write_python_version,
)
from components.cifar_example_gen.cifar_format import (
    BINARY,
    CIFAR10_CLASS_NAMES,
    IMAGE_FOLDER,
    PYTHON,
    CifarFormatError,
    CifarShard,
    CifarSource,
    detect_cifar_source,
    iter_shard_records,
    validate_cifar_source,
)

WRITERS = {PYTHON: write_python_version, BINARY: write_binary_version}
FOLDERS = {PYTHON: "cifar-10-batches-py", BINARY: "cifar-10-batches-bin"}
SUFFIXES = {PYTHON: "", BINARY: ".bin"}
TRAIN_PER_BATCH, TEST_COUNT = 4, 6


def _batches(num_train: int = 5) -> tuple[list[Batch], Batch]:
    """Tiny training batches (5, like the official dataset) and a test batch, all different."""
    train = [synthetic_cifar(TRAIN_PER_BATCH, seed=i) for i in range(num_train)]
    return train, synthetic_cifar(TEST_COUNT, seed=99)


def _write_version(directory: Path, format: str, tarball: bool, num_train: int = 5) -> Path:
    train, test = _batches(num_train)
    return Path(WRITERS[format](str(directory), train, test, tarball=tarball))


def _batch_file(directory: Path, format: str, stem: str) -> Path:
    """Path of a batch in an extracted version written into ``directory``."""
    return directory / FOLDERS[format] / (stem + SUFFIXES[format])


def _records(
    source: CifarSource, split: str, **kwargs: object
) -> list[tuple[str, np.ndarray, int]]:
    return [
        record for shard in source.shards[split] for record in iter_shard_records(shard, **kwargs)
    ]


def _validate(directory: Path) -> int:
    return validate_cifar_source(detect_cifar_source(str(directory)))


def _assert_one_line_error(excinfo: pytest.ExceptionInfo, path: object, *fragments: str) -> None:
    """The message must be a single line that starts with the file and says the problem."""
    message = str(excinfo.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: "), message
    for fragment in fragments:
        assert fragment in message, message


def _tar_folder(folder: Path, tarball: Path) -> Path:
    """Pack an extracted version the way ``tar czf`` would (to put bad members in a tarball)."""
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return tarball


# --- the official versions: round trips ------------------------------------------------


@pytest.mark.parametrize("format", [PYTHON, BINARY])
@pytest.mark.parametrize("tarball", [True, False], ids=["tarball", "extracted"])
def test_batch_version_round_trip(tmp_path: Path, format: str, tarball: bool) -> None:
    location = _write_version(tmp_path, format, tarball)
    train, test = _batches()

    source = detect_cifar_source(str(tmp_path))
    assert (source.format, source.location, source.class_names) == (
        format,
        str(location),
        CIFAR10_CLASS_NAMES,
    )
    assert source.describe() == (
        f"CIFAR-10 {format} version ({location.name}{'' if tarball else '/'}): "
        f"5 training batches, 1 test batch"
    )
    assert [shard.id_prefix for shard in source.shards["train"]] == [
        f"data_batch_{i}" for i in range(1, 6)
    ]
    assert [shard.id_prefix for shard in source.shards["test"]] == ["test_batch"]
    assert all(shard.in_tarball == tarball for shards in source.shards.values() for shard in shards)

    records = _records(source, "train")
    np.testing.assert_array_equal(
        np.stack([image for _, image, _ in records]), np.concatenate([b[0] for b in train])
    )
    assert [label for _, _, label in records] == np.concatenate([b[1] for b in train]).tolist()
    assert [example_id for example_id, _, _ in records[:5]] == [
        "data_batch_1-00000",
        "data_batch_1-00001",
        "data_batch_1-00002",
        "data_batch_1-00003",
        "data_batch_2-00000",
    ]
    ids, images, labels = zip(*_records(source, "test"), strict=True)
    assert ids[-1] == "test_batch-00005"
    np.testing.assert_array_equal(np.stack(images), test[0])
    assert list(labels) == test[1].tolist()
    assert all(
        image.dtype == np.uint8 and image.flags.c_contiguous and image.base is None
        for image in images
    )
    assert validate_cifar_source(source) == 5 * TRAIN_PER_BATCH + TEST_COUNT


@pytest.mark.parametrize("format", [PYTHON, BINARY])
def test_data_dir_is_the_extracted_folder(tmp_path: Path, format: str) -> None:
    folder = _write_version(tmp_path, format, tarball=False)
    source = detect_cifar_source(str(folder))
    assert (source.format, source.location) == (format, str(folder))
    assert source.shards["test"][0].member == str(folder / f"test_batch{SUFFIXES[format]}")
    assert validate_cifar_source(source) == 26


@pytest.mark.parametrize("format", [PYTHON, BINARY])
def test_ids_are_stable_and_shards_picklable(tmp_path: Path, format: str) -> None:
    _write_version(tmp_path / "a", format, tarball=True)
    _write_version(tmp_path / "b", format, tarball=False)
    ids = []
    for directory in ("a", "b"):
        source = detect_cifar_source(str(tmp_path / directory))
        shard = source.shards["train"][2]
        assert pickle.loads(pickle.dumps(shard)) == shard
        ids.append([example_id for example_id, _, _ in iter_shard_records(shard)])
    assert ids[0] == ids[1] == [f"data_batch_3-{i:05d}" for i in range(TRAIN_PER_BATCH)]


def test_python_and_binary_versions_agree(tmp_path: Path) -> None:
    _write_version(tmp_path / "py", PYTHON, tarball=True)
    _write_version(tmp_path / "bin", BINARY, tarball=True)
    python, binary = (detect_cifar_source(str(tmp_path / name)) for name in ("py", "bin"))
    for split in ("train", "test"):
        for (id_a, image_a, label_a), (id_b, image_b, label_b) in zip(
            _records(python, split), _records(binary, split), strict=True
        ):
            assert (id_a, label_a) == (id_b, label_b)
            np.testing.assert_array_equal(image_a, image_b)


def test_pixel_planes_decode_to_rows_columns_channels(tmp_path: Path) -> None:
    """Check the byte layout independently of the reader: R, G, B planes, each row-major."""
    images = np.zeros((2, 32, 32, 3), np.uint8)
    images[1, 2, 5] = (10, 20, 30)  # image 1, row 2, column 5
    images[1, 31, 0] = (200, 0, 7)
    batch = (images, np.array([3, 8]))
    write_binary_version(str(tmp_path), [batch] * 5, batch, tarball=False)
    write_python_version(str(tmp_path), [batch] * 5, batch, tarball=False)

    records = (tmp_path / "cifar-10-batches-bin" / "test_batch.bin").read_bytes()
    record = records[3073 : 2 * 3073]
    assert record[0] == 8
    assert (
        record[1 + 2 * 32 + 5],
        record[1 + 1024 + 2 * 32 + 5],
        record[1 + 2048 + 2 * 32 + 5],
    ) == (10, 20, 30)
    assert record[1 + 2048 + 31 * 32] == 7
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "rb") as stream:
        data = pickle.load(stream, encoding="bytes")[b"data"]  # the official loading recipe
    assert data[1, [2 * 32 + 5, 1024 + 2 * 32 + 5, 2048 + 2 * 32 + 5]].tolist() == [10, 20, 30]

    for folder in ("cifar-10-batches-bin", "cifar-10-batches-py"):
        shard = detect_cifar_source(str(tmp_path / folder)).shards["test"][0]
        (_, first, _), (_, second, label) = iter_shard_records(shard)
        assert label == 8 and not first.any()
        assert second[2, 5].tolist() == [10, 20, 30]
        assert second[31, 0].tolist() == [200, 0, 7]
        assert np.count_nonzero(second) == 5


def test_python_batches_are_python2_pickles(tmp_path: Path) -> None:
    """Byte strings as BINSTRING, numpy.core names, official key order, official loading works."""
    folder = _write_version(tmp_path, PYTHON, tarball=False)
    raw = (folder / "data_batch_1").read_bytes()
    assert raw.startswith(
        b"\x80\x02}q\x01(U\x0bbatch_labelq\x02U\x15training batch 1 of 5q\x03"
        b"U\x06labelsq\x04]q\x05("
    )
    opcodes = {opcode.name for opcode, _, _ in pickletools.genops(raw)}
    assert opcodes.isdisjoint(
        {"BINUNICODE", "SHORT_BINUNICODE", "BINBYTES", "SHORT_BINBYTES", "STACK_GLOBAL"}
    )
    globals_used = {arg for opcode, arg, _ in pickletools.genops(raw) if opcode.name == "GLOBAL"}
    assert globals_used == {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}

    batch = pickle.loads(raw, encoding="bytes")
    assert list(batch) == [b"batch_label", b"labels", b"data", b"filenames"]
    assert batch[b"data"].dtype == np.uint8 and batch[b"data"].shape == (4, 3072)
    assert batch[b"labels"] == synthetic_cifar(4, seed=0)[1].tolist()
    meta = pickle.loads((folder / "batches.meta").read_bytes(), encoding="bytes")
    assert meta == {
        b"num_cases_per_batch": 4,
        b"label_names": [name.encode() for name in CIFAR10_CLASS_NAMES],
        b"num_vis": 3072,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy 2 must not warn about the numpy.core names
        assert _validate(tmp_path) == 26


def test_tarballs_are_reproducible_and_list_official_members(tmp_path: Path) -> None:
    first = _write_version(tmp_path / "a", BINARY, tarball=True)
    second = _write_version(tmp_path / "b", BINARY, tarball=True)
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as tar:
        assert sorted(tar.getnames()) == ["cifar-10-batches-bin"] + [
            f"cifar-10-batches-bin/{name}"
            for name in sorted(
                [f"data_batch_{i}.bin" for i in range(1, 6)]
                + ["test_batch.bin", "batches.meta.txt", "readme.html"]
            )
        ]
        meta = tar.extractfile("cifar-10-batches-bin/batches.meta.txt")
        assert meta is not None
        meta_text = meta.read()
    assert meta_text == ("\n".join(CIFAR10_CLASS_NAMES) + "\n\n").encode()


@pytest.mark.parametrize("keys", ["str", "bytes"])
@pytest.mark.parametrize("data_form", ["ndarray", "bytes", "list"])
def test_python3_pickles_with_other_key_and_data_types(
    tmp_path: Path, keys: str, data_form: str
) -> None:
    folder = _write_version(tmp_path, PYTHON, tarball=False)
    images, labels = synthetic_cifar(3, seed=5)
    data = images.transpose(0, 3, 1, 2).reshape(3, 3072)
    forms = {"ndarray": data, "bytes": data.tobytes(), "list": data.tolist()}
    batch = {"data": forms[data_form], "labels": labels.tolist(), "batch_label": "custom"}
    if keys == "bytes":
        batch = {key.encode(): value for key, value in batch.items()}
    (folder / "data_batch_4").write_bytes(pickle.dumps(batch, protocol=4))

    shard = detect_cifar_source(str(folder)).shards["train"][3]
    ids, got, got_labels = zip(*iter_shard_records(shard), strict=True)
    np.testing.assert_array_equal(np.stack(got), images)
    assert list(got_labels) == labels.tolist()
    assert ids == ("data_batch_4-00000", "data_batch_4-00001", "data_batch_4-00002")


def test_binary_batches_are_read_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(binary_version, "CHUNK_RECORDS", 3)
    images, labels = synthetic_cifar(8, seed=3)
    labels[7] = 10
    train, _ = _batches(4)
    write_binary_version(
        str(tmp_path), [(images, labels), *train], (images[:7], labels[:7]), tarball=False
    )
    source = detect_cifar_source(str(tmp_path))
    np.testing.assert_array_equal(
        np.stack([image for _, image, _ in _records(source, "test")]), images[:7]
    )
    with pytest.raises(CifarFormatError) as excinfo:
        list(iter_shard_records(source.shards["train"][0]))
    _assert_one_line_error(
        excinfo,
        _batch_file(tmp_path, BINARY, "data_batch_1"),
        "label 10 of image 7 is outside 0..9",
    )


def test_reading_a_tarball_member_stops_at_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Streaming: an early member is readable even when the archive's tail is damaged."""
    monkeypatch.setattr(tar_stream, "TAR_BUFSIZE", 4096)  # read ahead less than the tiny archive
    tarball = _write_version(tmp_path, PYTHON, tarball=True)
    source = detect_cifar_source(str(tmp_path))
    blob = tarball.read_bytes()
    tarball.write_bytes(blob[: int(len(blob) * 0.7)])
    assert len(list(iter_shard_records(source.shards["train"][0]))) == TRAIN_PER_BATCH
    with pytest.raises(CifarFormatError) as excinfo:
        list(iter_shard_records(source.shards["test"][0]))
    _assert_one_line_error(excinfo, tarball, "corrupt or truncated gzip data")


def test_batch_images_can_be_resized(tmp_path: Path) -> None:
    _write_version(tmp_path, BINARY, tarball=False)
    shard = detect_cifar_source(str(tmp_path)).shards["test"][0]
    (_, image, _), *_ = iter_shard_records(shard, image_size=(16, 24))
    assert image.shape == (16, 24, 3)
    expected = Image.fromarray(synthetic_cifar(TEST_COUNT, seed=99)[0][0]).resize(
        (24, 16), Image.Resampling.BILINEAR
    )
    np.testing.assert_array_equal(image, np.asarray(expected))
    with pytest.raises(ValueError, match="image_size must be"):
        next(iter_shard_records(shard, image_size=(0, 32)))


# --- image folders ---------------------------------------------------------------------


def _write_tree(
    directory: Path, image_format: str = "png", size: tuple[int, int] = (32, 32)
) -> Path:
    return Path(
        write_image_folder(
            str(directory),
            synthetic_cifar(30, seed=1),
            synthetic_cifar(10, seed=2),
            image_format=image_format,
            size=size,
        )
    )


def test_image_folder_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _write_tree(tmp_path / "cifar10png")
    (root / "train" / ".ipynb_checkpoints").mkdir()  # hidden folders are not classes
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    train_images, train_labels = synthetic_cifar(30, seed=1)

    monkeypatch.setattr(image_folders, "IMAGE_FILES_PER_SHARD", 2)
    source = detect_cifar_source(str(root))
    assert (source.format, source.class_names) == (IMAGE_FOLDER, CIFAR10_CLASS_NAMES)
    assert (
        source.describe()
        == "CIFAR-10 image folder (cifar10png/): 30 training images, 10 test images in 10 classes"
    )
    assert [len(shard.files) for shard in source.shards["train"]] == [2, 1] * 10
    assert [shard.label for shard in source.shards["train"][:4]] == [0, 0, 1, 1]

    records = _records(source, "train")
    assert [example_id for example_id, _, _ in records[:4]] == [
        "train/airplane/0001.png",
        "train/airplane/0002.png",
        "train/airplane/0003.png",
        "train/automobile/0001.png",
    ]
    # Files are numbered per class in input order, so sorting input by label gives the read order.
    order = np.argsort(train_labels, kind="stable")
    np.testing.assert_array_equal(np.stack([image for _, image, _ in records]), train_images[order])
    assert [label for _, _, label in records] == train_labels[order].tolist()
    assert validate_cifar_source(source) == 40


def test_image_folder_jpeg(tmp_path: Path) -> None:
    root = _write_tree(tmp_path, image_format="jpg")
    source = detect_cifar_source(str(root))
    records = _records(source, "test")
    assert records[0][0] == "test/airplane/0001.jpg"
    test_images, test_labels = synthetic_cifar(10, seed=2)
    order = np.argsort(test_labels, kind="stable")
    got = np.stack([image for _, image, _ in records])
    with Image.open(root / "test" / "airplane" / "0001.jpg") as decoded:
        np.testing.assert_array_equal(got[0], np.asarray(decoded.convert("RGB")))
    # Lossy (and chroma-subsampled noise suffers), but the images' average colours survive.
    mean_colours = got.reshape(10, -1, 3).mean(axis=1)
    np.testing.assert_allclose(
        mean_colours, test_images[order].reshape(10, -1, 3).mean(axis=1), atol=3
    )


def test_image_folder_is_resized_to_target_size(tmp_path: Path) -> None:
    root = _write_tree(tmp_path, size=(40, 36))
    with Image.open(root / "train" / "cat" / "0001.png") as stored:
        assert stored.size == (36, 40)
        expected = np.asarray(stored.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR))
    source = detect_cifar_source(str(root))
    records = dict((example_id, image) for example_id, image, _ in _records(source, "train"))
    assert {image.shape for image in records.values()} == {(32, 32, 3)}
    np.testing.assert_array_equal(records["train/cat/0001.png"], expected)
    (_, small, _), *_ = iter_shard_records(source.shards["test"][0], image_size=(8, 8))
    assert small.shape == (8, 8, 3)


def test_colour_palette_image_is_accepted(tmp_path: Path) -> None:
    root = _write_tree(tmp_path)
    target = root / "test" / "ship" / "0001.png"
    with Image.open(target) as original:
        original.quantize(colors=256).save(target)  # mode P, colour palette
    with Image.open(target) as palette_image:
        assert palette_image.mode == "P"
        expected = np.asarray(palette_image.convert("RGB"))
    records = dict(
        (example_id, image)
        for example_id, image, _ in _records(detect_cifar_source(str(root)), "test")
    )
    np.testing.assert_array_equal(records["test/ship/0001.png"], expected)


def _grey_palette_image() -> Image.Image:
    return Image.fromarray(np.arange(32 * 32, dtype=np.uint8).reshape(32, 32)).convert("P")


def _transparent_palette_image() -> Image.Image:
    image = Image.new("P", (32, 32))
    image.putpalette([255, 0, 0] * 256)
    image.info["transparency"] = 0
    return image


@pytest.mark.parametrize(
    ("make_image", "problem"),
    [
        (lambda: Image.new("L", (32, 32), 128), "image mode L (grayscale), expected RGB"),
        (lambda: Image.new("RGBA", (32, 32)), "image mode RGBA (RGB with alpha), expected RGB"),
        (lambda: Image.new("LA", (32, 32)), "image mode LA (grayscale with alpha), expected RGB"),
        (_grey_palette_image, "image mode P with only grey colours"),
        (_transparent_palette_image, "image mode P (palette with transparency)"),
    ],
    ids=["grayscale", "rgba", "la", "grey-palette", "transparent-palette"],
)
def test_non_rgb_images_are_errors(tmp_path: Path, make_image, problem: str) -> None:
    root = _write_tree(tmp_path)
    target = root / "train" / "horse" / "0002.png"
    make_image().save(target)
    with pytest.raises(CifarFormatError) as excinfo:
        _validate(root)
    _assert_one_line_error(excinfo, target, problem)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_unreadable_image(tmp_path: Path, damage: str) -> None:
    root = _write_tree(tmp_path)
    target = root / "test" / "frog" / "0001.png"
    blob = target.read_bytes()
    target.write_bytes(b"this is not a png" if damage == "garbage" else blob[: len(blob) // 2])
    source = detect_cifar_source(str(root))  # detection only lists files
    with pytest.raises(CifarFormatError) as excinfo:
        validate_cifar_source(source)
    _assert_one_line_error(excinfo, target, "cannot read image")


def test_empty_class_folder(tmp_path: Path) -> None:
    root = _write_tree(tmp_path)
    for image in (root / "train" / "dog").iterdir():
        image.unlink()
    with pytest.raises(CifarFormatError) as excinfo:
        detect_cifar_source(str(root))
    _assert_one_line_error(
        excinfo, root / "train" / "dog", "class folder has no .png/.jpg/.jpeg images"
    )


def test_class_folder_missing_from_test(tmp_path: Path) -> None:
    root = _write_tree(tmp_path)
    shutil.rmtree(root / "test" / "deer")
    with pytest.raises(CifarFormatError) as excinfo:
        detect_cifar_source(str(root))
    _assert_one_line_error(excinfo, root / "test" / "deer", f"but {root / 'train' / 'deer'} exists")


def test_class_folder_only_in_test(tmp_path: Path) -> None:
    root = _write_tree(tmp_path)
    shutil.copytree(root / "test" / "cat", root / "test" / "kitten")
    with pytest.raises(CifarFormatError) as excinfo:
        detect_cifar_source(str(root))
    _assert_one_line_error(excinfo, root / "train" / "kitten", "class folder not found")


def test_image_folder_with_other_class_names(tmp_path: Path) -> None:
    root = _write_tree(tmp_path)
    for split in ("train", "test"):
        (root / split / "cat").rename(root / split / "kitten")
    with pytest.raises(CifarFormatError) as excinfo:
        detect_cifar_source(str(root))
    _assert_one_line_error(
        excinfo,
        root / "train",
        "class names do not match CIFAR-10's",
        "missing: cat; unexpected: kitten",
    )


def test_image_folder_without_test_split(tmp_path: Path) -> None:
    root = _write_tree(tmp_path)
    shutil.rmtree(root / "test")
    with pytest.raises(CifarFormatError) as excinfo:
        detect_cifar_source(str(root))
    _assert_one_line_error(
        excinfo, root / "test", "folder not found; an image folder needs both train/ and test/"
    )


# --- detection ---------------------------------------------------------------------------


def test_extracted_folder_wins_over_its_tarball(tmp_path: Path) -> None:
    _write_version(tmp_path, PYTHON, tarball=True)
    folder = _write_version(tmp_path, PYTHON, tarball=False)
    source = detect_cifar_source(str(tmp_path))
    assert source.location == str(folder) and source.ignored == ()


def test_format_precedence(tmp_path: Path) -> None:
    _write_tree(tmp_path)
    assert detect_cifar_source(str(tmp_path)).format == IMAGE_FOLDER
    _write_version(tmp_path, BINARY, tarball=False)
    source = detect_cifar_source(str(tmp_path))
    assert (source.format, source.ignored) == (BINARY, (f"image folder ({tmp_path.name}/)",))
    _write_version(tmp_path, PYTHON, tarball=True)
    source = detect_cifar_source(str(tmp_path))
    assert source.format == PYTHON
    assert source.describe() == (
        "CIFAR-10 python version (cifar-10-python.tar.gz): 5 training batches, 1 test batch; "
        f"also found binary version (cifar-10-batches-bin/) and image folder ({tmp_path.name}/), "
        "not used (the python version takes precedence)"
    )


def test_missing_data_dir(tmp_path: Path) -> None:
    with pytest.raises(CifarFormatError) as excinfo:
        detect_cifar_source(str(tmp_path / "nope"))
    _assert_one_line_error(excinfo, tmp_path / "nope", "data directory does not exist")


def test_data_dir_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(CifarFormatError) as excinfo:
        detect_cifar_source(str(tmp_path / "file"))
    _assert_one_line_error(excinfo, tmp_path / "file", "is not a directory")


def test_empty_data_dir(tmp_path: Path) -> None:
    with pytest.raises(CifarFormatError) as excinfo:
        detect_cifar_source(str(tmp_path))
    _assert_one_line_error(excinfo, tmp_path, "directory is empty; expected cifar-10-python.tar.gz")


def test_nothing_recognisable(tmp_path: Path) -> None:
    (tmp_path / "cifar-10-matlab.tar.gz").write_bytes(b"")
    with pytest.raises(CifarFormatError) as excinfo:
        detect_cifar_source(str(tmp_path))
    _assert_one_line_error(excinfo, tmp_path, "no CIFAR-10 data found", "cifar-10-batches-bin/")


# --- official versions: bad input ------------------------------------------------------------


@pytest.mark.parametrize("format", [PYTHON, BINARY])
def test_missing_batch_file(tmp_path: Path, format: str) -> None:
    _write_version(tmp_path, format, tarball=False)
    target = _batch_file(tmp_path, format, "data_batch_3")
    target.unlink()
    with pytest.raises(CifarFormatError) as excinfo:
        detect_cifar_source(str(tmp_path))
    _assert_one_line_error(excinfo, target, "file not found")


@pytest.mark.parametrize("format", [PYTHON, BINARY])
def test_missing_tarball_member(tmp_path: Path, format: str) -> None:
    tarball = _write_version(tmp_path, format, tarball=True, num_train=4)
    with pytest.raises(CifarFormatError) as excinfo:
        detect_cifar_source(str(tmp_path))
    _assert_one_line_error(
        excinfo, tarball, f"archive has no member {FOLDERS[format]}/data_batch_5{SUFFIXES[format]}"
    )


@pytest.mark.parametrize("format", [PYTHON, BINARY])
def test_truncated_tarball(tmp_path: Path, format: str) -> None:
    tarball = _write_version(tmp_path, format, tarball=True)
    blob = tarball.read_bytes()
    tarball.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CifarFormatError) as excinfo:
        detect_cifar_source(str(tmp_path))
    _assert_one_line_error(excinfo, tarball, "corrupt or truncated gzip data")


def test_truncated_tar_inside_complete_gzip(tmp_path: Path) -> None:
    tarball = _write_version(tmp_path, BINARY, tarball=True)
    tar_bytes = gzip.decompress(tarball.read_bytes())
    tarball.write_bytes(gzip.compress(tar_bytes[: len(tar_bytes) // 2]))
    with pytest.raises(CifarFormatError) as excinfo:
        detect_cifar_source(str(tmp_path))
    _assert_one_line_error(excinfo, tarball, "corrupt or truncated tar archive")


def test_tarball_crc_error(tmp_path: Path) -> None:
    tarball = _write_version(tmp_path, PYTHON, tarball=True)
    blob = bytearray(tarball.read_bytes())
    blob[-8] ^= 0xFF  # the stored CRC-32
    tarball.write_bytes(bytes(blob))
    with pytest.raises(CifarFormatError) as excinfo:
        detect_cifar_source(str(tmp_path))
    _assert_one_line_error(excinfo, tarball, "corrupt or truncated gzip data", "CRC")


def test_not_a_gzip_file(tmp_path: Path) -> None:
    tarball = tmp_path / "cifar-10-binary.tar.gz"
    tarball.write_bytes(b"<html>404 not found</html>")
    with pytest.raises(CifarFormatError) as excinfo:
        detect_cifar_source(str(tmp_path))
    _assert_one_line_error(excinfo, tarball, "Not a gzipped file")


@pytest.mark.parametrize(
    ("meta_text", "problem"),
    [
        (
            "\n".join(CIFAR10_CLASS_NAMES).replace("cat", "kitten"),
            "missing: cat; unexpected: kitten",
        ),
        ("\n".join(reversed(CIFAR10_CLASS_NAMES)), "wrong order: truck, ship"),
        ("\n".join(CIFAR10_CLASS_NAMES[:9]) + "\n\n\n", "missing: truck"),
    ],
)
def test_bad_binary_meta(tmp_path: Path, meta_text: str, problem: str) -> None:
    folder = _write_version(tmp_path, BINARY, tarball=False)
    (folder / "batches.meta.txt").write_text(meta_text)
    with pytest.raises(CifarFormatError) as excinfo:
        detect_cifar_source(str(tmp_path))
    _assert_one_line_error(
        excinfo, folder / "batches.meta.txt", "class names do not match CIFAR-10's", problem
    )


def test_binary_meta_trailing_blank_lines_and_crlf_are_fine(tmp_path: Path) -> None:
    folder = _write_version(tmp_path, BINARY, tarball=False)
    (folder / "batches.meta.txt").write_bytes(
        ("\r\n".join(CIFAR10_CLASS_NAMES) + "\r\n\r\n \n").encode()
    )
    assert detect_cifar_source(str(tmp_path)).class_names == CIFAR10_CLASS_NAMES


def test_bad_python_meta(tmp_path: Path) -> None:
    folder = _write_version(tmp_path, PYTHON, tarball=False)
    (folder / "batches.meta").write_bytes(pickle.dumps({"names": ["airplane"]}, protocol=2))
    with pytest.raises(CifarFormatError) as excinfo:
        detect_cifar_source(str(tmp_path))
    _assert_one_line_error(
        excinfo,
        folder / "batches.meta",
        "pickled dict has no 'label_names' key (keys found: 'names')",
    )


@pytest.mark.parametrize(
    ("num_vis", "shown"),
    [
        (1024, "1024"),
        (np.zeros(2, np.uint8), "array([0, 0], dtype=uint8)"),  # was a nameless ValueError
        ("x" * 10_000, "'xxxxxxxx"),
    ],
    ids=["int", "array", "long string"],
)
def test_bad_num_vis_names_the_meta_file(tmp_path: Path, num_vis: object, shown: str) -> None:
    folder = _write_version(tmp_path, PYTHON, tarball=False)
    meta = {"label_names": list(CIFAR10_CLASS_NAMES), "num_vis": num_vis}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=4))
    with pytest.raises(CifarFormatError) as excinfo:
        detect_cifar_source(str(tmp_path))
    _assert_one_line_error(excinfo, folder / "batches.meta", f"num_vis is {shown}", "expected 3072")
    assert len(str(excinfo.value)) < len(str(folder)) + 150


def test_bad_meta_inside_tarball(tmp_path: Path) -> None:
    folder = _write_version(tmp_path / "x", PYTHON, tarball=False)
    (folder / "batches.meta").write_bytes(
        pickle.dumps({"label_names": ["a", "b"], "num_vis": 3072})
    )
    tarball = _tar_folder(folder, tmp_path / "cifar-10-python.tar.gz")
    with pytest.raises(CifarFormatError) as excinfo:
        detect_cifar_source(str(tmp_path))
    _assert_one_line_error(
        excinfo, f"{tarball}:cifar-10-batches-py/batches.meta", "missing: airplane"
    )


def _replace_python_batch(directory: Path, content: object, stem: str = "data_batch_2") -> Path:
    """Write a valid python version, then replace a batch by ``content`` (pickled unless bytes)."""
    _write_version(directory, PYTHON, tarball=False)
    target = _batch_file(directory, PYTHON, stem)
    target.write_bytes(content if isinstance(content, bytes) else pickle.dumps(content, protocol=4))
    return target


def _data(count: int = 2) -> np.ndarray:
    return np.zeros((count, 3072), np.uint8)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "file is empty"),
        (b"this is not a pickle", "not a valid pickle"),
        (pickle.dumps({"data": _data()})[:-30], "not a valid pickle"),
        (["data", "labels"], "expected a pickled dict, found list"),
        (
            {"images": _data(), "labels": [0, 1]},
            "pickled dict has no 'data' key (keys found: 'images', 'labels')",
        ),
        (
            {"data": np.zeros((2, 3000), np.uint8), "labels": [0, 1]},
            "'data' has shape (2, 3000), expected N x 3072",
        ),
        (
            {"data": np.zeros((2, 3, 32, 32), np.uint8), "labels": [0, 1]},
            "'data' has shape (2, 3, 32, 32)",
        ),
        ({"data": _data(0), "labels": []}, "with N > 0"),
        ({"data": b"\x00" * 3073, "labels": [0]}, "'data' has shape (3073,)"),
        (
            {"data": np.zeros((2, 3072), np.float32), "labels": [0, 1]},
            "'data' has dtype float32, expected uint8",
        ),
        (
            {"data": np.zeros((2, 3072), object), "labels": [0, 1]},
            "refusing to unpickle a numpy array of dtype object",
        ),
        (
            {"data": [[0] * 3072, [0] * 5], "labels": [0, 1]},
            "'data' is a list whose row 1 is not a list of 3072 numbers",
        ),
        (
            {"data": [[0] * 3071 + [256]], "labels": [0]},
            "'data' is a list whose values are not all integers 0..255",
        ),
        (
            {"data": [[0.5] * 3072], "labels": [0]},
            "'data' is a list whose values are not all integers 0..255",
        ),
        ({"data": "pixels", "labels": [0]}, "'data' is a str, expected a uint8 numpy array"),
        ({"data": _data(), "labels": [0, 1, 2]}, "2 images but 3 labels"),
        ({"data": _data(), "labels": ["cat", "dog"]}, "'labels' is not a list of integers"),
        ({"data": _data(), "labels": [0, 10]}, "label 10 of image 1 is outside 0..9"),
        ({"data": _data(), "labels": [-1, 0]}, "label -1 of image 0 is outside 0..9"),
    ],
    ids=lambda value: None if not isinstance(value, str) else value[:30],
)
def test_bad_python_batch(tmp_path: Path, content: object, problem: str) -> None:
    target = _replace_python_batch(tmp_path, content)
    with pytest.raises(CifarFormatError) as excinfo:
        _validate(tmp_path)
    _assert_one_line_error(excinfo, target, problem)


def test_cifar100_hint(tmp_path: Path) -> None:
    target = _replace_python_batch(
        tmp_path, {"data": _data(), "fine_labels": [0, 1], "coarse_labels": [0, 1]}
    )
    with pytest.raises(CifarFormatError) as excinfo:
        _validate(tmp_path)
    _assert_one_line_error(excinfo, target, "no 'labels' key", "looks like CIFAR-100")


def test_pickle_with_forbidden_global_is_never_executed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return os.system, (f"touch {marker}",)

    payload = pickle.dumps({"data": Exploit(), "labels": [0]}, protocol=2)
    calls: list[object] = []
    system_module = importlib.import_module(os.system.__module__)  # posix on Linux
    monkeypatch.setattr(system_module, "system", lambda *args: calls.append(args))
    target = _replace_python_batch(tmp_path, payload)
    for reader in (
        _validate,
        lambda d: list(iter_shard_records(detect_cifar_source(str(d)).shards["train"][1])),
    ):
        with pytest.raises(CifarFormatError) as excinfo:
            reader(tmp_path)
        _assert_one_line_error(
            excinfo, target, f"refusing to unpickle global {os.system.__module__}.system"
        )
    assert calls == [] and not marker.exists()


@pytest.mark.parametrize("keys", ["str", "bytes"])
def test_python3_protocol2_pickles_are_read(tmp_path: Path, keys: str) -> None:
    """How people re-save subsets: Python 3 writes bytes at protocol 2 as _codecs.encode calls."""
    images, labels = synthetic_cifar(3, seed=7)
    batch = {
        "batch_label": b"subset of testing batch 1",
        "labels": labels.tolist(),
        "data": images.transpose(0, 3, 1, 2).reshape(3, 3072),
        "filenames": [b"a.png", b"b.png", b"c.png"],
    }
    content = batch if keys == "str" else {key.encode(): value for key, value in batch.items()}
    raw = pickle.dumps(content, protocol=2)
    assert b"_codecs\nencode" in raw
    _replace_python_batch(tmp_path, raw, stem="test_batch")

    source = detect_cifar_source(str(tmp_path))
    _, got, got_labels = zip(*iter_shard_records(source.shards["test"][0]), strict=True)
    np.testing.assert_array_equal(np.stack(got), images)
    assert list(got_labels) == labels.tolist()
    assert validate_cifar_source(source) == 5 * TRAIN_PER_BATCH + 3


@pytest.mark.parametrize(
    ("call", "problem"),
    [
        (b"X\x01\x00\x00\x00xX\x04\x00\x00\x00zlib\x86R.", "_codecs.encode(str, 'zlib')"),
        (b"C\x01xX\x06\x00\x00\x00latin1\x86R.", "_codecs.encode(bytes, 'latin1')"),
    ],
    ids=["other codec", "not text"],
)
def test_codecs_encode_is_allowed_for_latin1_text_only(
    tmp_path: Path, call: bytes, problem: str
) -> None:
    target = _replace_python_batch(tmp_path, b"\x80\x03c_codecs\nencode\n" + call)
    with pytest.raises(CifarFormatError) as excinfo:
        _validate(tmp_path)
    _assert_one_line_error(excinfo, target, f"refusing to unpickle {problem}")


@pytest.mark.parametrize(
    "global_name", [b"builtins\neval", b"numpy\nload", b"numpy.core.multiarray\nscalar"]
)
def test_only_array_reconstruction_globals_are_allowed(tmp_path: Path, global_name: bytes) -> None:
    target = _replace_python_batch(tmp_path, b"\x80\x02c" + global_name + b"\n.")
    with pytest.raises(CifarFormatError) as excinfo:
        _validate(tmp_path)
    _assert_one_line_error(
        excinfo, target, "refusing to unpickle global " + global_name.decode().replace("\n", ".")
    )


def test_bad_batch_inside_tarball_names_tarball_and_member(tmp_path: Path) -> None:
    _replace_python_batch(tmp_path / "x", {"data": _data(), "labels": [0, 12]}, stem="test_batch")
    tarball = _tar_folder(
        tmp_path / "x" / "cifar-10-batches-py", tmp_path / "cifar-10-python.tar.gz"
    )
    source = detect_cifar_source(str(tmp_path))
    with pytest.raises(CifarFormatError) as excinfo:
        validate_cifar_source(source)
    _assert_one_line_error(
        excinfo, f"{tarball}:cifar-10-batches-py/test_batch", "label 12 of image 1 is outside 0..9"
    )


def test_binary_size_not_a_multiple_of_the_record_size(tmp_path: Path) -> None:
    _write_version(tmp_path, BINARY, tarball=False)
    target = _batch_file(tmp_path, BINARY, "test_batch")
    with open(target, "ab") as stream:
        stream.write(b"\x00")
    with pytest.raises(CifarFormatError) as excinfo:
        _validate(tmp_path)
    _assert_one_line_error(
        excinfo, target, f"size {TEST_COUNT * 3073 + 1} bytes is not a multiple of 3073"
    )


def test_empty_binary_batch(tmp_path: Path) -> None:
    _write_version(tmp_path, BINARY, tarball=False)
    target = _batch_file(tmp_path, BINARY, "data_batch_5")
    target.write_bytes(b"")
    with pytest.raises(CifarFormatError) as excinfo:
        _validate(tmp_path)
    _assert_one_line_error(excinfo, target, "file is empty")


@pytest.mark.parametrize("tarball", [True, False], ids=["tarball", "extracted"])
def test_binary_label_out_of_range(tmp_path: Path, tarball: bool) -> None:
    images, labels = synthetic_cifar(5, seed=0)
    labels[3] = 12
    train, _ = _batches()
    location = Path(write_binary_version(str(tmp_path), train, (images, labels), tarball=tarball))
    path = (
        f"{location}:cifar-10-batches-bin/test_batch.bin"
        if tarball
        else location / "test_batch.bin"
    )
    source = detect_cifar_source(str(tmp_path))
    for read in (
        lambda: validate_cifar_source(source),
        lambda: list(iter_shard_records(source.shards["test"][0])),
    ):
        with pytest.raises(CifarFormatError) as excinfo:
            read()
        _assert_one_line_error(excinfo, path, "label 12 of image 3 is outside 0..9")


def test_shard_paths() -> None:
    in_tar = CifarShard(
        PYTHON, "/d/cifar-10-python.tar.gz", "cifar-10-batches-py/test_batch", (), "test_batch"
    )
    extracted = CifarShard(
        BINARY,
        "/d/cifar-10-batches-bin",
        "/d/cifar-10-batches-bin/test_batch.bin",
        (),
        "test_batch",
    )
    images = CifarShard(IMAGE_FOLDER, "/d", "", ("/d/train/cat/0001.png",), "train/cat", 3)
    assert (in_tar.in_tarball, extracted.in_tarball, images.in_tarball) == (True, False, False)
    assert in_tar.path == "/d/cifar-10-python.tar.gz:cifar-10-batches-py/test_batch"
    assert extracted.path == "/d/cifar-10-batches-bin/test_batch.bin"
    assert images.path == os.path.join("/d", "train", "cat")


def test_module_does_not_import_tensorflow() -> None:
    """The CLI imports these modules before TFX (pre-flight, run config) and must start fast."""
    import subprocess
    import sys

    code = (
        "import sys, components.cifar_example_gen.cifar_format, "
        "components.idx_example_gen.idx_format, components.example_gen.example_splits; "
        "print(any(name in sys.modules for name in ('tensorflow', 'tfx', 'apache_beam')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[1],
    )
    assert result.stdout.strip() == "False"


def test_python2_pickler_uses_long_memo_ids_for_many_strings() -> None:
    from tests.cifar_files import write_python2_pickle

    names = [f"file_{i}.png".encode() for i in range(300)]
    buffer = io.BytesIO()
    write_python2_pickle(buffer, {b"filenames": names, b"labels": np.arange(1500) % 10})
    opcodes = [opcode.name for opcode, _, _ in pickletools.genops(buffer.getvalue())]
    assert "LONG_BINPUT" in opcodes and opcodes.count("APPENDS") == 3  # 300 + 1000 + 500
    assert pickle.loads(buffer.getvalue(), encoding="bytes") == {
        b"filenames": names,
        b"labels": (np.arange(1500) % 10).tolist(),
    }
