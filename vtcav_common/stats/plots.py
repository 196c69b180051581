"""The TCAV figure: scores per layer with stated error bars, the null, and significance marks.

Per target, one panel for the concepts tested against random sets and, apart, one for
the relative CAVs (concept A against concept B), which answer a different question.
Bars are the mean TCAV score over the R CAVs with ± 1 standard deviation; the grey bar
is the random-vs-random null; ▲ / ▼ mark a significantly higher / lower score than the
null after correction; hatched bars could not have reached significance with this R.
A caption line states R, the test, the correction and its family.  The format follows
the file's extension (PNG, PDF, SVG), and the same results give the same bytes.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from ..core.files import atomic_path
from ..core.errors import UsageError

FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}
# Dates and software versions off: the same results give the same file.
METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Producer": None, "Creator": None},
            "svg": {"Date": None, "Creator": None}}


def check_format(path: str | Path) -> str:
    """The figure format for ``path``'s extension, or a usage error naming the path."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"{path}: cannot tell the figure format from '{suffix or 'no extension'}' "
                         f"(use {', '.join(FORMATS)})")
    return FORMATS[suffix]


def _pyplot():
    os.environ.setdefault("MPLCONFIGDIR", str(Path(tempfile.gettempdir()) / "vtcav-mpl"))
    import matplotlib
    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "vtcav"
    matplotlib.rcParams["pdf.fonttype"] = 42   # editable text in papers' figure tools
    import matplotlib.pyplot as plt
    return plt


def plot_scores(results: list[dict], path: str | Path, title: str = "") -> None:
    """Write the figure of vt-stats ``results`` to ``path`` (format from the extension)."""
    fmt = check_format(path)
    plt = _pyplot()
    targets = list(dict.fromkeys(r["target"] for r in results))
    panels = [(t, rel) for t in targets for rel in (False, True)
              if any(r["target"] == t and (r["kind"] == "relative") == rel for r in results)]
    widths = [_n_labels(results, t, rel) + 1 for t, rel in panels]
    n_layers = len({r["layer"] for r in results})
    fig, axes = plt.subplots(1, len(panels), squeeze=False, gridspec_kw={"width_ratios": widths},
                             figsize=(max(6.5, 0.55 * n_layers * sum(widths) + 2.5), 4.6))
    low, high = _limits(results)
    for ax, (target, relative) in zip(axes[0], panels):
        rows = [r for r in results if r["target"] == target and (r["kind"] == "relative") == relative]
        _panel(plt, ax, rows, relative, low, high)
        kind = "relative CAVs (A vs B)" if relative else "concept vs random CAVs"
        ax.set_title(f"{title + ': ' if title else ''}class '{target}' — {kind}", fontsize=10)
    axes[0][0].set_ylabel("TCAV score (fraction of inputs with S > 0)")
    fig.text(0.01, 0.01, _caption(results), fontsize=8, ha="left", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    with atomic_path(path, suffix=Path(path).suffix) as tmp:
        fig.savefig(tmp, dpi=120, format=fmt, metadata=METADATA[fmt])
    plt.close(fig)


def _panel(plt, ax, rows: list[dict], relative: bool, low: float, high: float) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    layers = list(dict.fromkeys(r["layer"] for r in rows))
    labels = list(dict.fromkeys(_label(r) for r in rows))
    width = 0.8 / (len(labels) + 1)
    x = np.arange(len(layers))
    colours = plt.get_cmap("tab10")
    for i, label in enumerate(labels):
        colour = colours((i + 3) % 10) if relative else colours(i % 10)
        by_layer = {r["layer"]: r for r in rows if _label(r) == label}
        pos = x - 0.4 + width * (i + 0.5)
        for px, layer in zip(pos, layers):
            r = by_layer.get(layer)
            if r is None:
                continue
            below, above = _interval(r)
            ax.bar(px, r["mean"], width, yerr=[[r["mean"] - below], [above - r["mean"]]], capsize=3, color=colour,
                   edgecolor="black", linewidth=0.4, hatch="///" if not r["reachable"] else None,
                   error_kw={"elinewidth": 0.8})
            if r["significant"]:
                up = r["direction"] == "+"
                y = above + 0.04 if up else below - 0.04
                # hollow: the same verdict also comes out under a sanity control (vt-stats --control)
                hollow = r.get("survives_controls") is False
                ax.plot(px, y, "^" if up else "v", color="black", markersize=7,
                        markerfacecolor="white" if hollow else "black")
    null = {r["layer"]: (r["null_mean"], *_null_interval(r)) for r in rows}
    pos = x - 0.4 + width * (len(labels) + 0.5)
    ax.bar(pos, [null[l][0] for l in layers], width,
           yerr=[[null[l][0] - null[l][1] for l in layers], [null[l][2] - null[l][0] for l in layers]], capsize=3,
           color="0.8", edgecolor="black", linewidth=0.4, error_kw={"elinewidth": 0.8})
    ax.axhline(0.5, color="0.4", lw=0.8, ls=":")
    ax.set_xticks(x, layers)
    ax.set_ylim(low, high)
    ax.set_xlabel("layer")
    handles = [Patch(facecolor=colours((i + 3) % 10) if relative else colours(i % 10), edgecolor="black",
                     linewidth=0.4, label=label) for i, label in enumerate(labels)]
    handles.append(Patch(facecolor="0.8", edgecolor="black", linewidth=0.4, label="random vs random (null)"))
    handles += [Line2D([], [], marker="^", ls="", color="black", label="significantly above null"),
                Line2D([], [], marker="v", ls="", color="black", label="significantly below null")]
    if any(r.get("survives_controls") is False for r in rows):
        handles.append(Line2D([], [], marker="^", ls="", color="black", markerfacecolor="white",
                              label="also significant under a sanity control"))
    if any(not r["reachable"] for r in rows):
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="///", label="significance unreachable"))
    ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)


def _interval(r: dict) -> tuple[float, float]:
    """The score's error bar: its bootstrap interval (vt-stats' ci_low/ci_high), else ± 1 std."""
    low, high = r.get("ci_low"), r.get("ci_high")
    if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
        return r["mean"] - r["std"], r["mean"] + r["std"]
    return min(low, r["mean"]), max(high, r["mean"])


def _null_interval(r: dict) -> tuple[float, float]:
    """The null's bar: the band a random set's own score falls in (null_low/null_high), else ± 1 std."""
    low, high = r.get("null_low"), r.get("null_high")
    if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
        return r["null_mean"] - r["null_std"], r["null_mean"] + r["null_std"]
    return min(low, r["null_mean"]), max(high, r["null_mean"])


def _limits(results: list[dict]) -> tuple[float, float]:
    """The y range: the score's [0, 1] plus whatever the error bars and marks reach."""
    lows = [_interval(r)[0] for r in results] + [_null_interval(r)[0] for r in results]
    highs = [_interval(r)[1] for r in results] + [_null_interval(r)[1] for r in results]
    lows = [v for v in lows if np.isfinite(v)] or [0.0]
    highs = [v for v in highs if np.isfinite(v)] or [1.0]
    return min(0.0, min(lows)) - 0.1, max(1.0, max(highs)) + 0.12


def _caption(results: list[dict]) -> str:
    first = results[0]
    rs = sorted({r["R"] for r in results})
    families = sorted({r["m"] for r in results})
    test = {"ttest": "Student's two-sided t-test", "welch": "Welch's t-test", "mannwhitney": "Mann-Whitney U",
            "permutation": "permutation test", "magnitude": "Welch's t-test of the magnitudes",
            "set": "set-level test of the mean derivative (each random set as the concept)",
            "set-score": "set-level test of the score", "set-rank": "set-level rank test"}.get(
        first["test"], first["test"])
    if first.get("ci_low") is not None:
        bars = (f"error bars: {first.get('ci_level', 0.95):.0%} interval ({first.get('ci_method', 'bootstrap')}); "
                f"grey: a random set's own score, {first.get('ci_level', 0.95):.0%} prediction band")
    else:
        bars = "error bars ± 1 std over the R CAVs"
    return (f"Bars: mean TCAV score over R={'/'.join(map(str, rs))} CAVs, {bars}. "
            f"▲/▼: {test} against the null, {first['correction']} within family '{first['family']}' "
            f"(m={'/'.join(map(str, families))}), alpha={first['alpha']}; "
            f"dotted line: 0.5.")


def _label(result: dict) -> str:
    return result["concept"] if result["against"] == "random" else f"{result['concept']} vs {result['against']}"


def _n_labels(results: list[dict], target: str, relative: bool) -> int:
    return len({_label(r) for r in results if r["target"] == target and (r["kind"] == "relative") == relative})
