"""What the synthesis stage writes besides the dataset: a line of ``rejected.jsonl`` per rejected slot.

The stage report (``SynthReport``) lives in :mod:`ragtune.core.reports.synth`, since the registry
reads it too.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RejectedItem(BaseModel):
    """One slot that did not become a dataset item, with why (a line of ``rejected.jsonl``)."""

    model_config = ConfigDict(extra="forbid")

    slot_id: str = Field(description="source_chunk_id:question_type:repeat — unique per run.")
    stage: str = Field(description="question, dedup, retrieval, answer, grounding or relevance.")
    reason: str = Field(description="Short reason code, counted in the report and the card.")
    detail: str = Field("", description="Human-readable detail (LLM failure text, matched phrase, score).")
    category: str
    question_type: str
    doc_id: str
    section_path: list[str]
    source_chunk_id: str
    question: str | None = None
    answer: str | None = None
    raw: str | None = Field(None, description="The model's raw reply where it could not be used as is.")
    context_chunk_ids: list[str] = Field(default_factory=list)
    duplicate_of: str | None = Field(None, description="slot_id of the kept item this one duplicates.")
    scores: dict[str, float] = Field(default_factory=dict)
    generator_model: str
    templates: dict[str, str] = Field(default_factory=dict)
    repairs: list[str] = Field(
        default_factory=list, description="Repairs applied before the filters ('question:<name>', ...)."
    )
    attempts: int = Field(1, description="2 when the slot was retried with another seed (this is the retry).")
    retry_of: str | None = Field(None, description="'stage/reason' of the first attempt's rejection.")
