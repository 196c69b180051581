"""Imports from other tools: the synthetic world's true tracks, written in each foreign format,
come back through `vt-detect import` as the same detection records; mmaction2 lists become
manifests; arrays and clip folders become clip sets that vt-concepts list shows."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cmd

SIZE = 64     # vt-synth's frame side
FPS = 10.0    # vt-synth's frame rate
CLASSES = ["ball", "square", "triangle"]


@pytest.fixture(scope="module")
def world(make_world) -> Path:
    return make_world(seed=3, train=1, test=0, classes="left,right")


def truth(world: Path) -> list[dict]:
    return [json.loads(line) for line in (world / "gt.jsonl").read_text().splitlines() if line.strip()]


def key(record: dict) -> tuple:
    return (record["video_id"], record["frame"], record["track_id"])


def imported(result) -> dict[tuple, dict]:
    assert result.returncode == 0, result.stderr
    return {key(r): r for r in map(json.loads, result.stdout.splitlines())}


def assert_same_tracks(world: Path, got: dict[tuple, dict], ignore_ids: bool = False) -> None:
    want = truth(world)
    assert len(got) == len(want)
    for record in want:
        mine = got[key(record)]
        assert mine["class_name"] == record["class_name"]
        assert np.allclose(mine["box"], record["box"], atol=0.02)
        assert mine["time"] == pytest.approx(record["frame"] / FPS)
        assert Path(mine["video"]).is_absolute() and Path(mine["video"]).name == Path(record["video"]).name


def test_mot_gt_round_trip(world, tmp_path):
    for video_id in {r["video_id"] for r in truth(world)}:
        seq = tmp_path / video_id / "gt"
        seq.mkdir(parents=True)
        rows = [r for r in truth(world) if r["video_id"] == video_id]
        lines = []
        for r in rows:
            x1, y1, x2, y2 = r["box"]
            lines.append(f"{r['frame'] + 1},{r['track_id']},{x1},{y1},{x2 - x1:.2f},{y2 - y1:.2f},1,"
                         f"{r['class_id'] + 1},1.0")
        lines.append("1,99,0,0,5,5,0,1,1.0")  # conf 0: ignored by the benchmark, and by the import
        (seq / "gt.txt").write_text("\n".join(lines) + "\n")
    names = tmp_path / "names.txt"
    names.write_text("\n".join(CLASSES) + "\n")   # MOT class 1 = line 1
    gt_files = sorted(str(p) for p in tmp_path.glob("*/gt/gt.txt"))
    result = run_cmd("vt-detect", "import", "mot", *gt_files, "--videos", world / "videos", "--class-names", names)
    assert_same_tracks(world, imported(result))


def test_mot_det_without_ids_is_auto_detected(world, tmp_path):
    row = truth(world)[0]
    x1, y1, x2, y2 = row["box"]
    det = tmp_path / "det.txt"
    det.write_text(f"1,-1,{x1},{y1},{x2 - x1},{y2 - y1},0.8,-1,-1,-1\n3,-1,-10,-10,20,20,0.4,-1,-1,-1\n")
    result = run_cmd("vt-detect", "import", det, "--video", world / row["video"], "--min-conf", "0.5")
    records = list(imported(result).values())
    assert len(records) == 1
    assert records[0]["track_id"] is None and records[0]["conf"] == 0.8 and records[0]["frame"] == 0
    assert records[0]["video_id"] == "det"


def test_tao_and_youtube_vis(world, tmp_path):
    rows = truth(world)
    videos = sorted({r["video_id"] for r in rows})
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)]
    # TAO: images per frame, annotations per image with a track id
    images, annotations = [], []
    for v, video_id in enumerate(videos):
        for frame in range(20):
            images.append({"id": v * 100 + frame, "video_id": v, "frame_index": frame, "width": SIZE,
                           "height": SIZE, "file_name": f"frames/{video_id}/{frame:05d}.jpg"})
    for i, r in enumerate(rows):
        x1, y1, x2, y2 = r["box"]
        annotations.append({"id": i, "image_id": videos.index(r["video_id"]) * 100 + r["frame"],
                            "video_id": videos.index(r["video_id"]), "track_id": r["track_id"],
                            "category_id": r["class_id"] + 1, "bbox": [x1, y1, x2 - x1, y2 - y1]})
    tao = tmp_path / "tao.json"
    tao.write_text(json.dumps({"videos": [{"id": v, "name": f"val/{n}"} for v, n in enumerate(videos)],
                               "images": images, "annotations": annotations, "categories": categories,
                               "tracks": []}))
    assert_same_tracks(world, imported(run_cmd("vt-detect", "import", tao, "--videos", world / "videos")))
    # YouTube-VIS: one annotation per track, a box (or null) per frame
    tracks = defaultdict(lambda: [None] * 20)
    for r in rows:
        x1, y1, x2, y2 = r["box"]
        tracks[(r["video_id"], r["track_id"], r["class_id"])][r["frame"]] = [x1, y1, x2 - x1, y2 - y1]
    vis = tmp_path / "ytvis.json"
    vis.write_text(json.dumps({
        "videos": [{"id": v, "width": SIZE, "height": SIZE, "length": 20,
                    "file_names": [f"{n}/{f:05d}.jpg" for f in range(20)]} for v, n in enumerate(videos)],
        "annotations": [{"id": track, "video_id": videos.index(video_id), "category_id": cls + 1, "bboxes": boxes}
                        for (video_id, track, cls), boxes in tracks.items()],
        "categories": categories}))
    got = imported(run_cmd("vt-detect", "import", "coco", vis, "--videos", world / "labels.jsonl"))
    # YouTube-VIS numbers tracks by annotation id; here those are the true ids within each video
    assert_same_tracks(world, got)


def test_yolo_save_txt(world, tmp_path):
    labels = tmp_path / "track" / "labels"
    labels.mkdir(parents=True)
    per_file = defaultdict(list)
    for r in truth(world):
        x1, y1, x2, y2 = r["box"]
        cx, cy, w, h = (x1 + x2) / 2 / SIZE, (y1 + y2) / 2 / SIZE, (x2 - x1) / SIZE, (y2 - y1) / SIZE
        per_file[f"{r['video_id']}_{r['frame'] + 1}.txt"].append(
            f"{r['class_id']} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f} {r['track_id']}")
    for name, lines in per_file.items():
        (labels / name).write_text("\n".join(lines) + "\n")
    data = tmp_path / "data.yaml"
    data.write_text("names:\n  0: ball\n  1: square\n  2: triangle\n")
    result = run_cmd("vt-detect", "import", tmp_path / "track", "--videos", world / "videos",
                     "--class-names", data, "-o", tmp_path / "dets.jsonl")
    assert result.returncode == 0, result.stderr
    got = {key(r): r for r in map(json.loads, (tmp_path / "dets.jsonl").read_text().splitlines())}
    assert_same_tracks(world, got)
    # the import feeds vt-concepts as vt-detect's own records do
    clips = run_cmd("vt-concepts", "spatiotemporal", tmp_path / "dets.jsonl", "--videos", world / "labels.jsonl",
                    "--class", "ball", "--frames", "8", "--size", "32", "-o", tmp_path / "c.h5")
    assert clips.returncode == 0, clips.stderr


def test_missing_video_is_one_line_error(world, tmp_path):
    det = tmp_path / "lonely" / "det" / "det.txt"
    det.parent.mkdir(parents=True)
    det.write_text("1,-1,1,1,5,5,0.9,-1,-1,-1\n")
    result = run_cmd("vt-detect", "import", "mot", det)
    assert result.returncode == 1
    assert result.stderr.startswith("vt-detect import: error: ") and "no video found for 'lonely'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    bad = tmp_path / "bad.txt"
    bad.write_text("1,2,three,4,5,6\n")
    result = run_cmd("vt-detect", "import", "mot", bad, "--video", world / "videos" / "train_left_0000.mp4")
    assert result.returncode == 1 and f"{bad}:1: not a MOT row" in result.stderr


def test_mmaction_list_to_manifest(world, tmp_path):
    (tmp_path / "label_map.txt").write_text("left\nright\n")
    lst = tmp_path / "world_val_list_videos.txt"
    lst.write_text("train_left_0000.mp4 0\ntrain_right_0000.mp4 1\n")
    result = run_cmd("vt-detect", "import", "mmaction", lst, "--class-names", tmp_path / "label_map.txt",
                     "--data-prefix", world / "videos", "-o", tmp_path / "labels.jsonl")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert [(r["video_id"], r["label"], r["split"]) for r in records] == [
        ("train_left_0000", "left", "val"), ("train_right_0000", "right", "val")]
    # the manifest works where vt-synth's does
    clips = run_cmd("vt-concepts", "random", "--videos", tmp_path / "labels.jsonl", "--sets", "1",
                    "--clips-per-set", "2", "--frames", "4", "--size", "16", "-o", tmp_path / "r.h5")
    assert clips.returncode == 0, clips.stderr
    lst.write_text("train_left_0000.mp4 5\n")
    bad = run_cmd("vt-detect", "import", "mmaction", lst, "--class-names", tmp_path / "label_map.txt",
                  "--data-prefix", world / "videos")
    assert bad.returncode == 1 and "class index 5 outside the 2 class names" in bad.stderr
