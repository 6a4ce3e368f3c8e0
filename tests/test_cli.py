"""`visionpipe` CLI: argument checks and every bad-input case, through the real entry point.

Each bad input must give exit code 1, exactly one error line on stderr naming
the offending file, and no pipeline output (no pushed model, no summary).
"""

from __future__ import annotations

import gzip
import importlib.metadata
import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

from PIL import Image

from tests import cifar_files
from tests import idx_files
from pipeline.cli import main as cli
from tests.conftest import write_idx_dataset

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_failed_cleanly(code: int, err: str, named: str, output_dir) -> None:
    """Exit 1, exactly one error line naming the file, and no pipeline output."""
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("visionpipe: error: ") and named in lines[0], lines[0]
    assert not (output_dir / "serving_model").exists()
    assert not (output_dir / "run_summary.json").exists()


def break_missing_file(data_dir: str) -> str:
    os.remove(os.path.join(data_dir, "t10k-labels-idx1-ubyte.gz"))
    return "t10k-labels-idx1-ubyte"


def break_wrong_magic(data_dir: str) -> str:
    path = os.path.join(data_dir, "train-images-idx3-ubyte.gz")
    with gzip.open(path, "rb") as handle:
        content = bytearray(handle.read())
    content[2:4] = b"\x08\x01"  # claims to be a 1-D label file
    with gzip.open(path, "wb") as handle:
        handle.write(bytes(content))
    return "train-images-idx3-ubyte.gz"


def truncate_to_half(path: str) -> None:
    with open(path, "rb") as handle:
        content = handle.read()
    with open(path, "wb") as handle:
        handle.write(content[: len(content) // 2])


def break_truncated_gzip(data_dir: str) -> str:
    truncate_to_half(os.path.join(data_dir, "train-images-idx3-ubyte.gz"))
    return "train-images-idx3-ubyte.gz"


def break_corrupt_gzip(data_dir: str) -> str:
    path = os.path.join(data_dir, "t10k-images-idx3-ubyte.gz")
    with open(path, "rb") as handle:
        content = bytearray(handle.read())
    for offset in range(40, min(len(content) - 10, 200)):
        content[offset] ^= 0x5A
    with open(path, "wb") as handle:
        handle.write(bytes(content))
    return "t10k-images-idx3-ubyte.gz"


def break_count_mismatch(data_dir: str) -> str:
    idx_files.write_idx(
        os.path.join(data_dir, "train-labels-idx1-ubyte.gz"), np.zeros(59, dtype=np.uint8)
    )
    return "train-"


def break_label_range(data_dir: str) -> str:
    labels = np.zeros(60, dtype=np.uint8)
    labels[33] = 10
    idx_files.write_idx(os.path.join(data_dir, "train-labels-idx1-ubyte.gz"), labels)
    return "train-labels-idx1-ubyte.gz"


def break_image_dimensions(data_dir: str) -> str:
    idx_files.write_idx(
        os.path.join(data_dir, "t10k-images-idx3-ubyte.gz"), np.zeros((20, 32, 32), dtype=np.uint8)
    )
    return "t10k-images-idx3-ubyte.gz"


def break_empty_dir(data_dir: str) -> str:
    shutil.rmtree(data_dir)
    os.makedirs(data_dir)
    return data_dir


BREAKAGES = [
    break_missing_file,
    break_wrong_magic,
    break_truncated_gzip,
    break_corrupt_gzip,
    break_count_mismatch,
    break_label_range,
    break_image_dimensions,
    break_empty_dir,
]


@pytest.mark.parametrize("breakage", BREAKAGES, ids=lambda f: f.__name__[len("break_"):])
def test_bad_input_gives_one_line_naming_the_file_and_exit_1(tmp_path, capsys, breakage):
    data_dir = write_idx_dataset(str(tmp_path / "data"), train_count=60, test_count=20)
    named = breakage(data_dir)
    output_dir = tmp_path / "out"
    code, out, err = run_cli(
        capsys, "run", "--data-dir", data_dir, "--output-dir", str(output_dir)
    )
    assert_failed_cleanly(code, err, named, output_dir)


def test_missing_data_dir(tmp_path, capsys):
    code, _, err = run_cli(capsys, "run", "--data-dir", str(tmp_path / "nope"), "--output-dir", str(tmp_path))
    assert code == 1 and "nope" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--epochs", "0"],
        ["run", "--epochs", "10001"],
        ["run", "--batch-size", "-3"],
        ["run", "--batch-size", "99999999999999999999"],
        ["run", "--batch-size", "12.5"],
        ["kubeflow", "compile", "--image", "i", "--pipeline-root", "gs://b/r", "--output", "pkg.json"],
        ["fetch", "--dataset", "mnist", "--deadline", "0"],
        ["run", "--accuracy-threshold", "1.5"],
        ["run", "--model", "resnet9000"],
        ["run", "--dataset", "imagenet"],
        ["fetch"],
        ["predict", "--model-dir", "x"],
    ],
)
def test_bad_arguments_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as caught:
        cli.main(argv)
    assert caught.value.code == 2


def test_non_default_dataset_needs_a_data_dir(capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["run", "--dataset", "mnist"])
    assert caught.value.code == 2
    assert "--data-dir is required for --dataset mnist" in capsys.readouterr().err


def test_bounds_are_named_in_the_usage_error(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--batch-size", "99999999999999999999"])
    assert "--batch-size: must be an integer from 1 to 65,536, got 99999999999999999999" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["kubeflow", "compile", "--image", "i", "--pipeline-root", "gs://b/r", "--output", "pkg.json"])
    assert "pkg.json: a Kubeflow Pipelines v2 package is YAML; give it a .yaml or .yml name" in capsys.readouterr().err


BUILT_IN_COMMANDS = ("run", "slices", "report", "fetch", "predict", "serve-check")


def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as caught:
        cli.main([*argv, "--help"])
    assert caught.value.code == 0
    return capsys.readouterr().out


def test_help_lists_the_built_in_and_the_plugged_in_commands(capsys):
    usage = _help(capsys).splitlines()[1]  # "  {run,slices,...,kubeflow} ..."
    assert set(usage.strip().split()[0].strip("{}").split(",")) == {*BUILT_IN_COMMANDS, "kubeflow"}
    assert "{compile,run,local-run,status}" in _help(capsys, "kubeflow")


def test_kubeflow_is_a_plugin_found_through_its_entry_point():
    """pipeline/ never imports kubeflow/: the group is registered in pyproject.toml."""
    (plugin,) = [p for p in importlib.metadata.entry_points(group=cli.COMMAND_PLUGINS) if p.name == "kubeflow"]
    assert plugin.value == "kubeflow.commands:add_kubeflow_parser"


def test_a_plugin_that_cannot_load_costs_only_its_own_commands(capsys, monkeypatch):
    broken = importlib.metadata.EntryPoint("broken", "no_such_package.commands:add_parser", cli.COMMAND_PLUGINS)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [broken])

    out = _help(capsys)
    assert all(command in out for command in BUILT_IN_COMMANDS) and "kubeflow" not in out
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert capsys.readouterr().err.strip().splitlines() == [
        "visionpipe: warning: the 'broken' commands (no_such_package.commands:add_parser) are unavailable: "
        "No module named 'no_such_package'"
    ]


def test_a_usage_error_found_by_a_handler_shows_that_command_s_usage(capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["kubeflow", "compile", "--image", "i:1", "--pipeline-root", "gs://b/r",
                  "--dataset", "mnist", "--normalization", "imagenet"])  # fmt: skip
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: visionpipe kubeflow compile ")
    assert "mnist images have 1 channel; use --normalization computed" in err.splitlines()[-1]


USAGE_ERRORS = [
    ["run", "--epochs", "0"],
    ["run", "--dataset", "mnist"],
    ["run", "--dataset", "mnist", "--data-dir", "d", "--normalization", "imagenet"],
    ["run", "--output-dir", "run[1]"],
    ["kubeflow", "compile", "--image", "i:1", "--pipeline-root", "gs://b/r", "--dataset", "mnist", "--normalization", "imagenet"],
    ["kubeflow", "run", "--endpoint", "http://localhost:1", "--poll-seconds", "0"],
    ["kubeflow", "status", "--endpoint", "http://localhost:1"],
    ["slices", "--output-dir", "a", "--eval-dir", "b"],
]


def test_usage_errors_exit_2_before_tensorflow_or_tfx_is_imported(tmp_path):
    """A mistyped option costs a second, not the 17 s import of TFX."""
    script = (
        "import json, sys\n"
        "from pipeline.cli import main as cli\n"
        "outcomes = []\n"
        "for argv in json.loads(sys.argv[1]):\n"
        "    try:\n"
        "        code = cli.main(argv)\n"
        "    except SystemExit as stop:\n"
        "        code = stop.code\n"
        "    outcomes.append([code, 'tensorflow' in sys.modules or 'tfx' in sys.modules])\n"
        "print(json.dumps(outcomes))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(USAGE_ERRORS)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == [[2, False]] * len(USAGE_ERRORS), result.stderr


def test_fetch_offline_is_one_clear_line(tmp_path, capsys, monkeypatch):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("VISIONPIPE_MIRROR_URL", f"http://127.0.0.1:{port}/")
    code, _, err = run_cli(capsys, "fetch", "--dataset", "mnist", "--data-dir", str(tmp_path))
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "could not download" in err


def _cifar_batches() -> tuple[list[cifar_files.Batch], cifar_files.Batch]:
    """Five tiny training batches and a test batch, as the writers take them."""
    train = [cifar_files.synthetic_cifar(10, seed=seed) for seed in range(5)]
    return train, cifar_files.synthetic_cifar(10)


def _cifar_truncated_tarball(root: str) -> str:
    truncate_to_half(cifar_files.write_python_version(root, *_cifar_batches(), tarball=True))
    return "cifar-10-python.tar.gz"


def _cifar_grayscale_png(root: str) -> str:
    cifar_files.write_image_folder(
        root, cifar_files.synthetic_cifar(20), cifar_files.synthetic_cifar(20, seed=1)
    )
    path = os.path.join(root, "train", "cat", "gray.png")
    Image.new("L", (32, 32), 128).save(path)
    return "gray.png"


def _find(root: str, name: str) -> str:
    return next(os.path.join(folder, name) for folder, _, files in os.walk(root) if name in files)


def _cifar_code_in_pickle(root: str) -> str:
    cifar_files.write_python_version(root, *_cifar_batches(), tarball=False)
    with open(_find(root, "data_batch_3"), "wb") as handle:  # protocol 2: GLOBAL 'posix system' + a call
        handle.write(b"\x80\x02cposix\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.")
    return "data_batch_3"


def _cifar_binary_size(root: str) -> str:
    cifar_files.write_binary_version(root, *_cifar_batches(), tarball=False)
    with open(_find(root, "test_batch.bin"), "ab") as handle:
        handle.write(b"\x00" * 7)
    return "test_batch.bin"


@pytest.mark.parametrize(
    "breakage",
    [_cifar_truncated_tarball, _cifar_grayscale_png, _cifar_code_in_pickle, _cifar_binary_size],
    ids=lambda f: f.__name__[len("_cifar_"):],
)
def test_bad_cifar_input_gives_one_line_naming_the_file_and_exit_1(tmp_path, capsys, breakage):
    data_dir = str(tmp_path / "data")
    named = breakage(data_dir)
    output_dir = tmp_path / "out"
    code, _, err = run_cli(
        capsys, "run", "--dataset", "cifar10", "--data-dir", data_dir, "--output-dir", str(output_dir)
    )
    assert_failed_cleanly(code, err, named, output_dir)


def test_infra_validator_without_a_docker_engine_is_refused_before_anything_runs(idx_dir, tmp_path, capsys, monkeypatch):
    """TFX's InfraValidator starts TF Serving in Docker; with no engine, one line at once, not minutes later."""
    socket_path = tmp_path / "no-docker.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{socket_path}")
    output_dir = tmp_path / "out"
    code, _, err = run_cli(
        capsys, "run", "--dataset", "mnist", "--data-dir", idx_dir, "--output-dir", str(output_dir),
        "--serving-check", "infra-validator",
    )
    assert_failed_cleanly(code, err, f"no Docker engine answers at unix://{socket_path}", output_dir)
    assert "use --serving-check serving-gate" in err
    assert not (output_dir / "metadata.sqlite").exists()
