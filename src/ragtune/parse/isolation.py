"""Read each file in a worker process, so that no single file can take the parse stage down.

A reader is library code (pypdf, lxml, BeautifulSoup ...) fed with bytes from strangers: a file may
make it loop forever, allocate without bound or crash the interpreter in a C extension. Each read
therefore runs in a long-lived worker process (forked once, reused for file after file, so the cost
is one fork per stage and one pipe round trip per file) under

* a wall-clock timeout (``parse.file_timeout_s``): the worker is killed and the file reported as
  ``timeout``;
* a memory cap (``parse.file_memory_mb``): the worker's address space may grow by at most that
  much (``RLIMIT_AS`` over what the worker holds when it starts); an allocation beyond it is
  reported as ``memory``, and so is a worker killed by SIGKILL we did not send (the kernel's OOM
  killer);
* any other death of the worker (a segfault, an abort, an exit) is reported as ``crashed`` with
  the signal or exit status.

A dead or killed worker is replaced before the next file. ``parse.isolation: none`` reads in
this process instead (no timeout or cap; for debugging and the benchmark's baseline).
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import multiprocessing
import os
import queue
import resource
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Literal

from ragtune.core.errors import RagtuneError, input_depth_guard
from ragtune.core.records import Document, ParserName
from ragtune.parse.report import FailureKind
from ragtune.parse.sections import Source

logger = logging.getLogger(__name__)

Reader = Callable[[ParserName, bytes, Source], Document]
_MB = 1024 * 1024


class ReadFailure(RagtuneError):
    """One file could not be read; ``kind`` says how it failed (the report's ``failure``)."""

    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.kind: FailureKind = kind


def read_guarded(reader: Reader, parser: ParserName, data: bytes, source: Source) -> Document:
    """Run ``reader`` turning every way it can fail into a :class:`ReadFailure` (in-process or in a worker)."""
    try:
        with input_depth_guard():
            return reader(parser, data, source)
    except ReadFailure:
        raise
    except MemoryError:
        raise ReadFailure("memory", "out of memory while reading (parse.file_memory_mb)") from None
    except RagtuneError as err:
        raise ReadFailure("input", str(err)) from None
    except Exception as err:  # a reader bug or a library choking on odd input: that file only
        logger.debug("%s: unexpected error", source.name, exc_info=True)
        raise ReadFailure("error", f"unexpected {type(err).__name__}: {err}") from None


def _address_space_bytes() -> int | None:
    """This process's current virtual memory size (Linux), or None where /proc is unavailable."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _cap_memory(memory_mb: int) -> None:
    """Let this process grow by ``memory_mb`` at most (a forked worker inherits its parent's mappings)."""
    limit = (_address_space_bytes() or 0) + memory_mb * _MB
    with contextlib.suppress(ValueError, OSError):  # not every platform enforces RLIMIT_AS
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _worker_main(conn: Connection, parent_end: Connection, reader: Reader, memory_mb: int) -> None:
    """Answer read requests until told to stop: ``("ok", doc)`` or ``("failed", kind, message)``."""
    parent_end.close()  # a forked child holds both ends; keep only its own
    faulthandler.disable()  # a crash is reported by the parent; no inherited traceback dump on stderr
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _cap_memory(memory_mb)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        parser, data, source = task
        answer: tuple[Any, ...]
        try:
            answer = ("ok", read_guarded(reader, parser, data, source))
        except ReadFailure as failure:
            answer = ("failed", failure.kind, str(failure))
        del task, data
        try:
            conn.send(answer)
        except MemoryError:
            conn.send(("failed", "memory", "out of memory while returning the document"))
        except Exception as err:  # an unpicklable answer: report it rather than hang the parent
            conn.send(("failed", "error", f"cannot return the document ({type(err).__name__}: {err})"))


def _context() -> multiprocessing.context.BaseContext:
    # fork starts a worker in milliseconds and needs nothing importable; elsewhere spawn is safe.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method)


class _Worker:
    """One worker process and our end of its pipe."""

    def __init__(self, reader: Reader, memory_mb: int) -> None:
        ctx = _context()
        self.conn, child = ctx.Pipe()
        self.process: BaseProcess = ctx.Process(  # type: ignore[attr-defined]
            target=_worker_main,
            args=(child, self.conn, reader, memory_mb),
            name="ragtune-parse-worker",
            daemon=True,
        )
        self.process.start()
        child.close()

    def stop(self, kill: bool = False) -> None:
        """Kill (and reap) a worker, or reap one that died."""
        if kill:
            self.process.kill()
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()

    def release(self) -> None:
        """Ask an idle worker to exit without waiting for it: the stage need not pay for its exit
        (multiprocessing reaps it on the next start, or at interpreter exit)."""
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.conn.close()


def _death(exitcode: int | None, memory_mb: int) -> ReadFailure:
    """How a worker that died mid-file is reported."""
    if exitcode is not None and exitcode < 0:
        number = -exitcode
        if number == signal.SIGKILL:
            return ReadFailure(
                "memory",
                f"reader killed by SIGKILL (out of memory? parse.file_memory_mb is {memory_mb})",
            )
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return ReadFailure("crashed", f"reader crashed ({name})")
    return ReadFailure("crashed", f"reader process exited with status {exitcode}")


@dataclass(frozen=True)
class Limits:
    timeout_s: float
    memory_mb: int


class IsolatedReader:
    """A pool of worker processes shared by the stage's threads; use as a context manager.

    :meth:`read` returns the document or raises :class:`ReadFailure`; ``size`` workers can read at
    once (one per calling thread). Workers start on first use, so a run served wholly from the
    parse cache forks nothing.
    """

    def __init__(self, limits: Limits, size: int = 1, reader: Reader | None = None) -> None:
        from ragtune.parse.dispatch import read_bytes

        self.limits = limits
        self.reader: Reader = reader or read_bytes
        self._idle: queue.LifoQueue[_Worker | None] = queue.LifoQueue()
        for _ in range(size):
            self._idle.put(None)  # a slot; the worker is forked when a file first needs it
        self._all: list[_Worker] = []

    @contextlib.contextmanager
    def _slot(self) -> Iterator[list[_Worker | None]]:
        held: list[_Worker | None] = [self._idle.get()]
        try:
            yield held
        finally:
            self._idle.put(held[0])

    def read(self, parser: ParserName, data: bytes, source: Source) -> Document:
        with self._slot() as held:
            worker = held[0]
            if worker is None or not worker.process.is_alive():
                worker = held[0] = _Worker(self.reader, self.limits.memory_mb)
                self._all.append(worker)
            try:
                worker.conn.send((parser, data, source))
                ready = worker.conn.poll(self.limits.timeout_s)
                answer = worker.conn.recv() if ready else None
            except (EOFError, OSError, BrokenPipeError):  # the worker died mid-file
                worker.stop()
                held[0] = None
                raise _death(worker.process.exitcode, self.limits.memory_mb) from None
            if answer is None:
                worker.stop(kill=True)
                held[0] = None
                raise ReadFailure(
                    "timeout",
                    f"reader timed out (no result within parse.file_timeout_s = {self.limits.timeout_s:g} s)",
                )
        if answer[0] == "ok":
            document: Document = answer[1]
            return document
        raise ReadFailure(answer[1], answer[2])

    def close(self) -> None:
        for worker in self._all:
            if worker.process.is_alive():
                worker.release()
        self._all.clear()

    def __enter__(self) -> IsolatedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InProcessReader:
    """The same interface without isolation (``parse.isolation: none``)."""

    def __init__(self, reader: Reader | None = None) -> None:
        from ragtune.parse.dispatch import read_bytes

        self.reader: Reader = reader or read_bytes

    def read(self, parser: ParserName, data: bytes, source: Source) -> Document:
        return read_guarded(self.reader, parser, data, source)

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> InProcessReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_reader(
    limits: Limits, isolation: Literal["process", "none"], size: int
) -> IsolatedReader | InProcessReader:
    """The reader pool the configuration asks for."""
    if isolation == "none":
        return InProcessReader()
    return IsolatedReader(limits, size)
