"""Pictures of clips: contact sheets (a row per clip, a column per sampled frame) and PNG output.

Shared by concept review (:mod:`vtcav_common.concepts.review`) and 3D-ACE's sheets
(:mod:`vtcav_common.ace.sheets`). A header line names the set; a caption above each row
names the clip's source video and time span; each column is labelled with the frame's time
within the clip.

Example:
    >>> import numpy as np
    >>> from vtcav_common.core.pictures import contact_sheet, write_png
    >>> clips = np.random.default_rng(0).integers(0, 256, (6, 16, 64, 64, 3), dtype=np.uint8)
    >>> sheet = contact_sheet(clips, "ace_00  rank 1  TCAV 0.93", frames=4, scale=2,
    ...                       captions=[f"v{i}  0.00-1.90 s" for i in range(6)])
    >>> sheet.shape, sheet.dtype                      # H x W x 3 RGB: 6 rows of 4 frames
    ((878, 522, 3), dtype('uint8'))
    >>> write_png("ace_00.png", sheet)
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from .errors import VtcavError
from .files import atomic_path


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


