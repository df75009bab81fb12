"""The few evaluation numbers promotion decides on, from the evaluate stage's report or a version's tags.

The evaluate stage writes :class:`~ragtune.core.reports.evaluation.EvalMetrics` (``metrics.json``):
per-contender judge means, the paired tuned − base judge difference as ``delta_*``, the resolved
``primary_metric``, the judge's sanity check (``judge_check``) and paired differences on both
metrics (``comparisons``: ``tuned-base``, ``tuned-champion``, ...). The gate reads the comparisons on
the primary metric. The summary is copied onto the registered model version as ``ragtune.eval.*``
tags, so a later promotion (``ragtune promote --version N``) needs nothing but the registry.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from ragtune.core.artifacts import EvaluationDir
from ragtune.core.reports.evaluation import BASE, CHAMPION, TUNED, Comparison, EvalMetrics

TAG_PREFIX = "ragtune.eval."
_TEXT_FIELDS = {
    "judge_model",
    "judge_templates",
    "primary_metric",
    "judge_check_reasons",
    "champion_model",
    "adapter_sha256",
}
_INT_FIELDS = {"delta_n", "primary_n", "champion_n"}
_BOOL_FIELDS = {"judge_is_weak", "judge_check_passed"}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _count(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "false"}:
        return value.lower() == "true"
    return None


def _interval(comparison: Comparison | None) -> tuple[float | None, float | None, float | None, int | None]:
    """(mean, ci_low, ci_high, n) of a comparison, all ``None`` when it was not computed."""
    if comparison is None:
        return None, None, None, None
    return comparison.mean, comparison.ci_low, comparison.ci_high, comparison.n


class EvalSummary(BaseModel):
    """Judge-score summary of one evaluation of the tuned model against its base."""

    tuned_mean: float | None = Field(description="Mean judge score of the tuned model.")
    base_mean: float | None = Field(description="Mean judge score of the base model.")
    delta_mean: float | None = Field(None, description="Mean paired difference tuned − base.")
    delta_ci_low: float | None = Field(None, description="Lower bound of the difference's bootstrap CI.")
    delta_ci_high: float | None = Field(None, description="Upper bound of the difference's bootstrap CI.")
    delta_n: int | None = Field(None, description="Items the paired difference is over.")
    confidence: float | None = Field(None, description="Confidence level of the CI.")
    judge_model: str | None = None
    judge_templates: str | None = Field(None, description="Rubric template ids, comma-separated.")
    judge_is_weak: bool | None = Field(None, description="The judge was the small local model.")
    judge_check_passed: bool | None = Field(
        None, description="The judge passed its sanity check; None when no check was recorded."
    )
    judge_check_reasons: str | None = Field(None, description="Why the judge check failed, if it did.")
    primary_metric: str | None = Field(
        None, description="judge or reference: the metric the stage resolved (None: not recorded)."
    )
    primary_delta_mean: float | None = Field(None, description="tuned − base on the primary metric.")
    primary_ci_low: float | None = None
    primary_ci_high: float | None = None
    primary_n: int | None = Field(
        None, description="Paired items tuned − base on the primary metric is over."
    )
    champion_model: str | None = Field(
        None,
        description="Identity (adapter:<sha256 prefix>) of the champion evaluated beside the tuned model.",
    )
    champion_delta_mean: float | None = Field(None, description="tuned − champion on the primary metric.")
    champion_ci_low: float | None = None
    champion_ci_high: float | None = None
    champion_n: int | None = None
    adapter_sha256: str | None = Field(None, description="sha256 of the adapter the evaluation scored.")

    @classmethod
    def from_metrics(cls, metrics: EvalMetrics) -> EvalSummary:
        """From the evaluate stage's report; the gate's numbers are the comparisons on its primary metric."""
        primary = _interval(metrics.comparison(f"{TUNED}-{BASE}"))
        versus_champion = _interval(metrics.comparison(f"{TUNED}-{CHAMPION}"))
        check = metrics.judge_check
        champion = metrics.contenders.get(CHAMPION)
        return cls(
            tuned_mean=metrics.means.get(TUNED),
            base_mean=metrics.means.get(BASE),
            delta_mean=metrics.delta_mean,
            delta_ci_low=metrics.delta_ci_low,
            delta_ci_high=metrics.delta_ci_high,
            delta_n=metrics.delta_n,
            confidence=metrics.confidence,
            judge_model=metrics.judge_model or None,
            judge_templates=",".join(v for _, v in sorted(metrics.judge_templates.items())) or None,
            judge_is_weak=metrics.judge_is_weak,
            judge_check_passed=check.passed if check is not None else None,
            judge_check_reasons="; ".join(check.reasons) if check is not None and check.reasons else None,
            primary_metric=metrics.primary_metric,
            primary_delta_mean=primary[0],
            primary_ci_low=primary[1],
            primary_ci_high=primary[2],
            primary_n=primary[3],
            champion_model=champion.model if champion is not None else None,
            champion_delta_mean=versus_champion[0],
            champion_ci_low=versus_champion[1],
            champion_ci_high=versus_champion[2],
            champion_n=versus_champion[3],
            adapter_sha256=metrics.adapter_sha256,
        )

    @classmethod
    def load(cls, eval_dir: str | Path) -> EvalSummary:
        """From the evaluate stage's output folder; a missing or invalid report is an InputError naming it."""
        return cls.from_metrics(EvaluationDir(Path(eval_dir)).read_report(EvalMetrics))

    def to_tags(self) -> dict[str, str]:
        """``ragtune.eval.<field>`` tags for the fields that have a value."""
        return {
            f"{TAG_PREFIX}{key}": (
                repr(value)
                if isinstance(value, float)
                else str(value).lower()
                if isinstance(value, bool)
                else str(value)
            )
            for key, value in self.model_dump().items()
            if value is not None
        }

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> EvalSummary | None:
        """Inverse of :meth:`to_tags`; ``None`` when no eval tags were recorded."""
        values = {k[len(TAG_PREFIX) :]: v for k, v in tags.items() if k.startswith(TAG_PREFIX)}
        values = {k: v for k, v in values.items() if k in cls.model_fields}
        if not values:
            return None
        data: dict[str, Any] = {}
        for key, raw in values.items():
            if key in _TEXT_FIELDS:
                data[key] = raw
            elif key in _INT_FIELDS:
                data[key] = _count(raw)
            elif key in _BOOL_FIELDS:
                data[key] = _flag(raw)
            else:
                data[key] = _number(raw)
        data.setdefault("tuned_mean", None)
        data.setdefault("base_mean", None)
        return cls.model_validate(data)

    def metrics(self) -> dict[str, float]:
        """The numeric fields, as MLflow metrics."""
        return {
            key: float(value)
            for key, value in self.model_dump().items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }
