"""Per-component progress lines and timings, read from the TFX launcher's log records.

LocalDagRunner announces each node with `Component X is running.` / `... is
finished.` (and the launcher says when it reuses a cached execution). A logging
handler turns those records into one console line per component and keeps the
wall time of each, which becomes `components` in run_summary.json.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import TextIO

_RUNNING = re.compile(r"^Component (?P<name>\S+) is running\.$")
_FINISHED = re.compile(r"^Component (?P<name>\S+) is finished\.$")
_CACHED = re.compile(r"^A cached execution \d+ is used\.$")


class ComponentProgress(logging.Handler):
    """Prints `[i/N] Component ... done in S s (cached)` and records wall seconds."""

    def __init__(self, component_count: int, stream: TextIO | None = None) -> None:
        super().__init__(level=logging.INFO)
        self.component_count = component_count
        self.stream = stream or sys.stdout
        self.seconds: dict[str, float] = {}
        self.cached: set[str] = set()
        self._current: str | None = None
        self._index = 0
        self._started = 0.0

    @property
    def current_component(self) -> str | None:
        """The component that was running when the run stopped (None if none was)."""
        return self._current

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if match := _RUNNING.match(message):
            self._current, self._started = match["name"], time.monotonic()
            self._index += 1
            self._print(f"{match['name']} ...")
        elif _CACHED.match(message) and self._current:
            self.cached.add(self._current)
        elif (match := _FINISHED.match(message)) and self._current == match["name"]:
            elapsed = time.monotonic() - self._started
            self.seconds[match["name"]] = round(elapsed, 2)
            note = " (cached)" if match["name"] in self.cached else ""
            self._print(f"{match['name']} done in {elapsed:.1f} s{note}")
            self._current = None

    def _print(self, text: str) -> None:
        width = len(str(self.component_count))
        print(f"[{self._index:>{width}}/{self.component_count}] {text}", file=self.stream, flush=True)
