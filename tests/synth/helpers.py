"""Assertions shared by the synthesis tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ragtune.synth import SynthReport


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def assert_every_slot_accounted(out_dir: Path, report: SynthReport, expected_slots: int) -> None:
    """kept + rejected == generated == planned; every rejection has a stage and a reason; no duplicates."""
    train, evaluation = read_lines(out_dir / "train.jsonl"), read_lines(out_dir / "eval.jsonl")
    rejected = read_lines(out_dir / "rejected.jsonl")
    assert report.generated == expected_slots
    assert len(train) + len(evaluation) + len(rejected) == expected_slots
    assert (report.train, report.eval, report.rejected) == (len(train), len(evaluation), len(rejected))
    item_ids = [item["item_id"] for item in train + evaluation]
    assert len(item_ids) == len(set(item_ids))
    slot_ids = [r["slot_id"] for r in rejected]
    assert len(slot_ids) == len(set(slot_ids))
    assert all(r["stage"] and r["reason"] for r in rejected)
    assert sum(report.rejected_by_reason.values()) == len(rejected)
    assert sum(c.slots for c in report.per_category.values()) == expected_slots
    assert (
        json.loads((out_dir / "synth_report.json").read_text(encoding="utf-8"))["generated"] == expected_slots
    )
