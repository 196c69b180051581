"""vt-synth: write the synthetic motion world (videos, labels, true boxes)."""

from __future__ import annotations

from pathlib import Path

import typer

from vtcav_common import frame, messages, options
from vtcav_common.errors import UsageError
from vtcav_common.synth import CLASSES, WorldSpec, generate_world

app = frame.make_app(
    "vt-synth",
    help="Write the synthetic motion world: mp4 videos where a red ball moves left, right, "
         "up or down over a textured background with static distractors, so that **motion "
         "alone decides the class**. Writes `videos/`, `labels.jsonl` (video, label, split), "
         "`gt.jsonl` (true boxes in the detection record format) and `world.json`.",
    epilog="Examples:\n\n    vt-synth world/ --seed 0\n\n    vt-synth small/ --train-per-class 4 --test-per-class 2",
)


@app.command()
def synth(
    out_dir: Path = typer.Argument(..., help="Folder to write the world into (created if missing)."),
    seed: int = options.seed(help="Random seed; the same seed gives the same world."),
    train_per_class: int = typer.Option(40, min=0, help="Training videos per class."),
    test_per_class: int = typer.Option(10, min=0, help="Held-out videos per class."),
    frames: int = options.frames(20, help="Frames per video.", minimum=8),
    size: str = options.size("64", help="Frame width and height in pixels (square, at least 32)."),
    classes: str = typer.Option(",".join(CLASSES), help="Comma-separated subset of the classes."),
    quiet: bool = options.quiet(),
    version: bool = options.version(),
) -> None:
    messages.set_quiet(quiet)
    chosen = tuple(c.strip() for c in classes.split(",") if c.strip())
    unknown = [c for c in chosen if c not in CLASSES]
    if unknown or not chosen:
        raise UsageError(f"unknown class(es) {', '.join(unknown) or '(none)'}; the world has {', '.join(CLASSES)}")
    spec = WorldSpec(size=options.square_size(size, minimum=32), frames=frames)
    world = generate_world(out_dir, seed, train_per_class, test_per_class, spec, chosen)
    n = (train_per_class + test_per_class) * len(chosen)
    messages.info(f"vt-synth: wrote {n} videos of {', '.join(world['classes'])} to {out_dir}")


main = frame.entry(app, "vt-synth")
