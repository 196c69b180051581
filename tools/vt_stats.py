"""vt-stats: are the TCAV scores significantly different from random?"""

from __future__ import annotations

from pathlib import Path

import typer

from vtcav_common import cli, options
from vtcav_common.errors import VtcavError
from vtcav_common.records import read_jsonl, write_records
from vtcav_common.stats import CORRECTIONS, significance_tests

SCORE_FIELDS = ("target", "layer", "concept", "against", "kind", "score", "magnitude")

app = cli.make_app(
    "vt-stats",
    help="Test TCAV scores for significance: per target, layer and concept, a two-sided t-test "
         "of the concept's R scores (one per random set) against the random-vs-random null, "
         "corrected for the number of hypotheses (Bonferroni by default). Writes JSONL records "
         "(mean ± std, null, t, p, corrected p, effect size, CAV accuracy) on stdout or -o, a "
         "readable table on stderr, and optionally the figure (--plot).",
    epilog="Examples:\n\n"
           "    vt-stats scores.jsonl --plot tcav.png > stats.jsonl\n\n"
           "    vt-score cavs.h5 grads.h5 | vt-stats - --correction holm\n\n"
           "A concept whose CAVs are no better than chance (mean accuracy below --min-accuracy) is "
           "never marked significant; its record says cav_ok: false.",
)


@app.command()
def stats(
    scores: str = typer.Argument("-", help="Scores JSONL from vt-score ('-' for stdin)."),
    output: str = options.output("-", help="Statistics JSONL ('-' for stdout)."),
    correction: str = typer.Option("bonferroni", "--correction", help=f"One of {', '.join(CORRECTIONS)}."),
    alpha: float = typer.Option(0.05, "--alpha", min=0.0, max=1.0, help="Significance level after correction."),
    min_accuracy: float = typer.Option(0.6, "--min-accuracy", help="Mean CAV accuracy below which a concept "
                                                                   "is reported as not learnable."),
    welch: bool = typer.Option(False, "--welch", help="Welch's t-test (unequal variances)."),
    plot: Path = typer.Option(None, "--plot", help="Write the figure (PNG) here."),
    title: str = typer.Option("", "--title", help="Title prefix for the figure."),
    table: bool = typer.Option(True, "--table/--no-table", help="Print the table on stderr."),
    quiet: bool = options.quiet(help="No table or messages on stderr."),
    version: bool = options.version(),
) -> None:
    cli.set_quiet(quiet)
    if correction not in CORRECTIONS:
        raise cli.UsageError(f"unknown correction '{correction}'; choose from {', '.join(CORRECTIONS)}")
    records = []
    for where, record in read_jsonl(scores):
        missing = [f for f in SCORE_FIELDS if f not in record]
        if missing:
            raise VtcavError(f"{where}: not a vt-score record (lacks {', '.join(missing)})")
        records.append(record)
    if not records:
        raise VtcavError(f"{cli.display_name(scores)}: no score records")
    if not any(r["kind"] == "null" for r in records):
        raise VtcavError(f"{cli.display_name(scores)}: no null (random-vs-random) scores to test against")
    results = significance_tests(records, correction, alpha, min_accuracy, welch)
    with cli.open_text_output(output) as out:
        write_records(results, out)
    if table and not quiet:
        print_table(results)
    if plot:
        from vtcav_common.plots import plot_scores
        plot_scores(results, plot, title)
        cli.info(f"vt-stats: figure written to {plot}")


def print_table(results: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"TCAV significance ({results[0]['correction']}, m={results[0]['m']}, "
                        f"alpha={results[0]['alpha']})")
    for column in ("target", "layer", "concept", "against", "R", "score", "null", "p", "p corr", "d",
                   "CAV acc", "sig"):
        table.add_column(column, justify="right" if column not in ("target", "layer", "concept", "against") else "left")
    for r in results:
        sig = ("yes " + r["direction"]) if r["significant"] else ("chance CAV" if not r["cav_ok"] else "no")
        table.add_row(r["target"], r["layer"], r["concept"], r["against"], str(r["n"]),
                      f"{r['mean']:.2f} ± {r['std']:.2f}", f"{r['null_mean']:.2f} ± {r['null_std']:.2f}",
                      f"{r['p']:.2g}", f"{r['p_corrected']:.2g}", f"{r['effect_size']:.1f}",
                      f"{r['cav_accuracy']:.2f}", sig)
    Console(stderr=True, width=140).print(table)


main = cli.entry(app, "vt-stats")
