"""The typed records that flow between stages, stored as JSONL.

A :class:`Document` is what every parser produces, whatever the source format (GROBID TEI, PDF,
Markdown, HTML, text): a title and a flat list of sections, each knowing its heading level and the
path of its ancestor headings. The table of contents, which the synthesis stage uses as the paper's
question categories, is derived from those sections rather than stored twice.

A :class:`Chunk` is a piece of one section, identified by a hash of its content and position so
that an unchanged chunk keeps its id across runs (that is what makes later stages incremental).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ragtune.core.errors import InputError, input_depth_guard
from ragtune.core.fsutil import atomic_write_lines

ParserName = Literal["grobid", "tei", "pdf", "markdown", "html", "text"]


def sha256_hex(data: bytes | str) -> str:
    """Hex SHA-256 of bytes or UTF-8 text."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Section(Record):
    section_id: str = Field(description="Stable within the document: s<ordinal>.")
    heading: str = Field(description="The section's own heading ('' for text before the first heading).")
    level: int = Field(ge=0, description="1 for top-level headings; 0 for untitled front matter.")
    path: list[str] = Field(default_factory=list, description="Headings of the ancestors, outermost first.")
    text: str = Field(description="Body text of the section, paragraphs separated by blank lines.")

    @property
    def full_path(self) -> list[str]:
        """Ancestor headings plus this section's own heading."""
        return [*self.path, self.heading] if self.heading else list(self.path)


class TocEntry(Record):
    section_id: str
    heading: str
    level: int
    path: list[str]


class Document(Record):
    doc_id: str = Field(description="Stable id derived from the source location, not its content.")
    source_uri: str
    sha256: str = Field(description="SHA-256 of the source file's bytes.")
    title: str
    parser: ParserName
    sections: list[Section]

    def toc(self, max_level: int | None = None) -> list[TocEntry]:
        """The document's table of contents: titled sections, optionally down to ``max_level``."""
        return [
            TocEntry(section_id=s.section_id, heading=s.heading, level=s.level, path=s.path)
            for s in self.sections
            if s.heading and s.level >= 1 and (max_level is None or s.level <= max_level)
        ]

    @property
    def text_length(self) -> int:
        return sum(len(s.text) for s in self.sections)


class Chunk(Record):
    chunk_id: str = Field(description="Hash of doc_id, section path and text: stable while the content is.")
    doc_id: str
    section_id: str
    section_path: list[str] = Field(description="Heading path of the section the chunk lies in.")
    text: str
    token_count: int = Field(ge=0)

    @staticmethod
    def make_id(doc_id: str, section_path: list[str], text: str) -> str:
        return sha256_hex(json.dumps([doc_id, section_path, text], ensure_ascii=False))[:20]


def doc_id_for(relative_source: str) -> str:
    """Stable document id from its path inside the corpus: readable slug plus a short hash."""
    stem = Path(relative_source).name.split(".")[0]
    slug = "".join(ch if ch.isalnum() else "-" for ch in stem.lower()).strip("-")[:40] or "doc"
    return f"{slug}-{sha256_hex(relative_source)[:8]}"


R = TypeVar("R", bound=BaseModel)


def write_jsonl(path: str | Path, records: Iterable[BaseModel]) -> int:
    """Write records one JSON object per line, atomically (:func:`~ragtune.core.fsutil.atomic_write_lines`)."""
    return atomic_write_lines(path, (record.model_dump_json() for record in records))


def iter_jsonl(path: str | Path, model: type[R]) -> Iterator[R]:
    """Read typed records; a bad line is an error naming the file and line number."""
    path = Path(path)
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield model.model_validate_json(line)
            except ValidationError as err:
                first = err.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "<line>"
                raise InputError(
                    f"{path}:{number}: not a valid {model.__name__} ({where}: {first['msg']})"
                ) from None


def read_json_object(path: str | Path, what: str = "JSON") -> dict[str, Any]:
    """A JSON object file; missing, unreadable or non-object content is an error naming the file."""
    path = Path(path)
    try:
        with input_depth_guard(str(path)):
            data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found") from None
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: not readable {what} ({err})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: {what} must be a JSON object")
    return data


def read_jsonl(path: str | Path, model: type[R]) -> list[R]:
    return list(iter_jsonl(path, model))


class ContextChunk(Record):
    chunk_id: str
    sha256: str = Field(description="Hash of the chunk text the answer was grounded on.")
    text: str


class SentenceSupport(Record):
    """How one answer sentence is supported by its cited chunks (the faithfulness check's verdict)."""

    sentence: str
    supported: bool
    chunk_id: str | None = Field(None, description="Chunk holding the best-aligned sentence.")
    support: str | None = Field(None, description="The best-aligned chunk sentence.")
    similarity: float = Field(0.0, description="Embedding cosine of the sentence and its support.")
    missing_terms: list[str] = Field(
        default_factory=list, description="Fact-bearing terms of the sentence absent from its support."
    )
    contradicted_terms: list[str] = Field(
        default_factory=list,
        description="Terms the support states otherwise (another number, quantifier, condition, ...).",
    )
    judge: str | None = Field(None, description="The LLM entailment verdict, where a judge gave one.")


class Provenance(Record):
    doc_id: str = Field(description="Document whose chunk the question was generated from.")
    section_path: list[str]
    source_chunk_id: str = Field(description="Chunk the question was generated from.")
    context_chunk_ids: list[str] = Field(description="Chunks retrieved to answer it, best first.")
    generator_model: str
    question_template: str = Field(description="Template name@version that wrote the question.")
    answer_template: str = Field(description="Template name@version that wrote the answer.")
    repairs: list[str] = Field(
        default_factory=list,
        description="Deterministic repairs applied before filtering, as 'question:<name>' / 'answer:<name>'.",
    )
    attempts: int = Field(1, ge=1, description="2 when the slot was retried with another seed.")
    retry_of: str | None = Field(None, description="'stage/reason' of the first attempt's rejection.")
    answer_mode: str | None = Field(None, description="generate or extractive: how the answer was written.")
    support: list[SentenceSupport] | None = Field(
        None, description="Per answer sentence, its support in the cited chunks (None: not checked)."
    )
    paraphrase_of: str | None = Field(
        None, description="Knowledge eval set: the training item whose question this one rewords."
    )


class InstructionItem(Record):
    """One kept question-answer pair: what training and evaluation read."""

    item_id: str = Field(description="Hash of the question and its source chunk: stable across reruns.")
    category: str = Field(description="Table-of-contents category (the paper's unit of question quotas).")
    question_type: str
    question: str
    answer: str = Field(description="Reference answer, written only from `context`.")
    context: list[ContextChunk]
    messages: list[dict[str, str]] = Field(
        description="Chat format: system?, user (question), assistant (answer)."
    )
    provenance: Provenance


def documents_fingerprint(documents_path: str | Path) -> str:
    """Hash of a parsed corpus: which documents, with which bytes (lineage for registered models)."""
    pairs = sorted((doc.doc_id, doc.sha256) for doc in iter_jsonl(documents_path, Document))
    return sha256_hex(json.dumps(pairs))
