"""The file contracts: detections and manifests (JSONL), concept clip sets (HDF5)."""

from __future__ import annotations

import io
import json

import h5py
import numpy as np
import pytest

from vtcav_common.formats import clips as clipsets, records
from vtcav_common.core import h5io
from vtcav_common.formats.clips import ClipSetWriter, Sampling
from vtcav_common.core.errors import IncompatibleError, VtcavError

SAMPLING = Sampling(frames=4, size=(8, 6), frame_stride=2)


def _detection(frame: int, track: int | None = 3) -> records.Detection:
    return records.Detection("v1", "videos/v1.mp4", frame, frame / 10, track, 0, "ball", 0.875,
                             (1.5, 2.25, 10.0 + frame, 12.0))


def _clips(n: int, value: int = 0, sampling: Sampling = SAMPLING) -> np.ndarray:
    t, (h, w) = sampling.frames, sampling.size
    rng = np.random.default_rng(value)
    return rng.integers(0, 256, (n, t, h, w, 3), dtype=np.uint8)


def _write_set(writer: ClipSetWriter, name: str, n: int, value: int = 0, kind: str = "spatiotemporal"):
    target = writer.add_set(name, kind=kind, role="random" if kind == "random" else "concept",
                            classes=["ball"], labels=["right"],
                            geometry="random" if kind == "random" else "window", description=f"set {name}")
    t = writer.sampling.frames
    target.append(_clips(n, value, writer.sampling), [f"vid{i}" for i in range(n)],
                  np.arange(n * t).reshape(n, t), np.arange(n), np.ones((n, t, 4)))
    return target


# --------------------------------------------------------------------------- detections JSONL
def test_detections_round_trip(tmp_path):
    written = [_detection(f) for f in range(3)] + [_detection(7, track=None)]
    path = tmp_path / "dets.jsonl"
    with open(path, "w") as handle:
        assert records.write_records(written, handle) == 4
    assert list(records.read_detections(str(path))) == written
    first = json.loads(path.read_text().splitlines()[0])
    assert set(first) == set(records.DETECTION_FIELDS)
    assert first["box"] == [1.5, 2.25, 10.0, 12.0]


def test_detections_extra_fields_are_ignored(tmp_path):
    path = tmp_path / "dets.jsonl"
    record = json.loads(_detection(0).to_json())
    path.write_text(json.dumps({**record, "moving": True}) + "\n\n")
    assert list(records.read_detections(str(path))) == [_detection(0)]


@pytest.mark.parametrize("line, message", [
    ('{"video_id": "v1"', "dets.jsonl:2: not valid JSON"),
    ('[1, 2]', "dets.jsonl:2: expected a JSON object"),
    ('{"video_id": "v1", "frame": 1}', "dets.jsonl:2: detection record lacks field(s) video, time"),
    (None, "dets.jsonl:2: 'box' has x2 <= x1"),
])
def test_bad_detection_lines_name_file_and_line(tmp_path, line, message):
    if line is None:
        record = json.loads(_detection(1).to_json())
        record["box"] = [5, 5, 1, 9]
        line = json.dumps(record)
    path = tmp_path / "dets.jsonl"
    path.write_text(_detection(0).to_json() + "\n" + line + "\n")
    with pytest.raises(VtcavError, match=message.replace("(", r"\(").replace(")", r"\)")):
        list(records.read_detections(str(path)))


def test_detections_from_stdin(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(_detection(0).to_json() + "\n"))
    assert list(records.read_detections("-")) == [_detection(0)]


# --------------------------------------------------------------------------- labels manifest
def test_manifest_resolves_relative_paths(tmp_path):
    manifest = tmp_path / "data" / "labels.jsonl"
    manifest.parent.mkdir()
    manifest.write_text(json.dumps({"video_id": "a", "path": "videos/a.mp4", "label": "right", "split": "test",
                                    "fps": 10}) + "\n"
                        + json.dumps({"video_id": "b", "path": "/abs/b.mp4", "label": "left"}) + "\n")
    a, b = records.read_manifest(str(manifest))
    assert a.path == str(manifest.parent / "videos" / "a.mp4") and a.split == "test" and a.extra == {"fps": 10}
    assert b.path == "/abs/b.mp4" and b.split == "all" and b.label == "left"


def test_manifest_rejects_duplicates_and_missing_fields(tmp_path):
    path = tmp_path / "labels.jsonl"
    row = {"video_id": "a", "path": "a.mp4", "label": "x"}
    path.write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(VtcavError, match="labels.jsonl:2: duplicate video_id 'a'"):
        records.read_manifest(str(path))
    path.write_text(json.dumps({"video_id": "a", "path": "a.mp4"}) + "\n")
    with pytest.raises(VtcavError, match="labels.jsonl:1: manifest record lacks field 'label'"):
        records.read_manifest(str(path))


# --------------------------------------------------------------------------- clip sets
def test_clipset_round_trip(tmp_path):
    out = tmp_path / "c.h5"
    with ClipSetWriter(out, SAMPLING, "test", {"seed": 4}) as writer:
        target = writer.add_set("ball", kind="spatiotemporal", role="concept", classes=["ball"],
                                labels=["right"], geometry="window", description="a ball",
                                provenance={"seed": 4})
        clips = _clips(5, 1)
        # appended in two batches, as a streaming producer does
        target.append(clips[:3], ["a", "b", "c"], np.arange(12).reshape(3, 4), [1, 2, 3], np.zeros((3, 4, 4)))
        target.append(clips[3:], ["d", "e"], np.arange(8).reshape(2, 4), [4, -1], np.ones((2, 4, 4)))
        _write_set(writer, "random_00", 2, 9, kind="random")
    sets = clipsets.list_sets(out)
    assert [(s.name, s.kind, s.role, s.n, s.T, s.H, s.W) for s in sets] == [
        ("ball", "spatiotemporal", "concept", 5, 4, 8, 6), ("random_00", "random", "random", 2, 4, 8, 6)]
    assert sets[0].attrs["classes"] == ["ball"] and sets[0].attrs["labels"] == ["right"]
    assert sets[0].attrs["geometry"] == "window" and sets[0].attrs["description"] == "a ball"
    assert clipsets.file_sampling(out) == SAMPLING
    np.testing.assert_array_equal(clipsets.read_clips(out, "ball"), clips)
    np.testing.assert_array_equal(clipsets.read_clips(out, "ball", 1, 3), clips[1:3])
    batches = list(clipsets.iter_clip_batches(out, "ball", 2))
    assert [len(b) for b in batches] == [2, 2, 1]
    np.testing.assert_array_equal(np.concatenate(batches), clips)
    meta = clipsets.read_set_meta(out, "ball")
    assert meta.video_id == ["a", "b", "c", "d", "e"]
    assert meta.track_id.tolist() == [1, 2, 3, 4, -1] and meta.track_id.dtype == np.int32
    assert meta.frames.shape == (5, 4) and meta.frames.dtype == np.int32
    assert meta.boxes.shape == (5, 4, 4) and meta.boxes.dtype == np.float32
    with h5py.File(out) as handle:
        assert handle.attrs["vtcav_kind"] == "clips" and handle.attrs["schema_version"] == 1
        assert h5io.provenance(handle)["sampling"] == {"frames": 4, "size": [8, 6], "frame_stride": 2}
        clips_ds = handle["concepts/ball/clips"]
        assert clips_ds.chunks == (1, 4, 8, 6, 3) and clips_ds.compression == "gzip"


def test_unknown_set_lists_the_sets(tmp_path):
    out = tmp_path / "c.h5"
    with ClipSetWriter(out, SAMPLING, "test", {}) as writer:
        _write_set(writer, "ball", 1)
    with pytest.raises(VtcavError, match=r"no clip set 'cat' \(sets: ball\)"):
        clipsets.read_clips(out, "cat")


def test_wrong_kind_newer_schema_and_non_hdf5_are_rejected(tmp_path):
    other = tmp_path / "cavs.h5"
    with h5io.create(other, "cavs", "test", {}):
        pass
    with pytest.raises(VtcavError, match="cavs.h5: holds cavs, expected clips"):
        clipsets.list_sets(other)
    newer = tmp_path / "newer.h5"
    with ClipSetWriter(newer, SAMPLING, "test", {}) as writer:
        _write_set(writer, "ball", 1)
    with h5py.File(newer, "a") as handle:
        handle.attrs["schema_version"] = 2
    with pytest.raises(VtcavError, match="newer.h5: clips schema version 2 is newer than this vtcav"):
        clipsets.open_clipset(newer)
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(VtcavError, match="text.h5: not a readable HDF5 file"):
        clipsets.list_sets(text)
    with pytest.raises(VtcavError, match="missing.h5: no such file"):
        clipsets.list_sets(tmp_path / "missing.h5")


def test_append_keeps_sets_and_refuses_duplicates_and_other_sampling(tmp_path):
    out = tmp_path / "c.h5"
    with ClipSetWriter(out, SAMPLING, "test", {"seed": 1}) as writer:
        _write_set(writer, "ball", 2, 1)
    with ClipSetWriter(out, SAMPLING, "test", {"seed": 2}, append=True) as writer:
        _write_set(writer, "square", 3, 2)
    assert [s.name for s in clipsets.list_sets(out)] == ["ball", "square"]
    np.testing.assert_array_equal(clipsets.read_clips(out, "ball"), _clips(2, 1))
    with h5py.File(out) as handle:
        assert h5io.provenance(handle)["combined"] == [{"seed": 1}, {"seed": 2}]
    before = out.read_bytes()

    with pytest.raises(VtcavError, match="already has a clip set 'ball'.*--replace"):
        with ClipSetWriter(out, SAMPLING, "test", {}, append=True) as writer:
            _write_set(writer, "ball", 1)
    other = Sampling(frames=5, size=(8, 6), frame_stride=2)
    with pytest.raises(IncompatibleError, match="holds clips of 4 frames of 8x6.*this run makes 5 frames"):
        with ClipSetWriter(out, other, "test", {}, append=True):
            pass
    assert out.read_bytes() == before  # refused runs leave the file as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.h5"]  # and no temporary files

    with ClipSetWriter(out, SAMPLING, "test", {}, append=True, replace=True) as writer:
        _write_set(writer, "ball", 4, 7)
    assert [(s.name, s.n) for s in clipsets.list_sets(out)] == [("square", 3), ("ball", 4)]


def test_failed_write_leaves_nothing(tmp_path):
    out = tmp_path / "c.h5"
    with pytest.raises(RuntimeError):
        with ClipSetWriter(out, SAMPLING, "test", {}) as writer:
            _write_set(writer, "ball", 2)
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_append_rejects_wrong_shapes(tmp_path):
    with pytest.raises(ValueError, match="clips must be n x 4 x 8 x 6 x 3 uint8"):
        with ClipSetWriter(tmp_path / "c.h5", SAMPLING, "test", {}) as writer:
            target = writer.add_set("ball", kind="spatial", role="concept", geometry="static")
            target.append(np.zeros((1, 4, 6, 8, 3), np.uint8), ["a"], np.zeros((1, 4)), [0], np.zeros((1, 4, 4)))


def test_merge_combines_and_refuses_conflicts(tmp_path):
    a, b, c = tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "c.h5"
    with ClipSetWriter(a, SAMPLING, "test", {"seed": 1}) as writer:
        _write_set(writer, "ball", 2, 1)
    with ClipSetWriter(b, SAMPLING, "test", {"seed": 2}) as writer:
        _write_set(writer, "random_00", 3, 2, kind="random")
        _write_set(writer, "random_01", 3, 3, kind="random")
    merged = tmp_path / "m.h5"
    assert clipsets.merge_files([a, b], merged, "test") == ["ball", "random_00", "random_01"]
    np.testing.assert_array_equal(clipsets.read_clips(merged, "random_01"), _clips(3, 3))
    with pytest.raises(VtcavError, match="clip set 'ball' is also in"):
        clipsets.merge_files([a, merged], tmp_path / "x.h5", "test")
    # with replace, a later file's set wins and takes its place at the end
    names = clipsets.merge_files([merged, b, a], tmp_path / "y.h5", "test", replace=True)
    assert names == ["random_00", "random_01", "ball"]
    assert [s.n for s in clipsets.list_sets(tmp_path / "y.h5")] == [3, 3, 2]
    with ClipSetWriter(c, Sampling(4, (8, 8), 2), "test", {}) as writer:
        _write_set(writer, "square", 1)
    with pytest.raises(IncompatibleError, match="c.h5: holds clips of 4 frames of 8x8.*refusing to mix"):
        clipsets.merge_files([a, c], tmp_path / "z.h5", "test")
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / "z.h5").exists()


def test_writer_output_is_reproducible(tmp_path):
    for name in ("one.h5", "two.h5"):
        with ClipSetWriter(tmp_path / name, SAMPLING, "test", {"seed": 3}) as writer:
            _write_set(writer, "ball", 3, 5)
    assert (tmp_path / "one.h5").read_bytes() == (tmp_path / "two.h5").read_bytes()


def test_bad_set_names_are_refused(tmp_path):
    with pytest.raises(VtcavError, match="bad clip set name"):
        with ClipSetWriter(tmp_path / "c.h5", SAMPLING, "test", {}) as writer:
            writer.add_set("a/b", kind="spatial", role="concept", geometry="static")
