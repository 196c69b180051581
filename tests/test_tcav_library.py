"""The TCAV library (vtcav_common.tcav): file kinds round-trip, streamed CAVs equal in-memory ones,
memory refused up front, non-finite inputs refused or skipped, run ids in every score record."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace as NS

import numpy as np
import pytest

from conftest import run_cmd
from vtcav_common.tcav import classifiers as cav_module
from vtcav_common.tcav.cav import ActivationSpace, classifier_help, fit_cav, finalize, register_classifier
from vtcav_common.formats.cavs import CAVFile, CAVWriter
from vtcav_common.formats.embeddings import Embeddings, EmbeddingsWriter, column_slabs, h5_name
from vtcav_common.core.errors import VtcavError
from vtcav_common.tcav import FitOptions, ScoreOptions, fit_cavs, score_cavs
from vtcav_common.tcav.fitting import task_seed
from vtcav_common.tcav.streaming import BASE_BYTES, Linalg

MODEL = {"source": "test", "arch": "toy", "weights_sha256": "ab" * 32, "num_classes": 2}
INPUT = {"frames": 4, "size": [8, 8]}
ODD = "blocks/1%x"          # needs escaping: a '/' and a '%'
SHAPE = (3, 4, 5)


def write(path, sets, layers=(ODD,), target=None):
    """An embeddings file through the writer: ``sets`` maps name -> (role, acts, grads)."""
    infos = {layer: NS(shape=SHAPE, channel_axis=0, channels_last=False, type="Conv3d", calls=1) for layer in layers}
    provenance = {"model": MODEL, "input": INPUT, "layers": list(layers), "target": target, "seed": 0}
    with EmbeddingsWriter(path, "test", provenance, infos) as writer:
        for name, (role, acts, grads) in sets.items():
            n = len(acts)
            sink = writer.add_set(NS(name=name, kind=role, role=role, n=n, has_labels=False), 2, np.float32,
                                  None if grads is None else np.float32)
            sink.write(NS(ids=[f"{name}#{i}" for i in range(n)], labels=None),
                       NS(logits=np.zeros((n, 2), np.float32), acts={l: acts for l in layers},
                          grads=None if grads is None else {l: grads for l in layers}))
            sink.close()


@pytest.fixture()
def toy(tmp_path):
    rng = np.random.default_rng(0)
    d = int(np.prod(SHAPE))
    direction = np.zeros(d, np.float32)
    direction[7] = 1
    sets = {"up": ("concept", (rng.normal(0, 1, (16, d)) + 3 * direction).reshape(16, *SHAPE), None)}
    for r in range(4):
        sets[f"random_{r}"] = ("random", rng.normal(0, 1, (16, d)).reshape(16, *SHAPE), None)
    sets = {k: (role, a.astype(np.float32), g) for k, (role, a, g) in sets.items()}
    write(tmp_path / "acts.h5", sets)
    grads = (rng.normal(0, 0.3, (12, d)) + direction).astype(np.float32).reshape(12, *SHAPE)
    write(tmp_path / "grads.h5", {"inputs": ("inputs", grads, grads)}, target="right")
    return tmp_path, sets, grads


def test_embeddings_round_trip_with_a_layer_name_that_needs_escaping(toy):
    tmp, sets, _ = toy
    with Embeddings(tmp / "acts.h5") as emb:
        assert emb.layers == [ODD] and h5_name(ODD) in emb.handle["sets/up/acts"]
        assert emb.layer_shape(ODD) == SHAPE and emb.feature_size(ODD) == 60
        np.testing.assert_array_equal(emb.flat("up", ODD), sets["up"][1].reshape(16, -1))
        rows = np.concatenate(list(emb.iter_flat("up", ODD, "acts", batch=5)))
        np.testing.assert_array_equal(rows, sets["up"][1].reshape(16, -1))
        blocks = list(emb.column_blocks("up", ODD, columns=7))
        np.testing.assert_array_equal(np.concatenate([b for _, b in blocks], axis=1), rows)
        assert [first for first, _ in blocks] == list(np.cumsum([0] + [b.shape[1] for _, b in blocks])[:-1])
        assert emb.ids("up")[:2] == ["up#0", "up#1"] and len(emb.run_id) == 16


def test_column_slabs_cover_every_feature_once_in_order():
    for shape, columns in [((3, 4, 5), 7), ((3, 4, 5), 1), ((3, 4, 5), 1000), ((6,), 4), ((2, 3), 3)]:
        seen = []
        for first, index in column_slabs(shape, columns):
            flat = np.arange(int(np.prod(shape))).reshape(shape)[index].ravel()
            assert flat[0] == first and len(flat) <= max(columns, 1)
            seen.extend(flat.tolist())
        assert seen == list(range(int(np.prod(shape))))


def test_cav_file_round_trip_with_a_layer_name_that_needs_escaping(tmp_path):
    vectors = np.eye(2, 6, dtype=np.float32)
    with CAVWriter(tmp_path / "c.h5", "test", {"layers": [ODD], "model": MODEL}) as writer:
        writer.write_layer(ODD, ["a", "b"], ["r0", "r1"], ["concept", "null"], [0, 1],
                           {"vectors": vectors, "accuracy": np.array([0.75, 0.5], np.float32)})
    with CAVFile(tmp_path / "c.h5") as cavs:
        assert cavs.layers == [ODD]
        layer = cavs.read_layer(ODD)
    np.testing.assert_array_equal(layer.vectors, vectors)
    assert [(r["concept"], r["against"], r["kind"], r["replicate"], r["accuracy"]) for r in layer.table] == \
        [("a", "r0", "concept", 0, 0.75), ("b", "r1", "null", 1, 0.5)]


def _fit(tmp, name, **options):
    fit_cavs([tmp / "acts.h5"], tmp / name, options=FitOptions(seed=2, **options))
    with CAVFile(tmp / name) as cavs:
        return cavs.read_layer(ODD)


def test_streamed_cavs_equal_the_in_memory_fit(toy):
    """Many small column blocks (a tight --max-memory) give the CAVs of the whole matrix at once."""
    tmp, sets, _ = toy
    whole = _fit(tmp, "whole.h5", device="cpu")
    m = 5 * 16
    blocks = _fit(tmp, "blocks.h5", device="cpu", max_memory=BASE_BYTES + 40 * m * m + 8 * 25 * 60 + 6 * m * 7)
    np.testing.assert_allclose(blocks.vectors, whole.vectors, atol=2e-5)
    assert [r["accuracy"] for r in blocks.table] == [r["accuracy"] for r in whole.table]
    # ... and the in-memory ActivationSpace on the stacked rows (rows in sorted set order, as fit_cavs).
    names = sorted(sets)
    rows = np.concatenate([sets[n][1].reshape(16, -1) for n in names])
    space = ActivationSpace(rows)
    where = {n: np.arange(16 * i, 16 * (i + 1)) for i, n in enumerate(names)}
    fit = fit_cav(space, where["up"], where["random_0"], "sgd", task_seed(2, 0, 0))
    np.testing.assert_allclose(finalize(space, [fit])[0], whole.vectors[0], atol=2e-5)
    assert whole.table[0]["accuracy"] == pytest.approx(fit.accuracy)


def test_blocks_kept_from_the_gram_pass_give_the_same_cavs(toy, monkeypatch):
    """The back-projection uses the blocks kept from the Gram pass and reads only the others."""
    from vtcav_common.tcav import streaming

    tmp, _, _ = toy
    m = 5 * 16
    monkeypatch.setattr(streaming, "WORKING_BYTES", 0)
    monkeypatch.setattr(streaming, "MIN_BLOCK_BYTES", 6 * m * 7)        # blocks of at most 7 features
    skipped = []
    reader = streaming.LayerRows.column_blocks

    def counting(self, columns, skip=()):
        skipped.append(len(skip))
        return reader(self, columns, skip)

    monkeypatch.setattr(streaming.LayerRows, "column_blocks", counting)
    monkeypatch.setattr(streaming, "KEEP_BYTES", 0)
    read_twice = _fit(tmp, "twice.h5", device="cpu")
    monkeypatch.setattr(streaming, "KEEP_BYTES", 40 * m * m + 4 * m * 7 * 3)   # the Gram matrix, and some blocks
    kept = _fit(tmp, "kept.h5", device="cpu")
    blocks = len(list(column_slabs(SHAPE, 7)))
    assert skipped[:3] == [0, 0, 0] and 0 < skipped[3] < blocks
    np.testing.assert_array_equal(kept.vectors, read_twice.vectors)
    assert kept.table == read_twice.table


def test_a_run_that_cannot_fit_its_memory_is_refused_before_any_work(toy, tmp_path):
    tmp, _, _ = toy
    result = run_cmd("vt-cav", tmp / "acts.h5", "-o", tmp_path / "c.h5", "--max-memory", "100")
    assert result.returncode == 1 and "needs at least" in result.stderr and "--max-memory is 100 MB" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "c.h5").exists()


def test_torch_products_equal_numpy_products():
    pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    block, mix = rng.normal(size=(9, 40)).astype(np.float32), rng.normal(size=(9, 3)).astype(np.float32)
    grams = []
    for name in ("numpy", "cpu"):
        gram = np.zeros((9, 9))
        Linalg(name).gram_add(gram, block)
        grams.append(gram)
        np.testing.assert_allclose(Linalg(name).project(mix, block), mix.T @ block, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grams[0], grams[1], rtol=1e-5)


def test_score_records_carry_the_run_ids_and_are_strict_json(toy):
    tmp, _, _ = toy
    fit_cavs([tmp / "acts.h5"], tmp / "cavs.h5")
    records = score_cavs(tmp / "cavs.h5", tmp / "grads.h5")
    with CAVFile(tmp / "cavs.h5") as cavs, Embeddings(tmp / "grads.h5") as grads:
        assert {(r.cav_run, r.gradients_run) for r in records} == {(cavs.run_id, grads.run_id)}
        assert cavs.provenance["source_runs"] == [Embeddings(tmp / "acts.h5").run_id]
    up = [r.score for r in records if r.concept == "up" and r.kind == "concept"]
    assert len(records) == 4 + 6 and np.mean(up) > 0.9   # 4 concept CAVs, the 6 pairs of 4 random sets
    first = json.loads(records[0].to_json())
    assert list(first)[:6] == ["target", "layer", "concept", "against", "kind", "replicate"]
    assert first["control"] is None and first["cav_run"] == records[0].cav_run
    again = score_cavs(tmp / "cavs.h5", tmp / "grads.h5")
    assert [r.to_json() for r in again] == [r.to_json() for r in records]


def test_non_finite_activations_are_refused_with_the_file_layer_and_clip(toy, tmp_path):
    tmp, sets, _ = toy
    bad = {k: (role, a.copy(), g) for k, (role, a, g) in sets.items()}
    bad["random_2"][1][5, 1, 2, 3] = np.nan
    write(tmp_path / "nan.h5", bad)
    refused = run_cmd("vt-cav", tmp_path / "nan.h5", "-o", tmp_path / "c.h5", "-q")
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1
    assert f"nan.h5: non-finite activations at layer '{ODD}', set 'random_2', clip 5 (random_2#5)" in refused.stderr
    assert not (tmp_path / "c.h5").exists() and "Traceback" not in refused.stderr
    skipped = run_cmd("vt-cav", tmp_path / "nan.h5", "-o", tmp_path / "c.h5", "--skip-nonfinite", check=True)
    assert "skipped 1 clip(s) with non-finite activations" in skipped.stderr
    with CAVFile(tmp_path / "c.h5") as cavs:
        assert np.isfinite(cavs.read_layer(ODD).vectors).all()


def test_non_finite_gradients_are_refused_or_skipped_and_the_output_stays_strict_json(toy, tmp_path):
    tmp, _, grads = toy
    bad = grads.copy()
    bad[3, 0, 0, 0] = np.inf
    write(tmp_path / "g.h5", {"inputs": ("inputs", bad, bad)}, target="right")
    fit_cavs([tmp / "acts.h5"], tmp_path / "cavs.h5")
    refused = run_cmd("vt-score", tmp_path / "cavs.h5", tmp_path / "g.h5", "-o", tmp_path / "s.jsonl", "-q")
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1
    assert f"g.h5: non-finite gradient at layer '{ODD}', set 'inputs', input 3 (inputs#3)" in refused.stderr
    assert not (tmp_path / "s.jsonl").exists()
    kept = run_cmd("vt-score", tmp_path / "cavs.h5", tmp_path / "g.h5", "--skip-nonfinite", check=True)
    assert "skipped 1 input(s) with non-finite gradients" in kept.stderr
    rows = [json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON")) for line in
            kept.stdout.splitlines()]
    assert {r["n_inputs"] for r in rows} == {11}


def test_a_classifier_is_one_registered_function(toy, monkeypatch):
    # the registry is process-wide: the test's classifier is removed again afterwards
    monkeypatch.setattr(cav_module.CLASSIFIERS, "_items", dict(cav_module.CLASSIFIERS._items))

    @register_classifier("first-feature", "the first feature's sign")
    def _first(x, label, seed):
        coef = np.zeros(x.shape[1])
        coef[0] = 1.0
        return coef, lambda rows: (rows[:, 0] > 0).astype(int)

    assert "first-feature: the first feature's sign" in classifier_help()
    space = ActivationSpace(np.random.default_rng(0).normal(size=(12, 20)))
    assert fit_cav(space, np.arange(6), np.arange(6, 12), "first-feature").n_test == 4
    with pytest.raises(VtcavError, match="unknown classifier 'nope'; choose from sgd, logistic, mean, first-feature"):
        fit_cav(space, np.arange(6), np.arange(6, 12), "nope")


def test_help_lists_every_classifier_and_version_imports_nothing_heavy():
    help_text = run_cmd("vt-cav", "--help", check=True).stdout
    for name in cav_module.CLASSIFIERS:
        assert f"{name}:" in help_text
    probe = ("import sys\nfrom tools.{tool} import main\ntry:\n    sys.argv = ['x', '--version']; main()\n"
             "except SystemExit:\n    pass\nprint(sorted(m for m in ('torch', 'sklearn', 'h5py', 'scipy') "
             "if m in sys.modules))")
    for tool in ("vt_cav", "vt_score"):
        out = subprocess.run([sys.executable, "-c", probe.format(tool=tool)], capture_output=True, text=True,
                             check=True).stdout
        assert out.strip().splitlines()[-1] == "[]", (tool, out)


def test_score_options_set_and_permutation(toy):
    tmp, _, _ = toy
    fit_cavs([tmp / "acts.h5"], tmp / "cavs.h5")
    plain = score_cavs(tmp / "cavs.h5", tmp / "grads.h5", ScoreOptions(set_name="inputs"))
    control = score_cavs(tmp / "cavs.h5", tmp / "grads.h5", ScoreOptions(permute_gradients=True, seed=1))
    assert all(r.control == "permuted-gradients" for r in control) and plain[0].control is None
    with pytest.raises(VtcavError, match="set 'nope' has no gradients"):
        score_cavs(tmp / "cavs.h5", tmp / "grads.h5", ScoreOptions(set_name="nope"))


def test_too_few_clips_for_a_cav_names_the_file_and_the_sets(toy, tmp_path):
    tmp, sets, _ = toy
    small = dict(sets, up=("concept", sets["up"][1][:2], None))
    write(tmp_path / "small.h5", small)
    result = run_cmd("vt-cav", tmp_path / "small.h5", "-o", tmp_path / "c.h5", "-q")
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "small.h5: set 'up' has 2 clip(s); a CAV needs at least 3 on each side" in result.stderr
    empty = dict(sets, up=("concept", sets["up"][1][:0], None))
    write(tmp_path / "empty.h5", empty)
    result = run_cmd("vt-cav", tmp_path / "empty.h5", "-o", tmp_path / "c.h5", "-q")
    assert result.returncode == 1 and "empty.h5: set 'up' has 0 clip(s)" in result.stderr
    assert "Traceback" not in result.stderr
