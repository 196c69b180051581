"""The bad-input and fault corpus: a generator of broken files, and the cases that use them.

Nothing here is a stored blob: every broken file is made from a small good pipeline run
(vt-synth -> vt-concepts -> vt-embed -> vt-cav -> vt-score) by cutting, corrupting or
re-labelling it.  ``tests/test_corpus.py`` runs every case as a user would (a process,
its exit status, its stderr); run this file alone to build a corpus folder by hand:

    python tests/corpus/make_corpus.py /tmp/corpus      # builds it and lists the cases

A case names the command line (``{c}`` is the corpus folder, ``{t}`` the case's own
scratch folder), the status a user should get, a word the one error line must contain
(usually the file it is about), and the output that must not appear or be damaged.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[2]
# Point the corpus at another checkout (e.g. the code before a fix) with VTCAV_CORPUS_CODE.
CODE = Path(os.environ.get("VTCAV_CORPUS_CODE", REPO))
MODEL = "vtcav_common.models.tiny:motion_c3d"
WEIGHTS = REPO / "weights" / "classifier.pt"
DETECTOR = REPO / "weights" / "detector.pt"
MODULES = {"vt-synth": "tools.vt_synth", "vt-detect": "tools.vt_detect", "vt-concepts": "tools.vt_concepts",
           "vt-embed": "tools.vt_embed", "vt-cav": "tools.vt_cav", "vt-score": "tools.vt_score",
           "vt-stats": "tools.vt_stats", "vt-explain": "tools.vt_explain", "vt-ace": "tools.vt_ace",
           "vt-report": "tools.vt_report", "vt-merge": "tools.vt_merge"}
_LAUNCH = "import sys, importlib; sys.argv = sys.argv[1:]; importlib.import_module(sys.argv[0]).main()"


def command(tool: str) -> list[str]:
    """The argv prefix that runs ``tool`` from CODE, as its console script would."""
    return [sys.executable, "-c", _LAUNCH, MODULES[tool]]


def environment() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(CODE), "YOLO_OFFLINE": "1", "MPLBACKEND": "Agg",
           "PYTHONWARNINGS": "ignore"}
    env.pop("VTCAV_DEBUG", None)
    return env


def run(tool: str, *args, cwd: Path | None = None) -> None:
    result = subprocess.run(command(tool) + [str(a) for a in args], capture_output=True, text=True,
                            env=environment(), cwd=cwd or "/")  # not the repo: CODE must win
    if result.returncode != 0:
        raise RuntimeError(f"corpus set-up: {tool} {' '.join(map(str, args))} failed:\n{result.stderr}")


# --------------------------------------------------------------------------- the good run
def build_pipeline(c: Path) -> None:
    """A tiny but complete run: the good files that the broken ones are made from."""
    embed = ["--model", MODEL, "--weights", WEIGHTS, "--layers", "block1", "-q"]
    run("vt-synth", c / "world", "--train-per-class", "2", "--test-per-class", "1", "--classes", "right,left",
        "--seed", "3", "-q")
    labels = c / "world" / "labels.jsonl"
    shutil.copy(c / "world" / "gt.jsonl", c / "dets.jsonl")
    sampling = ["--videos", labels, "--frames", "8", "--size", "32", "-q"]
    run("vt-concepts", "spatiotemporal", c / "dets.jsonl", *sampling, "--class", "ball", "--label", "right",
        "--name", "ball_right", "-o", c / "concepts.h5")
    run("vt-concepts", "random", *sampling, "--exclude-label", "right", "--sets", "2", "--clips-per-set", "3",
        "-o", c / "concepts.h5", "--append")
    run("vt-embed", *embed, c / "concepts.h5", "-o", c / "acts.h5")
    run("vt-embed", *embed, labels, "--label", "right", "--target", "right", "-o", c / "grads.h5")
    run("vt-cav", c / "acts.h5", "-o", c / "cavs.h5", "-q")
    run("vt-cav", c / "acts.h5", "--classifier", "mean", "-o", c / "cavs_mean.h5", "-q")
    run("vt-score", c / "cavs.h5", c / "grads.h5", "-o", c / "scores.jsonl", "-q")
    run("vt-score", c / "cavs_mean.h5", c / "grads.h5", "-o", c / "scores_mean.jsonl", "-q")


# --------------------------------------------------------------------------- broken files
def _copy_h5(c: Path, source: str, name: str, edit) -> None:
    shutil.copy(c / source, c / name)
    with h5py.File(c / name, "r+") as handle:
        edit(handle)


def _set_attr(name, value):
    def edit(handle):
        handle.attrs[name] = value
    return edit


def _edit_provenance(change):
    def edit(handle):
        provenance = json.loads(handle.attrs["provenance"])
        change(provenance)
        handle.attrs["provenance"] = json.dumps(provenance, sort_keys=True)
    return edit


def _poke(path: str, value: float):
    def edit(handle):
        data = handle[path]
        flat = data[()]
        flat.reshape(-1)[min(5, flat.size - 1)] = value
        data[...] = flat
    return edit


def _keep_rows(set_name: str, rows: int):
    """Cut one set of an embeddings file to its first ``rows`` clips."""
    def edit(handle):
        group = handle["sets"][set_name]
        for key in ("ids", "labels", "logits"):
            if key in group:
                _shrink(group, key, rows)
        for what in ("acts", "grads"):
            for layer in list(group.get(what, {})):
                _shrink(group[what], layer, rows)
        group.attrs["n"] = rows
    return edit


def _shrink(group, key, rows):
    data = group[key][:rows]
    dtype = group[key].dtype
    del group[key]
    group.create_dataset(key, data=data, dtype=dtype)


def _drop_sets(role: str):
    def edit(handle):
        for name in [n for n, g in handle["sets"].items() if g.attrs.get("role") == role]:
            del handle["sets"][name]
    return edit


def _jsonl(path: Path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _write_video(path: Path, frames: int, height: int, width: int) -> None:
    import cv2
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (width, height))
    rng = np.random.default_rng(frames * 1000 + width)
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    writer.release()


class _Boom:
    """Unpickling this writes a marker file: proof that a checkpoint's code ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def build_broken(c: Path) -> None:
    world = c / "world"
    labels = [json.loads(line) for line in (world / "labels.jsonl").read_text().splitlines()]
    good_video = Path(labels[0]["path"])
    good_video = good_video if good_video.is_absolute() else world / good_video
    dets = [json.loads(line) for line in (c / "dets.jsonl").read_text().splitlines()]
    scores = (c / "scores.jsonl").read_text()

    # videos: broken, empty, truncated, one frame, tiny, odd-shaped
    videos = c / "videos"
    videos.mkdir()
    (videos / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(20000))
    (videos / "empty.mp4").write_bytes(b"")
    data = good_video.read_bytes()
    (videos / "truncated.mp4").write_bytes(data[: len(data) // 3])
    _write_video(videos / "oneframe.mp4", 1, 64, 64)
    _write_video(videos / "tiny.mp4", 20, 8, 8)
    _write_video(videos / "odd.mp4", 20, 37, 91)
    for stem in ("garbage", "empty", "truncated", "oneframe", "tiny", "odd"):
        _jsonl(c / f"labels_{stem}.jsonl", [{"video_id": stem, "path": f"videos/{stem}.mp4", "label": "right",
                                             "split": "train"}])

    # JSONL: not UTF-8, empty, one huge line, malformed, not objects, bare NaN, wrong records
    (c / "latin1.jsonl").write_bytes(scores.splitlines()[0].replace('"block1"', '"bl\u00f6ck1"')
                                     .encode("latin-1") + b"\n")
    (c / "latin1_dets.jsonl").write_bytes(json.dumps({**dets[0], "class_name": "b\u00e4ll"}, ensure_ascii=False)
                                          .encode("latin-1") + b"\n")
    (c / "latin1_labels.jsonl").write_bytes(
        json.dumps({"video_id": "v\u00e9", "path": "videos/odd.mp4", "label": "right"}, ensure_ascii=False)
        .encode("latin-1") + b"\n")
    (c / "empty.jsonl").write_text("")
    (c / "blank.jsonl").write_text("\n\n  \n")
    (c / "huge.jsonl").write_text('{"target": "' + "x" * (8 << 20) + "\n")
    (c / "malformed.jsonl").write_text(scores.splitlines()[0] + "\n" + scores.splitlines()[1][:40] + "\n")
    (c / "array.jsonl").write_text("[1, 2, 3]\n")
    (c / "nan_scores.jsonl").write_text(scores.replace('"score":', '"score":NaN,"was":', 1))
    (c / "not_scores.jsonl").write_text((c / "dets.jsonl").read_text())
    (c / "no_null.jsonl").write_text("".join(line + "\n" for line in scores.splitlines()
                                             if '"kind":"null"' not in line.replace(" ", "")))
    (c / "dup_scores.jsonl").write_text(scores + scores)
    (c / "mixed_scores.jsonl").write_text(scores + (c / "scores_mean.jsonl").read_text())
    _jsonl(c / "unknown_video.jsonl", [{**d, "video_id": "nowhere"} for d in dets])
    first_video = [d for d in dets if d["video_id"] == dets[0]["video_id"]]
    _jsonl(c / "past_end.jsonl", [{**d, "frame": d["frame"] + 500} for d in first_video])
    _jsonl(c / "no_track.jsonl", [{**d, "track_id": None} for d in dets])
    _jsonl(c / "bad_box.jsonl", [{**dets[0], "box": [5, 5, 1, 1]}])
    _jsonl(c / "missing_video.jsonl", [{"video_id": "gone", "path": "videos/gone.mp4", "label": "right"}])
    _jsonl(c / "no_fields.jsonl", [{"video_id": "x"}])

    # HDF5: foreign, truncated, future schema, wrong kind, a text file, a broken vtcav file
    with h5py.File(c / "foreign.h5", "w") as handle:
        handle["data"] = np.arange(10)
    for name in ("acts", "cavs", "concepts", "grads"):
        data = (c / f"{name}.h5").read_bytes()
        (c / f"{name}_trunc.h5").write_bytes(data[: len(data) // 2])
    _copy_h5(c, "acts.h5", "acts_future.h5", _set_attr("schema_version", 99))
    _copy_h5(c, "cavs.h5", "cavs_future.h5", _set_attr("schema_version", 99))
    _copy_h5(c, "concepts.h5", "concepts_future.h5", _set_attr("schema_version", 99))
    (c / "text.h5").write_text("this is not HDF5\n")
    (c / "empty.h5").write_bytes(b"")
    _copy_h5(c, "acts.h5", "acts_nosets.h5", lambda h: h.__delitem__("sets"))

    # provenance that does not match, non-finite numbers, too few clips, no random sets
    _copy_h5(c, "grads.h5", "grads_other_model.h5",
             _edit_provenance(lambda p: p["model"].update(weights_sha256="0" * 64)))
    _copy_h5(c, "acts.h5", "acts_other_input.h5",
             _edit_provenance(lambda p: p["input"].update(frames=p["input"].get("frames", 16) + 1)))
    grads_set = next(iter(h5py.File(c / "grads.h5", "r")["sets"]))
    _copy_h5(c, "acts.h5", "acts_nan.h5", _poke("sets/ball_right/acts/block1", np.nan))
    _copy_h5(c, "acts.h5", "acts_inf.h5", _poke("sets/random_00/acts/block1", np.inf))
    _copy_h5(c, "grads.h5", "grads_nan.h5", _poke(f"sets/{grads_set}/grads/block1", np.nan))
    _copy_h5(c, "acts.h5", "acts_one_clip.h5", _keep_rows("ball_right", 1))
    _copy_h5(c, "acts.h5", "acts_no_random.h5", _drop_sets("random"))

    # checkpoints: a pickle that runs code, garbage, truncated, empty, the wrong model's
    ckpt = c / "ckpt"
    ckpt.mkdir()
    with open(ckpt / "evil.pt", "wb") as handle:
        pickle.dump({"state_dict": _Boom(str(c / "PWNED"))}, handle)
    (ckpt / "garbage.pt").write_bytes(np.random.default_rng(1).bytes(5000))
    data = WEIGHTS.read_bytes()
    (ckpt / "truncated.pt").write_bytes(data[: len(data) // 2])
    (ckpt / "empty.pt").write_bytes(b"")
    data = DETECTOR.read_bytes()
    (ckpt / "detector_truncated.pt").write_bytes(data[: len(data) // 2])
    _cut_pickle(WEIGHTS, ckpt / "badpickle.pt")
    (c / "names.txt").write_bytes(b"r\xe9ght\nleft\n")


def _cut_pickle(source: Path, target: Path) -> None:
    """A checkpoint whose zip is whole but whose pickle inside is cut short."""
    import zipfile

    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for item in zin.infolist():
            content = zin.read(item.filename)
            zout.writestr(item, content[: len(content) // 2] if item.filename.endswith("data.pkl") else content)


def build_hostile(c: Path) -> None:
    """Issue 24's classes: code in a sidecar, damaged HDF5 structure, silent wrong values,
    resource bombs, inputs that an output other than -o would replace."""
    import h5py as _h5

    run("vt-stats", c / "scores.jsonl", "-o", c / "stats.jsonl", "-q")
    shutil.copy(c / "stats.jsonl", c / "stats.md")
    labels = [json.loads(line) for line in (c / "world" / "labels.jsonl").read_text().splitlines()]
    first = Path(labels[0]["path"])
    shutil.copy(first if first.is_absolute() else c / "world" / first, c / "clip.mp4")
    # a sidecar naming a callable (it would create PWNED)
    side = c / "sidecar"
    side.mkdir()
    shutil.copy(WEIGHTS, side / "w.pt")
    (side / "w.json").write_text(json.dumps({"model": "os:system", "model_kwargs": {"command": f"touch {c}/PWNED"}}))
    shutil.copy(WEIGHTS, side / "big.pt")
    (side / "big.json").write_text(json.dumps({"model": MODEL, "model_kwargs": {"num_classes": 10**12}}))

    # HDF5 structure: links, loops, groups/scalars/strings where arrays belong, rows never stored
    def soft(h):
        group = h["sets/ball_right/acts"]
        del group["block1"]
        group["block1"] = _h5.SoftLink("/nowhere")

    def external(h):
        group = h["sets/ball_right/acts"]
        del group["block1"]
        group["block1"] = _h5.ExternalLink("gone.h5", "/x")

    def loop(h):
        h["sets/ball_right/loop"] = h["sets"]

    def rows(h):
        group = h["sets/ball_right"]
        del group["logits"]
        group.create_dataset("logits", shape=(10**7, 4), dtype="f4", chunks=(1000, 4))

    def strings(h):
        group = h["sets/ball_right/acts"]
        del group["block1"]
        group["block1"] = np.array(["a", "b"], dtype=_h5.string_dtype())

    def scalar_ids(h):
        del h["sets/ball_right/ids"]
        h["sets/ball_right/ids"] = np.float32(3)

    def short_ids(h):
        ids = h["sets/ball_right/ids"][:1]
        del h["sets/ball_right/ids"]
        h["sets/ball_right"].create_dataset("ids", data=ids, dtype=_h5.string_dtype())

    def group_vectors(h):
        layer = next(iter(h["layers"].values()))
        del layer["vectors"]
        layer.create_group("vectors")

    def fewer_vectors(h):
        layer = next(iter(h["layers"].values()))
        vectors = layer["vectors"][:-1]
        del layer["vectors"]
        layer["vectors"] = vectors

    for name, source, edit in (("acts_soft", "acts", soft), ("acts_external", "acts", external),
                               ("acts_loop", "acts", loop), ("acts_bigrows", "acts", rows),
                               ("acts_strings", "acts", strings), ("acts_scalar_ids", "acts", scalar_ids),
                               ("acts_short_ids", "acts", short_ids), ("cavs_group", "cavs", group_vectors),
                               ("cavs_fewer", "cavs", fewer_vectors)):
        _copy_h5(c, f"{source}.h5", f"{name}.h5", edit)
    # shards merged, then one shard deleted
    embed = ["--model", MODEL, "--weights", WEIGHTS, "--layers", "block1", "-q", c / "concepts.h5"]
    run("vt-embed", *embed, "--shard", "0/2", "-o", c / "shard0.h5")
    run("vt-embed", *embed, "--shard", "1/2", "-o", c / "shard1.h5")
    run("vt-merge", c / "shard0.h5", c / "shard1.h5", "-o", c / "merged.h5", "-q")
    (c / "shard1.h5").unlink()

    # weights that make the model output NaN (the writer must not store them)
    import torch

    state = torch.load(WEIGHTS, weights_only=True)
    first = next(k for k in state if k.endswith("weight"))
    state[first][:] = float("nan")
    torch.save(state, c / "nan_weights.pt")

    # arrays: Python objects, 200 GB declared, cut short
    np.savez(c / "objects.npz", clips=np.array([{"x": 1}], dtype=object))
    with open(c / "huge.npy", "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "|u1", "fortran_order": False,
                                                      "shape": (4000, 16, 1024, 1024, 3)})
    np.save(c / "clips.npy", np.zeros((2, 8, 32, 32, 3), np.uint8))
    (c / "clips_cut.npy").write_bytes((c / "clips.npy").read_bytes()[:100])

    # records with silent wrong values
    dets = [json.loads(line) for line in (c / "dets.jsonl").read_text().splitlines()]
    _jsonl(c / "dets_conf7.jsonl", [{**d, "conf": 7} for d in dets])
    _jsonl(c / "dets_frame_half.jsonl", [{**d, "frame": d["frame"] + 0.5} for d in dets])
    _jsonl(c / "dets_outside.jsonl", [{**d, "box": [1000, 1000, 1010, 1010]} for d in dets])
    _jsonl(c / "dets_no_moving.jsonl", [{k: v for k, v in d.items() if k != "moving"} for d in dets])
    scores = [json.loads(line) for line in (c / "scores.jsonl").read_text().splitlines()]
    _jsonl(c / "scores_over_one.jsonl", [{**r, "score": 1.5} for r in scores])
    _jsonl(c / "scores_only_null.jsonl", [r for r in scores if r["kind"] == "null"])
    (c / "mot_nan.txt").write_text("1,1,nan,5,10,10,1,1,1\n2,1,5,5,10,10,1,1,1\n")
    (c / "mot_far.txt").write_text("1,1,-100000,5,200000,10,1,1,1\n")


def build(c: Path) -> Path:
    c.mkdir(parents=True, exist_ok=True)
    build_pipeline(c)
    build_broken(c)
    build_hostile(c)
    return c


# --------------------------------------------------------------------------- the cases
@dataclass(frozen=True)
class Case:
    id: str
    cls: str                       # the class of problem
    tool: str
    args: tuple[str, ...]
    code: int = 1                  # the status a user should get
    says: str = ""                 # a word the one error line must contain (the file, usually)
    output: str = ""               # the output path: pre-filled, must stay intact on failure
    copies: tuple[str, ...] = ()   # corpus files copied into {t} first (the case may write to them)
    stdin: str | None = ""         # text on stdin; None: stdin closed
    ulimit_f: int = 0              # file-size limit in 1 KiB blocks
    setup: str = ""                # a named fixture the test builds in {t}: readonly, full, under_file
    signal: str = ""               # SIGTERM/SIGINT once the output's temporary file exists; SIGPIPE: stdout closed
    notes: str = field(default="", compare=False)


EMBED = ("--model", MODEL, "--weights", str(WEIGHTS), "--layers", "block1", "-q")
MODEL_ONLY = ("--model", MODEL, "--layers", "block1", "-q")
VIDEO_CMDS = {
    "detect": ("vt-detect", ("--model", str(DETECTOR), "{c}/labels_%s.jsonl", "-o", "{t}/out.jsonl", "-q")),
    "embed": ("vt-embed", (*EMBED, "{c}/labels_%s.jsonl", "-o", "{t}/out.h5")),
    "random": ("vt-concepts", ("random", "--videos", "{c}/labels_%s.jsonl", "--sets", "1", "--clips-per-set", "1",
                               "--frames", "8", "-o", "{t}/out.h5", "-q")),
    "explain": ("vt-explain", (*EMBED[:-3], "--layer", "block1", "{c}/labels_%s.jsonl", "-o", "{t}/out.h5", "-q")),
    "ace": ("vt-ace", ("supervoxels", "{c}/labels_%s.jsonl", "--resolutions", "4", "-o", "{t}/out.h5", "-q")),
}


def _video_cases() -> list[Case]:
    cases = []
    plan = {"garbage": ("detect", "embed", "random", "explain", "ace"), "empty": ("detect", "embed", "ace"),
            "truncated": ("detect", "embed", "random"), "oneframe": ("embed", "random", "explain"),
            "tiny": ("random",), "odd": ("random",)}
    # Odd but valid videos work: the model's sampling repeats frames of a short video (documented
    # in docs/models.md), and clips are resized; only a clip that needs more frames than a
    # video has is an error.
    works = {("oneframe", "embed"), ("oneframe", "explain"), ("tiny", "random"), ("odd", "random")}
    for stem, commands in plan.items():
        for which in commands:
            tool, args = VIDEO_CMDS[which]
            args = tuple(a % stem if "%s" in a else a for a in args)
            out = next(a for a in args if a.startswith("{t}/out"))
            code = 0 if (stem, which) in works else 1
            cases.append(Case(f"video-{stem}-{which}", "video", tool, args, code=code, says=stem, output=out))
    return cases


def _signal_cases() -> list[Case]:
    random = ("random", "--videos", "{c}/world/labels.jsonl", "--sets", "40", "--clips-per-set", "30",
              "--size", "48", "-o", "{t}/out.h5")
    return [
        Case("fault-sigterm-concepts", "fault", "vt-concepts", random, code=143, output="{t}/out.h5", signal="SIGTERM"),
        Case("fault-sigint-concepts", "fault", "vt-concepts", random, code=130, output="{t}/out.h5", signal="SIGINT"),
        Case("fault-sigterm-synth", "fault", "vt-synth", ("{t}/world", "--train-per-class", "30", "--test-per-class",
                                                          "0", "-q"),
             code=143, output="{t}/world/labels.jsonl", signal="SIGTERM"),
        Case("fault-sigpipe-stats", "fault", "vt-stats", ("{c}/scores.jsonl", "-q"), code=-13, signal="SIGPIPE"),
        Case("fault-sigpipe-concepts-list", "fault", "vt-concepts", ("list", "{c}/concepts.h5"), code=-13,
             signal="SIGPIPE"),
    ]


def cases() -> list[Case]:
    s, o = "{c}/scores.jsonl", "{t}/out.jsonl"
    dets = ("--videos", "{c}/world/labels.jsonl", "--class", "ball", "--frames", "8", "--size", "32",
            "-o", "{t}/out.h5", "-q")
    cav = lambda name, cls="hdf5": Case(  # noqa: E731
        f"cav-{name}", cls, "vt-cav", (f"{{c}}/{name}.h5", "-o", "{t}/out.h5", "-q"), says=f"{name}.h5",
        output="{t}/out.h5")
    score = lambda cavs, grads, cls, says, **kw: Case(  # noqa: E731
        f"score-{cavs}-{grads}", cls, "vt-score", (f"{{c}}/{cavs}.h5", f"{{c}}/{grads}.h5", "-o", o, "-q"),
        says=says, output=o, **kw)
    st = lambda name, cls, says=None, **kw: Case(  # noqa: E731
        f"stats-{name}", cls, "vt-stats", (f"{{c}}/{name}.jsonl", "-o", o, "-q"), says=says or f"{name}.jsonl",
        output=o, **kw)
    spt = lambda name, cls, says=None, **kw: Case(  # noqa: E731
        f"concepts-{name}", cls, "vt-concepts", ("spatiotemporal", f"{{c}}/{name}.jsonl", *dets),
        says=says or f"{name}.jsonl", output="{t}/out.h5", **kw)
    emb = lambda name, src, cls, says, *extra, **kw: Case(  # noqa: E731
        f"embed-{name}", cls, "vt-embed", (*extra, src, "-o", "{t}/out.h5"), says=says, output="{t}/out.h5", **kw)
    ck = lambda name, says=None: Case(  # noqa: E731
        f"ckpt-{name}-embed", "checkpoint", "vt-embed",
        ("--model", MODEL, "--weights", f"{{c}}/ckpt/{name}.pt", "--layers", "block1", "-q",
         "{c}/concepts.h5", "-o", "{t}/out.h5"), says=says or f"{name}.pt", output="{t}/out.h5")
    return [
        *_video_cases(),
        # JSONL
        st("latin1", "jsonl"), st("empty", "jsonl"), st("blank", "jsonl"), st("huge", "jsonl"),
        st("malformed", "jsonl"), st("array", "jsonl"), st("nan_scores", "nonfinite"), st("not_scores", "jsonl"),
        st("no_null", "jsonl"), st("dup_scores", "silent"), st("mixed_scores", "silent"),
        spt("latin1_dets", "jsonl"), spt("empty", "jsonl"), spt("huge", "jsonl"), spt("malformed", "jsonl"),
        spt("array", "jsonl"), spt("bad_box", "jsonl"), spt("unknown_video", "message", says="nowhere"),
        spt("past_end", "message", says="has 20 frame"), spt("no_track", "jsonl"),
        Case("concepts-latin1-manifest", "jsonl", "vt-concepts",
             ("random", "--videos", "{c}/latin1_labels.jsonl", "-o", "{t}/out.h5", "-q"),
             says="latin1_labels.jsonl", output="{t}/out.h5"),
        Case("concepts-missing-video", "video", "vt-concepts",
             ("random", "--videos", "{c}/missing_video.jsonl", "-o", "{t}/out.h5", "-q"),
             says="gone.mp4", output="{t}/out.h5"),
        emb("latin1-manifest", "{c}/latin1_labels.jsonl", "jsonl", "latin1_labels.jsonl", *EMBED),
        emb("empty-manifest", "{c}/empty.jsonl", "jsonl", "empty.jsonl", *EMBED),
        emb("fields-manifest", "{c}/no_fields.jsonl", "jsonl", "no_fields.jsonl", *EMBED),
        Case("detect-latin1-manifest", "jsonl", "vt-detect",
             ("--model", str(DETECTOR), "{c}/latin1_labels.jsonl", "-o", o, "-q"), says="latin1_labels.jsonl",
             output=o),
        Case("embed-class-names-latin1", "jsonl", "vt-embed",
             (*EMBED, "--class-names", "{c}/names.txt", "--target", "right", "{c}/concepts.h5", "-o", "{t}/out.h5"),
             says="names.txt", output="{t}/out.h5"),
        # HDF5
        cav("foreign"), cav("acts_trunc"), cav("acts_future"), cav("cavs"), cav("text"), cav("empty"),
        cav("acts_nosets"),
        score("cavs_trunc", "grads", "hdf5", "cavs_trunc.h5"), score("cavs_future", "grads", "hdf5", "cavs_future.h5"),
        score("cavs", "grads_trunc", "hdf5", "grads_trunc.h5"), score("cavs", "foreign", "hdf5", "foreign.h5"),
        emb("concepts-trunc", "{c}/concepts_trunc.h5", "hdf5", "concepts_trunc.h5", *EMBED),
        emb("concepts-future", "{c}/concepts_future.h5", "hdf5", "concepts_future.h5", *EMBED),
        emb("foreign", "{c}/foreign.h5", "hdf5", "foreign.h5", *EMBED),
        Case("concepts-merge-foreign", "hdf5", "vt-concepts", ("merge", "{c}/concepts.h5", "{c}/foreign.h5",
                                                               "-o", "{t}/out.h5"),
             says="foreign.h5", output="{t}/out.h5"),
        Case("concepts-append-foreign", "hdf5", "vt-concepts",
             ("random", "--videos", "{c}/world/labels.jsonl", "--frames", "8", "--size", "32", "--sets", "1",
              "--clips-per-set", "1", "-o", "{t}/foreign.h5", "--append", "-q"),
             says="foreign.h5", output="{t}/foreign.h5", copies=("foreign.h5",)),
        Case("ace-discover-foreign", "hdf5", "vt-ace",
             ("discover", "{c}/foreign.h5", "--random", "{c}/concepts.h5", "--videos", "{c}/world/labels.jsonl",
              "--target", "right", *EMBED[:-3], "--layer", "block1", "-o", "{t}/out.h5", "--ranking", o, "-q"),
             says="foreign.h5", output=o),
        # provenance, non-finite numbers, too few clips
        score("cavs", "grads_other_model", "provenance", "grads_other_model.h5"),
        Case("cav-mixed-input", "provenance", "vt-cav", ("{c}/acts.h5", "{c}/acts_other_input.h5", "-o",
                                                         "{t}/out.h5", "-q"),
             says="acts_other_input.h5", output="{t}/out.h5"),
        cav("acts_nan", "nonfinite"), cav("acts_inf", "nonfinite"),
        score("cavs", "grads_nan", "nonfinite", "grads_nan.h5"),
        cav("acts_one_clip", "too-few"), cav("acts_no_random", "too-few"),
        # checkpoints
        ck("evil"), ck("garbage"), ck("truncated"), ck("empty"), ck("badpickle"),
        Case("ckpt-garbage-explain", "checkpoint", "vt-explain",
             ("--model", MODEL, "--weights", "{c}/ckpt/garbage.pt", "--layer", "block1",
              "{c}/labels_odd.jsonl", "-o", "{t}/out.h5", "-q"), says="garbage.pt", output="{t}/out.h5"),
        Case("ckpt-garbage-detect", "checkpoint", "vt-detect",
             ("--model", "{c}/ckpt/garbage.pt", "{c}/labels_odd.jsonl", "-o", o, "-q"), says="garbage.pt", output=o),
        Case("ckpt-truncated-detect", "checkpoint", "vt-detect",
             ("--model", "{c}/ckpt/detector_truncated.pt", "{c}/labels_odd.jsonl", "-o", o, "-q"),
             says="detector_truncated.pt", output=o),
        # faults
        Case("fault-closed-stdin-stats", "fault", "vt-stats", ("-", "-o", o, "-q"), stdin=None, says="stdin",
             output=o),
        Case("fault-closed-stdin-concepts", "fault", "vt-concepts", ("spatial", "-", *dets), stdin=None,
             says="stdin", output="{t}/out.h5"),
        Case("fault-fsize-embed", "fault", "vt-embed", (*EMBED, "{c}/concepts.h5", "-o", "{t}/out.h5"),
             ulimit_f=256, says="out.h5", output="{t}/out.h5"),
        Case("fault-fsize-cav", "fault", "vt-cav", ("{c}/acts.h5", "-o", "{t}/out.h5", "-q"), ulimit_f=256,
             says="out.h5", output="{t}/out.h5"),
        Case("fault-fsize-synth", "fault", "vt-synth", ("{t}/world", "--train-per-class", "1", "--test-per-class",
                                                        "0", "-q"), ulimit_f=4, says="world"),
        Case("fault-readonly-stats", "fault", "vt-stats", (s, "-o", "{t}/ro/out.jsonl", "-q"), setup="readonly",
             says="out.jsonl", output="{t}/ro/out.jsonl"),
        Case("fault-readonly-cav", "fault", "vt-cav", ("{c}/acts.h5", "-o", "{t}/ro/out.h5", "-q"), setup="readonly",
             says="out.h5", output="{t}/ro/out.h5"),
        Case("fault-under-file-stats", "fault", "vt-stats", (s, "-o", "{t}/file.txt/out.jsonl", "-q"),
             setup="under_file", says="file.txt"),
        Case("fault-under-file-concepts", "fault", "vt-concepts", ("spatial", "{c}/dets.jsonl", *dets[:-3],
                                                                   "-o", "{t}/file.txt/c.h5", "-q"),
             setup="under_file", says="file.txt"),
        Case("fault-enospc-stats", "fault", "vt-stats", (s, "-o", "{t}/full", "-q"), setup="full", says="full"),
        *_signal_cases(),
        # data safety: -o naming an input
        Case("safety-cav-output-is-input", "safety", "vt-cav", ("{t}/acts.h5", "-o", "{t}/acts.h5", "-q"), code=2,
             says="acts.h5", output="{t}/acts.h5", copies=("acts.h5",)),
        Case("safety-stats-output-is-input", "safety", "vt-stats", ("{t}/scores.jsonl", "-o", "{t}/scores.jsonl",
                                                                    "-q"),
             code=2, says="scores.jsonl", output="{t}/scores.jsonl", copies=("scores.jsonl",)),
        Case("safety-score-output-is-input", "safety", "vt-score", ("{c}/cavs.h5", "{t}/grads.h5", "-o",
                                                                    "{t}/./grads.h5", "-q"),
             code=2, says="grads.h5", output="{t}/grads.h5", copies=("grads.h5",)),
        Case("safety-embed-output-is-input", "safety", "vt-embed", (*EMBED, "{t}/concepts.h5", "-o",
                                                                    "{t}/concepts.h5"),
             code=2, says="concepts.h5", output="{t}/concepts.h5", copies=("concepts.h5",)),
        Case("safety-concepts-output-is-input", "safety", "vt-concepts",
             ("spatial", "{t}/dets.jsonl", *dets[:-3], "-o", "{t}/dets.jsonl", "-q"),
             code=2, says="dets.jsonl", output="{t}/dets.jsonl", copies=("dets.jsonl",)),
        # usage (exit 2)
        Case("usage-stats-correction", "usage", "vt-stats", (s, "--correction", "nope", "-o", o), code=2,
             says="nope", output=o),
        Case("usage-cav-no-output", "usage", "vt-cav", ("{c}/acts.h5",), code=2, says="output"),
        Case("usage-synth-no-folder", "usage", "vt-synth", (), code=2, says="OUT_DIR"),
        *hostile_cases(),
    ]


def hostile_cases() -> list[Case]:
    """Issue 24: each class, and every output flag of every command checked against the inputs."""
    o, h5 = "{t}/out.jsonl", "{t}/out.h5"
    cav = lambda name, says: Case(f"h5-{name}", "hdf5-structure", "vt-cav",  # noqa: E731
                                  (f"{{c}}/{name}.h5", "-o", h5, "-q"), says=says, output=h5)
    dets = lambda name, says: Case(f"values-{name}", "silent", "vt-concepts",  # noqa: E731
                                   ("spatiotemporal", f"{{c}}/{name}.jsonl", "--videos", "{c}/world/labels.jsonl",
                                    "--class", "ball", "--frames", "8", "--size", "32", "-o", h5, "-q"),
                                   says=says, output=h5)
    random = ("random", "--videos", "{c}/world/labels.jsonl", "--frames", "8", "--size", "32", "--sets", "1",
              "--clips-per-set", "1")
    return [
        # code named by a sidecar
        Case("sidecar-callable-embed", "sidecar", "vt-embed", ("--weights", "{c}/sidecar/w.pt", "--layers", "block1",
                                                               "{c}/concepts.h5", "-o", h5, "-q"),
             says="w.json", output=h5),
        Case("sidecar-callable-list-layers", "sidecar", "vt-embed", ("--weights", "{c}/sidecar/w.pt",
                                                                     "--list-layers"), says="os:system"),
        Case("sidecar-callable-explain", "sidecar", "vt-explain", ("--weights", "{c}/sidecar/w.pt", "--layer",
                                                                   "block1", "{c}/clip.mp4", "-o", h5, "-q"),
             says="w.json", output=h5),
        Case("sidecar-huge-kwargs", "resource", "vt-embed", ("--weights", "{c}/sidecar/big.pt", "--list-layers"),
             says="big.json"),
        # HDF5 structure
        cav("acts_soft", "soft link"), cav("acts_external", "external link"), cav("acts_loop", "loop"),
        cav("acts_bigrows", "10000000 rows"), cav("acts_strings", "expected floats"),
        cav("acts_scalar_ids", "scalar"), cav("acts_short_ids", "ids"),
        Case("h5-cavs_group", "hdf5-structure", "vt-score", ("{c}/cavs_group.h5", "{c}/grads.h5", "-o", o, "-q"),
             says="group where a dataset", output=o),
        Case("h5-cavs_fewer", "hdf5-structure", "vt-score", ("{c}/cavs_fewer.h5", "{c}/grads.h5", "-o", o, "-q"),
             says="cavs_fewer.h5", output=o),
        Case("h5-merged-shard-gone", "message", "vt-cav", ("{c}/merged.h5", "-o", h5, "-q"), says="shard1.h5",
             output=h5),
        # arrays
        Case("npz-objects", "resource", "vt-concepts", ("import", "{c}/objects.npz", "-o", h5, "-q"),
             says="objects.npz", output=h5),
        Case("npy-huge", "resource", "vt-concepts", ("import", "{c}/huge.npy", "-o", h5, "-q"), says="huge.npy",
             output=h5),
        Case("npy-cut", "hdf5", "vt-concepts", ("import", "{c}/clips_cut.npy", "-o", h5, "-q"), says="clips_cut.npy",
             output=h5),
        # silent wrong values
        dets("dets_conf7", "conf"), dets("dets_frame_half", "frame"), dets("dets_outside", "outside"),
        Case("values-std-zero", "silent", "vt-embed", (*EMBED, "--std", "0,0,0", "{c}/concepts.h5", "-o", h5),
             code=2, says="std", output=h5),
        Case("values-nan-model-output", "silent", "vt-embed", ("--model", MODEL, "--weights", "{c}/nan_weights.pt",
                                                               "--layers", "block1", "{c}/concepts.h5", "-o", h5, "-q"),
             says="non-finite", output=h5),
        Case("values-score-over-one", "silent", "vt-stats", ("{c}/scores_over_one.jsonl", "-o", o, "-q"),
             says="scores_over_one.jsonl", output=o),
        Case("values-only-null", "traceback", "vt-stats", ("{c}/scores_only_null.jsonl", "-o", o, "-q"),
             says="scores_only_null.jsonl", output=o),
        Case("values-gt-without-moving", "silent", "vt-explain",
             (*EMBED[:-3], "--layer", "block1", "{c}/clip.mp4", "--gt", "{c}/dets_no_moving.jsonl", "-o", h5, "-q"),
             says="moving", output=h5),
        Case("values-mot-nan-box", "silent", "vt-detect", ("import", "mot", "{c}/mot_nan.txt", "--video",
                                                           "{c}/clip.mp4", "-o", o, "-q"),
             says="mot_nan.txt", output=o),
        Case("values-mot-far-box", "silent", "vt-detect", ("import", "mot", "{c}/mot_far.txt", "--video",
                                                           "{c}/clip.mp4", "-o", o, "-q"),
             says="mot_far.txt", output=o),
        # resource bombs and bad numbers
        Case("resource-size-30000", "resource", "vt-concepts", (*random[:5], "--size", "30000", "-o", h5, "-q"),
             code=2, says="30000", output=h5),
        Case("usage-seed-negative", "traceback", "vt-synth", ("{t}/world", "--seed", "-1", "-q"), code=2, says="seed"),
        Case("ok-synth-size-32", "traceback", "vt-synth", ("{t}/world", "--size", "32", "--train-per-class", "1",
                                                           "--test-per-class", "0", "-q"),
             code=0, output="{t}/world/labels.jsonl"),
        Case("ok-long-output-name", "message", "vt-stats", ("{c}/scores.jsonl", "-o", "{t}/" + "s" * 240 + ".jsonl",
                                                            "-q"), code=0, output="{t}/" + "s" * 240 + ".jsonl"),
        Case("message-newline-in-path", "message", "vt-stats", ("{t}/a\nb.jsonl", "-o", o, "-q"), says="a\\nb",
             output=o),
        Case("fault-fsize-concepts", "fault", "vt-concepts", (*random, "--size", "48", "-o", h5, "-q"), ulimit_f=8,
             says="out.h5", output=h5),
        # every output flag against the inputs
        Case("safety-report-twin", "safety", "vt-report", ("{t}/stats.md", "-o", "{t}/stats.html"), code=2,
             says="stats.md", output="{t}/stats.md", copies=("stats.md",)),
        Case("safety-report-markdown", "safety", "vt-report", ("{t}/stats.jsonl", "-o", "{t}/r.html", "--markdown",
                                                               "{t}/stats.jsonl"),
             code=2, says="stats.jsonl", output="{t}/stats.jsonl", copies=("stats.jsonl",)),
        Case("safety-report-output", "safety", "vt-report", ("{t}/stats.jsonl", "-o", "{t}/./stats.jsonl"), code=2,
             says="stats.jsonl", output="{t}/stats.jsonl", copies=("stats.jsonl",)),
        Case("safety-stats-plot", "safety", "vt-stats", ("{t}/scores.jsonl", "-o", o, "--plot", "{t}/scores.jsonl",
                                                         "-q"),
             code=2, says="scores.jsonl", output="{t}/scores.jsonl", copies=("scores.jsonl",)),
        Case("safety-explain-pictures", "safety", "vt-explain", (*EMBED[:-3], "--layer", "block1", "{t}/clip.mp4",
                                                                 "--pictures", "{t}", "--picture-format", "mp4", "-q"),
             code=2, says="clip.mp4", output="{t}/clip.mp4", copies=("clip.mp4",)),
        Case("safety-explain-output", "safety", "vt-explain", (*EMBED[:-3], "--layer", "block1", "{t}/clip.mp4",
                                                               "-o", "{t}/clip.mp4", "-q"),
             code=2, says="clip.mp4", output="{t}/clip.mp4", copies=("clip.mp4",)),
        Case("safety-detect-output", "safety", "vt-detect", ("--model", str(DETECTOR), "{t}/clip.mp4", "-o",
                                                             "{t}/clip.mp4", "-q"),
             code=2, says="clip.mp4", output="{t}/clip.mp4", copies=("clip.mp4",)),
        Case("safety-merge-output", "safety", "vt-merge", ("{t}/acts.h5", "-o", "{t}/acts.h5", "-q"), code=2,
             says="acts.h5", output="{t}/acts.h5", copies=("acts.h5",)),
        Case("safety-ace-table", "safety", "vt-ace", ("faithfulness", "{c}/concepts.h5", "{t}/scores.jsonl",
                                                      "--videos", "{c}/world/labels.jsonl", "--table",
                                                      "{t}/scores.jsonl"),
             code=2, says="scores.jsonl", output="{t}/scores.jsonl", copies=("scores.jsonl",)),
        Case("safety-concepts-append-other-input", "safety", "vt-concepts",
             ("merge", "{t}/concepts.h5", "-o", "{t}/concepts.h5"), code=2, says="concepts.h5",
             output="{t}/concepts.h5", copies=("concepts.h5",)),
        Case("safety-import-output", "safety", "vt-detect", ("import", "mot", "{t}/mot_nan.txt", "--video",
                                                             "{c}/clip.mp4", "-o", "{t}/mot_nan.txt", "-q"),
             code=2, says="mot_nan.txt", output="{t}/mot_nan.txt", copies=("mot_nan.txt",)),
    ]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_corpus.py OUT_DIR")
    folder = build(Path(sys.argv[1]))
    for case in cases():
        print(json.dumps({"id": case.id, "class": case.cls, "argv": [case.tool, *case.args], "code": case.code}))
    print(f"{len(cases())} cases; corpus in {folder}", file=sys.stderr)
