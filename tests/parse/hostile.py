"""A text reader that misbehaves on command, for the isolation tests.

Installed as ``READERS["text"]`` (workers are forked, so they inherit the monkeypatch). A file's
first word decides: HANG sleeps, HOG allocates without bound, SEGV and NULLREAD crash the
interpreter, EXIT leaves the process, DEEP recurses forever; anything else is read as text, with
the worker's pid as the title so tests can see which process read it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time

from ragtune.core.records import Document
from ragtune.parse.sections import Source
from ragtune.parse.text import read_text

HOSTILE_WORDS = ("HANG", "HOG", "SEGV", "NULLREAD", "EXIT", "DEEP")


def _recurse(depth: int) -> int:
    return _recurse(depth + 1) + 1


def hostile_text_reader(data: bytes, source: Source) -> Document:
    word = data.split(maxsplit=1)[0].decode("ascii", "replace") if data.strip() else ""
    if word == "HANG":
        time.sleep(600)
    elif word == "HOG":
        hoard = []
        while True:  # bytes(n) is calloc'ed: address space grows at once, pages only when touched
            hoard.append(bytes(64 * 1024 * 1024))
    elif word == "SEGV":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif word == "NULLREAD":
        ctypes.string_at(0)
    elif word == "EXIT":
        os._exit(3)
    elif word == "DEEP":
        _recurse(0)
    document = read_text(data, source)
    return document.model_copy(update={"title": f"pid {os.getpid()}"})
