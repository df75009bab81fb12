"""Question categories from the corpus table of contents, and the question slots they get.

The paper sets a question quota per table-of-contents category. Here a category is a heading path
rooted at the document title and cut at ``synth.toc_depth`` levels:

* depth 1 — one category per document title (in the sample corpus, one per disorder family);
* depth 2 — ``title › top-level section`` (``Anxiety Disorders › Key features``), and so on.

Readers differ in whether the title is also the first heading (a Markdown H1 is a level-1 section
whose children are the H2s; a TEI body's first-level divisions sit directly under the header
title), so a path that already starts with the title is not given it twice. Every chunk belongs to
the category its ``section_path`` falls under.

A category's quota is spread round-robin over its chunks, in an order seeded by ``run.seed`` and
each chunk's id, and each chunk cycles through the question types from a seeded starting type.
So what a chunk is asked depends only on the chunk itself and how many slots it gets, which keeps
requests (and so the LLM cache) stable when other chunks change.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ragtune.core.records import Chunk, Document, sha256_hex

log = logging.getLogger(__name__)

SEPARATOR = " › "


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def category_path(title: str, section_path: Sequence[str], depth: int) -> tuple[str, ...]:
    """The category of a heading path in a document titled ``title`` (see the module docstring)."""
    body = list(section_path)
    if body and _norm(body[0]) == _norm(title):
        body = body[1:]
    return tuple([title, *body][: max(1, depth)])


def category_name(path: Sequence[str]) -> str:
    return SEPARATOR.join(path)


@dataclass
class Category:
    name: str
    path: tuple[str, ...]
    doc_ids: list[str] = field(default_factory=list)
    chunks: list[Chunk] = field(default_factory=list)


def build_categories(documents: Sequence[Document], chunks: Iterable[Chunk], depth: int) -> list[Category]:
    """Categories in corpus order (documents, then their TOC), each with its chunks in index order.

    Categories whose sections hold no text are listed too (with no chunks), so the dataset card can
    say which parts of the table of contents produced no questions. A chunk whose document is not in
    ``documents`` is placed by its own heading path and logged.
    """
    categories: dict[tuple[str, ...], Category] = {}

    def category_for(path: tuple[str, ...], doc_id: str) -> Category:
        category = categories.get(path)
        if category is None:
            category = categories[path] = Category(name=category_name(path), path=path)
        if doc_id not in category.doc_ids:
            category.doc_ids.append(doc_id)
        return category

    titles: dict[str, str] = {}
    for doc in documents:
        titles.setdefault(doc.doc_id, doc.title)
        category_for(category_path(doc.title, [], depth), doc.doc_id)
        for entry in doc.toc(max_level=None):
            category_for(category_path(doc.title, [*entry.path, entry.heading], depth), doc.doc_id)
    for chunk in chunks:
        title = titles.get(chunk.doc_id)
        if title is None:
            log.warning("chunk %s: document %s is not in documents.jsonl", chunk.chunk_id, chunk.doc_id)
            title = chunk.section_path[0] if chunk.section_path else chunk.doc_id
        category_for(category_path(title, chunk.section_path, depth), chunk.doc_id).chunks.append(chunk)
    return list(categories.values())


@dataclass(frozen=True)
class Slot:
    """One question to generate: a chunk, a question type, and which repeat of that pair it is."""

    category: str
    chunk: Chunk
    question_type: str
    repeat: int

    @property
    def slot_id(self) -> str:
        return f"{self.chunk.chunk_id}:{self.question_type}:{self.repeat}"


def _rank(seed: int, chunk_id: str) -> str:
    return sha256_hex(f"{seed}:{chunk_id}")


def plan_slots(
    categories: Sequence[Category],
    quota: int,
    question_types: Sequence[str],
    seed: int,
    max_chunks: int | None = None,
) -> list[Slot]:
    """``quota`` slots per category that has chunks, round-robin over chunks and question types."""
    types = list(dict.fromkeys(question_types))  # order kept, repeats dropped
    slots: list[Slot] = []
    for category in categories:
        chunks = sorted(category.chunks, key=lambda c: _rank(seed, c.chunk_id))
        if max_chunks is not None:
            chunks = chunks[:max_chunks]
        if not chunks:
            continue
        for index in range(quota):
            chunk = chunks[index % len(chunks)]
            turn = index // len(chunks)  # how many slots this chunk already has
            start = int(_rank(seed, chunk.chunk_id)[:8], 16) % len(types)
            slots.append(
                Slot(
                    category=category.name,
                    chunk=chunk,
                    question_type=types[(start + turn) % len(types)],
                    repeat=turn // len(types),
                )
            )
    return slots
