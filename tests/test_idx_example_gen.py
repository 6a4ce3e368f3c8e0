"""The IDX ExampleGen executor, run for real with Beam on tiny files written here."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from components.example_gen import example_splits
from components.idx_example_gen import executor, idx_format
from components.idx_example_gen.component import IdxExampleGen
from tests.conftest import synthetic_digits, write_idx_dataset
from tests.example_gen_helpers import feature, read_split, run_example_gen
from tests.idx_files import write_idx

CLASS_NAMES = [f"class-{digit}" for digit in range(10)]


def example_gen(input_base: str, weights=(5, 1)) -> IdxExampleGen:
    return IdxExampleGen(
        input_base=input_base,
        image_shape=(28, 28, 1),
        class_names=CLASS_NAMES,
        train_eval_weights=weights,
    )


def run_executor(input_base: str, output_uri: str, weights=(5, 1)) -> None:
    run_example_gen(example_gen(input_base, weights), output_uri)


def test_component_keeps_the_file_based_example_gen_node_id():
    component = example_gen("/data")
    assert component.id == "FileBasedExampleGen"
    assert component.executor_spec.executor_class is executor.Executor


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("example_gen")
    data_dir = write_idx_dataset(str(root / "data"), train_count=120, test_count=30)
    run_executor(data_dir, str(root / "out"))
    splits = {split: read_split(str(root / "out"), split) for split in ("train", "eval", "test")}
    return data_dir, splits


def test_splits_partition_the_training_files_and_keep_test_separate(generated):
    _, splits = generated
    train_ids = {feature(e, "example_id") for e in splits["train"]}
    eval_ids = {feature(e, "example_id") for e in splits["eval"]}
    test_ids = {feature(e, "example_id") for e in splits["test"]}
    assert len(train_ids) + len(eval_ids) == 120 and not train_ids & eval_ids
    assert len(test_ids) == 30 and all(i.startswith(b"t10k-") for i in test_ids)
    # 5:1 by hash: about 20 of 120 in eval; allow hash noise but not a broken split.
    assert 8 <= len(eval_ids) <= 35


def test_images_are_pngs_of_the_original_pixels_with_their_labels(generated):
    data_dir, splits = generated
    images, labels = synthetic_digits(30, seed=1)  # how conftest wrote the t10k files
    for example in splits["test"]:
        index = int(feature(example, "example_id").split(b"-")[1])
        png = Image.open(io.BytesIO(feature(example, "image")))
        assert png.format == "PNG"
        np.testing.assert_array_equal(np.asarray(png), images[index])
        assert feature(example, "label") == labels[index]
        assert feature(example, "class_name") == CLASS_NAMES[labels[index]].encode()


def test_split_assignment_is_deterministic(generated, tmp_path):
    data_dir, splits = generated
    run_executor(data_dir, str(tmp_path / "again"))
    again = {feature(e, "example_id") for e in read_split(str(tmp_path / "again"), "eval")}
    assert again == {feature(e, "example_id") for e in splits["eval"]}


def test_split_weights_are_honoured(tmp_path):
    data_dir = write_idx_dataset(str(tmp_path / "data"), train_count=200, test_count=10)
    run_executor(data_dir, str(tmp_path / "out"), weights=(1, 1))
    assert 70 <= len(read_split(str(tmp_path / "out"), "eval")) <= 130


def test_label_out_of_range_fails_naming_the_file(tmp_path):
    data_dir = write_idx_dataset(str(tmp_path / "data"), train_count=30, test_count=10)
    labels_path = os.path.join(data_dir, "train-labels-idx1-ubyte.gz")
    labels = np.zeros(30, dtype=np.uint8)
    labels[7] = 12
    write_idx(labels_path, labels)
    with pytest.raises(Exception) as caught:
        run_executor(data_dir, str(tmp_path / "out"))
    assert "train-labels-idx1-ubyte.gz" in str(caught.value)
    assert "label 12 at index 7" in str(caught.value)


def test_count_mismatch_fails_before_reading(tmp_path):
    data_dir = write_idx_dataset(str(tmp_path / "data"), train_count=30, test_count=10)
    write_idx(
        os.path.join(data_dir, "t10k-labels-idx1-ubyte.gz"), np.zeros(9, dtype=np.uint8)
    )
    with pytest.raises(idx_format.IdxFormatError) as caught:
        run_executor(data_dir, str(tmp_path / "out"))
    assert "t10k-images-idx3-ubyte.gz: 10 images but " in str(caught.value)
    assert "t10k-labels-idx1-ubyte.gz has 9 labels" in str(caught.value)


def test_split_bucket_is_stable_across_processes():
    # A content hash, not Python's per-process salted hash().
    assert example_splits.split_bucket(b"train-000042", 6) == example_splits.split_bucket(b"train-000042", 6)
    assert {example_splits.split_bucket(f"train-{i:06d}".encode(), 6) for i in range(100)} == set(range(6))
