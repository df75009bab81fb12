"""evaluate.holdout: what the eval split holds out (implemented in the synth stage's split)."""

from __future__ import annotations

import numpy as np
import pytest

from ragtune.core.config import build_config
from ragtune.core.errors import ConfigError
from ragtune.synth.split import Holdout, SplitItem, split_eval
from tests.evaluate.helpers import make_item

DOCS, SECTIONS, PER_SECTION = 4, 3, 2


def items() -> list[SplitItem]:
    return [
        SplitItem(f"d{d}s{s}i{i}", f"C{(d + s) % 2}", f"chunk-{d}-{s}-{i}", f"doc-{d}", f"Section {s}")
        for d in range(DOCS)
        for s in range(SECTIONS)
        for i in range(PER_SECTION)
    ]


def split(holdout: Holdout) -> dict[SplitItem, bool]:
    pool = items()
    vectors = np.eye(len(pool), dtype=np.float32)  # no near-duplicates: only the holdout unit ties items
    return dict(zip(pool, split_eval(pool, [vectors], 0.95, 0.25, seed=1, holdout=holdout), strict=True))


@pytest.mark.parametrize(
    ("holdout", "unit"), [("documents", lambda i: i.doc_id), ("sections", lambda i: (i.doc_id, i.section))]
)
def test_a_held_out_unit_lies_wholly_on_one_side(holdout: Holdout, unit: object) -> None:
    side = split(holdout)
    sides: dict[object, set[bool]] = {}
    for item, held in side.items():
        sides.setdefault(unit(item), set()).add(held)  # type: ignore[operator]
    assert all(len(s) == 1 for s in sides.values())
    assert any(side.values()) and not all(side.values())


def test_items_holdout_may_split_a_document() -> None:
    side = split("items")
    by_doc: dict[str, set[bool]] = {}
    for item, held in side.items():
        by_doc.setdefault(item.doc_id, set()).add(held)
    assert any(len(s) == 2 for s in by_doc.values())
    assert sum(side.values()) == 6  # a quarter of 24


def test_split_item_reads_document_and_section_from_provenance() -> None:
    split_item = SplitItem.of(make_item("x", "Anxiety", "q?", "a.", ["text"]))
    assert (split_item.doc_id, split_item.section, split_item.source_chunk_id) == ("doc-1", "Anxiety", "x-c0")
    assert build_config({"evaluate": {"holdout": "documents"}}).evaluate.holdout == "documents"
    with pytest.raises(ConfigError, match=r"evaluate\.holdout"):
        build_config({"evaluate": {"holdout": "pages"}})
