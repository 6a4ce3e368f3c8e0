"""Who writes what when several workers train one model: the chief writes the real outputs, the others scratch.

Under MultiWorkerMirroredStrategy every worker runs the same `run_fn`, and it
must: any step may hold a collective op (an all-reduce of gradients, of a
metric, of an on-read variable being saved) that waits for every worker. So
every worker writes its TensorBoard logs, training summary, backup and serving
export, as Keras' multi-worker tutorial does it: the chief into the Trainer's
real directories, every other worker into temporary directories of its own,
deleted when it is done. Nobody overwrites the chief's files, and the
Trainer's outputs are exactly one worker's. (The serving export itself holds
no collective today: it saves only the mirrored weights the signatures read,
and a chief exporting alone finished, for tutorial_cnn and for resnet9 with
its batch norms. The other workers export all the same, into scratch, so that
a model with an on-read variable could never leave the chief waiting forever
at the very end of a run.)

The backup is the one output read back. Keras 3's BackupAndRestore (3.15) knows
nothing of workers (tf_keras 2 had the chief write and all restore), so here a
non-chief worker starts from a copy of the chief's backup in its own directory
(`seed_backup`): all workers resume from the same epoch and weights, and each
writes only its own.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterator

import tensorflow as tf
from absl import logging

from trainer_module import distribution


@contextlib.contextmanager
def worker_dirs(strategy: tf.distribute.Strategy, *real_dirs: str) -> Iterator[tuple[str, ...]]:
    """`real_dirs` on the chief (one machine included); elsewhere fresh local stand-ins, deleted on exit.

    Local (``tempfile``), not beside the real ones: a non-chief's outputs are
    never read, so they need not travel to the pipeline's bucket.
    """
    if distribution.is_chief(strategy):
        yield real_dirs
        return
    resolver = strategy.cluster_resolver
    scratch = tempfile.mkdtemp(prefix=f"visionpipe-{resolver.task_type}{resolver.task_id}-")
    try:
        yield tuple(os.path.join(scratch, str(number), posixpath.basename(path.rstrip("/"))) for number, path in enumerate(real_dirs))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def seed_backup(chief_backup_dir: str, own_backup_dir: str) -> None:
    """Copies the chief's backup (Keras' files, if any) into this worker's own backup directory.

    Only on a worker whose backup is not the chief's. Keras then restores from
    the copy exactly as the chief restores from the original, falling back to
    the previous backup, or to epoch 1, in the same cases. A file that vanishes
    during the copy (the chief deleting an unreadable backup at that moment)
    leaves no backup: epoch 1, like the chief. Any other failure fails the run
    rather than let this worker resume from another epoch than the chief.
    """
    if own_backup_dir == chief_backup_dir:
        return
    if tf.io.gfile.exists(own_backup_dir):
        tf.io.gfile.rmtree(own_backup_dir)
    try:
        names = tf.io.gfile.listdir(chief_backup_dir)
        tf.io.gfile.makedirs(own_backup_dir)
        for name in names:
            tf.io.gfile.copy(posixpath.join(chief_backup_dir, name), posixpath.join(own_backup_dir, name), overwrite=True)
    except tf.errors.NotFoundError:
        logging.info("No backup in %s to resume from; training from epoch 1", chief_backup_dir)
        if tf.io.gfile.exists(own_backup_dir):
            tf.io.gfile.rmtree(own_backup_dir)
