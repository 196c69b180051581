"""Contact sheets: one PNG per concept, a row per member clip, a column per sampled frame.

Members come in the file's order (for discovered concepts: nearest the centre first).
A header line names the concept and, when a ranking is given, its rank, its TCAV score and
whether it is significant; a caption above each row names the clip's source video and the
time span it covers (for a supervoxel, the frames where it is present), so a member can be
found in its video. Each column is labelled with the frame's time within the clip.

Example (in a project folder, after shell/pipeline.sh: concepts.h5, labels.jsonl):
    >>> from vtcav_common.ace.sheets import write_sheets
    >>> written = write_sheets("concepts.h5", "sheets/", members=4, frames=4, videos="labels.jsonl")
    >>> [str(path) for path in written]
    ['sheets/ball_right.png', 'sheets/ball_left.png', 'sheets/ball_static.png']
"""

from __future__ import annotations

from pathlib import Path

from ..core.pictures import contact_sheet, frame_columns, write_png  # noqa: F401  (their old home)
from ..formats import clips as clipsets


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
