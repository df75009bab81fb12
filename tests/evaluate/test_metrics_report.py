"""From fixed rows to metrics.json numbers and to the HTML report."""

from __future__ import annotations

import pytest

from ragtune.core.reports.evaluation import EvalMetrics
from ragtune.evaluate.metrics import JudgeInfo, MetricSettings, compute_metrics
from ragtune.evaluate.report import render_report
from ragtune.evaluate.schema import PairRow, ScoreRow
from tests.evaluate.helpers import ITEMS

SETTINGS = MetricSettings(seed=0, bootstrap_samples=200, confidence=0.95, max_new_tokens=32)
WEAK = JudgeInfo(model="local:smollm2", base_url=None, is_weak=True, templates={"score": "judge_score@1"})
STRONG = WEAK.model_copy(update={"model": "openai:gpt-4", "base_url": "http://judge/v1", "is_weak": False})


def row(
    item: int, contender: str, score: int | None, answer: str | None = "an answer", **extra: object
) -> ScoreRow:
    it = ITEMS[item]
    fields: dict[str, object] = {
        "item_id": it.item_id,
        "category": it.category,
        "contender": contender,
        "model": f"m:{contender}",
        "answer": answer,
        "score": score,
        "rouge_l": 0.5 if answer is not None else None,
        "cosine": 0.8 if answer is not None else None,
    }
    if answer is None:
        fields["answer_error"] = "timeout"
    elif score is None:
        fields["judge_error"] = "unparseable judge reply"
    fields.update(extra)
    return ScoreRow.model_validate(fields)


def pair(item: int, contender: str, outcome: str | None) -> PairRow:
    return PairRow(
        item_id=ITEMS[item].item_id,
        category=ITEMS[item].category,
        contender=contender,
        verdict_tuned_first="A" if outcome == "win" else None,
        verdict_tuned_second="B" if outcome == "win" else None,
        outcome=outcome,
    )


ROWS = [
    row(0, "base", 4, reason="vague"),
    row(1, "base", 6),
    row(0, "tuned", 9, answer="<script>alert('x')</script> A sudden surge of fear.", reason="<b>matches</b>"),
    row(1, "tuned", 8),
    row(0, "gpt", 7),
    row(1, "gpt", None, answer=None),  # the contender failed to answer item 1
]
PAIRS = [pair(0, "base", "win"), pair(1, "base", "tie"), pair(0, "gpt", "loss"), pair(1, "gpt", None)]


@pytest.fixture
def metrics() -> EvalMetrics:
    return compute_metrics(
        ROWS, PAIRS, contender_names=["base", "tuned", "gpt"], judge=WEAK, settings=SETTINGS
    )


def test_sums_means_and_failures(metrics: EvalMetrics) -> None:
    assert metrics.sums == {"base": 10, "tuned": 17, "gpt": 7}
    assert metrics.means == {"base": 5.0, "tuned": 8.5, "gpt": 7.0}
    # only item 0 is scored for everyone: the comparable sums are over it
    assert metrics.n_common == 1
    assert metrics.sums_common == {"base": 4, "tuned": 9, "gpt": 7}
    gpt = metrics.contenders["gpt"]
    assert (gpt.n_items, gpt.n_answered, gpt.n_scored, gpt.answer_failures, gpt.judge_failures) == (
        2,
        1,
        1,
        1,
        0,
    )
    assert gpt.score_ci_low == gpt.score_ci_high == 7.0  # one value: the interval collapses
    assert metrics.failures["answers"] == {"base": 0, "tuned": 0, "gpt": 1}
    assert metrics.failures["judge_pairwise"] == {"base": 0, "gpt": 1}
    assert metrics.failures_total == 2
    assert metrics.contenders["tuned"].rouge_l_mean == 0.5


def test_delta_is_paired_tuned_minus_base(metrics: EvalMetrics) -> None:
    assert metrics.delta_n == 2
    assert metrics.delta_mean == pytest.approx(3.5)  # (9-4 + 8-6) / 2
    assert metrics.delta_ci_low == pytest.approx(2.0)  # resamples of {5, 2}: means lie in [2, 5]
    assert metrics.delta_ci_high == pytest.approx(5.0)
    assert metrics.delta_prob_positive == 1.0


def test_per_category_and_pairwise(metrics: EvalMetrics) -> None:
    tuned = metrics.contenders["tuned"].per_category
    assert tuned["Anxiety Disorders"].score_mean == 9.0
    assert tuned["Sleep-Wake Disorders"].score_mean == 8.0
    assert metrics.contenders["gpt"].per_category["Sleep-Wake Disorders"].score_mean is None
    base = metrics.pairwise["base"]
    assert (base.wins, base.ties, base.losses, base.win_rate, base.tie_rate) == (1, 1, 0, 0.5, 0.5)
    gpt = metrics.pairwise["gpt"]
    assert (gpt.losses, gpt.failures, gpt.n_decided, gpt.loss_rate) == (1, 1, 1, 1.0)


def test_judge_failures_are_counted_not_scored() -> None:
    rows = [row(0, "base", None), row(1, "base", 5), row(0, "tuned", 7), row(1, "tuned", 9)]
    metrics = compute_metrics(rows, [], contender_names=["base", "tuned"], judge=WEAK, settings=SETTINGS)
    assert metrics.contenders["base"].judge_failures == 1
    assert metrics.means["base"] == 5.0
    assert metrics.delta_n == 1 and metrics.delta_mean == 4.0  # only item 1 has both scores
    assert metrics.failures_total == 1


def test_no_tuned_model_means_no_delta() -> None:
    rows = [row(0, "base", 3), row(1, "base", 5)]
    metrics = compute_metrics(rows, [], contender_names=["base"], judge=WEAK, settings=SETTINGS)
    assert metrics.delta_mean is None and metrics.delta_n == 0 and metrics.pairwise == {}


def test_report_renders_tables_figures_and_escapes(metrics: EvalMetrics) -> None:
    html = render_report(metrics, ITEMS, ROWS, PAIRS)
    assert html.lstrip().startswith("<!DOCTYPE html>")
    assert '<table class="summary">' in html and '<table class="items">' in html
    assert html.count('<img alt="') == 2
    assert html.count('src="data:image/png;base64,') == 2
    assert "<script" not in html  # the answer's script tag is text, not markup
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "&lt;b&gt;matches&lt;/b&gt;" in html
    assert "What is a panic attack?" in html
    assert 'id="weak-judge-warning"' in html
    assert "no answer: timeout" in html
    assert "http" not in html.replace("http://judge/v1", "")  # self-contained: nothing fetched


def test_report_has_no_banner_for_a_strong_judge() -> None:
    metrics = compute_metrics(
        ROWS, PAIRS, contender_names=["base", "tuned", "gpt"], judge=STRONG, settings=SETTINGS
    )
    html = render_report(metrics, ITEMS, ROWS, PAIRS)
    assert "weak-judge-warning" not in html
    assert "openai:gpt-4" in html


def test_report_renders_without_any_score() -> None:
    rows = [row(0, "base", None), row(1, "base", None)]
    metrics = compute_metrics(rows, [], contender_names=["base"], judge=WEAK, settings=SETTINGS)
    html = render_report(metrics, ITEMS, rows)
    assert html.count('src="data:image/png;base64,') == 2
    assert "judge failed" in html
