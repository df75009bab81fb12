"""The promotion gate's pure rule: it decides on evidence only, and says on which."""

from __future__ import annotations

import pytest

from ragtune.core.config import build_config
from ragtune.registry.evalsummary import EvalSummary
from ragtune.registry.promote import Champion, decide
from tests.registry.conftest import eval_metrics

SHA = "a" * 64
IDENTITY = f"adapter:{SHA[:32]}"


def summary(**changes: object) -> EvalSummary:
    data = eval_metrics(tuned=6.0, base=5.0, ci_low=0.2, ci_high=1.8, n=30)
    return EvalSummary.from_metrics(data).model_copy(update=changes)


def test_enough_evidence_promotes_and_names_metric_and_n() -> None:
    verdict = decide(build_config({}), summary(), "base-model", None)
    assert verdict.promoted and verdict.metric == "judge" and verdict.n == 30
    assert verdict.reason.startswith("Promoted (on the judge metric)")
    assert "tuned − base (judge) +1.000 (margin 0.000, n=30)" in verdict.reason
    assert "95% CI [0.200, 1.800] lies above 0" in verdict.reason


def test_too_few_items_is_not_promoted() -> None:
    verdict = decide(build_config({}), summary(primary_n=12), None, None)
    assert not verdict.promoted
    assert (
        "only 12 paired scored items for tuned − base (judge) (registry.min_eval_items is 30)"
        in verdict.reason
    )
    assert decide(
        build_config({"registry": {"min_eval_items": 10}}), summary(primary_n=12), None, None
    ).promoted


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"judge_is_weak": True}, "the judge is the weak local model"),
        (
            {"judge_check_passed": False, "judge_check_reasons": "discrimination 0.40 below 0.80"},
            "the judge failed its sanity check (discrimination 0.40 below 0.80)",
        ),
        ({"judge_check_passed": None}, "the judge's sanity check was not recorded"),
    ],
)
def test_an_untrusted_judge_cannot_crown_a_model(changes: dict[str, object], words: str) -> None:
    verdict = decide(build_config({}), summary(**changes), None, None)
    assert not verdict.promoted and words in verdict.reason


def test_reference_similarity_is_reported_but_never_crowns() -> None:
    verdict = decide(build_config({}), summary(primary_metric="reference"), None, None)
    assert not verdict.promoted and verdict.metric == "reference"
    assert "the reference metric is reported but never crowns a model" in verdict.reason
    assert "(Passed: tuned − base (reference) +1.000" in verdict.reason  # the numbers are still shown


def test_corpus_fact_accuracy_crowns_without_the_judge() -> None:
    verdict = decide(
        build_config({}),
        summary(primary_metric="corpus_facts", judge_check_passed=False, judge_is_weak=True),
        None,
        None,
    )
    assert verdict.promoted and "(on the corpus_facts metric)" in verdict.reason


def test_the_evaluation_must_have_scored_this_adapter() -> None:
    config = build_config({})
    assert decide(config, summary(adapter_sha256=SHA), None, None, registered_sha256=SHA).promoted
    verdict = decide(config, summary(adapter_sha256="b" * 64), None, None, registered_sha256=SHA)
    assert not verdict.promoted
    assert f"the evaluation scored adapter {'b' * 64}, not this version's {SHA}" in verdict.reason
    verdict = decide(config, summary(), None, None, registered_sha256=SHA)
    assert not verdict.promoted and "does not record which adapter it scored" in verdict.reason


def test_defaults_can_promote() -> None:
    config = build_config({})
    assert config.evaluate.max_items is not None
    assert config.evaluate.max_items >= config.registry.min_eval_items
    capped = build_config({"evaluate": {"max_items": 20}})
    verdict = decide(capped, summary(primary_n=20), None, None)
    assert "evaluate.max_items 20 caps it below that" in verdict.reason


def test_champion_is_beaten_on_the_paired_interval_only() -> None:
    champion = Champion(version=3, base_model="base-model", adapter_sha256=SHA)
    config = build_config({})
    better = summary(
        champion_model=IDENTITY,
        champion_delta_mean=0.4,
        champion_ci_low=0.1,
        champion_ci_high=0.7,
        champion_n=30,
    )
    verdict = decide(config, better, "base-model", champion)
    assert verdict.promoted and verdict.reference == "champion" and verdict.delta_mean == 0.4
    assert "tuned − champion version 3 (judge) 95% CI [0.100, 0.700] lies above 0" in verdict.reason

    noisy = better.model_copy(update={"champion_ci_low": -0.2})
    verdict = decide(config, noisy, "base-model", champion)
    assert (
        not verdict.promoted
        and "tuned − champion version 3 (judge) 95% CI [-0.200, 0.700] does not lie above 0" in verdict.reason
    )

    unpaired = summary()  # the champion was not a contender of this evaluation
    verdict = decide(config, unpaired, "base-model", champion)
    assert (
        not verdict.promoted and "champion version 3 was not evaluated on this run's items" in verdict.reason
    )

    other = better.model_copy(update={"champion_model": "adapter:" + "b" * 32})
    assert not decide(config, other, "base-model", champion).promoted

    verdict = decide(config, better, "other-base", champion)
    assert not verdict.promoted and "the versions are not comparable" in verdict.reason
    assert "'base-model'" in verdict.reason and "'other-base'" in verdict.reason


def test_margin_is_in_the_primary_metric_units() -> None:
    verdict = decide(build_config({"registry": {"promotion_margin": 1.5}}), summary(), None, None)
    assert not verdict.promoted and "+1.000 (margin 1.500, n=30) — below the margin" in verdict.reason
