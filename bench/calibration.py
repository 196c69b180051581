"""Calibration of vt-stats: false-positive rate with null concepts, power with the true concept.

On the synthetic motion world (vt-synth), for class ``right``:

- *null concepts*: sets of random clips drawn exactly like the random sets (random windows
  of non-``right`` training videos), handed in as concepts.  Any "significant" verdict on
  them is a false positive;
- *the true concept*: ``ball_right`` (the ball's track in ``right`` videos), which the
  classifier relies on: the fraction of repetitions where it is significant is the power.

Affordable on a small CPU: the commands build the world and embed ONE large pool of random
clips and of ``ball_right`` clips once (vt-synth, vt-detect, vt-concepts, vt-embed with
the tiny classifier); then each repetition draws its R random sets, its null concepts and
its concept set from the pools by seed, in-process, through the library: the pool's Gram
matrix per layer, and per CAV an
:class:`~vtcav_common.cav.ActivationSpace` of its own rows (an L2 linear classifier finds
the same boundary in any orthonormal basis of a span that contains its rows: vt-cav's
shared space and this one agree), :func:`~vtcav_common.cav.fit_cav` (the reference SGD classifier, balanced,
2/3-1/3 split), the directional derivatives of the held-out ``right`` videos along each
CAV (from the gradient-activation cross products: no D-sized vector is ever formed) and
:func:`~vtcav_common.stats.significance_tests` with every test and family.

    .venv/bin/python bench/calibration.py --work /tmp/calib --reps 20

Prints one table: per test, family and R, the false-positive rate (null-concept hypotheses
significant after correction; and the family-wise rate: repetitions with any), and the
power per layer.  Not part of CI.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# Small matrices: one BLAS thread (threads spinning on a shared CPU cost more than they save).
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import numpy as np  # noqa: E402

from vtcav_common.cav import ActivationSpace, fit_cav  # noqa: E402
from vtcav_common.embeddings import Embeddings  # noqa: E402
from vtcav_common.scoring import tcav_scores  # noqa: E402
from vtcav_common.stats import FAMILIES, TESTS, correct, significance_tests  # noqa: E402
from vtcav_common.stats.hypotheses import family_key  # noqa: E402

LAYERS = ["block1", "block2", "block3"]
TARGET = "right"


def _tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _run(*args, stdin=None, stdout=None):
    subprocess.run([_tool(args[0]), *map(str, args[1:]), "-q"], check=True, stdin=stdin, stdout=stdout,
                   env={**os.environ, "YOLO_OFFLINE": "1"})


def build_pools(work: Path, pool: int, concept_pool: int, world_seed: int) -> tuple[Path, Path]:
    """World -> detections -> a random-clip pool and a ball_right pool -> activations and gradients."""
    world, acts, grads = work / "world", work / "pool_acts.h5", work / "grads.h5"
    if acts.exists() and grads.exists():
        return acts, grads
    labels = world / "labels.jsonl"
    if not labels.exists():
        _run("vt-synth", world, "--seed", world_seed, "--train-per-class", 30, "--test-per-class", 15)
    detections = work / "detections.jsonl"
    if not detections.exists():
        _run("vt-detect", "--model", REPO / "weights/detector.pt", labels, "-o", detections)
    clips = work / "pool.h5"
    if not clips.exists():
        common = ["--videos", labels, "--split", "train", "--frames", 16, "--size", 64, "--seed", 0]
        _run("vt-concepts", "spatiotemporal", detections, *common, "--class", "ball", "--label", TARGET,
             "--clips-per-track", 8, "--max-clips", concept_pool, "--name", "ball_right", "-o", clips)
        # The pool of null concepts and random sets: drawn like vt-concepts random draws random sets.
        _run("vt-concepts", "random", *common, "--exclude-label", TARGET, "--sets", 1, "--clips-per-set", pool,
             "--prefix", "pool", "--role", "concept", "-o", clips, "--append")
    model = ["--weights", REPO / "weights/classifier.pt", "--layers", ",".join(LAYERS), "--seed", 0]
    _run("vt-embed", *model, clips, "-o", acts)
    _run("vt-embed", *model, labels, "--label", TARGET, "--split", "test", "--target", TARGET, "-o", grads)
    return acts, grads


def products(acts: Path, grads: Path, columns: int = 32768) -> dict[str, dict]:
    """Per layer: the pool's Gram matrix K = X X^T and the cross products C = G X^T (gradients),
    accumulated over column blocks (the activations are never all in memory)."""
    out = {}
    with Embeddings(acts) as emb, Embeddings(grads) as g:
        names = ["pool_00", "ball_right"]
        inputs = next(s.name for s in g.sets() if s.has_grads)
        for layer in LAYERS:
            sizes = [next(s.n for s in emb.sets() if s.name == n) for n in names]
            gram = np.zeros((sum(sizes),) * 2)
            cross = None
            blocks = [emb.column_blocks(n, layer, columns) for n in names]
            for parts, (_, gblock) in zip(zip(*blocks), g.column_blocks(inputs, layer, columns, "grads")):
                x = np.concatenate([p[1] for p in parts])
                gram += (x @ x.T).astype(np.float64)
                c = (gblock @ x.T).astype(np.float64)
                cross = c if cross is None else cross + c
            out[layer] = {"gram": gram, "cross": cross, "pool": np.arange(sizes[0]),
                          "concept": np.arange(sizes[0], sum(sizes))}
            print(f"  {layer}: Gram {gram.shape[0]} x {gram.shape[0]}, {cross.shape[0]} inputs", file=sys.stderr)
    return out


def repetition(layers: dict, r: int, clips: int, nulls: int, seed: int) -> list[dict]:
    """One experiment: R random sets, ``nulls`` null concepts and ball_right, scored at every layer."""
    rng = np.random.default_rng([seed, r])
    any_layer = next(iter(layers.values()))
    drawn = rng.choice(any_layer["pool"], (r + nulls) * clips, replace=False).reshape(r + nulls, clips)
    sets = {f"random_{i:02d}": drawn[i] for i in range(r)}
    sets.update({f"null_{j}": drawn[r + j] for j in range(nulls)})
    sets["ball_right"] = rng.choice(any_layer["concept"], clips, replace=False)
    randoms = [f"random_{i:02d}" for i in range(r)]
    tasks = [(c, rnd, "concept", i) for c in [f"null_{j}" for j in range(nulls)] + ["ball_right"]
             for i, rnd in enumerate(randoms)]
    tasks += [(rnd, randoms[(i + 1) % r], "null", i) for i, rnd in enumerate(randoms)]
    records = []
    for layer, mats in layers.items():
        gram = mats["gram"]
        mix = np.zeros((len(gram), len(tasks)))
        coefs = []
        for number, (concept, against, _, _) in enumerate(tasks):
            # The space of this CAV's own rows: the same boundary as in the span of every set
            # (an L2 linear classifier is rotation-invariant), at the cost of 2x15 dimensions.
            rows = np.concatenate([sets[concept], sets[against]])
            space = ActivationSpace.from_gram(gram[np.ix_(rows, rows)])
            n = len(sets[concept])
            fit = fit_cav(space, np.arange(n), np.arange(n, len(rows)), "sgd", seed=int(rng.integers(2 ** 31)))
            mix[rows, number] = space.mix(fit.coef)[:, 0]
            coefs.append((fit.coef, fit.accuracy))
        norms = np.sqrt(np.einsum("nk,nm,mk->k", mix, mats["gram"], mix))
        derivatives = mats["cross"] @ mix / norms                                # inputs x k
        sign, magnitude = tcav_scores(derivatives)
        for (concept, against, kind, replicate), (_, accuracy), s, m in zip(tasks, coefs, sign, magnitude):
            records.append({"target": TARGET, "layer": layer, "concept": concept, "against": against, "kind": kind,
                            "replicate": replicate, "score": float(s), "magnitude": float(m),
                            "cav_accuracy": accuracy})
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/vtcav-calibration"))
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--rs", default="10,20,50", help="values of R")
    parser.add_argument("--clips", type=int, default=15, help="clips per set (the demo uses 40)")
    parser.add_argument("--nulls", type=int, default=2, help="null concepts per repetition")
    parser.add_argument("--pool", type=int, default=800)
    parser.add_argument("--concept-pool", type=int, default=150)
    parser.add_argument("--world-seed", type=int, default=1)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--tests", default=",".join(TESTS))
    parser.add_argument("--families", default=",".join(FAMILIES))
    args = parser.parse_args()
    rs = [int(v) for v in args.rs.split(",")]
    tests, families = args.tests.split(","), args.families.split(",")
    if max(rs) * args.clips + args.nulls * args.clips > args.pool:
        parser.error("--pool too small for the largest R")
    args.work.mkdir(parents=True, exist_ok=True)
    started, cpu0 = time.perf_counter(), time.process_time()
    acts, grads = build_pools(args.work, args.pool, args.concept_pool, args.world_seed)
    built = time.perf_counter()
    cache = args.work / "products.npz"
    if cache.exists():
        saved = np.load(cache)
        layers = {l: {k: saved[f"{l}/{k}"] for k in ("gram", "cross", "pool", "concept")} for l in LAYERS}
    else:
        layers = products(acts, grads)
        np.savez(cache, **{f"{l}/{k}": v for l, mats in layers.items() for k, v in mats.items()})
    # counts[(test, family, r)] -> [null significant, null tested, reps with any null significant,
    #                               raw null p < alpha, {layer: concept significant}]
    fp, fw, raw, power, nulls_tested = (defaultdict(int) for _ in range(5))
    from vtcav_common.tcav import quiet_convergence
    for r in rs:
        for rep in range(args.reps):
            records = quiet_convergence(repetition, layers, r, args.clips, args.nulls, seed=1000 + rep)
            for test in tests:
                # The test's p does not depend on the family: test once, correct per family.
                results = significance_tests(records, "none", args.alpha, test=test, seed=rep, explain=False)
                for family in families:
                    groups = defaultdict(list)
                    for x in results:
                        groups[family_key(family, x)].append(x)
                    key = (test, family, r)
                    for members in groups.values():
                        for x, p_adj in zip(members, correct([x["p"] for x in members], "bonferroni")):
                            x["significant"] = bool(p_adj < args.alpha and x["cav_ok"])
                    null_results = [x for x in results if x["concept"].startswith("null_")]
                    nulls_tested[key] += len(null_results)
                    hits = sum(x["significant"] for x in null_results)
                    fp[key] += hits
                    fw[key] += hits > 0
                    raw[key] += sum(x["p"] < args.alpha for x in null_results)
                    for x in results:
                        if x["concept"] == "ball_right":
                            power[(*key, x["layer"])] += x["significant"] and x["direction"] == "+"
        print(f"  R={r}: {args.reps} repetitions done ({time.perf_counter() - built:.0f} s)", file=sys.stderr)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu0
    print(f"# vtcav calibration: world seed {args.world_seed}, class '{TARGET}', tiny classifier, {args.reps} "
          f"repetitions per R, {args.clips} clips per set, {args.nulls} null concepts + ball_right per repetition,"
          f" layers {', '.join(LAYERS)}; Bonferroni, alpha {args.alpha}")
    print("# FPR: null-concept hypotheses significant after correction; FWER: repetitions with any; raw: "
          "uncorrected p < alpha; power: repetitions where ball_right is significantly positive")
    print(f"# {elapsed:.0f} s wall ({elapsed - (built - started):.0f} s after the pools were built), {cpu:.0f} s CPU "
          f"in this process, on a shared, loaded 2-core machine")
    header = f"| test | family | R | FPR | FWER | raw | {' | '.join('power ' + l for l in LAYERS)} |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for test in tests:
        for family in families:
            for r in rs:
                key = (test, family, r)
                n = max(nulls_tested[key], 1)
                cells = [f"{fp[key] / n:.3f}", f"{fw[key] / args.reps:.2f}", f"{raw[key] / n:.3f}"]
                cells += [f"{power[(*key, l)] / args.reps:.2f}" for l in LAYERS]
                print(f"| {test} | {family} | {r} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
