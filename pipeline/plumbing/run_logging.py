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
import sys
from collections.abc import Iterator

from absl import logging as absl_logging

SILENT = logging.CRITICAL + 1  # a handler level no record reaches
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(filename)s:%(lineno)d] %(message)s"


def quiet_native_logs(verbose: bool = False) -> None:
    """Asks TensorFlow's C++ logging for errors only (must run before TF is imported).

    TF 2.21 prints its start-up lines (`port.cc` oneDNN note, `cudart_stub.cc`,
    "All log messages before absl::InitializeLog()") before absl reads this
    variable, so it does not silence those: `native_stderr_to` does. It still
    quiets later C++ INFO lines in subprocesses (Beam workers, the serving probe).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1" if verbose else "3")


STDERR_FD = 2


def _writes_to_native_stderr(stream: object) -> bool:
    try:
        return stream.fileno() == STDERR_FD  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False  # replaced by a test harness or an embedding program: leave it alone


@contextlib.contextmanager
def native_stderr_to(path: str) -> Iterator[None]:
    """Sends whatever native code writes to file descriptor 2 into `path` for the block.

    TensorFlow, TFDV and Beam's C++ parts write their log lines straight to
    fd 2, bypassing Python's logging, and subprocesses inherit it; only
    redirecting the descriptor itself moves them off the console. Python's
    own `sys.stderr` (where visionpipe's one-line errors go) keeps pointing at
    the console through a duplicate of the original descriptor.
    """
    sys.stderr.flush()
    console = os.dup(STDERR_FD)
    sink = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    previous_stderr = sys.stderr
    replace_python_stderr = _writes_to_native_stderr(sys.stderr)
    try:
        os.dup2(sink, STDERR_FD)
        if replace_python_stderr:
            sys.stderr = open(console, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
        yield
    finally:
        if replace_python_stderr:
            sys.stderr.flush()
            sys.stderr = previous_stderr
        os.dup2(console, STDERR_FD)
        os.close(console)
        os.close(sink)


def quiet_library_warnings() -> None:
    """Hides TensorFlow's Python deprecation notices ("Instructions for updating: ...").

    TFMA's loaders trigger them; they concern TFMA's code, not the user's, and
    a command whose output is a table (or JSON on stdout) should print only that.
    """
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def new_log_path(output_dir: str) -> str:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return os.path.join(output_dir, "logs", f"run-{stamp}.log")


def create_output_dir(output_dir: str) -> None:
    """Creates the output dir first, so that one that cannot be created is a one-line error
    before anything runs. Raises OSError naming the path."""
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as error:
        raise OSError(f"cannot create output dir {output_dir}: {error.strerror}") from None


def create_run_log(output_dir: str) -> str:
    """Creates this run's (empty) log file under `<output_dir>/logs/`; returns its path.

    Every later message may then point to a log that exists. Raises OSError
    naming the output dir when it is not writable.
    """
    log_path = new_log_path(output_dir)
    try:
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        with open(log_path, "a", encoding="utf-8"):
            pass
    except OSError as error:
        raise OSError(f"output dir {output_dir} is not writable: {error.strerror} ({error.filename})") from None
    return log_path


class RunLogHandler(logging.FileHandler):
    """The run log's handler: a record it cannot write is dropped, not printed.

    logging's default `handleError` prints "--- Logging error ---" and a
    traceback on stderr, the console, for every record, as soon as the log's
    disk is full; the run's failure itself already reaches the user as its one
    line (and the log keeps what fit).
    """

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802  (logging's method name)
        del record


@contextlib.contextmanager
def captured_run_logs(
    log_path: str, extra_handlers: list[logging.Handler], verbose: bool = False
) -> Iterator[None]:
    """Routes all Python/absl logging to `log_path` plus `extra_handlers` for the block."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    root = logging.getLogger()
    file_handler = RunLogHandler(log_path)
    file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
    # Console handlers installed by absl or by Beam's logging.basicConfig() would
    # echo every INFO record, and on a failure Beam's ERROR record with its
    # whole traceback, before visionpipe's one line; silence them unless
    # --verbose (the failure itself reaches the user as that one line, and
    # everything is in the log). TensorFlow's logger has its own console
    # handler and does not propagate.
    tf_logger = logging.getLogger("tensorflow")
    console_handlers = list(root.handlers) + list(tf_logger.handlers)
    if absl_logging.get_absl_handler() not in console_handlers:
        console_handlers.append(absl_logging.get_absl_handler())
    previous_levels = [handler.level for handler in console_handlers]
    previous_root_level, previous_verbosity = root.level, absl_logging.get_verbosity()

    absl_logging.set_verbosity(absl_logging.INFO)
    root.setLevel(logging.INFO)
    for handler in console_handlers:
        handler.setLevel(logging.INFO if verbose else SILENT)
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
