"""Intervals over a few paired runs, for comparing methods trained on the same seeds and data
(lesson 03's base-to-novel runs; ``base_to_novel`` re-exports them):

    t975(2)                                  # 4.303: Student's t for a 95% interval of 3 runs
    mean, low, high = mean_interval(diffs)   # per-run differences, their mean and interval
    ratio, low, high = gain_ratio(control, method, baseline)   # a control's share of a gain
"""
from __future__ import annotations

import math

import torch

from ..core import _validate

# two-sided 95% quantiles of Student's t by degrees of freedom; beyond 10, Cornish-Fisher
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262, 10: 2.228}


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (to 3 decimals): a 95%
    interval of a mean over ``n`` runs is the mean +- ``t975(n - 1)`` standard errors."""
    _validate.positive_int("df", df)
    if df in _T975:
        return _T975[df]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def _runs(name: str, values) -> torch.Tensor:
    x = torch.as_tensor(values, dtype=torch.float64).flatten()
    if len(x) < 2 or not torch.isfinite(x).all():
        raise ValueError(f"{name}: got {len(x)} value(s), expected two or more finite per-run "
                         "values")
    return x


def mean_interval(values) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean of per-run ``values`` and its 95% t-interval over the
    runs (runs as independent draws; 3 runs give t = 4.3, so the interval is wide)."""
    x = _runs("values", values)
    half = t975(len(x) - 1) * (x.std() / math.sqrt(len(x))).item()
    return x.mean().item(), x.mean().item() - half, x.mean().item() + half


def gain_ratio(control, method, baseline) -> tuple[float, float, float]:
    """How much of ``method``'s gain over ``baseline`` the ``control`` recovers, over paired
    runs (position ``k`` of each: the same seed and few-shot set): the ratio of the mean gains,
    ``mean(control - baseline) / mean(method - baseline)``, and Fieller's 95% interval for it,
    ``(ratio, low, high)``. The interval is ``(-inf, inf)`` where the method's mean gain is not
    clearly away from zero (within ``t975`` standard errors): then no ratio is measured."""
    c, m, b = (_runs(n, v) for n, v in (("control", control), ("method", method),
                                         ("baseline", baseline)))
    if not len(c) == len(m) == len(b):
        raise ValueError(f"control, method, baseline: got {len(c)}, {len(m)} and {len(b)} runs, "
                         "expected the same runs for each")
    a, g, n = c - b, m - b, len(c)
    t2 = t975(n - 1) ** 2
    cov = torch.cov(torch.stack([a, g])) / n             # of the two mean gains
    qa = g.mean() ** 2 - t2 * cov[1, 1]                  # (a - rho g)^2 <= t^2 var(a - rho g)
    qb = a.mean() * g.mean() - t2 * cov[0, 1]
    qc = a.mean() ** 2 - t2 * cov[0, 0]
    ratio = (a.mean() / g.mean()).item() if g.mean() != 0 else math.nan
    if qa <= 0:
        return ratio, -math.inf, math.inf
    root = math.sqrt(max((qb * qb - qa * qc).item(), 0.0))
    return ratio, ((qb - root) / qa).item(), ((qb + root) / qa).item()
