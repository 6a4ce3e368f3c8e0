"""Per-component progress lines and timings of a pipeline run, as ML Metadata recorded them.

LocalDagRunner gives no callback per component; what it does give, live, is
the launcher's log records `Component X is running.` / `... is finished.`.
Those two announcements drive the console lines. What a finished component
took, and whether it was a cache hit, is read from its execution record in ML
Metadata (the same record the run summary and `tfx run` tooling see), not
parsed out of log text.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import TextIO

from ml_metadata.metadata_store import metadata_store

from pipeline.plumbing import metadata_queries

_RUNNING = re.compile(r"^Component (?P<name>\S+) is running\.$")
_FINISHED = re.compile(r"^Component (?P<name>\S+) is finished\.$")


class ComponentProgress(logging.Handler):
    """Prints `[i/N] Component ... done in S s (cached)` and records each component's seconds.

    `metadata_path`, `pipeline_name` and `run_id` name the run whose execution
    records give the seconds and cache hits (`NamedRunLocalDagRunner` fixes
    the run id before the run starts).
    """

    def __init__(
        self, component_count: int, metadata_path: str, pipeline_name: str, run_id: str, stream: TextIO | None = None
    ) -> None:
        super().__init__(level=logging.INFO)
        self.component_count = component_count
        self.stream = stream or sys.stdout
        self.seconds: dict[str, float] = {}
        self.cached: set[str] = set()
        self._metadata_path, self._pipeline_name, self._run_id = metadata_path, pipeline_name, run_id
        self._store: metadata_store.MetadataStore | None = None
        self._current: str | None = None
        self._index = 0

    @property
    def current_component(self) -> str | None:
        """The component that was running when the run stopped (None if none was)."""
        return self._current

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if match := _RUNNING.match(message):
            self._current = match["name"]
            self._index += 1
            self._print(f"{match['name']} ...")
        elif (match := _FINISHED.match(message)) and self._current == match["name"]:
            self._print(f"{match['name']} {self._finished(match['name'])}")
            self._current = None

    def _finished(self, node_id: str) -> str:
        """Records the node's seconds and cache hit from its execution; the line's ending."""
        if self._store is None:
            self._store = metadata_queries.open_read_only(self._metadata_path)
        in_run = metadata_queries.run_execution_ids(self._store, self._run_id)
        execution = metadata_queries.node_execution(self._store, self._pipeline_name, in_run, node_id)
        if execution is None:  # not recorded (cannot happen for a finished node; say so rather than guess)
            return "done (no execution record)"
        self.seconds[node_id] = metadata_queries.execution_seconds(execution)
        if metadata_queries.is_cached(execution):
            self.cached.add(node_id)
        note = " (cached)" if node_id in self.cached else ""
        return f"done in {self.seconds[node_id]:.1f} s{note}"

    def _print(self, text: str) -> None:
        width = len(str(self.component_count))
        print(f"[{self._index:>{width}}/{self.component_count}] {text}", file=self.stream, flush=True)
