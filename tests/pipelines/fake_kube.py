"""A FAKE Kubernetes API server for tests: NOT Kubernetes, only ``coordination.k8s.io/v1`` Leases.

Enough for the real ``kubernetes`` client's ``CoordinationV1Api`` (create, read, replace, delete
of namespaced Leases) with the API server's concurrency rules, which are what the submit lock
relies on: create of an existing name answers 409; replace and delete carry a
``resourceVersion`` and answer 409 when it is not the current one. Serves on 127.0.0.1 only.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.pipelines.loopback import LoopbackServer

_LEASES = re.compile(r"^/apis/coordination\.k8s\.io/v1/namespaces/([^/]+)/leases(?:/([^/]+))?$")


@dataclass
class KubeState:
    leases: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    versions: itertools.count = field(default_factory=lambda: itertools.count(1))
    calls: list[tuple[str, str, int]] = field(default_factory=list)  # method, path, status
    lock: threading.Lock = field(default_factory=threading.Lock)


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }


class _Handler(BaseHTTPRequestHandler):
    state: KubeState

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        match = _LEASES.match(self.path.split("?")[0])
        with self.state.lock:
            code, payload = (
                (404, _status(404, "NotFound", self.path))
                if not match
                else self._route(method, *match.groups(), body)
            )
            self.state.calls.append((method, self.path, code))
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(
        self, method: str, namespace: str, name: str | None, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        leases = self.state.leases
        if method == "POST" and name is None:
            key = (namespace, body["metadata"]["name"])
            if key in leases:
                return 409, _status(409, "AlreadyExists", f'leases "{key[1]}" already exists')
            return 201, self._store(key, body)
        key = (namespace, name or "")
        current = leases.get(key)
        if current is None:
            return 404, _status(404, "NotFound", f'leases "{name}" not found')
        if method == "GET":
            return 200, current
        if method == "PUT":
            if body.get("metadata", {}).get("resourceVersion") != current["metadata"]["resourceVersion"]:
                return 409, _status(409, "Conflict", "the object has been modified")
            return 200, self._store(key, body)
        if method == "DELETE":
            wanted = (body.get("preconditions") or {}).get("resourceVersion")
            if wanted is not None and wanted != current["metadata"]["resourceVersion"]:
                return 409, _status(409, "Conflict", "precondition failed: resourceVersion")
            del leases[key]
            return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200}
        return 405, _status(405, "MethodNotAllowed", method)

    def _store(self, key: tuple[str, str], body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "apiVersion": "coordination.k8s.io/v1", "kind": "Lease"}
        body["metadata"] = {
            **body.get("metadata", {}),
            "namespace": key[0],
            "resourceVersion": str(next(self.state.versions)),
        }
        self.state.leases[key] = body
        return body

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")


class FakeKubeServer(LoopbackServer):
    """``with FakeKubeServer() as kube:`` serves on ``kube.url``; ``kube.api()`` is a CoordinationV1Api."""

    state: KubeState

    def __init__(self) -> None:
        super().__init__(_Handler, KubeState())

    def api(self) -> Any:
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.url
        return client.CoordinationV1Api(client.ApiClient(configuration))
