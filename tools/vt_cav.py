"""vt-cav: Concept Activation Vectors for every concept x random set x layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from vtcav_common import cli, h5io, options
from vtcav_common.cav import CLASSIFIERS
from vtcav_common.cavs_file import fit_layer, plan, write_layer
from vtcav_common.embeddings import MODEL_KEYS, Embeddings, require_same_model

app = cli.make_app(
    "vt-cav",
    help="Fit Concept Activation Vectors from vt-embed activations: every concept set against "
         "every random set at every layer, the random-vs-random CAVs of the null distribution, "
         "and relative CAVs (concept A against concept B, refitted on resampled clips). CAVs are "
         "unit vectors pointing toward the concept; each keeps its held-out accuracy.",
    epilog="Examples:\n\n"
           "    vt-cav acts.h5 -o cavs.h5\n\n"
           "    vt-cav concepts_acts.h5 random_acts.h5 --classifier mean -o cavs.h5\n\n"
           "    vt-cav acts.h5 --relative ball_right:ball_static -o cavs.h5\n\n"
           "Sets with role 'random' (vt-concepts random) are the random sets; every other set is "
           "a concept. Several files are combined when they come from the same model and sampling.",
)


def _parse_relative(values: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        a, sep, b = value.partition(":")
        if not sep or not a or not b:
            raise cli.UsageError(f"--relative expects A:B (two concept set names), got '{value}'")
        pairs.append((a, b))
    return pairs


@app.command()
def cav(
    embeddings: list[Path] = typer.Argument(..., help="Embeddings file(s) from vt-embed."),
    output: Path = options.output(..., help="CAV file to write (HDF5)."),
    layers: str = typer.Option("", "--layers", help="Comma-separated layers (default: all in the file)."),
    concepts: list[str] = options.concepts(),
    classifier: str = typer.Option("sgd", "--classifier",
                                   help="sgd: SGDClassifier(alpha=0.01, max_iter=1000, tol=1e-3), the TCAV "
                                        "reference; logistic: L2 logistic regression; mean: mean difference "
                                        "(FastCAV)."),
    relative: list[str] = typer.Option([], "--relative", help="A:B relative CAV (concept A against concept B). "
                                                              "Repeatable."),
    relative_resamples: int = typer.Option(0, "--relative-resamples", min=0,
                                           help="Relative CAVs per pair, each on a resample of 80% of the "
                                                "clips (default: as many as random sets)."),
    agreement: bool = typer.Option(False, "--agreement",
                                   help="Also fit the mean-difference CAV and store its cosine with each CAV."),
    seed: int = options.seed(help="Random seed (balancing, splits, SGD, resamples)."),
    quiet: bool = options.quiet(),
    version: bool = options.version(),
) -> None:
    cli.set_quiet(quiet)
    if classifier not in CLASSIFIERS:
        raise cli.UsageError(f"unknown classifier '{classifier}'; choose from {', '.join(CLASSIFIERS)}")
    files = [Embeddings(path) for path in embeddings]
    try:
        first = files[0]
        for other in files[1:]:
            require_same_model(first.path, first.provenance, other.path, other.provenance)
        where, roles = {}, {}
        for emb in files:
            for info in emb.sets():
                if info.name in where:
                    raise cli.UsageError(f"{emb.path}: set '{info.name}' also in {where[info.name].path}")
                where[info.name], roles[info.name] = emb, info.role
        randoms = sorted(n for n, r in roles.items() if r == "random")
        concept_names = concepts or [n for n, r in roles.items() if r == "concept"]
        pairs = _parse_relative(relative)
        unknown = [n for n in concept_names + [x for p in pairs for x in p] if n not in where]
        if unknown:
            raise cli.UsageError(f"unknown set(s) {', '.join(sorted(set(unknown)))}; the files have "
                                 f"{', '.join(where)}")
        chosen_layers = [l for l in layers.split(",") if l] or first.layers
        missing = [l for l in chosen_layers if l not in first.layers]
        if missing:
            raise cli.UsageError(f"{first.path}: no layer(s) {', '.join(missing)}; it has {', '.join(first.layers)}")
        tasks = plan(concept_names, randoms, pairs, relative_resamples or len(randoms))
        used = sorted({t.concept for t in tasks} | {t.against for t in tasks})

        provenance = {key: first.provenance.get(key) for key in MODEL_KEYS}
        provenance.update(layers=chosen_layers, classifier=classifier, seed=seed,
                          sources=[str(p) for p in embeddings], concepts=concept_names, randoms=randoms,
                          relative=[list(p) for p in pairs])
        cli.info(f"vt-cav: {len(tasks)} CAVs per layer ({len(concept_names)} concept(s) x {len(randoms)} random "
                 f"sets, {len(randoms)} null, {len(tasks) - (len(concept_names) + 1) * len(randoms)} relative) "
                 f"at {len(chosen_layers)} layer(s), classifier {classifier}")
        with h5io.create(output, "cavs", "vt-cav", provenance) as handle:
            for index, layer in enumerate(cli.progress(chosen_layers, len(chosen_layers), "layers")):
                rows, counts = _stack(where, used, layer)
                fitted = fit_layer(rows, counts, tasks, classifier, seed, index, agreement)
                del rows
                write_layer(handle, layer, tasks, fitted)
                _report(layer, tasks, fitted)
    finally:
        for emb in files:
            emb.handle.close()


def _stack(where: dict, names: list[str], layer: str):
    """All the sets' activations at one layer as one matrix (files read in turn)."""
    blocks, counts = [], {}
    by_file = {}
    for name in names:
        by_file.setdefault(id(where[name]), (where[name], []))[1].append(name)
    for emb, file_names in by_file.values():
        rows, file_counts = emb.stack_flat(file_names, layer)
        blocks.append(rows)
        counts.update(zip(file_names, file_counts))
    rows = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    return rows, counts


def _report(layer: str, tasks, fitted) -> None:
    kinds = {}
    for task, accuracy in zip(tasks, fitted["accuracy"]):
        kinds.setdefault(task.kind, []).append(float(accuracy))
    summary = ", ".join(f"{kind} acc {sum(v) / len(v):.2f}" for kind, v in kinds.items())
    extra = ""
    if "fastcav_cosine" in fitted:
        extra = f", cosine to FastCAV {float(fitted['fastcav_cosine'].mean()):.2f}"
    cli.info(f"  {layer}: {summary}{extra}")


main = cli.entry(app, "vt-cav")
