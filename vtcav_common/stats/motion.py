"""Motion reliance: is a concept's preference over its temporal twin more than any clip's?

A relative CAV of a set against its twin (``ball_right`` vs ``ball_right~frozen``, see
``vtcav_common.concepts.twins``) gives a TCAV score per resample: the fraction of the
target's inputs whose logit grows along "the set, not its twin". A score above 0.5 says
the class prefers the original's motion (frozen), frame order (shuffled), direction of
time (reversed) or appearance detail (blurred) to the twin's.

But that holds for *any* clip as well: a random window, frozen, loses the sensor noise and
whatever moves in it. So the null of a twin comparison is **the same comparison on random
sets against their own twins**: every random set ``r`` with a twin ``r~frozen`` gives one
value, the mean score of its ``r`` vs ``r~frozen`` CAVs over their resamples, computed
exactly as the concept's value (the mean over its resamples) is. The concept's value is
then tested as one more draw from that null with a **prediction t-test**::

    t = (x - mean(null)) / (sd(null) * sqrt(1 + 1/n)),   n - 1 degrees of freedom, two-sided

(under a normal null, a set that is just one more random set gets a uniform p: the test is
at the set level, where the question is, not at the level of resamples of one set, whose
spread says nothing about other sets). p values are corrected within the same families as
vt-stats' other hypotheses (``--family``, ``--correction``); a twin comparison whose CAVs are
at chance (the layer cannot tell the set from its twin) is never marked significant.

Each result is a vt-stats record (``kind: "twin"``) that vt-report shows in its table; the
figure (:func:`plot_motion`) shows per layer the concept's relative scores against its
static set and against each twin, their 95% intervals, the null's 95% prediction
intervals and the significance marks.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..formats.clips import TRANSFORMS, parse_twin
from . import corrections
from .hypotheses import family_key

TEST = "twin-prediction"
LEVEL = 0.95


def _t_quantile(q: float, df: float) -> float:
    """Student's t quantile; scipy.special, imported here so that ``vt-stats --help`` does not
    pay scipy.stats' half second."""
    from scipy.special import stdtrit

    return float(stdtrit(df, q))


def _t_sf(t: float, df: float) -> float:
    """Student's t upper tail, P(T > t)."""
    from scipy.special import stdtr

    return float(stdtr(df, -t))


def is_twin_record(record: dict) -> bool:
    """A relative score of a set against its own twin (``A`` vs ``A~kind``)."""
    parsed = parse_twin(str(record.get("against", "")))
    return record.get("kind") == "relative" and parsed is not None and parsed[0] == record.get("concept")


def split_twin_records(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """(the records vt-stats tests as before, the set-vs-twin records tested here)."""
    twins = [r for r in records if is_twin_record(r)]
    return [r for r in records if not is_twin_record(r)], twins


def _t_interval(values: np.ndarray, prediction: bool) -> tuple[float, float]:
    """The 95% interval of the mean of ``values`` (or, ``prediction``, of one more draw)."""
    n = len(values)
    if n < 2:
        return (float(values.mean()),) * 2 if n else (math.nan, math.nan)
    scale = values.std(ddof=1) * math.sqrt(1 + 1 / n if prediction else 1 / n)
    half = float(_t_quantile(0.5 + LEVEL / 2, n - 1) * scale)
    return float(values.mean() - half), float(values.mean() + half)


def prediction_test(value: float, null: np.ndarray) -> tuple[float, float]:
    """(t, two-sided p) of ``value`` as one more draw from the normal population ``null`` came from."""
    n = len(null)
    if n < 2:
        return math.nan, 1.0
    spread = float(null.std(ddof=1)) * math.sqrt(1 + 1 / n)
    if spread == 0:   # every random set scored alike: only an equal value is unremarkable
        return (0.0, 1.0) if value == float(null.mean()) else (math.copysign(math.inf, value - null.mean()), 0.0)
    t = (value - float(null.mean())) / spread
    return float(t), float(2 * _t_sf(abs(t), n - 1))


def twin_tests(records: list[dict], random_sets: set[str] | None = None, correction: str = "bonferroni",
               alpha: float = 0.05, min_accuracy: float = 0.6, family: str = "all") -> list[dict]:
    """One result per (target, layer, concept, transform) of a concept against its twin.

    ``records`` are vt-score's relative records of sets against their twins; the sets in
    ``random_sets`` (default: names with a null record, i.e. vt-cav's random sets, or any
    ``random_*``) form the null of each transform at each layer.
    """
    by_pair: dict[tuple, list[dict]] = defaultdict(list)
    layer_order: dict[str, int] = {}
    for record in records:
        layer_order.setdefault(record["layer"], len(layer_order))
        transform = parse_twin(record["against"])[1]
        by_pair[(record["target"], record["layer"], record["concept"], transform)].append(record)
    randoms = random_sets if random_sets is not None else {k[2] for k in by_pair if k[2].startswith("random")}
    nulls: dict[tuple, list[float]] = defaultdict(list)
    for (target, layer, concept, transform), rows in sorted(by_pair.items()):
        if concept in randoms:
            nulls[(target, layer, transform)].append(float(np.mean([r["score"] for r in rows])))
    results = []
    for (target, layer, concept, transform), rows in by_pair.items():
        if concept in randoms:
            continue
        scores = np.array([r["score"] for r in rows], float)
        null = np.array(nulls.get((target, layer, transform), []), float)
        value = float(scores.mean())
        statistic, p = prediction_test(value, null)
        accuracy = float(np.mean([r.get("cav_accuracy", np.nan) for r in rows]))
        null_std = float(null.std(ddof=1)) if len(null) > 1 else math.nan
        results.append({
            "target": target, "layer": layer, "concept": concept, "against": rows[0]["against"], "kind": "twin",
            "transform": transform, "question": TRANSFORMS[transform].question,
            "test": TEST, "field": "score", "R": len(rows), "n": len(rows), "n_null": len(null),
            "mean": value, "std": float(scores.std(ddof=1)) if len(scores) > 1 else 0.0,
            "interval": list(_clip(_t_interval(scores, prediction=False))),
            "null_mean": float(null.mean()) if len(null) else math.nan, "null_std": null_std,
            "null_interval": list(_clip(_t_interval(null, prediction=True))),
            "null_sets": len(null),
            "statistic": statistic, "t": statistic, "p": p,
            "effect_size": (value - float(null.mean())) / null_std if null_std and null_std > 0 else math.nan,
            "cav_accuracy": accuracy, "cav_ok": bool(accuracy >= min_accuracy),
            "direction": "+" if len(null) and value > float(null.mean()) else "-",
        })
    families = defaultdict(list)
    for result in results:
        families[family_key(family, result)].append(result)
    for members in families.values():
        for result, p_adj in zip(members, corrections.correct([r["p"] for r in members], correction)):
            own = _own_preference(result)
            result["own_preference"] = own
            significant = bool(p_adj < alpha and result["cav_ok"] and result["n_null"] >= 2 and own)
            result.update(p_corrected=float(p_adj), correction=correction, family=family, m=len(members),
                          alpha=alpha, significant=significant, reachable=result["n_null"] >= 2,
                          verdict=_verdict(result, significant, p_adj < alpha))
    results.sort(key=lambda r: (r["target"], layer_order[r["layer"]], r["concept"], list(TRANSFORMS).index(
        r["transform"])))
    return results


def _own_preference(result: dict) -> bool:
    """Whether the class itself prefers one side: the concept's score interval lies beyond 0.5
    on the side it departs from the null. A verdict needs this as well as the null: a score
    of 0.45 against random clips' 0.06 says the alteration acts differently on the concept's
    clips than on random clips, not that the class prefers the concept's real time (it is
    indifferent to it)."""
    low, high = result["interval"]
    return bool(low > 0.5) if result["direction"] == "+" else bool(high < 0.5)


def _verdict(result: dict, significant: bool, beyond_null: bool = False) -> str:
    if result["n_null"] < 2:
        return "no null (make twins of the random sets)"
    if not result["cav_ok"]:
        return "chance CAV"
    if beyond_null and not result["own_preference"]:
        return "no: unlike random clips', but no preference of its own"
    if not significant:
        return "no"
    if result["direction"] == "+":
        return f"yes: relies on its {result['question']}"
    return f"yes: prefers its {result['transform']} twin"


def print_table(results: list[dict]) -> None:
    """The twin table on stderr: per layer, concept vs each twin, score, intervals, verdict."""
    from rich.console import Console
    from rich.table import Table

    first = results[0]
    table = Table(title=f"Motion reliance: concept vs its temporal twins ({TEST} against random sets vs their "
                        f"own twins, {first['correction']} within family '{first['family']}', alpha={first['alpha']})",
                  caption="score: mean relative TCAV score over R resamples [95% CI]; null: random sets vs their "
                          "own twins, mean [95% prediction interval]")
    for column in ("target", "layer", "concept", "twin", "R", "score [95% CI]", "null [95% PI]", "n null", "p",
                   "p corr", "CAV acc", "verdict"):
        table.add_column(column, justify="left" if column in ("target", "layer", "concept", "twin", "verdict")
                         else "right")
    for r in results:
        table.add_row(r["target"], r["layer"], r["concept"], r["transform"], str(r["R"]),
                      f"{r['mean']:.2f} [{r['interval'][0]:.2f}, {r['interval'][1]:.2f}]",
                      f"{r['null_mean']:.2f} [{r['null_interval'][0]:.2f}, {r['null_interval'][1]:.2f}]",
                      str(r["n_null"]), f"{r['p']:.2g}", f"{r['p_corrected']:.2g}", f"{r['cav_accuracy']:.2f}",
                      r["verdict"])
    Console(stderr=True, width=170).print(table)


# --------------------------------------------------------------------------- the figure
def plot_motion(results: list[dict], twin_results: list[dict], path: str | Path, title: str = "") -> None:
    """The paper's question for every concept with twins: its relative scores per layer against
    its static set (vt-stats' relative results, null: random vs random) and against each twin
    (null: random sets vs their own twins). Bars: mean score, whiskers its 95% interval; grey
    boxes: the null's 95% prediction interval; * significant after correction."""
    from ..core.files import atomic_path
    from .plots import METADATA, _pyplot, check_format

    fmt = check_format(path)
    plt = _pyplot()   # first: it sets matplotlib's backend and config folder
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    panels = list(dict.fromkeys((r["target"], r["concept"]) for r in twin_results))
    if not panels:
        raise ValueError("no twin results to plot")
    layers = list(dict.fromkeys(r["layer"] for r in twin_results))
    fig, axes = plt.subplots(len(panels), 1, squeeze=False, figsize=(max(7.0, 2.4 * len(layers) + 2.5),
                                                                      3.6 * len(panels) + 0.6))
    colours = {"static": "#4c72b0", "frozen": "#dd8452", "shuffled": "#55a868", "reversed": "#c44e52",
               "blurred": "#8172b3"}
    for ax, (target, concept) in zip(axes[:, 0], panels):
        series = []   # (label, colour, {layer: (mean, lo, hi, null_lo, null_hi, significant)})
        for r in results:
            if r["target"] == target and r["concept"] == concept and r["kind"] == "relative":
                series.append((f"vs {r['against']} (static)" if "static" in r["against"] else f"vs {r['against']}",
                               colours["static"], r))
        for r in twin_results:
            if r["target"] == target and r["concept"] == concept:
                series.append((f"vs {r['transform']} twin", colours.get(r["transform"], "#937860"), r))
        labels = list(dict.fromkeys(label for label, _, _ in series))
        slot = 0.84 / max(len(labels), 1)
        handles = [Line2D([], [], color="0.55", lw=3, marker="D", markerfacecolor="0.3", markeredgecolor="0.3",
                          ms=3.5, label="null 95% PI")]
        for k, label in enumerate(labels):
            rows = {r["layer"]: (colour, r) for lab, colour, r in series if lab == label}
            handles.append(Patch(color=next(iter(rows.values()))[0], label=label))   # a plain swatch
            for i, layer in enumerate(layers):
                if layer not in rows:
                    continue
                colour, r = rows[layer]
                x = i - 0.42 + slot * (k + 0.4)
                lo, hi = _clip(r.get("interval") or _mean_interval(r))
                null_lo, null_hi = _clip(r.get("null_interval") or _null_interval(r))
                chance = not r.get("cav_ok", True)   # pale and hatched: the CAVs are at chance
                ax.bar(x, r["mean"], slot * 0.6, color=colour, zorder=2, alpha=0.35 if chance else 1.0,
                       hatch="///" if chance else None, edgecolor=colour)
                ax.errorbar(x, r["mean"], yerr=[[r["mean"] - lo], [hi - r["mean"]]], color="black",
                            capsize=2, lw=1, zorder=3)
                if np.isfinite(null_lo) and np.isfinite(null_hi):   # the null beside its bar, in grey
                    xn = x + slot * 0.42
                    ax.plot([xn, xn], [null_lo, null_hi], color="0.55", lw=3, solid_capstyle="butt", zorder=2)
                    ax.plot(xn, r["null_mean"], marker="D", color="0.3", ms=3.5, zorder=3)
                if r.get("significant"):
                    ax.text(x, hi + 0.015, "*", ha="center", va="bottom", fontsize=13, zorder=4)
        ax.axhline(0.5, color="0.4", lw=0.8, ls="--", zorder=1)
        ax.set_xticks(range(len(layers)), layers)
        ax.set_xlim(-0.5, len(layers) - 0.5)
        ax.set_ylim(0, 1.12)
        ax.set_ylabel("relative TCAV score")
        ax.set_title(f"{title + ': ' if title else ''}class '{target}', {concept} against its static set and "
                     f"its temporal twins", fontsize=10)
        ax.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1),
                  ncol=len(handles), frameon=False)
    first = twin_results[0]
    fig.text(0.01, 0.01, f"bars: mean over R={first['R']} resampled relative CAVs, whiskers its 95% CI; grey: the "
                         f"null's 95% prediction interval, ◆ its mean (twins: {first['n_null']} random sets vs their "
                         f"own twins;\nstatic: random vs random); * significant after {first['correction']} within "
                         f"family '{first['family']}', alpha {first['alpha']}; pale hatched: CAVs at chance (never "
                         f"significant); dashed: 0.5", fontsize=7)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=130, metadata=METADATA[fmt])
    plt.close(fig)


def _clip(interval) -> tuple[float, float]:
    """An interval of TCAV scores, which are fractions: within [0, 1] (a normal interval may spill)."""
    lo, hi = interval
    return (min(max(lo, 0.0), 1.0), min(max(hi, 0.0), 1.0)) if np.isfinite(lo) and np.isfinite(hi) else (lo, hi)


def _mean_interval(r: dict) -> tuple[float, float]:
    n = r.get("R") or 1
    half = _t_quantile(0.5 + LEVEL / 2, max(n - 1, 1)) * (r.get("std") or 0.0) / math.sqrt(n)
    return r["mean"] - half, r["mean"] + half


def _null_interval(r: dict) -> tuple[float, float]:
    n = r.get("n_null") or 1
    std = r.get("null_std")
    if std is None or r.get("null_mean") is None or not np.isfinite(std):
        return math.nan, math.nan
    half = _t_quantile(0.5 + LEVEL / 2, max(n - 1, 1)) * std * math.sqrt(1 + 1 / n)
    return r["null_mean"] - half, r["null_mean"] + half
