"""The report: one self-contained HTML page (and its Markdown twin) of a TCAV run.

What a researcher attaches to a lab notebook or a paper's supplement: the settings and the
provenance of every input file, the significance table (vt-stats' records), the figures,
and links to the review sheets of the concept sets. The HTML needs no other file: figures
are inline (PNG and SVG as data URIs; a PDF is linked), styles are in the page, there is
no script. The Markdown version has the same text and table, with figures and sheets as
relative links. Neither carries a date: the same inputs give the same bytes.

Example (in a project folder, after shell/pipeline.sh and vt-concepts review: stats.jsonl, tcav.png, review/):
    >>> import json
    >>> from pathlib import Path
    >>> from vtcav_common.report import Report, build_report
    >>> records = [json.loads(line) for line in open("stats.jsonl")]
    >>> page = build_report(Report(stats=records, figures=[Path("tcav.png")], inputs=[Path("cavs.h5")],
    ...                            reviews=[Path("review/ball_right.html")], base=Path(".")))
    >>> _ = Path("report.html").write_text(page.html, encoding="utf-8")
    >>> [line for line in page.markdown.splitlines() if line.startswith("#")]     # the Markdown twin's sections
    ['# Video-TCAV report', '## Settings', '## Significance', '## Figures', '## Review sheets of the concept sets',
     '## Provenance of the inputs', '### `cavs.h5`']
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..core.errors import VtcavError
from ..core.files import atomic_path, check_output, display_name, file_sha256, note_input
from ..formats.records import read_jsonl

TEXT_COLUMNS = ("target", "layer", "concept", "against", "verdict", "controls")   # the others are numbers
SETTING_KEYS = ("test", "correction", "family", "m", "alpha", "min_accuracy")
MIME = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
        ".gif": "image/gif"}
STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:14px}td,th{border:1px solid #ccc;padding:3px 7px}
td.num{text-align:right;font-variant-numeric:tabular-nums}th{background:#f0f0f0}
tr.sig-pos td{background:#e3f4e3}tr.sig-neg td{background:#f9e1e1}tr.chance td{color:#888}
tr.control-fails td{background:#fff1c2}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:12px}img{max-width:100%}
figure{margin:1em 0}figcaption{color:#555;font-size:13px}"""


@dataclass
class Report:
    stats: list[dict]
    figures: list[Path] = field(default_factory=list)
    inputs: list[Path] = field(default_factory=list)     # vtcav files whose provenance is shown
    reviews: list[Path] = field(default_factory=list)    # review pages (HTML) to link
    base: Path = Path(".")                               # the report's folder: links are relative to it
    title: str = "Video-TCAV report"
    stats_name: str = "stats.jsonl"


@dataclass(frozen=True)
class Built:
    html: str
    markdown: str


# --------------------------------------------------------------------------- content
def columns(records: list[dict] | None = None) -> list[tuple[str, str]]:
    """(header, how to show it) of the significance table; a controls column where the records have controls."""
    shown = [("target", "target"), ("layer", "layer"), ("concept", "concept"), ("against", "against"),
             ("R", "R"), ("score [95% interval]", "score"), ("null [95% band]", "null"), ("p", "p"),
             ("p corrected", "p_corrected"), ("effect size", "effect_size"), ("CAV accuracy", "cav_accuracy"),
             ("significant", "verdict")]
    if control_names(records or []):
        shown.append(("under the sanity controls", "controls"))
    return shown


def control_names(records: list[dict]) -> list[str]:
    """The sanity controls vt-stats --control compared the verdicts with, in their order."""
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record.get("controls") or {}))
    return list(names)


def control_summary(records: list[dict]) -> str | None:
    """One sentence on the controls: which, and how many significant verdicts also appear under one."""
    names = control_names(records)
    if not names:
        return None
    significant = [r for r in records if r.get("significant")]
    fails = [r for r in significant if r.get("survives_controls") is False]
    return (f"Sanity controls (the same chain under a randomised model or gradients): {', '.join(names)}. "
            f"{len(fails)} of {len(significant)} significant verdicts also appear, in the same direction, under a "
            f"control: they do not show what the model learned.")


def cell(record: dict, key: str) -> str:
    def num(value, fmt):
        return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)

    if key == "R":
        return str(record.get("R", record.get("n", "")))
    if key == "score":    # the bootstrap interval where vt-stats gave one, else the older ± std
        if record.get("ci_low") is not None and record.get("ci_high") is not None:
            return f"{num(record.get('mean'), '.2f')} [{num(record['ci_low'], '.2f')}, {num(record['ci_high'], '.2f')}]"
        return f"{num(record.get('mean'), '.2f')} ± {num(record.get('std'), '.2f')}"
    if key == "null":
        if record.get("null_low") is not None and record.get("null_high") is not None:
            return (f"{num(record.get('null_mean'), '.2f')} [{num(record['null_low'], '.2f')}, "
                    f"{num(record['null_high'], '.2f')}]")
        return f"{num(record.get('null_mean'), '.2f')} ± {num(record.get('null_std'), '.2f')}"
    if key in ("p", "p_corrected"):
        return num(record.get(key), ".2g")
    if key == "effect_size":
        return num(record.get(key), ".2f")
    if key == "cav_accuracy":
        return num(record.get(key), ".2f")
    if key == "controls":
        shown = []
        for name, control in (record.get("controls") or {}).items():
            verdict = "n/a" if control is None else "no" if not control.get("significant") else \
                "yes, higher" if control.get("direction") == "+" else "yes, lower"
            shown.append(f"{name}: {verdict}")
        return "; ".join(shown)
    if key == "verdict":
        if not record.get("cav_ok", True):
            return "chance CAV"
        if record.get("significant"):
            also = " (also under a control)" if record.get("survives_controls") is False else ""
            return ("yes, higher" if record.get("direction") == "+" else "yes, lower") + also
        if record.get("reachable") is False:
            return "no (unreachable with this R)"
        return "no"
    return str(record.get(key, ""))


def row_class(record: dict) -> str:
    if not record.get("cav_ok", True):
        return "chance"
    if record.get("survives_controls") is False:
        return "control-fails"
    if record.get("significant"):
        return "sig-pos" if record.get("direction") == "+" else "sig-neg"
    return ""


def settings(records: list[dict]) -> dict[str, str]:
    """The settings the records share (test, correction and its family, m, alpha), as text."""
    found: dict[str, str] = {}
    for key in SETTING_KEYS:
        values = sorted({json.dumps(r[key]) for r in records if key in r})
        if values:
            found[key] = ", ".join(json.loads(v) if v.startswith('"') else v for v in values)
    runs = sorted({r["control"] for r in records if r.get("control")})
    if runs:   # the table itself is of a control run
        found["control run"] = ", ".join(runs)
    if control_names(records):
        found["sanity controls"] = ", ".join(control_names(records))
    rs = sorted({r.get("R", r.get("n")) for r in records if r.get("R", r.get("n")) is not None})
    if rs:
        found["R (CAVs per hypothesis)"] = ", ".join(map(str, rs))
    found["hypotheses"] = str(len(records))
    return found


def file_provenance(path: Path) -> dict:
    """Kind, tool, version, run id and provenance of a vtcav HDF5 file; sha256 for any file."""
    info: dict = {"file": path.name, "sha256": file_sha256(path)}
    if path.suffix.lower() in (".h5", ".hdf5"):
        import h5py

        with h5py.File(path, "r") as h5:
            for key in ("vtcav_kind", "schema_version", "tool", "tool_version", "run_id"):
                if key in h5.attrs:
                    value = h5.attrs[key]
                    info[key] = value.decode() if isinstance(value, bytes) else (
                        value.item() if hasattr(value, "item") else value)
            if "provenance" in h5.attrs:
                info["provenance"] = json.loads(h5.attrs["provenance"])
    return info


def _relative(path: Path, base: Path) -> str:
    try:
        return Path(path).resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        import os
        return Path(os.path.relpath(Path(path).resolve(), base.resolve())).as_posix()


# --------------------------------------------------------------------------- rendering
def build_report(report: Report) -> Built:
    provenance = [file_provenance(p) for p in report.inputs]
    return Built(_html(report, provenance), _markdown(report, provenance))


def _html(report: Report, provenance: list[dict]) -> str:
    esc = html.escape
    parts = [f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(report.title)}</title>'
             f"<style>{STYLE}</style></head><body>", f"<h1>{esc(report.title)}</h1>",
             f"<p>Made by vt-report (vtcav {esc(__version__)}) from <code>{esc(report.stats_name)}</code>: "
             f"TCAV scores of each concept against R random sets, tested against the random-vs-random "
             f"null. Green rows: significantly higher than the null after correction; red: significantly "
             f"lower; grey: the concept's CAVs are no better than chance.</p>", "<h2>Settings</h2><table>"]
    parts += [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in settings(report.stats).items()]
    parts.append("</table>\n<h2>Significance</h2>")
    if control_summary(report.stats):
        parts.append(f'<p id="controls">{esc(control_summary(report.stats))} Yellow rows: such verdicts.</p>')
    parts.append('<table id="significance"><thead><tr>')
    shown = columns(report.stats)
    parts += [f"<th>{esc(header)}</th>" for header, _ in shown]
    parts.append("</tr></thead><tbody>")
    for record in report.stats:
        cls = row_class(record)
        cells = "".join(f'<td{"" if key in TEXT_COLUMNS else " class=num"}>'
                        f"{esc(cell(record, key))}</td>" for _, key in shown)
        parts.append(f'<tr{f" class={cls}" if cls else ""}>{cells}</tr>')
    parts.append("</tbody></table>")
    if report.figures:
        parts.append("<h2>Figures</h2>")
        for figure in report.figures:
            parts.append(_figure_html(figure, report.base))
    if report.reviews:
        parts.append("<h2>Review sheets of the concept sets</h2><ul>")
        parts += [f'<li><a href="{esc(_relative(p, report.base))}">{esc(Path(p).stem)}</a></li>'
                  for p in report.reviews]
        parts.append("</ul>")
    if provenance:
        parts.append("<h2>Provenance of the inputs</h2>")
        for info in provenance:
            parts.append(f"<details><summary><code>{esc(info['file'])}</code> — {esc(str(info.get('tool', '')))} "
                         f"{esc(str(info.get('vtcav_kind', '')))}</summary><pre>"
                         f"{esc(json.dumps(info, indent=1, sort_keys=True, default=str))}</pre></details>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _figure_html(figure: Path, base: Path) -> str:
    esc = html.escape
    mime = MIME.get(figure.suffix.lower())
    caption = f"<figcaption>{esc(figure.name)}</figcaption>"
    if mime is None:  # e.g. a PDF: a browser shows it better on its own
        return f'<figure><a href="{esc(_relative(figure, base))}">{esc(figure.name)}</a>{caption}</figure>'
    data = base64.b64encode(figure.read_bytes()).decode("ascii")
    return f'<figure><img alt="{esc(figure.name)}" src="data:{mime};base64,{data}">{caption}</figure>'


def _markdown(report: Report, provenance: list[dict]) -> str:
    def md(text: str) -> str:
        # Markdown renderers pass raw HTML through: text from the records (a concept named
        # <script>...) is escaped, as the HTML page escapes it; and kept on one table row.
        text = html.escape(" ".join(str(text).split()), quote=False)
        return text.replace("|", "\\|")

    lines = [f"# {report.title}", "", f"Made by vt-report (vtcav {__version__}) from `{report.stats_name}`. "
             "Significant: higher or lower than the random-vs-random null after correction.", "", "## Settings", "",
             "| setting | value |", "| --- | --- |"]
    lines += [f"| {md(k)} | {md(v)} |" for k, v in settings(report.stats).items()]
    shown = columns(report.stats)
    lines += ["", "## Significance", ""]
    if control_summary(report.stats):
        lines += [control_summary(report.stats), ""]
    lines += ["| " + " | ".join(h for h, _ in shown) + " |", "|" + "|".join(" --- " for _ in shown) + "|"]
    lines += ["| " + " | ".join(md(cell(r, key)) for _, key in shown) + " |" for r in report.stats]
    if report.figures:
        lines += ["", "## Figures", ""]
        lines += [f"![{f.name}]({_relative(f, report.base)})" for f in report.figures]
    if report.reviews:
        lines += ["", "## Review sheets of the concept sets", ""]
        lines += [f"- [{Path(p).stem}]({_relative(p, report.base)})" for p in report.reviews]
    if provenance:
        lines += ["", "## Provenance of the inputs", ""]
        for info in provenance:
            lines += [f"### `{info['file']}`", "", "```json", json.dumps(info, indent=1, sort_keys=True, default=str),
                      "```", ""]
    return "\n".join(lines).rstrip() + "\n"


NEEDED = ("target", "layer", "concept", "against", "mean", "p", "significant")   # of a vt-stats record


def write_report(stats: str, output: Path, markdown: Path | None, figures: list[Path], reviews: list[Path],
                 inputs: list[Path], title: str = "Video-TCAV report") -> tuple[int, int, list[str]]:
    """vt-report: gather the records, figures, review pages and inputs, write the page (and its
    Markdown twin unless ``markdown`` is None) atomically; returns (records, review pages, files written)."""
    for path in [*figures, *inputs]:
        if not path.is_file():
            raise VtcavError(f"{path}: no such file")
    pages = []
    for path in reviews:
        if path.is_dir():
            found = sorted(path.glob("*.html"))
            if not found:
                raise VtcavError(f"{path}: no review pages (*.html) in this folder")
            pages += found
        elif path.is_file():
            pages.append(path)
        else:
            raise VtcavError(f"{path}: no such review page or folder")
    for page in pages:
        note_input(page)
    check_output(markdown)   # before any work: the twin must not replace an input (stats.md)
    records = []
    for where, record in read_jsonl(stats):
        missing = [k for k in NEEDED if k not in record]
        if missing:
            raise VtcavError(f"{where}: not a vt-stats record (lacks {', '.join(missing)})")
        records.append(record)
    if not records:
        raise VtcavError(f"{display_name(stats)}: no statistics records")
    base = output.resolve().parent
    built = build_report(Report(records, figures, inputs, pages, base, title, display_name(stats)))
    with atomic_path(output) as tmp:
        tmp.write_text(built.html, encoding="utf-8")
    written = [str(output)]
    if markdown is not None:
        with atomic_path(markdown) as tmp:
            tmp.write_text(built.markdown, encoding="utf-8")
        written.append(str(markdown))
    return len(records), len(pages), written
