"""Significance of TCAV scores: t-tests against the random null, multiple-testing corrections.

Per (target, layer, concept): a two-sided t-test of the concept's R scores (one per
random set) against the R null scores (random-vs-random CAVs) of the same target and
layer.  Relative CAVs (A against B) are tested against the same null.  The p values
of all hypotheses tested in one run are corrected together (Bonferroni by default, as
in Video-TCAV; Holm and Benjamini-Hochberg as options).

Example:
    >>> correct([0.01, 0.02, 0.5], "bonferroni").round(3).tolist()
    [0.03, 0.06, 1.0]
"""

from __future__ import annotations

import warnings
from collections import defaultdict

import numpy as np
from scipy import stats as scipy_stats

CORRECTIONS = ("bonferroni", "holm", "bh", "none")


def correct(pvalues, method: str = "bonferroni") -> np.ndarray:
    """Adjusted p values for ``m`` hypotheses (capped at 1)."""
    p = np.asarray(pvalues, dtype=float)
    m = len(p)
    if m == 0 or method == "none":
        return p.copy()
    if method == "bonferroni":
        return np.minimum(p * m, 1.0)
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if method == "holm":
        adjusted = np.maximum.accumulate((m - np.arange(m)) * ranked)
    elif method == "bh":
        adjusted = np.minimum.accumulate((m / np.arange(m, 0, -1) * ranked[::-1]))[::-1]
    else:
        raise ValueError(f"unknown correction {method!r}; choose from {', '.join(CORRECTIONS)}")
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    """Standardised mean difference with the pooled standard deviation."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    pooled = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / max(len(a) + len(b) - 2, 1))
    diff = a.mean() - b.mean()
    if pooled == 0:
        return 0.0 if diff == 0 else float(np.sign(diff) * np.inf)
    return float(diff / pooled)


def ttest(a: np.ndarray, b: np.ndarray, welch: bool = False) -> tuple[float, float]:
    """Two-sided t statistic and p value; degenerate constant samples handled explicitly."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        return float("nan"), 1.0
    if a.std() == 0 and b.std() == 0:
        return (0.0, 1.0) if a.mean() == b.mean() else (float(np.sign(a.mean() - b.mean()) * np.inf), 0.0)
    with warnings.catch_warnings():
        # scipy warns about precision when one sample is (nearly) constant; the result stands.
        warnings.simplefilter("ignore", RuntimeWarning)
        result = scipy_stats.ttest_ind(a, b, equal_var=not welch)
    return float(result.statistic), float(result.pvalue)


def significance_tests(records: list[dict], correction: str = "bonferroni", alpha: float = 0.05,
                min_accuracy: float = 0.6, welch: bool = False) -> list[dict]:
    """One result per (target, layer, concept, against) hypothesis, corrected together."""
    null = defaultdict(list)
    groups = defaultdict(list)
    layer_order = {}
    for record in records:
        layer_order.setdefault(record["layer"], len(layer_order))
        key = (record["target"], record["layer"])
        if record["kind"] == "null":
            null[key].append(record)
        else:
            against = "random" if record["kind"] == "concept" else record["against"]
            groups[(record["target"], record["layer"], record["concept"], against, record["kind"])].append(record)

    results = []
    for (target, layer, concept, against, kind), rows in groups.items():
        null_rows = null.get((target, layer), [])
        scores = np.array([r["score"] for r in rows])
        null_scores = np.array([r["score"] for r in null_rows])
        t, p = ttest(scores, null_scores, welch) if len(null_rows) else (float("nan"), 1.0)
        accuracy = float(np.mean([r.get("cav_accuracy", np.nan) for r in rows]))
        results.append({
            "target": target, "layer": layer, "concept": concept, "against": against, "kind": kind,
            "n": len(rows), "n_null": len(null_rows),
            "mean": float(scores.mean()), "std": float(scores.std(ddof=1)) if len(rows) > 1 else 0.0,
            "null_mean": float(null_scores.mean()) if len(null_rows) else float("nan"),
            "null_std": float(null_scores.std(ddof=1)) if len(null_rows) > 1 else 0.0,
            "magnitude": float(np.mean([r["magnitude"] for r in rows])),
            "t": t, "p": p,
            "effect_size": cohens_d(scores, null_scores) if len(null_rows) > 1 and len(rows) > 1 else 0.0,
            "cav_accuracy": accuracy, "cav_ok": bool(accuracy >= min_accuracy),
        })
    adjusted = correct([r["p"] for r in results], correction)
    for result, p_adj in zip(results, adjusted):
        result["p_corrected"] = float(p_adj)
        result["correction"] = correction
        result["m"] = len(results)
        result["alpha"] = alpha
        # A concept whose CAVs are at chance has no direction worth testing: say so.
        result["significant"] = bool(p_adj < alpha and result["cav_ok"])
        result["direction"] = "+" if result["mean"] > result["null_mean"] else "-"
    results.sort(key=lambda r: (r["target"], layer_order[r["layer"]], r["kind"] != "concept", r["concept"],
                                r["against"]))
    return results
