"""Where corpora, caches and artifacts live: a local folder or an S3/MinIO prefix.

Both kinds answer the same small interface over keys relative to their root, so a stage never
knows which it got. ``s3://bucket/prefix`` goes through the ``minio`` client (MinIO, AWS S3 or any
S3-protocol server); anything else is a local path (``file://`` accepted).
"""

from __future__ import annotations

import builtins
import io
from abc import ABC, abstractmethod
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from ragtune.core.config import StorageConfig
from ragtune.core.endpoints import credential_for, storage_url
from ragtune.core.errors import StorageError
from ragtune.core.fsutil import atomic_write_bytes


class Storage(ABC):
    """Keys are POSIX-style paths relative to the storage root."""

    uri: str

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """All keys under ``prefix``, sorted."""

    @abstractmethod
    def read_bytes_or_none(self, key: str) -> bytes | None:
        """The bytes under ``key``; ``None`` when there is no such key (one round trip for a cache
        lookup, not an existence check and a read); any other failure is a :class:`StorageError`."""

    def read_bytes(self, key: str) -> bytes:
        data = self.read_bytes_or_none(key)
        if data is None:
            raise StorageError(f"{self.uri_for(key)}: not found")
        return data

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def size(self, key: str) -> int:
        """Bytes stored under ``key``, without reading them (to refuse oversized inputs)."""

    def uri_for(self, key: str) -> str:
        return f"{self.uri.rstrip('/')}/{key}"

    def read_text(self, key: str) -> str:
        return self.read_bytes(key).decode("utf-8")

    def write_text(self, key: str, text: str) -> None:
        self.write_bytes(key, text.encode("utf-8"))

    def download_dir(self, prefix: str, dest: Path) -> builtins.list[Path]:
        """Copy every key under ``prefix`` into ``dest`` (used to hand artifacts to local tools).

        Every key is checked before anything is written: one that would land outside ``dest``
        (``..``, an absolute key, an empty segment from ``//``) is a :class:`StorageError` naming it.
        """
        folder = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        keys = self.list(folder)
        targets = [local_path_for(dest, key[len(folder) :], self.uri_for(key)) for key in keys]
        for key, target in zip(keys, targets, strict=True):
            atomic_write_bytes(target, self.read_bytes(key))
        return targets

    def upload_dir(self, source: Path, prefix: str = "") -> builtins.list[str]:
        """Copy every file under ``source`` to keys under ``prefix``."""
        keys = []
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            key = (
                str(PurePosixPath(prefix) / path.relative_to(source).as_posix())
                if prefix
                else path.relative_to(source).as_posix()
            )
            self.write_bytes(key, path.read_bytes())
            keys.append(key)
        return keys


def local_path_for(dest: Path, relative: str, name: str | None = None) -> Path:
    """Where the key ``relative`` goes under ``dest``; never outside it.

    Object-store keys are untrusted strings: an absolute key (leading ``/``), an empty segment
    (``a//b``), a ``.`` or ``..`` segment, a backslash or a NUL byte is refused with a
    :class:`StorageError` naming the key (``name``, e.g. its full URI), and the resolved path must
    still lie inside ``dest`` (a symlink there cannot lead out either).
    """
    where = name or repr(relative)
    parts = relative.split("/")
    if any(part in {"", ".", ".."} for part in parts) or "\\" in relative or "\0" in relative:
        raise StorageError(
            f"{where}: unsafe key (absolute, '//', '.', '..' or a backslash/NUL); not downloaded"
        )
    root = dest.resolve()
    target = (root / relative).resolve()
    if root not in target.parents:
        raise StorageError(f"{where}: key resolves outside {dest}; not downloaded")
    return target


class LocalStorage(Storage):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        self.uri = str(self.root)
        self._root_resolved: Path | None = None
        self._folders: dict[str, Path] = {}  # folder part of a key -> its resolved path, checked

    def _path(self, key: str) -> Path:
        """The file of ``key``, refused if it (or a link on the way) leads outside the root.

        Resolving every component of every key costs an ``lstat`` each and dominated cache
        lookups, so the resolved folders are remembered (a cache has a few hundred) and only the
        last component is checked on each call: one ``lstat``, or a full resolve if it is a link.
        """
        root = self._resolved_root()
        folder_key, _, name = key.rpartition("/")
        folder = self._folders.get(folder_key)
        if folder is None:
            folder = self._inside((root / folder_key).resolve(), key)
            if folder.is_dir():
                self._folders[folder_key] = folder
        if name in {"", ".", ".."} or (folder / name).is_symlink():
            return self._inside((folder / name).resolve(), key)
        return folder / name

    def _inside(self, path: Path, key: str) -> Path:
        root = self._resolved_root()
        if path != root and root not in path.parents:
            raise StorageError(f"key {key!r} escapes storage root {self.root}")
        return path

    def _resolved_root(self) -> Path:
        """The root with its links resolved, once it exists (resolving costs syscalls on every key)."""
        if self._root_resolved is not None:
            return self._root_resolved
        resolved = self.root.resolve()
        if self.root.exists():
            self._root_resolved = resolved
        return resolved

    def list(self, prefix: str = "") -> list[str]:
        if not self.root.exists():
            return []
        base = self._path(prefix) if prefix else self.root
        if base.is_file():
            return [prefix]
        return sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file())

    def read_bytes_or_none(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise StorageError(f"{self.uri_for(key)}: cannot read ({err.strerror})") from None

    def write_bytes(self, key: str, data: bytes) -> None:
        atomic_write_bytes(self._path(key), data)  # a crash never leaves a half-written cache entry

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            raise StorageError(f"{self.uri_for(key)}: not found") from None
        except OSError as err:
            raise StorageError(f"{self.uri_for(key)}: cannot read ({err.strerror})") from None


_MISSING = frozenset({"NoSuchKey", "NoSuchObject", "ResourceNotFound"})
"""S3 error codes that mean "no object under this key"."""


class S3Storage(Storage):
    """An ``s3://bucket/prefix`` location through the ``minio`` client."""

    def __init__(self, uri: str, config: StorageConfig) -> None:
        from minio import Minio

        parsed = urlparse(uri)
        if not parsed.netloc:
            raise StorageError(f"{uri}: expected s3://bucket/prefix")
        self.uri = uri.rstrip("/")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        url = storage_url(config)  # storage.endpoint as host:port or http(s)://host:port
        endpoint_url = urlparse(url)
        self.client = Minio(
            endpoint_url.netloc,
            access_key=credential_for(url, config.access_key_env),
            secret_key=credential_for(url, config.secret_key_env),
            session_token=credential_for(url, config.session_token_env),
            secure=endpoint_url.scheme == "https",
            region=config.region,
        )

    def _name(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _fail(self, key: str, err: Exception) -> StorageError:
        code = getattr(err, "code", None) or type(err).__name__
        return StorageError(f"{self.uri_for(key)}: {code}")

    def list(self, prefix: str = "") -> list[str]:
        from minio.error import S3Error

        full = self._name(prefix) if prefix else (self.prefix + "/" if self.prefix else "")
        try:
            objects = self.client.list_objects(self.bucket, prefix=full, recursive=True)
            names = [obj.object_name for obj in objects if obj.object_name and not obj.is_dir]
        except S3Error as err:
            raise self._fail(prefix, err) from None
        strip = len(self.prefix) + 1 if self.prefix else 0
        return sorted(name[strip:] for name in names)

    def read_bytes_or_none(self, key: str) -> bytes | None:
        from minio.error import S3Error

        try:
            response = self.client.get_object(self.bucket, self._name(key))
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()
        except S3Error as err:
            if err.code in _MISSING:
                return None
            raise self._fail(key, err) from None

    def write_bytes(self, key: str, data: bytes) -> None:
        from minio.error import S3Error

        try:
            self.client.put_object(self.bucket, self._name(key), io.BytesIO(data), length=len(data))
        except S3Error as err:
            raise self._fail(key, err) from None

    def exists(self, key: str) -> bool:
        from minio.error import S3Error

        try:
            self.client.stat_object(self.bucket, self._name(key))
            return True
        except S3Error as err:
            if err.code in _MISSING:
                return False
            raise self._fail(key, err) from None

    def size(self, key: str) -> int:
        from minio.error import S3Error

        try:
            return int(self.client.stat_object(self.bucket, self._name(key)).size or 0)
        except S3Error as err:
            raise self._fail(key, err) from None

    def ensure_bucket(self) -> None:
        """Create the bucket if missing (for caches and artifact prefixes we own)."""
        if not self.client.bucket_exists(self.bucket):
            self.client.make_bucket(self.bucket)


def is_s3_uri(uri: str) -> bool:
    return uri.startswith("s3://")


def open_storage(uri: str, config: StorageConfig | None = None) -> Storage:
    """Storage for ``uri``: ``s3://`` through MinIO's client, anything else a local folder."""
    if is_s3_uri(uri):
        return S3Storage(uri, config or StorageConfig())
    if uri.startswith("file://"):
        uri = urlparse(uri).path
    return LocalStorage(uri)
