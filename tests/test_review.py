"""vt-concepts import and review: curated clips enter the chain; review sheets put the odd clip first;
--drop writes the cleaned set; set patterns select sets."""

from __future__ import annotations

import base64
import json
import re
from types import SimpleNamespace as NS

import cv2
import numpy as np
import pytest

from conftest import run_cmd
from vtcav_common.formats import clips as clipsets
from vtcav_common.formats.embeddings import EmbeddingsWriter


@pytest.fixture(scope="module")
def world(make_world):
    return make_world(seed=5, train=3, test=0, classes="left,right")


@pytest.fixture(scope="module")
def mined(world, tmp_path_factory):
    """Six ball clips (ids 0-5) and two random sets, as vt-concepts writes them."""
    path = tmp_path_factory.mktemp("mined") / "c.h5"
    run_cmd("vt-concepts", "spatiotemporal", world / "gt.jsonl", "--videos", world / "labels.jsonl", "--class",
            "ball", "--frames", "8", "--size", "32", "--name", "ball_all", "-o", path, check=True)
    run_cmd("vt-concepts", "random", "--videos", world / "labels.jsonl", "--sets", "2", "--clips-per-set", "3",
            "--frames", "8", "--size", "32", "-o", path, "--append", check=True)
    return path


def activations(path, set_name: str, n: int, odd: int):
    """Activations where clip ``odd`` lies far from the others (as vt-embed would write them)."""
    rng = np.random.default_rng(0)
    acts = rng.normal(0, 0.1, (n, 4, 2)).astype(np.float32)
    acts[odd] += 5.0
    layer = NS(shape=(4, 2), channel_axis=0, channels_last=False, type="Conv3d", calls=1)
    with EmbeddingsWriter(path, "test", {"layers": ["block2"]}, {"block2": layer}) as writer:
        sink = writer.add_set(NS(name=set_name, kind="spatiotemporal", role="concept", n=n, has_labels=False),
                              num_classes=2, dtype=np.float32)
        sink.write(NS(ids=[f"v#{i}" for i in range(n)], labels=None),
                   NS(logits=np.zeros((n, 2)), acts={"block2": acts}, grads=None))
        sink.close()


def test_review_orders_odd_clip_first_and_drop_cleans(mined, tmp_path):
    n = clipsets.get_set(mined, "ball_all").n
    assert n == 6
    activations(tmp_path / "acts.h5", "ball_all", n, odd=4)
    result = run_cmd("vt-concepts", "review", mined, "--concept", "ball_*", "--acts", tmp_path / "acts.h5",
                     "-d", tmp_path / "review")
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "review" / "ball_all.html").read_text()
    ids = re.findall(r"<td><b>#(\d+)</b></td>", page)
    assert ids[0] == "4" and sorted(ids) == [str(i) for i in range(n)]
    # self-contained: every thumbnail is an inline animated GIF, nothing loaded from elsewhere
    gifs = re.findall(r'src="data:image/gif;base64,([^"]+)"', page)
    assert len(gifs) == n and base64.b64decode(gifs[0])[:6] == b"GIF89a"
    assert "src=\"http" not in page and "<script" not in page
    assert re.search(r"train_(left|right)_000\d</a></td><td>\d\.\d\d-\d\.\d\d s \(frames \d+-\d+\)", page)
    png = cv2.imread(str(tmp_path / "review" / "ball_all.png"))
    assert png is not None and png.shape[0] > n * 128
    # drop the odd clip: the cleaned file has the others, in order, with their sources
    cleaned = tmp_path / "clean.h5"
    result = run_cmd("vt-concepts", "review", mined, "--set", "ball_all", "--drop", "4", "-o", cleaned)
    assert result.returncode == 0, result.stderr
    before, after = clipsets.read_set_meta(mined, "ball_all"), clipsets.read_set_meta(cleaned, "ball_all")
    assert after.video_id == [v for i, v in enumerate(before.video_id) if i != 4]
    assert np.array_equal(clipsets.read_clips(cleaned, "ball_all"),
                          np.delete(clipsets.read_clips(mined, "ball_all"), 4, axis=0))
    assert [s.name for s in clipsets.list_sets(cleaned)] == ["ball_all", "random_00", "random_01"]


def test_review_bad_input(mined, tmp_path):
    result = run_cmd("vt-concepts", "review", mined, "--set", "bal_*", "-d", tmp_path)
    assert result.returncode == 2 and "no set matches 'bal_*'" in result.stderr
    result = run_cmd("vt-concepts", "review", mined, "--set", "ball_all", "--drop", "9", "-o", tmp_path / "x.h5")
    assert result.returncode == 1 and "no clip 9" in result.stderr and not (tmp_path / "x.h5").exists()
    activations(tmp_path / "a.h5", "ball_all", 5, odd=0)
    result = run_cmd("vt-concepts", "review", mined, "--acts", tmp_path / "a.h5", "-d", tmp_path / "r")
    assert result.returncode == 1 and "5 activations but the clip file has 6 clips" in result.stderr


def test_import_arrays_and_folders(world, mined, tmp_path):
    rng = np.random.default_rng(1)
    floats = rng.random((3, 10, 24, 24, 3)).astype(np.float32)          # float in [0, 1]
    np.save(tmp_path / "hand.npy", floats)
    torch_layout = rng.integers(0, 256, (2, 3, 8, 32, 32), dtype=np.uint8)  # N x 3 x T x H x W
    np.savez(tmp_path / "more.npz", wave=torch_layout, jump=torch_layout[:1])
    out = tmp_path / "c.h5"
    result = run_cmd("vt-concepts", "import", tmp_path / "hand.npy", tmp_path / "more.npz", "--frames", "8",
                     "--size", "32", "-o", out)
    assert result.returncode == 0, result.stderr
    sets = {s.name: s for s in clipsets.list_sets(out)}
    assert {k: (v.n, v.kind, v.role) for k, v in sets.items()} == {
        "hand": (3, "imported", "concept"), "wave": (2, "imported", "concept"), "jump": (1, "imported", "concept")}
    assert np.array_equal(clipsets.read_clips(out, "wave"), np.moveaxis(torch_layout, 1, -1))
    hand = clipsets.read_clips(out, "hand")
    assert hand.shape == (3, 8, 32, 32, 3) and hand.dtype == np.uint8
    # a folder of clip videos, added to vt-concepts' own file (same sampling)
    result = run_cmd("vt-concepts", "import", world / "videos", "--name", "whole_videos", "--frames", "8",
                     "--size", "32", "-o", mined, "--append")
    assert result.returncode == 0, result.stderr
    meta = clipsets.read_set_meta(mined, "whole_videos")
    assert len(meta.video_id) == 6 and meta.video_id[0] == "train_left_0000" and meta.frames[0, -1] == 19
    # bad arrays: one line, exit 1
    np.save(tmp_path / "bad.npy", np.zeros((2, 8, 8, 4)))
    result = run_cmd("vt-concepts", "import", tmp_path / "bad.npy", "-o", tmp_path / "b.h5")
    assert result.returncode == 1 and "expected clips N x T x H x W x 3" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_set_patterns(mined):
    from vtcav_common.core import selection
    from vtcav_common.core.errors import UsageError

    names = ["ball_all", "random_00", "random_01"]
    assert selection.select(names, ["random_*"]) == ["random_00", "random_01"]
    assert selection.expand(names, ["random_01", "ball_*", "random_0?"]) == ["random_01", "ball_all", "random_00"]
    with pytest.raises(UsageError, match=re.escape("no set matches 'rand_?'")):
        selection.select(names, ["rand_?"])
    listed = run_cmd("vt-concepts", "list", mined, "--set", "random_0[1]", "--set", "ball_*", check=True)
    assert [json.loads(line)["name"] for line in listed.stdout.splitlines()] == ["ball_all", "random_01"]
