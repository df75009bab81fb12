"""`ragtune run` executes the one graph through KFP's local runner, end to end, on the sample corpus.

The generator and judge are an OpenAI-compatible server in this test (so the run is quick and its
outcome known); everything else is real: the built-in readers on the Markdown/PDF/HTML/TEI corpus,
MiniLM + FAISS, LoRA training of the packaged SmolLM2, its answers in evaluation, and the local
sqlite MLflow registry.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.evaluate.fakes import judge_responder
from tests.llm.fake_openai import FakeOpenAI
from tests.synth.responder import synth_responder

REPO = Path(__file__).resolve().parents[2]


def responder(body: dict[str, Any]) -> str:
    prompt = json.dumps(body.get("messages", []))
    return judge_responder(body) if "<answer" in prompt else synth_responder(body)


def quick_demo_config(tmp_path: Path, server_url: str) -> Path:
    """The demo config made quick: the fake server as generator and judge, one question per
    category, two training steps; runs under ``tmp_path/runs``. Returns the YAML's path."""
    endpoint = {"base_url": server_url, "model": "fake-model", "timeout_s": 30, "max_retries": 2}
    config = yaml.safe_load((REPO / "examples/psychiatry/ragtune.yaml").read_text())
    config["run"]["root"] = str(tmp_path / "runs")
    config["corpus"]["uri"] = str(REPO / "examples/psychiatry/corpus")
    config["llm"] = {
        "generator": {**endpoint, "max_tokens": 160},
        "judge": {**endpoint, "max_tokens": 64},
    }
    config["synth"].update({"questions_per_category": 1, "mode": "teacher"})
    config["train"].update({"max_steps": 2, "eval_steps": 2, "save_steps": 2})
    config["evaluate"].update({"max_items": 2, "max_new_tokens": 16})
    path = tmp_path / "ragtune.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_ragtune_run_goes_from_corpus_to_registered_model(tmp_path: Path) -> None:
    with FakeOpenAI(responder=responder) as server:
        path = quick_demo_config(tmp_path, server.url)

        # src first: this checkout's ragtune even when the venv's editable install points elsewhere
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]),
        }
        result = subprocess.run(
            [sys.executable, "-m", "ragtune.cli", "run", "--config", str(path)],
            cwd=tmp_path,  # relative paths in the config must not depend on where the user stands
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "pipeline finished" in result.stderr

    runs = sorted((tmp_path / "runs").glob("ragtune-*"))
    assert len(runs) == 1
    run = runs[0]
    report = json.loads((run / "parse-documents" / "documents" / "parse_report.json").read_text())
    assert (
        report["failed"] == 0 and report["ok"] == 10
    )  # every format of the corpus parsed; front matter excluded
    parsers = {
        json.loads(line)["parser"] for line in (run / "parse-documents/documents/documents.jsonl").open()
    }
    assert parsers == {"markdown", "pdf", "html", "tei"}
    assert (run / "index-documents" / "index" / "index" / "faiss.index").is_file()

    dataset = run / "synthesize-dataset" / "dataset"
    kept = sum(1 for _ in (dataset / "train.jsonl").open()) + sum(1 for _ in (dataset / "eval.jsonl").open())
    rejected = sum(1 for _ in (dataset / "rejected.jsonl").open())
    assert kept + rejected == 10 and kept >= 2  # one question per category, all accounted for
    assert (dataset / "README.md").read_text().strip()

    trained = run / "train-adapter" / "model"
    assert (trained / "adapter" / "adapter_config.json").is_file()
    assert json.loads((trained / "metrics.json").read_text())["global_step"] == 2

    evaluation = run / "evaluate-adapter" / "evaluation"
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert set(metrics["contender_names"]) == {"base", "base_rag", "tuned", "tuned_rag"}
    assert {c["name"] for c in metrics["comparisons"]} == {
        "tuned-base",
        "tuned-base_rag",
        "tuned_rag-base_rag",
    }
    assert metrics["judge_check"]["n"] >= 1 and metrics["leakage"]["n_eval"] == metrics["n_items"]
    assert "<html" in (evaluation / "report.html").read_text().lower()

    decision = json.loads((run / "register-model" / "decision" / "decision.json").read_text())
    assert decision["alias"] == "challenger"  # two eval items are no evidence
    assert "registry.min_eval_items is 30" in decision["reason"]
    printed = result.stdout + result.stderr
    assert (
        "Evidence summary" in printed
        and "Decision: psychiatry-smollm2-lora version 1 -> challenger" in printed
    )
    assert (tmp_path / "runs" / "mlflow").is_dir()  # the local registry lives under run.root too
