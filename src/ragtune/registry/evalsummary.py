"""The few evaluation numbers promotion decides on, read from ``metrics.json`` or a version's tags.

The evaluate stage writes (``ragtune.evaluate.schema.EvalMetrics``) per-contender judge means under
``means``, the paired tuned − base judge difference as ``delta_*``, the resolved
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

from ragtune.core.records import read_json_object

TUNED, BASE, CHAMPION = "tuned", "base", "champion"
TAG_PREFIX = "ragtune.eval."
_TEXT_FIELDS = {"judge_model", "judge_templates", "primary_metric", "judge_check_reasons", "champion_model"}
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


def _contender_mean(data: Mapping[str, Any], name: str) -> float | None:
    means = data.get("means")
    if isinstance(means, Mapping) and _number(means.get(name)) is not None:
        return _number(means.get(name))
    contenders = data.get("contenders")
    entry = contenders.get(name) if isinstance(contenders, Mapping) else None
    if isinstance(entry, Mapping):
        for key in ("score_mean", "mean"):
            if _number(entry.get(key)) is not None:
                return _number(entry.get(key))
    return None


def _comparison(data: Mapping[str, Any], name: str, metric: str) -> Mapping[str, Any] | None:
    """The ``comparisons`` entry called ``name`` on ``metric``, if the stage wrote one."""
    entries = data.get("comparisons")
    if not isinstance(entries, list):
        return None
    for entry in entries:
        if isinstance(entry, Mapping) and entry.get("name") == name and entry.get("metric") == metric:
            return entry
    return None


def _count(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "false"}:
        return value.lower() == "true"
    return None


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
        None, description="judge or reference: the metric the stage resolved (None: an old judge-only run)."
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

    @classmethod
    def from_metrics(cls, data: Mapping[str, Any]) -> EvalSummary:
        """From the evaluate stage's ``metrics.json`` content."""
        nested = data.get("delta")
        delta: Mapping[str, Any] = nested if isinstance(nested, Mapping) else {}

        def pick(flat: str, nested: str) -> float | None:
            value = _number(data.get(flat))
            return value if value is not None else _number(delta.get(nested))

        templates = data.get("judge_templates")
        if isinstance(templates, Mapping):
            templates = ",".join(str(v) for _, v in sorted(templates.items()))
        n = pick("delta_n", "n")
        metric = data.get("primary_metric")
        primary = str(metric) if metric in {"judge", "reference"} else None
        # an evaluation from before comparisons existed: tuned − base on the judge is its evidence
        versus_base = _comparison(data, f"{TUNED}-{BASE}", primary or "judge") or {
            "mean": pick("delta_mean", "mean"),
            "ci_low": pick("delta_ci_low", "low"),
            "ci_high": pick("delta_ci_high", "high"),
            "n": n,
        }
        versus_champion = _comparison(data, f"{TUNED}-{CHAMPION}", primary or "judge") or {}
        check = data.get("judge_check")
        check = check if isinstance(check, Mapping) else {}
        reasons = check.get("reasons")
        contenders = data.get("contenders")
        champion = contenders.get(CHAMPION) if isinstance(contenders, Mapping) else None
        return cls(
            tuned_mean=_contender_mean(data, TUNED),
            base_mean=_contender_mean(data, BASE),
            delta_mean=pick("delta_mean", "mean"),
            delta_ci_low=pick("delta_ci_low", "low"),
            delta_ci_high=pick("delta_ci_high", "high"),
            delta_n=int(n) if n is not None else None,
            confidence=_number(data.get("confidence")),
            judge_model=str(data["judge_model"]) if data.get("judge_model") else None,
            judge_templates=str(templates) if templates else None,
            judge_is_weak=_flag(data.get("judge_is_weak")),
            judge_check_passed=_flag(check.get("passed")),
            judge_check_reasons="; ".join(map(str, reasons))
            if isinstance(reasons, list) and reasons
            else None,
            primary_metric=primary,
            primary_delta_mean=_number(versus_base.get("mean")),
            primary_ci_low=_number(versus_base.get("ci_low")),
            primary_ci_high=_number(versus_base.get("ci_high")),
            primary_n=_count(versus_base.get("n")),
            champion_model=(
                str(champion["model"]) if isinstance(champion, Mapping) and champion.get("model") else None
            ),
            champion_delta_mean=_number(versus_champion.get("mean")),
            champion_ci_low=_number(versus_champion.get("ci_low")),
            champion_ci_high=_number(versus_champion.get("ci_high")),
            champion_n=_count(versus_champion.get("n")),
        )

    @classmethod
    def load(cls, path: str | Path) -> EvalSummary:
        """Read an evaluate-stage ``metrics.json``; a missing or malformed file is an :class:`InputError`."""
        return cls.from_metrics(read_json_object(path, "eval metrics"))

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
