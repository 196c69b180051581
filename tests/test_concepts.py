"""vt-concepts: spatial, spatiotemporal and random clip sets cut from the synthetic world."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cmd
from vtcav_common.formats import clips as clipsets, records
from vtcav_common.formats.clips import ClipSetWriter, Sampling
from vtcav_common.concepts import (DetectionFilter, VideoCatalog, context_window, load_tracks,
                                   plan_spatiotemporal)

DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


def concepts(*args, **kwargs):
    return run_cmd("vt-concepts", *args, **kwargs)


def manifest_labels(world: Path) -> dict[str, str]:
    return {e.video_id: e.label for e in records.read_manifest(str(world / "labels.jsonl"))}


def ball_centroid(frame: np.ndarray) -> np.ndarray:
    """Centre of the red ball's pixels (the background's red is capped well below the ball's)."""
    r, g, b = (frame[..., i].astype(int) for i in range(3))
    ys, xs = np.nonzero((r > 170) & (g < 130) & (b < 130) & (r - g > 80))
    assert len(xs) > 5, "no ball in this frame"
    return np.array([xs.mean(), ys.mean()])


@pytest.fixture(scope="module")
def motion_sets(tiny_world, tmp_path_factory) -> Path:
    """One file: the ball per direction (window geometry), follow geometry, spatial, random."""
    out = tmp_path_factory.mktemp("concepts") / "c.h5"
    gt, labels = tiny_world / "gt.jsonl", tiny_world / "labels.jsonl"
    for label in DIRECTIONS:
        concepts("spatiotemporal", gt, "--videos", labels, "--class", "ball", "--label", label,
                 "-o", out, "--append", check=True)
    concepts("spatiotemporal", gt, "--videos", labels, "--class", "ball", "--geometry", "follow",
             "--name", "ball_follow", "-o", out, "--append", check=True)
    concepts("spatial", gt, "--videos", labels, "--class", "ball", "--label", "right", "-o", out, "--append",
             check=True)
    result = concepts("random", "--videos", labels, "--exclude-label", "right", "--sets", "4",
                      "--clips-per-set", "6", "-o", out, "--append", check=True)
    assert "4 random sets x 6 clips" in result.stderr
    return out


# --------------------------------------------------------------------------- geometry
def test_window_geometry_keeps_the_motion(motion_sets, tiny_world):
    labels = manifest_labels(tiny_world)
    for label, (dx, dy) in DIRECTIONS.items():
        name = f"ball_{label}_spatiotemporal"
        info = clipsets.get_set(motion_sets, name)
        assert (info.kind, info.role, info.attrs["geometry"]) == ("spatiotemporal", "concept", "window")
        assert (info.n, info.T, info.H, info.W) == (5, 16, 64, 64)  # one ball track in each of 5 videos
        meta = clipsets.read_set_meta(motion_sets, name)
        assert {labels[v] for v in meta.video_id} == {label}
        assert (meta.boxes == meta.boxes[:, :1]).all(), "window geometry: one window for the whole clip"
        np.testing.assert_array_equal(np.diff(meta.frames, axis=1), 1)
        for clip in clipsets.read_clips(motion_sets, name):
            shift = ball_centroid(clip[-1]) - ball_centroid(clip[0])
            along = shift @ np.array([dx, dy])
            across = abs(shift @ np.array([dy, dx]))
            assert along > 15 and across < 3, f"{name}: ball moved {shift} in the clip"


def test_follow_geometry_keeps_the_object_still(motion_sets):
    meta = clipsets.read_set_meta(motion_sets, "ball_follow")
    assert clipsets.get_set(motion_sets, "ball_follow").n == 20
    moving = np.abs(meta.boxes[:, -1] - meta.boxes[:, 0]).max(axis=1)
    assert (moving > 10).all(), "follow geometry: the window moves with the ball"
    for clip in clipsets.read_clips(motion_sets, "ball_follow", 0, 8):
        shift = ball_centroid(clip[-1]) - ball_centroid(clip[0])
        assert np.abs(shift).max() < 4, f"the followed ball moved {shift} inside its clip"


def test_spatial_clips_are_constant_and_spatiotemporal_are_not(motion_sets):
    spatial = clipsets.read_clips(motion_sets, "ball_right_spatial")
    assert spatial.shape == (5, 16, 64, 64, 3)
    assert (spatial == spatial[:, :1]).all()
    meta = clipsets.read_set_meta(motion_sets, "ball_right_spatial")
    assert (meta.frames == meta.frames[:, :1]).all() and (meta.track_id == 1).all()
    assert clipsets.get_set(motion_sets, "ball_right_spatial").attrs["geometry"] == "static"
    dynamic = clipsets.read_clips(motion_sets, "ball_right_spatiotemporal").astype(int)
    change = np.abs(dynamic[:, -1] - dynamic[:, 0]).mean(axis=(1, 2, 3))
    assert (change > 5).all()


def test_random_sets(motion_sets, tiny_world):
    labels = manifest_labels(tiny_world)
    sets = [s for s in clipsets.list_sets(motion_sets) if s.role == "random"]
    assert [s.name for s in sets] == ["random_00", "random_01", "random_02", "random_03"]
    assert all((s.kind, s.n, s.T, s.H, s.W, s.attrs["geometry"]) == ("random", 6, 16, 64, 64, "random")
               for s in sets)
    draws = []
    for s in sets:
        meta = clipsets.read_set_meta(motion_sets, s.name)
        assert "right" not in {labels[v] for v in meta.video_id}
        assert (meta.track_id == -1).all()
        assert (meta.boxes == meta.boxes[:, :1]).all()
        sides = meta.boxes[:, 0, 2] - meta.boxes[:, 0, 0]
        assert (sides >= 0.3 * 64 - 1).all() and (sides <= 64).all()
        draws += [(v, int(f[0]), tuple(b[0])) for v, f, b in zip(meta.video_id, meta.frames, meta.boxes)]
    assert len(set(draws)) == len(draws) == 24, "no clip is drawn twice"
    assert len({d[0] for d in draws}) > 5, "draws spread over many videos"


# --------------------------------------------------------------------------- filters
def test_class_split_and_max_clips_filters(tiny_world, tmp_path):
    out = tmp_path / "f.h5"
    gt, labels = tiny_world / "gt.jsonl", tiny_world / "labels.jsonl"
    concepts("spatial", gt, "--videos", labels, "--class", "square", "--split", "test", "-o", out, check=True)
    meta = clipsets.read_set_meta(out, "square_spatial")
    assert meta.video_id and all(v.startswith("test_") for v in meta.video_id)
    assert (meta.track_id >= 2).all()  # the ball is track 1
    square = clipsets.read_clips(out, "square_spatial")
    blue = (square[..., 2] > 180) & (square[..., 0] < 90)
    assert (blue.mean(axis=(1, 2, 3)) > 0.15).all(), "square crops are mostly the blue square"

    result = concepts("spatiotemporal", gt, "--videos", labels, "--class", "ball", "--clips-per-track", "3",
                      "--max-clips", "7", "--seed", "1", "-o", out, "--append", check=True)
    assert "7 clips" in result.stderr
    meta = clipsets.read_set_meta(out, "ball_spatiotemporal")
    assert len(meta.video_id) == 7
    again = tmp_path / "again.h5"
    concepts("spatiotemporal", gt, "--videos", labels, "--class", "ball", "--clips-per-track", "3",
             "--max-clips", "7", "--seed", "2", "-o", again, check=True)
    other = clipsets.read_set_meta(again, "ball_spatiotemporal")
    assert list(zip(meta.video_id, meta.frames[:, 0])) != list(zip(other.video_id, other.frames[:, 0]))

    concepts("spatiotemporal", gt, "--videos", labels, "--class", "ball", "--exclude-label", "up",
             "--exclude-label", "down", "--frames", "8", "--frame-stride", "2", "-o", again, check=True)
    meta = clipsets.read_set_meta(again, "ball_not-down+up_spatiotemporal")
    assert {manifest_labels(tiny_world)[v] for v in meta.video_id} == {"left", "right"}
    np.testing.assert_array_equal(np.diff(meta.frames, axis=1), 2)


def test_min_box_and_min_conf_filter_everything(tiny_world, tmp_path):
    result = concepts("spatial", tiny_world / "gt.jsonl", "--class", "ball", "--min-box", "40",
                      "-o", tmp_path / "x.h5")
    assert result.returncode == 1 and "no detections of class ball" in result.stderr
    assert not (tmp_path / "x.h5").exists()


def test_gappy_tracks_are_interpolated(tiny_world, tmp_path):
    """Detections every third frame still give full clips, with boxes filled in between."""
    sparse = tmp_path / "sparse.jsonl"
    lines = [line for line in (tiny_world / "gt.jsonl").read_text().splitlines()
             if json.loads(line)["frame"] % 3 == 0 or json.loads(line)["frame"] == 19]
    sparse.write_text("\n".join(lines) + "\n")
    catalog = VideoCatalog.open(str(tiny_world / "labels.jsonl"))
    tracks, counts = load_tracks(str(sparse), DetectionFilter(classes=frozenset({"ball"})), catalog)
    assert counts["ball"] == 20 * 8 and len(tracks) == 20
    dense, _ = load_tracks(str(tiny_world / "gt.jsonl"), DetectionFilter(classes=frozenset({"ball"})), catalog)
    for filled, true in zip(tracks, dense):
        np.testing.assert_array_equal(filled.frames, np.arange(20))
        np.testing.assert_allclose(filled.boxes, true.boxes, atol=0.05)  # the ball moves in a straight line
    plans, stats = plan_spatiotemporal(tracks, "ball", Sampling(16, (64, 64), 1))
    assert len(plans) == 20 and stats.too_short == 0
    # a gap longer than --max-gap splits a track: pieces of 1 frame are too short for a clip
    split, _ = load_tracks(str(sparse), DetectionFilter(classes=frozenset({"ball"})), catalog, max_gap=1)
    assert all(t.length <= 2 for t in split)
    result = concepts("spatiotemporal", sparse, "--videos", tiny_world / "labels.jsonl", "--class", "ball",
                      "--max-gap", "1", "-o", tmp_path / "x.h5")
    assert result.returncode == 1 and "shorter than 16 frames" in result.stderr


def test_context_window_is_square_inside_the_frame():
    assert context_window((10, 10, 20, 30), 64, 64, (64, 64), 1.5) == (0, 5, 30, 35)
    x1, y1, x2, y2 = context_window((50, 50, 64, 60), 64, 48, (32, 32), 2.0)
    assert x2 - x1 == y2 - y1 == 28 and x2 <= 64 and y2 <= 48 and x1 >= 0 and y1 >= 0
    assert context_window((0, 0, 100, 10), 64, 48, (32, 32), 1.0) == (16, 0, 64, 48)  # shrunk, shifted in
    wide = context_window((10, 10, 20, 20), 64, 64, (16, 32), 1.0)  # output twice as wide as high
    assert wide[2] - wide[0] == 2 * (wide[3] - wide[1])


# --------------------------------------------------------------------------- composition
def test_pipe_from_stdin_and_determinism(tiny_world, tmp_path):
    gt, labels = tiny_world / "gt.jsonl", tiny_world / "labels.jsonl"
    piped = concepts("spatiotemporal", "-", "--videos", labels, "--class", "ball", "--label", "up",
                     "-o", tmp_path / "piped.h5", input=gt.read_text(), check=True)
    assert piped.stdout == "" and "5 clips from 5 videos" in piped.stderr
    concepts("spatiotemporal", gt, "--videos", labels, "--class", "ball", "--label", "up",
             "-o", tmp_path / "file.h5", check=True)
    np.testing.assert_array_equal(clipsets.read_clips(tmp_path / "piped.h5", "ball_up_spatiotemporal"),
                                  clipsets.read_clips(tmp_path / "file.h5", "ball_up_spatiotemporal"))
    for name in ("r1.h5", "r2.h5"):
        concepts("random", "--videos", labels, "--sets", "2", "--clips-per-set", "3", "--seed", "5",
                 "-o", tmp_path / name, "-q", check=True)
    assert (tmp_path / "r1.h5").read_bytes() == (tmp_path / "r2.h5").read_bytes()
    concepts("random", "--videos", labels, "--sets", "2", "--clips-per-set", "3", "--seed", "6",
             "-o", tmp_path / "r3.h5", "-q", check=True)
    assert (tmp_path / "r1.h5").read_bytes() != (tmp_path / "r3.h5").read_bytes()


def test_videos_from_a_folder_or_the_records(tiny_world, tmp_path):
    """Without a manifest, videos are found in a folder by name or at the records' own paths."""
    for videos in (["--videos", tiny_world / "videos"], []):
        out = tmp_path / "v.h5"
        concepts("spatial", tiny_world / "gt.jsonl", *videos, "--class", "triangle", "--max-clips", "3",
                 "-o", out, check=True, cwd=tmp_path)
        assert clipsets.get_set(out, "triangle_spatial").n == 3


def test_merge_and_list(motion_sets, tiny_world, tmp_path):
    extra = tmp_path / "extra.h5"
    concepts("spatial", tiny_world / "gt.jsonl", "--class", "square", "--max-clips", "4", "-o", extra, check=True)
    merged = tmp_path / "all.h5"
    concepts("merge", motion_sets, extra, "-o", merged, check=True)
    listing = [json.loads(line) for line in concepts("list", merged, check=True).stdout.splitlines()]
    assert [r["name"] for r in listing][-2:] == ["random_03", "square_spatial"]
    assert listing[-1]["n"] == 4 and listing[-1]["kind"] == "spatial"
    again = concepts("merge", merged, extra, "-o", tmp_path / "x.h5")
    assert again.returncode == 1 and "'square_spatial' is also in" in again.stderr
    small = tmp_path / "small.h5"
    concepts("spatial", tiny_world / "gt.jsonl", "--class", "square", "--size", "32", "-o", small, check=True)
    refused = concepts("merge", merged, small, "-o", tmp_path / "x.h5")
    assert refused.returncode == 1 and "refusing to mix" in refused.stderr
    assert not (tmp_path / "x.h5").exists()


# --------------------------------------------------------------------------- bad input
@pytest.fixture()
def existing(tmp_path, tiny_world) -> Path:
    """An output file that every failed run must leave exactly as it was."""
    out = tmp_path / "keep.h5"
    with ClipSetWriter(out, Sampling(16, (64, 64), 1), "test", {"seed": 0}) as writer:
        target = writer.add_set("ball", kind="spatial", role="concept", classes=["ball"], geometry="static")
        target.append(np.zeros((2, 16, 64, 64, 3), np.uint8), ["a", "b"], np.zeros((2, 16)), [1, 1],
                      np.zeros((2, 16, 4)))
    return out


def _detections_for(tiny_world: Path, video_path: str, path: Path) -> Path:
    """The ball detections of one video, pointing at another video file."""
    lines = [json.loads(line) for line in (tiny_world / "gt.jsonl").read_text().splitlines()]
    chosen = [{**r, "video": video_path} for r in lines if r["video_id"] == "train_right_0000"]
    path.write_text("".join(json.dumps(r) + "\n" for r in chosen))
    return path


@pytest.mark.parametrize("case", ["missing", "unparsable", "no-match", "unknown-class", "unknown-label",
                                  "untracked", "missing-video", "corrupt-video", "duplicate-name",
                                  "other-sampling"])
def test_bad_input_fails_cleanly(case, tiny_world, tmp_path, existing):
    gt, labels = tiny_world / "gt.jsonl", tiny_world / "labels.jsonl"
    before = existing.read_bytes()
    broken = tmp_path / "broken.jsonl"
    if case == "missing":
        args, code, message = ["spatial", tmp_path / "nope.jsonl"], 1, "nope.jsonl: no such file"
    elif case == "unparsable":
        broken.write_text(gt.read_text().splitlines()[0] + "\n{\"video_id\": \n")
        args, code, message = ["spatial", broken], 1, "broken.jsonl:2: not valid JSON"
    elif case == "no-match":
        args, code, message = (["spatial", gt, "--videos", labels, "--class", "square", "--label", "up",
                                "--min-conf", "1.0", "--min-box", "100"], 1, "no detections of class square")
    elif case == "unknown-class":
        args, code, message = (["spatiotemporal", gt, "--class", "racket"], 2,
                                ("unknown class(es) racket;", "gt.jsonl has ball, square, triangle"))
    elif case == "unknown-label":
        args, code, message = (["spatial", gt, "--videos", labels, "--label", "sideways"], 2,
                                "unknown label(s) sideways")
    elif case == "untracked":
        broken.write_text("".join(json.dumps({**json.loads(line), "track_id": None}) + "\n"
                                  for line in gt.read_text().splitlines()[:200]))
        args, code, message = ["spatiotemporal", broken], 1, "have no track ids"
    elif case == "missing-video":
        gone = tmp_path / "gone.mp4"
        args, code, message = ["spatial", _detections_for(tiny_world, str(gone), broken)], 1, f"{gone}: no such file"
    elif case == "corrupt-video":
        bad = tmp_path / "bad.mp4"
        bad.write_bytes(b"\x00not a video" * 100)
        args, code, message = ["spatiotemporal", _detections_for(tiny_world, str(bad), broken)], 1, f"{bad}: "
    elif case == "duplicate-name":
        args, code, message = (["spatial", gt, "--class", "ball", "--name", "ball", "--append"], 1,
                                "already has a clip set 'ball'")
    else:
        args, code, message = (["spatial", gt, "--class", "ball", "--name", "other", "--append", "--frames", "8"],
                               1, "refusing to mix")
    result = concepts(*args, "-o", existing)
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vt-concepts: error: "), result.stderr
    for part in (message,) if isinstance(message, str) else message:
        assert part in lines[0], result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert existing.read_bytes() == before
    assert sorted(p.name for p in existing.parent.glob(".*")) == []  # no temporary files left


def test_replace_overwrites_a_set(tiny_world, existing):
    result = concepts("spatial", tiny_world / "gt.jsonl", "--class", "ball", "--max-clips", "3", "--name", "ball",
                      "--append", "--replace", "-o", existing)
    assert result.returncode == 0, result.stderr
    assert [(s.name, s.n) for s in clipsets.list_sets(existing)] == [("ball", 3)]


def test_help_and_version():
    result = concepts("spatiotemporal", "--help", check=True)
    assert "follow" in result.stdout and "Examples" in result.stdout
    assert concepts("random", "--version", check=True).stdout.startswith("vtcav ")
