"""What the synthesis stage reports: the report file of a :class:`~ragtune.core.artifacts.DatasetDir`
is a :class:`SynthReport`.

It lives in core because the registry logs it to MLflow (``DatasetDir(path).read_report(SynthReport)``)
and the pipeline's evidence summary reads it: one typed contract, not key spellings.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class CategoryCounts(BaseModel):
    slots: int = 0
    kept: int = 0
    train: int = 0
    eval: int = 0
    rejected: int = 0
    chunks: int = 0


class TokenStats(BaseModel):
    count: int = 0
    mean: float = 0.0
    median: float = 0.0
    min: int = 0
    max: int = 0


class SynthReport(BaseModel):
    """Counts and provenance of one synthesis run; written to ``synth_report.json``."""

    generator_model: str
    mode: str
    groundedness_method: str = Field(description="'judge:<model>' or 'local:lexical+embedding'.")
    relevance_method: str
    embedder: str
    categories: int
    empty_categories: list[str] = Field(
        default_factory=list, description="TOC categories without any text to ask about."
    )
    generated: int = Field(description="Question slots planned (= kept + rejected).")
    kept: int
    train: int
    eval: int
    rejected: int
    rejected_by_reason: dict[str, int]
    rejected_by_stage: dict[str, int]
    kept_share: float = Field(0.0, description="kept / generated.")
    repairs: dict[str, int] = Field(
        default_factory=dict, description="Repairs in the kept items, by 'question:<name>' / 'answer:<name>'."
    )
    items_repaired: int = Field(0, description="Kept items with at least one repair.")
    retried: int = Field(0, description="Slots rejected once and retried with another seed.")
    kept_after_retry: int = Field(0, description="Retried slots that ended kept.")
    retried_by_reason: dict[str, int] = Field(
        default_factory=dict, description="First-attempt rejections that were retried, by 'stage/reason'."
    )
    per_category: dict[str, CategoryCounts]
    answers_citing_context: int = Field(
        0, description="Kept answers whose citations name at least one of their context chunks."
    )
    cache_hits: int
    cache_misses: int
    llm_stats: dict[str, dict[str, int]] = Field(description="ChatModel.stats per role (generator, judge).")
    ledger: dict[str, dict[str, Any]]
    templates: dict[str, str]
    token_counter: str = Field(description="How token statistics were counted.")
    question_tokens: TokenStats
    answer_tokens: TokenStats
    files: dict[str, str]
    elapsed_s: float
    eval_knowledge: int = Field(0, description="Reworded training questions kept in eval_knowledge.jsonl.")
    knowledge_rejected_by_reason: dict[str, int] = Field(
        default_factory=dict, description="Rewordings not kept, by reason (see ragtune.synth.paraphrase)."
    )
