"""vt-synth: write the synthetic motion world (videos, labels, true boxes)."""

from __future__ import annotations

from pathlib import Path

import typer

from vtcav_common.cli import frame, options
from vtcav_common.core import messages
from vtcav_common.core.errors import UsageError
from vtcav_common.synth import WORLDS, WorldSpec, generate_world, world_classes

app = frame.make_app(
    "vt-synth",
    help="Write the synthetic motion world: mp4 videos where a red ball moves left, right, "
         "up or down over a textured background with static distractors, so that **motion "
         "alone decides the class**; or, with `--world appearance`, the same scene where the ball's **colour** "
         "(red, yellow, purple, white) decides the class and it moves at random alike in every class. Writes "
         "`videos/`, `labels.jsonl` (video, label, split), `gt.jsonl` (true boxes in the detection record "
         "format) and `world.json`.",
    epilog="Examples:\n\n    vt-synth world/ --seed 0\n\n    vt-synth small/ --train-per-class 4 --test-per-class 2"
           "\n\n    vt-synth colours/ --world appearance --seed 0",
)


@app.command()
def synth(
    out_dir: Path = typer.Argument(..., help="Folder to write the world into (created if missing)."),
    seed: int = options.seed(help="Random seed; the same seed gives the same world."),
    train_per_class: int = typer.Option(40, min=0, help="Training videos per class."),
    test_per_class: int = typer.Option(10, min=0, help="Held-out videos per class."),
    frames: int = options.frames(20, help="Frames per video.", minimum=8),
    size: str = options.size("64", help="Frame width and height in pixels (square, at least 32)."),
    world_name: str = typer.Option("motion", "--world", help=f"Which world: {' or '.join(WORLDS)} (what decides "
                                                              "the class: the ball's motion or its colour)."),
    classes: str = typer.Option("", help="Comma-separated subset of the classes (default: all of the world's)."),
    quiet: bool = options.quiet(),
    version: bool = options.version(),
) -> None:
    messages.set_quiet(quiet)
    if world_name not in WORLDS:
        raise UsageError(f"--world is {' or '.join(WORLDS)}, got '{world_name}'")
    known = world_classes(world_name)
    chosen = tuple(c.strip() for c in classes.split(",") if c.strip()) or known
    unknown = [c for c in chosen if c not in known]
    if unknown:
        raise UsageError(f"unknown class(es) {', '.join(unknown)}; the {world_name} world has {', '.join(known)}")
    spec = WorldSpec(size=options.square_size(size, minimum=32), frames=frames)
    world = generate_world(out_dir, seed, train_per_class, test_per_class, spec, chosen, world_name)
    n = (train_per_class + test_per_class) * len(chosen)
    messages.info(f"vt-synth: wrote {n} videos of {', '.join(world['classes'])} to {out_dir}")


main = frame.entry(app, "vt-synth")
