"""Pictures of relevance maps: heat maps over the video's frames, as a PNG strip and a video.

Maps are computed at the model's input grid; here each map frame is resized
(bilinear) to the source video's frame size and laid over the source frame it was
sampled from. Colours: OpenCV's JET colour map, blended in proportion to the relevance
(no relevance shows the bare frame). One scale per video is used for the plain and
the selective rows, so the selective row shows exactly which part of the plain map
survived the filter; the scale is the plain map's 99.5th percentile (heat above it
saturates), so spiky gradient maps stay visible.

- ``<video_id>.png``: a strip of ``n`` frames spread over the clip, each labelled with its
  time in the source video, the plain map on the first row, the selective map on the next
  when there is one, and a colour bar giving the relevance each colour stands for;
- ``<video_id>.gif`` (or ``.mp4``): every source frame with the map of its nearest
  sampled frame, plain and selective side by side, under the frame's time and each
  map's caption, beside the same colour bar. GIFs are built in memory (short clips);
  mp4 streams frame by frame.

Files are written atomically and without timestamps: the same maps give the same bytes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..core.files import atomic_path
from ..core.errors import UsageError, VtcavError

FORMATS = ("gif", "mp4")
GAP = 2                 # pixels between tiles (white)
BAND = 14               # pixels of the caption band above each row (before scaling)
STRENGTH = 0.65         # opacity of the heat colour at the map's maximum


def auto_scale(height: int, width: int) -> int:
    """An integer enlargement so that small frames (e.g. 64 x 64) stay visible: short side >= 128."""
    return max(1, math.ceil(128 / max(1, min(height, width))))


def resize_map(map_frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """One map frame (input grid) at the source frame's size; bilinear, kept non-negative."""
    if map_frame.shape == (height, width):
        return map_frame.astype(np.float32)
    resized = cv2.resize(map_frame.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    return np.maximum(resized, 0.0)


def heat_colours(heat: np.ndarray) -> np.ndarray:
    """Heat in [0, 1] -> RGB uint8 through the JET colour map."""
    levels = np.clip(heat * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(levels, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def blend(frame: np.ndarray, heat: np.ndarray, strength: float = STRENGTH) -> np.ndarray:
    """The frame with the heat colour laid over it, opaque in proportion to the heat."""
    alpha = (strength * np.clip(heat, 0.0, 1.0))[..., None]
    mixed = frame.astype(np.float32) * (1.0 - alpha) + heat_colours(heat).astype(np.float32) * alpha
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)


def map_scale(plain: np.ndarray, percentile: float = 99.5) -> float:
    """The display scale of a video's maps: a high percentile of the plain map.

    A percentile rather than the maximum, so that a few spiky voxels (input gradients)
    do not make the rest of the map invisible; 1 for an empty map.
    """
    top = float(np.percentile(plain, percentile)) if plain.size else 0.0
    if top <= 0:
        top = float(np.max(plain)) if plain.size else 0.0
    return top if top > 0 else 1.0


def strip_columns(frames: int, wanted: int) -> list[int]:
    """``wanted`` map frames spread evenly over ``frames`` (all of them if fewer)."""
    if wanted >= frames:
        return list(range(frames))
    return np.linspace(0, frames - 1, wanted).round().astype(int).tolist()


def _caption(width: int, text: str) -> np.ndarray:
    band = np.full((BAND, width, 3), 255, np.uint8)
    cv2.putText(band, text, (2, BAND - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    return band


def _row(tiles: list[np.ndarray]) -> np.ndarray:
    height = tiles[0].shape[0]
    gap = np.full((height, GAP, 3), 255, np.uint8)
    parts = []
    for i, tile in enumerate(tiles):
        parts += [gap, tile] if i else [tile]
    return np.concatenate(parts, axis=1)


def _enlarge(image: np.ndarray, scale: int) -> np.ndarray:
    return image if scale == 1 else cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)


def strip_image(frames: np.ndarray, rows: list[tuple[str, np.ndarray]], columns: list[int],
                scale: float, enlarge: int = 1, times: list[str] | None = None,
                bar_label: str = "relevance") -> np.ndarray:
    """Frames (T x H x W x 3, source size) with each row's map (T x h x w, input grid) over them.

    ``times`` (one label per column, e.g. "0.40 s") are written above the first row; a
    colour bar on the right maps colour to relevance, 0 to ``scale`` (heat above saturates).
    """
    height, width = frames.shape[1:3]
    blocks = []
    for caption, maps in rows:
        tiles = [_enlarge(blend(frames[i], resize_map(maps[i], height, width) / scale), enlarge) for i in columns]
        row = _row(tiles)
        blocks += [_caption(row.shape[1], caption), row]
    if times:
        blocks.insert(0, _time_band(blocks[1].shape[1], width * enlarge, times))
    image = np.concatenate(blocks, axis=0)
    return np.concatenate([image, colour_bar(image.shape[0], scale, bar_label)], axis=1)


def _time_band(total: int, tile: int, labels: list[str]) -> np.ndarray:
    band = np.full((BAND, total, 3), 255, np.uint8)
    for i, label in enumerate(labels):
        cv2.putText(band, label, (i * (tile + GAP) + 2, BAND - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (60, 60, 60), 1,
                    cv2.LINE_AA)
    return band


def colour_bar(height: int, scale: float, label: str = "relevance", width: int = 64) -> np.ndarray:
    """A vertical JET bar (top: ``scale`` and above, bottom: 0) with its values, ``height`` pixels tall."""
    panel = np.full((height, width, 3), 255, np.uint8)
    top, bottom = BAND + 4, height - BAND
    if bottom - top < 8:
        return panel
    levels = np.linspace(1.0, 0.0, bottom - top, dtype=np.float32)[:, None].repeat(10, axis=1)
    panel[top:bottom, 6:16] = heat_colours(levels)
    font, ink = cv2.FONT_HERSHEY_SIMPLEX, (0, 0, 0)
    cv2.putText(panel, label, (2, BAND - 3), font, 0.3, ink, 1, cv2.LINE_AA)
    cv2.putText(panel, f">={scale:.2g}", (18, top + 8), font, 0.3, ink, 1, cv2.LINE_AA)
    cv2.putText(panel, f"{scale / 2:.2g}", (18, (top + bottom) // 2 + 3), font, 0.3, ink, 1, cv2.LINE_AA)
    cv2.putText(panel, "0", (18, bottom - 1), font, 0.3, ink, 1, cv2.LINE_AA)
    return panel


def write_png(path: str | Path, image: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise VtcavError(f"{path}: could not encode the PNG")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())


# --------------------------------------------------------------------------- overlay video
def overlay_frames(source: Iterator[tuple[int, np.ndarray]], indices: np.ndarray, maps: list[np.ndarray],
                   scale: float, enlarge: int = 1, captions: list[str] | None = None, fps: float = 0.0,
                   bar_label: str = "relevance") -> Iterator[np.ndarray]:
    """For each source frame, the maps of its nearest sampled frame over it, side by side.

    Above the tiles: the frame's time in the source video and the sampled frame whose map is
    shown, and each tile's caption (``captions``, e.g. plain / selective); on the right the
    colour bar of the PNG strip, so a frame of the video reads on its own.
    """
    indices = np.asarray(indices)
    cached_at, cached, bar = None, None, None
    for index, frame in source:
        nearest = int(np.abs(indices - index).argmin())
        if nearest != cached_at:   # the resized heat changes only when the nearest sample does
            height, width = frame.shape[:2]
            cached_at, cached = nearest, [resize_map(m[nearest], height, width) / scale for m in maps]
        tiles = [_enlarge(blend(frame, heat), enlarge) for heat in cached]
        row = _row(tiles)
        when = f"{index / fps:.2f} s (f{index})" if fps else f"frame {index}"
        blocks = [_caption(row.shape[1], f"{when}, map of f{int(indices[nearest])}")]
        if captions:
            fit = max(4, tiles[0].shape[1] // 6)     # characters that fit a tile at this font size
            blocks.append(_time_band(row.shape[1], tiles[0].shape[1], [c[:fit] for c in captions]))
        image = np.concatenate([*blocks, row], axis=0)
        if bar is None:
            bar = colour_bar(image.shape[0], scale, bar_label)
        yield np.concatenate([image, bar], axis=1)


def write_overlay_video(path: str | Path, frames: Iterator[np.ndarray], fps: float, fmt: str) -> None:
    """Write overlay frames as a looping GIF or an mp4 (MPEG-4 part 2), atomically."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown picture format '{fmt}'; choose {', '.join(FORMATS)}")
    if fmt == "gif":
        _write_gif(path, frames, fps)
    else:
        _write_mp4(path, frames, fps)


def _write_gif(path: str | Path, frames: Iterator[np.ndarray], fps: float) -> None:
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    if not images:
        raise VtcavError(f"{path}: no frames to write")
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=int(round(1000.0 / (fps or 10.0))), loop=0)


def _write_mp4(path: str | Path, frames: Iterator[np.ndarray], fps: float) -> None:
    with atomic_path(path) as tmp:
        writer = None
        try:
            for frame in frames:
                if writer is None:
                    height, width = frame.shape[:2]
                    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps or 10.0, (width, height))
                    if not writer.isOpened():
                        raise VtcavError(f"{path}: cannot open a video writer for mp4")
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        finally:
            if writer is not None:
                writer.release()
        if writer is None:
            raise VtcavError(f"{path}: no frames to write")
