"""Finding a finished run's artifacts on disk, for benchmarks that reuse a run."""

from __future__ import annotations

import glob


def newest(pattern: str) -> str:
    """The most recent artifact directory matching `pattern` (execution ids grow)."""
    matches = sorted(glob.glob(pattern), key=lambda path: int(path.rstrip("/").split("/")[-1]))
    if not matches:
        raise SystemExit(f"no artifact matches {pattern}")
    return matches[-1]
