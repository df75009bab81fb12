"""A content-addressed cache over any :class:`Storage`.

Stages key expensive work (parsed documents, embeddings, LLM responses) by a hash of everything
that determines the result. Entries are written atomically and never modified, so a crashed run
that starts again finds every finished piece and repeats none of it, and concurrent writers of the
same key write the same bytes.
"""

from __future__ import annotations

import json
from typing import Any

from ragtune.core.records import sha256_hex
from ragtune.core.storage import Storage


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
        name = self._key(key)
        if self.storage.exists(name):
            self.hits += 1
            return self.storage.read_bytes(name)
        self.misses += 1
        return None

    def put_bytes(self, key: str, data: bytes) -> None:
        self.storage.write_bytes(self._key(key), data)

    def get_json(self, key: str) -> Any | None:
        data = self.get_bytes(key)
        return None if data is None else json.loads(data)

    def put_json(self, key: str, value: Any) -> None:
        self.put_bytes(key, json.dumps(value, ensure_ascii=False).encode("utf-8"))
