"""Compatibility shim: `tfx_bsl.arrow.sql_util` for tensorflow-data-validation 1.16.

Why this exists: TFX 1.21 is the only TFX that installs on Python 3.11, but its
data-validation dependency has no Linux wheel at 1.21, so visionpipe pins
tensorflow-data-validation 1.16.1. TFDV 1.16 imports `tfx_bsl.arrow.sql_util`
at module load time (only for the experimental SQL-based slicing feature), and
tfx-bsl 1.21 removed that module.

`import tfx` itself registers a `MagicMock` in its place, so code that imports
TFX first works without this shim. It still earns its place in two ways:
`import tensorflow_data_validation` before (or without) `tfx` fails without
it (AnomalyGate, the tests and the statistics benchmark import TFDV first),
and where the stand-in is in place, SQL slicing fails with a clear message
instead of a MagicMock silently accepting the query. `components/__init__.py`
installs it; nothing in `trainer_module` imports TFDV. When a future tfx-bsl
brings the module back, the shim steps aside and the real module is used.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types

SQL_UTIL_MODULE = "tfx_bsl.arrow.sql_util"
# The folder whose sitecustomize.py installs this shim in Beam worker processes,
# which import TFDV without importing visionpipe (beam_worker_site/sitecustomize.py).
WORKER_SITE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "beam_worker_site")


def worker_pythonpath(pythonpath: str | None) -> str:
    """`pythonpath` (a PYTHONPATH value) with WORKER_SITE_DIR first, for Beam worker processes."""
    parts = [part for part in (pythonpath or "").split(os.pathsep) if part and part != WORKER_SITE_DIR]
    return os.pathsep.join([WORKER_SITE_DIR, *parts])


class SqlSlicingUnsupportedError(Exception):
    """Raised when something asks for TFDV's SQL slicing, which tfx-bsl 1.21 removed.

    Deliberately not a RuntimeError: TFDV catches RuntimeError from SQL query
    construction and silently turns it into an "invalid slice".
    """


class RecordBatchSQLSliceQuery:
    """Stand-in for the removed tfx-bsl class; constructing it is always an error."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise SqlSlicingUnsupportedError(
            "SQL-based slicing (StatsOptions.experimental_slice_sqls / slice_sqls) is not "
            "available: tfx-bsl 1.21 removed tfx_bsl.arrow.sql_util; use feature-value "
            "slicing (slice_functions / SlicingSpec feature_keys) instead"
        )


def _real_module_available() -> bool:
    """Looks for tfx-bsl's own sql_util on disk without importing tfx-bsl.

    Importing tfx_bsl would import TensorFlow, which the CLI must not do before
    it has configured TensorFlow's logging.
    """
    if SQL_UTIL_MODULE in sys.modules:
        return True
    package = importlib.util.find_spec("tfx_bsl")
    if package is None or not package.submodule_search_locations:
        return False
    arrow_dir = os.path.join(list(package.submodule_search_locations)[0], "arrow")
    return any(
        name.startswith("sql_util.") or name.startswith("sql_util_")
        for name in (os.listdir(arrow_dir) if os.path.isdir(arrow_dir) else [])
    )


def install() -> None:
    """Registers the stand-in `tfx_bsl.arrow.sql_util` if tfx-bsl lacks it (idempotent).

    Only `sys.modules` is touched: `from tfx_bsl.arrow import sql_util` falls
    back to it when the package has no such attribute.
    """
    if _real_module_available():
        return
    shim = types.ModuleType(SQL_UTIL_MODULE, __doc__)
    shim.RecordBatchSQLSliceQuery = RecordBatchSQLSliceQuery  # type: ignore[attr-defined]
    sys.modules[SQL_UTIL_MODULE] = shim
