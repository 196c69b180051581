"""Review sheets for mined concept clips: look at what a concept set really holds.

Per set, two files:

- ``<set>.png``: a grid, one row per clip, frames spread over the clip as columns, each
  row captioned with the clip's id, source video and time span;
- ``<set>.html``: one self-contained page (no external file: thumbnails are animated GIFs
  inline as base64) with, for each clip, its id, source video (a link to the file), frames
  and time span, and its distance to the set's mean activation.

With an activations file (vt-embed's output for the same clip file) clips are ordered by
that distance, farthest first: the odd ones (a missed detection, a wrong track, a crop of
the background) show at the top. Without one the file's order is kept. Clip ids are the
clips' indices in the set, the ids ``vt-concepts review --drop`` takes.

Example (in a project folder, after shell/pipeline.sh: concepts.h5 and its activations acts.h5):
    >>> from vtcav_common.concepts.review import clip_sources, review_order, typicality, write_review
    >>> distances, layer = typicality("acts.h5", "ball_right", "block2", n=6)   # the set's 6 clips
    >>> order = review_order(distances, 6)                 # farthest from the mean first
    >>> sources = clip_sources("concepts.h5", "ball_right", "labels.jsonl")
    >>> order
    [4, 2, 1, 3, 0, 5]
    >>> sources[4].video_id, sources[4].span()
    ('train_right_0004', '0.20-1.70 s (frames 2-17)')
    >>> png, page = write_review("concepts.h5", "ball_right", "review/", order, sources, distances, layer)
    >>> str(png), str(page)
    ('review/ball_right.png', 'review/ball_right.html')
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..formats import clips as clipsets
from ..core import video as videolib
from ..core.pictures import contact_sheet, write_png
from ..core.errors import IncompatibleError, UsageError, VtcavError
from ..core.files import atomic_path
from ..core.messages import info

THUMB = 128  # pixels: thumbnails are enlarged (nearest) to at least this side


@dataclass(frozen=True)
class ClipSource:
    index: int
    video_id: str
    video: str | None       # the file, when it can be found
    first: int              # source frames
    last: int
    fps: float | None

    def span(self) -> str:
        frames = f"frames {self.first}-{self.last}"
        if self.fps:
            return f"{self.first / self.fps:.2f}-{self.last / self.fps:.2f} s ({frames})"
        return frames


def typicality(acts: str | Path, set_name: str, layer: str | None, n: int) -> tuple[np.ndarray, str]:
    """Each clip's Euclidean distance to the set's mean activation at ``layer`` (two streamed passes).

    The activations must be of this set's ``n`` clips, in order; ``layer`` defaults to the
    file's deepest. Returns the distances and the layer used.
    """
    from ..formats.embeddings import Embeddings

    with Embeddings(acts) as emb:
        layer = layer or emb.layers[-1]
        if layer not in emb.layers:
            raise VtcavError(f"{acts}: no layer '{layer}' (layers: {', '.join(emb.layers)})")
        found = {s.name: s.n for s in emb.sets()}
        if set_name not in found:
            raise IncompatibleError(f"{acts}: has no activations of set '{set_name}' (sets: {', '.join(found)})")
        if found[set_name] != n:
            raise IncompatibleError(f"{acts}: set '{set_name}' has {found[set_name]} activations but the clip "
                                    f"file has {n} clips; embed the same clip file")
        total = np.zeros(emb.feature_size(layer), np.float64)
        for block in emb.iter_flat(set_name, layer, "acts"):
            total += block.sum(axis=0, dtype=np.float64)
        mean = (total / n).astype(np.float32)
        distances = np.concatenate([np.linalg.norm(block - mean, axis=1)
                                    for block in emb.iter_flat(set_name, layer, "acts")])
    return distances, layer


def clip_sources(path: str | Path, set_name: str, videos: str | None,
                 rows: Sequence[int] | None = None) -> list[ClipSource]:
    """Where clips ``rows`` (default all) came from; frame rate from the video file when found.

    A supervoxel clip's span is the frames where its mask is present, not the whole clip.
    """
    meta = clipsets.read_set_meta(path, set_name)
    info = clipsets.get_set(path, set_name)
    mined_from = (info.attrs.get("provenance") or {}).get("videos")
    files = _video_files(videos) if videos else (
        # as recorded (relative to where vt-concepts ran), else relative to the clip file
        _video_files(mined_from) or _video_files(str(Path(path).resolve().parent / mined_from)) if mined_from else {})
    fps_of: dict[str, float | None] = {}
    sources = []
    with clipsets.open_clipset(path) as handle:
        masks = handle[clipsets.ROOT][set_name].get("masks")
        for i in range(len(meta.video_id)) if rows is None else rows:
            video_id = meta.video_id[i]
            file = files.get(video_id)
            if file is not None and file not in fps_of:
                try:
                    fps_of[file] = videolib.probe(file).fps
                except VtcavError:
                    fps_of[file] = None
            frames = meta.frames[i]
            if masks is not None:
                present = np.asarray(masks[i]).reshape(len(frames), -1).any(axis=1)
                frames = frames[present] if present.any() else frames
            sources.append(ClipSource(i, video_id, file, int(frames.min()), int(frames.max()),
                                      fps_of.get(file) if file else None))
    return sources


def _video_files(where: str | None) -> dict[str, str]:
    """video_id -> file, from a labels manifest or a folder; empty when neither can be read."""
    if not where:
        return {}
    p = Path(where)
    try:
        if p.is_dir():
            return {f.stem: str(f.resolve()) for f in videolib.find_videos(p)}
        if p.is_file():
            from ..formats.records import read_manifest
            return {e.video_id: e.path for e in read_manifest(str(p))}
    except VtcavError:
        pass
    return {}


def review_order(distances: np.ndarray | None, n: int) -> list[int]:
    """Farthest from the mean first (ties by index); the file's order without distances."""
    if distances is None:
        return list(range(n))
    return sorted(range(n), key=lambda i: (-float(distances[i]), i))


def write_review(path: str | Path, set_name: str, out_dir: str | Path, order: list[int],
                 sources: list[ClipSource], distances: np.ndarray | None = None, layer: str | None = None,
                 columns: int = 8) -> tuple[Path, Path]:
    """``<set>.png`` and ``<set>.html`` in ``out_dir`` for the clips ``order`` names, in that order."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = clipsets.get_set(path, set_name)
    clips = _read_rows(path, set_name, order)
    scale = max(1, -(-THUMB // max(1, min(info.H, info.W))))
    captions = [_caption(sources[i], None if distances is None else distances[i]) for i in order]
    how = f"farthest from the mean activation at {layer} first" if distances is not None else "file order"
    title = f"{set_name}: {len(order)} of {info.n} clips, {how}"
    png = out / f"{set_name}.png"
    write_png(png, contact_sheet(clips, title, frames=columns, scale=scale, captions=captions))
    page = out / f"{set_name}.html"
    with atomic_path(page) as tmp:
        tmp.write_text(_html(path, info, order, clips, sources, distances, how, scale, png.name), encoding="utf-8")
    return png, page


def _read_rows(path: str | Path, set_name: str, rows: list[int]) -> np.ndarray:
    with clipsets.open_clipset(path) as handle:
        data = handle[clipsets.ROOT][set_name]["clips"]
        return np.stack([data[i] for i in rows])  # one chunk per clip: reads only those asked for


def _caption(source: ClipSource, distance: float | None) -> str:
    text = f"#{source.index} {source.video_id} {source.span()}"
    return text + (f" d={distance:.3g}" if distance is not None else "")


def gif_base64(clip: np.ndarray, fps: float = 8.0) -> str:
    """A looping animated GIF of one clip (T x H x W x 3) at its own size, base64 for an inline <img>
    (the page enlarges it: four times fewer bytes than enlarging the pixels)."""
    from PIL import Image

    # One palette for the whole clip (no dithering): half the bytes of a palette per frame, no flicker.
    palette = Image.fromarray(np.concatenate(list(clip))).quantize(128, method=Image.MEDIANCUT)
    frames = [Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE) for f in clip]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:],
                   duration=int(round(1000 / fps)), loop=0)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:middle}
th{background:#f3f3f3}img{image-rendering:pixelated}code{font-size:90%}"""


def _html(path, info, order, clips, sources, distances, how, scale, png_name) -> str:
    esc = html.escape
    rows = []
    for rank, (i, clip) in enumerate(zip(order, clips), start=1):
        src = sources[i]
        video = (f'<a href="{esc(Path(src.video).as_uri())}">{esc(src.video_id)}</a>' if src.video
                 else esc(src.video_id))
        dist = "" if distances is None else f"{float(distances[i]):.4g}"
        thumbnail = (f'<img alt="clip {i}" width="{info.W * scale}" height="{info.H * scale}" '
                     f'src="data:image/gif;base64,{gif_base64(clip)}">')
        rows.append(f"<tr><td>{rank}</td><td><b>#{i}</b></td><td>{thumbnail}</td><td>{video}</td>"
                    f"<td>{esc(src.span())}</td><td>{dist}</td></tr>")
    described = esc(str(info.attrs.get("description", "")))
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc(info.name)} — review"
            f"</title><style>{STYLE}</style></head><body>\n<h1>{esc(info.name)}</h1>\n"
            f"<p>{esc(info.kind)} set, role {esc(info.role)}, {info.n} clips of {info.T} frames, "
            f"{info.H}x{info.W}, from <code>{esc(str(path))}</code>. {described}</p>\n"
            f"<p>Order: {esc(how)}. Drop clips with <code>vt-concepts review {esc(str(path))} --set "
            f"{esc(info.name)} --drop ID,ID -o cleaned.h5</code>. Grid: <a href=\"{esc(png_name)}\">"
            f"{esc(png_name)}</a>.</p>\n<table><thead><tr><th>rank</th><th>id</th><th>clip</th><th>source video"
            f"</th><th>time span</th><th>distance to mean</th></tr></thead><tbody>\n" + "\n".join(rows)
            + "\n</tbody></table>\n</body></html>\n")


def parse_drops(text: str, sets: list[str]) -> dict[str, list[int]]:
    """``3,7`` (one set chosen) or ``ball:3,ball:7,square:1`` -> {set: [indices]}."""
    drops: dict[str, list[int]] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, _, index = item.rpartition(":")
        if not name:
            if len(sets) != 1:
                raise UsageError(f"--drop {item}: name the set (SET:ID) when several sets are chosen")
            name = sets[0]
        if not index.lstrip("#").isdigit():
            raise UsageError(f"--drop {item}: clip ids are whole numbers (the # of the review sheet)")
        drops.setdefault(name, []).append(int(index.lstrip("#")))
    if not drops:
        raise UsageError("--drop: no clip ids given")
    return drops


def write_reviews(path: str, chosen: list[str], out_dir: Path, acts: str | None = None, layer: str | None = None,
                  videos: str | None = None, max_clips: int = 60, columns: int = 8) -> None:
    """vt-concepts review: per chosen set a PNG grid and an HTML page, the least typical clips
    first when ``acts`` (vt-embed's activations of the file) is given."""
    infos = clipsets.list_sets(path)
    for set_name in chosen:
        n = next(i.n for i in infos if i.name == set_name)
        distances, used = typicality(acts, set_name, layer, n) if acts else (None, None)
        order = review_order(distances, n)[:max_clips]
        sources = clip_sources(path, set_name, videos)
        png, page = write_review(path, set_name, out_dir, order, sources, distances, used, columns)
        info(f"vt-concepts: {set_name}: {len(order)} of {n} clips -> {png}, {page}")
