"""Hostile and careless input, closed at the roots (issue 24), run as a user runs the commands.

- a sidecar beside the weights names code: refused without --trust-checkpoint;
- outputs other than -o (pictures, the report's Markdown twin) never replace an input;
- a real full disk (a small tmpfs mounted here when root) and ``ulimit -f`` during
  vt-embed and vt-concepts: one line, exit 1, nothing left behind;
- concurrent ``--append`` writers keep each other's sets;
- NaN from the model, and silent wrong values in records, are refused;
- vt-cav's bytes do not depend on how the input path is spelt.

The good files come from the corpus pipeline (tests/corpus/make_corpus.py).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "corpus"))
import make_corpus  # noqa: E402

EMBED = ["--model", make_corpus.MODEL, "--weights", str(make_corpus.WEIGHTS), "-q"]


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    reuse = os.environ.get("VTCAV_CORPUS_DIR")
    if reuse and (Path(reuse) / "acts.h5").exists():
        return Path(reuse)
    folder = tmp_path_factory.mktemp("hostile")
    make_corpus.build_pipeline(folder)
    return folder


def run(tool: str, *args, cwd: Path, ulimit_f: int = 0) -> subprocess.CompletedProcess:
    argv = make_corpus.command(tool) + [str(a) for a in args]
    if ulimit_f:
        argv = ["bash", "-c", f'ulimit -f {ulimit_f}; exec "$@"', "bash", *argv]
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=make_corpus.environment(), timeout=600)


def one_error(result: subprocess.CompletedProcess, tool: str, code: int = 1) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == code, f"exit {result.returncode}:\n{result.stderr}"
    errors = [line for line in result.stderr.splitlines() if line.startswith(f"{tool}: error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".vtcav-" in p.name or p.name.endswith(".tmp"))


# --------------------------------------------------------------------------- code from a sidecar
def test_sidecar_naming_a_callable_is_refused_without_trust(good, tmp_path):
    marker = tmp_path / "PWNED"
    shutil.copy(make_corpus.WEIGHTS, tmp_path / "w.pt")
    (tmp_path / "w.json").write_text(f'{{"model": "os:system", "model_kwargs": {{"command": "touch {marker}"}}}}')
    result = run("vt-embed", "--weights", tmp_path / "w.pt", "--layers", "block1", good / "concepts.h5",
                 "-o", tmp_path / "out.h5", "-q", cwd=tmp_path)
    line = one_error(result, "vt-embed")
    print(line)
    assert "w.json" in line and "os:system" in line and "--trust-checkpoint" in line
    assert not marker.exists(), "the sidecar's command ran"
    assert not (tmp_path / "out.h5").exists()


def test_sidecar_naming_vtcav_own_model_still_works(good, tmp_path):
    """weights/classifier.json names vtcav's own model: --model may be left out."""
    result = run("vt-embed", "--weights", make_corpus.WEIGHTS, "--list-layers", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "block1" in result.stdout


# --------------------------------------------------------------------------- outputs that are inputs
def test_report_markdown_twin_never_replaces_an_input(good, tmp_path):
    stats = tmp_path / "stats.md"
    assert run("vt-stats", good / "scores.jsonl", "-o", stats, "-q", cwd=tmp_path).returncode == 0
    before = stats.read_bytes()
    line = one_error(run("vt-report", stats, "-o", tmp_path / "stats.html", cwd=tmp_path), "vt-report", code=2)
    assert "stats.md" in line and "also an input" in line
    assert stats.read_bytes() == before
    assert not (tmp_path / "stats.html").exists(), "refused before any work"


def test_pictures_never_replace_the_video_explained(good, tmp_path):
    video = tmp_path / "clip.mp4"
    shutil.copy(good / "world" / "videos" / "test_left_10000.mp4", video)
    before = video.read_bytes()
    result = run("vt-explain", *EMBED[:-1], "--layer", "block1", video, "--pictures", tmp_path,
                 "--picture-format", "mp4", "-q", cwd=tmp_path)
    assert "clip.mp4" in one_error(result, "vt-explain", code=2)
    assert video.read_bytes() == before


# --------------------------------------------------------------------------- a full disk
@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs mounted for the test: a real full disk, not a simulation."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_full_disk_during_vt_embed(good, small_disk):
    result = run("vt-embed", *EMBED, "--layers", "block1,block2,block3", good / "concepts.h5",
                 "-o", small_disk / "acts.h5", cwd=small_disk.parent)
    line = one_error(result, "vt-embed")
    print(line)
    assert "acts.h5" in line and "No space left on device" in line
    assert not list(small_disk.iterdir()), "the failed run left files on the full disk"


def test_disk_filling_during_vt_concepts(good, small_disk):
    (small_disk / "filler").write_bytes(b"x" * (200 << 10))   # most of the 256 KiB gone
    result = run("vt-concepts", "random", "--videos", good / "world" / "labels.jsonl", "--sets", "3",
                 "--clips-per-set", "4", "--size", "64", "-o", small_disk / "c.h5", "-q", cwd=small_disk.parent)
    line = one_error(result, "vt-concepts")
    print(line)
    assert "c.h5" in line and "No space left on device" in line
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


def test_file_size_limit_during_vt_embed(good, tmp_path):
    result = run("vt-embed", *EMBED, "--layers", "block1,block2", good / "concepts.h5", "-o", tmp_path / "acts.h5",
                 cwd=tmp_path, ulimit_f=100)
    line = one_error(result, "vt-embed")
    assert "acts.h5" in line and "File too large" in line
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("kind", ["new file", "appended to"])
def test_file_size_limit_during_vt_concepts(good, tmp_path, kind):
    """h5py reports a size limit met while closing as a RuntimeError: still one line naming
    the output, no temporary left, and the file appended to is kept as it was."""
    target = tmp_path / "c.h5"
    if kind == "new file":
        args, limit = ["random", "--videos", good / "world" / "labels.jsonl", "--sets", "3", "--clips-per-set",
                       "4", "--size", "64", "-o", target], 100
    else:
        shutil.copy(good / "concepts.h5", target)
        args, limit = ["twins", target, "--set", "*", "--kind", "frozen,reversed"], target.stat().st_size // 1024 + 8
    before = target.read_bytes() if target.exists() else None
    line = one_error(run("vt-concepts", *args, "-q", cwd=tmp_path, ulimit_f=limit), "vt-concepts")
    print(line)
    assert "c.h5" in line and "File too large" in line and "internal error" not in line
    assert leftovers(tmp_path) == []
    assert (target.read_bytes() if target.exists() else None) == before


# --------------------------------------------------------------------------- concurrent writers
def test_concurrent_appends_keep_every_set(good, tmp_path):
    args = ["random", "--videos", good / "world" / "labels.jsonl", "--frames", "8", "--size", "32",
            "--sets", "1", "--clips-per-set", "2", "-o", tmp_path / "c.h5", "--append", "-q"]
    processes = [subprocess.Popen(make_corpus.command("vt-concepts") + [str(a) for a in args] + ["--prefix", p],
                                  stderr=subprocess.PIPE, env=make_corpus.environment(), cwd=tmp_path)
                 for p in ("a", "b", "c")]
    for process in processes:
        assert process.wait(timeout=600) == 0, process.stderr.read().decode()
    listed = run("vt-concepts", "list", tmp_path / "c.h5", cwd=tmp_path).stdout
    assert sorted(line.split('"name":"')[1].split('"')[0] for line in listed.splitlines()) == \
        ["a_00", "b_00", "c_00"]
    assert leftovers(tmp_path) == [] and not [p for p in tmp_path.iterdir() if "lock" in p.name]


# --------------------------------------------------------------------------- silent wrong values
def test_zero_std_is_refused_not_nan_activations(good, tmp_path):
    result = run("vt-embed", *EMBED, "--layers", "block1", "--std", "0,0,0", good / "concepts.h5",
                 "-o", tmp_path / "acts.h5", cwd=tmp_path)
    assert "std" in one_error(result, "vt-embed", code=2)
    assert not (tmp_path / "acts.h5").exists()


@pytest.mark.parametrize("field,value,says", [("conf", 7, "conf"), ("frame", 0.5, "frame"),
                                              ("box", [1000, 1000, 1010, 1010], "outside")])
def test_bad_detection_values_are_refused(good, tmp_path, field, value, says):
    import json

    records = [json.loads(line) for line in (good / "dets.jsonl").read_text().splitlines()]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({**r, field: value}) + "\n" for r in records))
    result = run("vt-concepts", "spatiotemporal", tmp_path / "d.jsonl", "--videos", good / "world" / "labels.jsonl",
                 "--class", "ball", "--frames", "8", "--size", "32", "-o", tmp_path / "c.h5", "-q", cwd=tmp_path)
    assert says in one_error(result, "vt-concepts")


def test_cav_file_with_fewer_vectors_than_labels_is_refused(good, tmp_path):
    import h5py

    shutil.copy(good / "cavs.h5", tmp_path / "cavs.h5")
    with h5py.File(tmp_path / "cavs.h5", "r+") as handle:
        group = next(iter(handle["layers"].values()))
        vectors = group["vectors"][:-1]
        del group["vectors"]
        group["vectors"] = vectors
    result = run("vt-score", tmp_path / "cavs.h5", good / "grads.h5", "-o", tmp_path / "s.jsonl", cwd=tmp_path)
    assert "rows" in one_error(result, "vt-score")


# --------------------------------------------------------------------------- determinism
def test_vt_cav_bytes_do_not_depend_on_the_path_spelling(good, tmp_path):
    (tmp_path / "link.h5").symlink_to(good / "acts.h5")
    spellings = ["acts.h5", "./acts.h5", str(good / ".." / good.name / "acts.h5"), str(tmp_path / "link.h5")]
    digests = []
    for i, spelling in enumerate(spellings):
        out = tmp_path / f"c{i}.h5"
        assert run("vt-cav", spelling, "-o", out, "-q", cwd=good).returncode == 0
        digests.append(hashlib.sha256(out.read_bytes()).hexdigest())
    print(dict(zip(spellings, digests)))
    assert len(set(digests)) == 1
