"""Credentials bound to declared endpoints: a secret never goes to a URL not declared for it.

The attack: one run parameter points ``llm.generator.base_url`` (or an embedder, Weaviate, S3,
MLflow URL) at an outside host while ``api_key_env`` names the S3 secret. Every client must refuse
before connecting; the fake servers below count what reached them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ragtune.core.config import SecurityConfig, build_config
from ragtune.core.endpoints import (
    ENDPOINTS_ENV,
    CredentialError,
    credential_for,
    declared_endpoints,
    export_grants,
    plain_http,
    storage_url,
    url_matches,
)
from ragtune.core.errors import ConfigError
from tests.conftest import S3Server
from tests.llm.fake_openai import FakeOpenAI, fake_openai

__all__ = ["fake_openai"]  # the fixture

SECRET = "s3-very-secret"


def grants(*entries: tuple[str, str, list[str]]) -> str:
    return json.dumps([{"name": n, "url": u, "secrets": s} for n, u, s in entries])


def env(**extra: str) -> dict[str, str]:
    return {
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "OPENAI_API_KEY": "sk-llm",
        ENDPOINTS_ENV: grants(
            ("minio", "http://minio:9000", ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]),
            ("vllm", "http://vllm:8000/v1", ["OPENAI_API_KEY"]),
        ),
        **extra,
    }


def test_a_declared_endpoint_gets_its_secret_and_nothing_else() -> None:
    assert credential_for("http://minio:9000", "AWS_SECRET_ACCESS_KEY", env()) == SECRET
    assert credential_for("http://VLLM:8000/v1/chat/completions", "OPENAI_API_KEY", env()) == "sk-llm"
    # the S3 secret is declared, but not for the LLM endpoint
    with pytest.raises(CredentialError, match=r"AWS_SECRET_ACCESS_KEY to http://vllm:8000/v1"):
        credential_for("http://vllm:8000/v1", "AWS_SECRET_ACCESS_KEY", env())


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/v1",  # another host
        "http://vllm:8001/v1",  # another port
        "https://vllm:8000/v1",  # another scheme
        "http://vllm:8000/v10",  # a path that only shares a prefix string
        "http://vllm:8000",  # above the declared path
        "http://vllm:8000@evil.example/v1",  # userinfo trick: the host is evil.example
        "http://vllm.evil.example:8000/v1",
    ],
)
def test_lookalike_urls_are_refused(url: str) -> None:
    with pytest.raises(CredentialError, match="OPENAI_API_KEY"):
        credential_for(url, "OPENAI_API_KEY", env())


def test_a_url_without_a_credential_is_always_allowed() -> None:
    assert credential_for("https://anywhere.example/v1", "UNSET_KEY", env()) is None
    assert credential_for("https://anywhere.example/v1", "OPENAI_API_KEY", {"OPENAI_API_KEY": ""}) is None


def test_nothing_declared_refuses_every_set_secret() -> None:
    with pytest.raises(CredentialError, match=r"declared: none"):
        credential_for("http://minio:9000", "AWS_SECRET_ACCESS_KEY", {"AWS_SECRET_ACCESS_KEY": SECRET})


def test_bad_declarations_are_config_errors_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match=ENDPOINTS_ENV):
        declared_endpoints({ENDPOINTS_ENV: "{not json"})
    with pytest.raises(ConfigError, match=r"RAGTUNE_ENDPOINTS.*0\.url"):
        declared_endpoints({ENDPOINTS_ENV: grants(("x", "ftp://minio", ["K"]))})
    with pytest.raises(ConfigError, match=r"security\.endpoints\.0\.url"):
        build_config({"security": {"endpoints": [{"name": "x", "url": "http://u:p@h", "secrets": []}]}})
    assert url_matches("http://minio:80", "http://minio/bucket")


def test_the_cli_exports_the_yaml_grants_unless_the_platform_set_them() -> None:
    security = SecurityConfig.model_validate(
        {"endpoints": [{"name": "minio", "url": "http://minio:9000", "secrets": ["AWS_SECRET_ACCESS_KEY"]}]}
    )
    environ: dict[str, str] = {"AWS_SECRET_ACCESS_KEY": SECRET}
    assert export_grants(security, environ) is True
    assert credential_for("http://minio:9000", "AWS_SECRET_ACCESS_KEY", environ) == SECRET

    cluster = {ENDPOINTS_ENV: "[]", "AWS_SECRET_ACCESS_KEY": SECRET}  # the ConfigMap grants nothing
    assert export_grants(security, cluster) is False
    with pytest.raises(CredentialError):
        credential_for("http://minio:9000", "AWS_SECRET_ACCESS_KEY", cluster)


def test_storage_url_reads_both_endpoint_forms() -> None:
    config = build_config({"storage": {"endpoint": "minio:9000", "secure": False}}).storage
    assert storage_url(config) == "http://minio:9000"
    assert storage_url(build_config({}).storage) == "https://s3.amazonaws.com"
    assert storage_url(build_config({"storage": {"endpoint": "https://m:1"}}).storage) == "https://m:1"


# -- every client refuses before connecting ---------------------------------------------------


def test_llm_chat_with_the_s3_secret_to_an_undeclared_host_sends_nothing(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ragtune.core.llm import ChatRequest, open_chat_model

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.delenv(ENDPOINTS_ENV, raising=False)
    endpoint = fake_openai.endpoint().model_copy(update={"api_key_env": "AWS_SECRET_ACCESS_KEY"})
    model = open_chat_model(endpoint)

    with pytest.raises(CredentialError, match="AWS_SECRET_ACCESS_KEY"):
        model.chat_many([ChatRequest(messages=[{"role": "user", "content": "hi"}])], desc="x")
    assert fake_openai.received == []

    # declared for that URL: the same call goes through with the key
    monkeypatch.setenv(ENDPOINTS_ENV, grants(("fake", str(endpoint.base_url), ["AWS_SECRET_ACCESS_KEY"])))
    model.chat_many([ChatRequest(messages=[{"role": "user", "content": "hi"}])], desc="x")
    assert len(fake_openai.received) == 1


def test_openai_embeddings_refuse_an_undeclared_host(monkeypatch: pytest.MonkeyPatch) -> None:
    from ragtune.core.embedding import OpenAIEmbedder

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.delenv(ENDPOINTS_ENV, raising=False)
    with pytest.raises(CredentialError, match=r"to http://127\.0\.0\.1:9/v1"):
        OpenAIEmbedder("m", "http://127.0.0.1:9/v1", "AWS_SECRET_ACCESS_KEY")
    with pytest.raises(CredentialError, match=r"api\.openai\.com"):  # unset base_url means OpenAI
        OpenAIEmbedder("m", None, "AWS_SECRET_ACCESS_KEY")


def test_weaviate_refuses_an_undeclared_host_before_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    import weaviate

    from ragtune.index.store import WeaviateStore

    calls: list[Any] = []
    monkeypatch.setattr(weaviate, "connect_to_custom", lambda **kw: calls.append(kw))
    monkeypatch.setenv("WEAVIATE_API_KEY", "wv-secret")
    monkeypatch.delenv(ENDPOINTS_ENV, raising=False)
    config = build_config({"index": {"store": {"weaviate_url": "http://evil.example:8080"}}}).index.store
    with pytest.raises(CredentialError, match="WEAVIATE_API_KEY"):
        WeaviateStore.connect(config, embedder="e", dim=4)
    assert calls == []


def test_s3_refuses_an_undeclared_endpoint_and_works_when_declared(
    s3_env: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ragtune.core.storage import open_storage

    config = build_config({"storage": {"endpoint": s3_env.endpoint, "secure": False}}).storage
    assert open_storage("s3://ragtune-cache/x", config) is not None  # s3_env declares moto
    monkeypatch.setenv(ENDPOINTS_ENV, grants(("other", "http://minio:9000", ["AWS_SECRET_ACCESS_KEY"])))
    with pytest.raises(CredentialError, match=rf"AWS_ACCESS_KEY_ID to {s3_env.url}"):
        open_storage("s3://ragtune-cache/x", config)


def test_mlflow_credentials_only_go_to_a_declared_tracking_server(monkeypatch: pytest.MonkeyPatch) -> None:
    from ragtune.registry.tracking import tracking_uri

    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw")
    monkeypatch.setenv(ENDPOINTS_ENV, grants(("mlflow", "http://mlflow:5000", ["MLFLOW_TRACKING_PASSWORD"])))
    good = build_config({"registry": {"tracking_uri": "http://mlflow:5000"}})
    assert tracking_uri(good) == "http://mlflow:5000"
    evil = build_config({"registry": {"tracking_uri": "https://evil.example"}})
    with pytest.raises(CredentialError, match="MLFLOW_TRACKING_PASSWORD"):
        tracking_uri(evil)


@pytest.mark.parametrize(
    ("url", "plain"),
    [
        ("http://vllm:8000/v1", True),
        ("HTTP://vllm:8000/v1", True),
        ("https://api.openai.com/v1", False),
        (None, False),  # the client's default: OpenAI, over TLS
        ("", False),
    ],
)
def test_plain_http_skips_certificates_only_without_tls(url: str | None, plain: bool) -> None:
    assert plain_http(url) is plain
