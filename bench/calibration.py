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
:class:`~vtcav_common.tcav.cav.ActivationSpace` of its own rows (an L2 linear classifier finds
the same boundary in any orthonormal basis of a span that contains its rows: vt-cav's
shared space and this one agree), :func:`~vtcav_common.tcav.cav.fit_cav` (the reference SGD classifier, balanced,
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

from vtcav_common.tcav.cav import ActivationSpace, fit_cav  # noqa: E402
from vtcav_common.formats.embeddings import Embeddings  # noqa: E402
from vtcav_common.tcav.derivatives import tcav_scores  # noqa: E402
from vtcav_common.stats import significance_tests  # noqa: E402
from vtcav_common.tcav.fitting import NULL_PARTNERS, RESAMPLE_FRACTION, plan  # noqa: E402

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


def repetition(layers: dict, r: int, clips: int, nulls: int, seed: int, partners: int = NULL_PARTNERS) -> list[dict]:
    """One experiment: R random sets, ``nulls`` null concepts, ball_right, and one relative pair of
    null concepts (null_0 vs null_1, R resamples), with vt-cav's plan of null CAVs; scored at
    every layer."""
    rng = np.random.default_rng([seed, r, clips])
    any_layer = next(iter(layers.values()))
    drawn = rng.choice(any_layer["pool"], (r + nulls) * clips, replace=False).reshape(r + nulls, clips)
    sets = {f"random_{i:02d}": drawn[i] for i in range(r)}
    sets.update({f"null_{j}": drawn[r + j] for j in range(nulls)})
    sets["ball_right"] = rng.choice(any_layer["concept"], clips, replace=False)
    randoms = [f"random_{i:02d}" for i in range(r)]
    tasks = plan([f"null_{j}" for j in range(nulls)] + ["ball_right"], randoms,
                 [("null_0", "null_1")] if nulls >= 2 else [], r, partners)
    records = []
    for layer, mats in layers.items():
        gram = mats["gram"]
        mix = np.zeros((len(gram), len(tasks)))
        coefs = []
        for number, task in enumerate(tasks):
            positive, negative = sets[task.concept], sets[task.against]
            fit_seed = int(rng.integers(2 ** 31))
            if task.resample:       # relative CAVs: vt-cav's resamples of 80% of each side
                sub = np.random.default_rng(fit_seed)
                positive = np.sort(sub.choice(positive, max(3, int(RESAMPLE_FRACTION * len(positive))), replace=False))
                negative = np.sort(sub.choice(negative, max(3, int(RESAMPLE_FRACTION * len(negative))), replace=False))
            # The space of this CAV's own rows: the same boundary as in the span of every set
            # (an L2 linear classifier is rotation-invariant), at the cost of 2x15 dimensions.
            rows = np.concatenate([positive, negative])
            space = ActivationSpace.from_gram(gram[np.ix_(rows, rows)])
            n = len(positive)
            fit = fit_cav(space, np.arange(n), np.arange(n, len(rows)), "sgd", seed=fit_seed)
            mix[rows, number] = space.mix(fit.coef)[:, 0]
            coefs.append((fit.coef, fit.accuracy))
        norms = np.sqrt(np.einsum("nk,nm,mk->k", mix, mats["gram"], mix))
        derivatives = mats["cross"] @ mix / norms                                # inputs x k
        sign, magnitude = tcav_scores(derivatives)
        for number, (task, (_, accuracy), s, m) in enumerate(zip(tasks, coefs, sign, magnitude)):
            records.append({"target": TARGET, "layer": layer, "concept": task.concept, "against": task.against,
                            "kind": task.kind, "replicate": task.replicate, "score": float(s), "magnitude": float(m),
                            "cav_accuracy": accuracy, "derivatives": derivatives[:, number].tolist()})
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/vtcav-calibration"))
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--rs", default="10,20,50", help="values of R")
    parser.add_argument("--clips", default="15,40", help="clips per set (the demo uses 40)")
    parser.add_argument("--nulls", type=int, default=2, help="null concepts per repetition")
    parser.add_argument("--pool", type=int, default=2200)
    parser.add_argument("--concept-pool", type=int, default=200)
    parser.add_argument("--world-seed", type=int, default=2)
    parser.add_argument("--partners", type=int, default=NULL_PARTNERS, help="vt-cav --null-partners")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--tests", default="set,set-score,set-rank,ttest")
    args = parser.parse_args()
    rs = [int(v) for v in args.rs.split(",")]
    clip_sizes = [int(v) for v in args.clips.split(",")]
    tests = args.tests.split(",")
    if max(rs) * max(clip_sizes) + args.nulls * max(clip_sizes) > args.pool:
        parser.error("--pool too small for the largest R and clips")
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
    # per (test, R, clips): null-concept hypotheses tested, raw p < alpha, significant after
    # Bonferroni over every hypothesis of the repetition; relative null pairs alike; power per layer.
    count = defaultdict(int)
    from vtcav_common.tcav import quiet_convergence
    for clips in clip_sizes:
        for r in rs:
            if not args.reps:
                continue
            for rep in range(args.reps):
                records = quiet_convergence(repetition, layers, r, clips, args.nulls, seed=5000 + rep,
                                            partners=args.partners)
                for test in tests:
                    results = significance_tests(records, "bonferroni", args.alpha, test=test, family="all",
                                                 seed=rep, explain=False)
                    key = (test, r, clips)
                    nulls = [x for x in results if x["concept"].startswith("null_") and x["kind"] == "concept"]
                    relative = [x for x in results if x["kind"] == "relative"]
                    count[(*key, "null")] += len(nulls)
                    count[(*key, "raw")] += sum(x["p"] < args.alpha for x in nulls)
                    count[(*key, "fp")] += sum(x["p_corrected"] < args.alpha for x in nulls)
                    count[(*key, "fwer")] += any(x["p_corrected"] < args.alpha for x in nulls + relative)
                    count[(*key, "rel")] += len(relative)
                    count[(*key, "rel_raw")] += sum(x["p"] < args.alpha for x in relative)
                    for x in results:
                        if x["concept"] == "ball_right" and x["kind"] == "concept" and x["direction"] == "+":
                            count[(*key, "power_raw", x["layer"])] += x["p"] < args.alpha
                            count[(*key, "power", x["layer"])] += x["p_corrected"] < args.alpha
            print(f"  clips {clips}, R={r}: {args.reps} repetitions done ({time.perf_counter() - built:.0f} s)",
                  file=sys.stderr)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu0
    print(f"# vtcav calibration: world seed {args.world_seed}, class '{TARGET}', tiny classifier, {args.reps} "
          f"repetitions per R and clip count, {args.nulls} null concepts + ball_right + one relative pair of null "
          f"concepts per repetition, layers {', '.join(LAYERS)}, null partners {args.partners}; alpha {args.alpha}")
    print("# raw: null-concept hypotheses with uncorrected p < alpha (target: 0.05 within Monte Carlo error); "
          "rel raw: the same for the relative null pair; Bonf: null hypotheses significant after Bonferroni over "
          "every hypothesis of the repetition (12 to 15); FWER: repetitions with any; power: ball_right "
          "significantly positive per layer, raw / after Bonferroni (CAV-accuracy gate not applied)")
    print(f"# {elapsed:.0f} s wall ({elapsed - (built - started):.0f} s after the pools were built), {cpu:.0f} s CPU "
          f"in this process, on a shared, loaded 2-core machine")
    header = (f"| test | clips | R | raw | rel raw | Bonf | FWER | "
              f"{' | '.join('power ' + l for l in LAYERS)} |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for test in tests:
        for clips in clip_sizes:
            for r in rs:
                key = (test, r, clips)
                n, nr = max(count[(*key, "null")], 1), max(count[(*key, "rel")], 1)
                cells = [f"{count[(*key, 'raw')] / n:.3f}", f"{count[(*key, 'rel_raw')] / nr:.3f}",
                         f"{count[(*key, 'fp')] / n:.3f}", f"{count[(*key, 'fwer')] / max(args.reps, 1):.2f}"]
                cells += [f"{count[(*key, 'power_raw', l)] / max(args.reps, 1):.2f} / "
                          f"{count[(*key, 'power', l)] / max(args.reps, 1):.2f}" for l in LAYERS]
                print(f"| {test} | {clips} | {r} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
