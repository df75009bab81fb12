"""The evaluation arithmetic on fixed inputs with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from ragtune.evaluate.stats import (
    bootstrap_mean_ci,
    combine_orders,
    mean_or_none,
    paired_bootstrap_ci,
    score_sum,
    tally_outcomes,
)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_constant_scores_collapse_the_interval_to_the_value() -> None:
    interval = bootstrap_mean_ci([7, 7, 7, 7, 7], samples=500, confidence=0.95, rng=rng())
    assert interval is not None
    assert (interval.mean, interval.low, interval.high, interval.n) == (7.0, 7.0, 7.0, 5)
    assert interval.prob_positive == 1.0


def test_single_value_is_its_own_interval() -> None:
    interval = bootstrap_mean_ci([4], samples=100, confidence=0.9, rng=rng())
    assert interval is not None and interval.low == interval.high == interval.mean == 4.0


def test_empty_sample_has_no_interval() -> None:
    assert bootstrap_mean_ci([], samples=100, confidence=0.95, rng=rng()) is None


def test_bootstrap_matches_the_normal_approximation_on_a_balanced_sample() -> None:
    # 200 values, half 0 and half 10: mean 5, standard error 5/sqrt(200) = 0.354.
    values = [0] * 100 + [10] * 100
    interval = bootstrap_mean_ci(values, samples=4000, confidence=0.95, rng=rng(1))
    assert interval is not None
    assert interval.mean == 5.0
    half_width = 1.96 * 5 / np.sqrt(200)
    assert interval.low == pytest.approx(5 - half_width, abs=0.1)
    assert interval.high == pytest.approx(5 + half_width, abs=0.1)
    assert interval.low < interval.mean < interval.high


def test_bootstrap_is_reproducible_with_the_same_seed_and_varies_with_another() -> None:
    values = [1, 3, 4, 8, 9, 2, 7]
    first = bootstrap_mean_ci(values, samples=300, confidence=0.95, rng=rng(3))
    again = bootstrap_mean_ci(values, samples=300, confidence=0.95, rng=rng(3))
    other = bootstrap_mean_ci(values, samples=300, confidence=0.95, rng=rng(4))
    assert first == again
    assert first != other


def test_wider_confidence_gives_a_wider_interval() -> None:
    values = [1, 3, 4, 8, 9, 2, 7, 5, 5, 6]
    narrow = bootstrap_mean_ci(values, samples=2000, confidence=0.5, rng=rng(5))
    wide = bootstrap_mean_ci(values, samples=2000, confidence=0.99, rng=rng(5))
    assert narrow is not None and wide is not None
    assert wide.low < narrow.low <= narrow.high < wide.high


def test_bootstrap_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        bootstrap_mean_ci([1, 2], samples=0, confidence=0.95, rng=rng())
    with pytest.raises(ValueError):
        bootstrap_mean_ci([1, 2], samples=10, confidence=1.0, rng=rng())


def test_paired_constant_difference_collapses_to_the_difference() -> None:
    tuned = [9, 8, 7, 6, 5]
    base = [7, 6, 5, 4, 3]  # tuned is always exactly 2 better
    interval = paired_bootstrap_ci(tuned, base, samples=500, confidence=0.95, rng=rng())
    assert interval is not None
    assert (interval.mean, interval.low, interval.high) == (2.0, 2.0, 2.0)
    assert interval.prob_positive == 1.0


def test_pairing_removes_item_difficulty_from_the_interval() -> None:
    # Items differ wildly in difficulty, but tuned beats base by 1 on every one of them:
    # unpaired intervals overlap, the paired one is exactly [1, 1].
    base = [1, 9, 2, 8, 3, 7]
    tuned = [b + 1 for b in base]
    paired = paired_bootstrap_ci(tuned, base, samples=500, confidence=0.95, rng=rng())
    assert paired is not None and paired.low == paired.high == 1.0
    tuned_alone = bootstrap_mean_ci(tuned, samples=500, confidence=0.95, rng=rng())
    base_alone = bootstrap_mean_ci(base, samples=500, confidence=0.95, rng=rng())
    assert tuned_alone is not None and base_alone is not None
    assert tuned_alone.low < base_alone.high


def test_paired_difference_sign_and_probability() -> None:
    tuned = [3, 4, 2, 3, 5, 4, 3, 2]
    base = [6, 7, 5, 6, 8, 6, 5, 6]
    interval = paired_bootstrap_ci(tuned, base, samples=1000, confidence=0.95, rng=rng())
    assert interval is not None
    assert interval.mean == pytest.approx(-2.875)
    assert interval.high < 0
    assert interval.prob_positive == 0.0


def test_paired_samples_must_have_equal_length() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        paired_bootstrap_ci([1, 2, 3], [1, 2], samples=10, confidence=0.95, rng=rng())


@pytest.mark.parametrize(
    ("first_as_a", "first_as_b", "expected"),
    [
        ("A", "B", "win"),  # X shown first wins, X shown second wins: a real win
        ("B", "A", "loss"),  # Y wins in both orders
        ("A", "A", "tie"),  # the judge always picks position A: position bias cancels to a tie
        ("B", "B", "tie"),  # always position B
        ("tie", "B", "tie"),  # a tie in either order is a tie
        ("A", "tie", "tie"),
        ("tie", "tie", "tie"),
        (None, "B", None),  # an unusable verdict is a failure, not a tie
        ("A", None, None),
        (None, None, None),
    ],
)
def test_combine_orders(first_as_a: str | None, first_as_b: str | None, expected: str | None) -> None:
    assert combine_orders(first_as_a, first_as_b) == expected  # type: ignore[arg-type]


def test_swapping_the_contenders_mirrors_the_outcome() -> None:
    mirror = {"win": "loss", "loss": "win", "tie": "tie", None: None}
    verdicts = ["A", "B", "tie", None]
    for one in verdicts:
        for two in verdicts:
            # X vs Y asked as (X=A, then X=B); Y vs X sees the same replies in the other slots.
            assert combine_orders(two, one) == mirror[combine_orders(one, two)]  # type: ignore[arg-type]


def test_tally_counts_and_rates_exclude_failures() -> None:
    tally = tally_outcomes(["win", "win", "tie", "loss", None, "win", "tie", None])
    assert (tally.n_items, tally.n_decided) == (8, 6)
    assert (tally.wins, tally.ties, tally.losses, tally.failures) == (3, 2, 1, 2)
    assert tally.win_rate == pytest.approx(0.5)
    assert tally.tie_rate == pytest.approx(1 / 3)
    assert tally.loss_rate == pytest.approx(1 / 6)


def test_tally_of_nothing_decided_has_no_rates() -> None:
    tally = tally_outcomes([None, None])
    assert tally.failures == 2 and tally.win_rate is None and tally.tie_rate is None


def test_sum_figure_skips_failures() -> None:
    # The paper's figure: tuned Mistral-7B summed 726 vs GPT-3.5-turbo 592 over the same questions.
    assert score_sum([7, 8, None, 10, 1]) == 26
    assert score_sum([]) == 0
    assert score_sum([None]) == 0
    assert mean_or_none([None, 2.0, 4.0]) == 3.0
    assert mean_or_none([None]) is None


def test_singleton_clusters_give_the_unclustered_interval() -> None:
    values = [1, 3, 4, 8, 9, 2, 7]
    plain = bootstrap_mean_ci(values, samples=300, confidence=0.95, rng=rng(3))
    clustered = bootstrap_mean_ci(values, samples=300, confidence=0.95, rng=rng(3), clusters=list("abcdefg"))
    assert plain is not None and clustered is not None
    assert (plain.low, plain.high, plain.mean) == (clustered.low, clustered.high, clustered.mean)
    assert clustered.n_clusters == 7


def test_values_sharing_a_cluster_widen_the_interval() -> None:
    # 40 values, but they are four clusters of ten copies: four independent observations, not forty.
    values = [0.0] * 10 + [1.0] * 10 + [0.0] * 10 + [1.0] * 10
    clusters = [c for c in "abcd" for _ in range(10)]
    naive = bootstrap_mean_ci(values, samples=2000, confidence=0.95, rng=rng(1))
    honest = bootstrap_mean_ci(values, samples=2000, confidence=0.95, rng=rng(1), clusters=clusters)
    assert naive is not None and honest is not None
    assert honest.mean == naive.mean == 0.5
    assert honest.n == 40 and honest.n_clusters == 4
    assert honest.high - honest.low > 2 * (naive.high - naive.low)
    assert honest.low == 0.0 and honest.high == 1.0  # 4 draws of 4 clusters can be all 0 or all 1


def test_cluster_mean_weighs_clusters_by_their_size() -> None:
    interval = bootstrap_mean_ci(
        [1.0, 1.0, 1.0, 0.0], samples=200, confidence=0.9, rng=rng(), clusters="aaab"
    )
    assert interval is not None and interval.mean == 0.75


def test_cluster_labels_must_match_the_values() -> None:
    with pytest.raises(ValueError):
        bootstrap_mean_ci([1.0, 2.0], samples=10, confidence=0.9, rng=rng(), clusters=["a"])


def test_paired_interval_resamples_clusters_of_pairs() -> None:
    tuned, base = [1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0]
    clustered = paired_bootstrap_ci(tuned, base, samples=1000, confidence=0.95, rng=rng(), clusters="aaabbb")
    assert clustered is not None and clustered.n_clusters == 2
    assert (clustered.low, clustered.high) == (0.0, 1.0)
