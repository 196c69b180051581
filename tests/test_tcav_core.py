"""CAVs, scores and statistics: the maths, and vt-cav / vt-score / vt-stats on small files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as scipy_stats
from sklearn.linear_model import LogisticRegression, SGDClassifier

from conftest import run_cmd
from vtcav_common.core import h5io
from vtcav_common.formats.cavs import read_cavs
from vtcav_common.tcav.cav import ActivationSpace, fit_cav, finalize
from vtcav_common.tcav.derivatives import directional_derivatives, tcav_scores
from vtcav_common.stats import correct, significance_tests

MODEL = {"source": "test", "arch": "toy", "weights": "toy.pt", "weights_sha256": "ab" * 32, "num_classes": 4}
INPUT = {"frames": 8, "size": [32, 32], "mean": [0.5] * 3, "std": [0.25] * 3, "layout": "NCTHW",
         "channel_order": "RGB"}


def _cosine(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.parametrize("name", ["sgd", "logistic"])
def test_fitting_in_the_span_equals_fitting_in_feature_space(name):
    """The fast path must find the boundary scikit-learn finds on the raw features."""
    rng = np.random.default_rng(0)
    concept = rng.normal(0.3, 1, (24, 2000)).astype(np.float32)
    random = rng.normal(0.0, 1, (30, 2000)).astype(np.float32)
    space = ActivationSpace(np.concatenate([concept, random]))
    fit = fit_cav(space, np.arange(24), np.arange(24, 54), name, seed=3)
    fast = finalize(space, [fit])[0]

    # The same balancing and split, done by hand, then sklearn on all 2000 features.
    from sklearn.model_selection import train_test_split
    sub = np.random.default_rng(3)
    neg = np.sort(sub.choice(np.arange(24, 54), 24, replace=False))
    index = np.concatenate([np.arange(24), neg])
    label = np.r_[np.ones(24, int), np.zeros(24, int)]
    train, _ = train_test_split(np.arange(48), test_size=1 / 3, stratify=label, random_state=3)
    x = np.concatenate([concept, random])[index][train].astype(np.float64)
    model = (SGDClassifier(alpha=0.01, max_iter=1000, tol=1e-3, random_state=3) if name == "sgd"
             else LogisticRegression(C=1.0, max_iter=2000)).fit(x, label[train])
    assert _cosine(fast, model.coef_[0]) > 0.999
    assert abs(np.linalg.norm(fast) - 1) < 1e-5


def test_cav_points_toward_the_concept_and_reports_held_out_accuracy():
    rng = np.random.default_rng(1)
    concept = rng.normal(1.0, 1, (30, 300))
    random = rng.normal(0.0, 1, (45, 300))
    space = ActivationSpace(np.concatenate([concept, random]))
    for name in ("sgd", "logistic", "mean"):
        fit = fit_cav(space, np.arange(30), np.arange(30, 75), name, seed=0)
        vector = finalize(space, [fit])[0]
        assert (concept @ vector).mean() > (random @ vector).mean()
        assert fit.n_test == 20 and fit.n_train == 40      # balanced to 30 + 30, 1/3 held out
        assert fit.accuracy >= 0.9


def test_mean_classifier_is_the_normalised_mean_difference():
    rng = np.random.default_rng(2)
    a, b = rng.normal(0.5, 1, (12, 50)), rng.normal(0, 1, (12, 50))
    space = ActivationSpace(np.concatenate([a, b]))
    fit = fit_cav(space, np.arange(12), np.arange(12, 24), "mean", seed=0)
    vector = finalize(space, [fit])[0]
    # the mean difference over the training rows only
    from sklearn.model_selection import train_test_split
    label = np.r_[np.ones(12, int), np.zeros(12, int)]
    train, _ = train_test_split(np.arange(24), test_size=1 / 3, stratify=label, random_state=0)
    rows = np.concatenate([a, b])
    expected = rows[train][label[train] == 1].mean(0) - rows[train][label[train] == 0].mean(0)
    assert _cosine(vector, expected) > 0.9999


def test_directional_derivatives_and_scores():
    grads = np.array([[1.0, 0.0], [0.5, -1.0], [-1.0, 0.2], [0.0, 1.0]])
    cavs = np.array([[1.0, 0.0], [0.0, 1.0]])
    s = directional_derivatives([grads[:2], grads[2:]], cavs)
    np.testing.assert_allclose(s, grads @ cavs.T)
    sign, magnitude = tcav_scores(s)
    np.testing.assert_allclose(sign, [0.5, 0.5])
    np.testing.assert_allclose(magnitude, [0.125, 0.05])


def test_corrections_match_hand_computed_values():
    p = [0.01, 0.04, 0.03, 0.2]
    np.testing.assert_allclose(correct(p, "bonferroni"), [0.04, 0.16, 0.12, 0.8])
    np.testing.assert_allclose(correct(p, "holm"), [0.04, 0.09, 0.09, 0.2])
    np.testing.assert_allclose(correct(p, "bh"), [0.04, 0.0533333, 0.0533333, 0.2], rtol=1e-5)


def _records(layer, concept_scores, null_scores, accuracy=0.9, target="right"):
    rows = [{"target": target, "layer": layer, "concept": "c", "against": f"random_{i:02d}", "kind": "concept",
             "score": s, "magnitude": 0.1, "cav_accuracy": accuracy} for i, s in enumerate(concept_scores)]
    rows += [{"target": target, "layer": layer, "concept": f"random_{i:02d}", "against": "x", "kind": "null",
              "score": s, "magnitude": 0.0, "cav_accuracy": 0.5} for i, s in enumerate(null_scores)]
    return rows


def test_t_test_against_null_with_bonferroni():
    rng = np.random.default_rng(0)
    concept, null = rng.normal(0.9, 0.05, 10), rng.normal(0.5, 0.2, 10)
    results = significance_tests(_records("l1", concept, null) + _records("l2", null[::-1], null), test="ttest")
    assert [r["layer"] for r in results] == ["l1", "l2"]
    expected = scipy_stats.ttest_ind(concept, null)
    assert results[0]["p"] == pytest.approx(expected.pvalue)
    assert results[0]["p_corrected"] == pytest.approx(min(1, 2 * expected.pvalue))
    assert results[0]["significant"] and results[0]["direction"] == "+"
    assert not results[1]["significant"]


def test_concept_with_chance_cavs_is_never_significant():
    concept, null = np.linspace(0.94, 0.96, 10), np.linspace(0.3, 0.7, 10)
    (result,) = significance_tests(_records("l1", concept, null, accuracy=0.5), test="ttest")
    assert result["p"] < 1e-6 and not result["cav_ok"] and not result["significant"]


def _twin_world(n=30, d=40, seed=0):
    """Each clip's appearance varies a lot; its twin is the same clip without the motion (+e0)."""
    rng = np.random.default_rng(seed)
    appearance = rng.normal(0, 3.0, (n, d))
    motion = np.zeros(d)
    motion[0] = 1.0
    return appearance + motion + rng.normal(0, .1, (n, d)), appearance + rng.normal(0, .1, (n, d))


def test_a_set_and_its_twin_are_split_by_pair():
    """Split clip by clip, a test clip's twin would be a training example of the other side:
    accuracy falls below chance and the CAV mixes appearance in; split by pair it is the motion."""
    concept, twin = _twin_world()
    space = ActivationSpace(np.concatenate([concept, twin]))
    n = len(concept)
    for paired, near_motion, accuracy in ((True, 0.95, 0.45), (False, 0.5, 0.0)):
        fits = [fit_cav(space, np.arange(n), n + np.arange(n), "mean", seed, paired=paired) for seed in range(5)]
        cosines = finalize(space, fits)[:, 0]
        if paired:
            assert cosines.min() > near_motion and np.mean([f.accuracy for f in fits]) > accuracy
        else:   # what the pairing prevents
            assert np.mean(cosines) < near_motion and np.mean([f.accuracy for f in fits]) < 0.4


def test_vt_cav_fits_a_set_against_its_twin_by_pair(tmp_path):
    concept, twin = _twin_world()
    rng = np.random.default_rng(1)
    sets = {"ball": ("concept", {"a": concept.astype(np.float32)}, None),
            "ball~frozen": ("twin", {"a": twin.astype(np.float32)}, None)}
    for r in range(3):
        sets[f"random_{r:02d}"] = ("random", {"a": rng.normal(0, 3.0, (30, 40)).astype(np.float32)}, None)
    write_embeddings(tmp_path / "acts.h5", sets, layers=("a",))
    run_cmd("vt-cav", tmp_path / "acts.h5", "-o", tmp_path / "cavs.h5", "--relative", "ball:ball~frozen",
            "--classifier", "mean", "-q", check=True)
    _, (layer,) = read_cavs(tmp_path / "cavs.h5")
    rows = [i for i, r in enumerate(layer.table) if r["concept"] == "ball" and r["against"] == "ball~frozen"]
    assert rows
    assert np.abs(layer.vectors[rows][:, 0]).min() > 0.95, "the twin CAV is not the motion"
    assert min(layer.table[i]["accuracy"] for i in rows) > 0.45


# --------------------------------------------------------------------------- the commands
def write_embeddings(path, sets, layers=("a", "b"), model=MODEL, target=None, seed=0):
    """A small embeddings file in vt-embed's layout: ``sets`` maps name -> (role, acts, grads)."""
    provenance = {"model": model, "input": INPUT, "layers": list(layers), "target": target,
                  "target_index": 1 if target else None, "dtype": "float32", "inputs": "test", "seed": seed}
    with h5io.create(path, "embeddings", "test", provenance) as handle:
        for name, (role, acts, grads) in sets.items():
            group = handle.create_group(f"sets/{name}")
            group.attrs.update(kind=role, role=role, n=len(acts[layers[0]]))
            # a temporal twin holds its source's clips (vt-embed names a clip VIDEO#ROW)
            source = name.split("~")[0]
            h5io.string_dataset(group, "ids", [f"{source}#{i}" for i in range(len(acts[layers[0]]))])
            for layer in layers:
                h5io.dataset(group, f"acts/{layer}", acts[layer])
                if grads is not None:
                    h5io.dataset(group, f"grads/{layer}", grads[layer])
        for layer in layers:
            group = handle.create_group(f"layers/{layer}")
            group.attrs.update(name=layer, shape=list(sets[next(iter(sets))][1][layer].shape[1:]))


@pytest.fixture(scope="module")
def toy_files(tmp_path_factory):
    """Concept 'up' lies along +e0 at layer a; the target's gradients also point along +e0."""
    tmp = tmp_path_factory.mktemp("toy")
    rng = np.random.default_rng(0)
    d = 64
    direction = np.zeros(d, np.float32)
    direction[0] = 1
    layers = {}
    sets = {}
    for name, shift in [("up", 3.0), ("down", -3.0)]:
        acts = {l: (rng.normal(0, 1, (20, d)) + shift * direction).astype(np.float32) for l in ("a", "b")}
        sets[name] = ("concept", acts, None)
    for r in range(6):
        sets[f"random_{r:02d}"] = ("random", {l: rng.normal(0, 1, (20, d)).astype(np.float32) for l in ("a", "b")},
                                   None)
    write_embeddings(tmp / "acts.h5", sets)
    grads = {l: (rng.normal(0, 0.3, (30, d)) + direction).astype(np.float32) for l in ("a", "b")}
    acts = {l: rng.normal(0, 1, (30, d)).astype(np.float32) for l in ("a", "b")}
    write_embeddings(tmp / "grads.h5", {"inputs": ("inputs", acts, grads)}, target="right")
    other = dict(MODEL, weights_sha256="cd" * 32)
    write_embeddings(tmp / "grads_other.h5", {"inputs": ("inputs", acts, grads)}, target="right", model=other)
    del layers
    return tmp


def test_cav_score_stats_pipeline_recovers_the_planted_direction(toy_files, tmp_path):
    cavs = tmp_path / "cavs.h5"
    run_cmd("vt-cav", toy_files / "acts.h5", "-o", cavs, "--relative", "up:down", "--seed", "1", check=True)
    scores = run_cmd("vt-score", cavs, toy_files / "grads.h5", check=True).stdout
    rows = [json.loads(line) for line in scores.splitlines()]
    # 2 layers x (2 concepts x 6 randoms + 15 null (every pair of the 6 randoms) + 6 relative)
    assert len(rows) == 2 * (12 + 15 + 6)
    up = [r["score"] for r in rows if r["concept"] == "up" and r["kind"] == "concept"]
    down = [r["score"] for r in rows if r["concept"] == "down" and r["kind"] == "concept"]
    assert np.mean(up) > 0.9 and np.mean(down) < 0.1
    stats = run_cmd("vt-stats", "-", "--plot", tmp_path / "fig.png", input=scores, check=True)
    results = {(r["layer"], r["concept"], r["against"]): r for r in map(json.loads, stats.stdout.splitlines())}
    assert results[("a", "up", "random")]["significant"] and results[("a", "up", "random")]["direction"] == "+"
    assert results[("a", "down", "random")]["significant"] and results[("a", "down", "random")]["direction"] == "-"
    assert results[("a", "up", "down")]["significant"]
    assert results[("a", "up", "random")]["m"] == 6      # 2 layers x (2 concepts + 1 relative)
    assert (tmp_path / "fig.png").stat().st_size > 10_000
    assert "TCAV significance" in stats.stderr


def test_same_seed_same_bytes(toy_files, tmp_path):
    for name in ("one.h5", "two.h5"):
        run_cmd("vt-cav", toy_files / "acts.h5", "-o", tmp_path / name, "--seed", "4", check=True)
    assert (tmp_path / "one.h5").read_bytes() == (tmp_path / "two.h5").read_bytes()


def test_permuted_gradients_control_destroys_the_answer(toy_files, tmp_path):
    cavs = tmp_path / "cavs.h5"
    run_cmd("vt-cav", toy_files / "acts.h5", "-o", cavs, check=True)
    scores = run_cmd("vt-score", cavs, toy_files / "grads.h5", "--permute-gradients", check=True).stdout
    assert all(json.loads(line)["control"] == "permuted-gradients" for line in scores.splitlines())
    stats = run_cmd("vt-stats", "-", input=scores, check=True).stdout
    results = {(r["layer"], r["concept"]): r for r in map(json.loads, stats.splitlines())}
    for layer in ("a", "b"):
        up, down = results[(layer, "up")], results[(layer, "down")]
        planted = (up["significant"] and up["direction"] == "+" and down["significant"]
                   and down["direction"] == "-" and up["mean"] > 0.9 and down["mean"] < 0.1)
        assert not planted


def test_gradients_from_another_model_are_refused(toy_files, tmp_path):
    cavs = tmp_path / "cavs.h5"
    run_cmd("vt-cav", toy_files / "acts.h5", "-o", cavs, check=True)
    result = run_cmd("vt-score", cavs, toy_files / "grads_other.h5", "-o", tmp_path / "s.jsonl")
    assert result.returncode == 1
    assert "different model weights" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "s.jsonl").exists()


def test_bad_inputs_get_one_line_errors(toy_files, tmp_path):
    missing = run_cmd("vt-cav", tmp_path / "nope.h5", "-o", tmp_path / "c.h5")
    assert missing.returncode == 1 and "nope.h5: no such file" in missing.stderr
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    junk = run_cmd("vt-cav", tmp_path / "junk.h5", "-o", tmp_path / "c.h5")
    assert junk.returncode == 1 and "not a readable HDF5 file" in junk.stderr
    unknown = run_cmd("vt-cav", toy_files / "acts.h5", "-o", tmp_path / "c.h5", "--concept", "sideways")
    assert unknown.returncode == 2 and "sideways" in unknown.stderr
    wrong_kind = run_cmd("vt-score", toy_files / "acts.h5", toy_files / "grads.h5")
    assert wrong_kind.returncode == 1 and "holds embeddings, expected cavs" in wrong_kind.stderr
    (tmp_path / "bad.jsonl").write_text('{"target": "x"}\n')
    bad = run_cmd("vt-stats", tmp_path / "bad.jsonl")
    assert bad.returncode == 1 and "bad.jsonl:1" in bad.stderr
    for result in (missing, junk, unknown, wrong_kind, bad):
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "c.h5").exists()


def test_layer_with_the_same_gradient_for_every_input_is_flagged(toy_files, tmp_path):
    """A layer feeding a linear read-out gives every input the same gradient: say so."""
    rng = np.random.default_rng(3)
    same = np.tile(rng.normal(size=(1, 64)).astype(np.float32), (10, 1))
    acts = {l: rng.normal(size=(10, 64)).astype(np.float32) for l in ("a", "b")}
    different = same + rng.normal(size=(10, 64)).astype(np.float32)
    write_embeddings(tmp_path / "flat.h5", {"inputs": ("inputs", acts, {"a": same, "b": different})},
                     target="right")
    cavs = tmp_path / "cavs.h5"
    run_cmd("vt-cav", toy_files / "acts.h5", "-o", cavs, check=True)
    result = run_cmd("vt-score", cavs, tmp_path / "flat.h5", check=True)
    assert "layer 'a' is the same for every input" in result.stderr
    assert "layer 'b'" not in result.stderr
    assert {json.loads(line)["score"] for line in result.stdout.splitlines() if '"layer":"a"' in line} <= {0.0, 1.0}
