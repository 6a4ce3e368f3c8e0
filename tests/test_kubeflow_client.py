"""`visionpipe kubeflow run|status` against a loopback KFP API, through the real CLI.

Nothing of kfp is mocked: `tests/kfp_api_server.py` speaks the v2beta1 REST API
that kfp.Client 2.16 calls, so these tests check what a cluster would receive
(the uploaded package, the run's pipeline version and parameters, the
credentials on every request) and how each way a cluster can refuse us reads
on the command line: one line on stderr, exit 1, nothing submitted.

The package is a hand-written minimal KFP v2 spec: compiling the real one
imports TensorFlow and takes a minute, and submission only needs a valid spec.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubeflow import package
from pipeline.cli import main as cli
from tests.kfp_api_server import API, KfpApiServer
from tests.test_kubeflow_compile import executor_config

TOKEN = "t0ken-for-tests"
COOKIE = "authservice_session=cookie-for-tests"
PIPELINE_NAME = "visionpipe-fashion-mnist"
EXPERIMENT = "nightly"
REPO_ROOT = Path(__file__).resolve().parent.parent

PACKAGE_YAML = f"""\
# visionpipe Kubeflow Pipelines v2 package (hand-written test stand-in)
components:
  comp-examplegen:
    executorLabel: exec-examplegen
    inputDefinitions:
      parameters:
        data_root:
          parameterType: STRING
defaultPipelineRoot: gs://bucket/root
deploymentSpec:
  executors:
    exec-examplegen:
      container:
        image: ghcr.io/example/visionpipe:test
        command: [python, -m, tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor]
        args: [--executor_class_path, components.idx_example_gen.Executor]
        resources:
          cpuLimit: 1.0
          memoryLimit: 4.0
pipelineInfo:
  name: {PIPELINE_NAME}
root:
  dag:
    tasks:
      examplegen:
        componentRef:
          name: comp-examplegen
        inputs:
          parameters:
            data_root:
              componentInputParameter: data_root
        taskInfo:
          name: examplegen
  inputDefinitions:
    parameters:
      data_root:
        defaultValue: gs://bucket/data/fashion_mnist
        isOptional: true
        parameterType: STRING
      epochs:
        defaultValue: 10
        isOptional: true
        parameterType: NUMBER_INTEGER
      accuracy_threshold:
        defaultValue: 0.8
        isOptional: true
        parameterType: NUMBER_DOUBLE
schemaVersion: 2.1.0
sdkVersion: tfx-1.21.0
"""

# Variables that change what kfp.Client or urllib do; a developer's shell may set them.
FOREIGN_ENVIRONMENT = (
    "KFP_TOKEN",
    "KFP_COOKIE",
    "KF_PIPELINES_ENDPOINT",
    "KF_PIPELINES_UI_ENDPOINT",
    "KF_PIPELINES_IAP_OAUTH2_CLIENT_ID",
    "KF_PIPELINES_APP_OAUTH2_CLIENT_ID",
    "KF_PIPELINES_APP_OAUTH2_CLIENT_SECRET",
    "KF_PIPELINES_DEFAULT_EXPERIMENT_NAME",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
)


@pytest.fixture(autouse=True)
def hermetic_kfp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No proxies or KF_* settings from the shell, and kfp's context file under tmp_path.

    kfp.Client reads (and on multi-user clusters writes) ~/.config/kfp/context.json;
    a developer's real one would change the requests, and tests must not touch it.
    """
    from kfp.client import client as kfp_client

    for name in FOREIGN_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    context = tmp_path / "kfp" / "context.json"
    monkeypatch.setattr(kfp_client.Client, "_LOCAL_KFP_CONTEXT", str(context))
    yield context


@pytest.fixture
def kfp_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[KfpApiServer]:
    """A fake API that wants TOKEN, with TOKEN in KFP_TOKEN."""
    monkeypatch.setenv("KFP_TOKEN", TOKEN)
    with KfpApiServer(required_token=TOKEN) as server:
        yield server


@pytest.fixture
def package_path(tmp_path: Path) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(PACKAGE_YAML, encoding="utf-8")
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def submit(
    capsys: pytest.CaptureFixture[str], server: KfpApiServer, package_file: Path, *extra: str
) -> tuple[int, str, str]:
    return run_cli(
        capsys,
        "kubeflow", "run", "--endpoint", server.url, "--package", str(package_file),
        "--experiment", EXPERIMENT, *extra,
    )  # fmt: skip


def one_error_line(err: str, *fragments: str) -> str:
    """The single stderr line of a clean failure, checked for `fragments` and no traceback."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("visionpipe: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert "Traceback" not in err
    return lines[0]


def only_run(server: KfpApiServer) -> dict:
    assert len(server.runs) == 1, server.runs
    return next(iter(server.runs.values()))


def closed_port() -> int:
    """A port on 127.0.0.1 where, a moment ago, nothing was listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- the package -----------------------------------------------------------------


def test_hand_written_package_is_a_valid_pipeline_spec(package_path: Path) -> None:
    """The stand-in must pass the same strict check as a compiled package, or the tests prove little."""
    spec, platform = package.load_package(str(package_path))
    assert platform is None
    assert spec.pipeline_info.name == PIPELINE_NAME
    assert spec.schema_version == "2.1.0"
    assert "data_root" in spec.root.input_definitions.parameters
    assert list(spec.root.dag.tasks) == ["examplegen"]
    executors = executor_config(spec).executors
    assert executors["exec-examplegen"].container.image == "ghcr.io/example/visionpipe:test"


# --- submitting ------------------------------------------------------------------


@pytest.mark.parametrize(
    "token_env, cookie_env, options",
    [
        ("KFP_TOKEN", "KFP_COOKIE", []),
        ("TEAM_TOKEN", "TEAM_COOKIE", ["--token-env", "TEAM_TOKEN", "--cookie-env", "TEAM_COOKIE"]),
    ],
)
def test_run_uploads_the_package_and_starts_a_run(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    kfp_server: KfpApiServer,
    package_path: Path,
    hermetic_kfp: Path,
    token_env: str,
    cookie_env: str,
    options: list[str],
) -> None:
    monkeypatch.delenv("KFP_TOKEN")
    monkeypatch.setenv(token_env, TOKEN)
    monkeypatch.setenv(cookie_env, COOKIE)

    code, out, err = submit(capsys, kfp_server, package_path, *options)

    assert code == 0, err
    run = only_run(kfp_server)
    assert f"visionpipe: started run {run['run_id']} in experiment {EXPERIMENT}" in out
    assert f"  {kfp_server.url}/#/runs/details/{run['run_id']}" in out.splitlines()

    calls = kfp_server.calls()
    assert calls[0] == ("GET", f"{API}/healthz"), calls  # the preflight, before anything else
    (upload,) = kfp_server.requests_to("POST", f"{API}/pipelines/upload")
    assert upload.query["name"] == PIPELINE_NAME
    assert [(f.field, f.filename) for f in upload.files] == [("uploadfile", "pipeline.yaml")]
    assert upload.files[0].content == package_path.read_bytes()
    ((pipeline_id, pipeline),) = kfp_server.pipelines.items()
    assert pipeline["display_name"] == PIPELINE_NAME
    (version,) = kfp_server.versions[pipeline_id]

    (create_experiment,) = kfp_server.requests_to("POST", f"{API}/experiments")
    assert create_experiment.json()["display_name"] == EXPERIMENT
    ((experiment_id, _),) = kfp_server.experiments.items()

    (create_run,) = kfp_server.requests_to("POST", f"{API}/runs")
    body = create_run.json()
    assert body["pipeline_version_reference"] == {
        "pipeline_id": pipeline_id,
        "pipeline_version_id": version["pipeline_version_id"],
    }
    assert body["experiment_id"] == experiment_id
    assert body["display_name"].startswith(PIPELINE_NAME)
    assert "pipeline_spec" not in body  # the uploaded version is run, not an inline copy
    assert calls.index(("POST", f"{API}/pipelines/upload")) < calls.index(("POST", f"{API}/runs"))

    for request in kfp_server.requests:
        assert request.headers.get("authorization") == f"Bearer {TOKEN}", (request.path, request.headers)
        assert request.headers.get("cookie") == COOKIE, (request.path, request.headers)
    assert TOKEN not in out + err and "cookie-for-tests" not in out + err
    assert not hermetic_kfp.exists()  # a single-user API: kfp has no reason to save a context


def test_run_without_cookie_sends_none(
    capsys: pytest.CaptureFixture[str], kfp_server: KfpApiServer, package_path: Path
) -> None:
    code, _, err = submit(capsys, kfp_server, package_path)
    assert code == 0, err
    assert all("cookie" not in request.headers for request in kfp_server.requests)


def test_ui_url_and_namespace(
    capsys: pytest.CaptureFixture[str], kfp_server: KfpApiServer, package_path: Path
) -> None:
    """--ui-url changes only the printed link; --namespace reaches the upload and the experiment."""
    code, out, err = submit(
        capsys, kfp_server, package_path, "--ui-url", "https://kf.example.com/pipeline/", "--namespace", "team-a"
    )
    assert code == 0, err
    run = only_run(kfp_server)
    assert f"  https://kf.example.com/pipeline/#/runs/details/{run['run_id']}" in out.splitlines()
    (upload,) = kfp_server.requests_to("POST", f"{API}/pipelines/upload")
    assert upload.query.get("namespace") == "team-a"
    (create_experiment,) = kfp_server.requests_to("POST", f"{API}/experiments")
    assert create_experiment.json()["namespace"] == "team-a"


def test_later_runs_upload_new_versions_of_the_same_pipeline(
    capsys: pytest.CaptureFixture[str], kfp_server: KfpApiServer, package_path: Path
) -> None:
    """One pipeline, one version per submission, each run on its own version.

    Three submissions in quick succession: the API refuses two versions with the
    same name, so version names must differ even within one second.
    """
    for _ in range(3):
        code, _, err = submit(capsys, kfp_server, package_path)
        assert code == 0, err

    assert len(kfp_server.requests_to("POST", f"{API}/pipelines/upload")) == 1
    version_uploads = kfp_server.requests_to("POST", f"{API}/pipelines/upload_version")
    assert len(version_uploads) == 2
    ((pipeline_id, _),) = kfp_server.pipelines.items()
    for upload in version_uploads:
        assert upload.query["pipelineid"] == pipeline_id
        assert upload.query["name"].startswith(PIPELINE_NAME + "-")
        assert upload.files[0].field == "uploadfile"
        assert upload.files[0].content == package_path.read_bytes()
    versions = kfp_server.versions[pipeline_id]
    assert len({version["display_name"] for version in versions}) == 3
    run_versions = [
        request.json()["pipeline_version_reference"]["pipeline_version_id"]
        for request in kfp_server.requests_to("POST", f"{API}/runs")
    ]
    assert run_versions == [version["pipeline_version_id"] for version in versions]
    assert len(kfp_server.experiments) == 1  # the existing experiment is reused


@pytest.mark.parametrize(
    "options, parameters",
    [(["--data-dir", "gs://x/y"], {"data_root": "gs://x/y"}), ([], None)],
    ids=["data-dir", "package-default"],
)
def test_data_dir_becomes_the_data_root_parameter(
    capsys: pytest.CaptureFixture[str],
    kfp_server: KfpApiServer,
    package_path: Path,
    options: list[str],
    parameters: dict | None,
) -> None:
    code, _, err = submit(capsys, kfp_server, package_path, *options)
    assert code == 0, err
    (create_run,) = kfp_server.requests_to("POST", f"{API}/runs")
    runtime_config = create_run.json().get("runtime_config") or {}
    assert (runtime_config.get("parameters") or None) == parameters


def test_params_become_typed_run_parameters(
    capsys: pytest.CaptureFixture[str], kfp_server: KfpApiServer, package_path: Path
) -> None:
    code, out, err = submit(
        capsys, kfp_server, package_path, "--param", "epochs=3", "--param", "accuracy_threshold=0.9",
        "--data-dir", "gs://x/other",
    )  # fmt: skip
    assert code == 0, err
    (create_run,) = kfp_server.requests_to("POST", f"{API}/runs")
    parameters = create_run.json()["runtime_config"]["parameters"]
    assert parameters == {"epochs": 3, "accuracy_threshold": 0.9, "data_root": "gs://x/other"}


@pytest.mark.parametrize(
    "param, fragments",
    [
        ("learning_rate=0.1", ["no run parameter 'learning_rate'", "accuracy_threshold, data_root, epochs"]),
        ("epochs=three", ["--param epochs=three", "must be an integer"]),
        ("epochs=0", ["must be an integer from 1 to"]),
        ("accuracy_threshold=1.5", ["must be between 0 and 1"]),
        ("epochs", ["expected NAME=VALUE"]),
        ("data_root=/local/data", ["a local path"]),
    ],
    ids=["unknown", "not-an-int", "out-of-range", "not-a-fraction", "no-value", "local-data-root"],
)
def test_a_bad_param_is_one_line_before_anything_is_sent(
    capsys: pytest.CaptureFixture[str], kfp_server: KfpApiServer, package_path: Path, param: str, fragments: list[str]
) -> None:
    code, _, err = submit(capsys, kfp_server, package_path, "--param", param)
    assert code == 1
    one_error_line(err, *fragments)
    assert kfp_server.requests == []


def test_a_param_given_twice_is_refused(capsys: pytest.CaptureFixture[str], kfp_server: KfpApiServer, package_path: Path) -> None:
    code, _, err = submit(capsys, kfp_server, package_path, "--param", "epochs=2", "--param", "epochs=3")
    assert code == 1
    one_error_line(err, "--param epochs: given twice")
    assert kfp_server.requests == []


def test_a_package_for_local_run_is_not_submitted(
    capsys: pytest.CaptureFixture[str], kfp_server: KfpApiServer, tmp_path: Path
) -> None:
    local_package = tmp_path / "local.yaml"
    local_package.write_text(PACKAGE_YAML.replace("gs://bucket/root", str(tmp_path / "root")), encoding="utf-8")
    code, _, err = submit(capsys, kfp_server, local_package)
    assert code == 1
    one_error_line(err, "compiled --for-local-run", "kubeflow local-run")
    assert kfp_server.requests == []


def test_run_does_not_import_tensorflow(kfp_server: KfpApiServer, package_path: Path, tmp_path: Path) -> None:
    """Submitting a compiled package must not load TFX/TensorFlow (half a minute, and a big install)."""
    script = (
        "import sys\n"
        "from kfp.client import client\n"
        f"client.Client._LOCAL_KFP_CONTEXT = {str(tmp_path / 'context.json')!r}\n"
        "from pipeline.cli import main as cli\n"
        f"code = cli.main(['kubeflow', 'run', '--endpoint', {kfp_server.url!r}, '--package', {str(package_path)!r}])\n"
        "print('exit', code, 'tensorflow' in sys.modules, 'tfx' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.stdout.strip().splitlines()[-1] == "exit 0 False False", result.stdout + result.stderr
    assert len(kfp_server.runs) == 1


# --- following a run -------------------------------------------------------------


STATE_LINE = re.compile(r"^  \[\s*\d+ s\] (\S+)$")


@pytest.mark.parametrize(
    "states, error, code, final",
    [
        (("PENDING", "RUNNING", "RUNNING", "SUCCEEDED"), None, 0, "SUCCEEDED"),
        (("PENDING", "RUNNING", "RUNNING", "FAILED"), "Trainer: container exited with OOMKilled", 1, "FAILED"),
        (("RUNNING", "CANCELING", "CANCELED"), None, 1, "CANCELED"),
    ],
    ids=["succeeded", "failed", "canceled"],
)
def test_wait_follows_the_run_to_its_end(
    capsys: pytest.CaptureFixture[str],
    kfp_server: KfpApiServer,
    package_path: Path,
    states: tuple[str, ...],
    error: str | None,
    code: int,
    final: str,
) -> None:
    kfp_server.script_run_states(*states, error=error)

    exit_code, out, err = submit(capsys, kfp_server, package_path, "--wait", "--poll-seconds", "0.01")

    assert exit_code == code, out + err
    printed = [match.group(1) for line in out.splitlines() if (match := STATE_LINE.match(line))]
    assert printed == list(dict.fromkeys(states))  # each state once, in order
    run_id = only_run(kfp_server)["run_id"]
    assert len(kfp_server.requests_to("GET", f"{API}/runs/{run_id}")) == len(states)  # stops at the end
    if code == 0:
        assert f"visionpipe: run {run_id} SUCCEEDED" in out
        assert err == ""
    else:
        one_error_line(err, f"run {run_id} {final}", *([error] if error else []))


def test_wait_gives_up_after_the_timeout(
    capsys: pytest.CaptureFixture[str], kfp_server: KfpApiServer, package_path: Path
) -> None:
    kfp_server.script_run_states("PENDING", "RUNNING")
    code, _, err = submit(capsys, kfp_server, package_path, "--wait", "--timeout", "1", "--poll-seconds", "0.05")
    assert code == 1
    one_error_line(err, "still RUNNING after 1 s")


# --- status ----------------------------------------------------------------------


def test_status_prints_the_state(capsys: pytest.CaptureFixture[str], kfp_server: KfpApiServer) -> None:
    run_id = kfp_server.add_run(display_name="nightly fashion", state="RUNNING")

    code, out, err = run_cli(capsys, "kubeflow", "status", "--endpoint", kfp_server.url, run_id)

    assert code == 0, err
    assert f"run {run_id} (nightly fashion): RUNNING" in out
    assert "  created  " in out and "finished" not in out  # the API's zero time means "not yet"
    assert f"  {kfp_server.url}/#/runs/details/{run_id}" in out.splitlines()
    assert kfp_server.calls()[-1] == ("GET", f"{API}/runs/{run_id}")


def test_status_json(capsys: pytest.CaptureFixture[str], kfp_server: KfpApiServer) -> None:
    run_id = kfp_server.add_run(state="FAILED", error="Evaluator: accuracy below threshold")

    code, out, err = run_cli(capsys, "kubeflow", "status", "--endpoint", kfp_server.url, run_id, "--json")

    assert code == 0, err
    status = json.loads(out)  # stdout is nothing but the JSON document
    assert status["run_id"] == run_id
    assert status["state"] == "FAILED"
    assert status["error"] == "Evaluator: accuracy below threshold"
    assert status["url"] == f"{kfp_server.url}/#/runs/details/{run_id}"
    assert status["finished_at"] is not None


def test_status_of_an_unknown_run(capsys: pytest.CaptureFixture[str], kfp_server: KfpApiServer) -> None:
    code, _, err = run_cli(capsys, "kubeflow", "status", "--endpoint", kfp_server.url, "no-such-run")
    assert code == 1
    one_error_line(err, kfp_server.url, "reading run no-such-run", "HTTP 404", "Run no-such-run not found")


# --- refusals --------------------------------------------------------------------


def test_server_error_is_one_line(
    capsys: pytest.CaptureFixture[str], kfp_server: KfpApiServer, package_path: Path
) -> None:
    message = "Invalid input error: parameter data_root is not a string"
    kfp_server.fail("POST", f"{API}/runs", 400, message)

    code, _, err = submit(capsys, kfp_server, package_path)

    assert code == 1
    one_error_line(err, kfp_server.url, "starting the run", "HTTP 400", message)
    assert kfp_server.runs == {}


def test_unreachable_endpoint_fails_fast(capsys: pytest.CaptureFixture[str], package_path: Path) -> None:
    """kfp alone would retry with urllib3 warnings and end in a MaxRetryError traceback."""
    endpoint = f"http://127.0.0.1:{closed_port()}"
    started = time.monotonic()

    code, out, err = run_cli(capsys, "kubeflow", "run", "--endpoint", endpoint, "--package", str(package_path))

    assert time.monotonic() - started < 20
    assert code == 1
    one_error_line(err, endpoint, "cannot reach")
    assert "started run" not in out and "uploading" not in out


def test_rejected_token_stops_at_the_health_check(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, package_path: Path
) -> None:
    """kfp alone would retry its health check five times, 5 s apart, then raise TimeoutError."""
    monkeypatch.setenv("KFP_TOKEN", "bad")
    started = time.monotonic()
    with KfpApiServer(required_token="good") as server:
        code, out, err = submit(capsys, server, package_path)

    assert time.monotonic() - started < 10
    assert code == 1
    one_error_line(err, server.url, "rejected the credentials", "401", "Unauthenticated")
    assert server.calls() == [("GET", f"{API}/healthz")]
    assert "uploading" not in out


def test_missing_token_is_rejected_too(capsys: pytest.CaptureFixture[str], package_path: Path) -> None:
    with KfpApiServer(required_token="good") as server:
        code, _, err = submit(capsys, server, package_path)
    assert code == 1
    one_error_line(err, "rejected the credentials", "HTTP 401")
    assert server.calls() == [("GET", f"{API}/healthz")]
    assert "authorization" not in server.requests[0].headers


def test_login_page_instead_of_the_api(capsys: pytest.CaptureFixture[str], package_path: Path) -> None:
    """Clusters behind Dex or oauth2-proxy answer a request without a session with HTML, status 200."""
    with KfpApiServer(healthz_html=True) as server:
        code, _, err = submit(capsys, server, package_path)
    assert code == 1
    one_error_line(err, server.url, "text/html", "login page")
    assert server.calls() == [("GET", f"{API}/healthz")]


@pytest.mark.parametrize(
    "content, fragment",
    [
        (None, "cannot read the package"),
        ("hello: world\n", "no pipelineInfo"),
        (PACKAGE_YAML.replace("schemaVersion:", "schemaVersoin:"), "invalid PipelineSpec"),
        ("pipelineInfo: [unclosed\n", "not YAML"),
    ],
    ids=["missing", "not-a-package", "unknown-field", "not-yaml"],
)
def test_bad_package_never_reaches_the_server(
    capsys: pytest.CaptureFixture[str],
    kfp_server: KfpApiServer,
    tmp_path: Path,
    content: str | None,
    fragment: str,
) -> None:
    path = tmp_path / "broken.yaml"
    if content is not None:
        path.write_text(content, encoding="utf-8")

    code, out, err = submit(capsys, kfp_server, path)

    assert code == 1
    one_error_line(err, str(path), fragment)
    assert kfp_server.requests == []
    assert out == ""


@pytest.mark.parametrize("endpoint", ["localhost:8080", "ftp://kf.example.com/pipeline", "http://", "kf.example.com"])
@pytest.mark.parametrize("command", ["run", "status"])
def test_bad_endpoint_url(
    capsys: pytest.CaptureFixture[str], package_path: Path, endpoint: str, command: str
) -> None:
    argv = ["kubeflow", command, "--endpoint", endpoint]
    argv += ["--package", str(package_path)] if command == "run" else ["some-run-id"]
    code, out, err = run_cli(capsys, *argv)
    assert code == 1
    one_error_line(err, f"--endpoint {endpoint!r}", "expected the KFP API URL")
    assert out == ""
