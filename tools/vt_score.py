"""vt-score: TCAV scores of a target class along every CAV."""

from __future__ import annotations

from pathlib import Path

import typer

from vtcav_common.cli import frame
from vtcav_common.core import errors, files, messages
from vtcav_common.cli import options
from vtcav_common.core import selection

app = frame.make_app(
    "vt-score",
    help="Score a target class along every CAV: for each input, the directional derivative of "
         "the class logit along the CAV (gradient . CAV, gradients from `vt-embed --target`). "
         "Writes one JSONL record per CAV: the TCAV score (fraction of inputs with a positive "
         "derivative) and the magnitude (mean derivative). Refuses CAVs and gradients from "
         "different models, layers or input sampling.",
    epilog="Examples:\n\n"
           "    vt-score cavs.h5 grads.h5 > scores.jsonl\n\n"
           "    vt-score cavs.h5 grads.h5 -o scores.jsonl && vt-stats scores.jsonl\n\n"
           "    vt-score cavs.h5 grads.h5 --permute-gradients   # negative control: nothing should be significant",
)


@app.command()
def score(
    cavs: Path = typer.Argument(..., help="CAV file from vt-cav."),
    gradients: Path = typer.Argument(..., help="Embeddings file from vt-embed --target CLASS (the class's inputs)."),
    output: str = options.output("-", help="JSONL output ('-' for stdout)."),
    set_name: str = typer.Option("", "--set",
                                 help="Set of inputs in the gradients file (default: the one with gradients)."),
    concepts: list[str] = options.concepts(help="Score only these concepts: names or patterns such as 'ball_*' "
                                                "(repeatable; default: all)."),
    permute_gradients: bool = typer.Option(False, "--permute-gradients",
                                           help="Negative control: shuffle each input's gradient features and "
                                                "flip their signs at random (the expected derivative along any "
                                                "CAV is then zero)."),
    seed: int = typer.Option(0, "--seed", help="Seed for --permute-gradients."),
    per_input: bool = typer.Option(True, "--per-input/--no-per-input",
                                   help="Write every input's directional derivative in the records (vt-stats "
                                        "bootstraps its intervals over the inputs with them)."),
    skip_nonfinite: bool = typer.Option(False, "--skip-nonfinite",
                                        help="Drop inputs with NaN/inf gradients (counted on stderr) instead of "
                                             "refusing the file."),
    quiet: bool = options.quiet(),
    version: bool = options.version(),
) -> None:
    messages.set_quiet(quiet)
    from vtcav_common.formats.records import write_records
    from vtcav_common.tcav import ScoreOptions, score_cavs

    if selection.is_pattern(set_name):  # --set 'right_*': the one gradients set it matches
        matched = selection.select(selection.hdf5_set_names(str(gradients), "sets"), [set_name], "set",
                                   str(gradients))
        if len(matched) > 1:
            raise errors.UsageError(f"--set {set_name}: matches {', '.join(matched)}; vt-score scores one set")
        set_name = matched[0]
    options = ScoreOptions(set_name=set_name, permute_gradients=permute_gradients, seed=seed, per_input=per_input,
                           skip_nonfinite=skip_nonfinite)
    records = score_cavs(cavs, gradients, options, warn=messages.warn)
    if concepts:  # --concept 'ball_*': only these concepts' scores (and every null score)
        known = sorted({r.concept for r in records if r.kind != "null"})
        chosen = set(selection.select(known, concepts, "concept", str(cavs)))
        records = [r for r in records if r.kind == "null" or r.concept in chosen]
    with files.open_text_output(output) as out:
        write_records(records, out)
    if records:
        messages.info(f"vt-score: {len(records)} scores for target '{records[0].target}' over "
                 f"{records[0].n_inputs} inputs")


main = frame.entry(app, "vt-score")
