"""Section-aware chunking measured in the embedder's own tokens.

A chunk never crosses a section: each section's text is cut into windows of at most ``max_tokens``
tokens, neighbouring windows sharing up to ``overlap`` tokens. Cuts fall on the best boundary
inside the window, in this order of preference: a paragraph break, the end of a sentence, a line
break, any whitespace, and (only for a run of text with no whitespace longer than the window) a
token boundary. Every chunk is an exact substring of its section's text, so offsets into the
section stay meaningful, and its id is :meth:`Chunk.make_id` of its content, stable across runs.

The tokenizer is anything that maps text to the character spans of its tokens
(:class:`TokenSpans`); :func:`load_token_spans` gives the embedder's WordPiece tokenizer through
the ``tokenizers`` library, whose offsets map every token back to the original text.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

from ragtune.core.config import EmbedderConfig
from ragtune.core.models import minilm_path, resolve_embedder_path
from ragtune.core.records import Chunk, Document, Section

log = logging.getLogger(__name__)

TokenSpans = Callable[[str], list[tuple[int, int]]]
"""Maps a text to the ``(start, end)`` character offsets of its tokens, in order."""

# Boundary kinds, best first. A boundary at token index ``e`` is the gap before token ``e``.
_PARAGRAPH, _SENTENCE, _LINE, _SPACE, _TOKEN = range(5)
_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*$")
_PARAGRAPH_GAP = re.compile(r"\n[ \t\r\f\v]*\n")


class WordPieceSpans:
    """Token spans from a Hugging Face ``tokenizer.json`` (no special tokens, no truncation)."""

    def __init__(self, tokenizer_file: Path) -> None:
        from tokenizers import Tokenizer

        self.path = tokenizer_file
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()

    def __call__(self, text: str) -> list[tuple[int, int]]:
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        return [(int(start), int(end)) for start, end in encoding.offsets]

    def count(self, text: str) -> int:
        return len(self(text))


def load_token_spans(embedder: EmbedderConfig) -> WordPieceSpans:
    """The tokenizer chunk sizes are measured with.

    A local embedder folder brings its own ``tokenizer.json``; otherwise (the packaged MiniLM, or a
    remote embeddings endpoint whose tokenizer we cannot see) the packaged MiniLM WordPiece one.
    """
    if embedder.backend == "local":
        candidate = Path(resolve_embedder_path(embedder.model)) / "tokenizer.json"
        if candidate.is_file():
            return WordPieceSpans(candidate)
        log.info("no tokenizer.json in %s; measuring chunks with the MiniLM tokenizer", embedder.model)
    return WordPieceSpans(minilm_path() / "tokenizer.json")


def _boundary_kind(text: str, spans: list[tuple[int, int]], index: int) -> int:
    """How good a cut is in the gap before token ``index`` (0 < index < len(spans))."""
    gap = text[spans[index - 1][1] : spans[index][0]]
    if not gap or gap.strip():  # inside a word, or over characters the tokenizer dropped
        return _TOKEN
    if _PARAGRAPH_GAP.search(gap):
        return _PARAGRAPH
    before = text[spans[max(0, index - 2)][0] : spans[index - 1][1]]
    if _SENTENCE_END.search(before):
        return _SENTENCE
    if "\n" in gap:
        return _LINE
    return _SPACE


def _best_cut(kinds: list[int], start: int, limit: int, max_tokens: int, previous_end: int) -> int:
    """Exclusive end token of the window starting at ``start`` that may reach ``limit``.

    A paragraph, sentence or line cut must keep the chunk at least half full; any whitespace cut
    is better than splitting a word; a token cut at ``limit`` is the last resort. The cut always
    lies beyond ``previous_end`` so that no chunk repeats a part of its predecessor.
    """
    floor = max(start + max(1, max_tokens // 2), previous_end + 1)
    for kind in (_PARAGRAPH, _SENTENCE, _LINE, _SPACE):
        lowest = floor if kind < _SPACE else max(start, previous_end) + 1
        for end in range(limit, lowest - 1, -1):
            if kinds[end] <= kind:
                return end
    return limit


def _char_span(text: str, spans: list[tuple[int, int]], start: int, end: int) -> tuple[int, int]:
    """Characters of tokens ``start..end-1``, plus any visible characters the tokenizer dropped
    just around them (so no non-whitespace text is lost)."""
    begin = len(text) - len(text.lstrip()) if start == 0 else spans[start][0]
    stop = spans[end - 1][1]
    gap_end = spans[end][0] if end < len(spans) else len(text)
    return begin, stop + len(text[stop:gap_end].rstrip())


def split_text(text: str, spans_of: TokenSpans, max_tokens: int, overlap: int) -> list[tuple[int, int, int]]:
    """Cut ``text`` into ``(char_start, char_end, token_count)`` pieces of at most ``max_tokens``.

    Windows are greedy: as long as allowed, cut at the best boundary (see the module docstring).
    The next window starts at the first clean boundary inside the last ``overlap`` tokens (or at
    the cut) and always moves forward. Each piece's count is measured on its own text; a piece
    that tokenizes longer on its own (possible only after a cut inside a word) is shortened until
    it fits.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    if not 0 <= overlap < max_tokens:
        raise ValueError("overlap must be at least 0 and smaller than max_tokens")
    spans = [(s, e) for s, e in spans_of(text) if e > s]
    total = len(spans)
    kinds = [_TOKEN] + [_boundary_kind(text, spans, i) for i in range(1, total)] + [_PARAGRAPH]
    pieces: list[tuple[int, int, int]] = []
    start = end = 0
    while start < total:
        limit = min(start + max_tokens, total)
        end = limit if limit == total else _best_cut(kinds, start, limit, max_tokens, end)
        while True:
            begin, stop = _char_span(text, spans, start, end)
            count = len(spans_of(text[begin:stop]))
            if count <= max_tokens or end - start <= 1:
                break
            end -= 1
        pieces.append((begin, stop, count))
        if end >= total:
            break
        next_start = end
        if overlap > 0:
            earliest = max(start + 1, end - overlap)
            next_start = next((s for s in range(earliest, end) if kinds[s] <= _SPACE), end)
        start = next_start
    return pieces


def chunk_section(
    doc_id: str, section: Section, spans_of: TokenSpans, max_tokens: int, overlap: int
) -> list[Chunk]:
    """Chunks of one section (none for a section without text)."""
    if not section.text.strip():
        return []
    path = section.full_path
    return [
        Chunk(
            chunk_id=Chunk.make_id(doc_id, path, section.text[begin:end]),
            doc_id=doc_id,
            section_id=section.section_id,
            section_path=path,
            text=section.text[begin:end],
            token_count=count,
        )
        for begin, end, count in split_text(section.text, spans_of, max_tokens, overlap)
    ]


def chunk_document(doc: Document, spans_of: TokenSpans, max_tokens: int, overlap: int) -> list[Chunk]:
    """All chunks of a document, section by section, in order; repeated ids kept once.

    The same text under the same heading path (a boilerplate paragraph repeated in one section)
    yields the same id, so only its first occurrence is kept.
    """
    seen: set[str] = set()
    chunks: list[Chunk] = []
    for section in doc.sections:
        for chunk in chunk_section(doc.doc_id, section, spans_of, max_tokens, overlap):
            if chunk.chunk_id not in seen:
                seen.add(chunk.chunk_id)
                chunks.append(chunk)
    return chunks
