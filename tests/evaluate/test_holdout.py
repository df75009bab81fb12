"""synth.holdout: the generalization eval set asks about sources held out before any answer exists."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from ragtune.core.config import build_config
from ragtune.core.errors import ConfigError
from ragtune.core.records import Chunk
from ragtune.synth.split import Holdout, Sides, SplitItem, choose_held_out, chunk_unit, split_held
from tests.evaluate.helpers import make_item

DOCS, SECTIONS, PER_SECTION = 4, 3, 2


def items() -> list[SplitItem]:
    return [
        SplitItem(f"d{d}s{s}i{i}", f"C{(d + s) % 2}", f"chunk-{d}-{s}-{i}", f"doc-{d}", (f"Section {s}",))
        for d in range(DOCS)
        for s in range(SECTIONS)
        for i in range(PER_SECTION)
    ]


def split(holdout: Holdout) -> dict[SplitItem, bool]:
    pool = items()
    held = choose_held_out([(i.category, i.unit(holdout)) for i in pool], holdout, 0.25, seed=1)
    vectors = np.eye(len(pool), dtype=np.float32)  # no near-duplicates: only the holdout unit ties items
    return dict(zip(pool, split_held(pool, [vectors], 0.95, holdout, held), strict=True))


Unit = Callable[[SplitItem], object]


@pytest.mark.parametrize(
    ("holdout", "unit"),
    [
        ("documents", lambda i: i.doc_id),
        ("sections", lambda i: (i.doc_id, i.section_path)),
        ("chunks", lambda i: i.source_chunk_id),
    ],
)
def test_a_held_out_unit_lies_wholly_on_one_side(holdout: Holdout, unit: Unit) -> None:
    side = split(holdout)
    sides: dict[object, set[bool]] = {}
    for item, held in side.items():
        sides.setdefault(unit(item), set()).add(held)
    assert all(len(s) == 1 for s in sides.values())
    assert any(side.values()) and not all(side.values())


def test_chunks_holdout_may_split_a_document_and_takes_its_share() -> None:
    side = split("chunks")
    by_doc: dict[str, set[bool]] = {}
    for item, held in side.items():
        by_doc.setdefault(item.doc_id, set()).add(held)
    assert any(len(s) == 2 for s in by_doc.values())
    assert sum(side.values()) == 6  # a quarter of 24, three per category


def _chunk(doc: str, section: str, text: str) -> Chunk:
    return Chunk(
        chunk_id=Chunk.make_id(doc, [section], text),
        doc_id=doc,
        section_id=section,
        section_path=[section],
        text=text,
        token_count=len(text.split()),
    )


def test_each_side_retrieves_only_its_own_chunks() -> None:
    eval_doc = [_chunk("doc-e", "A", "held one"), _chunk("doc-e", "B", "held two")]
    train_doc = [_chunk("doc-t", "A", "kept one")]
    sides = Sides("documents", frozenset({chunk_unit("documents", eval_doc[0])}))
    assert sides.allowed(eval_doc[0], eval_doc[1]) and sides.allowed(train_doc[0], train_doc[0])
    assert not sides.allowed(train_doc[0], eval_doc[1])  # no training answer quotes an eval source
    assert not sides.allowed(eval_doc[1], train_doc[0])  # no eval reference rests on trained text


def test_split_item_reads_document_and_section_from_provenance() -> None:
    split_item = SplitItem.of(make_item("x", "Anxiety", "q?", "a.", ["text"]))
    assert (split_item.doc_id, split_item.section_path, split_item.source_chunk_id) == (
        "doc-1",
        ("Anxiety",),
        "x-c0",
    )
    assert build_config({"synth": {"holdout": "documents"}}).synth.holdout == "documents"
    with pytest.raises(ConfigError, match=r"synth\.holdout"):
        build_config({"synth": {"holdout": "pages"}})
    with pytest.raises(ConfigError, match=r"evaluate\.holdout"):
        build_config({"evaluate": {"holdout": "documents"}})  # moved to synth
