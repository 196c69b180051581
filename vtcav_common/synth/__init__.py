"""The synthetic worlds: small videos where the truth is known.

Every video shows a textured, static background, one red *ball* that moves in a
straight line, and one or two static distractors (*square*, *triangle*).  The class
is the ball's direction of motion: ``left``, ``right``, ``up`` or ``down``.  The ball
looks the same in every class and the distractors appear in every class, so **motion
alone decides the class**: a model that solved the task must rely on the concept
"ball moving <direction>", not on the ball's or the distractors' appearance.

The *appearance* world (``world="appearance"``) is its mirror image: the same ball,
background and distractors, but the class is the ball's **colour** (``red``, ``yellow``,
``purple``, ``white``) and the ball moves in a random direction at a random speed drawn
the same way for every class, so **appearance alone decides the class** and a model that
solved it cannot rely on motion. Together the two worlds check a motion question (the
temporal twins of ``vtcav_common.concepts.twins``) in both directions.

Everything is a function of ``(seed, video index)``, so worlds are reproducible.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from ..core.files import atomic_path, keep, remove_on_abort
from ..core.video import write_video

CLASSES = ("left", "right", "up", "down")
OBJECT_KINDS = ("ball", "square", "triangle")
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
MOVER = "ball"
WORLDS = ("motion", "appearance")
# The appearance world's classes and the ball's colour (RGB) in each; every class moves alike.
COLOURS = {"red": (220, 50, 50), "yellow": (225, 205, 40), "purple": (150, 60, 205), "white": (235, 235, 235)}
APPEARANCE_CLASSES = tuple(COLOURS)


def world_classes(world: str) -> tuple[str, ...]:
    """The class names of ``world`` (``motion`` or ``appearance``)."""
    if world not in WORLDS:
        raise ValueError(f"unknown world '{world}'; choose from {', '.join(WORLDS)}")
    return CLASSES if world == "motion" else APPEARANCE_CLASSES


@dataclass(frozen=True)
class WorldSpec:
    size: int = 64          # frames are size x size pixels
    frames: int = 20        # frames per video
    fps: float = 10.0
    ball_radius: tuple[int, int] = (5, 7)
    speed: tuple[float, float] = (1.6, 2.2)   # pixels per frame
    noise: float = 3.0      # per-frame sensor noise (std, grey levels)


@dataclass
class RenderedVideo:
    label: str
    frames: np.ndarray               # T x H x W x 3 uint8 RGB
    objects: list[dict]              # kind, track_id, moving, boxes (T x 4, x1 y1 x2 y2)
    masks: np.ndarray                # T x H x W bool: pixels of the moving object


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random background: low-frequency colour blobs plus fine grain."""
    coarse = rng.normal(0.0, 1.0, (6, 6, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    grain = cv2.GaussianBlur(rng.normal(0.0, 1.0, (size, size, 3)).astype(np.float32), (0, 0), 0.8)
    base = rng.uniform(90, 150, 3).astype(np.float32)
    image = base + 22.0 * smooth + 10.0 * grain
    image[..., 0] = np.minimum(image[..., 0], 165)  # keep the background from looking like the red ball
    return np.clip(image, 0, 255)


def _draw(canvas: np.ndarray, kind: str, centre: tuple[float, float], extent: int,
          colour: tuple[int, int, int]) -> tuple[float, float, float, float]:
    """Draw an object, return its box (x1, y1, x2, y2) in pixels."""
    shift = 4  # sub-pixel positions, so motion is smooth
    cx, cy = int(round(centre[0] * (1 << shift))), int(round(centre[1] * (1 << shift)))
    r = extent
    if kind == "ball":
        cv2.circle(canvas, (cx, cy), r << shift, colour, -1, cv2.LINE_AA, shift)
        highlight = tuple(min(255, c + 70) for c in colour)
        cv2.circle(canvas, (cx - (r << shift) // 3, cy - (r << shift) // 3), (r << shift) // 3,
                   highlight, -1, cv2.LINE_AA, shift)
    elif kind == "square":
        cv2.rectangle(canvas, (cx - (r << shift), cy - (r << shift)), (cx + (r << shift), cy + (r << shift)),
                      colour, -1, cv2.LINE_AA, shift)
    elif kind == "triangle":
        points = np.array([[cx, cy - (r << shift)], [cx - (r << shift), cy + (r << shift)],
                           [cx + (r << shift), cy + (r << shift)]], np.int32)
        cv2.fillPoly(canvas, [points], colour, cv2.LINE_AA, shift)
    else:
        raise ValueError(kind)
    x, y = centre
    return (x - r - 0.5, y - r - 0.5, x + r + 0.5, y + r + 0.5)


def render_video(seed: int, index: int, label: str, spec: WorldSpec = WorldSpec(),
                 world: str = "motion") -> RenderedVideo:
    """Render video ``index`` of class ``label`` of ``world``; a pure function of its arguments."""
    rng = np.random.default_rng([seed, index, world_classes(world).index(label)])
    size, frames = spec.size, spec.frames
    background = _texture(rng, size)

    radius = int(rng.integers(spec.ball_radius[0], spec.ball_radius[1] + 1))
    speed = float(rng.uniform(*spec.speed))
    margin = radius + 1.5
    # Small frames or long videos (--size 32, the documented minimum): slow down so the
    # whole path stays inside the frame (larger worlds are rendered exactly as before).
    speed = min(speed, (size - 2 * margin - 1) / max(1, frames - 1))
    travel = speed * (frames - 1)
    if world == "motion":
        dx, dy = DIRECTIONS[label]
        along_start = rng.uniform(margin, size - margin - travel)
        across = rng.uniform(margin, size - margin)
        positions = []
        for t in range(frames):
            along = along_start + speed * t
            if dx < 0 or dy < 0:
                along = size - along  # mirror so the ball travels toward the negative side
            positions.append((along, across) if dx else (across, along))
        ball_colour = (int(rng.integers(200, 240)), int(rng.integers(30, 70)), int(rng.integers(30, 70)))
    else:
        # Any direction, the same speed range for every class: motion carries no information.
        angle = float(rng.uniform(0.0, 2.0 * np.pi))
        step = np.array([np.cos(angle), np.sin(angle)]) * speed
        low = np.maximum(margin, margin - step * (frames - 1))
        high = np.minimum(size - margin, size - margin - step * (frames - 1))
        start = rng.uniform(low, high)
        positions = [tuple(float(v) for v in start + step * t) for t in range(frames)]
        jitter = rng.integers(-12, 13, 3)
        ball_colour = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(COLOURS[label], jitter))

    # Static distractors, kept off the ball's path so the ball is never hidden.
    distractors = []
    for kind in rng.choice(["square", "triangle"], size=int(rng.integers(1, 3)), replace=False):
        extent = int(rng.integers(4, 7))
        for _ in range(50):
            centre = (float(rng.uniform(extent + 1, size - extent - 1)),
                      float(rng.uniform(extent + 1, size - extent - 1)))
            # (the motion world measures across its axis, as it always has: the same worlds)
            gap = (abs((centre[1] if dx else centre[0]) - across) if world == "motion"
                   else _distance_to_path(centre, positions))
            off_path = gap > radius + extent + 2
            apart = all(abs(centre[0] - c[0]) + abs(centre[1] - c[1]) > 2 * (extent + e) + 4
                        for _, c, e, _ in distractors)
            if off_path and apart:
                break
        colour = ((int(rng.integers(30, 70)), int(rng.integers(60, 110)), int(rng.integers(190, 240)))
                  if kind == "square" else
                  (int(rng.integers(40, 80)), int(rng.integers(180, 230)), int(rng.integers(40, 90))))
        distractors.append((str(kind), centre, extent, colour))

    video = np.empty((frames, size, size, 3), np.uint8)
    masks = np.zeros((frames, size, size), bool)
    ball_boxes, distractor_boxes = [], [[] for _ in distractors]
    for t in range(frames):
        canvas = background.copy()
        for i, (kind, centre, extent, colour) in enumerate(distractors):
            distractor_boxes[i].append(_draw(canvas, kind, centre, extent, colour))
        before = canvas.copy()
        ball_boxes.append(_draw(canvas, "ball", positions[t], radius, ball_colour))
        masks[t] = np.abs(canvas - before).sum(axis=-1) > 0
        canvas += rng.normal(0.0, spec.noise, canvas.shape).astype(np.float32)
        video[t] = np.clip(canvas, 0, 255).astype(np.uint8)

    objects = [{"kind": "ball", "track_id": 1, "moving": True, "boxes": np.array(ball_boxes)}]
    for i, (kind, _, _, _) in enumerate(distractors):
        objects.append({"kind": kind, "track_id": i + 2, "moving": False,
                        "boxes": np.array(distractor_boxes[i])})
    return RenderedVideo(label, video, objects, masks)


def _distance_to_path(point: tuple[float, float], positions: list) -> float:
    """Distance from ``point`` to the straight segment the ball travels along."""
    p, a, b = np.asarray(point), np.asarray(positions[0]), np.asarray(positions[-1])
    d = b - a
    t = float(np.clip(np.dot(p - a, d) / max(float(np.dot(d, d)), 1e-9), 0.0, 1.0))
    return float(np.linalg.norm(p - (a + t * d)))


def world_videos(seed: int, per_class: int, split: str, offset: int = 0, classes: tuple[str, ...] = CLASSES):
    """``(video_id, index, label)`` for a split, interleaving classes."""
    for i in range(per_class):
        for label in classes:
            index = offset + i
            yield f"{split}_{label}_{index:04d}", index, label


def generate_world(out_dir: str | Path, seed: int = 0, train_per_class: int = 40,
                   test_per_class: int = 10, spec: WorldSpec = WorldSpec(),
                   classes: tuple[str, ...] | None = None, world: str = "motion") -> dict:
    """Write the world: ``videos/*.mp4``, ``labels.jsonl``, ``gt.jsonl``, ``world.json``.

    ``gt.jsonl`` holds the true boxes in the detection record format (so it can stand
    in for a detector's output), plus a ``moving`` flag. ``world`` is ``motion`` (the
    class is the ball's direction) or ``appearance`` (the class is its colour).
    """
    out = Path(out_dir)
    from ..core.files import check_memory

    # one video is rendered whole: frames, masks and the float background
    check_memory(spec.frames * spec.size * spec.size * 16, f"{out}: a video of {spec.frames} frames of "
                                                            f"{spec.size}x{spec.size}")
    known = world_classes(world)
    classes = tuple(classes or known)
    plan = [v for v in world_videos(seed, train_per_class, "train", classes=known) if v[2] in classes]
    plan += [v for v in world_videos(seed, test_per_class, "test", offset=10_000, classes=known) if v[2] in classes]
    made: list[Path] = []   # what this run created: removed again if it fails (no half world)
    try:
        _write_world(out, seed, plan, spec, made, world)
    except BaseException:
        for path in reversed(made):
            with contextlib.suppress(OSError):
                path.rmdir() if path.is_dir() else path.unlink()
        raise
    finally:
        for path in made:
            keep(path)
    answer = ("the class is the direction of the ball's motion; appearance and the static distractors carry "
              "no information about the class" if world == "motion" else
              "the class is the ball's colour; its motion (a random direction and speed, drawn alike for every "
              "class) and the static distractors carry no information about the class")
    record = {"seed": seed, "world": world, "classes": list(classes), "object_kinds": list(OBJECT_KINDS),
              "mover": MOVER, "spec": asdict(spec), "train_per_class": train_per_class,
              "test_per_class": test_per_class, "known_answer": answer}
    with atomic_path(out / "world.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    return record


def _write_world(out: Path, seed: int, plan: list, spec: WorldSpec, made: list[Path], world: str) -> None:
    for folder in (out, out / "videos"):
        if not folder.exists():
            remove_on_abort(folder)   # SIGTERM (vtcav_common.cli.frame) removes what this run made
            folder.mkdir(parents=True)
            made.append(folder)
    with atomic_path(out / "labels.jsonl") as labels_tmp, atomic_path(out / "gt.jsonl") as gt_tmp, \
            open(labels_tmp, "w") as labels, open(gt_tmp, "w") as gt:
        for video_id, index, label in plan:
            rendered = render_video(seed, index, label, spec, world)
            relative = f"videos/{video_id}.mp4"
            if not (out / relative).exists():
                remove_on_abort(out / relative)
                made.append(out / relative)
            write_video(out / relative, rendered.frames, spec.fps)
            split = video_id.split("_", 1)[0]
            labels.write(json.dumps({"video_id": video_id, "path": relative, "label": label,
                                     "split": split}) + "\n")
            for obj in rendered.objects:
                for t, box in enumerate(obj["boxes"]):
                    gt.write(json.dumps({
                        "video_id": video_id, "video": relative, "frame": t, "time": round(t / spec.fps, 4),
                        "track_id": obj["track_id"], "class_id": OBJECT_KINDS.index(obj["kind"]),
                        "class_name": obj["kind"], "conf": 1.0,
                        "box": [round(float(v), 2) for v in box], "moving": obj["moving"]},
                        separators=(",", ":")) + "\n")
