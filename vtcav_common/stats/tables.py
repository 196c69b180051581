"""What vt-stats tells a reader besides its records: the significance table (with the sanity
controls' column where there are controls), the warning when some hypotheses could not have
been significant at all (with the R that would do), and the near misses that more clips a set
would decide."""

from __future__ import annotations

from . import controls


def reachability_warning(results: list[dict]) -> str | None:
    """One line for every hypothesis that could not have been significant, with the R that would do."""
    unreachable = [r for r in results if not r["reachable"]]
    if not unreachable:
        return None
    worst = max(unreachable, key=lambda r: r["p_min_attainable"])
    first = results[0]
    text = (f"{len(unreachable)} of {len(results)} hypotheses could not reach significance (alpha {first['alpha']} "
            f"after {first['correction']} within family '{first['family']}'): with R={worst['R']} the smallest "
            f"p {first['test']} can give is {worst['p_min_attainable']:.2g} ({worst['layer']}, m={worst['m']}); ")
    needed = [r["r_needed"] for r in unreachable]
    if all(n is not None for n in needed):
        text += f"R >= {max(needed)} random sets would make them reachable"
    else:
        text += "no R up to 1000 makes them all reachable with this test"
    if any(r["binary_scores"] for r in unreachable) and first["test"] != "magnitude":
        text += "; scores there are only 0 or 1: --test magnitude tests the derivatives instead"
    return text


def clips_warning(results: list[dict], near: float = 4.0) -> str | None:
    """One line for the near misses of a set-level test: where more clips a set (not more CAVs) would do."""
    # near misses only: below alpha before the correction, and within a few times the clips used
    misses = [r for r in results if r.get("clips_needed") and r.get("n_clips") and r["p"] < r["alpha"]
              and r["clips_needed"] <= near * r["n_clips"]]
    if not misses:
        return None
    worst = max(misses, key=lambda r: r["clips_needed"])
    names = ", ".join(f"{r['concept']}{'' if r['against'] == 'random' else ' vs ' + r['against']} at {r['layer']}"
                      for r in misses[:4]) + (f" and {len(misses) - 4} more" if len(misses) > 4 else "")
    return (f"{len(misses)} hypothes{'is' if len(misses) == 1 else 'es'} not significant with {worst['n_clips']} "
            f"clips a set would be with about {worst['clips_needed']} clips a set ({names}), if the random sets' "
            f"spread shrinks as 1/sqrt(clips); more random sets would not help as much (see clips_needed, "
            f"docs/statistics.md)")


def print_table(results: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    first = results[0]
    with_controls = any(r.get("controls") for r in results)
    table = Table(title=f"TCAV significance: {first['test']} on {first['field']}, {first['correction']} within "
                        f"family '{first['family']}', alpha={first['alpha']}",
                  caption="sig: yes +/- significant above/below the null; unreachable: no p this test can give "
                          "with this R would be significant" + ("; controls: the sanity controls under which the "
                                                                "hypothesis is significant (+/-); fails: a verdict "
                                                                "also significant there, in the same direction"
                                                                if with_controls else ""))
    sets = first.get("null_design") == "sets"
    for column in ("target", "layer", "concept", "against", "R", "score [95% CI]" if "ci_low" in first else "score",
                   "null band" if "null_low" in first else "null", "p", "p corr", "m", "p min",
                   "z" if sets else "d", "CAV acc", "sig"):
        table.add_column(column, justify="right" if column not in ("target", "layer", "concept", "against") else "left")
    if with_controls:
        table.add_column("controls", justify="left")
    for r in results:
        if r["significant"]:
            sig = "yes " + r["direction"]
        elif not r["cav_ok"]:
            sig = "chance CAV"
        elif not r["reachable"]:
            sig = "unreachable"
        else:
            sig = "no"
        table.add_row(r["target"], r["layer"], r["concept"], r["against"], str(r["R"]),
                      _interval(r["mean"], r.get("ci_low"), r.get("ci_high"), r["std"]),
                      _interval(r["null_mean"], r.get("null_low"), r.get("null_high"), r["null_std"]),
                      f"{r['p']:.2g}", f"{r['p_corrected']:.2g}", str(r["m"]), f"{r['p_min_attainable']:.2g}",
                      f"{r['effect_size']:.1f}", f"{r['cav_accuracy']:.2f}", sig,
                      *([controls.cell(r)] if with_controls else []))
    Console(stderr=True, width=190 if with_controls else 160).print(table)


def _interval(centre: float, low, high, std: float) -> str:
    if low is None or high is None:
        return f"{centre:.2f} ± {std:.2f}"
    return f"{centre:.2f} [{low:.2f}, {high:.2f}]"
