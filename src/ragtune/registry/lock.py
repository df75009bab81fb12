"""One promotion at a time per registered model, over an MLflow registry that has no transactions.

Tags and aliases are last-writer-wins, so "write, then read back" cannot exclude a second writer:
if A reads back before B writes, both believe they won. The registry has exactly one operation
that fails for all but one of several concurrent callers: creating a registered model, whose name
is the store's primary key (sqlite, PostgreSQL and MySQL stores alike; the loser gets
``RESOURCE_ALREADY_EXISTS``). The lock is therefore a registered model ``<model>.promotion-lock``,
created together with its owner token and expiry tags in one transaction and deleted on release.

* Acquire: create it; on ``RESOURCE_ALREADY_EXISTS`` wait (jittered backoff) and try again until
  ``registry.lock_timeout_s``, then :class:`LockTimeout` names the holder.
* A lock past its expiry (``registry.lock_ttl_s``: a promotion that died) is broken: deleted only
  when its token still names the stale owner, then acquisition starts over.
* Fencing: the holder calls :meth:`PromotionLock.verify` right before it moves the alias, so a
  holder that stalled beyond its expiry and lost the lock stops instead of writing.
* Release deletes the lock only while its token is still the holder's.

What stays outside the lock: someone moving the alias by hand in the MLflow UI. The promotion
that holds the lock decides against whatever version holds the alias when it reads it.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NamedTuple

from ragtune.core.errors import RagtuneError

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".promotion-lock"
TAG_KIND = "ragtune.kind"
TAG_TOKEN = "ragtune.lock.token"
TAG_OWNER = "ragtune.lock.owner"
TAG_EXPIRES = "ragtune.lock.expires"
FIRST_WAIT_S = 0.05
MAX_WAIT_S = 1.0


class LockTimeout(RagtuneError):
    """Another promotion held the lock for longer than ``registry.lock_timeout_s``."""


class LockLost(RagtuneError):
    """The lock expired and was broken by another promotion before this one wrote."""


def lock_name(model_name: str) -> str:
    """The registered model that is the promotion lock of ``model_name``."""
    return model_name + LOCK_SUFFIX


class Holder(NamedTuple):
    """Who holds a lock and until when (read from its tags)."""

    token: str
    owner: str
    expires: float

    def describe(self) -> str:
        until = datetime.fromtimestamp(self.expires, UTC).isoformat(timespec="seconds")
        return f"{self.owner} (lock {self.token[:8]}, expires {until})"


def _holder(client: MlflowClient, name: str) -> Holder | None:
    """The current holder of lock ``name``, ``None`` when there is no lock."""
    from mlflow.exceptions import MlflowException

    try:
        tags = client.get_registered_model(name).tags or {}
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    try:
        expires = float(tags.get(TAG_EXPIRES, "0"))
    except ValueError:
        expires = 0.0  # unreadable expiry: treat as stale
    return Holder(token=tags.get(TAG_TOKEN, ""), owner=tags.get(TAG_OWNER, "unknown"), expires=expires)


def _try_create(client: MlflowClient, name: str, holder: Holder) -> bool:
    """Create the lock; ``False`` when it already exists (someone else holds it)."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(
            name,
            tags={
                TAG_KIND: "promotion-lock",
                TAG_TOKEN: holder.token,
                TAG_OWNER: holder.owner,
                TAG_EXPIRES: repr(holder.expires),
            },
            description="ragtune promotion lock: exists only while a promotion decides (see ragtune.registry.lock).",
        )
    except MlflowException as err:
        if err.error_code == "RESOURCE_ALREADY_EXISTS":
            return False
        raise
    return True


def _delete_if(client: MlflowClient, name: str, token: str) -> bool:
    """Delete lock ``name`` if its token is still ``token``; whether it was deleted."""
    from mlflow.exceptions import MlflowException

    current = _holder(client, name)
    if current is None or current.token != token:
        return False
    try:
        client.delete_registered_model(name)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return True


@dataclass(frozen=True)
class PromotionLock:
    """A held lock; :meth:`verify` before writing."""

    client: MlflowClient
    name: str
    holder: Holder

    def verify(self) -> None:
        """Raise :class:`LockLost` unless this promotion still holds the lock."""
        current = _holder(self.client, self.name)
        if current is None or current.token != self.holder.token:
            taken = current.describe() if current is not None else "nobody"
            raise LockLost(
                f"{self.name}: the promotion lock expired and is now held by {taken};"
                " nothing was changed (raise registry.lock_ttl_s if promotions take this long)"
            )


def acquire(
    client: MlflowClient, model_name: str, owner: str, *, timeout_s: float, ttl_s: float
) -> PromotionLock:
    """Take the promotion lock of ``model_name`` (see the module docstring)."""
    name = lock_name(model_name)
    token = uuid.uuid4().hex
    deadline = time.monotonic() + timeout_s
    wait = FIRST_WAIT_S
    while True:
        holder = Holder(token=token, owner=owner, expires=time.time() + ttl_s)
        if _try_create(client, name, holder):
            return PromotionLock(client, name, holder)
        current = _holder(client, name)
        if current is not None and current.expires < time.time():
            if _delete_if(client, name, current.token):
                log.warning("%s: broke a stale promotion lock of %s", name, current.describe())
            continue
        if time.monotonic() >= deadline:
            held_by = current.describe() if current is not None else "a promotion that just finished"
            raise LockTimeout(
                f"{model_name}: another promotion holds the promotion lock ({held_by}); waited"
                f" {timeout_s:g} s (registry.lock_timeout_s)"
            )
        time.sleep(random.uniform(wait / 2, wait))
        wait = min(wait * 2, MAX_WAIT_S)


@contextmanager
def promotion_lock(
    client: MlflowClient, model_name: str, owner: str, *, timeout_s: float, ttl_s: float
) -> Iterator[PromotionLock]:
    """Hold the promotion lock of ``model_name`` for the ``with`` block; released however it ends."""
    lock = acquire(client, model_name, owner, timeout_s=timeout_s, ttl_s=ttl_s)
    try:
        yield lock
    finally:
        if not _delete_if(client, lock.name, lock.holder.token):
            log.warning("%s: the promotion lock was no longer ours at release", lock.name)
