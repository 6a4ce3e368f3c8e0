"""What a Kubeflow deployment needs beyond a RunConfig, checked before anything is built.

Only the runner and this configuration differ between the local and the
Kubeflow pipeline (the definition is `pipeline.definition.create_pipeline` for
both). Every check here fails with one line naming the bad value, before a
package is compiled or anything is sent to a cluster: a cluster only finds
these mistakes minutes later, in a pod log.
"""

from __future__ import annotations

import dataclasses
import os
import re
from decimal import Decimal

from pipeline import configs

# Where kubeflow/Dockerfile puts the project inside the image (its WORKDIR).
# Paths baked into the compiled package (the curated schemas) point here.
CONTAINER_PROJECT_ROOT = "/app"

# The compiled package's run parameter for the data location (ExampleGen's
# input_base). Here, not in kubeflow.runner, so that submitting a package
# never imports TFX and TensorFlow (half a minute).
DATA_ROOT_PARAMETER = "data_root"

# The compiled package's default file name. Here, not in kubeflow.package,
# so that building the CLI's parser never imports kfp (a second, through
# kfp.pipeline_spec -> kfp -> kfp.client -> kubernetes).
PACKAGE_FILENAME = "pipeline.yaml"

CLUSTER_URI_SCHEMES = ("gs", "s3", "minio")
# TensorFlow 2.21 reads and writes gs:// natively, and TFX executors write
# their artifacts through TensorFlow's file system layer. It has no s3://
# (let alone minio://) file system, so those roots need an image that adds one.
TENSORFLOW_NATIVE_SCHEMES = ("gs",)

# Docker image reference: [registry[:port]/]name[/name...][:tag][@sha256:<64 hex>].
_NAME_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REGISTRY = r"(?:[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*(?::[0-9]+)?/)?"
_IMAGE_REFERENCE = re.compile(
    rf"^(?P<name>{_REGISTRY}{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)

# The Kubernetes resource name of a GPU (NVIDIA's device plugin): the
# Trainer's limit and the taint its toleration matches.
DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"


class KubeflowConfigError(ValueError):
    """A deployment setting that cannot work on a cluster; the message is one line."""


def check_image_reference(image: str) -> str:
    """`image` if it is a pinned image reference: a tag or a digest is required.

    Without one, every pod pulls whatever `:latest` is at that moment, so two
    components of one run can execute different code.
    """
    match = _IMAGE_REFERENCE.match(image)
    if not match:
        raise KubeflowConfigError(f"--image {image!r}: not a valid container image reference")
    if not match.group("tag") and not match.group("digest"):
        raise KubeflowConfigError(
            f"--image {image!r}: add a tag or a digest (e.g. {image}:1.0 or {image}@sha256:...), "
            "so every pod of a run pulls the same build"
        )
    return image


def check_cluster_uri(uri: str, option: str) -> str:
    """`uri` without a trailing slash if it is object storage that cluster pods can reach."""
    scheme, separator, rest = uri.partition("://")
    if not separator:
        raise KubeflowConfigError(
            f"{option} {uri!r}: a local path, which components running on a cluster cannot see; "
            f"use a {', '.join(s + '://' for s in CLUSTER_URI_SCHEMES)} URI"
        )
    if scheme not in CLUSTER_URI_SCHEMES or not rest.strip("/"):
        raise KubeflowConfigError(
            f"{option} {uri!r}: use a {', '.join(s + '://' for s in CLUSTER_URI_SCHEMES)} "
            "URI with a bucket"
        )
    return uri.rstrip("/")


def check_local_path(path: str, option: str) -> str:
    """`path` made absolute if it is a local path: a package for `kubeflow local-run` runs on this machine."""
    if "://" in path:
        raise KubeflowConfigError(
            f"{option} {path!r}: a package for local-run reads and writes on this machine; give a local path "
            "(or compile without --for-local-run for a cluster)"
        )
    return os.path.abspath(path)


def quantity_value(value: str, option: str) -> Decimal:
    """A resource request such as "500m", "2", "8Gi" as a number, parsed by the Kubernetes client library.

    `kubernetes.utils.parse_quantity` reads the number with `decimal.Decimal`,
    so on its own it also takes what no request can be ("-1", "NaN",
    "Infinity") and Decimal's own spellings ("16 Gi", "1_000"), which the
    API server would refuse only when the pod is created: refused here too.
    (It is laxer than the server in two more ways, "1K" and "1mi", which no
    one types for a request.) Imported here, not at the top: `import
    kubernetes` loads its whole API client, about a second.
    """
    from kubernetes.utils import parse_quantity

    try:
        number = None if any(c.isspace() or c == "_" for c in value) else parse_quantity(value)
    except (ValueError, ArithmeticError):  # ArithmeticError: decimal's own, e.g. "sNaNk", "1e999999999Ei"
        number = None
    if number is None or not number.is_finite() or number < 0:
        raise KubeflowConfigError(
            f"{option} {value!r}: not a Kubernetes quantity (e.g. 2, 500m, 8Gi, 16G)"
        )
    return number


def check_quantity(value: str, option: str) -> str:
    """`value` if it is a Kubernetes resource quantity (see `quantity_value`)."""
    quantity_value(value, option)
    return value


def check_node_selector(pairs: tuple[str, ...]) -> dict[str, str]:
    """`KEY=VALUE` strings -> a node selector dict."""
    selector = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key or not value:
            raise KubeflowConfigError(f"--gpu-node-selector {pair!r}: expected KEY=VALUE")
        selector[key] = value
    return selector


@dataclasses.dataclass(frozen=True)
class ComponentResources:
    """Requests (and the Trainer's GPU limit) for one component's pod."""

    cpu: str
    memory: str
    gpus: int = 0
    gpu_resource: str = DEFAULT_GPU_RESOURCE


# The defaults of `visionpipe kubeflow compile`'s resource options: every
# component but the Trainer, and the Trainer (one GPU).
DEFAULT_COMPONENT_RESOURCES = ComponentResources(cpu="1", memory="4Gi")
DEFAULT_TRAINER_RESOURCES = ComponentResources(cpu="4", memory="16Gi", gpus=1)


@dataclasses.dataclass(frozen=True)
class KubeflowSettings:
    """Image, storage and resources of one compiled package; validated on creation.

    `data_root` becomes the package's `data_root` run parameter (its default);
    `pipeline_root` its default pipeline root, where every artifact, the
    Evaluator's slices and the pushed models (`<root>/serving_model/...`) go.
    Both are object storage that cluster pods reach, or, with `local_run`
    (a package for `kubeflow local-run`), local paths.
    """

    image: str
    pipeline_root: str
    data_root: str | None = None  # None: <pipeline_root>/data/<dataset>
    component_resources: ComponentResources = DEFAULT_COMPONENT_RESOURCES
    trainer_resources: ComponentResources = DEFAULT_TRAINER_RESOURCES
    gpu_node_selector: dict[str, str] = dataclasses.field(default_factory=dict)
    # Every Beam-based component's Beam arguments (kubeflow/beam_runners.py).
    beam_pipeline_args: tuple[str, ...] = configs.IN_PROCESS_BEAM_ARGS
    local_run: bool = False  # a package for `kubeflow local-run`: local roots, this checkout's schemas

    def __post_init__(self) -> None:
        check_image_reference(self.image)
        check_location = check_local_path if self.local_run else check_cluster_uri
        object.__setattr__(self, "pipeline_root", check_location(self.pipeline_root, "--pipeline-root"))
        if self.data_root is not None:
            object.__setattr__(self, "data_root", check_location(self.data_root, "--data-dir"))
        for option, resources in (
            ("--cpu/--memory", self.component_resources),
            ("--trainer-cpu/--trainer-memory", self.trainer_resources),
        ):
            check_quantity(resources.cpu, option)
            check_quantity(resources.memory, option)
            if resources.gpus < 0:
                raise KubeflowConfigError(f"--gpus {resources.gpus}: must be 0 or more")

    def data_root_for(self, dataset: str) -> str:
        return self.data_root or f"{self.pipeline_root}/data/{dataset}"

    def storage_warnings(self) -> list[str]:
        """Why a root may compile fine and still fail inside the executors."""
        warnings = []
        if self.local_run:
            return warnings
        for option, uri in (("--pipeline-root", self.pipeline_root), ("--data-dir", self.data_root)):
            scheme = (uri or "").partition("://")[0]
            if uri and scheme not in TENSORFLOW_NATIVE_SCHEMES:
                warnings.append(
                    f"{option} {uri}: TFX executors read and write artifacts through "
                    f"TensorFlow, which has no {scheme}:// file system in this image; "
                    "use gs:// or add a TensorFlow S3 file system plugin to the image"
                )
        return warnings
