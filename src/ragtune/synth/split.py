"""The generalization split: eval items ask about sources held out before any answer is written.

``synth.holdout`` names the unit held out: ``chunks`` (single source chunks, chosen per category
so every category is represented), ``sections`` or ``documents`` (whole ones, chosen over the
corpus). :func:`choose_held_out` picks units in an order seeded by ``run.seed`` and the unit's key
until they carry ``eval_fraction`` of the question slots, from the whole slot plan (so every
shard of a sharded run agrees). The synth stage then keeps the two sides apart twice:

* retrieval — a training answer is written only from chunks outside the held-out units, and an
  eval answer only from chunks inside them (:class:`Sides`), so no training answer can quote an
  eval item's source and no eval reference rests on text trained on;
* the split (:func:`split_held`) — an item goes to ``eval`` when its source is held out; items are
  first grouped (union-find) by source chunk and by near-duplicate questions or answers (cosine at
  or above the dedup threshold), and a group with any held-out member goes wholly to ``eval``.

What the split cannot rule out (the same text in two documents, say) the evaluate stage measures
as leakage.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ragtune.core.records import Chunk, InstructionItem, sha256_hex

log = logging.getLogger(__name__)

Holdout = Literal["chunks", "sections", "documents"]


def unit_key(holdout: Holdout, chunk_id: str, doc_id: str, section_path: Sequence[str]) -> str:
    """The key of the holdout unit a chunk belongs to."""
    if holdout == "documents":
        return f"doc:{doc_id}"
    if holdout == "sections":
        return f"section:{doc_id}\x1e" + "\x1f".join(section_path)
    return f"chunk:{chunk_id}"


def chunk_unit(holdout: Holdout, chunk: Chunk) -> str:
    return unit_key(holdout, chunk.chunk_id, chunk.doc_id, chunk.section_path)


@dataclass(frozen=True)
class SplitItem:
    item_id: str
    category: str
    source_chunk_id: str
    doc_id: str = ""
    section_path: tuple[str, ...] = ()

    @classmethod
    def of(cls, item: InstructionItem) -> SplitItem:
        """What the split needs of a kept item: its category, source chunk, document and section."""
        provenance = item.provenance
        return cls(
            item.item_id,
            item.category,
            provenance.source_chunk_id,
            provenance.doc_id,
            tuple(provenance.section_path),
        )

    def unit(self, holdout: Holdout) -> str:
        return unit_key(holdout, self.source_chunk_id, self.doc_id, self.section_path)


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def leak_groups(items: Sequence[SplitItem], vectors: Sequence[np.ndarray], threshold: float) -> list[int]:
    """Group number of each item: the same source chunk or any near-duplicate vector pair joins groups."""
    n = len(items)
    groups = _UnionFind(n)
    first_of_chunk: dict[str, int] = {}
    for index, item in enumerate(items):
        groups.union(first_of_chunk.setdefault(item.source_chunk_id, index), index)
    for matrix in vectors:
        if matrix.shape[0] != n:
            raise ValueError(f"{matrix.shape[0]} vectors for {n} items")
        if n < 2:
            continue
        sims = matrix @ matrix.T
        rows, cols = np.nonzero(np.triu(sims >= threshold, k=1))
        for a, b in zip(rows.tolist(), cols.tolist(), strict=True):
            groups.union(a, b)
    return [groups.find(i) for i in range(n)]


def _pools(sources: Sequence[tuple[str, str]], by_category: bool) -> list[dict[str, int]]:
    """Slots per unit, one pool per category (or one pool for everything)."""
    pools: dict[str, dict[str, int]] = {}
    for category, unit in sources:
        pool = pools.setdefault(category if by_category else "", {})
        pool[unit] = pool.get(unit, 0) + 1
    return list(pools.values())


def _choose(pools: Sequence[dict[str, int]], fraction: float, seed: int) -> set[str]:
    held: set[str] = set()
    for pool in pools:
        target = max(1, math.floor(fraction * sum(pool.values()) + 0.5))
        taken = 0
        for unit in sorted(pool, key=lambda u: sha256_hex(f"{seed}:{u}"))[:-1]:  # never every unit
            if taken >= target:
                break
            if taken == 0 or taken + pool[unit] <= target:
                held.add(unit)
                taken += pool[unit]
    return held


def choose_held_out(
    sources: Sequence[tuple[str, str]], holdout: Holdout, fraction: float, seed: int
) -> frozenset[str]:
    """The held-out units, from one ``(category, unit key)`` per question slot.

    ``chunks``: per category, units in seeded order until they carry the category's share of its
    slots (at least one unit where the category has two or more; over the whole corpus when every
    category has a single chunk). ``sections``/``documents``: the same over the whole corpus,
    since a category may be a single document. Never every unit of a pool.
    """
    if fraction <= 0:
        return frozenset()
    by_category = holdout == "chunks"
    held = _choose(_pools(sources, by_category), fraction, seed)
    if not held and by_category:
        held = _choose(_pools(sources, False), fraction, seed)
    return frozenset(held)


@dataclass(frozen=True)
class Sides:
    """Which chunks each side may retrieve from: eval answers only held-out ones, training answers
    only the rest."""

    holdout: Holdout
    held_units: frozenset[str]

    def is_held(self, chunk: Chunk) -> bool:
        return chunk_unit(self.holdout, chunk) in self.held_units

    def allowed(self, source: Chunk, candidate: Chunk) -> bool:
        """Whether an answer to a question about ``source`` may rest on ``candidate``."""
        return self.is_held(source) == self.is_held(candidate)


def split_held(
    items: Sequence[SplitItem],
    vectors: Sequence[np.ndarray],
    threshold: float,
    holdout: Holdout,
    held_units: Collection[str],
) -> list[bool]:
    """``True`` for each item that goes to ``eval``: its group (see :func:`leak_groups`) holds an
    item whose source unit is held out."""
    group_of = leak_groups(items, vectors, threshold)
    held_groups = {group_of[i] for i, item in enumerate(items) if item.unit(holdout) in held_units}
    if items and held_units and not held_groups:
        log.warning(
            "synth: no item about the %d held-out %s was kept, so eval.jsonl is empty; raise"
            " synth.eval_fraction or synth.questions_per_category",
            len(held_units),
            holdout,
        )
    return [group in held_groups for group in group_of]
