"""Property-based fuzzing (hypothesis) of every reader, through the commands a user runs.

Each property takes a good file of the small corpus pipeline (tests/corpus/make_corpus.py),
breaks it the way hypothesis draws (a field of any JSON value or removed, a line of random
bytes, the file cut short; for HDF5 a dataset deleted, turned into a scalar, a string array
or a group, re-shaped, soft/external links, an attribute of any value, bytes flipped), runs
the command in this process, and checks the invariant the README promises:

    success, or exit 1/2 with exactly one ``prog: error:`` line that names the file;
    never a traceback, an "internal error" (the frame's last resort), a crash, or a
    leftover temporary file.

Bounded for CI: VTCAV_FUZZ_EXAMPLES examples per property (default 12), no deadline (the
machine may be loaded). bench/fuzz_readers.py runs the same properties longer.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent / "corpus"))
import make_corpus  # noqa: E402

EXAMPLES = int(os.environ.get("VTCAV_FUZZ_EXAMPLES", "12"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("VTCAV_FUZZ_RANDOM"),
                suppress_health_check=list(HealthCheck), database=None)
COUNTS: dict[str, int] = {}


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """The good pipeline files (scores, activations, CAVs, clips, detections, a world)."""
    reuse = os.environ.get("VTCAV_CORPUS_DIR")
    if reuse and (Path(reuse) / "scores.jsonl").exists():
        return Path(reuse)
    folder = tmp_path_factory.mktemp("fuzz")
    make_corpus.build_pipeline(folder)
    return folder


# --------------------------------------------------------------------------- running a command
TOOLS = {"vt-stats": "tools.vt_stats", "vt-cav": "tools.vt_cav", "vt-score": "tools.vt_score",
         "vt-concepts": "tools.vt_concepts", "vt-embed": "tools.vt_embed", "vt-detect": "tools.vt_detect"}


def run_tool(tool: str, args: list[str], cwd: Path) -> tuple[int, str]:
    """Run a command in this process as its console script would; (exit status, stderr)."""
    import importlib

    module = importlib.import_module(TOOLS[tool])
    err, out = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = [tool, *args]
    code = 0
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out), contextlib.chdir(cwd):
            module.main()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        sys.argv = argv
    return code, err.getvalue()


def check_invariant(tool: str, code: int, stderr: str, named: str, folder: Path, before: set[str],
                    property_name: str) -> None:
    """``tool`` is the program name the error lines start with (``vt-detect import``)."""
    COUNTS[property_name] = COUNTS.get(property_name, 0) + 1
    assert "Traceback" not in stderr, stderr
    assert code in (0, 1, 2), f"exit {code}:\n{stderr}"
    errors = [line for line in stderr.splitlines() if line.startswith(f"{tool}: error: ")]
    if code:
        assert len(errors) == 1, f"expected one error line:\n{stderr}"
        assert "internal error" not in errors[0], errors[0]
        assert named in errors[0], f"the error should name {named}:\n{errors[0]}"
    else:
        assert not errors, errors
    left = {p.name for p in folder.iterdir()} - before
    temps = [name for name in left if ".vtcav-" in name or name.endswith(".tmp")]
    assert not temps, f"leftover temporary files {temps}"
    if code:
        assert not [name for name in left if name.startswith("out")], f"a failed run left {left}"


def _scratch(tmp_path_factory) -> Path:
    return Path(tmp_path_factory.mktemp("case"))


# --------------------------------------------------------------------------- strategies
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)


def _dump(value) -> str:
    return json.dumps(value, allow_nan=True)   # NaN and Infinity are what a careless writer emits


@st.composite
def broken_jsonl(draw, records: list[dict]) -> bytes:
    """A JSONL file of ``records`` with one or two things broken."""
    records = [dict(r) for r in records]
    lines = [_dump(r) for r in records]
    for _ in range(draw(st.integers(1, 2))):
        how = draw(st.sampled_from(["value", "remove", "bytes", "cut", "not-object", "duplicate", "empty"]))
        i = draw(st.integers(0, len(records) - 1))
        if how == "value":
            field = draw(st.sampled_from(sorted(records[i])))
            records[i][field] = draw(json_values)
            lines[i] = _dump(records[i])
        elif how == "remove":
            field = draw(st.sampled_from(sorted(records[i])))
            records[i].pop(field, None)
            lines[i] = _dump(records[i])
        elif how == "bytes":
            lines[i] = draw(st.binary(min_size=1, max_size=40)).decode("latin-1")
        elif how == "cut":
            lines[i] = lines[i][: draw(st.integers(0, max(0, len(lines[i]) - 1)))]
        elif how == "not-object":
            lines[i] = _dump(draw(json_values))
        elif how == "duplicate":
            lines.append(lines[i])
        else:
            lines = []
            break
    return "".join(line + "\n" for line in lines).encode("latin-1", "replace")


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- JSONL readers
@FUZZ
@given(data=st.data())
def test_fuzz_score_records(good, tmp_path_factory, data):
    """vt-stats over score records."""
    t = _scratch(tmp_path_factory)
    path = _write(t, "scores.jsonl", data.draw(broken_jsonl(_records(good / "scores.jsonl")[:12])))
    before = {p.name for p in t.iterdir()}
    code, stderr = run_tool("vt-stats", [str(path), "-o", str(t / "out.jsonl"), "-q", "--no-table"], t)
    check_invariant("vt-stats", code, stderr, "scores.jsonl", t, before, "score records")


@FUZZ
@given(data=st.data())
def test_fuzz_detections(good, tmp_path_factory, data):
    """vt-concepts spatial over detection records (the world's ground truth)."""
    t = _scratch(tmp_path_factory)
    dets = [d for d in _records(good / "dets.jsonl")][:10]
    path = _write(t, "dets.jsonl", data.draw(broken_jsonl(dets)))
    before = {p.name for p in t.iterdir()}
    code, stderr = run_tool("vt-concepts", ["spatial", str(path), "--videos", str(good / "world" / "labels.jsonl"),
                                            "--class", "ball", "--frames", "4", "--size", "32",
                                            "-o", str(t / "out.h5"), "-q"], t)
    named = "dets.jsonl" if "dets.jsonl" in stderr else "world"   # a bad box names the video it lies outside
    check_invariant("vt-concepts", code, stderr, named, t, before, "detections")


@FUZZ
@given(data=st.data())
def test_fuzz_manifest(good, tmp_path_factory, data):
    """vt-concepts random over a labels manifest."""
    t = _scratch(tmp_path_factory)
    world = good / "world"
    labels = [{**r, "path": str(world / r["path"])} for r in _records(world / "labels.jsonl")][:4]
    path = _write(t, "labels.jsonl", data.draw(broken_jsonl(labels)))
    before = {p.name for p in t.iterdir()}
    code, stderr = run_tool("vt-concepts", ["random", "--videos", str(path), "--sets", "1", "--clips-per-set", "1",
                                            "--frames", "4", "--size", "32", "-o", str(t / "out.h5"), "-q"], t)
    named = "labels.jsonl" if "labels.jsonl" in stderr else ""
    check_invariant("vt-concepts", code, stderr, named, t, before, "manifests")


# --------------------------------------------------------------------------- HDF5 readers
def _objects(path: Path) -> list[str]:
    found = []
    with h5py.File(path, "r") as handle:
        handle.visit(found.append)
    return sorted(found)


@st.composite
def broken_h5(draw, source: Path, target: Path) -> str:
    """Copy ``source`` to ``target`` with one structural or byte-level fault; say which."""
    shutil.copy(source, target)
    how = draw(st.sampled_from(["delete", "scalar", "strings", "group", "rows", "soft", "loop", "external",
                                "attr", "root-attr", "cut", "flip", "float-to-int"]))
    if how in ("cut", "flip"):
        data = bytearray(target.read_bytes())
        if how == "cut":
            del data[draw(st.integers(0, len(data) - 1)):]
        else:
            for _ in range(draw(st.integers(1, 8))):
                data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
        target.write_bytes(bytes(data))
        return how
    name = draw(st.sampled_from(_objects(source)))
    with h5py.File(target, "r+") as handle:
        item = handle[name]
        parent_name = item.parent.name
        parent, leaf = handle[parent_name], name.rsplit("/", 1)[-1]
        if how == "attr":
            keys = sorted(item.attrs) or ["n"]
            item.attrs[draw(st.sampled_from(keys))] = draw(st.sampled_from(
                [-1, 10**9, "x", np.float32("nan"), np.array([1, 2]), "{}"]))
        elif how == "root-attr":
            handle.attrs[draw(st.sampled_from(["vtcav_kind", "schema_version", "provenance", "run_id"]))] = \
                draw(st.sampled_from([0, "embeddings", "cavs", "clips", "{}", "[]", "{\"model\": 3}", 2**40]))
        else:
            del parent[leaf]
            if how == "scalar":
                parent[leaf] = np.float32(draw(st.floats(allow_nan=True, width=32)))
            elif how == "strings":
                parent[leaf] = np.array(["a", "b"], dtype=h5py.string_dtype())
            elif how == "group":
                parent.create_group(leaf)
            elif how == "rows":
                rows = draw(st.sampled_from([0, 1, 7, 10**7]))
                shape = (rows, *(item.shape[1:] if isinstance(item, h5py.Dataset) and item.shape else ()))
                parent.create_dataset(leaf, shape=shape, dtype="f4", chunks=True if rows else None)
            elif how == "soft":
                parent[leaf] = h5py.SoftLink("/nowhere/at/all")
            elif how == "loop":
                parent[leaf] = h5py.SoftLink(parent_name.rstrip("/") + "/" + leaf)
            elif how == "external":
                parent[leaf] = h5py.ExternalLink("missing.h5", "/x")
            elif how == "float-to-int" and isinstance(item, h5py.Dataset) and item.shape:
                parent.create_dataset(leaf, shape=item.shape, dtype="i1")
    return f"{how} {name}"


def _fuzz_h5(good, tmp_path_factory, data, source: str, tool: str, args, prop: str):
    t = _scratch(tmp_path_factory)
    target = t / f"broken_{source}"
    data.draw(broken_h5(good / source, target), label="fault")
    before = {p.name for p in t.iterdir()}
    code, stderr = run_tool(tool, [a.replace("{f}", str(target)).replace("{c}", str(good)).replace("{t}", str(t))
                                   for a in args], t)
    check_invariant(tool, code, stderr, target.name, t, before, prop)


@FUZZ
@given(data=st.data())
def test_fuzz_embeddings_file(good, tmp_path_factory, data):
    _fuzz_h5(good, tmp_path_factory, data, "acts.h5", "vt-cav", ["{f}", "-o", "{t}/out.h5", "-q"], "embeddings HDF5")


@FUZZ
@given(data=st.data())
def test_fuzz_gradients_file(good, tmp_path_factory, data):
    _fuzz_h5(good, tmp_path_factory, data, "grads.h5", "vt-score", ["{c}/cavs.h5", "{f}", "-o", "{t}/out.jsonl", "-q"],
             "gradients HDF5")


@FUZZ
@given(data=st.data())
def test_fuzz_cavs_file(good, tmp_path_factory, data):
    _fuzz_h5(good, tmp_path_factory, data, "cavs.h5", "vt-score", ["{f}", "{c}/grads.h5", "-o", "{t}/out.jsonl", "-q"],
             "CAV HDF5")


@FUZZ
@given(data=st.data())
def test_fuzz_clips_file(good, tmp_path_factory, data):
    _fuzz_h5(good, tmp_path_factory, data, "concepts.h5", "vt-concepts",
             ["merge", "{f}", "-o", "{t}/out.h5", "-q"], "clip-set HDF5")


# --------------------------------------------------------------------------- sidecars
MARKER = Path("/tmp/vtcav-fuzz-sidecar-ran")
HOSTILE_MODELS = ["os:system", "builtins:eval", "subprocess:getoutput",
                  "vtcav_common.models.checkpoint:read_checkpoint", "mmaction:evil.py",
                  "evil.py", "/etc/passwd", "r3d_18", make_corpus.MODEL, "", "x" * 300]


@FUZZ
@given(sidecar=st.fixed_dictionaries({}, optional={
    "model": st.sampled_from(HOSTILE_MODELS) | json_values,
    "model_kwargs": st.sampled_from([{"command": f"touch {MARKER}"}, {"source": f"open('{MARKER}','w')"},
                                     {"cmd": f"touch {MARKER}"}, {"num_classes": 10**12}, {"num_classes": 4}])
    | json_values,
    "input": st.fixed_dictionaries({}, optional={"frames": json_values, "size": json_values,
                                                  "mean": json_values, "std": json_values}) | json_values,
    "class_names": json_values}), raw=st.none() | st.binary(max_size=30))
def test_fuzz_sidecar(good, tmp_path_factory, sidecar, raw):
    """A sidecar beside the weights: never runs code it names, never a traceback."""
    t = _scratch(tmp_path_factory)
    shutil.copy(make_corpus.WEIGHTS, t / "w.pt")
    (t / "w.json").write_bytes(raw if raw is not None else _dump(sidecar).encode())
    MARKER.unlink(missing_ok=True)
    before = {p.name for p in t.iterdir()}
    code, stderr = run_tool("vt-embed", ["--weights", str(t / "w.pt"), "--list-layers", "-q"], t)
    assert not MARKER.exists(), "a sidecar's callable ran without --trust-checkpoint"
    named = "w.json" if "w.json" in stderr else "w.pt" if "w.pt" in stderr else ""
    check_invariant("vt-embed", code, stderr, named, t, before, "sidecars")


# --------------------------------------------------------------------------- imported track formats
@st.composite
def mot_rows(draw) -> bytes:
    numbers = st.one_of(st.integers(-5, 200), st.floats(allow_nan=True, allow_infinity=True, width=32),
                        st.just(1e12))
    rows = []
    for _ in range(draw(st.integers(0, 6))):
        row = [draw(numbers) for _ in range(draw(st.integers(4, 10)))]
        rows.append(",".join(str(v) for v in row))
    if draw(st.booleans()):
        rows.append(draw(st.binary(max_size=20)).decode("latin-1"))
    return "\n".join(rows).encode("latin-1", "replace")


@st.composite
def coco_json(draw) -> bytes:
    ann = st.fixed_dictionaries({"video_id": st.sampled_from([1, 2, "x"]) | json_values,
                                 "category_id": st.integers(0, 3) | json_values,
                                 "bboxes": st.lists(st.lists(st.floats(allow_nan=True) | st.integers(-100, 1000),
                                                             max_size=5) | st.none(), max_size=3) | json_values,
                                 "score": st.floats(allow_nan=True) | json_values})
    data = {"videos": [{"id": 1, "name": "test_left_10000"}], "categories": [{"id": 1, "name": "ball"}],
            "annotations": draw(st.lists(ann, max_size=3))}
    if draw(st.booleans()):
        data[draw(st.sampled_from(["videos", "categories", "annotations"]))] = draw(json_values)
    return _dump(data).encode()


@st.composite
def yolo_lines(draw) -> bytes:
    value = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-3, 5) | st.text(max_size=3)
    lines = [" ".join(str(draw(value)) for _ in range(draw(st.integers(1, 7)))) for _ in range(draw(st.integers(0, 4)))]
    return "\n".join(lines).encode("utf-8", "replace")


@FUZZ
@given(fmt=st.sampled_from(["mot", "coco", "yolo"]), data=st.data())
def test_fuzz_track_import(good, tmp_path_factory, fmt, data):
    """vt-detect import of MOT, COCO-video and YOLO files against a world video."""
    t = _scratch(tmp_path_factory)
    video = good / "world" / "videos" / "test_left_10000.mp4"
    if fmt == "mot":
        path = _write(t, "gt.txt", data.draw(mot_rows()))
        args = ["import", "mot", str(path), "--video", str(video)]
    elif fmt == "coco":
        path = _write(t, "tracks.json", data.draw(coco_json()))
        args = ["import", "coco", str(path), "--videos", str(video.parent)]
    else:
        folder = t / "labels"
        folder.mkdir()
        path = _write(folder, "test_left_10000_1.txt", data.draw(yolo_lines()))
        args = ["import", "yolo", str(folder), "--videos", str(video.parent)]
    before = {p.name for p in t.iterdir()}
    code, stderr = run_tool("vt-detect", [*args, "-o", str(t / "out.jsonl"), "-q"], t)
    named = path.name if path.name in stderr else path.parent.name
    check_invariant("vt-detect import", code, stderr, named, t, before, f"{fmt} tracks")


def test_fuzz_counts_reported(request):
    """Print how many examples each property ran (the report quotes them)."""
    print("\nfuzz examples:", json.dumps(COUNTS, sort_keys=True))
