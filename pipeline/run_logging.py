"""Logging for a pipeline run: everything to a log file, only progress to the console.

TFX, Beam and TensorFlow log thousands of INFO lines per run. An engineer at a
terminal wants one line per component and a clear error; the full log is kept
under `<output-dir>/logs/` for when something needs digging into.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from collections.abc import Iterator

from absl import logging as absl_logging

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(filename)s:%(lineno)d] %(message)s"


def quiet_native_logs(verbose: bool = False) -> None:
    """Silences TensorFlow's C++ log chatter (must run before TF is imported).

    Level 3 also hides C++ ERROR lines such as the harmless "failed call to
    cuInit" on machines without a GPU; real failures still surface as Python
    exceptions. --verbose keeps warnings and errors.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1" if verbose else "3")


def quiet_library_warnings() -> None:
    """Hides TensorFlow's Python deprecation notices ("Instructions for updating: ...").

    TFMA's loaders trigger them; they concern TFMA's code, not the user's, and
    a command whose output is a table (or JSON on stdout) should print only that.
    """
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def new_log_path(output_dir: str) -> str:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return os.path.join(output_dir, "logs", f"run-{stamp}.log")


@contextlib.contextmanager
def captured_run_logs(
    log_path: str, extra_handlers: list[logging.Handler], verbose: bool = False
) -> Iterator[None]:
    """Routes all Python/absl logging to `log_path` plus `extra_handlers` for the block."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    root = logging.getLogger()
    file_handler = logging.FileHandler(log_path)
    file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
    # Console handlers installed by absl or by Beam's logging.basicConfig() would
    # echo every INFO record; keep them to errors unless --verbose.
    # TensorFlow's logger has its own console handler and does not propagate.
    tf_logger = logging.getLogger("tensorflow")
    console_handlers = list(root.handlers) + list(tf_logger.handlers)
    if absl_logging.get_absl_handler() not in console_handlers:
        console_handlers.append(absl_logging.get_absl_handler())
    previous_levels = [handler.level for handler in console_handlers]
    previous_root_level, previous_verbosity = root.level, absl_logging.get_verbosity()

    absl_logging.set_verbosity(absl_logging.INFO)
    root.setLevel(logging.INFO)
    for handler in console_handlers:
        handler.setLevel(logging.INFO if verbose else logging.ERROR)
    added = [file_handler, *extra_handlers]
    for handler in added:
        root.addHandler(handler)
    tf_logger.addHandler(file_handler)
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        for handler in added:
            root.removeHandler(handler)
        tf_logger.removeHandler(file_handler)
        file_handler.close()
        for handler, level in zip(console_handlers, previous_levels):
            handler.setLevel(level)
        root.setLevel(previous_root_level)
        absl_logging.set_verbosity(previous_verbosity)
