"""vt-stats: are the TCAV scores significantly different from random?"""

from __future__ import annotations

from pathlib import Path

import typer

from vtcav_common import cli, options, selection
from vtcav_common.records import read_jsonl, write_records
from vtcav_common.stats import (DEFAULT_CORRECTION, DEFAULT_FAMILY, DEFAULT_TEST, FAMILIES, check_scores,
                                corrections, methods, motion, significance_tests, strict)

app = cli.make_app(
    "vt-stats",
    help="Test TCAV scores for significance: per target, layer and concept, a two-sample test "
         "of the concept's R values (one per random set) against the random-vs-random null "
         f"(default: {DEFAULT_TEST}, Student's two-sided t-test as in the paper), corrected for the "
         f"hypotheses of a family (default: {DEFAULT_CORRECTION} over '{DEFAULT_FAMILY}'). Writes JSONL "
         "records (mean ± std, null, statistic, p, corrected p, family and m, the smallest attainable p, "
         "effect size, CAV accuracy) on stdout or -o, a readable table on stderr, and optionally the "
         "figure (--plot: PNG, PDF or SVG by the extension).",
    epilog="Examples:\n\n"
           "    vt-stats scores.jsonl --plot tcav.pdf > stats.jsonl\n\n"
           "    vt-score cavs.h5 grads.h5 | vt-stats - --correction holm --family layer\n\n"
           "    vt-stats scores.jsonl --test magnitude   # where scores are only 0 or 1\n\n"
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
    plot: Path = typer.Option(None, "--plot", help="Write the figure here (.png, .pdf or .svg)."),
    motion_plot: Path = typer.Option(None, "--motion-plot",
                                     help="Write the motion-reliance figure here: each concept against its static "
                                          "set and its temporal twins per layer (vt-cav --twins)."),
    title: str = typer.Option("", "--title", help="Title prefix for the figure."),
    table: bool = typer.Option(True, "--table/--no-table", help="Print the table on stderr."),
    quiet: bool = options.quiet(help="No table or messages on stderr."),
    version: bool = options.version(),
) -> None:
    cli.set_quiet(quiet)
    try:
        test = methods.resolve("welch" if welch and test == DEFAULT_TEST else test)
        correction = corrections.resolve(correction)
    except ValueError as err:
        raise cli.UsageError(str(err)) from None
    if family not in FAMILIES:
        raise cli.UsageError(f"unknown family '{family}'; choose from {', '.join(FAMILIES)}")
    for path in (plot, motion_plot):
        if path is not None:
            from vtcav_common.plots import check_format
            check_format(path)
    records = check_scores(read_jsonl(scores), cli.display_name(scores), allow_mixed_runs)
    # A set against its own temporal twin has its own null (random sets vs their twins): vtcav_common.stats.motion
    records, twin_records = motion.split_twin_records(records)
    if motion_plot and not twin_records:
        raise cli.VtcavError(f"{cli.display_name(scores)}: no scores of sets against their twins for "
                             f"--motion-plot (vt-concepts twins, then vt-cav --twins)")
    if concepts:  # --concept 'ball_*': only these are tested (and counted in m); the null records stay
        known = sorted({r["concept"] for r in records if r["kind"] != "null"})
        chosen = set(selection.select(known, concepts, "concept", cli.display_name(scores)))
        records = [r for r in records if r["kind"] == "null" or r["concept"] in chosen]
    randoms = {r["concept"] for r in records if r["kind"] == "null"}
    if concepts:   # the random sets' twin scores stay: they are the twins' null
        twin_records = [r for r in twin_records if r["concept"] in chosen or r["concept"] in randoms]
    results = significance_tests(records, correction, alpha, min_accuracy, test=test, family=family, seed=seed)
    twin_results = motion.twin_tests(twin_records, randoms, correction, alpha, min_accuracy,
                                     family) if twin_records else []
    with cli.open_text_output(output) as out:
        write_records([strict(r) for r in results + twin_results], out)
    if table and not quiet:
        if results:
            print_table(results)
        if twin_results:
            motion.print_table(twin_results)
    warning = reachability_warning(results)
    if warning:
        cli.warn(warning)
    if plot:
        from vtcav_common.plots import plot_scores
        plot_scores(results, plot, title)
        cli.info(f"vt-stats: figure written to {plot}")
    if motion_plot:
        motion.plot_motion(results, twin_results, motion_plot, title)
        cli.info(f"vt-stats: motion figure written to {motion_plot}")


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


def print_table(results: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    first = results[0]
    table = Table(title=f"TCAV significance: {first['test']} on {first['field']}, {first['correction']} within "
                        f"family '{first['family']}', alpha={first['alpha']}",
                  caption="sig: yes +/- significant above/below the null; unreachable: no p this test can give "
                          "with this R would be significant")
    for column in ("target", "layer", "concept", "against", "R", "score", "null", "p", "p corr", "m", "p min",
                   "d", "CAV acc", "sig"):
        table.add_column(column, justify="right" if column not in ("target", "layer", "concept", "against") else "left")
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
                      f"{r['mean']:.2f} ± {r['std']:.2f}", f"{r['null_mean']:.2f} ± {r['null_std']:.2f}",
                      f"{r['p']:.2g}", f"{r['p_corrected']:.2g}", str(r["m"]), f"{r['p_min_attainable']:.2g}",
                      f"{r['effect_size']:.1f}", f"{r['cav_accuracy']:.2f}", sig)
    Console(stderr=True, width=160).print(table)


main = cli.entry(app, "vt-stats")
