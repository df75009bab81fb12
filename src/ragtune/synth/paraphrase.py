"""The knowledge-injection eval set: new questions about facts the training set covers.

The generalization set (``eval.jsonl``) asks whether tuning helps on sources it never saw. This
set asks the other question: did tuning put the training facts into the model, or only their
sentences? For a seeded sample of ``synth.knowledge_eval_items`` training items, spread over the
categories, the generator rewords the question (``paraphrase`` template); the training item's
answer is kept as the reference. A rewording is rejected when

* the generator fails, or the text fails the question filters the stage applies anyway (length,
  refusal, pointing at its source, a loop, not a question);
* its wording is a near-duplicate of the original: the Jaccard overlap of their word bigrams is at
  or above ``synth.paraphrase_max_overlap`` (a model that memorised the sentence would still pass);
* it asks something else: its embedding cosine with the original question is below
  ``synth.paraphrase_min_similarity`` (a drifted topic, or a copied worked example of the template);
* it no longer asks for the answer: question–answer embedding cosine below
  ``synth.relevance_threshold``, the check every training item passed.

A rejected rewording is asked again with the next seed, up to ``synth.paraphrase_attempts`` times;
the report counts each item that never passed by the reason of its last attempt.

Kept ones are written to ``eval_knowledge.jsonl`` with ``provenance.paraphrase_of`` naming the
training item; the counts go into ``synth_report.json``. No leakage check applies to this set:
its answers are in training on purpose.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ragtune.core.artifacts import DatasetDir
from ragtune.core.config import SynthConfig
from ragtune.core.llm import ChatModel, ChatRequest, LLMFailure
from ragtune.core.records import InstructionItem, sha256_hex
from ragtune.core.templates import Template
from ragtune.synth import filters
from ragtune.synth.dataset import item_id_for
from ragtune.synth.prompts import QUESTION_PREFILL, QuestionReply

log = logging.getLogger(__name__)

TEMPLATE = "paraphrase"
NEAR_DUPLICATE_WORDING = "near_duplicate_wording"
CHANGED_MEANING = "changed_meaning"
_WORD = re.compile(r"\w+")

TextCheck = Callable[[str], tuple[str, str] | None]
"""The stage's shared text checks of a question: ``(reason, detail)`` of the first failure, or None."""


def wording_overlap(first: str, second: str) -> float:
    """Jaccard overlap of the two texts' lower-cased word bigrams (1.0: the same wording)."""

    def bigrams(text: str) -> set[tuple[str, str]]:
        words = _WORD.findall(text.lower())
        return set(itertools.pairwise(words)) or {(w, "") for w in words}

    a, b = bigrams(first), bigrams(second)
    return len(a & b) / len(a | b) if a | b else 1.0


def sample_items(items: Sequence[InstructionItem], count: int, seed: int) -> list[InstructionItem]:
    """``count`` items, one category after another in turn, each category in a seeded order."""
    queues: dict[str, list[InstructionItem]] = {}
    for item in sorted(items, key=lambda i: sha256_hex(f"{seed}:{i.item_id}")):
        queues.setdefault(item.category, []).append(item)
    chosen: list[InstructionItem] = []
    while len(chosen) < count and any(queues.values()):
        for category in sorted(queues):
            if queues[category] and len(chosen) < count:
                chosen.append(queues[category].pop(0))
    return chosen


@dataclass(frozen=True)
class Paraphraser:
    """What rewording needs from the synthesis run: its generator, template, embedder and checks."""

    generator: ChatModel
    template: Template
    embed: Callable[[Sequence[str]], np.ndarray]
    check: TextCheck
    settings: SynthConfig
    seed: int
    seed_step: int
    temperature: float
    max_tokens: int

    @property
    def attempts(self) -> int:
        """``synth.paraphrase_attempts``, or one at temperature 0 (another seed, the same reply)."""
        return self.settings.paraphrase_attempts if self.temperature > 0 else 1

    def request(self, question: str, attempt: int = 0) -> ChatRequest:
        return ChatRequest(
            messages=[{"role": "user", "content": self.template.render(question=question)}],
            prefill=QUESTION_PREFILL,
            json_mode=True,
            seed=self.seed + attempt * self.seed_step,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
        )

    def problem(self, original: InstructionItem, question: str) -> str | None:
        """Why ``question``'s text is no rewording of ``original`` for this set (its reason), or None."""
        found = self.check(question)
        if found is not None:
            return found[0]
        if not filters.is_question(question):
            return filters.NOT_A_QUESTION
        if wording_overlap(question, original.question) >= self.settings.paraphrase_max_overlap:
            return NEAR_DUPLICATE_WORDING
        return None

    def meaning_problems(self, candidates: Sequence[tuple[InstructionItem, str]]) -> list[str | None]:
        """Per candidate: does it still ask the original's question, and does the answer still answer it?"""
        if not candidates:
            return []
        n = len(candidates)
        vectors = self.embed(
            [q for _, q in candidates]
            + [i.question for i, _ in candidates]
            + [i.answer for i, _ in candidates]
        )
        problems: list[str | None] = []
        for new, old, answer in zip(vectors[:n], vectors[n : 2 * n], vectors[2 * n :], strict=True):
            if filters.cosine(new, old) < self.settings.paraphrase_min_similarity:
                problems.append(CHANGED_MEANING)
            elif filters.cosine(new, answer) < self.settings.relevance_threshold:
                problems.append(filters.IRRELEVANT)
            else:
                problems.append(None)
        return problems

    def attempt(
        self, items: Sequence[InstructionItem], attempt: int
    ) -> tuple[list[InstructionItem], dict[str, str]]:
        """One rewording per item: the kept eval items, and the reason each other item failed by id."""
        replies = self.generator.structured_many(
            [self.request(item.question, attempt) for item in items],
            QuestionReply,
            desc=f"synth: paraphrases (attempt {attempt + 1})",
        )
        failed: dict[str, str] = {}
        candidates: list[tuple[InstructionItem, str]] = []
        for item, reply in zip(items, replies, strict=True):
            if isinstance(reply, LLMFailure):
                failed[item.item_id] = filters.failure_reason(reply)
                continue
            question = " ".join(reply.question.split())
            reason = self.problem(item, question)
            if reason is None:
                candidates.append((item, question))
            else:
                failed[item.item_id] = reason
        kept = []
        for (item, question), reason in zip(candidates, self.meaning_problems(candidates), strict=True):
            if reason is None:
                kept.append(knowledge_item(item, question, self.template.ref))
            else:
                failed[item.item_id] = reason
        return kept, failed

    def reword(self, items: Sequence[InstructionItem]) -> tuple[list[InstructionItem], Counter[str]]:
        """The kept rewordings of ``items`` as eval items, and the rejections by their last reason.

        An item whose rewording fails is asked again with the next seed, up to ``attempts`` times.
        """
        kept: list[InstructionItem] = []
        pending, failed = list(items), dict[str, str]()
        for attempt in range(self.attempts):
            if not pending:
                break
            found, failed = self.attempt(pending, attempt)
            kept += found
            pending = [item for item in pending if item.item_id in failed]
        return kept, Counter(failed[item.item_id] for item in pending)


def knowledge_item(original: InstructionItem, question: str, template_ref: str) -> InstructionItem:
    """``original`` asked with ``question``: same answer, contexts and source, new id and messages."""
    messages = [{**m, "content": question} if m.get("role") == "user" else dict(m) for m in original.messages]
    provenance = original.provenance.model_copy(
        update={"question_template": template_ref, "paraphrase_of": original.item_id}
    )
    return original.model_copy(
        update={
            "item_id": item_id_for(question, original.provenance.source_chunk_id),
            "question": question,
            "messages": messages,
            "provenance": provenance,
        }
    )


def write_knowledge_set(
    paraphraser: Paraphraser, out_dir: DatasetDir, train: Sequence[InstructionItem], enabled: bool = True
) -> tuple[list[InstructionItem], Counter[str]]:
    """Reword a sample of ``train`` into ``eval_knowledge.jsonl``; the items kept and the rejections.

    Not ``enabled`` (a shard of a sharded run, whose training split is not final): nothing is written.
    """
    if not enabled:
        return [], Counter()
    chosen = sample_items(train, paraphraser.settings.knowledge_eval_items, paraphraser.seed)
    kept, rejected = paraphraser.reword(chosen) if chosen else ([], Counter())
    out_dir.write("eval_knowledge", kept)
    log.info(
        "synth: knowledge eval set %d of %d reworded training questions (%s rejected)",
        len(kept),
        len(kept) + sum(rejected.values()),
        ", ".join(f"{n} {reason}" for reason, n in rejected.most_common()) or "none",
    )
    return kept, rejected
