"""The synthesis stage: documents + index in, an instruction dataset out.

Steps (each slot — one chunk, one question type — ends kept or rejected with its stage and reason):

1. categories from the table of contents, and the quota of question slots per category
   (:mod:`.categories`);
2. one question per slot from its chunk (``question`` template, JSON with prefill), mechanically
   repaired (:mod:`.repairs`: a lead-in such as "According to the passage," dropped, the question
   mark fixed, an answer written after the question cut); rejected: LLM failure, malformed,
   budget, refusal, pointing at its source ("the passage"), length, not a question; then exact
   and near-duplicate questions (the first kept) — before answering, so duplicates cost no answer
   call;
3. retrieval of ``top_k`` chunks per question, from its own side of the holdout only
   (:mod:`.holdout`: units held out for eval are chosen from the slot plan first);
4. one answer per question from that context only (``answer`` template), with citations, repaired
   likewise (lead-in, inline chunk ids, repeated sentences, a sentence cut off by the token cap);
   rejected: LLM failure, refusal / "not in the context", pointing at its source, length;
   — or, in extractive mode (``synth.answer_mode``), the retrieved chunks' own sentences that
   answer the question (:mod:`.extractive`);
5. groundedness — an LLM judge with the ``judge_grounded`` rubric where ``llm.judge.base_url`` is
   set, else lexical overlap + embedding similarity — question–answer relevance, and faithfulness
   per answer sentence (:mod:`.faithfulness`: each sentence aligned with a sentence of its cited
   chunks, its numbers, quantifiers, negations and names found there; plus the judge's entailment
   verdict where a judge is set);
6. one more attempt, with another seed, for each slot rejected at steps 2–5 for what its text
   said (``synth.retry_rejected``; not for LLM failures, the budget or an empty retrieval): a new
   question when the question failed, else a new answer to the same question; the retry passes
   the same filters, and its questions are deduplicated against every question already kept;
7. the split: items about held-out sources (and their near-duplicates) to eval (:mod:`.split`), then
   ``train.jsonl``, ``eval.jsonl`` (chat), Alpaca twins, ``rejected.jsonl``, ``README.md`` (the
   dataset card) and ``synth_report.json``.

Every LLM response is cached as it arrives (see :mod:`ragtune.core.llm`), and requests depend only
on their inputs (:mod:`.prompts`), so a rerun or a restart after a crash makes no call twice, and
after a document changes only the requests that read it miss the cache.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
from pydantic import BaseModel

from ragtune.core.artifacts import DatasetDir
from ragtune.core.cache import ContentCache
from ragtune.core.config import LLMEndpoint, RagtuneConfig
from ragtune.core.embedding import embed_cached, embedding_cache
from ragtune.core.errors import RagtuneError
from ragtune.core.facts import Lexicon, build_lexicon
from ragtune.core.fsutil import atomic_write_text
from ragtune.core.llm import (
    ChatModel,
    ChatRequest,
    LLMFailure,
    open_chat_model,
    shared_ledger,
)
from ragtune.core.records import (
    Chunk,
    ContextChunk,
    Document,
    InstructionItem,
    read_jsonl,
    sha256_hex,
    write_jsonl,
)
from ragtune.core.reports.synth import SynthReport
from ragtune.index import Retriever, load_retriever
from ragtune.synth import extractive, faithfulness, filters
from ragtune.synth.candidate import Candidate
from ragtune.synth.categories import Category, build_categories, plan_slots
from ragtune.synth.dataset import make_item, token_counter_for, write_alpaca
from ragtune.synth.holdout import held_out_sides, retrieve_on_side
from ragtune.synth.paraphrase import TEMPLATE as PARAPHRASE_TEMPLATE
from ragtune.synth.paraphrase import Paraphraser, write_knowledge_set
from ragtune.synth.prompts import (
    AnswerReply,
    EntailmentReply,
    JudgeReply,
    QuestionReply,
    answer_request,
    entailment_request,
    judge_request,
    question_request,
    resolve_citations,
    synth_templates,
)
from ragtune.synth.repairs import repair_answer, repair_question
from ragtune.synth.report import Outcome, RejectedItem, RunInfo, build_report, render_card, summary_line
from ragtune.synth.split import Sides, SplitItem, split_held

log = logging.getLogger(__name__)

TRAIN_FILE = DatasetDir.TRAIN
EVAL_FILE = DatasetDir.EVAL
REJECTED_FILE = DatasetDir.REJECTED
TRAIN_ALPACA_FILE = DatasetDir.TRAIN_ALPACA
EVAL_ALPACA_FILE = DatasetDir.EVAL_ALPACA
CARD_FILE = DatasetDir.CARD
LLM_CACHE_NAMESPACE = "llm"
LOCAL_GROUNDEDNESS = "local:lexical+embedding"

S = TypeVar("S", bound=BaseModel)

# Seed offset of a retry: far from the per-repeat offsets (slot.repeat), so no two attempts share a seed.
RETRY_SEED_STEP = 100_003
QUESTION_STAGES = frozenset({"question", "dedup"})
ANSWER_STAGES = frozenset({"answer", "grounding", "relevance", "faithfulness"})
GENERATE, EXTRACTIVE = "generate", "extractive"
LOCAL_FAITHFULNESS = "terms+embedding"
# Failures another seed cannot fix: the transport already retried, the budget is spent.
NOT_RETRIED = frozenset({filters.LLM_FAILURE, filters.BUDGET})


__all__ = ["Candidate", "SynthInvariantError", "run_synth"]


class SynthInvariantError(RagtuneError):
    """A slot was lost or counted twice (a bug, never bad input)."""


def generator_endpoint(config: RagtuneConfig) -> LLMEndpoint:
    """The endpoint that writes questions and answers (see ``SynthConfig.mode``).

    teacher: ``llm.generator`` as configured. self: ``llm.generator`` when it has a ``base_url``
    (serve the model to be tuned there), else the local backend running ``train.base_model``
    (the packaged 'smollm2', a local folder or a hub id; serve an ``s3://`` base model instead).
    """
    generator = config.llm.generator
    if config.synth.mode == "teacher" or generator.base_url:
        return generator
    return generator.model_copy(update={"model": config.train.base_model})


def resolve_answer_mode(config: RagtuneConfig) -> str:
    """``synth.answer_mode``, with auto resolved: extractive for a local model, generate for an endpoint."""
    mode = config.synth.answer_mode
    if mode == "auto":
        return GENERATE if generator_endpoint(config).base_url else EXTRACTIVE
    return mode


def text_problem(text: str, min_chars: int, max_chars: int) -> tuple[str, str] | None:
    """The first of the checks questions and answers share, as ``(reason, detail)``, or None.

    A refusal, a reference to "the passage", a length outside the bounds, or a loop (a run of
    words written twice).
    """
    phrase = filters.refusal_phrase(text)
    if phrase is not None:
        return filters.REFUSAL, phrase
    reference = filters.source_reference(text)
    if reference is not None:
        return filters.MENTIONS_SOURCE, reference
    problem = filters.length_problem(text, min_chars, max_chars)
    if problem is not None:
        return problem, f"{len(text)} characters"
    run = filters.repeated_run(text)
    if run is not None:
        return filters.REPETITIVE, f"repeats {run!r}"
    return None


class _Synthesis:
    """One run's state; each method is one step of the module docstring."""

    def __init__(self, config: RagtuneConfig, retriever: Retriever, budget_scope: str) -> None:
        self.config = config
        self.settings = config.synth
        self.retriever = retriever
        self.templates = synth_templates(self.settings.templates_dir)
        self.question_template = self.templates.get("question")
        self.answer_template = self.templates.get("answer")
        self.system_prompt = self.templates.get("system").render()
        self.embedding_cache = embedding_cache(config)
        llm_cache = ContentCache(self.embedding_cache.storage, LLM_CACHE_NAMESPACE)
        self.endpoint = generator_endpoint(config)
        self.generator: ChatModel = open_chat_model(
            self.endpoint,
            llm_cache,
            shared_ledger("synth", self.endpoint, self.embedding_cache.storage, budget_scope),
            local_threads=config.llm.local_threads,
            seed=config.run.seed,
            local_batch_size=config.llm.local_batch_size,
            local_stop_repeats=config.llm.local_stop_repeats,
        )
        self.judge: ChatModel | None = None
        if config.llm.judge.base_url:
            self.judge = open_chat_model(
                config.llm.judge,
                llm_cache,
                shared_ledger("synth-judge", config.llm.judge, self.embedding_cache.storage, budget_scope),
                local_threads=config.llm.local_threads,
                seed=config.run.seed,
            )
            self.judge_template = self.templates.get("judge_grounded")
        self.groundedness_method = (
            f"judge:{self.judge.name}" if self.judge is not None else LOCAL_GROUNDEDNESS
        )
        self.answer_mode = resolve_answer_mode(config)
        self.faithfulness_method = self._load_faithfulness_templates()
        self.prompt_refs = self.templates.refs()  # the prompts; the card template is loaded next
        self.card_template = self.templates.get("card.md")
        self.by_id: dict[str, Candidate] = {}
        self.sides = Sides(self.settings.holdout, frozenset())
        self._lexicon: Lexicon | None = None

    def _load_faithfulness_templates(self) -> str:
        """Load the prompts extractive answers and the entailment judge need; the method's name."""
        if self.answer_mode == EXTRACTIVE and self.settings.extractive_choice == "model":
            self.extract_template = self.templates.get("extract")
        if not self.settings.faithfulness:
            return "off"
        if self.judge is None:
            return LOCAL_FAITHFULNESS
        self.entailment_template = self.templates.get("judge_entailment")
        return f"{LOCAL_FAITHFULNESS}+judge:{self.judge.name}"

    @property
    def lexicon(self) -> Lexicon:
        """Condition and treatment names of the whole corpus (its chunks and headings), built once."""
        if self._lexicon is None:
            chunks = list(self.retriever.chunks.values())
            self._lexicon = build_lexicon(
                [c.text for c in chunks] + [" ".join(c.section_path) for c in chunks]
            )
        return self._lexicon

    def track(self, candidates: Sequence[Candidate]) -> None:
        """Remember this run's candidates by slot id (the retry's dedup looks earlier ones up)."""
        self.by_id = {c.slot.slot_id: c for c in candidates}

    # -- helpers -----------------------------------------------------------------------------------

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return embed_cached(self.retriever.embedder, texts, self.embedding_cache, progress=False)

    def reject(
        self,
        candidate: Candidate,
        stage: str,
        reason: str,
        detail: str = "",
        raw: str | None = None,
        duplicate_of: str | None = None,
    ) -> None:
        slot = candidate.slot
        if candidate.rejected is not None:
            raise SynthInvariantError(
                f"synth: slot {slot.slot_id} rejected twice ({stage} after {candidate.rejected.stage})"
            )
        candidate.rejected = RejectedItem(
            slot_id=slot.slot_id,
            stage=stage,
            reason=reason,
            detail=detail,
            category=slot.category,
            question_type=slot.question_type,
            doc_id=slot.chunk.doc_id,
            section_path=slot.chunk.section_path,
            source_chunk_id=slot.chunk.chunk_id,
            question=candidate.question or None,
            answer=candidate.answer or None,
            raw=raw,
            context_chunk_ids=[c.chunk_id for c in candidate.contexts],
            duplicate_of=duplicate_of,
            scores=dict(candidate.scores),
            generator_model=self.generator.name,
            templates=self.prompt_refs,
            repairs=list(candidate.repairs),
            attempts=candidate.attempt + 1,
            retry_of=candidate.retry_of,
            provenance=self.answer_provenance(candidate),
        )

    def answer_provenance(self, candidate: Candidate) -> dict[str, object]:
        """``answer_mode`` once the slot has an answer, ``support`` once its sentences were checked."""
        found: dict[str, object] = {}
        if candidate.answer:
            found["answer_mode"] = self.answer_mode
        if candidate.support is not None:
            found["support"] = [s.model_dump() for s in candidate.support]
        return found

    def structured(
        self,
        model: ChatModel,
        candidates: list[Candidate],
        requests: list[ChatRequest],
        schema: type[S],
        stage: str,
        desc: str,
    ) -> list[tuple[Candidate, S]]:
        """Ask ``model``; reject failures (with the raw reply of a malformed one); pair the rest."""
        replies = model.structured_many(requests, schema, desc=desc)
        answered: list[tuple[Candidate, S]] = []
        for candidate, reply in zip(candidates, replies, strict=True):
            if isinstance(reply, LLMFailure):
                reason = filters.failure_reason(reply)
                raw = reply.raw if reason == filters.MALFORMED else None
                self.reject(candidate, stage, reason, detail=reply.reason, raw=raw)
            else:
                answered.append((candidate, reply))
        return answered

    # -- steps ---------------------------------------------------------------------------------------

    def ask_questions(self, candidates: list[Candidate]) -> None:
        s = self.settings
        candidates = issue_order(candidates, "question")
        requests = [
            question_request(
                self.question_template,
                c.slot.chunk,
                c.slot.question_type,
                seed=self.config.run.seed + c.slot.repeat + c.attempt * RETRY_SEED_STEP,
                temperature=self.endpoint.temperature,
                max_tokens=min(s.question_max_tokens, self.endpoint.max_tokens),
            )
            for c in candidates
        ]
        for candidate, reply in self.structured(
            self.generator, candidates, requests, QuestionReply, "question", "synth: questions"
        ):
            candidate.question = " ".join(reply.question.split())
            if s.repairs:
                candidate.question, applied = repair_question(candidate.question)
                candidate.repairs += [f"question:{name}" for name in applied]
            problem = text_problem(candidate.question, s.min_question_chars, s.max_question_chars)
            if problem is not None:
                self.reject(candidate, "question", problem[0], detail=problem[1])
            elif not filters.is_question(candidate.question):
                self.reject(
                    candidate, "question", filters.NOT_A_QUESTION, detail="no '?' and no question word"
                )
            elif (dangling := filters.dangling_end(candidate.question)) is not None:
                self.reject(candidate, "question", filters.UNFINISHED, detail=f"stops on {dangling!r}")

    def drop_duplicates(
        self, candidates: list[Candidate], kept_before: dict[str, np.ndarray] | None = None
    ) -> dict[str, np.ndarray]:
        """Reject exact and near-duplicate questions; return the question vectors of those kept.

        ``kept_before`` (slot id -> question vector) holds questions kept earlier: a new question
        that duplicates one of them is rejected too (the retry's questions meet the first pass's).
        """
        alive = [c for c in candidates if c.alive]
        if not alive:
            return {}
        before = kept_before or {}
        earlier = [self.by_id[slot_id] for slot_id in before]
        vectors = self.embed([c.question for c in alive])
        everyone = earlier + alive
        pool = (
            np.concatenate([np.stack([before[c.slot.slot_id] for c in earlier]), vectors])
            if earlier
            else vectors
        )
        found = filters.find_duplicates([c.question for c in everyone], pool, self.settings.dedup_threshold)[
            len(earlier) :
        ]
        kept: dict[str, np.ndarray] = {}
        for candidate, vector, duplicate in zip(alive, vectors, found, strict=True):
            if duplicate is None:
                kept[candidate.slot.slot_id] = vector
                continue
            original = everyone[duplicate.index]
            candidate.scores["question_similarity"] = duplicate.similarity
            self.reject(
                candidate,
                "dedup",
                duplicate.reason,
                detail=f"cosine {duplicate.similarity} with {original.question!r}",
                duplicate_of=original.slot.slot_id,
            )
        return kept

    def retrieve(self, candidates: list[Candidate]) -> None:
        alive = [c for c in candidates if c.alive]
        results = retrieve_on_side(
            self.retriever,
            self.sides,
            [c.slot.chunk for c in alive],
            [c.question for c in alive],
            self.settings.top_k,
        )
        for candidate, hits in zip(alive, results, strict=True):
            candidate.contexts = [hit.chunk for hit in hits]
            candidate.scores["retrieval_top"] = round(hits[0].score, 4) if hits else 0.0
            if not hits:
                self.reject(candidate, "retrieval", filters.NO_CONTEXT, detail="the index returned no chunk")

    def answer(self, candidates: list[Candidate]) -> None:
        """Step 4: answers written by the generator, or extracted (``synth.answer_mode``); then checked."""
        if self.answer_mode == EXTRACTIVE:
            self.extract(candidates)
        else:
            self.generate(candidates)
        s = self.settings
        for candidate in candidates:
            if not candidate.alive or not candidate.answer:
                continue
            problem = text_problem(candidate.answer, s.min_answer_chars, s.max_answer_chars)
            if problem is None and filters.is_unfinished(candidate.answer):
                problem = filters.UNFINISHED, f"ends {candidate.answer[-40:]!r}"
            if problem is not None:
                self.reject(candidate, "answer", problem[0], detail=problem[1])

    def generate(self, candidates: list[Candidate]) -> None:
        s = self.settings
        alive = issue_order([c for c in candidates if c.alive], "answer")
        requests = [
            answer_request(
                self.answer_template,
                c.question,
                c.contexts,
                seed=self.config.run.seed + c.attempt * RETRY_SEED_STEP,
                temperature=s.answer_temperature,
                max_tokens=self.endpoint.max_tokens,
            )
            for c in alive
        ]
        for candidate, reply in self.structured(
            self.generator, alive, requests, AnswerReply, "answer", "synth: answers"
        ):
            candidate.answer = reply.answer.strip()
            if s.repairs:
                candidate.answer, applied = repair_answer(candidate.answer, s.min_answer_chars)
                candidate.repairs += [f"answer:{name}" for name in applied]
            candidate.citations = resolve_citations(reply.citations, candidate.contexts)
            if not candidate.answer:
                self.reject(candidate, "answer", filters.TOO_SHORT, detail="0 characters")

    def extract(self, candidates: list[Candidate]) -> None:
        """Extractive answers: each question's best-scored complete sentences of its retrieved chunks."""
        alive = [c for c in candidates if c.alive]
        sources = [
            [
                x
                for x in faithfulness.source_sentences(
                    [(k.chunk_id, k.text) for k in same_document(c)], quotes=False
                )
                if extractive.answerable(x)
            ]
            for c in alive
        ]
        questions = self.embed([c.question for c in alive])
        vectors = self.embed_all([[x.text for x in found] for found in sources])
        scores = [v @ q if len(v) else np.zeros(0) for v, q in zip(vectors, questions, strict=True)]
        picks = self.pick_sentences(alive, sources, scores)
        for candidate, found, picked in zip(alive, sources, picks, strict=True):
            picked = extractive.with_antecedents(found, picked)
            if not picked:
                detail = "no complete sentence in the retrieved chunks of the question's document"
                self.reject(candidate, "answer", filters.NO_CONTEXT, detail=detail)
                continue
            extract = extractive.compose(found, picked, [k.chunk_id for k in candidate.contexts])
            candidate.answer, candidate.citations = extract.answer, extract.citations

    def pick_sentences(
        self,
        candidates: list[Candidate],
        sources: list[list[extractive.SourceSentence]],
        scores: list[np.ndarray],
    ) -> list[list[int]]:
        """Which sentences answer each question: by score, or the generator's choice among the best."""
        s = self.settings
        picks = [
            extractive.retrieval_pick(sc, s.extractive_max_sentences, s.extractive_margin) for sc in scores
        ]
        if s.extractive_choice != "model":
            return picks
        listed = [extractive.shortlist(sc, 2 * s.extractive_max_sentences) for sc in scores]
        requests = [
            extractive.choice_request(
                self.extract_template,
                c.question,
                [found[i].text for i in shown],
                seed=self.config.run.seed + c.attempt * RETRY_SEED_STEP,
                max_tokens=min(32, self.endpoint.max_tokens),
            )
            for c, found, shown in zip(candidates, sources, listed, strict=True)
        ]
        replies = self.generator.structured_many(requests, extractive.ChoiceReply, desc="synth: extract")
        for n, (reply, shown) in enumerate(zip(replies, listed, strict=True)):
            chosen = [] if isinstance(reply, LLMFailure) else extractive.model_pick(reply, shown, len(shown))
            picks[n] = chosen[: s.extractive_max_sentences] or picks[n]  # nothing usable: the retrieval pick
        return picks

    def embed_all(self, groups: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Embed every text of every group in one call; the vectors regrouped."""
        flat = [text for group in groups for text in group]
        vectors = self.embed(flat) if flat else np.zeros((0, 1), np.float32)
        out, start = [], 0
        for group in groups:
            out.append(vectors[start : start + len(group)])
            start += len(group)
        return out

    def check_grounding(self, candidates: list[Candidate]) -> None:
        alive = [c for c in candidates if c.alive]
        if not alive:
            return
        threshold = self.settings.groundedness_threshold
        if self.judge is not None:
            requests = [judge_request(self.judge_template, c.question, c.answer, c.contexts) for c in alive]
            for candidate, verdict in self.structured(
                self.judge, alive, requests, JudgeReply, "grounding", "synth: judge"
            ):
                score = filters.judge_groundedness(round(verdict.score))
                candidate.scores["groundedness"] = score
                if score < threshold:
                    self.reject(
                        candidate,
                        "grounding",
                        filters.UNGROUNDED,
                        detail=f"judge score {verdict.score:g}/5 ({score} < {threshold}): {verdict.reason}",
                    )
            return
        answer_vectors = self.embed([c.answer for c in alive])
        scores = []
        for candidate, vector in zip(alive, answer_vectors, strict=True):
            texts = [chunk.text for chunk in candidate.contexts]
            scores.append(filters.local_groundedness(candidate.answer, texts, vector, self.embed(texts)))
        self.reject_below(
            alive,
            scores,
            "groundedness",
            threshold,
            "grounding",
            filters.UNGROUNDED,
            "lexical+embedding support",
        )

    def reject_below(
        self,
        candidates: list[Candidate],
        scores: list[float],
        name: str,
        threshold: float,
        stage: str,
        reason: str,
        what: str,
    ) -> None:
        """Record each candidate's ``name`` score and reject, at ``stage``, those below ``threshold``."""
        for candidate, score in zip(candidates, scores, strict=True):
            candidate.scores[name] = score
            if score < threshold:
                self.reject(candidate, stage, reason, detail=f"{what} {score} < {threshold}")

    def check_relevance(self, candidates: list[Candidate], question_vectors: dict[str, np.ndarray]) -> None:
        alive = [c for c in candidates if c.alive]
        if not alive:
            return
        threshold = self.settings.relevance_threshold
        answer_vectors = self.embed([c.answer for c in alive])
        scores = [
            filters.cosine(question_vectors[c.slot.slot_id], vector)
            for c, vector in zip(alive, answer_vectors, strict=True)
        ]
        self.reject_below(
            alive, scores, "relevance", threshold, "relevance", filters.IRRELEVANT, "question–answer cosine"
        )

    def check_faithfulness(self, candidates: list[Candidate]) -> None:
        """Every answer sentence supported by a sentence of its cited chunks, or the item is rejected."""
        alive = [c for c in candidates if c.alive]
        if not self.settings.faithfulness or not alive:
            return
        s = self.settings
        sentences = [faithfulness.answer_sentences(c.answer) for c in alive]
        sources = [faithfulness.source_sentences([(k.chunk_id, k.text) for k in c.cited]) for c in alive]
        claim_vectors = self.embed_all(sentences)
        source_vectors = self.embed_all([[x.text for x in found] for found in sources])
        for candidate, claims, found, cv, sv in zip(
            alive, sentences, sources, claim_vectors, source_vectors, strict=True
        ):
            candidate.support = faithfulness.check_answer(
                claims, cv, found, sv, self.lexicon, s.faithfulness_threshold, s.faithfulness_window
            )
        if self.judge is not None:
            self.judge_entailment([c for c in alive if c.faithful])
        for candidate in alive:
            support = candidate.support or []
            candidate.scores["faithfulness"] = round(
                sum(x.supported for x in support) / max(1, len(support)), 4
            )
            detail = faithfulness.first_unsupported(support, s.faithfulness_threshold)
            if detail is not None:
                self.reject(candidate, "faithfulness", faithfulness.UNSUPPORTED_CLAIM, detail=detail)

    def judge_entailment(self, candidates: list[Candidate]) -> None:
        """The judge's verdict on each sentence the deterministic check passed; a failed call changes nothing."""
        requests = [
            entailment_request(
                self.entailment_template, [(x.sentence, x.support or "") for x in c.support or []]
            )
            for c in candidates
        ]
        assert self.judge is not None
        replies = self.judge.structured_many(requests, EntailmentReply, desc="synth: entailment")
        for candidate, reply in zip(candidates, replies, strict=True):
            if isinstance(reply, LLMFailure):
                log.warning(
                    "synth: entailment verdict for %s failed: %s", candidate.slot.slot_id, reply.reason
                )
                continue
            candidate.support = [
                x.model_copy(
                    update={"judge": "not entailed", "supported": False}
                    if number in reply.unsupported
                    else {"judge": "entailed"}
                )
                for number, x in enumerate(candidate.support or [], start=1)
            ]

    def answer_and_check(self, candidates: list[Candidate], question_vectors: dict[str, np.ndarray]) -> None:
        """Steps 4 and 5 for the live candidates: answer, then groundedness, relevance and faithfulness."""
        self.answer(candidates)
        self.check_grounding(candidates)
        self.check_relevance(candidates, question_vectors)
        self.check_faithfulness(candidates)

    def retryable(self, rejection: RejectedItem) -> bool:
        """Whether another seed could change the outcome (the step samples, and the text was at fault)."""
        if rejection.reason in NOT_RETRIED:
            return False
        if rejection.stage in QUESTION_STAGES:
            return self.endpoint.temperature > 0
        if self.answer_mode == EXTRACTIVE:  # the same question extracts the same answer
            return False
        return rejection.stage in ANSWER_STAGES and self.settings.answer_temperature > 0

    def retry(self, candidates: list[Candidate], question_vectors: dict[str, np.ndarray]) -> None:
        """Step 6: one more attempt for each retryable rejection, from the step that failed."""
        again = [
            c for c in candidates if c.rejected is not None and c.attempt == 0 and self.retryable(c.rejected)
        ]
        if not again:
            return
        log.info("synth: retrying %d rejected slots with another seed", len(again))
        for candidate in again:
            first = candidate.rejected
            assert first is not None
            candidate.retry_of = f"{first.stage}/{first.reason}"
            candidate.attempt = 1
            candidate.rejected = None
            if first.stage in QUESTION_STAGES:
                candidate.question, candidate.repairs, candidate.scores = "", [], {}
            else:
                candidate.answer, candidate.citations, candidate.support = "", [], None
                candidate.repairs = [r for r in candidate.repairs if r.startswith("question:")]
                for score in ("groundedness", "relevance", "faithfulness"):
                    candidate.scores.pop(score, None)
        reask = [c for c in again if not c.question]
        self.ask_questions(reask)
        question_vectors.update(self.drop_duplicates(reask, question_vectors))
        self.retrieve(reask)
        self.answer_and_check(again, question_vectors)

    def paraphraser(self) -> Paraphraser:
        """The knowledge eval set's rewording, with this run's generator, embedder and question checks."""
        s = self.settings
        return Paraphraser(
            generator=self.generator,
            template=self.templates.get(PARAPHRASE_TEMPLATE),
            embed=self.embed,
            check=lambda text: text_problem(text, s.min_question_chars, s.max_question_chars),
            settings=s,
            seed=self.config.run.seed,
            seed_step=RETRY_SEED_STEP,
            temperature=self.endpoint.temperature,
            max_tokens=min(s.question_max_tokens, self.endpoint.max_tokens),
        )

    def item(self, candidate: Candidate) -> InstructionItem:
        contexts = [
            ContextChunk(chunk_id=c.chunk_id, sha256=sha256_hex(c.text), text=c.text)
            for c in candidate.contexts
        ]
        return make_item(
            candidate.slot,
            candidate.question,
            candidate.answer,
            contexts,
            self.system_prompt,
            self.generator.name,
            self.prompt_refs,
            repairs=candidate.repairs,
            retry_of=candidate.retry_of,
            answer_mode=self.answer_mode,
            support=candidate.support,
        )

    def info(self) -> RunInfo:
        """How this run was made, for the report."""
        models = {"generator": self.generator} | ({"judge": self.judge} if self.judge is not None else {})
        return RunInfo(
            generator_model=self.generator.name,
            mode=self.settings.mode,
            answer_mode=self.answer_mode,
            groundedness_method=self.groundedness_method,
            relevance_method=f"cosine:{self.retriever.embedder.name}",
            faithfulness_method=self.faithfulness_method,
            embedder=self.retriever.embedder.name,
            models=models,
            templates=self.templates.refs(),
            token_counter=token_counter_for(self.endpoint),
        )


def same_document(candidate: Candidate) -> list[Chunk]:
    """The retrieved chunks from the document the question was written from.

    An extractive answer quotes only these: a sentence of another chapter that scores well against
    the question ("serotonergic medication is the main drug treatment", from the OCD chapter, for a
    question on bipolar disorder) would pair a true sentence with a subject it is not about.
    """
    return [chunk for chunk in candidate.contexts if chunk.doc_id == candidate.slot.chunk.doc_id]


def issue_order(candidates: Sequence[Candidate], step: str) -> list[Candidate]:
    """The order requests are sent in: those sharing a prompt prefix next to each other.

    Questions are grouped by source chunk (every question type of a chunk shares the prompt up to
    the type), answers by their retrieved chunks (shared up to the question). An OpenAI-compatible
    server with prefix caching (vLLM's automatic prefix caching) then finds the shared part in its
    KV cache; the local backend batches similar lengths together anyway. Stable, so ties keep
    the slot order.
    """
    if step == "question":
        return sorted(candidates, key=lambda c: c.slot.chunk.chunk_id)
    return sorted(candidates, key=lambda c: [x.chunk_id for x in c.contexts])


def in_shard(slot_id: str, shard: tuple[int, int] | None) -> bool:
    """Whether a slot belongs to shard ``(index, count)``: a stable hash, so shards never overlap."""
    if shard is None:
        return True
    index, count = shard
    return int(sha256_hex(slot_id)[:8], 16) % count == index


def run_synth(
    config: RagtuneConfig,
    documents_path: Path,
    index_dir: Path,
    out_dir: Path,
    shard: tuple[int, int] | None = None,
) -> SynthReport:
    """Generate, filter and split an instruction dataset into ``out_dir`` (see the module docstring).

    ``shard=(i, n)`` runs only the i-th of n disjoint parts of the question slots. That is how the
    cluster pipeline fans out: shards make the LLM calls in parallel and fill the shared response
    cache; a final unsharded run then finds every call cached and does what needs the whole
    dataset at once (cross-shard near-duplicate removal, the stratified split, the card). Only
    the retries of questions that turn out duplicated across shards are new calls there.
    """
    if shard is not None and not (shard[1] >= 1 and 0 <= shard[0] < shard[1]):
        raise ValueError(f"shard must be (index, count) with 0 <= index < count, got {shard}")
    started = time.perf_counter()
    documents_path, index_dir, out_dir = Path(documents_path), Path(index_dir), Path(out_dir)
    documents = read_jsonl(documents_path, Document)
    retriever = load_retriever(config, index_dir)
    try:
        run = _Synthesis(config, retriever, budget_scope=str(index_dir.resolve()))  # shards share the budget
        s = config.synth
        categories = build_categories(documents, retriever.chunks.values(), s.toc_depth)
        slots = plan_slots(
            categories, s.questions_per_category, s.question_types, config.run.seed, s.max_chunks_per_category
        )
        log.info(
            "synth: %d categories, %d question slots, generator %s, groundedness %s",
            len(categories),
            len(slots),
            run.generator.name,
            run.groundedness_method,
        )
        run.sides = held_out_sides(slots, s.holdout, s.eval_fraction, config.run.seed)
        candidates = [Candidate(slot) for slot in slots if in_shard(slot.slot_id, shard)]
        run.track(candidates)
        run.ask_questions(candidates)
        question_vectors = run.drop_duplicates(candidates)
        run.retrieve(candidates)
        run.answer_and_check(candidates, question_vectors)
        if s.retry_rejected:
            run.retry(candidates, question_vectors)
        # the knowledge eval set rewords the final training set: the unsharded run writes it
        return _write_outputs(run, categories, candidates, question_vectors, out_dir, started, shard is None)
    finally:
        retriever.close()


def _check_every_slot_accounted(
    candidates: Sequence[Candidate], kept: Sequence[Candidate], rejected: Sequence[RejectedItem]
) -> None:
    slot_ids = [c.slot.slot_id for c in candidates]
    kept_ids = {c.slot.slot_id for c in kept}
    rejected_ids = {r.slot_id for r in rejected}
    problems = []
    if len(set(slot_ids)) != len(slot_ids):
        problems.append("slot ids are not unique")
    if len(kept) + len(rejected) != len(slot_ids):
        problems.append(f"{len(kept)} kept + {len(rejected)} rejected != {len(slot_ids)} slots")
    if kept_ids & rejected_ids:
        problems.append(f"{len(kept_ids & rejected_ids)} slots both kept and rejected")
    if kept_ids | rejected_ids != set(slot_ids):
        problems.append("some slots are neither kept nor rejected")
    if problems:
        raise SynthInvariantError("synth: " + "; ".join(problems))


def _split(
    run: _Synthesis, kept: Sequence[Candidate], question_vectors: dict[str, np.ndarray]
) -> tuple[list[InstructionItem], list[InstructionItem]]:
    """The kept items as (train, eval): stratified by category, no source chunk or near-duplicate on both sides."""
    items = [run.item(c) for c in kept]
    answer_vectors = run.embed([c.answer for c in kept])
    question_matrix = (
        np.stack([question_vectors[c.slot.slot_id] for c in kept]) if kept else np.zeros((0, 1), np.float32)
    )
    is_eval = split_held(
        [SplitItem.of(i) for i in items],
        [question_matrix, answer_vectors] if kept else [],
        run.settings.dedup_threshold,
        run.settings.holdout,
        run.sides.held_units,
    )
    train = [item for item, held in zip(items, is_eval, strict=True) if not held]
    evaluation = [item for item, held in zip(items, is_eval, strict=True) if held]
    return train, evaluation


def _write_outputs(
    run: _Synthesis,
    categories: Sequence[Category],
    candidates: Sequence[Candidate],
    question_vectors: dict[str, np.ndarray],
    out_dir: Path,
    started: float,
    with_knowledge: bool = True,
) -> SynthReport:
    kept = [c for c in candidates if c.alive]
    rejected = [c.rejected for c in candidates if c.rejected is not None]
    _check_every_slot_accounted(candidates, kept, rejected)
    train, evaluation = _split(run, kept, question_vectors)

    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(out_dir / TRAIN_FILE, train)
    write_jsonl(out_dir / EVAL_FILE, evaluation)
    write_jsonl(out_dir / REJECTED_FILE, rejected)
    write_alpaca(out_dir / TRAIN_ALPACA_FILE, train)
    write_alpaca(out_dir / EVAL_ALPACA_FILE, evaluation)
    knowledge, knowledge_rejected = write_knowledge_set(
        run.paraphraser(), DatasetDir(out_dir), train, with_knowledge
    )

    outcome = Outcome(
        categories,
        candidates,
        train,
        evaluation,
        rejected,
        knowledge if with_knowledge else None,
        knowledge_rejected,
    )
    report = build_report(run.info(), outcome, time.perf_counter() - started)
    card = render_card(run.card_template, report, run.settings, run.config.run.name, outcome)
    atomic_write_text(out_dir / CARD_FILE, card + "\n")
    DatasetDir(out_dir).write_report(report)
    log.info(summary_line(report))
    return report
