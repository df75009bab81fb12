from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from ragtune.core.cache import ContentCache, cache_key
from ragtune.core.config import StorageConfig
from ragtune.core.errors import StorageError
from ragtune.core.storage import LocalStorage, S3Storage, local_path_for, open_storage
from tests.conftest import S3Server


def s3_config(server: S3Server) -> StorageConfig:
    return StorageConfig(endpoint=server.endpoint, secure=False, region="us-east-1")


@pytest.fixture
def bucket(s3_env: S3Server, request: pytest.FixtureRequest) -> str:
    name = "corpus-" + request.node.name.replace("_", "-")[:40].lower()
    storage = open_storage(f"s3://{name}", s3_config(s3_env))
    assert isinstance(storage, S3Storage)
    storage.ensure_bucket()
    return name


def test_local_round_trip_and_listing(tmp_path: Path) -> None:
    storage = open_storage(f"file://{tmp_path}")
    assert isinstance(storage, LocalStorage)
    storage.write_text("a/b.md", "# hi")
    storage.write_bytes("c.pdf", b"%PDF-1.4")
    assert storage.list() == ["a/b.md", "c.pdf"]
    assert storage.list("a") == ["a/b.md"]
    assert storage.read_text("a/b.md") == "# hi"
    assert storage.exists("c.pdf") and not storage.exists("missing")


def test_local_refuses_keys_outside_root(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="escapes storage root"):
        LocalStorage(tmp_path / "root").read_bytes("../secret")


def test_local_missing_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"nope\.md: not found"):
        LocalStorage(tmp_path).read_bytes("nope.md")


def test_s3_corpus_round_trip(tmp_path: Path, s3_env: S3Server, bucket: str) -> None:
    """A local corpus uploaded to S3 under a prefix comes back byte for byte."""
    source = tmp_path / "corpus"
    (source / "md").mkdir(parents=True)
    (source / "md" / "anxiety.md").write_text("# Anxiety\n\nWorry.")
    (source / "doc.pdf").write_bytes(bytes(range(256)) * 40)  # binary, > one small buffer
    remote = open_storage(f"s3://{bucket}/team/corpus", s3_config(s3_env))
    assert remote.upload_dir(source) == ["doc.pdf", "md/anxiety.md"]
    assert remote.list() == ["doc.pdf", "md/anxiety.md"]
    assert remote.list("md") == ["md/anxiety.md"]
    assert remote.exists("doc.pdf") and not remote.exists("other.pdf")
    back = tmp_path / "back"
    remote.download_dir("", back)
    for name in ["doc.pdf", "md/anxiety.md"]:
        assert (back / name).read_bytes() == (source / name).read_bytes()
    assert remote.uri_for("doc.pdf") == f"s3://{bucket}/team/corpus/doc.pdf"


def test_s3_prefix_isolation(s3_env: S3Server, bucket: str) -> None:
    config = s3_config(s3_env)
    open_storage(f"s3://{bucket}/a", config).write_text("x.txt", "a")
    open_storage(f"s3://{bucket}/ab", config).write_text("x.txt", "ab")
    assert open_storage(f"s3://{bucket}/a", config).list() == ["x.txt"]
    assert open_storage(f"s3://{bucket}/a", config).read_text("x.txt") == "a"


def test_s3_missing_bucket_is_a_named_error(s3_env: S3Server) -> None:
    storage = open_storage("s3://no-such-bucket/p", s3_config(s3_env))
    with pytest.raises(StorageError, match="no-such-bucket"):
        storage.read_bytes("x")


def test_cache_on_s3_counts_hits(s3_env: S3Server, bucket: str) -> None:
    cache = ContentCache(open_storage(f"s3://{bucket}/cache", s3_config(s3_env)), "unit")
    key = cache_key("model", [1, 2], {"t": 0.5})
    assert cache.get_json(key) is None
    cache.put_json(key, {"answer": "ok"})
    assert cache.get_json(key) == {"answer": "ok"}
    assert (cache.hits, cache.misses) == (1, 1)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_read_bytes_or_none_tells_missing_from_broken(
    where: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A missing key is None (the cache's one-lookup miss); any other failure is still an error."""
    if where == "local":
        storage = open_storage(str(tmp_path))
        broken = storage
        (tmp_path / "dir.bin").mkdir()  # reading a folder is an error, not a miss
        broken_key = "dir.bin"
    else:
        server = request.getfixturevalue("s3_env")
        name = request.getfixturevalue("bucket")
        storage = open_storage(f"s3://{name}/p", s3_config(server))
        broken = open_storage("s3://no-such-bucket/p", s3_config(server))
        broken_key = "x"
    storage.write_bytes("a/b.bin", b"\x00data")
    assert storage.read_bytes_or_none("a/b.bin") == b"\x00data"
    assert storage.read_bytes_or_none("a/missing.bin") is None
    with pytest.raises(StorageError, match=r"missing\.bin"):
        storage.read_bytes("a/missing.bin")
    with pytest.raises(StorageError):
        broken.read_bytes_or_none(broken_key)


def test_cache_key_is_order_insensitive_for_mappings() -> None:
    assert cache_key({"a": 1, "b": 2}) == cache_key({"b": 2, "a": 1})
    assert cache_key("x", 1) != cache_key("x", 2)


def put_raw(server: S3Server, bucket: str, key: str) -> None:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=server.url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name="us-east-1",
    )
    client.put_object(Bucket=bucket, Key=key, Body=b"pwned")


@pytest.mark.parametrize(
    "bad_name",
    ["../../escape.txt", "/etc/passwd", "./dot.txt", "a\\..\\b.txt", "../sibling/f.txt", "a//b.txt"],
)
def test_download_dir_refuses_keys_that_leave_the_destination(
    tmp_path: Path, s3_env: S3Server, bucket: str, bad_name: str
) -> None:
    """A hostile object name in the bucket must not write outside dest: named error, nothing written."""
    storage = open_storage(f"s3://{bucket}", s3_config(s3_env))
    folder = "run-" + cache_key(bad_name)[:8]  # the bucket is shared by the parametrized cases
    storage.write_bytes(f"{folder}/good.txt", b"fine")
    bad_key = f"{folder}/{bad_name}"
    put_raw(s3_env, bucket, bad_key)
    if bad_key not in storage.list(folder):  # the server normalized the name: harmless then
        pytest.skip(f"server stored {bad_key!r} under another name")
    dest = tmp_path / "deep" / "dest"
    with pytest.raises(StorageError, match=re.escape(f"s3://{bucket}/{bad_key}")):
        storage.download_dir(folder, dest)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))  # checked before anything is written


def test_download_dir_refuses_an_absolute_key(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="unsafe key"):
        local_path_for(tmp_path, "/etc/passwd", "s3://b//etc/passwd")
    assert local_path_for(tmp_path, "a/b.txt") == tmp_path.resolve() / "a" / "b.txt"


def test_download_dir_round_trip_on_s3(tmp_path: Path, s3_env: S3Server, bucket: str) -> None:
    storage = open_storage(f"s3://{bucket}/p", s3_config(s3_env))
    storage.write_bytes("out/a.txt", b"a")
    storage.write_bytes("out/sub/b.txt", b"b")
    storage.write_bytes("outside.txt", b"no")
    written = storage.download_dir("out", tmp_path / "d")
    assert sorted(p.relative_to(tmp_path / "d").as_posix() for p in written) == ["a.txt", "sub/b.txt"]
    assert (tmp_path / "d" / "sub" / "b.txt").read_bytes() == b"b"


def test_unreadable_or_corrupt_cache_entries_are_misses(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    cache = ContentCache(storage, "unit")
    cache.put_json("good", {"a": 1})
    cache.put_bytes("corrupt", b'{"a": ')
    cache.put_json("unreadable", {"b": 2})
    (tmp_path / "unit" / "un" / "unreadable").chmod(0)
    assert cache.get_json("good") == {"a": 1}
    assert cache.get_json("corrupt") is None
    assert cache.get_json("absent") is None
    assert (cache.hits, cache.misses) == (1, 2)  # the corrupt entry counts as a miss, not a hit
    if os.geteuid() != 0:  # root reads any file
        assert cache.get_json("unreadable") is None
        assert (cache.hits, cache.misses) == (1, 3)


def test_local_refuses_links_that_lead_outside_root(tmp_path: Path) -> None:
    """A key is checked through links, also in a folder whose resolution is remembered."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "ns").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret").write_text("s")
    storage = LocalStorage(root)
    storage.write_text("ns/ok", "fine")
    assert storage.read_text("ns/ok") == "fine"  # the folder "ns" is now remembered
    (root / "ns" / "link").symlink_to(outside / "secret")
    (root / "away").symlink_to(outside, target_is_directory=True)
    for key in ("ns/link", "away/secret", "ns/../../outside/secret", "ns/../../outside"):
        with pytest.raises(StorageError, match="escapes storage root"):
            storage.read_bytes(key)
    (root / "ns" / "inner").symlink_to(root / "ns" / "ok")  # a link that stays inside is fine
    assert storage.read_text("ns/inner") == "fine"
