"""Writing the instruction dataset: chat JSONL, Alpaca JSONL, token statistics and the card."""

from __future__ import annotations

import json
import logging
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ragtune.core.artifacts import DatasetDir
from ragtune.core.config import LLMEndpoint
from ragtune.core.fsutil import atomic_write_lines
from ragtune.core.records import ContextChunk, InstructionItem, Provenance, SentenceSupport, sha256_hex
from ragtune.core.reports.synth import TokenStats
from ragtune.synth.categories import Slot

log = logging.getLogger(__name__)

TokenCounter = Callable[[str], int]


def item_id_for(question: str, source_chunk_id: str) -> str:
    """Stable id of a kept item: hash of its question and source chunk."""
    return sha256_hex(json.dumps([question, source_chunk_id], ensure_ascii=False))[:20]


def make_item(
    slot: Slot,
    question: str,
    answer: str,
    contexts: Sequence[ContextChunk],
    system_prompt: str,
    generator_model: str,
    templates: dict[str, str],
    repairs: Sequence[str] = (),
    retry_of: str | None = None,
    answer_mode: str | None = None,
    support: Sequence[SentenceSupport] | None = None,
) -> InstructionItem:
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return InstructionItem(
        item_id=item_id_for(question, slot.chunk.chunk_id),
        category=slot.category,
        question_type=slot.question_type,
        question=question,
        answer=answer,
        context=list(contexts),
        messages=messages,
        provenance=Provenance(
            doc_id=slot.chunk.doc_id,
            section_path=slot.chunk.section_path,
            source_chunk_id=slot.chunk.chunk_id,
            context_chunk_ids=[c.chunk_id for c in contexts],
            generator_model=generator_model,
            question_template=templates["question"],
            answer_template=templates["answer"],
            repairs=list(repairs),
            attempts=1 if retry_of is None else 2,
            retry_of=retry_of,
            answer_mode=answer_mode,
            support=list(support) if support is not None else None,
        ),
    )


def alpaca_row(item: InstructionItem) -> dict[str, str]:
    """Alpaca format: the question as instruction, no input (closed-book), the answer as output."""
    return {"instruction": item.question, "input": "", "output": item.answer}


def write_alpaca(path: Path, items: Sequence[InstructionItem]) -> int:
    return atomic_write_lines(path, (json.dumps(alpaca_row(item), ensure_ascii=False) for item in items))


def whitespace_tokens(text: str) -> int:
    return len(text.split())


def token_counter_for(endpoint: LLMEndpoint) -> tuple[str, TokenCounter]:
    """The generator's own tokenizer where it is local, else a whitespace word count; and its name."""
    if endpoint.base_url is None:
        try:
            from transformers import AutoTokenizer

            from ragtune.core.models import resolve_causal_lm_path

            tokenizer = AutoTokenizer.from_pretrained(resolve_causal_lm_path(endpoint.model))
            return (
                f"tokenizer of {endpoint.model}",
                lambda text: len(tokenizer.encode(text, add_special_tokens=False)),
            )
        except Exception as err:  # token statistics are informative only
            log.warning("cannot load the tokenizer of %s (%s); counting words", endpoint.model, err)
    return "whitespace-separated words", whitespace_tokens


def token_stats(lengths: Sequence[int]) -> TokenStats:
    if not lengths:
        return TokenStats()
    return TokenStats(
        count=len(lengths),
        mean=round(statistics.fmean(lengths), 1),
        median=float(statistics.median(lengths)),
        min=min(lengths),
        max=max(lengths),
    )


def card_front_matter(has_train: bool, has_eval: bool) -> str:
    """Hugging Face dataset-card YAML so ``load_dataset(<folder>)`` finds the splits."""
    files: list[dict[str, Any]] = []
    if has_train:
        files.append({"split": "train", "path": DatasetDir.TRAIN})
    if has_eval:
        files.append({"split": "eval", "path": DatasetDir.EVAL})
    if not files:
        return ""
    lines = ["---", "configs:", "- config_name: default", "  data_files:"]
    for entry in files:
        lines += [f"  - split: {entry['split']}", f"    path: {entry['path']}"]
    lines.append("---")
    return "\n".join(lines) + "\n"
