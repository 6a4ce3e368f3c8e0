"""TFX Trainer entry point (`run_fn`), passed to the Trainer by import path.

Reads the raw examples through the TFT transform graph, builds the selected model from the zoo, trains
it with Keras `fit` (one pass over the train split per epoch, validation on the
eval split), logs to TensorBoard in the Trainer's model_run directory, and
exports the serving SavedModel with the TFT transform inside.

With a TF_CONFIG cluster every worker runs this same function
(``trainer_module.distribution``): each trains on its own shard of the train
split, and only the chief writes into the Trainer's directories
(``trainer_module.worker_outputs``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import posixpath
import sys
import time
from typing import TYPE_CHECKING, Any

import keras
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging
from tfx_bsl.public import tfxio

from trainer_module import (
    accelerator,
    calibration,
    callbacks,
    distribution,
    features,
    models,
    precision_names,
    serving,
    worker_outputs,
)
from trainer_module.budget_keeper import BudgetKeeper
from trainer_module.hparams import COSINE, ModelHParams, default_hparams
from trainer_module.time_budget import TIME_BUDGET_KEY, EpochPlan, TimeBudget, plan_epochs, run_started_at
from trainer_module.training_summary import TRAINING_SUMMARY_FILE, training_summary

if TYPE_CHECKING:  # a type only: importing it loads all of tfx.components (TFMA, Beam, a Kubernetes
    # client), 20 s of every worker's start on 2 cores, which the Trainer has loaded anyway
    from tfx.components.trainer.fn_args_utils import FnArgs

SHUFFLE_BUFFER = 10_000
BACKUP_FOLDER = "backup"  # beside the Trainer's output folders; see backup_dir
TRANSFORM_BATCH_SIZE = 512  # examples per transform-graph call


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """What the pipeline passes in `Trainer(custom_config=...)`.

    ``epochs`` 0 with a ``time_budget``: the Trainer picks the epoch count
    that fits the budget (``plan_budgeted_epochs``). ``precision`` is one of
    ``precision_names.PRECISIONS`` (``accelerator.configure_accelerator``).
    """

    model: str
    epochs: int
    batch_size: int
    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    hparams: ModelHParams
    time_budget: TimeBudget | None = None
    precision: str = precision_names.AUTO

    def __post_init__(self) -> None:
        if self.epochs < 0 or (self.epochs == 0 and self.time_budget is None):
            raise ValueError(f"epochs must be >= 1, or 0 with a time budget; got {self.epochs}")
        precision_names.check_precision(self.precision)

    @property
    def plans_epochs(self) -> bool:
        """True: the time budget picks the epochs (given epochs win over a budget)."""
        return self.epochs == 0

    @classmethod
    def from_custom_config(cls, config: dict[str, Any]) -> "TrainingConfig":
        hparam_names = {field.name for field in dataclasses.fields(ModelHParams)}
        return cls(
            model=str(config["model"]),
            epochs=int(config["epochs"]),
            batch_size=int(config["batch_size"]),
            image_shape=tuple(int(d) for d in config["image_shape"]),
            class_names=tuple(config["class_names"]),
            # The model's own tuned defaults, with what the pipeline set explicitly on top.
            hparams=dataclasses.replace(
                default_hparams(str(config["model"])),
                **{key: value for key, value in config.get("hparams", {}).items() if key in hparam_names},
            ),
            time_budget=TimeBudget.from_json(config[TIME_BUDGET_KEY]) if config.get(TIME_BUDGET_KEY) else None,
            precision=str(config.get("precision", precision_names.AUTO)),
        )


def count_examples(
    file_pattern: list[str], data_accessor: Any, tf_transform_output: tft.TFTransformOutput
) -> int:
    """Number of raw examples in a split (a parse-only pass: no PNG is decoded).

    The learning-rate schedule is built into the optimizer from the number of
    steps per epoch, so that number is needed before the model is built, and
    the cached, unbatched dataset below cannot tell its length. Counting only
    parses the records, far cheaper than the epoch that decodes them.
    """
    raw_batches = data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(batch_size=TRANSFORM_BATCH_SIZE, num_epochs=1, shuffle=False),
        tf_transform_output.raw_metadata.schema,
    )
    return int(
        raw_batches.reduce(
            tf.constant(0, tf.int64),
            lambda count, batch: count + tf.shape(batch[features.LABEL_KEY], out_type=tf.int64)[0],
        )
    )


def transformed_examples(
    file_pattern: list[str],
    data_accessor: Any,
    tf_transform_output: tft.TFTransformOutput,
    example_count: int | None = None,
) -> tf.data.Dataset:
    """(standardized image, label) pairs from RAW examples, unbatched, one epoch per pass.

    The Transform component does not materialize transformed examples (a
    standardized float image is ~10x larger than its PNG, so writing and
    re-reading them costs more than recomputing). Instead the saved transform
    graph is applied here, the same graph serving uses, once: the transformed
    split is cached in memory (4 bytes per pixel) and every later epoch only
    reshuffles it, instead of decoding every PNG again each epoch.

    ``example_count`` (``count_examples``) gives back the length that
    ``unbatch`` loses; pass it for the training split. On a dataset of unknown
    length Keras (3.15, TF 2.21) runs one more train step at the end of every
    epoch, finds no data, and still advances the optimizer's step count, which
    would shift the learning-rate schedule (evaluated at that count) by one
    step per epoch.
    """
    raw_batches = data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(batch_size=TRANSFORM_BATCH_SIZE, num_epochs=1, shuffle=False),
        tf_transform_output.raw_metadata.schema,
    )
    transform_layer = tf_transform_output.transform_features_layer()

    def transform(raw: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        transformed = transform_layer(raw)
        return transformed[features.TRANSFORMED_IMAGE_KEY], transformed[features.LABEL_KEY]

    examples = (
        raw_batches.map(transform, num_parallel_calls=tf.data.AUTOTUNE).cache().unbatch()
    )
    if example_count is not None:
        examples = examples.apply(tf.data.experimental.assert_cardinality(example_count))
    return examples


def make_dataset(
    file_pattern: list[str],
    data_accessor: Any,
    tf_transform_output: tft.TFTransformOutput,
    batch_size: int,
    shuffle: bool,
    example_count: int | None = None,
) -> tf.data.Dataset:
    """(standardized image batch, label batch) pairs from RAW examples (``transformed_examples``), one epoch per pass."""
    examples = transformed_examples(file_pattern, data_accessor, tf_transform_output, example_count)
    if shuffle:
        examples = examples.shuffle(SHUFFLE_BUFFER, reshuffle_each_iteration=True)
    return examples.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def write_training_summary(model_run_dir: str, summary: dict[str, Any]) -> None:
    """Writes a `training_summary.training_summary` record into the model_run dir (any
    filesystem tf.io.gfile reaches, e.g. a bucket on Kubeflow)."""
    tf.io.gfile.makedirs(model_run_dir)
    with tf.io.gfile.GFile(f"{model_run_dir}/{TRAINING_SUMMARY_FILE}", "w") as handle:
        handle.write(json.dumps(summary, indent=2))


def backup_dir(fn_args: FnArgs, epochs: int | str) -> str:
    """Where Keras' BackupAndRestore keeps the last finished epoch of this training.

    A Trainer that is restarted (a pre-empted pod, a killed local run run
    again) is a new TFX execution with a new model_run directory, so the
    backup cannot live there. It lives beside the Trainer's outputs, under
    `<pipeline root>/Trainer/backup/<key>`, keyed by what defines the
    training: its input files, its transform graph, its settings and its
    length (``epochs``: the epoch count, or for a time budget the run's start:
    a budget's epochs are re-planned as it trains, so only that run can use
    its backup). A restart of the same training finds its backup; any other
    training (new data, another model or epoch count) starts fresh. Keras deletes the backup
    when `fit` completes. posixpath, not os.path: on a cluster the pipeline
    root is a bucket URI.
    """
    training = {
        "train_files": sorted(fn_args.train_files),
        "eval_files": sorted(fn_args.eval_files),
        "transform_output": fn_args.transform_output,
        "custom_config": fn_args.custom_config,
        "epochs": epochs,
    }
    key = hashlib.sha256(json.dumps(training, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    trainer_root = posixpath.dirname(posixpath.dirname(fn_args.model_run_dir.rstrip("/")))
    return posixpath.join(trainer_root, BACKUP_FOLDER, key)


def fit_verbosity() -> int:
    """Keras' progress bar on a terminal (an 80 s epoch shows its steps), one line per epoch otherwise.

    A progress bar in a file or a pod log is thousands of carriage returns;
    `epoch_log_callback` keeps the per-epoch line in the run log either way.
    """
    return 1 if sys.stdout.isatty() else 2


def fill_caches(train_dataset: tf.data.Dataset, eval_dataset: tf.data.Dataset) -> int:
    """One pass over both splits before ``fit``; returns the validation batches per epoch.

    It fills the splits' in-memory caches (decoding and transforming every
    example), a cost the first epoch would otherwise carry, where it would make
    the first plan of a time budget (timed on the first epoch's steps, or
    calibrated) expect every epoch to be slower than it is.
    """
    eval_steps = sum(1 for _ in eval_dataset)
    for _ in train_dataset:
        pass
    return eval_steps


def plan_budgeted_epochs(
    config: TrainingConfig,
    strategy: tf.distribute.Strategy,
    train_dataset: tf.data.Dataset,
    eval_dataset: tf.data.Dataset,
    steps_per_epoch: int,
    budget_started_at: float,
) -> tuple[EpochPlan, calibration.StepTimes]:
    """The epochs that fit ``config.time_budget``, from step times measured here and now, before ``fit``.

    For the cosine schedule only, whose end cannot move once training runs;
    the others are planned inside ``fit`` by the ``BudgetKeeper``. First
    ``fill_caches``, then a throwaway copy of the model times its train and
    validation steps (``trainer_module.calibration``). The budget counts from
    ``budget_started_at`` (``time_budget.run_started_at``).
    """
    assert config.time_budget is not None and config.plans_epochs
    eval_steps = fill_caches(train_dataset, eval_dataset)

    def throwaway_model() -> keras.Model:
        with strategy.scope():
            return models.build_model(
                config.model,
                config.image_shape,
                len(config.class_names),
                distribution.scaled_hparams(config.hparams, strategy),
            )

    times = calibration.measure_step_times(
        throwaway_model, distribution.global_batch_size(config.batch_size, strategy), config.image_shape, len(config.class_names)
    )
    now = time.time()
    plan = plan_epochs(
        config.time_budget,
        started_at=budget_started_at,
        now=now,
        train_steps_per_epoch=steps_per_epoch,
        eval_steps_per_epoch=eval_steps,
        train_step_seconds=times.train_step_seconds,
        eval_step_seconds=times.eval_step_seconds,
    )
    return plan, times


def run_fn(fn_args: FnArgs) -> None:
    """Trains the configured model and exports the serving SavedModel (the chief's, across workers)."""
    started_at = time.time()
    config = TrainingConfig.from_custom_config(fn_args.custom_config)
    device = accelerator.configure_accelerator(config.precision)
    strategy = distribution.training_strategy()  # before any other TensorFlow op: see training_strategy
    batch_size = distribution.global_batch_size(config.batch_size, strategy)
    workers = distribution.worker_count(strategy)
    if config.plans_epochs and workers > 1:
        raise ValueError("a time budget needs a single worker (every worker must train the same epochs); pass epochs")
    logging.info(
        "Training %s for %s on %s (%s, global batch %d)",
        config.model,
        "the epochs that fit the time budget" if config.plans_epochs else f"{config.epochs} epochs",
        device,
        distribution.describe(strategy),
        batch_size,
    )

    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    train_count = count_examples(fn_args.train_files, fn_args.data_accessor, tf_transform_output)
    steps_per_epoch = distribution.steps_per_epoch(train_count, batch_size, workers)
    logging.info("%d training examples, %d steps per epoch", train_count, steps_per_epoch)
    if workers == 1:
        train_dataset = make_dataset(
            fn_args.train_files,
            fn_args.data_accessor,
            tf_transform_output,
            batch_size,
            shuffle=True,
            example_count=train_count,
        )
        eval_dataset = make_dataset(fn_args.eval_files, fn_args.data_accessor, tf_transform_output, batch_size, False)
        fit_steps = None  # the dataset's own length
    else:  # each worker builds its own input (trainer_module.distribution)
        train_examples = transformed_examples(fn_args.train_files, fn_args.data_accessor, tf_transform_output, train_count)
        eval_examples = transformed_examples(fn_args.eval_files, fn_args.data_accessor, tf_transform_output)
        train_dataset = strategy.distribute_datasets_from_function(
            functools.partial(
                distribution.worker_batches,
                train_examples,
                global_batch=batch_size,
                steps=steps_per_epoch,
                shuffle_buffer=SHUFFLE_BUFFER,
            )
        )
        eval_dataset = strategy.distribute_datasets_from_function(
            functools.partial(distribution.evaluation_batches, eval_examples, global_batch=batch_size)
        )
        fit_steps = steps_per_epoch  # the training batches are endless

    # A time budget: the keeper plans the epochs from the first steps of fit and re-plans them
    # after every epoch; under a cosine schedule, whose end cannot move, a calibration plans them now.
    epochs, fit_epochs, budget_record, keeper = config.epochs, config.epochs, {}, None
    if config.plans_epochs:
        budget_started_at = run_started_at(started_at)
        fit_epochs = config.time_budget.max_epochs  # the keeper stops fit
        if config.hparams.lr_schedule == COSINE:
            plan, step_times = plan_budgeted_epochs(
                config, strategy, train_dataset, eval_dataset, steps_per_epoch, budget_started_at
            )
            logging.info("%s (train step %.3f s, validation step %.3f s, measured in %.1f s)", plan.describe(),
                         step_times.train_step_seconds, step_times.eval_step_seconds, step_times.seconds_spent)
            epochs, eval_steps = plan.epochs, None
            budget_record = {
                **plan.to_json(),
                "train_step_seconds": round(step_times.train_step_seconds, 4),
                "eval_step_seconds": round(step_times.eval_step_seconds, 4),
                "calibration_seconds": round(step_times.seconds_spent, 2),
            }
        else:
            epochs, eval_steps = fit_epochs, fill_caches(train_dataset, eval_dataset)  # provisional: the longest run
        keeper = BudgetKeeper(
            config.time_budget,
            started_at=budget_started_at,
            steps_per_epoch=steps_per_epoch,
            planned_epochs=epochs,
            eval_steps=eval_steps,
        )

    with strategy.scope():  # the model's and the optimizer's variables are mirrored on every replica
        model = models.build_model(
            config.model,
            config.image_shape,
            len(config.class_names),
            distribution.scaled_hparams(config.hparams, strategy),
            steps_per_epoch=steps_per_epoch,
            epochs=epochs,
        )
    # A budgeted training is its run's own: a new run re-plans, so it never resumes another's backup.
    chief_backup_dir = backup_dir(fn_args, epochs if keeper is None else f"time budget from {budget_started_at!r}")
    with worker_outputs.worker_dirs(
        strategy, fn_args.model_run_dir, fn_args.serving_model_dir, chief_backup_dir
    ) as (model_run_dir, serving_model_dir, own_backup_dir):
        worker_outputs.seed_backup(chief_backup_dir, own_backup_dir)
        fit_started = time.monotonic()
        history = model.fit(
            train_dataset,
            validation_data=eval_dataset,
            epochs=fit_epochs,
            steps_per_epoch=fit_steps,
            callbacks=[
                *callbacks.training_callbacks(model_run_dir, config.hparams, own_backup_dir),
                *([keeper] if keeper else []),
            ],
            verbose=fit_verbosity(),
        )
        if keeper is not None:
            epochs = len(history.epoch)
            budget_record.update(
                keeper.first_plan or {},
                trained_epochs=epochs,  # the last one partial when trained_steps is not a multiple of an epoch
                trained_steps=int(model.optimizer.iterations),
                steps_per_epoch=steps_per_epoch,
                replans=keeper.replans,
                epoch_seconds=[round(s, 2) for s in keeper.epoch_seconds],
            )
        resumed_after = epochs - len(history.epoch)  # epochs restored from the backup, not trained now
        if resumed_after:
            logging.info("Resumed from the backup of epoch %d; trained epochs %d-%d", resumed_after, resumed_after + 1, epochs)
        summary = training_summary(
            model=config.model,
            device=device,
            epochs=epochs,
            batch_size=config.batch_size,
            fit_seconds=time.monotonic() - fit_started,
            history=history.history,
            resumed_after_epoch=resumed_after,
            time_budget=budget_record or None,
        )
        write_training_summary(model_run_dir, summary)

        # What the network was trained with: a short budget's keeper may have switched augmentation off.
        trained_hparams = (
            config.hparams.without_augmentation() if keeper is not None and keeper.augmentation_off else config.hparams
        )
        # Served in float32 whatever the training precision (accelerator.float32_twin).
        serving_model = accelerator.float32_twin(
            model,
            lambda: models.build_model(config.model, config.image_shape, len(config.class_names), config.hparams),
        )
        serving.export_serving_model(
            serving_model,
            tf_transform_output,
            config.class_names,
            config.image_shape,
            serving_model_dir,
            test_time_flip=trained_hparams.test_time_flip,
        )
