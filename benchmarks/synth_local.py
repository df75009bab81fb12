"""The synthesis stage on the packaged SmolLM2: today's settings against the new ones, same slots.

Both runs synthesize the same question slots of the sample corpus (``--per-category`` slots in
each of its categories) with a fresh LLM response cache, so every request is generated:

* ``baseline`` — the settings before issue 8: templates ``question@1``/``answer@1`` (kept in
  ``benchmarks/baseline_templates/``), one torch thread, one request per ``generate``, no stop on
  repetition, no repairs, no retry;
* ``new`` — the defaults: the packaged templates (``@3``: shared part first, no yes/no questions), a thread per core, batches of
  ``llm.local_batch_size`` where a finished row leaves the batch, stop on repetition, repairs,
  one retry of a rejected slot with another seed.

Columns: wall time of the stage, generated (completion) tokens and tokens/s of wall time, kept
items and kept items per minute, kept share of the slots (Wilson 95% interval), and the held-out
grounding audit of the kept items: the share the local judge (SmolLM2 with the
``judge_grounded`` rubric, 4 or 5 of 5; a weak judge, so read it as a sanity check) calls
grounded, and the mean lexical+embedding groundedness (the stage's own filter score). Then the
prompt-prefix overlap of consecutive requests as each layout issues them (tokens shared with the
previous prompt / prompt tokens): what vLLM's automatic prefix caching could reuse.

Timing on a shared 2-core machine is noisy; the ratios compare two runs of the same process.
Prints a table, then as its last line ``key=value`` pairs.

Usage::

    python benchmarks/synth_local.py [--per-category 1] [--config examples/psychiatry/ragtune.yaml]
"""

from __future__ import annotations

import argparse
import itertools
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would garble the table

REPO = Path(__file__).resolve().parent.parent
BASELINE_TEMPLATES = Path(__file__).resolve().parent / "baseline_templates"
DEFAULT_CONFIG = REPO / "examples" / "psychiatry" / "ragtune.yaml"

BASELINE: dict[str, Any] = {
    "synth.templates_dir": str(BASELINE_TEMPLATES),
    "llm.local_threads": 1,
    "llm.local_batch_size": 1,
    "llm.local_stop_repeats": False,
    "synth.repairs": False,
    "synth.retry_rejected": False,
}


@dataclass
class Outcome:
    name: str
    seconds: float
    slots: int
    kept: int
    completion_tokens: int
    judged_grounded: float
    judged_n: int
    groundedness_mean: float
    question_overlap: float
    answer_overlap: float
    rejected_by_reason: dict[str, int]

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds else math.nan

    @property
    def kept_per_min(self) -> float:
        return 60 * self.kept / self.seconds if self.seconds else math.nan


def prefix_overlap(prompts: list[list[int]]) -> float:
    """Mean share of each prompt's tokens that the previous prompt starts with as well."""
    shares = []
    for before, now in itertools.pairwise(prompts):
        shared = 0
        for a, b in zip(before, now, strict=False):
            if a != b:
                break
            shared += 1
        shares.append(shared / max(1, len(now)))
    return statistics.fmean(shares) if shares else math.nan


def issued_prompts(
    config: Any, ingest: Path, out_dir: Path, tokenizer: Any
) -> tuple[list[list[int]], list[list[int]]]:
    """Prompt tokens of the question and of the answer requests, in the order the stage sends them.

    Rebuilt from the run's outputs (every slot's question and retrieved chunks) with the run's
    templates; the baseline sent them in slot order, the new stage in :func:`issue_order`.
    """
    from ragtune.core.artifacts import DatasetDir, DocumentsDir, IndexDir
    from ragtune.core.records import read_jsonl
    from ragtune.synth.categories import build_categories, plan_slots
    from ragtune.synth.prompts import answer_request, question_request, synth_templates
    from ragtune.synth.report import RejectedItem
    from ragtune.synth.stage import Candidate, issue_order

    s = config.synth
    templates = synth_templates(s.templates_dir)
    chunks = {c.chunk_id: c for c in IndexDir(ingest).read()}
    categories = build_categories(DocumentsDir(ingest).read(), chunks.values(), s.toc_depth)
    slots = plan_slots(
        categories, s.questions_per_category, s.question_types, config.run.seed, s.max_chunks_per_category
    )
    ordered = s.retry_rejected  # the new stage; the baseline's order is the slot order
    candidates = [Candidate(slot) for slot in slots]
    if ordered:
        candidates = issue_order(candidates, "question")
    question_template, answer_template = templates.get("question"), templates.get("answer")
    questions = [
        question_request(question_template, c.slot.chunk, c.slot.question_type, 0, 0.0, 8) for c in candidates
    ]
    answered: list[Candidate] = []
    items = DatasetDir(out_dir).read("train") + DatasetDir(out_dir).read("eval")
    pairs: list[tuple[str | None, list[str]]] = [(i.question, i.provenance.context_chunk_ids) for i in items]
    pairs += [
        (r.question, r.context_chunk_ids) for r in read_jsonl(out_dir / DatasetDir.REJECTED, RejectedItem)
    ]
    for question, context_ids in pairs:
        if question and context_ids:
            answered.append(Candidate(slots[0], question=question, contexts=[chunks[i] for i in context_ids]))
    if ordered:
        answered = issue_order(answered, "answer")
    answers = [answer_request(answer_template, c.question, c.contexts, 0, 0.0, 8) for c in answered]

    def tokens(request: Any) -> list[int]:
        text = tokenizer.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=False)
        return list(tokenizer(str(text), add_special_tokens=False)["input_ids"])

    return [tokens(r) for r in questions], [tokens(r) for r in answers]


def audit(config: Any, out_dir: Path) -> tuple[float, int, float]:
    """Share the local judge scores 4-5 of 5, its n, and the mean stage groundedness of the kept items."""
    from ragtune.core.artifacts import DatasetDir
    from ragtune.core.llm import open_chat_model
    from ragtune.synth.filters import local_groundedness
    from ragtune.synth.prompts import JudgeReply, judge_request, synth_templates

    items = DatasetDir(out_dir).read("train") + DatasetDir(out_dir).read("eval")
    if not items:
        return math.nan, 0, math.nan
    from ragtune.core.embedding import load_embedder
    from ragtune.core.records import Chunk

    embedder = load_embedder(config.index.embedder)
    scores = []
    for item in items:
        texts = [c.text for c in item.context]
        vectors = embedder.encode([item.answer, *texts])
        scores.append(local_groundedness(item.answer, texts, vectors[0], vectors[1:]))
    judge = open_chat_model(
        config.llm.judge.model_copy(update={"base_url": None, "model": config.train.base_model}),
        local_threads=None,
        seed=config.run.seed,
    )
    template = synth_templates().get("judge_grounded")
    contexts = [
        [
            Chunk(chunk_id=c.chunk_id, doc_id="", section_id="", section_path=[], text=c.text, token_count=0)
            for c in i.context
        ]
        for i in items
    ]
    replies = judge.structured_many(
        [judge_request(template, i.question, i.answer, ctx) for i, ctx in zip(items, contexts, strict=True)],
        JudgeReply,
        desc="audit",
    )
    verdicts = [r.score >= 4 for r in replies if isinstance(r, JudgeReply)]
    share = sum(verdicts) / len(verdicts) if verdicts else math.nan
    return share, len(verdicts), statistics.fmean(scores)


def run_setting(name: str, base: Any, overrides: dict[str, Any], ingest: Path, workdir: Path) -> Outcome:
    from ragtune.core.artifacts import DocumentsDir, IndexDir
    from ragtune.core.config import build_config
    from ragtune.core.llm.local_backend import load_local_model
    from ragtune.synth import run_synth

    data = base.model_dump(mode="json")
    config = build_config(data, {**overrides, "cache.uri": str(workdir / f"cache-{name}")})
    out = workdir / name
    load_local_model(config.train.base_model)  # not timed: both settings share the loaded model
    started = time.perf_counter()
    report = run_synth(config, DocumentsDir(ingest).documents_path, IndexDir(ingest).store_dir, out)
    seconds = time.perf_counter() - started
    _, tokenizer = load_local_model(config.train.base_model)
    question_prompts, answer_prompts = issued_prompts(config, ingest, out, tokenizer)
    judged, judged_n, groundedness = audit(config, out)
    return Outcome(
        name=name,
        seconds=seconds,
        slots=report.generated,
        kept=report.kept,
        completion_tokens=int(report.ledger["generator"]["completion_tokens"]),
        judged_grounded=judged,
        judged_n=judged_n,
        groundedness_mean=groundedness,
        question_overlap=prefix_overlap(question_prompts),
        answer_overlap=prefix_overlap(answer_prompts),
        rejected_by_reason=report.rejected_by_reason,
    )


def ingest_corpus(config: Any, workdir: Path) -> Path:
    from ragtune.core.artifacts import DocumentsDir
    from ragtune.index import run_index
    from ragtune.parse import run_parse

    ingest = workdir / "ingest"
    run_parse(config, ingest)
    run_index(config, DocumentsDir(ingest).documents_path, ingest)
    return ingest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--per-category", type=int, default=1, help="question slots per category")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from ragtune.core.config import load_config
    from ragtune.core.stats import wilson_interval

    with tempfile.TemporaryDirectory(prefix="synth-local-") as tmp:
        workdir = Path(tmp)
        base = load_config(
            args.config,
            {
                "run.root": str(workdir / "runs"),
                "cache.uri": str(workdir / "cache-ingest"),
                "synth.questions_per_category": args.per_category,
            },
        )
        ingest = ingest_corpus(base, workdir)
        outcomes = [
            run_setting("baseline", base, BASELINE, ingest, workdir),
            run_setting("new", base, {}, ingest, workdir),
        ]
    header = (
        f"{'setting':<9} {'wall s':>7} {'slots':>5} {'kept':>4} {'kept share [95% CI]':>21} {'gen tok':>7}"
        f" {'tok/s':>6} {'kept/min':>8} {'judged grounded (n)':>20} {'ground.':>7} {'q-prefix':>8} {'a-prefix':>8}"
    )
    print(header)
    print("-" * len(header))
    for o in outcomes:
        low, high = wilson_interval(o.kept, o.slots)
        share = f"{o.kept / o.slots:.2f} [{low:.2f}, {high:.2f}]" if o.slots else "n/a"
        judged = f"{o.judged_grounded:.2f} ({o.judged_n})"
        print(
            f"{o.name:<9} {o.seconds:>7.1f} {o.slots:>5} {o.kept:>4} {share:>21} {o.completion_tokens:>7}"
            f" {o.tokens_per_s:>6.1f} {o.kept_per_min:>8.2f} {judged:>20} {o.groundedness_mean:>7.3f}"
            f" {o.question_overlap:>8.2f} {o.answer_overlap:>8.2f}"
        )
    for o in outcomes:
        print(f"{o.name} rejections: {o.rejected_by_reason}")
    old, new = outcomes
    kept_ratio = new.kept_per_min / old.kept_per_min if old.kept else math.inf
    print(
        f"kept_per_min_ratio={kept_ratio:.2f} tokens_per_s_ratio={new.tokens_per_s / old.tokens_per_s:.2f}"
        f" kept_share_baseline={old.kept / old.slots:.3f} kept_share_new={new.kept / new.slots:.3f}"
        f" judged_grounded_baseline={old.judged_grounded:.3f} judged_grounded_new={new.judged_grounded:.3f}"
        f" question_prefix_overlap_baseline={old.question_overlap:.3f}"
        f" question_prefix_overlap_new={new.question_overlap:.3f} n_slots={new.slots}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
