"""The atomic Pusher (components.atomic_pusher) and what a complete version is (components.pushed_versions).

Real SavedModel, real executor (TFX's Pusher executor underneath), real faults:
a full file system during the copy (a size-limited tmpfs, or RLIMIT_FSIZE in a
subprocess where mounting is not permitted), a SIGKILL the moment the push
creates its directory, and versions that an older crash left behind.
TF Serving serves the highest integer-named child of the push base, so after
any of them no integer-named child may be incomplete.

This module imports nothing heavy beyond the executor at the top: the kill test
runs `push` from it in a subprocess.
"""

from __future__ import annotations

import contextlib
import filecmp
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

import pytest
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import path_utils, proto_utils

from components import atomic_pusher, pushed_versions
from tests import filesystems

GRAY = (28, 28, 1)
FAR_FUTURE = 4_000_000_000  # a version number above any push made today (Unix time)
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> str:
    """A real, trained tutorial_cnn export (13 MB of variables, 120 KB saved_model.pb)."""
    from tests import serving_helpers
    from trainer_module.model_names import TUTORIAL_CNN

    return serving_helpers.trained_export(str(tmp_path_factory.mktemp("push-model")), 7, GRAY, TUTORIAL_CNN)


@pytest.fixture
def blessing_uri(export_dir, tmp_path) -> str:
    """An InfraBlessing folder holding the model as `stamped_model/`, as the ServingGate leaves it."""
    uri = str(tmp_path / "blessing")
    shutil.copytree(export_dir, path_utils.stamped_model_path(uri))
    return uri


def push(blessing_uri: str, base: str, archive_uri: str, blessed: bool = True) -> standard_artifacts.PushedModel:
    """Runs the atomic Pusher's executor as the pipeline does: both blessings in, a PushedModel out."""
    model_blessing = standard_artifacts.ModelBlessing()
    model_blessing.set_int_custom_property("blessed", int(blessed))
    infra_blessing = standard_artifacts.InfraBlessing()
    infra_blessing.uri = blessing_uri
    infra_blessing.set_int_custom_property("blessed", 1)
    infra_blessing.set_int_custom_property("has_model", 1)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = archive_uri
    destination = pusher_pb2.PushDestination(filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=base))
    atomic_pusher.Executor().Do(
        {
            standard_component_specs.MODEL_BLESSING_KEY: [model_blessing],
            standard_component_specs.INFRA_BLESSING_KEY: [infra_blessing],
        },
        {standard_component_specs.PUSHED_MODEL_KEY: [pushed]},
        {standard_component_specs.PUSH_DESTINATION_KEY: proto_utils.proto_to_json(destination)},
    )
    return pushed


def integer_children(base: str) -> list[str]:
    return sorted(name for name in os.listdir(base) if pushed_versions.is_version_name(name))


def wait_for_the_next_second() -> None:
    """Versions are Unix seconds: a second push within the same second would find its version taken."""
    start = int(time.time())
    while int(time.time()) == start:
        time.sleep(0.01)


def same_tree(left: str, right: str) -> bool:
    comparison = filecmp.dircmp(left, right)
    if comparison.left_only or comparison.right_only or comparison.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(left, right, comparison.common_files, shallow=False)
    return not mismatch and not errors and all(
        same_tree(os.path.join(left, sub), os.path.join(right, sub)) for sub in comparison.common_dirs
    )


def tree_bytes(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(folder) for name in names)


# --- what a complete version is -------------------------------------------------------------------


def _truncate(path: str, keep: float) -> None:
    with open(path, "rb") as handle:
        content = handle.read()
    with open(path, "wb") as handle:
        handle.write(content[: int(len(content) * keep)])


def _empty(version: str) -> None:
    """The directory alone, as a kill at the start of the stock Pusher leaves it."""
    shutil.rmtree(version)
    os.mkdir(version)


BREAKAGES = {
    # name -> (what it does to a copy of the export, the start of the reason)
    "empty dir": (_empty, "no saved_model.pb"),
    "empty saved_model.pb": (lambda d: _truncate(f"{d}/saved_model.pb", 0), "saved_model.pb has no meta graph"),
    "cut saved_model.pb": (lambda d: _truncate(f"{d}/saved_model.pb", 90 / 246), "saved_model.pb is not a SavedModel"),
    "no variables/": (lambda d: shutil.rmtree(f"{d}/variables"), "the graph has variables but variables/variables.index is missing"),
    "cut index": (lambda d: _truncate(f"{d}/variables/variables.index", 0.5), "variables/variables.index is unreadable"),
    "no data shard": (lambda d: os.remove(f"{d}/variables/variables.data-00000-of-00001"), "no variables.data-* shard"),
}


def test_a_full_export_is_complete(export_dir):
    assert pushed_versions.incompleteness(export_dir) is None


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_what_makes_a_version_incomplete(export_dir, tmp_path, breakage):
    version = shutil.copytree(export_dir, tmp_path / "1")
    damage, reason = BREAKAGES[breakage]
    damage(str(version))
    problem = pushed_versions.incompleteness(str(version))
    assert problem is not None and problem.startswith(reason), problem


def test_version_dirs_are_integer_named_folders_oldest_first(tmp_path):
    for name in ("20", "3", ".partial-5", ".incomplete-7", "x1", "100"):
        (tmp_path / name).mkdir()
    (tmp_path / "50").write_text("a file, not a version")
    assert pushed_versions.version_dirs(str(tmp_path)) == [str(tmp_path / name) for name in ("3", "20", "100")]


# --- the executor ---------------------------------------------------------------------------------


def test_a_push_publishes_one_complete_version(blessing_uri, tmp_path):
    base = str(tmp_path / "serving")
    pushed = push(blessing_uri, base, str(tmp_path / "archive"))
    (version,) = integer_children(base)
    assert os.listdir(base) == [version]  # no staging dir left
    assert same_tree(os.path.join(base, version), path_utils.stamped_model_path(blessing_uri))
    assert pushed.get_int_custom_property("pushed") == 1
    assert pushed.get_string_custom_property("pushed_destination") == os.path.join(base, version)
    assert pushed.get_string_custom_property("pushed_version") == version


def test_a_model_that_is_not_blessed_touches_nothing(blessing_uri, tmp_path):
    base = tmp_path / "serving"
    leftover = base / ".partial-1-1"
    leftover.mkdir(parents=True)
    pushed = push(blessing_uri, str(base), str(tmp_path / "archive"), blessed=False)
    assert pushed.get_int_custom_property("pushed") == 0
    assert os.listdir(base) == [leftover.name]


def push_in_subprocess(blessing_uri: str, base: str, archive_uri: str, file_size_limit: int | None = None) -> subprocess.Popen:
    """`push` in a fresh Python process; with RLIMIT_FSIZE and SIGXFSZ ignored, a big write fails with EFBIG."""

    def limit_file_size() -> None:
        if file_size_limit is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    code = "import sys; from tests.test_atomic_push import push; push(*sys.argv[1:])"
    return subprocess.Popen(
        [sys.executable, "-c", code, blessing_uri, base, archive_uri],
        cwd=PROJECT_ROOT, preexec_fn=limit_file_size, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


def test_a_full_disk_fails_the_push_and_leaves_no_version(blessing_uri, tmp_path):
    base = str(tmp_path / "serving")
    model_bytes = tree_bytes(path_utils.stamped_model_path(blessing_uri))
    with contextlib.ExitStack() as stack:
        try:  # room for the first push and half of the second (tmpfs counts 4 KiB pages: a little slack)
            stack.enter_context(filesystems.tmpfs(base, model_bytes * 3 // 2 + (1 << 20)))
            mounted = True
        except pytest.skip.Exception:  # mounting not permitted: RLIMIT_FSIZE below instead
            mounted = False
        push(blessing_uri, base, str(tmp_path / "archive-1"))
        (earlier,) = integer_children(base)
        wait_for_the_next_second()
        if mounted:
            with pytest.raises(Exception, match="No space left on device"):
                push(blessing_uri, base, str(tmp_path / "archive-2"))
        else:  # every file above 1 MiB (the variables) hits the limit
            process = push_in_subprocess(blessing_uri, base, str(tmp_path / "archive-2"), file_size_limit=1 << 20)
            output = process.communicate(timeout=300)[0].decode(errors="replace")
            assert process.returncode != 0 and "File too large" in output, output
        assert os.listdir(base) == [earlier]  # the staging dir is gone, no new version
        assert same_tree(os.path.join(base, earlier), path_utils.stamped_model_path(blessing_uri))


def test_a_kill_when_the_push_creates_its_dir_leaves_no_version(blessing_uri, tmp_path):
    base = tmp_path / "serving"
    base.mkdir()
    # A large dummy file makes the copy take a while, so the kill lands during it.
    padding = os.path.join(path_utils.stamped_model_path(blessing_uri), "assets.extra", "padding")
    os.makedirs(os.path.dirname(padding), exist_ok=True)
    with open(padding, "wb") as handle:
        handle.truncate(64 << 20)
    process = push_in_subprocess(blessing_uri, str(base), str(tmp_path / "archive"))
    try:
        deadline = time.monotonic() + 300
        while not os.listdir(base) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)  # a tight loop: kill the moment the directory appears
        process.send_signal(signal.SIGKILL)
    finally:
        output = process.communicate(timeout=60)[0].decode(errors="replace")
    assert process.returncode == -signal.SIGKILL, output
    (leftover,) = os.listdir(base)
    assert leftover.startswith(atomic_pusher.STAGING_PREFIX)
    assert integer_children(str(base)) == []

    push(blessing_uri, str(base), str(tmp_path / "archive-2"))  # the next push clears the leftover
    (version,) = os.listdir(base)
    assert pushed_versions.is_version_name(version)
    assert same_tree(os.path.join(base, version), path_utils.stamped_model_path(blessing_uri))


def test_an_older_crash_is_moved_aside_and_predict_no_longer_picks_it(blessing_uri, export_dir, tmp_path, capsys, caplog):
    from PIL import Image

    from pipeline.cli import main as cli

    base = tmp_path / "serving_model" / "visionpipe-test"
    complete = shutil.copytree(export_dir, base / "100")
    cut = shutil.copytree(export_dir, base / str(FAR_FUTURE))  # what the stock Pusher left on a full disk
    _truncate(os.path.join(cut, "saved_model.pb"), 90 / 246)
    (base / str(FAR_FUTURE + 1)).mkdir()  # what it left when killed at its start
    cut_bytes = open(os.path.join(cut, "saved_model.pb"), "rb").read()

    caplog.set_level("WARNING")
    pushed = push(blessing_uri, str(base), str(tmp_path / "archive"))
    new = pushed.get_string_custom_property("pushed_destination")
    assert integer_children(str(base)) == sorted(["100", os.path.basename(new)])
    assert sorted(name for name in os.listdir(base) if name.startswith(".")) == [
        f".incomplete-{FAR_FUTURE}", f".incomplete-{FAR_FUTURE + 1}"
    ]
    assert open(base / f".incomplete-{FAR_FUTURE}" / "saved_model.pb", "rb").read() == cut_bytes  # kept, not deleted
    assert same_tree(str(complete), str(base / "100"))
    assert caplog.text.count("Moving incomplete version") == 2

    image = str(tmp_path / "image.png")
    Image.new("L", GRAY[:2], 128).save(image)
    capsys.readouterr()
    code = cli.main(["predict", "--model-dir", str(tmp_path), image])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.splitlines()[0] == f"model: {new}"
    assert "skipping" not in err


def test_the_pipeline_pushes_with_the_atomic_executor(tmp_path):
    from pipeline import local_runner
    from pipeline.configs import RunConfig

    pipeline = local_runner.build_local_pipeline(RunConfig(output_dir=str(tmp_path / "out")).absolute())
    (pusher,) = [component for component in pipeline.components if component.id == "Pusher"]
    assert isinstance(pusher, atomic_pusher.AtomicPusher)
    assert pusher.executor_spec.executor_class is atomic_pusher.Executor
