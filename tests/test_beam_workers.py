"""`visionpipe run --beam-workers N`: the data stages on N Beam worker processes, shim included.

Beam's worker processes import TFDV without importing visionpipe, and TFDV
1.16 cannot be imported beside tfx-bsl 1.21 without the shim. The tests show
that, then that the worker start-up folder fixes it, then a real run of the
data stages on two worker processes.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from tfx.utils import dependency_utils

from components import tfx_bsl_compat
from pipeline import configs, local_runner


def import_tfdv_in_a_fresh_process(pythonpath: str | None) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    if pythonpath:
        environment["PYTHONPATH"] = pythonpath
    return subprocess.run(
        [sys.executable, "-c", "import tensorflow_data_validation"],
        cwd="/", env=environment, capture_output=True, text=True, timeout=300,
    )


def test_a_worker_process_imports_tfdv_only_with_the_worker_site_on_its_path():
    bare = import_tfdv_in_a_fresh_process(None)
    assert bare.returncode != 0 and "cannot import name 'sql_util'" in bare.stderr
    with_site = import_tfdv_in_a_fresh_process(tfx_bsl_compat.worker_pythonpath(os.environ.get("PYTHONPATH")))
    assert with_site.returncode == 0, with_site.stderr[-2000:]


def test_worker_pythonpath_puts_the_site_first_once():
    site = tfx_bsl_compat.WORKER_SITE_DIR
    assert tfx_bsl_compat.worker_pythonpath(None) == site
    assert tfx_bsl_compat.worker_pythonpath(f"/a{os.pathsep}{site}{os.pathsep}/b") == os.pathsep.join([site, "/a", "/b"])


def test_one_worker_is_in_process_and_several_are_worker_processes():
    assert configs.local_beam_args(1) == configs.IN_PROCESS_BEAM_ARGS
    assert configs.local_beam_args(3) == (
        "--runner=FnApiRunner",
        "--direct_running_mode=multi_processing",
        "--direct_num_workers=3",
        configs.LOCAL_WORKERS_NEED_NO_PACKAGES,
    )
    assert local_runner.config_from_environment({"VISIONPIPE_BEAM_WORKERS": "4"}).beam_workers == 4
    with pytest.raises(configs.ConfigError, match="beam_workers must be from 1"):
        configs.RunConfig(beam_workers=0)


@pytest.mark.parametrize("workers", [1, 2])
def test_tfx_builds_no_package_of_itself_for_local_workers(workers, monkeypatch):
    """TFX's own check (tfx/utils/dependency_utils.py), which every Beam executor runs at its start:
    without a dependency flag it copies TFX's tree and runs `setup.py sdist` to add an --extra_package."""
    monkeypatch.setattr(dependency_utils, "build_ephemeral_package", lambda: pytest.fail("TFX built its sdist"))
    arguments = list(configs.local_beam_args(workers))
    assert dependency_utils.make_beam_dependency_flags(arguments) == arguments
    without_the_flag = [argument for argument in arguments if argument != configs.LOCAL_WORKERS_NEED_NO_PACKAGES]
    monkeypatch.setattr(dependency_utils, "build_ephemeral_package", lambda: "/tmp/tfx_ephemeral.tar.gz")
    assert dependency_utils.make_beam_dependency_flags(without_the_flag)[-1] == "--extra_package=/tmp/tfx_ephemeral.tar.gz"


def test_the_data_stages_run_on_two_worker_processes(idx_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))  # restored after the test
    config = configs.RunConfig(dataset="mnist", data_dir=idx_dir, output_dir=str(tmp_path / "out"), beam_workers=2)
    data_stages = local_runner.build_local_pipeline(config.absolute(), data_stages_only=True)
    assert "--direct_running_mode=multi_processing" in data_stages.beam_pipeline_args
    assert os.environ["PYTHONPATH"].split(os.pathsep)[0] == tfx_bsl_compat.WORKER_SITE_DIR
    local_runner.run_pipeline(data_stages, local_runner.new_run_id())  # raises if a worker could not import TFDV
    statistics = tmp_path / "out" / "tfx" / "visionpipe-mnist" / "StatisticsGen" / "statistics"
    assert any(name.startswith("FeatureStats") for _, _, files in os.walk(statistics) for name in files)
