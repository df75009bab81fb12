"""A FAKE Kubeflow Pipelines API server for tests: NOT KFP, only the endpoints ``pipelines.kfp_client`` calls.

It is a ``http.server`` on 127.0.0.1 speaking just enough of the v2beta1 REST API (JSON field names
as the real server's, filters as filter.proto JSON with EQUALS on ``display_name``) for kfp's own
``kfp.Client`` to work against it, with tiny in-memory state, and it records every request so
tests can assert what the SDK sent. Implemented:

- ``GET  /apis/v2beta1/healthz``
- ``GET  /apis/v2beta1/pipelines`` (filter)
- ``POST /apis/v2beta1/pipelines/upload`` (multipart ``uploadfile``; also creates the first
  version, named after the pipeline, as KFP does)
- ``POST /apis/v2beta1/pipelines/upload_version`` (multipart; 409 for a duplicate version name)
- ``GET  /apis/v2beta1/pipelines/{id}/versions`` (filter)
- ``GET  /apis/v2beta1/experiments`` (filter, namespace) and ``POST /apis/v2beta1/experiments``
- ``GET  /apis/v2beta1/runs`` (experiment_id, filter) and ``POST /apis/v2beta1/runs``

Everything else answers 404. With ``token`` set, a request without ``Authorization: Bearer
<token>`` answers 401, as an authenticating proxy in front of KFP would.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.pipelines.loopback import LoopbackServer

API = "/apis/v2beta1"
CREATED_AT = "2025-01-01T00:00:00Z"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class State:
    token: str | None = None
    multi_user: bool = False
    version: str = "2.5.0"  # the release /apis/v1beta1/healthz reports (tag_name)
    requests: list[Request] = field(default_factory=list)
    pipelines: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)
    experiments: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    uploads: list[bytes] = field(default_factory=list)  # package bytes, in upload order
    ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    lock: threading.Lock = field(default_factory=threading.Lock)
    list_runs_delay_s: float = 0.0  # a slow run lookup: concurrent submits all see "no run yet"

    def new_id(self, kind: str) -> str:
        return f"{kind}-{next(self.ids):04d}"

    def calls(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path == path]


def _matches(item: dict[str, Any], raw_filter: str | None) -> bool:
    if not raw_filter:
        return True
    for predicate in json.loads(raw_filter).get("predicates", []):
        if predicate.get("operation") not in (1, "EQUALS"):
            raise ValueError(f"fake KFP: unsupported filter operation {predicate.get('operation')!r}")
        value = predicate.get("stringValue", predicate.get("string_value"))
        if item.get(predicate["key"]) != value:
            return False
    return True


def _multipart(content_type: str, body: bytes) -> tuple[str, bytes]:
    """(filename, bytes) of the ``uploadfile`` part."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "uploadfile":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return str(part.get_filename()), payload
    raise ValueError("fake KFP: no uploadfile part")


class _Handler(BaseHTTPRequestHandler):
    state: State  # set on the subclass made per server

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": message, "message": message, "code": status})

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        state = self.state
        with state.lock:
            # Header names are case-insensitive (kfp sends `authorization`): keep one spelling.
            headers = {key.title(): value for key, value in self.headers.items()}
            state.requests.append(Request(method, url.path, query, headers, body))
            if state.token is not None and self.headers.get("Authorization") != f"Bearer {state.token}":
                self._error(401, "Unauthorized")
                return
            try:
                status, payload = self._route(method, url.path, query, body)
            except ValueError as err:
                status, payload = 400, {"error": str(err), "message": str(err), "code": 3}
        if (method, url.path) == ("GET", f"{API}/runs"):
            time.sleep(state.list_runs_delay_s)  # the answer is as of the lookup, sent later
        self._send(status, payload)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _route(
        self, method: str, path: str, query: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        state = self.state
        filt = query.get("filter")
        if (method, path) == ("GET", "/apis/v1beta1/healthz"):
            return 200, {"commit_sha": "0" * 40, "tag_name": state.version, "multi_user": state.multi_user}
        if (method, path) == ("GET", f"{API}/healthz"):
            return 200, {"multi_user": state.multi_user, "pipeline_store": "database"}
        if (method, path) == ("GET", f"{API}/pipelines"):
            found = [p for p in state.pipelines.values() if _matches(p, filt)]
            return 200, ({"pipelines": found, "total_size": len(found)} if found else {})
        if (method, path) == ("POST", f"{API}/pipelines/upload"):
            _, package = _multipart(self.headers["Content-Type"], body)
            name = query["name"]
            if any(p["display_name"] == name for p in state.pipelines.values()):
                return 409, {
                    "error": f"pipeline {name} exists",
                    "message": f"pipeline {name} exists",
                    "code": 6,
                }
            pipeline_id = state.new_id("pipeline")
            pipeline = {
                "pipeline_id": pipeline_id,
                "display_name": name,
                "name": name,
                "description": query.get("description", ""),
                "created_at": CREATED_AT,
            }
            state.pipelines[pipeline_id] = pipeline
            self._add_version(pipeline_id, name, query.get("description", ""), package)
            return 200, pipeline
        if (method, path) == ("POST", f"{API}/pipelines/upload_version"):
            _, package = _multipart(self.headers["Content-Type"], body)
            pipeline_id, name = query["pipelineid"], query["name"]
            if pipeline_id not in state.pipelines:
                return 404, {"error": "no such pipeline", "message": "no such pipeline", "code": 5}
            if any(
                v["pipeline_id"] == pipeline_id and v["display_name"] == name for v in state.versions.values()
            ):
                message = f"version {name} exists"
                return 409, {"error": message, "message": message, "code": 6}
            return 200, self._add_version(pipeline_id, name, query.get("description", ""), package)
        parts = path.split("/")
        if method == "GET" and path.startswith(f"{API}/pipelines/") and parts[-1] == "versions":
            pipeline_id = parts[-2]
            found = [
                v for v in state.versions.values() if v["pipeline_id"] == pipeline_id and _matches(v, filt)
            ]
            return 200, ({"pipeline_versions": found, "total_size": len(found)} if found else {})
        if (method, path) == ("GET", f"{API}/experiments"):
            namespace = query.get("namespace") or ""
            found = [
                e
                for e in state.experiments.values()
                if e.get("namespace", "") == namespace and _matches(e, filt)
            ]
            return 200, ({"experiments": found, "total_size": len(found)} if found else {})
        if (method, path) == ("POST", f"{API}/experiments"):
            experiment = json.loads(body)
            experiment.update(
                experiment_id=state.new_id("experiment"), created_at=CREATED_AT, storage_state="AVAILABLE"
            )
            state.experiments[experiment["experiment_id"]] = experiment
            return 200, experiment
        if (method, path) == ("GET", f"{API}/runs"):
            found = [
                r
                for r in state.runs.values()
                if r["experiment_id"] == query.get("experiment_id", r["experiment_id"]) and _matches(r, filt)
            ]
            return 200, ({"runs": found, "total_size": len(found)} if found else {})
        if (method, path) == ("POST", f"{API}/runs"):
            run = json.loads(body)
            if run.get("experiment_id") not in state.experiments:
                return 404, {"error": "no such experiment", "message": "no such experiment", "code": 5}
            run.update(
                run_id=state.new_id("run"), created_at=CREATED_AT, state="PENDING", storage_state="AVAILABLE"
            )
            state.runs[run["run_id"]] = run
            return 200, run
        return 404, {"error": f"fake KFP does not implement {method} {path}", "code": 5}

    def _add_version(self, pipeline_id: str, name: str, description: str, package: bytes) -> dict[str, Any]:
        state = self.state
        version_id = state.new_id("version")
        version = {
            "pipeline_id": pipeline_id,
            "pipeline_version_id": version_id,
            "display_name": name,
            "name": name,
            "description": description,
            "created_at": CREATED_AT,
        }
        state.versions[version_id] = version
        state.uploads.append(package)
        return version


class FakeKfpServer(LoopbackServer):
    """``with FakeKfpServer(token=...) as server:`` serves on ``server.url`` in a thread."""

    state: State

    def __init__(self, token: str | None = None, multi_user: bool = False, version: str = "2.5.0") -> None:
        super().__init__(_Handler, State(token=token, multi_user=multi_user, version=version))
