"""One hypothesis per (target, layer, concept, against): tested, corrected within its family.

Per hypothesis: the concept's R CAV-level values (one per random set or resample) are
compared with the R random-vs-random values of the same target and layer by a test of
the registry (:mod:`.methods`), and the p values are corrected within a *family*:

- ``all``: every hypothesis in the input (Video-TCAV's Bonferroni over all tests);
- ``target``: the hypotheses of one target class;
- ``layer``: those of one target at one layer (what tensorflow/tcav compares at once);
- ``concept``: one concept (or relative pair) of one target across its layers.

Every result states what it tested: the test, the field, R, the family and m, and the
smallest p the test could have reached (``p_min_attainable``) with whether significance
was reachable at all after the correction (``reachable``).
"""

from __future__ import annotations

import math
import zlib
from collections import defaultdict

import numpy as np

from . import corrections, intervals, methods, setlevel

FAMILIES = {
    "all": "every hypothesis in the input",
    "target": "the hypotheses of one target class",
    "layer": "the hypotheses of one target at one layer",
    "concept": "one concept (or relative pair) of one target across layers",
}


def family_key(family: str, result: dict) -> tuple:
    if family == "all":
        return ()
    if family == "target":
        return (result["target"],)
    if family == "layer":
        return (result["target"], result["layer"])
    if family == "concept":
        return (result["target"], result["concept"], result["against"], result["kind"])
    raise ValueError(f"unknown family '{family}'; choose from {', '.join(FAMILIES)}")


def _rng(seed: int, key: tuple) -> np.random.Generator:
    """A generator per hypothesis, so its p does not depend on which others are tested."""
    return np.random.default_rng([seed, zlib.crc32("\x1f".join(map(str, key)).encode())])


def _std(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def significance_tests(records: list[dict], correction: str = "bonferroni", alpha: float = 0.05,
                       min_accuracy: float = 0.6, welch: bool = False, *, test: str | None = None,
                       family: str = "all", seed: int = 0, explain: bool = True) -> list[dict]:
    """One result per (target, layer, concept, against) hypothesis, corrected within its family.

    The default test is the calibrated set-level test (``set``, :mod:`.setlevel`); ``test="ttest"``
    is the paper's. ``welch=True`` is the old spelling of ``test="welch"``; ``explain=False`` skips
    the search for the R that would make an unreachable hypothesis reachable (``r_needed``) and
    the bootstrap intervals (benchmarks).
    """
    test = methods.resolve(test or ("welch" if welch else methods.DEFAULT))
    correction = corrections.resolve(correction)
    family_key(family, {"target": "", "layer": "", "concept": "", "against": "", "kind": ""})  # validates
    field = methods.REGISTRY[test].field
    null, groups, layer_order = defaultdict(list), defaultdict(list), {}
    for record in records:
        layer_order.setdefault(record["layer"], len(layer_order))
        if record["kind"] == "null":
            null[(record["target"], record["layer"])].append(record)
        else:
            against = "random" if record["kind"] == "concept" else record["against"]
            groups[(record["target"], record["layer"], record["concept"], against, record["kind"])].append(record)

    results = [_hypothesis(key, rows, null.get(key[:2], []), test, field, min_accuracy, seed, explain)
               for key, rows in groups.items()]
    families = defaultdict(list)
    for result in results:
        families[family_key(family, result)].append(result)
    best = corrections.REGISTRY[correction].best
    for members in families.values():
        m = len(members)
        for result, p_adj in zip(members, corrections.correct([r["p"] for r in members], correction)):
            reachable = best(result["p_min_attainable"], m) < alpha
            result.update(p_corrected=float(p_adj), correction=correction, family=family, m=m, alpha=alpha,
                          reachable=bool(reachable),
                          # A concept whose CAVs are at chance has no direction worth testing: say so.
                          significant=bool(p_adj < alpha and result["cav_ok"]))
            result["r_needed"] = None if reachable or not explain else methods.needed_r(
                test, result.pop("_null"), lambda p, m=m: best(p, m) < alpha)
            result.pop("_null", None)
            result["clips_needed"] = _clips_needed(result, lambda p, m=m: best(p, m) < alpha)
    results.sort(key=lambda r: (r["target"], layer_order[r["layer"]], r["kind"] != "concept", r["concept"],
                                r["against"]))
    return results


def _hypothesis(key: tuple, rows: list[dict], null_rows: list[dict], test: str, field: str,
                min_accuracy: float, seed: int, explain: bool = True) -> dict:
    target, layer, concept, against, kind = key
    spec = methods.REGISTRY[test]
    scores = np.array([r["score"] for r in rows], float)
    values = np.array([r[field] for r in rows], float)
    magnitudes = np.array([r["magnitude"] for r in rows], float)
    units = None
    if spec.null == "sets":     # each random set playing the concept's part (setlevel.py)
        null_values, units = setlevel.null_sample(null_rows, field, kind)
        null_scores, _ = setlevel.null_sample(null_rows, "score", kind)
        null_magnitudes, _ = setlevel.null_sample(null_rows, "magnitude", kind)
    else:                       # the R null CAVs' own values (the paper's design)
        null_values = np.array([r[field] for r in null_rows], float)
        null_scores = np.array([r["score"] for r in null_rows], float)
        null_magnitudes = np.array([r["magnitude"] for r in null_rows], float)
    if len(null_values) >= 2:
        statistic, p = methods.run(test, values, null_values, _rng(seed, key), units)
        p_min = methods.attainable(test, len(values), null_values, units)
    else:
        statistic, p, p_min = float("nan"), 1.0, 1.0
    accuracy = float(np.mean([r.get("cav_accuracy", np.nan) for r in rows]))
    null_mean = float(null_values.mean()) if len(null_values) else float("nan")
    if spec.null == "sets":     # the concept's distance from the random sets, in their spread
        spread = float(null_values.std(ddof=1)) if len(null_values) > 1 else 0.0
        effect = (float(values.mean()) - null_mean) / spread if spread > 0 else 0.0
    else:
        effect = methods.cohens_d(values, null_values)
    result = {
        "target": target, "layer": layer, "concept": concept, "against": against, "kind": kind,
        "test": test, "field": field, "null_design": spec.null, "R": len(rows), "n": len(rows),
        "n_null": len(null_rows), "null_units": units if units is not None else len(null_rows),
        "mean": float(scores.mean()), "std": _std(scores),
        "null_mean": float(null_scores.mean()) if len(null_scores) else float("nan"), "null_std": _std(null_scores),
        "magnitude": float(magnitudes.mean()), "magnitude_std": _std(magnitudes),
        "null_magnitude": float(null_magnitudes.mean()) if len(null_magnitudes) else float("nan"),
        "null_magnitude_std": _std(null_magnitudes),
        "binary_scores": bool(np.all((scores == 0) | (scores == 1))
                              and np.all((null_scores == 0) | (null_scores == 1))),
        "statistic": statistic, "t": statistic if test in ("ttest", "welch", "magnitude", "set", "set-score") else None,
        "p": p, "p_min_attainable": p_min,
        "effect_size": effect,
        "cav_accuracy": accuracy, "cav_ok": bool(accuracy >= min_accuracy),
        "direction": "+" if float(values.mean()) > null_mean else "-",
        "n_clips": _n_clips(rows),
        "_null": null_values,
    }
    if explain:
        result.update(intervals.score_intervals(rows, null_scores, len(null_scores) and (units or len(null_scores)),
                                                _rng(seed + 1, key)))
    return result


def _n_clips(rows: list[dict]) -> int | None:
    """Clips a side behind the concept's CAVs (vt-score records ``n_clips`` from the CAV file)."""
    counts = [r.get("n_clips") for r in rows]
    return int(min(counts)) if counts and all(isinstance(c, int) for c in counts) else None


def _clips_needed(result: dict, reachable, limit: int = 100_000) -> int | None:
    """For a set-level test not significant at this size: the clips a set at which the observed
    distance from the random sets would be, if the random sets' spread shrinks as 1/sqrt(clips)
    (a set's quirk is an average over its clips) and the concept's mean stays where it is."""
    if (result["null_design"] != "sets" or result["significant"] or not result["cav_ok"]
            or not result.get("n_clips") or result["t"] is None or not np.isfinite(result["t"])
            or result["t"] == 0):
        return None
    from scipy.special import stdtr

    units = max(int(result["null_units"]), 2)
    t = abs(float(result["t"]))
    low, high = 1.0, 2.0
    while not reachable(float(2.0 * stdtr(units - 1, -t * high))):
        low, high = high, high * 2
        if high ** 2 * result["n_clips"] > limit:
            return None
    for _ in range(40):
        middle = (low + high) / 2
        low, high = (low, middle) if reachable(float(2.0 * stdtr(units - 1, -t * middle))) else (middle, high)
    return int(math.ceil(result["n_clips"] * high ** 2))


def strict(value):
    """``value`` with every non-finite float replaced by None: strict JSON (no NaN, no Infinity)."""
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
