"""vt-stats: tests and corrections from registries, families, attainable p, refused inputs, the figure."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from conftest import run_cmd
from vtcav_common.stats import corrections, methods, significance_tests


def _records(layer, concept_scores, null_scores, concept="c", target="right", accuracy=0.9, magnitudes=None,
             run=None):
    magnitudes = magnitudes if magnitudes is not None else [0.1] * len(concept_scores)
    extra = {"cav_run": run[0], "gradients_run": run[1]} if run else {}
    rows = [{"target": target, "layer": layer, "concept": concept, "against": f"random_{i:02d}", "kind": "concept",
             "replicate": i, "score": float(s), "magnitude": float(mg), "cav_accuracy": accuracy, **extra}
            for i, (s, mg) in enumerate(zip(concept_scores, magnitudes))]
    rows += [{"target": target, "layer": layer, "concept": f"random_{i:02d}", "against": f"random_{i + 1:02d}",
              "kind": "null", "replicate": i, "score": float(s), "magnitude": 0.0, "cav_accuracy": 0.5, **extra}
             for i, s in enumerate(null_scores)]
    return rows


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


# --------------------------------------------------------------------------- the library
def test_registries_offer_the_papers_method_and_the_alternatives():
    assert set(methods.NAMES) >= {"ttest", "welch", "mannwhitney", "permutation", "magnitude"}
    assert set(corrections.NAMES) >= {"bonferroni", "holm", "bh", "none"}
    assert corrections.resolve("fdr") == "bh"
    with pytest.raises(ValueError, match="choose from"):
        methods.resolve("chisq")


def test_ttest_is_students_two_sided_as_in_the_paper():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.7, 0.1, 10), rng.normal(0.5, 0.2, 10)
    assert methods.run("ttest", a, b)[1] == pytest.approx(scipy_stats.ttest_ind(a, b).pvalue)
    assert methods.run("welch", a, b)[1] == pytest.approx(scipy_stats.ttest_ind(a, b, equal_var=False).pvalue)


@pytest.mark.parametrize("test, equal_var", [("ttest", True), ("welch", False), ("magnitude", False)])
def test_t_tests_equal_scipys(test, equal_var):
    """vt-stats computes the t-tests without scipy.stats (its import is a second of start-up):
    the same statistic and p as scipy.stats.ttest_ind, also with unequal sizes and one
    constant sample."""
    rng = np.random.default_rng(3)
    cases = [(rng.random(10), rng.random(10)), (rng.random(7) + 0.2, rng.random(12)),
             (np.full(10, 0.9), rng.random(10) * 0.4 + 0.3), (rng.normal(0, 1e-3, 20), rng.normal(0, 1, 5))]
    for a, b in cases:
        expected = scipy_stats.ttest_ind(a, b, equal_var=equal_var)
        statistic, p = methods.run(test, a, b)
        assert statistic == pytest.approx(expected.statistic, rel=1e-12)
        assert p == pytest.approx(expected.pvalue, rel=1e-10, abs=1e-300)


def test_permutation_test_is_seeded_and_exact_when_small():
    a, b = np.array([0.9, 0.8, 0.95, 0.85]), np.array([0.1, 0.2, 0.15, 0.3])
    # 8 choose 4 = 70 arrangements, 2 as extreme as the observed one (two-sided)
    assert methods.run("permutation", a, b)[1] == pytest.approx(2 / 70)
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.6, 0.2, 10), rng.normal(0.5, 0.2, 10)
    p1 = methods.run("permutation", a, b, np.random.default_rng(5))[1]
    assert p1 == methods.run("permutation", a, b, np.random.default_rng(5))[1]
    assert p1 == pytest.approx(scipy_stats.ttest_ind(a, b).pvalue, abs=0.1)


def test_binary_null_caps_the_attainable_p():
    null = np.array([0.0, 1.0] * 5)      # a layer whose gradient is the same for every input
    p_min = methods.attainable("ttest", 10, null)
    assert p_min == pytest.approx(0.0077, abs=2e-4)   # issue 12's figure
    assert methods.run("ttest", np.ones(10), null)[1] == pytest.approx(p_min)
    assert methods.attainable("magnitude", 10, null) == 0.0
    # Bonferroni over 12 hypotheses needs p < 0.0042: more random sets make it reachable
    r = methods.needed_r("ttest", null, lambda p: p * 12 < 0.05)
    assert r is not None and r > 10
    assert methods.attainable("ttest", r, np.array([0.0, 1.0] * (r // 2) + [0.0] * (r % 2))) * 12 < 0.06


@pytest.mark.parametrize("family,expected_m", [("all", 8), ("target", 4), ("layer", 2), ("concept", 2)])
def test_family_sets_m(family, expected_m):
    rng = np.random.default_rng(0)
    null = rng.uniform(0.3, 0.7, 10)
    records = []
    for target in ("right", "left"):
        for layer in ("l1", "l2"):
            records += _records(layer, rng.uniform(0.8, 1.0, 10), null, target=target)
            records += _records(layer, rng.uniform(0.8, 1.0, 10), [], concept="d", target=target)
    results = significance_tests(records, "bonferroni", family=family, test="ttest")
    assert {r["m"] for r in results} == {expected_m}
    for r in results:
        assert r["family"] == family and r["test"] == "ttest" and r["R"] == 10
        assert r["p_corrected"] == pytest.approx(min(1.0, r["p"] * expected_m))


def test_family_keeps_one_concepts_verdict_from_depending_on_another():
    rng = np.random.default_rng(3)
    null = rng.uniform(0.2, 0.8, 10)
    strong = _records("l1", rng.uniform(0.75, 0.95, 10), null, concept="a")
    extra = sum((_records("l2", rng.uniform(0.3, 0.7, 10), null, concept=c) for c in "bcdefgh"), [])
    def p_of_a(records, family):
        return next(r for r in significance_tests(records, family=family, test="ttest")
                    if r["concept"] == "a")["p_corrected"]

    p_alone = p_of_a(strong, "layer")
    p_more = p_of_a(strong + extra, "layer")
    assert p_alone == p_more
    p_all = p_of_a(strong + extra, "all")
    assert p_all > p_more


# --------------------------------------------------------------------------- the command
def test_vt_stats_states_what_it_tested_and_marks_unreachable(tmp_path):
    null = [0.0, 1.0] * 5
    records = sum((_records(layer, [1.0] * 10, null if c == "a" else [], concept=c) for layer in ("l1", "l2", "l3")
                   for c in ("a", "b", "c")), [])
    scores = _write(tmp_path / "scores.jsonl", records)
    result = run_cmd("vt-stats", scores, "--test", "ttest")
    assert result.returncode == 0, result.stderr
    stats = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(stats) == 9
    for r in stats:
        assert (r["test"], r["family"], r["m"], r["R"], r["correction"]) == ("ttest", "all", 9, 10, "bonferroni")
        assert r["p_min_attainable"] == pytest.approx(0.0077, abs=2e-4)
        assert r["reachable"] is False and r["significant"] is False and r["r_needed"] > 10
    assert "unreachable" in result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and f"R >= {stats[0]['r_needed']}" in warnings[0] and "--test magnitude" in warnings[0]
    # the magnitude test can reach it
    result = run_cmd("vt-stats", scores, "--test", "magnitude", "--family", "layer", "-q")
    assert all(json.loads(line)["reachable"] for line in result.stdout.splitlines())


def test_vt_stats_refuses_duplicates_and_mixed_runs(tmp_path):
    rng = np.random.default_rng(0)
    records = _records("l1", rng.uniform(0.6, 0.9, 10), rng.uniform(0.3, 0.7, 10), run=("cavA", "gradA"))
    scores = _write(tmp_path / "scores.jsonl", records)
    doubled = _write(tmp_path / "doubled.jsonl", records + records)
    result = run_cmd("vt-stats", doubled)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "duplicate" in result.stderr and "doubled.jsonl:21" in result.stderr
    other = _records("l1", rng.uniform(0.6, 0.9, 10), rng.uniform(0.3, 0.7, 10), run=("cavB", "gradA"))
    mixed = _write(tmp_path / "mixed.jsonl", records + other)
    result = run_cmd("vt-stats", mixed)
    assert result.returncode == 1 and "another run" in result.stderr and "Traceback" not in result.stderr
    result = run_cmd("vt-stats", mixed, "--allow-mixed-runs", "-q")
    assert result.returncode == 0 and json.loads(result.stdout.splitlines()[0])["R"] == 20
    # records without run ids count as one run: exact duplicates are still refused
    bare = [{k: v for k, v in r.items() if k not in ("cav_run", "gradients_run")} for r in records]
    assert run_cmd("vt-stats", _write(tmp_path / "bare.jsonl", bare + bare[:1])).returncode == 1
    assert run_cmd("vt-stats", scores, "-q").returncode == 0


def test_vt_stats_writes_strict_json(tmp_path):
    # constant samples give an infinite t: written as null, never as Infinity or NaN
    records = _records("l1", [0.9] * 5, [0.5] * 5)
    result = run_cmd("vt-stats", _write(tmp_path / "s.jsonl", records), "-q")
    assert result.returncode == 0
    record = json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"non-strict JSON: {c}"))
    assert record["statistic"] is None and record["p"] == 0.0
    bad = records[:1] + [{**records[1], "score": math.nan}] + records[2:]
    text = "".join(json.dumps(r) + "\n" for r in bad)
    result = run_cmd("vt-stats", "-", input=text)
    assert result.returncode == 1 and "<stdin>:2" in result.stderr and "NaN" in result.stderr
    text = "".join(json.dumps(r) + "\n" for r in records[:2] + [{**records[2], "magnitude": "big"}])
    result = run_cmd("vt-stats", "-", input=text)
    assert result.returncode == 1 and "<stdin>:3" in result.stderr and "finite" in result.stderr


def test_vt_stats_usage_errors_come_from_the_registries(tmp_path):
    scores = _write(tmp_path / "s.jsonl", _records("l1", [0.9] * 5, [0.5] * 5))
    for option, value in (("--test", "chisq"), ("--correction", "sidak"), ("--family", "everything")):
        result = run_cmd("vt-stats", scores, option, value)
        assert result.returncode == 2 and "choose from" in result.stderr and "Traceback" not in result.stderr
    result = run_cmd("vt-stats", scores, "--correction", "fdr", "-q")
    assert json.loads(result.stdout)["correction"] == "bh"
    result = run_cmd("vt-stats", scores, "--plot", tmp_path / "fig.jpeg")
    assert result.returncode == 2 and "fig.jpeg" in result.stderr


@pytest.mark.parametrize("suffix,magic", [(".png", b"\x89PNG"), (".pdf", b"%PDF"), (".svg", b"<?xml")])
def test_figure_format_follows_the_extension(tmp_path, suffix, magic):
    rng = np.random.default_rng(0)
    records = (_records("l1", rng.uniform(0.8, 1.0, 10), rng.uniform(0.2, 0.8, 10))
               + _records("l2", rng.uniform(-0.0, 0.1, 10), rng.uniform(0.3, 0.7, 10)))
    records += [{**r, "kind": "relative", "against": "b", "concept": "a"} for r in records[:10]]
    scores = _write(tmp_path / "s.jsonl", records)
    figure = tmp_path / f"fig{suffix}"
    assert run_cmd("vt-stats", scores, "--plot", figure, "-q").returncode == 0
    data = figure.read_bytes()
    assert data.startswith(magic)
    if suffix != ".png":
        assert b"Agg" not in data[:200]
    # the same results give the same bytes
    run_cmd("vt-stats", scores, "--plot", tmp_path / f"again{suffix}", "-q")
    assert (tmp_path / f"again{suffix}").read_bytes() == data
