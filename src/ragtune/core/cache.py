"""A content-addressed cache over any :class:`Storage`.

Stages key expensive work (parsed documents, embeddings, LLM responses) by a hash of everything
that determines the result. Entries are written atomically and never modified, so a crashed run
that starts again finds every finished piece and repeats none of it, and concurrent writers of the
same key write the same bytes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from ragtune.core.records import sha256_hex
from ragtune.core.storage import Storage

logger = logging.getLogger(__name__)
T = TypeVar("T")


def cache_key(*parts: Any) -> str:
    """Stable hash of JSON-serializable parts."""
    return sha256_hex(json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str))


class ContentCache:
    def __init__(self, storage: Storage, namespace: str) -> None:
        self.storage = storage
        self.namespace = namespace
        self.hits = 0
        self.misses = 0

    def _key(self, key: str) -> str:
        return f"{self.namespace}/{key[:2]}/{key}"

    def get_bytes(self, key: str) -> bytes | None:
        data = self.storage.read_bytes_or_none(self._key(key))  # one lookup, not exists + read
        if data is None:
            self.misses += 1
            return None
        self.hits += 1  # counted once read: an unreadable entry is the caller's miss
        return data

    def get_decoded(self, key: str, decode: Callable[[bytes], T]) -> T | None:
        """The entry under ``key`` decoded, or None when absent, unreadable or undecodable.

        A corrupt or truncated entry (``decode`` raises ``ValueError``, ``EOFError`` or
        ``OSError``) counts as a miss and is computed again, never trusted and never fatal.
        """
        try:
            data = self.get_bytes(key)
        except Exception as err:  # a broken cache costs a recomputation, never the run
            logger.warning("%s cache entry %s unreadable (%s); computing it again", self.namespace, key, err)
            self.misses += 1
            return None
        if data is None:
            return None
        try:
            return decode(data)
        except (ValueError, EOFError, OSError) as err:
            logger.warning("%s cache entry %s is corrupt (%s); computing it again", self.namespace, key, err)
            self.hits -= 1
            self.misses += 1
            return None

    def put_bytes(self, key: str, data: bytes) -> None:
        self.storage.write_bytes(self._key(key), data)

    def get_json(self, key: str) -> Any | None:
        return self.get_decoded(key, json.loads)

    def put_json(self, key: str, value: Any) -> None:
        self.put_bytes(key, json.dumps(value, ensure_ascii=False).encode("utf-8"))
