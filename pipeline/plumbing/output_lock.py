"""One pipeline run at a time per output dir: a second run refuses at once, naming the first.

Two runs into one output dir share one SQLite ML Metadata store, one pipeline
root and one push folder. Each run reads only its own executions (its pipeline
run id, see `local_runner.run_pipeline`), so results would not be mixed up,
but SQLite serialises their writes, their caches race, and the Evaluator's
baseline depends on which finished first. Refusing is the predictable choice:
the user learns at once which process holds the dir and can wait or pick
another `--output-dir`.

The lock is `flock(2)` on a file in the output dir: the kernel releases it when
the holder exits, however it exits (SIGKILL included), so a crashed run never
leaves the dir locked. The file's text (pid, start time, command) is only for
the message.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import sys
from collections.abc import Iterator

LOCK_FILE = ".visionpipe-run.lock"


class OutputDirBusyError(RuntimeError):
    """Another run holds the output dir."""


def _holder(handle) -> str:
    handle.seek(0)
    return handle.read().strip() or "a process that has not written its details yet"


@contextlib.contextmanager
def exclusive_output_dir(output_dir: str) -> Iterator[None]:
    """Holds the output dir's run lock for the block; raises OutputDirBusyError at once if taken.

    The output dir must exist (the caller creates it, with its own error for
    an unwritable parent); one that is not writable raises OSError naming it.
    """
    path = os.path.join(output_dir, LOCK_FILE)
    try:
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115  (closed by the with below)
    except OSError as error:
        raise OSError(f"output dir {output_dir} is not writable: {error.strerror} ({path})") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputDirBusyError(
                f"{output_dir} is in use by another run ({_holder(handle)}); "
                "wait for it to finish or use another --output-dir"
            ) from None
        started = datetime.datetime.now().isoformat(timespec="seconds")
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}, started {started}: {' '.join(sys.argv)}\n")
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)
