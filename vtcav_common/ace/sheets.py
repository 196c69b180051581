"""Contact sheets: one PNG per concept, a row per member clip, a column per sampled frame.

Members come in the file's order (for discovered concepts: nearest the centre first).
A header line names the concept and, when a ranking is given, its rank, its TCAV score and
whether it is significant; a caption above each row names the clip's source video and the
time span it covers (for a supervoxel, the frames where it is present), so a member can be
found in its video. Each column is labelled with the frame's time within the clip.

Example::

    contact_sheet(clips[:6], "ace_00  rank 1  TCAV 0.93", frames=4, scale=2,
                  captions=["v1  0.00-1.90 s", ...])  # H x W x 3 uint8
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..formats import clips as clipsets
from ..core.errors import VtcavError
from ..core.files import atomic_path

GAP = 2            # pixels between tiles
HEADER = 18        # pixels of the header line
CAPTION = 13       # pixels of a row's caption band
BACKGROUND = 255
FONT = cv2.FONT_HERSHEY_SIMPLEX


def frame_columns(length: int, frames: int) -> np.ndarray:
    """``frames`` indices spread uniformly over ``length`` (as the models sample clips)."""
    return np.linspace(0, length - 1, min(frames, length)).round().astype(int)


def contact_sheet(clips: np.ndarray, title: str, frames: int = 4, scale: int = 2,
                  captions: Sequence[str] | None = None, column_labels: Sequence[str] | None = None) -> np.ndarray:
    """``rows x frames`` tiles of ``clips`` (n x T x H x W x 3 RGB) under a title; RGB uint8.

    ``captions`` (one per clip) are written above each row, ``column_labels`` (one per
    column, e.g. the frame index) above the first row.
    """
    n, t, h, w, _ = clips.shape
    columns = frame_columns(t, frames)
    tile_h, tile_w = h * scale, w * scale
    band = CAPTION if captions else 0
    top = HEADER + (CAPTION if column_labels is not None else 0)
    longest = max([len(title)] + [len(c) for c in captions or []])
    width = max(len(columns) * (tile_w + GAP) + GAP, 7 * longest + 2 * GAP)
    height = top + max(n, 1) * (tile_h + band + GAP) + GAP
    sheet = np.full((height, width, 3), BACKGROUND, np.uint8)
    cv2.putText(sheet, title, (GAP, HEADER - 5), FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    if column_labels is not None:
        for column, label in enumerate(column_labels):
            cv2.putText(sheet, str(label), (GAP + column * (tile_w + GAP), top - 3), FONT, 0.33, (90, 90, 90), 1,
                        cv2.LINE_AA)
    for row, clip in enumerate(clips):
        y = top + row * (tile_h + band + GAP) + GAP
        if captions:
            cv2.putText(sheet, captions[row], (GAP, y + band - 3), FONT, 0.33, (0, 0, 120), 1, cv2.LINE_AA)
        for column, frame in enumerate(columns):
            tile = cv2.resize(clip[frame], (tile_w, tile_h), interpolation=cv2.INTER_NEAREST)
            x = GAP + column * (tile_w + GAP)
            sheet[y + band:y + band + tile_h, x:x + tile_w] = tile
    return sheet


def write_png(path: str | Path, image: np.ndarray) -> None:
    """An RGB image as a PNG, atomically (no timestamps: the same image gives the same bytes)."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise VtcavError(f"{path}: could not encode the PNG")
    with atomic_path(path, suffix=".png") as tmp:
        tmp.write_bytes(encoded.tobytes())


def write_sheets(path: str, out_dir: str | Path, ranking: dict[str, dict] | None = None, members: int = 6,
                 frames: int = 4, scale: int = 2, role: str = "concept", videos: str | None = None) -> list[Path]:
    """A PNG per set of ``role`` in the clip-set file; returns the files written (atomically).

    ``videos`` (a labels manifest or a folder) finds each member's video, for its frame
    rate: time spans are then in seconds, otherwise in source frames.
    """
    from ..concepts.review import clip_sources  # review builds on these sheets

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for info in clipsets.list_sets(path):
        if info.role != role or info.n == 0:
            continue
        clips = clipsets.read_clips(path, info.name, 0, members)
        sources = clip_sources(path, info.name, videos, rows=range(len(clips)))
        captions = [f"{s.video_id}  {s.span()}" for s in sources]
        labels = [f"f{c}" for c in frame_columns(info.T, frames)]
        sheet = contact_sheet(clips, _title(info, (ranking or {}).get(info.name)), frames, scale, captions, labels)
        target = out / f"{info.name}.png"
        write_png(target, sheet)
        written.append(target)
    return written


def _title(info: clipsets.SetInfo, rank: dict | None) -> str:
    title = f"{info.name}  {info.n} clips"
    if rank and "rank" in rank and "excess" in rank:   # a VTCD ranking (vt-ace vtcd): masking effect vs the null
        low, high = rank["excess_ci"]
        title = (f"{info.name}  rank {rank['rank']}  excess {float(rank['excess']):+.2f} [{low:+.2f}, {high:+.2f}] "
                 f"{rank['verdict']}  {info.n} clips")
    elif rank and "rank" in rank and "tcav_mean" in rank:
        flag = "" if rank.get("significant", True) else "  (not significant)"
        title = f"{info.name}  rank {rank['rank']}  TCAV {float(rank['tcav_mean']):.2f}{flag}  {info.n} clips"
    return title
