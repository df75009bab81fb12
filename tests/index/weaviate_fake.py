"""A stand-in for the weaviate-client's collection API (no network): the one Weaviate fake.

No Weaviate server can run here, so this protocol fake serves the store tests and the stage-clients
test. Every method binds its arguments to the real weaviate-client 4.23 signature first
(:func:`checked`): a call the real client would reject (a misspelt keyword, a missing argument)
raises ``TypeError`` here too, instead of passing against a fake that accepts anything.
"""

from __future__ import annotations

import inspect
import uuid as uuidlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import numpy as np
import weaviate
from weaviate.collections.batch.collection import _BatchCollection, _BatchCollectionWrapper
from weaviate.collections.collection import Collection
from weaviate.collections.collections import _Collections
from weaviate.collections.data import _DataCollection
from weaviate.collections.query import _QueryCollection
from weaviate.exceptions import WeaviateQueryError

_REAL_CONNECT = weaviate.connect_to_custom  # taken before any test replaces it


def checked(real: Callable[..., Any], *args: Any, **kwargs: Any) -> inspect.BoundArguments:
    """Bind a call to the real client method ``real`` (``self`` left out); TypeError if it would fail."""
    try:
        bound = inspect.signature(real).bind(None, *args, **kwargs)
    except TypeError as err:
        raise TypeError(f"weaviate-client {weaviate.__version__} {real.__qualname__}: {err}") from None
    bound.apply_defaults()
    return bound


class FakeBatch:
    def __init__(self, collection: FakeCollection) -> None:
        self.collection = collection

    def add_object(self, properties: dict[str, Any], vector: list[float], uuid: str) -> None:
        checked(_BatchCollection.add_object, properties=properties, vector=vector, uuid=uuid)
        self.collection.added.append({"properties": properties, "vector": vector, "uuid": uuid})
        self.collection.objects[str(uuid)] = (properties, np.asarray(vector, dtype=np.float32))


class FakeBatching:
    def __init__(self, collection: FakeCollection) -> None:
        self.collection = collection
        self.failed_objects: list[Any] = []
        self.sizes: list[int] = []

    @contextmanager
    def fixed_size(self, *args: Any, **kwargs: Any) -> Iterator[FakeBatch]:
        bound = checked(_BatchCollectionWrapper.fixed_size, *args, **kwargs)
        batch_size = bound.arguments.get("batch_size", 100)
        self.sizes.append(batch_size)
        yield FakeBatch(self.collection)


class FakeQuery:
    """Ranks the stored objects by cosine similarity, like a self-provided-vector collection."""

    def __init__(self, collection: FakeCollection) -> None:
        self.collection = collection
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail = False

    def _ranked(self, vector: list[float], limit: int) -> list[tuple[dict[str, Any], float]]:
        query = np.asarray(vector, dtype=np.float32)
        scored = [(props, float(vec @ query)) for props, vec in self.collection.objects.values()]
        return sorted(scored, key=lambda item: -item[1])[:limit]

    def near_vector(self, near_vector: list[float], **kwargs: Any) -> Any:
        checked(_QueryCollection.near_vector, near_vector, **kwargs)
        self.calls.append(("near_vector", {"near_vector": near_vector, **kwargs}))
        if self.fail:
            raise WeaviateQueryError("connection refused", "gRPC")
        objects = [
            SimpleNamespace(
                properties={"chunk_id": props["chunk_id"]},
                metadata=SimpleNamespace(distance=1.0 - cos, score=None),
            )
            for props, cos in self._ranked(near_vector, kwargs["limit"])
        ]
        return SimpleNamespace(objects=objects)

    def hybrid(self, query: str, **kwargs: Any) -> Any:
        checked(_QueryCollection.hybrid, query, **kwargs)
        self.calls.append(("hybrid", {"query": query, **kwargs}))
        objects = [
            SimpleNamespace(
                properties={"chunk_id": props["chunk_id"]},
                metadata=SimpleNamespace(distance=None, score=0.5 + cos / 2),
            )
            for props, cos in self._ranked(kwargs["vector"], kwargs["limit"])
        ]
        return SimpleNamespace(objects=objects)


class FakeData:
    def __init__(self, collection: FakeCollection) -> None:
        self.collection = collection
        self.deletes: list[int] = []

    def delete_many(self, where: Any) -> Any:
        checked(_DataCollection.delete_many, where=where)
        assert (where.target, where.operator.value) == ("_id", "ContainsAny")
        gone = [str(u) for u in where.value if str(u) in self.collection.objects]
        for uuid in gone:
            del self.collection.objects[uuid]
        self.deletes.append(len(where.value))
        return SimpleNamespace(failed=0, successful=len(gone), matches=len(gone))


class FakeCollection:
    def __init__(self, name: str) -> None:
        self.name = name
        self.objects: dict[str, tuple[dict[str, Any], np.ndarray]] = {}
        self.added: list[dict[str, Any]] = []
        self.batch = FakeBatching(self)
        self.query = FakeQuery(self)
        self.data = FakeData(self)

    def iterator(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        return_properties = checked(Collection.iterator, *args, **kwargs).arguments["return_properties"]
        for uuid, (props, _) in list(self.objects.items()):
            yield SimpleNamespace(
                uuid=uuidlib.UUID(uuid), properties={k: props[k] for k in return_properties}
            )


class FakeCollections:
    def __init__(self) -> None:
        self.created: list[tuple[str, dict[str, Any]]] = []
        self.by_name: dict[str, FakeCollection] = {}

    def exists(self, name: str) -> bool:
        checked(_Collections.exists, name)
        return name in self.by_name

    def create(self, name: str, **kwargs: Any) -> FakeCollection:
        checked(_Collections.create, name, **kwargs)
        self.created.append((name, kwargs))
        self.by_name[name] = FakeCollection(name)
        return self.by_name[name]

    def use(self, name: str) -> FakeCollection:
        checked(_Collections.use, name)
        return self.by_name[name]


class FakeClient:
    """What ``weaviate.connect_to_custom`` returns, minus the network."""

    def __init__(self) -> None:
        self.collections = FakeCollections()
        self.closed = 0
        self.connect_kwargs: dict[str, Any] = {}

    def close(self) -> None:
        self.closed += 1


def connect_to_custom_for(client: FakeClient) -> Callable[..., FakeClient]:
    """A ``weaviate.connect_to_custom`` that checks its arguments and returns ``client``."""

    def connect_to_custom(*args: Any, **kwargs: Any) -> FakeClient:
        client.connect_kwargs = dict(checked_connect(*args, **kwargs).arguments)
        return client

    return connect_to_custom


def checked_connect(*args: Any, **kwargs: Any) -> inspect.BoundArguments:
    try:
        return inspect.signature(_REAL_CONNECT).bind(*args, **kwargs)
    except TypeError as err:
        raise TypeError(f"weaviate-client {weaviate.__version__} connect_to_custom: {err}") from None
