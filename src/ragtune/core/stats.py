"""Small statistics shared by stages and benchmarks: the interval of a share counted by hand or by code."""

from __future__ import annotations

import math

Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval (95% by default) of ``successes`` out of ``n``.

    Chosen over the normal approximation because audits and yields are small samples, often with
    0 or n successes, where the Wilson interval stays inside [0, 1] and does not collapse to a point.
    ``n == 0`` gives ``(nan, nan)``: no evidence, not a zero-width interval.
    """
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, n], got {successes} of {n}")
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    scale = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / scale
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / scale
    return max(0.0, centre - half), min(1.0, centre + half)
