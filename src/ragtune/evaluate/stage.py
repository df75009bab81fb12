"""The evaluate stage: answers from every contender, judged, compared, summarized and reported."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ragtune.core.artifacts import DatasetDir, EvaluationDir
from ragtune.core.cache import ContentCache
from ragtune.core.config import RagtuneConfig
from ragtune.core.errors import ConfigError, InputError, RagtuneError
from ragtune.core.fsutil import atomic_write_text
from ragtune.core.llm import ChatModel, ChatResponse, LLMFailure, TokenLedger, open_chat_model
from ragtune.core.llm.hf_chat import answer_request
from ragtune.core.records import InstructionItem, read_jsonl, write_jsonl
from ragtune.core.reports.evaluation import (
    BASE,
    GENERALIZATION,
    KNOWLEDGE,
    LIKELIHOOD_METRICS,
    TUNED,
    EvalMetrics,
    EvalSetMetrics,
    JudgeCheck,
    Leakage,
    Metric,
)
from ragtune.core.storage import open_storage
from ragtune.evaluate.distractors import CorpusTerms, item_texts
from ragtune.evaluate.evalsets import (
    LIKELIHOOD_CACHE_NAMESPACE,
    EvalSet,
    KnowledgeSettings,
    eval_set,
    evaluate_sets,
)
from ragtune.evaluate.generators import (
    ANSWER_CACHE_NAMESPACE,
    answer_messages,
    contender_answerers,
    load_error,
    model_answerers,
    rag_messages,
    release,
)
from ragtune.evaluate.judge import Case, Judge, JudgeFailure, is_weak_judge
from ragtune.evaluate.leakage import measure_leakage
from ragtune.evaluate.metrics import JudgeInfo, MetricSettings, bootstrap_unit_for, compute_metrics
from ragtune.evaluate.prompts import PAIRWISE_TEMPLATE, REPORT_TEMPLATE, SCORE_TEMPLATE, evaluation_templates
from ragtune.evaluate.report import render_report
from ragtune.evaluate.schema import EvalReport, PairRow, ScoreRow
from ragtune.evaluate.similarity import TextEncoder, cosine_similarities, load_encoder, rouge_l

if TYPE_CHECKING:
    from ragtune.index import Retriever, ScoredChunk

log = logging.getLogger(__name__)

EVAL_FILE = DatasetDir.EVAL
TRAIN_FILE = DatasetDir.TRAIN
RAG_SUFFIX = "_rag"
JUDGE_CACHE_NAMESPACE = "llm"


def select_items(
    items: Sequence[InstructionItem], max_items: int | None, seed: int
) -> tuple[list[InstructionItem], list[str]]:
    """At most ``max_items`` items, spread over categories, in file order; plus warnings.

    A seeded shuffle within each category, then one item per category in turn, so a small cap
    still covers every category it can. Repeated ``item_id`` values are skipped with a warning.
    """
    warnings: list[str] = []
    unique: dict[str, int] = {}
    for position, item in enumerate(items):
        if item.item_id in unique:
            warnings.append(f"skipped repeated item_id {item.item_id} (line {position + 1} of {EVAL_FILE})")
        else:
            unique[item.item_id] = position
    positions = list(unique.values())
    if max_items is None or len(positions) <= max_items:
        return [items[p] for p in positions], warnings
    rng = np.random.default_rng(seed)
    by_category: dict[str, list[int]] = {}
    for p in positions:
        by_category.setdefault(items[p].category, []).append(p)
    queues = [list(rng.permutation(group)) for _, group in sorted(by_category.items())]
    chosen: list[int] = []
    while len(chosen) < max_items:
        for queue in queues:
            if queue and len(chosen) < max_items:
                chosen.append(int(queue.pop(0)))
    return [items[p] for p in sorted(chosen)], warnings


def load_eval_items(dataset_dir: Path) -> list[InstructionItem]:
    path = dataset_dir / EVAL_FILE
    if not path.is_file():
        raise InputError(f"{path}: no evaluation set (the synth stage writes {EVAL_FILE})")
    return read_jsonl(path, InstructionItem)


class Retrieval(Protocol):
    """What the RAG contenders need of a retriever (``ragtune.index.Retriever`` fits)."""

    def search_many(self, queries: Sequence[str], k: int = 5) -> list[list[ScoredChunk]]: ...


def retrieved_contexts(retriever: Retrieval, items: Sequence[InstructionItem], k: int) -> list[list[str]]:
    """The ``k`` chunks retrieved for each item's question, best first (what a RAG contender reads)."""
    hits = retriever.search_many([item.question for item in items], k)
    return [[hit.chunk.text for hit in found] for found in hits]


def _collect_answers(
    answerers: Mapping[str, ChatModel],
    items: Sequence[InstructionItem],
    contexts: list[list[str]] | None,
    max_new_tokens: int,
    seed: int,
) -> dict[str, list[ChatResponse | LLMFailure]]:
    """Every contender's answer to every item, one model at a time (local models are released).

    A ``*_rag`` contender is the same model object as its plain twin, asked with the retrieved
    ``contexts``; a model is released only once all its contenders have answered.
    """
    plain = [answer_request(answer_messages(item), max_new_tokens, seed) for item in items]
    rag = [
        answer_request(rag_messages(item, chunks), max_new_tokens, seed)
        for item, chunks in zip(items, contexts or [[] for _ in items], strict=True)
    ]
    answers: dict[str, list[ChatResponse | LLMFailure]] = {}
    names = list(answerers)
    for position, name in enumerate(names):
        answerer = answerers[name]
        requests = rag if name.endswith(RAG_SUFFIX) else plain
        try:
            answers[name] = answerer.chat_many(requests, desc=f"answers: {name}")
        finally:
            if not any(answerers[later] is answerer for later in names[position + 1 :]):
                release(answerer)
        error = load_error(answerer)
        if error is not None:
            raise RagtuneError(f"evaluate: the {name} model could not be loaded: {error}")
    return answers


def with_rag(local: Mapping[str, ChatModel]) -> dict[str, ChatModel]:
    """``base``, ``base_rag``, ``tuned``, ``tuned_rag``, then the rest: each RAG twin beside its model."""
    ordered: dict[str, ChatModel] = {}
    for name, model in local.items():
        ordered[name] = model
        if name in (BASE, TUNED):
            ordered[name + RAG_SUFFIX] = model
    return ordered


def scored_adapter_sha256(adapter_dir: Path | None) -> str | None:
    """The digest of the adapter the tuned contender is, recorded in ``metrics.json`` for the gate."""
    from ragtune.core.modelload import adapter_fingerprint

    return adapter_fingerprint(Path(adapter_dir)) if adapter_dir is not None else None


def resolve_primary_metric(setting: str, check: JudgeCheck | None, weak: bool) -> Metric:
    """``auto``: the judge when it passed its sanity check (on the lower bounds) and is not the weak
    local model, else the judge-free corpus-fact accuracy. The reference cosine never crowns itself."""
    if setting in ("judge", "corpus_facts", "reference"):
        return setting  # type: ignore[return-value]
    return "judge" if check is not None and check.passed and not weak else "corpus_facts"


def primary_eval_set(metric: Metric, sets: Mapping[str, EvalSetMetrics]) -> str:
    """For a likelihood metric, the knowledge set where it has scored statements (what tuning is for
    injecting); else — and always for the judge, which answers only it — the generalization set."""
    knowledge = sets.get(KNOWLEDGE)
    scored = knowledge.likelihood(metric) if knowledge is not None else None
    if metric in LIKELIHOOD_METRICS and scored is not None and scored.n_statements:
        return KNOWLEDGE
    return GENERALIZATION


def build_eval_sets(
    config: RagtuneConfig,
    dataset_dir: Path,
    items: list[InstructionItem],
    knowledge_items: list[InstructionItem],
    settings: MetricSettings,
) -> list[EvalSet]:
    """The generalization set (clustered by what the split held out) and the knowledge set (by
    source chunk), each with the items its judge check asks about (``evaluate.judge_check_items``)."""
    cfg = config.evaluate

    def checked(chosen: list[InstructionItem]) -> list[InstructionItem]:
        return select_items(chosen, cfg.judge_check_items, config.run.seed)[0]

    present = DatasetDir(dataset_dir).eval_knowledge_path.is_file()
    unit = bootstrap_unit_for(config.synth.holdout)
    return [
        eval_set(GENERALIZATION, EVAL_FILE, True, items, settings, unit, checked(items)),
        eval_set(
            KNOWLEDGE,
            DatasetDir.EVAL_KNOWLEDGE,
            present,
            knowledge_items,
            settings,
            "source_chunk",
            checked(knowledge_items),
        ),
    ]


def load_train_items(dataset_dir: Path) -> list[InstructionItem]:
    train_path = dataset_dir / TRAIN_FILE
    return read_jsonl(train_path, InstructionItem) if train_path.is_file() else []


def check_leakage(
    config: RagtuneConfig,
    dataset_dir: Path,
    items: Sequence[InstructionItem],
    encoder: TextEncoder | None,
    train: Sequence[InstructionItem] | None = None,
) -> Leakage:
    """Leakage of ``items`` from ``train.jsonl``; an :class:`InputError` above ``evaluate.max_leakage``."""
    cfg = config.evaluate
    train = load_train_items(dataset_dir) if train is None else train
    leakage = measure_leakage(
        items, train, encoder, cosine_threshold=cfg.leakage_cosine, max_share=cfg.max_leakage
    )
    log.info(
        "leakage: %d of %d eval items have a near-duplicate in training (%.0f%%)",
        leakage.leaked,
        leakage.n_eval,
        100 * leakage.share,
    )
    if leakage.share > cfg.max_leakage:
        raise InputError(
            f"{dataset_dir / EVAL_FILE}: {leakage.leaked} of {leakage.n_eval} eval items"
            f" ({leakage.share:.0%}) have a 13-gram or embedding (cosine >= {cfg.leakage_cosine})"
            f" near-duplicate in {TRAIN_FILE} (questions {leakage.ngram_hits + leakage.embedding_hits},"
            f" answers {leakage.answer_hits}, contexts {leakage.context_hits}),"
            f" above evaluate.max_leakage {cfg.max_leakage:.0%}"
            f" (e.g. {', '.join(leakage.item_ids[:5])}); hold out whole sections or documents (synth.holdout) or regenerate"
        )
    return leakage


def _score_rows(
    items: Sequence[InstructionItem],
    answers: Mapping[str, list[ChatResponse | LLMFailure]],
    models: Mapping[str, str],
    judge: Judge,
    encoder: TextEncoder | None,
) -> list[ScoreRow]:
    cases = [
        Case(question=i.question, reference=i.answer, context=[c.text for c in i.context]) for i in items
    ]
    rows = [
        ScoreRow(
            item_id=item.item_id,
            category=item.category,
            contender=name,
            model=models[name],
            answer=reply.text if isinstance(reply, ChatResponse) else None,
            answer_error=reply.reason if isinstance(reply, LLMFailure) else None,
        )
        for name, replies in answers.items()
        for item, reply in zip(items, replies, strict=True)
    ]
    index = {item.item_id: position for position, item in enumerate(items)}
    answered = [row for row in rows if row.answer is not None]
    verdicts = judge.score([(cases[index[row.item_id]], row.answer or "") for row in answered])
    references = [items[index[row.item_id]].answer for row in answered]
    candidates = [row.answer or "" for row in answered]
    rouges = rouge_l(references, candidates)
    cosines = cosine_similarities(encoder, references, candidates) if encoder is not None and answered else []
    for position, (row, verdict) in enumerate(zip(answered, verdicts, strict=True)):
        row.rouge_l = rouges[position]
        row.cosine = cosines[position] if cosines else None
        if isinstance(verdict, JudgeFailure):
            row.judge_error, row.judge_raw = verdict.reason, verdict.raw
        else:
            row.score, row.reason, row.parsed_from = verdict.score, verdict.reason, verdict.parsed_from
    return rows


def _pair_rows(
    items: Sequence[InstructionItem], answers: Mapping[str, list[ChatResponse | LLMFailure]], judge: Judge
) -> list[PairRow]:
    """Tuned against every other contender (not the RAG twins) on every item, in both orders."""
    if TUNED not in answers:
        return []
    rows: list[PairRow] = []
    jobs: list[tuple[Case, str, str]] = []
    asked: list[PairRow] = []
    for name in (n for n in answers if n != TUNED and not n.endswith(RAG_SUFFIX)):
        for position, item in enumerate(items):
            tuned, other = answers[TUNED][position], answers[name][position]
            row = PairRow(
                item_id=item.item_id,
                category=item.category,
                contender=name,
                verdict_tuned_first=None,
                verdict_tuned_second=None,
                outcome=None,
            )
            rows.append(row)
            missing = [n for n, a in ((TUNED, tuned), (name, other)) if isinstance(a, LLMFailure)]
            if missing:
                row.error = f"no answer from {' and '.join(missing)}"
                continue
            assert isinstance(tuned, ChatResponse) and isinstance(other, ChatResponse)
            case = Case(question=item.question, reference=item.answer, context=[c.text for c in item.context])
            jobs.append((case, tuned.text, other.text))
            asked.append(row)
    for row, judgement in zip(asked, judge.compare(jobs), strict=True):
        row.verdict_tuned_first = judgement.first_as_a
        row.verdict_tuned_second = judgement.first_as_b
        row.outcome = judgement.outcome
        row.error = judgement.error
    return rows


def open_retriever(config: RagtuneConfig, index_dir: Path, encoder: TextEncoder | None) -> Retriever:
    """The run's index, searched with the encoder already loaded when it is the index's embedder."""
    from ragtune.core.embedding import Embedder
    from ragtune.index import load_retriever

    return load_retriever(config, index_dir, embedder=encoder if isinstance(encoder, Embedder) else None)


def run_evaluate(
    config: RagtuneConfig,
    dataset_dir: Path,
    adapter_dir: Path | None,
    out_dir: Path,
    *,
    index_dir: Path | None = None,
    extra_adapters: Mapping[str, Path] | None = None,
    answerers: Mapping[str, ChatModel] | None = None,
    judge_model: ChatModel | None = None,
    encoder: TextEncoder | None = None,
    retriever: Retrieval | None = None,
) -> EvalReport:
    """Judge the base and tuned models (and ``evaluate.contenders``) on ``dataset_dir/eval.jsonl``.

    Writes ``scores.jsonl`` (item × contender), ``pairwise.jsonl`` (tuned vs each other contender,
    both orders), ``metrics.json`` (:class:`~ragtune.evaluate.schema.EvalMetrics`) and
    ``report.html`` into ``out_dir``.

    ``answerers`` replaces the local models: ``None`` loads ``base`` from ``train.base_model`` and,
    when ``adapter_dir`` is given, ``tuned`` from the adapter, plus one contender per
    ``extra_adapters`` entry (``{"champion": path}``: the current champion, same base model). With
    ``evaluate.rag`` and an index (``index_dir``, or a ``retriever``), ``base_rag`` and ``tuned_rag``
    answer with ``synth.top_k`` retrieved chunks. The configured contenders are added either way.
    ``judge_model`` replaces the ``llm.judge`` endpoint and ``encoder`` the ``index.embedder`` (for
    cosine similarity and leakage); both default to what the config names.

    Before answering, eval questions are checked for leakage from ``train.jsonl`` (an
    :class:`InputError` above ``evaluate.max_leakage``). Both eval sets (``eval.jsonl``, and
    ``eval_knowledge.jsonl`` where synth wrote it) get the judge-free corpus-fact and recall metrics
    and the judge check (:mod:`ragtune.evaluate.evalsets`); the generalization set's check decides
    whether ``evaluate.primary_metric: auto`` means the judge or ``corpus_facts``.
    """
    cfg = config.evaluate
    templates = evaluation_templates(cfg.templates_dir)  # a bad override fails before any model runs
    for name in (SCORE_TEMPLATE, PAIRWISE_TEMPLATE, REPORT_TEMPLATE):
        templates.get(name)
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    items, warnings = select_items(load_eval_items(dataset_dir), cfg.max_items, config.run.seed)
    if not items:
        raise InputError(f"{dataset_dir / EVAL_FILE}: holds no evaluation items")
    knowledge_items, knowledge_warnings = select_items(
        DatasetDir(dataset_dir).read("eval_knowledge"), cfg.max_items, config.run.seed
    )
    warnings += knowledge_warnings
    log.info("evaluating %d items (+ %d knowledge-injection items)", len(items), len(knowledge_items))
    if encoder is None:
        encoder = load_encoder(config)
    train = load_train_items(dataset_dir)
    leakage = check_leakage(config, dataset_dir, items, encoder, train)
    settings = MetricSettings(
        seed=config.run.seed,
        bootstrap_samples=cfg.bootstrap_samples,
        confidence=cfg.confidence,
        max_new_tokens=cfg.max_new_tokens,
    )
    sets = build_eval_sets(config, dataset_dir, items, knowledge_items, settings)

    storage = open_storage(config.cache_uri(), config.storage)
    answer_cache = ContentCache(storage, ANSWER_CACHE_NAMESPACE)
    if answerers is not None:
        local = dict(answerers)
    else:
        local, model_warnings = model_answerers(config, adapter_dir, answer_cache, extra_adapters)
        warnings += model_warnings
    contexts: list[list[str]] | None = None
    if cfg.rag:
        if retriever is not None:
            contexts = retrieved_contexts(retriever, items, config.synth.top_k)
        elif index_dir is not None:
            with open_retriever(config, Path(index_dir), encoder) as opened:
                contexts = retrieved_contexts(opened, items, config.synth.top_k)
        if contexts is not None:
            local = with_rag(local)
        else:
            warnings.append("no index given: base_rag and tuned_rag (evaluate.rag) are not evaluated")
    extra = contender_answerers(config, answer_cache)
    clash = sorted(set(local) & set(extra))
    if clash:
        raise ConfigError(f"evaluate.contenders: name(s) {', '.join(clash)} already taken")
    everyone: dict[str, ChatModel] = {**local, **extra}
    if TUNED not in everyone:
        warnings.append(
            "no tuned model evaluated (no adapter): no tuned − base delta and no pairwise comparison"
        )

    answers = _collect_answers(everyone, items, contexts, cfg.max_new_tokens, config.run.seed)
    models = {name: answerer.name for name, answerer in everyone.items()}

    judge_ledger = TokenLedger("evaluate:judge", config.llm.judge)
    judge_chat = judge_model or open_chat_model(
        config.llm.judge,
        cache=ContentCache(storage, JUDGE_CACHE_NAMESPACE),
        ledger=judge_ledger,
        local_threads=config.llm.local_threads,
        seed=config.run.seed,
    )
    weak = is_weak_judge(config.llm.judge)
    if weak:
        log.warning("the judge is the small local model: its scores are a smoke test, not a verdict")
    judge = Judge(
        judge_chat,
        weak=weak,
        max_tokens=cfg.judge_max_tokens,
        context_chars=cfg.judge_context_chars,
        seed=config.run.seed,
        templates=templates,
    )
    rows = _score_rows(items, answers, models, judge, encoder)
    pairs = _pair_rows(items, answers, judge) if cfg.pairwise else []
    set_metrics = evaluate_sets(
        sets,
        judge,
        {name: model for name, model in everyone.items() if not name.endswith(RAG_SUFFIX)},
        CorpusTerms.from_texts(item_texts([*train, *items, *knowledge_items])),
        KnowledgeSettings(
            distractors=cfg.fact_distractors,
            statements_per_item=cfg.fact_statements_per_item,
            batch_size=cfg.batch_size,
            min_discrimination=cfg.judge_min_discrimination,
            min_consistency=cfg.judge_min_consistency,
        ),
        ContentCache(storage, LIKELIHOOD_CACHE_NAMESPACE),
    )
    check = set_metrics[GENERALIZATION].judge_check
    primary = resolve_primary_metric(cfg.primary_metric, check, weak)
    if check is not None and not check.passed:
        log.warning("the judge failed its sanity check: %s", "; ".join(check.reasons))
    log.info("primary metric: %s (evaluate.primary_metric %s)", primary, cfg.primary_metric)

    usage: dict[str, dict[str, object]] = {"judge": judge_chat.ledger.to_dict()}
    usage.update({name: answerer.ledger.to_dict() for name, answerer in extra.items()})
    metrics: EvalMetrics = compute_metrics(
        rows,
        pairs,
        contender_names=list(everyone),
        judge=JudgeInfo(
            model=judge_chat.name,
            base_url=config.llm.judge.base_url,
            is_weak=weak,
            templates={
                "score": templates.get(SCORE_TEMPLATE).ref,
                "pairwise": templates.get(PAIRWISE_TEMPLATE).ref,
                "report": templates.get(REPORT_TEMPLATE).ref,
            },
        ),
        settings=sets[0].settings,
        llm_usage=usage,
        warnings=warnings,
        primary_metric=primary,
        judge_check=check,
        leakage=leakage,
    )
    metrics.eval_sets = set_metrics
    metrics.primary_eval_set = primary_eval_set(primary, set_metrics)
    metrics.adapter_sha256 = scored_adapter_sha256(adapter_dir if answerers is None else None)

    evaluation = EvaluationDir(out_dir)
    write_jsonl(evaluation.scores_path, rows)
    write_jsonl(evaluation.pairwise_path, pairs)
    metrics_path = evaluation.write_report(metrics)
    atomic_write_text(evaluation.html_path, render_report(metrics, items, rows, pairs, templates))
    if metrics.failures_total:
        log.warning("evaluate: %d failures recorded (see %s)", metrics.failures_total, metrics_path)
    return EvalReport(
        metrics=metrics,
        scores_path=evaluation.scores_path,
        pairwise_path=evaluation.pairwise_path,
        metrics_path=metrics_path,
        report_path=evaluation.html_path,
    )
