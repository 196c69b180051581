"""vt-ace (3D-ACE): supervoxels, concept discovery and TCAV ranking, faithfulness, contact sheets.

The synthetic world knows the answer: the class is the ball's direction of motion, so
the discovered concept made of the ball's supervoxels must rank above the background's,
and adding / removing the top-ranked concepts must matter more than the least-ranked.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import WEIGHTS, run_cmd
from vtcav_common.formats import clips as clipsets
from vtcav_common.formats.supervoxels import read_rows, source_mask
from vtcav_common.ace.supervoxels import SegmentParams, segment_volume, video_candidates
from vtcav_common.models.base import temporal_indices
from vtcav_common.synth import render_video

SEED = 7
TARGET = "right"   # the class of the segmentation tests (the pipeline's is chosen from the classifier)
MODEL = "vtcav_common.models.tiny:motion_c3d"
# Another checkpoint of the same factory can be tested with VTCAV_TEST_CLASSIFIER=path.
CLASSIFIER = Path(os.environ.get("VTCAV_TEST_CLASSIFIER", WEIGHTS / "classifier.pt"))
TEST_OFFSET = 10_000  # synth.generate_world numbers held-out videos from here


def ace(*args, **kwargs):
    return run_cmd("vt-ace", *args, **kwargs)


def model_args() -> list[str]:
    return ["--model", MODEL, "--weights", str(CLASSIFIER)]


def needs_classifier():
    if not CLASSIFIER.exists():
        pytest.skip(f"{CLASSIFIER} not found (train it with shell/train_classifier.py)")


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def sampled_video(index: int, label: str = TARGET, frames: int = 16):
    rendered = render_video(SEED, index, label)
    chosen = temporal_indices(len(rendered.frames), frames)
    return rendered.frames[chosen], rendered.masks[chosen]


def assert_one_line_error(result, *fragments: str) -> None:
    """The run fails with one error line, last on stderr (after any progress lines), no traceback."""
    assert result.returncode != 0, result.stderr
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("vt-ace: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


# --------------------------------------------------------------------------- supervoxels (no model)
def test_supervoxels_find_the_ball_and_drop_duplicates_and_tiny_segments():
    params = SegmentParams()
    best = []
    for index in range(1, 4):
        volume, truth = sampled_video(index)
        kept = segment_volume(volume, params)
        best.append(max(iou(s.mask, truth) for s in kept))
    # The moving ball is one supervoxel at some resolution: a tube through time.
    assert min(best) > 0.9, best
    assert {s.resolution for s in kept} == set(params.resolutions)
    assert min(s.voxels for s in kept) >= params.min_fraction * truth.size
    for i, a in enumerate(kept):
        for b in kept[i + 1:]:
            if a.resolution != b.resolution:
                assert iou(a.mask, b.mask) <= params.max_iou
    # A stricter duplicate threshold keeps fewer; no threshold keeps every segment.
    assert len(segment_volume(volume, SegmentParams(max_iou=0.2))) < len(kept)
    assert len(segment_volume(volume, SegmentParams(max_iou=1.0, min_fraction=0.0))) > len(kept)


def test_candidate_clips_are_grey_outside_and_masks_map_back():
    volume, truth = sampled_video(1)
    params = SegmentParams(resolutions=(50,))
    candidates = list(video_candidates(volume, params, (64, 64)))
    ball = max(candidates, key=lambda c: iou(c.mask, truth))
    assert ball.clip.shape == (16, 64, 64, 3) and ball.clip.dtype == np.uint8
    outside = ~ball.clip_mask
    # Grey outside the supervoxel (up to the resize's blending along its border).
    assert outside.any() and (ball.clip[outside] == params.fill).all(axis=-1).mean() > 0.9
    assert (ball.clip[ball.clip_mask] != params.fill).any(axis=-1).mean() > 0.9
    x1, y1, x2, y2 = ball.window
    assert x2 - x1 == y2 - y1, "the window keeps the clip's (square) aspect ratio"
    assert iou(source_mask(ball.clip_mask, ball.window, ball.mask.shape), ball.mask) > 0.95


# --------------------------------------------------------------------------- the pipeline
def class_and_layer(fill: int = 117) -> tuple[str, str]:
    """The class to explain and the layer to explain it at, for the classifier under test.

    The class: the one the classifier finds least in an all-grey video. The faithfulness
    check starts adding concepts from such a video; for a class the classifier already
    predicts on grey (its default guess) adding concepts has nothing to recover.
    The layer: the deepest block whose gradient depends on the input. The block that
    feeds global pooling and the linear head has the same gradient for every video, so
    its TCAV scores are all 0 or 1 (with the 3-block classifier that is block3).
    """
    import torch

    from vtcav_common.models import load_model
    from vtcav_common.models.base import preprocess

    loaded = load_model(MODEL, str(CLASSIFIER))
    grey = preprocess(np.full((1, 16, 64, 64, 3), fill, np.uint8), loaded.input_spec)
    with torch.no_grad():
        logits = loaded.module(grey)[0]
    blocks = sorted(name for name in loaded.layer_names() if name.startswith("block") and "." not in name)
    return loaded.class_names[int(logits.argmin())], blocks[-2]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, make_world) -> dict[str, Path]:
    """A world, its candidates, random sets, discovered concepts, ranking and faithfulness."""
    needs_classifier()
    target, layer = class_and_layer()
    root = tmp_path_factory.mktemp("ace")
    world = make_world(seed=SEED, train=4, test=3)
    labels = world / "labels.jsonl"
    paths = {"target": target, "layer": layer, "root": root, "world": world, "labels": labels,
             "candidates": root / "cand.h5", "random": root / "random.h5", "concepts": root / "concepts.h5",
             "ranking": root / "ranking.jsonl", "work": root / "work", "faith": root / "faith.jsonl",
             "table": root / "faith.md",
             "sheets": root / "sheets"}
    ace("supervoxels", labels, "--label", target, "--split", "train", "-o", paths["candidates"], check=True)
    run_cmd("vt-concepts", "random", "--videos", labels, "--split", "train", "-R", "6", "--clips-per-set", "20",
            "-o", paths["random"], "--seed", "1", check=True)
    result = ace("discover", paths["candidates"], "--random", paths["random"], "--videos", labels,
                 "--target", target, "--layer", layer, "--k", "8", "--min-members", "4", "--max-members", "30",
                 *model_args(), "-o", paths["concepts"], "--ranking", paths["ranking"],
                 "--work-dir", paths["work"], check=True)
    paths["discover_log"] = result.stderr
    result = ace("faithfulness", paths["concepts"], paths["ranking"], "--videos", labels, "--split", "test",
                 *model_args(), "--repeats", "3", "-o", paths["faith"], "--table", paths["table"], check=True)
    paths["faith_log"] = result.stderr
    return paths


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def ball_share(concepts: Path, name: str) -> float:
    """The mean share of a concept's member voxels that belong to the moving ball (true masks)."""
    info = clipsets.get_set(concepts, name)
    rows = read_rows(str(concepts), name, range(info.n))
    truths: dict[str, np.ndarray] = {}
    shares = []
    for i, video_id in enumerate(rows.video_id):
        if video_id not in truths:
            split, label, number = video_id.split("_")
            truths[video_id] = render_video(SEED, int(number), label).masks
        member = source_mask(rows.masks[i], rows.boxes[i][0], rows.source_shape[i])
        truth = truths[video_id][rows.frames[i]]
        shares.append((member & truth).sum() / max(member.sum(), 1))
    return float(np.mean(shares))


def test_concept_file_holds_concepts_and_random_sets(pipeline):
    sets = clipsets.list_sets(pipeline["concepts"])
    concepts = [s for s in sets if s.role == "concept"]
    randoms = [s for s in sets if s.role == "random"]
    assert [s.name for s in concepts] == [f"ace_{i:02d}" for i in range(len(concepts))]
    assert len(concepts) >= 3 and len(randoms) == 6
    for info in concepts:
        assert info.kind == "supervoxel" and info.attrs["labels"] == [pipeline["target"]]
        assert 4 <= info.n <= 30
        rows = read_rows(str(pipeline["concepts"]), info.name, [0, info.n - 1])
        assert rows.masks.shape == (2, 16, 64, 64) and rows.masks.any()
        assert all(v.startswith(f"train_{pipeline['target']}_") for v in rows.video_id)


def test_ball_concept_ranks_above_the_background(pipeline):
    ranking = read_jsonl(pipeline["ranking"])
    assert [r["rank"] for r in ranking] == list(range(1, len(ranking) + 1))
    for row in ranking:
        assert set(row) >= {"concept", "tcav_mean", "p", "significant", "members"}
        assert isinstance(row["significant"], bool) and 0 <= row["tcav_mean"] <= 1
    shares = {r["concept"]: ball_share(pipeline["concepts"], r["concept"]) for r in ranking}
    ball = [r for r in ranking if shares[r["concept"]] > 0.5]
    background = [r for r in ranking if shares[r["concept"]] < 0.05]
    assert ball, f"no discovered concept is made of the ball's supervoxels: {shares}"
    assert background, f"no background concept: {shares}"
    best_ball = min(ball, key=lambda r: r["rank"])
    assert best_ball["rank"] < min(r["rank"] for r in background), (shares, ranking)
    assert best_ball["tcav_mean"] > max(r["tcav_mean"] for r in background)


def test_ranking_files_continue_with_the_tcav_tools(pipeline):
    """The kept work files are ordinary vt-cav / vt-embed files: vt-score and vt-stats read them."""
    work = pipeline["work"]
    scores = run_cmd("vt-score", work / "cavs.h5", work / "grads.h5", check=True).stdout
    stats = run_cmd("vt-stats", "-", input=scores, check=True).stdout
    concepts = {json.loads(line)["concept"] for line in stats.splitlines() if line.strip()}
    assert {r["concept"] for r in read_jsonl(pipeline["ranking"])} <= concepts


def test_faithfulness_top_concepts_matter_more_than_the_least(pipeline):
    records = read_jsonl(pipeline["faith"])

    def mean_over_k(mode: str, order: str, value: str) -> float:
        rows = [r for r in records if r["mode"] == mode and r["order"] == order]
        assert [r["k"] for r in rows] == list(range(1, len(rows) + 1)) and len(rows) >= 3
        return float(np.mean([r[value] for r in rows]))

    baseline = next(r for r in records if r["mode"] == "baseline")
    assert baseline["accuracy"] >= 2 / 3 and baseline["n_videos"] == 3
    # Averaged over k = 1..K, as the paper's tables read: by accuracy, and by the class's probability.
    for value in ("accuracy", "mean_prob"):
        add_top, add_least = mean_over_k("add", "top", value), mean_over_k("add", "least", value)
        remove_top, remove_least = mean_over_k("remove", "top", value), mean_over_k("remove", "least", value)
        assert add_top > add_least, ("adding", value, records)
        assert remove_top < remove_least, ("removing", value, records)
    # With the top concepts in place the class comes back; removing them all but loses it.
    top_add = [r for r in records if r["mode"] == "add" and r["order"] == "top"]
    top_remove = [r for r in records if r["mode"] == "remove" and r["order"] == "top"]
    assert top_add[-1]["accuracy"] >= 2 / 3 and top_remove[-1]["accuracy"] <= 1 / 3
    table = pipeline["table"].read_text()
    assert "Adding concepts" in table and "Removing concepts" in table and "| top |" in table
    assert "add" in pipeline["faith_log"] and "least" in pipeline["faith_log"]


def test_contact_sheets(pipeline):
    result = ace("sheet", pipeline["concepts"], "--ranking", pipeline["ranking"], "-o", pipeline["sheets"],
                 "--members", "3", "--frames", "4", check=True)
    names = [s.name for s in clipsets.list_sets(pipeline["concepts"]) if s.role == "concept"]
    pngs = sorted(p.stem for p in pipeline["sheets"].glob("*.png"))
    assert pngs == names and "contact sheets" in result.stderr
    image = cv2.imread(str(pipeline["sheets"] / f"{names[0]}.png"))
    assert image is not None and image.shape[0] > 3 * 128 and image.shape[1] >= 4 * 128


def test_candidates_are_reproducible_to_the_byte(pipeline, tmp_path):
    for name in ("a.h5", "b.h5"):
        ace("supervoxels", pipeline["labels"], "--label", pipeline["target"], "--split", "test", "--max-videos", "1",
            "--resolutions", "15,30", "-o", tmp_path / name, check=True)
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()


# --------------------------------------------------------------------------- bad input
def test_too_few_candidates_for_the_clusters_asked(pipeline):
    small = pipeline["root"] / "small.h5"
    ace("supervoxels", pipeline["labels"], "--label", pipeline["target"], "--split", "train", "--max-videos", "1",
        "--resolutions", "4", "-o", small, check=True)
    n = clipsets.get_set(small, "supervoxels").n
    result = ace("discover", small, "--random", pipeline["random"], "--videos", pipeline["labels"],
                 "--target", pipeline["target"], "--layer", pipeline["layer"], "--k", "50", *model_args(), "-o",
                 pipeline["root"] / "never.h5")
    assert_one_line_error(result, f"{n} candidate supervoxels cannot make 50 clusters", "--k")
    assert len(result.stderr.strip().splitlines()) == 1, "refused before any work"
    assert not (pipeline["root"] / "never.h5").exists()
    result = ace("discover", small, "--random", pipeline["random"], "--videos", pipeline["labels"],
                 "--target", pipeline["target"], "--layer", pipeline["layer"], "--k", "2", "--min-members", str(n + 1),
                 "--max-members", "1000", *model_args(), "-o", pipeline["root"] / "never.h5")
    assert_one_line_error(result, f"{n} candidate supervoxels cannot fill a concept of --min-members {n + 1}")
    result = ace("discover", small, "--random", pipeline["random"], "--videos", pipeline["labels"],
                 "--target", pipeline["target"], "--layer", pipeline["layer"], "--k", "2", "--min-members", str(n),
                 "--max-members", "1000", *model_args(), "-o", pipeline["root"] / "never.h5")
    assert_one_line_error(result, f"no cluster has --min-members {n} candidates")


def test_bad_inputs_get_one_line_errors(pipeline, tmp_path):
    labels = pipeline["labels"]
    result = ace("supervoxels", labels, "--label", "sideways", "-o", tmp_path / "x.h5")
    assert_one_line_error(result, "no videos with label 'sideways'")
    assert result.returncode == 2
    result = ace("supervoxels", labels, "--label", pipeline["target"], "--split", "nope", "-o", tmp_path / "x.h5")
    assert_one_line_error(result, "no videos", "'nope'")
    result = ace("discover", pipeline["random"], "--random", pipeline["random"], "--videos", labels,
                 "--target", pipeline["target"], "--layer", pipeline["layer"], *model_args(), "-o", tmp_path / "x.h5")
    assert_one_line_error(result, "no clip set 'supervoxels'")
    result = ace("discover", pipeline["candidates"], "--random", pipeline["candidates"], "--videos", labels,
                 "--target", pipeline["target"], "--layer", pipeline["layer"], *model_args(), "-o", tmp_path / "x.h5")
    assert_one_line_error(result, "needs at least 2 sets of role 'random'")
    bad_ranking = tmp_path / "ranking.jsonl"
    bad_ranking.write_text('{"concept": "ace_99", "rank": 1}\n')
    result = ace("faithfulness", pipeline["concepts"], bad_ranking, "--videos", labels, *model_args())
    assert_one_line_error(result, "ace_99", "not in the concept file")
    assert not list(tmp_path.glob("*.h5"))


def test_discover_prints_corrected_p_and_direction(pipeline):
    """The ranking on stderr names the corrected p as such and says which side of the null each concept is."""
    lines = [line for line in pipeline["discover_log"].splitlines() if "TCAV" in line and "members" in line]
    assert lines and all("-corrected p " in line and " p " in line for line in lines)
    assert all(("above" in line) != ("below" in line) for line in lines)
