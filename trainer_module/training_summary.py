"""The Trainer's run summary: its file name and its record, without TensorFlow.

The Trainer writes the file into its model_run directory (``run_fn``), and
the run report reads it back (``pipeline.inspect.run_results``). The reader
should not import TensorFlow, tf.Transform and the TFX trainer (all of
``run_fn``'s imports) just to learn a file name, so the name and the record's
layout live here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

TRAINING_SUMMARY_FILE = "training_summary.json"


def training_summary(
    *,
    model: str,
    device: str,
    epochs: int,
    batch_size: int,
    fit_seconds: float,
    history: Mapping[str, Sequence[float]],
    resumed_after_epoch: int = 0,
    time_budget: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """How long ``model.fit`` took and the metrics of its last epoch, as a JSON-ready dict.

    Why record ``fit_seconds``: runs and benchmarks can then tell training time
    apart from the pipeline's own overhead. ``resumed_after_epoch``: how many
    epochs a restarted Trainer restored from its backup instead of training
    them (0: it trained them all), so ``fit_seconds`` is read right.
    ``time_budget``: how the epoch count was planned when the run had a time
    budget (``trainer_module.time_budget``), None when the epochs were given.
    """
    return {
        "model": model,
        "device": device,
        "epochs": epochs,
        "batch_size": batch_size,
        "fit_seconds": round(fit_seconds, 2),
        "resumed_after_epoch": resumed_after_epoch,
        "time_budget": dict(time_budget) if time_budget is not None else None,
        "final_metrics": {name: float(values[-1]) for name, values in history.items() if values},
    }
