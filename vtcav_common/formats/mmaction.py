r"""mmaction2's list files (``VideoDataset`` annotation files) as a vtcav labels manifest.

A list file has one ``path label`` line per video (``label`` an index into a class-name
list such as Kinetics' ``label_map_k400.txt``), paths relative to mmaction's
``data_prefix``. Each becomes ``{"video_id", "path", "label", "split"}``: the id is the
file's stem (made unique with its folder when two videos share a stem), the path is
absolute, the label is the class's name, the split is the list's (``train``/``val``/
``test`` from its file name unless given).

Example (in a project folder: videos/ from vt-synth):
    >>> import json
    >>> from pathlib import Path
    >>> from vtcav_common.formats.mmaction import mmaction_manifest
    >>> names = ["left", "right", "up", "down"]              # label_map: line i names class i
    >>> _ = Path("kinetics400_val_list_videos.txt").write_text("test_left_10000.mp4 0\ntest_up_10000.mp4 2\n")
    >>> for record in mmaction_manifest("kinetics400_val_list_videos.txt", names, data_prefix="videos"):
    ...     print(json.dumps(record))
    {"video_id": "test_left_10000", "path": ".../videos/test_left_10000.mp4", "label": "left",
     "split": "val", "class_index": 0}
    {"video_id": "test_up_10000", "path": ".../videos/test_up_10000.mp4", "label": "up",
     "split": "val", "class_index": 2}
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

from ..core.errors import VtcavError

SPLITS = ("train", "val", "test")


def split_of(list_file: str | Path) -> str:
    """``kinetics400_val_list_videos.txt`` -> ``val``; ``all`` when the name says none."""
    stem = Path(list_file).stem.lower()
    for split in SPLITS:
        if split in stem.replace("-", "_").split("_") or stem.startswith(split) or stem.endswith(split):
            return split
    return "all"


def mmaction_manifest(list_file: str | Path, class_names: Sequence[str], data_prefix: str | Path | None = None,
                      split: str | None = None, check_files: bool = True) -> Iterator[dict]:
    """Manifest records of an mmaction2 list file, in its order; errors name the file and line."""
    list_file = Path(list_file)
    if not list_file.is_file():
        raise VtcavError(f"{list_file}: no such list file")
    base = Path(data_prefix) if data_prefix is not None else list_file.parent
    split = split or split_of(list_file)
    rows = []
    with open(list_file, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            where = f"{list_file}:{number}"
            if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
                raise VtcavError(f"{where}: a rawframes list (frame_dir total_frames label); vtcav reads "
                                 f"videos, so give the video list (path label)")
            if len(fields) < 2:
                raise VtcavError(f"{where}: expected 'path label', got one field")
            try:
                labels = [int(v) for v in fields[1:]]
            except ValueError:
                raise VtcavError(f"{where}: the label must be a class index, got '{fields[1]}'") from None
            if len(labels) > 1:
                raise VtcavError(f"{where}: several labels (multi-label lists are not supported)")
            if class_names and not 0 <= labels[0] < len(class_names):
                raise VtcavError(f"{where}: class index {labels[0]} outside the {len(class_names)} class names")
            rows.append((where, fields[0], labels[0]))
    if not rows:
        raise VtcavError(f"{list_file}: no videos listed")
    stems: dict[str, int] = {}
    for _, relative, _ in rows:
        stems[Path(relative).stem] = stems.get(Path(relative).stem, 0) + 1
    seen: set[str] = set()
    for where, relative, label in rows:
        path = (base / relative).resolve()
        if check_files and not path.is_file():
            raise VtcavError(f"{where}: no such video {path} (set --data-prefix to the folder the paths "
                             f"are relative to)")
        stem = Path(relative).stem
        video_id = stem if stems[stem] == 1 else str(Path(relative).with_suffix("")).replace("/", "__")
        if video_id in seen:
            raise VtcavError(f"{where}: {relative} is listed twice")
        seen.add(video_id)
        name = class_names[label] if class_names else str(label)
        yield {"video_id": video_id, "path": str(path), "label": name, "split": split, "class_index": label}
