"""vt-stats: are the TCAV scores significantly different from random?"""

from __future__ import annotations

from pathlib import Path

import typer

from vtcav_common.cli import frame
from vtcav_common.core import errors, files, messages
from vtcav_common.cli import options
from vtcav_common.core import selection
from vtcav_common.formats.records import read_jsonl, write_records
from vtcav_common.stats import (DEFAULT_CORRECTION, DEFAULT_FAMILY, DEFAULT_TEST, FAMILIES, check_scores, controls,
                                corrections, methods, motion, significance_tests, strict)

app = frame.make_app(
    "vt-stats",
    help="Test TCAV scores for significance: per target, layer and concept, the concept's clip set "
         "against every random set playing the concept's part (default: set, a set-level prediction t-test "
         "of the mean directional derivative, calibrated on its own; --test ttest is the paper's t-test of "
         "the R CAV scores against the random-vs-random CAVs), corrected for the "
         f"hypotheses of a family (default: {DEFAULT_CORRECTION} over '{DEFAULT_FAMILY}'). Writes JSONL "
         "records (mean score with its bootstrap interval over random sets and inputs, the null's band, "
         "statistic, p, corrected p, family and m, the smallest attainable p, effect size, CAV accuracy) "
         "on stdout or -o, a readable table on stderr, and optionally the "
         "figure (--plot: PNG, PDF or SVG by the extension).",
    epilog="Examples:\n\n"
           "    vt-stats scores.jsonl --plot tcav.pdf > stats.jsonl\n\n"
           "    vt-score cavs.h5 grads.h5 | vt-stats - --correction holm --family layer\n\n"
           "    vt-stats scores.jsonl --test magnitude   # where scores are only 0 or 1\n\n"
           "    vt-score cavs.h5 grads.h5 --permute-gradients -o shuffled.jsonl && "
           "vt-stats scores.jsonl --control shuffled.jsonl   # a sanity control beside each verdict\n\n"
           f"Tests: {'; '.join(f'{t.name}: {t.help}' for t in methods.REGISTRY.values())}.\n\n"
           f"Families: {'; '.join(f'{k}: {v}' for k, v in FAMILIES.items())}.\n\n"
           f"Corrections: {'; '.join(f'{c.name}: {c.help}' for c in corrections.REGISTRY.values())}.\n\n"
           "A concept whose CAVs are no better than chance (mean accuracy below --min-accuracy) is "
           "never marked significant; its record says cav_ok: false. See docs/statistics.md.",
)


@app.command()
def stats(
    scores: str = typer.Argument("-", help="Scores JSONL from vt-score ('-' for stdin)."),
    output: str = options.output("-", help="Statistics JSONL ('-' for stdout)."),
    test: str = typer.Option(DEFAULT_TEST, "--test", help=f"One of {methods.choices()}."),
    family: str = typer.Option(DEFAULT_FAMILY, "--family",
                               help=f"Hypotheses corrected together: {', '.join(FAMILIES)}."),
    correction: str = typer.Option(DEFAULT_CORRECTION, "--correction", help=f"One of {corrections.choices()}."),
    alpha: float = typer.Option(0.05, "--alpha", min=0.0, max=1.0, help="Significance level after correction."),
    min_accuracy: float = typer.Option(0.6, "--min-accuracy", help="Mean CAV accuracy below which a concept "
                                                                   "is reported as not learnable."),
    welch: bool = typer.Option(False, "--welch", hidden=True, help="Old spelling of --test welch."),
    seed: int = options.seed(help="Seed of the permutation test."),
    allow_mixed_runs: bool = typer.Option(False, "--allow-mixed-runs",
                                          help="Pool scores of different CAV or gradient runs (refused "
                                               "otherwise)."),
    concepts: list[str] = options.concepts(help="Test only these concepts: names or patterns such as 'ball_*' "
                                                "(repeatable; default: all)."),
    control_files: list[str] = typer.Option([], "--control", metavar="SCORES",
                                            help="Scores JSONL of a sanity control (the chain run with vt-embed "
                                                 "--control; repeatable): tested the same way, and each verdict "
                                                 "says whether it also appears under the control."),
    plot: Path = typer.Option(None, "--plot", help="Write the figure here (.png, .pdf or .svg)."),
    motion_plot: Path = typer.Option(None, "--motion-plot",
                                     help="Write the motion-reliance figure here: each concept against its static "
                                          "set and its temporal twins per layer (vt-cav --twins)."),
    title: str = typer.Option("", "--title", help="Title prefix for the figure."),
    table: bool = typer.Option(True, "--table/--no-table", help="Print the table on stderr."),
    quiet: bool = options.quiet(help="No table or messages on stderr."),
    version: bool = options.version(),
) -> None:
    messages.set_quiet(quiet)
    try:
        test = methods.resolve("welch" if welch and test == DEFAULT_TEST else test)
        correction = corrections.resolve(correction)
    except ValueError as err:
        raise errors.UsageError(str(err)) from None
    if family not in FAMILIES:
        raise errors.UsageError(f"unknown family '{family}'; choose from {', '.join(FAMILIES)}")
    for path in (plot, motion_plot):
        if path is not None:
            from vtcav_common.stats.plots import check_format
            check_format(path)
    twins: dict[str, list[dict]] = {}

    def load(path: str) -> list[dict]:
        records = check_scores(read_jsonl(path), files.display_name(path), allow_mixed_runs)
        # A set against its own temporal twin has its own null (random sets vs their twins): stats.motion
        records, twins[path] = motion.split_twin_records(records)
        if concepts:  # --concept 'ball_*': only these are tested (and counted in m); the null records stay
            known = sorted({r["concept"] for r in records if r["kind"] != "null"})
            chosen = set(selection.select(known, concepts, "concept", files.display_name(path)))
            records = [r for r in records if r["kind"] == "null" or r["concept"] in chosen]
            randoms = {name for r in records if r["kind"] == "null" for name in (r["concept"], r["against"])}
            # the random sets' twin scores stay: they are the twins' null
            twins[path] = [r for r in twins[path] if r["concept"] in chosen or r["concept"] in randoms]
        return records

    def analyse(records: list[dict]) -> list[dict]:   # the same analysis for the real run and its controls
        return significance_tests(records, correction, alpha, min_accuracy, test=test, family=family, seed=seed)

    records = load(scores)
    twin_records = twins[scores]
    if motion_plot and not twin_records:
        raise errors.VtcavError(f"{files.display_name(scores)}: no scores of sets against their twins for "
                             f"--motion-plot (vt-concepts twins, then vt-cav --twins)")
    results = analyse(records)
    randoms = {name for r in records if r["kind"] == "null" for name in (r["concept"], r["against"])}
    twin_results = motion.twin_tests(twin_records, randoms, correction, alpha, min_accuracy,
                                     family) if twin_records else []
    control_runs = controls.run_controls(control_files, load, analyse, files.display_name)
    controls.attach(results, controls.control_of(records, files.display_name(scores)), control_runs,
                    files.display_name(scores))
    with files.open_text_output(output) as out:
        write_records([strict(r) for r in results + twin_results], out)
    if table and not quiet:
        if results:
            print_table(results)
        if twin_results:
            motion.print_table(twin_results)
    for warning in (reachability_warning(results), clips_warning(results), controls.warning(results)):
        if warning:
            messages.warn(warning)
    if plot:
        from vtcav_common.stats.plots import plot_scores
        plot_scores(results, plot, title)
        messages.info(f"vt-stats: figure written to {plot}")
    if motion_plot:
        motion.plot_motion(results, twin_results, motion_plot, title)
        messages.info(f"vt-stats: motion figure written to {motion_plot}")


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


main = frame.entry(app, "vt-stats")
