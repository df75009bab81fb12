"""``pipelines.kfp_client`` through kfp's real ``kfp.Client`` against a FAKE KFP API server.

The server (``tests/pipelines/fake_kfp.py``) is not Kubeflow Pipelines: it is a small
``http.server`` on 127.0.0.1 that answers only the v2beta1 endpoints these calls hit (healthz,
pipelines list/upload/upload_version/versions, experiments list/create, runs list/create) with tiny
in-memory state, and records every request. What it proves is what the SDK sends (paths, params,
display names, the Authorization header) and the idempotence logic on our side, not how a real
KFP backend behaves.

No ``from __future__ import annotations`` here: kfp reads component annotations as objects.
"""

import json
import logging
import os
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from kfp import Client

from pipelines import kfp_client
from pipelines.lease import LockTimeout, RevisionLease, lease_lock
from ragtune.core.errors import ConfigError, RagtuneError
from tests.pipelines.fake_kfp import API, FakeKfpServer
from tests.pipelines.fake_kube import FakeKubeServer

TOKEN = "s3cr3t-kfp-token-4f9a2c"
REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trivial compiled pipeline with the parameters ragtune's graph has (config_json, git_revision)."""
    from kfp import compiler, dsl

    @dsl.component(base_image="python:3.11-slim")
    def echo(text: str) -> str:
        return text

    @dsl.pipeline(name="ragtune-test")
    def tiny(config_json: str = "{}", corpus_uri: str = "", git_revision: str = "") -> None:
        echo(text=config_json)

    path = tmp_path_factory.mktemp("compiled") / "tiny.yaml"
    compiler.Compiler().compile(pipeline_func=tiny, package_path=str(path))
    return path


@pytest.fixture(autouse=True)
def _isolated_sdk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ~/.config/kfp/context.json, no KFP env from the machine running the tests."""
    from kfp.client.client import Client

    monkeypatch.setattr(Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    for name in ("KF_PIPELINES_ENDPOINT", "KF_PIPELINES_UI_ENDPOINT", "KFP_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "no-such-token"))


@pytest.fixture
def server() -> Iterator[FakeKfpServer]:
    with FakeKfpServer(token=TOKEN) as fake:
        yield fake


@pytest.fixture
def client(server: FakeKfpServer, monkeypatch: pytest.MonkeyPatch) -> Client:
    monkeypatch.setenv("KFP_TOKEN", TOKEN)
    return kfp_client.connect(server.url, None)


def test_upload_creates_the_pipeline_then_adds_versions(
    client: Client, server: FakeKfpServer, package: Path
) -> None:
    first = kfp_client.upload(client, package, "ragtune", "rev-a", "ragtune graph")

    assert first.created_pipeline and first.created_version
    assert len(server.state.calls("POST", f"{API}/pipelines/upload")) == 1
    (pipeline,) = server.state.pipelines.values()
    assert (first.pipeline_id, pipeline["display_name"], pipeline["description"]) == (
        pipeline["pipeline_id"],
        "ragtune",
        "ragtune graph",
    )
    # KFP names a new pipeline's first version after the pipeline; ours is added as a named version.
    names = {v["pipeline_version_id"]: v["display_name"] for v in server.state.versions.values()}
    assert sorted(names.values()) == ["ragtune", "rev-a"]
    assert names[first.version_id] == "rev-a"
    assert server.state.uploads[-1] == package.read_bytes()

    second = kfp_client.upload(client, package, "ragtune", "rev-b", "ragtune graph")

    assert (second.pipeline_id, second.created_pipeline, second.created_version) == (
        first.pipeline_id,
        False,
        True,
    )
    assert len(server.state.calls("POST", f"{API}/pipelines/upload")) == 1
    upload_versions = server.state.calls("POST", f"{API}/pipelines/upload_version")
    assert [r.query["name"] for r in upload_versions] == ["rev-a", "rev-b"]
    assert {r.query["pipelineid"] for r in upload_versions} == {first.pipeline_id}
    assert all(r.headers["Content-Type"].startswith("multipart/form-data") for r in upload_versions)
    assert (
        names.get(second.version_id) is None
        and server.state.versions[second.version_id]["display_name"] == "rev-b"
    )

    again = kfp_client.upload(client, package, "ragtune", "rev-b", "ragtune graph")

    assert (again.version_id, again.created_version) == (second.version_id, False)
    assert len(server.state.calls("POST", f"{API}/pipelines/upload_version")) == 2  # nothing uploaded


def test_submit_creates_one_run_with_the_config_and_revision(
    client: Client, server: FakeKfpServer, package: Path
) -> None:
    config_json = json.dumps({"run": {"name": "psychiatry"}})

    result = kfp_client.submit(
        client,
        package,
        {"config_json": config_json},
        "ragtune",
        git_revision=REVISION,
        service_account="ragtune-pipeline",
    )

    assert not result.skipped
    assert result.display_name == f"ragtune-{REVISION}"
    assert result.run_url == f"{server.url}/#/runs/details/{result.run_id}"
    (create,) = server.state.calls("POST", f"{API}/runs")
    body = json.loads(create.body)
    assert body["display_name"] == f"ragtune-{REVISION}"
    assert body["runtime_config"]["parameters"] == {"config_json": config_json, "git_revision": REVISION}
    assert body["pipeline_spec"]["pipelineInfo"]["name"] == "ragtune-test"
    assert body["service_account"] == "ragtune-pipeline"
    (experiment,) = server.state.experiments.values()
    assert experiment["display_name"] == "ragtune"
    assert body["experiment_id"] == experiment["experiment_id"] == result.experiment_id


def test_a_second_submit_of_the_same_revision_submits_nothing(
    client: Client, server: FakeKfpServer, package: Path
) -> None:
    first = kfp_client.submit(client, package, {"config_json": "{}"}, "ragtune", git_revision=REVISION)
    second = kfp_client.submit(client, package, {"config_json": "{}"}, "ragtune", git_revision=REVISION)

    assert second.skipped and not first.skipped
    assert (second.run_id, second.run_url) == (first.run_id, first.run_url)
    assert "one run per git revision" in second.reason
    assert len(server.state.calls("POST", f"{API}/runs")) == 1
    assert len(server.state.calls("POST", f"{API}/experiments")) == 1  # the experiment is reused
    lookup = server.state.calls("GET", f"{API}/runs")[-1]
    assert lookup.query["experiment_id"] == first.experiment_id
    assert json.loads(lookup.query["filter"])["predicates"][0]["stringValue"] == f"ragtune-{REVISION}"

    # the key is the whole hash: a commit sharing the first 12 characters is another revision
    same_prefix = REVISION[:12] + "f" * 28
    other = kfp_client.submit(client, package, {"config_json": "{}"}, "ragtune", git_revision=same_prefix)
    assert not other.skipped and other.display_name == f"ragtune-{same_prefix}"

    server.state.runs[first.run_id]["storage_state"] = "ARCHIVED"  # archiving a run allows a resubmit
    again = kfp_client.submit(client, package, {"config_json": "{}"}, "ragtune", git_revision=REVISION)
    assert not again.skipped and again.run_id != first.run_id
    assert len(server.state.calls("POST", f"{API}/runs")) == 3


def test_submit_without_revision_uses_the_run_name(
    client: Client, server: FakeKfpServer, package: Path
) -> None:
    result = kfp_client.submit(client, package, {"config_json": "{}"}, "adhoc", run_name="manual-1")

    assert (result.display_name, result.skipped) == ("manual-1", False)
    body = json.loads(server.state.calls("POST", f"{API}/runs")[0].body)
    assert body["runtime_config"]["parameters"] == {"config_json": "{}"}
    assert not server.state.calls("GET", f"{API}/runs")  # no idempotence lookup without a revision


def test_submit_rejects_parameters_the_pipeline_does_not_have(
    client: Client, server: FakeKfpServer, package: Path
) -> None:
    with pytest.raises(ConfigError, match="no parameter temperature"):
        kfp_client.submit(client, package, {"config_json": "{}", "temperature": 1}, "ragtune")
    assert not server.state.calls("POST", f"{API}/runs")


def test_the_bearer_token_is_sent_and_never_printed(
    server: FakeKfpServer,
    package: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("RAGTUNE_TEST_KFP_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)

    client = kfp_client.connect(server.url, None, token_env="RAGTUNE_TEST_KFP_TOKEN")
    kfp_client.upload(client, package, "ragtune", "rev-a", "d")
    kfp_client.submit(client, package, {"config_json": "{}"}, "ragtune", git_revision=REVISION)

    assert server.state.requests
    assert {r.headers.get("Authorization") for r in server.state.requests} == {f"Bearer {TOKEN}"}
    assert server.state.calls("GET", f"{API}/healthz")  # single-user: the SDK checks the server once
    captured = capsys.readouterr()
    assert TOKEN not in captured.out + captured.err
    assert TOKEN not in caplog.text
    assert "bearer token from $RAGTUNE_TEST_KFP_TOKEN" in caplog.text


def test_a_wrong_token_is_a_one_line_error(
    server: FakeKfpServer, package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KFP_TOKEN", "wrong-token")
    client = kfp_client.connect(server.url, "ragtune")  # a namespace: the SDK skips its healthz retries

    with pytest.raises(RagtuneError, match="HTTP 401") as raised:
        kfp_client.upload(client, package, "ragtune", "rev-a", "d")
    assert "wrong-token" not in str(raised.value) and "\n" not in str(raised.value)


def test_the_projected_service_account_token_is_used_when_no_token_env(
    server: FakeKfpServer, package: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token_file))

    client = kfp_client.connect(server.url, "ragtune")
    kfp_client.submit(
        client, package, {"config_json": "{}"}, "ragtune", namespace="ragtune", git_revision=REVISION
    )

    assert {r.headers.get("Authorization") for r in server.state.requests} == {f"Bearer {TOKEN}"}
    (experiment,) = server.state.experiments.values()
    assert experiment["namespace"] == "ragtune"
    assert server.state.calls("GET", f"{API}/experiments")[0].query["namespace"] == "ragtune"


def test_token_env_must_name_a_variable_and_is_never_echoed() -> None:
    pasted = "eyJhbGciOiJSUzI1NiJ9.payload.signature"
    with pytest.raises(ConfigError) as raised:
        kfp_client.connect("http://127.0.0.1:1", None, token_env=pasted)
    assert pasted not in str(raised.value)


def test_connect_needs_a_host_or_kubeconfig() -> None:
    with pytest.raises(ConfigError, match="no KFP host"):
        kfp_client.connect(None, None)
    with pytest.raises(ConfigError, match="not both"):
        kfp_client.connect("http://127.0.0.1:1", None, kubeconfig=True)


def test_a_missing_package_says_to_compile(tmp_path: Path) -> None:
    with pytest.raises(RagtuneError, match="ragtune compile"):
        kfp_client.pipeline_parameters(tmp_path / "missing.yaml")


def test_param_flags_keep_ui_strings_and_type_the_rest(tmp_path: Path) -> None:
    from pipelines.compiler import COMPILED_PATH
    from pipelines.kfp_client import parameters_from_flags
    from ragtune.core.errors import InputError

    flags = [
        "lora_r=16",
        "synth_shards=4",
        "gpu_node_selector={pool: gpu}",
        "judge_base_url=http://j:8000/v1",
    ]
    assert parameters_from_flags(COMPILED_PATH, flags) == {
        "lora_r": "16",
        "synth_shards": 4,
        "gpu_node_selector": {"pool": "gpu"},
        "judge_base_url": "http://j:8000/v1",
    }
    with pytest.raises(InputError, match="NAME one of"):
        parameters_from_flags(COMPILED_PATH, ["no_such_param=1"])


# -- concurrency: one run per revision, held by a Kubernetes Lease --------------------------------


def _concurrent_submits(
    server: FakeKfpServer, package: Path, lock: Any, count: int = 2
) -> list[kfp_client.SubmitResult]:
    """``count`` submits of one revision started together, each with its own client (own process in life)."""
    clients = [kfp_client.connect(server.url, None) for _ in range(count)]
    kfp_client.submit(clients[0], package, {"config_json": "{}"}, "ragtune")  # the experiment exists
    server.state.list_runs_delay_s = 0.3  # every submit is inside its lookup at the same time
    start = threading.Barrier(count)

    def one(client: Client) -> kfp_client.SubmitResult:
        start.wait()
        return kfp_client.submit(
            client, package, {"config_json": "{}"}, "ragtune", git_revision=REVISION, lock=lock
        )

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, clients))


def _revision_runs(server: FakeKfpServer) -> list[dict[str, Any]]:
    return [r for r in server.state.runs.values() if r["display_name"] == f"ragtune-{REVISION}"]


def test_concurrent_submits_of_one_revision_create_exactly_one_run(
    server: FakeKfpServer, package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KFP_TOKEN", TOKEN)
    with FakeKubeServer() as kube:
        lock = lease_lock("ragtune", kube.api(), poll_s=0.05, wait_s=30)
        results = _concurrent_submits(server, package, lock, count=3)

        assert len(_revision_runs(server)) == 1
        assert sorted(r.skipped for r in results) == [False, True, True]
        assert len({r.run_id for r in results}) == 1
        assert kube.state.leases == {}  # released
        creates = [c for c in kube.state.calls if c[0] == "POST"]
        assert any(status == 409 for _, _, status in creates)  # they really contended
        assert all(
            f"ragtune-submit-{REVISION}" in path for _, path, _ in kube.state.calls if "/leases/" in path
        )


def test_without_the_lock_concurrent_submits_race(
    server: FakeKfpServer, package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fake reproduces the race the lock prevents (so the test above can fail)."""
    monkeypatch.setenv("KFP_TOKEN", TOKEN)
    _concurrent_submits(server, package, lock=None)
    assert len(_revision_runs(server)) == 2


def test_an_expired_lease_is_taken_over_and_a_live_one_waited_for() -> None:
    from datetime import UTC, datetime, timedelta

    with FakeKubeServer() as kube:
        api = kube.api()
        dead = RevisionLease(api, "ragtune", "ragtune-submit-x", duration_s=60, holder="crashed")
        dead.acquire()  # never released: its process died
        t0 = datetime.now(UTC)
        waiting = RevisionLease(api, "ragtune", "ragtune-submit-x", wait_s=0.2, poll_s=0.05, clock=lambda: t0)
        with pytest.raises(LockTimeout, match="still held"):
            waiting.acquire()
        later = RevisionLease(
            api, "ragtune", "ragtune-submit-x", holder="me", clock=lambda: t0 + timedelta(seconds=61)
        )
        with later:
            (lease,) = kube.state.leases.values()
            assert lease["spec"]["holderIdentity"] == "me"
        assert kube.state.leases == {}
        dead.release()  # the old holder's late release cannot delete someone else's lease


def test_short_revisions_and_branches_are_resolved_to_the_full_hash(tmp_path: Path) -> None:
    import subprocess

    def git(*args: str) -> str:
        env = {
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t",
        }
        return subprocess.run(
            ["git", *args],
            cwd=tmp_path,
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, **env},
        ).stdout.strip()

    git("init", "-q", "-b", "main")
    git("commit", "-q", "--allow-empty", "-m", "one")
    full = git("rev-parse", "HEAD")
    assert kfp_client.resolve_revision(full[:7], tmp_path) == full
    assert kfp_client.resolve_revision("main", tmp_path) == full
    assert kfp_client.resolve_revision(full.upper()) == full  # a full hash needs no git
    with pytest.raises(ConfigError, match="cannot resolve"):
        kfp_client.resolve_revision("no-such-branch", tmp_path)
    with pytest.raises(ConfigError, match="invalid git revision"):
        kfp_client.resolve_revision("--upload-pack=evil", tmp_path)


@pytest.mark.parametrize("version", ["2.4.1", "1.8.5", "dev"])
def test_upload_and_submit_refuse_a_backend_older_than_the_floor(
    client: Client, server: FakeKfpServer, package: Path, version: str
) -> None:
    """The compiled YAML needs parameterised node selectors and tolerations (KFP 2.5): checked first."""
    server.state.version = version
    floor = ".".join(map(str, kfp_client.MIN_KFP_BACKEND))
    for attempt in (
        lambda: kfp_client.upload(client, package, "ragtune", "rev-a", "ragtune graph"),
        lambda: kfp_client.submit(client, package, {}, "exp"),
    ):
        with pytest.raises(ConfigError, match=rf"{re.escape(version)}.*needs KFP {floor} or newer") as err:
            attempt()
        assert "\n" not in str(err.value)
    assert not server.state.calls("POST", f"{API}/pipelines/upload")
    assert not server.state.runs
    assert all(
        r.headers.get("Authorization") == f"Bearer {TOKEN}"
        for r in server.state.calls("GET", "/apis/v1beta1/healthz")
    )


def test_a_backend_at_or_above_the_floor_is_accepted(client: Client, server: FakeKfpServer) -> None:
    for version in ("2.5.0", "v2.14.3", "2.15.0-rc.1"):
        server.state.version = version
        assert kfp_client.require_backend(client) == version
