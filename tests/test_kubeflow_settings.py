"""Kubeflow deployment settings: bad values fail with one line before anything is compiled."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kubeflow import resources
from kubeflow.settings import (
    ComponentResources,
    KubeflowConfigError,
    KubeflowSettings,
    check_cluster_uri,
    check_image_reference,
    check_node_selector,
    quantity_value,
)
from pipeline.cli import main as cli

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    "image",
    [
        "visionpipe:1.0",
        "registry.example.com/ml/visionpipe:0.1.0",
        "localhost:5000/visionpipe:dev-3",
        f"gcr.io/project/visionpipe@{DIGEST}",
        f"gcr.io/project/visionpipe:1.0@{DIGEST}",
    ],
)
def test_pinned_image_references_are_accepted(image: str) -> None:
    assert check_image_reference(image) == image


@pytest.mark.parametrize(
    "image, message",
    [
        ("gcr.io/project/visionpipe", "add a tag or a digest"),
        ("localhost:5000/visionpipe", "add a tag or a digest"),
        ("Visionpipe:1.0", "not a valid container image reference"),
        ("visionpipe:", "not a valid container image reference"),
        ("visionpipe@sha256:123", "not a valid container image reference"),
    ],
)
def test_unpinned_or_malformed_images_are_refused(image: str, message: str) -> None:
    with pytest.raises(KubeflowConfigError, match=message):
        check_image_reference(image)


@pytest.mark.parametrize("uri", ["gs://bucket/root/", "s3://bucket/root", "minio://mlpipeline/v2"])
def test_object_storage_roots_are_accepted(uri: str) -> None:
    assert check_cluster_uri(uri, "--pipeline-root") == uri.rstrip("/")


@pytest.mark.parametrize(
    "uri, message",
    [
        ("/tmp/visionpipe", "a local path, which components running on a cluster cannot see"),
        ("visionpipe_output", "a local path"),
        ("file:///tmp/x", "use a gs://, s3://, minio:// URI"),
        ("gs://", "URI with a bucket"),
    ],
)
def test_local_or_unsupported_roots_are_refused(uri: str, message: str) -> None:
    with pytest.raises(KubeflowConfigError, match=message):
        check_cluster_uri(uri, "--pipeline-root")


def test_s3_and_minio_roots_warn_that_tensorflow_cannot_write_them() -> None:
    assert KubeflowSettings(image="v:1", pipeline_root="gs://b/r").storage_warnings() == []
    warnings = KubeflowSettings(
        image="v:1", pipeline_root="minio://mlpipeline/r", data_root="s3://data/fm"
    ).storage_warnings()
    assert len(warnings) == 2
    assert "no minio:// file system" in warnings[0] and "no s3:// file system" in warnings[1]


def test_resources_are_checked_and_converted() -> None:
    with pytest.raises(KubeflowConfigError, match="not a Kubernetes quantity"):
        KubeflowSettings(
            image="v:1", pipeline_root="gs://b/r", component_resources=ComponentResources("1", "4 GB")
        )
    spec = resources.resource_spec(ComponentResources(cpu="500m", memory="2Gi", gpus=1))
    assert spec.cpu_request == 0.5 and spec.memory_request == pytest.approx(2.147483648)
    assert (spec.accelerator.resource_type, spec.accelerator.count) == ("nvidia.com/gpu", 1)
    with pytest.raises(KubeflowConfigError, match="expected KEY=VALUE"):
        check_node_selector(("pool=gpu", "novalue="))


@pytest.mark.parametrize(
    "quantity, value",
    [("2", 2), ("500m", 0.5), ("0.5", 0.5), ("8Gi", 8 * 2**30), ("1.5Gi", 1.5 * 2**30), ("16G", 16e9), ("1e3", 1000)],
)
def test_quantities_are_read_as_kubernetes_reads_them(quantity: str, value: float) -> None:
    assert float(quantity_value(quantity, "--memory")) == pytest.approx(value)


@pytest.mark.parametrize("quantity", ["4 GB", "16GB", "16gi", "1ki", "Gi", "", "-1", "NaN", "Infinity", "16 Gi", "1_000"])
def test_what_is_no_resource_request_is_refused(quantity: str) -> None:
    with pytest.raises(KubeflowConfigError, match=re.escape(f"--memory {quantity!r}: not a Kubernetes quantity")):
        quantity_value(quantity, "--memory")


def test_compile_defaults_are_the_settings_defaults() -> None:
    """One owner: `kubeflow compile`'s resource options default to KubeflowSettings' own defaults."""
    parser = cli.build_parser()
    args = parser.parse_args(["kubeflow", "compile", "--image", "v:1", "--pipeline-root", "gs://b/r"])
    defaults = KubeflowSettings(image="v:1", pipeline_root="gs://b/r")
    assert (args.cpu, args.memory) == (defaults.component_resources.cpu, defaults.component_resources.memory)
    trainer = defaults.trainer_resources
    assert (args.trainer_cpu, args.trainer_memory, args.gpus, args.gpu_resource) == (
        trainer.cpu, trainer.memory, trainer.gpus, trainer.gpu_resource
    )


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--image", "gcr.io/p/visionpipe", "--image 'gcr.io/p/visionpipe': add a tag or a digest"),
        ("--pipeline-root", "/data/root", "--pipeline-root '/data/root': a local path"),
        ("--data-dir", "data/fashion_mnist", "--data-dir 'data/fashion_mnist': a local path"),
    ],
)
def test_compile_refuses_bad_settings_and_keeps_the_previous_package(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, message: str
) -> None:
    output = tmp_path / "pipeline.yaml"
    output.write_text("previous package\n")
    arguments = {"--image": "gcr.io/p/visionpipe:1", "--pipeline-root": "gs://b/r", option: value}

    code = cli.main(["kubeflow", "compile", "--output", str(output), *sum(arguments.items(), ())])

    error = capsys.readouterr().err.strip()
    assert code == 1
    assert error == f"visionpipe: error: {error.split('error: ', 1)[1]}" and message in error
    assert "\n" not in error
    assert output.read_text() == "previous package\n"
