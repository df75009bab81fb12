"""The evaluate stage with the real packaged SmolLM2 as base and a real LoRA adapter as tuned (slow).

The judge is the fake OpenAI-compatible server (the local judge's output is tested by the LLM layer);
the embedder is the real packaged MiniLM.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ragtune.core.config import RagtuneConfig, build_config
from ragtune.core.records import write_jsonl
from ragtune.evaluate import ScoreRow, run_evaluate
from ragtune.evaluate import generators as generators_module
from tests.conftest import declare_endpoint
from tests.evaluate.fakes import judge_responder
from tests.evaluate.helpers import ITEMS
from tests.llm.fake_openai import FakeOpenAI

pytestmark = pytest.mark.slow

MAX_NEW_TOKENS = 16


def write_adapter(directory: Path) -> Path:
    """A LoRA adapter on SmolLM2 with small random B weights (so tuned differs from base)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from ragtune.core.modelload import ADAPTER_META_FILE, AdapterMeta
    from ragtune.core.models import load_causal_lm

    model, _ = load_causal_lm("smollm2")
    torch.manual_seed(0)  # lora_A is initialised from torch's global generator: fix it too
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    peft_model.save_pretrained(str(directory))
    meta = AdapterMeta(
        base_model="smollm2",
        base_model_path="smollm2",
        lora_r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        target_modules=["q_proj", "v_proj"],
        qlora=False,
        max_seq_len=256,
        dataset_sha256="0" * 64,
        global_step=1,
        dtype="float32",
        deepspeed="none",
    )
    (directory / ADAPTER_META_FILE).write_text(meta.model_dump_json(), encoding="utf-8")
    return directory


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    monkeypatch.setenv("RAGTUNE_TEST_JUDGE_KEY", "test-key")
    with FakeOpenAI(responder=judge_responder) as fake:
        declare_endpoint(monkeypatch, str(fake.endpoint().base_url), "RAGTUNE_TEST_JUDGE_KEY")
        yield fake


def make_config(tmp_path: Path, server: FakeOpenAI) -> RagtuneConfig:
    return build_config(
        {
            "run": {"root": str(tmp_path / "runs")},
            "llm": {
                "judge": {
                    "base_url": server.url,
                    "model": "judge-model",
                    "api_key_env": "RAGTUNE_TEST_JUDGE_KEY",
                    "max_retries": 0,
                }
            },
            "evaluate": {
                "max_items": 2,
                "max_new_tokens": MAX_NEW_TOKENS,
                "batch_size": 2,
                "bootstrap_samples": 200,
            },
        }
    )


def test_real_base_and_adapter(tmp_path: Path, server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = tmp_path / "dataset"
    write_jsonl(dataset / "eval.jsonl", ITEMS)
    adapter = write_adapter(tmp_path / "adapter")
    config = make_config(tmp_path, server)

    report = run_evaluate(config, dataset, adapter, tmp_path / "one")
    assert report.metrics.contender_names == ["base", "tuned"]
    assert report.metrics.judge_is_weak is False
    rows = [
        ScoreRow.model_validate_json(x) for x in (tmp_path / "one" / "scores.jsonl").read_text().splitlines()
    ]
    assert len(rows) == 4
    for row in rows:
        assert row.answer and row.answer.strip(), row
        assert row.answer_error is None
        assert row.score == 3  # the fake judge's score for answers without "TUNED"
        assert row.rouge_l is not None and 0 <= row.rouge_l <= 1
        assert row.cosine is not None and -1 <= row.cosine <= 1
    models = {row.contender: row.model for row in rows}
    assert models["base"] == "hf:smollm2" and models["tuned"].startswith("adapter:")
    answers = {(row.item_id, row.contender): row.answer for row in rows}
    assert any(answers[(i.item_id, "base")] != answers[(i.item_id, "tuned")] for i in ITEMS)
    assert report.metrics.delta_mean == 0.0 and report.metrics.delta_n == 2
    assert report.metrics.pairwise["base"].n_items == 2

    # A rerun serves every answer from the cache: neither model is even loaded.
    def refuse(*args: Any) -> Any:
        raise AssertionError("model loaded although its answers are cached")

    monkeypatch.setattr(generators_module, "_load_base", refuse)
    monkeypatch.setattr(generators_module, "_load_tuned", refuse)
    again = run_evaluate(config, dataset, adapter, tmp_path / "two")
    assert again.metrics.means == report.metrics.means
    first = json.loads((tmp_path / "one" / "metrics.json").read_text())
    second = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert first["contenders"] == second["contenders"]


def test_base_only_without_adapter(tmp_path: Path, server: FakeOpenAI) -> None:
    dataset = tmp_path / "dataset"
    write_jsonl(dataset / "eval.jsonl", ITEMS[:1])
    report = run_evaluate(make_config(tmp_path, server), dataset, None, tmp_path / "out")
    assert report.metrics.contender_names == ["base"]
    assert report.metrics.delta_mean is None and report.metrics.pairwise == {}
    assert any("no tuned model" in w for w in report.metrics.warnings)


def test_smollm2_scores_corpus_statements_by_likelihood() -> None:
    """The packaged SmolLM2 through the real chat template: finite scores, batching changes nothing."""
    from ragtune.core.models import load_causal_lm
    from ragtune.evaluate.distractors import CorpusTerms, item_texts
    from ragtune.evaluate.knowledge import build_probes
    from ragtune.evaluate.likelihood import choices, option_scores
    from tests.evaluate.helpers import make_item

    corpus = [
        "A depressive episode lasts at least two weeks. Panic disorder is common.",
        "Hypomania lasts at least four days, and mania at least one week.",
        "Insomnia is often treated with cognitive behavioural therapy.",
    ]
    items = [
        make_item(f"s{n}", "Mood", question, answer, [text])
        for n, (question, answer, text) in enumerate(
            [
                ("How long must a depressive episode last?", "At least two weeks.", corpus[0]),
                ("How long does hypomania last?", "At least four days.", corpus[1]),
                ("How is insomnia treated?", "Often with cognitive behavioural therapy.", corpus[2]),
            ]
        )
    ]
    facts, _ = build_probes(items, CorpusTerms.from_texts(item_texts(items)), k=2, per_item=1, seed=0)
    questions = [probe.question for probe in facts.probes]
    assert len(questions) == 3
    model, tokenizer = load_causal_lm("smollm2")
    one = option_scores(model, tokenizer, questions, batch_size=1)
    batched = option_scores(model, tokenizer, questions, batch_size=4)
    for row, again in zip(one, batched, strict=True):
        assert all(-30.0 < score < 0.0 for score in row)
        assert row == pytest.approx(again, abs=1e-3)
    assert len(choices(one)) == 3
