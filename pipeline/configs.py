"""Run configuration: one dataclass shared by the CLI, the local runner and Kubeflow.

Defaults are chosen so that `visionpipe run` with no arguments trains on the
embedded Fashion-MNIST sample in a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import dataclasses
import os

from pipeline import datasets

DEFAULT_MODEL = "deep_cnn"
DEFAULT_EPOCHS = 10
DEFAULT_BATCH_SIZE = 128
DEFAULT_ACCURACY_THRESHOLD = 0.80
DEFAULT_OUTPUT_DIR = "visionpipe_output"
# Allowed drop in accuracy relative to the latest blessed model before a new one
# is refused (0 means "no worse than").
DEFAULT_CHANGE_THRESHOLD = 0.0


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that varies between visionpipe runs."""

    dataset: str = datasets.DEFAULT_DATASET
    data_dir: str = datasets.DEFAULT_SAMPLE_DIR
    output_dir: str = DEFAULT_OUTPUT_DIR
    model: str = DEFAULT_MODEL
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = DEFAULT_BATCH_SIZE
    accuracy_threshold: float = DEFAULT_ACCURACY_THRESHOLD
    change_threshold: float = DEFAULT_CHANGE_THRESHOLD
    train_eval_weights: tuple[int, int] = (5, 1)
    # Adam at 2e-3 decayed by 0.75 per epoch: with batch norm the network takes
    # the larger start, and the fast decay anneals it within a CPU-sized budget.
    learning_rate: float = 2e-3
    lr_decay_rate: float = 0.75
    adam_beta1: float = 0.9
    augment: bool = True

    @property
    def pipeline_name(self) -> str:
        return f"visionpipe-{self.dataset.replace('_', '-')}"

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.output_dir, "tfx", self.pipeline_name)

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.output_dir, "metadata.sqlite")

    @property
    def serving_model_base(self) -> str:
        """Pusher writes `<output-dir>/serving_model/<pipeline>/<version>` here."""
        return os.path.join(self.output_dir, "serving_model", self.pipeline_name)

    @property
    def summary_path(self) -> str:
        return os.path.join(self.output_dir, "run_summary.json")

    def absolute(self) -> "RunConfig":
        """Same config with absolute paths (TFX artifacts must not depend on the cwd)."""
        return dataclasses.replace(
            self,
            data_dir=os.path.abspath(self.data_dir),
            output_dir=os.path.abspath(self.output_dir),
        )
