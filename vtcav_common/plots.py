"""The TCAV figure: scores per layer with error bars, the null band and significance marks."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from .cli import atomic_path


def _pyplot():
    os.environ.setdefault("MPLCONFIGDIR", str(Path(tempfile.gettempdir()) / "vtcav-mpl"))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_scores(results: list[dict], path: str | Path, title: str = "") -> None:
    """One panel per target: bars = mean TCAV score (± std over R CAVs) per concept and layer,
    grey bar = the random-vs-random null, '*' = significant after correction."""
    plt = _pyplot()
    targets = list(dict.fromkeys(r["target"] for r in results))
    fig, axes = plt.subplots(1, len(targets), figsize=(max(6.0, 1.6 * _n_layers(results)) * len(targets), 4.2),
                             squeeze=False)
    for ax, target in zip(axes[0], targets):
        rows = [r for r in results if r["target"] == target]
        layers = list(dict.fromkeys(r["layer"] for r in rows))
        labels = list(dict.fromkeys(_label(r) for r in rows))
        width = 0.8 / (len(labels) + 1)
        x = np.arange(len(layers))
        colours = plt.get_cmap("tab10")
        for i, label in enumerate(labels):
            by_layer = {r["layer"]: r for r in rows if _label(r) == label}
            means = [by_layer[l]["mean"] if l in by_layer else np.nan for l in layers]
            stds = [by_layer[l]["std"] if l in by_layer else 0 for l in layers]
            pos = x - 0.4 + width * (i + 0.5)
            ax.bar(pos, means, width, yerr=stds, capsize=3, label=label, color=colours(i % 10))
            for px, layer in zip(pos, layers):
                result = by_layer.get(layer)
                if result and result["significant"]:
                    ax.text(px, min(result["mean"] + result["std"] + 0.03, 1.04), "*", ha="center",
                            fontsize=14, fontweight="bold")
        null = {r["layer"]: (r["null_mean"], r["null_std"]) for r in rows}
        pos = x - 0.4 + width * (len(labels) + 0.5)
        ax.bar(pos, [null[l][0] for l in layers], width, yerr=[null[l][1] for l in layers], capsize=3,
               color="0.75", label="random (null)")
        ax.axhline(0.5, color="0.4", lw=0.8, ls=":")
        ax.set_xticks(x, layers)
        ax.set_ylim(0, 1.1)
        ax.set_xlabel("layer")
        ax.set_ylabel("TCAV score")
        n = max(r["n"] for r in rows)
        correction = rows[0]["correction"]
        ax.set_title(f"{title + ': ' if title else ''}class '{target}'  (R={n}, * p<{rows[0]['alpha']} "
                     f"{correction})", fontsize=10)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def _label(result: dict) -> str:
    return result["concept"] if result["against"] == "random" else f"{result['concept']} vs {result['against']}"


def _n_layers(results: list[dict]) -> int:
    return len({r["layer"] for r in results})
