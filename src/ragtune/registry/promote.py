"""Promotion: move the ``champion`` alias to a new version only when the evidence says it is better.

The gate decides on the evaluation's **primary metric** (``metrics.json`` ``primary_metric``) and
names it. A version becomes champion only when all hold:

* the metric may crown (:data:`CROWNING_METRICS`): reference cosine and ROUGE-L are reported but
  never crown, since a tuned model moves towards the references' style without knowing more;
* when the metric is the judge: the judge is not the weak local model and passed its sanity check
  (reference vs mismatched answers); an unchecked or flagged judge cannot crown a model;
* the evaluation scored this very adapter (``metrics.json`` ``adapter_sha256`` equals the version's
  ``ragtune.adapter_sha256``);
* at least ``registry.min_eval_items`` paired, scored items back each paired difference;
* with a champion: its base model is the new version's (else the versions are not comparable), it
  was evaluated as contender ``champion`` on the same items with the same judge, and the paired
  tuned − champion mean is above 0 and at least ``registry.promotion_margin``; without one, the
  same for tuned − base;
* with ``registry.require_ci_above_zero``, the lower bound of each paired difference's CI is above 0.

Otherwise it gets the ``challenger`` alias, and the reason says which test failed, with the
numbers. :func:`decide` is that rule, pure. :func:`promote` wraps it in small steps: read the
champion, decide and move the aliases while holding the model's promotion lock
(:mod:`ragtune.registry.lock`: compare-and-set over a registry without transactions, so two
promotions at once end with exactly one champion, the second decided against the first or refused
with the reason), tag the version, append an audit record (:mod:`ragtune.registry.audit`).
``force=True`` is the manual override; its record names the actor. Only aliases are used
(stages are deprecated).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from ragtune.core.config import RagtuneConfig
from ragtune.core.errors import InputError
from ragtune.core.reports.evaluation import EvalMetrics
from ragtune.registry.audit import Actor, AuditRecord, append_audit, current_actor
from ragtune.registry.evalsummary import EvalSummary
from ragtune.registry.lock import LockTimeout, promotion_lock
from ragtune.registry.register import TAG_ADAPTER_SHA, TAG_BASE_MODEL, ModelVersionInfo, get_version
from ragtune.registry.tracking import MAX_TAG_VALUE, client_for, mlflow_error

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

TAG_PROMOTION = "ragtune.promotion"
TAG_PROMOTION_REASON = "ragtune.promotion_reason"
TAG_PROMOTION_FORCED = "ragtune.promotion_forced"
TAG_REPLACED_BY = "ragtune.replaced_by"
TAG_TUNED_MEAN = "ragtune.eval.tuned_mean"

CROWNING_METRICS = frozenset({"judge", "corpus_facts"})
"""Primary metrics that may crown a champion: the judge (when it passed its check) and corpus-fact
accuracy. ``reference`` (embedding cosine, ROUGE-L beside it) is reported and never crowns."""

Reference = Literal["champion", "base", "none"]


class Champion(BaseModel):
    """The version holding the champion alias, as far as the gate needs it."""

    version: int
    base_model: str | None = None
    adapter_sha256: str | None = None
    summary: EvalSummary | None = None


class Verdict(BaseModel):
    """The pure rule's answer."""

    promoted: bool
    reason: str = Field(description="Human explanation with the numbers it rests on.")
    metric: str = Field(description="The primary metric the decision rests on.")
    reference: Reference = Field("none", description="What the tuned model was compared with.")
    n: int | None = Field(None, description="Paired items behind the deciding difference.")
    delta_mean: float | None = Field(None, description="The deciding paired difference's mean.")
    delta_ci_low: float | None = None
    delta_ci_high: float | None = None


class PromotionDecision(Verdict):
    """What promotion did with one model version: the verdict, where it left the aliases, the audit."""

    model_name: str
    version: int
    alias: str = Field(description="The alias now set on the version (champion or challenger).")
    forced: bool = False
    reference_version: int | None = Field(None, description="The champion compared with, if any.")
    previous_champion: int | None = Field(None, description="Champion when the decision was taken.")
    model_uri: str = Field(description="models:/<name>@<alias>.")
    actor: str = Field("", description="Who promoted (source:name, see ragtune.registry.audit).")
    audit_record: str | None = Field(None, description="runs:/<run>/promotion_audit/<record>.json")


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
        cap = config.evaluate.max_items
        hint = (
            f"; evaluate.max_items {cap} caps it below that"
            if cap is not None and cap < registry.min_eval_items
            else ""
        )
        failures.append(
            f"only {n} paired scored items for {label} (registry.min_eval_items is {registry.min_eval_items}{hint})"
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


def _evidence_failures(
    config: RagtuneConfig, summary: EvalSummary, metric: str, registered_sha256: str | None
) -> list[str]:
    """Why this evaluation may not crown anything, whatever its numbers (empty when it may)."""
    failures = []
    if metric not in CROWNING_METRICS:
        failures.append(
            f"the {metric} metric is reported but never crowns a model (crowning metrics:"
            f" {', '.join(sorted(CROWNING_METRICS))})"
        )
    elif metric == "judge":
        failures += _judge_failures(summary)
    if registered_sha256 is not None:
        if summary.adapter_sha256 is None:
            failures.append(
                "the evaluation does not record which adapter it scored (metrics.json adapter_sha256)"
            )
        elif summary.adapter_sha256 != registered_sha256:
            failures.append(
                f"the evaluation scored adapter {summary.adapter_sha256}, not this version's {registered_sha256}"
            )
    return failures


def _versus_champion(
    config: RagtuneConfig,
    summary: EvalSummary,
    base_model: str | None,
    champion: Champion,
    metric: str,
    level: str,
) -> tuple[list[str], list[str], tuple[float | None, float | None, float | None, int | None]]:
    """(failures, passes, deciding difference) of the comparison with the current champion."""
    expected = (champion.adapter_sha256 or "")[:32]
    if base_model and champion.base_model and base_model != champion.base_model:
        return (
            [
                f"the versions are not comparable: champion version {champion.version} is tuned on"
                f" {champion.base_model!r}, this version on {base_model!r}"
            ],
            [],
            (None, None, None, None),
        )
    if not expected or summary.champion_model != f"adapter:{expected}":
        return (
            [
                f"champion version {champion.version} was not evaluated on this run's items"
                " (no paired tuned − champion comparison)"
            ],
            [],
            (None, None, None, None),
        )
    delta = (
        summary.champion_delta_mean,
        summary.champion_ci_low,
        summary.champion_ci_high,
        summary.champion_n,
    )
    label = f"tuned − champion version {champion.version} ({metric})"
    failures, passes = _difference_tests(label, *delta, config=config, level=level, gate_on_mean=True)
    return failures, passes, delta


def decide(
    config: RagtuneConfig,
    summary: EvalSummary,
    base_model: str | None,
    champion: Champion | None,
    registered_sha256: str | None = None,
) -> Verdict:
    """Pure promotion rule for a version on ``base_model`` with ``summary``, against ``champion``.

    ``registered_sha256``: the version's adapter digest; the evaluation must have scored that one.
    """
    metric = summary.primary_metric or "judge"
    level = f"{summary.confidence:.0%} " if summary.confidence else ""
    failures = _evidence_failures(config, summary, metric, registered_sha256)
    base_failures, passes = _difference_tests(
        f"tuned − base ({metric})",
        summary.primary_delta_mean,
        summary.primary_ci_low,
        summary.primary_ci_high,
        summary.primary_n,
        config=config,
        level=level,
        gate_on_mean=champion is None,
    )
    failures += base_failures
    reference: Reference = "base"
    delta = (summary.primary_delta_mean, summary.primary_ci_low, summary.primary_ci_high, summary.primary_n)
    if champion is not None:
        reference = "champion"
        more_failures, more_passes, versus = _versus_champion(
            config, summary, base_model, champion, metric, level
        )
        failures += more_failures
        passes += more_passes
        delta = versus if versus[0] is not None else delta
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


def _force(verdict: Verdict, who: Actor) -> Verdict:
    if verdict.promoted:
        reason = f"Forced by {who.label()}; the rule agrees. {verdict.reason}"
    else:
        why = verdict.reason.removeprefix("Not promoted ")
        reason = f"Forced by {who.label()} (the rule would not promote: {why})"
    return verdict.model_copy(update={"promoted": True, "reason": reason})


def as_summary(eval_metrics: EvalSummary | EvalMetrics) -> EvalSummary:
    """The gate's numbers from either the evaluate stage's report or a version's recorded summary."""
    return eval_metrics if isinstance(eval_metrics, EvalSummary) else EvalSummary.from_metrics(eval_metrics)


def rule(
    config: RagtuneConfig,
    summary: EvalSummary,
    mine: Any,
    champion: Champion | None,
    force: bool,
    who: Actor,
) -> Verdict:
    """:func:`decide` for the registered version ``mine``, with the already-champion and force cases."""
    tags = mine.tags or {}
    if champion is not None and champion.version == int(mine.version):
        return Verdict(
            promoted=True,
            reason=f"Version {champion.version} is already the champion; nothing changed.",
            metric=summary.primary_metric or "judge",
            reference="champion",
        )
    verdict = decide(config, summary, tags.get(TAG_BASE_MODEL), champion, tags.get(TAG_ADAPTER_SHA))
    return _force(verdict, who) if force else verdict


def move_aliases(
    client: MlflowClient, config: RagtuneConfig, number: int, verdict: Verdict, champion: Champion | None
) -> str:
    """Point ``champion`` (and retire ``challenger``) or ``challenger`` at version ``number``; the alias set."""
    registry = config.registry
    name = registry.model_name
    if not verdict.promoted:
        client.set_registered_model_alias(name, registry.challenger_alias, str(number))
        return registry.challenger_alias
    if champion is None or champion.version != number:
        client.set_registered_model_alias(name, registry.champion_alias, str(number))
    if champion is not None and champion.version != number:
        client.set_model_version_tag(name, str(champion.version), TAG_PROMOTION, "replaced")
        client.set_model_version_tag(name, str(champion.version), TAG_REPLACED_BY, str(number))
    challenger = version_by_alias(client, name, registry.challenger_alias)
    if challenger is not None and int(challenger.version) == number:
        client.delete_registered_model_alias(name, registry.challenger_alias)
    return registry.champion_alias


def tag_version(client: MlflowClient, name: str, number: int, verdict: Verdict, force: bool) -> None:
    """The decision on the version's tags (the reason cut to a tag's size; the audit record keeps it whole)."""
    tags = {
        TAG_PROMOTION: "champion" if verdict.promoted else "challenger",
        TAG_PROMOTION_REASON: verdict.reason[:MAX_TAG_VALUE],
        TAG_PROMOTION_FORCED: str(force).lower(),
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, str(number), key, value)


def decide_locked(
    client: MlflowClient, config: RagtuneConfig, summary: EvalSummary, mine: Any, force: bool, who: Actor
) -> tuple[Verdict, Champion | None, str]:
    """Under the promotion lock: read the champion, decide, fence, move the aliases.

    Returns (verdict, the champion decided against, the alias set). Another promotion of the same
    model waits for the lock, then decides against the champion this one leaves.
    """
    registry = config.registry
    name = registry.model_name
    with promotion_lock(
        client, name, who.label(), timeout_s=registry.lock_timeout_s, ttl_s=registry.lock_ttl_s
    ) as lock:
        champion = _champion(version_by_alias(client, name, registry.champion_alias))
        verdict = rule(config, summary, mine, champion, force, who)
        lock.verify()
        alias = move_aliases(client, config, int(mine.version), verdict, champion)
    return verdict, champion, alias


def refused_for_lock(summary: EvalSummary, err: LockTimeout) -> Verdict:
    """The verdict of a promotion that never got the lock: not promoted, the holder named."""
    return Verdict(
        promoted=False,
        reason=f"Not promoted: {err} — promote it again once that promotion has finished.",
        metric=summary.primary_metric or "judge",
        reference="none",
    )


def promote(
    config: RagtuneConfig,
    version: int | ModelVersionInfo,
    eval_metrics: EvalSummary | EvalMetrics,
    force: bool = False,
) -> PromotionDecision:
    """Set ``champion`` on ``version`` if it earns it (or ``force``), else ``challenger``.

    ``eval_metrics`` is the version's :class:`EvalSummary` or the evaluate stage's report. Steps:
    decide under the promotion lock (:func:`decide_locked`), tag the version, append the audit record.
    """
    from mlflow.exceptions import MlflowException

    name = config.registry.model_name
    number = version.version if isinstance(version, ModelVersionInfo) else int(version)
    summary = as_summary(eval_metrics)
    client = client_for(config)
    who = current_actor()
    try:
        mine = client.get_model_version(name, str(number))
        try:
            verdict, champion, alias = decide_locked(client, config, summary, mine, force, who)
        except LockTimeout as err:
            verdict, champion = refused_for_lock(summary, err), None
            alias = move_aliases(client, config, number, verdict, None)
        tag_version(client, name, number, verdict, force)
        record = AuditRecord(
            model_name=name,
            version=number,
            alias=alias,
            promoted=verdict.promoted,
            forced=force,
            reason=verdict.reason,
            metric=verdict.metric,
            previous_champion=champion.version if champion is not None else None,
            actor=who,
            when=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        audit = f"runs:/{mine.run_id}/{append_audit(client, mine.run_id, record)}"
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise InputError(f"registered model {name!r} has no version {number}") from None
        raise mlflow_error(config, f"promoting {name} version {number}", err) from None
    log.info("%s version %d -> %s: %s", name, number, alias, verdict.reason)
    return PromotionDecision(
        **verdict.model_dump(),
        model_name=name,
        version=number,
        alias=alias,
        forced=force,
        reference_version=champion.version if verdict.reference == "champion" and champion else None,
        previous_champion=record.previous_champion,
        model_uri=f"models:/{name}@{alias}",
        actor=who.label(),
        audit_record=audit,
    )


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
