"""A synthesis run killed mid-way and started again loses nothing and repeats no answered call."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ragtune.synth import run_synth
from tests.llm.fake_openai import FakeOpenAI
from tests.synth.conftest import BuiltCorpus, make_config
from tests.synth.helpers import assert_every_slot_accounted
from tests.synth.responder import synth_responder

RUN_SYNTH = """
import json, sys
from pathlib import Path
from ragtune.core.config import config_from_json
from ragtune.synth import run_synth
args = json.loads(sys.argv[1])
config = config_from_json(Path(args["config"]).read_text())
run_synth(config, Path(args["documents"]), Path(args["index"]), Path(args["out"]))
"""

ANSWERED_BEFORE_KILL = 14  # all 12 questions and 2 answers


def request_key(body: dict[str, Any]) -> str:
    return json.dumps(
        [body.get("messages"), body.get("seed"), body.get("temperature"), body.get("max_tokens")],
        sort_keys=True,
    )


def cached_responses(cache_dir: Path) -> int:
    llm = cache_dir / "llm"
    return sum(1 for p in llm.rglob("*") if p.is_file() and not p.name.startswith(".")) if llm.exists() else 0


def test_a_killed_run_resumes_without_loss_or_repeated_calls(
    built_corpus: BuiltCorpus, tmp_path: Path
) -> None:
    phase = {"killed": False}

    def gate(index: int, body: dict[str, Any]) -> str | None:
        # before the kill the server answers the first requests only; the rest hang until it is killed
        return "hang" if not phase["killed"] and index >= ANSWERED_BEFORE_KILL else None

    with FakeOpenAI(responder=synth_responder, plan=gate, latency_s=0.05, hang_s=120.0) as server:
        config = make_config(tmp_path, server.endpoint(timeout_s=120.0, concurrency=4))
        config_file = tmp_path / "config.json"
        config_file.write_text(config.to_json(), encoding="utf-8")
        out = tmp_path / "out"
        args = {
            "config": str(config_file),
            "documents": str(built_corpus.documents),
            "index": str(built_corpus.index_dir),
            "out": str(out),
        }
        log = (tmp_path / "child.log").open("w")
        child = subprocess.Popen(
            [sys.executable, "-c", RUN_SYNTH, json.dumps(args)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        try:
            deadline = time.monotonic() + 240
            while cached_responses(tmp_path / "cache") < ANSWERED_BEFORE_KILL:
                assert child.poll() is None, (tmp_path / "child.log").read_text()
                assert time.monotonic() < deadline, "the child never got its answers"
                time.sleep(0.1)
        finally:
            child.kill()
            child.wait()
            log.close()
        phase["killed"] = True
        assert not (out / "train.jsonl").exists()  # killed mid-run, before writing the dataset
        before = server.chat_requests()
        answered = {request_key(r.body) for r in before if r.index < ANSWERED_BEFORE_KILL}
        assert len(answered) == ANSWERED_BEFORE_KILL

        report = run_synth(config, built_corpus.documents, built_corpus.index_dir, out)
        after = server.chat_requests()[len(before) :]

    assert not answered & {request_key(r.body) for r in after}  # nothing answered is asked again
    assert report.cache_hits == ANSWERED_BEFORE_KILL
    assert report.cache_misses == len(after)
    assert_every_slot_accounted(out, report, expected_slots=12)

    # the same dataset as one uninterrupted run
    with FakeOpenAI(responder=synth_responder) as server:
        fresh = tmp_path / "fresh"
        reference = make_config(fresh, server.endpoint())
        run_synth(reference, built_corpus.documents, built_corpus.index_dir, fresh / "out")
    for name in ("train.jsonl", "eval.jsonl", "rejected.jsonl"):
        assert (out / name).read_text(encoding="utf-8") == (fresh / "out" / name).read_text(encoding="utf-8")
