"""Promotion: move the ``champion`` alias to a new version only when it is better, with evidence.

A version becomes champion when both hold:

* its mean judge score beats the reference — the current champion's recorded mean (its
  ``ragtune.eval.tuned_mean`` tag), or the base model's mean when there is no champion — by at least
  ``registry.promotion_margin`` (and by more than nothing), and
* with ``registry.require_ci_above_zero``, the lower bound of the paired tuned − base difference's
  confidence interval is above zero, i.e. the improvement over the base is not noise.

Otherwise it gets the ``challenger`` alias, and the reason says which test failed, with the
numbers. ``force=True`` is the manual override. Only aliases are used (stages are deprecated). The
decision is also recorded on the version as tags (``ragtune.promotion``,
``ragtune.promotion_reason``), and a replaced champion is tagged ``ragtune.promotion=replaced``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from ragtune.core.config import RagtuneConfig
from ragtune.core.errors import InputError
from ragtune.registry.evalsummary import EvalSummary
from ragtune.registry.register import ModelVersionInfo, get_version
from ragtune.registry.tracking import MAX_TAG_VALUE, client_for, mlflow_error

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

TAG_PROMOTION = "ragtune.promotion"
TAG_PROMOTION_REASON = "ragtune.promotion_reason"
TAG_PROMOTION_FORCED = "ragtune.promotion_forced"
TAG_REPLACED_BY = "ragtune.replaced_by"
TAG_TUNED_MEAN = "ragtune.eval.tuned_mean"


class PromotionDecision(BaseModel):
    """What promotion did with one model version, and why (in words, with the numbers)."""

    model_name: str
    version: int
    alias: str = Field(description="The alias now set on the version (champion or challenger).")
    promoted: bool = Field(description="True when the version is now the champion.")
    forced: bool = False
    reason: str = Field(description="Human explanation with the numbers it rests on.")
    tuned_mean: float | None = None
    reference: Literal["champion", "base", "none"] = Field(
        "none", description="What the tuned mean was compared with."
    )
    reference_mean: float | None = None
    reference_version: int | None = Field(None, description="The champion compared with, if any.")
    previous_champion: int | None = Field(None, description="Champion before this decision.")
    promotion_margin: float = 0.0
    delta_ci_low: float | None = None
    delta_ci_high: float | None = None
    model_uri: str = Field(description="models:/<name>@<alias>.")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _version_by_alias(client: MlflowClient, name: str, alias: str) -> Any | None:
    """The version holding ``alias``, or ``None``."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as err:
        if err.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}:
            return None
        raise


def _judge_note(summary: EvalSummary, champion: EvalSummary | None) -> str:
    """A warning when the champion was judged by another judge or rubric (means not comparable)."""
    if champion is None:
        return ""
    differs = [
        what
        for what, mine, theirs in (
            ("judge model", summary.judge_model, champion.judge_model),
            ("rubric", summary.judge_templates, champion.judge_templates),
        )
        if mine and theirs and mine != theirs
    ]
    return f" Note: the champion was scored with a different {' and '.join(differs)}." if differs else ""


def decide(
    config: RagtuneConfig,
    summary: EvalSummary,
    champion_version: int | None,
    champion_summary: EvalSummary | None,
) -> tuple[bool, str, Literal["champion", "base", "none"], float | None]:
    """Pure promotion rule: ``(promote, reason, reference, reference_mean)``."""
    registry = config.registry
    margin = registry.promotion_margin
    if (
        champion_version is not None
        and champion_summary is not None
        and champion_summary.tuned_mean is not None
    ):
        reference: Literal["champion", "base", "none"] = "champion"
        reference_mean: float | None = champion_summary.tuned_mean
        label = f"the champion (version {champion_version})"
    elif summary.base_mean is not None:
        reference, reference_mean, label = "base", summary.base_mean, "the base model"
        if champion_version is not None:
            label += f" (champion version {champion_version} has no recorded judge score)"
    else:
        reference, reference_mean, label = "none", None, "nothing"
    tuned = summary.tuned_mean
    failures: list[str] = []
    passes: list[str] = []
    if tuned is None:
        failures.append("no mean judge score was recorded for the tuned model")
    elif reference_mean is None:
        failures.append("there is neither a champion score nor a base-model score to compare with")
    else:
        gain = tuned - reference_mean
        comparison = (
            f"mean judge score {_fmt(tuned)} vs {_fmt(reference_mean)} for {label}:"
            f" {gain:+.3f} (margin {margin:.3f})"
        )
        if gain > 0 and gain >= margin:
            passes.append(comparison)
        else:
            failures.append(comparison + (" — not above it" if gain <= 0 else " — below the margin"))
    if registry.require_ci_above_zero:
        level = f"{summary.confidence:.0%} " if summary.confidence else ""
        interval = f"[{_fmt(summary.delta_ci_low)}, {_fmt(summary.delta_ci_high)}]"
        if summary.delta_ci_low is None:
            failures.append(f"no {level}CI of the paired tuned − base difference was recorded")
        elif summary.delta_ci_low > 0:
            passes.append(f"paired tuned − base difference {level}CI {interval} lies above 0")
        else:
            failures.append(f"paired tuned − base difference {level}CI {interval} does not lie above 0")
    if failures:
        reason = "Not promoted: " + "; ".join(failures) + "."
        if passes:
            reason += " (Passed: " + "; ".join(passes) + ".)"
        return False, reason, reference, reference_mean
    return True, "Promoted: " + "; ".join(passes) + ".", reference, reference_mean


def promote(
    config: RagtuneConfig,
    version: int | ModelVersionInfo,
    eval_metrics: EvalSummary | Mapping[str, Any],
    force: bool = False,
) -> PromotionDecision:
    """Set ``champion`` on ``version`` if it earns it (or ``force``), else ``challenger``.

    ``eval_metrics`` is the version's :class:`EvalSummary` or the evaluate stage's metrics dict.
    """
    from mlflow.exceptions import MlflowException

    registry = config.registry
    name = registry.model_name
    number = version.version if isinstance(version, ModelVersionInfo) else int(version)
    summary = (
        eval_metrics if isinstance(eval_metrics, EvalSummary) else EvalSummary.from_metrics(eval_metrics)
    )
    client = client_for(config)
    try:
        client.get_model_version(name, str(number))
        current = _version_by_alias(client, name, registry.champion_alias)
        previous = int(current.version) if current is not None else None
        if previous == number:
            promoted, reason = True, f"Version {number} is already the champion; nothing changed."
            reference: Literal["champion", "base", "none"] = "champion"
            reference_mean = summary.tuned_mean
            champion_summary = None
        else:
            champion_summary = EvalSummary.from_tags(current.tags or {}) if current is not None else None
            promoted, reason, reference, reference_mean = decide(config, summary, previous, champion_summary)
            reason += _judge_note(summary, champion_summary)
            if force and not promoted:
                reason = (
                    f"Forced by user (the rule would not promote: {reason.removeprefix('Not promoted: ')})"
                )
                promoted = True
            elif force:
                reason = f"Forced by user; the rule agrees. {reason}"
        alias = registry.champion_alias if promoted else registry.challenger_alias
        if previous != number or not promoted:
            client.set_registered_model_alias(name, alias, str(number))
        if promoted and previous is not None and previous != number:
            client.set_model_version_tag(name, str(previous), TAG_PROMOTION, "replaced")
            client.set_model_version_tag(name, str(previous), TAG_REPLACED_BY, str(number))
        challenger = _version_by_alias(client, name, registry.challenger_alias) if promoted else None
        if challenger is not None and int(challenger.version) == number:
            client.delete_registered_model_alias(name, registry.challenger_alias)
        tags = {
            TAG_PROMOTION: "champion" if promoted else "challenger",
            TAG_PROMOTION_REASON: reason[:MAX_TAG_VALUE],
            TAG_PROMOTION_FORCED: str(force).lower(),
        }
        for key, value in tags.items():
            client.set_model_version_tag(name, str(number), key, value)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise InputError(f"registered model {name!r} has no version {number}") from None
        raise mlflow_error(config, f"promoting {name} version {number}", err) from None
    decision = PromotionDecision(
        model_name=name,
        version=number,
        alias=alias,
        promoted=promoted,
        forced=force,
        reason=reason,
        tuned_mean=summary.tuned_mean,
        reference=reference,
        reference_mean=reference_mean,
        reference_version=previous if reference == "champion" else None,
        previous_champion=previous,
        promotion_margin=registry.promotion_margin,
        delta_ci_low=summary.delta_ci_low,
        delta_ci_high=summary.delta_ci_high,
        model_uri=f"models:/{name}@{alias}",
    )
    log.info("%s version %d -> %s: %s", name, number, alias, reason)
    return decision


def promote_version(config: RagtuneConfig, version: int, force: bool = False) -> PromotionDecision:
    """Promote by version number, with the eval numbers recorded on the version's tags (CLI use)."""
    info = get_version(config, version)
    summary = EvalSummary.from_tags(info.tags)
    if summary is None:
        if not force:
            raise InputError(
                f"{info.name} version {version} has no recorded eval metrics (ragtune.eval.* tags);"
                " promote it with --force or register it through the pipeline"
            )
        summary = EvalSummary(tuned_mean=None, base_mean=None)
    return promote(config, info, summary, force=force)
