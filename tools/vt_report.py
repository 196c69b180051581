"""vt-report: one self-contained HTML page (and Markdown) of a TCAV run, for a lab notebook or a supplement."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from vtcav_common.core import messages
from vtcav_common.cli import frame, options
from vtcav_common.core.errors import UsageError

PROG = "vt-report"

app = frame.make_app(
    PROG,
    help="Write **one self-contained HTML file** (and its Markdown twin) of a TCAV run: the settings (test, "
         "correction, family, m, alpha, R), the significance table from vt-stats' records (significantly "
         "higher rows green, lower red, chance CAVs grey), the figures inline (PNG, SVG; a PDF is linked), "
         "links to the review sheets of the concept sets (vt-concepts review), and the provenance of the "
         "input files (tool, version, model, layers, sampling, seeds, sha256). The page loads nothing from "
         "elsewhere and runs no script; it carries no date, so the same inputs give the same bytes.",
    epilog="Examples:\n\n"
           "    vt-report stats.jsonl --figure tcav.png --review review/ --input concepts.h5 --input cavs.h5 "
           "-o report.html\n\n"
           "    vt-score cavs.h5 grads.h5 | vt-stats - --plot tcav.svg > stats.jsonl && "
           "vt-report stats.jsonl --figure tcav.svg -o report.html --no-markdown",
)


@app.command()
def report(
    stats: str = typer.Argument("-", help="Statistics JSONL from vt-stats ('-' for stdin)."),
    output: Path = options.output(..., help="The HTML file to write (atomically)."),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="The Markdown file (default: OUTPUT with "
                                                                     ".md)."),
    no_markdown: bool = typer.Option(False, "--no-markdown", help="Write the HTML only."),
    figures: List[Path] = typer.Option([], "--figure", help="A figure to include (PNG/SVG inline, PDF linked); "
                                                            "repeatable."),
    reviews: List[Path] = typer.Option([], "--review", help="A review page, or a folder of them "
                                                            "(vt-concepts review -d); repeatable."),
    inputs: List[Path] = typer.Option([], "--input", help="A vtcav file whose provenance to show "
                                                          "(concepts.h5, acts.h5, cavs.h5, ...); repeatable."),
    title: str = typer.Option("Video-TCAV report", "--title", help="The page's title."),
    quiet: bool = options.quiet(help="No messages on stderr."),
    version: bool = frame.version_option(),
) -> None:
    from vtcav_common.report import write_report

    messages.set_quiet(quiet)
    if output.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"-o {output}: the report is HTML; name it .html")
    md = None if no_markdown else (markdown or output.with_suffix(".md"))
    records, pages, written = write_report(stats, output, md, figures, reviews, inputs, title)
    messages.info(f"{PROG}: {records} hypotheses, {len(figures)} figure(s), {pages} review page(s) "
                  f"-> {', '.join(written)}")


main = frame.entry(app, PROG)
