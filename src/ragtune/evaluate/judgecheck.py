"""The judge's sanity check: can it tell a grounded answer from a known-worse one, whatever the order?

No human labels are needed. For each eval item the judge scores the item's reference answer
(written from the item's context) beside known-worse answers of three kinds, and compares each
pair in both orders:

- ``off_topic``: the reference answer of an item from another category — fluent but about
  something else. A topic detector passes this kind.
- ``fact_altered``: the reference with one fact-bearing term swapped for one of the same kind
  found elsewhere in the corpus (same wording, wrong fact). Only a judge that reads the facts
  against the context passes this kind.
- ``truncated``: the reference cut to its first half (right so far, but incomplete).

Per kind: ``discrimination`` (share of items where the reference scores higher),
``consistency`` (share whose pairwise verdict survives swapping the answers) and
``reference_wins``, each with a cluster-bootstrap interval. The judge passes only when, for every
kind checked, the *lower* bounds reach ``evaluate.judge_min_discrimination`` and
``evaluate.judge_min_consistency`` and every kind has at least :data:`MIN_ITEMS_PER_KIND` items;
otherwise its scores cannot decide a promotion.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple, get_args

import numpy as np

from ragtune.core.records import InstructionItem
from ragtune.core.reports.evaluation import CheckKind, JudgeCheck, JudgeCheckKind, Share
from ragtune.evaluate.judge import Case, Judge, JudgeFailure, PairJudgement
from ragtune.evaluate.metrics import MetricSettings
from ragtune.evaluate.parsing import JudgeScore
from ragtune.evaluate.stats import mean_or_none

CHECK_KINDS: tuple[CheckKind, ...] = get_args(CheckKind)
MIN_TRUNCATED_WORDS = 8
"""A reference shorter than this has no half worth calling incomplete: no truncated answer for it."""
MIN_ITEMS_PER_KIND = 5
"""Fewer items of a kind give a degenerate interval (one item: [1, 1]); each kind needs this many,
so a check without fact-altered answers cannot pass (a topic detector would)."""
_CONSISTENT = {("A", "B"), ("B", "A"), ("tie", "tie")}


def mismatched_answers(items: Sequence[InstructionItem], seed: int) -> list[str | None]:
    """For each item, the reference answer of a seeded pick among items of other categories.

    With a single category, another item's answer (a different answer text) stands in; ``None``
    where there is none at all.
    """
    rng = np.random.default_rng([seed, 0x6A75_6467])
    mismatched: list[str | None] = []
    for item in items:
        others = [o for o in items if o.category != item.category]
        if not others:
            others = [o for o in items if o.item_id != item.item_id and o.answer != item.answer]
        mismatched.append(others[int(rng.integers(len(others)))].answer if others else None)
    return mismatched


def truncated_answer(answer: str) -> str | None:
    """The first half of ``answer``'s words; ``None`` when it is too short to lose anything clear."""
    words = answer.split()
    if len(words) < MIN_TRUNCATED_WORDS:
        return None
    return " ".join(words[: len(words) // 2])


def known_worse(
    items: Sequence[InstructionItem], seed: int, alter: Callable[[str], str | None] | None
) -> dict[CheckKind, list[str | None]]:
    """Each kind's known-worse answer per item (``None`` where the item has none of that kind)."""
    return {
        "off_topic": mismatched_answers(items, seed),
        "fact_altered": [alter(item.answer) if alter else None for item in items],
        "truncated": [truncated_answer(item.answer) for item in items],
    }


class Outcomes(NamedTuple):
    """One checked pair: did the reference score higher, was the verdict order-proof, did it win?"""

    item_id: str
    discriminated: float
    consistent: float
    reference_won: float
    gap: float | None


def outcomes(
    item_id: str, good: JudgeScore | JudgeFailure, bad: JudgeScore | JudgeFailure, pair: PairJudgement
) -> Outcomes:
    """A judge failure counts as a miss (and has no score gap)."""
    gap = None
    if isinstance(good, JudgeScore) and isinstance(bad, JudgeScore):
        gap = float(good.score - bad.score)
    return Outcomes(
        item_id=item_id,
        discriminated=float(gap is not None and gap > 0),
        consistent=float((pair.first_as_a, pair.first_as_b) in _CONSISTENT),
        reference_won=float(pair.outcome == "win"),
        gap=gap,
    )


def _kind_result(kind: CheckKind, rows: Sequence[Outcomes], settings: MetricSettings) -> JudgeCheckKind:
    ids = [row.item_id for row in rows]

    def share(values: list[float], what: str) -> Share:
        interval = settings.interval(values, ids, f"judgecheck:{kind}:{what}")
        if interval is None:
            return Share(value=None, ci_low=None, ci_high=None, n=0)
        return Share(value=interval.mean, ci_low=interval.low, ci_high=interval.high, n=interval.n)

    return JudgeCheckKind(
        kind=kind,
        n=len(rows),
        discrimination=share([r.discriminated for r in rows], "discrimination"),
        consistency=share([r.consistent for r in rows], "consistency"),
        reference_wins=share([r.reference_won for r in rows], "wins"),
        score_gap=mean_or_none([r.gap for r in rows]),
    )


def _reasons(
    kinds: dict[CheckKind, JudgeCheckKind], min_discrimination: float, min_consistency: float
) -> list[str]:
    """Why the judge is flagged: a kind whose lower bound misses a threshold (or nothing checked)."""
    if not any(k.n for k in kinds.values()):
        return ["no item has a known-worse answer to check the judge with (one item or one answer)"]
    reasons = [
        f"{kind.kind}: {kind.n} item(s), fewer than {MIN_ITEMS_PER_KIND}: too few to bound the judge"
        for kind in kinds.values()
        if kind.n < MIN_ITEMS_PER_KIND
    ]
    for kind in (k for k in kinds.values() if k.n):
        for label, share, floor in (
            ("discrimination", kind.discrimination, min_discrimination),
            ("position consistency", kind.consistency, min_consistency),
        ):
            if share.ci_low is None or share.ci_low < floor:
                reasons.append(
                    f"{kind.kind}: {label} {share.value or 0:.2f}, interval low {share.ci_low or 0:.2f}"
                    f" below {floor:.2f} (n={kind.n})"
                )
    return reasons


def check_judge(
    judge: Judge,
    items: Sequence[InstructionItem],
    *,
    min_discrimination: float,
    min_consistency: float,
    settings: MetricSettings,
    alter: Callable[[str], str | None] | None = None,
) -> JudgeCheck:
    """Run the sanity check on ``items`` (see the module docstring). Judge failures count as misses.

    ``alter`` makes the fact-altered copy of a reference answer (``None`` when it has no
    fact-bearing term to swap); without it that kind is not checked.
    """
    worse = known_worse(items, settings.seed, alter)
    jobs = [
        (kind, item, answer)
        for kind in CHECK_KINDS
        for item, answer in zip(items, worse[kind], strict=True)
        if answer is not None
    ]
    checked = list(dict.fromkeys(item.item_id for _, item, _ in jobs))
    by_id = {item.item_id: item for item in items}
    cases = {
        i: Case(
            question=by_id[i].question, reference=by_id[i].answer, context=[c.text for c in by_id[i].context]
        )
        for i in checked
    }
    reference_scores = dict(
        zip(
            checked,
            judge.score([(cases[i], by_id[i].answer) for i in checked], desc="judge check: references"),
            strict=True,
        )
    )
    worse_scores = judge.score(
        [(cases[item.item_id], answer) for _, item, answer in jobs], desc="judge check: scores"
    )
    pairs = judge.compare(
        [(cases[item.item_id], item.answer, answer) for _, item, answer in jobs], desc="judge check: pairwise"
    )
    rows: dict[CheckKind, list[Outcomes]] = {kind: [] for kind in CHECK_KINDS}
    for (kind, item, _), bad, pair in zip(jobs, worse_scores, pairs, strict=True):
        rows[kind].append(outcomes(item.item_id, reference_scores[item.item_id], bad, pair))
    kinds = {kind: _kind_result(kind, rows[kind], settings) for kind in CHECK_KINDS}
    every = [row for kind in CHECK_KINDS for row in rows[kind]]
    reasons = _reasons(kinds, min_discrimination, min_consistency)
    return JudgeCheck(
        n=len(checked),
        discrimination=mean_or_none([r.discriminated for r in every]),
        consistency=mean_or_none([r.consistent for r in every]),
        reference_wins=mean_or_none([r.reference_won for r in every]),
        score_gap=mean_or_none([r.gap for r in every]),
        min_discrimination=min_discrimination,
        min_consistency=min_consistency,
        passed=not reasons,
        reasons=reasons,
        kinds={kind: result for kind, result in kinds.items() if result.n},
        bootstrap_unit=settings.bootstrap_unit,
    )
