"""The set-level null: every random set playing the concept's part.

Why (docs/statistics.md, "The unit of replication"): the R TCAV scores of one concept all
share the concept's one clip set and the same inputs.  A null concept (random clips handed in
as a concept) has its own quirk, a direction in which its clips differ from other random
clips, and all R of its CAVs carry that quirk alike.  Comparing those R values with R
random-vs-random values therefore tests "is this set different from other sets?", which any
set is, and the more CAVs the surer: the paper's t-test rejects 13% / 22% / 42% of null
concepts at R = 10 / 20 / 50 (bench/calibration.py).

The unit of replication is the clip set.  So the concept's *set-level* statistic (the mean,
over its R CAVs, of a score field) is compared with the same statistic of every random set
playing the concept's part: random set i's CAVs against the other random sets are exactly
the null CAVs that vt-cav fits between random sets (``kind: null``, each random set against
its ``--null-partners`` nearest sets on a ring).  A null CAV of i against j, read from j's side,
is the same boundary with the opposite orientation: its derivatives change sign, so its
magnitude is negated and its sign count becomes the share of inputs with a negative
derivative (exact from the per-input derivatives that vt-score records; ``1 - score``
otherwise).  Under the null hypothesis (the concept's clips are drawn like a random set's),
the concept's statistic and the R random sets' statistics are exchangeable (each set's
statistic is its effect estimated from all null CAVs at once, :func:`set_statistics`), and:

- ``set`` (the default test): a prediction-interval t-test, ``t = (T_C - mean(T_r)) /
  (sd(T_r) sqrt(1 + 1/R))`` with R - 1 degrees of freedom, on the magnitude (the mean
  directional derivative along unit CAVs, which keeps its power where the sign count
  saturates at 0 or 1);
- ``set-score``: the same on the sign-count TCAV score;
- ``set-rank``: an exact rank test (distance from the random sets' median), no normality
  assumed; its smallest p is 1/(R+1), so it needs R >= 39 for p < 0.05 / 1 hypotheses...

For a relative CAV (A against B, refitted on resamples), the null sample is the oriented
random-vs-random values themselves (two random sets playing A and B), both orientations,
with R - 1 degrees of freedom (pairs share sets: R is the number of independent units).

Example:
    >>> effects = {"r0": 0.3, "r1": -0.1, "r2": 0.1, "r3": -0.3}     # f_i - f_j, every pair
    >>> null = [{"concept": a, "against": b, "magnitude": effects[a] - effects[b]}
    ...         for k, a in enumerate(effects) for b in list(effects)[k + 1:]]
    >>> {name: round(value, 3) for name, value in set_statistics(null, "magnitude").items()}
    {'r0': 0.3, 'r1': -0.1, 'r2': 0.1, 'r3': -0.3}
"""

from __future__ import annotations

import numpy as np


def mirrored(record: dict, field: str) -> float:
    """``field`` of a null CAV read from its negative set's side (the same boundary, reversed)."""
    if field == "magnitude":
        return -float(record["magnitude"])
    derivatives = record.get("derivatives")
    if derivatives is not None and len(derivatives):
        return float(np.mean(np.asarray(derivatives, float) < 0))
    return 1.0 - float(record["score"])


def set_statistics(null_rows: list[dict], field: str) -> dict[str, float]:
    """Each random set's set-level statistic, on the scale of a concept's mean over its R CAVs.

    A null CAV of i against j measures, roughly, i's effect minus j's: ``y_ij = f_i - f_j + e``.
    The effects are estimated by least squares over every null CAV (both orientations), with
    ``sum f = 0``: with every pair fitted this is ``(R - 1) / R`` times the mean of i's oriented
    values, and with fewer partners (a ring) it still compares each set with all the others, as
    a concept's mean over all R random sets does (``f_C - mean f``).  The sign count is centred
    at 0.5 for the fit and shifted back.
    """
    values = oriented_pairs(null_rows, field)
    names = sorted({n for i, j, _ in values for n in (i, j)})
    if len(names) < 2:
        return {}
    index = {name: k for k, name in enumerate(names)}
    centre = 0.5 if field == "score" else 0.0
    design = np.zeros((len(values) + 1, len(names)))
    target = np.zeros(len(values) + 1)
    for row, (i, j, value) in enumerate(values):
        design[row, index[i]], design[row, index[j]], target[row] = 1.0, -1.0, value - centre
    design[-1] = 1.0                                   # the effects sum to zero
    effects = np.linalg.lstsq(design, target, rcond=None)[0]
    return {name: float(effects[index[name]] + centre) for name in names}


def oriented_pairs(null_rows: list[dict], field: str) -> list[tuple[str, str, float]]:
    """Every null CAV as (positive set, negative set, value), and again read from the other side."""
    pairs = []
    for record in null_rows:
        pairs.append((record["concept"], record["against"], float(record[field])))
        pairs.append((record["against"], record["concept"], mirrored(record, field)))
    return pairs


def pair_values(null_rows: list[dict], field: str) -> np.ndarray:
    """Every null CAV's value in both orientations: the null of a relative CAV's value."""
    return np.array([value for _, _, value in oriented_pairs(null_rows, field)], float)


def null_sample(null_rows: list[dict], field: str, kind: str) -> tuple[np.ndarray, int]:
    """The set-level null for a hypothesis of ``kind``, and its number of independent sets."""
    per_set = set_statistics(null_rows, field)
    if kind == "relative":
        return pair_values(null_rows, field), len(per_set)
    return np.array(list(per_set.values()), float), len(per_set)


def prediction_t(statistic: float, null: np.ndarray, units: int) -> tuple[float, float]:
    """Two-sided p that one more exchangeable draw lies as far from the null's mean as ``statistic``."""
    from scipy.special import stdtr

    null = np.asarray(null, float)
    if len(null) < 2 or units < 2:
        return float("nan"), 1.0
    spread = float(null.std(ddof=1))
    centre = float(null.mean())
    if spread == 0:
        return (0.0, 1.0) if statistic == centre else (float(np.sign(statistic - centre) * np.inf), 0.0)
    t = (statistic - centre) / (spread * np.sqrt(1.0 + 1.0 / units))
    return float(t), float(2.0 * stdtr(units - 1, -abs(t)))


def rank_p(statistic: float, null: np.ndarray) -> tuple[float, float]:
    """Exact two-sided rank p: the share of the null (and the statistic itself) at least as far
    from the null's median; 1/(n+1) at best."""
    null = np.asarray(null, float)
    if len(null) < 1:
        return float("nan"), 1.0
    centre = float(np.median(null))
    distance = abs(statistic - centre)
    beyond = int(np.count_nonzero(np.abs(null - centre) >= distance - 1e-12))
    return float(statistic - centre), float((1 + beyond) / (len(null) + 1))
