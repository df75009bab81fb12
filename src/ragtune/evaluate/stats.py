"""The evaluation's arithmetic: cluster-bootstrap intervals and the two-order pairwise verdict.

Items that share a source chunk (or a document, when the split held out documents) are not
independent: they ask about the same text. Every interval resamples *clusters* with replacement
and takes the mean over all values in the drawn clusters (:func:`bootstrap_mean_ci` with
``clusters``), so near-copies do not narrow it. Without ``clusters`` each value is its own cluster.

Pure functions over plain numbers and verdict labels, so they are tested on fixed inputs with
known answers. Every random choice comes from a caller's seeded :class:`numpy.random.Generator`.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
from pydantic import BaseModel, Field

from ragtune.core.reports.evaluation import Outcome, Verdict, WinTieLoss

_CHUNK = 256  # bootstrap resamples drawn at once: bounds memory at _CHUNK * n indices


class Interval(BaseModel):
    """A sample mean with its percentile-bootstrap confidence interval."""

    mean: float
    low: float
    high: float
    n: int = Field(description="Values the mean is over.")
    prob_positive: float = Field(description="Share of bootstrap means above zero.")
    n_clusters: int = Field(0, description="Clusters the bootstrap resampled (n when each value is one).")


def _cluster_totals(values: np.ndarray, clusters: Sequence[Hashable] | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster sums and counts of ``values`` (each value alone without ``clusters``)."""
    if clusters is None:
        return values, np.ones_like(values)
    if len(clusters) != values.shape[0]:
        raise ValueError(f"{len(clusters)} cluster labels for {values.shape[0]} values")
    index = {label: position for position, label in enumerate(dict.fromkeys(clusters))}
    codes = np.fromiter((index[label] for label in clusters), dtype=int, count=len(clusters))
    return np.bincount(codes, weights=values), np.bincount(codes).astype(float)


def _bootstrap_means(
    sums: np.ndarray, counts: np.ndarray, samples: int, rng: np.random.Generator
) -> np.ndarray:
    """Means of ``samples`` cluster resamples (with replacement, as many clusters as there are)."""
    n = sums.shape[0]
    means = np.empty(samples, dtype=float)
    for start in range(0, samples, _CHUNK):
        stop = min(samples, start + _CHUNK)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    return means


def bootstrap_mean_ci(
    values: Sequence[float],
    *,
    samples: int,
    confidence: float,
    rng: np.random.Generator,
    clusters: Sequence[Hashable] | None = None,
) -> Interval | None:
    """Mean of ``values`` with a percentile cluster-bootstrap CI at ``confidence``; ``None`` when empty.

    ``clusters`` labels each value's cluster (e.g. its source chunk); whole clusters are resampled.
    """
    if samples < 1:
        raise ValueError("samples must be at least 1")
    if not 0 < confidence < 1:
        raise ValueError("confidence must lie strictly between 0 and 1")
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise ValueError("values must be one-dimensional")
    if array.size == 0:
        return None
    sums, counts = _cluster_totals(array, clusters)
    means = _bootstrap_means(sums, counts, samples, rng)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return Interval(
        mean=float(array.mean()),
        low=float(low),
        high=float(high),
        n=int(array.size),
        prob_positive=float((means > 0).mean()),
        n_clusters=int(sums.shape[0]),
    )


def paired_bootstrap_ci(
    first: Sequence[float],
    second: Sequence[float],
    *,
    samples: int,
    confidence: float,
    rng: np.random.Generator,
    clusters: Sequence[Hashable] | None = None,
) -> Interval | None:
    """Mean of the per-item differences ``first - second`` with its (cluster) bootstrap CI.

    Resampling items (not each list separately) keeps each item's pair together, so the interval
    reflects how consistently ``first`` beats ``second`` on the same questions.
    """
    a = np.asarray(first, dtype=float)
    b = np.asarray(second, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.shape[0]} vs {b.shape[0]}")
    return bootstrap_mean_ci(a - b, samples=samples, confidence=confidence, rng=rng, clusters=clusters)


_FIRST_ORDER: dict[str, Outcome] = {"A": "win", "B": "loss", "tie": "tie"}
_SECOND_ORDER: dict[str, Outcome] = {"A": "loss", "B": "win", "tie": "tie"}


def combine_orders(first_as_a: Verdict | None, first_as_b: Verdict | None) -> Outcome | None:
    """Combine the judge's verdicts on both orderings into X's result against Y.

    ``first_as_a`` is the verdict with X shown as answer A and Y as B; ``first_as_b`` the verdict
    with Y as A and X as B. X wins (or loses) only when both orderings agree; a disagreement —
    the mark of position bias — or a tie in either ordering is a tie. ``None`` (an unusable
    verdict in either ordering) stays ``None``: a failure, not a tie.
    """
    if first_as_a is None or first_as_b is None:
        return None
    one, two = _FIRST_ORDER[first_as_a], _SECOND_ORDER[first_as_b]
    return one if one == two else "tie"


def tally_outcomes(outcomes: Sequence[Outcome | None]) -> WinTieLoss:
    wins = sum(1 for o in outcomes if o == "win")
    ties = sum(1 for o in outcomes if o == "tie")
    losses = sum(1 for o in outcomes if o == "loss")
    failures = sum(1 for o in outcomes if o is None)
    decided = wins + ties + losses
    return WinTieLoss(
        n_items=len(outcomes),
        n_decided=decided,
        wins=wins,
        ties=ties,
        losses=losses,
        failures=failures,
        win_rate=wins / decided if decided else None,
        tie_rate=ties / decided if decided else None,
        loss_rate=losses / decided if decided else None,
    )


def score_sum(scores: Sequence[int | None]) -> int:
    """The paper's headline figure: the sum of a contender's judge scores (failures add nothing)."""
    return sum(s for s in scores if s is not None)


def mean_or_none(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None
