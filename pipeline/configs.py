"""Run configuration: one dataclass shared by the CLI, the local runner and Kubeflow.

Defaults are chosen so that `visionpipe run` with no arguments trains on the
embedded Fashion-MNIST sample in a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import dataclasses
import glob
import os

from components.example_gen.example_splits import DEFAULT_TRAIN_EVAL_WEIGHTS
from pipeline import datasets

from trainer_module import normalization_names, precision_names

DEFAULT_EPOCHS = 10  # where no time budget can be kept (a Kubeflow package's run parameter)
DEFAULT_BATCH_SIZE = 128
# Upper bounds the CLI accepts: far past any sensible run, but small enough that
# a typo is a usage error at once rather than an overflow inside the Trainer.
MAX_EPOCHS = 10_000
MAX_BATCH_SIZE = 65_536
DEFAULT_ACCURACY_THRESHOLD = 0.80
DEFAULT_OUTPUT_DIR = "visionpipe_output"
METADATA_FILE = "metadata.sqlite"  # ML Metadata of every run, in the output dir
SUMMARY_FILE = "run_summary.json"  # what the newest completed `run` produced, in the output dir
DEFAULT_WORST_COUNT = 16  # worst-classified test images in `visionpipe report`
# How the candidate is proven servable before the Pusher may push it:
# the ServingGate (TF Serving's session loader and APIs in a separate process,
# components/serving_gate.py), or TFX's stock InfraValidator starting a real
# tensorflow_model_server in the local Docker engine (TFX cannot compile it for Kubeflow).
SERVING_GATE = "serving-gate"
INFRA_VALIDATOR = "infra-validator"
SERVING_CHECKS = (SERVING_GATE, INFRA_VALIDATOR)
# How the Beam-based components (ExampleGen ... Evaluator) run, on a laptop and
# in a Kubeflow pod alike: in-process on the FnApiRunner. Naming the runner
# matters: Beam 2.77's DirectRunner first tries the Prism runner, which
# downloads a binary from the internet (failing offline, or silently switching
# runners online). One in-process worker: on 2 cores, worker processes cost
# more in pickling than they win in parallelism, and in-process keeps the
# tfx-bsl shim (components/tfx_bsl_compat.py) that worker processes would lack.
#
# LOCAL_WORKERS_NEED_NO_PACKAGES: unless the Beam arguments name the workers'
# dependencies (`--requirements_file`, `--extra_packages`, `--setup_file`, an SDK
# image), every TFX Beam executor copies TFX's installed tree and runs `setup.py
# sdist` on it (tfx/utils/dependency_utils.py), 1.3-1.8 s per Beam component, to
# stage it for remote workers. The FnApiRunner stages nothing (only Dataflow's and
# the portable runners' stager read these flags): its worker is this interpreter,
# or, with `multi_processing`, subprocesses of it. An empty requirements file says
# so: the workers need nothing installed beyond what is.
LOCAL_WORKERS_NEED_NO_PACKAGES = f"--requirements_file={os.devnull}"
IN_PROCESS_BEAM_ARGS = (
    "--runner=FnApiRunner",
    "--direct_running_mode=in_memory",
    "--direct_num_workers=1",
    LOCAL_WORKERS_NEED_NO_PACKAGES,
)
MAX_BEAM_WORKERS = 256


def local_beam_args(workers: int) -> tuple[str, ...]:
    """Beam arguments of a local run: in-process for one worker, else N worker processes.

    `multi_processing` is the FnApiRunner with N SDK worker processes (still no
    Prism download). On the 2-core machine this is built on it made the data
    stages slower, not faster (README, "Beam workers"), so one worker stays
    the default; more pays off with more cores and more data.
    """
    if workers == 1:
        return IN_PROCESS_BEAM_ARGS
    return (
        "--runner=FnApiRunner",
        "--direct_running_mode=multi_processing",
        f"--direct_num_workers={workers}",
        LOCAL_WORKERS_NEED_NO_PACKAGES,
    )

# Allowed drop in accuracy relative to the latest blessed model before a new one
# is refused (0 means "no worse than").
DEFAULT_CHANGE_THRESHOLD = 0.0


@dataclasses.dataclass(frozen=True)
class TrainingProfile:
    """A named time budget for a whole run: the Trainer trains the epochs that fit it.

    ``max_epochs`` caps the count for small data (the embedded sample would
    otherwise train for the whole budget); see ``trainer_module.time_budget``.
    """

    name: str
    budget_minutes: float
    max_epochs: int
    purpose: str


# The caps: the embedded sample (5,000 training images) trains 15 epochs in
# about 2 minutes under the default profile, and full Fashion-MNIST on 2 cores
# fits fewer than 15 epochs into 15 minutes, so the budget, not the cap, sets it.
FAST_PROFILE = TrainingProfile("fast", budget_minutes=3.0, max_epochs=5, purpose="a first model in minutes")
STANDARD_PROFILE = TrainingProfile("standard", budget_minutes=15.0, max_epochs=15, purpose="the default recipe")
LONG_PROFILE = TrainingProfile("long", budget_minutes=60.0, max_epochs=60, purpose="the last tenths of a percent")
PROFILES: dict[str, TrainingProfile] = {profile.name: profile for profile in (FAST_PROFILE, STANDARD_PROFILE, LONG_PROFILE)}
DEFAULT_PROFILE = STANDARD_PROFILE.name
MAX_BUDGET_MINUTES = 7 * 24 * 60.0
# What the Trainer keeps back of a budget for the stages after training: the
# export, the Evaluator, the serving check and the Pusher. Measured on 2 cores
# (README, "Time budgets"): 30 to 35 s on the embedded sample and on the full
# Fashion-MNIST alike, most of it the start of TensorFlow in the serving gate's
# own process and TFMA's Beam pipeline rather than the test images.
AFTER_TRAINING_RESERVE_SECONDS = 40.0


def pipeline_name_for(dataset: str) -> str:
    """One pipeline (and ML Metadata context, and pipeline-root folder) per dataset."""
    return f"visionpipe-{dataset.replace('_', '-')}"


def dataset_of_pipeline(pipeline_name: str) -> datasets.DatasetSpec | None:
    """The dataset whose pipeline this is (the inverse of pipeline_name_for), if any."""
    return next(
        (spec for name, spec in datasets.DATASETS.items() if pipeline_name_for(name) == pipeline_name), None
    )


class ConfigError(ValueError):
    """Settings that cannot work together (the CLI reports it as a usage error, exit 2)."""


def check_plain_path(option: str, path: str) -> None:
    """Refuses a local path with glob characters: Beam and TFX match artifact paths as patterns.

    A folder named `run[1]` would make ExampleGen's and the Evaluator's file
    globs match nothing, and the run fail minutes later inside Beam.
    """
    if glob.escape(path) != path:
        raise ConfigError(
            f"{option} {path}: contains one of [ ] * ?, which Beam and TFX read as file-name patterns; "
            "use a path without them"
        )


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that varies between visionpipe runs."""

    dataset: str = datasets.DEFAULT_DATASET
    data_dir: str = datasets.DEFAULT_SAMPLE_DIR
    output_dir: str = DEFAULT_OUTPUT_DIR
    # None: the dataset's default model (deep_cnn for MNIST-format data, the
    # residual network for CIFAR-10); resolved in __post_init__.
    model: str | None = None
    # None: the Trainer trains the epochs that fit the time budget (the
    # profile's, or budget_minutes); a number pins the epochs, budget or not.
    epochs: int | None = None
    profile: str = DEFAULT_PROFILE
    budget_minutes: float | None = None  # None: the profile's budget
    batch_size: int = DEFAULT_BATCH_SIZE
    accuracy_threshold: float = DEFAULT_ACCURACY_THRESHOLD
    change_threshold: float = DEFAULT_CHANGE_THRESHOLD
    train_eval_weights: tuple[int, int] = DEFAULT_TRAIN_EVAL_WEIGHTS
    normalization: str = normalization_names.COMPUTED
    serving_check: str = SERVING_GATE
    beam_workers: int = 1  # Beam worker processes of the local run's data stages (local_beam_args)
    precision: str = precision_names.AUTO  # the Trainer's (trainer_module.precision_names)
    # Training hyperparameters: None keeps the model's own tuned default
    # (`trainer_module.models.default_hparams`), so switching --model never
    # carries one network's learning rate over to another.
    learning_rate: float | None = None
    lr_decay_rate: float | None = None
    adam_beta1: float | None = None
    augment: bool | None = None

    def __post_init__(self) -> None:
        if self.model is None:
            default_model = datasets.get_dataset(self.dataset).default_model
            object.__setattr__(self, "model", default_model)
        if self.normalization not in normalization_names.NORMALIZATIONS:
            raise ConfigError(
                f"normalization must be one of {normalization_names.NORMALIZATIONS}, "
                f"got {self.normalization!r}"
            )
        channels = datasets.get_dataset(self.dataset).image_shape[2]
        if self.normalization == normalization_names.IMAGENET and channels != 3:
            raise ConfigError(
                f"--normalization {normalization_names.IMAGENET} uses the ImageNet RGB mean and std, "
                f"but {self.dataset} images have {channels} channel; use --normalization {normalization_names.COMPUTED}"
            )
        if not 1 <= self.beam_workers <= MAX_BEAM_WORKERS:
            raise ConfigError(f"beam_workers must be from 1 to {MAX_BEAM_WORKERS}, got {self.beam_workers}")
        if self.profile not in PROFILES:
            raise ConfigError(f"profile must be one of {tuple(PROFILES)}, got {self.profile!r}")
        if self.budget_minutes is not None and not 0 < self.budget_minutes <= MAX_BUDGET_MINUTES:
            raise ConfigError(f"budget_minutes must be > 0 and at most {MAX_BUDGET_MINUTES:g}, got {self.budget_minutes}")
        if self.epochs is not None and not 1 <= self.epochs <= MAX_EPOCHS:
            raise ConfigError(f"epochs must be from 1 to {MAX_EPOCHS}, got {self.epochs}")
        if self.precision not in precision_names.PRECISIONS:
            raise ConfigError(f"precision must be one of {precision_names.PRECISIONS}, got {self.precision!r}")
        if self.serving_check not in SERVING_CHECKS:
            raise ConfigError(f"serving_check must be one of {SERVING_CHECKS}, got {self.serving_check!r}")

    @property
    def time_budget_minutes(self) -> float | None:
        """The run's time budget, or None when the epochs are pinned (``epochs``)."""
        if self.epochs is not None:
            return None
        return self.budget_minutes if self.budget_minutes is not None else PROFILES[self.profile].budget_minutes

    def describe_epochs(self) -> str:
        """For the run's first line: '12 epochs' or 'epochs that fit 15 min (profile standard)'."""
        if self.epochs is not None:
            return f"{self.epochs} epochs"
        source = f"profile {self.profile}" if self.budget_minutes is None else "--budget-minutes"
        return f"the epochs that fit {self.time_budget_minutes:g} min ({source})"

    def hparam_overrides(self) -> dict[str, float | bool]:
        """The hyperparameters set explicitly, for the Trainer's custom config."""
        names = ("learning_rate", "lr_decay_rate", "adam_beta1", "augment")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}

    @property
    def pipeline_name(self) -> str:
        return pipeline_name_for(self.dataset)

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.output_dir, "tfx", self.pipeline_name)

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.output_dir, METADATA_FILE)

    @property
    def serving_model_base(self) -> str:
        """Pusher writes `<output-dir>/serving_model/<pipeline>/<version>` here."""
        return os.path.join(self.output_dir, "serving_model", self.pipeline_name)

    @property
    def summary_path(self) -> str:
        return os.path.join(self.output_dir, SUMMARY_FILE)

    def absolute(self) -> "RunConfig":
        """Same config with absolute paths (TFX artifacts must not depend on the cwd)."""
        return dataclasses.replace(
            self,
            data_dir=os.path.abspath(self.data_dir),
            output_dir=os.path.abspath(self.output_dir),
        )
