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

from typing import Any

from kfp.pipeline_spec import pipeline_spec_pb2

from kubeflow.settings import ComponentResources, quantity_value

ResourceSpec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec


def resource_spec(resources: ComponentResources) -> ResourceSpec:
    """Requests for CPU and memory, plus a GPU limit when `resources.gpus` > 0."""
    spec = ResourceSpec(
        cpu_request=float(quantity_value(resources.cpu, "cpu")),  # the legacy field is in cores
        resource_cpu_request=resources.cpu,
        memory_request=float(quantity_value(resources.memory, "memory")) / 1e9,  # ... and this one in GB
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
