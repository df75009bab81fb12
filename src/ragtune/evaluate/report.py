"""``report.html``: one self-contained page (inline CSS, figures as data URIs, everything escaped)."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from ragtune.core.records import InstructionItem
from ragtune.core.reports.evaluation import EvalMetrics
from ragtune.core.templates import TemplateSet
from ragtune.evaluate.plots import category_bars, score_histogram
from ragtune.evaluate.prompts import REPORT_TEMPLATE, evaluation_templates
from ragtune.evaluate.schema import PairRow, ScoreRow


class ItemView(BaseModel):
    item_id: str
    category: str
    question: str
    reference: str
    cells: dict[str, ScoreRow]
    pairs: dict[str, str] = {}


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def _band(score: int) -> str:
    return "hi" if score >= 8 else "mid" if score >= 5 else "lo"


def item_views(
    items: Sequence[InstructionItem], rows: Sequence[ScoreRow], pairs: Sequence[PairRow]
) -> list[ItemView]:
    cells: dict[str, dict[str, ScoreRow]] = {}
    for row in rows:
        cells.setdefault(row.item_id, {})[row.contender] = row
    outcomes: dict[str, dict[str, str]] = {}
    for pair in pairs:
        outcomes.setdefault(pair.item_id, {})[pair.contender] = pair.outcome or "failed"
    return [
        ItemView(
            item_id=item.item_id,
            category=item.category,
            question=item.question,
            reference=item.answer,
            cells=cells.get(item.item_id, {}),
            pairs={
                name: {"win": "wins", "loss": "loses", "tie": "ties"}.get(o, o)
                for name, o in outcomes.get(item.item_id, {}).items()
            },
        )
        for item in items
    ]


def render_report(
    metrics: EvalMetrics,
    items: Sequence[InstructionItem],
    rows: Sequence[ScoreRow],
    pairs: Sequence[PairRow] = (),
    templates: TemplateSet | None = None,
) -> str:
    """The HTML page for ``metrics`` and the per-item rows (answers, scores, verdicts)."""
    scores = {
        name: [r.score for r in rows if r.contender == name and r.score is not None]
        for name in metrics.contenders
    }
    per_category = {
        name: {category: c.score_mean for category, c in summary.per_category.items()}
        for name, summary in metrics.contenders.items()
    }
    template = (templates or evaluation_templates()).get(REPORT_TEMPLATE)
    return template.render(
        metrics=metrics,
        items=item_views(items, rows, pairs),
        histogram_png=score_histogram(scores),
        category_png=category_bars(per_category),
        scored_names=[name for name in metrics.contender_names if not name.endswith("_rag")],
        fmt=_fmt,
        pct=_pct,
        band=_band,
    )
