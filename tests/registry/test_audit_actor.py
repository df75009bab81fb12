"""Who promoted (from a token the platform issued, else the local user, marked) and the lock's expiry."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from ragtune.registry.audit import current_actor
from ragtune.registry.lock import LockLost, acquire, lock_name, promotion_lock
from ragtune.registry.tracking import tracking_uri
from tests.registry.conftest import make_config


def _jwt(claims: dict[str, str]) -> str:
    """A token shaped like the API server's (the signature is not checked, so any bytes do)."""

    def part(data: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'kid': 'k'})}.{part(claims)}.c2lnbmF0dXJl"


def test_the_pods_service_account_names_the_actor(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(
        _jwt({"sub": "system:serviceaccount:ml:ragtune", "iss": "https://kubernetes.default.svc"})
    )
    actor = current_actor({"USER": "root"}, service_account_token=token)
    assert actor.source == "kubernetes-service-account" and actor.name == "system:serviceaccount:ml:ragtune"
    assert actor.issuer == "https://kubernetes.default.svc" and actor.verified is False


def test_an_oidc_identity_comes_first_and_garbage_is_not_an_identity(tmp_path: Path) -> None:
    oidc, service_account = tmp_path / "oidc", tmp_path / "sa"
    oidc.write_text(_jwt({"sub": "alice@example.org", "iss": "https://idp.example.org"}))
    service_account.write_text(_jwt({"sub": "system:serviceaccount:ml:ragtune"}))
    actor = current_actor({"RAGTUNE_OIDC_TOKEN_FILE": str(oidc)}, service_account_token=service_account)
    assert (actor.source, actor.name) == ("oidc", "alice@example.org")
    oidc.write_text("not a token")
    actor = current_actor({"RAGTUNE_OIDC_TOKEN_FILE": str(oidc)}, service_account_token=service_account)
    assert actor.source == "kubernetes-service-account"


def test_without_a_token_the_local_user_is_marked_as_such(tmp_path: Path) -> None:
    actor = current_actor({"USER": "bob"}, service_account_token=tmp_path / "absent")
    assert actor.label() == "local-user:bob"


def test_a_stale_lock_is_broken_and_its_holder_cannot_write(tmp_path: Path) -> None:
    config = make_config(tmp_path, "stale", None)
    uri = tracking_uri(config)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    name = config.registry.model_name
    dead = acquire(client, name, "local-user:crashed", timeout_s=1, ttl_s=0.2)
    time.sleep(0.3)
    with promotion_lock(client, name, "local-user:next", timeout_s=5, ttl_s=60) as lock:
        lock.verify()  # the new holder still holds it
        with pytest.raises(LockLost, match=r"expired and is now held by local-user:next"):
            dead.verify()  # the stalled one is fenced off
    assert not client.search_registered_models(f"name = '{lock_name(name)}'")
