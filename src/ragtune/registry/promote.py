"""Promotion: move the ``champion`` alias to a new version only when the evidence says it is better.

The gate decides on the evaluation's **primary metric** (``metrics.json`` ``primary_metric``:
``judge`` or ``reference``) and names it. A version becomes champion only when all hold:

* when the metric is the judge: the judge is not the weak local model and passed its sanity check
  (reference vs mismatched answers); an unchecked or flagged judge cannot crown a model;
* at least ``registry.min_eval_items`` paired, scored items back each paired difference;
* with a champion: its base model is the new version's (else the versions are not comparable), it
  was evaluated as contender ``champion`` on the same items with the same judge, and the paired
  tuned − champion mean is above 0 and at least ``registry.promotion_margin``; without one, the
  same for tuned − base;
* with ``registry.require_ci_above_zero``, the lower bound of each paired difference's CI is above 0.

Otherwise it gets the ``challenger`` alias, and the reason says which test failed, with the
numbers. ``force=True`` is the manual override; it appends an audit record (who, when, why) to the
version as the next numbered ``ragtune.promotion_audit.<n>`` tag, never overwriting one. Promotion
is race-safe: after setting ``champion`` it reads the alias back, and if another version took it
meanwhile the decision is taken again against that one. Only aliases are used (stages are deprecated).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from ragtune.core.config import RagtuneConfig
from ragtune.core.errors import InputError
from ragtune.core.reports.evaluation import EvalMetrics
from ragtune.registry.evalsummary import EvalSummary
from ragtune.registry.register import TAG_ADAPTER_SHA, TAG_BASE_MODEL, ModelVersionInfo, get_version
from ragtune.registry.tracking import MAX_TAG_VALUE, client_for, mlflow_error

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

TAG_PROMOTION = "ragtune.promotion"
TAG_PROMOTION_REASON = "ragtune.promotion_reason"
TAG_PROMOTION_FORCED = "ragtune.promotion_forced"
TAG_PROMOTION_AUDIT = "ragtune.promotion_audit."
TAG_REPLACED_BY = "ragtune.replaced_by"
TAG_TUNED_MEAN = "ragtune.eval.tuned_mean"
MAX_RACE_ROUNDS = 5
"""How often promotion re-decides when other versions keep taking the champion alias meanwhile."""

Reference = Literal["champion", "base", "none"]


class PromotionDecision(BaseModel):
    """What promotion did with one model version, and why (in words, with the numbers)."""

    model_name: str
    version: int
    alias: str = Field(description="The alias now set on the version (champion or challenger).")
    promoted: bool = Field(description="True when the version is now the champion.")
    forced: bool = False
    reason: str = Field(description="Human explanation with the numbers it rests on.")
    metric: str = Field("judge", description="The primary metric the decision rests on: judge or reference.")
    n: int | None = Field(None, description="Paired items behind the deciding difference.")
    tuned_mean: float | None = None
    reference: Reference = Field("none", description="What the tuned model was compared with.")
    reference_mean: float | None = Field(None, description="The reference's mean judge score (context).")
    reference_version: int | None = Field(None, description="The champion compared with, if any.")
    previous_champion: int | None = Field(None, description="Champion before this decision.")
    promotion_margin: float = 0.0
    delta_mean: float | None = Field(None, description="The deciding paired difference's mean.")
    delta_ci_low: float | None = None
    delta_ci_high: float | None = None
    model_uri: str = Field(description="models:/<name>@<alias>.")


class Champion(BaseModel):
    """The version holding the champion alias, as far as the gate needs it."""

    version: int
    base_model: str | None = None
    adapter_sha256: str | None = None
    summary: EvalSummary | None = None


class Verdict(BaseModel):
    """The pure rule's answer."""

    promoted: bool
    reason: str
    metric: str
    reference: Reference
    n: int | None = None
    delta_mean: float | None = None
    delta_ci_low: float | None = None
    delta_ci_high: float | None = None


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def version_by_alias(client: MlflowClient, name: str, alias: str) -> Any | None:
    """The version holding ``alias``, or ``None``."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as err:
        if err.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}:
            return None
        raise


def _champion(version: Any | None) -> Champion | None:
    if version is None:
        return None
    tags = version.tags or {}
    return Champion(
        version=int(version.version),
        base_model=tags.get(TAG_BASE_MODEL),
        adapter_sha256=tags.get(TAG_ADAPTER_SHA),
        summary=EvalSummary.from_tags(tags),
    )


def _judge_failures(summary: EvalSummary) -> list[str]:
    """Why the judge may not decide (empty when it may)."""
    if summary.judge_is_weak:
        return ["the judge is the weak local model, so its scores cannot crown a model"]
    if summary.judge_check_passed is None:
        return ["the judge's sanity check was not recorded, so its scores cannot crown a model"]
    if not summary.judge_check_passed:
        why = f" ({summary.judge_check_reasons})" if summary.judge_check_reasons else ""
        return [f"the judge failed its sanity check{why}, so its scores cannot crown a model"]
    return []


def _difference_tests(
    label: str,
    mean: float | None,
    low: float | None,
    high: float | None,
    n: int | None,
    *,
    config: RagtuneConfig,
    level: str,
    gate_on_mean: bool,
) -> tuple[list[str], list[str]]:
    """(failures, passes) of one paired difference: enough items, above the margin, CI above 0."""
    registry = config.registry
    failures: list[str] = []
    passes: list[str] = []
    interval = f"{level}CI [{_fmt(low)}, {_fmt(high)}]"
    if mean is None or n is None:
        return [f"no paired {label} difference was recorded"], []
    if n < registry.min_eval_items:
        failures.append(
            f"only {n} paired scored items for {label} (registry.min_eval_items is {registry.min_eval_items})"
        )
    if gate_on_mean:
        text = f"{label} {mean:+.3f} (margin {registry.promotion_margin:.3f}, n={n})"
        if mean > 0 and mean >= registry.promotion_margin:
            passes.append(text)
        else:
            failures.append(text + (" — not above 0" if mean <= 0 else " — below the margin"))
    if registry.require_ci_above_zero:
        if low is None:
            failures.append(f"no {level}CI of the paired {label} difference was recorded")
        elif low > 0:
            passes.append(f"{label} {interval} lies above 0")
        else:
            failures.append(f"{label} {interval} does not lie above 0")
    return failures, passes


def decide(
    config: RagtuneConfig,
    summary: EvalSummary,
    base_model: str | None,
    champion: Champion | None,
) -> Verdict:
    """Pure promotion rule for a version on ``base_model`` with ``summary``, against ``champion``."""
    metric = summary.primary_metric or "judge"
    level = f"{summary.confidence:.0%} " if summary.confidence else ""
    failures = _judge_failures(summary) if metric == "judge" else []
    against_champion = champion is not None
    base_failures, passes = _difference_tests(
        f"tuned − base ({metric})",
        summary.primary_delta_mean,
        summary.primary_ci_low,
        summary.primary_ci_high,
        summary.primary_n,
        config=config,
        level=level,
        gate_on_mean=not against_champion,
    )
    failures += base_failures
    reference: Reference = "base"
    delta = (summary.primary_delta_mean, summary.primary_ci_low, summary.primary_ci_high, summary.primary_n)
    if champion is not None:
        reference = "champion"
        label = f"tuned − champion version {champion.version} ({metric})"
        expected = (champion.adapter_sha256 or "")[:32]
        if base_model and champion.base_model and base_model != champion.base_model:
            failures.append(
                f"the versions are not comparable: champion version {champion.version} is tuned on"
                f" {champion.base_model!r}, this version on {base_model!r}"
            )
        elif not expected or summary.champion_model != f"adapter:{expected}":
            failures.append(
                f"champion version {champion.version} was not evaluated on this run's items"
                " (no paired tuned − champion comparison)"
            )
        else:
            delta = (
                summary.champion_delta_mean,
                summary.champion_ci_low,
                summary.champion_ci_high,
                summary.champion_n,
            )
            more_failures, more_passes = _difference_tests(
                label, *delta, config=config, level=level, gate_on_mean=True
            )
            failures += more_failures
            passes += more_passes
    head = f"on the {metric} metric"
    if failures:
        reason = f"Not promoted ({head}): " + "; ".join(failures) + "."
        if passes:
            reason += " (Passed: " + "; ".join(passes) + ".)"
    else:
        reason = f"Promoted ({head}): " + "; ".join(passes) + "."
    return Verdict(
        promoted=not failures,
        reason=reason,
        metric=metric,
        reference=reference,
        n=delta[3],
        delta_mean=delta[0],
        delta_ci_low=delta[1],
        delta_ci_high=delta[2],
    )


def actor() -> str:
    """Who is acting: the login user, else the Kubernetes service account the pod runs as."""
    for key in ("USER", "LOGNAME", "RAGTUNE_SERVICE_ACCOUNT"):
        value = os.environ.get(key)
        if value:
            return f"serviceaccount:{value}" if key == "RAGTUNE_SERVICE_ACCOUNT" else value
    return "unknown"


def append_audit(client: MlflowClient, name: str, version: int, record: Mapping[str, Any]) -> str:
    """Add ``record`` as the next numbered ``ragtune.promotion_audit.<n>`` tag; returns the tag key.

    Earlier records are never rewritten: the next free number is used, and the tag is read back so
    that a concurrent writer who took the same number makes this one move on to the next.
    """
    value = json.dumps(dict(record), ensure_ascii=False)[:MAX_TAG_VALUE]
    for _ in range(MAX_RACE_ROUNDS * 4):
        tags = client.get_model_version(name, str(version)).tags or {}
        numbers = [
            int(k[len(TAG_PROMOTION_AUDIT) :])
            for k in tags
            if k.startswith(TAG_PROMOTION_AUDIT) and k[len(TAG_PROMOTION_AUDIT) :].isdigit()
        ]
        key = f"{TAG_PROMOTION_AUDIT}{max(numbers, default=0) + 1}"
        client.set_model_version_tag(name, str(version), key, value)
        if (client.get_model_version(name, str(version)).tags or {}).get(key) == value:
            return key
    raise RuntimeError(f"{name} version {version}: could not append the promotion audit record")


def _force(verdict: Verdict) -> Verdict:
    if verdict.promoted:
        reason = f"Forced by user; the rule agrees. {verdict.reason}"
    else:
        reason = (
            f"Forced by user (the rule would not promote: {verdict.reason.removeprefix('Not promoted ')})"
        )
    return verdict.model_copy(update={"promoted": True, "reason": reason})


def promote(
    config: RagtuneConfig,
    version: int | ModelVersionInfo,
    eval_metrics: EvalSummary | EvalMetrics,
    force: bool = False,
) -> PromotionDecision:
    """Set ``champion`` on ``version`` if it earns it (or ``force``), else ``challenger``.

    ``eval_metrics`` is the version's :class:`EvalSummary` or the evaluate stage's report.
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
        mine = client.get_model_version(name, str(number))
        base_model = (mine.tags or {}).get(TAG_BASE_MODEL)
        first = version_by_alias(client, name, registry.champion_alias)
        previous = int(first.version) if first is not None else None
        current = first
        notes: list[str] = []
        for _ in range(MAX_RACE_ROUNDS):
            champion = _champion(current)
            if champion is not None and champion.version == number:
                verdict = Verdict(
                    promoted=True,
                    reason=f"Version {number} is already the champion; nothing changed.",
                    metric=summary.primary_metric or "judge",
                    reference="champion",
                )
                break
            verdict = decide(config, summary, base_model, champion)
            if force:
                verdict = _force(verdict)
            if not verdict.promoted:
                break
            client.set_registered_model_alias(name, registry.champion_alias, str(number))
            after = version_by_alias(client, name, registry.champion_alias)
            if after is not None and int(after.version) == number:
                break
            # another version took the alias between our read and our write: decide against it
            taken_by = int(after.version) if after is not None else None
            notes.append(f"version {taken_by} became champion meanwhile; decided again against it")
            log.warning("%s: %s", name, notes[-1])
            current = after
        else:
            verdict = verdict.model_copy(
                update={
                    "promoted": False,
                    "reason": f"Not promoted: the champion alias kept changing ({'; '.join(notes)}).",
                }
            )
        if notes:
            verdict = verdict.model_copy(
                update={"reason": verdict.reason + " Note: " + "; ".join(notes) + "."}
            )
        champion = _champion(current)
        replaced = champion.version if champion is not None and verdict.promoted else None
        promoted = verdict.promoted
        alias = registry.champion_alias if promoted else registry.challenger_alias
        if not promoted:
            client.set_registered_model_alias(name, alias, str(number))
        if replaced is not None and replaced != number:
            client.set_model_version_tag(name, str(replaced), TAG_PROMOTION, "replaced")
            client.set_model_version_tag(name, str(replaced), TAG_REPLACED_BY, str(number))
        challenger = version_by_alias(client, name, registry.challenger_alias) if promoted else None
        if challenger is not None and int(challenger.version) == number:
            client.delete_registered_model_alias(name, registry.challenger_alias)
        tags = {
            TAG_PROMOTION: "champion" if promoted else "challenger",
            TAG_PROMOTION_REASON: verdict.reason[:MAX_TAG_VALUE],
            TAG_PROMOTION_FORCED: str(force).lower(),
        }
        for key, value in tags.items():
            client.set_model_version_tag(name, str(number), key, value)
        if force:
            append_audit(
                client,
                name,
                number,
                {
                    "who": actor(),
                    "when": datetime.now(UTC).isoformat(timespec="seconds"),
                    "action": f"forced {alias}",
                    "why": verdict.reason,
                    "previous_champion": previous,
                },
            )
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise InputError(f"registered model {name!r} has no version {number}") from None
        raise mlflow_error(config, f"promoting {name} version {number}", err) from None
    champion_summary = champion.summary if champion is not None else None
    decision = PromotionDecision(
        model_name=name,
        version=number,
        alias=alias,
        promoted=promoted,
        forced=force,
        reason=verdict.reason,
        metric=verdict.metric,
        n=verdict.n,
        tuned_mean=summary.tuned_mean,
        reference=verdict.reference,
        reference_mean=(
            champion_summary.tuned_mean
            if verdict.reference == "champion" and champion_summary
            else summary.base_mean
        ),
        reference_version=champion.version if verdict.reference == "champion" and champion else None,
        previous_champion=previous,
        promotion_margin=registry.promotion_margin,
        delta_mean=verdict.delta_mean,
        delta_ci_low=verdict.delta_ci_low,
        delta_ci_high=verdict.delta_ci_high,
        model_uri=f"models:/{name}@{alias}",
    )
    log.info("%s version %d -> %s: %s", name, number, alias, verdict.reason)
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
