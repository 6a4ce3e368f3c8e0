"""A loopback stand-in for the Kubeflow Pipelines v2beta1 REST API, for CLI tests.

`visionpipe kubeflow run|status` talk to a cluster through `kfp.Client`; a
mock of kfp would only test our guesses about it. This server speaks the part
of the real API that kfp 2.16 uses (paths, snake_case JSON bodies, multipart
uploads in the field `uploadfile`, grpc-gateway error bodies), so the tests run
the real kfp code over real HTTP. It records every request and keeps the state
a cluster would (pipelines, versions, experiments, runs), and it enforces the
rules that make a real server refuse a request: unique pipeline names per
namespace, unique version names per pipeline, known ids in a run.

It can also behave like the clusters that go wrong: require a bearer token
(401, code 16), answer the health check with a login page, follow a scripted
sequence of run states, or fail one endpoint with an HTTP error.
"""

from __future__ import annotations

import dataclasses
import datetime
import email.message
import email.parser
import http.server
import json
import re
import threading
import urllib.parse
import uuid
from typing import Any

API = "/apis/v2beta1"
ZERO_TIME = "1970-01-01T00:00:00Z"  # what the API returns for "not yet"
TERMINAL_STATES = ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELED")
LOGIN_PAGE = b"<!DOCTYPE html><html><head><title>Log in to Your Account</title></head><body></body></html>"

# grpc status codes, as the API's error bodies carry them
INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, UNAUTHENTICATED = 3, 5, 6, 16


@dataclasses.dataclass(frozen=True)
class UploadedFile:
    """One file part of a multipart/form-data request."""

    field: str
    filename: str
    content: bytes


@dataclasses.dataclass(frozen=True)
class RecordedRequest:
    """What the client sent, as the server received it."""

    method: str
    path: str
    query: dict[str, str]  # kfp never repeats a query parameter
    headers: dict[str, str]  # names in lower case
    body: bytes
    files: tuple[UploadedFile, ...] = ()

    def json(self) -> Any:
        return json.loads(self.body)


class ApiError(Exception):
    """Becomes a grpc-gateway style JSON error response."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_multipart(content_type: str, body: bytes) -> tuple[UploadedFile, ...]:
    """The file parts of a multipart body, their bytes exactly as sent."""
    header = email.message.Message()
    header["Content-Type"] = content_type
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str):
        return ()
    files = []
    for chunk in body.split(b"--" + boundary.encode("latin-1"))[1:]:
        if chunk.startswith(b"--"):  # the closing delimiter
            break
        head, _, content = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        headers = email.parser.BytesHeaderParser().parsebytes(head + b"\r\n\r\n")
        disposition = email.message.Message()
        disposition["Content-Disposition"] = headers.get("Content-Disposition", "")
        files.append(
            UploadedFile(
                field=str(disposition.get_param("name", header="content-disposition") or ""),
                filename=disposition.get_filename() or "",
                content=content.removesuffix(b"\r\n"),
            )
        )
    return tuple(files)


def _filter_matches(item: dict[str, Any], filter_text: str | None) -> bool:
    """The API's `filter` query: EQUALS predicates on string fields (all kfp sends)."""
    if not filter_text:
        return True
    try:
        predicates = json.loads(filter_text).get("predicates", [])
    except (ValueError, AttributeError):
        raise ApiError(400, INVALID_ARGUMENT, f"Invalid input error: bad filter {filter_text!r}") from None
    for predicate in predicates:
        if predicate.get("operation") not in (1, "EQUALS"):
            raise ApiError(400, INVALID_ARGUMENT, f"Invalid input error: unsupported filter {predicate}")
        key = "display_name" if predicate.get("key") in ("display_name", "name") else predicate.get("key")
        wanted = predicate.get("stringValue", predicate.get("string_value"))
        if item.get(key) != wanted:
            return False
    return True


class KfpApiServer:
    """The fake API on 127.0.0.1 at a free port; use as a context manager.

    Settings (change them before the client runs):
    * `required_token`: every request needs `Authorization: Bearer <token>`;
    * `healthz_html`: the health check answers with an HTML login page, as a
      cluster behind Dex or oauth2-proxy does for unauthenticated requests;
    * `multi_user`: the health check's multi_user flag;
    * `script_run_states(...)`: the states successive reads of a run return;
    * `fail(method, path, status, message)`: that endpoint answers with an error.
    """

    def __init__(
        self, *, required_token: str | None = None, healthz_html: bool = False, multi_user: bool = False
    ) -> None:
        self.required_token = required_token
        self.healthz_html = healthz_html
        self.multi_user = multi_user
        self.requests: list[RecordedRequest] = []
        self.pipelines: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, list[dict[str, Any]]] = {}  # pipeline id -> versions, oldest first
        self.packages: dict[str, bytes] = {}  # version id -> the uploaded package
        self.experiments: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self._run_states: list[str] = []
        self._run_error: str | None = None
        self._reads: dict[str, int] = {}  # run id -> how often it was read
        self._failures: dict[tuple[str, str], tuple[int, str, int]] = {}
        self._lock = threading.Lock()
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.api = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> "KfpApiServer":
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="kfp-api", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # --- configuration -------------------------------------------------------

    def script_run_states(self, *states: str, error: str | None = None) -> None:
        """Successive GETs of any run return these states, then stay at the last.

        `error` is the run's error message once it reaches FAILED.
        """
        self._run_states = list(states)
        self._run_error = error

    def fail(self, method: str, path: str, status: int, message: str, code: int = INVALID_ARGUMENT) -> None:
        """`method path` (path without the query) answers `status` with this message."""
        self._failures[(method, path)] = (status, message, code)

    def add_run(self, display_name: str = "seeded run", state: str = "RUNNING", error: str | None = None) -> str:
        """A run that exists without having been submitted (for `status`); returns its id."""
        run_id = str(uuid.uuid4())
        with self._lock:
            self.runs[run_id] = self._new_run(run_id, {"display_name": display_name})
            self._set_state(self.runs[run_id], state, error)
        return run_id

    # --- what was seen -------------------------------------------------------

    def calls(self) -> list[tuple[str, str]]:
        """(method, path) of every request, in order."""
        return [(request.method, request.path) for request in self.requests]

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        return [request for request in self.requests if (request.method, request.path) == (method, path)]

    # --- the API -------------------------------------------------------------

    def handle(self, handler: "_Handler") -> tuple[int, str, bytes]:
        """(status, content type, body) for one request; records it first."""
        split = urllib.parse.urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        content_type = handler.headers.get("Content-Type", "")
        request = RecordedRequest(
            method=handler.command,
            path=split.path,
            query=dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True)),
            headers={name.lower(): value for name, value in handler.headers.items()},
            body=body,
            files=_parse_multipart(content_type, body),
        )
        with self._lock:
            self.requests.append(request)
            try:
                return self._respond(request)
            except ApiError as error:
                payload = {"error": error.message, "code": error.code, "message": error.message, "details": []}
                return error.status, "application/json", json.dumps(payload).encode()

    def _respond(self, request: RecordedRequest) -> tuple[int, str, bytes]:
        if self.required_token and request.headers.get("authorization") != f"Bearer {self.required_token}":
            raise ApiError(401, UNAUTHENTICATED, "Unauthenticated: request has no valid bearer token")
        if (request.method, request.path) in self._failures:
            status, message, code = self._failures[(request.method, request.path)]
            raise ApiError(status, code, message)
        if request.method == "GET" and request.path == f"{API}/healthz" and self.healthz_html:
            return 200, "text/html; charset=utf-8", LOGIN_PAGE
        for method, pattern, route in self._routes():
            match = re.fullmatch(pattern, request.path)
            if match and method == request.method:
                return 200, "application/json", json.dumps(route(request, *match.groups())).encode()
        raise ApiError(404, NOT_FOUND, f"Not Found: {request.method} {request.path}")

    def _routes(self) -> list[tuple[str, str, Any]]:
        return [
            ("GET", f"{API}/healthz", self._healthz),
            ("GET", f"{API}/experiments", self._list_experiments),
            ("POST", f"{API}/experiments", self._create_experiment),
            ("GET", f"{API}/experiments/([^/]+)", self._get_experiment),
            ("GET", f"{API}/pipelines", self._list_pipelines),
            ("POST", f"{API}/pipelines/upload", self._upload_pipeline),
            ("POST", f"{API}/pipelines/upload_version", self._upload_version),
            ("GET", f"{API}/pipelines/([^/]+)/versions", self._list_versions),
            ("POST", f"{API}/runs", self._create_run),
            ("GET", f"{API}/runs/([^/]+)", self._get_run),
        ]

    def _healthz(self, request: RecordedRequest) -> dict[str, Any]:
        return {"commit_sha": "loopback", "tag_name": "2.4.0", "multi_user": self.multi_user, "pipeline_store": "database"}

    def _list_experiments(self, request: RecordedRequest) -> dict[str, Any]:
        namespace = request.query.get("namespace", "")
        found = [
            experiment
            for experiment in self.experiments.values()
            if experiment["namespace"] == namespace and _filter_matches(experiment, request.query.get("filter"))
        ]
        return {"experiments": found, "total_size": len(found)} if found else {}  # the API omits empty lists

    def _create_experiment(self, request: RecordedRequest) -> dict[str, Any]:
        body = request.json()
        name, namespace = body.get("display_name") or "", body.get("namespace") or ""
        if not name:
            raise ApiError(400, INVALID_ARGUMENT, "Invalid input error: experiment display_name is empty")
        if any(e["display_name"] == name and e["namespace"] == namespace for e in self.experiments.values()):
            raise ApiError(409, ALREADY_EXISTS, f"Already exist error: experiment {name!r}")
        experiment_id = str(uuid.uuid4())
        self.experiments[experiment_id] = {
            "experiment_id": experiment_id,
            "display_name": name,
            "description": body.get("description") or "",
            "namespace": namespace,
            "created_at": _now(),
            "storage_state": "AVAILABLE",
        }
        return self.experiments[experiment_id]

    def _get_experiment(self, request: RecordedRequest, experiment_id: str) -> dict[str, Any]:
        if experiment_id not in self.experiments:
            raise ApiError(404, NOT_FOUND, f"Experiment {experiment_id} not found")
        return self.experiments[experiment_id]

    def _list_pipelines(self, request: RecordedRequest) -> dict[str, Any]:
        namespace = request.query.get("namespace", "")
        found = [
            pipeline
            for pipeline in self.pipelines.values()
            if pipeline["namespace"] == namespace and _filter_matches(pipeline, request.query.get("filter"))
        ]
        return {"pipelines": found, "total_size": len(found)} if found else {}

    def _package(self, request: RecordedRequest) -> UploadedFile:
        uploads = [file for file in request.files if file.field == "uploadfile"]
        if len(uploads) != 1 or not uploads[0].content:
            raise ApiError(400, INVALID_ARGUMENT, "Invalid input error: expected one file in field uploadfile")
        return uploads[0]

    def _add_version(self, pipeline_id: str, name: str, upload: UploadedFile) -> dict[str, Any]:
        version_id = str(uuid.uuid4())
        version = {
            "pipeline_id": pipeline_id,
            "pipeline_version_id": version_id,
            "display_name": name,
            "name": name,
            "created_at": _now(),
        }
        self.versions.setdefault(pipeline_id, []).append(version)
        self.packages[version_id] = upload.content
        return version

    def _upload_pipeline(self, request: RecordedRequest) -> dict[str, Any]:
        upload = self._package(request)
        name = request.query.get("display_name") or request.query.get("name") or upload.filename
        namespace = request.query.get("namespace", "")
        if any(p["display_name"] == name and p["namespace"] == namespace for p in self.pipelines.values()):
            raise ApiError(409, ALREADY_EXISTS, f"Already exist error: a pipeline named {name!r} already exists")
        pipeline_id = str(uuid.uuid4())
        self.pipelines[pipeline_id] = {
            "pipeline_id": pipeline_id,
            "display_name": name,
            "name": name,
            "description": request.query.get("description", ""),
            "namespace": namespace,
            "created_at": _now(),
        }
        self._add_version(pipeline_id, name, upload)  # the API creates the default version
        return self.pipelines[pipeline_id]

    def _upload_version(self, request: RecordedRequest) -> dict[str, Any]:
        upload = self._package(request)
        pipeline_id = request.query.get("pipelineid", "")
        name = request.query.get("display_name") or request.query.get("name") or ""
        if pipeline_id not in self.pipelines:
            raise ApiError(404, NOT_FOUND, f"Pipeline {pipeline_id!r} not found")
        if any(version["display_name"] == name for version in self.versions[pipeline_id]):
            raise ApiError(
                409, ALREADY_EXISTS, f"Already exist error: pipeline version {name!r} exists in {pipeline_id}"
            )
        return self._add_version(pipeline_id, name, upload)

    def _list_versions(self, request: RecordedRequest, pipeline_id: str) -> dict[str, Any]:
        if pipeline_id not in self.pipelines:
            raise ApiError(404, NOT_FOUND, f"Pipeline {pipeline_id!r} not found")
        found = self.versions[pipeline_id]
        return {"pipeline_versions": found, "total_size": len(found)}

    def _new_run(self, run_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "run_id": run_id,
            "experiment_id": body.get("experiment_id") or "",
            "display_name": body.get("display_name") or "",
            "pipeline_version_reference": body.get("pipeline_version_reference"),
            "runtime_config": body.get("runtime_config") or {},
            "storage_state": "AVAILABLE",
            "created_at": _now(),
            "scheduled_at": _now(),
            "finished_at": ZERO_TIME,
            "state": "PENDING",
            "state_history": [],
        }

    def _set_state(self, run: dict[str, Any], state: str, error: str | None) -> None:
        if run["state"] != state or not run["state_history"]:
            run["state_history"].append({"update_time": _now(), "state": state})
        run["state"] = state
        if state in TERMINAL_STATES and run["finished_at"] == ZERO_TIME:
            run["finished_at"] = _now()
        if state == "FAILED" and error:
            run["error"] = {"code": 2, "message": error, "details": []}

    def _create_run(self, request: RecordedRequest) -> dict[str, Any]:
        body = request.json()
        if not body.get("display_name"):
            raise ApiError(400, INVALID_ARGUMENT, "Invalid input error: run display_name is empty")
        if body.get("experiment_id") and body["experiment_id"] not in self.experiments:
            raise ApiError(404, NOT_FOUND, f"Experiment {body['experiment_id']} not found")
        reference = body.get("pipeline_version_reference")
        if reference:
            versions = self.versions.get(reference.get("pipeline_id", ""), [])
            if reference.get("pipeline_version_id") not in {v["pipeline_version_id"] for v in versions}:
                raise ApiError(404, NOT_FOUND, f"Pipeline version {reference} not found")
        elif not body.get("pipeline_spec"):
            raise ApiError(400, INVALID_ARGUMENT, "Invalid input error: a run needs a pipeline spec or version")
        run_id = str(uuid.uuid4())
        self.runs[run_id] = self._new_run(run_id, body)
        self._set_state(self.runs[run_id], "PENDING", None)
        return self.runs[run_id]

    def _get_run(self, request: RecordedRequest, run_id: str) -> dict[str, Any]:
        if run_id not in self.runs:
            raise ApiError(404, NOT_FOUND, f"Run {run_id} not found")
        run = self.runs[run_id]
        reads = self._reads.get(run_id, 0)
        self._reads[run_id] = reads + 1
        if self._run_states:
            self._set_state(run, self._run_states[min(reads, len(self._run_states) - 1)], self._run_error)
        return run


class _Handler(http.server.BaseHTTPRequestHandler):
    """Hands every request to the server's KfpApiServer."""

    server: http.server.ThreadingHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # the tests read KfpApiServer.requests instead

    def _dispatch(self) -> None:
        status, content_type, body = self.server.api.handle(self)  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _dispatch
