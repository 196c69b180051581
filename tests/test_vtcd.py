"""vt-ace vtcd: concepts discovered in the model's features, ranked by random masking against a null.

The motion world knows the answer for class `right`: the ball's motion decides the class, the
static distractors carry nothing. So the concept made of the ball's tubelets must be the top of
its layer and above chance, the static squares' and triangles' concepts must be at chance, and the
null (randomly shifted copies of the concepts) must itself be calibrated.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import WEIGHTS, run_cli
from vtcav_common.synth import generate_world

MODEL = "vtcav_common.models.tiny:motion_c3d"
CLASSIFIER = WEIGHTS / "classifier.pt"
LAYERS = "block1,block2,block3"


def model_args() -> list[str]:
    return ["--model", MODEL, "--weights", str(CLASSIFIER)]


def test_feature_masks_multiply_the_layer_output_inside_the_model():
    """Masking through the hooks is the same as zeroing block3's positions by hand between the blocks."""
    from vtcav_common.ace.masking import MaskedModel
    from vtcav_common.ace.vtcd import layer_grids
    from vtcav_common.models import load_model
    from vtcav_common.models.base import preprocess

    loaded = load_model(MODEL, str(CLASSIFIER))
    grids = layer_grids(loaded, ["block3"])
    assert grids[0].grid == (8, 16, 16) and grids[0].channels == 48
    rng = np.random.default_rng(0)
    volume = rng.integers(0, 255, (16, 64, 64, 3), dtype=np.uint8)
    keep = (rng.random(grids[0].positions) > 0.3).astype(np.float32)
    got = MaskedModel(loaded, grids, 4).logits(volume, [{}, {"block3": keep}])
    m = loaded.module
    with torch.no_grad():
        x = preprocess(volume[None], loaded.input_spec)
        h = m.block3(m.block2(m.block1(x)))
        plain = m.head(m.pool(m.block4(h)).flatten(1))
        masked = m.head(m.pool(m.block4(h * torch.from_numpy(keep).reshape(1, 1, 8, 16, 16))).flatten(1))
    np.testing.assert_allclose(got[0], plain[0].numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[1], masked[0].numpy(), rtol=1e-5, atol=1e-5)
    assert np.abs(got[0] - got[1]).max() > 1e-3   # the mask did something


def test_a_layer_without_a_grid_is_refused(tiny_world):
    result = run_cli("vt-ace", "tubelets", tiny_world / "labels.jsonl", "--label", "right", *model_args(),
                     "--layers", "head", "-o", tiny_world / "tub_head.h5")
    assert result.returncode == 2, result.stderr
    assert "VTCD needs channels and a T x H x W grid" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tiny_world / "tub_head.h5").exists()


# --------------------------------------------------------------------------- the known answer (slow)
@pytest.fixture(scope="module")
def discovery(tmp_path_factory):
    """One run of the whole command on 10 `right` videos of a world the classifier never saw."""
    out = tmp_path_factory.mktemp("vtcd")
    generate_world(out / "world", seed=3, train_per_class=10, test_per_class=0, classes=("right",))
    result = run_cli("vt-ace", "vtcd", out / "world" / "labels.jsonl", "--target", "right", "--split", "train",
                     *model_args(), "--layers", LAYERS, "-o", out / "concepts.h5", "--ranking", out / "ranking.jsonl",
                     "--faithfulness", out / "faith.jsonl", "--table", out / "vtcd.md", "--gt",
                     out / "world" / "gt.jsonl", "--work-dir", out / "work", "--sheets", out / "sheets")
    assert result.returncode == 0, result.stderr
    ranking = [json.loads(line) for line in (out / "ranking.jsonl").read_text().splitlines()]
    return out, ranking


def top_of(ranking: list[dict], layer: str) -> dict:
    return next(r for r in ranking if r["layer"] == layer and r["layer_rank"] == 1)


@pytest.mark.slow
def test_the_ball_is_the_top_concept_and_above_chance(discovery):
    _, ranking = discovery
    for layer in ("block1", "block2"):
        top = top_of(ranking, layer)
        assert top["gt_overlap"]["ball"] >= 0.8, top        # the ball's own tubelets
        assert top["verdict"] == "above chance" and top["excess_ci"][0] > 0, top
    # At block3 (the deepest explained) motion shows around the ball: the top concept lies on the ball's
    # track, and the ball's own concept still masks more than its null copies.
    top = top_of(ranking, "block3")
    assert top["verdict"] == "above chance", top
    assert top["gt_track_overlap"]["ball"] >= 0.3, top
    background = [r for r in ranking if r["gt_track_overlap"]["ball"] < 0.1]
    assert background and all(top["excess"] > r["excess"] for r in background)
    ball = [r for r in ranking if r["layer"] == "block3" and r["gt_overlap"]["ball"] >= 0.8]
    assert ball and ball[0]["excess_ci"][0] > 0, ball


@pytest.mark.slow
def test_static_distractors_are_at_chance_and_the_null_is_calibrated(discovery):
    out, ranking = discovery
    distractors = [r for r in ranking if max(r["gt_overlap"]["square"], r["gt_overlap"].get("triangle", 0)) >= 0.5]
    assert distractors, "no concept of the static distractors was discovered"
    assert all(r["verdict"] == "at chance" for r in distractors), distractors
    assert all(r["excess_ci"][0] <= 0 <= r["excess_ci"][1] for r in distractors), distractors
    assert all(len(r["null_copies"]) == 4 and r["correction"] == "holm" for r in ranking)
    # the sheets and the tables exist for every concept and layer
    assert sorted(p.stem for p in (out / "sheets").glob("*.png")) == sorted(r["concept"] for r in ranking)
    faith = [json.loads(line) for line in (out / "faith.jsonl").read_text().splitlines()]
    for layer in LAYERS.split(","):
        cell = {(r["mode"], r["order"], r["k"]): r["mean_prob"] for r in faith if r["layer"] == layer}
        # removing the layer's top concept costs more probability than removing its least one
        assert cell[("remove", "top", 1)] < cell[("remove", "least", 1)], (layer, cell)
        assert cell[("add", "top", 1)] > cell[("add", "least", 1)], (layer, cell)


@pytest.mark.slow
def test_masks_in_shards_merge_to_the_unsharded_statistics(discovery):
    import h5py

    out, _ = discovery
    common = [out / "concepts.h5", out / "work" / "tubelets.h5", "--videos", out / "world" / "labels.jsonl",
              *model_args(), "--masks", "8"]
    run_cli("vt-ace", "masks", *common, "-o", out / "all.h5", check=True)
    for k in (0, 1):
        run_cli("vt-ace", "masks", *common, "--shard", f"{k}/2", "-o", out / f"part.{k}.h5", check=True)
    run_cli("vt-merge", out / "merged.h5", out / "part.0.h5", out / "part.1.h5", "--copy", check=True)
    with h5py.File(out / "all.h5") as a, h5py.File(out / "merged.h5") as b:
        for name in ("sxx", "sxy", "sy", "present", "row", "baseline"):
            np.testing.assert_array_equal(a[name][()], b[name][()])
    result = run_cli("vt-ace", "vtcd", out / "work" / "tubelets.h5", "--videos", out / "world" / "labels.jsonl",
                     "--target", "right", *model_args(), "--concepts", out / "concepts.h5", "--stats",
                     out / "part.0.h5")
    assert result.returncode == 1 and "join the shards with vt-merge first" in result.stderr
    ranked = run_cli("vt-ace", "vtcd", out / "work" / "tubelets.h5", "--videos", out / "world" / "labels.jsonl",
                     "--target", "right", *model_args(), "--concepts", out / "concepts.h5", "--stats",
                     out / "merged.h5", check=True)
    assert len(ranked.stdout.splitlines()) == len((out / "ranking.jsonl").read_text().splitlines())


@pytest.mark.slow
def test_tubelets_in_shards_merge_to_the_unsharded_file(tiny_world):
    """--shard takes whole videos; vt-merge joins the clips, masks and the VTCD features and grid weights."""
    import h5py

    from vtcav_common.ace.vtcd import read_tubelets

    common = [tiny_world / "labels.jsonl", "--label", "right", "--split", "train", *model_args(), "--layers",
              "block3", "--max-videos", "2"]
    run_cli("vt-ace", "tubelets", *common, "-o", tiny_world / "tub_all.h5", check=True)
    for k in (0, 1):
        run_cli("vt-ace", "tubelets", *common, "--shard", f"{k}/2", "-o", tiny_world / f"tub.{k}.h5", check=True)
    run_cli("vt-merge", tiny_world / "tub_m.h5", tiny_world / "tub.0.h5", tiny_world / "tub.1.h5", "--copy",
            check=True)
    whole, merged = read_tubelets(str(tiny_world / "tub_all.h5")), read_tubelets(str(tiny_world / "tub_m.h5"))
    assert whole.order == merged.order and len(whole.order) == 2
    np.testing.assert_array_equal(whole.features("block3"), merged.features("block3"))
    with h5py.File(tiny_world / "tub_all.h5") as a, h5py.File(tiny_world / "tub_m.h5") as b:
        for name in ("clips", "masks", "vtcd_grid/block3"):
            np.testing.assert_array_equal(a["concepts/tubelets"][name][()], b["concepts/tubelets"][name][()])
    shard = run_cli("vt-ace", "vtcd", tiny_world / "tub.0.h5", "--videos", tiny_world / "labels.jsonl", "--target",
                    "right", *model_args(), "-o", tiny_world / "c.h5", "--concepts-only")
    assert shard.returncode == 1 and "join the shards with vt-merge first" in shard.stderr
