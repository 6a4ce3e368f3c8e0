"""Which tf.distribute strategy the Trainer trains under, and how batch, learning rate and data split with it.

* ``TF_CONFIG`` describes a cluster of more than one training task (``chief``
  and ``worker`` jobs): ``MultiWorkerMirroredStrategy`` over all of them
  (synchronous data parallelism across machines: every task runs the same
  Trainer, gradients are all-reduced over every device of every worker).
* Otherwise, more than one visible GPU: ``MirroredStrategy`` over them (the
  same, within one machine), so ``kubeflow compile --gpus N`` puts all N to work.
* Otherwise one device: TensorFlow's default strategy, exactly as before.

The run's ``--batch-size`` is the batch PER REPLICA, so each device keeps the
batch the model was tuned for; one optimizer step sees ``batch_size x
replicas`` examples, where the replicas are ``strategy.num_replicas_in_sync``
(under MultiWorkerMirroredStrategy: all devices of all workers). The learning
rate follows the linear scaling rule (Goyal et al., 2017, "Accurate, Large
Minibatch SGD"): ``learning_rate x replicas``, because an N times larger global
batch takes N times fewer steps per epoch. One replica changes nothing.

Across workers the training split is sharded explicitly (``worker_batches``):
worker ``i`` of ``W`` trains on examples ``i, i + W, i + 2W, ...``, and every
worker runs the same number of steps per epoch, ``example_count // global
batch`` full global batches (a collective step needs every worker; a worker
that ran out first would leave the others waiting). So each epoch leaves out
fewer than one global batch of examples, a different random few each epoch.
The evaluation split is neither cut nor sharded: every worker evaluates all of
it (``evaluation_batches``), so the metrics are the whole split's.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Sequence

import tensorflow as tf

from trainer_module.hparams import ModelHParams

TF_CONFIG = "TF_CONFIG"
TRAINING_JOBS = ("chief", "worker")  # the tasks that train; TF's "ps" and "evaluator" do not


def _training_tasks(cluster: dict[str, Sequence[str] | dict[int, str]]) -> int:
    """How many tasks of a cluster spec (as ``ClusterSpec.as_dict()``) train."""
    return sum(len(cluster.get(job, ())) for job in TRAINING_JOBS)


def multi_worker_resolver() -> tf.distribute.cluster_resolver.TFConfigClusterResolver | None:
    """TensorFlow's resolver of ``TF_CONFIG`` when it describes more than one training task; None otherwise.

    None for no ``TF_CONFIG`` or a cluster of one task: that is one machine,
    trained as without a cluster. Raises a one-line ValueError for a
    ``TF_CONFIG`` that MultiWorkerMirroredStrategy would choke on later, with a
    far less readable error: not JSON, a cluster that is not a mapping, a
    parameter-server cluster, or a task that is not one of its cluster's
    training tasks.
    """
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    try:
        cluster = resolver.cluster_spec().as_dict()
        task_type, task_id = resolver.task_type, resolver.task_id
    except json.JSONDecodeError as error:
        raise ValueError(f"{TF_CONFIG} is not valid JSON: {error}") from None
    except (TypeError, ValueError) as error:
        raise ValueError(f"{TF_CONFIG} has no usable cluster or task: {error}") from None
    if _training_tasks(cluster) <= 1:
        return None
    if "ps" in cluster:
        raise ValueError(
            f"{TF_CONFIG} describes a parameter-server cluster; the Trainer trains with "
            "MultiWorkerMirroredStrategy, on chief and worker tasks only"
        )
    if task_type not in TRAINING_JOBS or task_id is None or not 0 <= task_id < len(cluster.get(task_type, ())):
        raise ValueError(
            f"{TF_CONFIG}'s task {task_type}:{task_id} is not one of its cluster's chief or worker tasks"
        )
    return resolver


class KerasMultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """MultiWorkerMirroredStrategy whose ``reduce`` accepts the two calls Keras 3's ``Model.fit`` makes of it.

    Keras 3.15 (keras-team/keras#20585, open; tensorflow/tensorflow#72388)
    calls ``strategy.reduce`` with a nest of per-replica values (the first
    batch, in ``_maybe_symbolic_build``) and with scalar metrics along
    ``axis=0`` (``reduce_per_replica``'s mean across workers). TensorFlow's
    MultiWorkerMirroredStrategy raises for both (a nest "to a Tensor"; "Invalid
    reduction dimension 0 for input with 0 dimensions"), so ``fit`` fails
    before its first step. This reduces a nest leaf by leaf and a scalar
    across the replicas only (there is no axis to reduce it along); every call
    TensorFlow accepts goes through unchanged.
    """

    def reduce(self, reduce_op: tf.distribute.ReduceOp | str, value: object, axis: int | None) -> object:
        def reduce_one(leaf: object) -> tf.Tensor:
            local = leaf.values[0] if isinstance(leaf, tf.distribute.DistributedValues) else tf.convert_to_tensor(leaf)
            leaf_axis = None if local.shape.rank == 0 else axis
            return super(KerasMultiWorkerMirroredStrategy, self).reduce(reduce_op, leaf, axis=leaf_axis)

        return tf.nest.map_structure(reduce_one, value)


@functools.cache
def _multi_worker_strategy() -> tf.distribute.MultiWorkerMirroredStrategy:
    """The process's one MultiWorkerMirroredStrategy.

    Once per process, because it configures TensorFlow's collective ops and
    starts this task's gRPC server, which a second instance cannot do again.
    """
    return KerasMultiWorkerMirroredStrategy(cluster_resolver=multi_worker_resolver())


def training_strategy(devices: Sequence[str] | None = None) -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy for a TF_CONFIG cluster; else MirroredStrategy over several `devices`; else the default.

    `devices` (default: the visible GPUs) lets the tests mirror over logical
    CPU devices. Call it after `accelerator.configure_accelerator` (listing
    logical devices starts the GPU runtime, after which memory growth can no
    longer be set) and before anything else runs a TensorFlow op:
    MultiWorkerMirroredStrategy configures the collective ops, which TensorFlow
    only allows before its runtime has started ("Collective ops must be
    configured at program startup"). So the cluster is looked at first, from
    the environment alone, and the devices only when there is none.
    """
    if multi_worker_resolver() is not None:
        return _multi_worker_strategy()
    names = list(devices) if devices is not None else [gpu.name for gpu in tf.config.list_logical_devices("GPU")]
    if len(names) > 1:
        return tf.distribute.MirroredStrategy(names)
    return tf.distribute.get_strategy()


def worker_count(strategy: tf.distribute.Strategy) -> int:
    """The workers (training tasks) the strategy spans: 1 but under MultiWorkerMirroredStrategy.

    The default strategy and MirroredStrategy have no cluster resolver.
    """
    resolver = strategy.cluster_resolver
    return max(1, _training_tasks(resolver.cluster_spec().as_dict())) if resolver is not None else 1


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's outputs: always on one machine; across workers, only the chief.

    TensorFlow's own rule, ``should_checkpoint``: the ``chief`` task, or worker
    0 when the cluster has no chief.
    """
    return bool(strategy.extended.should_checkpoint)


def describe(strategy: tf.distribute.Strategy) -> str:
    """One line for the training log: the strategy, its replicas and, across workers, this task."""
    line = f"{type(strategy).__name__}, {strategy.num_replicas_in_sync} replica(s)"
    workers = worker_count(strategy)
    if workers > 1:
        resolver = strategy.cluster_resolver
        role = "chief" if is_chief(strategy) else "not the chief"
        line += f" on {workers} workers; this is {resolver.task_type}:{resolver.task_id} ({role})"
    return line


def global_batch_size(per_replica_batch_size: int, strategy: tf.distribute.Strategy) -> int:
    """The batch one optimizer step sees: each replica's batch, times the replicas."""
    return per_replica_batch_size * strategy.num_replicas_in_sync


def scaled_hparams(hparams: ModelHParams, strategy: tf.distribute.Strategy) -> ModelHParams:
    """``hparams`` with the learning rate scaled linearly by the replicas (unchanged for one)."""
    replicas = strategy.num_replicas_in_sync
    if replicas == 1:
        return hparams
    return dataclasses.replace(hparams, learning_rate=hparams.learning_rate * replicas)


def steps_per_epoch(example_count: int, global_batch: int, workers: int) -> int:
    """Optimizer steps per epoch: every batch on one machine (the last may be short), full global batches across workers.

    Across workers a short last batch would be split unevenly, down to none
    for some worker, so only full global batches are trained (module docstring).
    """
    if workers == 1:
        return math.ceil(example_count / global_batch)
    if example_count < global_batch:
        raise ValueError(
            f"The training split has {example_count} examples, fewer than one global batch of "
            f"{global_batch} over {workers} workers; lower --batch-size"
        )
    return example_count // global_batch


def worker_batches(
    examples: tf.data.Dataset,
    input_context: tf.distribute.InputContext,
    global_batch: int,
    steps: int,
    shuffle_buffer: int | None,
) -> tf.data.Dataset:
    """This worker's endless training batches: its shard, `steps` per-replica batches per replica per epoch.

    `examples` are the split's unbatched examples, in the same order on every
    worker. `input_context` (``distribute_datasets_from_function``'s) says
    which worker this is among how many: worker ``i`` keeps every ``W``-th
    example from the ``i``-th on (disjoint shards, no shuffle seed shared by
    the workers needed), reshuffles it each epoch and takes from it exactly
    ``steps x global_batch / W`` examples, batched per replica. Endless
    (``repeat``) because Keras then trains ``fit(steps_per_epoch=steps)`` per
    epoch on one iterator whatever the replicas per worker; a finite dataset's
    length in per-replica batches is not the step count when a worker has
    several devices.
    """
    workers, index = input_context.num_input_pipelines, input_context.input_pipeline_id
    per_worker = steps * global_batch // workers
    shard = examples.shard(workers, index)
    if shuffle_buffer:
        shard = shard.shuffle(shuffle_buffer, reshuffle_each_iteration=True)
    per_replica = input_context.get_per_replica_batch_size(global_batch)
    return shard.take(per_worker).batch(per_replica, drop_remainder=True).repeat().prefetch(tf.data.AUTOTUNE)


def evaluation_batches(
    examples: tf.data.Dataset, input_context: tf.distribute.InputContext, global_batch: int
) -> tf.data.Dataset:
    """The whole evaluation split on every worker, in per-replica batches, once.

    Not sharded: Keras averages the workers' metrics, which is the split's
    metric only when every worker saw as many examples, and an evaluation
    split is not cut to make them so (every example counts). With one device
    per worker each worker's metrics are the split's, exactly; evaluating costs
    each worker what it costs one machine.
    """
    return examples.batch(input_context.get_per_replica_batch_size(global_batch)).prefetch(tf.data.AUTOTUNE)
