"""Which tf.distribute strategy the Trainer trains under, and how batch and learning rate scale with it.

* More than one visible GPU: ``MirroredStrategy`` over them (synchronous data
  parallelism: every GPU takes a slice of each batch, gradients are summed
  across them), so ``kubeflow compile --gpus N`` puts all N to work.
* Otherwise one device: TensorFlow's default strategy, exactly as before.

The run's ``--batch-size`` is the batch PER REPLICA, so each device keeps the
batch the model was tuned for; one optimizer step sees ``batch_size x
replicas`` examples. The learning rate follows the linear scaling rule (Goyal
et al., 2017, "Accurate, Large Minibatch SGD"): ``learning_rate x replicas``,
because an N times larger global batch takes N times fewer steps per epoch.
One replica changes nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import tensorflow as tf

from trainer_module.hparams import ModelHParams


def training_strategy(devices: Sequence[str] | None = None) -> tf.distribute.Strategy:
    """MirroredStrategy over `devices` (default: the visible GPUs) when there are several; else the default.

    Call it after `accelerator.configure_accelerator` (listing logical devices
    starts the GPU runtime, after which memory growth can no longer be set).
    `devices` lets the tests mirror over logical CPU devices.
    """
    names = list(devices) if devices is not None else [gpu.name for gpu in tf.config.list_logical_devices("GPU")]
    if len(names) > 1:
        return tf.distribute.MirroredStrategy(names)
    return tf.distribute.get_strategy()


def describe(strategy: tf.distribute.Strategy) -> str:
    """One line for the training log: the strategy and its replicas."""
    return f"{type(strategy).__name__}, {strategy.num_replicas_in_sync} replica(s)"


def global_batch_size(per_replica_batch_size: int, strategy: tf.distribute.Strategy) -> int:
    """The batch one optimizer step sees: each replica's batch, times the replicas."""
    return per_replica_batch_size * strategy.num_replicas_in_sync


def scaled_hparams(hparams: ModelHParams, strategy: tf.distribute.Strategy) -> ModelHParams:
    """``hparams`` with the learning rate scaled linearly by the replicas (unchanged for one)."""
    replicas = strategy.num_replicas_in_sync
    if replicas == 1:
        return hparams
    return dataclasses.replace(hparams, learning_rate=hparams.learning_rate * replicas)
