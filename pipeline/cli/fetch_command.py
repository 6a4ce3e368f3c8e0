"""`visionpipe fetch`: download an official dataset into a data dir, verified."""

from __future__ import annotations

import os

from pipeline.plumbing import errors
from pipeline.cli import fetch as fetch_lib

DEFAULT_DATA_ROOT = "data"


def fetch(dataset: str, data_dir: str | None, deadline: float | None = None) -> int:
    """Fetch ``dataset`` into ``data_dir`` (default ``data/<dataset>``); returns the exit code.

    ``deadline`` (seconds per file) overrides the size-derived default, for
    links slower than 64 KiB/s or for tests that must not wait minutes.
    """
    target = data_dir or os.path.join(DEFAULT_DATA_ROOT, dataset)
    try:
        paths = fetch_lib.fetch_dataset(dataset, target, deadline=deadline)
    except fetch_lib.FetchError as error:
        return errors.fail(str(error))
    print(f"visionpipe: {dataset}: {len(paths)} files ready in {os.path.abspath(target)}")
    print(f"  next: visionpipe run --dataset {dataset} --data-dir {target}")
    return 0
