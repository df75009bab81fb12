"""The report's figures, drawn with matplotlib's Agg renderer and returned as base64 PNG.

Figures are built from :class:`matplotlib.figure.Figure` directly (no pyplot), so nothing touches
the process-wide backend or keeps figures alive.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

_SCORES = list(range(1, 11))


def _png_base64(figure: Figure) -> str:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _empty(ax: object, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)  # type: ignore[attr-defined]


def score_histogram(scores: Mapping[str, Sequence[int]]) -> str:
    """Grouped bars: how often each contender got each score 1–10."""
    figure = Figure(figsize=(8, 3.6))
    ax = figure.add_subplot()
    names = list(scores)
    width = 0.8 / max(1, len(names))
    for position, name in enumerate(names):
        counts = [sum(1 for s in scores[name] if s == value) for value in _SCORES]
        offsets = [v - 0.4 + width * (position + 0.5) for v in _SCORES]
        ax.bar(offsets, counts, width=width, label=f"{name} (n={len(scores[name])})")
    ax.set_xticks(_SCORES)
    ax.set_xlabel("judge score")
    ax.set_ylabel("items")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Score distribution per contender")
    if any(scores.values()):
        ax.legend(fontsize="small")
    else:
        _empty(ax, "no judge scores")
    return _png_base64(figure)


def category_bars(means: Mapping[str, Mapping[str, float | None]]) -> str:
    """Grouped bars: mean judge score per category (x) and contender (colour)."""
    names = list(means)
    categories = sorted({c for per in means.values() for c in per})
    figure = Figure(figsize=(max(6.0, 1.1 * len(categories) + 3), 3.8))
    ax = figure.add_subplot()
    width = 0.8 / max(1, len(names))
    for position, name in enumerate(names):
        values = [means[name].get(c) for c in categories]
        xs = [i - 0.4 + width * (position + 0.5) for i in range(len(categories))]
        ax.bar(xs, [v if v is not None else 0.0 for v in values], width=width, label=name)
    ax.set_xticks(range(len(categories)))
    ax.set_xticklabels([c if len(c) <= 24 else c[:23] + "…" for c in categories], rotation=30, ha="right")
    ax.set_ylim(0, 10)
    ax.set_ylabel("mean judge score")
    ax.set_title("Mean score per category")
    if categories:
        ax.legend(fontsize="small")
    else:
        _empty(ax, "no categories")
    return _png_base64(figure)
