"""The judge's prompts: versioned Jinja2 templates shipped in ``ragtune/evaluate/templates``.

Each template starts with ``{# version: N #}``; ``name@N`` is recorded in ``metrics.json`` so that
scores from different rubrics are never compared unknowingly: changing a rubric means bumping it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from importlib import resources

import jinja2

from ragtune.core.errors import ConfigError
from ragtune.core.llm.prompting import UNTRUSTED_NOTE, quote_untrusted

SCORE_TEMPLATE = "judge_score.j2"
PAIRWISE_TEMPLATE = "judge_pairwise.j2"
REPORT_TEMPLATE = "report.html.j2"

_VERSION = re.compile(r"\{#\s*version:\s*(\d+)\s*#\}")


def template_source(name: str) -> str:
    return (resources.files("ragtune.evaluate") / "templates" / name).read_text(encoding="utf-8")


@cache
def template_id(name: str) -> str:
    """``stem@version`` of a packaged template, e.g. ``judge_score@1``."""
    match = _VERSION.search(template_source(name))
    if match is None:
        raise ConfigError(f"template {name} lacks its '{{# version: N #}}' line")
    return f"{name.split('.')[0]}@{match.group(1)}"


@cache
def _environment(autoescape: bool) -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FunctionLoader(template_source),
        undefined=jinja2.StrictUndefined,
        autoescape=autoescape,
        trim_blocks=True,
        keep_trailing_newline=False,
    )
    environment.filters["untrusted"] = quote_untrusted  # judge prompts: text that cannot close a tag
    environment.globals["untrusted_note"] = UNTRUSTED_NOTE
    return environment


def render(name: str, *, autoescape: bool = False, **values: object) -> str:
    return _environment(autoescape).get_template(name).render(**values)


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


def score_prompt(question: str, reference: str, context: Sequence[str], answer: str) -> str:
    return render(SCORE_TEMPLATE, question=question, reference=reference, context=context, answer=answer)


def pairwise_prompt(
    question: str, reference: str, context: Sequence[str], answer_a: str, answer_b: str
) -> str:
    return render(
        PAIRWISE_TEMPLATE,
        question=question,
        reference=reference,
        context=context,
        answer_a=answer_a,
        answer_b=answer_b,
    )
