"""Train/eval split: stratified by category, with no leak of near-duplicates across the split.

Items are first grouped (union-find) so that items from the same source chunk, and items whose
questions or answers are near-duplicates (cosine at or above the dedup threshold), share a group;
a group goes wholly to one side. ``evaluate.holdout`` widens the groups: ``sections`` joins every
item of one document section, ``documents`` every item of one document, so the eval split asks
about text the model never trained on (``items``, the default, holds out single items). ``eval``
gets ``eval_fraction`` of the items, apportioned over the categories by size; each category sends
whole groups, in an order seeded by ``run.seed`` and the group's item ids, so the assignment is
stable across reruns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ragtune.core.records import InstructionItem, sha256_hex

Holdout = Literal["items", "sections", "documents"]


@dataclass(frozen=True)
class SplitItem:
    item_id: str
    category: str
    source_chunk_id: str
    doc_id: str = ""
    section: str = ""

    @classmethod
    def of(cls, item: InstructionItem) -> SplitItem:
        """What the split needs of a kept item: its category, source chunk, document and section."""
        provenance = item.provenance
        section = "\x1f".join(provenance.section_path)
        return cls(item.item_id, item.category, provenance.source_chunk_id, provenance.doc_id, section)

    def unit(self, holdout: Holdout) -> str | None:
        """The key that ties items together under ``holdout`` (``None``: only chunk and similarity)."""
        if holdout == "documents":
            return f"doc:{self.doc_id}"
        if holdout == "sections":
            return f"section:{self.doc_id}\x1e{self.section}"
        return None


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


def leak_groups(
    items: Sequence[SplitItem], vectors: Sequence[np.ndarray], threshold: float, holdout: Holdout = "items"
) -> list[int]:
    """Group number of each item: same source chunk (or holdout unit) or any near-duplicate vector
    pair joins groups."""
    n = len(items)
    groups = _UnionFind(n)
    first_of_key: dict[str, int] = {}
    for index, item in enumerate(items):
        for key in (f"chunk:{item.source_chunk_id}", item.unit(holdout)):
            if key is not None:
                groups.union(first_of_key.setdefault(key, index), index)
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


def _apportion(total: int, shares: dict[str, float], seed: int) -> dict[str, int]:
    """Split ``total`` over categories in proportion to ``shares`` (largest remainder, seeded ties)."""
    weight = sum(shares.values())
    if total <= 0 or weight <= 0:
        return dict.fromkeys(shares, 0)
    exact = {name: total * share / weight for name, share in shares.items()}
    quota = {name: math.floor(value) for name, value in exact.items()}
    order = sorted(exact, key=lambda n: (-(exact[n] - quota[n]), sha256_hex(f"{seed}:{n}")))
    for name in order[: total - sum(quota.values())]:
        quota[name] += 1
    return quota


def split_eval(
    items: Sequence[SplitItem],
    vectors: Sequence[np.ndarray],
    threshold: float,
    eval_fraction: float,
    seed: int,
    holdout: Holdout = "items",
) -> list[bool]:
    """``True`` for each item that goes to ``eval`` (see the module docstring).

    ``eval`` gets ``eval_fraction`` of all items (at least one when there are two or more, never
    all), apportioned over categories by their size; whole groups are taken per category first,
    then, where group sizes left a category short, from any category.
    """
    n = len(items)
    group_of = leak_groups(items, vectors, threshold, holdout)
    members: dict[int, list[int]] = {}
    for index, root in enumerate(group_of):
        members.setdefault(root, []).append(index)
    groups = sorted(
        members.values(), key=lambda g: sha256_hex(f"{seed}:" + ",".join(sorted(items[i].item_id for i in g)))
    )
    sizes: dict[str, float] = {}
    for item in items:
        sizes[item.category] = sizes.get(item.category, 0) + 1
    target = math.floor(eval_fraction * n + 0.5)
    if eval_fraction > 0 and n >= 2:
        target = max(target, 1)
    target = min(target, n - 1) if n else 0
    quota = _apportion(target, sizes, seed)

    is_eval = [False] * n
    taken = 0
    for group in groups:  # a group counts towards the category of its first item
        category = items[group[0]].category
        if len(group) <= quota[category]:
            quota[category] -= len(group)
            taken += len(group)
            for i in group:
                is_eval[i] = True
    for group in groups:  # group sizes left some quota unused: fill it from any category
        if taken >= target:
            break
        if not is_eval[group[0]] and taken + len(group) <= target:
            taken += len(group)
            for i in group:
                is_eval[i] = True
    return is_eval
