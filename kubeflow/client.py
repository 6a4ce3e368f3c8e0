"""Talking to a Kubeflow Pipelines v2 API: submit a package, read a run's state.

`kfp.Client` does the work. Before it is created, one plain request to the
API's health endpoint checks the things kfp reports badly: an unreachable host
(kfp retries with urllib3 warnings, then raises MaxRetryError), rejected
credentials (kfp retries its health check five times, 5 s apart, then raises
TimeoutError), and a login page instead of the API (clusters behind Dex or
oauth2-proxy answer unauthenticated requests with HTML). Each becomes one line,
before anything is submitted.

Credentials come from environment variables, never from the command line
(where they would end up in shell history and process lists): a bearer token
(`Authorization: Bearer ...`, e.g. a service-account token) and/or a cookie
string (`authservice_session=...` on Kubeflow's Dex login).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import io
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable
from typing import Any

HEALTHZ_PATH = "/apis/v2beta1/healthz"
TERMINAL_STATES = ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELED")
DEFAULT_TOKEN_ENV = "KFP_TOKEN"
DEFAULT_COOKIE_ENV = "KFP_COOKIE"
PREFLIGHT_TIMEOUT_SECONDS = 15


class KubeflowClientError(RuntimeError):
    """A failed exchange with the KFP API; the message is one line naming the endpoint."""


@dataclasses.dataclass(frozen=True)
class Credentials:
    """What authenticates us to the API; either part may be absent."""

    token: str | None = None
    cookie: str | None = None

    @classmethod
    def from_environment(
        cls, token_env: str = DEFAULT_TOKEN_ENV, cookie_env: str = DEFAULT_COOKIE_ENV
    ) -> "Credentials":
        return cls(
            token=os.environ.get(token_env) or None, cookie=os.environ.get(cookie_env) or None
        )

    def headers(self) -> dict[str, str]:
        headers = {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.cookie:
            headers["Cookie"] = self.cookie
        return headers


@dataclasses.dataclass(frozen=True)
class RunStatus:
    run_id: str
    name: str
    state: str
    created_at: str | None
    finished_at: str | None
    error: str | None
    url: str

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_endpoint_url(endpoint: str) -> str:
    """`endpoint` without a trailing slash, if it is an http(s) URL with a host."""
    parsed = urllib.parse.urlparse(endpoint)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise KubeflowClientError(
            f"--endpoint {endpoint!r}: expected the KFP API URL, e.g. "
            "https://kubeflow.example.com/pipeline or http://localhost:8080"
        )
    return endpoint.rstrip("/")


def _server_message(body: bytes | str) -> str:
    """The API's own error message from a JSON error body, else the body's first line."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        for key in ("message", "error", "error_message"):
            if payload.get(key):
                return str(payload[key]).splitlines()[0]
    return (text.strip().splitlines() or [""])[0][:200]


def preflight(endpoint: str, credentials: Credentials) -> None:
    """GET the health endpoint with our credentials; raise one clear line if that fails."""
    request = urllib.request.Request(endpoint + HEALTHZ_PATH, headers=credentials.headers())
    try:
        with urllib.request.urlopen(request, timeout=PREFLIGHT_TIMEOUT_SECONDS) as response:
            content_type = response.headers.get("Content-Type", "")
            body = response.read(4096)
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            raise KubeflowClientError(
                f"{endpoint}: the API rejected the credentials (HTTP {error.code}: "
                f"{_server_message(error.read())}); check the token/cookie variables"
            ) from None
        raise KubeflowClientError(
            f"{endpoint}: HTTP {error.code} from {HEALTHZ_PATH} ({_server_message(error.read())}); "
            "is this the Kubeflow Pipelines API URL?"
        ) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise KubeflowClientError(f"{endpoint}: cannot reach the Kubeflow Pipelines API ({reason})") from None
    if "json" not in content_type:
        raise KubeflowClientError(
            f"{endpoint}: answered {HEALTHZ_PATH} with {content_type or 'no content type'}, not the "
            "KFP API (a login page?); pass a session cookie or token"
        )
    try:
        json.loads(body)
    except ValueError:
        raise KubeflowClientError(f"{endpoint}: {HEALTHZ_PATH} did not return JSON") from None


class KubeflowClient:
    """A checked connection to one KFP API, with the few calls visionpipe needs."""

    def __init__(
        self,
        endpoint: str,
        credentials: Credentials,
        namespace: str | None = None,
        ui_url: str | None = None,
    ) -> None:
        import kfp  # heavy-ish; only when a cluster is actually used

        self.endpoint = check_endpoint_url(endpoint)
        preflight(self.endpoint, credentials)
        self.namespace = namespace
        self.ui_url = (ui_url or self.endpoint).rstrip("/")
        with warnings.catch_warnings():
            # "This client only works with Kubeflow Pipeline v2.0.0-beta.2 and later
            # versions": noise on every call, and our package is v2 anyway.
            warnings.simplefilter("ignore", FutureWarning)
            self._kfp = self._call(
                "connecting",
                kfp.Client,
                host=self.endpoint,
                existing_token=credentials.token,
                cookies=credentials.cookie,
                namespace=namespace or "kubeflow",
                ui_host=self.ui_url,
            )

    def run_url(self, run_id: str) -> str:
        return f"{self.ui_url}/#/runs/details/{run_id}"

    def _call(self, action: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Calls kfp; its HTTP and connection errors become one KubeflowClientError line.

        kfp prints its own "Run details: <link>" lines; they are dropped, our
        output says the same once, with the --ui-url link.
        """
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                return function(*args, **kwargs)
        except KubeflowClientError:
            raise
        except Exception as error:  # kfp_server_api.ApiException, urllib3 errors, TimeoutError
            status = getattr(error, "status", None)
            if status is not None:
                detail = f"HTTP {status}: {_server_message(getattr(error, 'body', '') or '')}"
            else:
                detail = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise KubeflowClientError(f"{self.endpoint}: {action} failed ({detail})") from None

    def _pipeline_id(self, pipeline_name: str) -> str | None:
        """The id of the pipeline named `pipeline_name` in our namespace, if it exists.

        Not `kfp.Client.get_pipeline_id`: it never passes a namespace, so on a
        multi-user cluster it would miss a pipeline uploaded into a profile and
        the re-upload would collide with it.
        """
        name_filter = json.dumps(
            {"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": pipeline_name}]}
        )
        response = self._call(
            "looking up the pipeline",
            self._kfp.list_pipelines,
            filter=name_filter,
            namespace=self.namespace,
        )
        matches = [p.pipeline_id for p in response.pipelines or [] if p.display_name == pipeline_name]
        return matches[0] if matches else None

    def upload(self, package_path: str, pipeline_name: str) -> tuple[str, str]:
        """Uploads the package as a new pipeline, or as a new version of an existing one.

        Returns (pipeline_id, pipeline_version_id). Versions are named by UTC
        time, so every upload stays visible in the KFP UI's version list; the
        time has microseconds because the API refuses a second version with
        the same name (HTTP 409), and two uploads can fall in one second.
        """
        pipeline_id = self._pipeline_id(pipeline_name)
        if pipeline_id is None:
            pipeline = self._call(
                "uploading the pipeline",
                self._kfp.upload_pipeline,
                package_path,
                pipeline_name=pipeline_name,
                namespace=self.namespace,
            )
            versions = self._call(
                "listing pipeline versions",
                self._kfp.list_pipeline_versions,
                pipeline.pipeline_id,
            )
            return pipeline.pipeline_id, versions.pipeline_versions[0].pipeline_version_id
        version_name = f"{pipeline_name}-{datetime.datetime.now(datetime.timezone.utc):%Y%m%d-%H%M%S-%f}"
        version = self._call(
            "uploading a pipeline version",
            self._kfp.upload_pipeline_version,
            package_path,
            pipeline_version_name=version_name,
            pipeline_id=pipeline_id,
        )
        return pipeline_id, version.pipeline_version_id

    def start_run(
        self,
        pipeline_id: str,
        version_id: str,
        experiment: str,
        run_name: str,
        parameters: dict[str, str],
    ) -> str:
        """Starts a run of one uploaded pipeline version; returns its run id."""
        experiment_record = self._call(
            "creating the experiment", self._kfp.create_experiment, experiment, namespace=self.namespace
        )
        run = self._call(
            "starting the run",
            self._kfp.run_pipeline,
            experiment_id=experiment_record.experiment_id,
            job_name=run_name,
            params=parameters,
            pipeline_id=pipeline_id,
            version_id=version_id,
        )
        return run.run_id

    def status(self, run_id: str) -> RunStatus:
        run = self._call(f"reading run {run_id}", self._kfp.get_run, run_id)
        error = getattr(run, "error", None)
        message = getattr(error, "message", None) if error is not None else None
        return RunStatus(
            run_id=run.run_id,
            name=run.display_name or "",
            state=str(run.state or "RUNTIME_STATE_UNSPECIFIED"),
            created_at=_timestamp(getattr(run, "created_at", None)),
            finished_at=_timestamp(getattr(run, "finished_at", None)),
            error=message or None,
            url=self.run_url(run.run_id),
        )

    def wait(
        self,
        run_id: str,
        *,
        timeout_seconds: float,
        poll_seconds: float,
        on_change: Callable[[RunStatus, float], None],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> RunStatus:
        """Polls until the run reaches a terminal state or `timeout_seconds` pass.

        Our own loop, not `kfp.Client.wait_for_run_completion`: that one does
        not treat CANCELED as finished and would poll a cancelled run forever.
        """
        started = clock()
        last_state = None
        while True:
            status = self.status(run_id)
            if status.state != last_state:
                on_change(status, clock() - started)
                last_state = status.state
            if status.finished or clock() - started >= timeout_seconds:
                return status
            sleep(poll_seconds)


def _timestamp(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        if value.year <= 1970:  # the API's zero time: not finished yet
            return None
        return value.isoformat()
    return str(value)
