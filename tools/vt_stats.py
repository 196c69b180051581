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
from vtcav_common.stats.tables import clips_warning, print_table, reachability_warning

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


main = frame.entry(app, "vt-stats")
