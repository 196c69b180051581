"""vt-cav: Concept Activation Vectors for every concept x random set x layer."""

from __future__ import annotations

from pathlib import Path

import typer

from vtcav_common.cli import frame
from vtcav_common.core import errors, messages
from vtcav_common.cli import options
from vtcav_common.core import selection
from vtcav_common.tcav.classifiers import check_classifier, classifier_help

app = frame.make_app(
    "vt-cav",
    help="Fit Concept Activation Vectors from vt-embed activations: every concept set against "
         "every random set at every layer, the random-vs-random CAVs of the null distribution, "
         "and relative CAVs (concept A against concept B, refitted on resampled clips). CAVs are "
         "unit vectors pointing toward the concept; each keeps its held-out accuracy.",
    epilog="Examples:\n\n"
           "    vt-cav acts.h5 -o cavs.h5\n\n"
           "    vt-cav concepts_acts.h5 random_acts.h5 --classifier mean -o cavs.h5\n\n"
           "    vt-cav acts.h5 --relative ball_right:ball_static -o cavs.h5\n\n"
           "    vt-cav acts.h5 --twins --relative ball_right:ball_static -o cavs.h5   # sets against their twins\n\n"
           "Sets with role 'random' (vt-concepts random) are the random sets; every other set is "
           "a concept. Several files are combined when they come from the same model and sampling.",
)


def _parse_relative(values: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        a, sep, b = value.partition(":")
        if not sep or not a or not b:
            raise errors.UsageError(f"--relative expects A:B (two concept set names), got '{value}'")
        pairs.append((a, b))
    return pairs


@app.command()
def cav(
    embeddings: list[Path] = typer.Argument(..., help="Embeddings file(s) from vt-embed."),
    output: Path = options.output(..., help="CAV file to write (HDF5)."),
    layers: str = typer.Option("", "--layers", help="Comma-separated layers (default: all in the file)."),
    concepts: list[str] = options.concepts(),
    classifier: str = typer.Option("sgd", "--classifier", help=classifier_help()),
    relative: list[str] = typer.Option([], "--relative", help="A:B relative CAV (concept A against concept B). "
                                                              "Repeatable."),
    relative_resamples: int = typer.Option(0, "--relative-resamples", min=0,
                                           help="Relative CAVs per pair, each on a resample of 80% of the "
                                                "clips (default: as many as random sets)."),
    null_partners: int = typer.Option(10, "--null-partners", min=1,
                                      help="Null: each random set is fitted against this many other random sets "
                                           "(all of them when R <= this + 1), so that every random set can play "
                                           "the concept's part in vt-stats' set-level test."),
    twins: bool = typer.Option(False, "--twins",
                               help="Also a relative CAV of every set against each of its temporal twins "
                                    "(SET:SET~frozen, ...; vt-concepts twins), random sets included: "
                                    "the null vt-stats tests the concepts' against."),
    agreement: bool = typer.Option(False, "--agreement",
                                   help="Also fit the mean-difference CAV and store its cosine with each CAV."),
    seed: int = options.seed(help="Random seed (balancing, splits, SGD, resamples)."),
    device: str = typer.Option("auto", "--device",
                               help="Where the Gram products and back-projection run: auto (cuda when present), "
                                    "cpu, or cuda."),
    max_memory: float = typer.Option(None, "--max-memory", metavar="MB",
                                     help="Memory the run may use (default: what the system has available); "
                                          "activations are streamed in blocks sized to it, and a run that "
                                          "cannot fit is refused before any work."),
    skip_nonfinite: bool = typer.Option(False, "--skip-nonfinite",
                                        help="Drop clips with NaN/inf activations (counted on stderr) instead "
                                             "of refusing the file."),
    quiet: bool = options.quiet(),
    version: bool = options.version(),
) -> None:
    messages.set_quiet(quiet)
    from vtcav_common.tcav import FitOptions, fit_cavs

    check_classifier(classifier)
    if max_memory is not None and max_memory < 1:
        raise errors.UsageError(f"--max-memory must be a positive number of MB, got {max_memory}")
    options = FitOptions(classifier=classifier, seed=seed, agreement=agreement, device=device,
                         max_memory=None if max_memory is None else int(max_memory * (1 << 20)),
                         skip_nonfinite=skip_nonfinite, null_partners=null_partners)
    known = [name for path in embeddings for name in selection.hdf5_set_names(str(path), "sets")]
    concepts = selection.expand(known, concepts, "set", ", ".join(map(str, embeddings)))  # --concept 'ball_*'
    pairs = _parse_relative(relative)
    if twins:
        from vtcav_common.concepts.twins import twin_pairs
        pairs += [pair for pair in twin_pairs(known) if pair not in pairs]
    fit_cavs(embeddings, output, layers=[name for name in layers.split(",") if name], concepts=concepts,
             relative=pairs, relative_resamples=relative_resamples, options=options,
             info=lambda message: messages.info(f"vt-cav: {message}"), warn=messages.warn)


main = frame.entry(app, "vt-cav")
