"""`visionpipe run` when its surroundings fail: a busy, read-only or full output dir, odd paths, Ctrl-C.

Each failure must be one `visionpipe: error:` line naming the problem, a
non-zero exit, no traceback, and nothing presented as a result.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from pipeline.cli import main as cli
from pipeline.plumbing import output_lock
from tests.filesystems import tmpfs
from tests.test_cli import assert_failed_cleanly, run_cli

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_mnist(capsys, data_dir: str, output_dir, *extra: str) -> tuple[int, str, str]:
    return run_cli(capsys, "run", "--dataset", "mnist", "--data-dir", data_dir, "--output-dir", str(output_dir), *extra)


def test_a_second_run_into_a_busy_output_dir_refuses_at_once_naming_the_first(idx_dir, tmp_path, capsys):
    output_dir = tmp_path / "out"
    output_dir.mkdir()
    started = time.monotonic()
    with output_lock.exclusive_output_dir(str(output_dir)):  # the first run, still going
        code, _, err = run_mnist(capsys, idx_dir, output_dir)
    assert time.monotonic() - started < 30  # at once: no component ran
    assert_failed_cleanly(code, err, f"is in use by another run (pid {os.getpid()}, started ", output_dir)
    assert "use another --output-dir" in err
    assert not (output_dir / "metadata.sqlite").exists()


def test_the_lock_is_released_when_its_holder_is_killed(tmp_path):
    """flock(2) dies with its process: a SIGKILLed run never leaves the dir locked."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pipeline.plumbing import output_lock\n"
         "with output_lock.exclusive_output_dir(sys.argv[1]):\n print('held', flush=True); time.sleep(60)",
         str(tmp_path)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(output_lock.OutputDirBusyError, match=f"pid {holder.pid}"):
        with output_lock.exclusive_output_dir(str(tmp_path)):
            pass
    holder.kill()
    holder.wait()
    with output_lock.exclusive_output_dir(str(tmp_path)):
        pass


def test_an_output_dir_that_cannot_be_created_is_one_line(idx_dir, tmp_path, capsys):
    with tmpfs(str(tmp_path / "readonly"), 1 << 20, read_only=True) as parent:
        output_dir = os.path.join(parent, "out")
        code, _, err = run_mnist(capsys, idx_dir, output_dir)
    assert code == 1 and err.count("\n") == 1, err
    assert f"visionpipe: error: cannot create output dir {output_dir}: Read-only file system" in err


def test_a_read_only_output_dir_is_one_line_that_points_to_no_missing_log(idx_dir, tmp_path, capsys):
    output_dir = tmp_path / "out"
    with tmpfs(str(output_dir), 1 << 20, read_only=True):
        code, _, err = run_mnist(capsys, idx_dir, output_dir)
    assert code == 1 and err.count("\n") == 1, err
    assert f"visionpipe: error: output dir {output_dir} is not writable: Read-only file system" in err
    assert "log" not in err.split("is not writable")[1].replace("/logs", "")  # names the folder, promises no log


@pytest.mark.parametrize("option", ["--output-dir", "--data-dir"])
def test_a_path_with_glob_characters_is_a_usage_error(idx_dir, tmp_path, capsys, option):
    odd = str(tmp_path / "run[1]")
    paths = {"--output-dir": str(tmp_path / "out"), "--data-dir": idx_dir, option: odd}
    with pytest.raises(SystemExit) as caught:
        cli.main(["run", "--dataset", "mnist", "--data-dir", paths["--data-dir"], "--output-dir", paths["--output-dir"]])
    assert caught.value.code == 2
    assert f"{option} {odd}: contains one of [ ] * ?" in capsys.readouterr().err


def test_imagenet_normalization_of_greyscale_images_is_a_usage_error(idx_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["run", "--dataset", "mnist", "--data-dir", idx_dir, "--output-dir", str(tmp_path), "--normalization", "imagenet"])
    assert caught.value.code == 2
    assert "mnist images have 1 channel; use --normalization computed" in capsys.readouterr().err


def _as_in_a_terminal() -> None:
    """SIGINT as a foreground command in a terminal gets it: a test suite started in the
    background by a non-interactive shell inherits SIGINT ignored, and so would the command."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_in_subprocess(*argv: str, **kwargs) -> subprocess.Popen:
    """The real entry point in its own process: the console (fd 1 and 2) is what a user sees."""
    environment = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", *argv],
        cwd=REPO_ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_as_in_a_terminal, **kwargs,
    )


def test_a_full_disk_during_example_gen_is_one_line_with_no_beam_traceback(tmp_path):
    from tests.conftest import write_idx_dataset

    data_dir = write_idx_dataset(str(tmp_path / "data"), train_count=3000, test_count=500)
    with tmpfs(str(tmp_path / "small"), 1536 << 10) as small:
        output_dir = os.path.join(small, "out")
        process = run_in_subprocess("run", "--dataset", "mnist", "--data-dir", data_dir, "--output-dir", output_dir)
        out, err = process.communicate(timeout=600)
        assert not os.path.exists(os.path.join(output_dir, "run_summary.json"))
    assert process.returncode == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("visionpipe: error: "), err
    assert "No space left on device" in lines[0] and "(full log: " in lines[0]
    assert "Traceback" not in out + err


def test_ctrl_c_is_one_line_naming_where_it_stopped_and_exits_130(idx_dir, tmp_path):
    output_dir = tmp_path / "out"
    process = run_in_subprocess("run", "--dataset", "mnist", "--data-dir", idx_dir, "--output-dir", str(output_dir))
    for line in process.stdout:  # wait until a component runs
        if line.startswith("[") and "..." in line:
            break
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("visionpipe: error: interrupted during "), err
    assert "Traceback" not in out + err and not (output_dir / "run_summary.json").exists()


def test_the_console_shows_no_native_tensorflow_log_lines(tmp_path):
    """TF 2.21 prints port.cc / cudart_stub.cc lines at import, which TF_CPP_MIN_LOG_LEVEL does not stop."""
    process = run_in_subprocess("slices", "--output-dir", str(tmp_path))
    out, err = process.communicate(timeout=300)
    assert process.returncode == 1
    assert err.strip().splitlines() == [
        f"visionpipe: error: {tmp_path}/metadata.sqlite: not found (no pipeline has run in this output dir)"
    ], err


def test_keras_shows_its_progress_bar_only_on_a_terminal(monkeypatch):
    """An 80 s epoch shows its steps on a TTY; a file or pipe gets one line per epoch."""
    from trainer_module import run_fn

    controller, terminal = os.openpty()
    try:
        with os.fdopen(terminal, "w", closefd=False) as tty:
            monkeypatch.setattr(sys, "stdout", tty)
            assert run_fn.fit_verbosity() == 1
        read_end, write_end = os.pipe()
        with os.fdopen(write_end, "w") as pipe:
            monkeypatch.setattr(sys, "stdout", pipe)
            assert run_fn.fit_verbosity() == 2
        os.close(read_end)
    finally:
        os.close(controller)
        os.close(terminal)


def test_version(capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.startswith("visionpipe 0.1.0 (TFX 1.21.0, TensorFlow 2.21")
