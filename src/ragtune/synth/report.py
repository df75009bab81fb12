"""What the synthesis stage writes besides the dataset: ``rejected.jsonl`` lines, the report, the card.

The stage report model (``SynthReport``) lives in :mod:`ragtune.core.reports.synth`, since the
registry reads it too; here it is filled in from the run's candidates, and the dataset card is
rendered from it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from ragtune.core.artifacts import DatasetDir
from ragtune.core.llm import ChatModel
from ragtune.core.records import InstructionItem
from ragtune.core.reports.synth import CategoryCounts, SynthReport
from ragtune.core.templates import Template
from ragtune.synth.categories import Category
from ragtune.synth.dataset import TokenCounter, card_front_matter, token_stats

if TYPE_CHECKING:
    from ragtune.core.config import SynthConfig
    from ragtune.synth.candidate import Candidate


class RejectedItem(BaseModel):
    """One slot that did not become a dataset item, with why (a line of ``rejected.jsonl``)."""

    model_config = ConfigDict(extra="forbid")

    slot_id: str = Field(description="source_chunk_id:question_type:repeat — unique per run.")
    stage: str = Field(
        description="question, dedup, retrieval, answer, grounding, relevance or faithfulness."
    )
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
    provenance: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "As a kept item's: 'answer_mode' once answered, and 'support' (per answer sentence, as"
            " SentenceSupport) once the faithfulness check ran."
        ),
    )


DATASET_FILES = {
    "train": DatasetDir.TRAIN,
    "eval": DatasetDir.EVAL,
    "rejected": DatasetDir.REJECTED,
    "train_alpaca": DatasetDir.TRAIN_ALPACA,
    "eval_alpaca": DatasetDir.EVAL_ALPACA,
    "card": DatasetDir.CARD,
}


@dataclass(frozen=True)
class RunInfo:
    """What the report says about how the run was made (models, methods, templates)."""

    generator_model: str
    mode: str
    answer_mode: str
    groundedness_method: str
    relevance_method: str
    faithfulness_method: str
    embedder: str
    models: Mapping[str, ChatModel]
    templates: dict[str, str]
    token_counter: tuple[str, TokenCounter]


@dataclass(frozen=True)
class Outcome:
    """The run's slots and where each ended."""

    categories: Sequence[Category]
    candidates: Sequence[Candidate]
    train: Sequence[InstructionItem]
    evaluation: Sequence[InstructionItem]
    rejected: Sequence[RejectedItem]
    knowledge: Sequence[InstructionItem] | None = None  # None: the knowledge eval set was not written
    knowledge_rejected: Counter[str] | None = None

    @property
    def kept(self) -> list[Candidate]:
        return [c for c in self.candidates if c.alive]


def category_counts(outcome: Outcome) -> dict[str, CategoryCounts]:
    """Chunks, slots, kept (train/eval) and rejected per category that has text."""
    counts = {c.name: CategoryCounts(chunks=len(c.chunks)) for c in outcome.categories if c.chunks}
    for candidate in outcome.candidates:
        counts[candidate.slot.category].slots += 1
    for items, split in ((outcome.train, "train"), (outcome.evaluation, "eval")):
        for item in items:
            counts[item.category].kept += 1
            setattr(counts[item.category], split, getattr(counts[item.category], split) + 1)
    for rejection in outcome.rejected:
        counts[rejection.category].rejected += 1
    return counts


def faithfulness_counts(candidates: Sequence[Candidate]) -> dict[str, Any]:
    """Slots and sentences checked and passed, over the final attempt of each slot."""
    checked = [c for c in candidates if c.support is not None]
    passed = sum(bool(c.faithful) for c in checked)
    sentences = [s for c in checked for s in c.support or []]
    return {
        "faithfulness_checked": len(checked),
        "faithfulness_passed": passed,
        "faithfulness_pass_rate": round(passed / len(checked), 4) if checked else 0.0,
        "sentences_checked": len(sentences),
        "sentences_supported": sum(s.supported for s in sentences),
    }


def _counts(values: Sequence[str]) -> dict[str, int]:
    return dict(Counter(values).most_common())


def _llm_usage(models: Mapping[str, ChatModel]) -> dict[str, Any]:
    stats = {role: model.stats for role, model in models.items()}
    return {
        "cache_hits": sum(st.get("cache_hits", 0) for st in stats.values()),
        "cache_misses": sum(st.get("cache_misses", 0) for st in stats.values()),
        "llm_stats": stats,
        "ledger": {role: model.ledger.to_dict() for role, model in models.items()},
    }


def build_report(info: RunInfo, outcome: Outcome, elapsed_s: float) -> SynthReport:
    """The ``synth_report.json`` of a finished run."""
    kept, candidates, rejected = outcome.kept, outcome.candidates, outcome.rejected
    counter_name, count_tokens = info.token_counter
    items = [*outcome.train, *outcome.evaluation]
    return SynthReport(
        generator_model=info.generator_model,
        mode=info.mode,
        answer_mode=info.answer_mode,
        groundedness_method=info.groundedness_method,
        relevance_method=info.relevance_method,
        faithfulness_method=info.faithfulness_method,
        embedder=info.embedder,
        categories=len(outcome.categories),
        empty_categories=[c.name for c in outcome.categories if not c.chunks],
        generated=len(candidates),
        kept=len(items),
        train=len(outcome.train),
        eval=len(outcome.evaluation),
        rejected=len(rejected),
        rejected_by_reason=_counts([r.reason for r in rejected]),
        rejected_by_stage=_counts([r.stage for r in rejected]),
        kept_share=round(len(items) / len(candidates), 4) if candidates else 0.0,
        repairs=_counts([name for c in kept for name in c.repairs]),
        items_repaired=sum(bool(c.repairs) for c in kept),
        retried=sum(c.attempt > 0 for c in candidates),
        kept_after_retry=sum(c.attempt > 0 for c in kept),
        retried_by_reason=_counts([c.retry_of for c in candidates if c.retry_of]),
        per_category=category_counts(outcome),
        answers_citing_context=sum(bool(c.citations) for c in kept),
        templates=info.templates,
        token_counter=counter_name,
        question_tokens=token_stats([count_tokens(i.question) for i in items]),
        answer_tokens=token_stats([count_tokens(i.answer) for i in items]),
        files=DATASET_FILES
        | ({"eval_knowledge": DatasetDir.EVAL_KNOWLEDGE} if outcome.knowledge is not None else {}),
        eval_knowledge=len(outcome.knowledge or []),
        knowledge_rejected_by_reason=dict((outcome.knowledge_rejected or Counter()).most_common()),
        elapsed_s=round(elapsed_s, 3),
        **faithfulness_counts(candidates),
        **_llm_usage(info.models),
    )


def render_card(
    template: Template, report: SynthReport, settings: SynthConfig, name: str, outcome: Outcome
) -> str:
    """The dataset card (``README.md``) from the report and the settings."""
    return template.render(
        front_matter=card_front_matter(bool(outcome.train), bool(outcome.evaluation)),
        name=name,
        r=report,
        s=settings,
        rejections=Counter((r.stage, r.reason) for r in outcome.rejected).most_common(),
    )


def summary_line(report: SynthReport) -> str:
    """The one log line a run ends with."""
    reasons = ", ".join(f"{n} {reason}" for reason, n in report.rejected_by_reason.items()) or "none"
    return (
        f"synth: {report.generated} slots -> {report.train} train, {report.eval} eval, {report.rejected}"
        f" rejected ({reasons}); answers {report.answer_mode}, faithfulness pass rate"
        f" {report.faithfulness_pass_rate} of {report.faithfulness_checked};"
        f" LLM cache {report.cache_hits} hits, {report.cache_misses} misses"
    )
