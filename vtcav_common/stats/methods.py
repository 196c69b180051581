"""Two-sample tests of a concept's R CAV-level values against the random null: one registry.

Every test compares the values of one field of the score records (``score``, the sign
count in [0, 1], or ``magnitude``, the mean derivative) of the concept's R CAVs with the
R values of the random-vs-random CAVs, and returns a two-sided p value.  Adding a test =
one ``@test`` function here.

``attainable`` gives the smallest p the test could return against the observed null
with the concept's R: the concept's values all at the bound of the field's range that
lies farthest from the null (e.g. every CAV scoring 1.0).  For the sign count at a layer
whose gradient is the same for every input, the null is 0s and 1s and that floor is far
from zero (Student's t at R = 10: about 0.0077).

Example:
    >>> import numpy as np
    >>> null = np.array([0.0, 1.0] * 5)
    >>> round(attainable("ttest", 10, null), 4)
    0.0077
    >>> round(run("ttest", np.full(10, 0.9), np.linspace(0.3, 0.7, 10))[1], 8) < 1e-6
    True
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..core.registry import Registry

PERMUTATIONS = 9999
DEFAULT = "set"     # calibrated on its own (docs/statistics.md); "ttest" is the paper's


@dataclass(frozen=True)
class Test:
    name: str
    field: str                           # which field of the score records it tests
    bounds: tuple[float, float] | None   # the field's range (None: unbounded)
    function: Callable[..., tuple[float, float]]
    help: str
    # "cavs": the concept's R values against the R null CAVs' values (the paper's design);
    # "sets": the concept's set-level mean against every random set's own (:mod:`.setlevel`)
    null: str = "cavs"


ALIASES = {"student": "ttest", "t": "ttest", "mwu": "mannwhitney", "perm": "permutation",
           "paper": "ttest", "set-magnitude": "set"}
# installed packages add tests through the entry-point group vtcav.tests (core.registry)
REGISTRY: Registry[Test] = Registry("test", group="vtcav.tests", aliases=ALIASES, kind=Test)


def test(name: str, field: str, bounds, help: str, null: str = "cavs"):
    def register(function):
        REGISTRY.add(name, Test(name, field, bounds, function, help, null))
        return function
    return register


def _degenerate(a: np.ndarray, b: np.ndarray) -> tuple[float, float] | None:
    """Constant samples: the t statistic is undefined, the answer is not."""
    if len(a) < 2 or len(b) < 2:
        return float("nan"), 1.0
    if a.std() == 0 and b.std() == 0:
        return (0.0, 1.0) if a.mean() == b.mean() else (float(np.sign(a.mean() - b.mean()) * np.inf), 0.0)
    return None


def _t(a: np.ndarray, b: np.ndarray, equal_var: bool) -> tuple[float, float]:
    early = _degenerate(a, b)
    if early:
        return early
    return t_test_from_stats(a.mean(), a.var(ddof=1), len(a), b.mean(), b.var(ddof=1), len(b), equal_var)


def t_test_from_stats(mean_a: float, var_a: float, n_a: int, mean_b: float, var_b: float, n_b: int,
                      equal_var: bool) -> tuple[float, float]:
    """Student's (``equal_var``) or Welch's two-sided t-test from the samples' means, variances
    (ddof 1) and sizes: scipy.stats.ttest_ind's formulas, with the t distribution from
    scipy.special (importing scipy.stats costs vt-stats a second of its start-up)."""
    from scipy.special import stdtr

    with np.errstate(divide="ignore", invalid="ignore"):
        if equal_var:
            df = n_a + n_b - 2.0
            pooled = ((n_a - 1) * var_a + (n_b - 1) * var_b) / df
            denominator = np.sqrt(pooled * (1.0 / n_a + 1.0 / n_b))
        else:
            share_a, share_b = var_a / n_a, var_b / n_b
            df = (share_a + share_b) ** 2 / (share_a ** 2 / (n_a - 1) + share_b ** 2 / (n_b - 1))
            df = 1.0 if np.isnan(df) else df           # both variances zero: as scipy does
            denominator = np.sqrt(share_a + share_b)
        statistic = (mean_a - mean_b) / denominator
    return float(statistic), float(2.0 * stdtr(df, -abs(statistic)))


@test("ttest", "score", (0.0, 1.0), help="Student's two-sided t-test of the TCAV scores (the paper's)")
def _student(a, b, rng=None):
    return _t(a, b, equal_var=True)


@test("welch", "score", (0.0, 1.0), help="Welch's t-test of the TCAV scores (unequal variances)")
def _welch(a, b, rng=None):
    return _t(a, b, equal_var=False)


@test("mannwhitney", "score", (0.0, 1.0),
      help="Mann-Whitney U of the TCAV scores (ranks: no normality assumed)")
def _mann_whitney(a, b, rng=None):
    if len(a) < 2 or len(b) < 2:
        return float("nan"), 1.0
    if np.all(a == a[0]) and np.all(b == a[0]):
        return float(len(a) * len(b) / 2), 1.0
    from scipy import stats as scipy_stats

    result = scipy_stats.mannwhitneyu(a, b, alternative="two-sided", method="auto")
    return float(result.statistic), float(result.pvalue)


@test("permutation", "score", (0.0, 1.0),
      help=f"permutation test of the difference in mean TCAV score ({PERMUTATIONS} seeded permutations, "
           "exact when fewer arrangements exist)")
def _permutation(a, b, rng=None):
    if len(a) < 2 or len(b) < 2:
        return float("nan"), 1.0
    rng = rng if rng is not None else np.random.default_rng(0)
    pooled = np.concatenate([a, b])
    n, total = len(a), len(a) + len(b)
    observed = a.mean() - b.mean()
    if math.comb(total, n) <= PERMUTATIONS + 1:
        chosen = np.array(list(itertools.combinations(range(total), n)))
        extra = 0     # the observed arrangement is among the enumerated ones
    else:
        chosen = np.argsort(rng.random((PERMUTATIONS, total)), axis=1)[:, :n]
        extra = 1     # count the observed arrangement once (Phipson & Smyth 2010)
    mask = np.zeros((len(chosen), total), bool)
    np.put_along_axis(mask, chosen, True, axis=1)
    sums = mask @ pooled
    diffs = sums / n - (pooled.sum() - sums) / (total - n)
    # a small tolerance so that float rounding does not split exact ties
    hits = np.count_nonzero(np.abs(diffs) >= abs(observed) - 1e-12)
    return float(observed), float((hits + extra) / (len(chosen) + extra))


@test("magnitude", "magnitude", None,
      help="Welch's t-test of the TCAV magnitudes (mean derivative): usable where scores are only 0 or 1")
def _magnitude(a, b, rng=None):
    return _t(a, b, equal_var=False)


# Set-level tests: ``a`` is the concept's R values (its statistic is their mean), ``b`` the
# set-level null (one value per random set, or per oriented random pair for a relative CAV),
# ``units`` the number of independent random sets behind ``b``.
@test("set", "magnitude", None, null="sets",
      help="set-level prediction t-test of the mean directional derivative: the concept's clip set against "
           "every random set playing the concept's part (calibrated; the default)")
def _set_magnitude(a, b, rng=None, units=None):
    from .setlevel import prediction_t
    return prediction_t(float(np.mean(a)), b, units or len(b))


@test("set-score", "score", (0.0, 1.0), null="sets",
      help="the same set-level prediction t-test on the TCAV score (sign count)")
def _set_score(a, b, rng=None, units=None):
    from .setlevel import prediction_t
    return prediction_t(float(np.mean(a)), b, units or len(b))


@test("set-rank", "magnitude", None, null="sets",
      help="exact rank of the concept's set-level mean derivative among the random sets' (no normality "
           "assumed; p >= 1/(R+1))")
def _set_rank(a, b, rng=None, units=None):
    from .setlevel import rank_p
    return rank_p(float(np.mean(a)), b)


NAMES = REGISTRY.names()   # the built-in tests (plugins load when the registry is listed)
resolve = REGISTRY.resolve   # the registered name, or UnknownName (a ValueError) listing the choices
choices = REGISTRY.choices


def run(name: str, a, b, rng: np.random.Generator | None = None, units: int | None = None) -> tuple[float, float]:
    """Statistic and two-sided p of test ``name`` for samples ``a`` (concept) and ``b`` (null);
    ``units``: the independent random sets behind a set-level null (default: its length)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    spec = REGISTRY[resolve(name)]
    if spec.null == "sets":
        return spec.function(a, b, rng, units)
    return spec.function(a, b, rng)


def attainable(name: str, n: int, null, units: int | None = None) -> float:
    """The smallest p test ``name`` could give with ``n`` concept values against ``null``."""
    spec = REGISTRY[resolve(name)]
    null = np.asarray(null, float)
    if len(null) < 2 or n < 2:
        return 1.0
    if spec.name == "set-rank":
        return 1.0 / (len(null) + 1)
    if spec.bounds is None:
        return 0.0
    low, high = spec.bounds
    extreme = high if abs(high - null.mean()) >= abs(low - null.mean()) else low
    return run(name, np.full(n, extreme), null, np.random.default_rng(0), units)[1]


def needed_r(name: str, null, reachable: Callable[[float], bool], limit: int = 1000) -> int | None:
    """The smallest R (concept and null sets alike) at which ``reachable(p_min)`` holds, the null
    keeping its observed distribution (its quantiles); None if not even at ``limit``."""
    null = np.asarray(null, float)
    if len(null) < 2:
        return None
    if name == "permutation" and not reachable(1 / (PERMUTATIONS + 1)):
        return None     # the Monte Carlo floor, whatever R

    spec = REGISTRY[resolve(name)]

    def ok(r: int) -> bool:
        if name in ("ttest", "welch") and spec.bounds is not None:
            # t-tests: the null keeps its mean and std exactly (quantiles of a 0/1 null would not)
            low, high = spec.bounds
            extreme = high if abs(high - null.mean()) >= abs(low - null.mean()) else low
            if null.std() == 0:
                return reachable(0.0 if extreme != null.mean() else 1.0)
            _, p = t_test_from_stats(extreme, 0.0, r, null.mean(), null.var(ddof=1), r, equal_var=name == "ttest")
            return reachable(p)
        synthetic = np.quantile(null, (np.arange(r) + 0.5) / r, method="inverted_cdf")
        return reachable(attainable(name, r, synthetic))

    low, high = 2, 3            # ok(low) is taken as false; find a high that is ok, then bisect
    while not ok(high):
        if high >= limit:
            return None
        low, high = high, min(limit, high * 2)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if ok(middle) else (middle, high)
    return high


def cohens_d(a, b) -> float:
    """Standardised mean difference with the pooled standard deviation."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        return 0.0
    pooled = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
    diff = a.mean() - b.mean()
    if pooled == 0:
        return 0.0 if diff == 0 else float(np.sign(diff) * np.inf)
    return float(diff / pooled)
