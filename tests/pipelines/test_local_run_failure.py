"""A failing task in ``ragtune run``: one error naming the task and its log, the log's tail on the console.

Runs the real graph through KFP's local runner on an empty corpus, so the parse task fails after
the config task succeeded; nothing else of the pipeline runs.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from pipelines.local_run import run_locally
from ragtune.core.config import build_config
from ragtune.core.errors import RagtuneError


@pytest.mark.slow
def test_a_failed_task_names_its_log_and_prints_its_tail(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    config = build_config({"run": {"root": str(tmp_path / "runs")}, "corpus": {"uri": str(corpus)}})
    console = io.StringIO()

    with pytest.raises(RagtuneError) as raised:
        run_locally(config, console=console)

    message = str(raised.value)
    assert message.startswith("task parse-documents failed; its full log: ") and "\n" not in message
    log = Path(message.split("its full log: ")[1].split(" (")[0])
    assert log.name == "parse-documents.log" and log.parent.name == "logs" and log.is_file()
    assert "no document could be parsed" in log.read_text()
    shown = console.getvalue()
    assert "resolve-config" in shown and "parse-documents        FAILED" in shown
    assert "  | " in shown and "no document could be parsed" in shown  # the tail, on the console
    assert (log.parent / "resolve-config.log").is_file()
