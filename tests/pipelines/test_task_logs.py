"""The local runner's output router: per-task log files, one console line per task start and end.

The input is what ``kfp.local`` 2.17 writes to stdout (its own log lines with colour codes, and a
task's relayed lines indented by four spaces), fed in odd-sized chunks as ``print`` would.
"""

from __future__ import annotations

import io
from pathlib import Path

from pipelines.task_logs import TaskLogRouter

CYAN, GREEN, RED, RESET = "\x1b[96m", "\x1b[92m", "\x1b[91m", "\x1b[0m"


def kfp_task(name: str, lines: list[str], status: str = "SUCCESS") -> str:
    colour = GREEN if status == "SUCCESS" else RED
    out = [
        f"12:00:00.000 - INFO - Executing task {CYAN}'{name}'{RESET}",
        "12:00:00.001 - INFO - Streamed logs:",
        "",
    ]
    out += [f"    {line}" for line in lines]
    out += [f"12:00:01.000 - INFO - Task {CYAN}'{name}'{RESET} finished with status {colour}{status}{RESET}"]
    out += ["-" * 80]
    return "\n".join(out) + "\n"


class Console(io.StringIO):
    def __init__(self, tty: bool = False) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def feed(router: TaskLogRouter, text: str) -> None:
    for start in range(0, len(text), 7):  # print() and logging write in arbitrary pieces
        router.write(text[start : start + 7])
    router.finish()


def make_router(tmp_path: Path, console: Console, run_dir: Path | None, **kwargs: object) -> TaskLogRouter:
    return TaskLogRouter(
        console,
        lambda: run_dir,
        fallback_dir=tmp_path / "fallback",
        headline=lambda task, folder: f"{task} in {folder.name}" if task == "parse-documents" else None,
        **kwargs,  # type: ignore[arg-type]
    )


def test_task_output_goes_to_its_log_and_the_console_gets_start_and_end_lines(tmp_path: Path) -> None:
    run_dir = tmp_path / "ragtune-1"
    run_dir.mkdir()
    console = Console()
    router = make_router(tmp_path, console, run_dir)
    text = "Running pipeline: ragtune\n" + kfp_task(
        "parse-documents", ["INFO faiss.loader Loading faiss", '{"executor": "json"}']
    )
    text += kfp_task("index-documents", ["embedding chunks"])
    feed(router, text)

    shown = console.getvalue().splitlines()
    assert len(shown) == 4, shown
    assert "parse-documents" in shown[0] and shown[0].endswith("started")
    assert "done in" in shown[1] and shown[1].endswith(": parse-documents in parse-documents")
    assert "index-documents" in shown[3] and ":" not in shown[3].split("done in")[1]  # no headline
    assert "faiss" not in console.getvalue() and "executor" not in console.getvalue()
    parse_log = (run_dir / "logs" / "parse-documents.log").read_text()
    assert "INFO faiss.loader Loading faiss" in parse_log and '{"executor": "json"}' in parse_log
    assert "embedding chunks" not in parse_log
    assert "embedding chunks" in (run_dir / "logs" / "index-documents.log").read_text()
    assert "Running pipeline: ragtune" in (run_dir / "logs" / "_kfp.log").read_text()


def test_logs_wait_in_memory_until_the_run_folder_exists(tmp_path: Path) -> None:
    run_dir = tmp_path / "ragtune-1"
    created: list[Path] = []
    router = TaskLogRouter(
        Console(), lambda: created[0] if created else None, fallback_dir=tmp_path / "fallback"
    )
    router.write(kfp_task("resolve-config", ["first line"]).split("12:00:01")[0])
    assert not run_dir.exists() and router.logs_dir is None
    run_dir.mkdir()
    created.append(run_dir)
    feed(router, "12:00:01.000 - INFO - Task 'resolve-config' finished with status SUCCESS\n")
    assert "first line" in (run_dir / "logs" / "resolve-config.log").read_text()


def test_a_failed_task_is_named_and_its_log_tail_is_available(tmp_path: Path) -> None:
    console = Console()
    router = make_router(tmp_path, console, None)  # the run folder never appeared
    feed(
        router,
        kfp_task("train-adapter", [f"step {i}" for i in range(40)] + ["Boom: out of memory"], "FAILURE"),
    )
    assert router.failed_task == "train-adapter"
    assert "FAILED" in console.getvalue()
    assert router.log_path("train-adapter") == tmp_path / "fallback" / "train-adapter.log"
    tail = router.tail("train-adapter", lines=3)
    assert len(tail) == 3 and tail[1] == "Boom: out of memory" and tail[2].endswith("finished: FAILURE")


def test_progress_bars_show_only_their_final_state_off_a_terminal(tmp_path: Path) -> None:
    console = Console(tty=False)
    router = make_router(tmp_path, console, tmp_path)
    bars = [
        f"embedding: {p:>3}%|{'#' * (p // 10):<10}| {n}/4 [00:0{n}<00:00, 1.0it/s]"
        for n, p in enumerate((0, 25, 50, 75, 100))
    ]
    feed(router, kfp_task("index-documents", bars))
    shown = console.getvalue().splitlines()
    assert [line for line in shown if "embedding" in line] == ["  " + bars[-1]]
    assert len(shown) == 3
    logged = [
        line for line in (tmp_path / "logs" / "index-documents.log").read_text().splitlines() if "%|" in line
    ]
    assert logged == [bars[0], bars[-1]]  # a running bar is logged sparsely (first state, then every 30 s)


def test_progress_bars_are_redrawn_in_place_on_a_terminal(tmp_path: Path) -> None:
    console = Console(tty=True)
    router = make_router(tmp_path, console, tmp_path)
    bars = [f"judging: {p}%|##| {n}/2 [00:00<00:00, 9it/s]" for n, p in enumerate((0, 50, 100))]
    feed(router, kfp_task("evaluate-adapter", bars))
    text = console.getvalue()
    assert text.count("\r  judging") == 3
    assert text.count("\n") == 3  # start line, the finished bar, end line


def test_verbose_copies_every_line_to_the_console(tmp_path: Path) -> None:
    console = Console()
    router = make_router(tmp_path, console, tmp_path, verbose=True)
    feed(router, kfp_task("parse-documents", ["a library message"]))
    assert "a library message" in console.getvalue()
    assert "a library message" in (tmp_path / "logs" / "parse-documents.log").read_text()


def test_off_a_terminal_a_bar_shows_once_and_only_if_it_took_a_second(tmp_path: Path) -> None:
    console = Console(tty=False)
    router = make_router(tmp_path, console, tmp_path)
    lines = [
        "Loading weights: 100%|##| 103/103 [00:00<00:00, 9000it/s]",  # instant: log only
        "embedding: 100%|##| 73/73 [00:28<00:00, 2.58chunk/s]",
        "embedding: 100%|##| 73/73 [00:28<00:00, 2.58chunk/s]",  # tqdm's close repeats the final state
        "\x1b[A100%|##| 2/2 [03:47<00:00, 109.06s/it]",  # nested bar with a cursor move
        "100%|##| 2/2 [04:43<00:00, 141.72s/it]",
    ]
    feed(router, kfp_task("train-adapter", lines))
    bars = [line.strip() for line in console.getvalue().splitlines() if "%|" in line]
    assert bars == [
        "embedding: 100%|##| 73/73 [00:28<00:00, 2.58chunk/s]",
        "100%|##| 2/2 [03:47<00:00, 109.06s/it]",
    ]
    assert "Loading weights" in (tmp_path / "logs" / "train-adapter.log").read_text()
