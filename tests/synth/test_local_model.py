"""The synthesis stage with the real packaged SmolLM2 on the CPU (one chunk, one slot)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragtune.core.config import build_config
from ragtune.synth import run_synth
from tests.synth.conftest import build_corpus, make_documents
from tests.synth.helpers import assert_every_slot_accounted, read_lines


@pytest.mark.slow
def test_smollm2_slot_ends_kept_or_rejected_with_a_reason(tmp_path: Path) -> None:
    corpus = {
        "Panic Disorder": {
            "Panic attacks": [
                "A panic attack is a sudden surge of intense fear that peaks within minutes, with a pounding heart, "
                "breathlessness, trembling and sweating."
            ]
        }
    }
    built = build_corpus(tmp_path / "corpus", make_documents(corpus), tmp_path)
    config = build_config(
        {
            "run": {"root": str(tmp_path / "runs")},
            "cache": {"uri": str(tmp_path / "cache")},
            "llm": {"generator": {"max_tokens": 96}},
            "synth": {"questions_per_category": 1, "top_k": 1},
        }
    )
    out = tmp_path / "out"
    report = run_synth(config, built.documents, built.index_dir, out)

    assert_every_slot_accounted(out, report, expected_slots=1)
    assert report.generator_model.endswith("smollm2")
    assert report.token_counter.startswith("tokenizer of")  # the generator's own tokenizer
    for rejection in read_lines(out / "rejected.jsonl"):
        assert (
            rejection["reason"]
            and rejection["stage"]
            and rejection["generator_model"] == report.generator_model
        )
