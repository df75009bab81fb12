"""Errors a user can act on.

Every failure that reaches the CLI is a :class:`RagtuneError` whose message names the file, record
or config key at fault, so the CLI can print one line instead of a traceback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class RagtuneError(Exception):
    """An error with a message fit for one line of CLI output."""


class ConfigError(RagtuneError):
    """The configuration is invalid; the message names the key."""


class InputError(RagtuneError):
    """An input file or record is unusable; the message names it and says why."""


class StorageError(RagtuneError):
    """A storage location cannot be read or written."""


DEPTH_MESSAGE = "nested too deeply to read (more levels than the recursion limit allows)"


@contextlib.contextmanager
def input_depth_guard(what: str = "") -> Iterator[None]:
    """Turn a ``RecursionError`` from reading untrusted input (deep JSON, HTML or XML) into an
    :class:`InputError`: the one path by which over-deep input becomes a recorded failure."""
    try:
        yield
    except RecursionError:
        raise InputError(f"{what}: {DEPTH_MESSAGE}" if what else DEPTH_MESSAGE) from None
