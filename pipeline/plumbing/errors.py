"""Turns a failure deep inside TFX/Beam into the one line a user needs.

Beam and the TFX launcher wrap executor exceptions (sometimes several times,
appending "[while running 'X']" and stack dumps), so the useful message is the
innermost cause's first line.
"""

from __future__ import annotations

import re
import sys

_BEAM_CONTEXT = re.compile(r"\s*\[while running '[^']*'\]\s*$")


def root_cause(error: BaseException) -> BaseException:
    """The innermost exception of the __cause__/__context__ chain."""
    seen = {id(error)}
    while True:
        inner = error.__cause__ or error.__context__
        if inner is None or id(inner) in seen:
            return error
        seen.add(id(inner))
        error = inner


def one_line(error: BaseException) -> str:
    """First meaningful line of the root cause's message, without Beam's step suffix."""
    cause = root_cause(error)
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    message = _BEAM_CONTEXT.sub("", lines[0]) if lines else ""
    return message or type(cause).__name__


def run_failure(component: str | None, error: BaseException, log_path: str) -> str:
    """`<component> failed: <root cause> (full log: <path>)`: how a failed pipeline run reports itself."""
    return f"{component or 'pipeline'} failed: {one_line(error)} (full log: {log_path})"


EXIT_FAILED = 1
EXIT_INTERRUPTED = 130  # Ctrl-C: the shell's code for a process ended by SIGINT


def fail(message: str) -> int:
    """Prints `visionpipe: error: <message>` on stderr; returns the failure exit code."""
    print(f"visionpipe: error: {message}", file=sys.stderr, flush=True)
    return EXIT_FAILED
