"""Picks the numeric setup for the hardware the Trainer landed on.

Why a separate step: TensorFlow's GPU options and Keras's dtype policy are both
process-global and only take effect for things created afterwards, so they must
be settled once, before the first model is built or tensor placed on a GPU.
"""

from __future__ import annotations

import logging

import keras
import tensorflow as tf

MIXED_PRECISION_POLICY = "mixed_float16"
FULL_PRECISION_POLICY = "float32"


def _gpu_name(gpu: tf.config.PhysicalDevice) -> str:
    """Marketing name (e.g. 'NVIDIA H100 80GB HBM3'), falling back to the TF name."""
    details = tf.config.experimental.get_device_details(gpu)
    return str(details.get("device_name", gpu.name))


def configure_accelerator() -> str:
    """Enables GPU memory growth and mixed precision when a GPU is visible.

    Call it once at the start of training, before ``build_model``: Keras reads
    the global dtype policy when each layer is created.

    * GPU(s): memory growth is turned on for each one, so TensorFlow does not
      grab all GPU memory up front (it would starve anything else sharing the
      device, e.g. a second worker or the Evaluator), and the global policy
      becomes ``mixed_float16`` (float16 compute on tensor cores, float32
      variables; ``Model.compile`` then wraps the optimizer in a
      LossScaleOptimizer). The models keep their softmax output in float32.
    * CPU only: the policy is (re)set to ``float32``; float16 on CPUs is slower
      and brings nothing but rounding error.

    Returns a one-line description for the training log, e.g.
    ``"GPU x1 (NVIDIA H100 80GB HBM3, mixed_float16)"`` or ``"CPU (float32)"``.
    """
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        keras.mixed_precision.set_global_policy(FULL_PRECISION_POLICY)
        return f"CPU ({FULL_PRECISION_POLICY})"
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError as err:
            # TF refuses once the GPU runtime is initialized (some op already ran
            # on it); training still works, it just keeps TF's default allocator.
            logging.warning("Could not enable memory growth on %s: %s", gpu.name, err)
    keras.mixed_precision.set_global_policy(MIXED_PRECISION_POLICY)
    names = ", ".join(dict.fromkeys(_gpu_name(gpu) for gpu in gpus))
    return f"GPU x{len(gpus)} ({names}, {MIXED_PRECISION_POLICY})"
