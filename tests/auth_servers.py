"""Real servers on 127.0.0.1 that check credentials: moto S3 with IAM auth, MLflow with basic auth.

A task that opens S3 or MLflow without the credentials its pod would get fails against these
(``AccessDenied`` / 401), which a server without auth would never show. Both run as separate
processes (moto reads ``INITIAL_NO_AUTH_ACTION_COUNT`` once, at import). A server that does not
start fails the test under ``CI=true`` and skips it elsewhere (:func:`unavailable`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import free_port, unavailable

START_TIMEOUT_S = 120.0
#: moto answers this many requests without auth: the IAM user, its policy and its key.
FREE_ACTIONS = 3


@dataclass(frozen=True)
class AuthS3:
    url: str
    access_key: str
    secret_key: str

    @property
    def endpoint(self) -> str:
        return self.url.removeprefix("http://")

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def make_bucket(self, name: str) -> None:
        from minio import Minio

        client = Minio(self.endpoint, access_key=self.access_key, secret_key=self.secret_key, secure=False)
        client.make_bucket(name)


@dataclass(frozen=True)
class AuthMlflow:
    url: str
    username: str
    password: str

    def env(self) -> dict[str, str]:
        return {"MLFLOW_TRACKING_USERNAME": self.username, "MLFLOW_TRACKING_PASSWORD": self.password}


def _wait_for(url: str, process: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except Exception:
            time.sleep(0.5)
    unavailable(f"{what} did not start (exit {process.poll()}): {log.read_text(errors='replace')[-1500:]}")


@contextmanager
def server_process(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``command`` running in ``log``'s folder, its output in ``log``; stopped when the block ends."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _iam_key(url: str) -> tuple[str, str]:
    """An IAM user allowed ``s3:*`` and its access key, created in the server's free requests."""
    import boto3

    iam: Any = boto3.client(
        "iam", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    iam.create_user(UserName="ragtune")
    iam.put_user_policy(
        UserName="ragtune",
        PolicyName="s3",
        PolicyDocument='{"Version": "2012-10-17", "Statement": '
        '[{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}',
    )
    key = iam.create_access_key(UserName="ragtune")["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


@contextmanager
def auth_s3(folder: Path) -> Iterator[AuthS3]:
    """moto's S3 server that refuses every request without the key it hands out."""
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(FREE_ACTIONS)}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        env.pop(name, None)
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with server_process(command, env, folder / "moto.log") as process:
        url = f"http://127.0.0.1:{port}"
        _wait_for(f"{url}/moto-api/", process, folder / "moto.log", "moto S3 server")
        access, secret = _iam_key(url)
        yield AuthS3(url=url, access_key=access, secret_key=secret)


@contextmanager
def auth_mlflow(folder: Path, s3: AuthS3, bucket: str = "mlflow") -> Iterator[AuthMlflow]:
    """``mlflow server --app-name basic-auth`` (sqlite, artifacts proxied to ``s3``)."""
    s3.make_bucket(bucket)
    port = free_port()
    password = "ragtune-admin-password"  # MLflow 3.17 refuses an admin password under 12 characters
    ini = folder / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{folder / 'auth.db'}\n"
        f"admin_username = admin\nadmin_password = {password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    env = {
        **os.environ,
        **s3.env(),
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "ragtune-test-session-key",
        "MLFLOW_S3_ENDPOINT_URL": s3.url,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    command = [
        *(sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth"),
        *("--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}"),
        *("--artifacts-destination", f"s3://{bucket}/artifacts"),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
    ]
    with server_process(command, env, folder / "mlflow.log") as process:
        url = f"http://127.0.0.1:{port}"
        _wait_for(f"{url}/health", process, folder / "mlflow.log", "mlflow server (basic auth)")
        yield AuthMlflow(url=url, username="admin", password=password)
