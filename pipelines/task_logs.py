"""Route what KFP's local runner prints into one log file per task; the console gets one line per task.

KFP's ``SubprocessRunner`` prints its own progress through ``logging`` on ``sys.stdout`` and relays
every line a task process writes (stdout and stderr merged, ``\\r`` progress refreshes turned into
lines) with ``print``. :class:`TaskLogRouter` stands in for ``sys.stdout`` while the graph runs: it
recognises KFP's "Executing task" / "finished with status" lines, appends everything of a task to
``<run>/logs/<task>.log``, writes a start and an end line per task to the console (the end line
with a headline from the task's outputs), and shows the tasks' tqdm bars: redrawn in place on a
terminal, only their final state otherwise. ``verbose`` also copies every raw line to the console.
"""

from __future__ import annotations

import io
import math
import re
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # colours, and the cursor moves of nested tqdm bars
_STARTED = re.compile(r"Executing task '([^']+)'")
_FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")
_CACHED = re.compile(r"Task '?([\w.-]+)'? cache hit")
# tqdm's default layout: "desc: 42%|████▏     | 5/12 [00:01<00:02, 3.1it/s]" (or "5it [00:01, ...]").
_PROGRESS = re.compile(
    r"\|\s*(?P<n>\d+)/(?P<total>\d+) \[(?P<elapsed>[\d:]+)<|\b\d+it \[(?P<elapsed_open>[\d:]+)[,\]]"
)
_BAR_LOG_EVERY_S = 30.0  # a running bar is written to the task's log at most this often
_KFP_INDENT = "    "  # kfp.local indents a task's relayed lines by four spaces

Headline = Callable[[str, Path], str | None]
"""``(task name, task output folder) -> one-line summary`` or ``None`` when there is nothing to say."""


def strip_ansi(text: str) -> str:
    """``text`` without terminal colour codes (KFP colours task names and statuses)."""
    return _ANSI.sub("", text)


def _clock() -> str:
    return datetime.now().strftime("%H:%M:%S")


class TaskLogRouter(io.TextIOBase):
    """A write-only text stream that splits KFP local-runner output into per-task logs.

    ``run_dir_of`` returns the run folder once KFP has created it (``None`` before); logs are kept
    in memory until then and written to ``<run>/logs/`` from that moment on (``fallback_dir`` if
    the run folder never appears, e.g. when the first task fails).
    """

    def __init__(
        self,
        console: IO[str],
        run_dir_of: Callable[[], Path | None],
        fallback_dir: Path,
        headline: Headline | None = None,
        verbose: bool = False,
    ) -> None:
        super().__init__()
        self.console = console
        self.verbose = verbose
        self._run_dir_of = run_dir_of
        self._fallback_dir = fallback_dir
        self._headline = headline
        self._is_tty = console.isatty()
        self._partial = ""
        self._task: str | None = None
        self._started: dict[str, float] = {}
        self._pending: dict[str, list[str]] = {}  # task -> lines not yet written (no run folder yet)
        self._bar_open = False  # a progress bar drawn in place waits for its newline
        self._bars_shown: set[tuple[str, str, str | None]] = set()
        self._bar_logged: dict[tuple[str, str, str | None], float] = {}
        self.logs_dir: Path | None = None
        self.failed_task: str | None = None
        self.tasks_done: list[str] = []

    # --- the text-stream interface print() and logging.StreamHandler use
    def write(self, text: str) -> int:
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            self._line(line)
        return len(text)

    def flush(self) -> None:
        self.console.flush()

    def isatty(self) -> bool:
        return False  # what is written here ends in files; colour codes would only clutter them

    # --- the routing
    def _line(self, raw: str) -> None:
        line = strip_ansi(raw)
        if self.verbose:
            self._say(raw, newline_first=False)
        if match := _STARTED.search(line):
            self._start(match.group(1))
        elif match := _FINISHED.search(line):
            self._finish(match.group(1), match.group(2))
        elif match := _CACHED.search(line):
            self._log("_kfp", line)
            self._say(f"{_clock()}  {match.group(1):<22} cached (KFP local cache)")
        elif self._task is None:
            self._log("_kfp", line)
        else:
            text = line[len(_KFP_INDENT) :] if line.startswith(_KFP_INDENT) else line
            self._task_line(self._task, text)

    def _task_line(self, task: str, text: str) -> None:
        progress = _PROGRESS.search(text)
        if progress is None:
            self._log(task, text)
            return
        finished = progress.group("total") is not None and progress.group("n") == progress.group("total")
        bar = (task, text.split("|", 1)[0].rsplit(":", 1)[0].strip(), progress.group("total"))
        now = time.monotonic()
        if (
            finished or now - self._bar_logged.get(bar, -math.inf) >= _BAR_LOG_EVERY_S
        ):  # a long bar's progress, sparsely
            self._bar_logged[bar] = now
            self._log(task, text.strip())
        if self.verbose:
            return
        if self._is_tty:
            self.console.write("\r  " + text.strip()[:150] + "\x1b[K")
            self._bar_open = True
            if finished:
                self._end_bar()
            return
        # Off a terminal a bar is one line, once: when it completes, if it took a second or more.
        elapsed = progress.group("elapsed") or ""
        if finished and bar not in self._bars_shown and elapsed.strip("0:") != "":
            self._bars_shown.add(bar)
            self._say("  " + text.strip())

    def _start(self, task: str) -> None:
        self._task = task
        self._started[task] = time.monotonic()
        self._log(task, f"{_clock()} task {task} started")
        self._say(f"{_clock()}  {task:<22} started")

    def _finish(self, task: str, status: str) -> None:
        seconds = time.monotonic() - self._started.get(task, time.monotonic())
        self._log(task, f"{_clock()} task {task} finished: {status}")
        self._task = None
        self._place_logs()
        if status != "SUCCESS":
            self.failed_task = task
            self._say(f"{_clock()}  {task:<22} FAILED after {seconds:.0f}s")
            return
        self.tasks_done.append(task)
        summary = self._summary(task)
        self._say(f"{_clock()}  {task:<22} done in {seconds:.0f}s" + (f": {summary}" if summary else ""))

    def _summary(self, task: str) -> str | None:
        run_dir = self._run_dir_of()
        if self._headline is None or run_dir is None:
            return None
        try:
            return self._headline(task, run_dir / task)
        except Exception as err:  # a summary must never fail the run; the outputs are all there
            self._log(task, f"(no summary: {type(err).__name__}: {err})")
            return None

    # --- files and console
    def _log(self, task: str, text: str) -> None:
        if self.logs_dir is None:
            self._pending.setdefault(task, []).append(text)
            return
        with (self.logs_dir / f"{task}.log").open("a", encoding="utf-8") as handle:
            handle.write(text + "\n")

    def _place_logs(self, force: bool = False) -> None:
        if self.logs_dir is not None:
            return
        run_dir = self._run_dir_of()
        if run_dir is None and not force:
            return
        self.logs_dir = (run_dir / "logs") if run_dir is not None else self._fallback_dir
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        pending, self._pending = self._pending, {}
        for task, lines in pending.items():
            with (self.logs_dir / f"{task}.log").open("a", encoding="utf-8") as handle:
                handle.writelines(text + "\n" for text in lines)

    def note(self, text: str) -> None:
        """Append a line to the runner's own log (``_kfp.log``), not to any task's."""
        self._log("_kfp", text)

    def log_path(self, task: str) -> Path:
        """Where ``task``'s log is (written out now if the run folder never appeared)."""
        self._place_logs(force=True)
        assert self.logs_dir is not None
        return self.logs_dir / f"{task}.log"

    def tail(self, task: str, lines: int = 25) -> list[str]:
        path = self.log_path(task)
        if not path.is_file():
            return []
        return path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]

    def finish(self) -> None:
        """Route a last unterminated line and write the logs out (the run folder, else the fallback)."""
        if self._partial:
            self._line(self._partial)
            self._partial = ""
        self._place_logs(force=True)
        self._end_bar()

    def _end_bar(self) -> None:
        if self._bar_open:
            self.console.write("\n")
            self._bar_open = False

    def _say(self, text: str, newline_first: bool = True) -> None:
        if newline_first:
            self._end_bar()
        self.console.write(text + "\n")
        self.console.flush()
