"""Tests for components.idx_example_gen.idx_format on tiny IDX files written by tests.idx_files."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from components.idx_example_gen.idx_format import (
    IdxFormatError,
    IdxHeader,
    find_idx_file,
    iter_idx_chunks,
    iter_idx_records,
    open_idx,
    read_idx_header,
    validate_idx_dataset,
)
from tests.idx_files import write_idx

RNG = np.random.default_rng(0)


def _images(count: int, shape: tuple[int, int] = (28, 28)) -> np.ndarray:
    return RNG.integers(0, 256, size=(count, *shape), dtype=np.uint8)


def _labels(count: int, num_classes: int = 10) -> np.ndarray:
    return RNG.integers(0, num_classes, size=count, dtype=np.uint8)


def _write_dataset(
    directory: Path,
    train: int = 12,
    test: int = 5,
    suffix: str = ".gz",
    image_shape: tuple[int, int] = (28, 28),
) -> Path:
    """Write a complete, valid four-file dataset and return its directory."""
    directory.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", train), ("t10k", test)):
        images = _images(count, image_shape)
        write_idx(str(directory / f"{split}-images-idx3-ubyte{suffix}"), images)
        write_idx(str(directory / f"{split}-labels-idx1-ubyte{suffix}"), _labels(count))
    return directory


def _assert_one_line_error(excinfo: pytest.ExceptionInfo, path: object, *fragments: str) -> None:
    """The message must be a single line that starts with the file and says the problem."""
    message = str(excinfo.value)
    assert "\n" not in message
    assert message.startswith(str(path)), message
    for fragment in fragments:
        assert fragment in message, message


# --- reading and writing ---------------------------------------------------


@pytest.mark.parametrize("name", ["data-idx3-ubyte", "data-idx3-ubyte.gz"])
def test_round_trip(tmp_path: Path, name: str) -> None:
    path = str(tmp_path / name)
    images = _images(7, (4, 3))
    write_idx(path, images)

    header = read_idx_header(path)
    assert header == IdxHeader(path=path, ndim=3, dims=(7, 4, 3), data_offset=16)
    assert (header.count, header.record_shape, header.record_size) == (7, (4, 3), 12)
    np.testing.assert_array_equal(np.stack(list(iter_idx_records(path))), images)
    with open(path, "rb") as raw:
        assert (raw.read(2) == b"\x1f\x8b") == name.endswith(".gz")


def test_gzip_is_detected_by_content_not_suffix(tmp_path: Path) -> None:
    gz_path = tmp_path / "labels.gz"
    write_idx(str(gz_path), _labels(3))
    disguised = tmp_path / "labels-idx1-ubyte"
    os.rename(gz_path, disguised)
    with open_idx(str(disguised)) as stream:
        assert stream.read(4) == struct.pack(">I", 0x801)


def test_gzip_output_is_reproducible(tmp_path: Path) -> None:
    labels = _labels(20)
    write_idx(str(tmp_path / "a.gz"), labels)
    write_idx(str(tmp_path / "b.gz"), labels)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


def test_labels_are_zero_dimensional_records(tmp_path: Path) -> None:
    path = str(tmp_path / "labels-idx1-ubyte")
    write_idx(path, np.array([3, 1, 4], np.uint8))
    records = list(iter_idx_records(path))
    assert [record.shape for record in records] == [(), (), ()]
    assert [int(record) for record in records] == [3, 1, 4]


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_start_and_count(tmp_path: Path, suffix: str) -> None:
    path = str(tmp_path / f"images{suffix}")
    images = _images(10, (2, 2))
    write_idx(path, images)
    got = np.stack(list(iter_idx_records(path, start=3, count=4)))
    np.testing.assert_array_equal(got, images[3:7])
    chunks = list(iter_idx_chunks(path, start=3, count=4, chunk_records=3))
    assert [len(chunk) for chunk in chunks] == [3, 1]
    np.testing.assert_array_equal(np.concatenate(chunks), images[3:7])
    assert list(iter_idx_records(path, start=10)) == []
    with pytest.raises(ValueError, match="cannot read 8 records from index 3"):
        list(iter_idx_records(path, start=3, count=8))


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_chunked_streaming(tmp_path: Path, suffix: str) -> None:
    path = str(tmp_path / f"images{suffix}")
    images = _images(10, (3, 5))
    write_idx(path, images)
    chunks = list(iter_idx_chunks(path, chunk_records=4))
    assert [chunk.shape for chunk in chunks] == [(4, 3, 5), (4, 3, 5), (2, 3, 5)]
    assert all(chunk.dtype == np.uint8 and chunk.flags.writeable for chunk in chunks)
    np.testing.assert_array_equal(np.concatenate(chunks), images)


def test_find_idx_file(tmp_path: Path) -> None:
    write_idx(str(tmp_path / "x-idx1-ubyte.gz"), _labels(2))
    assert find_idx_file(str(tmp_path), "x-idx1-ubyte") == str(tmp_path / "x-idx1-ubyte.gz")
    write_idx(str(tmp_path / "x-idx1-ubyte"), _labels(2))
    assert find_idx_file(str(tmp_path), "x-idx1-ubyte") == str(tmp_path / "x-idx1-ubyte")
    with pytest.raises(IdxFormatError) as excinfo:
        find_idx_file(str(tmp_path), "y-idx1-ubyte")
    _assert_one_line_error(excinfo, tmp_path / "y-idx1-ubyte[.gz]", "file not found")


def test_write_rejects_non_uint8(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs a uint8 array, got float32"):
        write_idx(str(tmp_path / "f"), np.zeros(3, np.float32))


# --- validate_idx_dataset: the happy path ----------------------------------


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_validate_valid_dataset(tmp_path: Path, suffix: str) -> None:
    data_dir = _write_dataset(tmp_path / "data", suffix=suffix)
    sources = validate_idx_dataset(str(data_dir))
    assert set(sources) == {"train", "t10k"}
    assert (sources["train"].count, sources["t10k"].count) == (12, 5)
    assert sources["train"].images_path == str(data_dir / f"train-images-idx3-ubyte{suffix}")
    assert sources["t10k"].labels_path == str(data_dir / f"t10k-labels-idx1-ubyte{suffix}")
    assert sources["train"].image_shape == (28, 28)


# --- bad input: every error is one line naming the file --------------------


def test_missing_data_dir(tmp_path: Path) -> None:
    with pytest.raises(IdxFormatError) as excinfo:
        validate_idx_dataset(str(tmp_path / "nope"))
    _assert_one_line_error(excinfo, tmp_path / "nope", "does not exist")


def test_data_dir_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(IdxFormatError) as excinfo:
        validate_idx_dataset(str(tmp_path / "file"))
    _assert_one_line_error(excinfo, tmp_path / "file", "is not a directory")


def test_empty_data_dir(tmp_path: Path) -> None:
    with pytest.raises(IdxFormatError) as excinfo:
        validate_idx_dataset(str(tmp_path))
    _assert_one_line_error(
        excinfo, tmp_path, "no MNIST-format IDX files found", "train-images-idx3-ubyte[.gz]"
    )


def test_one_file_missing(tmp_path: Path) -> None:
    data_dir = _write_dataset(tmp_path)
    os.remove(data_dir / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(IdxFormatError) as excinfo:
        validate_idx_dataset(str(data_dir))
    _assert_one_line_error(excinfo, data_dir / "t10k-labels-idx1-ubyte[.gz]", "file not found")


def test_missing_file_for_reader(tmp_path: Path) -> None:
    with pytest.raises(IdxFormatError) as excinfo:
        read_idx_header(str(tmp_path / "absent"))
    _assert_one_line_error(excinfo, tmp_path / "absent", "file not found")


def test_wrong_magic_labels_in_place_of_images(tmp_path: Path) -> None:
    data_dir = _write_dataset(tmp_path)
    target = data_dir / "train-images-idx3-ubyte.gz"
    write_idx(str(target), _labels(12))
    with pytest.raises(IdxFormatError) as excinfo:
        validate_idx_dataset(str(data_dir))
    _assert_one_line_error(
        excinfo,
        target,
        "bad magic number 0x00000801, expected 0x00000803 (idx3 unsigned-byte images)",
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "file is empty"),
        (b"\x00\x00", "too short for an IDX header"),
        (b"GIF89a..", "not an IDX file"),
        (struct.pack(">III", 0x0D01, 1, 0), "element type 0x0d (float32) is not supported"),
        (struct.pack(">II", 0x0803, 2), "truncated IDX header"),
    ],
)
def test_bad_headers(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "bad-idx"
    path.write_bytes(content)
    with pytest.raises(IdxFormatError) as excinfo:
        read_idx_header(str(path))
    _assert_one_line_error(excinfo, path, problem)


def test_truncated_plain_file(tmp_path: Path) -> None:
    path = tmp_path / "images-idx3-ubyte"
    write_idx(str(path), _images(10, (4, 4)))
    with open(path, "r+b") as raw:
        raw.truncate(16 + 3 * 16 + 5)  # 3 whole records and part of a fourth
    with pytest.raises(IdxFormatError) as excinfo:
        list(iter_idx_records(str(path)))
    _assert_one_line_error(excinfo, path, "truncated: expected 10 records, file ends after 3")
    # Skipping past the end must report the same, not read garbage.
    with pytest.raises(IdxFormatError, match="file ends after 3"):
        list(iter_idx_records(str(path), start=8))


def test_truncated_plain_images_in_dataset(tmp_path: Path) -> None:
    data_dir = _write_dataset(tmp_path, suffix="")
    target = data_dir / "t10k-images-idx3-ubyte"
    with open(target, "r+b") as raw:
        raw.truncate(16 + 784 * 2)
    with pytest.raises(IdxFormatError) as excinfo:
        validate_idx_dataset(str(data_dir))
    _assert_one_line_error(excinfo, target, "truncated: expected 5 records, file ends after 2")


def test_truncated_gzip(tmp_path: Path) -> None:
    data_dir = _write_dataset(tmp_path)
    target = data_dir / "train-images-idx3-ubyte.gz"
    blob = target.read_bytes()
    target.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(IdxFormatError) as excinfo:
        validate_idx_dataset(str(data_dir))
    _assert_one_line_error(excinfo, target, "corrupt or truncated gzip stream")


def test_gzip_of_truncated_data(tmp_path: Path) -> None:
    """A well-formed gzip whose content is short: truncation, not corruption."""
    path = tmp_path / "labels.gz"
    payload = struct.pack(">II", 0x801, 100) + bytes(40)
    path.write_bytes(gzip.compress(payload, mtime=0))
    with pytest.raises(IdxFormatError) as excinfo:
        list(iter_idx_records(str(path)))
    _assert_one_line_error(excinfo, path, "truncated: expected 100 records, file ends after 40")
    with pytest.raises(IdxFormatError, match="file ends after 40"):
        list(iter_idx_records(str(path), start=60))


def test_corrupt_gzip_bytes(tmp_path: Path) -> None:
    data_dir = _write_dataset(tmp_path)
    target = data_dir / "train-labels-idx1-ubyte.gz"
    blob = bytearray(target.read_bytes())
    blob[-8] ^= 0xFF  # flip the stored CRC-32
    target.write_bytes(bytes(blob))
    with pytest.raises(IdxFormatError) as excinfo:
        validate_idx_dataset(str(data_dir))
    _assert_one_line_error(excinfo, target, "corrupt or truncated gzip stream", "CRC")


def test_garbage_inside_gzip_stream(tmp_path: Path) -> None:
    path = tmp_path / "images.gz"
    write_idx(str(path), np.random.default_rng(1).integers(0, 4, (50, 28, 28), np.uint8))
    blob = bytearray(path.read_bytes())
    middle = len(blob) // 2
    blob[middle : middle + 16] = b"\xff" * 16  # scramble the deflate data
    path.write_bytes(bytes(blob))
    with pytest.raises(IdxFormatError) as excinfo:
        list(iter_idx_chunks(str(path)))
    _assert_one_line_error(excinfo, path, "corrupt or truncated gzip stream")


def test_implausible_header_dimensions(tmp_path: Path) -> None:
    """A garbled header must not make the reader try to allocate exabytes."""
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(struct.pack(">IIII", 0x803, 1, 0xFFFFFF, 0xFFFFFF), mtime=0))
    with pytest.raises(IdxFormatError) as excinfo:
        list(iter_idx_chunks(str(path)))
    _assert_one_line_error(excinfo, path, "implausible record shape 16777215x16777215")


def test_trailing_data(tmp_path: Path) -> None:
    path = tmp_path / "labels-idx1-ubyte"
    write_idx(str(path), _labels(4))
    with open(path, "ab") as raw:
        raw.write(b"\x01")
    with pytest.raises(IdxFormatError) as excinfo:
        list(iter_idx_records(str(path)))
    _assert_one_line_error(excinfo, path, "unexpected trailing data (1 bytes) after the 4 records")


def test_count_mismatch(tmp_path: Path) -> None:
    data_dir = _write_dataset(tmp_path)
    labels = data_dir / "train-labels-idx1-ubyte.gz"
    write_idx(str(labels), _labels(11))
    with pytest.raises(IdxFormatError) as excinfo:
        validate_idx_dataset(str(data_dir))
    _assert_one_line_error(
        excinfo, data_dir / "train-images-idx3-ubyte.gz", f"12 images but {labels} has 11 labels"
    )


def test_label_out_of_range(tmp_path: Path) -> None:
    data_dir = _write_dataset(tmp_path)
    target = data_dir / "t10k-labels-idx1-ubyte.gz"
    write_idx(str(target), np.array([0, 9, 3, 10, 12], np.uint8))
    with pytest.raises(IdxFormatError) as excinfo:
        validate_idx_dataset(str(data_dir))
    _assert_one_line_error(excinfo, target, "label 10 at index 3 is outside 0..9")


def test_wrong_image_dimensions(tmp_path: Path) -> None:
    data_dir = _write_dataset(tmp_path, image_shape=(32, 32))
    with pytest.raises(IdxFormatError) as excinfo:
        validate_idx_dataset(str(data_dir))
    _assert_one_line_error(
        excinfo, data_dir / "train-images-idx3-ubyte.gz", "images are 32x32, expected 28x28"
    )
    sources = validate_idx_dataset(str(data_dir), image_shape=(32, 32))
    assert sources["train"].image_shape == (32, 32)
