"""The judge's sanity check: can it tell a grounded answer from a wrong one, whatever the order?

No human labels are needed. For each eval item the judge scores the item's reference answer
(written from the item's context) and a *mismatched* answer — the reference answer of an item
from another category, fluent but wrong for this question — and compares the two pairwise in
both orders. A judge worth trusting scores the reference higher (``discrimination``: the share of
items where it does), gives the same pairwise verdict whichever answer is shown first
(``consistency``: the share of items whose verdict survives the swap), and leaves a clear
``score_gap``. Below ``evaluate.judge_min_discrimination`` or ``evaluate.judge_min_consistency``
the judge is flagged, and its scores cannot decide a promotion.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ragtune.core.records import InstructionItem
from ragtune.core.reports.evaluation import JudgeCheck
from ragtune.evaluate.judge import Case, Judge, JudgeFailure
from ragtune.evaluate.stats import mean_or_none


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


def _share(hits: int, n: int) -> float | None:
    return hits / n if n else None


def check_judge(
    judge: Judge,
    items: Sequence[InstructionItem],
    *,
    min_discrimination: float,
    min_consistency: float,
    seed: int,
) -> JudgeCheck:
    """Run the sanity check on ``items`` (see the module docstring). Judge failures count as misses."""
    mismatched = mismatched_answers(items, seed)
    checked = [(item, wrong) for item, wrong in zip(items, mismatched, strict=True) if wrong is not None]
    cases = [
        Case(question=item.question, reference=item.answer, context=[c.text for c in item.context])
        for item, _ in checked
    ]
    score_jobs = [(case, item.answer) for case, (item, _) in zip(cases, checked, strict=True)]
    score_jobs += [(case, wrong) for case, (_, wrong) in zip(cases, checked, strict=True)]
    scores = judge.score(score_jobs, desc="judge check: scores")
    n = len(checked)
    right, wrong_scores = scores[:n], scores[n:]
    wins = 0
    gaps: list[float | None] = []
    for good, bad in zip(right, wrong_scores, strict=True):
        if isinstance(good, JudgeFailure) or isinstance(bad, JudgeFailure):
            gaps.append(None)
            continue
        wins += good.score > bad.score
        gaps.append(float(good.score - bad.score))
    pairs = judge.compare(
        [(case, item.answer, wrong) for case, (item, wrong) in zip(cases, checked, strict=True)],
        desc="judge check: pairwise",
    )
    consistent = sum(
        1 for p in pairs if (p.first_as_a, p.first_as_b) in {("A", "B"), ("B", "A"), ("tie", "tie")}
    )
    reference_wins = sum(1 for p in pairs if p.outcome == "win")
    discrimination, consistency = _share(wins, n), _share(consistent, n)
    reasons: list[str] = []
    if n == 0:
        reasons.append("no item has a mismatched answer to check the judge with (one item or one answer)")
    else:
        if discrimination is not None and discrimination < min_discrimination:
            reasons.append(f"discrimination {discrimination:.2f} below {min_discrimination:.2f} (n={n})")
        if consistency is not None and consistency < min_consistency:
            reasons.append(f"position consistency {consistency:.2f} below {min_consistency:.2f} (n={n})")
    return JudgeCheck(
        n=n,
        discrimination=discrimination,
        consistency=consistency,
        reference_wins=_share(reference_wins, n),
        score_gap=mean_or_none(gaps),
        min_discrimination=min_discrimination,
        min_consistency=min_consistency,
        passed=not reasons,
        reasons=reasons,
    )
