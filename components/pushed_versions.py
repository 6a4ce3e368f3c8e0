"""What a pushed model version is, and whether it is complete.

One owner for the rule that the Pusher (components.atomic_pusher, which moves
incomplete versions aside before it pushes) and `visionpipe predict` (which
skips them) both apply, so that neither picks what TF Serving cannot load.

A *version* is a child of a push base directory whose name is a non-negative
integer: TF Serving's file-system source serves the highest such child and
ignores every other name (tensorflow_serving/sources/storage_path/
file_system_storage_path_source.cc parses names with `strings::safe_strto64`).

A version is *complete* when TF Serving's loader could restore it:

* `saved_model.pb` is there, parses as a SavedModel proto and has a meta graph
  with the `serve` tag. A copy cut short fails to parse: the meta graph is one
  length-delimited field that spans nearly the whole file; an empty file parses
  as a SavedModel without meta graphs.
* When that graph has variables: `variables/variables.index` is a readable
  checkpoint index and every `variables.data-NNNNN-of-MMMMM` shard is there. TF
  Serving's loader restores nothing when the index is missing ("no variables;
  no checkpoints were restored") and then fails on every request instead.
* Every asset file that the meta graph names is in `assets/`.

This is a check of a finished copy's structure, not of the weights' bytes
(the loader checks those checksums when it restores). Paths go through
`tf.io.gfile`, so `gs://` push bases work like local ones. TensorFlow is
imported on first use: `predict` and `serve-check` import this module to name
versions before they know they need TensorFlow at all.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING

from google.protobuf.message import DecodeError

if TYPE_CHECKING:
    from tensorflow.core.protobuf import meta_graph_pb2

SAVED_MODEL_FILE = "saved_model.pb"
SERVING_TAG = "serve"  # tf.saved_model.SERVING, the tag TF Serving loads
VARIABLES_DIR = "variables"
VARIABLES_PREFIX = "variables"
ASSETS_DIR = "assets"
# tf.train.Checkpoint's shard names: <prefix>.data-<shard>-of-<count>.
_DATA_SHARD = re.compile(r"^variables\.data-(\d{5})-of-(\d{5})$")
# Ops that make a variable in a (TF1 or TF2) serving graph.
_VARIABLE_OPS = frozenset({"VarHandleOp", "VariableV2", "Variable"})


def _tf() -> ModuleType:
    import tensorflow as tf  # heavy (seconds): only once a version is actually read

    return tf


def is_version_name(name: str) -> bool:
    """A directory name that TF Serving reads as a version number."""
    return name.isascii() and name.isdigit()


def _join(folder: str, name: str) -> str:
    """Joins like os.path.join for local paths and like a URL for gs:// (both use '/')."""
    return posixpath.join(folder, name.rstrip("/"))


def version_dirs(base: str) -> list[str]:
    """The version directories under a push base, oldest first (by number, as TF Serving orders them)."""
    gfile = _tf().io.gfile
    if not gfile.isdir(base):
        return []
    names = [name.rstrip("/") for name in gfile.listdir(base)]
    versions = [name for name in names if is_version_name(name) and gfile.isdir(_join(base, name))]
    return [_join(base, name) for name in sorted(versions, key=int)]


def _serving_meta_graph(saved_model_path: str) -> meta_graph_pb2.MetaGraphDef | str:
    """The `serve` meta graph of saved_model.pb, or why there is none."""
    tf = _tf()
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    try:
        with tf.io.gfile.GFile(saved_model_path, "rb") as handle:
            saved_model.ParseFromString(handle.read())
    except (DecodeError, tf.errors.OpError) as error:
        return f"{SAVED_MODEL_FILE} is not a SavedModel (truncated or corrupt: {error})"
    for meta_graph in saved_model.meta_graphs:
        if SERVING_TAG in meta_graph.meta_info_def.tags:
            return meta_graph
    if not saved_model.meta_graphs:
        return f"{SAVED_MODEL_FILE} has no meta graph (empty or truncated)"
    return f"{SAVED_MODEL_FILE} has no meta graph tagged '{SERVING_TAG}'"


def _has_variables(meta_graph: meta_graph_pb2.MetaGraphDef) -> bool:
    """Whether restoring the graph needs a checkpoint: TF2 variable objects or TF1/TF2 variable ops."""
    return any(node.WhichOneof("kind") == "variable" for node in meta_graph.object_graph_def.nodes) or any(
        node.op in _VARIABLE_OPS for node in meta_graph.graph_def.node
    )


def _missing_shards(names: Iterable[str]) -> str | None:
    """Why the `variables.data-*` shards in `names` are not a full set, or None."""
    shards = [match.groups() for match in map(_DATA_SHARD.match, names) if match]
    if not shards:
        return "no variables.data-* shard"
    count = int(shards[0][1])
    present = {int(index) for index, of in shards if int(of) == count}
    missing = sorted(set(range(count)) - present)
    return f"variables.data shard(s) {missing} of {count} missing" if missing else None


def _variables_problem(version_dir: str) -> str | None:
    """Why variables/ could not be restored, or None."""
    tf = _tf()
    variables_dir = _join(version_dir, VARIABLES_DIR)
    index = _join(variables_dir, f"{VARIABLES_PREFIX}.index")
    if not tf.io.gfile.exists(index):
        return f"the graph has variables but {VARIABLES_DIR}/{VARIABLES_PREFIX}.index is missing"
    try:
        tf.train.load_checkpoint(_join(variables_dir, VARIABLES_PREFIX))
    except (tf.errors.OpError, ValueError) as error:
        return f"{VARIABLES_DIR}/{VARIABLES_PREFIX}.index is unreadable ({' '.join(str(error).split())[:200]})"
    return _missing_shards(name.rstrip("/") for name in tf.io.gfile.listdir(variables_dir))


def _missing_assets(version_dir: str, meta_graph: meta_graph_pb2.MetaGraphDef) -> str | None:
    """The first asset file the graph names that is not in assets/, or None."""
    for asset in meta_graph.asset_file_def:
        if not _tf().io.gfile.exists(_join(_join(version_dir, ASSETS_DIR), asset.filename)):
            return f"asset {ASSETS_DIR}/{asset.filename} is missing"
    return None


def incompleteness(version_dir: str) -> str | None:
    """Why `version_dir` is not a complete SavedModel (see the module docstring), or None when it is."""
    saved_model_path = _join(version_dir, SAVED_MODEL_FILE)
    if not _tf().io.gfile.exists(saved_model_path):
        return f"no {SAVED_MODEL_FILE}"
    meta_graph = _serving_meta_graph(saved_model_path)
    if isinstance(meta_graph, str):
        return meta_graph
    if _has_variables(meta_graph) and (problem := _variables_problem(version_dir)):
        return problem
    return _missing_assets(version_dir, meta_graph)


def newest_complete(candidates: Sequence[str]) -> tuple[str | None, list[tuple[str, str]]]:
    """The newest complete version among `candidates` (newest first) and the newer ones skipped, with why.

    Stops at the first complete one: older versions are not read.
    """
    skipped: list[tuple[str, str]] = []
    for version_dir in candidates:
        problem = incompleteness(version_dir)
        if problem is None:
            return version_dir, skipped
        skipped.append((version_dir, problem))
    return None, skipped
