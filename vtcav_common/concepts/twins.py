"""Temporal twins of clip sets: the same clips with only time changed (the *is it motion?* control).

A concept mined along a track (``ball_right``) differs from its static crop (``ball_static``)
in more than motion: other frames, other crops, another number of clips. A *twin* keeps
every clip and changes one thing, so a relative CAV of a set against its twin asks one
question of the model:

- ``frozen``: one frame of each clip repeated T times (``frame_kept``: first, middle, last or
  an index). Does the class rely on the concept's *motion* at all?
- ``shuffled``: each clip's frames in a seeded random order (never the identity). Does it
  rely on the *order* of the frames, beyond which frames are there?
- ``reversed``: the frames in reverse order. Does it rely on the *direction* of time (a ball
  moving right played backwards moves left)?
- ``blurred``: every frame blurred in space (Gaussian, ``blur_sigma`` pixels), the motion kept.
  Does it rely on the concept's *appearance detail* rather than on its motion?

Twins of random sets are made the same way: the null of "set vs its twin" is the same
comparison on random sets against their own twins (``vtcav_common.stats.motion``), so that
"motion matters for this concept" is not mistaken for "motion matters for any clip".

A twin set is named ``<source>~<transform>`` (``ball_right~frozen``), has kind and role
``twin`` (so vt-cav neither tests it as a concept nor draws random sets from it) and records
in its provenance the source file, set and run, the transform, the frame kept, the seed and
the blur. Its per-clip ``frames`` and ``boxes`` are the source's, reordered as the pixels were,
and a per-clip ``order`` (N x T) says which source clip frame each twin frame shows.

Example (in a project folder, after shell/pipeline.sh: concepts.h5):
    >>> from vtcav_common.concepts.twins import TwinOptions, twin_pairs, write_twins
    >>> from vtcav_common.formats.clips import list_sets
    >>> write_twins("concepts.h5", "concepts.h5", ["ball_right", "random_00"],
    ...             TwinOptions(transforms=("frozen", "reversed"), seed=0), append=True)
    [('ball_right~frozen', 6), ('ball_right~reversed', 6), ('random_00~frozen', 20), ('random_00~reversed', 20)]
    >>> twin_pairs([s.name for s in list_sets("concepts.h5")], sources=["ball_right"])
    [('ball_right', 'ball_right~frozen'), ('ball_right', 'ball_right~reversed')]
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np

from ..formats import clips as clipsets
from ..core import h5io
from ..core.errors import UsageError, VtcavError
# the twins' names and transforms are part of the clip-set format (formats.clips)
from ..formats.clips import SEPARATOR, TRANSFORMS, Transform, parse_twin, twin_name  # noqa: F401

KIND = ROLE = "twin"
FRAME_KEPT = ("first", "middle", "last")
DEFAULT_BLUR = 3.0


DEFAULT_TRANSFORMS = ("frozen", "shuffled", "reversed")


def twin_pairs(names: Sequence[str], sources: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """``(source, twin)`` for every twin in ``names`` whose source is there too (and in ``sources``)."""
    present = set(names)
    pairs = []
    for name in names:
        parsed = parse_twin(name)
        if parsed and parsed[0] in present and (sources is None or parsed[0] in sources):
            pairs.append((parsed[0], name))
    return pairs


def parse_transforms(text: str) -> list[str]:
    """``frozen,shuffled`` -> ['frozen', 'shuffled'], or UsageError naming the unknown ones."""
    chosen = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in chosen if t not in TRANSFORMS]
    if unknown or not chosen:
        raise UsageError(f"--kind takes a comma-separated list of {', '.join(TRANSFORMS)}; "
                         f"got '{text}'")
    return list(dict.fromkeys(chosen))


def frame_index(frame_kept: str, frames: int) -> int:
    """The clip frame a frozen twin repeats: ``first``, ``middle`` (T // 2), ``last`` or an index."""
    named = {"first": 0, "middle": frames // 2, "last": frames - 1}
    if frame_kept in named:
        return named[frame_kept]
    try:
        index = int(frame_kept)
    except ValueError:
        raise UsageError(f"--frame-kept is first, middle, last or a frame index, got '{frame_kept}'") from None
    if not 0 <= index < frames:
        raise UsageError(f"--frame-kept {index}: clips have frames 0..{frames - 1}")
    return index


def clip_order(transform: str, frames: int, seed: int, source: str, clip: int, kept: int) -> np.ndarray:
    """Which source frame each of the twin's T frames shows, for one clip (a function of its
    arguments only, so a twin does not depend on batch sizes or on the other sets)."""
    if transform == "frozen":
        return np.full(frames, kept, np.int32)
    if transform == "reversed":
        return np.arange(frames - 1, -1, -1, dtype=np.int32)
    if transform == "shuffled":
        rng = np.random.default_rng([seed, zlib.crc32(source.encode()), clip])
        order = rng.permutation(frames)
        while frames > 1 and np.array_equal(order, np.arange(frames)):
            order = rng.permutation(frames)
        return order.astype(np.int32)
    return np.arange(frames, dtype=np.int32)       # blurred: time untouched


def blur(clips: np.ndarray, sigma: float) -> np.ndarray:
    """Each frame of ``n x T x H x W x 3`` uint8 clips blurred by a Gaussian of ``sigma`` pixels."""
    out = np.empty_like(clips)
    for i, clip in enumerate(clips):
        for t, frame in enumerate(clip):
            out[i, t] = cv2.GaussianBlur(frame, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    return out


@dataclass(frozen=True)
class TwinOptions:
    transforms: tuple[str, ...] = DEFAULT_TRANSFORMS
    seed: int = 0
    frame_kept: str = "middle"
    blur_sigma: float = DEFAULT_BLUR
    batch_size: int = 32


def default_sources(path: str | Path) -> list[str]:
    """The sets twins are made of by default: every concept and random set (not twins)."""
    return [i.name for i in clipsets.list_sets(path) if i.role in ("concept", "random")]


def write_twins(path: str | Path, out: str | Path, sources: Sequence[str], options: TwinOptions = TwinOptions(),
                tool: str = "vt-concepts", append: bool = False, replace: bool = False,
                progress: Callable[[Iterable, int], Iterable] = lambda it, n: it) -> list[tuple[str, int]]:
    """Write the twins of ``sources`` (sets of ``path``) to ``out``; returns (twin name, clips).

    ``out`` may be ``path`` itself with ``append=True``: the file is rebuilt beside itself and
    renamed into place when whole (``ClipSetWriter``), its other sets kept. Memory holds one
    batch of clips at a time.
    """
    if not sources:
        raise VtcavError(f"{path}: no concept or random sets to make twins of")
    infos = {i.name: i for i in clipsets.list_sets(path)}
    for name in sources:
        if name not in infos:
            raise VtcavError(f"{path}: no clip set '{name}' (sets: {', '.join(infos)})")
        if infos[name].role == ROLE:
            raise VtcavError(f"{path}: '{name}' is itself a twin; make twins of the set it came from")
    sampling = clipsets.file_sampling(path)
    if options.blur_sigma <= 0:
        raise UsageError(f"--blur-sigma must be positive, got {options.blur_sigma}")
    kept = frame_index(options.frame_kept, sampling.frames)
    with clipsets.open_clipset(path) as handle:
        source_run = h5io.run_id(handle)
    run = {"command": "twins", "source_file": str(path), "sets": list(sources),
           "transforms": list(options.transforms), "seed": options.seed, "frame_kept": options.frame_kept,
           "blur_sigma": options.blur_sigma}
    jobs = [(name, transform) for name in sources for transform in options.transforms]
    written = []
    with clipsets.ClipSetWriter(out, sampling, tool, run, append=append, replace=replace) as writer:
        for name, transform in progress(jobs, len(jobs)):
            info, meta = infos[name], clipsets.read_set_meta(path, name)
            provenance = {"command": "twins", "source_file": str(path), "source_run": source_run,
                          "source_set": name, "source_role": info.role, "source_kind": info.kind,
                          "transform": transform, "question": TRANSFORMS[transform].question,
                          "seed": options.seed,
                          "frame_kept": kept if transform == "frozen" else None,
                          "blur_sigma": options.blur_sigma if transform == "blurred" else None}
            target = writer.add_set(twin_name(name, transform), kind=KIND, role=ROLE,
                                    classes=info.attrs.get("classes", []), labels=info.attrs.get("labels", []),
                                    geometry=info.attrs.get("geometry", "window"),
                                    description=f"{transform} twin of '{name}': "
                                                f"{TRANSFORMS[transform].help}",
                                    provenance=provenance)
            orders = []
            start = 0
            for batch in clipsets.iter_clip_batches(path, name, options.batch_size):
                order = np.stack([clip_order(transform, sampling.frames, options.seed, name, start + i, kept)
                                  for i in range(len(batch))])
                rows = np.arange(len(batch))[:, None]
                clips = batch[rows, order]
                if transform == "blurred":
                    clips = blur(clips, options.blur_sigma)
                stop = start + len(batch)
                target.append(clips, meta.video_id[start:stop], meta.frames[start:stop][rows, order],
                              meta.track_id[start:stop], meta.boxes[start:stop][rows, order])
                orders.append(order)
                start = stop
            target.group.create_dataset("order", data=np.concatenate(orders) if orders else
                                        np.zeros((0, sampling.frames), np.int32), track_times=False)
            written.append((twin_name(name, transform), info.n))
    return written
