"""CIFAR-10 through the whole pipeline: official python tarball in, named classes out.

A short real run (LocalDagRunner, Beam, TFT, Keras, TFMA, Pusher) on a tiny
tarball in the exact official layout, with the dataset's default model, so the
per-step one-cycle schedule and label smoothing are exercised too.
"""

from __future__ import annotations

import json
import os

import pytest
import tensorflow_model_analysis as tfma
from PIL import Image

from components.cifar_example_gen import cifar_format
from tests import cifar_files
from pipeline.cli import main as cli
from pipeline import datasets


@pytest.fixture(scope="module")
def cifar_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar_e2e")
    train = [cifar_files.synthetic_cifar(24, seed=seed) for seed in range(5)]
    test = cifar_files.synthetic_cifar(40, seed=11)
    data_dir = str(root / "data")
    cifar_files.write_python_version(data_dir, train, test, tarball=True)
    output_dir = str(root / "out")
    code = cli.main(
        ["run", "--dataset", "cifar10", "--data-dir", data_dir, "--output-dir", output_dir,
         "--epochs", "2", "--batch-size", "32", "--accuracy-threshold", "0"]
    )
    with open(os.path.join(output_dir, "run_summary.json"), encoding="utf-8") as handle:
        summary = json.load(handle)
    return code, summary, output_dir


def test_run_pushes_the_default_model_with_named_classes(cifar_run):
    code, summary, _ = cifar_run
    assert code == 0
    assert summary["model"] == datasets.CIFAR10.default_model
    assert summary["pushed_model_dir"]
    assert set(summary["per_class_accuracy"]) == set(cifar_format.CIFAR10_CLASS_NAMES)


def test_evaluator_slices_by_class_name(cifar_run):
    _, summary, _ = cifar_run
    names = set()
    for metrics in tfma.load_metrics(summary["evaluation_uri"]):
        for single in metrics.slice_key.single_slice_keys:
            if single.column == "class_name":
                names.add(single.bytes_value.decode())
    assert names == set(cifar_format.CIFAR10_CLASS_NAMES)


def test_predict_resizes_any_colour_image_and_names_the_class(cifar_run, tmp_path, capsys):
    *_, output_dir = cifar_run
    images, _ = cifar_files.synthetic_cifar(2, seed=5)
    path = tmp_path / "big.jpg"
    Image.fromarray(images[0]).resize((96, 80)).save(path, format="JPEG")
    capsys.readouterr()
    assert cli.main(["predict", "--model-dir", output_dir, str(path)]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(str(path)))
    predicted_name = line.split(": ", 1)[1].split(" (class")[0]
    assert predicted_name in cifar_format.CIFAR10_CLASS_NAMES
