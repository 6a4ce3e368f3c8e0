"""The compiled KFP v2 package: completing, writing and validating it.

A package is a YAML file with one or two documents, the format `kfp.Client`,
the KFP UI and `kfp.compiler` share: a `PipelineSpec`, optionally followed by
a Kubernetes `PlatformSpec` (node selectors, tolerations). TFX's
KubeflowV2DagRunner writes only the first and leaves some of it to the caller,
so `complete_package` adds what a cluster run needs:

* `defaultPipelineRoot`: TFX puts the pipeline root only into Vertex's JSON
  PipelineJob, never into the spec;
* the run parameters' defaults: TFX drops RuntimeParameter defaults, which
  would make every parameter mandatory at submission;
* resources for executors TFX left without them: its FileBasedExampleGen
  builder ignores `with_platform_config`;
* the PlatformSpec placing the GPU executor on GPU nodes.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from kubeflow import resources as resources_lib
from pipeline.plumbing.atomic_files import write_text_atomically

PACKAGE_HEADER = "# visionpipe Kubeflow Pipelines v2 package (compiled by TFX KubeflowV2DagRunner)\n"


class PackageError(ValueError):
    """A package file that cannot be submitted; the message is one line naming the file."""


def read_pipeline_spec_document(text: str) -> dict[str, Any]:
    """The PipelineSpec dict of a freshly compiled single-document YAML."""
    return yaml.safe_load(text)


def complete_package(
    spec: dict[str, Any],
    *,
    pipeline_root: str,
    parameter_defaults: dict[str, str | int | float],
    default_resources: resources_lib.ResourceSpec,
    gpu_executor: str | None,
    gpu_node_selector: dict[str, str],
    gpu_resource: str,
) -> list[dict[str, Any]]:
    """The package's documents: the completed PipelineSpec, then a PlatformSpec if any."""
    spec = copy.deepcopy(spec)
    spec["defaultPipelineRoot"] = pipeline_root
    parameters = spec.setdefault("root", {}).setdefault("inputDefinitions", {}).get("parameters", {})
    for name, default in parameter_defaults.items():
        if name in parameters:
            parameters[name].update(defaultValue=default, isOptional=True)
    resources = json_format.MessageToDict(default_resources)
    for executor in spec["deploymentSpec"]["executors"].values():
        container = executor.get("container")
        if container is not None and not container.get("resources"):
            container["resources"] = copy.deepcopy(resources)
    documents = [spec]
    if gpu_executor:
        documents.append(
            resources_lib.kubernetes_platform_spec(gpu_executor, gpu_node_selector, gpu_resource)
        )
    return documents


def write_package(documents: list[dict[str, Any]], path: str) -> None:
    """Validates `documents` and writes them to `path` atomically.

    The old file at `path`, if any, stays as it was unless the new package is
    valid and completely written.
    """
    text = "---\n".join(yaml.safe_dump(document, sort_keys=True) for document in documents)
    parse_package(text, path)
    write_text_atomically(path, PACKAGE_HEADER + text)


def parse_package(
    text: str, path: str
) -> tuple[pipeline_spec_pb2.PipelineSpec, pipeline_spec_pb2.PlatformSpec | None]:
    """The package's PipelineSpec and PlatformSpec, parsed strictly (unknown fields fail)."""
    try:
        documents = [document for document in yaml.safe_load_all(text) if document is not None]
    except yaml.YAMLError as error:
        raise PackageError(f"{path}: not YAML ({str(error).splitlines()[0]})") from None
    if not documents or not isinstance(documents[0], dict) or "pipelineInfo" not in documents[0]:
        raise PackageError(f"{path}: not a Kubeflow Pipelines v2 package (no pipelineInfo)")
    if len(documents) > 2:
        raise PackageError(f"{path}: expected a PipelineSpec and at most one PlatformSpec")
    spec = pipeline_spec_pb2.PipelineSpec()
    platform = pipeline_spec_pb2.PlatformSpec() if len(documents) == 2 else None
    for document, message in zip(documents, (spec, platform)):
        try:
            json_format.ParseDict(document, message)
        except json_format.ParseError as error:
            # protobuf's message is "<problem>.\nAvailable Fields(...)": keep the problem.
            problem = str(error).splitlines()[0]
            raise PackageError(f"{path}: invalid {type(message).__name__}: {problem}") from None
    return spec, platform


def load_package(
    path: str,
) -> tuple[pipeline_spec_pb2.PipelineSpec, pipeline_spec_pb2.PlatformSpec | None]:
    """Reads and validates a package file."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise PackageError(f"{path}: cannot read the package ({error.strerror})") from None
    return parse_package(text, path)
