"""Contact sheets: one PNG per concept, a row per member clip, a column per sampled frame.

Members come in the file's order (for discovered concepts: nearest the centre first).
A header line names the concept and, when a ranking is given, its rank and TCAV score.

Example::

    contact_sheet(clips[:6], "ace_00  rank 1  TCAV 0.93", frames=4, scale=2)  # H x W x 3 uint8
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .. import cli, clipsets

GAP = 2            # pixels between tiles
HEADER = 18        # pixels of the header line (at scale 1)
BACKGROUND = 255


def contact_sheet(clips: np.ndarray, title: str, frames: int = 4, scale: int = 2) -> np.ndarray:
    """``rows x frames`` tiles of ``clips`` (n x T x H x W x 3 RGB) under a title; RGB uint8."""
    from ..models.base import temporal_indices  # here: the models package pulls in torchvision (seconds)

    n, t, h, w, _ = clips.shape
    columns = temporal_indices(t, min(frames, t))
    tile_h, tile_w = h * scale, w * scale
    header = HEADER
    width = max(len(columns) * (tile_w + GAP) + GAP, 8 * len(title) + 2 * GAP)
    height = header + max(n, 1) * (tile_h + GAP) + GAP
    sheet = np.full((height, width, 3), BACKGROUND, np.uint8)
    cv2.putText(sheet, title, (GAP, header - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for row, clip in enumerate(clips):
        for column, frame in enumerate(columns):
            tile = cv2.resize(clip[frame], (tile_w, tile_h), interpolation=cv2.INTER_NEAREST)
            y = header + row * (tile_h + GAP) + GAP
            x = GAP + column * (tile_w + GAP)
            sheet[y:y + tile_h, x:x + tile_w] = tile
    return sheet


def write_sheets(path: str, out_dir: str | Path, ranking: dict[str, dict] | None = None, members: int = 6,
                 frames: int = 4, scale: int = 2, role: str = "concept") -> list[Path]:
    """A PNG per set of ``role`` in the clip-set file; returns the files written (atomically)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for info in clipsets.list_sets(path):
        if info.role != role or info.n == 0:
            continue
        clips = clipsets.read_clips(path, info.name, 0, members)
        title = _title(info, (ranking or {}).get(info.name))
        sheet = contact_sheet(clips, title, frames, scale)
        target = out / f"{info.name}.png"
        with cli.atomic_path(target, suffix=".png") as tmp:
            if not cv2.imwrite(str(tmp), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
                raise OSError(f"{target}: could not write the PNG")
        written.append(target)
    return written


def _title(info: clipsets.SetInfo, rank: dict | None) -> str:
    title = f"{info.name}  {info.n} clips"
    if rank and "rank" in rank and "tcav_mean" in rank:
        flag = "" if rank.get("significant", True) else "  (not significant)"
        title = f"{info.name}  rank {rank['rank']}  TCAV {float(rank['tcav_mean']):.2f}{flag}"
    return title
