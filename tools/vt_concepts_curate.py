"""vt-concepts import and review: hand-curated clip sets in, and a look at (and cleaning of) mined ones.

Registered on vt-concepts' app by :func:`register`, so they are ``vt-concepts import`` and
``vt-concepts review``.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from vtcav_common.formats import clips as clipsets
from vtcav_common.core import messages, selection
from vtcav_common.cli import options
from vtcav_common.core.errors import UsageError

TOOL = "vt-concepts"


def import_(
    sources: List[str] = typer.Argument(..., help="Folders of clip videos (one set each, one clip per video), "
                                                  ".npy arrays (one set) or .npz files (one set per array)."),
    output: Path = options.output(..., help="The clip-set HDF5 file to write."),
    name: Optional[str] = typer.Option(None, "--name", help="The set's name (one source of one set only; "
                                                            "default: the folder's, file's or array's name)."),
    key: Optional[str] = typer.Option(None, "--key", help=".npz: only this array."),
    role: str = typer.Option("concept", "--role", help="concept, or random (a hand-picked random set)."),
    frames: Optional[int] = typer.Option(None, "--frames", "-T", min=1,
                                         help="Frames per clip (default: the clips' own; otherwise spread "
                                              "uniformly over each clip)."),
    size: Optional[str] = typer.Option(None, "--size", help="H or HxW (default: the clips' own size)."),
    append: bool = typer.Option(False, "--append", help="Add the set(s) to OUTPUT, keeping the sets it has "
                                                        "(the sampling must match: give --frames/--size)."),
    replace: bool = typer.Option(False, "--replace", help="With --append: a set of the same name is replaced."),
    quiet: bool = options.quiet(help="No messages on stderr."),
) -> None:
    """Bring **hand-curated concept clips** into the chain: a folder of clip videos, or an array
    N x T x H x W x 3 (uint8, or float in [0, 1]) in an .npy or .npz file. Clips are resampled to
    --frames and --size when given (to match other sets in one file), else kept as they are."""
    from vtcav_common.concepts.imports import import_clip_sets

    messages.set_quiet(quiet)
    import_clip_sets(sources, output, name, key, role, frames, size, append, replace)


def review(
    path: str = typer.Argument(..., help="A clip-set file."),
    sets: Optional[List[str]] = typer.Option(None, "--set", "--concept", help=selection.PATTERN_HELP +
                                             " Default: every concept set."),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", "-d", help="Folder for <set>.png and <set>.html."),
    acts: Optional[str] = typer.Option(None, "--acts", help="vt-embed's activations of this clip file: order "
                                                            "clips by distance to the set's mean, odd first."),
    layer: Optional[str] = typer.Option(None, "--layer", help="The layer of --acts (default: its deepest)."),
    videos: Optional[str] = typer.Option(None, "--videos", help="Manifest or folder to find source videos "
                                                                "(default: the one the set was mined from)."),
    max_clips: int = typer.Option(60, "--max-clips", min=1, help="At most this many clips per sheet "
                                                                  "(the least typical)."),
    columns: int = typer.Option(8, "--columns", min=1, help="Frames shown per clip in the PNG grid."),
    drop: Optional[str] = typer.Option(None, "--drop", metavar="ID,...",
                                       help="Clip ids to drop (the #s of the sheet; SET:ID with several sets); "
                                            "writes the cleaned file to -o."),
    output: Optional[Path] = options.output(None, help="With --drop: the cleaned clip-set file."),
    quiet: bool = options.quiet(help="No messages on stderr."),
) -> None:
    """**Review sheets** of concept sets: per set a PNG grid and a self-contained HTML page with
    animated thumbnails, each clip's source video and time span, the least typical clips first
    (with --acts). Then `--drop ID,... -o cleaned.h5` writes the file without those clips."""
    from vtcav_common.concepts import review as rev

    messages.set_quiet(quiet)
    infos = clipsets.list_sets(path)
    default = [i.name for i in infos if i.role == "concept"] or [i.name for i in infos]
    chosen = selection.select([i.name for i in infos], sets, "set", path) if sets else default
    if drop is not None:
        if output is None:
            raise UsageError("--drop writes the cleaned set: give -o FILE")
        left = clipsets.drop_clips(path, output, TOOL, rev.parse_drops(drop, chosen))
        for set_name, n in left.items():
            messages.info(f"{TOOL}: {set_name}: {n} clips left -> {output}")
        return
    if out_dir is None:
        raise UsageError("give --out-dir DIR for the sheets (or --drop ID,... -o FILE)")
    rev.write_reviews(path, chosen, out_dir, acts, layer, videos, max_clips, columns)


def register(app: typer.Typer) -> None:
    """Add ``import`` and ``review`` to vt-concepts' app (examples in their help)."""
    app.command(name="import", epilog="Examples:\n\n"
                "    vt-concepts import curated/ball_bounce/ -o concepts.h5\n\n"
                "    vt-concepts import picked.npz --frames 16 --size 64 -o concepts.h5 --append\n\n"
                "    vt-concepts import background.npy --role random --name random_hand -o c.h5 --append")(import_)
    app.command(name="review", epilog="Examples:\n\n"
                "    vt-concepts review concepts.h5 --set 'ball_*' --acts acts.h5 --layer block2 -d review/\n\n"
                "    vt-concepts review concepts.h5 --set ball_right --drop 1,4 "
                "-o cleaned.h5")(review)
