"""The evaluation's templates (judge rubrics, the HTML report) and how judge context is clipped.

They live in ``ragtune/evaluate/templates`` and load through the one loader
(:class:`ragtune.core.templates.TemplateSet`), overridable by file name from
``evaluate.templates_dir``; ``name@N`` of each is recorded in ``metrics.json`` so that scores from
different rubrics are never compared unknowingly: changing a rubric means bumping it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ragtune.core.templates import TemplateSet

SCORE_TEMPLATE = "judge_score"
PAIRWISE_TEMPLATE = "judge_pairwise"
REPORT_TEMPLATE = "eval_report.html"


def evaluation_templates(templates_dir: str | Path | None = None) -> TemplateSet:
    """The packaged evaluation templates, each replaced by a same-named file in ``templates_dir``."""
    return TemplateSet("ragtune.evaluate", templates_dir, setting="evaluate.templates_dir")


def clip_context(chunks: Sequence[str], max_chars: int) -> list[str]:
    """The chunks, best first, cut so that together they hold at most ``max_chars`` characters."""
    kept: list[str] = []
    left = max_chars
    for chunk in chunks:
        if left <= 0:
            break
        kept.append(chunk if len(chunk) <= left else chunk[:left].rstrip() + " …")
        left -= len(chunk)
    return kept
