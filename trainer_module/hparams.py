"""Training hyperparameters of the model zoo and each model's own defaults, without TensorFlow.

Why a module of its own: the model builders, the learning-rate schedule and
the callbacks all read ``ModelHParams``. While it lived in the module that
registers the builders, those modules imported each other in a circle; here
it depends on nothing but the TF-free registry (``model_names``). The option
names below are plain strings for the same reason: pipeline code and the CLI
can name a schedule or an augmentation policy without importing Keras.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any

from trainer_module import model_names

# deep_cnn's augmentation policies (trainer_module.models.mnist_models).
SEED_AUGMENTATION = "seed"
FLIP_SHIFT_AUGMENTATION = "flip_shift"
AUGMENTATION_POLICIES: tuple[str, ...] = (SEED_AUGMENTATION, FLIP_SHIFT_AUGMENTATION)

# Learning-rate schedules (trainer_module.schedules).
EXPONENTIAL = "exponential"
ONE_CYCLE = "one_cycle"
COSINE = "cosine"
LR_SCHEDULES: tuple[str, ...] = (EXPONENTIAL, ONE_CYCLE, COSINE)


@dataclass(frozen=True)
class ModelHParams:
    """Hyperparameters shared by the model builders, the learning-rate schedule and the callbacks.

    Frozen so one instance can be a safe default argument and be passed around
    (builders, schedule, callbacks) without anyone mutating it behind our back.
    The field defaults are the MNIST models' settings; start from
    ``default_hparams(name)`` to get a model's own defaults (``deep_cnn`` and
    ``resnet9`` differ) and ``dataclasses.replace`` what you want to change.
    """

    learning_rate: float = 1e-3
    # Per-epoch exponential decay factor. The optimizer's schedule steps down
    # once every steps_per_epoch steps (trainer_module.schedules), so the decay
    # follows epochs whatever the number of steps per epoch is.
    lr_decay_rate: float = 0.9
    adam_beta1: float = 0.9
    l2: float = 1e-4  # L2 weight regularization of deep_cnn's and resnet9's kernels
    dropout: float = 0.4  # before the output layer, in tutorial_cnn and deep_cnn
    augment: bool = True  # training-only random augmentation on/off (all but tutorial_cnn)
    # 0: SparseCategoricalCrossentropy; > 0: LabelSmoothedSparseCrossentropy.
    label_smoothing: float = 0.0
    # One of LR_SCHEDULES: "exponential" (per epoch, lr_decay_rate) or
    # "one_cycle" / "cosine" (per step, peaking at learning_rate); built into
    # the optimizer by trainer_module.schedules.learning_rate.
    lr_schedule: str = EXPONENTIAL
    lr_warmup_fraction: float = 0.2  # one_cycle / cosine: share of steps ramping 0 -> peak
    # Decoupled (AdamW-style) weight decay in the optimizer, on every trainable
    # variable; 0 = none. Unlike `l2` it is not part of the loss.
    weight_decay: float = 0.0
    # Exponential moving average of the trainable weights (Keras' optimizer
    # `use_ema`), which replaces them when `fit` ends; 0 = none. Batch-norm's
    # moving statistics are not averaged: they follow the last ~100 steps.
    ema_momentum: float = 0.0
    width_multiplier: float = 1.0  # mobilenet_v2's alpha; resnet9's and deep_cnn's channel factor
    # deep_cnn's augmentation policy, one of AUGMENTATION_POLICIES: "seed" (the
    # MNIST seed's rotations, shifts, contrast/brightness, noise) or
    # "flip_shift" (horizontal flips + shifts, for mirror-symmetric classes
    # such as clothing; the pipeline picks it per dataset, pipeline.datasets).
    augmentation: str = SEED_AUGMENTATION
    # The exported model averages each image's probabilities with its mirror
    # image's (trainer_module.serving), for classes that look the same
    # mirrored (clothing): the pipeline turns it on per dataset
    # (pipeline.datasets). Training and the Trainer's validation ignore it.
    test_time_flip: bool = False

    def __post_init__(self) -> None:
        if self.augmentation not in AUGMENTATION_POLICIES:
            raise ValueError(
                f"augmentation must be one of {AUGMENTATION_POLICIES}, got {self.augmentation!r}"
            )
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0.0 <= self.lr_warmup_fraction <= 1.0:
            raise ValueError(f"lr_warmup_fraction must be in [0, 1], got {self.lr_warmup_fraction}")
        if not 0.0 <= self.ema_momentum < 1.0:
            raise ValueError(f"ema_momentum must be in [0, 1), got {self.ema_momentum}")
        if self.width_multiplier <= 0.0:
            raise ValueError(f"width_multiplier must be > 0, got {self.width_multiplier}")

    def scaled_widths(self, widths: Sequence[int]) -> list[int]:
        """A network's channel counts at ``width_multiplier``, rounded, at least 1 each."""
        return [max(1, round(channels * self.width_multiplier)) for channels in widths]

    def without_augmentation(self) -> "ModelHParams":
        """These hyperparameters with augmentation off, and so mirror averaging too.

        A network that never trained on mirror images only loses by averaging
        with them (trainer_module.budget_keeper switches augmentation off in a
        budget of one or two epochs).
        """
        return dataclasses.replace(self, augment=False, test_time_flip=False)


# Each model's changes to the ModelHParams defaults; tutorial_cnn, lenet5 and
# mobilenet_v2 keep the field defaults (Adam 1e-3, exponential decay per epoch,
# no label smoothing).
_MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    # Tuned on full Fashion-MNIST (README "Time budgets"): a one-cycle schedule
    # (warm-up over the first 15 % of steps to Adam at 3e-3, then linear to 0
    # at the last step, whatever the epoch count a time budget picks) with
    # label smoothing 0.1 reached 93.2 % in 14 epochs, where the earlier x0.85
    # per-epoch decay from 2e-3 needed 24 epochs for 93.3 % and stopped at
    # 90.6 % after 10 (its rate was still 4.6e-4 at the last step).
    model_names.DEEP_CNN: {
        "learning_rate": 3e-3,
        "lr_schedule": ONE_CYCLE,
        "lr_warmup_fraction": 0.15,
        "label_smoothing": 0.1,
    },
    # Adam with a one-cycle schedule peaking at 5e-3 (warm-up over the first
    # 20 % of steps, then linear to 0, per step), label smoothing 0.1 and the
    # default L2 1e-4, in place of Page's SGD (peak 0.4, weight decay 5e-4 x
    # batch): the zoo's contract is Adam, and Adam + one-cycle up to ~1e-2 is
    # the common recipe for this network. A quarter of the original width keeps
    # it affordable on CPU (see trainer_module.models.cifar_models).
    model_names.RESNET9: {
        "learning_rate": 5e-3,
        "lr_schedule": ONE_CYCLE,
        "lr_warmup_fraction": 0.2,
        "label_smoothing": 0.1,
        "width_multiplier": 0.25,
    },
}


def default_hparams(name: str) -> ModelHParams:
    """The training defaults of model ``name``: ``ModelHParams()`` plus its own changes."""
    model_names.check_model_name(name)
    return dataclasses.replace(ModelHParams(), **_MODEL_DEFAULTS.get(name, {}))
