"""The few evaluation numbers promotion decides on, read from ``metrics.json`` or a version's tags.

The evaluate stage writes (``ragtune.evaluate.schema.EvalMetrics``) per-contender means under
``means`` (and ``contenders.<name>.score_mean``) and the paired tuned − base difference as
``delta_mean`` / ``delta_ci_low`` / ``delta_ci_high``. They are copied onto the registered model
version as ``ragtune.eval.*`` tags, so a later promotion (``ragtune promote --version N``) and the
comparison with a future challenger need nothing but the registry.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from ragtune.core.records import read_json_object

TUNED, BASE = "tuned", "base"
TAG_PREFIX = "ragtune.eval."


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
        )

    @classmethod
    def load(cls, path: str | Path) -> EvalSummary:
        """Read an evaluate-stage ``metrics.json``; a missing or malformed file is an :class:`InputError`."""
        return cls.from_metrics(read_json_object(path, "eval metrics"))

    def to_tags(self) -> dict[str, str]:
        """``ragtune.eval.<field>`` tags for the fields that have a value."""
        return {
            f"{TAG_PREFIX}{key}": (repr(value) if isinstance(value, float) else str(value))
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
            if key in {"judge_model", "judge_templates"}:
                data[key] = raw
            elif key == "delta_n":
                number = _number(raw)
                data[key] = int(number) if number is not None else None
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
