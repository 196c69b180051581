"""vt-concepts twins: the same clips with only time changed (frozen, shuffled, reversed, blurred).

Registered on vt-concepts' app by :func:`register`, so it is ``vt-concepts twins``.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from vtcav_common.core import messages, selection
from vtcav_common.cli import options
from vtcav_common.concepts import twins

TOOL = "vt-concepts"


def twins_(
    path: str = typer.Argument(..., help="A clip-set file (vt-concepts spatiotemporal, random, ...)."),
    output: Optional[Path] = options.output(None, help="The clip-set file to write (default: the twins are added "
                                                       "to the input file itself, rebuilt beside it and renamed "
                                                       "into place when whole)."),
    sets: Optional[List[str]] = typer.Option(None, "--set", "--concept",
                                             help=selection.PATTERN_HELP + " Default: every concept and random "
                                                  "set (random sets need twins too: they are the null)."),
    kinds: str = typer.Option(",".join(twins.DEFAULT_TRANSFORMS), "--kind",
                              help="Comma-separated twins to make: " + "; ".join(
                                  f"{t.name}: {t.help}" for t in twins.TRANSFORMS.values()) + "."),
    frame_kept: str = typer.Option("middle", "--frame-kept",
                                   help="The frame a frozen twin repeats: first, middle, last or an index."),
    blur_sigma: float = typer.Option(twins.DEFAULT_BLUR, "--blur-sigma",
                                     help="The blurred twin's Gaussian, in pixels of the clip."),
    seed: int = options.seed(help="Seed of the shuffled twins' frame orders."),
    append: bool = typer.Option(False, "--append", help="With -o: add the twins to OUTPUT, keeping its sets."),
    replace: bool = typer.Option(False, "--replace", help="A twin of the same name already there is replaced."),
    quiet: bool = options.quiet(),
) -> None:
    """**Temporal twins**: each chosen set's clips with only time changed, as new sets named
    SET~KIND (kind and role 'twin'), each recording its source set, the transform, the frame kept
    and the seed. `vt-cav --twins` then fits every set against its twins, and `vt-stats` tests a
    concept's preference over its twin against random sets' preference over their own twins."""
    messages.set_quiet(quiet)
    transforms = tuple(twins.parse_transforms(kinds))
    candidates = twins.default_sources(path)
    chosen = selection.select(candidates, sets, "set", path) if sets else candidates
    if output is None:   # in place: the file keeps its sets and gains the twins (atomically)
        output, append = Path(path), True
    written = twins.write_twins(path, output, chosen,
                                twins.TwinOptions(transforms, seed, frame_kept, blur_sigma), TOOL,
                                append=append, replace=replace,
                                progress=lambda it, n: messages.progress(it, n, "twins"))
    clips = sum(n for _, n in written)
    messages.info(f"{TOOL}: {len(written)} twin sets ({', '.join(transforms)} of {len(chosen)} sets, "
                  f"{clips} clips) -> {output}")


def register(app: typer.Typer) -> None:
    """Add ``twins`` to vt-concepts' app (examples in its help)."""
    app.command(name="twins", epilog="Examples:\n\n"
                "    vt-concepts twins concepts.h5 --set ball_right --set 'random_*' --kind frozen,shuffled,reversed "
                "--seed 0\n\n"
                "    vt-concepts twins concepts.h5 --kind frozen,shuffled,reversed,blurred --frame-kept first "
                "--seed 0 -o twins.h5")(twins_)
