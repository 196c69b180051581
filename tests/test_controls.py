"""Sanity controls (vt-embed --control, vt-stats --control): randomised models and gradients in the chain.

What a user relies on: the randomisation does what its name says (every module re-initialised,
or exactly the layers from the head down; another class's gradient; a permuted gradient),
seeded; the control is recorded and carried to every score record; files of different model
controls are refused together; vt-stats and vt-report say which verdicts also appear under a
control. And on the known-answer world: the verdict the trained model gives is not given under
a re-initialised model or permuted gradients.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import WEIGHTS, run_cli
from test_known_answer import LAYERS, world_and_concepts  # noqa: F401, F811  (the known-answer world, a fixture)
from vtcav_common.models import load_model
from vtcav_common.models.controls import Control, draw_classes, parse_control, permute_gradients, randomise
from vtcav_common.stats import controls as stats_controls

MODEL = "vtcav_common.models.tiny:motion_c3d"


def _tiny():
    return load_model(MODEL, str(WEIGHTS / "classifier.pt"), device="cpu")


def _params(loaded) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in loaded.module.state_dict().items()}


def _changed(before: dict, after: dict) -> set[str]:
    """The top-level modules (block1, ..., head) with any parameter or buffer changed."""
    return {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])
            and not k.endswith("num_batches_tracked")}


def test_parse_control_accepts_the_four_and_refuses_others():
    assert parse_control("reinit", 3) == Control("reinit", 3)
    assert parse_control("cascade:block3").layer == "block3"
    assert parse_control("permute-labels").name == "permute-labels"
    for bad in ("cascade", "cascade:", "shuffle", "reinit:block3", "permute-grads:x"):
        with pytest.raises(Exception, match="--control"):
            parse_control(bad)


def test_reinit_resets_every_module_and_is_seeded():
    trained = _params(_tiny())
    first, again, other = _tiny(), _tiny(), _tiny()
    record = randomise(first, Control("reinit", 0))
    randomise(again, Control("reinit", 0))
    randomise(other, Control("reinit", 1))
    assert _changed(trained, _params(first)) == {"block1", "block2", "block3", "block4", "head"}
    assert record["kept"] == [] and "head" in record["reinitialised"]
    assert _changed(_params(first), _params(again)) == set()          # same seed, same weights
    assert _changed(_params(first), _params(other)) >= {"block1", "head"}
    bn = first.module.block2[1]
    assert torch.all(bn.running_mean == 0) and torch.all(bn.running_var == 1)   # BN statistics reset too


def test_cascade_reinitialises_from_the_head_down_to_the_layer():
    trained = _params(_tiny())
    for layer, expected in [("block3", {"block3", "block4", "head"}), ("block4", {"block4", "head"}),
                            ("head", {"head"}), ("block1", {"block1", "block2", "block3", "block4", "head"})]:
        loaded = _tiny()
        randomise(loaded, parse_control(f"cascade:{layer}"))
        assert _changed(trained, _params(loaded)) == expected, layer
    with pytest.raises(Exception, match="unknown layer"):
        randomise(_tiny(), parse_control("cascade:block9"))


def test_permute_labels_takes_another_class_gradient():
    from vtcav_common.embed.layer_pass import LayerPass

    loaded = _tiny()
    x = torch.randn(6, 3, 16, 64, 64, generator=torch.Generator().manual_seed(0))
    target = loaded.class_index("right")
    ids = [f"v{i}" for i in range(6)]
    classes = draw_classes(Control("permute-labels", 0), "inputs", ids, len(loaded.class_names), target)
    assert target not in classes and len(set(classes.tolist())) > 1
    assert np.array_equal(classes, draw_classes(Control("permute-labels", 0), "inputs", ids[::-1], 4, target)[::-1])
    drawn = LayerPass(loaded, ["block3"], target)(x, classes).grads["block3"]
    for k in set(classes.tolist()):   # each input's gradient is that of its drawn class
        rows = classes == k
        expected = LayerPass(loaded, ["block3"], int(k))(x[torch.as_tensor(rows)]).grads["block3"]
        np.testing.assert_allclose(drawn[rows], expected, rtol=1e-4, atol=1e-6)


def test_permute_grads_permutes_each_input_with_random_signs_independent_of_batching():
    rng = np.random.default_rng(0)
    grads = {"b": rng.normal(size=(5, 4, 3)).astype(np.float32)}
    ids = [f"v{i}" for i in range(5)]
    control = Control("permute-grads", 2)
    whole = permute_gradients(control, "inputs", ids, grads)["b"]
    split = np.concatenate([permute_gradients(control, "inputs", ids[:2], {"b": grads["b"][:2]})["b"],
                            permute_gradients(control, "inputs", ids[2:], {"b": grads["b"][2:]})["b"]])
    np.testing.assert_array_equal(whole, split)                      # shards and batch sizes agree
    for before, after in zip(grads["b"], whole):                     # the same magnitudes, moved
        np.testing.assert_allclose(np.sort(np.abs(before).ravel()), np.sort(np.abs(after).ravel()))
        assert not np.allclose(before, after)
    assert (np.sign(whole) != np.sign(grads["b"])).mean() > 0.2     # signs flipped at random


# --------------------------------------------------------------------------- the commands
@pytest.fixture(scope="module")
def chain(tiny_world, tmp_path_factory):
    """A small chain (2 random sets as concepts and null) embedded trained and re-initialised."""
    out = tmp_path_factory.mktemp("controls")
    labels = tiny_world / "labels.jsonl"
    run_cli("vt-concepts", "random", "--videos", labels, "--frames", "16", "--size", "64", "--seed", "0",
            "--sets", "3", "--clips-per-set", "4", "-o", out / "concepts.h5", check=True)
    model = ["--model", MODEL, "--weights", WEIGHTS / "classifier.pt", "--layers", "block2,block3", "--seed", "0"]
    for tag, control in [("trained", []), ("reinit", ["--control", "reinit"])]:
        run_cli("vt-embed", *model, *control, out / "concepts.h5", "-o", out / f"acts_{tag}.h5", check=True)
        run_cli("vt-embed", *model, *control, labels, "--label", "right", "--target", "right",
                "-o", out / f"grads_{tag}.h5", check=True)
        run_cli("vt-cav", out / f"acts_{tag}.h5", "--concept", "random_00", "--classifier", "mean",
                "-o", out / f"cavs_{tag}.h5", check=True)
    return out


def test_control_is_recorded_and_carried_to_every_score_record(chain):
    import h5py

    with h5py.File(chain / "acts_reinit.h5") as f:
        control = json.loads(f.attrs["provenance"])["control"]
    assert control["name"] == "reinit" and control["seed"] == 0 and "head" in control["reinitialised"]
    with h5py.File(chain / "cavs_reinit.h5") as f:
        assert json.loads(f.attrs["provenance"])["control"]["name"] == "reinit"
    with h5py.File(chain / "acts_trained.h5") as f:
        assert json.loads(f.attrs["provenance"])["control"] is None
    real = run_cli("vt-score", chain / "cavs_trained.h5", chain / "grads_trained.h5", check=True).stdout
    reinit = run_cli("vt-score", chain / "cavs_reinit.h5", chain / "grads_reinit.h5", check=True).stdout
    assert {json.loads(line)["control"] for line in real.splitlines()} == {None}
    assert {json.loads(line)["control"] for line in reinit.splitlines()} == {"reinit"}


def test_files_of_different_model_controls_are_refused_together(chain):
    for args in [("vt-score", chain / "cavs_reinit.h5", chain / "grads_trained.h5"),
                 ("vt-score", chain / "cavs_trained.h5", chain / "grads_reinit.h5"),
                 ("vt-cav", chain / "acts_trained.h5", chain / "acts_reinit.h5", "-o", chain / "mixed.h5")]:
        result = run_cli(*args)
        assert result.returncode == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert lines[-1].startswith(f"{args[0]}: error:") and "model randomisation" in lines[-1], lines
        assert "Traceback" not in result.stderr
    assert not (chain / "mixed.h5").exists()


def test_vt_stats_marks_the_verdicts_a_control_also_gives(chain, tmp_path):
    real = run_cli("vt-score", chain / "cavs_trained.h5", chain / "grads_trained.h5", check=True).stdout
    (tmp_path / "real.jsonl").write_text(real)
    # The trained model's scores again, relabelled as a control: every verdict "also appears" there.
    (tmp_path / "same.jsonl").write_text("".join(json.dumps(dict(json.loads(line), control="reinit")) + "\n"
                                                 for line in real.splitlines()))
    reinit = run_cli("vt-score", chain / "cavs_reinit.h5", chain / "grads_reinit.h5", check=True).stdout
    (tmp_path / "reinit.jsonl").write_text(reinit)
    result = run_cli("vt-stats", tmp_path / "real.jsonl", "--control", tmp_path / "same.jsonl",
                     "--test", "magnitude", "--correction", "none", check=True)
    records = [json.loads(line) for line in result.stdout.splitlines()]
    for r in records:
        assert r["control"] is None and set(r["controls"]) == {"reinit"}
        assert r["controls"]["reinit"]["p"] == r["p"]               # the same test on the same numbers
        assert r["survives_controls"] is (None if not r["significant"] else False)
    if any(r["significant"] for r in records):
        assert "also appear, in the same direction, under a randomised control" in result.stderr
    assert "controls" in result.stderr                              # the table's column
    # A real run given as a control, and a control given as the real run, are refused.
    for args in [(tmp_path / "real.jsonl", "--control", tmp_path / "real.jsonl"),
                 (tmp_path / "reinit.jsonl", "--control", tmp_path / "same.jsonl")]:
        refused = run_cli("vt-stats", *args)
        assert refused.returncode == 1 and "error:" in refused.stderr and "Traceback" not in refused.stderr


def test_attach_survives_only_when_no_control_agrees():
    def verdict(**kw):
        base = {"target": "t", "layer": "l", "concept": "c", "against": "random", "kind": "concept",
                "significant": True, "direction": "+", "p": 0.001, "p_corrected": 0.01, "mean": 0.9}
        return dict(base, **kw)

    cases = [({"a": [verdict(significant=False)]}, True),
             ({"a": [verdict(significant=False)], "b": [verdict()]}, False),
             ({"a": [verdict(direction="-")]}, True),                  # significant the other way: not the same verdict
             ({"a": [verdict(layer="other")]}, None)]                  # the control lacks it ... (and errors: below)
    for runs, expected in cases[:3]:
        results = [verdict()]
        stats_controls.attach(results, None, runs)
        assert results[0]["survives_controls"] is expected, runs
    with pytest.raises(Exception, match="none of its hypotheses"):
        stats_controls.attach([verdict()], None, cases[3][0])
    results = [verdict(significant=False)]
    stats_controls.attach(results, None, {"a": [verdict()]})
    assert results[0]["survives_controls"] is None                   # nothing to survive


def test_report_shows_the_controls_next_to_the_verdicts(tmp_path):
    from vtcav_common.report import Report, build_report

    base = {"target": "right", "against": "random", "kind": "concept", "R": 10, "mean": 0.9, "std": 0.1,
            "null_mean": 0.5, "null_std": 0.2, "p": 1e-4, "p_corrected": 1e-3, "cav_ok": True, "control": None}
    records = [dict(base, layer="block1", concept="ball_right", significant=True, direction="+",
                    controls={"reinit": {"p": 1e-3, "significant": True, "direction": "+"}},
                    survives_controls=False),
               dict(base, layer="block3", concept="ball_right", significant=True, direction="+",
                    controls={"reinit": {"p": 0.4, "significant": False, "direction": "+"}},
                    survives_controls=True)]
    built = build_report(Report(records))
    assert "under the sanity controls" in built.html and "reinit: yes, higher" in built.html
    assert "reinit: no" in built.html and "1 of 2 significant verdicts also appear" in built.html
    assert 'class=control-fails' in built.html and "(also under a control)" in built.markdown


# --------------------------------------------------------------------------- the known answer
@pytest.mark.slow
def test_known_answer_is_not_given_under_a_randomised_model_or_permuted_gradients(world_and_concepts):  # noqa: F811
    """The motion world of tests/test_known_answer.py: the trained model's verdict that ball_right
    is significantly positive for class right must not also come out under re-initialised weights
    or permuted gradients (there, the verdict would say nothing about what the model learned)."""
    out, labels, concepts = world_and_concepts
    model = ["--model", MODEL, "--weights", WEIGHTS / "classifier.pt", "--layers", ",".join(LAYERS), "--seed", "0"]
    score_files = {}
    for tag in ("trained", "reinit", "permute-grads"):
        control = [] if tag == "trained" else ["--control", tag]
        acts, grads, cavs = out / f"c_acts_{tag}.h5", out / f"c_grads_{tag}.h5", out / f"c_cavs_{tag}.h5"
        run_cli("vt-embed", *model, *control, concepts, "-o", acts, check=True)
        run_cli("vt-embed", *model, *control, labels, "--label", "right", "--split", "test", "--target", "right",
                "-o", grads, check=True)
        run_cli("vt-cav", acts, "--seed", "0", "-o", cavs, check=True)
        score_files[tag] = out / f"scores_{tag}.jsonl"
        run_cli("vt-score", cavs, grads, "-o", score_files[tag], check=True)
    result = run_cli("vt-stats", score_files["trained"], "--control", score_files["reinit"],
                     "--control", score_files["permute-grads"], check=True)
    print(result.stderr)
    stats = {(r["layer"], r["concept"]): r for r in map(json.loads, result.stdout.splitlines())
             if r["against"] == "random"}
    trained = [layer for layer in LAYERS if stats[(layer, "ball_right")]["significant"]
               and stats[(layer, "ball_right")]["direction"] == "+"]
    assert trained, "the trained model must give the known answer somewhere"
    for layer in trained:
        record = stats[(layer, "ball_right")]
        for name in ("reinit", "permute-grads"):
            control = record["controls"][name]
            assert not (control["significant"] and control["direction"] == "+"), (layer, name, control)
        assert record["survives_controls"] is True, (layer, record["controls"])
