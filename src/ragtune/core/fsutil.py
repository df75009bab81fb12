"""One way to write a file so that readers never see half of it.

Every artifact, report and cache entry is written through :func:`atomic_writer`: the bytes go to a
uniquely named temporary file in the target's own folder (same file system, so the rename is
atomic), are flushed and fsynced, and only then renamed over the target; the folder is fsynced too
so that the rename itself survives a power cut. A crash or an exception mid-write leaves the old
file (or none) and no temporary behind, and concurrent writers of one path never interleave: the
last rename wins whole.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any


def _fsync_dir(folder: Path) -> None:
    """Persist a rename; some platforms and file systems cannot open a folder, which is fine."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: str | Path, binary: bool = False) -> Iterator[IO[Any]]:
    """A handle (text UTF-8, or binary) whose content replaces ``path`` only when the block ends cleanly."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        mode, encoding = ("wb", None) if binary else ("w", "utf-8")
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; artifacts are read by other tools and users
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically and durably; returns the path."""
    with atomic_writer(path, binary=True) as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Replace ``path`` with UTF-8 ``text`` atomically and durably; returns the path."""
    with atomic_writer(path) as handle:
        handle.write(text)
    return Path(path)


def atomic_write_lines(path: str | Path, lines: Iterable[str]) -> int:
    """Replace ``path`` with one line per item (JSONL writers), streaming; returns the line count."""
    count = 0
    with atomic_writer(path) as handle:
        for line in lines:
            handle.write(line + "\n")
            count += 1
    return count
