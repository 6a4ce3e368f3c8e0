"""The CIFAR-10 ExampleGen executor, run for real with Beam on tiny official-layout files."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from components.cifar_example_gen import cifar_format, executor
from components.cifar_example_gen.component import CifarExampleGen
from tests import cifar_files
from tests.example_gen_helpers import feature, read_split, run_example_gen

TRAIN_PER_BATCH, TEST_COUNT = 12, 15


def example_gen(input_base: str) -> CifarExampleGen:
    return CifarExampleGen(
        input_base=input_base,
        image_shape=(32, 32, 3),
        class_names=cifar_format.CIFAR10_CLASS_NAMES,
    )


def run_executor(input_base: str, output_uri: str) -> None:
    run_example_gen(example_gen(input_base), output_uri)


def test_component_keeps_the_file_based_example_gen_node_id():
    component = example_gen("/data")
    assert component.id == "FileBasedExampleGen"
    assert component.executor_spec.executor_class is executor.Executor


def official_data() -> tuple[list[cifar_files.Batch], cifar_files.Batch]:
    train = [cifar_files.synthetic_cifar(TRAIN_PER_BATCH, seed=seed) for seed in range(5)]
    return train, cifar_files.synthetic_cifar(TEST_COUNT, seed=99)


WRITERS = {
    "python tarball": lambda d, tr, te: cifar_files.write_python_version(d, tr, te, tarball=True),
    "binary folder": lambda d, tr, te: cifar_files.write_binary_version(d, tr, te, tarball=False),
    "image folder": lambda d, tr, te: cifar_files.write_image_folder(d, tr[0], te),
}


@pytest.mark.parametrize("layout", sorted(WRITERS))
def test_every_layout_gives_train_eval_and_test_examples(layout, tmp_path):
    train, test = official_data()
    WRITERS[layout](str(tmp_path / "data"), train, test)
    run_executor(str(tmp_path / "data"), str(tmp_path / "out"))
    splits = {name: read_split(str(tmp_path / "out"), name) for name in ("train", "eval", "test")}

    expected_train = TRAIN_PER_BATCH * (1 if layout == "image folder" else 5)
    train_ids = {feature(e, "example_id") for e in splits["train"]}
    eval_ids = {feature(e, "example_id") for e in splits["eval"]}
    assert len(train_ids) + len(eval_ids) == expected_train and not train_ids & eval_ids
    assert eval_ids, "5:1 carving left eval empty"
    assert len(splits["test"]) == TEST_COUNT

    for example in splits["test"]:
        png = Image.open(io.BytesIO(feature(example, "image")))
        assert png.format == "PNG" and png.mode == "RGB" and png.size == (32, 32)
        label = feature(example, "label")
        assert feature(example, "class_name") == cifar_format.CIFAR10_CLASS_NAMES[label].encode()


def test_pixels_and_labels_survive_the_python_version(tmp_path):
    train, test = official_data()
    cifar_files.write_python_version(str(tmp_path / "data"), train, test, tarball=False)
    run_executor(str(tmp_path / "data"), str(tmp_path / "out"))
    images, labels = test
    for example in read_split(str(tmp_path / "out"), "test"):
        index = int(feature(example, "example_id").split(b"-")[-1])
        decoded = np.asarray(Image.open(io.BytesIO(feature(example, "image"))))
        np.testing.assert_array_equal(decoded, images[index])
        assert feature(example, "label") == labels[index]


def test_bad_data_fails_naming_the_file(tmp_path):
    train, test = official_data()
    data_dir = cifar_files.write_binary_version(str(tmp_path / "data"), train, test, tarball=False)
    batch = next((tmp_path / "data").rglob("data_batch_2.bin"))
    batch.write_bytes(batch.read_bytes()[:-5])
    with pytest.raises(cifar_format.CifarFormatError, match="data_batch_2.bin"):
        run_executor(data_dir, str(tmp_path / "out"))
