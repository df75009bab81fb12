"""Retrieval that respects the holdout: each answer rests only on chunks of its own side.

The held-out units are chosen from the slot plan before any question is asked
(:func:`held_out_sides`); each question then retrieves from the whole index and keeps the best
``top_k`` hits on its own side (:func:`retrieve_on_side`). The index is asked for more hits than
``top_k`` (``EXTRA_HITS_FACTOR × top_k`` more) so that the filter still leaves ``top_k`` where the
other side crowds the top; a question whose side has fewer near chunks gets fewer.
"""

from __future__ import annotations

from collections.abc import Sequence

from ragtune.core.records import Chunk
from ragtune.index import Retriever, ScoredChunk
from ragtune.synth.categories import Slot
from ragtune.synth.split import Holdout, Sides, choose_held_out, chunk_unit

EXTRA_HITS_FACTOR = 10


def held_out_sides(slots: Sequence[Slot], holdout: Holdout, fraction: float, seed: int) -> Sides:
    """The two sides for this slot plan (see :func:`ragtune.synth.split.choose_held_out`)."""
    sources = [(slot.category, chunk_unit(holdout, slot.chunk)) for slot in slots]
    return Sides(holdout, choose_held_out(sources, holdout, fraction, seed))


def retrieve_on_side(
    retriever: Retriever, sides: Sides, sources: Sequence[Chunk], questions: Sequence[str], top_k: int
) -> list[list[ScoredChunk]]:
    """The ``top_k`` best chunks for each question, from the side of its source chunk only."""
    if not sides.held_units:
        return retriever.search_many(questions, top_k)
    found = retriever.search_many(questions, top_k + min(len(retriever.chunks), EXTRA_HITS_FACTOR * top_k))
    return [
        [hit for hit in hits if sides.allowed(source, hit.chunk)][:top_k]
        for source, hits in zip(sources, found, strict=True)
    ]
