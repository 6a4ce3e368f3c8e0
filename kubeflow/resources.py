"""Pod resources in the two forms a KFP v2 package carries them.

* Requests and the GPU limit: `PipelineContainerSpec.ResourceSpec` in the
  pipeline spec, set per component with TFX's `with_platform_config`. Both
  generations of its fields are filled: the KFP 2.x backend reads the
  `resource*` strings first and falls back to the older numbers (cores, GB),
  and the accelerator's `resource_type` becomes the Kubernetes resource name
  (`nvidia.com/gpu`) of the pod's limit.
* Node selector and tolerations: not part of the pipeline spec but of the
  Kubernetes `PlatformSpec` (what `kfp-kubernetes` writes), a second YAML
  document in the package keyed by executor label.
"""

from __future__ import annotations

import re
from typing import Any

from kfp.pipeline_spec import pipeline_spec_pb2

from kubeflow.settings import ComponentResources

ResourceSpec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec

_SUFFIX_FACTORS = {
    "": 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
}
_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")


def quantity_value(quantity: str) -> float:
    """A Kubernetes quantity as a plain number: "500m" -> 0.5, "2Gi" -> 2147483648."""
    number, suffix = _QUANTITY.match(quantity).groups()  # type: ignore[union-attr]
    return float(number) * _SUFFIX_FACTORS[suffix]


def resource_spec(resources: ComponentResources) -> ResourceSpec:
    """Requests for CPU and memory, plus a GPU limit when `resources.gpus` > 0."""
    spec = ResourceSpec(
        cpu_request=quantity_value(resources.cpu),
        resource_cpu_request=resources.cpu,
        memory_request=quantity_value(resources.memory) / 1e9,  # the legacy field is in GB
        resource_memory_request=resources.memory,
    )
    if resources.gpus:
        spec.accelerator.CopyFrom(
            ResourceSpec.AcceleratorConfig(
                type=resources.gpu_resource,
                count=resources.gpus,
                resource_type=resources.gpu_resource,
                resource_count=str(resources.gpus),
            )
        )
    return spec


def kubernetes_platform_spec(
    executor_label: str, node_selector: dict[str, str], gpu_resource: str
) -> dict[str, Any]:
    """The Kubernetes PlatformSpec document placing one executor on GPU nodes.

    The toleration matches the taint that GKE and the NVIDIA GPU operator put
    on GPU nodes (`<gpu resource>:NoSchedule`); without it the pod would only
    schedule where the cluster adds it automatically.
    """
    executor: dict[str, Any] = {
        "tolerations": [{"key": gpu_resource, "operator": "Exists", "effect": "NoSchedule"}]
    }
    if node_selector:
        executor["nodeSelector"] = {"labels": dict(node_selector)}
    return {
        "platforms": {
            "kubernetes": {"deploymentSpec": {"executors": {executor_label: executor}}}
        }
    }
